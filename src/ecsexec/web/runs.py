"""Runs started from the web console: the engine's runs, their live event buffers, stop.

:class:`RunManager` starts ad-hoc commands and jobs through the server's one
:class:`~ecsexec.app.Client`, recorded in history as the web user's. Before anything runs
it checks the role's node filter: a command aimed at any node outside it is refused
whole and the refusal audited. Each run's events become JSON dicts numbered from 1 and
kept in a per-run buffer, so any number of event streams can follow a run and a
reconnecting one resumes after the last number it saw (``Last-Event-ID``). A run no longer
in memory (finished long ago, or before a restart) is replayed from history.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ecsexec.app import Client, Run, Selection
from ecsexec.app.events import (
    Event,
    JobNotice,
    NodeFinished,
    NodeNotice,
    NodeOutput,
    NodeStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from ecsexec.errors import (
    EXIT_INTERRUPTED,
    AccessDenied,
    ConfigurationError,
    EcsexecError,
    Status,
    status_for_exit,
)
from ecsexec.jobs.model import Job
from ecsexec.nodes.node import Node
from ecsexec.store.history import History, RunRecord
from ecsexec.store.team import TeamStore, User
from ecsexec.web.acl import Action, Policy

EventDict = dict[str, Any]
TRUNCATED_NOTICE: Final = (
    "[ecsexec: live output of this run passed {limit} characters; the rest is in each "
    "node's log (download it from the run's page)]\n"
)
SHOWN_REFUSED: Final = 5  # node names a refusal lists
SELECTIONS_KEPT: Final = 64  # filters whose selection is cached per inventory
# A rediscovery asked for (refresh) is skipped when the inventory is younger than this: each
# is a round of AWS calls, and anyone who may view nodes can ask for one.
MIN_REFRESH_S: Final = 10.0

log = logging.getLogger(__name__)


@dataclass
class LiveRun:
    """One run this server started: its numbered events so far, and whether it ended."""

    id: int
    user: str
    kind: str  # "run" or "job"
    run: Run
    events: list[EventDict] = field(default_factory=list)
    finished: bool = False
    output_chars: int = 0
    truncated: bool = False
    stopping: bool = False
    started_nodes: set[str] = field(default_factory=set)
    decoders: dict[str, codecs.IncrementalDecoder] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def add(self, event: EventDict) -> None:
        self.events.append(event)
        # Wake every reader waiting now; later readers wait on the new event.
        woken, self.changed = self.changed, asyncio.Event()
        woken.set()

    def text(self, node: str, data: bytes, *, final: bool = False) -> str:
        """Output as text, decoded per node so a character split across chunks survives."""
        decoder = self.decoders.get(node)
        if decoder is None:
            decoder = self.decoders[node] = codecs.getincrementaldecoder("utf-8")("replace")
        return decoder.decode(data, final)


class RunManager:
    """Starts runs through the engine and keeps their live event buffers."""

    def __init__(
        self,
        engine: Client,
        store: TeamStore,
        policy: Policy,
        history: History,
        *,
        inventory_ttl_s: float = 60.0,
        max_live_output: int = 8 * 1024 * 1024,
        finished_runs_kept: int = 50,
    ) -> None:
        self.engine = engine
        self.store = store
        self.policy = policy
        self.history = history
        self.inventory_ttl_s = inventory_ttl_s
        self.max_live_output = max_live_output
        self.finished_runs_kept = finished_runs_kept
        self._live: dict[int, LiveRun] = {}
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._inventory_at: float | None = None
        self._inventory_lock = asyncio.Lock()
        self._selections: OrderedDict[str, Selection] = OrderedDict()
        self.generation = 0  # bumped on each rediscovery (caches of node answers key on it)
        self._closing = False

    # --- nodes ---------------------------------------------------------------------------

    async def nodes(self, node_filter: str | None, *, refresh: bool = False) -> Selection:
        """The nodes a filter selects, from an inventory rediscovered when older than the
        TTL (one discovery at a time, however many requests wait for it)."""
        if self._needs_discovery(refresh):
            async with self._inventory_lock:
                if self._needs_discovery(refresh):
                    await self.engine.inventory(refresh=True)
                    self._inventory_at = time.monotonic()
                    self.generation += 1
                    self._selections.clear()
        key = node_filter or ""
        selection = self._selections.get(key)
        if selection is None:
            # Ranking a thousand nodes costs tens of ms: each filter's answer is kept until
            # the inventory is rediscovered.
            selection = await self.engine.nodes(node_filter or None)
            self._selections[key] = selection
            while len(self._selections) > SELECTIONS_KEPT:
                self._selections.popitem(last=False)
        else:
            self._selections.move_to_end(key)
        return selection

    def _needs_discovery(self, refresh: bool) -> bool:
        at = self._inventory_at
        if at is None:
            return True
        age = time.monotonic() - at
        return age > self.inventory_ttl_s or (refresh and age > MIN_REFRESH_S)

    def _check_nodes(
        self, user: User, action: Action, nodes: Sequence[Node], what: str, source: str
    ) -> None:
        refused = self.policy.refused_nodes(user.role, nodes)
        if not refused:
            return
        names = [node.name for node in refused]
        shown = ", ".join(names[:SHOWN_REFUSED]) + (", ..." if len(names) > SHOWN_REFUSED else "")
        # The caller is told how many, never which: nodes outside the role's filter are,
        # to that role, as if absent (their names go to the audit log, for admins).
        reason = (
            f"role {user.role!r} may not run on {len(names)} of the {len(nodes)} selected "
            "nodes (outside its node filter); nothing was run"
        )
        self._audit(
            user.name,
            "acl-deny",
            what,
            "denied",
            source,
            {"action": str(action), "refused": str(len(names)), "nodes": shown},
        )
        raise AccessDenied(str(action), reason)

    def _audit(
        self,
        user: str,
        action: str,
        target: str,
        outcome: str,
        source: str,
        detail: Mapping[str, str] | None = None,
    ) -> None:
        try:
            self.store.audit(user, action, target, outcome, source, detail)
        except Exception:
            log.exception("could not write the audit entry %s %s", action, target)

    # --- starting ------------------------------------------------------------------------

    async def start_command(
        self,
        user: User,
        node_filter: str,
        command: str,
        *,
        threads: int | None = None,
        keepgoing: bool = True,
        source: str = "-",
    ) -> int:
        """Run ``command`` on the nodes ``node_filter`` selects; returns the run's id once
        it is recorded. Raises AccessDenied (audited) if any node is outside the role's
        filter, ConfigurationError for a bad filter or no nodes."""
        if not self.policy.allows(user.role, Action.RUN_COMMAND):
            self._audit(user.name, "acl-deny", command, "denied", source, {"action": "run_command"})
            raise AccessDenied("run_command", f"role {user.role!r} may not run commands")
        selection = await self.nodes(node_filter)
        if not selection:
            hints = "".join(f"; {warning}" for warning in selection.warnings)
            raise ConfigurationError(f"filter: no nodes match {node_filter!r}{hints}")
        self._check_nodes(user, Action.RUN_COMMAND, selection.nodes, command, source)
        run = self.engine.run(
            selection, command, threads=threads, keepgoing=keepgoing, user=user.name
        )
        run_id = await self._launch(run, user, "run")
        self._audit(
            user.name,
            "run",
            command,
            "ok",
            source,
            {"run": str(run_id), "filter": node_filter, "nodes": str(len(selection))},
        )
        return run_id

    async def start_job(
        self,
        user: User,
        job: Job,
        options: Mapping[str, str],
        *,
        source: str = "-",
        check_role: bool = True,
    ) -> int:
        """Run ``job`` with ``options`` (checked as the CLI checks them: OptionError names
        the option, never a secure value). ``check_role`` is False for the scheduler."""
        if check_role and not (
            self.policy.allows(user.role, Action.RUN_JOB)
            and self.policy.allows_job(user.role, job.path)
        ):
            self._audit(user.name, "acl-deny", job.path, "denied", source, {"action": "run_job"})
            raise AccessDenied("run_job", f"role {user.role!r} may not run job {job.path!r}")
        await self.nodes(None)  # a fresh enough inventory for the job's filter
        plan = await self.engine.plan_job(job, options)
        if check_role:
            self._check_nodes(user, Action.RUN_JOB, plan.selection.nodes, job.path, source)
        run = self.engine.run_job(plan, user=user.name)
        run_id = await self._launch(run, user, "job")
        self._audit(
            user.name,
            "job-run",
            job.path,
            "ok",
            source,
            {"run": str(run_id), "nodes": str(len(plan.selection))},
        )
        return run_id

    async def _launch(self, run: Run, user: User, kind: str) -> int:
        """Follow ``run`` in a task; return its id once it is recorded (or raise why not)."""
        if self._closing:
            raise ConfigurationError("the server is shutting down; no new runs")
        started: asyncio.Future[LiveRun] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self._follow(run, user, kind, started))
        try:
            live = await asyncio.shield(started)
        except BaseException:
            if not task.done():
                run.cancel()
            raise
        live.task = task
        return live.id

    async def _follow(
        self, run: Run, user: User, kind: str, started: asyncio.Future[LiveRun]
    ) -> None:
        live: LiveRun | None = None
        try:
            async for event in run:
                if isinstance(event, RunStarted):
                    if event.run_id is None:
                        raise ConfigurationError("history is off: the server cannot record runs")
                    live = LiveRun(event.run_id, user.name, kind, run)
                    self._live[live.id] = live
                    live.add(_run_started(live, event))
                    started.set_result(live)
                elif live is not None:
                    self._translate(live, event)
        except EcsexecError as exc:
            if live is None:
                run.cancel()  # refused before it was recorded: nothing may go on running
                started.set_exception(exc)
                return
            live.add(
                {
                    "type": "run_finished",
                    "status": "error",
                    "exit_code": exc.exit_code,
                    "error": str(exc),
                }
            )
        except Exception as exc:  # never a traceback to a client: the message, logged here
            log.exception("run failed unexpectedly")
            if live is None:
                run.cancel()
                started.set_exception(exc)
                return
            live.add(
                {
                    "type": "run_finished",
                    "status": "error",
                    "exit_code": 3,
                    "error": "internal error (see the server log)",
                }
            )
        finally:
            if live is None and not started.done():
                started.set_exception(ConfigurationError("the run ended before it started"))
            if live is not None:
                if not live.events or live.events[-1]["type"] != "run_finished":
                    status = Status.INCOMPLETE if self._closing else Status.INTERRUPTED
                    live.add(
                        {
                            "type": "run_finished",
                            "status": str(status),
                            "exit_code": EXIT_INTERRUPTED,
                        }
                    )
                live.finished = True
                self._retire(live.id)

    def _translate(self, live: LiveRun, event: Event) -> None:
        """One engine event as the JSON dicts the API streams (docs in the module)."""
        if isinstance(event, NodeStarted):
            if event.node not in live.started_nodes:
                live.started_nodes.add(event.node)
                live.add({"type": "node_started", "node": event.node})
        elif isinstance(event, NodeOutput):
            self._output(live, event.node, live.text(event.node, event.data))
        elif isinstance(event, NodeNotice):
            live.add(
                {
                    "type": "notice",
                    "node": event.node,
                    "text": event.text.decode("utf-8", "replace"),
                }
            )
        elif isinstance(event, JobNotice):
            live.add({"type": "notice", "node": event.node, "text": event.text})
        elif isinstance(event, StepStarted):
            live.add(
                {
                    "type": "step_started",
                    "step": event.step,
                    "label": event.label,
                    "node": event.node,
                }
            )
        elif isinstance(event, StepFinished):
            step = event.result
            live.add(
                {
                    "type": "step_finished",
                    "step": step.step,
                    "label": step.label,
                    "node": step.node,
                    "status": str(step.status),
                    "exit_code": step.exit_code,
                }
            )
        elif isinstance(event, NodeFinished) and live.kind == "run":
            self._output(live, event.node, live.text(event.node, b"", final=True))
            outcome = event.outcome
            live.add(
                {
                    "type": "node_finished",
                    "node": event.node,
                    "status": str(outcome.status),
                    "exit_code": outcome.exit_code,
                    "duration_s": round(outcome.duration, 3),
                    "error": outcome.reason,
                }
            )
        elif isinstance(event, RunFinished):
            result = event.result
            if live.kind == "job":
                for outcome in result:
                    live.add(
                        {
                            "type": "node_finished",
                            "node": outcome.node,
                            "status": str(outcome.status),
                            "exit_code": outcome.exit_code,
                            "duration_s": round(outcome.duration, 3),
                            "error": outcome.reason,
                        }
                    )
            status = status_for_exit(result.exit_status)
            if result.interrupted and self._closing:
                status = Status.INCOMPLETE  # the server stopped, not a user (see close)
            live.add(
                {"type": "run_finished", "status": str(status), "exit_code": result.exit_status}
            )

    def _output(self, live: LiveRun, node: str, text: str) -> None:
        if not text:
            return
        if live.output_chars + len(text) > self.max_live_output:
            if not live.truncated:
                live.truncated = True
                live.add(
                    {
                        "type": "notice",
                        "node": node,
                        "text": TRUNCATED_NOTICE.format(limit=self.max_live_output),
                    }
                )
            return
        live.output_chars += len(text)
        live.add({"type": "output", "node": node, "text": text})

    def _retire(self, run_id: int) -> None:
        """Keep the newest finished runs' buffers; older ones replay from history."""
        self._finished[run_id] = None
        while len(self._finished) > self.finished_runs_kept:
            old, _ = self._finished.popitem(last=False)
            self._live.pop(old, None)

    # --- following -----------------------------------------------------------------------

    def live(self, run_id: int) -> LiveRun | None:
        return self._live.get(run_id)

    def is_running(self, run_id: int) -> bool:
        live = self._live.get(run_id)
        return live is not None and not live.finished

    def events(self, run_id: int, after: int = 0) -> AsyncIterator[tuple[int, EventDict]]:
        """``(number, event)`` for each event after ``after``, live until the run ends.

        Raises KeyError (before the first event) for a run neither live nor in history.
        """
        live = self._live.get(run_id)
        if live is None:
            replay = self.replay(run_id)
            return _iterate(replay, after)
        return self._follow_live(live, after)

    async def _follow_live(self, live: LiveRun, after: int) -> AsyncIterator[tuple[int, EventDict]]:
        index = max(0, after)
        while True:
            changed = live.changed
            while index < len(live.events):
                index += 1
                yield index, live.events[index - 1]
            if live.finished:
                return
            await changed.wait()

    def replay(self, run_id: int) -> list[EventDict]:
        """A recorded run's events rebuilt from history: start, each node's log and
        outcome, the end. KeyError if history has no such run."""
        record = self.history.run(run_id)
        if record is None:
            raise KeyError(run_id)
        events: list[EventDict] = [_recorded_start(record)]
        logs = dict(self.history.logs(run_id))
        for node in record.nodes:
            if node.status in ("pending", "not started"):
                continue
            events.append({"type": "node_started", "node": node.node})
            text = logs.get(node.node, b"").decode("utf-8", "replace")
            if text:
                events.append({"type": "output", "node": node.node, "text": text})
            if node.status != "running":
                events.append(
                    {
                        "type": "node_finished",
                        "node": node.node,
                        "status": node.status,
                        "exit_code": node.exit_code,
                        "duration_s": node.duration_s,
                        "error": node.detail,
                    }
                )
        if record.status != "running":
            events.append(
                {"type": "run_finished", "status": record.status, "exit_code": record.exit_code}
            )
        return events

    # --- stopping ------------------------------------------------------------------------

    async def stop(self, run_id: int) -> bool:
        """Interrupt a live run: every open session is terminated. False if it is not
        running here."""
        live = self._live.get(run_id)
        if live is None or live.finished:
            return False
        live.stopping = True
        live.run.cancel()
        if live.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(live.task)
        return True

    async def close(self) -> list[int]:
        """Shut down: interrupt every live run, then record each as incomplete (the server
        stopped, not a user). Returns their ids."""
        self._closing = True
        running = [live for live in self._live.values() if not live.finished]
        for live in running:
            live.run.cancel()
        tasks = [live.task for live in running if live.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for live in running:
            try:
                self.history.finish(live.id, status=str(Status.INCOMPLETE), exit_code=None)
            except Exception:
                log.exception("could not mark run %s incomplete", live.id)
        return [live.id for live in running]


def _run_started(live: LiveRun, event: RunStarted) -> EventDict:
    what = "job" if live.kind == "job" else "command"
    title = event.title.removeprefix("job ") if live.kind == "job" else event.title
    return {
        "type": "run_started",
        "run_id": live.id,
        "nodes": list(event.nodes),
        what: title,
        "user": live.user,
    }


def _recorded_start(record: RunRecord) -> EventDict:
    event: EventDict = {
        "type": "run_started",
        "run_id": record.id,
        "nodes": [n.node for n in record.nodes],
        "user": record.user,
    }
    if record.kind == "job":
        event["job"] = record.job
    else:
        event["command"] = record.command
    return event


async def _iterate(events: list[EventDict], after: int) -> AsyncIterator[tuple[int, EventDict]]:
    for number, event in enumerate(events, start=1):
        if number > after:
            yield number, event
