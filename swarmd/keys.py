"""Every Redis key name swarmd reads or writes; nothing else in the package spells a key.

Sidekiq's keys keep Sidekiq's names so Ruby and Python share them. swarmd's own keys live
under ``swarmd:``:

- ``swarmd:inflight:<identity>`` (list): the worker's private in-flight list. A job is moved here
  atomically from its queue and leaves only when it succeeded, went to ``retry``/``dead``, or was
  pushed back. Jobs are stored as the exact bytes that were in the queue.
- ``swarmd:alive:<identity>`` (string with TTL): the worker's liveness key, refreshed every beat.
  When it has expired, any worker may recover the in-flight list.
- ``swarmd:workers`` (set): identities that may own an in-flight list (cleared after recovery).
- ``swarmd:recovering:<identity>`` (string, NX with TTL): taken by the one worker recovering a list.
- ``swarmd:quarantine`` (list): suspects, jobs that were in the private list of a worker that died
  (or was recycled for memory). Only a quarantine worker (concurrency 1) takes jobs from here, so each
  runs alone; it takes from the right, and jobs are pushed back on the right (the head), as in queues.
- ``swarmd:crashes:<jid>`` (integer with TTL): how many times a quarantine worker died (or was
  recycled) while running this job alone (poison guard).
- ``swarmd:vanished:<jid>`` (integer with TTL): how many times this job was in the list of an ordinary
  worker that vanished unseen (its liveness key expired); at `recovery.VANISH_LIMIT` it becomes a suspect.

A quarantine worker's identity ends in ``:quarantine-<hex>`` (`quarantine_identity`), so whoever
recovers its private list knows that the job in it was running alone.

- ``swarmd:metrics`` (hash): per job class, totals since the key was created (``<class>|p`` runs,
  ``|f`` failures, ``|us`` microseconds of the successful runs, ``|b<i>`` runs in histogram bucket i):
  the counters behind Prometheus's ``swarmd_job_duration_seconds``.
- ``swarmd:h|<YYMMDD>|<H>:<M>`` (hash, TTL 25 h): the duration histograms of every class over one
  10-minute window (``M`` is the tens digit of the minute), field ``<class>|<i>`` = runs in bucket i,
  for p50/p95 over 1-24 h in one HGETALL per window whatever the number of classes.
- ``swarmd:restarts`` (hash): workers started to replace another, by reason (crash, memory, hung,
  reload, exit); ``swarmd:recovery`` (hash): ``recovered`` and ``poison`` job counts of the recovery
  script.

Sidekiq's per-class metrics (``swarmd.metrics``): ``j|<YYMMDD>|<H>:<MM>`` (hash per minute, TTL 8 h),
``j|<YYMMDD>|<H>:<M>`` (per 10 minutes, TTL 3 days), ``j|<YYYYMMDD>|<H>:<M>`` (Sidekiq 7's per-minute
spelling, TTL 8 h) and ``h|<class>-<d>-<H>:<M>`` (BITFIELD of 26 u16 per minute, TTL 8 h).

Limiters (``swarmd.limiter``), shared by every swarm on the Redis: ``swarmd:limiter:concurrent:<name>``
(sorted set: holder token -> when its lease ends, ms), ``swarmd:limiter:window:<name>`` (sorted set:
grant token -> its time, ms), ``swarmd:limiter:bucket:<name>`` (hash: ``tokens``, ``at``).

With a namespace ``ns`` every key gets the prefix ``ns:``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

STATS_TTL = 5 * 365 * 24 * 3600
"""TTL of the daily ``stat:*:YYYY-MM-DD`` keys (Sidekiq's 5 years)."""


@dataclass(frozen=True)
class Keys:
    """Key names for one namespace (``None`` or ``""`` means no prefix)."""

    namespace: str | None = None

    def _k(self, name: str) -> str:
        return f"{self.namespace}:{name}" if self.namespace else name

    # -- Sidekiq's keys ---------------------------------------------------------------------------
    @property
    def queues(self) -> str:
        return self._k("queues")

    def queue(self, name: str) -> str:
        return self._k(f"queue:{name}")

    @property
    def schedule(self) -> str:
        return self._k("schedule")

    @property
    def retry(self) -> str:
        return self._k("retry")

    @property
    def dead(self) -> str:
        return self._k("dead")

    @property
    def processes(self) -> str:
        return self._k("processes")

    def process(self, identity: str) -> str:
        return self._k(identity)

    def work(self, identity: str) -> str:
        return self._k(f"{identity}:work")

    def workers(self, identity: str) -> str:
        return self._k(f"{identity}:workers")

    def signals(self, identity: str) -> str:
        return self._k(f"{identity}-signals")

    def stat(self, name: str) -> str:
        return self._k(f"stat:{name}")

    @property
    def process_cleanup(self) -> str:
        return self._k("process_cleanup")

    def stat_daily(self, name: str, now: float | None = None) -> str:
        day = time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))
        return self._k(f"stat:{name}:{day}")

    # -- swarmd's own keys ------------------------------------------------------------------------
    def inflight(self, identity: str) -> str:
        return self._k(f"swarmd:inflight:{identity}")

    def alive(self, identity: str) -> str:
        return self._k(f"swarmd:alive:{identity}")

    @property
    def swarmd_workers(self) -> str:
        return self._k("swarmd:workers")

    def recovering(self, identity: str) -> str:
        return self._k(f"swarmd:recovering:{identity}")

    def crashes(self, jid: str) -> str:
        return self._k(f"swarmd:crashes:{jid}")

    def vanished(self, jid: str) -> str:
        return self._k(f"swarmd:vanished:{jid}")

    @property
    def quarantine(self) -> str:
        return self._k("swarmd:quarantine")

    # -- per-class job metrics (swarmd.metrics) ---------------------------------------------------
    def metrics_minute(self, ts: float) -> str:
        """Sidekiq 8's per-minute hash, ``j|261130|8:04`` (UTC)."""
        t = time.gmtime(ts)
        return self._k(f"j|{t.tm_year % 100:02d}{t.tm_mon:02d}{t.tm_mday:02d}|{t.tm_hour}:{t.tm_min:02d}")

    def metrics_ten(self, ts: float) -> str:
        """Sidekiq 8's 10-minute hash, ``j|261130|8:0`` for 08:00-08:09 (UTC)."""
        t = time.gmtime(ts)
        return self._k(f"j|{t.tm_year % 100:02d}{t.tm_mon:02d}{t.tm_mday:02d}|{t.tm_hour}:{t.tm_min // 10}")

    def metrics_minute_v7(self, ts: float) -> str:
        """Sidekiq 7's per-minute hash, ``j|20261130|8:4`` (UTC)."""
        t = time.gmtime(ts)
        return self._k(f"j|{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}|{t.tm_hour}:{t.tm_min}")

    def histogram(self, job_class: str, ts: float) -> str:
        """Sidekiq 8's per-minute histogram of a class, ``h|<class>-30-8:4`` (UTC)."""
        t = time.gmtime(ts)
        return self._k(f"h|{job_class}-{t.tm_mday}-{t.tm_hour}:{t.tm_min}")

    def histograms_ten(self, ts: float) -> str:
        """swarmd's 10-minute histograms of every class, ``swarmd:h|261130|8:0`` (UTC)."""
        t = time.gmtime(ts)
        day = f"{t.tm_year % 100:02d}{t.tm_mon:02d}{t.tm_mday:02d}"
        return self._k(f"swarmd:h|{day}|{t.tm_hour}:{t.tm_min // 10}")

    @property
    def job_totals(self) -> str:
        return self._k("swarmd:metrics")

    @property
    def restarts(self) -> str:
        return self._k("swarmd:restarts")

    @property
    def recovery(self) -> str:
        return self._k("swarmd:recovery")

    # -- limiters (swarmd.limiter) ------------------------------------------------------------------
    def limiter(self, kind: str, name: str) -> str:
        """The key of limiter ``name`` of ``kind`` ("concurrent", "window" or "bucket")."""
        return self._k(f"swarmd:limiter:{kind}:{name}")

    # -- periodic jobs (swarmd.periodic_jobs) ----------------------------------------------------------
    @property
    def periodic(self) -> str:
        """Hash: periodic entry id -> the last tick claimed (epoch seconds); only ever moves forward."""
        return self._k("swarmd:periodic")

    def unique(self, digest: str) -> str:
        """A unique job's lock (swarmd.unique): holds the jid of the job that took it; EX unique_for."""
        return self._k(f"swarmd:unique:{digest}")

    @property
    def periodic_entries(self) -> str:
        """Hash: periodic entry id -> the entry as JSON (job, cron, timezone, args, queue, seen)."""
        return self._k("swarmd:periodic:entries")


QUARANTINE_TAG = "quarantine-"
"""Starts the last part of a quarantine worker's identity (``host:pid:quarantine-<hex>``)."""


def is_quarantine_identity(identity: str) -> bool:
    """True when ``identity`` names a quarantine worker (its private list holds a job running alone)."""
    return identity.rsplit(":", 1)[-1].startswith(QUARANTINE_TAG)
