"""The contract of the unique jobs' scripts: ``lua/unique.lua`` (`scripts.push_unique`: SET NX EX and
the push in one step), ``lua/unlock.lua`` (`Scripts.unlock`: only the jid holding a lock releases it)
and ``lua/fail.lua``'s release when a job goes to `dead` or is dropped (not when it is retried)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from swarmd import connection
from swarmd.keys import Keys
from swarmd.scripts import Scripts, push_unique
from tests.replies import items, members, scored

ME = "host:1:abc"
D1, D2 = "a" * 40, "b" * 40


@pytest.fixture(params=[None, "ns"], ids=["plain", "namespaced"])
def scripts(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Scripts]:
    client = connection.connect(redis_url)
    yield Scripts(client, Keys(request.param))
    client.close()


def test_a_free_lock_is_taken_and_the_job_pushed_in_one_step(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    pushed, acked = push_unique(scripts.redis, k, [(D1, "j1", 60, b"job1", "low", None)])
    assert pushed == [True] and acked is None
    assert items(r, k.queue("low")) == [b"job1"] and r.smembers(k.queues) == {b"low"}
    assert r.get(k.unique(D1)) == b"j1" and 55 < r.ttl(k.unique(D1)) <= 60


def test_a_held_lock_refuses_the_push_and_pushes_nothing(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    push_unique(scripts.redis, k, [(D1, "j1", 60, b"job1", "low", None)])
    pushed, _ = push_unique(
        scripts.redis, k, [(D1, "j2", 60, b"job2", "low", None), (D2, "j3", 60, b"job3", "low", None)]
    )
    assert pushed == [False, True]
    assert items(r, k.queue("low")) == [b"job3", b"job1"]  # LPUSH: newest first
    assert r.get(k.unique(D1)) == b"j1"


def test_a_scheduled_unique_job_goes_to_schedule_with_its_time(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    assert push_unique(scripts.redis, k, [(D1, "j1", 60, b"later", "low", 2e9)])[0] == [True]
    assert scored(r, k.schedule) == [(b"later", 2e9)]
    assert r.llen(k.queue("low")) == 0 and not r.smembers(k.queues)


def test_only_the_jid_holding_a_lock_releases_it(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    r.set(k.unique(D1), "j1")
    assert scripts.unlock([(D1, "other")]) == 0 and r.get(k.unique(D1)) == b"j1"
    assert scripts.unlock([(D1, "j1"), (D2, "j2")]) == 1 and not r.exists(k.unique(D1))
    assert scripts.unlock([(D1, "j1")]) == 0  # sent again after a lost reply: nothing


@pytest.mark.parametrize(("mode", "released"), [("dead", True), ("drop", True), ("retry", False)])
def test_fail_releases_the_lock_when_the_job_leaves_for_good(
    scripts: Scripts, r: redis.Redis, mode: str, released: bool
) -> None:
    k = scripts.keys
    r.lpush(k.inflight(ME), b"raw")
    r.set(k.unique(D1), "j1")
    extra = {"dead_cutoff": 0.0, "dead_max_jobs": 100} if mode == "dead" else {}
    assert scripts.fail(ME, b"raw", b"stored", mode, 1.0, unique=(D1, "j1"), **extra)  # type: ignore[arg-type]
    assert r.exists(k.unique(D1)) == (0 if released else 1)
    assert r.llen(k.inflight(ME)) == 0


def test_fail_never_releases_a_lock_another_jid_holds(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    r.lpush(k.inflight(ME), b"raw")
    r.set(k.unique(D1), "newer")  # the lock expired and an identical job took it since
    assert scripts.fail(
        ME, b"raw", b"stored", "dead", 1.0, dead_cutoff=0.0, dead_max_jobs=100, unique=(D1, "j1")
    )
    assert r.get(k.unique(D1)) == b"newer"


def test_fail_without_a_lock_is_unchanged(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    r.lpush(k.inflight(ME), b"raw")
    assert scripts.fail(ME, b"raw", b"stored", "dead", 1.0, dead_cutoff=0.0, dead_max_jobs=100)
    assert members(r, k.dead) == [b"stored"] and int(r.get(k.stat("failed")) or 0) == 1
