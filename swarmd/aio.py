"""The worker's event loop for ``async def`` jobs: one per worker process, in a thread of its own.

A processor thread that runs an async job hands its coroutine to `run`, which starts it as a task on
the loop (with a copy of the processor thread's context, so `swarmd.current_job()` and whatever a server
middleware put in a context variable are seen by the coroutine) and waits for it. So an async job
holds one of the worker's ``concurrency`` slots while it runs, exactly as a sync one, and is logged,
retried and counted by the same code. Up to ``concurrency`` coroutines then share the one loop: a
blocking call inside one of them (``time.sleep``, a sync database driver) stalls all of them.

The loop is created lazily (at worker boot when an ``async def`` job is registered, else by the first
coroutine) and only ever after the fork: a worker that runs no async job has no loop and no thread. A
forked child forgets its parent's loop (`os.register_at_fork`): threads do not survive a fork.

Hard stop: `cancel_running` cancels every running task; `run` then raises `StopCancelled` in its
processor thread, which leaves the job in the private list for the worker's final push back, and
refuses new coroutines from then on (a job fetched a moment before the stop is pushed back unstarted).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any

__all__ = ["EventLoop", "StopCancelled", "cancel_running", "ensure_started", "run", "shutdown", "started"]

log = logging.getLogger("swarmd")


class StopCancelled(BaseException):
    """An async job was cancelled by the worker's hard stop; the worker pushes it back to its queue.

    A BaseException, as `asyncio.CancelledError`: job code catching ``Exception`` does not swallow it.
    """


class EventLoop:
    """An asyncio loop running forever in a daemon thread; `run` is called from other threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[Any]] = set()  # read and written only in the loop's thread
        self._cancelled: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="swarmd-asyncio", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context | None = None) -> Any:
        """Run ``coro`` to completion on the loop and return its result (or raise its exception)."""
        if context is None:
            context = contextvars.copy_context()
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def start() -> None:
            if self._stopping:
                coro.close()
                done.set_exception(StopCancelled("the worker is stopping"))
                return
            task = self.loop.create_task(coro, context=context)
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._finished(t, done))

        try:
            self.loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop is closed: the worker is exiting
            coro.close()
            raise StopCancelled("the worker's event loop is closed") from None
        return done.result()

    def _finished(self, task: asyncio.Task[Any], done: concurrent.futures.Future[Any]) -> None:
        self._tasks.discard(task)
        by_stop = task in self._cancelled
        self._cancelled.discard(task)
        if task.cancelled():
            done.set_exception(
                StopCancelled("cancelled by the stop") if by_stop else asyncio.CancelledError()
            )
            return
        exc = task.exception()
        if exc is None:
            done.set_result(task.result())
        elif by_stop:  # whatever its cleanup raised, the job did not finish: it is pushed back
            done.set_exception(StopCancelled(f"cancelled by the stop ({type(exc).__name__} on the way out)"))
        else:
            done.set_exception(exc)

    def cancel_running(self, timeout: float) -> int:
        """Cancel every running task, refuse new ones; wait up to ``timeout`` for them to end."""
        ended = threading.Event()
        count = [0]

        def cancel() -> None:
            self._stopping = True
            tasks = list(self._tasks)
            count[0] = len(tasks)
            if not tasks:
                ended.set()
                return
            remaining = set(tasks)

            def one_ended(task: asyncio.Task[Any]) -> None:
                remaining.discard(task)
                if not remaining:
                    ended.set()

            for task in tasks:
                self._cancelled.add(task)
                task.cancel()
                task.add_done_callback(one_ended)

        try:
            self.loop.call_soon_threadsafe(cancel)
        except RuntimeError:
            return 0
        ended.wait(timeout)
        return count[0]

    def shutdown(self, timeout: float) -> None:
        """Cancel what is left, stop the loop and wait up to ``timeout`` for its thread."""
        self.cancel_running(timeout)
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            return
        self.thread.join(timeout)


_lock = threading.Lock()
_loop: EventLoop | None = None


def ensure_started() -> EventLoop:
    """The worker's loop, started on first use."""
    global _loop
    loop = _loop
    if loop is None:
        with _lock:
            if _loop is None:
                _loop = EventLoop()
                log.debug("event loop for async jobs started")
            loop = _loop
    return loop


def started() -> bool:
    return _loop is not None


def run(coro: Coroutine[Any, Any, Any], context: contextvars.Context | None = None) -> Any:
    """Run ``coro`` on the worker's loop (started if need be) and wait for it; see `EventLoop.run`."""
    return ensure_started().run(coro, context)


def cancel_running(timeout: float) -> int:
    """Hard stop: cancel the running async jobs (none if the loop never started); how many there were."""
    loop = _loop
    return 0 if loop is None else loop.cancel_running(timeout)


def shutdown(timeout: float = 2.0) -> None:
    """At worker exit: stop the loop if it was started."""
    global _loop
    loop, _loop = _loop, None
    if loop is not None:
        loop.shutdown(timeout)


def _forget_after_fork() -> None:
    global _loop, _lock
    _loop = None  # its thread did not survive the fork
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
