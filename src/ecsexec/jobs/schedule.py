"""Job schedules: Rundeck's ``schedule:`` forms, as Quartz cron expressions, and their next fire.

Rundeck writes a schedule in one of two forms (job YAML)::

    schedule:                             # Quartz: sec min hour day-of-month month day-of-week
      crontab: "0 30 */4 ? * * *"        #         [year]

    schedule:                             # the simple form; Rundeck turns it into the above
      time: {hour: "12", minute: "0", seconds: "0"}
      month: "*"
      year: "*"
      weekday: {day: "MON-FRI"}           # or dayofmonth: {day: "1"} (not both)

Supported Quartz syntax, per field: ``*``, numbers, ranges ``a-b``, lists ``a,b``, steps
``*/n``, ``a/n`` and ``a-b/n``; month names ``JAN``-``DEC`` and day names ``SUN``-``SAT``
(day-of-week 1 is Sunday, as in Quartz); ``?`` (no specific value) in day-of-month or
day-of-week, one of which must be ``?``; ``L`` (last day), ``L-n``, ``LW`` and ``nW``
(nearest weekday) in day-of-month; ``L`` (Saturday), ``nL`` (last n-day of the month) and
``n#k`` (k-th n-day) in day-of-week; an optional year field (1970-2099). Anything else
(ranges that run backwards such as ``22-2``, ``L`` inside a list) is refused with a message
naming the field and what to write instead.

Times are wall-clock times in the schedule's time zone (UTC unless the job sets
``timeZone``). A wall-clock time that a daylight-saving change skips does not fire; one it
repeats fires once, the first time.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ecsexec.errors import JobFileError

MAX_YEAR: Final = 2099  # Quartz's last year
MIN_YEAR: Final = 1970
MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS: Final = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # Quartz: SUN = 1


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names for low, low+1, ...


_FIELDS: Final = (
    _Field("seconds", 0, 59),
    _Field("minutes", 0, 59),
    _Field("hours", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTHS),
    _Field("day-of-week", 1, 7, DAYS),
    _Field("year", MIN_YEAR, MAX_YEAR),
)


class ScheduleError(ValueError):
    """A schedule that cannot be parsed; the message names the field (no location)."""


def _number(text: str, spec: _Field) -> int:
    word = text.upper()
    if spec.names and word in spec.names:
        return spec.low + spec.names.index(word)
    if not text.isdigit():
        named = f" or a name {spec.names[0]}-{spec.names[-1]}" if spec.names else ""
        raise ScheduleError(f"{spec.name}: {text!r} is not a number {spec.low}-{spec.high}{named}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise ScheduleError(f"{spec.name}: {value} is out of range {spec.low}-{spec.high}")
    return value


def _values(text: str, spec: _Field) -> frozenset[int]:
    """The values a plain field (no ``?``/``L``/``W``/``#``) allows."""
    out: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{spec.name}: empty item in {text!r}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleError(f"{spec.name}: the step in {item!r} must be a number >= 1")
            step = int(step_text)
        if base == "*":
            start, end = spec.low, spec.high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(first, spec), _number(last, spec)
            if end < start:
                raise ScheduleError(
                    f"{spec.name}: the range {base!r} runs backwards; write it as two ranges "
                    f"({first}-{spec.names[-1] if spec.names else spec.high},"
                    f"{spec.names[0] if spec.names else spec.low}-{last})"
                )
        else:
            start = _number(base, spec)
            end = spec.high if slash else start  # Quartz: "a/n" runs from a to the end
        out.update(range(start, end + 1, step))
    return frozenset(out)


_UNSUPPORTED_CHARS: Final = re.compile(r"[^0-9A-Za-z*?,/#-]")


@dataclass(frozen=True)
class _DaySpec:
    """Which days match: by day-of-month or by day-of-week (one of them is ``?``)."""

    days_of_month: frozenset[int] | None = None  # None: not by a plain list
    last_offset: int | None = None  # L (0) or L-n (n)
    last_weekday: bool = False  # LW
    nearest_weekday: int | None = None  # nW
    days_of_week: frozenset[int] | None = None  # Quartz numbers, 1 = Sunday
    last_of_week: int | None = None  # nL
    nth_of_week: tuple[int, int] | None = None  # n#k
    any_day: bool = False

    def matches(self, day: date) -> bool:
        if self.any_day:
            return True
        last = calendar.monthrange(day.year, day.month)[1]
        if self.days_of_month is not None:
            return day.day in self.days_of_month
        if self.last_offset is not None:
            return day.day == max(1, last - self.last_offset)
        if self.last_weekday:
            return day.day == _nearest_weekday(day.year, day.month, last)
        if self.nearest_weekday is not None:
            return day.day == _nearest_weekday(day.year, day.month, self.nearest_weekday)
        quartz_dow = (day.weekday() + 1) % 7 + 1
        if self.days_of_week is not None:
            return quartz_dow in self.days_of_week
        if self.last_of_week is not None:
            return quartz_dow == self.last_of_week and day.day + 7 > last
        if self.nth_of_week is not None:
            weekday, nth = self.nth_of_week
            return quartz_dow == weekday and (day.day - 1) // 7 + 1 == nth
        return False


def _nearest_weekday(year: int, month: int, target: int) -> int:
    """Quartz's ``W``: the weekday nearest ``target`` without leaving the month."""
    last = calendar.monthrange(year, month)[1]
    target = min(target, last)
    weekday = date(year, month, target).weekday()  # Monday = 0
    if weekday == 5:  # Saturday: Friday before, unless that leaves the month
        return target - 1 if target > 1 else target + 2
    if weekday == 6:  # Sunday: Monday after, unless that leaves the month
        return target + 1 if target < last else target - 2
    return target


def _day_of_month(text: str) -> _DaySpec:
    spec = _FIELDS[3]
    upper = text.upper()
    if upper == "L":
        return _DaySpec(last_offset=0)
    if upper == "LW":
        return _DaySpec(last_weekday=True)
    found = re.fullmatch(r"L-(\d+)", upper)
    if found:
        offset = int(found.group(1))
        if offset > 30:
            raise ScheduleError(f"{spec.name}: L-{offset}: the offset must be at most 30")
        return _DaySpec(last_offset=offset)
    found = re.fullmatch(r"(\d+)W", upper)
    if found:
        return _DaySpec(nearest_weekday=_number(found.group(1), spec))
    if "L" in upper or "W" in upper:
        raise ScheduleError(
            f"{spec.name}: {text!r}: L and W stand alone (L, L-3, LW, 15W), not in lists or ranges"
        )
    if text == "*":
        return _DaySpec(any_day=True)
    return _DaySpec(days_of_month=_values(text, spec))


def _day_of_week(text: str) -> _DaySpec:
    spec = _FIELDS[5]
    upper = text.upper()
    if upper == "L":
        return _DaySpec(days_of_week=frozenset({7}))  # Quartz: L alone is Saturday
    found = re.fullmatch(r"([A-Z]{3}|\d)L", upper)
    if found:
        return _DaySpec(last_of_week=_number(found.group(1), spec))
    found = re.fullmatch(r"([A-Z]{3}|\d)#(\d+)", upper)
    if found:
        nth = int(found.group(2))
        if not 1 <= nth <= 5:
            raise ScheduleError(f"{spec.name}: {text!r}: the week after # must be 1-5")
        return _DaySpec(nth_of_week=(_number(found.group(1), spec), nth))
    if "#" in upper or any(item.endswith("L") for item in re.split(r"[,/-]", upper)):
        raise ScheduleError(
            f"{spec.name}: {text!r}: nL and n#k stand alone (6L, FRI#3), not in lists or ranges"
        )
    if text == "*":
        return _DaySpec(any_day=True)
    return _DaySpec(days_of_week=_values(text, spec))


@dataclass(frozen=True)
class Schedule:
    """A job's schedule as a normalized Quartz cron expression, in a time zone."""

    expression: str
    timezone: str = "UTC"
    _seconds: tuple[int, ...] = field(default=(), init=False, compare=False, repr=False)
    _minutes: tuple[int, ...] = field(default=(), init=False, compare=False, repr=False)
    _hours: tuple[int, ...] = field(default=(), init=False, compare=False, repr=False)
    _months: frozenset[int] = field(default=frozenset(), init=False, compare=False, repr=False)
    _years: frozenset[int] | None = field(default=None, init=False, compare=False, repr=False)
    _days: _DaySpec = field(default=_DaySpec(), init=False, compare=False, repr=False)
    _zone: tzinfo = field(default=UTC, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        words = self.expression.split()
        if len(words) == 5:
            raise ScheduleError(
                f"{self.expression!r} has 5 fields, as a Unix crontab; Rundeck's crontab is "
                "Quartz's: seconds minutes hours day-of-month month day-of-week [year], "
                "with ? in one day field, e.g. '0 30 4 ? * MON-FRI'"
            )
        if len(words) not in (6, 7):
            raise ScheduleError(
                f"{self.expression!r} has {len(words)} fields; a Quartz crontab has 6 or 7: "
                "seconds minutes hours day-of-month month day-of-week [year]"
            )
        for spec, word in zip(_FIELDS, words, strict=False):
            bad = _UNSUPPORTED_CHARS.search(word)
            if bad:
                raise ScheduleError(f"{spec.name}: {word!r}: {bad.group()!r} is not allowed here")
        for spec, word in zip(_FIELDS, words, strict=False):
            if word == "?" and spec.name not in ("day-of-month", "day-of-week"):
                raise ScheduleError(f"{spec.name}: ? is only for day-of-month or day-of-week")
        dom, dow = words[3], words[5]
        if (dom == "?") == (dow == "?"):
            raise ScheduleError(
                f"day-of-month {dom!r} and day-of-week {dow!r}: exactly one of them must be ? "
                "(Quartz), e.g. '? * MON-FRI' or '1 * ?'"
            )
        days = _day_of_week(dow) if dom == "?" else _day_of_month(dom)
        setattr_ = object.__setattr__
        setattr_(self, "expression", " ".join(w.upper() for w in words))
        setattr_(self, "_seconds", tuple(sorted(_values(words[0], _FIELDS[0]))))
        setattr_(self, "_minutes", tuple(sorted(_values(words[1], _FIELDS[1]))))
        setattr_(self, "_hours", tuple(sorted(_values(words[2], _FIELDS[2]))))
        setattr_(self, "_months", _values(words[4], _FIELDS[4]))
        setattr_(self, "_years", _values(words[6], _FIELDS[6]) if len(words) == 7 else None)
        setattr_(self, "_days", days)
        setattr_(self, "_zone", _zone(self.timezone))

    # --- parsing Rundeck's forms -------------------------------------------------------------

    @classmethod
    def parse(cls, value: object, where: str, *, timezone: str = "UTC") -> Schedule:
        """A job file's ``schedule:`` value (a mapping of strings, as YAML gives it).

        Raises :class:`JobFileError` whose message starts with ``where`` (file:line) and
        names the field.
        """
        try:
            schedule = cls(_crontab(value), timezone or "UTC")
        except ScheduleError as exc:
            raise JobFileError(f"{where}: schedule: {exc}") from None
        if not schedule.fires():
            raise JobFileError(
                f"{where}: schedule: {schedule.expression!r} never fires (no such day, or "
                f"only years before {MIN_YEAR} or after {MAX_YEAR})"
            )
        return schedule

    # --- firing ------------------------------------------------------------------------------

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment`` (timezone-aware), in the schedule's
        zone; None if the schedule never fires again (a year list in the past)."""
        if moment.tzinfo is None:
            raise ValueError("next_after needs a timezone-aware moment")
        zone = self._zone
        wall = moment.astimezone(zone).replace(tzinfo=None, microsecond=0) + timedelta(seconds=1)
        while True:
            candidate = self._next_wall(wall)
            if candidate is None:
                return None
            aware = candidate.replace(tzinfo=zone)
            real = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == candidate
            if real and aware > moment:
                return aware
            wall = candidate + timedelta(seconds=1)

    def _next_wall(self, start: datetime) -> datetime | None:
        """The first matching wall-clock time at or after ``start`` (naive)."""
        years = sorted(y for y in (self._years or range(start.year, MAX_YEAR + 1)))
        for year in years:
            if year < start.year:
                continue
            for month in sorted(self._months):
                if (year, month) < (start.year, start.month):
                    continue
                first = start.day if (year, month) == (start.year, start.month) else 1
                for day in range(first, calendar.monthrange(year, month)[1] + 1):
                    when = date(year, month, day)
                    if not self._days.matches(when):
                        continue
                    at = self._first_time(start if when == start.date() else None)
                    if at is not None:
                        return datetime(year, month, day, *at)
        return None

    def _first_time(self, start: datetime | None) -> tuple[int, int, int] | None:
        if start is None:
            return self._hours[0], self._minutes[0], self._seconds[0]
        for hour in self._hours:
            if hour < start.hour:
                continue
            if hour > start.hour:
                return hour, self._minutes[0], self._seconds[0]
            for minute in self._minutes:
                if minute < start.minute:
                    continue
                if minute > start.minute:
                    return hour, minute, self._seconds[0]
                second = next((s for s in self._seconds if s >= start.second), None)
                if second is not None:
                    return hour, minute, second
        return None

    def fires(self) -> bool:
        """Whether the schedule fires at all between 1970 and 2099."""
        return self.next_after(datetime(MIN_YEAR - 1, 12, 31, tzinfo=UTC)) is not None


def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"timeZone {name!r} is not a time zone name (e.g. UTC, Europe/Paris)"
        ) from None


_SIMPLE_KEYS: Final = frozenset({"time", "month", "year", "weekday", "dayofmonth"})


def _crontab(value: object) -> str:
    if not isinstance(value, Mapping):
        raise ScheduleError(
            "expected a mapping: crontab: '0 0 12 ? * MON-FRI', or time:/month:/weekday: "
            "(Rundeck's simple form)"
        )
    if "crontab" in value:
        extra = sorted(set(value) - {"crontab"})
        if extra:
            raise ScheduleError(f"crontab cannot be combined with {', '.join(map(str, extra))}")
        text = value["crontab"]
        if not isinstance(text, str) or not text.strip():
            raise ScheduleError("crontab: expected a Quartz cron expression in quotes")
        return text.strip()
    unknown = sorted(str(k) for k in value if k not in _SIMPLE_KEYS)
    if unknown:
        raise ScheduleError(
            f"unknown key {unknown[0]!r} (known: crontab, {', '.join(sorted(_SIMPLE_KEYS))})"
        )
    time = _sub(value, "time", ("hour", "minute", "seconds"))
    if "weekday" in value and "dayofmonth" in value:
        raise ScheduleError("weekday and dayofmonth cannot both be set (Rundeck)")
    month = _text(value, "month", "*")
    year = _text(value, "year", "*")
    if "dayofmonth" in value:
        day_of_month = _text(_sub(value, "dayofmonth", ("day",)), "day", "*", "dayofmonth.day")
        day_of_week = "?"
    else:
        day_of_month = "?"
        day_of_week = _text(_sub(value, "weekday", ("day",)), "day", "*", "weekday.day")
    seconds = _text(time, "seconds", "0", "time.seconds")
    minute = _text(time, "minute", "0", "time.minute")
    hour = _text(time, "hour", "0", "time.hour")
    words = [seconds, minute, hour, day_of_month, month, day_of_week]
    if year != "*":
        words.append(year)
    for word in words:
        if not word or " " in word:
            raise ScheduleError(f"{word!r} is not one cron field")
    return " ".join(words)


def _sub(value: Mapping[object, object], key: str, keys: tuple[str, ...]) -> Mapping[str, object]:
    inner = value.get(key)
    if inner is None:
        return {}
    if not isinstance(inner, Mapping):
        raise ScheduleError(f"{key}: expected a mapping with {', '.join(keys)}")
    unknown = sorted(str(k) for k in inner if k not in keys)
    if unknown:
        raise ScheduleError(f"{key}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")
    return {str(k): v for k, v in inner.items()}


def _text(
    value: Mapping[str, object] | Mapping[object, object], key: str, default: str, label: str = ""
) -> str:
    raw = value.get(key)
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ScheduleError(f"{label or key}: expected text such as '*' or '0', got {raw!r}")
    return str(raw).strip()
