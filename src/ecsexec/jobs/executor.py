"""Run a job: steps × nodes in node-first, step-first or parallel order, as Rundeck does.

Node steps (``exec``, ``script``, node-step ``jobref``) run once per node; a workflow
``jobref`` runs the referenced job once, on its own nodes. ``sequence.keepgoing`` decides
whether a failed step stops the workflow; ``dispatch.keepgoing`` whether a failed node
stops the others from starting; ``threadcount`` how many nodes run at once. A failed step
runs its ``errorhandler`` on the same node: when the handler succeeds, the step counts as
*recovered* if the workflow keeps going or the handler says ``keepgoingOnSuccess``.

Everything is reported as events (the dispatcher's node events plus the job events
below); nothing is printed here. Secure option values are replaced by ``****`` in every
output chunk, result and captured value before anyone sees them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final

from ecsexec.errors import ConfigurationError, EcsexecError, Status, exit_status
from ecsexec.exec.dispatcher import (
    DispatchOptions,
    NodeFinished,
    NodeNotice,
    NodeOutput,
    NodeRunner,
    ProgressEvent,
)
from ecsexec.exec.results import CommandResult
from ecsexec.exec.runner import Connector, ContainerTarget
from ecsexec.exec.wrap import wrap
from ecsexec.jobs.events import (
    DataCaptured,
    JobNotice,
    NodeSummary,
    NodeUpdated,
    StepFinished,
    StepResult,
    StepStarted,
)
from ecsexec.jobs.expand import (
    Context,
    Redactor,
    capture,
    expand_raw,
    parse_jobref_args,
    resolve_options,
    split_args,
)
from ecsexec.jobs.library import MAX_DEPTH, JobLibrary
from ecsexec.jobs.model import Dispatch, Job, Step
from ecsexec.jobs.script_source import fetch_script_url, read_script_file
from ecsexec.jobs.steps import step_command
from ecsexec.nodes.filter import parse_filter, rank, select
from ecsexec.nodes.node import Node

# Which status wins when a node's or a job's steps differ.
_SEVERITY: Final = {Status.CANCELLED: 5, Status.ERROR: 4, Status.TIMEOUT: 4, Status.FAILED: 3}


def severity(status: Status) -> int:
    return _SEVERITY.get(status, 0)


# --- events (defined in jobs.events, which the engine imports without all of this) -------

JobEvent = ProgressEvent | StepStarted | StepFinished | DataCaptured | JobNotice | NodeUpdated
JobCallback = Callable[[JobEvent], None]


@dataclass(frozen=True)
class JobResult:
    job: Job
    execid: str
    steps: tuple[StepResult, ...]
    nodes: Mapping[str, NodeSummary]
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code() == 0

    def exit_code(self) -> int:
        """As ``ecsexec run``: 0 ok, 1 a step failed, 3 a node could not run or its outcome
        is unknown, 130 interrupted. Only the job's own steps count: a failure its error
        handler recovered, or one inside a referenced job, is decided by that step."""
        if self.interrupted:
            return 130
        return exit_status(r.status.exit_code for r in self.steps if r.top)


# --- state ---------------------------------------------------------------------------------


@dataclass
class _NodeState:
    node: str
    position: int
    status: Status = Status.NOT_STARTED
    exit_code: int | None = None
    started: datetime | None = None
    finished: datetime | None = None
    detail: str = ""
    output: bytearray = field(default_factory=bytearray)
    steps: int = 0
    top_seen: bool = False

    def summary(self) -> NodeSummary:
        duration = None
        if self.started is not None and self.finished is not None:
            duration = round((self.finished - self.started).total_seconds(), 3)
        return NodeSummary(
            self.node,
            self.position,
            self.status,
            self.exit_code,
            duration,
            self.detail,
            bytes(self.output),
            self.steps,
            self.started,
            self.finished,
        )


@dataclass(frozen=True)
class _Scope:
    """One job's execution: the job, its options, its ``${job.*}`` values, its depth."""

    job: Job
    options: Mapping[str, str]
    job_context: Mapping[str, str]
    prefix: str = ""  # "3/" inside the job that step 3 references
    depth: int = 0

    def step_id(self, index: int, suffix: str = "") -> str:
        return f"{self.prefix}{index}{suffix}"


class _Redaction:
    """One redactor per node stream; secrets may be added (a referenced job's options)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets: set[str] = {s for s in secrets if s}
        self._streams: dict[str, Redactor] = {}

    def add(self, secrets: Iterable[str]) -> None:
        new = {s for s in secrets if s} - self.secrets
        if new:
            self.secrets |= new
            for node, stream in list(self._streams.items()):
                held = stream.finish()
                self._streams[node] = fresh = Redactor(self.secrets)
                fresh.feed(held)  # still held back, or redacted on the next chunk

    def stream(self, node: str) -> Redactor:
        if node not in self._streams:
            self._streams[node] = Redactor(self.secrets)
        return self._streams[node]

    def text(self, data: bytes) -> bytes:
        return Redactor(self.secrets).redact(data)

    def string(self, text: str) -> str:
        return self.text(text.encode()).decode("utf-8", "replace")


class JobExecutor:
    """Runs one job (and the jobs it references) against a node inventory."""

    def __init__(
        self,
        library: JobLibrary,
        connectors: Callable[[ContainerTarget], Connector],
        *,
        inventory: Sequence[Node] = (),
        options: DispatchOptions | None = None,
        on_event: JobCallback | None = None,
        execid: str = "",
        username: str = "",
    ) -> None:
        self.library = library
        self.inventory = list(inventory)
        self.execid = execid
        self.username = username
        self._emit_out: JobCallback = on_event or (lambda _event: None)
        self._runner = NodeRunner(connectors, options, self._node_event)
        self._redaction = _Redaction(())
        self._states: dict[str, _NodeState] = {}
        self._results: list[StepResult] = []
        self._data: dict[str, dict[str, str]] = {}
        # scriptfile/scripturl texts, fetched once per run whatever the number of nodes.
        self._scripts: dict[str, asyncio.Future[bytes]] = {}

    # --- public -------------------------------------------------------------------------------

    async def run(self, job: Job, options: Mapping[str, str], nodes: Sequence[Node]) -> JobResult:
        """Run ``job`` (options already resolved) on ``nodes`` (already selected and ranked)."""
        self._redaction.add(options[o.name] for o in job.options if o.secure)
        scope = self._scope(job, options, "", 0)
        for node in nodes:
            self._state(node.name)
        interrupted = False
        try:
            await self._workflow(scope, nodes, top=True)
        except asyncio.CancelledError:
            interrupted = True  # Ctrl-C or SIGTERM: every open session was terminated
        return JobResult(
            job,
            self.execid,
            tuple(self._results),
            {name: state.summary() for name, state in self._states.items()},
            interrupted,
        )

    # --- events -------------------------------------------------------------------------------

    def _emit(self, event: JobEvent) -> None:
        self._emit_out(event)

    def _node_event(self, event: ProgressEvent) -> None:
        """The dispatcher's events, redacted on their way out."""
        if isinstance(event, NodeOutput):
            stream = self._redaction.stream(event.node)
            data = stream.feed(event.data)
            if data:
                held = event.line_break_held and not stream.holding
                self._emit(NodeOutput(event.node, data, held))
        elif isinstance(event, NodeNotice):
            self._emit(NodeNotice(event.node, self._redaction.text(event.text)))
        elif isinstance(event, NodeFinished):
            rest = self._redaction.stream(event.node).finish()
            if rest:
                self._emit(NodeOutput(event.node, rest))
            self._emit(NodeFinished(event.node, self._redact(event.outcome)))
        else:
            self._emit(event)

    def _redact(self, outcome: CommandResult) -> CommandResult:
        if not self._redaction.secrets:
            return outcome
        return replace(outcome, output=self._redaction.text(outcome.output))

    # --- state --------------------------------------------------------------------------------

    def _state(self, node: str) -> _NodeState:
        if node not in self._states:
            self._states[node] = _NodeState(node, len(self._states))
        return self._states[node]

    def _scope(self, job: Job, options: Mapping[str, str], prefix: str, depth: int) -> _Scope:
        context = {
            "execid": self.execid,
            "name": job.name,
            "group": job.group,
            "id": job.uuid,
            "username": self.username,
            "user.name": self.username,
        }
        return _Scope(job, dict(options), context, prefix, depth)

    def _finish(self, result: StepResult, output: bytes = b"") -> StepResult:
        result = replace(result, detail=self._redaction.string(result.detail))
        self._results.append(result)
        self._emit(StepFinished(result))
        if result.node is not None:
            state = self._state(result.node)
            state.output += output
            state.steps += 1
            state.finished = datetime.now(UTC)
            # The node's status: its own job steps decide once there are any.
            if result.top and not state.top_seen:
                state.top_seen = True
                state.status, state.exit_code, state.detail = Status.SUCCEEDED, None, ""
            if result.top or not state.top_seen:
                if state.status is Status.NOT_STARTED or severity(result.status) > severity(
                    state.status
                ):
                    state.status = Status.SUCCEEDED if result.ok else result.status
                    state.exit_code = result.exit_code
                    state.detail = "" if result.ok else f"step {result.step}: {result.detail}"
                elif result.ok and severity(state.status) == 0:
                    state.exit_code = result.exit_code
            self._emit(NodeUpdated(state.summary()))
        return result

    # --- workflows ----------------------------------------------------------------------------

    async def _workflow(self, scope: _Scope, nodes: Sequence[Node], *, top: bool) -> Status:
        """Run a job's steps on ``nodes``; return the worst status of its own steps."""
        job = scope.job
        strategy = job.strategy
        if strategy == "node-first":
            return await self._node_first(scope, nodes, top=top)
        if strategy == "step-first":
            worst = Status.SUCCEEDED
            for index, step in enumerate(job.steps, 1):
                status = await self._step_everywhere(scope, index, step, nodes, top=top)
                worst = _worse(worst, status)
                if severity(status) and not job.keepgoing:
                    break
            return worst
        # parallel: every step at once, each over its nodes
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._step_everywhere(scope, index, step, nodes, top=top))
                for index, step in enumerate(job.steps, 1)
            ]
        worst = Status.SUCCEEDED
        for task in tasks:
            worst = _worse(worst, task.result())
        return worst

    async def _node_first(self, scope: _Scope, nodes: Sequence[Node], *, top: bool) -> Status:
        """Rundeck's node-first: runs of node steps go node by node; a workflow step between
        them runs once."""
        job = scope.job
        worst = Status.SUCCEEDED
        index = 1
        steps = list(enumerate(job.steps, 1))
        while index <= len(steps):
            step = job.steps[index - 1]
            if not step.node_step:
                status = await self._workflow_step(scope, index, step, top=top)
                index += 1
            else:
                section = []
                while index <= len(steps) and job.steps[index - 1].node_step:
                    section.append((index, job.steps[index - 1]))
                    index += 1

                async def on_node(node: Node, section: list[tuple[int, Step]] = section) -> Status:
                    node_worst = Status.SUCCEEDED
                    for number, item in section:
                        status = await self._node_step(scope, number, item, node, top=top)
                        node_worst = _worse(node_worst, status)
                        if severity(status) and not job.keepgoing:
                            break
                    return node_worst

                status = await self._over_nodes(job.dispatch, nodes, on_node)
            worst = _worse(worst, status)
            if severity(status) and not job.keepgoing:
                break
        return worst

    async def _step_everywhere(
        self, scope: _Scope, index: int, step: Step, nodes: Sequence[Node], *, top: bool
    ) -> Status:
        if not step.node_step:
            return await self._workflow_step(scope, index, step, top=top)

        async def on_node(node: Node) -> Status:
            return await self._node_step(scope, index, step, node, top=top)

        return await self._over_nodes(scope.job.dispatch, nodes, on_node)

    async def _over_nodes(
        self,
        dispatch: Dispatch,
        nodes: Sequence[Node],
        action: Callable[[Node], Awaitable[Status]],
    ) -> Status:
        """Run ``action`` per node, ``threadcount`` at a time, in rank order; without
        ``dispatch.keepgoing`` a failure stops nodes that have not started."""
        semaphore = asyncio.Semaphore(max(1, dispatch.threadcount))
        stop = asyncio.Event()
        statuses: list[Status] = []

        async def one(node: Node) -> None:
            async with semaphore:
                if stop.is_set():
                    self._emit(JobNotice("not started: an earlier node failed", node.name))
                    return
                status = await action(node)
                statuses.append(status)
                if severity(status) and not dispatch.keepgoing:
                    stop.set()

        async with asyncio.TaskGroup() as group:
            for node in nodes:
                group.create_task(one(node))
        worst = Status.SUCCEEDED
        for status in statuses:
            worst = _worse(worst, status)
        return worst

    # --- steps --------------------------------------------------------------------------------

    async def _script_text(self, step: Step) -> bytes | None:
        """The text of a scriptfile or scripturl step (None for other steps), read once
        per run: the nodes share one read, and get the same bytes."""
        key = step.script_file or step.script_url
        if not key:
            return None
        fetch = self._scripts.get(key)
        if fetch is None:
            if step.script_file:
                fetch = asyncio.ensure_future(asyncio.to_thread(read_script_file, key))
            else:
                fetch = asyncio.ensure_future(fetch_script_url(key))
            self._scripts[key] = fetch
        return await asyncio.shield(fetch)

    async def _node_step(
        self,
        scope: _Scope,
        index: int,
        step: Step,
        node: Node,
        *,
        top: bool,
        suffix: str = "",
        result_context: Mapping[str, str] | None = None,
    ) -> Status:
        step_id = scope.step_id(index, suffix)
        label = step.label()
        self._emit(StepStarted(step_id, label, node.name))
        state = self._state(node.name)
        if state.started is None:
            state.started = datetime.now(UTC)
        started = datetime.now(UTC)
        output = b""
        exit_code: int | None = None
        if step.kind == "jobref":
            status, detail = await self._node_jobref(scope, index, step, node)
        else:
            ctx = Context(
                scope.options,
                scope.job_context,
                node,
                self._data,
                result_context or {},
            )
            try:
                fetched = await self._script_text(step)
                built = step_command(step, ctx, self._redaction.secrets, fetched)
                wrapped = wrap(built.command, stdin=built.stdin)
                wrapped = replace(wrapped, user_command=built.display)
                target = ContainerTarget.from_attributes(node.name, node.attributes)
            except (ConfigurationError, ValueError) as exc:
                status, detail = Status.ERROR, str(exc)
            else:
                try:
                    outcome = self._redact(await self._runner.run(target, wrapped))
                except asyncio.CancelledError:
                    cancelled = self._runner.cancelled.get(node.name)
                    if cancelled is not None:
                        cancelled = self._redact(cancelled)
                    self._finish(
                        StepResult(
                            step_id,
                            label,
                            node.name,
                            Status.CANCELLED,
                            None,
                            _since(started),
                            cancelled.reason if cancelled else "interrupted",
                            top,
                        ),
                        cancelled.output if cancelled else b"",
                    )
                    raise
                output = outcome.output
                status = outcome.status
                exit_code = outcome.exit_code
                detail = outcome.reason or (f"exit code {exit_code}" if exit_code else "")
                self._capture(scope, step, node.name, output)
        if severity(status) and step.errorhandler is not None:
            handler = step.errorhandler
            self._finish(
                StepResult(
                    step_id,
                    label,
                    node.name,
                    status,
                    exit_code,
                    _since(started),
                    detail,
                    False,
                ),
                output,
            )
            output = b""
            results = {
                "resultCode": "" if exit_code is None else str(exit_code),
                "reason": "NonZeroResultCode" if status is Status.FAILED else str(status),
                "message": detail,
            }
            handled = await self._node_step(
                scope,
                index,
                handler,
                node,
                top=False,
                suffix=suffix + ".e",
                result_context=results,
            )
            if not severity(handled) and (scope.job.keepgoing or handler.keepgoing_on_success):
                status, detail = Status.RECOVERED, f"recovered by its error handler ({detail})"
        result = StepResult(
            step_id, label, node.name, status, exit_code, _since(started), detail, top
        )
        self._finish(result, output)
        return status

    def _capture(self, scope: _Scope, step: Step, node: str, output: bytes) -> None:
        filters = (*scope.job.log_filters, *step.log_filters)
        if not filters:
            return
        found = capture(filters, output.decode("utf-8", "replace"))
        for warning in found.warnings:
            self._emit(JobNotice(warning, node))
        values = self._data.setdefault(node, {})
        logged = any(f.log_data for f in filters)
        for key, value in found.data.items():
            values[key] = value
            if logged:
                self._emit(DataCaptured(node, key, value))

    async def _node_jobref(
        self, scope: _Scope, index: int, step: Step, node: Node
    ) -> tuple[Status, str]:
        """A node-step job reference: the referenced job's steps, on this node only."""
        try:
            sub = self._sub_scope(scope, index, step, node)
        except ConfigurationError as exc:
            return Status.ERROR, str(exc)
        status = await self._node_first(sub, [node], top=False)
        detail = "" if not severity(status) else f"job {sub.job.path} {status}"
        return status, detail

    async def _workflow_step(self, scope: _Scope, index: int, step: Step, *, top: bool) -> Status:
        """A workflow job reference: the referenced job once, on its own (or given) nodes."""
        step_id = scope.step_id(index)
        label = step.label()
        self._emit(StepStarted(step_id, label, None))
        started = datetime.now(UTC)
        assert step.jobref is not None
        try:
            sub = self._sub_scope(scope, index, step, None)
            ref = step.jobref
            ctx = Context(sub.options, sub.job_context, None, self._data)
            text = ref.filter if ref.filter is not None else sub.job.filter
            dispatch = ref.dispatch or sub.job.dispatch
            if not text:
                raise ConfigurationError(f"job {sub.job.path!r} has no node filter")
            nodes = rank(
                select(
                    self.inventory,
                    parse_filter(expand_raw(text, ctx)),
                    exclude_precedence=dispatch.exclude_precedence,
                ),
                attribute=dispatch.rank_attribute,
                order=dispatch.rank_order,
            )
            if not nodes and not dispatch.success_on_empty:
                raise ConfigurationError(f"job {sub.job.path!r}: no nodes match {text!r}")
        except EcsexecError as exc:
            status, detail = Status.ERROR, str(exc)
        else:
            sub = replace(sub, job=replace(sub.job, dispatch=dispatch))
            status = await self._workflow(sub, nodes, top=False)
            detail = "" if not severity(status) else f"job {sub.job.path} {status}"
        if severity(status) and step.errorhandler is not None:
            failed = StepResult(step_id, label, None, status, None, _since(started), detail, False)
            self._finish(failed)
            # parse.py allows only a workflow job reference as this step's handler.
            handler_scope = replace(scope, prefix=f"{scope.prefix}{index}.e/")
            handled = await self._workflow_step(handler_scope, 1, step.errorhandler, top=False)
            if not severity(handled) and (
                scope.job.keepgoing or step.errorhandler.keepgoing_on_success
            ):
                status, detail = Status.RECOVERED, f"recovered by its error handler ({detail})"
        return self._finish(
            StepResult(step_id, label, None, status, None, _since(started), detail, top)
        ).status

    def _sub_scope(self, scope: _Scope, index: int, step: Step, node: Node | None) -> _Scope:
        assert step.jobref is not None
        if scope.depth + 1 >= MAX_DEPTH:
            raise ConfigurationError(f"job references nest deeper than {MAX_DEPTH}")
        job = self.library.resolve(step.jobref)
        ctx = Context(scope.options, scope.job_context, node, self._data)
        given = parse_jobref_args([expand_raw(a, ctx) for a in split_args(step.jobref.args)])
        options = resolve_options(job, given)
        self._redaction.add(options[o.name] for o in job.options if o.secure)
        return self._scope(job, options, f"{scope.prefix}{index}/", scope.depth + 1)


def _worse(a: Status, b: Status) -> Status:
    return b if severity(b) > severity(a) else a


def _since(started: datetime) -> float:
    return round((datetime.now(UTC) - started).total_seconds(), 3)
