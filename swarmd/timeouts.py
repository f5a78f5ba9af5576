"""Per-job time limits: the watchdog of one worker process.

A job with a time limit (``@swarmd.job(timeout=...)``, ``.set(timeout=...)``, ``job_timeout``) is
*armed* by its processor thread before its function is called and *disarmed* when it returns. A
worker whose jobs have no limit never creates the watchdog's thread and arms nothing: the job path
pays one ``if``.

At the limit the watchdog raises `JobTimeout` inside the job's thread
(``PyThreadState_SetAsyncExc``): the interpreter raises it at the thread's next Python bytecode, so
a job looping in Python stops at once, while one inside C code, a long ``time.sleep`` or blocking
I/O sees it only when that call returns. An ``async def`` job is cancelled by ``asyncio.timeout``
instead (`limit_coroutine`), and the watchdog only keeps its grace.

A job still running ``grace`` seconds after its limit is *stuck*: the watchdog calls ``on_stuck``
(the worker asks its supervisor to recycle it: its other jobs finish or are pushed back, the stuck
one goes to the quarantine list, where it runs alone and counts as a crash when it is stuck again:
the poison guard). A job stuck in C code that holds the GIL (a catastrophic regex) freezes every
thread of its worker, the watchdog included: for that case ``on_deadline`` tells the supervisor,
before the job starts, when the worker must be considered stuck, and the supervisor kills a worker
that is silent past that moment as hung (see `swarmd.supervisor`).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from swarmd.errors import JobTimeout

__all__ = ["Run", "Watchdog", "limit_coroutine", "message"]

log = logging.getLogger("swarmd")

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc  # (unsigned long thread id, PyObject *exc)


def message(seconds: float) -> str:
    return f"the job ran past its time limit of {seconds:g} s"


def _raise_in(ident: int) -> None:
    _set_async_exc(ctypes.c_ulong(ident), ctypes.py_object(JobTimeout))


def _clear_in(ident: int) -> None:
    # NULL clears an exception set but not yet raised in that thread.
    _set_async_exc(ctypes.c_ulong(ident), None)


@dataclass(eq=False)
class Run:
    """One armed run of a job."""

    ident: int  # its thread
    seconds: float
    deadline: float  # monotonic
    stuck_at: float  # monotonic: deadline + grace
    what: str  # "<class> <jid>", for the log
    interrupt: bool  # raise JobTimeout in its thread at the deadline (False: an async job)
    fired: bool = False
    stuck: bool = False
    done: bool = field(default=False)


class Watchdog:
    """Deadlines of the running jobs with a limit; one daemon thread, started at the first `arm`."""

    def __init__(
        self,
        grace: float,
        on_stuck: Callable[[str], None],
        on_deadline: Callable[[float | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grace = grace
        self.on_stuck = on_stuck
        self.on_deadline = on_deadline
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._runs: list[Run] = []
        self._thread: threading.Thread | None = None
        self._told: float | None = None  # the last stuck-at moment given to on_deadline

    def arm(self, seconds: float, what: str, *, interrupt: bool = True) -> Run:
        now = self._clock()
        run = Run(threading.get_ident(), seconds, now + seconds, now + seconds + self.grace, what, interrupt)
        with self._cond:
            self._runs.append(run)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="swarmd-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
            self._tell()
        return run

    def disarm(self, run: Run) -> bool:
        """The job returned (or raised); True if its limit had fired. From the job's own thread."""
        with self._cond:
            if not run.done:
                run.done = True
                self._runs.remove(run)
                if run.fired and run.interrupt:
                    _clear_in(run.ident)  # fired just as the job ended: not raised yet, and never will
                self._tell()
            return run.fired

    def stuck(self) -> int:
        """How many running jobs are stuck (past limit and grace)."""
        with self._cond:
            return sum(1 for run in self._runs if run.stuck)

    def _tell(self) -> None:
        """Give the supervisor the earliest stuck-at moment of the running jobs (the lock is held)."""
        if self.on_deadline is None:
            return
        first = min((run.stuck_at for run in self._runs if not run.stuck), default=None)
        if first != self._told:
            self._told = first
            self.on_deadline(first)

    def _serve(self) -> None:
        with self._cond:
            while True:
                now = self._clock()
                due = []
                for run in self._runs:
                    if not run.fired and now >= run.deadline:
                        run.fired = True
                        if run.interrupt:
                            _raise_in(run.ident)
                        log.warning("%s: time limit of %g s reached", run.what, run.seconds)
                    if run.fired and not run.stuck and now >= run.stuck_at:
                        run.stuck = True
                        due.append(run)
                if due:
                    self._tell()
                for run in due:
                    self.on_stuck(
                        f"job {run.what} is still running {self.grace:g} s after its time limit of "
                        f"{run.seconds:g} s (C code, a long sleep or blocking I/O does not see JobTimeout)"
                    )
                waits = [run.stuck_at if run.fired else run.deadline for run in self._runs if not run.stuck]
                self._cond.wait(None if not waits else max(0.0, min(waits) - now) + 0.001)


async def limit_coroutine(coro: Coroutine[Any, Any, Any], seconds: float) -> Any:
    """Await ``coro`` with a time limit: at the limit it is cancelled and `JobTimeout` raised."""
    timeout = asyncio.timeout(seconds)
    try:
        async with timeout:
            return await coro
    except TimeoutError as exc:
        if timeout.expired():
            raise JobTimeout(message(seconds)) from exc
        raise
