"""Time limits in one process: the watchdog raising `JobTimeout` in a thread, its grace, the
``stuck-at`` control line and what the supervisor does with it, and the options' validation; and a
limiter under `swarmd.testing`, which needs no Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import swarmd
from swarmd import control, limiter, timeouts
from swarmd.config import load_config
from swarmd.errors import ConfigError, JobTimeout
from tests.conftest import wait_until
from tests.unit.test_supervisor import Harness, config


def run_in_thread(target: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def main() -> None:
        try:
            out["result"] = target()
        except BaseException as exc:  # what the thread ended with
            out["error"] = exc

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    out["thread"] = thread
    return out


def test_the_watchdog_raises_job_timeout_in_a_python_loop_and_never_after_disarm() -> None:
    stuck: list[str] = []
    dog = timeouts.Watchdog(5.0, stuck.append)

    def job() -> bool:
        run = dog.arm(0.2, "Loop JID-1")
        try:
            while True:
                time.sleep(0.01)
        finally:
            fired = dog.disarm(run)
            assert fired

    out = run_in_thread(job)
    out["thread"].join(10)
    assert isinstance(out.get("error"), JobTimeout)
    assert dog.stuck() == 0 and stuck == []

    def quick() -> str:
        run = dog.arm(0.2, "Quick JID-2")
        fired = dog.disarm(run)
        time.sleep(0.4)  # past where the limit would have been: nothing may land any more
        return "fired" if fired else "ok"

    out = run_in_thread(quick)
    out["thread"].join(10)
    assert out == {"result": "ok", "thread": out["thread"]}


def test_a_job_the_exception_cannot_reach_is_reported_stuck_after_the_grace() -> None:
    stuck: list[str] = []
    told: list[float | None] = []
    dog = timeouts.Watchdog(0.2, stuck.append, told.append)
    release = threading.Event()

    def job() -> None:
        run = dog.arm(0.1, "Sleepy JID-3")
        try:
            release.wait(10)  # a blocking call: JobTimeout waits until it returns
        finally:
            dog.disarm(run)

    out = run_in_thread(job)
    wait_until(lambda: stuck, 10, what="the stuck report")
    assert "job Sleepy JID-3 is still running 0.2 s after its time limit of 0.1 s" in stuck[0]
    assert dog.stuck() == 1
    release.set()
    out["thread"].join(10)
    assert isinstance(out.get("error"), JobTimeout)
    # The supervisor was told when the job would be stuck, then that no limited job runs any more.
    assert told[0] is not None and told[-1] is None


def test_an_async_job_past_its_limit_is_cancelled_as_job_timeout() -> None:
    async def job() -> None:
        await asyncio.sleep(100)

    with pytest.raises(JobTimeout, match=r"time limit of 0\.1 s"):
        asyncio.run(timeouts.limit_coroutine(job(), 0.1))

    async def own_timeout() -> None:
        raise TimeoutError("the job's own")

    with pytest.raises(TimeoutError, match="the job's own"):
        asyncio.run(timeouts.limit_coroutine(own_timeout(), 10))


def test_the_stuck_at_control_line_round_trips() -> None:
    line = control.stuck_at(1234.5678).encode()
    assert line == b"stuck-at 1234567\n"
    message = control.decode(line.decode().strip())
    assert message is not None and message.kind is control.Kind.STUCK_AT and message.busy == 1234567
    assert control.stuck_at(None).encode() == b"stuck-at 0\n"
    assert control.decode("stuck-at x") is None


def test_the_supervisor_kills_a_worker_silent_past_a_jobs_limit_and_grace() -> None:
    h = Harness(config(processes=2, heartbeat_timeout=600.0))
    a, b = h.started(2)
    h.events.clear()
    h.sup.message(a, f"stuck-at {int((h.now + 2.0) * 1000)}")
    h.sup.message(b, f"stuck-at {int((h.now + 2.0) * 1000)}")  # b is past it too, but not silent
    h.sup.message(b, "stuck-at 0")
    for _ in range(60):  # 6 s: a froze right after its job started; b beats on
        h.now += 0.1
        h.sup.message(b, "beat 1")
        h.sup.tick()
    assert h.kills()[:2] == [("kill", a, "SIGABRT"), ("kill", a, "SIGCONT")]
    assert not [k for k in h.kills() if k[1] == b]


def test_timeout_options_are_checked_where_they_are_given(tmp_path: Any) -> None:
    with pytest.raises(TypeError, match="timeout: expected a number of seconds > 0 or None, got 0"):
        swarmd.job(timeout=0)
    with pytest.raises(TypeError, match="got True"):

        @swarmd.job(name="t.x", timeout=True)
        def x() -> None: ...

    @swarmd.job(name="t.limited", timeout=2.5)
    def limited() -> None: ...

    assert limited.timeout == 2.5
    assert limited.set(timeout=1).options["timeout"] == 1
    with pytest.raises(TypeError, match="set\\(\\): timeout"):
        limited.set(timeout="soon")
    path = tmp_path / "swarmd.yml"
    path.write_text("job_timeout: 30\ntimeout_grace: 5\nlimiter_backoff: 0.5\nlimiter_backoff_max: 10\n")
    cfg = load_config(str(path))
    assert (cfg.job_timeout, cfg.timeout_grace, cfg.limiter_backoff, cfg.limiter_backoff_max) == (
        30,
        5,
        0.5,
        10,
    )
    assert load_config(None).job_timeout is None
    path.write_text("timeout_grace: 0\n")
    with pytest.raises(ConfigError, match="timeout_grace: expected a number > 0, got 0"):
        load_config(str(path))


def test_a_limiter_grants_at_once_under_swarmd_testing() -> None:
    lim = limiter.concurrent("testing-only", 1, wait_timeout=0)
    with swarmd.testing.inline(), lim, lim as lease:  # no Redis here: both are granted
        assert lease.local


def test_jobs_without_a_limit_never_start_the_watchdog() -> None:
    from swarmd import payload
    from swarmd.processor import Processor

    @swarmd.job(name="t.free")
    def free() -> str:
        return "ran"

    @swarmd.job(name="t.bounded", timeout=30)
    def bounded() -> str:
        return "ran"

    dog = timeouts.Watchdog(10.0, lambda why: None)
    proc = Processor(None, None, None, (), lambda p, e: None, watchdog=dog)  # type: ignore[arg-type]

    def job(name: str, **options: Any) -> payload.Job:
        return payload.decode(payload.encode(payload.build(name, [], None, options)))

    assert proc._invoke(job("t.free"), "t.free") == "ran"
    assert dog._thread is None  # no thread, no timer: nothing per job
    assert proc._invoke(job("t.bounded"), "t.bounded") == "ran"
    assert dog._thread is not None and dog.stuck() == 0


def test_job_timeout_reads_well_even_when_raised_bare() -> None:
    assert str(JobTimeout()) == "the job ran past its time limit"
    assert str(JobTimeout("x")) == "x"
