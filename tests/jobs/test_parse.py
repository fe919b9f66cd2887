"""Job-file parsing: the Rundeck YAML subset, and file:line for every problem. Pure and fast."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ecsexec.errors import JobFileError
from ecsexec.jobs.library import JobLibrary, load_file, select_job
from ecsexec.jobs.model import Dispatch
from ecsexec.jobs.parse import parse_jobs

SEQ = "  sequence: {commands: [{exec: ls}]}\n"
STEP = "- name: j\n  sequence:\n    commands:\n    - exec: ls\n"
EXAMPLE = Path(__file__).parents[2] / "examples" / "jobs" / "java-thread-dump.yaml"


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_jobs(textwrap.dedent(text), "jobs.yaml")


def error_of(text: str) -> str:
    with pytest.raises(JobFileError) as info:
        parse(text)
    return str(info.value)


def test_the_thread_dump_example_parses() -> None:
    jobfile = load_file(EXAMPLE)
    (job,) = jobfile.jobs
    assert job.path == "diagnostics/java-thread-dump"
    assert [o.name for o in job.options] == ["container", "count", "interval"]
    assert job.option("container").required  # type: ignore[union-attr]
    assert job.option("count").value == "3"  # type: ignore[union-attr]
    assert job.filter == "ECS:Container-Name: ${option.container}"
    assert job.dispatch == Dispatch(threadcount=8, keepgoing=True)
    assert [s.kind for s in job.steps] == ["exec", "script", "script"]
    (capture,) = job.steps[0].log_filters
    assert (capture.regex, capture.name, capture.log_data) == ("^([0-9]+)$", "pid", True)
    assert JobLibrary(EXAMPLE.parent).check(job) == []


def test_a_rundeck_export_with_server_only_keys_parses() -> None:
    jobfile = parse(
        """\
        - defaultTab: nodes
          description: ''
          executionEnabled: true
          id: 9f04657a-eaab-4e79-a5f2-6c1d4fd0ea6b
          loglevel: INFO
          name: hello
          nodeFilterEditable: false
          nodefilters:
            dispatch:
              excludePrecedence: true
              keepgoing: false
              rankOrder: descending
              successOnEmptyNodeFilter: false
              threadcount: '4'
            filter: 'tags: web'
          nodesSelectedByDefault: true
          options:
          - name: greeting
            value: '010'
            values: [hi, '010']
            enforced: true
          plugins:
            ExecutionLifecycle: null
          schedule:
            crontab: '0 0 12 ? * * *'
          scheduleEnabled: true
          sequence:
            commands:
            - exec: echo ${option.greeting}
            keepgoing: false
            strategy: node-first
            pluginConfig:
              WorkflowStrategy:
                node-first: null
          uuid: 9f04657a-eaab-4e79-a5f2-6c1d4fd0ea6b
        """
    )
    (job,) = jobfile.jobs
    assert job.uuid == "9f04657a-eaab-4e79-a5f2-6c1d4fd0ea6b"
    assert job.dispatch == Dispatch(threadcount=4, rank_order="descending")
    assert job.option("greeting").value == "010"  # type: ignore[union-attr]  # not YAML 1.1's 8
    assert jobfile.warnings == ()
    assert job.schedule is not None and job.schedule.expression == "0 0 12 ? * * *"
    assert job.scheduled


def test_the_older_map_form_of_options_and_comma_values() -> None:
    (job,) = parse(
        """\
        - name: j
          options:
            env:
              values: dev, prod
              required: 'true'
          sequence:
            commands: [{exec: "echo ${option.env}"}]
        """
    ).jobs
    (option,) = job.options
    assert (option.name, option.values, option.required) == ("env", ("dev", "prod"), True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "- name: j\n  sequence: {commands: [{exce: ls}]}\n",
            "jobs.yaml:2: command: unknown key 'exce'; did you mean 'exec'?",
        ),
        (
            "- name: j\n  timeout: 10m\n  sequence: {commands: [{exec: ls}]}\n",
            "jobs.yaml:2: job: timeout is not supported",
        ),
        (
            "- name: j\n  sequence:\n    commands:\n    - scriptfile: /x.sh\n",
            "jobs.yaml:4: scriptfile: no such file: /x.sh",
        ),
        ("name: j\n", "jobs.yaml:1: a job file is a list of jobs"),
        ("- name: [unclosed\n", "jobs.yaml:2: invalid YAML"),
        ("- sequence: {commands: [{exec: ls}]}\n", "jobs.yaml:1: job: name is required"),
        (
            "- name: j\n  name: k\n  sequence: {commands: [{exec: ls}]}\n",
            "jobs.yaml:2: job: duplicate key 'name'",
        ),
        (
            "- name: j\n  sequence: {commands: [{exec: ls, script: x}]}\n",
            "needs exactly one of exec, script, scriptfile, scripturl, jobref (found exec, script)",
        ),
        (
            "- name: j\n  sequence: {strategy: sideways, commands: [{exec: ls}]}\n",
            "jobs.yaml:2: strategy: one of node-first, step-first, parallel",
        ),
        ("- name: j\n  sequence: {commands: []}\n", "commands must not be empty"),
        (
            "- name: j\n  options: [{name: n, regex: '[a-'}]\n" + SEQ,
            "jobs.yaml:2: option 'n': invalid regex",
        ),
        (
            "- name: j\n  options: [{name: n, regex: '[a-z]+', value: '1'}]\n" + SEQ,
            "the default does not match",
        ),
        (
            "- name: j\n  options: [{name: 'a b'}]\n  sequence: {commands: [{exec: ls}]}\n",
            "option name 'a b'",
        ),
        (
            "- name: j\n  nodefilters: {filter: 'name: /[x/'}\n" + SEQ,
            "jobs.yaml:2: filter: ",
        ),
        (
            "- name: j\n  nodefilters: {dispatch: {threadcount: 0}}\n" + SEQ,
            "threadcount: expected a whole number >= 1",
        ),
        (
            "- name: j\n  dispatch: {threadcount: 2}\n  sequence: {commands: [{exec: ls}]}\n",
            "unknown key 'dispatch'",
        ),
        (
            "- name: j\n  sequence: {keepgoing: maybe, commands: [{exec: ls}]}\n",
            "keepgoing: expected true or false",
        ),
        (
            "- name: j\n  sequence: {commands: [{exec: ls, args: x}]}\n",
            "args belongs to script steps",
        ),
        (
            STEP + "      errorhandler: {jobref: {name: k}}\n",
            "jobs.yaml:5: errorhandler: a node step",
        ),
        (
            STEP
            + "      plugins:\n        LogFilter:\n"
            + "        - {type: key-value-data, config: {regex: '(x)'}}\n",
            "jobs.yaml:7: key-value-data: a regex with one group needs a name",
        ),
        (
            STEP + "      plugins:\n        LogFilter: [{type: mask-passwords}]\n",
            "LogFilter: type 'mask-passwords' is not supported",
        ),
        (
            "- name: j\n" + SEQ + "- name: j\n" + SEQ,
            "jobs.yaml:3: job 'j' is defined twice (first at jobs.yaml:1)",
        ),
    ],
)
def test_problems_name_file_and_line(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_references_are_checked_where_they_are_written() -> None:
    message = error_of(
        """\
        - name: j
          options: [{name: known}]
          nodefilters: {filter: 'name: ${option.nope}'}
          sequence:
            commands:
            - exec: echo ${option.known} ${opton.known}
            - script: |-
                #!/bin/sh
                echo @option.known@
                echo @option.missing@
              args: ${job.nonsense}
        """
    )
    lines = message.splitlines()
    assert lines[0].startswith("jobs.yaml:3: ${option.nope}: job 'j' has no option 'nope'")
    assert lines[1].startswith("jobs.yaml:6: ${opton.known}: unknown context 'opton'")
    assert lines[2].startswith("jobs.yaml:11: ${job.nonsense}: unknown job key 'nonsense'")
    assert lines[3].startswith("jobs.yaml:10: @option.missing@: job 'j' has no option 'missing'")


def test_a_shell_variable_is_not_a_reference() -> None:
    (job,) = parse("- name: j\n  sequence: {commands: [{exec: 'echo ${HOME} $USER'}]}\n").jobs
    assert job.steps[0].command == "echo ${HOME} $USER"


def test_error_handlers_and_jobrefs(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        textwrap.dedent(
            """\
            - name: parent
              options: [{name: who, value: me}]
              sequence:
                keepgoing: true
                strategy: step-first
                commands:
                - exec: 'false'
                  errorhandler: {exec: 'echo handled', keepgoingOnSuccess: true}
                - jobref: {group: lib, name: child, args: '-greeting ${option.who}', nodeStep: true}
                - jobref: {group: lib, name: missing}
                - jobref: {group: lib, name: child, args: '-nope 1'}
            """
        )
    )
    (tmp_path / "b.yml").write_text(
        "- name: child\n  group: lib\n  options: [{name: greeting, required: true}]\n"
        "  sequence: {commands: [{exec: 'echo ${option.greeting}'}]}\n"
    )
    (tmp_path / "notes.txt").write_text("not a job file")
    jobfile = load_file(tmp_path / "a.yaml")
    job = select_job(jobfile, "parent")
    handler = job.steps[0].errorhandler
    assert (
        handler is not None and handler.keepgoing_on_success and handler.command == "echo handled"
    )
    assert job.steps[1].jobref is not None and job.steps[1].jobref.node_step
    problems = JobLibrary(tmp_path).check(job)
    assert len(problems) == 3
    assert problems[0].endswith("job reference 'lib/missing': no such job in " + str(tmp_path))
    assert problems[0].startswith(f"{tmp_path / 'a.yaml'}:10: ")
    assert "job 'lib/child' has no option 'nope'" in problems[1]
    assert "job 'lib/child' needs option 'greeting' in args" in problems[2]


def test_job_reference_cycles_are_found(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text(
        "- name: a\n  sequence: {commands: [{jobref: {name: b}}]}\n"
        "- name: b\n  sequence: {commands: [{jobref: {name: a}}]}\n"
    )
    jobfile = load_file(tmp_path / "loop.yaml")
    (problem,) = JobLibrary(tmp_path).check(jobfile.jobs[0])
    assert "job references form a cycle: a -> b -> a" in problem


def test_select_job_by_name_path_or_uuid() -> None:
    jobfile = parse(
        "- {name: x, group: g, uuid: u1, sequence: {commands: [{exec: ls}]}}\n"
        "- {name: x, group: h, sequence: {commands: [{exec: ls}]}}\n"
    )
    assert select_job(jobfile, "g/x").group == "g"
    assert select_job(jobfile, "u1").group == "g"
    with pytest.raises(Exception, match="several jobs are called 'x'"):
        select_job(jobfile, "x")
    with pytest.raises(Exception, match="choose one with --job"):
        select_job(jobfile, None)


def test_an_option_default_is_checked_against_its_regex_within_bounds() -> None:
    value = "a" * 40
    # re would try 2^40 ways; the bounded matcher says no at once.
    message = error_of(
        f"- name: j\n  options: [{{name: n, regex: '(a|a)*b', value: {value}}}]\n" + SEQ
    )
    assert message == "jobs.yaml:2: option 'n': the default does not match /(a|a)*b/"
    message = error_of(
        f"- name: j\n  options: [{{name: n, regex: '(a+)+\\1x', value: {value}}}]\n" + SEQ
    )
    assert message.startswith("jobs.yaml:2: option 'n': regex is too costly to evaluate")


@pytest.mark.parametrize(
    "text", ["- " + "[" * 5000 + "]" * 5000, "- name: j\n  x: " + "{a: " * 5000 + "1" + "}" * 5000]
)
def test_yaml_nested_too_deeply_is_a_job_file_error(text: str) -> None:
    assert error_of(text) == "jobs.yaml:1: invalid YAML: nested too deeply"


def test_script_file_and_url_steps_take_rundecks_keys(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "run.ps1").write_text("echo hi\n")
    text = textwrap.dedent(
        """\
        - name: j
          sequence:
            commands:
            - scriptfile: lib/run.ps1
              fileExtension: .ps1
              expandTokenInScriptFile: true
              args: -x
            - scripturl: https://example.invalid/s.sh
              scriptInterpreter: bash
        """
    )
    (job,) = parse_jobs(text, str(tmp_path / "jobs.yaml")).jobs
    first, second = job.steps
    assert (first.kind, first.script_file, first.file_extension) == (
        "script",
        str(tmp_path / "lib" / "run.ps1"),
        "ps1",
    )
    assert first.expand_file_tokens and first.args == "-x"
    assert first.label() == "script file run.ps1"
    assert (second.script_url, second.interpreter, second.expand_file_tokens) == (
        "https://example.invalid/s.sh",
        "bash",
        False,
    )


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("{scriptfile: nowhere.sh}", "jobs.yaml:4: scriptfile: no such file: "),
        ("{scripturl: 'file:///etc/passwd'}", "scripturl: 'file:///etc/passwd' is not an http"),
        (
            "{scripturl: 'http://x/s', script: 'ls'}",
            "needs exactly one of exec, script, scriptfile",
        ),
    ],
)
def test_script_file_and_url_problems_name_file_and_line(step: str, expected: str) -> None:
    assert expected in error_of(f"- name: j\n  sequence:\n    commands:\n    - {step}\n")
