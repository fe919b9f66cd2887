"""Checks of API input: each bad field or parameter is refused with a message naming it.

Every helper raises :class:`~ecsexec.errors.ConfigurationError` (the app answers 400 with
its message) and never echoes a value that could be a secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from ecsexec.errors import ConfigurationError

MAX_BODY: Final = 1024 * 1024  # bytes of JSON a request may send
MAX_COMMAND: Final = 64 * 1024
MAX_FILTER: Final = 8 * 1024
MAX_THREADS: Final = 1000
MAX_LIMIT: Final = 1000
MAX_NAME: Final = 100
MAX_OPTION_VALUE: Final = 64 * 1024
MAX_ID: Final = 2**62  # run and audit ids: SQLite integers are 64-bit


def invalid(where: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"{where}: {message}")


async def json_object(request: web.Request, *, allowed: frozenset[str]) -> dict[str, Any]:
    """The request's JSON body: an object with only the ``allowed`` fields."""
    if request.content_type != "application/json":
        raise invalid("body", "send JSON with Content-Type: application/json")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise invalid("body", f"larger than {MAX_BODY} bytes")
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise invalid("body", f"larger than {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except RecursionError:  # [[[[... : the parser's stack, not a server fault
        raise invalid("body", "nested too deeply to be a request") from None
    except UnicodeDecodeError:
        raise invalid("body", "not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise invalid("body", f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(body, dict):
        raise invalid("body", f"must be a JSON object, not {_kind(body)}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(
            "body",
            f"unknown field {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(sorted(allowed))})",
        )
    return body


NOT_UNICODE: Final = "is not valid Unicode (it holds a lone surrogate such as \\ud800)"


def _is_text(value: str) -> bool:
    """Whether ``value`` is real text: JSON can carry lone surrogates, which no command,
    database or log can take."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(value: object) -> str:
    return {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def text(
    body: Mapping[str, Any],
    name: str,
    *,
    required: bool = True,
    max_length: int = MAX_NAME,
    default: str = "",
    secret: bool = False,
) -> str:
    """A string field: present (when required), not blank, not too long, no NUL."""
    if name not in body or body[name] is None:
        if required:
            raise invalid(name, "is required")
        return default
    value = body[name]
    if not isinstance(value, str):
        raise invalid(name, f"must be a string, not {_kind(value)}")
    if not _is_text(value):
        raise invalid(name, NOT_UNICODE)
    if required and not value.strip():
        raise invalid(name, "must not be blank")
    if len(value) > max_length:
        raise invalid(name, f"is {len(value)} characters long; at most {max_length} are allowed")
    if "\0" in value:
        where = "" if secret else f" at position {value.index(chr(0)) + 1}"
        raise invalid(name, f"has a NUL character{where}")
    return value


def integer(
    body: Mapping[str, Any], name: str, *, minimum: int, maximum: int, default: int | None = None
) -> int | None:
    """An integer field within bounds (JSON numbers only: not a string, not a boolean)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"must be a whole number, not {_kind(value)}")
    if not minimum <= value <= maximum:
        raise invalid(name, f"must be between {minimum} and {maximum}, not {value}")
    return value


def boolean(body: Mapping[str, Any], name: str, *, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(name, f"must be true or false, not {_kind(value)}")
    return value


def string_map(body: Mapping[str, Any], name: str) -> dict[str, str]:
    """An object of string values (job options); values are never echoed (they may be secret)."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(name, f"must be an object of option names to strings, not {_kind(value)}")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not _is_text(key):
            raise invalid(name, f"an option name {NOT_UNICODE}")
        if not isinstance(item, str):
            raise invalid(f"{name}.{key}", f"must be a string, not {_kind(item)}")
        if len(item) > MAX_OPTION_VALUE:
            raise invalid(f"{name}.{key}", f"is longer than {MAX_OPTION_VALUE} characters")
        if "\0" in item:
            raise invalid(f"{name}.{key}", "has a NUL character")
        if not _is_text(item):
            raise invalid(f"{name}.{key}", NOT_UNICODE)
        result[key] = item
    return result


def query_int(
    request: web.Request, name: str, *, minimum: int, maximum: int, default: int | None
) -> int | None:
    """An integer query parameter within bounds."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise invalid(
            f"query parameter {name}", f"must be a whole number, not {raw[:40]!r}"
        ) from None
    if not minimum <= value <= maximum:
        raise invalid(f"query parameter {name}", f"must be between {minimum} and {maximum}")
    return value


def query_text(
    request: web.Request,
    name: str,
    *,
    max_length: int = MAX_NAME,
    choices: tuple[str, ...] = (),
) -> str | None:
    """A text query parameter: not too long, and one of ``choices`` when given."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_length:
        raise invalid(f"query parameter {name}", f"is longer than {max_length} characters")
    if "\0" in raw:
        raise invalid(f"query parameter {name}", "has a NUL character")
    if choices and raw not in choices:
        raise invalid(f"query parameter {name}", f"must be one of {', '.join(choices)}")
    return raw


def last_event_id(request: web.Request) -> int:
    """Where an event stream resumes: ``Last-Event-ID`` (a reconnecting EventSource) or
    ``?after=``; 0 from the start."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    try:
        value = int(raw, 10)
    except ValueError:
        raise invalid("Last-Event-ID", f"must be a whole number, not {raw[:40]!r}") from None
    if value < 0:
        raise invalid("Last-Event-ID", "must not be negative")
    return value


def path_int(request: web.Request, name: str) -> int:
    """A numeric part of the URL (a run id)."""
    raw = request.match_info[name]
    try:
        value = int(raw, 10)
    except ValueError:
        raise web.HTTPNotFound(text=f"no {name.replace('_', ' ')} {raw[:40]!r}") from None
    if value <= 0 or value > MAX_ID:
        raise web.HTTPNotFound(text=f"no {name.replace('_', ' ')} {raw[:40]!r}")
    return value
