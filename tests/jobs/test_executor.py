"""Jobs end to end on the sandbox: options, context, quoting, scripts, handlers, keepgoing,
strategies, job references and secrets (real websockets, real boto3, real processes)."""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
import uuid
from collections.abc import Mapping
from pathlib import Path

from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.dispatcher import DispatchOptions, NodeFinished, NodeOutput
from ecsexec.exec.runner import Connector, ContainerTarget
from ecsexec.jobs.executor import (
    DataCaptured,
    JobEvent,
    JobExecutor,
    JobResult,
    StepFinished,
    StepStarted,
)
from ecsexec.jobs.expand import Context, expand_raw, resolve_options
from ecsexec.jobs.library import JobLibrary, load_file, select_job
from ecsexec.nodes.filter import rank, select
from ecsexec.sandbox import Sandbox
from tests.exec.sandbox_nodes import discover, pool

LEGACY = "ECS:Service-Name: legacy"  # one container
API = "ECS:Container-Name: api"  # two containers
WEB = "ECS:Service-Name: web ECS:Cluster-Name: demo"  # three containers


class RecordingEcs:
    """Passes every call through to the real EcsApi, noting ExecuteCommand's command."""

    def __init__(self, ecs: object, commands: list[str]) -> None:
        self._ecs = ecs
        self._commands = commands

    async def execute_command_async(self, **kwargs: object) -> object:
        self._commands.append(str(kwargs["command"]))
        return await self._ecs.execute_command_async(**kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._ecs, name)


COMMANDS: list[str] = []


def recording_pool(base: ConnectorPool):  # type: ignore[no-untyped-def]
    def connector(target: ContainerTarget) -> Connector:
        return dataclasses.replace(base(target), ecs=RecordingEcs(base(target).ecs, COMMANDS))

    return connector


def run_job(
    sb: Sandbox,
    tmp_path: Path,
    text: str,
    *,
    job: str | None = None,
    options: Mapping[str, str] | None = None,
) -> tuple[JobResult, list[JobEvent]]:
    path = tmp_path / "jobs.yaml"
    path.write_text(textwrap.dedent(text))
    jobfile = load_file(path)
    chosen = select_job(jobfile, job)
    library = JobLibrary(tmp_path)
    library.add(jobfile)
    assert library.check(chosen) == []
    values = resolve_options(chosen, options or {})
    inventory = discover(sb)
    assert chosen.filter is not None
    nodes = rank(select(inventory, expand_raw(chosen.filter, Context(values))))
    events: list[JobEvent] = []
    connectors = pool(sb)
    executor = JobExecutor(
        library,
        recording_pool(connectors),
        inventory=inventory,
        options=DispatchOptions(timeout=60),
        on_event=events.append,
        execid="77",
        username="tester",
    )

    async def main() -> JobResult:
        async with connectors:
            return await executor.run(chosen, values, nodes)

    return asyncio.run(main()), events


def output(result: JobResult, node: str | None = None) -> str:
    summaries = list(result.nodes.values())
    chosen = summaries[0] if node is None else result.nodes[node]
    return chosen.output.decode()


def started(events: list[JobEvent]) -> list[tuple[str, str | None]]:
    return [(e.step, e.node) for e in events if isinstance(e, StepStarted)]


def test_options_context_and_a_quoting_attack(sandbox: Sandbox, tmp_path: Path) -> None:
    # Not under /tmp: sandbox containers have a private /tmp, and an injected `touch`
    # there would go unseen. This directory is the host's, shared with every container.
    canary = Path(__file__).parent / f".ecsexec-canary-{uuid.uuid4().hex}"
    attack = f"'; touch {canary}; echo '$(touch {canary})`touch {canary}`"
    result, _ = run_job(
        sandbox,
        tmp_path,
        f"""\
        - name: context
          options:
          - {{name: attack}}
          - {{name: classic, value: "'; rm -rf /"}}
          nodefilters:
            filter: '{WEB}'
            dispatch: {{threadcount: 3}}
          sequence:
            commands:
            - exec: >-
                printf '%s|' ${{option.attack}} ${{option.classic}} ${{node.name}}
                ${{node.ECS:Container-Image}} ${{job.execid}} ${{job.username}}; echo
        """,
        options={"attack": attack},
    )
    assert result.exit_code() == 0
    assert not canary.exists()
    assert len(result.nodes) == 3
    for name, summary in result.nodes.items():
        image = "public.ecr.aws/nginx/nginx:1.27"
        assert summary.output.decode() == f"{attack}|'; rm -rf /|{name}|{image}|77|tester|\n"


def test_a_large_script_with_args_tokens_and_captured_data(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    padding = "".join(f"# padding line {i:06d} {'x' * 60}\n" for i in range(2800))
    script = (
        "#!/bin/sh\n"
        + padding
        + 'echo "args: $1 / $2 / $#"\n'
        + 'echo "tokens: @option.greeting@ @data.token@ @node.name@"\n'
        + 'echo "size: $(wc -c < "$0")"\n'
    )
    assert len(script) > 200_000
    header = textwrap.dedent(
        f"""\
        - name: script
          options: [{{name: greeting, value: hello}}]
          nodefilters: {{filter: '{LEGACY}'}}
          sequence:
            commands:
            - exec: echo RUNDECK:DATA:token=abc123
              plugins:
                LogFilter: [{{type: key-value-data, config: {{logData: 'true'}}}}]
            - args: ${{data.token}} 'two words'
              script: |
        """
    )
    result, events = run_job(sandbox, tmp_path, header + textwrap.indent(script, " " * 8))
    assert result.exit_code() == 0, result.steps
    (node,) = result.nodes
    tokens = "@option.greeting@ @data.token@ @node.name@"
    expected_size = len(script.replace(tokens, f"hello abc123 {node}"))
    assert output(result).splitlines()[1:] == [
        "args: abc123 / two words / 2",
        f"tokens: hello abc123 {node}",
        f"size: {expected_size}",
    ]
    assert DataCaptured(node, "token", "abc123") in events


ERRORS = """\
- name: recovered
  nodefilters: {filter: 'ECS:Service-Name: legacy'}
  sequence:
    commands:
    - exec: echo failing; exit 3
      errorhandler: {exec: 'echo handled rc=${result.resultCode}', keepgoingOnSuccess: true}
    - exec: echo after
- name: halted
  nodefilters: {filter: 'ECS:Service-Name: legacy'}
  sequence:
    commands:
    - exec: exit 4
      errorhandler: {exec: echo handled}
    - exec: echo after
- name: kept-going
  nodefilters: {filter: 'ECS:Service-Name: legacy'}
  sequence:
    keepgoing: true
    commands:
    - exec: exit 4
    - exec: echo after
"""


def test_error_handlers_and_keepgoing(sandbox: Sandbox, tmp_path: Path) -> None:
    recovered, _ = run_job(sandbox, tmp_path, ERRORS, job="recovered")
    assert recovered.exit_code() == 0
    assert output(recovered) == "failing\nhandled rc=3\nafter\n"
    top = [(r.step, r.status) for r in recovered.steps if r.top]
    assert top == [("1", "recovered"), ("2", "succeeded")]

    halted, _ = run_job(sandbox, tmp_path, ERRORS, job="halted")
    assert halted.exit_code() == 1
    assert output(halted) == "handled\n"  # the handler ran, the step stayed failed, 2 never ran
    assert [r.step for r in halted.steps if r.top] == ["1"]

    kept, _ = run_job(sandbox, tmp_path, ERRORS, job="kept-going")
    assert kept.exit_code() == 1
    assert output(kept) == "after\n"
    summary = next(iter(kept.nodes.values()))
    assert (summary.status, summary.exit_code) == ("failed", 4)
    assert summary.detail == "step 1: exit code 4"


ORDER = f"""\
- name: order
  nodefilters:
    filter: '{API}'
    dispatch: {{threadcount: 1}}
  sequence:
    strategy: STRATEGY
    commands:
    - exec: echo one
    - exec: echo two
"""


def test_node_first_and_step_first_order(sandbox: Sandbox, tmp_path: Path) -> None:
    node_first, events = run_job(sandbox, tmp_path, ORDER.replace("STRATEGY", "node-first"))
    a, b = node_first.nodes
    assert started(events) == [("1", a), ("2", a), ("1", b), ("2", b)]
    step_first, events = run_job(sandbox, tmp_path, ORDER.replace("STRATEGY", "step-first"))
    assert started(events) == [("1", a), ("1", b), ("2", a), ("2", b)]
    assert node_first.exit_code() == step_first.exit_code() == 0
    assert output(step_first, a) == output(node_first, b) == "one\ntwo\n"


def test_parallel_runs_every_step_at_once(sandbox: Sandbox, tmp_path: Path) -> None:
    text = ORDER.replace("STRATEGY", "parallel").replace("echo one", "sleep 1; echo one")
    result, events = run_job(sandbox, tmp_path, text.replace(API, LEGACY))
    kinds = [
        ("start", e.step) if isinstance(e, StepStarted) else ("end", e.result.step)
        for e in events
        if isinstance(e, StepStarted | StepFinished)
    ]
    assert kinds.index(("start", "1")) < kinds.index(("start", "2")) < kinds.index(("end", "1"))
    assert result.exit_code() == 0


def test_a_failed_node_stops_the_others_without_dispatch_keepgoing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    text = f"""\
    - name: stop
      nodefilters:
        filter: '{API}'
        dispatch: {{threadcount: 1, keepgoing: false}}
      sequence: {{commands: [{{exec: 'echo ran; exit 2'}}]}}
    """
    result, events = run_job(sandbox, tmp_path, text)
    first, second = result.nodes
    assert result.exit_code() == 1
    assert (result.nodes[first].status, result.nodes[second].status) == ("failed", "not started")
    assert sum(isinstance(e, NodeFinished) for e in events) == 1


def test_job_references_as_node_step_and_workflow_step(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "lib.yaml").write_text(
        textwrap.dedent(
            f"""\
            - name: greet
              group: lib
              options: [{{name: greeting, required: true}}]
              sequence: {{commands: [{{exec: 'echo ${{option.greeting}} from ${{node.name}}'}}]}}
            - name: elsewhere
              group: lib
              nodefilters: {{filter: '{API}'}}
              sequence: {{commands: [{{exec: 'echo elsewhere'}}]}}
            """
        )
    )
    result, _ = run_job(
        sandbox,
        tmp_path,
        f"""\
        - name: parent
          options: [{{name: who, value: 'big world'}}]
          nodefilters: {{filter: '{LEGACY}'}}
          sequence:
            commands:
            - jobref:
                {{group: lib, name: greet, nodeStep: true, args: '-greeting "${{option.who}}"'}}
            - jobref: {{group: lib, name: elsewhere}}
        """,
    )
    assert result.exit_code() == 0, result.steps
    legacy, api_a, api_b = result.nodes
    assert output(result, legacy) == f"big world from {legacy}\n"
    assert output(result, api_a) == output(result, api_b) == "elsewhere\n"
    assert [(r.step, r.top) for r in result.steps if r.node in (legacy, None)] == [
        ("1/1", False),
        ("1", True),
        ("2", True),
    ]


def test_secure_values_never_leave_the_process(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    COMMANDS.clear()
    result, events = run_job(
        sandbox,
        tmp_path,
        f"""\
        - name: secret
          options: [{{name: pw, secure: true, required: true}}]
          nodefilters: {{filter: '{LEGACY}'}}
          sequence:
            keepgoing: true
            commands:
            - exec: echo "exec ${{unquotedoption.pw}}"; echo RUNDECK:DATA:leak=${{option.pw}}
              plugins:
                LogFilter: [{{type: key-value-data, config: {{logData: 'true'}}}}]
            - script: echo "script @option.pw@ $1 @data.leak@"; exit 5
              args: ${{option.pw}}
        """,
        options={"pw": secret},
    )
    assert result.exit_code() == 1
    assert output(result) == "exec ****\nRUNDECK:DATA:leak=****\nscript **** **** ****\n"
    assert secret not in repr(events) and secret not in repr(result)
    assert DataCaptured(next(iter(result.nodes)), "leak", "****") in events
    streamed = b"".join(e.data for e in events if isinstance(e, NodeOutput))
    assert streamed.decode() == output(result)
    assert len(COMMANDS) >= 2 and not any(secret in command for command in COMMANDS)


def test_scriptfile_and_scripturl_steps_run_with_args_and_interpreter(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Rundeck's scriptfile (relative to the job file) and scripturl (fetched once by the
    client, here from a loopback aiohttp server) steps, with their YAML keys."""
    from aiohttp import web

    (tmp_path / "scripts").mkdir()
    big = "".join(f"# line {i:07d}\n" for i in range(800_000))  # ~12 MB: past the old 8 MiB
    (tmp_path / "scripts" / "hello.sh").write_text(big + 'echo "file: $1 $2 @option.who@"\n')
    served: list[str] = []

    async def script(request: web.Request) -> web.Response:
        served.append(request.path)
        return web.Response(body=b'print("url:", __import__("sys").argv[1:])\n')

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def main() -> tuple[JobResult, JobResult]:
        app = web.Application()
        app.router.add_get("/s.py", script)
        app.router.add_get("/gone.sh", missing)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            ok = await asyncio.to_thread(
                run_job,
                sandbox,
                tmp_path,
                f"""\
                - name: files
                  options: [{{name: who, value: me}}]
                  nodefilters: {{filter: '{API}'}}
                  sequence:
                    commands:
                    - scriptfile: scripts/hello.sh
                      args: one two
                      expandTokenInScriptFile: true
                    - scripturl: http://127.0.0.1:{port}/s.py
                      scriptInterpreter: python3
                      fileExtension: .py
                      args: a b
                """,
            )
            gone = await asyncio.to_thread(
                run_job,
                sandbox,
                tmp_path,
                f"""\
                - name: gone
                  nodefilters: {{filter: '{LEGACY}'}}
                  sequence:
                    commands:
                    - scripturl: http://127.0.0.1:{port}/gone.sh
                """,
            )
        finally:
            await runner.cleanup()
        return ok[0], gone[0]

    ok, gone = asyncio.run(main())
    assert ok.exit_code() == 0, ok.steps
    assert len(ok.nodes) == 2
    for node in ok.nodes:
        assert output(ok, node) == "file: one two me\nurl: ['a', 'b']\n"
    assert served == ["/s.py"]  # fetched once for both nodes
    assert gone.exit_code() != 0
    failed = [r for r in gone.steps if not r.ok]
    assert failed and "HTTP 404" in failed[0].detail
