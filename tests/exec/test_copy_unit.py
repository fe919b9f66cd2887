"""exec/copy.py's local side without a container: what an upload sends (pure, no sockets)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from ecsexec.exec.copy import LocalSource


def test_a_packed_directory_sends_its_whole_archive(tmp_path: Path) -> None:
    # The tree is packed into a buffered temporary file and sent with pread: the tail
    # still in the buffer (here the last file, sub/a.txt) was never sent, while the
    # truncated archive, cut at a block boundary, unpacked without an error.
    tree = tmp_path / "static"
    (tree / "sub").mkdir(parents=True)
    (tree / "index.html").write_text("hi\n")
    (tree / "link.html").symlink_to("index.html")
    (tree / "sub" / "a.txt").write_text("x\n")
    source = LocalSource.from_path(tree, recursive=True)
    try:
        sent = b"".join(source.chunks())
    finally:
        source.close()
    assert len(sent) == source.size
    with tarfile.open(fileobj=io.BytesIO(sent)) as archive:
        names = sorted(archive.getnames())
    assert names == [".", "./index.html", "./link.html", "./sub", "./sub/a.txt"]
