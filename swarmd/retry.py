"""Failures: Sidekiq's retry semantics and backoff, the `retry` and `dead` sets.

- ``retry: true`` (default) allows `max_retries` (25) retries, ``retry: N`` allows N, ``retry: 0``
  sends the job to `dead` on its first failure, ``retry: false`` drops it (counted as failed,
  stored nowhere), exactly as Sidekiq does. ``dead: false`` skips `dead` when retries run out.
- Delay before retry ``count``: ``count**4 + 15 + rand(10) * (count + 1)`` seconds (Sidekiq 6/7).
- ``retry_queue`` routes retries to another queue; a job sent to `dead` carries it as its ``queue``
  too (so the Web UI's Retry sends it there), as in Sidekiq.
- A job whose limiter stayed at its limit (`swarmd.OverLimit`) goes to `schedule` instead, with a short
  backoff (`Retrier.over_limit`): not a failure, its retries untouched (``lua/overlimit.lua``).
- The move into `retry`/`dead` and the removal from the private list are one script
  (``lua/fail.lua``): the job is never in both places and never in neither.
"""

from __future__ import annotations

import logging
import random
import traceback
from typing import Any

from swarmd import payload, unique
from swarmd.errors import OverLimit
from swarmd.payload import Work
from swarmd.scripts import Scripts

log = logging.getLogger("swarmd")


def backoff_seconds(count: int) -> float:
    return float(count**4 + 15 + random.randrange(10) * (count + 1))


def max_attempts(retry: Any, default: int) -> int:
    if retry is True or retry is None:
        return default
    if isinstance(retry, int) and not isinstance(retry, bool):
        return max(retry, 0)
    return 0


class Retrier:
    def __init__(
        self,
        scripts: Scripts,
        identity: str,
        *,
        max_retries: int = 25,
        dead_max_jobs: int = 10_000,
        dead_timeout: float = 180 * 24 * 3600.0,
        limiter_backoff: float = 1.0,
        limiter_backoff_max: float = 60.0,
    ) -> None:
        self.limiter_backoff = limiter_backoff
        self.limiter_backoff_max = limiter_backoff_max
        self.scripts = scripts
        self.identity = identity
        self.max_retries = max_retries
        self.dead_max_jobs = dead_max_jobs
        self.dead_timeout = dead_timeout

    def failed(self, work: Work, job: payload.Job, exc: BaseException) -> str:
        """Record a failure; return where the job went: "retry", "dead" or "drop".

        Works on a copy of the job: a caller that retries this after a Redis error must not count
        the failure twice."""
        data = dict(job.data)
        backtrace_opt = data.get("backtrace")
        lines: list[str] | None = None
        if backtrace_opt:
            lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
            if isinstance(backtrace_opt, int) and not isinstance(backtrace_opt, bool):
                lines = lines[-backtrace_opt:]
        count = payload.record_failure(data, payload.error_class_name(exc), str(exc), lines)
        retry = data.get("retry", True)
        if retry is False:
            return self._store(work, data, "drop", 0.0)
        # As Sidekiq's JobRetry: `retry_queue`, else the queue the job came from, for retry and dead.
        retry_queue = data.get("retry_queue")
        data["queue"] = retry_queue if isinstance(retry_queue, str) and retry_queue else work.queue
        if count < max_attempts(retry, self.max_retries):
            return self._store(work, data, "retry", payload.now() + backoff_seconds(count))
        if data.get("dead") is False:
            return self._store(work, data, "drop", 0.0)
        return self._store(work, data, "dead", payload.now())

    def over_limit(self, work: Work, job: payload.Job, exc: OverLimit) -> float:
        """A limiter stayed at its limit (`OverLimit`): to `schedule` with a short backoff that grows
        with the job's ``overrated`` count (``limiter_backoff`` doubled each time, at most
        ``limiter_backoff_max``, plus up to 20 % jitter); not a failure, its retries untouched.
        Returns the delay. Works on a copy of the job, like `failed`."""
        data = dict(job.data)
        count = data.get("overrated")
        count = count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 0
        data["overrated"] = count + 1
        delay = min(self.limiter_backoff_max, self.limiter_backoff * 2.0 ** min(count, 30))
        delay *= random.uniform(1.0, 1.2)
        data["queue"] = work.queue
        extra = {"job_class": job.name, "jid": job.jid}
        if self.scripts.over_limit(self.identity, work.raw, payload.encode(data), payload.now() + delay):
            log.info("%s; rescheduled in %.1f s (over limit %d time(s))", exc, delay, count + 1, extra=extra)
        else:
            log.warning(
                "job over limit was no longer in this worker's in-flight list: pushed back or recovered",
                extra=extra,
            )
        return delay

    def kill(self, work: Work, data: dict[str, Any] | None, error_class: str, message: str) -> str:
        """Straight to `dead`: unchanged raw bytes when ``data`` is None (undecodable)."""
        if data is not None:
            data = dict(data)  # see `failed`: callers may retry this
            payload.record_failure(data, error_class, message)
        return self._store(work, data, "dead", payload.now())

    def _store(self, work: Work, data: dict[str, Any] | None, mode: str, score: float) -> str:
        stored = work.raw if data is None else payload.encode(data)
        cutoff = payload.now() - self.dead_timeout
        lock = unique.lock_of(data) if data is not None and unique.FIELD in data else None
        if not self.scripts.fail(
            self.identity,
            work.raw,
            stored,
            mode,
            score,
            dead_cutoff=cutoff,
            dead_max_jobs=self.dead_max_jobs,
            unique=lock,
        ):
            log.warning(
                "job was no longer in this worker's in-flight list: pushed back or recovered (it runs "
                "again from its queue), or stored by an earlier attempt whose reply was lost"
            )
        return mode
