"""Job files on disk: load one, list a directory, resolve job references in the same directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ecsexec.errors import ConfigurationError, JobFileError
from ecsexec.jobs.expand import REFERENCE, parse_jobref_args, split_args
from ecsexec.jobs.model import Job, JobFile, JobRef, Step, job_path
from ecsexec.jobs.parse import parse_jobs

SUFFIXES: Final = (".yaml", ".yml")
MAX_DEPTH: Final = 8  # job references nested deeper than this are surely a mistake


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
        """The job a reference names: by uuid if given, else by exact group and name."""
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

    def check(self, job: Job, *, _stack: tuple[str, ...] = ()) -> list[str]:
        """Problems with ``job``'s references: unresolved, wrong options, cycles (file:line)."""
        problems: list[str] = []
        stack = (*_stack, job.path)
        for step in job.steps:
            for current in (step, step.errorhandler):
                if current is None or current.jobref is None:
                    continue
                problems += self._check_ref(current, current.jobref, stack)
        return problems

    def _check_ref(self, step: Step, ref: JobRef, stack: tuple[str, ...]) -> list[str]:
        try:
            target = self.resolve(ref)
        except ConfigurationError as exc:
            return [f"{step.where}: {exc}"]
        if target.path in stack:
            cycle = " -> ".join((*stack, target.path))
            return [f"{step.where}: job references form a cycle: {cycle}"]
        if len(stack) >= MAX_DEPTH:
            return [f"{step.where}: job references nest deeper than {MAX_DEPTH}"]
        problems = []
        try:
            given = parse_jobref_args(split_args(REFERENCE.sub("x", ref.args)))
        except ConfigurationError as exc:
            return [f"{step.where}: {exc}"]
        for name in given:
            if target.option(name) is None:
                problems.append(f"{step.where}: job {target.path!r} has no option {name!r}")
        for option in target.options:
            if option.required and option.value is None and option.name not in given:
                problems.append(
                    f"{step.where}: job {target.path!r} needs option {option.name!r} in args"
                )
        return problems + self.check(target, _stack=stack)


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
