"""Contracts of the recovery and push-back scripts on a real Redis: the quarantine (``lua/recover.lua``
through `Scripts.recover` and `recovery.recover_worker`), push back to the quarantine list, fetch from
it, and the one-entry-at-a-time fallback that keeps one bad entry from blocking a batch.

Every script removes an entry with LREM/ZREM first and acts only if that removed it: each test that
moves something also checks that a second call moves nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from swarmd import connection, payload, recovery
from swarmd.errors import POISON_JOB
from swarmd.keys import Keys
from swarmd.scheduler import Scheduler
from swarmd.scripts import Recovered, Scripts, crash_id

ORDINARY = "host:1:aaaaaaaaaaaa"
QUARANTINE = "host:2:quarantine-bbbbbbbbbbbb"
BAD_QUEUE = b'{"class":"X","args":[],"jid":"bad000000000000000000000","queue":"\\udcff"}'


def job(token: str, **fields: Any) -> bytes:
    return payload.encode(payload.build("Record", [token], None, {"queue": "default", **fields}))


@pytest.fixture(params=[None, "ns"])
def scripts(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Scripts]:
    client = connection.connect(redis_url)
    yield Scripts(client, Keys(request.param))
    client.close()


def sidekiq_records(r: redis.Redis, keys: Keys, identity: str) -> None:
    """What a worker's beat leaves in Redis (the parts recovery cleans up)."""
    r.sadd(keys.processes, identity)
    r.hset(keys.process(identity), mapping={"busy": 1, "beat": 1.0})
    r.hset(keys.work(identity), "tid", "{}")
    r.hset(keys.workers(identity), "tid", "{}")
    r.sadd(keys.swarmd_workers, identity)


def records_gone(r: redis.Redis, keys: Keys, identity: str) -> bool:
    return (
        not r.sismember(keys.processes, identity)
        and not r.exists(keys.process(identity), keys.work(identity), keys.workers(identity))
        and not r.sismember(keys.swarmd_workers, identity)
    )


# -- recover.lua ------------------------------------------------------------------------------------------


def test_an_ordinary_workers_jobs_go_to_quarantine_uncounted_and_its_records_go(
    r: redis.Redis, scripts: Scripts
) -> None:
    keys = scripts.keys
    a, b = job("a"), job("b")
    r.lpush(keys.inflight(ORDINARY), a, b, b"garbage")
    sidekiq_records(r, keys, ORDINARY)
    r.set(keys.alive(ORDINARY), 1)
    done = recovery.recover_worker(scripts, ORDINARY, force=True)
    assert done == Recovered(quarantined=2, poisoned=0, unchanged=1)
    assert sorted(r.lrange(keys.quarantine, 0, -1)) == sorted([a, b])  # unchanged bytes, no counter
    assert not list(r.scan_iter(keys.crashes("*")))
    assert r.zrange(keys.dead, 0, -1) == [b"garbage"]
    assert r.llen(keys.inflight(ORDINARY)) == 0
    assert records_gone(r, keys, ORDINARY) and not r.exists(keys.alive(ORDINARY))
    assert recovery.recover_worker(scripts, ORDINARY, force=True) == Recovered(0, 0, 0)  # nothing twice


def test_a_live_worker_is_left_alone_unless_forced(r: redis.Redis, scripts: Scripts) -> None:
    keys = scripts.keys
    r.lpush(keys.inflight(ORDINARY), job("a"))
    sidekiq_records(r, keys, ORDINARY)
    r.set(keys.alive(ORDINARY), 1)
    assert recovery.recover_worker(scripts, ORDINARY) == Recovered(0, 0, 0)
    assert r.llen(keys.inflight(ORDINARY)) == 1 and r.sismember(keys.processes, ORDINARY)
    assert r.llen(keys.quarantine) == 0


def test_a_quarantine_workers_job_is_counted_once_per_crash_then_dead_as_poison(
    r: redis.Redis, scripts: Scripts
) -> None:
    keys = scripts.keys
    raw = job("p")
    jid = json.loads(raw)["jid"]
    r.lpush(keys.inflight(QUARANTINE), raw)
    assert recovery.recover_worker(scripts, QUARANTINE, force=True) == Recovered(1, 0, 0)
    assert r.lrange(keys.quarantine, 0, -1) == [raw]
    assert r.get(keys.crashes(jid)) == b"1"
    assert 0 < r.ttl(keys.crashes(jid)) <= recovery.CRASH_TTL
    # It runs alone again (the quarantine worker moves it back into its list) and kills it again.
    assert r.lmove(keys.quarantine, keys.inflight(QUARANTINE), "RIGHT", "LEFT") == raw
    assert recovery.recover_worker(scripts, QUARANTINE, force=True) == Recovered(0, 1, 0)
    assert r.llen(keys.quarantine) == 0 and not r.exists(keys.crashes(jid))
    [dead] = r.zrange(keys.dead, 0, -1)
    stored = json.loads(dead)
    assert stored["error_class"] == POISON_JOB and stored["jid"] == jid and stored["args"] == ["p"]
    assert "alone in a quarantine worker" in stored["error_message"] and QUARANTINE in stored["error_message"]
    assert recovery.recover_worker(scripts, QUARANTINE, force=True) == Recovered(0, 0, 0)
    assert r.zcard(keys.dead) == 1


def test_two_recover_calls_for_one_list_move_each_job_once(r: redis.Redis, scripts: Scripts) -> None:
    # The second recoverer got past the lock (it expired): the LREM inside the script still decides.
    keys = scripts.keys
    raw = job("once")
    jid = json.loads(raw)["jid"]
    r.lpush(keys.inflight(QUARANTINE), raw)
    entries = [(raw, "count", jid, b"poison")]
    first = scripts.recover(QUARANTINE, entries, force=True, crash_ttl=60, poison_crashes=2, now=1.0)
    second = scripts.recover(QUARANTINE, entries, force=True, crash_ttl=60, poison_crashes=2, now=1.0)
    assert (first, second) == (Recovered(1, 0, 0), Recovered(0, 0, 0))
    assert r.get(keys.crashes(jid)) == b"1" and r.lrange(keys.quarantine, 0, -1) == [raw]


def test_one_entry_redis_cannot_take_goes_to_dead_and_the_others_are_recovered(
    r: redis.Redis, scripts: Scripts
) -> None:
    # A crash counter id that is no valid UTF-8 (redis-py refuses to encode it): the batch fails, then
    # each entry goes alone, and that one goes to dead unchanged.
    keys = scripts.keys
    good, bad = job("good"), job("bad")
    r.lpush(keys.inflight(QUARANTINE), good, bad)
    entries = [(good, "count", "good-jid", b"p"), (bad, "count", "\udcff", b"p")]
    done = scripts.recover(QUARANTINE, entries, force=True, crash_ttl=60, poison_crashes=2, now=1.0)
    assert done == Recovered(quarantined=1, poisoned=0, unchanged=1)
    assert r.lrange(keys.quarantine, 0, -1) == [good]
    assert r.zrange(keys.dead, 0, -1) == [bad]
    assert r.llen(keys.inflight(QUARANTINE)) == 0


def test_a_lone_surrogate_in_a_key_field_is_undecodable_so_recovery_is_not_blocked(
    r: redis.Redis, scripts: Scripts
) -> None:
    keys = scripts.keys
    good = job("good")
    r.lpush(keys.inflight(ORDINARY), good, BAD_QUEUE)
    assert recovery.recover_worker(scripts, ORDINARY, force=True) == Recovered(1, 0, 1)
    assert r.zrange(keys.dead, 0, -1) == [BAD_QUEUE]
    assert r.lrange(keys.quarantine, 0, -1) == [good]


def test_recover_for_gives_up_after_its_time_when_redis_never_answers(redis_url: str) -> None:
    client = connection.connect("redis://127.0.0.1:1/0")  # nothing listens there
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    left = recovery.recover_for(
        [(Scripts(client, Keys()), ORDINARY)], 10.0, clock=lambda: now[0], sleep=sleep
    )
    assert left == [ORDINARY]
    assert len(slept) >= 5 and sum(slept) <= 10.0
    client.close()


def test_recover_for_returns_once_every_list_is_done(r: redis.Redis, scripts: Scripts) -> None:
    keys = scripts.keys
    r.lpush(keys.inflight(ORDINARY), job("a"))
    r.lpush(keys.inflight(QUARANTINE), job("b"))
    assert recovery.recover_for([(scripts, ORDINARY), (scripts, QUARANTINE)], 5.0) == []
    assert r.llen(keys.quarantine) == 2


# -- push back, fetch, schedule ---------------------------------------------------------------------------


def test_push_back_to_quarantine_puts_jobs_at_its_head_and_undecodable_ones_in_dead(
    r: redis.Redis, scripts: Scripts
) -> None:
    keys = scripts.keys
    waiting, a = job("waiting"), job("a")
    r.rpush(keys.quarantine, waiting)
    r.lpush(keys.inflight(ORDINARY), a, b"garbage")
    moved = scripts.push_back(ORDINARY, [(a, "default"), (b"garbage", None)], 5.0, quarantine=True)
    assert moved == 2
    assert r.lrange(keys.quarantine, 0, -1) == [waiting, a]  # the head is the right end
    assert r.zrange(keys.dead, 0, -1, withscores=True) == [(b"garbage", 5.0)]
    assert r.llen(keys.queue("default")) == 0
    assert scripts.push_back(ORDINARY, [(a, "default")], 5.0, quarantine=True) == 0


def test_push_back_of_an_entry_redis_cannot_take_moves_it_to_dead_and_the_rest_back(
    r: redis.Redis, scripts: Scripts
) -> None:
    keys = scripts.keys
    a, b = job("a"), job("b")
    r.lpush(keys.inflight(ORDINARY), a, BAD_QUEUE, b)
    moved = scripts.push_back(ORDINARY, [(a, "default"), (BAD_QUEUE, "\udcff"), (b, "default")], 5.0)
    assert moved == 3
    assert r.lrange(keys.queue("default"), 0, -1) == [a, b]
    assert r.zrange(keys.dead, 0, -1) == [BAD_QUEUE]
    assert r.llen(keys.inflight(ORDINARY)) == 0


def test_fetch_in_quarantine_mode_takes_from_the_quarantine_list_only(
    r: redis.Redis, scripts: Scripts
) -> None:
    keys = scripts.keys
    suspect, queued = job("suspect"), job("queued")
    r.rpush(keys.quarantine, suspect)
    r.rpush(keys.queue("default"), queued)
    got = scripts.fetch(QUARANTINE, ["default"], 5, [], quarantine=True)
    assert got == [(0, suspect)]
    assert r.lrange(keys.inflight(QUARANTINE), 0, -1) == [suspect]
    assert r.lrange(keys.queue("default"), 0, -1) == [queued]


def test_the_schedulers_batch_survives_a_member_whose_queue_redis_cannot_take(
    r: redis.Redis, scripts: Scripts
) -> None:
    keys = scripts.keys
    good = job("good")
    r.zadd(keys.retry, {good: 1.0, b"x": 2.0})
    entries = [(good, good, "default"), (b"x", b"x", "\udcff")]
    assert scripts.schedule(keys.retry, entries, 10.0) == 2
    assert r.lrange(keys.queue("default"), 0, -1) == [good]
    assert r.zrange(keys.dead, 0, -1) == [b"x"]
    assert r.zcard(keys.retry) == 0


def test_the_scheduler_poll_reads_the_quarantine_length(r: redis.Redis, scripts: Scripts) -> None:
    scheduler = Scheduler(scripts)
    assert scheduler.poll() == 0 and scheduler.quarantined == 0
    r.rpush(scripts.keys.quarantine, job("a"), job("b"))
    scheduler.poll()
    assert scheduler.quarantined == 2


def test_crash_id_is_stable_per_job() -> None:
    assert crash_id(b"x") == crash_id(b"x") != crash_id(b"y")
