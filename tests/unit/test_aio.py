"""`swarmd.aio`: the worker's event loop for ``async def`` jobs (a private one per test here)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

from swarmd.aio import EventLoop, StopCancelled

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    ev = EventLoop()
    yield ev
    ev.shutdown(5)
    assert not ev.thread.is_alive()


def test_run_returns_the_result_from_the_loop_thread(loop: EventLoop) -> None:
    async def job() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert loop.run(job()) == "swarmd-asyncio"


def test_run_raises_the_jobs_exception(loop: EventLoop) -> None:
    async def job() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        loop.run(job())


def test_the_coroutine_sees_the_callers_context_variables(loop: EventLoop) -> None:
    async def job() -> str:
        return var.get()

    token = var.set("from the processor thread")
    try:
        assert loop.run(job()) == "from the processor thread"
    finally:
        var.reset(token)


def test_many_threads_share_the_loop_concurrently(loop: EventLoop) -> None:
    gate = threading.Barrier(5)
    results: list[int] = []
    all_waiting = asyncio.Event()
    waiting = [0]

    async def job(i: int) -> int:
        waiting[0] += 1
        if waiting[0] == 5:
            all_waiting.set()
        await all_waiting.wait()  # only returns once all five run at the same time
        return i

    def worker(i: int) -> None:
        gate.wait()
        results.append(loop.run(job(i)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [0, 1, 2, 3, 4]


def test_a_task_cancelling_itself_is_a_cancelled_error_not_a_stop(loop: EventLoop) -> None:
    async def job() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        loop.run(job())


def test_cancel_running_stops_jobs_runs_their_cleanup_and_refuses_new_ones(loop: EventLoop) -> None:
    started = threading.Event()
    cleaned: list[str] = []
    outcome: list[BaseException] = []

    async def long_job() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append("cleanup ran")

    def processor() -> None:
        try:
            loop.run(long_job())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=processor)
    thread.start()
    assert started.wait(10)
    assert loop.cancel_running(5) == 1
    thread.join(10)
    assert cleaned == ["cleanup ran"]
    assert len(outcome) == 1 and isinstance(outcome[0], StopCancelled)

    async def late() -> None:
        raise AssertionError("must not run after the stop")

    with pytest.raises(StopCancelled):
        loop.run(late())


def test_cleanup_that_raises_after_the_stop_is_still_a_stop(loop: EventLoop) -> None:
    started = threading.Event()
    outcome: list[BaseException] = []

    async def job() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    thread = threading.Thread(target=lambda: outcome.append(_catch(loop, job)))
    thread.start()
    assert started.wait(10)
    loop.cancel_running(5)
    thread.join(10)
    assert isinstance(outcome[0], StopCancelled)


def _catch(loop: EventLoop, job: object) -> BaseException:
    try:
        loop.run(job())  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("no exception")


def test_a_closed_loop_refuses_without_leaking_the_coroutine(loop: EventLoop) -> None:
    loop.shutdown(5)

    async def job() -> None:
        raise AssertionError("never runs")

    with pytest.raises(StopCancelled):
        loop.run(job())  # no "never awaited" RuntimeWarning (warnings are errors in this suite)
