"""Move bytes through an exec session's terminal: framing, checksums, far-end scripts. Pure.

ECS Exec offers nothing but a PTY (docs/ssm-protocol.md §12), so a file travels as text
the terminal leaves alone, and the shell at the far end turns it back into bytes.

**Towards the container** (job scripts, ``ecsexec cp`` uploads) the data is cut into
chunks; each is sent as a line ``<n>`` and then ``n`` lines of base64, and the stream ends
with ``0 <sha256> <cksum> <size>``. The far end (:func:`input_reader`) reads each count
with ``read`` and the lines with ``head -n <n> | base64 -d``. The PTY stays in canonical
mode, so a ``read(2)`` never returns more than one line and no tool can read past its
share, busybox's stdio-buffered ``head`` included (in raw mode it would swallow the next
chunk's count). Lines stay far below canonical mode's 4095-byte limit, and base64 holds
no character the line discipline acts on (``^C``, ``^D``, ``^S``, erase, kill). Chunked
framing streams: neither side needs the whole input, nor its size, in advance.

**From the container** (downloads) the far end prints a header line ``:D <size> <mode>
<encoding>``, the file through ``base64`` (or ``od -An -v -tx1`` where base64 is missing),
and a trailer ``:S <sha256|-> <cksum|-> <size>``; :class:`DownloadDecoder` turns that back
into bytes as it arrives. Base64 and hex never contain ``:``, so a tool's error message in
the middle of the data cannot pass for data.

Both directions are checked end to end: with ``sha256sum`` where the container has it,
else with POSIX ``cksum`` (a CRC-32), and a container with neither is refused.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import shlex
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

CHUNK_BYTES: Final = 3 * 256 * 1024  # raw bytes a chunk: 1 MiB of base64, one head process
LINE_CHARS: Final = 4000  # base64 characters a line: below the 4095-byte canonical limit
TRANSFER_FAILED: Final = 125  # the exit code when the far end refuses or the check fails

_F = "__ecsexec"  # prefix of every shell variable and function of ours


# --- checksums ---------------------------------------------------------------------------

_REVERSE_BITS: Final = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


class PosixCksum:
    """The CRC that POSIX ``cksum`` prints, computed incrementally and fast.

    ``cksum`` is CRC-32 with polynomial 0x04C11DB7 fed most significant bit first, from a
    zero register, over the data and then its length (least significant byte first, no
    trailing zero bytes), inverted at the end. zlib's CRC-32 is the same polynomial fed
    least significant bit first: on bit-reversed bytes it computes the reversed register.
    """

    def __init__(self) -> None:
        self._crc = 0xFFFFFFFF  # zlib's inverted register: the cksum register starts at 0
        self.size = 0

    def update(self, data: bytes) -> None:
        self._crc = zlib.crc32(data.translate(_REVERSE_BITS), self._crc)
        self.size += len(data)

    def value(self) -> int:
        length = self.size
        tail = bytearray()
        while length:
            tail.append(length & 0xFF)
            length >>= 8
        crc = zlib.crc32(bytes(tail).translate(_REVERSE_BITS), self._crc)
        return int(f"{crc:032b}"[::-1], 2)


def posix_cksum(data: bytes) -> int:
    """What ``cksum`` prints first for ``data``."""
    summer = PosixCksum()
    summer.update(data)
    return summer.value()


@dataclass
class Digests:
    """SHA-256, cksum and size of a byte stream, fed as it passes."""

    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    cksum: PosixCksum = field(default_factory=PosixCksum)

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.cksum.update(data)

    @property
    def size(self) -> int:
        return self.cksum.size

    def mismatch(self, sha256: str, cksum: str, size: int) -> str:
        """Why the far end's figures differ from ours ("" if they agree).

        ``sha256`` or ``cksum`` is ``-`` when the far end could not compute it; at least
        one must be there."""
        if size != self.size:
            return f"size differs: {size} bytes there, {self.size} here"
        if sha256 != "-":
            if sha256 != self.sha256.hexdigest():
                return "SHA-256 differs"
            return ""
        if cksum != "-":
            if cksum != str(self.cksum.value()):
                return "cksum differs"
            return ""
        return "the container has neither sha256sum nor cksum to check the data"


# --- towards the container -----------------------------------------------------------------


def frame_chunk(data: bytes) -> bytes:
    """One chunk of input: ``<lines>\\n`` then that many base64 lines."""
    if not data:
        return b""
    encoded = binascii.b2a_base64(data, newline=False)
    lines = [encoded[i : i + LINE_CHARS] for i in range(0, len(encoded), LINE_CHARS)]
    return b"%d\n" % len(lines) + b"\n".join(lines) + b"\n"


def frame_end(digests: Digests) -> bytes:
    """The last line: ``0 <sha256> <cksum> <size>``."""
    return b"0 %s %d %d\n" % (
        digests.sha256.hexdigest().encode(),
        digests.cksum.value(),
        digests.size,
    )


def frame_input(chunks: Iterable[bytes], digests: Digests | None = None) -> Iterator[bytes]:
    """The framed stream for ``chunks`` (any sizes), one piece per chunk of at most
    :data:`CHUNK_BYTES`, then the end line. ``digests`` (when given) ends up describing
    the data."""
    digests = digests if digests is not None else Digests()
    pending = b""
    for chunk in chunks:
        pending += chunk
        while len(pending) >= CHUNK_BYTES:
            piece, pending = pending[:CHUNK_BYTES], pending[CHUNK_BYTES:]
            digests.update(piece)
            yield frame_chunk(piece)
    if pending:
        digests.update(pending)
        yield frame_chunk(pending)
    yield frame_end(digests)


def encode_input(data: bytes) -> bytes:
    """The whole framed stream for ``data`` at once (small inputs, tests)."""
    return b"".join(frame_input([data]))


def input_reader(fd: int, fail: str) -> list[str]:
    """Shell lines reading a framed stream from the terminal into file descriptor ``fd``.

    Afterwards ``$__ecsexec_sha``, ``$__ecsexec_crc`` and ``$__ecsexec_size`` hold the end
    line's figures; ``fail`` (a shell function taking a message) is called if a chunk did
    not decode or the end line never came. A failed chunk is still read to its end, so
    the count of the next one is not taken from the middle of it.
    """
    return [
        f"{_F}_bad= {_F}_end=",
        f"while IFS=' ' read -r {_F}_n {_F}_sha {_F}_crc {_F}_size; do",
        f'  case "${_F}_n" in',
        f"  0) {_F}_end=1; break ;;",
        "  *[!0-9]*|'') break ;;",
        "  esac",
        # All n lines are read even if base64 gives up on one (cat drains the rest), so
        # the next count is never taken from the middle of a chunk. Its complaint (bad
        # input, or a full disk) is kept for the message.
        f'  {_F}_e=$(head -n "${_F}_n" |'
        f" {{ base64 -d 2>&1 >&{fd} || {{ cat >/dev/null; exit 1; }}; }}) || {_F}_bad=1",
        f'  {_F}_e="${{{_F}_e%%\n*}}"',  # its first line (a line break in the pattern)
        f'  [ -z "${_F}_bad" ] || {fail}'
        f' "the data could not be decoded and written: ${{{_F}_e:-base64 -d failed}}"',
        # A chunk is in: the client sees the data move (a copy's timeout counts from
        # there). Before the begin marker, so never part of the output.
        "  printf .",
        "done",
        f'[ -n "${_F}_end" ] || {fail} "the data stream ended early"',
    ]


def input_check(path: str, fail: str) -> list[str]:
    """Shell lines comparing the file at ``path`` (a shell word) with the end line's
    figures: SHA-256 where ``sha256sum`` exists, else ``cksum``; ``fail`` if they differ."""
    return [
        "if command -v sha256sum >/dev/null 2>&1; then",
        f"  set -- $(sha256sum < {path})",
        f'  [ "$1" = "${_F}_sha" ] || {fail} "SHA-256 differs (${_F}_size bytes expected)"',
        "elif command -v cksum >/dev/null 2>&1; then",
        f"  set -- $(cksum < {path})",
        f'  [ "$1 $2" = "${_F}_crc ${_F}_size" ] ||'
        f' {fail} "cksum differs (${_F}_size bytes expected)"',
        "else",
        f"  {fail} 'neither sha256sum nor cksum is installed to check the data'",
        "fi",
    ]


# --- far-end scripts for ecsexec cp ---------------------------------------------------------


@dataclass(frozen=True)
class Markers:
    """The wrapper's markers for one nonce (see :mod:`ecsexec.exec.wrap`), as printf lines."""

    nonce: str

    @property
    def ready(self) -> str:
        return f"printf '\\n__ECSEXEC_%s_%s__\\n' I {self.nonce}"

    @property
    def begin(self) -> str:
        return f"printf '\\n__ECSEXEC_%s_%s__\\n' B {self.nonce}"

    def end(self, code: str) -> str:
        return f"printf '\\n__ECSEXEC_%s_%s__:%d\\n' E {self.nonce} {code}"

    def fail_function(self, what: str) -> list[str]:
        """``__ecsexec_fail MESSAGE``: report ``ecsexec: <what>: MESSAGE`` between the
        markers and exit with :data:`TRANSFER_FAILED`. Safe to call before or after the
        begin marker (``$__ecsexec_begun``)."""
        return [
            # ``what`` names a path the user gave: one quoted word, never code or a format.
            f"{_F}_what={shlex.quote(what)}",
            f"{_F}_begun=",
            f"{_F}_fail() {{",
            f'  [ -n "${_F}_begun" ] || {self.begin}',
            f'  printf \'ecsexec: %s: %s\\n\' "${_F}_what" "$1"',
            f"  {self.end(str(TRANSFER_FAILED))}",
            f"  exit {TRANSFER_FAILED}",
            "}",
        ]


def _operand(path: str) -> str:
    """``path`` as one shell word that no tool takes for an option (``-rf`` is ``./-rf``)."""
    return shlex.quote("./" + path if path.startswith("-") else path)


def _tools(tools: Iterable[str]) -> list[str]:
    return [
        f"for {_F}_t in {' '.join(tools)}; do",
        f"  command -v ${_F}_t >/dev/null 2>&1 ||"
        f' {_F}_fail "${_F}_t is not installed in the container"',
        "done",
    ]


def _startup(markers: Markers, what: str) -> list[str]:
    return [
        *markers.fail_function(what),
        # Echo off before anything is sent, or the input would come back as output.
        f"stty -echo 2>/dev/null || {_F}_fail 'cannot turn terminal echo off (no stty?)'",
        "export TERM=dumb PAGER=cat LC_ALL=C",
        "set -f",  # no globbing when `set -- $(ls -ld ...)` splits a listing
    ]


@dataclass(frozen=True)
class Upload:
    """What an upload writes: ``destination`` on the container, and how.

    ``name`` is appended when the destination is a directory there (``cp`` does the
    same); ``mode`` (octal, e.g. ``0o755``) is set when given, else a new file gets the
    container's default (0666 less the umask). ``archive``: the data is a tar archive of
    a directory, unpacked into the destination (created if missing).
    """

    destination: str
    name: str
    mode: int | None = None
    archive: bool = False


def uploaded_path(upload: Upload, into: bool) -> str:
    """Where an upload landed: its destination, or with ``into`` (the far end's ``:P into``:
    the destination was a directory there) the source's name in it, as the far end
    builds it."""
    if not into:
        return upload.destination
    return upload.destination.removesuffix("/") + "/" + upload.name


def upload_script(upload: Upload, nonce: str) -> str:
    """The ``/bin/sh -c`` script of an upload (see the module docstring for the framing).

    The data goes to a hidden temporary file in the destination's directory, is checked,
    and only then renamed over the destination (``mv`` within one file system is atomic):
    a failed copy leaves the destination as it was. The temporary file is removed on every
    ending the shell sees, ^C included (the runner types it on a timeout or Ctrl-C before
    it terminates the session); only a SIGKILL with no ^C first (a lost connection) can
    leave ``.ecsexec-<nonce>.part`` behind, never the destination itself.

    An existing file keeps its owner and mode (``-p``: the source's mode), and a link to
    a file is written through, as ``cp`` does.
    """
    m = Markers(nonce)
    dest = _operand(upload.destination)
    tools = ["head", "base64", "mv", "rm"] + (["tar", "mkdir"] if upload.archive else [])
    lines = [
        *_startup(m, f"cannot copy to {upload.destination}"),
        *_tools(tools),
        f"{_F}_d={dest}",
        f"{_F}_into=as",
        f'[ -d "${_F}_d" ] && {_F}_d="${{{_F}_d%/}}/"{shlex.quote(upload.name)} && {_F}_into=into',
        # A link to a file is written through, as cp does: the file it names is replaced
        # (the x keeps a name's trailing line breaks from $(...)).
        f'if [ -L "${_F}_d" ] && [ -f "${_F}_d" ] &&'
        f' {_F}_t=$(readlink -f "${_F}_d" 2>/dev/null && echo x); then',
        f'  {_F}_d="${{{_F}_t%?x}}"',
        "fi",
        f'case "${_F}_d" in */*) {_F}_dir="${{{_F}_d%/*}}" ;; *) {_F}_dir=. ;; esac',
        f'[ -n "${_F}_dir" ] || {_F}_dir=/',
        f'{_F}_p="${_F}_dir/.ecsexec-{nonce}.part"',
        f'trap \'rm -rf "${_F}_p" "${_F}_p.d"\' EXIT',
        "trap 'exit 129' HUP",
        "trap 'exit 143' TERM",
        # ^C from the client (Ctrl-C, a timeout): clean up, then say so; the client
        # terminates the session once it sees the end marker.
        f'trap \'rm -rf "${_F}_p" "${_F}_p.d"; {_F}_fail "interrupted"\' INT',
        f'{_F}_e=$( (umask 077 && : > "${_F}_p") 2>&1 ) ||'
        f' {_F}_fail "cannot write in ${_F}_dir: ${{{_F}_e##*: }}"',
        f'exec 8>"${_F}_p"',
        m.ready,
        *input_reader(8, f"{_F}_fail"),
        "exec 8>&-",
        *input_check(f'"${_F}_p"', f"{_F}_fail"),
    ]
    if upload.archive:
        lines += [
            f'mkdir -p "${_F}_p.d" && tar -xf "${_F}_p" -C "${_F}_p.d" 2>/dev/null ||'
            f' {_F}_fail "cannot unpack the archive in ${_F}_dir"',
        ]
        if upload.mode is not None:
            lines.append(f'chmod {upload.mode:o} "${_F}_p.d"')
        lines += [
            f'if [ -d "${_F}_d" ]; then',
            # An existing directory: merge into it, as cp -r does.
            f'  {_F}_e=$(tar -xf "${_F}_p" -C "${_F}_d" 2>&1) ||'
            f' {_F}_fail "cannot unpack into ${_F}_d: ${_F}_e"',
            "else",
            f'  {_F}_e=$(mv -f "${_F}_p.d" "${_F}_d" 2>&1) ||'
            f' {_F}_fail "cannot create ${_F}_d: ${{{_F}_e##*: }}"',
            "fi",
        ]
    else:
        default = "$(printf '%o' $((0666 & ~0$(umask))))"
        if upload.mode is not None:
            mode = f"{stat.S_IMODE(upload.mode):o}"
        else:
            mode = f'"${{{_F}_mode:-{default}}}"'
        lines += [
            # Replacing a file: cp writes into it, keeping its owner and mode (the app's
            # config stays readable to the app, a script executable); so do we.
            f"{_F}_mode= {_F}_owner=",
            f'if [ -f "${_F}_d" ]; then',
            f'  {_F}_mode=$(stat -c %a "${_F}_d" 2>/dev/null)',
            f'  {_F}_owner=$(stat -c %u:%g "${_F}_d" 2>/dev/null)',
            "fi",
            f'[ -z "${_F}_owner" ] || chown "${_F}_owner" "${_F}_p" 2>/dev/null',
            f'chmod {mode} "${_F}_p" 2>/dev/null',
            f'{_F}_e=$(mv -f "${_F}_p" "${_F}_d" 2>&1) ||'
            f' {_F}_fail "cannot write ${_F}_d: ${{{_F}_e##*: }}"',
        ]
    lines += [
        f"{_F}_begun=1",
        m.begin,
        # Whether the name was added, not the path: a path may hold a line break.
        f"printf ':P %s\\n' \"${_F}_into\"",
        m.end("0"),
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Download:
    """What a download reads: ``source`` on the container (a directory with ``archive``)."""

    source: str
    archive: bool = False


def download_script(download: Download, nonce: str) -> str:
    """The ``/bin/sh -c`` script of a download: header, data, trailer (module docstring).

    A directory is first packed with ``tar`` into a temporary file, so the checksums
    describe exactly the bytes sent."""
    m = Markers(nonce)
    src = _operand(download.source)
    lines = [
        *_startup(m, f"cannot copy {download.source}"),
        f"trap '{_F}_fail interrupted' INT",  # ^C from the client: say so and end
        f"{_F}_f={src}",
        f"{_F}_enc=base64",
        f"command -v base64 >/dev/null 2>&1 || {_F}_enc=od",
        f'[ "${_F}_enc" = base64 ] || command -v od >/dev/null 2>&1 ||'
        f" {_F}_fail 'neither base64 nor od is installed in the container'",
        f'[ -e "${_F}_f" ] || {_F}_fail "no such file or directory"',
    ]
    if download.archive:
        lines += [
            *_tools(["tar", "rm"]),
            f'[ -d "${_F}_f" ] || {_F}_fail "not a directory"',
            f'{_F}_t="${{TMPDIR:-/tmp}}/.ecsexec-{nonce}.tar"',
            f"trap 'rm -f \"${_F}_t\"' EXIT",
            "trap 'exit 129' HUP",
            "trap 'exit 143' TERM",
            # ^C from the client (Ctrl-C, a timeout): the archive goes, then we say so.
            f'trap \'rm -f "${_F}_t"; {_F}_fail "interrupted"\' INT',
            f'{_F}_e=$( (umask 077 && tar -cf "${_F}_t" -C "${_F}_f" .) 2>&1 ) ||'
            f' {_F}_fail "tar failed: ${_F}_e"',
            f'{_F}_m=$(ls -ldL "${_F}_f" 2>/dev/null)',
            f'{_F}_f="${_F}_t"',
        ]
    else:
        lines += [
            f'[ -d "${_F}_f" ] && {_F}_fail "is a directory (copy it with -r)"',
            # A device or FIFO would be read forever (/dev/zero) or block (a FIFO).
            f'[ -f "${_F}_f" ] || {_F}_fail'
            ' "not a regular file (a device, FIFO or socket cannot be copied)"',
            f'[ -r "${_F}_f" ] && : 2>/dev/null < "${_F}_f" || {_F}_fail "cannot read it"',
            f'{_F}_m=$(ls -ldL "${_F}_f" 2>/dev/null)',
        ]
    # The file is measured once and every later read takes exactly that many bytes, so a
    # log being appended to comes down as it was when the copy began, checksums agreeing.
    # A file claiming size 0 may be a /proc or /sys one, made up afresh at each read
    # (/proc/self/*, cgroup counters): it is read once, into memory as base64 (no NUL
    # in it), and every later read is taken from there.
    take = f"{_F}_take"
    lines += [
        *_tools(["head", "wc"]),
        f"{_F}_snapped=",
        f"set -- ${_F}_m",
        f'if [ "$5" = 0 ] && [ "${_F}_enc" = base64 ]; then',
        f'  {_F}_snap=$(base64 < "${_F}_f") || {_F}_fail "cannot read it"',
        f"  {_F}_snapped=1",
        "fi",
        f"{_F}_take() {{",
        f'  if [ -n "${_F}_snapped" ]; then printf "%s\\n" "${_F}_snap" | base64 -d',
        f'  else head -c "${_F}_s" < "${_F}_f"; fi',
        "}",
        f'if [ -n "${_F}_snapped" ]; then {_F}_s=$({take} | wc -c);'
        f' else {_F}_s=$(wc -c < "${_F}_f"); fi',
        f"{_F}_begun=1",
        m.begin,
        f"set -- ${_F}_m",
        f"printf ':D %s %s %s\\n' ${_F}_s \"${{1:--}}\" ${_F}_enc",
        f'if [ "${_F}_enc" = base64 ]; then {take} | base64; else {take} | od -An -v -tx1; fi',
        f"{_F}_rc=$?",
        f"{_F}_sha=- {_F}_crc=-",
        "if command -v sha256sum >/dev/null 2>&1; then",
        f"  set -- $({take} | sha256sum); {_F}_sha=$1",
        "elif command -v cksum >/dev/null 2>&1; then",
        f"  set -- $({take} | cksum); {_F}_crc=$1",
        "fi",
        f"printf '\\n:S %s %s %s\\n' ${_F}_sha ${_F}_crc ${_F}_s",
        f'[ "${_F}_rc" = 0 ] || {{ {m.end(str(TRANSFER_FAILED))}; exit {TRANSFER_FAILED}; }}',
        m.end("0"),
    ]
    return "\n".join(lines)


# --- from the container ---------------------------------------------------------------------

TEXT_LIMIT: Final = 64 * 1024  # bytes of a download's messages shown, or of a line held
_HEADER: Final = re.compile(rb":D (\d+) (\S+) (base64|od)\Z")
_TRAILER: Final = re.compile(rb":S ([0-9a-f]{64}|-) (\d+|-) (\d+)\Z")
_WHITESPACE: Final = b" \t\r\n"


def mode_from_ls(permissions: str) -> int | None:
    """The permission bits of an ``ls -l`` mode string (``-rwxr-sr-T``), or None."""
    if len(permissions) < 10:
        return None
    bits = 0
    for index, char in enumerate(permissions[1:10]):
        shift = 8 - index
        if char == "rwx"[index % 3]:
            bits |= 1 << shift
        elif index % 3 == 2 and char in "sStT":
            bits |= (stat.S_ISUID, stat.S_ISGID, stat.S_ISVTX)[index // 3]
            if char in "st":
                bits |= 1 << shift
        elif char != "-":
            return None
    return bits


class DownloadDecoder:
    """Turns a download's cleaned output back into the file's bytes, incrementally.

    :meth:`feed` returns ``(data, text)``: decoded bytes, and output that is not part of the
    transfer (the far end's error messages) to show to the user. :meth:`finish` says what
    went wrong, or "" once the trailer has arrived and every figure matches.
    """

    def __init__(self) -> None:
        self._state = "header"
        self._line = bytearray()
        self._carry = b""
        self.encoding = ""
        self.size: int | None = None
        self.permissions = ""
        self.digests = Digests()
        self._trailer: tuple[str, str, int] | None = None
        self._problem = ""
        self._shown = 0  # bytes of text passed on so far

    @property
    def mode(self) -> int | None:
        return mode_from_ls(self.permissions) if self.permissions else None

    def feed(self, chunk: bytes) -> tuple[bytes, bytes]:
        data, text = self._feed(chunk)
        # The container is not trusted: what it says besides the data is shown, up to a
        # bound, never held without end.
        room = max(0, TEXT_LIMIT - self._shown)
        self._shown += min(len(text), room)
        return data, text[:room]

    def _feed(self, chunk: bytes) -> tuple[bytes, bytes]:
        data = bytearray()
        text = bytearray()
        while chunk:
            if self._state in ("header", "trailer", "after"):
                end = chunk.find(b"\n")
                if end == -1:
                    self._line += chunk
                    if len(self._line) > TEXT_LIMIT:  # no header or trailer is this long
                        if self._state == "trailer":
                            self._fail("unexpected output in the data: a line without end")
                        text += self._line
                        self._line.clear()
                    return bytes(data), bytes(text)
                self._line += chunk[:end]
                chunk = chunk[end + 1 :]
                line = bytes(self._line).rstrip(b"\r")
                self._line.clear()
                self._on_line(line, text)
            elif self._state == "data":
                stop = chunk.find(b":")
                part, chunk = (chunk, b"") if stop == -1 else (chunk[:stop], chunk[stop:])
                data += self._decode(part)
                if stop != -1:
                    data += self._decode(b"", final=True)
                    self._state = "trailer"
            else:  # failed: everything else is text for the user
                text += chunk
                chunk = b""
        return bytes(data), bytes(text)

    def _on_line(self, line: bytes, text: bytearray) -> None:
        if self._state == "header":
            match = _HEADER.fullmatch(line)
            if match is None:
                if line:
                    text += line + b"\n"
                return
            self.size = int(match.group(1))
            self.permissions = match.group(2).decode()
            self.encoding = match.group(3).decode()
            self._state = "data"
        elif self._state == "trailer":
            match = _TRAILER.fullmatch(line)
            if match is None:
                self._fail(f"unexpected output in the data: {line[:200]!r}")
                text += line + b"\n"
                return
            self._trailer = (match.group(1).decode(), match.group(2).decode(), int(match.group(3)))
            self._state = "after"
        elif line:
            text += line + b"\n"

    def _decode(self, part: bytes, *, final: bool = False) -> bytes:
        stripped = self._carry + part.translate(None, _WHITESPACE)
        quantum = 4 if self.encoding == "base64" else 2
        usable = len(stripped) if final else len(stripped) - len(stripped) % quantum
        self._carry = stripped[usable:]
        if not usable:
            return b""
        try:
            if self.encoding == "base64":
                decoded = binascii.a2b_base64(stripped[:usable], strict_mode=True)
            else:
                decoded = bytes.fromhex(stripped[:usable].decode("ascii"))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            self._fail("the data did not decode")
            return b""
        if self.size is not None and self.digests.size + len(decoded) > self.size:
            # The far end reads exactly the announced size: more is not the file, and
            # must not fill the local disk.
            self._fail(f"the container sent more than the {self.size} bytes it announced")
            return b""
        self.digests.update(decoded)
        return decoded

    def _fail(self, problem: str) -> None:
        if not self._problem:
            self._problem = problem
        self._state = "failed"

    def finish(self) -> str:
        """Why the download is not the file ("" if it is, checked end to end)."""
        if self._problem:
            return self._problem
        if self.size is None:
            return "no data arrived"
        if self._trailer is None:
            return "the data ended early"
        sha256, cksum, size = self._trailer
        if size != self.size:
            return f"the file changed while it was read ({self.size} then {size} bytes)"
        if self.digests.size < size:  # the far end reads exactly its size: it shrank
            return f"the file shrank while it was read ({size} bytes, then {self.digests.size})"
        problem = self.digests.mismatch(sha256, cksum, size)
        if problem.endswith(" differs"):  # the far end read it twice: data, then checksum
            problem += " (did the file change while it was read?)"
        return problem
