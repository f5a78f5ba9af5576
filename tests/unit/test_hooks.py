"""`swarmd.hooks` on the worker side: the server middleware chain and the lifecycle hook runners.

The chain and the runners are what the processor, the worker and the supervisor call; these tests call
them directly (tests/integration/test_app_hooks.py runs them in a real worker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import swarmd
from swarmd import hooks
from swarmd.context import JobContext
from swarmd.errors import BootError


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    before_mw = hooks.server_middlewares()
    before = {kind: hooks.registered(kind) for kind in hooks.KINDS}
    yield
    for mw in hooks.server_middlewares():
        if mw not in before_mw:
            hooks.remove_server_middleware(mw)
    for kind in hooks.KINDS:
        for fn in hooks.registered(kind):
            if fn not in before[kind]:
                hooks.remove_hook(fn)


def job() -> JobContext:
    return JobContext({"class": "Resize", "jid": "j1", "args": [1], "queue": "q"}, "Resize", "j1")


def chain_run(target: Callable[[], Any]) -> tuple[hooks.MiddlewareRun, Any]:
    run = hooks.MiddlewareRun(hooks.server_middlewares(), job(), target)
    return run, run()


# -- server middleware -------------------------------------------------------------------------------


def test_middleware_wraps_the_job_first_registered_outermost_and_passes_the_result() -> None:
    seen: list[str] = []

    @swarmd.server_middleware
    def outer(job: JobContext, call_next: Callable[[], Any]) -> Any:
        seen.append(f"outer>{job.name}")
        result = call_next()
        seen.append("outer<")
        return result

    @swarmd.server_middleware
    def inner(job: JobContext, call_next: Callable[[], Any]) -> Any:
        seen.append("inner>")
        return call_next() * 2

    def target() -> int:
        seen.append("job")
        return 21

    _, result = chain_run(target)
    assert result == 42
    assert seen == ["outer>Resize", "inner>", "job", "outer<"]


def test_a_middleware_that_does_not_call_next_skips_the_job() -> None:
    ran: list[str] = []
    swarmd.server_middleware(lambda job, call_next: "skipped")
    run, result = chain_run(lambda: ran.append("job"))
    assert (result, ran, run.culprit) == ("skipped", [], None)


def test_call_next_twice_runs_the_job_once_and_blames_the_middleware() -> None:
    ran: list[str] = []

    def twice(job: JobContext, call_next: Callable[[], Any]) -> Any:
        call_next()
        return call_next()

    swarmd.server_middleware(twice)
    run = hooks.MiddlewareRun(hooks.server_middlewares(), job(), lambda: ran.append("job"))
    with pytest.raises(RuntimeError, match=r"twice\.<locals>\.twice|called call_next\(\) twice"):
        run()
    assert ran == ["job"]
    assert run.culprit is twice


def test_the_jobs_own_exception_passing_through_blames_no_middleware() -> None:
    def observer(job: JobContext, call_next: Callable[[], Any]) -> Any:
        try:
            return call_next()
        finally:
            pass

    swarmd.server_middleware(observer)

    def failing() -> None:
        raise ValueError("job failed")

    run = hooks.MiddlewareRun(hooks.server_middlewares(), job(), failing)
    with pytest.raises(ValueError, match="job failed"):
        run()
    assert run.culprit is None


def test_a_middleware_raising_its_own_exception_is_named() -> None:
    def outer(job: JobContext, call_next: Callable[[], Any]) -> Any:
        return call_next()

    def broken(job: JobContext, call_next: Callable[[], Any]) -> Any:
        raise KeyError("tenant")

    swarmd.server_middleware(outer)
    swarmd.server_middleware(broken)
    run = hooks.MiddlewareRun(hooks.server_middlewares(), job(), lambda: None)
    with pytest.raises(KeyError):
        run()
    assert run.culprit is broken  # the innermost one it came out of, not `outer` it passed through


def test_async_or_non_callable_middleware_is_refused_at_registration() -> None:
    async def async_mw(job: JobContext, call_next: Callable[[], Any]) -> Any:
        return call_next()

    with pytest.raises(TypeError, match="async def"):
        swarmd.server_middleware(async_mw)
    with pytest.raises(TypeError, match="expected a callable"):
        swarmd.server_middleware("nope")  # type: ignore[type-var]
    assert hooks.server_middlewares() == ()


def test_registering_twice_is_one_registration_and_remove_unregisters() -> None:
    def mw(job: JobContext, call_next: Callable[[], Any]) -> Any:
        return call_next()

    swarmd.server_middleware(mw)
    swarmd.server_middleware(mw)
    assert hooks.server_middlewares() == (mw,)
    hooks.remove_server_middleware(mw)
    assert hooks.server_middlewares() == ()


# -- lifecycle hooks ---------------------------------------------------------------------------------


def test_decorators_register_in_order_and_return_the_function() -> None:
    def first() -> None:
        pass

    def second() -> None:
        pass

    assert swarmd.on_startup(first) is first
    swarmd.on_startup(second)
    swarmd.on_startup(first)
    assert hooks.registered("startup") == (first, second)
    for decorator, kind in [
        (swarmd.on_shutdown, "shutdown"),
        (swarmd.on_boot, "boot"),
        (swarmd.on_failure, "failure"),
        (swarmd.on_death, "death"),
    ]:
        decorator(first)
        assert first in hooks.registered(kind)  # type: ignore[arg-type]
    hooks.remove_hook(first)
    assert all(first not in hooks.registered(kind) for kind in hooks.KINDS)


def test_a_raising_hook_is_one_error_with_its_traceback_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[tuple[str, Any]] = []

    @swarmd.on_failure
    def broken(job: JobContext, exc: BaseException) -> None:
        raise RuntimeError("sentry is down")

    @swarmd.on_failure
    def works(job: JobContext, exc: BaseException) -> None:
        calls.append((job.jid, exc))

    error = ValueError("x")
    with caplog.at_level(logging.ERROR, logger="swarmd"):
        hooks.run_hooks("failure", job(), error)
    assert calls == [("j1", error)]
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == f"on_failure hook {__name__}.{broken.__qualname__} raised; carrying on"
    assert record.exc_info is not None and "sentry is down" in str(record.exc_info[1])


def test_an_async_hook_is_awaited_by_the_given_awaiter_or_asyncio_run() -> None:
    calls: list[str] = []

    @swarmd.on_shutdown
    async def closes_pool() -> None:
        calls.append("closed")

    hooks.run_hooks("shutdown")
    awaited: list[object] = []

    def awaiter(coro: Any) -> None:
        awaited.append(coro)
        coro.close()

    hooks.run_hooks("shutdown", awaiter=awaiter)
    assert calls == ["closed"]
    assert len(awaited) == 1


def test_a_raising_startup_hook_is_a_one_line_boot_error_and_stops_the_others() -> None:
    ran: list[str] = []

    @swarmd.on_startup
    def settings_check() -> None:
        raise RuntimeError("DATABASE_URL is not set\nsecond line")

    @swarmd.on_startup
    def later() -> None:
        ran.append("later")

    with pytest.raises(BootError) as info:
        hooks.run_boot_hooks("startup")
    name = f"{__name__}.{settings_check.__qualname__}"
    assert str(info.value).startswith(f"on_startup hook {name} failed: RuntimeError: DATABASE_URL is not set")
    assert ran == []
