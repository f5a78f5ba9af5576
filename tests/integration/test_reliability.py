"""At-least-once: no job is lost to a SIGKILL or a lost reply; duplicates are explained.

Each scenario uses the ledger (one O_APPEND write per line, survives SIGKILL) to count what ran.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator

import pytest
import redis

from swarmd.client import Client
from swarmd.devredis import RedisServer
from swarmd.recovery import POISON_RUNS, QUARANTINE_CRASHES, VANISH_LIMIT
from tests.conftest import Daemon, wait_until
from tests.integration.conftest import JOBS_MODULE, App, free_port
from tests.integration.faultproxy import FaultProxy
from tests.replies import members


def worker_pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_job_in_flight_when_its_worker_is_sigkilled_runs_again_after_recovery(app: App) -> None:
    a = app.start(config=app.config(concurrency=1))
    ident_a = app.wait_booted(a)
    app.r.lpush("queue:default", app.raw_job("Block", "k1"))
    app.wait_tokens(["k1"], phase="start")
    a.kill_group()  # the worker and any supervisor: nobody is left to push the job back
    # The job is neither lost nor back in its queue yet: it sits in A's private list.
    assert app.r.llen(f"swarmd:inflight:{ident_a}") == 1
    assert app.r.llen("queue:default") == 0
    app.flag("k1")  # the next run can finish
    # Two new workers race to recover A's list once its liveness key expires (liveness_ttl: 1).
    b = app.start(config=app.config(concurrency=1))
    c = app.start(config=app.config(concurrency=1))
    wait_until(lambda: not app.r.exists(f"swarmd:alive:{ident_a}"), 5, what="A's liveness key to expire")
    app.wait_tokens(["k1"])
    app.wait_inflight_empty()
    assert app.count("start") == {"k1": 2}  # A's run, then exactly one more
    assert app.count("done") == {"k1": 1}
    [done] = [e for e in app.entries() if e[0] == "done"]
    assert worker_pgid(int(done[2])) in (b.pid, c.pid)
    assert app.r.zcard("dead") == app.r.zcard("retry") == app.r.llen("queue:default") == 0
    assert not app.r.sismember("swarmd:workers", ident_a)
    recovered = [line for d in (b, c) for line in d.lines() if "recovered" in line and ident_a in line]
    assert len(recovered) == 1, recovered


def test_sigkill_mid_stream_loses_nothing_and_every_duplicate_is_explained(app: App) -> None:
    tokens = [f"n{i}" for i in range(300)]
    a = app.start(config=app.config(concurrency=4))
    ident_a = app.wait_booted(a)
    app.client.enqueue_bulk("Nap", [(t, 0.005) for t in tokens], {})
    wait_until(lambda: len(app.tokens()) >= 60, 15, what="60 jobs done before the kill")
    a.kill_group()
    # Every job that can run twice is in A's private list now: done-but-not-acked, running, fetched.
    suspects = {json.loads(raw)["args"][0] for raw in app.r.lrange(f"swarmd:inflight:{ident_a}", 0, -1)}
    app.start(config=app.config(concurrency=4))
    app.wait_tokens(tokens, timeout_s=30)
    app.wait_inflight_empty()
    counts = app.count()
    assert set(counts) == set(tokens)  # lost = 0
    duplicates = {t for t, n in counts.items() if n > 1}
    assert duplicates <= suspects, f"unexplained duplicates: {duplicates - suspects}"
    assert max(counts.values()) <= 2
    assert app.r.llen("queue:default") == 0


# -- poison jobs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["swarmd", "bare worker"])
def test_a_job_that_kills_its_worker_goes_to_dead_as_poison(app: App, runner: str) -> None:
    # "swarmd": the supervisor sees each death, recovers at once and starts the quarantine worker:
    # 3 runs (one beside others, two alone).
    # "bare worker": nobody sees a death (as if the job took its whole swarm down), the test starts a
    # worker each time (as systemd would) that recovers the last one's list once its liveness key
    # expired: the job goes back to its queue until it was in VANISH_LIMIT vanished workers, then it is
    # a suspect and runs alone in quarantine workers: VANISH_LIMIT + 2 runs.
    raw = app.raw_job("Crash", "p1")
    jid = json.loads(raw)["jid"]
    app.r.lpush("queue:default", raw)
    config = app.config(concurrency=1, require=[JOBS_MODULE])
    daemons: list[Daemon] = []
    runs = POISON_RUNS if runner == "swarmd" else VANISH_LIMIT + QUARANTINE_CRASHES

    quarantine_workers: list[Daemon] = []

    def start() -> None:
        if len(daemons) > runs + 2:
            pytest.fail(f"still not in dead after {len(daemons)} worker starts")
        if runner == "swarmd":
            daemons.append(app.start(config=config))
        elif app.r.llen("swarmd:quarantine"):  # what a supervisor would start on demand
            quarantine_workers.append(app.start_worker(config, quarantine=True))
            daemons.append(quarantine_workers[-1])
        else:
            daemons.append(app.start_worker(config))

    def settled() -> bool:
        if app.r.zcard("dead"):
            return True
        suspects_waiting = runner == "bare worker" and app.r.llen("swarmd:quarantine") > 0
        if (
            not daemons
            or not daemons[-1].alive()
            or (suspects_waiting and not any(d.alive() for d in quarantine_workers))
        ):
            start()
        return False

    wait_until(settled, 90, what="the poison job to reach dead")
    [member] = members(app.r, "dead")
    job = json.loads(member)
    assert job["jid"] == jid
    assert job["error_class"] == "swarmd.PoisonJob"
    assert f"alone in a quarantine worker, {QUARANTINE_CRASHES} times" in job["error_message"]
    assert job["args"] == ["p1"]
    assert app.count("start") == {"p1": runs}
    assert app.r.llen("queue:default") == app.r.llen("swarmd:quarantine") == 0
    assert not app.r.exists(f"swarmd:crashes:{jid}", f"swarmd:vanished:{jid}")
    # Work goes on with ordinary jobs (a fresh worker if the last one was the third crash).
    if not daemons[-1].alive() or runner == "bare worker":
        daemons.append(app.start(config=config) if runner == "swarmd" else app.start_worker(config))
    app.enqueue("Record", "after-poison")
    app.wait_tokens(["after-poison"])


# -- lost replies (fault proxy) ---------------------------------------------------------------------------


def ran_once_and_nothing_is_left(app: App, token: str) -> None:
    """``token`` ran exactly once and no copy of it is left anywhere.

    A copy pushed back by mistake would go to the head of its queue and run before a job enqueued
    now (the workers here have one processor), so once that later job is done a duplicate would have
    shown in the ledger; a copy stranded in a private list keeps `wait_inflight_empty` waiting.
    """
    app.enqueue("Record", f"after-{token}")
    app.wait_tokens([f"after-{token}"])
    app.wait_inflight_empty()
    counts = app.count()
    assert counts[token] == counts[f"after-{token}"] == 1
    assert max(counts.values()) == 1, counts  # and nothing else ran twice either
    assert app.r.llen("queue:default") == 0


def wait_idle_in_blmove(app: App) -> None:
    """Wait until the worker is blocked in BLMOVE, so the next push reaches it through BLMOVE."""
    wait_until(
        lambda: any(c.get("cmd") == "blmove" for c in app.r.client_list()),
        10,
        what="a worker blocked in BLMOVE",
    )


@pytest.fixture
def proxied(redis_factory: Callable[..., RedisServer], app: App) -> Iterator[tuple[RedisServer, FaultProxy]]:
    """A private Redis on a TCP port, and a fault proxy in front of it (the worker talks to the proxy).

    ``redis_factory`` comes first so that its server outlives ``app``'s teardown (which kills the
    daemons and prints what is left in Redis).
    """
    server = redis_factory(port=free_port())
    proxy = FaultProxy(server.port or 0).start()
    app.client = Client(server.url)
    app.r.close()
    app.r = redis.Redis.from_url(server.url)
    yield server, proxy
    proxy.close()


def test_lost_fetch_reply_on_a_busy_worker_job_still_runs_once(
    proxied: tuple[RedisServer, FaultProxy], app: App
) -> None:
    _, proxy = proxied
    d = app.start(config=app.config(concurrency=1, redis_url=proxy.url))
    app.wait_booted(d)
    app.enqueue("Block", "holder")
    app.wait_tokens(["holder"], phase="start")
    # The one processor is busy: when it finishes, its next fetch (the fetch script, carrying the
    # holder's ack) moves "lost1" into the private list, and that reply is dropped.
    proxy.drop_next_reply(b"EVALSHA", containing=b"lost1")
    app.enqueue("Record", "lost1")
    app.enqueue("Record", "later1")
    app.flag("holder")
    assert proxy.dropped_event.wait(10), "the fetch reply was never dropped"
    app.wait_tokens(["holder", "lost1", "later1"])
    app.wait_inflight_empty()
    assert app.count() == {"holder": 1, "lost1": 1, "later1": 1}
    assert any("reconcile" in line for line in d.lines())


def test_lost_fetch_reply_with_nothing_else_queued_job_still_runs(
    proxied: tuple[RedisServer, FaultProxy], app: App
) -> None:
    _, proxy = proxied
    d = app.start(config=app.config(concurrency=1, redis_url=proxy.url))
    app.wait_booted(d)
    app.enqueue("Block", "holder5")
    app.wait_tokens(["holder5"], phase="start")
    proxy.drop_next_reply(b"EVALSHA", containing=b"lost5")
    app.enqueue("Record", "lost5")
    app.flag("holder5")
    assert proxy.dropped_event.wait(10), "the fetch reply was never dropped"
    app.wait_tokens(["lost5"], timeout_s=10)
    ran_once_and_nothing_is_left(app, "lost5")


def test_lost_blmove_reply_then_more_work_job_runs_once(
    proxied: tuple[RedisServer, FaultProxy], app: App
) -> None:
    _, proxy = proxied
    d = app.start(config=app.config(concurrency=1, redis_url=proxy.url))
    app.wait_booted(d)
    wait_idle_in_blmove(app)
    # Idle worker: it waits in BLMOVE. BLMOVE moves "lost2" into the private list; the reply is lost.
    proxy.drop_next_reply(b"BLMOVE", containing=b"lost2")
    app.enqueue("Record", "lost2")
    assert proxy.dropped_event.wait(10), "the BLMOVE reply was never dropped"
    app.enqueue("Record", "next2")
    app.wait_tokens(["lost2", "next2"])
    app.wait_inflight_empty()
    assert app.count() == {"lost2": 1, "next2": 1}


def test_lost_blmove_reply_on_an_idle_worker_job_still_runs(
    proxied: tuple[RedisServer, FaultProxy], app: App
) -> None:
    _, proxy = proxied
    d = app.start(config=app.config(concurrency=1, redis_url=proxy.url))
    app.wait_booted(d)
    wait_idle_in_blmove(app)
    proxy.drop_next_reply(b"BLMOVE", containing=b"lost3")
    app.enqueue("Record", "lost3")
    assert proxy.dropped_event.wait(10), "the BLMOVE reply was never dropped"
    app.wait_tokens(["lost3"], timeout_s=10)
    ran_once_and_nothing_is_left(app, "lost3")


def test_lost_blmove_reply_job_is_not_lost_at_stop(proxied: tuple[RedisServer, FaultProxy], app: App) -> None:
    _, proxy = proxied
    d = app.start(config=app.config(concurrency=1, redis_url=proxy.url))
    app.wait_booted(d)
    wait_idle_in_blmove(app)
    proxy.drop_next_reply(b"BLMOVE", containing=b"lost4")
    app.enqueue("Record", "lost4")
    assert proxy.dropped_event.wait(10), "the BLMOVE reply was never dropped"
    wait_until(lambda: app.tokens() or app.inflight_entries(), 5, what="the job to be run or held")
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    # Whether or not it ran, it is not lost: either done once, or back in its queue.
    ran = app.count().get("lost4", 0)
    queued = [json.loads(raw)["args"][0] for raw in app.r.lrange("queue:default", 0, -1)]
    assert (ran, queued) in ((1, []), (0, ["lost4"]))
    assert app.inflight_entries() == 0


# -- a frozen worker's blocking fetch outliving its liveness key ------------------------------------------


def test_a_frozen_workers_blocked_fetch_cannot_strand_a_job(app: App) -> None:
    # A host that freezes (VM pause, partition) while its worker waits in BLMOVE: SIGSTOP emulates it.
    # liveness_ttl > beat_interval + fetch_timeout (the loader insists): by the time A looks dead and
    # B recovers it (and forgets its identity), A's BLMOVE has timed out in Redis and takes nothing.
    config = app.config(concurrency=1)
    a = app.start(config=config)
    ident_a = app.wait_booted(a)
    wait_until(
        lambda: any(c.get("cmd") == "blmove" for c in app.r.client_list()), 10, what="A blocked in BLMOVE"
    )
    os.killpg(a.pid, signal.SIGSTOP)
    try:
        b = app.start(config=config)
        app.wait_booted(b)
        wait_until(
            lambda: not app.r.sismember("swarmd:workers", ident_a), 10, what="B to recover A and forget it"
        )
        app.enqueue("Record", "z1")
        app.wait_tokens(["z1"], timeout_s=15)
        ran_once_and_nothing_is_left(app, "z1")
    finally:
        a.kill_group()  # the frozen host never comes back


def test_recording_a_failure_again_after_a_redis_error_counts_it_once(r: redis.Redis, redis_url: str) -> None:
    # The processor re-runs Retrier.failed after a Redis error; the attempt that failed must not have
    # counted the failure already, or a blip would burn the job's retries (and drop it with dead: false).
    from swarmd import connection
    from swarmd.keys import Keys
    from swarmd.payload import Work, build, decode, encode
    from swarmd.retry import Retrier
    from swarmd.scripts import Scripts

    keys = Keys()
    raw = encode(build("Fail", ["x"], None, {"queue": "default", "retry": 3}))
    r.lpush(keys.inflight("me"), raw)
    client = connection.connect(redis_url)
    retrier = Retrier(Scripts(client, keys), "me")
    job = decode(raw)
    retrier.failed(Work(raw, "default"), job, ValueError("first attempt, reply lost"))
    assert "retry_count" not in job.data
    r.delete(keys.retry)
    r.lpush(keys.inflight("me"), raw)
    assert retrier.failed(Work(raw, "default"), job, ValueError("second attempt")) == "retry"
    stored = json.loads(members(r, keys.retry)[0])
    assert stored["retry_count"] == 0
    client.close()


def test_a_redis_crash_and_restart_with_aof_loses_no_job(
    redis_factory: Callable[..., RedisServer], app: App
) -> None:
    # No acknowledged job is lost to a Redis restart with AOF. Redis is SIGKILLed while the
    # worker is busy and comes back from its append-only file; the worker reconnects by itself.
    server = redis_factory(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    app.client = Client(server.url)
    app.r.close()
    app.r = redis.Redis.from_url(server.url)
    d = app.start(config=app.config(concurrency=4, redis_url=server.url))
    app.wait_booted(d)
    tokens = [f"n{i}" for i in range(300)]
    app.client.enqueue_bulk("Nap", [(t, 0.01) for t in tokens], {})
    wait_until(lambda: len(app.tokens()) >= 30, 15, what="the worker to be busy")
    server.kill()
    done_at_crash = len(set(app.tokens()))
    server.start()
    app.wait_tokens(tokens, timeout_s=60)
    assert done_at_crash < len(tokens)  # the crash really hit a busy worker
    assert set(app.tokens()) == set(tokens)  # duplicates are allowed (jobs running at the crash)
    app.wait_inflight_empty()
    assert d.alive()
