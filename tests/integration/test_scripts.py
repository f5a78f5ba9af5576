"""The contract of every Lua script, called in-process through `swarmd.scripts.Scripts`.

Each script removes an entry with LREM/ZREM first and acts only if that removed it; these tests hold
each one to it: the same call made twice (a caller re-sending after a lost reply) does nothing the
second time, and the same bytes enqueued twice are two jobs (each LREM removes exactly one, both end
up somewhere, neither is lost nor doubled). Every test runs with and without a namespace.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from swarmd import connection, payload
from swarmd.keys import STATS_TTL, Keys
from swarmd.scripts import Recovered, Scripts
from tests.replies import counter, items, members, scored, set_members

NOW = time.time()
ME = "host:1:abc"


def job(token: str, queue: str = "default", **fields: Any) -> bytes:
    """A job's bytes as the client LPUSHes them (a fresh jid each call)."""
    return payload.encode(
        payload.for_queue(payload.build("Record", [token], None, {"queue": queue, **fields}))
    )


@pytest.fixture(params=[None, "ns"], ids=["plain", "namespaced"])
def scripts(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Scripts]:
    client = connection.connect(redis_url)
    yield Scripts(client, Keys(request.param))
    client.close()


@pytest.fixture
def k(scripts: Scripts) -> Keys:
    return scripts.keys


def test_a_script_flushed_from_redis_is_loaded_again(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    # After a Redis restart or a failover the server knows no script: NOSCRIPT, load, call again.
    r.lpush(k.queue("default"), a := job("a"))
    r.script_flush()
    assert scripts.fetch(ME, ["default"], 1, []).jobs == [(0, a)]


# -- fetch: ack + fetch in one step -------------------------------------------------------------------


def test_fetch_moves_the_oldest_jobs_into_the_private_list(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    a, b, c = job("a"), job("b"), job("c")
    r.lpush(k.queue("default"), a, b, c)  # enqueued in this order
    assert scripts.fetch(ME, ["default"], 2, []).jobs == [(0, a), (0, b)]
    assert items(r, k.inflight(ME)) == [b, a]
    assert items(r, k.queue("default")) == [c]


def test_fetch_tries_queues_in_the_order_given_and_names_the_queue_of_each_job(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    h1, h2, l1 = job("h1", "high"), job("h2", "high"), job("l1", "low")
    r.lpush(k.queue("high"), h1, h2)
    r.lpush(k.queue("low"), l1)
    # "high" has enough: "low" is not touched.
    assert scripts.fetch(ME, ["empty", "high", "low"], 1, []).jobs == [(1, h1)]
    assert items(r, k.queue("low")) == [l1]
    # The rest of "high", then "low" for what is still wanted; the index is into this call's list.
    assert scripts.fetch(ME, ["high", "empty", "low"], 5, []).jobs == [(0, h2), (2, l1)]
    assert set(items(r, k.inflight(ME))) == {h1, h2, l1}
    assert not r.exists(k.queue("high"), k.queue("low"))


def test_fetch_takes_at_most_want_jobs_and_none_with_want_zero(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    jobs = [job(f"j{i}") for i in range(5)]
    r.lpush(k.queue("default"), *jobs)
    assert scripts.fetch(ME, ["default"], 0, []).jobs == []
    assert r.llen(k.queue("default")) == 5
    assert [raw for _, raw in scripts.fetch(ME, ["default"], 3, []).jobs] == jobs[:3]
    assert [raw for _, raw in scripts.fetch(ME, ["default"], 100, []).jobs] == jobs[3:]
    assert scripts.fetch(ME, ["default"], 100, []).jobs == []
    assert r.llen(k.inflight(ME)) == 5


def test_fetch_acks_and_fetches_in_one_call(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    done, other, new = job("done"), job("other"), job("new")
    r.lpush(k.inflight(ME), done, other)
    r.lpush(k.queue("default"), new)
    assert scripts.fetch(ME, ["default"], 1, [done], now=NOW).jobs == [(0, new)]
    assert items(r, k.inflight(ME)) == [new, other]
    daily = k.stat_daily("processed", NOW)
    assert counter(r, k.stat("processed")) == counter(r, daily) == 1
    assert 0 < r.ttl(daily) <= STATS_TTL


def test_fetch_counts_only_acks_that_removed_an_entry(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    done = job("done")
    r.lpush(k.inflight(ME), done)
    # A finished job that was pushed back or recovered meanwhile is no longer there: not processed here.
    assert scripts.fetch(ME, ["default"], 1, [job("gone")], now=NOW).jobs == []
    assert not r.exists(k.stat("processed"), k.stat_daily("processed", NOW))
    scripts.fetch(ME, ["default"], 1, [job("gone too"), done], now=NOW)
    assert counter(r, k.stat("processed")) == counter(r, k.stat_daily("processed", NOW)) == 1
    assert not r.exists(k.inflight(ME))


def test_an_ack_sent_again_after_a_lost_reply_counts_nothing(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    done, running = job("done"), job("running")
    r.lpush(k.inflight(ME), done, running)
    for _ in range(2):  # the same call twice: its first reply was lost
        assert scripts.fetch(ME, ["default"], 0, [done], now=NOW).jobs == []
    assert items(r, k.inflight(ME)) == [running]
    assert counter(r, k.stat("processed")) == counter(r, k.stat_daily("processed", NOW)) == 1


def test_identical_payloads_are_two_jobs_through_fetch_and_ack(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    twin = job("twin")
    r.lpush(k.queue("default"), twin, twin)
    assert scripts.fetch(ME, ["default"], 5, []).jobs == [(0, twin), (0, twin)]
    assert items(r, k.inflight(ME)) == [twin, twin]
    scripts.fetch(ME, ["default"], 0, [twin], now=NOW)  # one ack removes one entry, not both
    assert items(r, k.inflight(ME)) == [twin]
    assert counter(r, k.stat("processed")) == 1
    scripts.fetch(ME, ["default"], 0, [twin], now=NOW)
    assert not r.exists(k.inflight(ME))
    assert counter(r, k.stat("processed")) == 2
    scripts.fetch(ME, ["default"], 0, [twin], now=NOW)  # nothing left to remove
    assert counter(r, k.stat("processed")) == 2


def test_two_acks_of_identical_payloads_in_one_call_remove_both(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    twin, other = job("twin"), job("other")
    r.lpush(k.inflight(ME), twin, other, twin)
    scripts.fetch(ME, ["default"], 0, [twin, twin, twin], now=NOW)
    assert items(r, k.inflight(ME)) == [other]
    assert counter(r, k.stat("processed")) == 2


def test_a_queue_key_of_the_wrong_type_is_skipped_and_reported(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    # A key someone SET by hand must not stop the queues after it (nor undo the moves before it).
    a = job("a", "a")
    r.lpush(k.queue("a"), a)
    c = job("c", "c")
    r.lpush(k.queue("c"), c)
    r.set(k.queue("b"), "not a list")
    fetched = scripts.fetch(ME, ["a", "b", "c"], 5, [])
    assert fetched.jobs == [(0, a), (2, c)]  # the broken key is skipped, the others still served
    [(index, error)] = fetched.broken
    assert index == 1 and "WRONGTYPE" in error
    assert items(r, k.inflight(ME)) == [c, a]
    assert r.get(k.queue("b")) == b"not a list"


# -- fail: retry, dead, drop ----------------------------------------------------------------------------


def fail(scripts: Scripts, raw: bytes, stored: bytes, mode: str, score: float = NOW, **kw: Any) -> bool:
    return scripts.fail(ME, raw, stored, mode, score, now=NOW, **kw)


def assert_counted(r: redis.Redis, k: Keys, n: int) -> None:
    for name in ("processed", "failed"):
        daily = k.stat_daily(name, NOW)
        assert (counter(r, k.stat(name)), counter(r, daily)) == (n, n), name
        if n:
            assert 0 < r.ttl(daily) <= STATS_TTL


def test_fail_retry_moves_the_job_to_retry_and_counts_it(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    raw, other = job("x"), job("other")
    r.lpush(k.inflight(ME), raw, other)
    assert fail(scripts, raw, b"stored x", "retry", NOW + 60)
    assert scored(r, k.retry) == [(b"stored x", NOW + 60)]
    assert items(r, k.inflight(ME)) == [other]
    assert not r.exists(k.dead)
    assert_counted(r, k, 1)


def test_fail_dead_moves_the_job_to_dead(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    raw = job("x")
    r.lpush(k.inflight(ME), raw)
    assert fail(scripts, raw, b"stored x", "dead", NOW, dead_cutoff=NOW - 100, dead_max_jobs=10)
    assert scored(r, k.dead) == [(b"stored x", NOW)]
    assert not r.exists(k.retry, k.inflight(ME))
    assert_counted(r, k, 1)


def test_fail_drop_stores_the_job_nowhere_but_counts_it(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    raw = job("x")
    r.lpush(k.inflight(ME), raw)
    assert fail(scripts, raw, b"stored x", "drop", 0.0)
    assert not r.exists(k.retry, k.dead, k.inflight(ME))
    assert_counted(r, k, 1)


@pytest.mark.parametrize("mode", ["retry", "dead", "drop"])
def test_fail_sent_again_after_a_lost_reply_does_nothing(
    scripts: Scripts, k: Keys, r: redis.Redis, mode: str
) -> None:
    raw = job("x")
    r.lpush(k.inflight(ME), raw)
    options: dict[str, Any] = {"dead_cutoff": NOW - 100, "dead_max_jobs": 10} if mode == "dead" else {}
    assert fail(scripts, raw, b"first attempt", mode, **options)
    # The caller re-sends (with a failure record built again): the entry is gone, nothing happens.
    assert not fail(scripts, raw, b"second attempt", mode, **options)
    zset = k.retry if mode == "retry" else k.dead
    assert members(r, zset) == ([] if mode == "drop" else [b"first attempt"])
    assert_counted(r, k, 1)


def test_fail_of_a_job_no_longer_in_the_private_list_does_nothing(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    # Pushed back or recovered meanwhile: it runs again from its queue, storing it too would double it.
    assert not fail(scripts, job("gone"), b"stored", "retry")
    assert not fail(scripts, job("gone"), b"stored", "dead", dead_cutoff=NOW, dead_max_jobs=0)
    assert not r.exists(k.retry, k.dead)
    assert_counted(r, k, 0)


def test_fail_dead_drops_entries_older_than_the_cutoff(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    r.zadd(k.dead, {b"too old": NOW - 1000, b"at the cutoff": NOW - 100, b"recent": NOW - 10})
    raw = job("x")
    r.lpush(k.inflight(ME), raw)
    assert fail(scripts, raw, b"new", "dead", dead_cutoff=NOW - 100, dead_max_jobs=10)
    assert members(r, k.dead) == [b"at the cutoff", b"recent", b"new"]


def test_fail_dead_keeps_at_most_dead_max_jobs_the_newest(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    r.zadd(k.dead, {b"d1": NOW - 3, b"d2": NOW - 2, b"d3": NOW - 1})
    raw = job("x")
    r.lpush(k.inflight(ME), raw)
    assert fail(scripts, raw, b"new", "dead", dead_cutoff=0.0, dead_max_jobs=2)
    assert members(r, k.dead) == [b"d3", b"new"]


def test_fail_retry_trims_nothing(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    r.zadd(k.retry, {b"old retry": 1.0})
    r.zadd(k.dead, {b"old dead": 1.0})
    raw = job("x")
    r.lpush(k.inflight(ME), raw)
    assert fail(scripts, raw, b"new", "retry", NOW, dead_cutoff=NOW, dead_max_jobs=0)
    assert members(r, k.retry) == [b"old retry", b"new"]
    assert members(r, k.dead) == [b"old dead"]


def test_fail_of_identical_payloads_stores_each_once(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    twin = job("twin")
    r.lpush(k.inflight(ME), twin, twin)
    assert fail(scripts, twin, b"first twin failed", "retry", NOW + 1)
    assert items(r, k.inflight(ME)) == [twin]
    assert fail(scripts, twin, b"second twin failed", "retry", NOW + 2)
    assert not r.exists(k.inflight(ME))
    assert not fail(scripts, twin, b"a third?", "retry", NOW + 3)
    assert members(r, k.retry) == [b"first twin failed", b"second twin failed"]
    assert_counted(r, k, 2)


# -- pushback: back to the head of the queue ------------------------------------------------------------


def test_push_back_puts_jobs_at_the_head_of_their_queues(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    waiting, mine, low = job("waiting"), job("mine"), job("low", "low")
    r.lpush(k.queue("default"), waiting)
    r.lpush(k.inflight(ME), mine, low)
    assert scripts.push_back(ME, [(mine, "default"), (low, "low")], NOW) == 2
    assert not r.exists(k.inflight(ME))
    # The head is what the next fetch takes: the pushed-back job comes before the one that waited.
    assert scripts.fetch("other", ["default"], 1, []).jobs == [(0, mine)]
    assert items(r, k.queue("default")) == [waiting]
    assert items(r, k.queue("low")) == [low]


def test_push_back_sends_an_undecodable_job_to_dead_unchanged(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    bad = b"\xff not json"
    r.lpush(k.inflight(ME), bad)
    assert scripts.push_back(ME, [(bad, None)], NOW) == 1
    assert scored(r, k.dead) == [(bad, NOW)]
    assert not r.exists(k.inflight(ME))
    assert r.keys(k.queue("*")) == []


def test_push_back_skips_a_job_no_longer_in_the_private_list(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    here, gone = job("here"), job("gone")
    r.lpush(k.inflight(ME), here)
    assert scripts.push_back(ME, [(gone, "default"), (here, "default"), (b"bad", None)], NOW) == 1
    assert items(r, k.queue("default")) == [here]
    assert not r.exists(k.dead, k.inflight(ME))


def test_push_back_sent_again_moves_nothing_twice(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    mine, bad = job("mine"), b"bad"
    r.lpush(k.inflight(ME), mine, bad)
    pairs: list[tuple[bytes, str | None]] = [(mine, "default"), (bad, None)]
    assert scripts.push_back(ME, pairs, NOW) == 2
    assert scripts.push_back(ME, pairs, NOW + 1) == 0
    assert items(r, k.queue("default")) == [mine]
    assert scored(r, k.dead) == [(bad, NOW)]


def test_push_back_of_identical_payloads_moves_one_per_entry(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    twin = job("twin")
    r.lpush(k.inflight(ME), twin, twin)
    assert scripts.push_back(ME, [(twin, "default")], NOW) == 1
    assert items(r, k.inflight(ME)) == [twin]
    # Two pairs, one entry left: one moves, the other finds nothing (never a third copy).
    assert scripts.push_back(ME, [(twin, "default"), (twin, "default")], NOW) == 1
    assert items(r, k.queue("default")) == [twin, twin]
    assert not r.exists(k.inflight(ME))


def test_push_back_of_nothing_is_zero(scripts: Scripts) -> None:
    assert scripts.push_back(ME, [], NOW) == 0


# -- schedule: due members of schedule/retry to their queues ---------------------------------------------


def test_schedule_moves_members_to_the_back_of_their_queues(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    waiting = job("waiting")
    r.lpush(k.queue("default"), waiting)
    m1, m2 = b"member 1", b"member 2"
    r.zadd(k.schedule, {m1: NOW - 2, m2: NOW - 1, b"future": NOW + 3600})
    moved = scripts.schedule(k.schedule, [(m1, b"job 1", "default"), (m2, b"job 2", "low")], NOW)
    assert moved == 2
    # The job as given (with its fresh enqueued_at) goes in, behind what already waited.
    assert items(r, k.queue("default")) == [b"job 1", waiting]
    assert items(r, k.queue("low")) == [b"job 2"]
    assert set_members(r, k.queues) == {b"default", b"low"}
    assert members(r, k.schedule) == [b"future"]


def test_schedule_works_on_the_zset_it_is_given(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    r.zadd(k.retry, {b"m": NOW - 1})
    r.zadd(k.schedule, {b"m": NOW - 1})
    assert scripts.schedule(k.retry, [(b"m", b"job", "default")], NOW) == 1
    assert not r.exists(k.retry)
    assert members(r, k.schedule) == [b"m"]


def test_schedule_sends_an_undecodable_member_to_dead_unchanged(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    bad = b"\xff not json"
    r.zadd(k.schedule, {bad: NOW - 1})
    assert scripts.schedule(k.schedule, [(bad, None, "")], NOW) == 1
    assert scored(r, k.dead) == [(bad, NOW)]
    assert not r.exists(k.schedule, k.queues)
    assert r.keys(k.queue("*")) == []


def test_schedule_skips_a_member_already_gone(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    assert scripts.schedule(k.schedule, [(b"gone", b"job", "default"), (b"bad gone", None, "")], NOW) == 0
    assert not r.exists(k.queue("default"), k.queues, k.dead)


def test_schedule_called_twice_with_the_same_members_moves_each_once(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    entries: list[tuple[bytes, bytes | None, str]] = [(b"m1", b"job 1", "default"), (b"bad", None, "")]
    r.zadd(k.schedule, {b"m1": NOW - 1, b"bad": NOW - 1})
    assert scripts.schedule(k.schedule, entries, NOW) == 2
    assert scripts.schedule(k.schedule, entries, NOW + 1) == 0
    assert items(r, k.queue("default")) == [b"job 1"]
    assert scored(r, k.dead) == [(b"bad", NOW)]


def test_schedule_with_a_member_listed_twice_moves_it_once(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    r.zadd(k.schedule, {b"m": NOW - 1})
    assert scripts.schedule(k.schedule, [(b"m", b"job", "default"), (b"m", b"job", "default")], NOW) == 1
    assert items(r, k.queue("default")) == [b"job"]


def test_schedule_from_two_clients_at_once_moves_each_member_once(
    scripts: Scripts, k: Keys, r: redis.Redis, redis_url: str
) -> None:
    # Every worker polls: two pollers read the same due members and both call the script with them.
    n = 200
    entries: list[tuple[bytes, bytes | None, str]] = [
        (f"m{i}".encode(), f"job {i}".encode(), "q") for i in range(n)
    ]
    r.zadd(k.schedule, {m: NOW - 1 for m, _, _ in entries})
    start = threading.Barrier(2)
    moved: list[int] = []

    def poll() -> None:
        client = connection.connect(redis_url)
        other = Scripts(client, k)
        start.wait()
        for i in range(0, n, 10):  # in small batches, so the two interleave
            moved.append(other.schedule(k.schedule, entries[i : i + 10], NOW))
        client.close()

    threads = [threading.Thread(target=poll) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(moved) == n
    queued = items(r, k.queue("q"))
    assert len(queued) == n
    assert Counter(queued) == Counter(job for _, job, _ in entries)
    assert not r.exists(k.schedule)


# -- recover: a dead worker's private list ---------------------------------------------------------------


def recovery(raw: bytes, queue: str | None = "default") -> tuple[bytes, str | None, str, bytes]:
    """What recovery passes for a job: (raw, queue, crash counter id, the job as poison)."""
    jid = f"jid-of-{raw.decode(errors='replace')}"
    return (raw, queue, jid, b"poison " + raw)


def recover(
    scripts: Scripts, jobs: list[tuple[bytes, str | None, str, bytes]], *, force: bool = False
) -> Recovered | None:
    return scripts.recover(ME, jobs, force=force, crash_ttl=3600, poison_crashes=3, now=NOW)


def dead_worker(r: redis.Redis, k: Keys, *raws: bytes) -> None:
    r.sadd(k.swarmd_workers, ME, "someone else")
    if raws:
        r.lpush(k.inflight(ME), *raws)


def test_recover_leaves_a_live_worker_alone(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    dead_worker(r, k, b"a")
    r.set(k.alive(ME), "1", ex=60)
    assert recover(scripts, [recovery(b"a")]) is None
    assert items(r, k.inflight(ME)) == [b"a"]
    assert set_members(r, k.swarmd_workers) == {ME.encode(), b"someone else"}
    assert r.keys(k.crashes("*")) == []
    assert not r.exists(k.queue("default"))


def test_recover_with_force_ignores_the_liveness_key(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    # The supervisor saw the process die: its liveness key has not expired yet.
    dead_worker(r, k, b"a")
    r.set(k.alive(ME), "1", ex=60)
    assert recover(scripts, [recovery(b"a")], force=True) == Recovered(1, 0)
    assert items(r, k.queue("default")) == [b"a"]


def test_recover_pushes_jobs_to_the_head_and_counts_a_crash_each(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    r.lpush(k.queue("default"), b"waiting")
    dead_worker(r, k, b"a", b"b")
    assert recover(scripts, [recovery(b"b"), recovery(b"a")]) == Recovered(2, 0)
    assert scripts.fetch("other", ["default"], 2, []).jobs == [(0, b"a"), (0, b"b")]
    for raw in (b"a", b"b"):
        crashes = k.crashes(f"jid-of-{raw.decode()}")
        assert counter(r, crashes) == 1
        assert 0 < r.ttl(crashes) <= 3600
    assert not r.exists(k.inflight(ME))
    assert set_members(r, k.swarmd_workers) == {b"someone else"}


def test_recover_sends_a_job_to_dead_as_poison_at_the_crash_limit(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    dead_worker(r, k, b"a", b"b")
    r.set(k.crashes("jid-of-a"), 2)  # two crashes already: this one is the third
    assert recover(scripts, [recovery(b"a"), recovery(b"b")]) == Recovered(1, 1)
    assert scored(r, k.dead) == [(b"poison a", NOW)]
    assert items(r, k.queue("default")) == [b"b"]
    assert not r.exists(k.crashes("jid-of-a"))
    assert counter(r, k.crashes("jid-of-b")) == 1


def test_recover_sends_an_undecodable_job_to_dead_unchanged(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    dead_worker(r, k, b"\xff bad")
    assert recover(scripts, [(b"\xff bad", None, "sha-of-bad", b"\xff bad")]) == Recovered(0, 1)
    assert scored(r, k.dead) == [(b"\xff bad", NOW)]
    assert r.keys(k.crashes("*")) == []
    assert not r.exists(k.inflight(ME))


def test_recover_keeps_the_registry_entry_while_the_list_holds_jobs(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    dead_worker(r, k, b"a", b"b")
    assert recover(scripts, [recovery(b"b")]) == Recovered(1, 0)  # one batch of two
    assert items(r, k.inflight(ME)) == [b"a"]
    assert ME.encode() in set_members(r, k.swarmd_workers)
    assert recover(scripts, [recovery(b"a")]) == Recovered(1, 0)
    assert ME.encode() not in set_members(r, k.swarmd_workers)


def test_recover_of_an_empty_list_only_forgets_the_worker(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    dead_worker(r, k)
    assert recover(scripts, []) == Recovered(0, 0)
    assert set_members(r, k.swarmd_workers) == {b"someone else"}


def test_recover_sent_again_moves_nothing_twice(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    dead_worker(r, k, b"a", b"\xff bad")
    jobs = [recovery(b"a"), (b"\xff bad", None, "sha", b"\xff bad")]
    assert recover(scripts, jobs) == Recovered(1, 1)
    assert recover(scripts, jobs) == Recovered(0, 0)
    assert items(r, k.queue("default")) == [b"a"]
    assert members(r, k.dead) == [b"\xff bad"]
    assert counter(r, k.crashes("jid-of-a")) == 1  # one crash, counted once


def test_recover_of_identical_payloads_requeues_both_once(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    dead_worker(r, k, b"twin", b"twin", b"other")
    # A batch that names the twin once recovers one copy; the other stays for the next batch.
    assert recover(scripts, [recovery(b"twin")]) == Recovered(1, 0)
    assert sorted(items(r, k.inflight(ME))) == [b"other", b"twin"]
    assert ME.encode() in set_members(r, k.swarmd_workers)
    jobs = [recovery(b"twin"), recovery(b"twin"), recovery(b"other")]
    assert recover(scripts, jobs) == Recovered(2, 0)  # the second twin pair finds nothing
    assert sorted(items(r, k.queue("default"))) == [b"other", b"twin", b"twin"]
    assert not r.exists(k.inflight(ME))
    # The copies share a jid, so they share the crash counter: each copy counted one crash.
    assert counter(r, k.crashes("jid-of-twin")) == 2


# -- leave: a clean exit --------------------------------------------------------------------------------


def registered(r: redis.Redis, k: Keys, identity: str) -> None:
    r.sadd(k.processes, identity)
    r.sadd(k.swarmd_workers, identity)
    r.hset(k.work(identity), "tid", "{}")
    r.hset(k.workers(identity), "tid", "{}")
    r.set(k.alive(identity), "1", ex=60)


def test_leave_with_an_empty_private_list_removes_every_trace(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    registered(r, k, ME)
    registered(r, k, "other")
    assert scripts.leave(ME) is True
    assert set_members(r, k.processes) == set_members(r, k.swarmd_workers) == {b"other"}
    assert not r.exists(k.work(ME), k.workers(ME), k.alive(ME))
    assert r.exists(k.work("other"), k.workers("other"), k.alive("other")) == 3


def test_leave_keeps_the_registry_entry_while_the_private_list_holds_jobs(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    # A fetch that raced the exit: the job stays, and with the liveness key gone anyone recovers it.
    registered(r, k, ME)
    r.lpush(k.inflight(ME), b"late")
    assert scripts.leave(ME) is False
    assert set_members(r, k.swarmd_workers) == {ME.encode()}
    assert items(r, k.inflight(ME)) == [b"late"]
    assert not r.exists(k.work(ME), k.workers(ME), k.alive(ME))
    assert ME.encode() not in set_members(r, k.processes)
    assert scripts.leave(ME) is False  # again (a lost reply): the same answer, nothing else changes
    assert items(r, k.inflight(ME)) == [b"late"]
