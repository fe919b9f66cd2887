"""The exit-status trailer of interactive commands (pure, with property tests)."""

from __future__ import annotations

import shlex

from hypothesis import given
from hypothesis import strategies as st

from ecsexec.exec.trailer import TrailerFilter, with_exit_trailer

NONCE = "0123456789ab"


def test_the_command_runs_the_argv_under_sh_and_prints_the_status() -> None:
    built = with_exit_trailer("sh -c 'exit 4'", nonce=NONCE)
    argv = shlex.split(built.ecs_command)
    assert argv[:2] == ["/bin/sh", "-c"] and argv[3:] == ["ecsexec-shell", "sh", "-c", "exit 4"]
    assert f"__ECSEXEC_S_{NONCE}_%d__" in argv[2]
    assert built.marker == b"\r\n__ECSEXEC_S_" + NONCE.encode() + b"_"


@given(
    output=st.binary(max_size=300),
    status=st.integers(0, 255),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_the_trailer_is_removed_wherever_the_stream_is_cut(
    output: bytes, status: int, cuts: list[int]
) -> None:
    marker = with_exit_trailer("true", nonce=NONCE).marker
    stream = output + marker + str(status).encode() + b"__\r\n"
    pieces, last = [], 0
    for cut in sorted(c for c in cuts if c <= len(stream)):
        pieces.append(stream[last:cut])
        last = cut
    pieces.append(stream[last:])
    filt = TrailerFilter(marker)
    shown = b"".join(filt.feed(piece) for piece in pieces) + filt.finish()
    assert shown == output
    assert filt.exit_code == status


@given(output=st.binary(max_size=300), cut=st.integers(0, 300))
def test_without_a_trailer_every_byte_is_shown_and_the_status_is_unknown(
    output: bytes, cut: int
) -> None:
    marker = with_exit_trailer("true", nonce=NONCE).marker
    filt = TrailerFilter(marker)
    shown = filt.feed(output[:cut]) + filt.feed(output[cut:]) + filt.finish()
    assert shown == output and filt.exit_code is None
