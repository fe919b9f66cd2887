"""One running sandbox's settings and shared state, as every API module sees it.

``SandboxConfig`` is what ``ecsexec sandbox up`` flags and ``Sandbox(...)`` arguments
become; ``Runtime`` bundles the world, stats, credentials, throttle, faults and the hub
so that ECS, SSM, KMS, STS and the control endpoints share one instance.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecsexec.sandbox.access import AccessRule
from ecsexec.sandbox.access import check as check_access
from ecsexec.sandbox.credentials import Credential, CredentialStore
from ecsexec.sandbox.faults import ErrorRule, FaultPlan, api_rng, parse_throttle_list
from ecsexec.sandbox.model import DEFAULT_ACCOUNT, World
from ecsexec.sandbox.paging import Pager
from ecsexec.sandbox.stats import Stats
from ecsexec.sandbox.throttle import DEFAULT_BURST, Limit, Throttle

CREDENTIAL_MODES = ("keys", "container", "imds", "instance")
SESSION_LIMIT_MODES = ("channel", "api")


@dataclass
class SandboxConfig:
    """Every setting of one sandbox; defaults are the documented ones.

    See docs/sandbox.md §1, §7, §11.
    """

    state_dir: Path
    topology: dict[str, Any] | None = None
    topology_file: str | None = None
    tasks: int | None = None
    # Generator options for ``tasks`` (§10): clusters, services per cluster, containers, mix.
    generator: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    port: int = 0
    metadata_port: int = 0
    tls: bool = False
    credentials: str = "keys"
    faults: str = ""
    throttle: str = ""
    initial_wait: float = 1.0
    agent_start_delay: float = 0.2
    drain_timeout: float = 2.0
    handshake_timeout: float = 15.0
    idle_timeout: float = 1200.0
    token_ttl: float = 60.0
    close_grace: float = 1.0
    require_challenge_ack: bool = False
    agent_loss: str = "close"
    session_limit: int = 2
    session_limit_mode: str = "channel"
    # Each container in its own PID, UTS and mount namespaces where the host allows it.
    namespaces: bool = True
    # Host directories every container sees at the same path, even under its private /tmp
    # (like a bind mount): e.g. the files a test hands to its containers.
    share: list[str] = field(default_factory=list)
    verify_signatures: bool = True
    strict: bool = False
    run_main: bool = True
    credential_ttl: float = 3600.0
    imds_v1: bool = False
    retention: float = 3600.0


@dataclass(frozen=True, slots=True)
class Call:
    """Who is calling what, where: built once per request by the server."""

    service: str
    action: str
    region: str
    account: str
    credential: Credential
    request_id: str

    @property
    def principal(self) -> str:
        return self.credential.principal


Handler = Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]


class ApiFaults:
    """The API-level part of a fault plan (docs/sandbox.md §12): error, tnc, short_pages, throttle.

    Draws come from ``faults.api_rng`` with one generator per decision stream, so enabling
    one fault never shifts another's decisions.
    """

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.plan = plan or FaultPlan()
        self._rngs: dict[str, random.Random] = {}

    @property
    def tnc(self) -> float:
        return self.plan.tnc

    @property
    def short_pages(self) -> float:
        return self.plan.short_pages

    def throttle_limits(self) -> dict[str, Limit]:
        return {
            r.action: Limit(r.rate, float(r.burst) if r.burst is not None else DEFAULT_BURST)
            for r in self.plan.throttle
        }

    def draw(self, stream: str) -> float:
        rng = self._rngs.get(stream)
        if rng is None:
            rng = self._rngs[stream] = api_rng(self.plan.seed, stream)
        return rng.random()

    def error_for(self, action: str) -> ErrorRule | None:
        rule = self.plan.error_for(action)
        if rule is None or rule.probability <= 0:
            return None
        return rule if self.draw(f"error:{action}") < rule.probability else None

    def fire(self, name: str, p: float) -> bool:
        return p > 0 and self.draw(name) < p


class Runtime:
    """Shared state of one sandbox. Single-threaded: only the event loop touches it."""

    def __init__(
        self, config: SandboxConfig, account: str = DEFAULT_ACCOUNT, stats: Stats | None = None
    ) -> None:
        self.config = config
        self.stats = stats or Stats()
        self.world = World(account, seed=config.seed, retention=config.retention)
        self.creds = CredentialStore(account)
        self.throttle = throttle_from(config.throttle)
        self.pager = Pager()
        self.access_rules: list[AccessRule] = []
        self.api_faults = ApiFaults()
        self.hub: Any = None
        self.notices: list[str] = []
        self.endpoint_url = ""
        self.stream_base = ""
        self.regions: list[str] = []
        # Set by the server: stops a task's main processes and returns their exit code.
        self.stop_main: Callable[[Any, float], Awaitable[int | None]] | None = None
        self.background: set[Any] = set()
        # Set by the server: starts a new task's main processes (docs/sandbox.md §8.4).
        self.on_task_started: Callable[[Any], None] = lambda task: None
        # Set by the server: a container's namespaces (namespaces.ContainerNamespace) for
        # its exec sessions, or None when containers share the host's.
        self.namespace_for: Callable[[Any], Any] = lambda container: None

    def authorize(self, call: Call, resource: str) -> None:
        check_access(self.access_rules, f"{call.service}:{call.action}", call.principal, resource)

    def set_api_faults(self, plan: FaultPlan | None) -> None:
        self.api_faults = ApiFaults(plan)
        self.throttle.set_fault_overrides(self.api_faults.throttle_limits())


def throttle_from(spec: str) -> Throttle:
    """``--throttle``: empty = defaults, ``off`` = none, else ``ACTION:RATE/s[:BURST],…`` (§11)."""
    spec = spec.strip()
    if spec == "off":
        return Throttle(enabled=False)
    limits = {
        r.action: Limit(r.rate, float(r.burst) if r.burst is not None else DEFAULT_BURST)
        for r in parse_throttle_list(spec)
    }
    return Throttle(limits)
