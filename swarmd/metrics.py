"""Per-class job metrics: an in-memory aggregate the processors feed and the heartbeat flushes.

A processor thread wraps each job in `JobMetrics.track` (one lock-protected update of a small list
when the job ends); nothing goes to Redis per job. The worker's heartbeat takes the aggregate
(`JobMetrics.take`, a swap under the lock) and `write` queues its commands into the heartbeat's own
MULTI, so the metrics cost no round trip of their own.

What is written follows Sidekiq's metrics layout (``lib/sidekiq/metrics/tracking.rb`` and
``shared.rb``), so Sidekiq's Web UI "Metrics" tab shows swarmd's jobs, and adds what a dashboard and
Prometheus need on top (key names in `swarmd.keys`):

- ``j|<YYMMDD>|<H>:<MM>`` per minute (TTL 8 h) and ``j|<YYMMDD>|<H>:<M>`` per 10 minutes (TTL 3 days),
  Sidekiq 8's, plus ``j|<YYYYMMDD>|<H>:<M>`` per minute, Sidekiq 7's spelling: hashes with the fields
  ``<class>|p`` (runs), ``<class>|f`` (failures) and ``<class>|ms`` (milliseconds of the successful
  runs: as in Sidekiq, a failure's time is not counted, so a mean is ``ms / (p - f)``), and swarmd's
  ``<class>|o`` (reschedules by a limiter, `swarmd.OverLimit`: neither a run nor a failure);
- ``h|<class>-<d>-<H>:<M>``: Sidekiq's per-minute histogram, 26 saturating u16 counters (BITFIELD),
  bucket i counting successful runs shorter than `BOUNDS_MS` [i] (the last: anything slower), TTL 8 h;
- ``swarmd:h|<YYMMDD>|<H>:<M>``: the same buckets per 10 minutes, every class in one hash (fields
  ``<class>|<i>``), TTL 25 h, so the dashboard reads p50/p95 over 24 h in 144 HGETALLs whatever the
  number of classes (rather than 1,440 BITFIELDs per class);
- ``swarmd:metrics``: totals that only grow (``<class>|p``, ``|f``, ``|us``, ``|b<i>``, ``|o``), which
  Prometheus needs for counters and a histogram (``rate()`` of a sliding window would be wrong).

Job classes come from payloads, so they are untrusted: a class that no job function is registered
under is counted as `UNKNOWN`, and more than `MAX_CLASSES` names in one flush interval share `OTHER`,
so a flood of made-up names cannot grow Redis or this aggregate without bound.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from time import perf_counter
from types import TracebackType
from typing import Any

from swarmd.errors import OverLimit, UnknownJob
from swarmd.keys import Keys

__all__ = [
    "BOUNDS_MS",
    "BUCKETS",
    "MAX_CLASSES",
    "OTHER",
    "PROCESS",
    "UNKNOWN",
    "JobMetrics",
    "percentile_ms",
    "write",
]

BOUNDS_MS: tuple[int, ...] = (
    20, 30, 45, 65, 100, 150, 225, 335, 500, 750, 1100, 1700, 2500,
    3800, 5750, 8500, 13000, 20000, 30000, 45000, 65000, 100000, 150000, 225000, 335000,
)  # fmt: skip
"""Upper bounds (exclusive) of Sidekiq's histogram buckets; bucket 25 holds everything slower."""
BUCKETS = len(BOUNDS_MS) + 1
FIRST_BOUND = float(BOUNDS_MS[0])
LABELS: tuple[str, ...] = (*tuple(f"{b / 1000:g}s" if b >= 1000 else f"{b}ms" for b in BOUNDS_MS), "slow")
MAX_CLASSES = 500
UNKNOWN = "(unknown)"
OTHER = "(other)"
MINUTE_TTL = 8 * 3600  # Sidekiq's SHORT_TERM
TEN_TTL = 3 * 24 * 3600  # Sidekiq 8's MID_TERM
HISTOGRAM_TTL = 8 * 3600
HISTOGRAM_TEN_TTL = 25 * 3600
RESTART_REASONS = ("crash", "hung", "memory", "reload", "exit")
"""Why a worker replaced another (``swarmd_worker_restarts_total{reason}``): it crashed, was killed as
hung (silent past ``heartbeat_timeout``), went over ``max_memory_mb``, a reload replaced it, or it
exited 0 on its own (a TERM sent to the worker alone)."""

# A class's aggregate: [runs, failures, microseconds of successful runs, bucket 0, ..., bucket 25,
# reschedules by a limiter (`OverLimit`: neither a run nor a failure)].
_P, _F, _US, _B = 0, 1, 2, 3
_O = _B + BUCKETS
_SIZE = _O + 1
Stat = list[int]


class _Track:
    """The context manager of `JobMetrics.track`: times the block, records it on the way out (the same
    update as `JobMetrics.record`, inlined: it runs once per job)."""

    __slots__ = ("metrics", "name", "started")

    def __init__(self, metrics: JobMetrics, name: str) -> None:
        self.metrics = metrics
        self.name = name
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        elapsed_ms = (perf_counter() - self.started) * 1000.0
        name = self.name
        # A name no job function is registered under comes from a payload: one bucket for all of them.
        if exc is not None and isinstance(exc, UnknownJob):
            name = UNKNOWN
        metrics = self.metrics
        if exc is not None and isinstance(exc, OverLimit):
            with metrics._lock:
                stat = metrics._stats.get(name)
                if stat is None:
                    stat = metrics._add(name)
                stat[_O] += 1
            return
        with metrics._lock:
            stat = metrics._stats.get(name)
            if stat is None:
                stat = metrics._add(name)
            stat[_P] += 1
            if exc is not None:
                stat[_F] += 1
            else:
                stat[_US] += int(elapsed_ms * 1000.0)
                stat[_B if elapsed_ms < FIRST_BOUND else _B + bisect.bisect_right(BOUNDS_MS, elapsed_ms)] += 1


class JobMetrics:
    """Runs, failures, time and a histogram per job class since the last `take`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, Stat] = {}
        self._restarts: dict[str, int] = {}

    def track(self, name: str) -> _Track:
        """``with metrics.track(name): run the job``: records its time and whether it raised."""
        return _Track(self, name)

    def record(self, name: str, elapsed_ms: float, failed: bool) -> None:
        """One finished job. A failure counts as a run and a failure, without its time (Sidekiq's rule)."""
        with self._lock:
            stat = self._stats.get(name)
            if stat is None:
                stat = self._add(name)
            stat[_P] += 1
            if failed:
                stat[_F] += 1
            else:
                stat[_US] += int(elapsed_ms * 1000.0)
                # Most jobs take < 20 ms: bucket 0 without a search.
                stat[_B if elapsed_ms < FIRST_BOUND else _B + bisect.bisect_right(BOUNDS_MS, elapsed_ms)] += 1

    def _add(self, name: str) -> Stat:
        """A new class's aggregate (the lock is held); past `MAX_CLASSES` names, `OTHER`'s."""
        if len(self._stats) >= MAX_CLASSES:
            name = OTHER
            stat = self._stats.get(name)
            if stat is not None:
                return stat
        stat = self._stats[name] = [0] * _SIZE
        return stat

    def note_restart(self, reason: str) -> None:
        """This process replaces a worker for ``reason``: counted in Redis with the next flush."""
        with self._lock:
            self._restarts[reason] = self._restarts.get(reason, 0) + 1

    def take(self) -> tuple[dict[str, Stat], dict[str, int]]:
        """Everything recorded since the last take (and forget it): (stats by class, restarts)."""
        with self._lock:
            taken = self._stats, self._restarts
            self._stats, self._restarts = {}, {}
        return taken

    def restore(self, taken: tuple[Mapping[str, Stat], Mapping[str, int]]) -> None:
        """Put back what a failed flush took, so the next flush writes it."""
        stats, restarts = taken
        with self._lock:
            for name, values in stats.items():
                mine = self._stats.setdefault(name, [0] * _SIZE)
                for i, value in enumerate(values):
                    mine[i] += value
            for reason, count in restarts.items():
                self._restarts[reason] = self._restarts.get(reason, 0) + count


PROCESS = JobMetrics()
"""The aggregate of this process: its processors record into it, its heartbeat flushes it."""


def write(pipe: Any, keys: Keys, taken: tuple[Mapping[str, Stat], Mapping[str, int]], now: float) -> int:
    """Queue the commands that store ``taken`` (from `JobMetrics.take`) into ``pipe``; returns how many."""
    stats, restarts = taken
    queued = 0
    for reason, count in restarts.items():
        pipe.hincrby(keys.restarts, reason, count)
        queued += 1
    if not stats:
        return queued
    hashes = (
        (keys.metrics_minute(now), MINUTE_TTL),
        (keys.metrics_ten(now), TEN_TTL),
        (keys.metrics_minute_v7(now), MINUTE_TTL),
    )
    hist_ten = keys.histograms_ten(now)
    for name, stat in stats.items():
        runs, failures, us, over = stat[_P], stat[_F], stat[_US], stat[_O]
        fields = {f"{name}|p": runs, f"{name}|f": failures, f"{name}|ms": us // 1000, f"{name}|o": over}
        totals = {f"{name}|p": runs, f"{name}|f": failures, f"{name}|us": us, f"{name}|o": over}
        buckets = [(i, n) for i, n in enumerate(stat[_B:_O]) if n]
        for key, _ in hashes:
            for field, value in fields.items():
                if value:
                    pipe.hincrby(key, field, value)
                    queued += 1
        for field, value in totals.items():
            if value:
                pipe.hincrby(keys.job_totals, field, value)
                queued += 1
        for i, n in buckets:
            pipe.hincrby(keys.job_totals, f"{name}|b{i}", n)
            queued += 1
        if buckets:
            gram = keys.histogram(name, now)
            args: list[Any] = [gram, "OVERFLOW", "SAT"]
            for i, n in buckets:
                args += ["INCRBY", "u16", f"#{i}", n]
                pipe.hincrby(hist_ten, f"{name}|{i}", n)
            pipe.execute_command("BITFIELD", *args)
            pipe.expire(gram, HISTOGRAM_TTL)
            queued += 2 + len(buckets)
    for key, ttl in (*hashes, (hist_ten, HISTOGRAM_TEN_TTL)):
        pipe.expire(key, ttl)
        queued += 1
    return queued


def percentile_ms(buckets: list[int] | tuple[int, ...], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding quantile ``q`` of ``buckets``; None when empty,
    ``inf`` when it falls in the last ("slow") bucket."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank and n:
            return float(BOUNDS_MS[i]) if i < len(BOUNDS_MS) else float("inf")
    return float("inf")
