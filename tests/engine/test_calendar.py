"""Tests for engine.calendar.BusinessCalendar.

Holiday facts are from the State Council General Office notices (国务院办公厅关于
2025年 / 2026年部分节假日安排的通知); the installed `holidays` library agrees with them.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

import engine.calendar as calendar_mod
from engine.calendar import BusinessCalendar, library_schedule_years


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return BusinessCalendar.from_overrides()


def days(first: date, last: date):
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


# -- library facts: 2025 ----------------------------------------------------


def test_national_day_2025_golden_week_is_off(cal):
    # 国庆节、中秋节：10月1日（周三）至8日（周三）放假调休，共8天。
    for d in days(date(2025, 10, 1), date(2025, 10, 8)):
        assert not cal.is_working_day(d), d
    assert cal.is_working_day(date(2025, 9, 30))
    assert cal.is_working_day(date(2025, 10, 9))


def test_national_day_2025_adjusted_workdays(cal):
    # 9月28日（周日）、10月11日（周六）上班。
    assert date(2025, 9, 28).weekday() == 6  # a Sunday, not a Saturday
    assert date(2025, 10, 11).weekday() == 5
    assert cal.is_working_day(date(2025, 9, 28))
    assert cal.is_working_day(date(2025, 10, 11))
    # ... but the other halves of those weekends stay off.
    assert not cal.is_working_day(date(2025, 9, 27))
    assert not cal.is_working_day(date(2025, 10, 12))


def test_spring_festival_and_labour_day_2025(cal):
    # 春节：1月28日至2月4日放假调休，1月26日（周日）、2月8日（周六）上班。
    for d in days(date(2025, 1, 28), date(2025, 2, 4)):
        assert not cal.is_working_day(d), d
    assert cal.is_working_day(date(2025, 1, 26))
    assert cal.is_working_day(date(2025, 2, 8))
    # 劳动节：5月1日至5日放假调休，4月27日（周日）上班。
    for d in days(date(2025, 5, 1), date(2025, 5, 5)):
        assert not cal.is_working_day(d), d
    assert cal.is_working_day(date(2025, 4, 27))


def test_ordinary_weekend_and_weekday(cal):
    assert not cal.is_working_day(date(2025, 11, 22))  # Saturday
    assert not cal.is_working_day(date(2025, 11, 23))  # Sunday
    assert cal.is_working_day(date(2025, 11, 24))  # Monday
    assert not cal.is_working_day(date(2026, 3, 7))
    assert not cal.is_working_day(date(2026, 3, 8))


def test_half_day_observances_are_working_days(cal):
    # 妇女节 is a half day for women only, not a company day off.
    assert date(2024, 3, 8).weekday() == 4
    assert cal.is_working_day(date(2024, 3, 8))


# -- library facts: 2026 ----------------------------------------------------


def test_spring_festival_2026(cal):
    # 春节：2月15日（周日）至23日（周一）放假调休，共9天。2月14日（周六）、2月28日（周六）上班。
    for d in days(date(2026, 2, 15), date(2026, 2, 23)):
        assert not cal.is_working_day(d), d
    assert cal.is_working_day(date(2026, 2, 14))
    assert cal.is_working_day(date(2026, 2, 28))
    assert cal.is_working_day(date(2026, 2, 24))


def test_other_2026_adjustments(cal):
    # 元旦 1月1日至3日，1月4日（周日）上班；国庆 10月1日至7日，9月20日（周日）、10月10日（周六）上班。
    assert not cal.is_working_day(date(2026, 1, 2))
    assert cal.is_working_day(date(2026, 1, 4))
    for d in days(date(2026, 10, 1), date(2026, 10, 7)):
        assert not cal.is_working_day(d), d
    assert cal.is_working_day(date(2026, 9, 20))
    assert cal.is_working_day(date(2026, 10, 10))
    # 劳动节 5月1日至5日，5月9日（周六）上班。
    assert not cal.is_working_day(date(2026, 5, 5))
    assert cal.is_working_day(date(2026, 5, 9))


def test_library_has_official_schedules_for_2025_and_2026():
    years = library_schedule_years()
    assert {2025, 2026} <= set(years)


# -- add_working_days ---------------------------------------------------------


def test_add_working_days_across_weekend(cal):
    friday = date(2025, 11, 21)
    assert cal.add_working_days(friday, 1) == date(2025, 11, 24)
    assert cal.add_working_days(friday, 5) == date(2025, 11, 28)
    assert cal.add_working_days(friday, 6) == date(2025, 12, 1)
    # Starting on a weekend: the start is not counted.
    assert cal.add_working_days(date(2025, 11, 22), 1) == date(2025, 11, 24)


def test_add_working_days_zero(cal):
    assert cal.add_working_days(date(2025, 11, 21), 0) == date(2025, 11, 21)
    assert cal.add_working_days(date(2025, 11, 22), 0) == date(2025, 11, 24)
    assert cal.add_working_days(date(2025, 10, 1), 0) == date(2025, 10, 9)


def test_add_working_days_across_spring_festival_2026(cal):
    assert cal.add_working_days(date(2026, 2, 12), 1) == date(2026, 2, 13)
    assert cal.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 14)  # 调休 Saturday
    assert cal.add_working_days(date(2026, 2, 13), 2) == date(2026, 2, 24)
    assert cal.add_working_days(date(2026, 2, 15), 1) == date(2026, 2, 24)
    # Feb 24-27 (Tue-Fri), then the 调休 Saturday Feb 28.
    assert cal.add_working_days(date(2026, 2, 14), 5) == date(2026, 2, 28)
    assert cal.add_working_days(date(2026, 2, 14), 6) == date(2026, 3, 2)


def test_add_working_days_across_national_day_2025(cal):
    assert cal.add_working_days(date(2025, 9, 26), 1) == date(2025, 9, 28)  # 调休 Sunday
    assert cal.add_working_days(date(2025, 9, 30), 1) == date(2025, 10, 9)
    assert cal.add_working_days(date(2025, 9, 30), 3) == date(2025, 10, 11)  # 调休 Saturday
    assert cal.add_working_days(date(2025, 9, 30), 4) == date(2025, 10, 13)


def test_add_working_days_rejects_negative(cal):
    with pytest.raises(ValueError):
        cal.add_working_days(date(2025, 11, 21), -1)


# -- deadline ----------------------------------------------------------------


def test_deadline_is_end_of_day_in_shanghai(cal):
    dl = cal.deadline(date(2026, 2, 13), 2)
    assert dl == datetime(2026, 2, 24, 23, 59, 59, tzinfo=cal.tz)
    assert dl.tzinfo is not None and dl.utcoffset() == timedelta(hours=8)
    assert str(cal.tz) == "Asia/Shanghai"
    assert dl.astimezone(timezone.utc) == datetime(2026, 2, 24, 15, 59, 59, tzinfo=timezone.utc)


def test_deadline_converts_datetime_to_local_date_first(cal):
    # Thursday 2025-11-20 17:00 UTC is already Friday 01:00 in Shanghai.
    thursday_evening_utc = datetime(2025, 11, 20, 17, 0, tzinfo=timezone.utc)
    assert cal.deadline(thursday_evening_utc, 1) == datetime(2025, 11, 24, 23, 59, 59, tzinfo=cal.tz)
    # 15:00 UTC is still Thursday (23:00) in Shanghai.
    thursday_afternoon_utc = datetime(2025, 11, 20, 15, 0, tzinfo=timezone.utc)
    assert cal.deadline(thursday_afternoon_utc, 1) == datetime(2025, 11, 21, 23, 59, 59, tzinfo=cal.tz)
    assert cal.deadline(thursday_afternoon_utc, 0) == datetime(2025, 11, 20, 23, 59, 59, tzinfo=cal.tz)


def test_deadline_parses_iso_strings(cal):
    expected = datetime(2025, 10, 9, 23, 59, 59, tzinfo=cal.tz)
    assert cal.deadline("2025-09-30", 1) == expected
    assert cal.deadline("2025-09-30T09:30:00+08:00", 1) == expected
    # 2025-09-30 20:00 UTC is 2025-10-01 04:00 in Shanghai: the start date is Oct 1.
    assert cal.deadline("2025-09-30T20:00:00+00:00", 1) == expected
    assert cal.deadline("2025-09-30T20:00:00Z", 0) == expected
    with pytest.raises(ValueError, match="not-a-date"):
        cal.deadline("not-a-date", 1)


def test_deadline_rejects_naive_datetime(cal):
    with pytest.raises(ValueError, match="naive"):
        cal.deadline(datetime(2025, 9, 30, 12, 0), 1)


def test_other_timezone():
    utc_cal = BusinessCalendar.from_overrides(tz="UTC")
    dl = utc_cal.deadline(datetime(2025, 11, 21, 17, 0, tzinfo=timezone.utc), 1)
    assert dl == datetime(2025, 11, 24, 23, 59, 59, tzinfo=timezone.utc)


# -- working_days_between ----------------------------------------------------


def test_working_days_between(cal):
    assert cal.working_days_between(date(2025, 9, 30), date(2025, 10, 12)) == 3  # Oct 9, 10, 11
    assert cal.working_days_between(date(2025, 11, 21), date(2025, 11, 24)) == 1
    assert cal.working_days_between(date(2025, 11, 24), date(2025, 11, 24)) == 0
    assert cal.working_days_between(date(2025, 11, 24), date(2025, 11, 21)) == 0
    assert cal.working_days_between(date(2025, 11, 23), date(2025, 11, 24)) == 1  # end counted
    assert cal.working_days_between(date(2025, 11, 24), date(2025, 11, 25)) == 1  # start not counted


def test_working_days_between_inverts_add_working_days(cal):
    for start in days(date(2025, 9, 20), date(2025, 10, 15)):
        for n in range(1, 12):
            assert cal.working_days_between(start, cal.add_working_days(start, n)) == n


def test_working_days_in_year_2025(cal):
    # 261 weekdays - 18 weekdays off (Jan 1; Jan 28-31, Feb 3-4; Apr 4; May 1, 2, 5; Jun 2;
    # Oct 1-3, 6-8) + 5 调休 weekend workdays (Jan 26, Feb 8, Apr 27, Sep 28, Oct 11) = 248.
    assert cal.working_days_between(date(2024, 12, 31), date(2025, 12, 31)) == 248


# -- overrides ---------------------------------------------------------------


def test_overrides_add_holiday_and_workday():
    cal = BusinessCalendar.from_overrides(
        holidays=["2025-11-24", date(2025, 10, 11)],
        workdays=[date(2025, 11, 22), "2025-10-08"],
    )
    assert not cal.is_working_day(date(2025, 11, 24))  # ordinary Monday made a holiday
    assert cal.is_working_day(date(2025, 11, 22))  # ordinary Saturday made a workday
    assert cal.is_working_day(date(2025, 10, 8))  # beats the library's holiday
    assert not cal.is_working_day(date(2025, 10, 11))  # beats the library's 调休 workday
    assert cal.add_working_days(date(2025, 11, 21), 1) == date(2025, 11, 22)
    assert cal.add_working_days(date(2025, 11, 22), 1) == date(2025, 11, 25)


def test_overrides_file(tmp_path):
    path = tmp_path / "calendar.json"
    path.write_text(
        json.dumps({"_comment": "x", "holidays": ["2027-02-05"], "workdays": ["2027-02-20"]}),
        encoding="utf-8",
    )
    cal = BusinessCalendar(path)
    assert date(2027, 2, 5).weekday() == 4 and date(2027, 2, 20).weekday() == 5
    assert not cal.is_working_day(date(2027, 2, 5))
    assert cal.is_working_day(date(2027, 2, 20))
    assert BusinessCalendar(str(path)).is_working_day(date(2027, 2, 20))
    # Without the overrides that Saturday is off.
    assert not BusinessCalendar.from_overrides().is_working_day(date(2027, 2, 20))


def test_shipped_overrides_file_is_valid():
    assert calendar_mod.DEFAULT_OVERRIDES_PATH.name == "calendar.json"
    data = json.loads(calendar_mod.DEFAULT_OVERRIDES_PATH.read_text(encoding="utf-8"))
    assert set(data) >= {"holidays", "workdays", "_comment"}
    cal = BusinessCalendar()
    assert cal.overrides_path == calendar_mod.DEFAULT_OVERRIDES_PATH
    assert str(cal.tz) == "Asia/Shanghai"
    cal.is_working_day(date(2025, 10, 1))


def test_missing_explicit_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        BusinessCalendar(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "content, bad",
    [
        ('{"holidays": ["2025-10-01"], "workdays": [', "invalid JSON"),
        ('{"holidays": ["2025-13-01"], "workdays": []}', "2025-13-01"),
        ('{"holidays": ["2025/10/01"], "workdays": []}', "2025/10/01"),
        ('{"holidays": [], "workdays": ["2025-10-11", 20251011]}', "20251011"),
        ('{"holidays": [], "workdays": ["2025-02-30"]}', "2025-02-30"),
        ('{"holidays": ["2025-11-24"], "workdays": ["2025-11-24"]}', "2025-11-24"),
        ('{"holidays": "2025-11-24", "workdays": []}', "holidays"),
        ('{"holiday": ["2025-11-24"]}', "holiday"),
        ('["2025-11-24"]', "top level"),
    ],
)
def test_bad_overrides_file_raises(tmp_path, content, bad):
    path = tmp_path / "bad_calendar.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as excinfo:
        BusinessCalendar(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert bad in message


def test_bad_from_overrides_raises():
    with pytest.raises(ValueError, match="2025-11-24"):
        BusinessCalendar.from_overrides(holidays=["2025-11-24"], workdays=[date(2025, 11, 24)])
    with pytest.raises(ValueError, match="31.12.2025"):
        BusinessCalendar.from_overrides(holidays=["31.12.2025"])


# -- caching -----------------------------------------------------------------


def test_library_is_consulted_once_per_year(monkeypatch):
    real_china = calendar_mod._holidays_lib.China
    built = []

    def counting_china(*args, **kwargs):
        built.append(kwargs.get("years"))
        return real_china(*args, **kwargs)

    calendar_mod._library_year.cache_clear()
    monkeypatch.setattr(calendar_mod._holidays_lib, "China", counting_china)
    try:
        cal = BusinessCalendar.from_overrides()
        for _ in range(3):
            cal.working_days_between(date(2025, 1, 1), date(2025, 12, 31))
        cal.add_working_days(date(2025, 12, 30), 5)  # spills into 2026
        assert sorted(built) == [2025, 2026]
    finally:
        calendar_mod._library_year.cache_clear()
