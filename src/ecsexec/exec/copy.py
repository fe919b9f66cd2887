"""Copy files to and from containers: the local I/O around :mod:`ecsexec.exec.transfer`.

Each copy is an ordinary wrapped command (so dispatch, timeouts, results and history treat
it like ``run``) whose input is read from a local file as it is sent, and whose output
goes through a filter: an upload's filter picks up the path it wrote, a download's
decodes the data into a local temporary file that is renamed into place only once the
checksums match.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import stat
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ecsexec.errors import ConfigurationError
from ecsexec.exec.runner import ContainerTarget
from ecsexec.exec.transfer import (
    CHUNK_BYTES,
    Digests,
    Download,
    DownloadDecoder,
    Upload,
    download_script,
    frame_chunk,
    frame_end,
    upload_script,
    uploaded_path,
)
from ecsexec.exec.wrap import OutputFilter, WrappedCommand, make_nonce

ProgressCallback = Callable[[str, int, int | None], None]
"""Called with (node, bytes so far, total bytes or None) as a copy moves on."""

CopiedCallback = Callable[[str, str], None]
"""Called with (node, path) for each file or directory a copy completed there or here."""

ABORT = b"abort\n"  # not a count: the far end stops reading, fails and cleans up


@dataclass
class LocalSource:
    """What an upload sends: a regular file, or a directory packed into a tar file.

    Built once and shared by every node; :meth:`close` releases what it created. A
    packed tree or spooled stdin is an unlinked temporary file (``spool``), read with
    ``pread`` so the nodes share it: no ending, a killed client included, leaves it.
    """

    path: Path  # for messages when there is a spool
    name: str  # the name a copy into a directory gets
    size: int
    mode: int
    archive: bool = False
    spool: BinaryIO | None = None

    def chunks(self) -> Iterator[bytes]:
        """The bytes to send, a chunk at a time, from the start (once per node)."""
        if self.spool is None:
            with self.path.open("rb") as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    yield chunk
            return
        offset = 0
        while chunk := os.pread(self.spool.fileno(), CHUNK_BYTES, offset):
            offset += len(chunk)
            yield chunk

    @classmethod
    def from_path(
        cls,
        path: Path,
        *,
        recursive: bool,
        preserve: bool = False,
        stop: threading.Event | None = None,
    ) -> LocalSource:
        """``path`` as it will be sent. A directory (``recursive``) is packed with the links
        inside it kept as links; a link naming a directory is followed, as ``scp -r``
        does. Without ``preserve`` its files are packed as ``cp -r`` would write them:
        owned by whoever unpacks them, set-user-ID and set-group-ID bits cleared.
        ``stop`` (Ctrl-C) ends the packing or spooling, which then leaves nothing."""
        try:
            info = path.stat()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
        name = path.resolve().name or "root"
        if path.is_dir():
            if not recursive:
                raise ConfigurationError(f"{path} is a directory (copy it with -r)")
            spool = tempfile.TemporaryFile(prefix="ecsexec-cp-")  # noqa: SIM115 (kept open)
            try:
                with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    tar.add(path.resolve(), arcname=".", filter=_packer(preserve, stop))
                # chunks() reads the file descriptor (pread), not this buffered object:
                # without the flush the archive's tail never reached the nodes.
                spool.flush()
            except _Stopped:
                spool.close()
                raise ConfigurationError(f"cannot read {path}: interrupted") from None
            except OSError as exc:
                spool.close()
                raise ConfigurationError(f"cannot read {path}: {exc}") from exc
            return cls(path, name, spool.tell(), info.st_mode, True, spool)
        if not path.is_file():
            if stat.S_ISFIFO(info.st_mode):  # <(cmd): read once, so spooled for every node
                with path.open("rb") as stream:
                    return cls.from_stream(stream, name, stop=stop)
            # A device would be spooled for ever (/dev/zero); scp refuses it too.
            raise ConfigurationError(f"{path} is not a regular file")
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
        return cls(path, name, info.st_size, info.st_mode)

    @classmethod
    def from_stream(
        cls, stream: BinaryIO, name: str, *, stop: threading.Event | None = None
    ) -> LocalSource:
        """Standard input: spooled to a temporary file, so each node can read it whole;
        ``stop`` (Ctrl-C) ends the spooling and removes the file."""
        spool = tempfile.TemporaryFile(prefix="ecsexec-cp-")  # noqa: SIM115 (kept open)
        while True:
            if stop is not None and stop.is_set():
                spool.close()
                raise ConfigurationError(f"cannot read {name}: interrupted")
            try:
                chunk = stream.read(CHUNK_BYTES)
            except OSError as exc:
                spool.close()
                raise ConfigurationError(f"cannot read {name}: {exc.strerror or exc}") from exc
            if not chunk:
                break
            try:
                spool.write(chunk)
            except OSError as exc:
                spool.close()
                raise ConfigurationError(
                    f"cannot spool {name} in {tempfile.gettempdir()}: {exc.strerror or exc}"
                ) from exc
        spool.flush()
        return cls(Path(name), name, spool.tell(), 0o644, False, spool)

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


class _Stopped(Exception):
    """Packing a directory was interrupted."""


def _packer(
    preserve: bool, stop: threading.Event | None
) -> Callable[[tarfile.TarInfo], tarfile.TarInfo]:
    """Each member as it is packed: with ``preserve`` as it is, else as ``cp -r`` without
    ``-p`` writes it (the unpacking user's, no set-ID bits); stops when ``stop`` is set."""

    def pack(member: tarfile.TarInfo) -> tarfile.TarInfo:
        if stop is not None and stop.is_set():
            raise _Stopped
        if not preserve:
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            member.mode &= ~(stat.S_ISUID | stat.S_ISGID)
        return member

    return pack


def remote_destination(destination: str, name: str) -> str:
    """A destination ending in ``/`` means that directory and the source's name."""
    if not destination:
        raise ConfigurationError("the remote path is empty")
    return destination + name if destination.endswith("/") else destination


def upload_command(
    source: LocalSource,
    destination: str,
    *,
    preserve: bool = False,
    on_progress: ProgressCallback | None = None,
    on_copied: CopiedCallback | None = None,
    nonce: str | None = None,
) -> Callable[[ContainerTarget], WrappedCommand]:
    """The command that uploads ``source`` to ``destination`` on a target."""
    final = remote_destination(destination, source.name)
    upload = Upload(
        final, source.name, (source.mode & 0o7777) if preserve else None, source.archive
    )

    def build(target: ContainerTarget) -> WrappedCommand:
        tag = nonce or make_nonce()
        script = upload_script(upload, tag)
        state = _UploadState(target.node, source, upload, on_progress, on_copied)
        return WrappedCommand(
            user_command=f"cp {source.name} {target.node}:{final}",
            ecs_command=shlex.join(["/bin/sh", "-c", script]),
            nonce=tag,
            input_source=state.frames,
            output_filter=state.output,
            transfer=True,
        )

    return build


class _UploadState:
    """One node's upload: reads the source as it is sent, reports where it landed."""

    def __init__(
        self,
        node: str,
        source: LocalSource,
        upload: Upload,
        on_progress: ProgressCallback | None,
        on_copied: CopiedCallback | None,
    ) -> None:
        self.node = node
        self.source = source
        self.upload = upload
        self.on_progress = on_progress
        self.on_copied = on_copied
        self.read_error = ""

    def frames(self) -> Iterator[bytes]:
        digests = Digests()
        done = 0
        try:
            for chunk in self.source.chunks():
                digests.update(chunk)
                done += len(chunk)
                yield frame_chunk(chunk)
                if self.on_progress is not None:
                    self.on_progress(self.node, done, self.source.size)
        except OSError as exc:
            self.read_error = f"cannot read {self.source.path}: {exc.strerror or exc}"
            yield ABORT
            return
        yield frame_end(digests)

    def output(self) -> OutputFilter:
        return _UploadOutput(self)


class _UploadOutput:
    def __init__(self, state: _UploadState) -> None:
        self._state = state
        self._line = b""

    def feed(self, data: bytes) -> bytes:
        text = self._line + data
        lines = text.split(b"\n")
        self._line = lines.pop()
        return b"".join(self._take(line) for line in lines)

    def _take(self, line: bytes) -> bytes:
        if line in (b":P as", b":P into"):
            if self._state.on_copied is not None:
                path = uploaded_path(self._state.upload, into=line == b":P into")
                self._state.on_copied(self._state.node, path)
            return b""
        return line + b"\n"

    def finish(self, exit_code: int | None) -> tuple[bytes, str]:
        rest, self._line = self._line, b""
        return (self._take(rest).removesuffix(b"\n") if rest else b""), self._state.read_error


@dataclass(frozen=True)
class LocalDestination:
    """Where a download goes: a path (a directory with ``recursive``), or a stream."""

    path: Path | None
    stream: BinaryIO | None = None
    recursive: bool = False
    preserve: bool = False


def download_command(
    source: str,
    destination: LocalDestination,
    *,
    on_progress: ProgressCallback | None = None,
    on_copied: CopiedCallback | None = None,
    nonce: str | None = None,
) -> Callable[[ContainerTarget], WrappedCommand]:
    """The command that downloads ``source`` from a target into ``destination``."""
    if not source:
        raise ConfigurationError("the remote path is empty")
    if destination.stream is not None and destination.recursive:
        raise ConfigurationError("a directory (-r) cannot be copied to standard output")
    name = source.rstrip("/").rsplit("/", 1)[-1] or "root"
    final: Path | None = None
    if destination.path is not None:
        final = destination.path
        if final.is_dir():  # into it, under the source's name, as cp does
            if name in (".", ".."):  # joined, `..` would land beside the directory
                raise ConfigurationError(
                    f"{source} has no name of its own to copy into {final};"
                    " give the local path in full"
                )
            final = final / name
        if final.is_symlink() and final.is_file():  # written through, as cp does
            final = final.resolve()
        parent = final.parent
        if not parent.is_dir():
            raise ConfigurationError(f"cannot write {final}: {parent} is not a directory")
        if not os.access(parent, os.W_OK):
            raise ConfigurationError(f"cannot write {final}: {parent} is not writable")

    def build(target: ContainerTarget) -> WrappedCommand:
        tag = nonce or make_nonce()
        script = download_script(Download(source, destination.recursive), tag)
        where = str(final) if final is not None else "-"
        return WrappedCommand(
            user_command=f"cp {target.node}:{source} {where}",
            ecs_command=shlex.join(["/bin/sh", "-c", script]),
            nonce=tag,
            output_filter=lambda: _DownloadSink(
                target.node, destination, final, tag, on_progress, on_copied
            ),
            transfer=True,
        )

    return build


class _DownloadSink:
    """Decodes one download into a temporary file beside its destination (or a stream),
    and puts it in place once it is complete and checked."""

    def __init__(
        self,
        node: str,
        destination: LocalDestination,
        final: Path | None,
        nonce: str,
        on_progress: ProgressCallback | None,
        on_copied: CopiedCallback | None,
    ) -> None:
        self.node = node
        self.destination = destination
        self.final = final
        self.decoder = DownloadDecoder()
        self.on_progress = on_progress
        self.on_copied = on_copied
        self.error = ""
        self.done = 0
        self.partial: Path | None = None
        self.out: BinaryIO | None = destination.stream
        if final is not None:
            self.partial = final.parent / f".{final.name}.ecsexec-{nonce}.part"

    def feed(self, data: bytes) -> bytes:
        decoded, text = self.decoder.feed(data)
        if decoded and not self.error:
            try:
                if self.out is None:
                    assert self.partial is not None
                    self.out = self.partial.open("xb")
                self.out.write(decoded)
            except OSError as exc:
                self.error = f"cannot write {self.partial or '-'}: {exc.strerror or exc}"
            self.done += len(decoded)
            if self.on_progress is not None:
                self.on_progress(self.node, self.done, self.decoder.size)
        return text

    def finish(self, exit_code: int | None) -> tuple[bytes, str]:
        problem = self.error or (self.decoder.finish() if exit_code == 0 else "")
        try:
            if self.partial is None:
                if self.out is not None:
                    self.out.flush()
                if not problem and exit_code == 0 and self.on_copied is not None:
                    self.on_copied(self.node, "-")
                return b"", problem
            if self.out is None and not problem and exit_code == 0:
                self.out = self.partial.open("xb")  # an empty file
            if self.out is not None:
                self.out.close()
            if problem or exit_code != 0:
                return b"", problem
            problem = self._put_in_place()
            if not problem and self.on_copied is not None:
                assert self.final is not None
                self.on_copied(self.node, str(self.final))
            return b"", problem
        except OSError as exc:
            return b"", f"cannot write {self.final}: {exc.strerror or exc}"
        finally:
            if self.partial is not None:
                with contextlib.suppress(OSError):
                    self.partial.unlink()

    def _put_in_place(self) -> str:
        assert self.partial is not None and self.final is not None
        if self.destination.recursive:
            return self._unpack()
        mode = self.decoder.mode
        if self.destination.preserve and mode is not None:
            os.chmod(self.partial, mode)
        else:
            os.chmod(self.partial, 0o666 & ~_umask())
        os.replace(self.partial, self.final)
        return ""

    def _unpack(self) -> str:
        """Unpack the archive into a fresh directory beside the destination, then rename
        it into place (or, when the destination exists, unpack it again there, as
        ``cp -r`` merges): a hostile or unusable archive writes nothing at the
        destination."""
        assert self.partial is not None and self.final is not None
        keep = _member_filter(preserve=self.destination.preserve)
        fresh = self.partial.with_suffix(".d")
        try:
            fresh.mkdir()
            with tarfile.open(self.partial) as tar:
                problem = _extract(tar, fresh, keep)
                if problem:
                    return problem
                if not self.final.exists():
                    fresh.rename(self.final)
                    return ""
                if not self.final.is_dir():
                    return f"cannot write {self.final}: it exists and is not a directory"
                return _extract(tar, self.final, keep)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)


class _Refused(tarfile.FilterError):
    def __init__(self, member: tarfile.TarInfo, why: str) -> None:
        super().__init__(why)
        self.tarinfo = member
        self.why = why

    def __str__(self) -> str:
        return self.why


def _member_filter(*, preserve: bool) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo]:
    """What may come out of a container's archive (it is not trusted): tarfile's ``data``
    rules (``tar`` with ``-p``: modes kept), except that a symbolic link pointing out of
    the tree is kept as a link, as ``cp -r`` keeps it. Nothing is ever written through
    one: every member's real path, links followed, must stay inside the destination."""
    base = tarfile.tar_filter if preserve else tarfile.data_filter

    def keep(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        if member.ischr() or member.isblk() or member.isfifo():
            raise _Refused(member, "a device or FIFO cannot be copied")
        try:
            return base(member, dest)
        except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError):
            if not member.issym():
                raise
            return tarfile.tar_filter(member, dest)

    return keep


def _extract(
    tar: tarfile.TarFile, into: Path, keep: Callable[[tarfile.TarInfo, str], tarfile.TarInfo]
) -> str:
    """Unpack every member into ``into``: "" or why a member was refused."""
    try:
        tar.extractall(into, filter=keep)  # directories' modes last, as tar does
    except tarfile.FilterError as exc:
        return f"cannot unpack {exc.tarinfo.name}: {exc}"
    except tarfile.TarError as exc:
        return f"cannot unpack the archive: {exc}"
    return ""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
