"""Retrying until Redis answers: one backoff schedule and one logging rule for every Redis retry.

The schedule: 0.1 s doubling to at most 2 s, each delay jittered down to half (so workers that lost
Redis together do not come back in lockstep). The logging rule: one WARNING when a run of failures
starts, one INFO when the action works again, nothing in between, however long Redis is away.

Three shapes of use, one `Backoff` underneath:

- `until_redis_answers` runs an action in a loop, sleeping between tries (worker shutdown, a
  processor recording a failed job);
- a thread with a loop of its own calls `Backoff.wait` after a failure and `Backoff.ok` after a
  success (the fetcher and its waiter threads);
- a caller driven by a clock that must never block (the supervisor) calls `Backoff.failed` for the
  delay and schedules the next try itself.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from swarmd import connection

__all__ = ["BASE_S", "CAP_S", "Backoff", "until_redis_answers"]

log = logging.getLogger("swarmd")

BASE_S = 0.1  # the first delay (before jitter)
CAP_S = 2.0  # no delay is longer: Redis back means work resumes within 2 s

T = TypeVar("T")


class Backoff:
    """The delays and the log lines of one run of retries of ``what`` (``"fetch"``, ``"flush acks"``).

    ``rand`` and ``clock`` are there for a caller that owns them (the supervisor's are faked in tests).
    """

    def __init__(
        self,
        what: str,
        *,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.failures = 0  # in a row, since the last success
        self._since = 0.0
        self._rand = rand
        self._clock = clock

    def failed(self, error: object) -> float:
        """Count a failure (the first of a run is logged); return how long to wait before the next try."""
        if self.failures == 0:
            self._since = self._clock()
            log.warning("%s failed, retrying with backoff: %s", self.what, error)
        self.failures += 1
        delay = min(BASE_S * 2.0 ** min(self.failures - 1, 30), CAP_S)
        return delay * (0.5 + 0.5 * self._rand())

    def wait(self, error: object, stop: threading.Event | None = None) -> None:
        """`failed`, then sleep the delay (cut short when ``stop`` is set)."""
        delay = self.failed(error)
        if stop is not None:
            stop.wait(delay)
        else:
            time.sleep(delay)

    def ok(self) -> None:
        """The action worked: if it had been failing, say so once and start the schedule over."""
        if self.failures:
            log.info(
                "%s works again after %.1f s (%d failed tries)",
                self.what,
                self._clock() - self._since,
                self.failures,
            )
            self.failures = 0


def until_redis_answers(
    action: Callable[[], T],
    what: str,
    *,
    tries: int | None = None,
    stop: threading.Event | None = None,
) -> T:
    """``action()``'s result, calling it again after each Redis error with `Backoff`'s delays.

    Gives up by raising the last `connection.RedisError` after ``tries`` failed calls, or as soon as
    ``stop`` is set; with neither, it retries for as long as it takes. Any other exception is raised
    at once: retrying only helps against Redis being away.
    """
    backoff = Backoff(what)
    while True:
        try:
            result = action()
        except connection.RedisError as exc:
            if (tries is not None and backoff.failures + 1 >= tries) or (stop is not None and stop.is_set()):
                raise
            backoff.wait(exc, stop)
            if stop is not None and stop.is_set():
                raise
            continue
        backoff.ok()
        return result
