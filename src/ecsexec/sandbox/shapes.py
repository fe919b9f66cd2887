"""botocore's service models as the sandbox's schema: input, enum and strict output validation (§2).

``ParamValidator`` checks types, required members, unknown members and minimums; it does
not check enums, so ``validate`` adds that. Everything returns ``Issue``s with a
dotted path so callers (the API and the topology loader) can word and place the error.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

SERVICES = ("ecs", "ssm", "kms", "sts")
_TYPE_NAMES = {
    "<class 'int'>": "integer",
    "<class 'str'>": "string",
    "<class 'bool'>": "boolean",
    "<class 'float'>": "number",
    "<class 'list'>": "list",
    "<class 'tuple'>": "list",
    "<class 'dict'>": "mapping",
    "<class 'decimal.Decimal'>": "number",
    "<class 'bytes'>": "bytes",
    "<class 'bytearray'>": "bytes",
    "<class 'datetime.datetime'>": "timestamp",
    "timestamp-string": "timestamp",
}


@dataclass(frozen=True, slots=True)
class Issue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or 'input'}: {self.message}"


@cache
def _session() -> Any:
    return botocore.session.get_session()


@cache
def service_model(service: str) -> Any:
    return _session().get_service_model(service)


@cache
def operation(service: str, action: str) -> Any:
    model = service_model(service)
    if action not in model.operation_names:
        return None
    return model.operation_model(action)


def shape(service: str, name: str) -> Any:
    return service_model(service).shape_for(name)


def input_shape(service: str, action: str) -> Any:
    op = operation(service, action)
    return None if op is None else op.input_shape


def _describe(reason: str, extra: dict[str, Any]) -> tuple[str, str]:
    """(path suffix, message) for one ParamValidator error."""
    if reason == "missing required field":
        return "", f"missing required field {extra['required_name']!r}"
    if reason == "unknown field":
        valid = ", ".join(extra["valid_names"])
        return f".{extra['unknown_param']}", f"unknown field (valid: {valid})"
    if reason == "invalid type":
        names = sorted({_TYPE_NAMES.get(t, t) for t in extra["valid_types"]})
        return "", f"expected {' or '.join(names)}, got {type(extra['param']).__name__}"
    if reason == "invalid range":
        return "", f"must be at least {extra['min_allowed']}"
    if reason == "invalid length":
        return "", f"length must be at least {extra['min_allowed']}"
    return "", reason


def validate(params: Any, shape_: Any, *, enums: bool = True) -> list[Issue]:
    """All problems with ``params`` as input of ``shape_``; empty when valid."""
    report = ParamValidator().validate(params, shape_)
    issues = []
    for reason, name, extra in report._errors:
        suffix, message = _describe(reason, extra)
        issues.append(Issue((name + suffix).lstrip("."), message))
    if enums and not issues:
        _check_enums(params, shape_, "", issues)
    return issues


def _check_enums(value: Any, s: Any, path: str, issues: list[Issue]) -> None:
    kind = s.type_name
    if kind == "string":
        allowed = s.enum
        if allowed and value not in allowed:
            issues.append(Issue(path, f"must be one of {', '.join(allowed)}"))
    elif kind == "structure" and isinstance(value, dict):
        for k, v in value.items():
            member = s.members.get(k)
            if member is not None:
                _check_enums(v, member, f"{path}.{k}".lstrip("."), issues)
    elif kind == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            _check_enums(v, s.member, f"{path}[{i}]", issues)
    elif kind == "map" and isinstance(value, dict):
        for k, v in value.items():
            _check_enums(v, s.value, f"{path}.{k}", issues)


def validate_output(service: str, action: str, result: dict[str, Any]) -> str:
    """Strict mode: the report for a response that botocore's output shape rejects, or ''.

    Timestamps are epoch numbers on the wire; the validator wants datetimes, so they are
    converted on a copy first.
    """
    op = operation(service, action)
    if op is None or op.output_shape is None:
        return "" if not result else f"{action} has no output shape but returned {sorted(result)}"
    converted = _timestamps_to_datetimes(result, op.output_shape)
    issues = validate(converted, op.output_shape, enums=True)
    return "; ".join(str(i) for i in issues)


def _timestamps_to_datetimes(value: Any, s: Any) -> Any:
    kind = s.type_name
    if kind == "timestamp" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(value, datetime.UTC)
    if kind == "structure" and isinstance(value, dict):
        return {
            k: _timestamps_to_datetimes(v, s.members[k]) if k in s.members else v
            for k, v in value.items()
        }
    if kind == "list" and isinstance(value, list):
        return [_timestamps_to_datetimes(v, s.member) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _timestamps_to_datetimes(v, s.value) for k, v in value.items()}
    return value
