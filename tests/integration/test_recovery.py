"""`swarmd.recovery` in-process against a real Redis: a dead worker's private list goes back to the
queues, exactly once, in batches; undecodable entries and poison jobs go to `dead`."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from swarmd import connection, payload
from swarmd.keys import Keys
from swarmd.recovery import POISON_CRASHES, recover_dead_workers, recover_worker
from swarmd.scripts import Scripts
from tests.replies import as_bytes, counter, items, members, set_members

DEAD = "host:9:dead"


def job(token: str, queue: str = "default", **fields: Any) -> bytes:
    return payload.encode(
        payload.for_queue(payload.build("Record", [token], None, {"queue": queue, **fields}))
    )


def jid_of(raw: bytes) -> str:
    jid: str = json.loads(raw)["jid"]
    return jid


@pytest.fixture(params=[None, "ns"], ids=["plain", "namespaced"])
def scripts(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Scripts]:
    client = connection.connect(redis_url)
    yield Scripts(client, Keys(request.param))
    client.close()


@pytest.fixture
def k(scripts: Scripts) -> Keys:
    return scripts.keys


def crashed(r: redis.Redis, k: Keys, identity: str, *raws: bytes) -> None:
    """A worker that died holding ``raws`` (newest first, as its fetches LPUSHed them)."""
    r.sadd(k.swarmd_workers, identity)
    for raw in reversed(raws):
        r.lpush(k.inflight(identity), raw)


def test_recover_worker_requeues_every_job_and_forgets_the_worker(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    a, b, low = job("a"), job("b"), job("low", "low")
    crashed(r, k, DEAD, a, b, low)
    r.sadd(k.swarmd_workers, "someone else")
    assert recover_worker(scripts, DEAD) == (3, 0)
    assert sorted(items(r, k.queue("default"))) == sorted([a, b])
    assert items(r, k.queue("low")) == [low]
    assert not r.exists(k.inflight(DEAD), k.recovering(DEAD))
    assert set_members(r, k.swarmd_workers) == {b"someone else"}
    for raw in (a, b, low):
        assert counter(r, k.crashes(jid_of(raw))) == 1


def test_a_second_recoverer_gets_none_while_the_lock_is_held(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    a = job("a")
    crashed(r, k, DEAD, a)
    r.set(k.recovering(DEAD), "another recoverer", ex=10)
    assert recover_worker(scripts, DEAD) is None
    assert recover_worker(scripts, DEAD, force=True) is None
    assert items(r, k.inflight(DEAD)) == [a]
    assert as_bytes(r.get(k.recovering(DEAD))) == b"another recoverer"  # not ours: left alone
    r.delete(k.recovering(DEAD))
    assert recover_worker(scripts, DEAD) == (1, 0)


def test_a_live_worker_is_recovered_only_with_force(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    a = job("a")
    crashed(r, k, DEAD, a)
    r.set(k.alive(DEAD), "1", ex=60)
    assert recover_worker(scripts, DEAD) == (0, 0)
    assert items(r, k.inflight(DEAD)) == [a]
    assert DEAD.encode() in set_members(r, k.swarmd_workers)
    assert not r.exists(k.recovering(DEAD))
    # The supervisor saw the process die before its liveness key expired.
    assert recover_worker(scripts, DEAD, force=True) == (1, 0)
    assert items(r, k.queue("default")) == [a]


@pytest.mark.parametrize("n", [100, 101, 250])
def test_a_long_private_list_is_recovered_in_batches(
    scripts: Scripts, k: Keys, r: redis.Redis, n: int
) -> None:
    raws = [job(f"j{i}") for i in range(n)]
    crashed(r, k, DEAD, *raws)
    assert recover_worker(scripts, DEAD) == (n, 0)
    assert Counter(items(r, k.queue("default"))) == Counter(raws)
    assert not r.exists(k.inflight(DEAD), k.recovering(DEAD))
    assert DEAD.encode() not in set_members(r, k.swarmd_workers)
    assert {counter(r, k.crashes(jid_of(raw))) for raw in raws} == {1}


def test_undecodable_entries_go_to_dead_unchanged(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    good, not_json, no_class = job("good"), b"\xff\xfe not json", b'{"args":[1]}'
    crashed(r, k, DEAD, not_json, good, no_class)
    assert recover_worker(scripts, DEAD) == (1, 2)
    assert sorted(members(r, k.dead)) == sorted([not_json, no_class])
    assert items(r, k.queue("default")) == [good]
    assert not r.exists(k.inflight(DEAD))


def test_a_job_in_flight_at_three_crashes_goes_to_dead_as_poison(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    poison, bystander = job("poison"), job("bystander")
    crashed(r, k, DEAD, poison)
    for crash in range(1, POISON_CRASHES):
        assert recover_worker(scripts, DEAD, force=True) == (1, 0)
        assert counter(r, k.crashes(jid_of(poison))) == crash
        # It runs again, in a worker that dies again (with another job beside it the last time).
        r.lmove(k.queue("default"), k.inflight(DEAD), "RIGHT", "LEFT")
        r.sadd(k.swarmd_workers, DEAD)
    r.lpush(k.inflight(DEAD), bystander)
    assert recover_worker(scripts, DEAD, force=True) == (1, 1)
    [stored] = members(r, k.dead)
    data = json.loads(stored)
    original = json.loads(poison)
    assert data["error_class"] == "swarmd.PoisonJob"
    assert f"crashed {POISON_CRASHES} times" in data["error_message"]
    assert DEAD in data["error_message"]
    assert (data["jid"], data["args"], data["class"]) == (original["jid"], ["poison"], "Record")
    assert not r.exists(k.crashes(jid_of(poison)))
    # The job beside it counted one crash and goes back to its queue.
    assert items(r, k.queue("default")) == [bystander]
    assert counter(r, k.crashes(jid_of(bystander))) == 1


def test_a_job_without_a_jid_is_counted_on_its_own(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    one, two = b'{"class":"Record","args":["one"]}', b'{"class":"Record","args":["two"]}'
    crashed(r, k, DEAD, one, two)
    for _ in range(POISON_CRASHES - 1):
        assert recover_worker(scripts, DEAD, force=True) == (2, 0)
        r.lmove(k.queue("default"), k.inflight(DEAD), "RIGHT", "LEFT")
        r.lmove(k.queue("default"), k.inflight(DEAD), "RIGHT", "LEFT")
    assert recover_worker(scripts, DEAD, force=True) == (0, 2)
    assert [json.loads(m)["args"] for m in members(r, k.dead)] in ([["one"], ["two"]], [["two"], ["one"]])


def test_two_recoverers_at_once_requeue_each_job_once(
    scripts: Scripts, k: Keys, r: redis.Redis, redis_url: str
) -> None:
    raws = [job(f"j{i}") for i in range(300)]
    crashed(r, k, DEAD, *raws)
    start = threading.Barrier(2)
    results: list[tuple[int, int] | None] = []

    def recoverer() -> None:
        client = connection.connect(redis_url)
        mine = Scripts(client, k)
        start.wait()
        results.append(recover_worker(mine, DEAD, force=True))
        results.append(recover_worker(mine, DEAD, force=True))  # and again, as a later pass would
        client.close()

    threads = [threading.Thread(target=recoverer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(result[0] for result in results if result is not None) == 300
    assert Counter(items(r, k.queue("default"))) == Counter(raws)
    assert {counter(r, k.crashes(jid_of(raw))) for raw in raws} == {1}


def test_recover_dead_workers_skips_live_workers_and_itself(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    mine, live, dead_a, dead_b = job("mine"), job("live"), job("dead a"), job("dead b")
    crashed(r, k, "me", mine)  # no liveness key either (say, it expired while this worker froze)
    crashed(r, k, "live", live)
    r.set(k.alive("live"), "1", ex=60)
    crashed(r, k, "dead", dead_a, dead_b)
    crashed(r, k, "empty")
    assert recover_dead_workers(scripts, "me") == 2
    assert sorted(items(r, k.queue("default"))) == sorted([dead_a, dead_b])
    assert items(r, k.inflight("me")) == [mine]
    assert items(r, k.inflight("live")) == [live]
    assert set_members(r, k.swarmd_workers) == {b"me", b"live"}
    # A pass by someone else recovers "me" too.
    assert recover_dead_workers(scripts) == 1
    assert set_members(r, k.swarmd_workers) == {b"live"}


def test_recover_dead_workers_with_nobody_registered_does_nothing(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    assert recover_dead_workers(scripts, "me") == 0
    r.sadd(k.swarmd_workers, "me")
    assert recover_dead_workers(scripts, "me") == 0
    assert set_members(r, k.swarmd_workers) == {b"me"}
