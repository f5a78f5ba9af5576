"""Unique jobs on the client side, against a real Redis: an identical push while the lock is held
returns None and pushes nothing; ``perform_bulk`` item by item, ``.set``, client middleware, the test
mode, option checks, expiry, and the race (20 threads in each of 2 processes push the same job at
once: exactly one gets a jid)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import swarmd
import swarmd.testing
from swarmd import hooks
from swarmd.admin import Admin
from swarmd.client import Client
from swarmd.errors import PayloadError
from tests.conftest import wait_until
from tests.replies import items, scored


@swarmd.job(name="UniqueReport", unique_for=600)
def report(day: str, *, full: bool = False) -> None:
    pass


@swarmd.job(name="PlainReport")
def plain(day: str) -> None:
    pass


@pytest.fixture
def c(redis_url: str) -> Iterator[Client]:
    client = Client(redis_url)
    yield client
    if client._redis is not None:
        client._redis.close()


def queued(r: redis.Redis, queue: str = "default") -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in items(r, f"queue:{queue}")]


def test_an_identical_push_returns_none_and_pushes_nothing(c: Client, r: redis.Redis) -> None:
    on = report.set(client=c)
    jid = on.perform_async("2026-11-30", full=True)
    assert jid is not None
    assert on.perform_async("2026-11-30", full=True) is None
    assert on.perform_async("2026-11-30") is not None  # other kwargs: another job
    assert on.perform_async("2026-12-01", full=True) is not None  # other args
    assert on.set(queue="low").perform_async("2026-11-30", full=True) is not None  # other queue
    [first, *_] = reversed(queued(r))
    assert first["jid"] == jid and first["unique_for"] == 600 and len(first["unique_key"]) == 40
    assert r.get(f"swarmd:unique:{first['unique_key']}") == jid.encode()
    assert len(queued(r)) == 3 and len(queued(r, "low")) == 1


def test_set_makes_any_job_unique_and_a_scheduled_one_holds_the_lock(c: Client, r: redis.Redis) -> None:
    on = plain.set(client=c, unique_for=dt.timedelta(minutes=5), unique_until="start")
    assert on.perform_in(3600, "d") is not None
    assert on.perform_async("d") is None  # scheduled counts
    [(raw, _)] = scored(r, "schedule")
    job = json.loads(raw)
    assert job["unique_for"] == 300 and job["unique_until"] == "start"
    assert plain.set(client=c).perform_async("d") is not None  # without unique_for: no lock taken


def test_perform_bulk_takes_a_lock_per_item(c: Client, r: redis.Redis) -> None:
    jids = report.set(client=c).perform_bulk([("a",), ("b",), ("a",)])
    assert jids[0] is not None and jids[1] is not None and jids[2] is None
    assert report.set(client=c).perform_bulk([("b",), ("c",)])[0] is None
    assert sorted(job["args"][0] for job in queued(r)) == ["a", "b", "c"]


def test_client_middleware_runs_first_and_the_lock_is_the_returned_jobs(c: Client, r: redis.Redis) -> None:
    def tag(job: dict[str, Any]) -> dict[str, Any]:
        job["args"] = [job["args"][0].upper()]
        return job

    swarmd.client_middleware(tag)
    try:
        assert report.set(client=c).perform_async("x") is not None
        assert report.set(client=c).perform_async("X") is None  # the same job once the middleware ran
    finally:
        hooks.remove_client_middleware(tag)
    assert [job["args"] for job in queued(r)] == [["X"]]


def test_the_lock_expires_after_unique_for(c: Client, r: redis.Redis) -> None:
    on = plain.set(client=c, unique_for=1)
    assert on.perform_async("e") is not None
    assert on.perform_async("e") is None
    wait_until(lambda: on.perform_async("e") is not None, 10, what="the lock to expire")
    assert len(queued(r)) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique_for": 0}, "unique_for: expected seconds > 0"),
        ({"unique_for": "10m"}, "unique_for: expected seconds > 0"),
        ({"unique_for": 60, "unique_until": "never"}, "unique_until: expected 'success' or 'start'"),
    ],
)
def test_bad_unique_options_raise_at_once(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        plain.set(**options)
    with pytest.raises(PayloadError, match=message):
        swarmd.job(name="NeverRegistered", **options)


def test_the_test_mode_records_every_push_with_its_unique_fields() -> None:
    # No Redis in a test mode, so no lock: each push is recorded (documented in README "Unique jobs").
    with swarmd.testing.fake():
        assert report.perform_async("t") is not None
        assert report.perform_async("t") is not None
        recorded = swarmd.testing.jobs(report)
        assert len(recorded) == 2 and all(job["unique_for"] == 600 and job["unique_key"] for job in recorded)
        swarmd.testing.clear()


RACER = textwrap.dedent(
    """
    import sys, threading, time
    import swarmd
    from swarmd.client import Client

    @swarmd.job(name="UniqueRace", unique_for=600)
    def race(n):
        pass

    client = Client(sys.argv[1])
    client.redis.ping()
    start = float(sys.argv[2])
    barrier = threading.Barrier(20)
    got = []

    def push():
        barrier.wait()
        time.sleep(max(0.0, start - time.time()))
        got.append(race.set(client=client).perform_async(7))

    threads = [threading.Thread(target=push) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(" ".join(str(j) for j in got))
    """
)


def test_twenty_threads_in_two_processes_push_the_same_job_and_exactly_one_gets_a_jid(
    redis_url: str, r: redis.Redis
) -> None:
    start = time.time() + 3  # both processes started and connected by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, redis_url, str(start)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60)[0].split() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    results = [word for words in outputs for word in words]
    assert len(results) == 40
    jids = [word for word in results if word != "None"]
    assert len(jids) == 1, results
    [job] = queued(r)
    assert job["jid"] == jids[0] and job["args"] == [7]


def test_admin_kill_and_deleting_one_queued_job_release_the_lock(c: Client, r: redis.Redis) -> None:
    on = plain.set(client=c, unique_for=600)
    jid = on.perform_in(3600, "k")
    assert jid is not None and on.perform_async("k") is None
    admin = Admin(c.redis)
    [entry] = admin.page("schedule").entries
    assert admin.kill([entry]).done == 1
    assert on.perform_async("k") is not None  # the killed job no longer holds it
    [raw] = items(r, "queue:default")
    assert admin.delete_queue_job("default", raw)
    assert on.perform_async("k") is not None
    other = plain.set(client=c, unique_for=600).perform_async("other")
    assert other is not None and not admin.delete_queue_job("default", b"not there")
    assert on.perform_async("other") is None  # an unrelated delete released nothing
