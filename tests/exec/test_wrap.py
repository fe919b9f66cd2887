"""Command wrapping and output cleaning: pure, with property tests over any bytes."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.exec.wrap import OutputCleaner, crlf_to_lf, raw, wrap

NONCE = "0123456789abcdef"


def pty(data: bytes) -> bytes:
    """What a PTY with default termios (ONLCR) does to a program's output."""
    return data.replace(b"\n", b"\r\n")


def stream(user: bytes, rc: int, *, noise: bytes = b"", nonce: str = NONCE) -> bytes:
    return (
        noise
        + pty(b"\n__ECSEXEC_B_" + nonce.encode() + b"__\n")
        + pty(user)
        + pty(b"\n__ECSEXEC_E_" + nonce.encode() + b"__:" + str(rc).encode() + b"\n")
    )


def clean(chunks: list[bytes], nonce: str = NONCE) -> tuple[bytes, int | None, str]:
    cleaner = OutputCleaner(wrap("true", nonce=nonce))
    out = b"".join(cleaner.feed(c) for c in chunks)
    rest, result = cleaner.finish()
    return out + rest, result.exit_code, result.reason


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(
    user=st.binary(max_size=300),
    rc=st.integers(0, 255),
    noise=st.binary(max_size=40),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_any_output_comes_back_byte_exact_with_its_exit_code(
    user: bytes, rc: int, noise: bytes, cuts: list[int]
) -> None:
    if b"__ECSEXEC_" in noise + user:
        return
    out, code, reason = clean(split(stream(user, rc, noise=noise), cuts))
    assert out == user
    assert code == rc and reason == ""


@settings(max_examples=200, deadline=None)
@given(user=st.binary(max_size=200), cuts=st.lists(st.integers(0, 1000), max_size=5))
def test_streamed_output_never_shows_marker_bytes(user: bytes, cuts: list[int]) -> None:
    if b"__ECSEXEC_" in user:
        return
    cleaner = OutputCleaner(wrap("true", nonce=NONCE))
    shown = b"".join(cleaner.feed(c) for c in split(stream(user, 7), cuts))
    assert b"__ECSEXEC_" not in shown
    assert user.startswith(shown)


def test_output_without_final_newline_is_reproduced() -> None:
    assert clean([stream(b"no newline", 0)]) == (b"no newline", 0, "")


def test_missing_end_marker_means_unknown_not_zero() -> None:
    data = stream(b"partial\n", 0)
    cut = data.index(b"\r\n__ECSEXEC_E_")
    out, code, reason = clean([data[:cut]])
    assert out == b"partial\n"
    assert code is None and "end marker" in reason


def test_no_begin_marker_reports_cannot_start_shell() -> None:
    assert clean([]) == (b"", None, "cannot start /bin/sh (no begin marker); exit status unknown")


def test_markers_from_another_nonce_are_user_output() -> None:
    fake = b"__ECSEXEC_E_ffffffffffffffff__:0\n"
    out, code, _ = clean([stream(fake + b"after\n", 4)])
    assert out == fake + b"after\n" and code == 4


def test_streaming_holds_back_only_a_possible_marker_start() -> None:
    cleaner = OutputCleaner(wrap("true", nonce=NONCE))
    assert cleaner.feed(pty(b"\n__ECSEXEC_B_" + NONCE.encode() + b"__\n")) == b""
    assert cleaner.feed(b"line one\r\nline two\r\n") == b"line one\nline two"
    assert cleaner.feed(b"more\r") == b"\nmore"
    assert cleaner.feed(b"\n") == b""


def test_raw_mode_only_cleans_line_endings() -> None:
    cleaner = OutputCleaner(raw("ls"))
    assert cleaner.feed(b"a\r\nb\r") == b"a\nb"
    rest, result = cleaner.finish()
    assert rest == b"\r" and result.exit_code is None and "raw" in result.reason


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        max_size=80,
    )
)
def test_wrapped_command_round_trips_through_shlex(command: str) -> None:
    wrapped = wrap(command, nonce=NONCE)
    argv = shlex.split(wrapped.ecs_command)
    assert argv[:2] == ["/bin/sh", "-c"]
    assert "/bin/sh -c " + shlex.quote(command) in argv[2]
    assert "__ECSEXEC_B_" not in wrapped.ecs_command  # the marker is assembled by printf


@pytest.mark.parametrize(
    ("command", "rc", "output"),
    [
        ("exit 3", 3, b""),
        ("echo hi; exit 7", 7, b"hi\n"),
        ("printf 'no newline'", 0, b"no newline"),
        ("ls /nonexistent-ecsexec 2>&1 >/dev/null | sed 's/.*/x/'; exit 2", 2, b"x\n"),
        ("kill -9 $$", 137, b""),
        ('echo "$TERM $PAGER"', 0, b"dumb cat\n"),
    ],
)
def test_wrapped_script_runs_in_a_real_shell(command: str, rc: int, output: bytes) -> None:
    wrapped = wrap(command)
    proc = subprocess.run(
        shlex.split(wrapped.ecs_command), capture_output=True, check=False, timeout=30
    )
    cleaner = OutputCleaner(wrapped)
    out = cleaner.feed(pty(proc.stdout))
    rest, result = cleaner.finish()
    assert out + rest == output.replace(b"\r\n", b"\n")
    assert result.exit_code == rc == proc.returncode


@pytest.mark.parametrize(
    ("user", "rc", "expected"),
    [
        (b"partial\nKilled\n", 137, b"partial\n"),
        (b"Segmentation fault (core dumped)\n", 139, b""),
        (b"Killed\n", 0, b"Killed\n"),  # not a signal death: the user printed it
        (b"Not Killed\n", 137, b"Not Killed\n"),
    ],
)
def test_shell_signal_notice_is_dropped_only_after_a_signal_death(
    user: bytes, rc: int, expected: bytes
) -> None:
    assert clean([stream(user, rc)])[:2] == (expected, rc)


@settings(max_examples=300, deadline=None)
@given(
    user=st.binary(max_size=200),
    rc=st.integers(0, 255),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_end_seen_exactly_when_the_whole_end_marker_has_arrived(
    user: bytes, rc: int, cuts: list[int]
) -> None:
    if b"__ECSEXEC_" in user:
        return
    data = stream(user, rc)  # ends with the end marker's line break
    cleaner = OutputCleaner(wrap("true", nonce=NONCE))
    fed = 0
    for chunk in split(data, cuts):
        cleaner.feed(chunk)
        fed += len(chunk)
        assert cleaner.end_seen == (fed == len(data)), fed
    _, result = cleaner.finish()
    assert result.exit_code == rc and not cleaner.end_seen


@given(
    st.lists(
        st.tuples(st.binary(max_size=200), st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n"])),
        max_size=30,
    )
)
def test_crlf_to_lf_is_exact_for_short_and_long_lines(pieces: list[tuple[bytes, bytes]]) -> None:
    # Short and long first lines take different paths; both must equal the plain replace.
    data = b"".join(text + end for text, end in pieces)
    assert crlf_to_lf(data) == data.replace(b"\r\n", b"\n")
