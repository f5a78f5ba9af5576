"""Cron schedules in a time zone (`swarmd.cron`), DST rules checked on Europe/Berlin's transitions:
a wall-clock time that does not exist is skipped, one that occurs twice runs once."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from swarmd import cron

BERLIN = ZoneInfo("Europe/Berlin")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, fold: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=BERLIN, fold=fold).timestamp()


def walk(schedule: cron.Schedule, start: float, until: float) -> list[str]:
    """Every tick in (start, until], as Berlin wall-clock text with its UTC offset."""
    out = []
    t = schedule.next_after(start)
    while t <= until:
        out.append(dt.datetime.fromtimestamp(t, BERLIN).strftime("%m-%d %H:%M%z"))
        t = schedule.next_after(t)
    return out


def test_a_daily_time_inside_the_spring_gap_is_skipped_that_day() -> None:
    # 2026-03-29: clocks jump from 02:00 to 03:00; 02:30 does not exist that day.
    s = cron.parse("30 2 * * *", "Europe/Berlin")
    assert walk(s, at(2026, 3, 27, 12), at(2026, 3, 31, 12)) == [
        "03-28 02:30+0100",
        "03-30 02:30+0200",
        "03-31 02:30+0200",
    ]


def test_a_daily_time_inside_the_autumn_repeat_runs_once() -> None:
    # 2026-10-25: clocks go back from 03:00 to 02:00; 02:30 happens twice, and runs at the first.
    s = cron.parse("30 2 * * *", "Europe/Berlin")
    assert walk(s, at(2026, 10, 24, 12), at(2026, 10, 26, 12)) == ["10-25 02:30+0200", "10-26 02:30+0100"]


def test_an_interval_expression_follows_the_wall_clock_through_both_transitions() -> None:
    s = cron.parse("*/30 * * * *", "Europe/Berlin")
    spring = walk(s, at(2026, 3, 29, 1, 0), at(2026, 3, 29, 4, 0))
    assert spring == ["03-29 01:30+0100", "03-29 03:00+0200", "03-29 03:30+0200", "03-29 04:00+0200"]
    autumn = walk(s, at(2026, 10, 25, 1, 0), at(2026, 10, 25, 4, 0))
    # The repeated hour's wall-clock times ran in its first pass: no second 02:00 or 02:30.
    assert autumn == [
        "10-25 01:30+0200",
        "10-25 02:00+0200",
        "10-25 02:30+0200",
        "10-25 03:00+0100",
        "10-25 03:30+0100",
        "10-25 04:00+0100",
    ]


def test_the_latest_tick_in_the_repeated_hour_is_the_first_pass_one() -> None:
    s = cron.parse("*/20 * * * *", "Europe/Berlin")
    second_pass = at(2026, 10, 25, 2, 10, fold=1)
    assert s.latest(second_pass) == at(2026, 10, 25, 2, 40)
    assert s.next_after(second_pass) == at(2026, 10, 25, 3, 0)
    assert s.latest(at(2026, 3, 29, 3, 5)) == at(2026, 3, 29, 3, 0)


def test_latest_includes_a_tick_at_exactly_now_and_next_after_excludes_it() -> None:
    s = cron.parse("0 * * * *")
    hour = dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC).timestamp()
    assert s.latest(hour) == hour and s.latest(hour + 59.9) == hour
    assert s.next_after(hour) == hour + 3600 and s.next_after(hour - 0.5) == hour


def test_six_fields_have_seconds_first() -> None:
    s = cron.parse("*/3 * * * * *")
    assert s.next_after(999.0) == 1002.0 and s.latest(1000.5) == 999.0


@pytest.mark.parametrize(
    ("expr", "tz", "message"),
    [
        ("* * *", None, "bad cron expression '* * *': Wrong number of fields"),
        ("61 * * * *", None, "bad cron expression '61 * * * *': Bad minute"),
        ("0 0 30 2 *", None, "bad cron expression '0 0 30 2 *': Bad day-of-month"),
        ("0 3 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("0 3 * * *", "../../etc/passwd", "unknown time zone '../../etc/passwd'"),
        ("", None, "expected a cron expression"),
        (5, None, "expected a cron expression"),
        ("0 3 * * *", 1, "expected an IANA time zone name"),
    ],
)
def test_bad_input_is_a_one_line_cron_error(expr: object, tz: object, message: str) -> None:
    with pytest.raises(cron.CronError, match="^" + message.replace("*", r"\*").replace("(", r"\(")) as info:
        cron.parse(expr, tz)
    assert "\n" not in str(info.value)
