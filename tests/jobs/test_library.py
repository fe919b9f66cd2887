"""Job references across a library: each referenced job checked once, depth and size bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecsexec.errors import JobFileError
from ecsexec.jobs import library
from ecsexec.jobs.library import MAX_DEPTH, MAX_EXPANDED_STEPS, JobLibrary, load_file, load_job
from ecsexec.jobs.model import Job, JobRef


def fan_out_file(path: Path, *, levels: int, refs: int) -> Path:
    """Jobs L0..L{levels-1}; each calls the next ``refs`` times; the last runs one command."""
    lines = []
    for level in range(levels):
        lines.append(f"- name: L{level}\n  sequence:\n    commands:\n")
        if level == levels - 1:
            lines.append("    - exec: echo leaf\n")
        else:
            lines.extend(f"    - jobref: {{name: L{level + 1}}}\n" for _ in range(refs))
    path.write_text("".join(lines))
    return path


class CountingLibrary(JobLibrary):
    """Counts reference resolutions and stops a check that does exponential work."""

    LIMIT = 10_000

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.resolutions = 0

    def resolve(self, ref: JobRef) -> Job:
        self.resolutions += 1
        if self.resolutions > self.LIMIT:
            raise AssertionError(f"more than {self.LIMIT} reference resolutions")
        return super().resolve(ref)


def test_each_referenced_job_is_checked_once(tmp_path: Path) -> None:
    # 9 references per level, 8 jobs deep: 9**7 = 4,782,969 paths through the references
    # (over 60 s to validate when every path was walked).
    path = fan_out_file(tmp_path / "deep.yaml", levels=8, refs=9)
    assert len(path.read_bytes()) < 2000
    jobfile = load_file(path)
    lib = CountingLibrary(tmp_path)
    problems = lib.check(jobfile.jobs[0])
    assert lib.ref_checks == 7 * 9  # every reference step once
    assert lib.resolutions == 7 * 9
    # 8 jobs deep is allowed, but running it would expand to millions of steps: each
    # reference step plus what it runs.
    steps = 1
    for _ in range(7):
        steps = 9 * (1 + steps)
    (problem,) = problems
    assert problem == (
        f"{path}:1: a run of job 'L0' expands to {steps:,} steps through job references "
        f"(limit {MAX_EXPANDED_STEPS:,})"
    )


def test_references_nested_too_deeply_are_reported_once_with_the_chain(tmp_path: Path) -> None:
    path = fan_out_file(tmp_path / "deeper.yaml", levels=MAX_DEPTH + 1, refs=9)
    lib = CountingLibrary(tmp_path)
    problems = lib.check(load_file(path).jobs[0])
    assert lib.ref_checks == MAX_DEPTH * 9
    depth = [p for p in problems if "nest deeper" in p]
    assert depth == [
        f"{path}:{3 + 12 * (MAX_DEPTH - 1) + 1}: job references nest deeper than {MAX_DEPTH}: "
        + " -> ".join(f"L{i}" for i in range(MAX_DEPTH + 1))
    ]
    with pytest.raises(JobFileError, match="nest deeper than 8"):
        load_job(path, "L0")


def test_a_small_fan_out_validates(tmp_path: Path) -> None:
    path = fan_out_file(tmp_path / "ok.yaml", levels=4, refs=3)
    loaded = load_job(path, "L0")
    assert loaded.job.name == "L0"
    assert loaded.library.ref_checks == 3 * 3


def test_resolution_is_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fan_out_file(tmp_path / "ok.yaml", levels=3, refs=5)
    lib = JobLibrary(tmp_path)
    listings = 0
    real = JobLibrary.listing

    def counting(self: JobLibrary) -> list[library.Listed]:
        nonlocal listings
        listings += 1
        return real(self)

    monkeypatch.setattr(JobLibrary, "listing", counting)
    assert lib.check(load_file(path).jobs[0]) == []
    assert listings == 2  # one per distinct reference (L1, L2), not one per step
    job = lib.resolve(JobRef(name="L1"))
    assert job.name == "L1"
    assert listings == 2


def test_cycles_are_reported_once_per_back_reference(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text(
        "- name: a\n  sequence: {commands: [{jobref: {name: b}}, {jobref: {name: b}}]}\n"
        "- name: b\n  sequence: {commands: [{jobref: {name: a}}, {jobref: {name: c}}]}\n"
        "- name: c\n  sequence: {commands: [{jobref: {name: c}}]}\n"
    )
    jobfile = load_file(tmp_path / "loop.yaml")
    problems = JobLibrary(tmp_path).check(jobfile.jobs[0])
    assert [p.split(": ", 1)[1] for p in problems] == [
        "job references form a cycle: a -> b -> a",
        "job references form a cycle: a -> b -> c -> c",
    ]
