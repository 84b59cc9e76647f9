"""Business calendar of Chinese working days.

A day is a working day when it is a weekday (Mon-Fri) that is not a statutory
holiday, or a weekend day that the State Council's yearly notice turned into a
working day (调休, e.g. "9月28日（周日）上班").

Data sources, highest priority first:

1. Operator overrides, ``workflows/calendar.json`` by default::

       {"_comment": "...", "holidays": ["2027-02-05"], "workdays": ["2027-02-20"]}

   A date in ``holidays`` is never a working day, a date in ``workdays`` always
   is, whatever the library says. A date may not be in both lists.
2. The ``holidays`` library (``holidays.China``): its PUBLIC category holds the
   statutory holidays *and* the weekdays given off by 调休; the weekend days
   that became working days are in the instance attribute ``weekend_workdays``
   (China has no WORKDAY category in ``holidays`` 0.109, asking for one raises
   ``ValueError: Category is not supported: workday``). The library has the
   official 调休 schedule only for the years of ``library_schedule_years()``;
   for later years it estimates the statutory days and knows no 调休, so the
   operator should add the published notice to the overrides file.
3. Saturday and Sunday are rest days.

Library data is cached per year at module level, so lookups after the first one
in a year are a few set look-ups.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays as _holidays_lib

__all__ = ["BusinessCalendar", "DEFAULT_OVERRIDES_PATH", "library_schedule_years"]

DEFAULT_OVERRIDES_PATH = Path(__file__).resolve().parent.parent / "workflows" / "calendar.json"

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_END_OF_DAY = time(23, 59, 59)
_SATURDAY = 5


@lru_cache(maxsize=None)
def _library_year(year: int) -> tuple[frozenset[date], frozenset[date]]:
    """(days off, 调休 weekend working days) of `year` per the library; cached per year."""
    cn = _holidays_lib.China(years=year)  # PUBLIC category only: HALF_DAY is not a company day off
    # Iterate the dict itself: `in` on a HolidayBase would auto-populate other years.
    days_off = frozenset(d for d in cn if d.year == year)
    # weekend_workdays also holds cross-year entries from other years' notices.
    weekend_workdays = frozenset(d for d in cn.weekend_workdays if d.year == year)
    return days_off, weekend_workdays


def library_schedule_years() -> list[int]:
    """Years for which the installed `holidays` has the official 调休 schedule for China.

    Other years (within 1950-2100) only get the library's estimate of the statutory
    holidays, without 调休 working weekends.
    """
    return sorted(getattr(_holidays_lib.China(years=()), "special_public_holidays", {}))


def _parse_iso_date(value: object, where: str) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"{where}: {value!r} is a datetime, expected a date")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{where}: {value!r} is not a valid ISO date (YYYY-MM-DD)")


def _parse_day_list(values: object, source: str, key: str) -> set[date]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{source}: {key!r} must be a list of ISO dates, got {values!r}")
    return {_parse_iso_date(v, f"{source}: {key}[{i}]") for i, v in enumerate(values)}


def _check_disjoint(holidays: set[date], workdays: set[date], source: str) -> None:
    both = sorted(holidays & workdays)
    if both:
        listed = ", ".join(d.isoformat() for d in both)
        raise ValueError(f"{source}: listed as both holiday and workday: {listed}")


def _load_overrides_file(path: Path) -> tuple[set[date], set[date]]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: not UTF-8 text ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{source}: top level must be an object with 'holidays' and 'workdays'")
    unknown = sorted(k for k in data if k not in ("holidays", "workdays") and not k.startswith("_"))
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
            "expected 'holidays', 'workdays' (keys starting with '_' are comments)"
        )
    for key in ("holidays", "workdays"):
        if not isinstance(data.get(key, []), list):
            raise ValueError(f"{source}: {key!r} must be a list of ISO dates, got {data[key]!r}")
    holidays = _parse_day_list(data.get("holidays", []), source, "holidays")
    workdays = _parse_day_list(data.get("workdays", []), source, "workdays")
    _check_disjoint(holidays, workdays, source)
    return holidays, workdays


class BusinessCalendar:
    """Chinese working days: weekends, statutory holidays and 调休, plus operator overrides.

    `overrides_path` None means `workflows/calendar.json` if it exists (no overrides
    otherwise); an explicit path must exist. Invalid files raise ValueError.
    """

    def __init__(
        self,
        overrides_path: str | os.PathLike | None = None,
        tz: str = "Asia/Shanghai",
    ) -> None:
        self.tz: ZoneInfo = ZoneInfo(tz)
        self._holidays: frozenset[date] = frozenset()
        self._workdays: frozenset[date] = frozenset()
        if overrides_path is None:
            path = DEFAULT_OVERRIDES_PATH
            if not path.exists():
                self.overrides_path: Path | None = None
                return
        else:
            path = Path(overrides_path)
            if not path.is_file():
                raise FileNotFoundError(f"business calendar overrides file not found: {path}")
        holidays, workdays = _load_overrides_file(path)
        self.overrides_path = path
        self._holidays = frozenset(holidays)
        self._workdays = frozenset(workdays)

    @classmethod
    def from_overrides(
        cls,
        holidays: Iterable[date | str] = (),
        workdays: Iterable[date | str] = (),
        tz: str = "Asia/Shanghai",
    ) -> "BusinessCalendar":
        """A calendar with the given overrides instead of any file."""
        source = "BusinessCalendar.from_overrides"
        hol = _parse_day_list(holidays, source, "holidays")
        work = _parse_day_list(workdays, source, "workdays")
        _check_disjoint(hol, work, source)
        cal = cls.__new__(cls)
        cal.tz = ZoneInfo(tz)
        cal.overrides_path = None
        cal._holidays = frozenset(hol)
        cal._workdays = frozenset(work)
        return cal

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar(tz={self.tz.key!r}, overrides_path={self.overrides_path!r}, "
            f"{len(self._holidays)} holiday / {len(self._workdays)} workday overrides)"
        )

    # -- core ---------------------------------------------------------------

    def _to_date(self, value: date | datetime | str, what: str = "date") -> date:
        """date as is; aware datetime -> its date in self.tz; str -> ISO date or datetime."""
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value) if _ISO_DATE.match(value) else datetime.fromisoformat(value)
            except ValueError as exc:
                raise ValueError(f"{what}: {value!r} is not an ISO date or datetime ({exc})") from exc
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(
                    f"{what}: naive datetime {value.isoformat()} is ambiguous; "
                    f"pass an aware datetime or a date"
                )
            return value.astimezone(self.tz).date()
        if isinstance(value, date):
            return value
        raise TypeError(f"{what}: expected date, datetime or ISO string, got {type(value).__name__}")

    def is_working_day(self, d: date) -> bool:
        d = self._to_date(d)
        if d in self._workdays:
            return True
        if d in self._holidays:
            return False
        days_off, weekend_workdays = _library_year(d.year)
        if d in days_off:
            return False
        if d.weekday() >= _SATURDAY:
            return d in weekend_workdays
        return True

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (start itself not counted), n >= 0; n == 0 returns start if it is a working day else the next working day."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        d = self._to_date(start, "start")
        one_day = timedelta(days=1)
        if n == 0:
            while not self.is_working_day(d):
                d += one_day
            return d
        while n:
            d += one_day
            if self.is_working_day(d):
                n -= 1
        return d

    def previous_working_day(self, day: date | datetime | str) -> date:
        """The last working day before `day`."""
        d = self._to_date(day, "day") - timedelta(days=1)
        while not self.is_working_day(d):
            d -= timedelta(days=1)
        return d

    def deadline(self, start: date | datetime | str, n: int) -> datetime:
        """End of the n-th working day after start, as an aware datetime in self.tz: 23:59:59 local time of add_working_days(start_date, n). A datetime start is first converted to self.tz and its date used; a str is parsed as ISO date or datetime."""
        day = self.add_working_days(self._to_date(start, "start"), n)
        return datetime.combine(day, _END_OF_DAY, tzinfo=self.tz)

    def working_days_between(self, start: date, end: date) -> int:
        """Number of working days d with start < d <= end (0 if end <= start)."""
        start = self._to_date(start, "start")
        end = self._to_date(end, "end")
        count = 0
        d = start + timedelta(days=1)
        one_day = timedelta(days=1)
        while d <= end:
            if self.is_working_day(d):
                count += 1
            d += one_day
        return count
