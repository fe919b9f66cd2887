"""The engine: :class:`Client`, what the CLI, the web console and the Rundeck plugin share.

A client owns the project configuration, one credential factory per credential set, the
node inventory with its cache, and one connector pool (ECS, SSM and KMS per region)
whose lifetime is the ``async with`` block. It selects nodes, runs commands and jobs,
opens interactive sessions and records history, and reports everything as one stream of
events (:mod:`ecsexec.app.events`). It never prints and never touches the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import threading
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from ecsexec.app.events import Event, EventCallback, RunFinished, RunStarted
from ecsexec.app.interactive import InteractiveSession
from ecsexec.app.selection import Discovery, Selection, SourceOverrides, apply_filter
from ecsexec.aws.clients import SessionFactory
from ecsexec.aws.credentials import SessionFactories
from ecsexec.aws.ecs import EcsApi
from ecsexec.aws.ssm import SsmSessionControl
from ecsexec.config import Config, load_config
from ecsexec.errors import (
    EXIT_INTERRUPTED,
    EXIT_NOT_RUN,
    ConfigurationError,
    EcsexecError,
    Status,
)
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.dispatcher import (
    DispatchOptions,
    NodeFinished,
    NodeSessionStarted,
    NodeStarted,
    dispatch,
)
from ecsexec.exec.results import CommandResult, RunResult
from ecsexec.exec.runner import ContainerTarget, start_exec_session
from ecsexec.exec.trailer import TrailerFilter, with_exit_trailer
from ecsexec.exec.wrap import raw as raw_command
from ecsexec.exec.wrap import wrap
from ecsexec.jobs.events import NodeUpdated
from ecsexec.nodes.ecs_attributes import REGION, TASK_ID
from ecsexec.nodes.ecs_source import ProgressFn, describe_container
from ecsexec.nodes.node import Node
from ecsexec.ssm.session import SessionOptions
from ecsexec.store.history import History, NodeRecord, RunRecorder, local_user, outcome_fields
from ecsexec.store.history import default_path as default_history_path

if TYPE_CHECKING:  # the job and copy modules are imported by their methods: `run` needs none
    from ecsexec.exec.copy import CopiedCallback, LocalDestination, LocalSource, ProgressCallback
    from ecsexec.jobs.executor import JobResult
    from ecsexec.jobs.library import LoadedJob
    from ecsexec.jobs.model import Job

DEFAULT_SHELL: Final = "/bin/sh -c 'command -v bash >/dev/null 2>&1 && exec bash || exec sh'"

Target = str | Selection | Sequence[str | Node]
"""What to run on: a node filter, a :class:`Selection`, or node names (or nodes)."""


@dataclasses.dataclass(frozen=True)
class JobPlan:
    """A job ready to run: its options resolved, its filter expanded, its nodes selected."""

    loaded: LoadedJob
    options: Mapping[str, str]
    selection: Selection

    @property
    def job(self) -> Job:
        return self.loaded.job


class Run:
    """A run that has been asked for: ``await`` it for the :class:`RunResult`, or
    ``async for event in run`` to see its events as they happen (the last one is
    :class:`RunFinished`). It starts on the first ``await`` or iteration.

    If an event callback raises (a closed stdout, say), the run is interrupted, every
    open session is terminated, and the callback's exception is raised from the ``await``.
    """

    def __init__(
        self,
        body: Callable[[EventCallback], Awaitable[RunResult]],
        on_event: EventCallback | None,
        tasks: set[asyncio.Task[RunResult]],
    ) -> None:
        self._body = body
        self._on_event = on_event
        self._tasks = tasks
        self._task: asyncio.Task[RunResult] | None = None
        self._queue: asyncio.Queue[Event | None] | None = None
        self._callback_error: BaseException | None = None

    def _start(self) -> asyncio.Task[RunResult]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._main())
            self._tasks.add(self._task)
            self._task.add_done_callback(self._tasks.discard)
        return self._task

    async def _main(self) -> RunResult:
        try:
            result = await self._body(self._emit)
        finally:
            if self._queue is not None:
                self._queue.put_nowait(None)  # the end, however it came
        if self._callback_error is not None:
            raise self._callback_error
        return result

    def _emit(self, event: Event) -> None:
        if self._queue is not None:
            self._queue.put_nowait(event)
        if self._on_event is None or self._callback_error is not None:
            return
        try:
            self._on_event(event)
        except Exception as exc:  # the consumer broke: stop the run cleanly, then say why
            self._callback_error = exc
            if self._task is not None and not self._task.done():
                self._task.cancel()

    def __await__(self) -> Generator[Any, None, RunResult]:
        return self._start().__await__()

    def __aiter__(self) -> Run:
        if self._queue is None:
            if self._task is not None:
                raise RuntimeError("iterate a run before awaiting it, not after")
            self._queue = asyncio.Queue()
        self._start()
        return self

    async def __anext__(self) -> Event:
        assert self._queue is not None, "use `async for event in run`"
        event = await self._queue.get()
        if event is None:
            task = self._start()
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
            raise StopAsyncIteration
        return event

    def cancel(self) -> None:
        """Interrupt the run: every open session is terminated; the result says so."""
        if self._task is not None:
            self._task.cancel()


class Client:
    """``async with ecsexec.Client() as client:`` the engine behind every front end.

    ``config`` defaults to the CLI's lookup: ``config_path``, else ``$ECSEXEC_CONFIG``,
    else ``ecsexec.toml`` in the working directory or above, with ``ECSEXEC_*``
    variables on top. ``sources`` replaces the configured ``[[sources]]`` (the CLI's
    ``--region``, ``--cluster``, ``--nodes-file``). ``history`` is True (the default
    history database, unless ``ECSEXEC_HISTORY=off``), False, or a database path.
    ``session_factory`` (``region -> boto3.Session``) replaces the configured credentials
    for everything, as the demo does to reach its private sandbox.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        config_path: str | PathLike[str] | None = None,
        profile: str | None = None,
        sources: SourceOverrides | None = None,
        history: bool | str | PathLike[str] = True,
        session_options: SessionOptions | None = None,
        session_factory: SessionFactory | None = None,
    ) -> None:
        self.config = config if config is not None else load_config(config_path, profile=profile)
        self._factories = SessionFactories(secret_reader=self.config.read_password)
        self.discovery = Discovery(
            self.config, sources or SourceOverrides(), self._factories, session_factory
        )
        self._history = history
        self._session_options = session_options
        self._pool: ConnectorPool | None = None
        self._pool_lock = threading.Lock()  # warm_up() builds it from a worker thread
        self._warming: threading.Thread | None = None
        self._inventory: tuple[list[Node], list[str]] | None = None
        self._tasks: set[asyncio.Task[RunResult]] = set()
        self._open: dict[str, str] = {}  # node -> session id ("" until known), while running

    # --- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Interrupt runs still going (their sessions are terminated), close connections."""
        running = [task for task in self._tasks if not task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.aclose()

    def warm_up(self) -> None:
        """Start building what running a command needs (credentials, the default region's
        ExecuteCommand client, the HTTP library) in a background thread, so the first
        ExecuteCommand does not wait for it after node selection. For front ends that know
        a run follows; failures are left for the run itself to report."""
        if self._warming is None:
            self._warming = threading.Thread(target=self._warm, name="ecsexec-warm-up", daemon=True)
            self._warming.start()

    def _warm(self) -> None:
        with contextlib.suppress(Exception):
            region = self.discovery.default_region()
            if region:
                self._connectors([], region).prepare(region)

    def open_sessions(self) -> list[tuple[str, str]]:
        """(node, session id) of every session a run of this client has open right now;
        the id is empty while ExecuteCommand has not answered yet."""
        return list(self._open.items())

    # --- nodes ---------------------------------------------------------------------------

    async def inventory(
        self, *, refresh: bool = False, progress: ProgressFn | None = None
    ) -> tuple[list[Node], list[str]]:
        """Every node the sources give (discovered once per client unless ``refresh``),
        with the discovery's warnings."""
        if self._inventory is None or refresh:
            self._inventory = await asyncio.to_thread(
                self.discovery.discover, refresh=refresh, progress=progress
            )
        return self._inventory

    async def nodes(
        self,
        filter: str | None = None,
        *,
        refresh: bool = False,
        include_precedence: bool = False,
        rank_attribute: str = "nodename",
        rank_order: str = "ascending",
        progress: ProgressFn | None = None,
    ) -> Selection:
        """The nodes ``filter`` selects (every node without one), in rank order.

        Raises :class:`~ecsexec.errors.FilterSyntaxError` (with the column) for a bad
        filter; doubtful filters give ``warnings`` instead, which never change the result.
        """
        inventory, warnings = await self.inventory(refresh=refresh, progress=progress)
        chosen, filter_warnings = apply_filter(
            inventory,
            filter,
            include_precedence=include_precedence,
            rank_attribute=rank_attribute,
            rank_order=rank_order,
        )
        return Selection(
            tuple(chosen), filter, tuple(filter_warnings), tuple(inventory), tuple(warnings)
        )

    async def find_node(self, wanted: str, *, refresh: bool = False) -> Node:
        """One node: its exact name, a unique name prefix, its task ID (one container), or
        a filter selecting only it. Several matches are an error listing them."""
        inventory, _ = await self.inventory(refresh=refresh)
        for node in inventory:
            if node.name == wanted:
                return node
        prefixed = [node for node in inventory if node.name.startswith(wanted)]
        if not prefixed:
            prefixed = [node for node in inventory if node.get(TASK_ID) == wanted]
        if len(prefixed) == 1:
            return prefixed[0]
        if not prefixed:
            try:
                prefixed, _ = apply_filter(inventory, wanted)
            except EcsexecError:
                prefixed = []
        if len(prefixed) == 1:
            return prefixed[0]
        if not prefixed:
            raise ConfigurationError(
                f"no node is named {wanted!r}, starts with it, or matches it as a filter "
                "(ecsexec nodes lists them)"
            )
        names = ", ".join(n.name for n in prefixed[:5]) + (", ..." if len(prefixed) > 5 else "")
        raise ConfigurationError(f"{wanted!r} matches {len(prefixed)} nodes ({names}); pick one")

    async def container(
        self, task: str, container: str, *, cluster: str, region: str | None = None
    ) -> Node:
        """The node of one container named directly, with one DescribeTasks and no listing
        (what a Rundeck node's attributes name: cluster, task ARN, container, region).

        ``region`` defaults as for discovery (``--region``, ``[aws] region``, AWS_REGION).
        """
        where = region or self.discovery.default_region()
        if not where:
            raise ConfigurationError(
                "no AWS region for the task: pass --region or set AWS_REGION / AWS_DEFAULT_REGION"
            )
        api = EcsApi(self.discovery.session_factory()(where), region=where)
        return await asyncio.to_thread(
            describe_container, api, cluster=cluster, task=task, container=container, region=where
        )

    async def select(self, target: Target) -> Selection:
        """A :class:`Selection` for any :data:`Target`."""
        if isinstance(target, Selection):
            return target
        if isinstance(target, str):
            return await self.nodes(target)
        if all(isinstance(item, Node) for item in target):
            # Nodes in hand need no discovery (a container named directly, say).
            return Selection(tuple(item for item in target if isinstance(item, Node)))
        inventory, warnings = await self.inventory()
        by_name = {node.name: node for node in inventory}
        chosen: list[Node] = []
        for item in target:
            if isinstance(item, Node):
                chosen.append(item)
            elif item in by_name:
                chosen.append(by_name[item])
            else:
                raise ConfigurationError(f"no node is named {item!r} (ecsexec nodes lists them)")
        return Selection(tuple(chosen), None, (), tuple(inventory), tuple(warnings))

    # --- running -------------------------------------------------------------------------

    def dispatch_options(
        self,
        *,
        threads: int | None = None,
        rate: float | None = None,
        timeout: float | None = None,
        keepgoing: bool | None = None,
        burst: int | None = None,
    ) -> DispatchOptions:
        """Dispatch options: what is given, else ``[dispatch]`` of the configuration."""
        defaults = self.config.dispatch
        return DispatchOptions(
            threads=defaults.threads if threads is None else threads,
            rate=defaults.rate if rate is None else rate,
            burst=defaults.burst if burst is None else burst,
            timeout=defaults.timeout if timeout is None else timeout,
            keepgoing=defaults.keepgoing if keepgoing is None else keepgoing,
        )

    def run(
        self,
        target: Target,
        command: str,
        *,
        raw: bool = False,
        stdin: bytes | None = None,
        threads: int | None = None,
        rate: float | None = None,
        timeout: float | None = None,
        keepgoing: bool | None = None,
        burst: int | None = None,
        on_event: EventCallback | None = None,
        record: bool = True,
        user: str | None = None,
    ) -> Run:
        """Run ``command`` (a shell command line) on every node of ``target``.

        Each node's result has its real exit code and exact output; a node that cannot
        run, times out or is interrupted keeps the output received so far. Dispatch
        options default to ``[dispatch]``. The run is recorded in history unless
        ``record`` is false, as ``user``'s (default: the local user; a server names its
        own user).
        """

        _refuse_nul(command)

        async def body(emit: EventCallback) -> RunResult:
            selection = await self.select(target)
            if not selection:
                raise ConfigurationError(_no_nodes(selection))
            targets = _targets(selection.nodes)
            wrapped = raw_command(command) if raw else wrap(command, stdin=stdin)
            options = self.dispatch_options(
                threads=threads, rate=rate, timeout=timeout, keepgoing=keepgoing, burst=burst
            )
            pool = self._connectors(targets)

            async def execute(tee: EventCallback, run_id: int | None) -> RunResult:
                return await dispatch(pool, targets, wrapped, options=options, on_event=tee)

            fields = {"command": command, "filter": selection.filter or ""}
            if user is not None:
                fields["user"] = user
            return await self._recorded(
                "run",
                command,
                selection,
                fields,
                record,
                emit,
                execute,
                selected=isinstance(target, Selection),
            )

        return Run(body, on_event, self._tasks)

    def copy(
        self,
        target: Target,
        source: str | PathLike[str] | BinaryIO,
        destination: str | PathLike[str] | BinaryIO,
        *,
        download: bool = False,
        recursive: bool = False,
        preserve: bool = False,
        threads: int | None = None,
        rate: float | None = None,
        timeout: float | None = None,
        keepgoing: bool | None = None,
        burst: int | None = None,
        on_event: EventCallback | None = None,
        on_progress: ProgressCallback | None = None,
        on_copied: CopiedCallback | None = None,
        record: bool = True,
    ) -> Run:
        """Copy a file (a directory with ``recursive``) to every node of ``target``, or,
        with ``download``, from the one node ``target`` selects.

        An upload's ``source`` is a local path or a binary stream (spooled first, so every
        node gets it whole); ``destination`` is the path on the nodes, where a trailing
        ``/`` or an existing directory means "in that directory, under the source's
        name". A download's ``source`` is the path on the node and ``destination`` a
        local path or a binary stream. Every copy is checked end to end (SHA-256, or
        ``cksum`` where the container lacks sha256sum) and put in place only then; the
        result has the shape of :meth:`run`'s: one result per node, exit code 125 with
        the reason as output when a copy was refused or did not check out.
        ``on_progress`` gets (node, bytes so far, total); ``on_copied`` gets (node, path)
        for each completed copy.
        """

        # File copy (tar, its checks) loads only when used: ~4 ms of every start-up.
        from ecsexec.exec.copy import download_command, upload_command

        async def body(emit: EventCallback) -> RunResult:
            selection = await self.select(target)
            if not selection:
                raise ConfigurationError(_no_nodes(selection))
            if download and len(selection) != 1:
                names = ", ".join(selection.names[:5]) + (", ..." if len(selection) > 5 else "")
                raise ConfigurationError(
                    f"a download needs exactly one node; {len(selection)} selected ({names})"
                )
            targets = _targets(selection.nodes)
            local: LocalSource | None = None
            if download:
                destination_spec = _local_destination(destination, recursive, preserve)
                build = download_command(
                    str(source),
                    destination_spec,
                    on_progress=on_progress,
                    on_copied=on_copied,
                )
                title = f"cp {selection.names[0]}:{source} {_show(destination)}"
            else:
                if not isinstance(destination, str):
                    raise ConfigurationError("an upload's destination is a path on the nodes")
                stop = threading.Event()  # Ctrl-C ends the spooling or packing too
                try:
                    local = await asyncio.to_thread(
                        _local_source, source, recursive, preserve, stop
                    )
                except asyncio.CancelledError:
                    stop.set()  # the thread removes what it wrote; no node was started
                    now = datetime.now(UTC)
                    title = f"cp {_show(source)} :{destination}"
                    return RunResult(
                        title,
                        {
                            t.node: CommandResult(
                                t.node, title, Status.NOT_STARTED, None, b"", now, now
                            )
                            for t in targets
                        },
                        interrupted=True,
                    )
                build = upload_command(
                    local,
                    destination,
                    preserve=preserve,
                    on_progress=on_progress,
                    on_copied=on_copied,
                )
                title = f"cp {_show(source)} :{destination}"
            options = self.dispatch_options(
                threads=threads, rate=rate, timeout=timeout, keepgoing=keepgoing, burst=burst
            )
            pool = self._connectors(targets)

            async def execute(tee: EventCallback, run_id: int | None) -> RunResult:
                return await dispatch(
                    pool, targets, build, options=options, on_event=tee, command=title
                )

            fields = {"command": title, "filter": selection.filter or ""}
            try:
                return await self._recorded(
                    "run",
                    title,
                    selection,
                    fields,
                    record,
                    emit,
                    execute,
                    selected=isinstance(target, Selection),
                )
            finally:
                if local is not None:
                    local.close()

        return Run(body, on_event, self._tasks)

    async def plan_job(
        self,
        job: Job | LoadedJob | str | PathLike[str],
        options: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
        filter: str | None = None,
    ) -> JobPlan:
        """Load and check a job, resolve its options and select its nodes, running nothing.

        ``filter`` replaces the job's own; either may use ``${option.x}``.
        """
        from ecsexec.jobs.expand import Context, expand_raw, resolve_options
        from ecsexec.jobs.library import LoadedJob, load_job
        from ecsexec.jobs.model import Job

        if isinstance(job, LoadedJob):
            loaded = job
        elif isinstance(job, Job):
            if not job.where.file:
                raise ConfigurationError(f"job {job.path!r} has no file to resolve references in")
            loaded = load_job(Path(job.where.file), job.path)
        else:
            loaded = load_job(Path(job), name)
        the_job = loaded.job
        resolved = resolve_options(the_job, options or {})
        text = filter if filter is not None else the_job.filter
        if not text or not text.strip():
            raise ConfigurationError(
                f"job {the_job.path!r} has no node filter; give one (-F FILTER)"
            )
        dispatch_rules = the_job.dispatch
        selection = await self.nodes(
            expand_raw(text, Context(resolved)),
            include_precedence=not dispatch_rules.exclude_precedence,
            rank_attribute=dispatch_rules.rank_attribute,
            rank_order=dispatch_rules.rank_order,
        )
        if not selection and not dispatch_rules.success_on_empty:
            raise ConfigurationError(_no_nodes(selection))
        return JobPlan(loaded, resolved, selection)

    def run_job(
        self,
        job: JobPlan | Job | LoadedJob | str | PathLike[str],
        options: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
        filter: str | None = None,
        rate: float | None = None,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        record: bool = True,
        user: str | None = None,
    ) -> Run:
        """Run a job (a file, a loaded job, or a :class:`JobPlan`) on its nodes.

        The job file decides how many nodes run at once and whether a failed node stops
        the others (``threadcount``, ``keepgoing``); ``rate`` and ``timeout`` default to
        ``[dispatch]``. Each node's result is the worst of its steps, with the whole
        (secure-option-masked) output of them all. ``user`` (default: the local user) is
        ``${job.username}`` and who history records.
        """

        from ecsexec.jobs.executor import JobExecutor
        from ecsexec.jobs.expand import masked_options

        async def body(emit: EventCallback) -> RunResult:
            plan = (
                job
                if isinstance(job, JobPlan)
                else await self.plan_job(job, options, name=name, filter=filter)
            )
            the_job = plan.job
            targets = _targets(plan.selection.nodes)
            pool = self._connectors(targets)
            options_used = self.dispatch_options(rate=rate, timeout=timeout)
            title = f"job {the_job.path}"
            fields: dict[str, str | Mapping[str, str]] = {
                "job": the_job.path,
                "job_file": plan.loaded.file,
                "command": "; ".join(step.label() for step in the_job.steps),
                "filter": plan.selection.filter or "",
                "options": masked_options(the_job, plan.options),
            }
            if user is not None:
                fields["user"] = user

            async def execute(tee: EventCallback, run_id: int | None) -> RunResult:
                executor = JobExecutor(
                    plan.loaded.library,
                    pool,
                    inventory=plan.selection.inventory,
                    options=options_used,
                    on_event=tee,
                    execid=str(run_id) if run_id is not None else secrets.token_hex(4),
                    username=user or local_user(),
                )
                return _job_run_result(
                    title, await executor.run(the_job, plan.options, plan.selection.nodes)
                )

            return await self._recorded(
                "job",
                title,
                plan.selection,
                fields,
                record,
                emit,
                execute,
                selected=isinstance(job, JobPlan),
            )

        return Run(body, on_event, self._tasks)

    async def open_session(
        self, node: str | Node, command: str | None = None, *, raw: bool = False
    ) -> InteractiveSession:
        """Start ``command`` (default: bash if the container has it, else sh) in one
        container and return the session, not yet attached: use it in ``async with``.

        ``node`` is a node, its name, a unique name prefix, its task ID, or a filter
        selecting one node. The command runs under ``/bin/sh``, which reports its exit
        status (``session.exit_code``) on a line the output never shows; with ``raw``
        it is sent to ECS Exec as it is (no /bin/sh needed; exit status unknown). ECS
        Exec splits commands as a shell would split words, without expanding anything.
        """
        text = command or DEFAULT_SHELL
        _refuse_nul(text)
        chosen = node if isinstance(node, Node) else await self.find_node(node)
        target = _targets([chosen])[0]
        connector = self._connectors([target])(target)
        trailer = None
        sent = text
        if not raw:
            built = with_exit_trailer(text)
            sent, trailer = built.ecs_command, TrailerFilter(built.marker)
        started = await start_exec_session(connector, target, raw_command(sent))
        return InteractiveSession(chosen, text, connector.session(started), trailer)

    async def cleanup_run(self, run_id: int) -> list[SessionCleanup]:
        """Terminate the sessions a recorded run may have left running: its nodes that
        have a session id and no outcome (the process died, or a forced exit).

        Each is ended through ``ssm:TerminateSession`` in its region, in parallel; AWS
        answers success for a session that had already ended.
        """
        history = self._open_history()
        try:
            record = history.run(run_id)
        finally:
            history.close()
        if record is None:
            raise ConfigurationError(f"no run #{run_id} in the history")
        if record.status == Status.RUNNING:
            raise ConfigurationError(
                f"run #{run_id} is still running (pid {record.pid} on {record.host}); stop it first"
            )
        left = [
            node
            for node in record.nodes
            if node.session_id and node.status in (Status.RUNNING, Status.INCOMPLETE)
        ]
        factory = self.discovery.session_factory()

        async def end(node: NodeRecord) -> SessionCleanup:
            region = node.region or self.discovery.default_region() or ""
            try:
                control = SsmSessionControl(factory(region))
                await asyncio.to_thread(control.terminate_session, node.session_id)
            except EcsexecError as exc:
                return SessionCleanup(node.node, node.session_id, region, str(exc))
            return SessionCleanup(node.node, node.session_id, region, "")

        return list(await asyncio.gather(*(end(node) for node in left)))

    def _open_history(self) -> History:
        if self._history is False:
            raise ConfigurationError("history is off for this client")
        path = default_history_path() if self._history is True else Path(self._history)
        if path is None:
            raise ConfigurationError("history is off (ECSEXEC_HISTORY=off)")
        if not path.exists():
            raise ConfigurationError(f"there is no history yet at {path}")
        return History(path)

    # --- internals -----------------------------------------------------------------------

    def _connectors(
        self, targets: Sequence[ContainerTarget], region: str | None = None
    ) -> ConnectorPool:
        with self._pool_lock:
            if self._pool is None:
                if region is None:
                    region = self.discovery.default_region() if targets else None
                    region = region or (targets[0].region if targets else "")
                self._pool = ConnectorPool(
                    self.discovery.session_factory(),
                    default_region=region or "",
                    options=self._session_options,
                )
            self._pool.expect(len(targets))
            return self._pool

    async def _recorded(
        self,
        kind: str,
        title: str,
        selection: Selection,
        fields: Mapping[str, str | Mapping[str, str]],
        record: bool,
        emit: EventCallback,
        execute: Callable[[EventCallback, int | None], Awaitable[RunResult]],
        *,
        selected: bool,
    ) -> RunResult:
        """Run ``execute`` between RunStarted and RunFinished, recording it in history.

        The result's warnings include the selection's when the caller did not select the
        nodes itself (a filter or node names instead of a :class:`Selection`).
        """
        unseen = () if selected else (*selection.discovery_warnings, *selection.warnings)
        recorder = RunRecorder(None, None)
        if record and self._history is not False:
            path = None if self._history is True else Path(self._history)
            recorder = RunRecorder.open(kind=kind, nodes=selection.names, path=path, **fields)
            retention = self.config.history
            recorder.prune(keep_days=retention.keep_days, keep_runs=retention.keep_runs)

        regions = {node.name: node.get(REGION) or "" for node in selection.nodes}

        def tee(event: Event) -> None:
            if isinstance(event, NodeStarted):
                self._open[event.node] = ""
            elif isinstance(event, NodeSessionStarted):
                # Before anything else: after a crash this is how the session is found.
                self._open[event.node] = event.session_id
                recorder.record_session(event.node, event.session_id, regions.get(event.node, ""))
            elif isinstance(event, NodeFinished):
                self._open.pop(event.node, None)
            if kind == "job" and isinstance(event, NodeUpdated):
                # The job's steps so far; the node's outcome is only known at the end.
                summary = event.summary
                recorder.record_node(
                    summary.node,
                    status=Status.RUNNING,
                    exit_code=summary.exit_code,
                    duration_s=summary.duration,
                    detail=summary.detail,
                    log=summary.output,
                )
            elif kind == "run" and isinstance(event, NodeFinished):
                recorder.record_node(event.node, **outcome_fields(event.outcome))
            emit(event)

        emit(RunStarted(title, tuple(selection.names), recorder.run_id))
        try:
            result = await execute(tee, recorder.run_id)
        except EcsexecError as exc:
            recorder.finish(exc.exit_code)
            raise
        except asyncio.CancelledError:
            recorder.finish(EXIT_INTERRUPTED)
            raise
        except BaseException:
            recorder.finish(EXIT_NOT_RUN)
            raise
        if kind == "job":
            for node in result:
                if node.status is not Status.NOT_STARTED:
                    recorder.record_node(node.node, **outcome_fields(node))
        recorder.finish(result.exit_status)
        result = dataclasses.replace(
            result,
            run_id=recorder.run_id,
            warnings=(*unseen, *recorder.errors),
        )
        emit(RunFinished(result))
        return result


@dataclasses.dataclass(frozen=True)
class SessionCleanup:
    """One leftover session and what ending it did (``error`` is empty on success)."""

    node: str
    session_id: str
    region: str
    error: str = ""


def _refuse_nul(command: str) -> None:
    """A NUL byte cannot travel in ExecuteCommand's command (a C string on the agent)."""
    position = command.find("\0")
    if position != -1:
        raise ConfigurationError(
            f"the command has a NUL byte at position {position + 1}; ECS Exec cannot carry it"
        )


def _show(place: str | PathLike[str] | BinaryIO) -> str:
    return str(place) if isinstance(place, str | PathLike) else "-"


def _local_source(
    source: str | PathLike[str] | BinaryIO,
    recursive: bool,
    preserve: bool,
    stop: threading.Event,
) -> LocalSource:
    from ecsexec.exec.copy import LocalSource

    if isinstance(source, str | PathLike):
        return LocalSource.from_path(
            Path(source), recursive=recursive, preserve=preserve, stop=stop
        )
    return LocalSource.from_stream(source, "stdin", stop=stop)


def _local_destination(
    destination: str | PathLike[str] | BinaryIO, recursive: bool, preserve: bool
) -> LocalDestination:
    from ecsexec.exec.copy import LocalDestination

    if isinstance(destination, str | PathLike):
        return LocalDestination(Path(destination), None, recursive, preserve)
    return LocalDestination(None, destination, recursive, preserve)


def _targets(nodes: Sequence[Node]) -> list[ContainerTarget]:
    return [ContainerTarget.from_attributes(node.name, node.attributes) for node in nodes]


def _no_nodes(selection: Selection) -> str:
    if selection.filter is None:
        return "no nodes given"
    return f"no nodes match the filter {selection.filter!r}"


def _job_run_result(title: str, job_result: JobResult) -> RunResult:
    """A job's outcome in the shape of any run: one result per node, worst step first."""
    now = datetime.now(UTC)
    results = {}
    for name, summary in job_result.nodes.items():
        results[name] = CommandResult(
            node=name,
            command=title,
            status=summary.status,
            exit_code=summary.exit_code,
            output=summary.output,
            started_at=summary.started_at or now,
            finished_at=summary.finished_at or now,
            reason=summary.detail,
        )
    workflow = tuple(r.status for r in job_result.steps if r.top and r.node is None)
    return RunResult(title, results, job_result.interrupted, workflow=workflow)
