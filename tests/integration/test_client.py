"""What the client writes to a real Redis, byte for byte where Sidekiq readers care."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

import swarmd
from swarmd import client as client_mod
from swarmd.client import Client
from tests.replies import as_bytes, items, scored


@swarmd.job(name="ClientProbe")
def probe(*args: Any, **kwargs: Any) -> None:
    pass


@pytest.fixture
def c(redis_url: str) -> Client:
    return Client(redis_url)


@pytest.fixture
def default(c: Client, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.setattr(client_mod, "_default", c)
    yield c


def only_job(r: redis.Redis, queue: str = "default") -> tuple[bytes, dict[str, Any]]:
    raws = items(r, f"queue:{queue}")
    assert len(raws) == 1, raws
    return raws[0], json.loads(raws[0])


def test_perform_async_payload(r: redis.Redis, default: Client) -> None:
    before = time.time()
    jid = probe.perform_async("a.png", 100, 1.5, None, [True], {"k": "v"})
    after = time.time()
    raw, job = only_job(r)
    assert jid is not None and re.fullmatch(r"[0-9a-f]{24}", jid)
    assert job == {
        "retry": True,
        "queue": "default",
        "class": "ClientProbe",
        "args": ["a.png", 100, 1.5, None, [True], {"k": "v"}],
        "jid": jid,
        "created_at": job["created_at"],
        "enqueued_at": job["enqueued_at"],
    }
    assert before <= job["created_at"] <= job["enqueued_at"] <= after
    # Float seconds with a decimal point: Sidekiq 8 would read an integer as milliseconds.
    assert re.search(rb'"created_at":\d+\.\d+', raw)
    assert re.search(rb'"enqueued_at":\d+\.\d+', raw)
    assert r.smembers("queues") == {b"default"}


def test_delay_alias_and_kwargs_field(r: redis.Redis, default: Client) -> None:
    jid = probe.delay(1, width=100, mode="fit")
    _, job = only_job(r)
    assert job["jid"] == jid
    assert job["args"] == [1]
    assert job["kwargs"] == {"width": 100, "mode": "fit"}


def test_set_queue_and_retry(r: redis.Redis, default: Client) -> None:
    probe.set(queue="low", retry=False).perform_async(1)
    _, job = only_job(r, "low")
    assert job["queue"] == "low"
    assert job["retry"] is False
    assert r.llen("queue:default") == 0
    assert r.smembers("queues") == {b"low"}


def test_job_options_go_into_the_payload(r: redis.Redis, c: Client) -> None:
    @swarmd.job(queue="critical", retry=5, name="ClientHardWorker", backtrace=20)
    def hard_work(name: str, count: int) -> None:
        pass

    hard_work.set(client=c).perform_async("bob", 1)
    _, job = only_job(r, "critical")
    assert (job["class"], job["retry"], job["backtrace"]) == ("ClientHardWorker", 5, 20)


def test_sadd_queues_with_every_push(r: redis.Redis, default: Client) -> None:
    probe.perform_async(1)
    r.srem("queues", "default")  # as Sidekiq's Web UI does when a queue is deleted
    probe.perform_async(2)
    assert r.smembers("queues") == {b"default"}
    probe.set(queue="other").perform_bulk([(3,)])
    assert r.smembers("queues") == {b"default", b"other"}


def test_perform_in_seconds_and_timedelta(r: redis.Redis, default: Client) -> None:
    before = time.time()
    jid1 = probe.perform_in(30, "a")
    jid2 = probe.perform_in(dt.timedelta(minutes=2), "b")
    after = time.time()
    by_jid = {json.loads(m)["jid"]: (json.loads(m), score) for m, score in scored(r, "schedule")}
    job1, score1 = by_jid[jid1]
    job2, score2 = by_jid[jid2]
    assert before + 30 <= score1 <= after + 30
    assert before + 120 <= score2 <= after + 120
    for job in (job1, job2):
        assert "enqueued_at" not in job  # Sidekiq strips it in `schedule`
        assert isinstance(job["created_at"], float)
    assert r.llen("queue:default") == 0
    assert not r.exists("queues")  # the scheduler adds the queue when the job is due


def test_perform_at_aware_datetime_and_epoch(r: redis.Redis, default: Client) -> None:
    when = dt.datetime.now(dt.timezone(dt.timedelta(hours=-5))) + dt.timedelta(hours=1)
    jid1 = probe.perform_at(when, "a")
    jid2 = probe.perform_at(2_000_000_000.25, "b")
    jid3 = probe.perform_in(2_000_000_100, "c")  # Sidekiq: an "interval" this big is an absolute time
    scores = {json.loads(m)["jid"]: s for m, s in scored(r, "schedule")}
    assert scores == {jid1: when.timestamp(), jid2: 2_000_000_000.25, jid3: 2_000_000_100.0}


def test_a_time_in_the_past_runs_now(r: redis.Redis, default: Client) -> None:
    jid = probe.perform_at(time.time() - 10, "late")
    probe.perform_in(-5, "later")
    assert r.zcard("schedule") == 0
    raws = r.lrange("queue:default", 0, -1)
    assert len(raws) == 2
    assert json.loads(raws[1])["jid"] == jid
    assert all("enqueued_at" in json.loads(raw) for raw in raws)


def test_perform_bulk_one_lpush_per_thousand(r: redis.Redis, default: Client) -> None:
    r.config_resetstat()
    jids = probe.perform_bulk([(i,) for i in range(2_500)])
    stats = r.info("commandstats")
    assert stats["cmdstat_lpush"]["calls"] == 3
    assert len(jids) == len(set(jids)) == 2_500
    # FIFO across batches: consumers take from the right, in the order the jobs were given.
    popped = [json.loads(as_bytes(r.rpop("queue:default")))["jid"] for _ in range(2_500)]
    assert popped == jids


def test_perform_bulk_payloads(r: redis.Redis, default: Client) -> None:
    jids = probe.set(queue="bulk").perform_bulk([("a", 1), ["b", 2]])
    jobs = [json.loads(raw) for raw in reversed(r.lrange("queue:bulk", 0, -1))]
    assert [j["args"] for j in jobs] == [["a", 1], ["b", 2]]
    assert [j["jid"] for j in jobs] == jids
    assert all(j["queue"] == "bulk" and "enqueued_at" in j for j in jobs)
    assert probe.perform_bulk([]) == []


def test_push_raw_sidekiq_hash(r: redis.Redis, default: Client) -> None:
    jid = swarmd.push({"class": "RubyWorker", "queue": "default", "args": [1], "bid": "batch-1"})
    _, job = only_job(r)
    assert job["class"] == "RubyWorker"
    assert job["args"] == [1]
    assert job["jid"] == jid
    assert job["retry"] is True
    assert job["bid"] == "batch-1"  # fields swarmd does not know travel unchanged
    assert isinstance(job["created_at"], float) and isinstance(job["enqueued_at"], float)


def test_push_keeps_a_given_jid_and_schedules_with_at(r: redis.Redis, default: Client) -> None:
    swarmd.push({"class": "RubyWorker", "args": [], "jid": "0123456789abcdef01234567"})
    swarmd.push({"class": "RubyWorker", "args": [], "at": 2_000_000_000.5, "queue": "low"})
    _, job = only_job(r)
    assert job["jid"] == "0123456789abcdef01234567"
    [(member, score)] = scored(r, "schedule")
    assert score == 2_000_000_000.5
    scheduled = json.loads(member)
    assert scheduled["queue"] == "low"
    assert "at" not in scheduled and "enqueued_at" not in scheduled


def test_client_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWARMD_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert Client().redis_url == "redis://localhost:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://from-redis-url:1/0")
    assert Client().redis_url == "redis://from-redis-url:1/0"
    monkeypatch.setenv("SWARMD_REDIS_URL", "redis://from-swarmd:2/0")
    assert Client().redis_url == "redis://from-swarmd:2/0"
    assert Client("redis://explicit:3/0").redis_url == "redis://explicit:3/0"


def test_configure_from_the_daemons_yaml(
    r: redis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "_default", None)
    for var in ("SWARMD_REDIS_URL", "REDIS_URL", "SWARMD_NAMESPACE", "SWARMD_ENV", "APP_ENV"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "swarmd.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "concurrency": 5,
                "redis": {"url": "redis://127.0.0.1:1/0"},  # nothing listens there
                "production": {"redis": {"url": redis_url, "namespace": "myapp"}},
            }
        )
    )
    configured = swarmd.configure(config=str(path), environment="production")
    assert client_mod.default_client() is configured
    jid = probe.perform_async(1)
    swarmd.push({"class": "RubyWorker", "args": [2]})
    raws = r.lrange("myapp:queue:default", 0, -1)
    assert [json.loads(raw)["class"] for raw in raws] == ["RubyWorker", "ClientProbe"]
    assert json.loads(raws[1])["jid"] == jid
    assert r.smembers("myapp:queues") == {b"default"}
    assert not r.exists("queue:default")


def test_configure_explicit_url_and_namespace(
    r: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "_default", None)
    swarmd.configure(redis_url=redis_url, namespace="ns")
    probe.perform_in(60, 1)
    assert r.zcard("ns:schedule") == 1
    assert not r.exists("schedule")
