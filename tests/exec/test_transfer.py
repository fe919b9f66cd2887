"""exec/transfer.py: copy framing and decoding, checked against models of the far end."""

from __future__ import annotations

import base64
import hashlib
import re
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.exec.transfer import (
    CHUNK_BYTES,
    LINE_CHARS,
    Digests,
    DownloadDecoder,
    frame_input,
    mode_from_ls,
    posix_cksum,
)

ALL_BYTES = bytes(range(256))


def reference_cksum(data: bytes) -> int:
    """POSIX cksum bit by bit, straight from its definition (slow, obviously right)."""
    message = data
    length = len(data)
    while length:
        message += bytes([length & 0xFF])
        length >>= 8
    crc = 0
    for byte in message:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return ~crc & 0xFFFFFFFF


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_fast_cksum_equals_the_definition(data: bytes) -> None:
    assert posix_cksum(data) == reference_cksum(data)


def far_end_reader(stream: bytes) -> tuple[bytes, list[bytes]]:
    """What the shell loop of input_reader does with a stream: read a count line, then that
    many lines through base64 -d; stop at a count of 0 and return its figures."""
    lines = stream.split(b"\n")
    assert lines.pop() == b""  # the stream ends with a line break
    out = b""
    at = 0
    while True:
        count, *figures = lines[at].split(b" ")
        assert re.fullmatch(rb"\d+", count)
        at += 1
        if count == b"0":
            assert at == len(lines), "nothing may follow the end line"
            return out, figures
        chunk = lines[at : at + int(count)]
        assert all(0 < len(line) <= LINE_CHARS for line in chunk)
        out += base64.b64decode(b"".join(chunk), validate=True)
        at += int(count)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8), st.integers(0, 4))
def test_framing_round_trips_any_pieces(pieces: list[bytes], big: int) -> None:
    pieces = [*pieces, ALL_BYTES * (big * 1000)]
    data = b"".join(pieces)
    digests = Digests()
    stream = b"".join(frame_input(pieces, digests))
    decoded, figures = far_end_reader(stream)
    assert decoded == data
    sha, crc, size = figures
    assert sha.decode() == hashlib.sha256(data).hexdigest()
    assert (int(crc), int(size)) == (reference_cksum(data), len(data))
    assert digests.size == len(data)
    # Only characters a canonical-mode terminal passes through untouched.
    assert re.fullmatch(rb"[A-Za-z0-9+/= \n]*", stream)


def test_a_large_input_comes_in_chunks_of_bounded_size() -> None:
    data = ALL_BYTES * (CHUNK_BYTES // 256 * 2 + 7)
    frames = list(frame_input([data[:1000], data[1000:]]))
    assert len(frames) == 4  # three chunks and the end line
    assert all(len(frame) < CHUNK_BYTES * 4 // 3 + 1000 for frame in frames)
    assert far_end_reader(b"".join(frames))[0] == data


def download_stream(data: bytes, *, encoding: str, perms: str = "-rw-r--r--") -> bytes:
    """What download_script prints after its begin marker, as the PTY delivers it."""
    if encoding == "base64":
        text = base64.encodebytes(data)  # 76-character lines, as base64(1) prints
    else:
        rows = [data[i : i + 16] for i in range(0, len(data), 16)]
        text = b"".join(b"".join(b" %02x" % byte for byte in row) + b"\n" for row in rows)
    trailer = b"\n:S %s %d %d\n" % (
        hashlib.sha256(data).hexdigest().encode(),
        reference_cksum(data),
        len(data),
    )
    header = b":D %d %s %s\n" % (len(data), perms.encode(), encoding.encode())
    return (header + text + trailer).replace(b"\n", b"\r\n")


def feed_in_cuts(decoder: DownloadDecoder, stream: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    data, text = b"", b""
    for start, end in zip([0, *points], [*points, len(stream)], strict=True):
        more, said = decoder.feed(stream[start:end])
        data += more
        text += said
    return data, text


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=2000),
    st.sampled_from(["base64", "od"]),
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_a_download_decodes_exactly_however_it_is_cut(
    data: bytes, encoding: str, cuts: list[int]
) -> None:
    decoder = DownloadDecoder()
    decoded, text = feed_in_cuts(decoder, download_stream(data, encoding=encoding), cuts)
    assert decoded == data
    assert text == b""
    assert decoder.finish() == ""
    assert decoder.mode == 0o644


@pytest.mark.parametrize("encoding", ["base64", "od"])
def test_a_download_whose_checksum_differs_is_refused(encoding: str) -> None:
    stream = download_stream(ALL_BYTES, encoding=encoding)
    real = hashlib.sha256(ALL_BYTES).hexdigest().encode()
    decoder = DownloadDecoder()
    decoder.feed(stream.replace(real, b"0" * 64))
    assert decoder.finish() == ("SHA-256 differs (did the file change while it was read?)")


def test_without_sha256sum_the_cksum_decides() -> None:
    real = hashlib.sha256(ALL_BYTES).hexdigest().encode()
    good = download_stream(ALL_BYTES, encoding="base64").replace(real, b"-")
    decoder = DownloadDecoder()
    decoder.feed(good)
    assert decoder.finish() == ""
    crc = str(reference_cksum(ALL_BYTES)).encode()
    bad = good.replace(b" " + crc + b" ", b" 12345 ")
    decoder = DownloadDecoder()
    decoder.feed(bad)
    assert decoder.finish().startswith("cksum differs (did the file change")


def test_an_error_in_the_middle_of_the_data_fails_the_download_and_is_shown() -> None:
    stream = download_stream(ALL_BYTES * 10, encoding="base64")
    cut = stream.index(b"\r\n", 200) + 2
    broken = stream[:cut] + b"base64: read error: Input/output error\r\n"
    decoder = DownloadDecoder()
    _, text = decoder.feed(broken)
    assert b"Input/output error" in text
    assert decoder.finish().startswith(("the data did not decode", "unexpected output"))


def test_messages_before_the_header_are_passed_on_and_no_data_is_a_failure() -> None:
    decoder = DownloadDecoder()
    data, text = decoder.feed(b"ecsexec: cannot copy /x: no such file or directory\r\n")
    assert (data, text) == (b"", b"ecsexec: cannot copy /x: no such file or directory\n")
    assert decoder.finish() == "no data arrived"


def test_a_download_cut_short_is_a_failure() -> None:
    stream = download_stream(ALL_BYTES, encoding="base64")
    decoder = DownloadDecoder()
    decoder.feed(stream[: stream.index(b":S")])
    assert decoder.finish() == "the data ended early"


@pytest.mark.parametrize(
    ("listing", "mode"),
    [
        ("-rw-r--r--", 0o644),
        ("-rwxr-x---.", 0o750),
        ("-rwsr-sr-t", 0o7755),
        ("-rwSr-Sr-T", 0o7644),
        ("drwx------+", 0o700),
        ("-r?-------", None),
        ("-rw", None),
    ],
)
def test_modes_are_read_from_ls_listings(listing: str, mode: int | None) -> None:
    assert mode_from_ls(listing) == mode
    if mode is not None:
        assert stat.filemode(0o100000 | mode)[1:] == listing[1:10]


def test_figures_without_any_checksum_are_refused() -> None:
    digests = Digests()
    digests.update(b"abc")
    assert "neither sha256sum nor cksum" in digests.mismatch("-", "-", 3)
    assert digests.mismatch("-", "-", 4).startswith("size differs")


def test_a_container_sending_more_than_it_announced_is_cut_off() -> None:
    """The header is a promise (the far end reads exactly that many bytes): a container
    that keeps sending cannot fill the local disk or memory."""
    decoder = DownloadDecoder()
    data, _ = decoder.feed(b":D 10 -rw-r--r-- base64\n")
    line = base64.b64encode(b"x" * 3000) + b"\n"
    total = b""
    shown = b""
    for _ in range(2000):  # 6 MB against an announced 10 bytes
        data, text = decoder.feed(line)
        total += data
        shown += text
    assert len(total) <= 10
    assert len(shown) <= 64 * 1024
    assert decoder.finish() == "the container sent more than the 10 bytes it announced"


def test_a_line_without_end_is_held_only_so_far() -> None:
    decoder = DownloadDecoder()
    shown = b""
    for _ in range(1000):
        shown += decoder.feed(b"y" * 10_000)[1]
    assert len(decoder._line) <= 64 * 1024  # the bound under test
    assert decoder.finish() == "no data arrived"


def test_a_file_cut_short_while_it_was_read_is_named_as_such() -> None:
    """Log rotation by copytruncate: the far end measured 512 bytes, then read fewer."""
    stream = download_stream(ALL_BYTES * 2, encoding="base64")
    short = base64.b64encode(ALL_BYTES)  # 256 bytes, not 512
    header, rest = stream.split(b"\r\n", 1)
    trailer = rest[rest.index(b":S") :]
    decoder = DownloadDecoder()
    decoder.feed(header + b"\r\n" + short + b"\r\n" + trailer)
    assert decoder.finish() == "the file shrank while it was read (512 bytes, then 256)"
