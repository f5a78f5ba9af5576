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
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

from swarmd import connection, payload
from swarmd.keys import STATS_TTL, Keys
from swarmd.scripts import Recovered, Rescue, Scripts, crash_id
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


def test_fetch_takes_each_queues_share_first_then_the_rest_in_order(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    a = [job(f"a{i}", "a") for i in range(5)]
    b = [job(f"b{i}", "b") for i in range(2)]
    r.lpush(k.queue("a"), *a)
    r.lpush(k.queue("b"), *b)
    # Shares a:2, b:1 of 4: two from a, one from b, then the fourth from the queues in order (a).
    got = scripts.fetch(ME, ["a", "b"], 4, [], shares=[2, 1]).jobs
    assert got == [(0, a[0]), (0, a[1]), (1, b[0]), (0, a[2])]
    # A share beyond what a queue holds: the rest comes from the others.
    got = scripts.fetch(ME, ["b", "a"], 3, [], shares=[3, 0]).jobs
    assert got == [(0, b[1]), (1, a[3]), (1, a[4])]
    assert not r.exists(k.queue("a"), k.queue("b"))
    with pytest.raises(ValueError, match="one share per queue"):
        scripts.fetch(ME, ["a", "b"], 1, [], shares=[1])


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
    # With shares (weighted order) it is tried in both passes and still reported once.
    a2 = job("a2", "a")
    r.lpush(k.queue("a"), a2)
    fetched = scripts.fetch(ME, ["b", "a"], 3, [], shares=[2, 1])
    assert fetched.jobs == [(1, a2)]
    [(index, error)] = fetched.broken
    assert index == 0 and "WRONGTYPE" in error


def test_fetch_in_quarantine_mode_takes_from_the_quarantine_list_only(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    s1, s2, queued, done = job("s1"), job("s2"), job("queued"), job("done")
    r.lpush(k.inflight(ME), done)
    r.rpush(k.quarantine, s2, s1)  # s1 at the head (the right end), as recovery and push back put it
    r.lpush(k.queue("default"), queued)
    # The queues it is given are ignored; the index of each job is 0; acks work as ever.
    fetched = scripts.fetch(ME, ["default"], 5, [done], now=NOW, quarantine=True)
    assert (fetched.jobs, fetched.broken) == ([(0, s1), (0, s2)], [])
    assert items(r, k.inflight(ME)) == [s2, s1]
    assert items(r, k.queue("default")) == [queued]
    assert not r.exists(k.quarantine)
    assert counter(r, k.stat("processed")) == 1


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


def test_push_back_in_quarantine_mode_puts_jobs_at_the_head_of_the_quarantine_list(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    # A quarantine worker's jobs, or a recycled worker's suspects: they leave quarantine only by
    # running alone, never by going back to their queues.
    waiting, a, low = job("waiting"), job("a"), job("low", "low")
    r.rpush(k.quarantine, waiting)
    r.lpush(k.inflight(ME), a, low, b"garbage")
    jobs: list[tuple[bytes, str | None]] = [(a, "default"), (low, "low"), (b"garbage", None)]
    assert scripts.push_back(ME, jobs, NOW, quarantine=True) == 3
    assert items(r, k.quarantine) == [waiting, a, low]  # the head is the right end: low is next
    assert scored(r, k.dead) == [(b"garbage", NOW)]  # undecodable: to `dead` unchanged, as ever
    assert r.keys(k.queue("*")) == []
    assert not r.exists(k.inflight(ME))
    assert scripts.push_back(ME, jobs, NOW, quarantine=True) == 0  # sent again: nothing moves twice


def test_push_back_sends_an_entry_redis_cannot_take_to_dead_and_the_others_back(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    # A queue name that is no valid UTF-8: redis-py refuses the batch, the entries are sent again one
    # at a time, and that one goes to `dead` unchanged.
    a, bad, b = job("a"), b"bad", job("b")
    r.lpush(k.inflight(ME), a, bad, b)
    assert scripts.push_back(ME, [(a, "default"), (bad, "\udcff"), (b, "default")], NOW) == 3
    assert items(r, k.queue("default")) == [a, b]
    assert scored(r, k.dead) == [(bad, NOW)]
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


def test_schedule_sends_a_member_whose_queue_redis_cannot_take_to_dead_and_moves_the_others(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    r.zadd(k.retry, {b"m1": NOW - 3, b"bad": NOW - 2, b"m2": NOW - 1})
    entries: list[tuple[bytes, bytes | None, str]] = [
        (b"m1", b"job 1", "default"),
        (b"bad", b"job bad", "\udcff"),
        (b"m2", b"job 2", "default"),
    ]
    assert scripts.schedule(k.retry, entries, NOW) == 3
    assert items(r, k.queue("default")) == [b"job 2", b"job 1"]
    assert scored(r, k.dead) == [(b"bad", NOW)]  # the member as it was, not the job built from it
    assert not r.exists(k.retry)


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
# recovery.py decides each job's fate (test_recovery.py); here the script carries out the fates it is given.


def suspect(raw: bytes) -> Rescue:
    """A job of an ordinary worker its supervisor saw die: to the quarantine list, uncounted."""
    return Rescue(raw, "quarantine", crash_id(raw))


def alone(raw: bytes) -> Rescue:
    """A job that ran alone in a quarantine worker: counted, and the job as it goes to dead as poison."""
    return Rescue(raw, "count", f"jid-of-{raw.decode(errors='replace')}", b"poison " + raw)


def vanished(raw: bytes, queue: str = "default") -> Rescue:
    """A job of an ordinary worker that vanished unseen: back to its queue."""
    return Rescue(raw, "requeue", f"jid-of-{raw.decode(errors='replace')}", queue=queue)


def undecodable(raw: bytes) -> Rescue:
    return Rescue(raw, "dead", crash_id(raw))


def recover(scripts: Scripts, jobs: Sequence[Rescue], *, force: bool = False) -> Recovered | None:
    return scripts.recover(ME, jobs, force=force, crash_ttl=3600, poison_crashes=2, vanish_limit=3, now=NOW)


def dead_worker(r: redis.Redis, k: Keys, *raws: bytes) -> None:
    """ME died holding ``raws`` (newest first); its records are still there, and another worker's."""
    for identity in (ME, "someone else"):
        r.sadd(k.swarmd_workers, identity)
        r.sadd(k.processes, identity)
        r.hset(k.process(identity), "busy", len(raws))
        r.hset(k.work(identity), "tid", "{}")
        r.hset(k.workers(identity), "tid", "{}")
    if raws:
        r.lpush(k.inflight(ME), *reversed(raws))


def records(r: redis.Redis, k: Keys, identity: str) -> list[str]:
    """Which records of the process are left: swarmd's registry, Sidekiq's set and hashes, liveness."""
    left = [
        name
        for name, key in (("workers", k.swarmd_workers), ("processes", k.processes))
        if r.sismember(key, identity)
    ]
    hashes = {"process": k.process(identity), "work": k.work(identity), "workers hash": k.workers(identity)}
    left += [name for name, key in hashes.items() if r.exists(key)]
    return left + (["alive"] if r.exists(k.alive(identity)) else [])


ALL_RECORDS = ["workers", "processes", "process", "work", "workers hash"]


def test_recover_leaves_a_live_worker_alone(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    dead_worker(r, k, b"a", b"b")
    r.set(k.alive(ME), "1", ex=60)
    assert recover(scripts, [suspect(b"b"), alone(b"a")]) is None
    assert items(r, k.inflight(ME)) == [b"a", b"b"]
    assert records(r, k, ME) == [*ALL_RECORDS, "alive"]
    assert r.keys(k.crashes("*")) == []
    assert not r.exists(k.quarantine, k.dead)


def test_recover_with_force_ignores_the_liveness_key_and_deletes_it_with_the_records(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    # The supervisor saw the process die: its liveness key has not expired yet.
    dead_worker(r, k, b"a")
    r.set(k.alive(ME), "1", ex=60)
    assert recover(scripts, [suspect(b"a")], force=True) == Recovered(1, 0, 0)
    assert items(r, k.quarantine) == [b"a"]
    assert records(r, k, ME) == []
    assert records(r, k, "someone else") == ALL_RECORDS


def test_recover_sends_suspects_to_the_quarantine_list_uncounted(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    r.rpush(k.quarantine, b"waiting")
    dead_worker(r, k, b"a", b"b")
    assert recover(scripts, [suspect(b"b"), suspect(b"a")]) == Recovered(2, 0, 0)
    assert Counter(items(r, k.quarantine)) == Counter([b"waiting", b"a", b"b"])
    assert r.keys(k.crashes("*")) == []
    assert not r.exists(k.inflight(ME), k.dead, k.queue("default"))
    assert records(r, k, ME) == []
    assert set_members(r, k.swarmd_workers) == {b"someone else"}


def test_recover_counts_a_crash_of_a_job_that_ran_alone_and_sends_it_back_to_quarantine(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    dead_worker(r, k, b"a")
    assert recover(scripts, [alone(b"a")]) == Recovered(1, 0, 0)
    assert items(r, k.quarantine) == [b"a"]  # unchanged: the poison version is only for `dead`
    crashes = k.crashes("jid-of-a")
    assert counter(r, crashes) == 1
    assert 0 < r.ttl(crashes) <= 3600
    assert not r.exists(k.dead)


def test_recover_sends_a_job_to_dead_as_poison_at_the_crash_limit(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    dead_worker(r, k, b"a", b"b")
    r.set(k.crashes("jid-of-a"), 1)  # one crash already: this one is the second
    assert recover(scripts, [alone(b"a"), alone(b"b")]) == Recovered(1, 1, 0)
    assert scored(r, k.dead) == [(b"poison a", NOW)]
    assert items(r, k.quarantine) == [b"b"]
    assert not r.exists(k.crashes("jid-of-a"))
    assert counter(r, k.crashes("jid-of-b")) == 1


def test_recover_puts_a_vanished_workers_jobs_back_and_counts_the_vanishing(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    dead_worker(r, k, b"a", b"b")
    assert recover(scripts, [vanished(b"a"), vanished(b"b", "low")]) == Recovered(0, 0, 0, requeued=2)
    assert items(r, k.queue("default")) == [b"a"] and items(r, k.queue("low")) == [b"b"]
    assert not r.exists(k.quarantine, k.dead)
    assert counter(r, k.vanished("jid-of-a")) == 1
    assert 0 < r.ttl(k.vanished("jid-of-a")) <= 3600
    assert not r.exists(k.crashes("jid-of-a"))  # a vanishing is not a crash
    # The third worker that vanishes holding the same job: a job that takes its swarm down with it.
    r.set(k.vanished("jid-of-a"), 2)
    dead_worker(r, k, b"a")
    assert recover(scripts, [vanished(b"a")]) == Recovered(1, 0, 0)
    assert items(r, k.quarantine) == [b"a"] and items(r, k.queue("default")) == [b"a"]
    assert not r.exists(k.vanished("jid-of-a"))


def test_recover_sends_an_undecodable_job_to_dead_unchanged(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    dead_worker(r, k, b"\xff bad")
    assert recover(scripts, [undecodable(b"\xff bad")]) == Recovered(0, 0, 1)
    assert scored(r, k.dead) == [(b"\xff bad", NOW)]
    assert r.keys(k.crashes("*")) == []
    assert not r.exists(k.inflight(ME), k.quarantine)


def test_recover_keeps_the_workers_records_while_the_list_holds_jobs(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    dead_worker(r, k, b"a", b"b")
    assert recover(scripts, [suspect(b"b")]) == Recovered(1, 0, 0)  # one batch of two
    assert items(r, k.inflight(ME)) == [b"a"]
    assert records(r, k, ME) == ALL_RECORDS
    assert recover(scripts, [suspect(b"a")]) == Recovered(1, 0, 0)
    assert records(r, k, ME) == []


def test_recover_of_an_empty_list_only_removes_the_workers_records(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    dead_worker(r, k)
    assert recover(scripts, []) == Recovered(0, 0, 0)
    assert records(r, k, ME) == []
    assert records(r, k, "someone else") == ALL_RECORDS
    assert not r.exists(k.quarantine, k.dead)


def test_recover_sent_again_moves_and_counts_nothing_twice(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    # The same call twice: the first reply was lost, or a second recoverer got past the expired lock.
    dead_worker(r, k, b"s", b"a", b"p", b"\xff bad", b"v")
    r.set(k.crashes("jid-of-p"), 1)
    jobs = [suspect(b"s"), alone(b"a"), alone(b"p"), undecodable(b"\xff bad"), vanished(b"v")]
    assert recover(scripts, jobs) == Recovered(2, 1, 1, requeued=1)
    assert recover(scripts, jobs) == Recovered(0, 0, 0)
    assert items(r, k.queue("default")) == [b"v"]
    assert counter(r, k.vanished("jid-of-v")) == 1
    assert Counter(items(r, k.quarantine)) == Counter([b"s", b"a"])
    assert Counter(members(r, k.dead)) == Counter([b"poison p", b"\xff bad"])
    assert counter(r, k.crashes("jid-of-a")) == 1  # one crash, counted once
    assert not r.exists(k.crashes("jid-of-p"))  # not counted again after it went to dead


def test_recover_of_identical_payloads_moves_one_per_entry(scripts: Scripts, k: Keys, r: redis.Redis) -> None:
    dead_worker(r, k, b"twin", b"twin", b"other")
    # A batch that names the twin once recovers one copy; the other stays for the next batch.
    assert recover(scripts, [suspect(b"twin")]) == Recovered(1, 0, 0)
    assert sorted(items(r, k.inflight(ME))) == [b"other", b"twin"]
    assert records(r, k, ME) == ALL_RECORDS
    jobs = [suspect(b"twin"), suspect(b"twin"), suspect(b"other")]
    assert recover(scripts, jobs) == Recovered(2, 0, 0)  # the second twin entry finds nothing
    assert Counter(items(r, k.quarantine)) == Counter([b"twin", b"twin", b"other"])  # never a third
    assert not r.exists(k.inflight(ME))
    assert records(r, k, ME) == []


def test_recover_sends_an_entry_redis_cannot_take_to_dead_and_the_others_on(
    scripts: Scripts, k: Keys, r: redis.Redis
) -> None:
    # A crash counter id that is no valid UTF-8 (redis-py refuses to encode the key): the batch fails,
    # each entry is sent again alone, and that one goes to `dead` unchanged.
    dead_worker(r, k, b"good", b"bad", b"s")
    jobs = [alone(b"good"), Rescue(b"bad", "count", "\udcff", b"poison bad"), suspect(b"s")]
    assert recover(scripts, jobs) == Recovered(2, 0, 1)
    assert Counter(items(r, k.quarantine)) == Counter([b"good", b"s"])
    assert scored(r, k.dead) == [(b"bad", NOW)]
    assert counter(r, k.crashes("jid-of-good")) == 1
    assert records(r, k, ME) == []


def test_crash_id_is_one_per_distinct_job() -> None:
    assert crash_id(b"x") == crash_id(b"x") != crash_id(b"y")


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
