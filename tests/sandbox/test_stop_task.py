"""StopTask ends the task's exec sessions; the client reports why, never a success."""

from __future__ import annotations

import asyncio
import threading

from tests.conftest import client
from tests.exec.sandbox_nodes import targets, with_pool

from ecsexec.exec.runner import run_on_container
from ecsexec.exec.wrap import wrap
from ecsexec.sandbox import Sandbox


def test_stop_task_ends_sessions_with_unknown_exit_status() -> None:
    with Sandbox(initial_wait=0.05) as sb:
        target = targets(sb, "ECS:Service-Name: legacy")[0]
        started = threading.Event()

        def on_output(_node: str, data: bytes, _held: bool) -> None:
            if b"trapping" in data:
                started.set()

        async def scenario(connectors):  # type: ignore[no-untyped-def]
            run = asyncio.create_task(
                run_on_container(
                    connectors(target),
                    target,
                    wrap("trap 'echo got-term; exit 0' TERM; echo trapping; sleep 30 & wait"),
                    timeout=60,
                    on_output=on_output,
                )
            )
            await asyncio.to_thread(started.wait, 30)
            await asyncio.to_thread(
                client(sb, "ecs").stop_task, cluster=target.cluster, task=target.task, reason="test"
            )
            return await run

        result = with_pool(sb, scenario)
        task = client(sb, "ecs").describe_tasks(cluster=target.cluster, tasks=[target.task])[
            "tasks"
        ][0]
    assert result.output.startswith(b"trapping\n")
    assert result.exit_code is None and not result.ok
    assert "task stopped" in result.reason.lower()
    assert task["desiredStatus"] == "STOPPED"
