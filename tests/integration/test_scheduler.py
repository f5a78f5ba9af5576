"""Due jobs from `schedule` and `retry` to their queues, each exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import redis

from swarmd import connection, payload
from swarmd.keys import Keys
from swarmd.scheduler import Scheduler
from swarmd.scripts import Scripts
from tests.integration.conftest import App
from tests.replies import as_bytes, items, scored


def scheduled_raw(name: str, *args: Any, **fields: Any) -> bytes:
    """A job as it sits in `schedule`: no enqueued_at (Sidekiq strips it there)."""
    return payload.encode(payload.build(name, args, None, fields, at=1.0))


def test_due_job_moves_to_its_queue_with_a_fresh_enqueued_at(r: redis.Redis, redis_url: str) -> None:
    now = time.time()
    data = payload.build("Due", [0, 1.0, "é"], None, {"queue": "low", "bid": "b-1"}, at=1.0)
    data["args"][0] = 2**60  # as a Ruby client may write it; Lua's cjson would mangle > 14 digits
    due = payload.encode(data)
    future = scheduled_raw("Future", 1)
    r.zadd("schedule", {due: now - 1, future: now + 3600})
    assert Scheduler(Scripts(connection.connect(redis_url), Keys())).poll() == 1
    [raw] = items(r, "queue:low")
    job = json.loads(raw)
    original = json.loads(due)
    assert job["args"] == [2**60, 1.0, "é"]
    assert job["bid"] == "b-1"
    assert job["enqueued_at"] >= now
    assert {k: v for k, v in job.items() if k != "enqueued_at"} == original
    assert r.smembers("queues") == {b"low"}
    assert r.zrange("schedule", 0, -1) == [future]


def test_due_retry_moves_back_keeping_its_failure_fields(r: redis.Redis, redis_url: str) -> None:
    data = payload.build("Flaky", [1], None, {"queue": "q1"})
    payload.record_failure(data, "ValueError", "boom")
    payload.record_failure(data, "ValueError", "boom 2")
    r.zadd("retry", {payload.encode(data): time.time() - 1})
    assert Scheduler(Scripts(connection.connect(redis_url), Keys())).poll() == 1
    job = json.loads(as_bytes(r.rpop("queue:q1")))
    assert (job["retry_count"], job["error_message"], job["jid"]) == (1, "boom 2", data["jid"])
    assert r.zcard("retry") == 0


def test_undecodable_member_goes_to_dead_unchanged(r: redis.Redis, redis_url: str) -> None:
    bad = b'{"class":"x","args":[NaN]}'
    r.zadd("schedule", {bad: time.time() - 1, b"not json": time.time() - 2})
    assert Scheduler(Scripts(connection.connect(redis_url), Keys())).poll() == 2
    assert set(r.zrange("dead", 0, -1)) == {bad, b"not json"}
    assert r.zcard("schedule") == 0
    assert not r.keys("queue:*")


def test_namespace(r: redis.Redis, redis_url: str) -> None:
    r.zadd("ns:schedule", {scheduled_raw("X", 1): time.time() - 1})
    assert Scheduler(Scripts(connection.connect(redis_url), Keys("ns"))).poll() == 1
    assert r.llen("ns:queue:default") == 1
    assert r.smembers("ns:queues") == {b"default"}


def test_each_poll_reads_the_length_of_the_quarantine_list(r: redis.Redis, redis_url: str) -> None:
    # How a worker learns that suspects wait for a quarantine worker (it tells the supervisor).
    scheduler = Scheduler(Scripts(connection.connect(redis_url), Keys("ns")))
    assert scheduler.poll() == 0 and scheduler.quarantined == 0
    r.rpush("ns:swarmd:quarantine", scheduled_raw("A"), scheduled_raw("B"))
    assert scheduler.poll() == 0  # suspects are not due jobs: nothing moves
    assert scheduler.quarantined == 2
    assert r.llen("ns:swarmd:quarantine") == 2


def test_concurrent_pollers_move_each_due_job_exactly_once(r: redis.Redis, redis_url: str) -> None:
    members = {scheduled_raw("X", i): time.time() - 1 for i in range(2_000)}
    r.zadd("schedule", members)
    start = threading.Barrier(4)
    moved: list[int] = []
    budget_hit = threading.Event()

    def poller() -> None:
        scheduler = Scheduler(Scripts(connection.connect(redis_url), Keys()))
        start.wait()
        n = 0
        while r.zcard("schedule"):
            got = scheduler.poll()
            if got is None:  # this poll used its whole budget: it moved jobs but does not say how many
                budget_hit.set()
            else:
                n += got
        moved.append(n)

    threads = [threading.Thread(target=poller) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(moved) == 4  # no poller died
    assert sum(moved) == 2_000 or budget_hit.is_set()
    queued = [json.loads(raw)["args"][0] for raw in items(r, "queue:default")]
    assert sorted(queued) == list(range(2_000))


# -- with real workers ------------------------------------------------------------------------------------


def test_scheduled_job_runs_when_due_and_not_before(app: App) -> None:
    app.start(config=app.config())
    jid = app.client.enqueue("Record", ["soon"], None, {}, at=time.time() + 1.0)
    [(member, score)] = scored(app.r, "schedule")
    assert json.loads(member)["jid"] == jid
    app.wait_tokens(["soon"])
    [entry] = app.entries()
    ran_at = float(entry[3])
    assert ran_at >= score
    assert app.r.zcard("schedule") == 0


def test_due_retry_runs_again(app: App) -> None:
    data = payload.build("Record", ["again"], None, {})
    payload.record_failure(data, "ValueError", "first try failed")
    app.r.zadd("retry", {payload.encode(data): time.time() - 1})
    app.start(config=app.config())
    app.wait_tokens(["again"])
    app.wait_inflight_empty()
    assert app.r.zcard("retry") == 0
    assert app.r.zcard("dead") == 0


def test_two_worker_processes_never_enqueue_a_due_job_twice(app: App) -> None:
    config = app.config(concurrency=4, poll_interval=0.02)
    a, b = app.start(config=config), app.start(config=config)
    app.wait_booted(a)
    app.wait_booted(b, count=2)
    tokens = [f"s{i}" for i in range(2_000)]
    due = time.time() + 0.3  # both workers are polling when the whole batch becomes due
    app.r.zadd("schedule", {scheduled_raw("Record", t): due for t in tokens})
    app.wait_tokens(tokens, timeout_s=60)
    app.wait_inflight_empty()
    counts = Counter(app.tokens())
    assert counts == Counter(dict.fromkeys(tokens, 1)), {t: n for t, n in counts.items() if n != 1}
    assert app.r.zcard("schedule") == 0
    assert app.r.llen("queue:default") == 0
    # Both workers ran jobs: each polled and fetched, so the race above was a real one.
    pids = {int(e[2]) for e in app.entries()}
    assert len(pids) == 2
