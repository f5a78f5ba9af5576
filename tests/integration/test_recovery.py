"""`swarmd.recovery` in-process against a real Redis: a dead worker's private list is emptied exactly
once, in batches, under a lock. The jobs of an ordinary worker its supervisor saw die (``force``) are
suspects: they go to the quarantine list uncounted; a worker that vanished unseen (its liveness key
expired) has its jobs put back in their queues. A quarantine worker's job ran alone: its crash is
counted, and at `QUARANTINE_CRASHES` it goes to `dead` as `swarmd.PoisonJob`. Undecodable entries go
to `dead` unchanged. Once the list is empty the worker's records (swarmd's registry, Sidekiq's process
set and hashes) are gone too.

The Lua script's own contract (fates, replays, identical payloads, one bad entry in a batch) is in
test_scripts.py; here the identity and who saw the death decide the fate, as in a running swarm.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from swarmd import connection, payload
from swarmd.errors import POISON_JOB
from swarmd.keys import Keys, is_quarantine_identity
from swarmd.recovery import (
    CRASH_TTL,
    POISON_RUNS,
    QUARANTINE_CRASHES,
    VANISH_LIMIT,
    recover_dead_workers,
    recover_for,
    recover_worker,
)
from swarmd.scripts import Recovered, Scripts, crash_id
from tests.replies import as_bytes, counter, items, members, set_members

ORDINARY = "host:9:aaaaaaaaaaaa"
QUARANTINE = "host:8:quarantine-bbbbbbbbbbbb"
# A lone surrogate in a field that becomes part of a key name: redis-py cannot encode that key.
BAD_QUEUE = b'{"class":"X","args":[],"jid":"bad000000000000000000000","queue":"\\udcff"}'

assert not is_quarantine_identity(ORDINARY) and is_quarantine_identity(QUARANTINE)


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
    """A worker that died holding ``raws`` (newest first, as its fetches LPUSHed them), with the records
    its last beat left: swarmd's registry, Sidekiq's process set and hashes (no liveness key)."""
    r.sadd(k.swarmd_workers, identity)
    r.sadd(k.processes, identity)
    r.hset(k.process(identity), mapping={"busy": len(raws), "beat": 1.0})
    r.hset(k.work(identity), "tid", "{}")
    r.hset(k.workers(identity), "tid", "{}")
    for raw in reversed(raws):
        r.lpush(k.inflight(identity), raw)


def records_gone(r: redis.Redis, k: Keys, identity: str) -> bool:
    return (
        not r.sismember(k.swarmd_workers, identity)
        and not r.sismember(k.processes, identity)
        and not r.exists(k.process(identity), k.work(identity), k.workers(identity), k.alive(identity))
    )


def records_kept(r: redis.Redis, k: Keys, identity: str) -> bool:
    return (
        bool(r.sismember(k.swarmd_workers, identity))
        and bool(r.sismember(k.processes, identity))
        and r.exists(k.process(identity), k.work(identity), k.workers(identity)) == 3
    )


def crash_counters(r: redis.Redis, k: Keys) -> list[bytes]:
    return [as_bytes(key) for key in r.keys(k.crashes("*"))]


def run_alone(scripts: Scripts, raw: bytes) -> None:
    """The quarantine worker takes the next suspect (it must be ``raw``) into its private list."""
    assert scripts.fetch(QUARANTINE, [], 1, [], quarantine=True).jobs == [(0, raw)]
    scripts.redis.sadd(scripts.keys.swarmd_workers, QUARANTINE)


# -- what happens to the jobs ------------------------------------------------------------------------------


def test_an_ordinary_workers_jobs_go_to_the_quarantine_list_uncounted_and_its_records_go(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    a, b, low = job("a"), job("b"), job("low", "low")
    crashed(r, k, ORDINARY, a, b, low)
    crashed(r, k, "someone else")
    # The supervisor saw it die: any of its jobs may have killed it.
    assert recover_worker(scripts, ORDINARY, force=True) == Recovered(quarantined=3, poisoned=0, unchanged=0)
    # Byte for byte, each once; not to their queues, where the next batch would take them together.
    assert Counter(items(r, k.quarantine)) == Counter([a, b, low])
    assert not r.exists(k.queue("default"), k.queue("low"), k.dead)
    assert crash_counters(r, k) == []  # any one of them, or none, killed the worker: nobody is blamed
    assert not r.exists(k.inflight(ORDINARY), k.recovering(ORDINARY))
    assert records_gone(r, k, ORDINARY)
    assert records_kept(r, k, "someone else")
    # A later pass (or a call whose reply was lost, sent again) finds nothing to move.
    assert recover_worker(scripts, ORDINARY, force=True) == Recovered(0, 0, 0)
    assert Counter(items(r, k.quarantine)) == Counter([a, b, low])


def test_a_worker_that_vanished_unseen_has_its_jobs_put_back_in_their_queues(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    # Its liveness key expired and nobody saw it die (a lost host, a whole swarm killed): not a job's
    # doing, so its jobs go back to the head of their own queues, uncounted, and run side by side.
    a, b, low = job("a"), job("b"), job("low", "low")
    crashed(r, k, ORDINARY, a, b, low)
    assert recover_worker(scripts, ORDINARY) == Recovered(0, 0, 0, requeued=3)
    assert Counter(items(r, k.queue("default"))) == Counter([a, b])
    assert items(r, k.queue("low")) == [low]
    assert not r.exists(k.quarantine, k.dead)
    assert crash_counters(r, k) == []
    assert records_gone(r, k, ORDINARY)
    assert recover_worker(scripts, ORDINARY) == Recovered(0, 0, 0)  # sent again: nothing moves twice
    assert [counter(r, k.vanished(jid_of(raw))) for raw in (a, b, low)] == [1, 1, 1]
    # A quarantine worker's job ran alone: its death is counted whoever finds it, seen or not.
    alone = job("alone")
    crashed(r, k, QUARANTINE, alone)
    assert recover_worker(scripts, QUARANTINE) == Recovered(1, 0, 0)
    assert items(r, k.quarantine) == [alone]
    assert crash_counters(r, k) == [k.crashes(jid_of(alone)).encode()]


def test_a_job_that_takes_its_whole_swarm_down_becomes_a_suspect(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    # No supervisor ever sees these deaths (the job kills its process group): each vanished worker's
    # list is recovered unseen. At VANISH_LIMIT the job stops going back to its queue.
    bomb = job("bomb")
    for n in range(1, VANISH_LIMIT + 1):
        crashed(r, k, f"{ORDINARY}{n}", bomb)
        done = recover_worker(scripts, f"{ORDINARY}{n}")
        if n < VANISH_LIMIT:
            assert done == Recovered(0, 0, 0, requeued=1)
            assert items(r, k.queue("default")) == [bomb]
            r.delete(k.queue("default"))  # fetched again by the next worker
    assert done == Recovered(1, 0, 0)
    assert items(r, k.quarantine) == [bomb] and not r.exists(k.queue("default"), k.vanished(jid_of(bomb)))


def test_a_quarantine_workers_job_is_counted_per_crash_and_dead_as_poison_at_the_limit(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    # The whole path of a job that kills every process running it, with an innocent one beside it.
    poison, bystander = job("poison"), job("bystander")
    crashed(r, k, ORDINARY, poison, bystander)  # run 1 of the poison job, beside the bystander
    assert recover_worker(scripts, ORDINARY, force=True) == Recovered(2, 0, 0)
    assert crash_counters(r, k) == []
    # The quarantine worker runs the bystander alone first (it was fetched first): it succeeds.
    run_alone(scripts, bystander)
    scripts.fetch(QUARANTINE, [], 0, [bystander])  # its ack
    for crash in range(1, QUARANTINE_CRASHES + 1):  # runs 2.. of the poison job, each alone
        run_alone(scripts, poison)
        done = recover_worker(scripts, QUARANTINE, force=True)
        if crash < QUARANTINE_CRASHES:
            assert done == Recovered(1, 0, 0)
            assert items(r, k.quarantine) == [poison]  # back, to run alone again
            assert counter(r, k.crashes(jid_of(poison))) == crash
            assert 0 < r.ttl(k.crashes(jid_of(poison))) <= CRASH_TTL
            assert not r.exists(k.dead)
    assert done == Recovered(0, 1, 0)
    assert POISON_RUNS == 1 + QUARANTINE_CRASHES == 3  # what README promises
    [stored] = members(r, k.dead)
    data, original = json.loads(stored), json.loads(poison)
    assert data["error_class"] == POISON_JOB == "swarmd.PoisonJob"
    assert f"alone in a quarantine worker, {QUARANTINE_CRASHES} times" in data["error_message"]
    assert QUARANTINE in data["error_message"]
    assert (data["jid"], data["args"], data["class"]) == (original["jid"], ["poison"], "Record")
    assert not r.exists(k.crashes(jid_of(poison)), k.quarantine, k.inflight(QUARANTINE))
    assert counter(r, k.crashes(jid_of(bystander))) == 0
    assert records_gone(r, k, QUARANTINE)
    assert recover_worker(scripts, QUARANTINE, force=True) == Recovered(0, 0, 0)
    assert r.zcard(k.dead) == 1


def test_a_job_without_a_jid_is_counted_on_its_own(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    one, two = b'{"class":"Record","args":["one"]}', b'{"class":"Record","args":["two"]}'
    crashed(r, k, QUARANTINE, one, two)
    assert recover_worker(scripts, QUARANTINE, force=True) == Recovered(2, 0, 0)
    # One counter per job (a digest of its bytes), not one shared by every job without a jid.
    assert counter(r, k.crashes(crash_id(one))) == counter(r, k.crashes(crash_id(two))) == 1
    crashed(r, k, QUARANTINE, *(as_bytes(r.rpop(k.quarantine)) for _ in range(2)))
    assert recover_worker(scripts, QUARANTINE, force=True) == Recovered(0, 2, 0)
    assert sorted(json.loads(m)["args"] for m in members(r, k.dead)) == [["one"], ["two"]]
    assert crash_counters(r, k) == []


@pytest.mark.parametrize("identity", [ORDINARY, QUARANTINE], ids=["ordinary", "quarantine"])
def test_undecodable_entries_go_to_dead_unchanged_and_block_nothing(
    scripts: Scripts, k: Keys, r: redis.Redis, caplog: pytest.LogCaptureFixture, identity: str
) -> None:
    good, not_json, no_class = job("good"), b"\xff\xfe not json", b'{"args":[1]}'
    crashed(r, k, identity, not_json, good, BAD_QUEUE, no_class)
    with caplog.at_level(logging.ERROR, "swarmd"):
        assert recover_worker(scripts, identity, force=True) == Recovered(1, 0, 3)
    assert Counter(members(r, k.dead)) == Counter([not_json, BAD_QUEUE, no_class])
    assert items(r, k.quarantine) == [good]
    assert not r.exists(k.inflight(identity))
    assert records_gone(r, k, identity)
    # Only the decodable job ran alone and may be counted; each bad entry is said once, naming the worker.
    counted = [k.crashes(jid_of(good)).encode()] if identity == QUARANTINE else []
    assert crash_counters(r, k) == counted
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 3 and all(identity in line for line in errors)


# -- when, and by whom -------------------------------------------------------------------------------------


def test_a_second_recoverer_gets_none_while_the_lock_is_held(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    a = job("a")
    crashed(r, k, ORDINARY, a)
    r.set(k.recovering(ORDINARY), "another recoverer", ex=10)
    assert recover_worker(scripts, ORDINARY) is None
    assert recover_worker(scripts, ORDINARY, force=True) is None
    assert items(r, k.inflight(ORDINARY)) == [a]
    assert records_kept(r, k, ORDINARY)
    assert as_bytes(r.get(k.recovering(ORDINARY))) == b"another recoverer"  # not ours: left alone
    r.delete(k.recovering(ORDINARY))
    assert recover_worker(scripts, ORDINARY, force=True) == Recovered(1, 0, 0)
    assert not r.exists(k.recovering(ORDINARY))


class SlowScripts(Scripts):
    """Each recover call takes so long that the lock expires and another recoverer takes it."""

    def recover(self, identity: str, jobs: Any, **kw: Any) -> Recovered | None:
        self.redis.set(self.keys.recovering(identity), "the next recoverer", ex=10)
        return super().recover(identity, jobs, **kw)


def test_a_lock_that_expired_and_was_taken_again_is_not_released(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    a = job("a")
    crashed(r, k, ORDINARY, a)
    slow = SlowScripts(scripts.redis, k)
    assert recover_worker(slow, ORDINARY, force=True) == Recovered(1, 0, 0)
    assert items(r, k.quarantine) == [a]
    # Its token is not ours: deleting it would let a third recoverer in beside the second.
    assert as_bytes(r.get(k.recovering(ORDINARY))) == b"the next recoverer"


def test_a_live_worker_is_recovered_only_with_force(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    a = job("a")
    crashed(r, k, ORDINARY, a)
    r.set(k.alive(ORDINARY), "1", ex=60)
    assert recover_worker(scripts, ORDINARY) == Recovered(0, 0, 0)
    assert items(r, k.inflight(ORDINARY)) == [a]
    assert records_kept(r, k, ORDINARY) and r.exists(k.alive(ORDINARY))
    assert not r.exists(k.quarantine, k.recovering(ORDINARY))
    # The supervisor saw the process die before its liveness key expired.
    assert recover_worker(scripts, ORDINARY, force=True) == Recovered(1, 0, 0)
    assert items(r, k.quarantine) == [a]
    assert records_gone(r, k, ORDINARY)  # the liveness key too: nothing of the process is left


@pytest.mark.parametrize("identity", [ORDINARY, QUARANTINE], ids=["ordinary", "quarantine"])
@pytest.mark.parametrize("n", [100, 101, 250])
def test_a_long_private_list_is_recovered_in_batches(
    scripts: Scripts, k: Keys, r: redis.Redis, n: int, identity: str
) -> None:
    raws = [job(f"j{i}") for i in range(n)]
    crashed(r, k, identity, *raws)
    assert recover_worker(scripts, identity, force=True) == Recovered(n, 0, 0)
    assert Counter(items(r, k.quarantine)) == Counter(raws)
    assert not r.exists(k.inflight(identity), k.recovering(identity))
    assert records_gone(r, k, identity)
    crashes = {counter(r, k.crashes(jid_of(raw))) for raw in raws}
    assert crashes == ({1} if identity == QUARANTINE else {0})


@pytest.mark.parametrize("identity", [ORDINARY, QUARANTINE], ids=["ordinary", "quarantine"])
def test_two_recoverers_at_once_move_each_job_once(
    scripts: Scripts, k: Keys, r: redis.Redis, redis_url: str, identity: str
) -> None:
    raws = [job(f"j{i}") for i in range(300)]
    crashed(r, k, identity, *raws)
    start = threading.Barrier(2)
    results: list[Recovered | None] = []

    def recoverer() -> None:
        client = connection.connect(redis_url)
        mine = Scripts(client, k)
        start.wait()
        results.append(recover_worker(mine, identity, force=True))
        results.append(recover_worker(mine, identity, force=True))  # and again, as a later pass would
        client.close()

    threads = [threading.Thread(target=recoverer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 4
    assert sum((result for result in results if result is not None), Recovered(0, 0, 0)) == Recovered(
        300, 0, 0
    )
    assert Counter(items(r, k.quarantine)) == Counter(raws)
    crashes = {counter(r, k.crashes(jid_of(raw))) for raw in raws}
    assert crashes == ({1} if identity == QUARANTINE else {0})  # counted once, never twice
    assert records_gone(r, k, identity)


def test_recover_dead_workers_skips_live_workers_and_itself(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    mine, live, dead_a, dead_b, alone = job("mine"), job("live"), job("dead a"), job("dead b"), job("alone")
    crashed(r, k, "me", mine)  # no liveness key either (say, it expired while this worker froze)
    crashed(r, k, "live", live)
    r.set(k.alive("live"), "1", ex=60)
    crashed(r, k, ORDINARY, dead_a, dead_b)
    crashed(r, k, QUARANTINE, alone)
    crashed(r, k, "empty")
    assert recover_dead_workers(scripts, "me") == 3
    # Nobody saw them die: the ordinary worker's jobs go back to their queue; the quarantine worker's
    # job ran alone, so its death counts.
    assert Counter(items(r, k.queue("default"))) == Counter([dead_a, dead_b])
    assert items(r, k.quarantine) == [alone]
    assert crash_counters(r, k) == [k.crashes(jid_of(alone)).encode()]
    assert items(r, k.inflight("me")) == [mine]
    assert items(r, k.inflight("live")) == [live]
    assert set_members(r, k.swarmd_workers) == {b"me", b"live"}
    assert records_kept(r, k, "me") and records_kept(r, k, "live")
    for identity in (ORDINARY, QUARANTINE, "empty"):
        assert records_gone(r, k, identity)
    # A pass by someone else recovers "me" too.
    assert recover_dead_workers(scripts) == 1
    assert set_members(r, k.swarmd_workers) == {b"live"}
    assert records_gone(r, k, "me")


def test_recover_dead_workers_with_nobody_registered_does_nothing(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    assert recover_dead_workers(scripts, "me") == 0
    r.sadd(k.swarmd_workers, "me")
    assert recover_dead_workers(scripts, "me") == 0
    assert set_members(r, k.swarmd_workers) == {b"me"}


# -- recover_for: the supervisor's recovery child ------------------------------------------------------------


class Clock:
    """A clock that only sleeping moves; `on_sleep` runs after each sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.on_sleep: Callable[[], None] = lambda: None

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        self.on_sleep()


def test_recover_for_returns_once_every_list_is_done(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    a, b = job("a"), job("b")
    crashed(r, k, ORDINARY, a)
    crashed(r, k, QUARANTINE, b)
    r.set(k.alive(ORDINARY), "1", ex=60)  # the supervisor reaped it: force, whatever the key says
    assert recover_for([(scripts, ORDINARY), (scripts, QUARANTINE)], 5.0) == []
    assert Counter(items(r, k.quarantine)) == Counter([a, b])
    assert crash_counters(r, k) == [k.crashes(jid_of(b)).encode()]
    assert records_gone(r, k, ORDINARY) and records_gone(r, k, QUARANTINE)


def test_recover_for_waits_for_a_recoverer_holding_the_lock(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    a = job("a")
    crashed(r, k, ORDINARY, a)
    r.set(k.recovering(ORDINARY), "another recoverer", ex=60)
    clock = Clock()

    def release_after_two_tries() -> None:
        if len(clock.slept) == 2:
            r.delete(k.recovering(ORDINARY))  # that recoverer died mid-way, say, and its lock expired

    clock.on_sleep = release_after_two_tries
    assert recover_for([(scripts, ORDINARY)], 30.0, clock=lambda: clock.now, sleep=clock.sleep) == []
    assert len(clock.slept) == 2
    assert items(r, k.quarantine) == [a]
    assert records_gone(r, k, ORDINARY)


def test_recover_for_gives_up_after_its_time_when_the_lock_stays_held(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    a = job("a")
    crashed(r, k, ORDINARY, a)
    r.set(k.recovering(ORDINARY), "another recoverer", ex=60)
    clock = Clock()
    left = recover_for([(scripts, ORDINARY)], 10.0, clock=lambda: clock.now, sleep=clock.sleep)
    assert left == [ORDINARY]
    assert clock.slept and sum(clock.slept) <= 10.0
    assert items(r, k.inflight(ORDINARY)) == [a]  # left where it was, for the workers to recover
    assert records_kept(r, k, ORDINARY)


def test_recover_for_gives_up_after_its_time_when_redis_never_answers() -> None:
    client = connection.connect("redis://127.0.0.1:1/0")  # nothing listens there
    clock = Clock()
    left = recover_for(
        [(Scripts(client, Keys()), ORDINARY)], 10.0, clock=lambda: clock.now, sleep=clock.sleep
    )
    assert left == [ORDINARY]
    assert len(clock.slept) >= 5 and sum(clock.slept) <= 10.0
    client.close()
