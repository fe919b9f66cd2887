"""Context expansion, shell quoting, options, redaction and key-value capture. Pure, plus a real
/bin/sh for the quoting property."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.jobs.expand import (
    Context,
    OptionError,
    Redactor,
    capture,
    expand_raw,
    expand_shell,
    expand_tokens,
    masked_options,
    parse_jobref_args,
    resolve_options,
    shell_quote,
    split_args,
)
from ecsexec.jobs.model import Job, JobOption, LogFilter
from ecsexec.nodes.node import Node

# Any text a shell argument can hold: no NUL (argv is C strings), no lone surrogates.
SHELL_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    max_size=60,
)
NODE = Node(
    "orders-1",
    {"ECS:Container-Image": "spring-orders:1.4.2", "osFamily": "unix", "hostname": "10.0.0.1"},
    frozenset({"ecs", "fargate"}),
)


def sh_printf(words: str) -> str:
    """What a real /bin/sh makes of ``printf %s WORDS``."""
    done = subprocess.run(
        ["/bin/sh", "-c", f"printf %s {words}"], capture_output=True, check=True, timeout=10
    )
    return done.stdout.decode("utf-8", "surrogateescape")


@settings(max_examples=150, deadline=None)
@given(SHELL_TEXT)
def test_any_option_value_reaches_a_real_shell_unchanged(value: str) -> None:
    ctx = Context({"x": value})
    assert sh_printf(expand_shell("${option.x}", ctx)) == value


@pytest.mark.parametrize(
    "value", ["'; rm -rf /", "$(id)", "`id`", "a b", "", "~", "#x", "*", "a\nb", "it's"]
)
def test_attacks_and_awkward_values_stay_one_word(value: str) -> None:
    assert sh_printf(expand_shell("${option.x}", Context({"x": value}))) == value


def test_quoting_has_rundecks_form() -> None:
    assert shell_quote("plain-value_1.2:3") == "plain-value_1.2:3"
    assert shell_quote("a b") == "'a b'"
    assert shell_quote("it's") == "'it'\"'\"'s'"  # Rundeck writes ' as '"'"'
    assert shell_quote("") == "''"  # Rundeck would drop the argument


def test_every_context() -> None:
    ctx = Context(
        options={"msg": "hi there", "n": "3"},
        job={"execid": "42", "name": "j"},
        node=NODE,
        data={"orders-1": {"pid": "123"}, "orders-2": {"pid": "456"}},
        result={"resultCode": "7"},
    )
    text = (
        "${option.msg} ${unquotedoption.msg} ${node.name} ${node.ECS:Container-Image} "
        "${node.os-family} ${node.hostname} ${node.tags} ${node.missing} ${job.execid} "
        "${data.pid} ${data.pid@orders-2} ${data.pid*} ${data.none} ${result.resultCode} ${HOME}"
    )
    assert expand_shell(text, ctx) == (
        "'hi there' hi there orders-1 spring-orders:1.4.2 unix 10.0.0.1 'ecs, fargate' '' 42 "
        "123 456 123,456 '' 7 ${HOME}"
    )
    assert expand_raw("name: ${node.name} ${option.msg}", ctx) == "name: orders-1 hi there"
    script = "echo @option.msg@ @node.name@ @data.pid@ ${option.msg} @unknown.x@"
    assert expand_tokens(script, ctx) == "echo hi there orders-1 123 ${option.msg} @unknown.x@"


def job_with(*options: JobOption) -> Job:
    return Job(name="j", options=options)


def test_options_defaults_required_enforced_and_regex() -> None:
    job = job_with(
        JobOption("env", values=("dev", "prod"), enforced=True, value="dev"),
        JobOption("count", value="3", regex="[1-9][0-9]?"),
        JobOption("who", required=True),
        JobOption("free"),
    )
    assert resolve_options(job, {"who": "me"}) == {
        "env": "dev",
        "count": "3",
        "who": "me",
        "free": "",
    }
    with pytest.raises(OptionError, match="'who' is required"):
        resolve_options(job, {"who": "  "})
    with pytest.raises(OptionError, match="'staging' is not one of dev, prod"):
        resolve_options(job, {"who": "me", "env": "staging"})
    with pytest.raises(OptionError, match=r"'0' does not match /\[1-9\]\[0-9\]\?/"):
        resolve_options(job, {"who": "me", "count": "0"})
    with pytest.raises(OptionError, match="has no option 'typo'"):
        resolve_options(job, {"who": "me", "typo": "1"})


def test_option_regexes_are_evaluated_within_bounds() -> None:
    # re would try 2^40 ways for this value; the bounded matcher answers at once.
    job = Job("j", options=(JobOption("name", regex="(a|a)*b"),))
    with pytest.raises(OptionError, match="does not match"):
        resolve_options(job, {"name": "a" * 40})
    assert resolve_options(job, {"name": "a" * 39 + "b"}) == {"name": "a" * 39 + "b"}
    costly = Job("j", options=(JobOption("name", regex="(a+)+\\1x"),))
    with pytest.raises(OptionError, match="too costly to evaluate on a 40-character value"):
        resolve_options(costly, {"name": "a" * 40})


def test_secure_values_are_never_quoted_in_messages_or_records() -> None:
    job = job_with(JobOption("pw", secure=True, regex="[a-z]+"), JobOption("user"))
    with pytest.raises(OptionError) as info:
        resolve_options(job, {"pw": "Sup3rSecret!"})
    assert "Sup3rSecret" not in str(info.value) and "****" in str(info.value)
    assert masked_options(job, {"pw": "abc", "user": "u"}) == {"pw": "****", "user": "u"}


def test_jobref_arguments() -> None:
    assert parse_jobref_args(split_args("-a 1 -b 'x y' -flag -c ''")) == {
        "a": "1",
        "b": "x y",
        "flag": "true",
        "c": "",
    }
    with pytest.raises(Exception, match="expected -OPTION"):
        parse_jobref_args(["value"])


@settings(max_examples=200, deadline=None)
@given(
    before=st.binary(max_size=40),
    after=st.binary(max_size=40),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_redaction_holds_across_any_chunking(before: bytes, after: bytes, cuts: list[int]) -> None:
    secret = "s3cr3t-ü"
    data = before + secret.encode() + after + secret.encode()[:4]
    redactor = Redactor([secret, "other"])
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    streamed = b"".join(redactor.feed(chunk) for chunk in chunks) + redactor.finish()
    assert streamed == redactor.redact(data)
    assert secret.encode() not in streamed


def test_capture_follows_rundecks_key_value_filter() -> None:
    output = (
        "RUNDECK:DATA:wimple=zangief\r\nRUNDECK:DATA:empty=\nRUNDECK:DATA:=nokey\n"
        "RUNDECK:DATA: spaced key = v\nother line\n"
    )
    assert capture([LogFilter()], output).data == {"wimple": "zangief"}
    named = LogFilter(regex="^([0-9]+)$", name="pid")
    assert capture([named], "30852\nnot a pid\n").data == {"pid": "30852"}
    invalid = capture([LogFilter(regex=r".*:(.+?)\s*=\s*(.+)$")], "Incident: Number= 1235")
    assert invalid.data == {"_Number": "1235"}
    assert invalid.warnings
    partial = LogFilter(regex=r"^.*\.[A-Z]([0-9]+)\.", name="CNUM")
    assert capture([partial], "PHVGBT.C0437390.FIN7.BTOY125").data == {}
    substrings = LogFilter(regex=r"^.*\.[A-Z]([0-9]+)\.", name="CNUM", match_substrings=True)
    assert capture([substrings], "PHVGBT.C0437390.FIN7.BTOY125").data == {"CNUM": "0437390"}
