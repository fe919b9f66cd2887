"""Context expansion (``${option.x}``, ``@option.x@``), shell quoting, options, capture. Pure.

References follow Rundeck: ``${CTX.KEY}`` in commands, script arguments, interpreters,
node filters and job-reference arguments; ``@CTX.KEY@`` tokens inside inline scripts.
Contexts: ``option`` (quoted for the shell in commands), ``unquotedoption`` (never
quoted), ``node`` (``name`` and any attribute, e.g. ``ECS:Container-Image``), ``job``
(``execid``, ``name``, ``group``, ``id``, ``username``), ``data`` (captured by a log
filter; ``${data.k@node}`` names the node, ``${data.k*}`` joins every node's value) and,
in error handlers, ``result`` (``resultCode``, ``reason``, ``message``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ecsexec.errors import ConfigurationError, OptionError
from ecsexec.jobs.model import Job, LogFilter
from ecsexec.nodes.javaregex import (
    JavaRegexError,
    RegexCostError,
    compile_bounded,
    compile_java,
)
from ecsexec.nodes.node import Node, is_blank

CONTEXTS: Final = frozenset({"option", "unquotedoption", "node", "job", "data", "result"})
JOB_KEYS: Final = frozenset({"execid", "name", "group", "id", "username", "user.name"})
RESULT_KEYS: Final = frozenset({"resultCode", "reason", "message"})
MASK: Final = "****"

# ``${ctx.key}``, ``${data.key@node}``, ``${data.key*}``; a shell's own ``${VAR}`` has no dot.
REFERENCE: Final = re.compile(
    r"\$\{(?P<ctx>[A-Za-z_][A-Za-z0-9_]*)\.(?P<key>[^\s{}@*]+)(?P<all>\*)?"
    r"(?:@(?P<node>[^\s{}]+))?\}"
)
TOKEN: Final = re.compile(r"@(?P<ctx>option|node|job|data|result)\.(?P<key>[^\s@]+)@")
OPTION_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")
_NODE_ALIASES: Final = {
    "name": "nodename",
    "os-name": "osName",
    "os-family": "osFamily",
    "os-arch": "osArch",
    "os-version": "osVersion",
}


def shell_quote(value: str) -> str:
    """Quote ``value`` as one shell word, in the form Rundeck's ``quoteUnixShellArg`` uses.

    Rundeck leaves a value bare unless it contains one of ``"';{}()&$\\|*?><``, a space,
    tab, CR or LF, and otherwise writes ``'…'`` with each ``'`` as ``'"'"'``. That set
    misses backquotes, ``#``, ``~``, ``[``, ``!`` and the empty string (which vanishes),
    so ecsexec uses the same form but quotes anything outside ``[A-Za-z0-9_@%+=:,./-]``
    (exactly :func:`shlex.quote`): every value reaches the command unchanged.
    """
    return shlex.quote(value)


# --- references ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    context: str
    key: str
    start: int  # offset in the text, for line numbers
    text: str


def references(text: str, *, tokens: bool = False) -> Iterator[Reference]:
    """Every ``${ctx.key}`` in ``text`` (or, with ``tokens``, every ``@ctx.key@``)."""
    pattern = TOKEN if tokens else REFERENCE
    for match in pattern.finditer(text):
        yield Reference(match["ctx"], match["key"], match.start(), match.group(0))


def reference_problem(ref: Reference, job: Job) -> str | None:
    """Why ``ref`` cannot work in ``job`` (checked when the file is loaded), or None."""
    if ref.context not in CONTEXTS:
        known = ", ".join(sorted(CONTEXTS))
        return f"{ref.text}: unknown context {ref.context!r} (known: {known})"
    if ref.context in ("option", "unquotedoption") and job.option(ref.key) is None:
        declared = ", ".join(o.name for o in job.options) or "none"
        return f"{ref.text}: job {job.path!r} has no option {ref.key!r} (declared: {declared})"
    if ref.context == "job" and ref.key not in JOB_KEYS:
        return f"{ref.text}: unknown job key {ref.key!r} (known: {', '.join(sorted(JOB_KEYS))})"
    if ref.context == "result" and ref.key not in RESULT_KEYS:
        known = ", ".join(sorted(RESULT_KEYS))
        return f"{ref.text}: unknown result key {ref.key!r} (known: {known})"
    return None


@dataclass(frozen=True)
class Context:
    """Everything a reference can name while one step runs on one node."""

    options: Mapping[str, str] = field(default_factory=dict)
    job: Mapping[str, str] = field(default_factory=dict)
    node: Node | None = None
    data: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # node -> key -> value
    result: Mapping[str, str] = field(default_factory=dict)

    def value(self, context: str, key: str, *, node: str | None = None, every: bool = False) -> str:
        """The value of ``${context.key}``; blank when unknown, as Rundeck does."""
        if context in ("option", "unquotedoption"):
            return self.options.get(key, "")
        if context == "job":
            return self.job.get(key, "")
        if context == "result":
            return self.result.get(key, "")
        if context == "node":
            if self.node is None:
                return ""
            attribute = _NODE_ALIASES.get(key, key)
            return self.node.get(attribute) or ""
        if context == "data":
            if every:
                return ",".join(values[key] for values in self.data.values() if key in values)
            where = node or (self.node.name if self.node is not None else "")
            return self.data.get(where, {}).get(key, "")
        return ""


def _substitute(text: str, ctx: Context, *, quote: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match["ctx"]
        if name not in CONTEXTS:
            return match.group(0)
        value = ctx.value(name, match["key"], node=match["node"], every=bool(match["all"]))
        return shell_quote(value) if quote and name != "unquotedoption" else value

    return REFERENCE.sub(replace, text)


def expand_shell(text: str, ctx: Context) -> str:
    """A command line: each ``${…}`` becomes its value quoted as one shell word."""
    return _substitute(text, ctx, quote=True)


def expand_raw(text: str, ctx: Context) -> str:
    """Text that is not shell (a node filter, one job-reference argument): values as is."""
    return _substitute(text, ctx, quote=False)


def expand_tokens(script: str, ctx: Context) -> str:
    """An inline script: each ``@ctx.key@`` becomes its plain value; ``${…}`` is left to the
    script's own shell, as in Rundeck."""
    return TOKEN.sub(lambda m: ctx.value(m["ctx"], m["key"]), script)


def split_args(text: str) -> list[str]:
    """Split an argument line like Rundeck's ``OptsUtil.burst``: whitespace, quotes group."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ConfigurationError(f"cannot split arguments {text!r}: {exc}") from None


def parse_jobref_args(args: Sequence[str]) -> dict[str, str]:
    """``-name value`` pairs (Rundeck's job-reference arguments); a bare ``-flag`` is ``true``."""
    result: dict[str, str] = {}
    index = 0
    while index < len(args):
        word = args[index]
        if not word.startswith("-") or len(word) < 2:
            raise ConfigurationError(f"job reference arguments: expected -OPTION, got {word!r}")
        if index + 1 < len(args) and not args[index + 1].startswith("-"):
            result[word[1:]] = args[index + 1]
            index += 2
        else:
            result[word[1:]] = "true"
            index += 1
    return result


# --- options ---------------------------------------------------------------------------------


def resolve_options(job: Job, given: Mapping[str, str]) -> dict[str, str]:
    """Every option's value: given, else the default, else empty; checked as Rundeck checks.

    Raises :class:`OptionError` for an unknown option, a blank required one, a value outside
    an enforced ``values`` list, or one the ``regex`` does not match (whole value).
    """
    unknown = sorted(set(given) - {o.name for o in job.options})
    if unknown:
        declared = ", ".join(o.name for o in job.options) or "none"
        raise OptionError(
            f"job {job.path!r} has no option {', '.join(map(repr, unknown))} (declared: {declared})"
        )
    values: dict[str, str] = {}
    for option in job.options:
        value = given.get(option.name, option.value if option.value is not None else "")
        shown = MASK if option.secure else repr(value)
        if option.required and is_blank(value):
            raise OptionError(f"option {option.name!r} is required: --option {option.name}=VALUE")
        if value and option.enforced and option.values and value not in option.values:
            allowed = ", ".join(option.values)
            raise OptionError(f"option {option.name!r}: {shown} is not one of {allowed}")
        if value and option.regex is not None:
            try:
                matches = compile_bounded(option.regex).fullmatch(value)
            except RegexCostError as exc:
                raise OptionError(
                    f"option {option.name!r}: /{option.regex}/ is too costly to evaluate on a "
                    f"{exc.length}-character value: {exc}"
                ) from None
            except JavaRegexError as exc:  # checked at load; kept for options built in code
                raise OptionError(f"option {option.name!r}: invalid regex: {exc}") from None
            if not matches:
                raise OptionError(
                    f"option {option.name!r}: {shown} does not match /{option.regex}/"
                )
        values[option.name] = value
    return values


def masked_options(job: Job, values: Mapping[str, str]) -> dict[str, str]:
    """Option values fit to show or record: secure ones masked."""
    secure = {o.name for o in job.options if o.secure}
    return {k: (MASK if k in secure and v else v) for k, v in values.items()}


# --- redaction -------------------------------------------------------------------------------


class Redactor:
    """Replaces secret values in an output stream, even when one is split across chunks."""

    def __init__(self, secrets: Iterable[str], mask: str = MASK) -> None:
        encoded = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self._secrets = encoded
        self._pattern = re.compile(b"|".join(re.escape(s) for s in encoded)) if encoded else None
        self._mask = mask.encode()
        self._held = b""

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def redact(self, data: bytes) -> bytes:
        """Redact a complete text."""
        return data if self._pattern is None else self._pattern.sub(self._mask, data)

    def feed(self, data: bytes) -> bytes:
        """Redact a chunk; hold back a tail that could be the start of a secret."""
        if self._pattern is None:
            return data
        buffer = self.redact(self._held + data)
        hold = 0
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(buffer)), hold, -1):
                if buffer.endswith(secret[:size]):
                    hold = size
                    break
        self._held = buffer[len(buffer) - hold :] if hold else b""
        return buffer[: len(buffer) - hold]

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def finish(self) -> bytes:
        rest, self._held = self._held, b""
        return rest


# --- key-value capture -----------------------------------------------------------------------


@dataclass(frozen=True)
class Captured:
    data: dict[str, str]
    warnings: tuple[str, ...] = ()


def capture(filters: Iterable[LogFilter], output: str) -> Captured:
    """Apply key-value-data filters to each output line (Rundeck's KeyValueDataLogFilter).

    The regex must match the whole line (or any part with ``matchSubstrings``). One group:
    the filter's ``name`` is the key; two or more: groups 1 and 2 are key and value. Key
    characters matching ``invalidKeyPattern`` are replaced, with a warning.
    """
    data: dict[str, str] = {}
    warnings: list[str] = []
    lines = [line.removesuffix("\r") for line in output.split("\n")]
    for flt in filters:
        pattern = compile_java(flt.regex)
        invalid = compile_java(flt.invalid_key_pattern) if flt.invalid_key_pattern else None
        for line in lines:
            match = pattern.search(line) if flt.match_substrings else pattern.fullmatch(line)
            if match is None or pattern.groups < 1:
                continue
            if pattern.groups == 1:
                key, value = flt.name, match.group(1)
            else:
                key, value = match.group(1), match.group(2)
            if not key or value is None:
                continue
            if invalid is not None:
                cleaned = invalid.sub(flt.replacement, key)
                if cleaned != key:
                    warnings.append(f"data key {key!r} has invalid characters; using {cleaned!r}")
                    key = cleaned
            if key:
                data[key] = value
    return Captured(data, tuple(warnings))
