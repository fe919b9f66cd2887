"""Parse fault-injection SPECs and draw deterministic per-frame fault decisions.

See docs/sandbox.md §12.

Pure: no I/O, no clock. The relay (``hub.py``) applies the frame decisions; the control
plane reads ``throttle``, ``error``, ``tnc`` and ``short_pages`` and makes its own seeded
draws with :func:`api_rng`.

Grammar: ``item[,item…]`` where ``item = [c2a.|a2c.]key=value``. Without a direction
prefix a frame item applies to both directions; a prefixed item overrides the
unprefixed one for its direction, whatever the order.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Final, Literal

from ecsexec.errors import FaultSpecError

__all__ = [
    "DIRECTIONS",
    "REORDER_HOLD_MAX",
    "DirectionFaults",
    "ErrorRule",
    "FaultPlan",
    "FaultSpecError",
    "FrameDecision",
    "FrameFaultStream",
    "ThrottleRule",
    "api_rng",
    "parse_faults",
    "parse_throttle",
    "parse_throttle_list",
]

Direction = Literal["c2a", "a2c"]
DIRECTIONS: Final[tuple[Direction, Direction]] = ("c2a", "a2c")
REORDER_HOLD_MAX: Final = 0.050  # §12: a reordered frame is held at most 50 ms
DRAWS_PER_FRAME: Final = 5  # §12: drop, dup, reorder, delay, disconnect

_FRAME_KEYS: Final = frozenset({"drop", "dup", "reorder", "delay", "disconnect"})
_GLOBAL_KEYS: Final = frozenset({"throttle", "error", "tnc", "short_pages", "seed"})
_REPEATABLE: Final = frozenset({"throttle", "error"})
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ms|s)$")
_ACTION = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_ERROR_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9.:_-]*$")


@dataclass(frozen=True, slots=True)
class DirectionFaults:
    """Frame faults for one direction. Probabilities are in [0, 1]; delays in seconds."""

    drop: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    delay: tuple[float, float] | None = None  # (low, high); equal for a fixed delay
    disconnect: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.drop or self.dup or self.reorder or self.delay or self.disconnect)


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """``ACTION:RATE/s[:BURST]``; ``burst`` None means the bucket's default burst."""

    action: str
    rate: float
    burst: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """``error=ACTION:P[:CODE]``: the API action fails with ``code`` with probability ``p``."""

    action: str
    probability: float
    code: str = "ServerException"

    @property
    def http_status(self) -> int:
        return 500 if self.code == "ServerException" else 400  # §2: ServerException is 500


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Everything one ``--faults`` SPEC says. An empty plan injects nothing."""

    c2a: DirectionFaults = field(default_factory=DirectionFaults)
    a2c: DirectionFaults = field(default_factory=DirectionFaults)
    throttle: tuple[ThrottleRule, ...] = ()
    error: tuple[ErrorRule, ...] = ()
    tnc: float = 0.0
    short_pages: float = 0.0
    seed: int = 0

    def direction(self, direction: Direction) -> DirectionFaults:
        return self.c2a if direction == "c2a" else self.a2c

    @property
    def has_frame_faults(self) -> bool:
        return self.c2a.active or self.a2c.active

    def error_for(self, action: str) -> ErrorRule | None:
        """The first ``error=`` rule naming ``action`` (draw against its probability yourself)."""
        for rule in self.error:
            if rule.action == action:
                return rule
        return None

    def throttle_for(self, action: str) -> ThrottleRule | None:
        """The last ``throttle=`` rule naming ``action`` (later items override earlier ones)."""
        found = None
        for rule in self.throttle:
            if rule.action == action:
                found = rule
        return found

    def to_spec(self) -> str:
        """Render back to SPEC text (round-trips through :func:`parse_faults`)."""
        items: list[str] = []
        for direction in DIRECTIONS:
            faults = self.direction(direction)
            for key in ("drop", "dup", "reorder", "disconnect"):
                value: float = getattr(faults, key)
                if value:
                    items.append(f"{direction}.{key}={value:g}")
            if faults.delay is not None:
                low, high = faults.delay
                text = (
                    _fmt_duration(low)
                    if low == high
                    else f"{_fmt_duration(low)}..{_fmt_duration(high)}"
                )
                items.append(f"{direction}.delay={text}")
        for rule in self.throttle:
            burst = f":{rule.burst}" if rule.burst is not None else ""
            items.append(f"throttle={rule.action}:{rule.rate:g}/s{burst}")
        for err in self.error:
            items.append(f"error={err.action}:{err.probability:g}:{err.code}")
        if self.tnc:
            items.append(f"tnc={self.tnc:g}")
        if self.short_pages:
            items.append(f"short_pages={self.short_pages:g}")
        items.append(f"seed={self.seed}")
        return ",".join(items)


def _fmt_duration(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


# --- parsing -----------------------------------------------------------------------


def _probability(item: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"fault item {item!r}: {text!r} is not a probability") from None
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(f"fault item {item!r}: probability {text} is outside 0..1")
    return value


def _duration(item: str, text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise FaultSpecError(
            f"fault item {item!r}: {text!r} is not a duration (use e.g. 20ms or 0.5s)"
        )
    number = float(match.group(1))
    return number / 1000.0 if match.group(2) == "ms" else number


def _delay(item: str, text: str) -> tuple[float, float]:
    low_text, sep, high_text = text.partition("..")
    low = _duration(item, low_text)
    high = _duration(item, high_text) if sep else low
    if high < low:
        raise FaultSpecError(f"fault item {item!r}: delay range {text!r} runs backwards")
    return (low, high)


def parse_throttle(text: str, *, item: str | None = None) -> ThrottleRule:
    """Parse ``ACTION:RATE/s[:BURST]`` (the ``--throttle`` grammar of §11 as well)."""
    shown = item if item is not None else text
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise FaultSpecError(f"throttle {shown!r}: expected ACTION:RATE/s[:BURST]")
    action, rate_text = parts[0].strip(), parts[1].strip()
    if not _ACTION.match(action):
        raise FaultSpecError(f"throttle {shown!r}: {action!r} is not an API action name")
    if not rate_text.endswith("/s"):
        raise FaultSpecError(f"throttle {shown!r}: rate {rate_text!r} must end in /s")
    try:
        rate = float(rate_text[:-2])
    except ValueError:
        raise FaultSpecError(f"throttle {shown!r}: {rate_text!r} is not a rate") from None
    if rate <= 0:
        raise FaultSpecError(f"throttle {shown!r}: rate must be positive")
    burst: int | None = None
    if len(parts) == 3:
        try:
            burst = int(parts[2].strip())
        except ValueError:
            raise FaultSpecError(
                f"throttle {shown!r}: burst {parts[2]!r} is not an integer"
            ) from None
        if burst < 1:
            raise FaultSpecError(f"throttle {shown!r}: burst must be at least 1")
    return ThrottleRule(action, rate, burst)


def parse_throttle_list(text: str) -> tuple[ThrottleRule, ...]:
    """Parse ``--throttle ExecuteCommand:5/s:10,DescribeTasks:20/s``."""
    return tuple(parse_throttle(part.strip()) for part in text.split(",") if part.strip())


def _error_rule(item: str, text: str) -> ErrorRule:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise FaultSpecError(f"fault item {item!r}: expected error=ACTION:P[:CODE]")
    action = parts[0].strip()
    if not _ACTION.match(action):
        raise FaultSpecError(f"fault item {item!r}: {action!r} is not an API action name")
    probability = _probability(item, parts[1].strip())
    code = parts[2].strip() if len(parts) == 3 else "ServerException"
    if not _ERROR_CODE.match(code):
        raise FaultSpecError(f"fault item {item!r}: {code!r} is not an error code")
    return ErrorRule(action, probability, code)


def parse_faults(spec: str) -> FaultPlan:
    """Parse a ``--faults`` SPEC into a :class:`FaultPlan`; raise :class:`FaultSpecError`."""
    both: dict[str, object] = {}
    per_direction: dict[Direction, dict[str, object]] = {"c2a": {}, "a2c": {}}
    throttle: list[ThrottleRule] = []
    errors: list[ErrorRule] = []
    globals_: dict[str, object] = {}
    seen: set[str] = set()
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            if spec.strip():
                raise FaultSpecError(f"empty fault item in {spec!r}")
            continue
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not value:
            raise FaultSpecError(f"fault item {item!r}: expected key=value")
        direction: Direction | None = None
        key = name
        prefix, dot, rest = name.partition(".")
        if dot:
            if prefix not in DIRECTIONS:
                raise FaultSpecError(
                    f"fault item {item!r}: direction must be c2a or a2c, not {prefix!r}"
                )
            direction, key = ("c2a" if prefix == "c2a" else "a2c"), rest
        if key not in _FRAME_KEYS and key not in _GLOBAL_KEYS:
            known = ", ".join(sorted(_FRAME_KEYS | _GLOBAL_KEYS))
            raise FaultSpecError(f"fault item {item!r}: unknown key {key!r} (known: {known})")
        if direction is not None and key not in _FRAME_KEYS:
            raise FaultSpecError(f"fault item {item!r}: {key} takes no direction prefix")
        if key not in _REPEATABLE:
            if name in seen:
                raise FaultSpecError(f"fault item {item!r}: {name} is given twice")
            seen.add(name)
        parsed: object
        if key == "delay":
            parsed = _delay(item, value)
        elif key in _FRAME_KEYS:
            parsed = _probability(item, value)
        elif key == "throttle":
            throttle.append(parse_throttle(value, item=item))
            continue
        elif key == "error":
            errors.append(_error_rule(item, value))
            continue
        elif key == "seed":
            try:
                parsed = int(value)
            except ValueError:
                raise FaultSpecError(f"fault item {item!r}: seed must be an integer") from None
        else:  # tnc, short_pages
            parsed = _probability(item, value)
        if key in _FRAME_KEYS:
            (both if direction is None else per_direction[direction])[key] = parsed
        else:
            globals_[key] = parsed
    directions = {d: _direction_faults({**both, **per_direction[d]}) for d in DIRECTIONS}
    tnc = globals_.get("tnc", 0.0)
    short_pages = globals_.get("short_pages", 0.0)
    seed = globals_.get("seed", 0)
    assert isinstance(tnc, float) and isinstance(short_pages, float) and isinstance(seed, int)
    return FaultPlan(
        c2a=directions["c2a"],
        a2c=directions["a2c"],
        throttle=tuple(throttle),
        error=tuple(errors),
        tnc=tnc,
        short_pages=short_pages,
        seed=seed,
    )


def _direction_faults(values: dict[str, object]) -> DirectionFaults:
    def probability(key: str) -> float:
        value = values.get(key, 0.0)
        assert isinstance(value, float)
        return value

    delay = values.get("delay")
    assert delay is None or isinstance(delay, tuple)
    return DirectionFaults(
        drop=probability("drop"),
        dup=probability("dup"),
        reorder=probability("reorder"),
        delay=delay,
        disconnect=probability("disconnect"),
    )


# --- deterministic draws -----------------------------------------------------------


def api_rng(seed: int, *key: object) -> random.Random:
    """A generator for the control plane's own seeded draws (throttle, error, tnc, pages).

    Seeding with a string hashes it with SHA-512, so the sequence does not depend on
    ``PYTHONHASHSEED`` and is the same in every run.
    """
    return random.Random("|".join(["ecsexec-api", str(seed), *map(str, key)]))


@dataclass(frozen=True, slots=True)
class FrameDecision:
    """What the relay does with one binary frame."""

    drop: bool = False
    dup: bool = False
    reorder: bool = False
    delay: float = 0.0
    disconnect: bool = False


NO_FAULT: Final = FrameDecision()


class FrameFaultStream:
    """Per-session, per-direction decisions, keyed as §12 says.

    The generator is keyed by (seed, taskArn, container, session ordinal on that
    container, direction). Every frame consumes exactly five draws in the order drop,
    dup, reorder, delay, disconnect, whether or not each fault is enabled, so enabling one
    fault never changes another's decisions.
    """

    __slots__ = ("_faults", "_rng", "frames")

    def __init__(
        self,
        plan: FaultPlan,
        *,
        task_arn: str,
        container_name: str,
        ordinal: int,
        direction: Direction,
    ) -> None:
        self._faults = plan.direction(direction)
        key = f"ecsexec-frames|{plan.seed}|{task_arn}|{container_name}|{ordinal}|{direction}"
        self._rng = random.Random(key)
        self.frames = 0

    def next(self) -> FrameDecision:
        draw = self._rng.random
        u_drop, u_dup, u_reorder, u_delay, u_disconnect = draw(), draw(), draw(), draw(), draw()
        self.frames += 1
        f = self._faults
        delay = 0.0
        if f.delay is not None:
            low, high = f.delay
            delay = low + (high - low) * u_delay
        return FrameDecision(
            drop=u_drop < f.drop,
            dup=u_dup < f.dup,
            reorder=u_reorder < f.reorder,
            delay=delay,
            disconnect=u_disconnect < f.disconnect,
        )
