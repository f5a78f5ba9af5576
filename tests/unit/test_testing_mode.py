"""`swarmd.testing`: fake (record) and inline (run at once) modes for an app's own tests.

The default client points at a Unix socket that does not exist: any Redis call would raise
`RedisUnavailable`, so a test that passes in fake or inline mode touched no Redis.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import swarmd
import swarmd.testing
from swarmd import client as client_mod
from swarmd import hooks
from swarmd.client import Client

calls: list[tuple[Any, ...]] = []


@swarmd.job(name="t.record")
def record(token: str, extra: Any = None) -> None:
    calls.append(("record", token, extra))


@swarmd.job(name="t.chain", queue="low")
def chain(n: int) -> None:
    calls.append(("chain", n))
    if n > 0:
        chain.perform_async(n - 1)


@swarmd.job(name="t.later")
def later(token: str) -> None:
    calls.append(("later", token))
    record.perform_in(3600, f"{token}-followup")


@swarmd.job(name="t.boom")
def boom(message: str) -> None:
    raise ValueError(message)


@swarmd.job(name="t.async")
async def async_job(token: str) -> None:
    await asyncio.sleep(0)
    calls.append(("async", token))


@swarmd.job(name="t.forever")
def forever() -> None:
    forever.perform_async()


def plain(x: int) -> None:
    """Not a job: enqueued with swarmd.delay."""
    calls.append(("plain", x))


@pytest.fixture(autouse=True)
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    c = Client(f"unix://{tmp_path}/no-such-redis.sock")
    monkeypatch.setattr(client_mod, "_default", c)
    calls.clear()
    yield c
    swarmd.testing.mode("off")
    swarmd.testing.clear()


# -- fake ----------------------------------------------------------------------------------------------


def test_fake_records_the_production_payload_per_job_and_queue() -> None:
    with swarmd.testing.fake():
        jid = record.perform_async("a", (1, 2))
        chain.perform_async(0)
    assert calls == []  # nothing ran
    [job] = swarmd.testing.jobs(record)
    assert job["jid"] == jid
    assert job["class"] == "t.record" and job["queue"] == "default" and job["retry"] is True
    assert job["args"] == ["a", [1, 2]]  # after a JSON round trip: the tuple is a list, as in the worker
    assert isinstance(job["created_at"], float) and isinstance(job["enqueued_at"], float)
    assert swarmd.testing.jobs("t.record") == [job]
    assert [j["class"] for j in swarmd.testing.jobs(queue="low")] == ["t.chain"]
    assert [j["class"] for j in swarmd.testing.jobs()] == ["t.record", "t.chain"]


def test_fake_and_inline_touch_no_redis(nowhere: Client) -> None:
    with swarmd.testing.fake():
        assert record.perform_async("a") is not None
        assert record.set(client=nowhere).perform_in(60, "b") is not None
        assert swarmd.push({"class": "RubyWorker", "args": [1]}) is not None
    with swarmd.testing.inline():
        record.perform_async("c")
    assert len(swarmd.testing.jobs()) == 3
    with pytest.raises(swarmd.RedisUnavailable):  # the control: mode off goes to this (absent) Redis
        record.perform_async("d")


def test_a_scheduled_job_is_recorded_with_its_time() -> None:
    with swarmd.testing.fake():
        record.perform_in(3600, "later")
    [job] = swarmd.testing.jobs(record)
    assert "enqueued_at" not in job  # as Sidekiq stores a scheduled job
    assert job["at"] > job["created_at"] + 3500


@pytest.mark.parametrize("mode", ["fake", "inline"])
def test_what_production_refuses_is_refused_in_test_mode(mode: str) -> None:
    # Celery's eager mode lets non-JSON arguments through; here they fail as they would in production.
    with swarmd.testing.mode(mode):  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"args\[1\]"):
            record.perform_async("a", {1, 2})
        with pytest.raises(TypeError, match="takes from 1 to 2 positional arguments"):
            record.perform_async("a", 1, 2)  # type: ignore[call-arg]
    assert calls == [] and swarmd.testing.jobs() == []


def test_client_middleware_applies_in_test_mode() -> None:
    def tenant(job: dict[str, Any]) -> dict[str, Any] | None:
        return None if job["args"][0] == "drop" else {**job, "tenant": "acme"}

    swarmd.client_middleware(tenant)
    try:
        with swarmd.testing.fake():
            assert record.perform_async("drop") is None
            record.perform_async("keep")
    finally:
        hooks.remove_client_middleware(tenant)
    [job] = swarmd.testing.jobs(record)
    assert job["tenant"] == "acme" and job["args"] == ["keep"]


def test_jobs_accepts_a_delayed_plain_function_and_returns_copies() -> None:
    with swarmd.testing.fake():
        swarmd.delay(plain, 5)
    [job] = swarmd.testing.jobs(plain)
    assert job["class"] == "swarmd.Delayed" and job["args"] == [f"{__name__}:plain", 5]
    job["args"].append("changed")
    assert swarmd.testing.jobs(plain)[0]["args"] == [f"{__name__}:plain", 5]
    with pytest.raises(TypeError, match="expected a job function or a job name"):
        swarmd.testing.jobs(42)


def test_clear_forgets_all_or_one_job() -> None:
    with swarmd.testing.fake():
        record.perform_async("a")
        chain.perform_async(0)
    swarmd.testing.clear(chain)
    assert [j["class"] for j in swarmd.testing.jobs()] == ["t.record"]
    swarmd.testing.clear()
    assert swarmd.testing.jobs() == []


def test_jobs_enqueued_from_another_thread_are_recorded() -> None:
    with swarmd.testing.fake():
        t = threading.Thread(target=record.perform_async, args=("from-a-thread",))
        t.start()
        t.join()
    assert [j["args"] for j in swarmd.testing.jobs(record)] == [["from-a-thread"]]


# -- drain ---------------------------------------------------------------------------------------------


def test_drain_runs_jobs_and_those_they_enqueue_scheduled_ones_too() -> None:
    with swarmd.testing.fake():
        chain.perform_async(2)
        later.perform_in(600, "x")
        assert swarmd.testing.drain() == 5
    assert calls == [
        ("chain", 2),
        ("later", "x"),
        ("chain", 1),
        ("record", "x-followup", None),
        ("chain", 0),
    ]
    assert swarmd.testing.jobs() == []


def test_drain_of_one_job_leaves_the_others() -> None:
    with swarmd.testing.fake():
        chain.perform_async(1)
        record.perform_async("waits")
        assert swarmd.testing.drain(chain) == 2
    assert [j["class"] for j in swarmd.testing.jobs()] == ["t.record"]


def test_a_failing_job_raises_out_of_drain_and_the_others_stay() -> None:
    with swarmd.testing.fake():
        boom.perform_async("it broke")
        record.perform_async("after")
        with pytest.raises(ValueError, match="it broke"):
            swarmd.testing.drain()
    assert [j["class"] for j in swarmd.testing.jobs()] == ["t.record"]


def test_drain_runs_jobs_by_name_so_an_unregistered_one_fails() -> None:
    with swarmd.testing.fake():
        swarmd.push({"class": "t.RubyOnlyWorker", "args": [1]})  # registered in no Python process
        assert len(swarmd.testing.jobs("t.RubyOnlyWorker")) == 1
        with pytest.raises(swarmd.UnknownJob, match=r"'t.RubyOnlyWorker'.*use fake mode"):
            swarmd.testing.drain()


def test_drain_runs_delayed_calls_and_async_jobs() -> None:
    with swarmd.testing.fake():
        swarmd.delay(plain, 7)
        async_job.perform_async("a1")
        swarmd.testing.drain()
    assert calls == [("plain", 7), ("async", "a1")]


def test_drain_stops_a_job_that_enqueues_itself_forever() -> None:
    with swarmd.testing.fake():
        forever.perform_async()
        with pytest.raises(RuntimeError, match="ran 50 jobs and more keep coming"):
            swarmd.testing.drain(max_jobs=50)


# -- inline --------------------------------------------------------------------------------------------


def test_inline_runs_each_job_at_once_after_a_json_round_trip() -> None:
    with swarmd.testing.inline():
        jid = record.perform_async("a", (1, {"k": (2,)}))
        assert calls == [("record", "a", [1, {"k": [2]}])]
        record.perform_in(3600, "scheduled")  # runs now: inline does not wait
        record.perform_bulk([("b1",), ("b2",)])
        chain.perform_async(1)  # and what it enqueues runs inline too
        swarmd.delay(plain, 3)
    assert jid is not None
    assert calls[1:] == [
        ("record", "scheduled", None),
        ("record", "b1", None),
        ("record", "b2", None),
        ("chain", 1),
        ("chain", 0),
        ("plain", 3),
    ]
    assert swarmd.testing.jobs() == []  # inline records nothing


def test_inline_exception_reaches_the_caller() -> None:
    with swarmd.testing.inline(), pytest.raises(ValueError, match="from the job"):
        boom.perform_async("from the job")


def test_inline_runs_async_jobs_with_or_without_a_running_loop() -> None:
    with swarmd.testing.inline():
        async_job.perform_async("sync caller")

        async def an_async_test() -> None:  # e.g. a pytest-asyncio test calling into the app
            async_job.perform_async("async caller")

        asyncio.run(an_async_test())
    assert calls == [("async", "sync caller"), ("async", "async caller")]


def test_an_async_job_failure_inside_a_running_loop_reaches_the_caller() -> None:
    @swarmd.job(name="t.async_boom")
    async def async_boom() -> None:
        raise KeyError("async failure")

    async def an_async_test() -> None:
        with pytest.raises(KeyError, match="async failure"):
            async_boom.perform_async()

    with swarmd.testing.inline():
        asyncio.run(an_async_test())


@swarmd.job(name="t.whoami")
def whoami() -> None:
    job = swarmd.current_job()
    assert job is not None
    calls.append(("whoami", job.name, job.queue, job.retry_count))


@swarmd.job(name="t.async_whoami")
async def async_whoami() -> None:
    job = swarmd.current_job()
    assert job is not None
    calls.append(("async_whoami", job.name))


@swarmd.job(name="t.returns_coroutine")
def returns_coroutine() -> Any:
    return asyncio.sleep(0)


def test_jobs_run_inside_the_server_middleware_with_current_job_as_in_the_worker() -> None:
    def around(job: Any, call_next: Any) -> Any:
        calls.append(("mw", job.name))
        return call_next()

    hooks.server_middleware(around)
    try:
        with swarmd.testing.inline():
            whoami.perform_async()
            async_whoami.perform_async()

            async def an_async_test() -> None:
                async_whoami.perform_async()

            asyncio.run(an_async_test())
        with swarmd.testing.fake():
            whoami.set(queue="low").perform_async()
            swarmd.testing.drain()
    finally:
        hooks.remove_server_middleware(around)
    assert calls == [
        ("mw", "t.whoami"),
        ("whoami", "t.whoami", "default", 0),
        ("mw", "t.async_whoami"),
        ("async_whoami", "t.async_whoami"),
        ("mw", "t.async_whoami"),
        ("async_whoami", "t.async_whoami"),
        ("mw", "t.whoami"),
        ("whoami", "t.whoami", "low", 0),
    ]
    assert swarmd.current_job() is None


def test_a_plain_function_returning_a_coroutine_fails_as_in_the_worker() -> None:
    with (
        swarmd.testing.inline(),
        pytest.raises(TypeError, match="returned a coroutine but is not `async def`"),
    ):
        returns_coroutine.perform_async()


# -- modes ---------------------------------------------------------------------------------------------


def test_mode_is_a_plain_call_and_a_context_manager_that_restores() -> None:
    assert swarmd.testing.current() == "off"
    swarmd.testing.mode("fake")  # a plain call stays on
    assert swarmd.testing.current() == "fake"
    with swarmd.testing.inline():
        assert swarmd.testing.current() == "inline"
        with swarmd.testing.mode("off"):
            assert swarmd.testing.current() == "off"
        assert swarmd.testing.current() == "inline"
    assert swarmd.testing.current() == "fake"
    swarmd.testing.fake()
    swarmd.testing.mode("off")
    assert swarmd.testing.current() == "off"
    with pytest.raises(ValueError, match="expected 'fake', 'inline' or 'off'"):
        swarmd.testing.mode("eager")  # type: ignore[arg-type]


def test_a_block_that_raises_still_restores_the_mode() -> None:
    with pytest.raises(RuntimeError), swarmd.testing.fake():
        raise RuntimeError("test failed")
    assert swarmd.testing.current() == "off"


def test_recorded_jobs_outlive_the_block() -> None:
    with swarmd.testing.fake():
        record.perform_async("kept")
    assert len(swarmd.testing.jobs(record)) == 1
