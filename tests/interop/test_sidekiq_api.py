"""Sidekiq 6.4.1's API, the code behind its Web UI, reads swarmd's processes, busy jobs, queues, stats,
retries and scheduled jobs; the Web UI pages render them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, cast

import pytest

from tests.conftest import wait_until
from tests.interop.helpers import INTEROP, Interop, now
from tests.replies import jid

pytestmark = INTEROP


def test_process_set_and_busy_jobs_show_swarmd(interop: Interop) -> None:
    daemon = interop.start_swarmd(queues=("critical", "default"), concurrency=3, tag="billing")
    jid = interop.client.push({"class": "BlockingJob", "args": ["go", {"n": 1}]})
    wait_until(lambda: interop.r.hget(daemon.identity, "busy") == "1", 10, "swarmd to report busy 1")

    state = interop.state()
    (proc,) = state["processes"]
    assert proc["identity"] == daemon.identity
    assert proc["hostname"] == daemon.identity.split(":")[0]
    assert proc["pid"] == int(daemon.identity.split(":")[1])
    assert proc["concurrency"] == 3 and state["total_concurrency"] == 3
    assert proc["busy"] == 1
    assert proc["queues"] == ["critical", "default"]
    assert proc["tag"] == "billing"
    assert "swarmd" in proc["labels"]
    assert proc["stopping"] is False and proc["quiet"] == "false"
    assert proc["rss"] > 0
    assert proc["started_at"] <= proc["beat"] <= now() + 1

    (work,) = state["workers"]
    assert state["workers_size"] == 1
    assert work["process"] == daemon.identity
    assert work["queue"] == "default"
    assert isinstance(work["run_at"], int) and work["run_at"] <= now() + 1
    assert work["job"]["jid"] == jid
    assert work["job"]["display_class"] == "BlockingJob"
    assert work["job"]["display_args"] == ["go", {"n": 1}]

    stats = state["stats"]
    assert (stats["processes_size"], stats["workers_size"], stats["enqueued"]) == (1, 1, 0)

    # The Web UI's Busy page and its JSON stats endpoint, rendered by Sidekiq::Web itself.
    busy = interop.web("/busy")
    assert busy["status"] == 200
    for text in (f"{proc['hostname']}:{proc['pid']}", "billing", "swarmd", "critical, default", jid):
        assert text in busy["body"], text
    web_stats = json.loads(interop.web("/stats")["body"])["sidekiq"]
    assert (web_stats["processes"], web_stats["busy"]) == (1, 1)

    interop.flag("go")
    interop.wait_records("BlockingJob", 1)
    wait_until(lambda: interop.state()["stats"]["processed"] == 1, 10, "Stats#processed == 1")
    # The busy count and the busy jobs are rewritten at the next heartbeat (beat_interval), which
    # may come after the ack that counted the job as processed.
    idle = wait_until(
        lambda: (s := interop.state())["workers"] == [] and s["processes"][0]["busy"] == 0 and s,
        10,
        "the next beat to show no busy job",
    )
    state = cast("dict[str, Any]", idle)
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    assert state["stats"]["history_processed"] == {today: 1}
    # Sidekiq's TTLs: the process hash 60 s, the daily counters 5 years.
    assert 0 < interop.r.ttl(daemon.identity) <= 60
    assert 5 * 365 * 86400 - 60 < interop.r.ttl(f"stat:processed:{today}") <= 5 * 365 * 86400


def test_queues_latency_and_scheduled_set(interop: Interop) -> None:
    """No daemon: what swarmd's client wrote, as Sidekiq's Queues, Stats and Scheduled pages see it."""
    before = now()
    parked = [
        jid(interop.client.push({"class": "HardWorker", "queue": "parked", "args": [i]})) for i in range(3)
    ]
    default = interop.client.push({"class": "HardWorker", "args": ["d"]})
    at = now() + 600
    scheduled = jid(interop.client.push({"class": "HardWorker", "args": ["s"], "at": at}))

    state = interop.state()
    queues = {q["name"]: q for q in state["queues"]}
    assert sorted(queues) == ["default", "parked"]
    assert (queues["parked"]["size"], queues["default"]["size"]) == (3, 1)
    # swarmd writes float epoch seconds: 6.4.1's Queue#latency (now - enqueued_at) is sane.
    for q in queues.values():
        assert 0 <= q["latency"] < 60, q["latency"]
    # Sidekiq lists a queue newest first; each job decodes with its class, args and timestamps.
    assert [j["jid"] for j in queues["parked"]["jobs"]] == parked[::-1]
    for job in (*queues["parked"]["jobs"], *queues["default"]["jobs"]):
        assert job["klass"] == "HardWorker"
        assert before <= job["created_at"] <= job["enqueued_at"] <= now()
        assert 0 <= job["latency"] < 60
    assert queues["default"]["jobs"][0]["jid"] == default

    stats = state["stats"]
    assert stats["enqueued"] == 4 and stats["queues"] == {"parked": 3, "default": 1}
    assert 0 <= stats["default_queue_latency"] < 60
    assert stats["scheduled_size"] == 1

    (entry,) = state["scheduled"]
    assert (entry["jid"], entry["args"]) == (scheduled, ["s"])
    assert entry["score"] == pytest.approx(at, abs=0.01)
    assert entry["enqueued_at"] is None  # stripped from `schedule`, as Sidekiq's client does

    pages: dict[str, list[str]] = {
        "/queues": ["parked", "default"],
        "/queues/parked": parked,
        "/scheduled": [scheduled],
        "/": ["Processed"],
    }
    for path, texts in pages.items():
        page = interop.web(path)
        assert page["status"] == 200, path
        for text in texts:
            assert text in page["body"], (path, text)


def test_retry_entry_fields_read_by_ruby(interop: Interop) -> None:
    interop.start_swarmd()
    before = now()
    jid = interop.client.push(
        {"class": "FailingJob", "args": [1, {"a": None}], "retry": 3, "backtrace": True}
    )
    wait_until(lambda: interop.r.zcard("retry") == 1, 10, "the failure to reach `retry`")

    state = interop.state()
    (entry,) = state["retries"]
    item = entry["item"]
    assert (entry["jid"], entry["klass"], entry["args"]) == (jid, "FailingJob", [1, {"a": None}])
    assert entry["error"] is True
    assert (item["error_class"], item["error_message"], item["retry_count"]) == ("ValueError", "boom", 0)
    assert isinstance(item["failed_at"], float) and before <= item["failed_at"] <= now()
    assert "retried_at" not in item
    # Sidekiq 6/7 backoff for the first retry: 15 s + jitter of 0..9 s.
    assert item["failed_at"] + 15 <= entry["score"] <= item["failed_at"] + 25
    # error_backtrace (base64 of zlib of JSON lines) decodes in Ruby into the Python traceback.
    lines = entry["error_backtrace"]
    assert isinstance(lines, list) and all(isinstance(line, str) for line in lines)
    assert any('raise ValueError("boom")' in line for line in lines)
    assert any("pyjobs.py" in line for line in lines)
    # A failure counts as processed and as failed, as in Sidekiq.
    stats = state["stats"]
    assert (stats["processed"], stats["failed"], stats["retry_size"]) == (1, 1, 1)

    retries = interop.web("/retries")
    assert retries["status"] == 200 and jid in retries["body"] and "boom" in retries["body"]
    one = interop.web(f"/retries/{entry['score']}-{jid}")
    # The retry page shows the error class and the backtrace lines (6.4.1 prints them unescaped).
    assert one["status"] == 200 and "<code>ValueError</code>" in one["body"]
    assert 'raise ValueError("boom")' in one["body"]
