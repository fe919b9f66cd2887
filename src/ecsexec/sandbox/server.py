"""The sandbox process core: listeners, routing, API pipeline, control, lifecycle (§1, §2, §12).

One asyncio loop serves the main listener (ECS, SSM, KMS, STS, data-channel websockets,
``/_sandbox``) and, in container/imds credential modes, the metadata listener. Every API
request runs the same pipeline: SigV4 → throttle → injected error → input validation →
operation → (strict) output validation, and is counted in stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import logging
import os
import resource
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from ecsexec.errors import ConfigurationError
from ecsexec.sandbox import namespaces, shapes, sigv4, sts, tls, topology
from ecsexec.sandbox.credentials import Credential
from ecsexec.sandbox.ecs_api import EcsApi
from ecsexec.sandbox.faults import FaultPlan, parse_faults
from ecsexec.sandbox.hub import AgentSettings, SessionHub
from ecsexec.sandbox.kms import KmsApi
from ecsexec.sandbox.mains import MainProcesses, sweep_leftovers
from ecsexec.sandbox.metadata import MetadataService
from ecsexec.sandbox.model import ApiError, Container
from ecsexec.sandbox.process import CannotStart
from ecsexec.sandbox.runtime import (
    CREDENTIAL_MODES,
    SESSION_LIMIT_MODES,
    Call,
    Handler,
    Runtime,
    SandboxConfig,
)
from ecsexec.sandbox.ssm_api import SsmApi
from ecsexec.sandbox.state import StateDir, write_private
from ecsexec.sandbox.stats import Stats

log = logging.getLogger("ecsexec.sandbox")


def _version() -> str:
    """ecsexec's installed version. Not ``ecsexec.__version__``: the package's root is the
    client library's facade, which the sandbox does not depend on."""
    try:
        return metadata.version("ecsexec")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


JSON_TARGETS = {
    "AmazonEC2ContainerServiceV20141113": "ecs",
    "AmazonSSM": "ssm",
    "TrentService": "kms",
}
SERVICE_TITLES = {"ecs": "ECS", "ssm": "SSM", "kms": "KMS", "sts": "STS"}
# docs/sandbox.md §2: the validator's report becomes this service's validation error.
VALIDATION_CODES = {
    "ecs": "InvalidParameterException",
    "ssm": "ValidationException",
    "kms": "ValidationException",
    "sts": "ValidationError",
}
# STS speaks its own names for the authentication errors.
STS_AUTH_CODES = {
    "UnrecognizedClientException": ("InvalidClientTokenId", 403),
    "InvalidSignatureException": ("SignatureDoesNotMatch", 403),
    "MissingAuthenticationTokenException": ("MissingAuthenticationToken", 403),
    "IncompleteSignatureException": ("IncompleteSignature", 400),
    "ExpiredTokenException": ("ExpiredToken", 400),
}
THROTTLED_SERVICES = ("ecs", "ssm")
LAG_TICK = 0.010
LAG_SAMPLES = 6000


def load_topology(config: SandboxConfig) -> tuple[topology.Topology, list[str]]:
    """The topology this config asks for, plus notices about it."""
    if config.topology is not None:
        return topology.from_document(config.topology, config.topology_file or "<topology>"), []
    if config.topology_file:
        return topology.load_file(config.topology_file), []
    if config.tasks is not None:
        return topology.from_document(
            topology.generate(config.tasks, seed=config.seed or 0, **config.generator),
            "<generated>",
        ), []
    doc, notices = topology.default_topology()
    return topology.from_document(doc, "<default topology>"), notices


def check_config(config: SandboxConfig) -> None:
    if config.credentials not in CREDENTIAL_MODES:
        raise ConfigurationError(
            f"--credentials must be one of {', '.join(CREDENTIAL_MODES)}, "
            f"not {config.credentials!r}"
        )
    if config.session_limit_mode not in SESSION_LIMIT_MODES:
        raise ConfigurationError("--session-limit-mode must be channel or api")
    if config.session_limit < 1:
        raise ConfigurationError("--session-limit must be at least 1")
    if config.agent_loss not in ("close", "silent"):
        raise ConfigurationError("--agent-loss must be close or silent")


SHARED_NOTICE = (
    "containers share this host's processes, hostname and /tmp ({why}): ps and pgrep in a "
    "container see every process on this host (both demo/orders containers find one JVM)"
)


def namespaces_notice(config: SandboxConfig) -> str | None:
    """None when every container gets its own PID, UTS and mount namespaces; else why not.

    Probes the host once per process (docs/sandbox.md §8.4, namespaces.probe).
    """
    if not config.namespaces:
        return SHARED_NOTICE.format(why="--no-namespaces")
    reason = namespaces.probe()
    if reason is None:
        return None
    return SHARED_NOTICE.format(
        why=f"this host cannot give them their own namespaces: {reason}; run the sandbox as "
        "root, or under `unshare --user --map-root-user`"
    )


def _bind(port: int, what: str) -> socket.socket:
    """A listening socket on 127.0.0.1 only (§1, §16); a busy port is a clear error."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"{what} port {port} on 127.0.0.1 is already in use; choose another with "
                f"--{'metadata-' if what == 'metadata' else ''}port (0 picks a free one)"
            ) from None
        raise ConfigurationError(
            f"cannot bind {what} port {port} on 127.0.0.1: {exc.strerror}"
        ) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _raise_nofile_limit() -> None:
    # docs/sandbox.md §15: about 3 fds per session; the hard limit is the real ceiling.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def session_capacity() -> tuple[int, str]:
    """How many exec sessions this host can hold, and the limit that binds (§15).

    Best effort: PTYs left under ``kernel/pty/max`` (minus the reserve kept for the initial
    devpts), about 3 file descriptors per session, and the process limit.
    """
    limits: dict[str, int] = {}
    try:
        pty = Path("/proc/sys/kernel/pty")
        total, used = int((pty / "max").read_text()), int((pty / "nr").read_text())
        reserve = int((pty / "reserve").read_text())
        limits["ptys"] = max(0, total - reserve - used)
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        limits["file descriptors"] = soft // 3
    nproc, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if nproc != resource.RLIM_INFINITY:
        limits["processes"] = nproc
    if not limits:
        return 0, "unknown"
    name = min(limits, key=lambda k: limits[k])
    return limits[name], name


OWN_INSTALLATION: Final = tuple(
    dict.fromkeys(
        [
            str(Path(__file__).resolve().parents[2]),  # the directory ecsexec is installed in
            sys.prefix,
            sys.base_prefix,
            str(Path(sys.executable).resolve().parent),
        ]
    )
)


class SandboxServer:
    """One sandbox: ``await start()``, then ``await wait_stopped()`` or ``await stop()``."""

    def __init__(self, config: SandboxConfig, *, write_state: bool = True) -> None:
        check_config(config)
        self.config = config
        self.state = StateDir(config.state_dir)
        self.write_state = write_state
        self.topo, self.notices = load_topology(config)
        self.fault_plan: FaultPlan | None = parse_faults(config.faults) if config.faults else None
        self.stats = Stats()
        self.rt = self._new_runtime()
        self.control_token = ""
        self.started_at = 0.0
        self.stopped = asyncio.Event()
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._meta_runner: web.AppRunner | None = None
        self.metadata: MetadataService | None = None
        self.mains: MainProcesses | None = None
        # Each container's own namespaces (None: containers share the host's).
        self.namespaces: namespaces.Namespaces | None = None
        self.isolated = False
        self._container_ns: dict[Container, namespaces.ContainerNamespace] = {}
        self._lag_task: asyncio.Task[None] | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self.port = 0
        self.metadata_port = 0
        self.capacity: tuple[int, str] = (0, "unknown")

    # -- construction -------------------------------------------------------------------------

    def _new_runtime(self) -> Runtime:
        account = str(self.topo.doc.get("account", "123456789012"))
        rt = Runtime(self.config, account, self.stats)
        built = topology.build(self.topo, rt.world)
        rt.access_rules = built.access
        rt.regions = list(rt.world.regions) or ["us-east-1"]
        rt.notices = list(self.notices)
        rt.set_api_faults(self.fault_plan)
        self._built_tasks = built.tasks
        self.ecs = EcsApi(rt)
        self.apis: dict[str, dict[str, Handler]] = {
            "ecs": self.ecs.handlers,
            "ssm": SsmApi(rt, self.ecs).handlers,
            "kms": (kms := KmsApi(rt)).handlers,
            "sts": sts.StsApi(rt).handlers,
        }
        self.kms = kms
        return rt

    def _new_hub(self) -> SessionHub:
        c = self.config
        settings = AgentSettings(
            initial_wait=c.initial_wait,
            agent_start_delay=c.agent_start_delay,
            drain_timeout=c.drain_timeout,
            handshake_timeout=c.handshake_timeout,
            idle_timeout=c.idle_timeout,
            token_ttl=c.token_ttl,
            close_grace=c.close_grace,
            require_challenge_ack=c.require_challenge_ack,
            agent_loss=c.agent_loss,
        )
        hub = SessionHub(
            stats=self.stats,
            settings=settings,
            kms_decrypt=self.kms.agent_decrypt,
            faults=self.fault_plan,
            strict=c.strict,  # §6: only strict mode inspects client frames
        )
        scheme = "wss" if c.tls else "ws"
        hub.bind(f"{scheme}://127.0.0.1:{self.port}")
        return hub

    def _wire(self, rt: Runtime) -> None:
        """Connect a fresh runtime to the hub, the main processes and the namespaces."""
        rt.endpoint_url = self.endpoint_url
        rt.hub = self._new_hub()
        if self.isolated:
            self.namespaces = namespaces.Namespaces(record=self.state.path / "namespaces.json")
            self._container_ns = {}
            rt.namespace_for = self._namespace_for
        mains = self.mains = MainProcesses(
            stats=self.stats,
            record=self.state.path / "mains.json",
            env_for=self.ecs.container_env,
            cwd_for=self.ecs.container_cwd,
            log_dir_for=self.ecs.scratch_dir,
            on_exit=self._main_exited,
            popen_for=self._popen_for,
        )

        async def stop_main(task: Any, timeout: float) -> int | None:
            await mains.stop(task, timeout)
            # The container has stopped: its namespaces end with its last exec'd process.
            for c in task.containers:
                ns = self._container_ns.pop(c, None)
                if ns is not None:
                    ns.retire()
            return None

        rt.stop_main = stop_main
        rt.on_task_started = mains.start if self.config.run_main else (lambda task: None)
        if self.config.run_main:
            for task in self._built_tasks:
                if task.last_status == "RUNNING":
                    mains.start(task)

    def _namespace_for(self, c: Container) -> namespaces.ContainerNamespace | None:
        """The container's namespaces, created (not yet started) on first need."""
        if self.namespaces is None:
            return None
        ns = self._container_ns.get(c)
        if ns is None:
            # Visible inside although under a private /tmp: the container's HOME and cwd,
            # and the sandbox's own installation (its data, e.g. the orders JVM's source,
            # and the interpreter), which a checkout or venv under /tmp would hide.
            keep = [self.ecs.scratch_path(c), *self.config.share, *OWN_INSTALLATION]
            wd = c.definition.get("workingDirectory")
            if isinstance(wd, str) and os.path.isdir(wd):
                keep.append(wd)
            hostname = self.ecs.container_env(c)["HOSTNAME"]
            ns = self._container_ns[c] = self.namespaces.container(hostname, keep)
        return ns

    def _popen_for(self, c: Container) -> Callable[..., subprocess.Popen[bytes]]:
        ns = self._namespace_for(c)
        return ns.popen if ns is not None else subprocess.Popen

    async def start_containers(self) -> int:
        """``POST /_sandbox/containers/start``: start the namespaces (the init) of every
        running task's containers now rather than at their first exec; how many.

        On ECS a container runs long before anyone execs into it, so a benchmark of exec
        fan-out calls this first: otherwise each container's creation (its init, ~1.5 ms
        of CPU) is counted in the first exec's time.
        """
        if self.namespaces is None:
            return 0
        containers = [
            (ns, self.ecs.scratch_path(c))
            for region in self.rt.world.regions.values()
            for cluster in region.cluster_order
            for task in cluster.task_order
            if task.last_status == "RUNNING"
            for c in task.containers
            if (ns := self._namespace_for(c)) is not None
        ]

        def start(ns: namespaces.ContainerNamespace, scratch: str) -> None:
            # The scratch directory (HOME, and the cwd by default) first, as an exec does:
            # the container's private /tmp binds it back only if it exists by then.
            os.makedirs(scratch, mode=0o700, exist_ok=True)
            ns.run(lambda: None)

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, start, *c) for c in containers))
        return len(containers)

    async def _close_namespaces(self) -> None:
        """Kill every container's remaining processes (after sessions and mains)."""
        owner, self.namespaces = self.namespaces, None
        self._container_ns = {}
        self.rt.namespace_for = lambda container: None
        if owner is not None:
            await asyncio.to_thread(owner.close)

    def _main_exited(self, container: Container, code: int) -> None:
        container.exit_code = code
        task = container.task
        # docs/sandbox.md §8.4: an essential main process exiting stops the task.
        if container.essential and task.desired_status == "RUNNING":
            self.ecs.stop(task, "Essential container in task exited", "EssentialContainerExited")

    @property
    def scheme(self) -> str:
        return "https" if self.config.tls else "http"

    @property
    def endpoint_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def metadata_url(self) -> str | None:
        return f"http://127.0.0.1:{self.metadata_port}" if self.metadata_port else None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.state.create()
        if self.write_state:
            self.state.lock()
        try:
            await self._start()
        except BaseException:
            await self._cleanup()
            raise

    async def _start(self) -> None:
        c = self.config
        _raise_nofile_limit()
        self.capacity = session_capacity()
        self.started_at = time.time()
        if c.tls:
            self.ssl_context = tls.server_context(tls.ensure_certificates(self.state.path))
        main_sock = _bind(c.port, "main")
        try:
            meta_sock = _bind(c.metadata_port, "metadata") if c.credentials != "keys" else None
        except ConfigurationError:
            main_sock.close()
            raise
        self.port = main_sock.getsockname()[1]
        if meta_sock is not None:
            self.metadata_port = meta_sock.getsockname()[1]
        self.control_token = self.state.new_control_token()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/", self.handle_api)
        app.router.add_get("/v1/data-channel/{sid}", self.handle_data_channel)
        app.router.add_route("*", "/_sandbox/{path:.*}", self.handle_control)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, main_sock, ssl_context=self.ssl_context).start()
        if meta_sock is not None:
            mode = "container" if c.credentials == "container" else "imds"
            self.metadata = MetadataService(self.rt, mode, imds_v1=c.imds_v1)
            self._meta_runner = web.AppRunner(
                self.metadata.app(), access_log=None, handle_signals=False
            )
            await self._meta_runner.setup()
            await web.SockSite(self._meta_runner, meta_sock).start()
        if self.write_state:
            swept = sweep_leftovers(self.state.path / "mains.json")
            if swept:
                log.warning("killed %d main process group(s) left by a previous sandbox", swept)
            swept = namespaces.sweep(self.state.path / "namespaces.json")
            if swept:
                log.warning("killed %d container init(s) left by a previous sandbox", swept)
        notice = namespaces_notice(c)
        self.isolated = notice is None
        if notice is not None:
            self.notices.append(notice)
            self.rt.notices.append(notice)
        self._wire(self.rt)
        self._write_files()
        self._lag_task = asyncio.get_running_loop().create_task(self._lag_ticker())
        log.info("sandbox ready at %s (regions %s)", self.endpoint_url, ",".join(self.rt.regions))

    def _write_files(self) -> None:
        c = self.config
        ca = self.state.ca_file if c.tls else None
        self.state.write_aws_files(
            region=self.rt.regions[0],
            endpoint_url=self.endpoint_url,
            ca_bundle=ca,
            credential=self.rt.creds.static if c.credentials == "keys" else None,
        )
        if self.metadata is not None and self.metadata.mode == "container":
            write_private(self.state.container_token_file, self.metadata.auth_token)
        self.state.write_info(self.info())

    @property
    def container_uri(self) -> str | None:
        if self.metadata is None or self.metadata.mode != "container":
            return None
        return f"{self.metadata_url}{self.metadata.container_path}"

    def info(self) -> dict[str, Any]:
        """What ``sandbox.json`` holds (§1): no secrets, only paths and URLs."""
        return {
            "pid": os.getpid(),
            "version": _version(),
            "endpoint_url": self.endpoint_url,
            "metadata_url": self.metadata_url,
            "regions": self.rt.regions,
            "account": self.rt.world.account,
            "tls": self.config.tls,
            "ca_bundle": str(self.state.ca_file) if self.config.tls else None,
            "credentials": self.config.credentials,
            "container_credentials_uri": self.container_uri,
            "started_at": self.started_at,
            "capacity": {"sessions": self.capacity[0], "limited_by": self.capacity[1]},
            "state_dir": str(self.state.path),
            "namespaces": self.isolated,
            "notices": self.rt.notices,
        }

    def request_stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            job = asyncio.get_running_loop().create_task(self.stop())
            self.rt.background.add(job)

    async def stop(self) -> None:
        self._stopping = True
        await self._cleanup()
        self.stopped.set()

    async def _cleanup(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        if self.rt.hub is not None:
            await self.rt.hub.shutdown()
        if self.mains is not None:
            await self.mains.stop_all()
        await self._close_namespaces()
        for job in list(self.rt.background):
            if job is not asyncio.current_task():
                job.cancel()
        for runner in (self._runner, self._meta_runner):
            if runner is not None:
                live = runner.server
                # Keep-alive TLS connections would otherwise wait for the client's close_notify
                # and outlive the loop; after the graceful close, cut whatever is left.
                transports = [
                    t for t in (c.transport for c in (live.connections if live else [])) if t
                ]
                await runner.cleanup()
                for transport in transports:
                    transport.abort()
        self._runner = self._meta_runner = None
        if self.write_state:
            self.state.remove_info()
            self.state.token_file.unlink(missing_ok=True)
            self.state.unlock()

    async def wait_stopped(self) -> None:
        await self.stopped.wait()

    async def reset(self) -> None:
        """``POST /_sandbox/reset``: reload the topology, kill processes, clear sessions."""
        old = self.rt
        if old.hub is not None:
            await old.hub.shutdown()
        if self.mains is not None:
            await self.mains.stop_all()
        await self._close_namespaces()
        for job in list(old.background):
            job.cancel()
        creds = old.creds
        self.rt = self._new_runtime()
        # Keep the issued keys: aws-credentials on disk must stay valid.
        self.rt.creds = creds
        if self.metadata is not None:
            self.metadata.rt = self.rt
        self._wire(self.rt)

    async def _lag_ticker(self) -> None:
        # docs/sandbox.md §12: loop lag of a 10 ms ticker.
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(LAG_TICK)
            samples = self.stats.loop_lag_samples  # a fresh list after a stats reset
            samples.append((loop.time() - t0 - LAG_TICK) * 1000.0)
            if len(samples) > LAG_SAMPLES:
                del samples[: len(samples) - LAG_SAMPLES]

    # -- the API pipeline ---------------------------------------------------------------------

    async def handle_api(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        body = await request.read()
        target = request.headers.get("X-Amz-Target")
        service = action = ""
        form: dict[str, str] = {}
        if target:
            prefix, _, action = target.partition(".")
            service = JSON_TARGETS.get(prefix, "")
        elif "x-www-form-urlencoded" in request.headers.get("Content-Type", ""):
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
            service, action = "sts", form.get("Action", "")
        region = sigv4.scope_region(request.headers.get("Authorization")) or self.rt.regions[0]
        error_code: str | None = None
        try:
            if not service:
                raise ApiError(
                    "UnknownOperationException",
                    f"ecsexec sandbox does not implement {target or request.path}",
                )
            result = await self._call(request, body, form, service, action, region, request_id)
            response = self._render(service, action, result, request_id)
        except ApiError as exc:
            error_code = exc.code
            response = self._render_error(service, exc, request_id)
        except Exception:
            # A sandbox bug must still look like an AWS error to the client, and be seen.
            log.exception("%s %s failed inside the sandbox", service, action)
            self.stats.warn("api", "internal_error", f"{service}:{action}")
            error_code = "ServerException"
            response = self._render_error(
                service, ApiError("ServerException", "internal sandbox error", 500), request_id
            )
        finally:
            if service and action:
                self.stats.api_call(
                    region, service, action, time.perf_counter() - started, error_code
                )
        return response

    async def _call(
        self,
        request: web.Request,
        body: bytes,
        form: dict[str, str],
        service: str,
        action: str,
        region: str,
        request_id: str,
    ) -> dict[str, Any]:
        rt = self.rt
        if service == "sts" and action in sts.UNSIGNED:
            cred = Credential(
                access_key="",
                secret_key="",
                token=None,
                principal=f"arn:aws:sts::{rt.world.account}:federated-user/web-identity",
                user_id="web-identity",
            )
        else:
            cred = sigv4.verify(
                method=request.method,
                url=f"{self.scheme}://{request.host}{request.raw_path}",
                headers=request.headers,
                body=body,
                store=rt.creds,
                check_signature=self.config.verify_signatures,
            ).credential
        handler = self.apis[service].get(action)
        if handler is None:
            raise ApiError(
                "UnknownOperationException",
                f"ecsexec sandbox does not implement {SERVICE_TITLES[service]} {action}",
            )
        call = Call(service, action, region, rt.world.account, cred, request_id)
        # docs/sandbox.md §4.2 step 1: the throttle bucket comes first.
        if service in THROTTLED_SERVICES and not rt.throttle.take(rt.world.account, region, action):
            raise ApiError("ThrottlingException", "Rate exceeded")
        injected = rt.api_faults.error_for(action)
        if injected is not None:
            raise ApiError(injected.code, f"injected fault: {action} failed", injected.http_status)
        op_shape = shapes.input_shape(service, action)
        if service == "sts":
            params: dict[str, Any] = sts.parse_form(form, op_shape)
        else:
            try:
                params = json.loads(body or b"{}")
            except ValueError:
                raise ApiError("SerializationException", "the request body is not JSON") from None
            if not isinstance(params, dict):
                raise ApiError("SerializationException", "the request body is not a JSON object")
        # Step 2: the input shape.
        issues = shapes.validate(params, op_shape)
        if issues:
            raise ApiError(VALIDATION_CODES[service], "; ".join(str(i) for i in issues))
        result = await handler(call, params)
        if self.config.strict:
            report = shapes.validate_output(service, action, result)
            if report:
                self.stats.warn("api", "invalid_response", f"{service}:{action}: {report}")
                log.error("%s %s response fails the output shape: %s", service, action, report)
                raise ApiError(
                    "ServerException", f"sandbox response fails botocore's model: {report}", 500
                )
        return result

    def _render(
        self, service: str, action: str, result: dict[str, Any], request_id: str
    ) -> web.Response:
        if service == "sts":
            op = shapes.operation("sts", action)
            return web.Response(
                text=sts.render(action, result, op.output_shape, request_id),
                content_type="text/xml",
                headers={"x-amzn-RequestId": request_id},
            )
        return web.Response(
            body=json.dumps(result, separators=(",", ":")).encode(),
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "x-amzn-RequestId": request_id,
            },
        )

    def _render_error(self, service: str, exc: ApiError, request_id: str) -> web.Response:
        if service == "sts":
            code, status = STS_AUTH_CODES.get(exc.code, (exc.code, exc.status))
            return web.Response(
                status=status,
                text=sts.render_error(code, exc.message, request_id),
                content_type="text/xml",
                headers={"x-amzn-RequestId": request_id},
            )
        # docs/sandbox.md §2: 400 with an unprefixed __type; ServerException is 500.
        status = 500 if exc.code == "ServerException" else exc.status
        return web.Response(
            status=status,
            body=json.dumps({"__type": exc.code, "message": exc.message}).encode(),
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "x-amzn-RequestId": request_id,
            },
        )

    async def handle_data_channel(self, request: web.Request) -> web.StreamResponse:
        hub = self.rt.hub
        if hub is None:
            return web.Response(status=503, text="no data plane\n")
        response: web.StreamResponse = await hub.handle_data_channel(request)
        return response

    # -- /_sandbox control ----------------------------------------------------------------------

    async def handle_control(self, request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {self.control_token}"
        if not self.control_token or not hmac.compare_digest(given.encode(), expected.encode()):
            return web.json_response({"message": "missing or wrong control token"}, status=401)
        path = request.match_info["path"].strip("/")
        method = request.method
        hub = self.rt.hub
        try:
            body: Any = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"message": "body is not JSON"}, status=400)
        parts = path.split("/")
        if method == "GET" and path == "health":
            return web.json_response(
                {
                    "status": "ok",
                    "pid": os.getpid(),
                    "endpoint_url": self.endpoint_url,
                    "regions": self.rt.regions,
                    "uptime": round(time.time() - self.started_at, 3),
                    "sessions_active": self.stats.sessions.active,
                }
            )
        if method == "GET" and path == "stats":
            return web.json_response(self.stats.as_dict())
        if method == "POST" and path == "stats/reset":
            self.stats.reset()
            return web.json_response({"ok": True})
        if method == "GET" and path == "sessions":
            return web.json_response({"sessions": hub.list_sessions() if hub else []})
        if method == "GET" and path == "info":
            return web.json_response({**self.info(), "notices": self.rt.notices})
        if method == "POST" and path == "reset":
            await self.reset()
            return web.json_response({"ok": True})
        if method == "POST" and path == "shutdown":
            self.request_stop()
            return web.json_response({"ok": True})
        if method == "POST" and path == "containers/start":
            try:
                started = await self.start_containers()
            except CannotStart as exc:  # e.g. the sandbox is stopping
                return web.json_response({"message": str(exc)}, status=409)
            return web.json_response({"containers": started})
        if method == "POST" and path == "faults":
            return self._control_faults(body)
        if method == "POST" and len(parts) == 3 and parts[0] == "sessions" and hub is not None:
            sid, verb = parts[1], parts[2]
            if verb == "disconnect":
                await hub.disconnect_client(sid)
                return web.json_response({"ok": True})
            if verb == "pause":
                await hub.pause(sid)
                return web.json_response({"ok": True})
        if (
            method == "POST"
            and len(parts) == 4
            and parts[0] == "containers"
            and parts[3] == "agent"
        ):
            return self._control_agent(parts[1], parts[2], body)
        return web.json_response(
            {"message": f"unknown control request {method} /{path}"}, status=404
        )

    def _control_faults(self, body: Any) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("spec", ""), str):
            return web.json_response(
                {"message": 'expected {"spec": "...", "session": "..."}'}, status=400
            )
        spec = body.get("spec", "")
        session = body.get("session")
        try:
            plan = parse_faults(spec) if spec else None
        except ConfigurationError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        hub = self.rt.hub
        if session:
            if hub is None:
                return web.json_response({"message": "no data plane"}, status=503)
            try:
                hub.set_faults(plan, session_id=str(session))
            except KeyError:
                return web.json_response({"message": f"unknown session {session}"}, status=404)
            return web.json_response({"ok": True})
        self.fault_plan = plan
        self.rt.set_api_faults(plan)
        if hub is not None:
            hub.set_faults(plan)
        return web.json_response({"ok": True})

    def _control_agent(self, task_id: str, name: str, body: Any) -> web.Response:
        status = body.get("lastStatus") if isinstance(body, dict) else None
        if status not in ("PENDING", "RUNNING", "STOPPED"):
            return web.json_response(
                {"message": "lastStatus must be PENDING, RUNNING or STOPPED"}, status=400
            )
        for region in self.rt.world.regions.values():
            for cluster in region.clusters.values():
                task = cluster.tasks.get(task_id)
                container = task.container(name) if task else None
                if task is not None and container is not None:
                    container.sandbox.agent = status
                    task.version += 1
                    if status != "RUNNING" and self.rt.hub is not None:
                        # Sessions on an agent that went away are lost (§6 agent loss).
                        job = asyncio.get_running_loop().create_task(
                            self._agent_lost(task.arn, container.name)
                        )
                        self.rt.background.add(job)
                        job.add_done_callback(self.rt.background.discard)
                    return web.json_response({"ok": True, "taskArn": task.arn})
        return web.json_response({"message": f"no container {name} in task {task_id}"}, status=404)

    async def _agent_lost(self, task_arn: str, container: str) -> None:
        hub = self.rt.hub
        if hub is None:
            return
        for s in hub.list_sessions():
            if (
                s["taskArn"] == task_arn
                and s["containerName"] == container
                and s["state"] == "active"
            ):
                await hub.stop_task(task_arn, "agent_lost")
                return


async def serve(config: SandboxConfig, *, ready: Any = None) -> None:
    """Run a sandbox until shutdown is requested (``POST /_sandbox/shutdown`` or a signal)."""
    server = SandboxServer(config)
    await server.start()
    if ready is not None:
        ready(server)
    try:
        await server.wait_stopped()
    finally:
        if not server.stopped.is_set():
            await server.stop()
