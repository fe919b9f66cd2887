"""Job files on disk: load one, list a directory, resolve job references in the same directory.

Checking a job's references is linear in the jobs and reference steps it reaches: each
referenced job is checked once (its references' resolution and options), cycles and
depth come from one depth-first walk, and the number of steps a run would expand to is
counted, not enumerated. A file whose jobs each call the next one nine times, eight
deep, is 63 checks, not 9**7 walks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ecsexec.errors import ConfigurationError, JobFileError
from ecsexec.jobs.expand import REFERENCE, parse_jobref_args, split_args
from ecsexec.jobs.model import Job, JobFile, JobRef, Step, job_path
from ecsexec.jobs.parse import parse_jobs

SUFFIXES: Final = (".yaml", ".yml")
MAX_DEPTH: Final = 8  # job references nested deeper than this are surely a mistake
#: Steps one run of a job may expand to through its job references (each reference step
#: counts once plus the steps of the job it runs).
MAX_EXPANDED_STEPS: Final = 100_000

_STEPS_CAP: Final = 10**15  # counts saturate here: a cyclic or absurd expansion stays an int

_JobKey = tuple[str, int, str]


def _key(job: Job) -> _JobKey:
    return (job.where.file, job.where.line, job.path)


@dataclass(frozen=True)
class _Ref:
    """One reference step of a job, checked: the job it runs (None: unresolved) and the
    problems with it (resolution, options)."""

    step: Step
    target: Job | None
    problems: tuple[str, ...]


def load_file(path: Path) -> JobFile:
    """Read and parse one job file; raises :class:`JobFileError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise JobFileError(f"{path}:1: not UTF-8 text") from None
    except OSError as exc:
        raise JobFileError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_jobs(text, str(path))


def select_job(jobfile: JobFile, name: str | None) -> Job:
    """The job called ``name`` (``group/name``, a bare name, or a uuid); the only one if None."""
    jobs = jobfile.jobs
    if name is None:
        if len(jobs) == 1:
            return jobs[0]
        names = ", ".join(j.path for j in jobs)
        raise ConfigurationError(
            f"{jobfile.path} has {len(jobs)} jobs; choose one with --job: {names}"
        )
    exact = [j for j in jobs if name in (j.path, j.uuid)]
    by_name = [j for j in jobs if j.name == name]
    chosen = exact or by_name
    if len(chosen) == 1:
        return chosen[0]
    names = ", ".join(j.path for j in (chosen or jobs))
    what = "several jobs are" if chosen else "no job is"
    raise ConfigurationError(f"{what} called {name!r} in {jobfile.path}: {names}")


@dataclass(frozen=True)
class Listed:
    path: Path
    jobfile: JobFile | None
    error: str = ""


class JobLibrary:
    """The job files of one directory, loaded on demand, for job references."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[Path, JobFile | JobFileError] = {}
        self._resolved: dict[tuple[str, str, str], Job | ConfigurationError] = {}
        self._refs: dict[_JobKey, tuple[_Ref, ...]] = {}
        self.ref_checks = 0  # reference steps checked so far; each one only once

    def add(self, jobfile: JobFile) -> None:
        self._files[Path(jobfile.path).resolve()] = jobfile

    def paths(self) -> list[Path]:
        try:
            return sorted(
                p for p in self.directory.iterdir() if p.suffix in SUFFIXES and p.is_file()
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot list {self.directory}: {exc.strerror}") from None

    def load(self, path: Path) -> JobFile | JobFileError:
        key = path.resolve()
        if key not in self._files:
            try:
                self._files[key] = load_file(path)
            except JobFileError as exc:
                self._files[key] = exc
        return self._files[key]

    def listing(self) -> list[Listed]:
        result = []
        for path in self.paths():
            loaded = self.load(path)
            if isinstance(loaded, JobFileError):
                result.append(Listed(path, None, str(loaded)))
            else:
                result.append(Listed(path, loaded))
        return result

    def resolve(self, ref: JobRef) -> Job:
        """The job a reference names: by uuid if given, else by exact group and name.

        Remembered (as is a failure): the directory is listed once per distinct reference.
        """
        key = (ref.uuid, ref.group, ref.name)
        found = self._resolved.get(key)
        if found is None:
            try:
                found = self._resolve(ref)
            except ConfigurationError as exc:
                found = exc
            self._resolved[key] = found
        if isinstance(found, ConfigurationError):
            raise found
        return found

    def _resolve(self, ref: JobRef) -> Job:
        broken: list[str] = []
        matches: list[Job] = []
        for item in self.listing():
            if item.jobfile is None:
                broken.append(item.path.name)
                continue
            for job in item.jobfile.jobs:
                if (ref.uuid and job.uuid == ref.uuid) or (
                    not ref.uuid and (job.group, job.name) == (ref.group, ref.name)
                ):
                    matches.append(job)
        if len(matches) == 1:
            return matches[0]
        wanted = ref.uuid or job_path(ref.group, ref.name)
        if matches:
            places = ", ".join(str(j.where) for j in matches)
            raise ConfigurationError(f"job reference {wanted!r} is ambiguous: {places}")
        note = f" (files with errors: {', '.join(broken)})" if broken else ""
        raise ConfigurationError(f"job reference {wanted!r}: no such job in {self.directory}{note}")

    def check(self, job: Job) -> list[str]:
        """Problems with ``job``'s references (file:line each): unresolved references,
        wrong options, cycles, nesting deeper than MAX_DEPTH jobs, and a run that would
        expand to more than MAX_EXPANDED_STEPS steps. Each job is checked once."""
        problems: list[str] = list(self._checked_refs(job)[1])
        path: list[Job] = [job]
        on_path: dict[_JobKey, int] = {_key(job): 0}
        done: dict[_JobKey, tuple[int, int]] = {}  # height (jobs in the longest chain), steps
        frames: list[tuple[Job, Iterator[_Ref]]] = [(job, iter(self._refs_of(job)))]
        cyclic = False
        while frames:
            current, refs = frames[-1]
            ref = next(refs, None)
            if ref is None:
                frames.pop()
                path.pop()
                del on_path[_key(current)]
                done[_key(current)] = self._totals(current, done)
                continue
            target = ref.target
            if target is None:
                continue
            key = _key(target)
            if key in on_path:
                cyclic = True
                cycle = " -> ".join([*(j.path for j in path), target.path])
                problems.append(f"{ref.step.where}: job references form a cycle: {cycle}")
            elif key not in done:
                path.append(target)
                on_path[key] = len(path) - 1
                refs_of, local = self._checked_refs(target)
                problems.extend(local)
                frames.append((target, iter(refs_of)))
        height, steps = done[_key(job)]
        if height > MAX_DEPTH:
            problems.append(self._too_deep(job, done))
        elif not cyclic and steps > MAX_EXPANDED_STEPS:
            problems.append(
                f"{job.where}: a run of job {job.path!r} expands to "
                f"{'over ' if steps >= _STEPS_CAP else ''}{steps:,} steps through "
                f"job references (limit {MAX_EXPANDED_STEPS:,})"
            )
        return problems

    def _refs_of(self, job: Job) -> tuple[_Ref, ...]:
        return self._checked_refs(job)[0]

    def _checked_refs(self, job: Job) -> tuple[tuple[_Ref, ...], list[str]]:
        """``job``'s reference steps, each checked once per library, and their problems."""
        key = _key(job)
        refs = self._refs.get(key)
        if refs is None:
            checked = []
            for step in job.steps:
                for current in (step, step.errorhandler):
                    if current is not None and current.jobref is not None:
                        checked.append(self._check_ref(current, current.jobref))
            refs = self._refs[key] = tuple(checked)
        return refs, [problem for ref in refs for problem in ref.problems]

    def _check_ref(self, step: Step, ref: JobRef) -> _Ref:
        self.ref_checks += 1
        try:
            target = self.resolve(ref)
        except ConfigurationError as exc:
            return _Ref(step, None, (f"{step.where}: {exc}",))
        problems = []
        try:
            given = parse_jobref_args(split_args(REFERENCE.sub("x", ref.args)))
        except ConfigurationError as exc:
            return _Ref(step, target, (f"{step.where}: {exc}",))
        for name in given:
            if target.option(name) is None:
                problems.append(f"{step.where}: job {target.path!r} has no option {name!r}")
        for option in target.options:
            if option.required and option.value is None and option.name not in given:
                problems.append(
                    f"{step.where}: job {target.path!r} needs option {option.name!r} in args"
                )
        return _Ref(step, target, tuple(problems))

    def _totals(self, job: Job, done: dict[_JobKey, tuple[int, int]]) -> tuple[int, int]:
        """Jobs in ``job``'s longest reference chain, and the steps a run expands to
        (references along a cycle count as plain steps; the cycle is reported)."""
        height = 1
        steps = sum(1 + (step.errorhandler is not None) for step in job.steps)
        for ref in self._refs_of(job):
            below = done.get(_key(ref.target)) if ref.target is not None else None
            if below is not None:
                height = max(height, 1 + below[0])
                steps = min(steps + below[1], _STEPS_CAP)
        return height, steps

    def _too_deep(self, job: Job, done: dict[_JobKey, tuple[int, int]]) -> str:
        """The problem at the reference step where the longest chain passes MAX_DEPTH."""
        chain = [job]
        current = job
        while True:
            best: _Ref | None = None
            best_height = 0
            for ref in self._refs_of(current):
                below = done.get(_key(ref.target)) if ref.target is not None else None
                if below is not None and below[0] > best_height:
                    best, best_height = ref, below[0]
            assert best is not None and best.target is not None  # height > MAX_DEPTH
            chain.append(best.target)
            if len(chain) > MAX_DEPTH:
                names = " -> ".join(j.path for j in chain)
                return f"{best.step.where}: job references nest deeper than {MAX_DEPTH}: {names}"
            current = best.target


@dataclass(frozen=True)
class LoadedJob:
    """One job chosen from a file, with the library its references resolve in."""

    job: Job
    library: JobLibrary
    warnings: tuple[str, ...] = ()
    file: str = ""


def load_job(path: Path, name: str | None = None) -> LoadedJob:
    """Load ``path``, choose the job ``name`` and check it with every job it references.

    Raises :class:`JobFileError` (every problem, each naming file:line) or
    :class:`ConfigurationError` when ``name`` does not choose one job.
    """
    jobfile = load_file(path)
    job = select_job(jobfile, name)
    library = JobLibrary(path.parent)
    library.add(jobfile)
    problems = library.check(job)
    if problems:
        raise JobFileError("\n".join(problems))
    return LoadedJob(job, library, tuple(jobfile.warnings), str(path))
