"""One processor thread: take a fetched job, run its job function, then ack, retry or kill it.

Each run: the job becomes `swarmd.current_job()` (a `swarmd.context.JobContext`), the server
middleware chain (`swarmd.hooks`) wraps the call of the job function (an ``async def`` one is awaited
on the worker's event loop, `swarmd.aio`, while this thread waits), then the job is acked, or its
failure is stored (retry/dead) and the app's ``on_failure``/``on_death`` hooks run. With no middleware
registered the job function is called directly.

A processor never lets an exception escape its loop for a job; if the loop itself dies (a bug in
swarmd), ``on_death`` tells the worker, which starts a replacement. The job it held stays in the
private list and goes back to its queue at the latest when the worker stops.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from swarmd import aio, connection, context, hooks, limiter, metrics, payload, registry, timeouts, unique
from swarmd.aio import StopCancelled
from swarmd.busy import BusyJobs
from swarmd.client import DELAYED
from swarmd.errors import DecodeError, DelayRefused, JobTimeout, OverLimit, PoisonJob, UnknownJob
from swarmd.fetch import Fetcher, Work
from swarmd.logs import job_event
from swarmd.retry import Retrier
from swarmd.retrying import until_redis_answers

log = logging.getLogger("swarmd")
job_log = logging.getLogger("swarmd.job")

SETTLE_TRIES = 20  # then the job waits in the private list for the worker's final push back

MAX_UNKNOWN_WARNED = 1000  # names remembered for the once-per-name warning; then it starts over
_unknown_warned: set[str] = set()
_unknown_lock = threading.Lock()


def thread_id() -> str:
    """A short thread id, like Sidekiq's ``tid``: base 36 of the thread ident xor the pid."""
    n = threading.get_ident() ^ os.getpid()
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def report_poison(data: dict[str, Any]) -> None:
    """The app's on_death hooks for a job that a recovery in this process sent to `dead` as poison
    (`swarmd.recovery`'s ``on_poison``): called with a `PoisonJob` holding the recorded message."""
    token = context.start(data, str(data.get("class")), str(data.get("jid", "-")))
    current = context.current_job()
    try:
        exc = PoisonJob(str(data.get("error_message", "")))
        # No event loop is started for it in the supervisor (it forks): an async hook gets asyncio.run.
        hooks.run_hooks("death", current, exc, awaiter=aio.run if aio.started() else None)
    finally:
        context.current_var.reset(token)


def poison_reporter() -> Callable[[dict[str, Any]], None] | None:
    """`report_poison` when the app registered on_death hooks in this process, else None (no lookups)."""
    return report_poison if hooks.registered("death") else None


class Processor:
    metrics = metrics.PROCESS  # per-class job metrics, flushed by the heartbeat

    def __init__(
        self,
        fetcher: Fetcher,
        retrier: Retrier,
        busy: BusyJobs,
        delay_allow: Sequence[str],
        on_death: Callable[[Processor, BaseException], None],
        *,
        watchdog: timeouts.Watchdog | None = None,
        job_timeout: float | None = None,
    ) -> None:
        self.watchdog = watchdog  # time limits (README "Time limits"); None: limits are not enforced
        self.job_timeout = job_timeout  # the limit of a job without one of its own
        self.fetcher = fetcher
        self.retrier = retrier
        self.busy = busy
        self.delay_allow = tuple(delay_allow)
        self.on_death = on_death
        self._stop_cancelled = False  # the running async job was cancelled by the worker's hard stop
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
        token = context.start(job.data, name, jid)  # swarmd.current_job(), and class/jid in log lines
        lock = unique.lock_of(job.data) if unique.FIELD in job.data else None
        if lock is not None and unique.releases_at_start(job.data):
            self._unlock(lock)
            lock = None
        chain = hooks.server_middlewares()
        run: hooks.MiddlewareRun | None = None
        started = time.perf_counter()
        try:
            with self.metrics.track(name):
                if chain:
                    current = context.current_job()
                    assert current is not None
                    run = hooks.MiddlewareRun(chain, current, functools.partial(self._invoke, job, name))
                    run()
                else:  # no middleware: nothing between the processor and the job function
                    self._invoke(job, name)
        except OverLimit as exc:
            self._over_limit(work, job, exc, started)
        except DelayRefused as exc:
            log.error("%s; moved to dead", exc, extra={"job_class": name, "jid": jid})
            mode = self._settle(
                work, functools.partial(self.retrier.kill, work, job.data, "swarmd.DelayRefused", str(exc))
            )
            self._after_failure(job, exc, mode)
        except BaseException as exc:  # a job's failure, SystemExit included, never stops the worker
            if self._stop_cancelled:
                self._cancelled(name, jid, started)
            else:
                self._failed(work, job, exc, run, started)
        else:
            if self._stop_cancelled:  # a middleware swallowed the cancellation: the job did not finish
                self._cancelled(name, jid, started)
            else:
                job_event(logging.INFO, name, jid, f"done: {time.perf_counter() - started:.3f} sec")
                self.fetcher.ack(work)
                if lock is not None:  # unique_until: success
                    self._unlock(lock)
        finally:
            context.current_var.reset(token)

    def _unlock(self, lock: tuple[str, str]) -> None:
        """Release a unique job's lock (`swarmd.unique`); on a Redis error it expires by its TTL."""
        try:
            self.retrier.scripts.unlock([lock])
        except connection.RedisError as exc:
            log.warning(
                "could not release the unique lock of job %s (it expires by itself): %s", lock[1], exc
            )

    def _failed(
        self,
        work: Work,
        job: payload.Job,
        exc: BaseException,
        run: hooks.MiddlewareRun | None,
        started: float,
    ) -> None:
        name, jid = job.name, job.jid
        job_event(logging.INFO, name, jid, f"fail: {time.perf_counter() - started:.3f} sec")
        extra = {"job_class": name, "jid": jid}
        if run is not None and run.culprit is not None:
            culprit = hooks.describe(run.culprit)
            log.error(
                "server middleware %s raised; the job counts as failed", culprit, exc_info=exc, extra=extra
            )
        elif isinstance(exc, UnknownJob):
            self._unknown(exc, extra)
        else:
            job_log.warning("%s: %s", payload.error_class_name(exc), exc, exc_info=exc, extra=extra)
        mode = self._settle(work, functools.partial(self.retrier.failed, work, job, exc))
        self._after_failure(job, exc, mode)

    def _invoke(self, job: payload.Job, name: str) -> Any:
        """Call the job's function (awaiting an ``async def`` one on the worker's loop); its result."""
        args = job.args
        if name == DELAYED:
            func = registry.resolve_delayed(args[0] if args else None, self.delay_allow)
            args = args[1:]
            is_async = inspect.iscoroutinefunction(func)
            own = None
        else:
            found = registry.lookup_job(name)
            func, is_async, own = found.func, found.is_async, found.timeout
        if self.watchdog is not None and (own is not None or self.job_timeout or "timeout" in job.data):
            seconds = self._time_limit(job, own)
            if seconds is not None:
                return self._invoke_limited(job, func, args, is_async, seconds)
        if is_async:
            try:
                return aio.run(func(*args, **job.kwargs))
            except StopCancelled:
                self._stop_cancelled = True
                raise
        result = func(*args, **job.kwargs)
        if result is not None and inspect.iscoroutine(result):
            raise registry.not_async_error(name, result)
        return result

    # -- time limits (README "Time limits") ---------------------------------------------------------
    def _time_limit(self, job: payload.Job, own: float | None) -> float | None:
        """The job's limit: its payload's ``timeout`` (``.set(timeout=...)``, the decorator's), else its
        function's, else ``job_timeout``. A payload value that is not a number > 0 is ignored."""
        value = job.data.get("timeout")
        if value is not None:
            try:
                return registry.check_timeout(value, "the job's payload")
            except TypeError:
                pass
        return own if own is not None else self.job_timeout

    def _invoke_limited(
        self, job: payload.Job, func: Callable[..., Any], args: list[Any], is_async: bool, seconds: float
    ) -> Any:
        watchdog = self.watchdog
        assert watchdog is not None
        what = f"{job.name} JID-{job.jid}"
        if is_async:
            # asyncio.timeout cancels it at the limit; the watchdog keeps its grace (a blocked loop).
            run = watchdog.arm(seconds, what, interrupt=False)
            try:
                return aio.run(timeouts.limit_coroutine(func(*args, **job.kwargs), seconds))
            except StopCancelled:
                self._stop_cancelled = True
                raise
            finally:
                watchdog.disarm(run)
        run = watchdog.arm(seconds, what)
        fired = False
        try:
            try:
                result = func(*args, **job.kwargs)
            finally:
                # JobTimeout may land in any bytecode up to the disarm, which clears one not yet raised;
                # it is raised at most once, so this loop runs at most twice.
                while True:
                    try:
                        fired = watchdog.disarm(run)
                        break
                    except JobTimeout:
                        pass
        except JobTimeout as exc:
            if fired:
                exc.args = (timeouts.message(seconds),)
                # Leases of a limiter the job was inside when interrupted: given back now.
                limiter.release_thread_leases()
            raise
        if fired:  # the job caught JobTimeout and returned: the run still ran past its limit
            if inspect.iscoroutine(result):
                result.close()
            limiter.release_thread_leases()
            raise JobTimeout(timeouts.message(seconds))
        if result is not None and inspect.iscoroutine(result):
            raise registry.not_async_error(job.name, result)
        return result

    # -- limiters (README "Rate and concurrency limits") ---------------------------------------------
    def _over_limit(self, work: Work, job: payload.Job, exc: OverLimit, started: float) -> None:
        """A limiter stayed at its limit: reschedule, not a failure, retries untouched."""
        name, jid = job.name, job.jid

        def store() -> str:
            self.retrier.over_limit(work, job, exc)
            return "schedule"

        job_event(logging.INFO, name, jid, f"over limit: {time.perf_counter() - started:.3f} sec")
        self._settle(work, store)

    def _cancelled(self, name: str, jid: str, started: float) -> None:
        # The worker pushes the job back (it is still in the private list): no ack, no failure.
        self._stop_cancelled = False
        elapsed = time.perf_counter() - started
        job_event(logging.INFO, name, jid, f"cancelled by the stop: {elapsed:.3f} sec (pushed back)")

    def _unknown(self, exc: UnknownJob, extra: dict[str, str]) -> None:
        """One WARNING per unknown name per worker; later failures of that name are an INFO line."""
        key = str(exc)[:300]
        with _unknown_lock:
            first = key not in _unknown_warned
            if first:
                if len(_unknown_warned) >= MAX_UNKNOWN_WARNED:
                    _unknown_warned.clear()
                _unknown_warned.add(key)
        if first:
            log.warning(
                "%s; retried as usual, in case newer code registers it (a rolling deploy may enqueue a "
                "job before this worker has its code); this worker warns once per name",
                exc,
                extra=extra,
            )
        else:
            job_log.info("%s", exc, extra=extra)

    def _after_failure(self, job: payload.Job, exc: BaseException, mode: str | None) -> None:
        """The app's on_failure hooks, then on_death ones if the job went to `dead` or ran out of retries
        (``dead: false``); after the failure is stored, so a hook can neither lose nor repeat the job."""
        current = context.current_job()
        if hooks.registered("failure"):
            hooks.run_hooks("failure", current, exc, awaiter=aio.run)
        exhausted = mode == "dead" or (mode == "drop" and job.data.get("retry", True) is not False)
        if exhausted and hooks.registered("death"):
            hooks.run_hooks("death", current, exc, awaiter=aio.run)

    def _settle(self, work: Work, store: Callable[[], str]) -> str | None:
        """Run a retry/dead move until Redis takes it; the job stays in the private list meanwhile.

        Returns where the job went ("retry", "dead", "drop"), or None if it stays in the private list."""
        mode: str | None = None

        def attempt() -> None:
            nonlocal store, mode
            try:
                mode = store()
            except connection.RedisError:
                raise
            except Exception:  # a bug while building the failure record: keep the job, as it came
                log.exception("could not record the failure; moving the job to dead unchanged")
                store = functools.partial(self.retrier.kill, work, None, "swarmd.InternalError", "")
                mode = store()

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
        return mode
