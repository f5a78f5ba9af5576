"""`BusyJobs`: the jobs a worker is running right now, by processor thread.

Processor threads write it (`start` before a job runs, `finish` after); the worker's main thread reads
it for the heartbeat (Sidekiq's ``<identity>:work``), the process title and the busy count it reports
to the supervisor. A lock, not the GIL, keeps writers and readers consistent, so the table stays
correct on a free-threaded Python; every read is a copy taken under that lock.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

__all__ = ["BusyJob", "BusyJobs"]


class BusyJob(NamedTuple):
    queue: str
    raw: bytes  # the job exactly as fetched
    run_at: int  # epoch seconds when it started


class BusyJobs:
    """tid -> `BusyJob`, guarded by a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, BusyJob] = {}

    def start(self, tid: str, queue: str, raw: bytes, run_at: int) -> None:
        with self._lock:
            self._jobs[tid] = BusyJob(queue, raw, run_at)

    def finish(self, tid: str) -> None:
        with self._lock:
            self._jobs.pop(tid, None)

    def snapshot(self) -> dict[str, BusyJob]:
        """A copy: the caller may iterate it while processors start and finish jobs."""
        with self._lock:
            return dict(self._jobs)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)
