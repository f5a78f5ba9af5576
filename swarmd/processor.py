"""One processor thread: take a fetched job, run its job function, then ack, retry or kill it.

A processor never lets an exception escape its loop for a job; if the loop itself dies (a bug in
swarmd), ``on_death`` tells the worker, which starts a replacement. The job it held stays in the
private list and goes back to its queue at the latest when the worker stops.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

from swarmd import connection, metrics, payload, registry
from swarmd.busy import BusyJobs
from swarmd.client import DELAYED
from swarmd.errors import DecodeError, DelayRefused
from swarmd.fetch import Fetcher, Work
from swarmd.logs import job_event
from swarmd.retry import Retrier
from swarmd.retrying import until_redis_answers

log = logging.getLogger("swarmd")
job_log = logging.getLogger("swarmd.job")

SETTLE_TRIES = 20  # then the job waits in the private list for the worker's final push back


def thread_id() -> str:
    """A short thread id, like Sidekiq's ``tid``: base 36 of the thread ident xor the pid."""
    n = threading.get_ident() ^ os.getpid()
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


class Processor:
    metrics = metrics.PROCESS  # per-class job metrics, flushed by the heartbeat

    def __init__(
        self,
        fetcher: Fetcher,
        retrier: Retrier,
        busy: BusyJobs,
        delay_allow: Sequence[str],
        on_death: Callable[[Processor, BaseException], None],
    ) -> None:
        self.fetcher = fetcher
        self.retrier = retrier
        self.busy = busy
        self.delay_allow = tuple(delay_allow)
        self.on_death = on_death
        self.thread = threading.Thread(target=self._run, name="swarmd-processor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        tid = thread_id()
        try:
            while (work := self.fetcher.get()) is not None:
                self.busy.start(tid, work.queue, work.raw, int(time.time()))
                try:
                    self.process(work)
                finally:
                    self.busy.finish(tid)
        except BaseException as exc:  # a bug in swarmd, not in a job: report and be replaced
            self.on_death(self, exc)

    def process(self, work: Work) -> None:
        try:
            job = payload.decode(work.raw)
        except DecodeError as exc:
            log.error("undecodable job from queue %s moved to dead unchanged: %s", work.queue, exc)
            self._settle(
                work, functools.partial(self.retrier.kill, work, None, "swarmd.DecodeError", str(exc))
            )
            return
        name, jid = job.name, job.jid
        job_event(logging.DEBUG, name, jid, "start")
        started = time.perf_counter()
        try:
            with self.metrics.track(name):
                if job.name == DELAYED:
                    func = registry.resolve_delayed(job.args[0] if job.args else None, self.delay_allow)
                    func(*job.args[1:], **job.kwargs)
                else:
                    registry.lookup(job.name)(*job.args, **job.kwargs)
        except DelayRefused as exc:
            log.error("%s; moved to dead", exc, extra={"job_class": name, "jid": jid})
            self._settle(
                work, functools.partial(self.retrier.kill, work, job.data, "swarmd.DelayRefused", str(exc))
            )
            return
        except BaseException as exc:  # a job's failure, SystemExit included, never stops the worker
            job_event(logging.INFO, name, jid, f"fail: {time.perf_counter() - started:.3f} sec")
            extra = {"job_class": name, "jid": jid}
            job_log.warning("%s: %s", payload.error_class_name(exc), exc, exc_info=exc, extra=extra)
            self._settle(work, functools.partial(self.retrier.failed, work, job, exc))
            return
        job_event(logging.INFO, name, jid, f"done: {time.perf_counter() - started:.3f} sec")
        self.fetcher.ack(work)

    def _settle(self, work: Work, store: Callable[[], str]) -> None:
        """Run a retry/dead move until Redis takes it; the job stays in the private list meanwhile."""

        def attempt() -> None:
            nonlocal store
            try:
                store()
            except connection.RedisError:
                raise
            except Exception:  # a bug while building the failure record: keep the job, as it came
                log.exception("could not record the failure; moving the job to dead unchanged")
                store = functools.partial(self.retrier.kill, work, None, "swarmd.InternalError", "")
                store()

        try:
            until_redis_answers(attempt, "retry/dead move", tries=SETTLE_TRIES)
        except connection.RedisError:
            # Given up: the entry stays in the private list and goes back to its queue when the worker
            # stops (Fetcher.drain) or is recovered; it is not held any more, so a reconcile after a
            # later connection error may push it back sooner.
            log.error("Redis kept failing; job left in the private list for the next push back")
        except Exception:  # the move to dead failed as well: the same fate as above
            log.exception("could not move the job to dead either; it stays in the private list")
        self.fetcher.release(work)
