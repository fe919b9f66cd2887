"""Build one :class:`Connector` per region from a boto3 session factory, and reuse it."""

from __future__ import annotations

import functools
import threading
from typing import Final

from ecsexec.aws.clients import SessionFactory, ssl_context
from ecsexec.aws.ecs import EcsApi
from ecsexec.aws.execute_command import preload
from ecsexec.aws.ssm import KmsDataKeyProvider, SsmSessionControl
from ecsexec.exec.runner import Connector, ContainerTarget
from ecsexec.ssm.session import SessionOptions

#: Runs of at most this many nodes send ExecuteCommand with urllib in worker threads and
#: never import aiohttp (~0.1 s of CPU, on the way to the first call). More calls than
#: that go through aiohttp on the event loop: in threads, a few hundred calls stalled
#: the loop's socket calls behind their GIL hand-offs.
SMALL_RUN: Final = 4


class ConnectorPool:
    """Connectors keyed by region; ``pool(target)`` picks the target's region.

    ExecuteCommand keeps HTTP connections open on the event loop that used it: close the
    pool on that loop (``async with ConnectorPool(...)`` or :meth:`aclose`). Nothing
    closes them otherwise; an unclosed pool is reported as a ResourceWarning.
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        default_region: str,
        options: SessionOptions | None = None,
    ) -> None:
        self._factory = session_factory
        self._default_region = default_region
        self._options = options or SessionOptions()
        self._connectors: dict[str, Connector] = {}
        self._lock = threading.Lock()
        self._targets = 0  # targets handed out by __call__

    def for_region(self, region: str) -> Connector:
        with self._lock:
            connector = self._connectors.get(region)
            if connector is None:
                session = self._factory(region)
                connector = Connector(
                    ecs=EcsApi(session, region=region),
                    control=SsmSessionControl(session),
                    data_key_provider=KmsDataKeyProvider(session),
                    session_options=self._options,
                    tls_context=functools.partial(ssl_context, session),
                )
                self._connectors[region] = connector
            return connector

    def prepare(self, region: str) -> None:
        """Build ``region``'s connector and its ExecuteCommand client now (blocking: for a
        worker thread)."""
        self.for_region(region).ecs.prepare_exec()

    def expect(self, targets: int) -> None:
        """A run of ``targets`` nodes follows: above :data:`SMALL_RUN`, start importing
        aiohttp now (in a thread of its own), so its ExecuteCommands find it ready."""
        if targets > SMALL_RUN:
            preload()

    def __call__(self, target: ContainerTarget) -> Connector:
        with self._lock:
            self._targets += 1
            targets = self._targets
        self.expect(targets)  # a caller that did not say how many: the count so far
        return self.for_region(target.region or self._default_region)

    async def aclose(self) -> None:
        """Close every connector's HTTP connections (ExecuteCommand's connection pool)."""
        with self._lock:
            connectors, self._connectors = list(self._connectors.values()), {}
        for connector in connectors:
            await connector.ecs.aclose()

    async def __aenter__(self) -> ConnectorPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
