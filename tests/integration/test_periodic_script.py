"""The contract of ``lua/periodic.lua`` (`Scripts.periodic`): a tick is claimed once, the last tick only
moves forward, a new entry starts without running, and a push happens only with the claim."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from swarmd import connection
from swarmd.keys import Keys
from swarmd.scripts import Claim, Scripts
from tests.replies import items


@pytest.fixture(params=[None, "ns"], ids=["plain", "namespaced"])
def scripts(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Scripts]:
    client = connection.connect(redis_url)
    yield Scripts(client, Keys(request.param))
    client.close()


def claim(tick: float, raw: bytes = b'{"class":"T"}', push: bool = True, entry: str = "e1") -> Claim:
    return Claim(entry, tick, raw, "low", push)


def test_a_new_entry_records_its_first_tick_without_pushing(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    assert scripts.periodic([claim(100)]) == [-1]
    assert r.llen(k.queue("low")) == 0
    assert float(r.hget(k.periodic, "e1") or 0) == 100.0


def test_each_tick_is_pushed_once_and_the_last_tick_moves_forward_only(
    scripts: Scripts, r: redis.Redis
) -> None:
    k = scripts.keys
    scripts.periodic([claim(100)])
    assert scripts.periodic([claim(160, b"a")]) == [1]
    assert scripts.periodic([claim(160, b"b")]) == [0]  # the same tick again: another swarm's claim
    assert scripts.periodic([claim(100, b"c")]) == [0]  # an older tick (a slow clock): nothing
    assert items(r, k.queue("low")) == [b"a"]
    assert r.smembers(k.queues) == {b"low"}
    assert float(r.hget(k.periodic, "e1") or 0) == 160.0


def test_a_claim_without_push_moves_the_tick_and_pushes_nothing(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    scripts.periodic([claim(100)])
    assert scripts.periodic([claim(200, push=False)]) == [-1]
    assert scripts.periodic([claim(200)]) == [0]
    assert r.llen(k.queue("low")) == 0 and float(r.hget(k.periodic, "e1") or 0) == 200.0


def test_entries_in_one_call_are_claimed_each_on_its_own(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    scripts.periodic([claim(100, entry="a")])
    assert scripts.periodic([claim(160, b"A", entry="a"), claim(160, b"B", entry="b")]) == [1, -1]
    assert items(r, k.queue("low")) == [b"A"]


def test_a_record_that_is_not_a_number_counts_as_a_new_entry(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    r.hset(k.periodic, "e1", "garbage")
    assert scripts.periodic([claim(100)]) == [-1]
    assert scripts.periodic([claim(160)]) == [1]


def test_many_claimers_racing_for_the_same_ticks_push_each_tick_once(
    scripts: Scripts, r: redis.Redis
) -> None:
    k = scripts.keys
    scripts.periodic([claim(0)])
    barrier = threading.Barrier(8)

    def claimer(n: int) -> None:
        barrier.wait()
        for tick in range(1, 51):
            scripts.periodic([claim(tick, f"{tick}:{n}".encode())])

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pushed = [raw.split(b":")[0] for raw in items(r, k.queue("low"))]
    assert sorted(pushed, key=int) == [str(t).encode() for t in range(1, 51)]
