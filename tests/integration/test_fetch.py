"""`swarmd.fetch.Fetcher` in-process, against a real Redis, driven by threads the test owns.

The processor threads here do what `swarmd.processor.Processor` does with a job (``get``, then
``ack``), but each records the job's token and, when the test asks, holds the job until told to
finish it. What is checked is where every job is: taken by exactly one processor, in the private
list while held, back in its queue after quiet or a lost reply, never lost and never doubled.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

import pytest
import redis

from swarmd import connection, payload
from swarmd.config import QueueOrder, QueueSpec
from swarmd.devredis import RedisServer
from swarmd.fetch import Fetcher
from swarmd.keys import Keys
from swarmd.recovery import recover_worker
from swarmd.scripts import Recovered, Scripts
from tests.conftest import wait_until
from tests.integration.conftest import free_port
from tests.integration.faultproxy import FaultProxy
from tests.replies import counter, items, members

ME = "host:1:fetchtest"
KEYS = Keys()
QUEUE = KEYS.queue("default")
INFLIGHT = KEYS.inflight(ME)


def job(token: str, queue: str = "default") -> bytes:
    return payload.encode(payload.for_queue(payload.build("Record", [token], None, {"queue": queue})))


def token_of(raw: bytes) -> str:
    token: str = json.loads(raw)["args"][0]
    return token


def tokens(raws: list[bytes]) -> list[str]:
    return [token_of(raw) for raw in raws]


def blocked_in_blmove(r: redis.Redis) -> int:
    """Connections blocked in BLMOVE right now (flag ``b``; ``cmd`` alone is the last command run)."""
    return sum(1 for c in r.client_list() if c.get("cmd") == "blmove" and "b" in c.get("flags", ""))


class Processors:
    """``n`` processor threads: each takes jobs with ``fetcher.get()`` until it returns None, records
    every job's token, and acks it; with ``hold`` only once the test calls `finish` for its token."""

    def __init__(self, fetcher: Fetcher, n: int, *, hold: bool = False) -> None:
        self.fetcher = fetcher
        self.hold = hold
        self._lock = threading.Lock()
        self._taken: list[str] = []
        self._go: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self._all_go = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, name=f"test-processor-{i}", daemon=True) for i in range(n)
        ]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        while (work := self.fetcher.get()) is not None:
            token = token_of(work.raw)
            with self._lock:
                self._taken.append(token)
                go = self._go[token]
            while self.hold and not (go.wait(0.02) or self._all_go.is_set()):
                pass
            self.fetcher.ack(work)

    def taken(self) -> list[str]:
        with self._lock:
            return list(self._taken)

    def finish(self, token: str) -> None:
        with self._lock:
            self._go[token].set()

    def finish_all(self) -> None:
        self._all_go.set()

    def exited(self) -> bool:
        return not any(t.is_alive() for t in self.threads)


class Rig:
    """Fetchers and processors made by one test; all stopped and joined at its end."""

    def __init__(self) -> None:
        self.fetchers: list[Fetcher] = []
        self.clients: list[connection.Redis] = []
        self.crews: list[Processors] = []

    def fetcher(self, url: str, *queues: str, fetch_timeout: float = 30.0, ahead_max: int = 0) -> Fetcher:
        """A fetcher for ``ME`` on ``queues`` (strict order). The BLMOVE timeout is long by default:
        a waiter seen blocked stays blocked until a job comes or `Fetcher.stop` unblocks it."""
        client = connection.connect(url, blocking_timeout=fetch_timeout)
        self.clients.append(client)
        specs = [QueueSpec(name, 0) for name in queues or ("default",)]
        f = Fetcher(Scripts(client, KEYS), ME, specs, QueueOrder.STRICT, fetch_timeout, ahead_max=ahead_max)
        self.fetchers.append(f)
        return f

    def processors(self, fetcher: Fetcher, n: int, *, hold: bool = False) -> Processors:
        crew = Processors(fetcher, n, hold=hold)
        self.crews.append(crew)
        return crew

    def close(self) -> None:
        for crew in self.crews:
            crew.finish_all()
        for f in self.fetchers:
            f.stop(time.monotonic() + 10)
        for crew in self.crews:
            for t in crew.threads:
                t.join(10)
        for client in self.clients:
            client.close()
        assert all(crew.exited() for crew in self.crews), "a processor thread never left get()"


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


@pytest.fixture
def proxied(redis_factory: Callable[..., RedisServer]) -> Iterator[tuple[redis.Redis, FaultProxy]]:
    """A private Redis on a TCP port (a direct client to it) and a fault proxy in front of it."""
    server = redis_factory(port=free_port())
    direct = redis.Redis.from_url(server.url)
    with FaultProxy(server.port or 0) as proxy:
        yield direct, proxy
    direct.close()


def flushed(f: Fetcher, r: redis.Redis) -> Callable[[], bool]:
    """Whether the private list is empty, after flushing pending acks as the worker's housekeeping
    loop does every second (an ack waits for it when another processor's fetch came back dry)."""

    def check() -> bool:
        f.flush_acks()
        return not r.exists(INFLIGHT)

    return check


def took(crew: Processors, want: Counter[str]) -> Callable[[], bool]:
    return lambda: Counter(crew.taken()) >= want


def wait_blocked(r: redis.Redis, n: int = 1) -> None:
    wait_until(lambda: blocked_in_blmove(r) >= n, 10, what=f"{n} waiter(s) blocked in BLMOVE")


# -- the leader/waiter hand-off ---------------------------------------------------------------------------


def test_idle_processors_leave_the_waiting_to_blmove_and_a_pushed_job_reaches_one(
    rig: Rig, r: redis.Redis, redis_url: str
) -> None:
    f = rig.fetcher(redis_url)
    f.start()
    crew = rig.processors(f, 2)
    # Queues empty: the leaders' fetches come back dry and the waiter blocks in BLMOVE.
    wait_blocked(r)
    r.lpush(QUEUE, job("first"))
    wait_until(lambda: crew.taken() == ["first"], 10, what="a processor to take the job")
    wait_until(flushed(f, r), 10, what="the ack")
    assert counter(r, KEYS.stat("processed")) == 1
    wait_blocked(r)
    more = [f"j{i}" for i in range(20)]
    for token in more:
        r.lpush(QUEUE, job(token))
    wait_until(lambda: len(crew.taken()) == 21, 10, what="every job taken")
    assert Counter(crew.taken()) == Counter(["first", *more])
    wait_until(flushed(f, r), 10, what="every ack")
    assert counter(r, KEYS.stat("processed")) == 21
    assert not r.exists(INFLIGHT, QUEUE)


def two_running_one_waiting(rig: Rig, r: redis.Redis, redis_url: str) -> tuple[Fetcher, Processors]:
    """Jobs a and b held by two of three processors; the third found the queue empty (dry), so the
    waiter is blocked in BLMOVE."""
    r.lpush(QUEUE, job("a"), job("b"))
    f = rig.fetcher(redis_url)
    f.start()
    crew = rig.processors(f, 3, hold=True)
    wait_until(lambda: sorted(crew.taken()) == ["a", "b"], 10, what="both jobs taken")
    wait_blocked(r)
    return f, crew


def test_a_partial_fetch_leaves_the_idle_processors_to_the_waiters(
    rig: Rig, r: redis.Redis, redis_url: str
) -> None:
    # Fewer jobs than idle processors: the queue ran dry and the third processor's job comes by BLMOVE.
    f, crew = two_running_one_waiting(rig, r, redis_url)
    assert sorted(tokens(items(r, INFLIGHT))) == ["a", "b"]
    r.lpush(QUEUE, job("c"))
    wait_until(lambda: sorted(crew.taken()) == ["a", "b", "c"], 10, what="the third processor to take c")
    assert sorted(tokens(items(r, INFLIGHT))) == ["a", "b", "c"]
    assert not r.exists(QUEUE)
    crew.finish_all()
    wait_until(flushed(f, r), 10, what="the acks")
    assert counter(r, KEYS.stat("processed")) == 3
    assert Counter(crew.taken()) == Counter("abc")


def test_waiters_on_two_queues_each_hand_their_job_over(rig: Rig, r: redis.Redis, redis_url: str) -> None:
    f = rig.fetcher(redis_url, "high", "low")
    f.start()
    crew = rig.processors(f, 2, hold=True)
    wait_blocked(r, 2)
    r.lpush(KEYS.queue("low"), job("l1", "low"))
    r.lpush(KEYS.queue("high"), job("h1", "high"))
    wait_until(lambda: sorted(crew.taken()) == ["h1", "l1"], 10, what="one job from each queue")
    assert sorted(tokens(items(r, INFLIGHT))) == ["h1", "l1"]
    assert not r.exists(KEYS.queue("low"), KEYS.queue("high"))


BUSY_SERVER = """
local t = redis.call('TIME')
local until_us = t[1] * 1000000 + t[2] + tonumber(ARGV[1]) * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
return 1
"""


def test_an_ack_made_while_a_fetch_finds_the_queue_empty_goes_out_without_a_flush(
    rig: Rig, r: redis.Redis, redis_url: str
) -> None:
    # Without the worker's housekeeping flush (none here), such an ack waited for it: up to a second
    # in which the finished job stays in the private list, and a crash would run it again.
    _, crew = two_running_one_waiting(rig, r, redis_url)
    blocker = redis.Redis.from_url(redis_url)
    busy = threading.Thread(target=blocker.eval, args=(BUSY_SERVER, 0, 2000))
    busy.start()  # Redis answers nothing for 2 s: the next fetch stays on its way
    # The two pauses only order the steps; were the machine too slow for them, the test would prove
    # less, never fail.
    time.sleep(0.3)
    crew.finish("a")  # its ack leads a fetch, which waits for Redis
    time.sleep(0.3)
    crew.finish("b")  # acked while that fetch is on its way; it will find the queue empty
    busy.join(30)
    blocker.close()
    wait_until(lambda: not r.exists(INFLIGHT), 10, what="both acks out, with no flush")
    assert counter(r, KEYS.stat("processed")) == 2


def test_jobs_that_have_not_finished_are_never_fetched_ahead(
    rig: Rig, r: redis.Redis, redis_url: str
) -> None:
    # Long jobs: a job taken ahead would wait behind them while another worker has a free thread. The
    # rate that sizes the buffer counts finished jobs; a burst of takes (a worker booting into a full
    # queue) used to look like a fast worker and took one ahead.
    r.lpush(QUEUE, *[job(f"j{i}") for i in range(10)])
    f = rig.fetcher(redis_url, ahead_max=8)
    f.start()
    first = rig.processors(f, 2, hold=True)
    wait_until(lambda: len(first.taken()) == 2, 10, what="two long jobs started")
    later = rig.processors(f, 1, hold=True)
    wait_until(lambda: len(later.taken()) == 1, 10, what="a third")
    assert r.llen(INFLIGHT) == 3
    assert r.llen(QUEUE) == 7


def test_jobs_fetched_ahead_each_run_once_and_quiet_sends_the_unstarted_back(
    rig: Rig, r: redis.Redis, redis_url: str
) -> None:
    every = [f"j{i}" for i in range(3000)]
    r.lpush(QUEUE, *[job(token) for token in every])
    f = rig.fetcher(redis_url, ahead_max=8)
    f.start()
    crew = rig.processors(f, 4)
    # Processors that never wait take jobs fast: fetches take more than the idle ones need.
    wait_until(lambda: len(crew.taken()) >= 1000, 30, what="a third of the jobs taken")
    f.quiet()
    wait_until(crew.exited, 10, what="the processors to leave get()")
    wait_until(flushed(f, r), 10, what="the acks")
    # Every job ran exactly once or is back in its queue (the buffered ones, by the quiet): none is lost,
    # none doubled, none left in the private list.
    back = tokens(items(r, QUEUE))
    assert Counter(crew.taken()) + Counter(back) == Counter(every)
    assert counter(r, KEYS.stat("processed")) == len(crew.taken())
    assert len(crew.taken()) < len(every)


# -- acks --------------------------------------------------------------------------------------------------


def test_an_ack_rides_with_the_next_fetch(rig: Rig, r: redis.Redis, redis_url: str) -> None:
    r.lpush(QUEUE, job("a"), job("b"))
    f = rig.fetcher(redis_url)
    crew = rig.processors(f, 1, hold=True)
    wait_until(lambda: crew.taken() == ["a"], 10, what="a taken")
    assert tokens(items(r, INFLIGHT)) == ["a"]
    crew.finish("a")
    wait_until(lambda: crew.taken() == ["a", "b"], 10, what="b taken")
    # No flush: the fetch that brought b carried a's ack.
    assert tokens(items(r, INFLIGHT)) == ["b"]
    assert counter(r, KEYS.stat("processed")) == 1


def test_flush_acks_sends_pending_acks(rig: Rig, r: redis.Redis, redis_url: str) -> None:
    r.lpush(QUEUE, job("a"), job("b"))
    f = rig.fetcher(redis_url)
    a, b = f.get(), f.get()  # this thread is the processor: the queue has jobs, get() does not block
    assert a is not None and b is not None
    f.ack(a)
    assert tokens(items(r, INFLIGHT)) == ["b", "a"]  # pending, not sent yet
    f.flush_acks()
    assert tokens(items(r, INFLIGHT)) == ["b"]
    assert counter(r, KEYS.stat("processed")) == 1
    f.flush_acks()  # nothing pending
    assert counter(r, KEYS.stat("processed")) == 1


def test_an_ack_whose_reply_was_lost_is_sent_again_and_counted_once(
    rig: Rig, proxied: tuple[redis.Redis, FaultProxy]
) -> None:
    direct, proxy = proxied
    direct.lpush(QUEUE, job("a"), job("b"))
    f = rig.fetcher(proxy.url)
    a, b = f.get(), f.get()
    assert a is not None and b is not None
    f.ack(a)
    proxy.drop_next_reply(b"EVALSHA", containing=b"*0\r\n")  # an ack-only fetch answers an empty array
    with pytest.raises(connection.ConnectionError):
        f.flush_acks(raise_errors=True)
    assert proxy.dropped == [b"EVALSHA"]
    assert tokens(items(direct, INFLIGHT)) == ["b"]  # Redis did it; the worker does not know
    f.flush_acks(raise_errors=True)  # sent again: removes nothing, counts nothing
    assert tokens(items(direct, INFLIGHT)) == ["b"]
    assert counter(direct, KEYS.stat("processed")) == 1


def test_a_resent_ack_never_takes_an_identical_job_still_running(
    rig: Rig, proxied: tuple[redis.Redis, FaultProxy]
) -> None:
    direct, proxy = proxied
    twin = job("twin")
    direct.lpush(QUEUE, twin, twin)  # the same bytes enqueued twice: two jobs
    f = rig.fetcher(proxy.url)
    first, second = f.get(), f.get()
    assert first is not None and second is not None  # both running
    f.ack(first)
    proxy.drop_next_reply(b"EVALSHA", containing=b"*0\r\n")
    f.flush_acks()  # the housekeeping flush: its reply is lost, the ack stays pending
    assert proxy.dropped == [b"EVALSHA"]
    direct.lpush(QUEUE, job("next"))
    nxt = f.get()  # the next fetch (after reconcile) carries the pending ack again
    assert nxt is not None and token_of(nxt.raw) == "next"
    # The worker is SIGKILLed now: the second twin was still running and must come back (to the
    # quarantine list, as every job of a dead worker's list does), beside the job fetched with the ack.
    assert recover_worker(Scripts(direct, KEYS), ME, force=True) == Recovered(2, 0, 0)
    assert Counter(tokens(items(direct, KEYS.quarantine))) == {"twin": 1, "next": 1}
    assert not direct.exists(QUEUE, INFLIGHT)


# -- quiet and stop -----------------------------------------------------------------------------------------


def test_quiet_during_a_blocking_fetch_pushes_the_job_that_arrives_back(
    rig: Rig, r: redis.Redis, redis_url: str
) -> None:
    f = rig.fetcher(redis_url)
    f.start()
    crew = rig.processors(f, 1)
    wait_blocked(r)
    f.quiet()
    wait_until(crew.exited, 10, what="the processor to get None and leave")
    assert f.is_quiet
    assert blocked_in_blmove(r) == 1  # quiet does not end the wait (its timeout is 30 s)
    raw = job("late")
    r.lpush(QUEUE, raw)
    # BLMOVE takes it into the private list; the waiter, quiet, pushes it back to the queue's head.
    wait_until(
        lambda: blocked_in_blmove(r) == 0 and items(r, QUEUE) == [raw] and not r.exists(INFLIGHT),
        10,
        what="the job back in its queue",
    )
    assert crew.taken() == []
    # Nothing is left held: an entry with the same bytes that turns up in the private list (a fetch
    # whose reply was lost) is a stranger to reconcile, which pushes it back.
    r.lmove(QUEUE, INFLIGHT, "RIGHT", "LEFT")
    f.reconcile()
    assert items(r, QUEUE) == [raw]
    assert not r.exists(INFLIGHT)


def test_stop_ends_blocked_fetches(rig: Rig, r: redis.Redis, redis_url: str) -> None:
    f = rig.fetcher(redis_url, "high", "low")
    f.start()
    crew = rig.processors(f, 2)
    wait_blocked(r, 2)
    f.stop(time.monotonic() + 20)  # the BLMOVE timeout is 30 s: only an unblock ends them in time
    assert blocked_in_blmove(r) == 0
    wait_until(crew.exited, 10, what="the processors to get None and leave")
    assert crew.taken() == []


def test_stop_without_client_permission_waits_out_the_blocking_timeout(
    rig: Rig, redis_factory: Callable[..., RedisServer]
) -> None:
    # A least-privilege ACL user may not send CLIENT: the waiters then leave at their BLMOVE timeout.
    server = redis_factory(port=free_port())
    admin = redis.Redis.from_url(server.url)
    admin.acl_setuser("app", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-client"])
    url = f"redis://app:pw@127.0.0.1:{server.port}/0"
    f = rig.fetcher(url, fetch_timeout=0.5)
    f.start()
    crew = rig.processors(f, 1)
    wait_blocked(admin)
    f.stop(time.monotonic() + 20)
    assert blocked_in_blmove(admin) == 0
    wait_until(crew.exited, 10, what="the processor to leave")
    admin.close()


# -- push back, drain, reconcile -----------------------------------------------------------------------------


def test_push_back_returns_jobs_to_the_head_of_their_queues(rig: Rig, r: redis.Redis, redis_url: str) -> None:
    r.lpush(QUEUE, job("a"), job("waiting"))
    f = rig.fetcher(redis_url)
    a = f.get()
    assert a is not None and token_of(a.raw) == "a"
    assert f.push_back([a]) == 1
    assert tokens(items(r, QUEUE)) == ["waiting", "a"]  # a is next again
    assert not r.exists(INFLIGHT)
    assert f.push_back([a]) == 0  # no longer in the private list


def test_drain_pushes_back_everything_in_the_private_list(rig: Rig, r: redis.Redis, redis_url: str) -> None:
    low, bad = job("low", "low"), b"\xff not a job"
    r.lpush(INFLIGHT, low, bad)
    r.lpush(QUEUE, job("mine"))
    f = rig.fetcher(redis_url)
    assert f.get() is not None
    assert f.drain() == 3
    assert not r.exists(INFLIGHT)
    assert tokens(items(r, QUEUE)) == ["mine"]
    assert items(r, KEYS.queue("low")) == [low]
    assert members(r, KEYS.dead) == [bad]


def test_reconcile_pushes_back_only_what_this_worker_does_not_hold(
    rig: Rig, r: redis.Redis, redis_url: str
) -> None:
    twin = job("twin")
    r.lpush(QUEUE, job("held"), twin, twin)
    f = rig.fetcher(redis_url)
    got = [f.get(), f.get()]
    assert sorted(token_of(w.raw) for w in got if w is not None) == ["held", "twin"]
    # A fetch whose reply was lost moved the second twin in: same bytes, but not held.
    r.lmove(QUEUE, INFLIGHT, "RIGHT", "LEFT")
    f.reconcile()
    assert items(r, QUEUE) == [twin]
    assert sorted(tokens(items(r, INFLIGHT))) == ["held", "twin"]
    f.reconcile()  # nothing more to do
    assert items(r, QUEUE) == [twin]


def test_release_forgets_a_job_that_left_through_another_script(
    rig: Rig, r: redis.Redis, redis_url: str
) -> None:
    raw = job("failing")
    r.lpush(QUEUE, raw)
    f = rig.fetcher(redis_url)
    work = f.get()
    assert work is not None
    # The job failed: the fail script moved it to `retry`, then the processor releases it.
    assert f.scripts.fail(ME, work.raw, b"stored", "retry", 1.0)
    f.release(work)
    # Released means not held: the same bytes turning up in the private list (the retry ran and its
    # fetch reply was lost) are a stranger to reconcile, which pushes them back.
    r.lpush(INFLIGHT, raw)
    f.reconcile()
    assert items(r, QUEUE) == [raw]
    assert not r.exists(INFLIGHT)


# -- lost replies through the fault proxy ------------------------------------------------------------------


def test_a_lost_fetch_reply_is_reconciled_and_the_job_runs_once(
    rig: Rig, proxied: tuple[redis.Redis, FaultProxy]
) -> None:
    direct, proxy = proxied
    direct.lpush(QUEUE, job("lost1"))
    proxy.drop_next_reply(b"EVALSHA", containing=b"lost1")
    f = rig.fetcher(proxy.url)
    f.start()
    crew = rig.processors(f, 1, hold=True)
    # The fetch moved lost1 into the private list and its reply never came; the next leader finds
    # it there unheld, pushes it back, and fetches it again.
    wait_until(lambda: crew.taken() == ["lost1"], 10, what="lost1 taken after the lost reply")
    assert proxy.dropped == [b"EVALSHA"]
    assert tokens(items(direct, INFLIGHT)) == ["lost1"]  # once: pushed back once, fetched once
    assert not direct.exists(QUEUE)
    crew.finish("lost1")
    wait_until(lambda: not direct.exists(INFLIGHT), 10, what="the ack")
    assert crew.taken() == ["lost1"]
    assert not direct.exists(QUEUE)
    assert counter(direct, KEYS.stat("processed")) == 1


def test_a_lost_blmove_reply_is_reconciled_and_the_job_runs_once(
    rig: Rig, proxied: tuple[redis.Redis, FaultProxy]
) -> None:
    direct, proxy = proxied
    f = rig.fetcher(proxy.url)
    f.start()
    crew = rig.processors(f, 1, hold=True)
    wait_blocked(direct)
    proxy.drop_next_reply(b"BLMOVE", containing=b"lost2")
    direct.lpush(QUEUE, job("lost2"))
    wait_until(lambda: crew.taken() == ["lost2"], 10, what="lost2 taken after the lost BLMOVE reply")
    assert proxy.dropped == [b"BLMOVE"]
    assert tokens(items(direct, INFLIGHT)) == ["lost2"]
    assert not direct.exists(QUEUE)
    crew.finish("lost2")
    wait_until(lambda: not direct.exists(INFLIGHT), 10, what="the ack")
    assert crew.taken() == ["lost2"]
    assert counter(direct, KEYS.stat("processed")) == 1
    # The waiter reconnected: the next job comes through BLMOVE again.
    wait_blocked(direct)
    direct.lpush(QUEUE, job("after"))
    wait_until(lambda: crew.taken() == ["lost2", "after"], 10, what="the next job")


def test_jobs_keep_flowing_when_redis_resets_every_connection(
    rig: Rig, proxied: tuple[redis.Redis, FaultProxy]
) -> None:
    # Reset all connections (both the leader's and the waiter's) a few times while jobs arrive.
    direct, proxy = proxied
    f = rig.fetcher(proxy.url)
    f.start()
    crew = rig.processors(f, 3)
    sent: list[str] = []
    for round_ in range(3):
        wait_blocked(direct)
        batch = [f"r{round_}-{i}" for i in range(10)]
        direct.lpush(QUEUE, *(job(t) for t in batch))
        sent += batch
        direct.client_kill_filter(_type="normal", skipme=True)
        wait_until(took(crew, Counter(sent)), 20, what=f"round {round_} taken")
    wait_until(flushed(f, direct), 20, what="every ack")
    assert Counter(crew.taken()) == Counter(sent)
    assert not direct.exists(QUEUE)


# -- bad data in Redis -------------------------------------------------------------------------------------


def wrongtype_errors(r: redis.Redis) -> int:
    """WRONGTYPE errors Redis has answered since it started (Redis >= 6.2 counts errors by kind)."""
    stat: dict[str, int] = r.info("errorstats").get("errorstat_WRONGTYPE", {})
    return int(stat.get("count", 0))


def fail_on_a_broken_queue(rig: Rig, r: redis.Redis, redis_url: str) -> tuple[Fetcher, Processors]:
    """A fetcher on queues "good" then "broken" (a string key), whose two idle processors' fetches
    (for two jobs) reach the broken key and fail, again and again; then one job pushed to "good"."""
    r.set(KEYS.queue("broken"), "not a list")
    f = rig.fetcher(redis_url, "good", "broken", fetch_timeout=0.5)
    f.start()
    crew = rig.processors(f, 2)
    errors = wrongtype_errors(r)
    wait_until(lambda: wrongtype_errors(r) > errors + 1, 10, what="fetches failing on the broken key")
    r.lpush(KEYS.queue("good"), job("g1", "good"))
    return f, crew


def test_a_queue_key_of_the_wrong_type_does_not_starve_the_other_queues(
    rig: Rig, r: redis.Redis, redis_url: str
) -> None:
    _, crew = fail_on_a_broken_queue(rig, r, redis_url)
    wait_until(lambda: crew.taken() == ["g1"], 5, what="the job of the good queue to be taken")


def test_a_queue_key_of_the_wrong_type_loses_no_job(rig: Rig, r: redis.Redis, redis_url: str) -> None:
    f, crew = fail_on_a_broken_queue(rig, r, redis_url)
    errors = wrongtype_errors(r)
    # Positive proof that fetches went on with g1 in the queue: more failures after the push.
    wait_until(lambda: wrongtype_errors(r) > errors + 1, 10, what="more fetches failing")
    f.stop(time.monotonic() + 10)
    if crew.taken():  # it ran after all: then it was acked or is still in the private list
        assert crew.taken() == ["g1"]
        return
    f.drain()
    assert tokens(items(r, KEYS.queue("good"))) == ["g1"]
    assert not r.exists(INFLIGHT)
