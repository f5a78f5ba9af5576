"""Failures across the border: Sidekiq 8's millisecond timestamps, and exhausted retries landing in
`dead` the way the real Sidekiq 6.4.1 server puts them there."""

from __future__ import annotations

import json
from typing import Any, cast

from tests.conftest import wait_until
from tests.interop.helpers import INTEROP, Interop, now

pytestmark = INTEROP


def _zset_jobs(interop: Interop, key: str) -> dict[str, tuple[dict[str, Any], float, str]]:
    """jid -> (job, score, member) of a sorted set, read with redis-py."""
    return {
        json.loads(m)["jid"]: (json.loads(m), score, m)
        for m, score in cast("list[tuple[str, float]]", interop.r.zrange(key, 0, -1, withscores=True))
    }


def _retry_count(interop: Interop, jid: str) -> int | None:
    """The job's retry_count while it sits in `retry` (None while it is elsewhere)."""
    found = _zset_jobs(interop, "retry").get(jid)
    return found[0].get("retry_count") if found else None


def _retry_now(interop: Interop) -> None:
    """What the Web UI's "Retry now" is for: make every retry due; a scheduler moves them."""
    for member in cast("list[str]", interop.r.zrange("retry", 0, -1)):
        interop.r.zadd("retry", {member: now()})


def test_sidekiq8_millisecond_payload_runs_and_keeps_its_timestamps(interop: Interop) -> None:
    interop.start_swarmd()
    before = now()
    ms = int(before * 1000) - 5000  # Sidekiq 8 writes created_at/enqueued_at as integer epoch ms
    jobs: list[dict[str, Any]] = [
        {"class": "HardWorker", "args": ["ms", {"a": None}], "jid": "a" * 24, "queue": "default"},
        {"class": "FailingJob", "args": ["ms"], "jid": "b" * 24, "queue": "default", "retry": 2},
        {"class": "HardWorker", "args": ["parked"], "jid": "c" * 24, "queue": "parked"},
    ]
    with interop.r.pipeline() as pipe:  # pushed raw, the way Sidekiq 8's client does
        for job in jobs:
            job.update(created_at=ms, enqueued_at=ms, retry=job.get("retry", True))
            pipe.sadd("queues", job["queue"])
            pipe.lpush(f"queue:{job['queue']}", json.dumps(job))
        pipe.execute()

    assert [r["args"] for r in interop.wait_records("HardWorker", 1)] == [["ms", {"a": None}]]
    wait_until(lambda: interop.r.zcard("retry") == 1, 10, "the failure to reach `retry`")
    job, score, _ = _zset_jobs(interop, "retry")["b" * 24]
    assert (job["created_at"], job["enqueued_at"]) == (ms, ms)  # kept as they were, integer ms
    assert isinstance(job["failed_at"], float) and before <= job["failed_at"] <= now()  # swarmd's own
    assert job["failed_at"] + 15 <= score <= job["failed_at"] + 25  # zset scores: float seconds

    # Through the scheduler and a second failure: created_at survives; the scheduler's fresh
    # enqueued_at and the retried_at are float seconds.
    moved_at = now()
    _retry_now(interop)
    wait_until(lambda: _retry_count(interop, "b" * 24) == 1, 10, "the 2nd failure")
    again, _, _ = _zset_jobs(interop, "retry")["b" * 24]
    assert again["created_at"] == ms and again["failed_at"] == job["failed_at"]
    assert isinstance(again["enqueued_at"], float) and moved_at <= again["enqueued_at"] <= now()
    assert isinstance(again["retried_at"], float) and again["enqueued_at"] <= again["retried_at"] <= now()

    # Sidekiq 6.4.1 reads the RetrySet entry; it takes integer ms for seconds, as sidekiq.md §0 says,
    # which is why swarmd writes float seconds: a 6.x reader of Sidekiq 8's parked job computes a
    # queue latency of minus decades, while a float enqueued_at gives a sane one.
    state = interop.state()
    (entry,) = state["retries"]
    assert (entry["jid"], entry["item"]["error_message"], entry["item"]["retry_count"]) == (
        "b" * 24,
        "boom",
        1,
    )
    (parked,) = [q for q in state["queues"] if q["name"] == "parked"]
    assert parked["latency"] < -1e11


def test_exhausted_retries_land_in_dead_as_sidekiq_puts_them(interop: Interop) -> None:
    """The same failing job, once in the real Sidekiq server and once in swarmd: `retry: 1`, so the
    second failure exhausts it. Both `dead` entries must have the same fields, of the same types."""
    interop.start_sidekiq(queues=("ruby",))
    interop.start_swarmd(queues=("default",))
    options = {"args": [1, {"a": None}, "é"], "retry": 1, "backtrace": True}
    rb = interop.ruby("push", {"class": "FailWorker", "queue": "ruby", **options})
    py = interop.ruby("push", {"class": "FailingJob", "queue": "default", **options})
    wait_until(lambda: interop.r.zcard("retry") == 2, 15, "both first failures in `retry`")
    first = {jid: job for jid, (job, _, _) in _zset_jobs(interop, "retry").items()}
    for job in first.values():
        assert job["retry_count"] == 0 and isinstance(job["failed_at"], float)

    _retry_now(interop)
    wait_until(lambda: interop.r.zcard("dead") == 2, 15, "both jobs in `dead`")
    died = _zset_jobs(interop, "dead")
    dead = {e["jid"]: e for e in interop.state()["dead"]}  # what Sidekiq's DeadSet shows
    ruby_job, py_job = dead[rb]["item"], dead[py]["item"]

    assert sorted(py_job) == sorted(ruby_job)
    for field, value in ruby_job.items():
        assert type(py_job[field]) is type(value), field
    for field in ("args", "retry", "backtrace", "retry_count", "error_message"):
        assert py_job[field] == ruby_job[field], field
    assert (ruby_job["retry_count"], ruby_job["error_message"]) == (1, "boom")
    assert (ruby_job["error_class"], py_job["error_class"]) == ("ArgumentError", "ValueError")
    for jid, queue, klass in ((rb, "ruby", "FailWorker"), (py, "default", "FailingJob")):
        job, entry = dead[jid]["item"], dead[jid]
        assert (entry["klass"], job["queue"]) == (klass, queue)
        assert job["created_at"] == first[jid]["created_at"]
        assert job["failed_at"] == first[jid]["failed_at"] < job["retried_at"]
        assert job["retried_at"] <= died[jid][1] <= now()  # scored with the time of death
        lines = entry["error_backtrace"]  # decoded by Sidekiq's JobRecord#error_backtrace
        assert lines and all(isinstance(line, str) for line in lines)

    morgue = interop.web("/morgue")
    assert morgue["status"] == 200 and rb in morgue["body"] and py in morgue["body"]
    page = interop.web(f"/morgue/{died[py][1]}-{py}")
    assert page["status"] == 200 and "<code>ValueError</code>" in page["body"]


def test_dead_job_takes_retry_queue_as_sidekiq_does(interop: Interop) -> None:
    interop.start_sidekiq(queues=("ruby",))
    interop.start_swarmd(queues=("default",))
    rb = interop.ruby(
        "push", {"class": "FailWorker", "queue": "ruby", "args": [], "retry": 0, "retry_queue": "later"}
    )
    py = interop.ruby(
        "push", {"class": "FailingJob", "queue": "default", "args": [], "retry": 0, "retry_queue": "later"}
    )
    wait_until(lambda: interop.r.zcard("dead") == 2, 15, "both jobs in `dead`")
    dead = {jid: job for jid, (job, _, _) in _zset_jobs(interop, "dead").items()}
    assert dead[rb]["queue"] == "later"
    assert dead[py]["queue"] == "later"
