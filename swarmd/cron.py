"""Cron schedules in a time zone: when a periodic job's ticks are (``cronsim`` parses and iterates).

A schedule is evaluated on the zone's wall clock, and every tick is a wall-clock time that matches
the expression. Daylight saving time follows from that rule, and is the same for every expression:

- a wall-clock time that does not exist (the hour skipped when clocks go forward, 02:30 on the last
  Sunday of March in Europe/Berlin) is skipped: no tick, nothing run later in its place;
- a wall-clock time that occurs twice (the hour repeated when clocks go back, 02:30 on the last Sunday
  of October in Europe/Berlin) is one tick, at its first occurrence.

So an every-5-minutes expression in a zone with DST has no ticks during the repeated hour's second
pass; without ``timezone`` a schedule is in UTC, which has no DST. (cronsim itself mimics Debian cron
for aware datetimes, running a skipped time right after the jump; swarmd iterates naive wall-clock
times instead and applies the rule above.)

An expression has five fields (minute hour day-of-month month day-of-week) or six, the first being
seconds. Ticks are whole seconds, as epoch seconds.

This module touches no Redis.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field

from cronsim import CronSim, CronSimError

__all__ = ["CronError", "Schedule", "parse"]

UTC = dt.UTC
_MAX_STEPS = 20_000  # candidates looked at per call: a repeated hour of a per-second expression is 3,600


class CronError(ValueError):
    """A bad expression or time zone: the message is one line without the location."""


@dataclass(frozen=True)
class Schedule:
    expr: str
    timezone: str | None = None  # an IANA name; None: UTC
    tz: dt.tzinfo = field(default=UTC, compare=False, repr=False)

    def _candidates(self, start: dt.datetime, reverse: bool) -> CronSim:
        return CronSim(self.expr, start, reverse=reverse)

    def _instant(self, wall: dt.datetime) -> float | None:
        """Epoch seconds of naive wall-clock ``wall`` (its first occurrence), None if it does not exist."""
        ts = wall.replace(tzinfo=self.tz, fold=0).timestamp()
        if dt.datetime.fromtimestamp(ts, self.tz).replace(tzinfo=None) != wall:
            return None  # in the gap of a jump forward: the round trip lands elsewhere
        return ts

    def next_after(self, t: float) -> float:
        """The first tick strictly after epoch ``t``."""
        wall = dt.datetime.fromtimestamp(t, self.tz).replace(tzinfo=None, fold=0)
        for steps, candidate in enumerate(self._candidates(wall, reverse=False)):
            ts = self._instant(candidate)
            if ts is not None and ts > t:
                return ts
            if steps > _MAX_STEPS:
                break
        raise CronError(f"{self.expr!r} has no tick after {t:.0f}")

    def latest(self, t: float) -> float | None:
        """The last tick at or before epoch ``t`` (None if none in the last few years)."""
        aware = dt.datetime.fromtimestamp(t, self.tz)
        wall = aware.replace(tzinfo=None, microsecond=0)
        if aware.fold:
            # The repeated hour's second pass: the wall-clock times up to the end of that hour had their
            # (only) tick in the first pass, before t; start looking from the end of the hour.
            first = aware.replace(fold=0).utcoffset()
            second = aware.utcoffset()
            if first is not None and second is not None and first > second:
                wall += first - second
        start = wall + dt.timedelta(seconds=1)  # reverse iteration starts strictly before its start
        try:
            for steps, candidate in enumerate(self._candidates(start, reverse=True)):
                ts = self._instant(candidate)
                if ts is not None and ts <= t:
                    return ts
                if steps > _MAX_STEPS:
                    break
        except (StopIteration, ValueError, OverflowError):  # ran past the calendar's start
            return None
        return None


def parse(expr: object, timezone: object = None) -> Schedule:
    """A checked `Schedule`; raises `CronError` naming what is wrong."""
    if not isinstance(expr, str) or not expr.strip():
        raise CronError(f"expected a cron expression (5 or 6 fields), got {expr!r:.80}")
    text = " ".join(expr.split())
    try:
        CronSim(text, dt.datetime(2000, 1, 1))
    except CronSimError as exc:
        raise CronError(f"bad cron expression {text!r}: {exc}") from None
    except Exception as exc:  # cronsim raises plain errors on some malformed input
        raise CronError(f"bad cron expression {text!r}: {exc}") from None
    if timezone is None:
        return Schedule(text)
    if not isinstance(timezone, str) or not timezone:
        raise CronError(f"expected an IANA time zone name (e.g. Europe/Berlin), got {timezone!r:.80}")
    try:
        tz = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(
            f"unknown time zone {timezone!r} (expected an IANA name, e.g. Europe/Berlin)"
        ) from None
    schedule = Schedule(text, timezone, tz)
    schedule.next_after(0.0)  # an expression that never matches (30 February) fails here, not at a tick
    return schedule
