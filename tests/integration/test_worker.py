"""The worker as a user runs it: ``python -m swarmd -r jobs -C swarmd.yml`` against a real Redis.

Jobs record what they did in a ledger (see conftest); the tests look at the ledger, at Redis, at the
exit code and at the log, which is what a user of swarmd (or of Sidekiq's Web UI) sees.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import swarmd
from swarmd import client as client_mod
from swarmd import payload
from swarmd.client import Client
from tests.conftest import wait_until
from tests.integration.conftest import JOBS_MODULE, App
from tests.replies import as_bytes, counter, members, scored

FIVE_YEARS = 5 * 365 * 24 * 3600


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def zset_jobs(app: App, key: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in members(app.r, key)]


def wait_zcard(app: App, key: str, n: int, timeout_s: float = 10.0) -> None:
    wait_until(lambda: app.r.zcard(key) >= n, timeout_s, what=f"{n} job(s) in {key}")


# -- running jobs -----------------------------------------------------------------------------------------


def test_every_enqueued_job_runs_exactly_once(app: App) -> None:
    d = app.start(config=app.config(concurrency=4))
    tokens = [f"t{i}" for i in range(400)]
    app.client.enqueue_bulk("Record", [(t,) for t in tokens[:300]], {})
    for t in tokens[300:]:
        app.enqueue("Record", t)
    app.wait_tokens(tokens)
    assert app.count() == dict.fromkeys(tokens, 1)
    wait_until(lambda: int(app.r.get("stat:processed") or 0) == 400, 5, what="stat:processed == 400")
    assert app.r.llen("queue:default") == 0
    assert app.inflight_entries() == 0
    daily = f"stat:processed:{today()}"
    assert counter(app.r, daily) == 400
    assert FIVE_YEARS - 60 <= app.r.ttl(daily) <= FIVE_YEARS
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert app.count() == dict.fromkeys(tokens, 1)  # nothing ran again at shutdown


def test_per_job_log_lines(app: App) -> None:
    d = app.start(config=app.config())
    jid = app.enqueue("Record", "logged")
    app.wait_tokens(["logged"])
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    done = [line for line in d.lines() if f"jid={jid}" in line]
    assert len(done) == 1, done  # `start` is DEBUG when verbose is false
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    shape = rf"{stamp} pid=\d+ tid=\w+ class=Record jid={jid} INFO: done: \d+\.\d{{3}} sec"
    assert re.fullmatch(shape, done[0]), done[0]


def test_kwargs_reach_the_job_function(app: App) -> None:
    app.start(config=app.config())
    app.client.enqueue("RecordKw", ["kw"], {"extra": "yes"}, {})
    app.wait_tokens(["kw"])
    assert app.entries() == [["done", "kw", app.entries()[0][2], "yes"]]


def test_strict_queue_order(app: App) -> None:
    for i in range(8):  # b is filled first: order must come from the config, not from arrival
        app.enqueue("Record", f"b{i}", queue="b")
    for i in range(8):
        app.enqueue("Record", f"a{i}", queue="a")
    app.start(config=app.config(concurrency=1, queues=["a", "b"]))
    expected = [f"a{i}" for i in range(8)] + [f"b{i}" for i in range(8)]
    app.wait_tokens(expected)
    assert app.tokens() == expected


@pytest.mark.parametrize(
    ("queues", "n"),
    [
        (["a,1", "b,1"], 40),  # all weights 1: random order; P(b never first in 20) = 2**-20
        ([["a", 3], ["b", 1]], 120),  # weighted: P(b never first in 60) = 0.75**60 < 1e-7
    ],
)
def test_random_and_weighted_order_fetch_from_every_queue(app: App, queues: list[Any], n: int) -> None:
    for i in range(n):
        app.enqueue("Record", f"a{i}", queue="a")
        app.enqueue("Record", f"b{i}", queue="b")
    app.start(config=app.config(concurrency=1, queues=queues))
    app.wait_tokens([f"{q}{i}" for q in "ab" for i in range(n)], timeout_s=20)
    first_half = app.tokens()[: n // 2]
    assert {t[0] for t in first_half} == {"a", "b"}, first_half


# -- failures ---------------------------------------------------------------------------------------------


def test_failure_goes_to_retry_with_sidekiqs_fields(app: App) -> None:
    app.start(config=app.config())
    raw = app.raw_job("Fail", "f1", bid="batch-7")
    app.r.lpush("queue:default", raw)
    wait_zcard(app, "retry", 1)
    [(member, score)] = scored(app.r, "retry")
    job = json.loads(member)
    original = json.loads(raw)
    assert job["jid"] == original["jid"]
    assert job["retry_count"] == 0
    assert job["error_class"] == "ValueError"
    assert job["error_message"] == "boom f1"
    assert isinstance(job["failed_at"], float)
    assert "retried_at" not in job
    assert "error_backtrace" not in job  # only with `backtrace`
    assert job["bid"] == "batch-7"  # unknown fields are preserved
    assert job["args"] == ["f1"]
    # Sidekiq's first delay: 0**4 + 15 + rand(10) * 1 seconds.
    assert job["failed_at"] + 15 - 1 <= score <= job["failed_at"] + 24 + 1
    assert app.r.zcard("dead") == 0
    wait_until(lambda: app.r.get("stat:failed") == b"1", 5, what="stat:failed == 1")
    assert app.r.get(f"stat:failed:{today()}") == b"1"
    assert app.r.get("stat:processed") == b"1"  # Sidekiq counts a failure as processed too
    assert app.inflight_entries() == 0
    assert app.count("fail") == {"f1": 1}


def test_retry_0_goes_to_dead_on_first_failure(app: App) -> None:
    app.start(config=app.config())
    app.enqueue("Fail", "d1", retry=0)
    wait_zcard(app, "dead", 1)
    [job] = zset_jobs(app, "dead")
    assert (job["retry_count"], job["error_class"], job["error_message"]) == (0, "ValueError", "boom d1")
    assert app.r.zcard("retry") == 0
    assert app.count("fail") == {"d1": 1}


def test_retry_false_is_dropped_and_counted(app: App) -> None:
    app.start(config=app.config())
    app.enqueue("Fail", "x1", retry=False)
    wait_until(lambda: app.r.get("stat:failed") == b"1", 10, what="stat:failed == 1")
    app.enqueue("Record", "after")  # the worker carried on
    app.wait_tokens(["after"])
    assert app.r.zcard("retry") == 0
    assert app.r.zcard("dead") == 0
    app.wait_inflight_empty()


def test_exhausted_retries_go_to_dead(app: App) -> None:
    app.start(config=app.config())
    # As if it had already failed 25 times (retry_count 24 after the 25th failure of Sidekiq's default).
    app.r.lpush("queue:default", app.raw_job("Fail", "e1", retry_count=24, failed_at=1.7e9))
    app.r.lpush("queue:default", app.raw_job("Fail", "e2", retry=3, retry_count=2, failed_at=1.7e9))
    app.r.lpush("queue:default", app.raw_job("Fail", "e3", retry=3, retry_count=1, failed_at=1.7e9))
    wait_until(lambda: app.r.zcard("dead") + app.r.zcard("retry") == 3, 10, what="3 failures stored")
    dead = {j["args"][0]: j for j in zset_jobs(app, "dead")}
    retry = {j["args"][0]: j for j in zset_jobs(app, "retry")}
    assert set(dead) == {"e1", "e2"}
    assert set(retry) == {"e3"}
    assert dead["e1"]["retry_count"] == 25
    assert dead["e2"]["retry_count"] == 3
    assert retry["e3"]["retry_count"] == 2
    for job in (*dead.values(), *retry.values()):
        assert job["failed_at"] == 1.7e9  # the first failure's time is kept
        assert isinstance(job["retried_at"], float)


def test_backtrace_option_keeps_the_last_lines(app: App) -> None:
    app.start(config=app.config())
    app.enqueue("FailDeep", "bt5", backtrace=5)
    app.enqueue("FailDeep", "btall", backtrace=True)
    wait_zcard(app, "retry", 2)
    jobs = {j["args"][0]: j for j in zset_jobs(app, "retry")}
    five = payload.decode_backtrace(jobs["bt5"]["error_backtrace"])
    full = payload.decode_backtrace(jobs["btall"]["error_backtrace"])
    assert len(full) > 5  # the job recursed 12 frames deep
    assert len(five) == 5
    assert five[-1] == "ValueError: deep bt5"
    assert full[-1] == "ValueError: deep btall"
    assert any("_deep" in line for line in five)


def test_unknown_job_name_is_retried_not_dead(app: App) -> None:
    app.start(config=app.config())
    app.r.lpush("queue:default", app.raw_job("NoSuchJob", 1))
    wait_zcard(app, "retry", 1)
    [job] = zset_jobs(app, "retry")
    assert "UnknownJob" in job["error_class"]
    assert "NoSuchJob" in job["error_message"]
    assert app.r.zcard("dead") == 0


def test_dead_set_keeps_its_limits(app: App) -> None:
    ancient = payload.encode(payload.build("Old", [], None, {}))
    app.r.zadd("dead", {ancient: time.time() - 10 * 86400})
    app.start(config=app.config(concurrency=1, dead_max_jobs=3, dead_timeout=86400))
    for i in range(4):
        app.enqueue("Fail", f"dl{i}", retry=0)
    wait_until(
        lambda: app.count("fail") == dict.fromkeys([f"dl{i}" for i in range(4)], 1), 10, what="4 fails"
    )
    wait_until(lambda: int(app.r.get("stat:failed") or 0) == 4, 5, what="stat:failed == 4")
    kept = [j["args"][0] for j in zset_jobs(app, "dead")]
    assert kept == ["dl1", "dl2", "dl3"]  # at most dead_max_jobs, the newest; older than dead_timeout: gone


MALFORMED = [
    b"not json",
    b"[1]",
    b'{"class":"x"}',
    b'{"class":1,"args":[]}',
    b'\xff\xfe{"class":"x","args":[]}',
    b'{"class":"x","args":{}}',
    b'{"class":"x","args":[NaN]}',
]


def test_malformed_payloads_go_to_dead_unchanged_and_the_worker_carries_on(app: App) -> None:
    d = app.start(config=app.config(concurrency=2))
    app.wait_booted(d)
    for raw in MALFORMED:
        app.r.lpush("queue:default", raw)
    good = [f"g{i}" for i in range(20)]
    for t in good:
        app.enqueue("Record", t)
    app.wait_tokens(good)
    wait_zcard(app, "dead", len(MALFORMED))
    assert set(app.r.zrange("dead", 0, -1)) == set(MALFORMED)  # byte-identical
    assert app.r.zcard("retry") == 0
    app.wait_inflight_empty()
    assert d.alive()
    errors = [line for line in d.lines() if " ERROR: " in line]
    assert len(errors) == len(MALFORMED), errors
    assert all("dead" in line for line in errors)
    assert "Traceback" not in d.output()


# -- heartbeat, stats, signals -----------------------------------------------------------------------------


def test_heartbeat_records_as_sidekiq_reads_them(app: App) -> None:
    config = app.config(concurrency=3, queues=["a", "b"], labels=["blue"], liveness_ttl=1.5)
    d = app.start("-g", "mytag", config=config)
    ident = app.wait_booted(d)
    host = os.environ.get("DYNO") or socket.gethostname()
    assert re.fullmatch(rf"{re.escape(host)}:\d+:[0-9a-f]{{12}}", ident)
    assert app.r.sismember("processes", ident)
    fields = {as_bytes(k).decode(): as_bytes(v).decode() for k, v in app.r.hgetall(ident).items()}
    assert {"info", "busy", "beat", "quiet", "rss", "rtt_us", "concurrency"} <= set(fields)
    assert (fields["busy"], fields["quiet"], fields["concurrency"]) == ("0", "false", "3")
    assert int(fields["rss"]) > 0
    assert 0 < app.r.ttl(ident) <= 60
    info = json.loads(fields["info"])
    assert info["hostname"] == host
    assert os.getpgid(info["pid"]) == d.pid
    assert ident.split(":")[1] == str(info["pid"])
    assert info["tag"] == "mytag"
    assert info["concurrency"] == 3
    assert info["queues"] == ["a", "b"]
    assert "blue" in info["labels"]
    assert info["identity"] == ident
    assert isinstance(info["started_at"], float)
    # It beats: `beat` moves on, and swarmd's liveness key has the configured TTL.
    first = float(fields["beat"])
    wait_until(lambda: float(as_bytes(app.r.hget(ident, "beat"))) > first, 5, what="a second beat")
    # Set in ms: 1.5 s, not truncated to 1 s (below beat_interval + a fetch, a live worker looks dead).
    assert 1000 < app.r.pttl(f"swarmd:alive:{ident}") <= 1500
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert not app.r.sismember("processes", ident)  # a clean stop leaves the process set


def test_busy_job_shows_in_work_and_workers(app: App) -> None:
    d = app.start(config=app.config())
    ident = app.wait_booted(d)
    raw = app.raw_job("Block", "busy1", queue="default")
    before = int(time.time())
    app.r.lpush("queue:default", raw)
    app.wait_tokens(["busy1"], phase="start")
    for key in (f"{ident}:work", f"{ident}:workers"):

        def holds_one(k: str = key) -> bool:
            return app.r.hlen(k) == 1

        wait_until(holds_one, 5, what=f"the busy job in {key}")
        [entry] = app.r.hvals(key)
        work = json.loads(entry)
        assert work["queue"] == "default"
        assert work["payload"] == raw.decode()  # the raw job string, as Sidekiq's Web UI parses it
        assert isinstance(work["run_at"], int)
        assert before <= work["run_at"] <= int(time.time())
        assert 0 < app.r.ttl(key) <= 60
    wait_until(lambda: app.r.hget(ident, "busy") == b"1", 5, what="busy == 1")
    app.flag("busy1")
    app.wait_tokens(["busy1"])
    wait_until(lambda: not app.r.exists(f"{ident}:work"), 5, what=":work to empty")
    wait_until(lambda: app.r.hget(ident, "busy") == b"0", 5, what="busy == 0")


def test_signals_list_quiet_then_stop(app: App) -> None:
    # A bare worker (what the supervisor forks): the Web UI's buttons act on one worker identity.
    d = app.start_worker(app.config(require=[JOBS_MODULE]))
    ident = app.wait_booted(d)
    app.r.lpush(f"{ident}-signals", "TSTP")  # Sidekiq Web UI's "Quiet" button
    wait_until(lambda: app.r.hget(ident, "quiet") == b"true", 5, what='quiet == "true"')
    pushed_at = time.time()
    app.enqueue("Record", "not-taken")
    # Let the quiet worker go through several beats and a whole fetch timeout (0.5 s).
    wait_until(
        lambda: float(as_bytes(app.r.hget(ident, "beat"))) > pushed_at + 1.0, 5, what="beats after quiet"
    )
    assert app.r.llen("queue:default") == 1
    assert app.tokens() == []
    assert d.alive()
    app.r.lpush(f"{ident}-signals", "TERM")  # the "Stop" button
    assert d.wait_exit() == 0
    assert app.r.llen("queue:default") == 1
    assert app.inflight_entries() == 0
    assert app.tokens() == []
    assert not app.r.sismember("processes", ident)


def test_web_ui_stop_retires_the_worker_and_a_swarm_of_one_exits_0(app: App) -> None:
    d = app.start(config=app.config())
    ident = app.wait_booted(d)
    app.r.lpush(f"{ident}-signals", "TSTP")
    wait_until(lambda: app.r.hget(ident, "quiet") == b"true", 5, what='quiet == "true"')
    app.enqueue("Record", "held")
    app.r.lpush(f"{ident}-signals", "TERM")
    assert d.wait_exit() == 0  # not replaced by a fresh worker that would run "held"
    assert app.tokens() == []
    assert app.r.llen("queue:default") == 1
    assert app.inflight_entries() == 0


def test_tstp_quiets_and_term_exits_0(app: App) -> None:
    d = app.start(config=app.config())
    ident = app.wait_booted(d)
    d.signal(signal.SIGTSTP)
    wait_until(lambda: app.r.hget(ident, "quiet") == b"true", 5, what='quiet == "true"')
    pushed_at = time.time()
    app.enqueue("Record", "not-taken")
    wait_until(
        lambda: float(as_bytes(app.r.hget(ident, "beat"))) > pushed_at + 1.0, 5, what="beats after quiet"
    )
    assert app.r.llen("queue:default") == 1
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert app.tokens() == []


def test_term_during_a_long_job_pushes_it_back_to_the_head_unchanged(app: App) -> None:
    d = app.start(config=app.config(concurrency=1, timeout=1))
    app.wait_booted(d)
    long_raw = app.raw_job("Block", "long")
    app.r.lpush("queue:default", long_raw)
    app.wait_tokens(["long"], phase="start")
    app.enqueue("Record", "next1")
    app.enqueue("Record", "next2")
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    queue = app.r.lrange("queue:default", 0, -1)
    assert queue[-1] == long_raw  # RPUSH: the head (consumers take from the right), byte for byte
    assert [json.loads(q)["args"][0] for q in queue] == ["next2", "next1", "long"]
    assert app.inflight_entries() == 0
    assert app.tokens() == []
    assert any("pushed back" in line for line in d.lines())
    # Nothing was lost: the next worker runs all three, the long one first, each once.
    app.flag("long")
    app.start(config=app.config(concurrency=1))
    app.wait_tokens(["long", "next1", "next2"])
    assert app.tokens() == ["long", "next1", "next2"]


def test_second_term_stops_at_once_and_still_pushes_back(app: App) -> None:
    d = app.start(config=app.config(concurrency=1, timeout=120))
    ident = app.wait_booted(d)
    raw = app.raw_job("Block", "slow")
    app.r.lpush("queue:default", raw)
    app.wait_tokens(["slow"], phase="start")
    d.signal(signal.SIGTERM)
    wait_until(lambda: app.r.hget(ident, "quiet") == b"true", 5, what="the worker to start stopping")
    d.signal(signal.SIGTERM)  # don't wait the 120 s timeout
    assert d.wait_exit(15) == 0
    assert app.r.lrange("queue:default", 0, -1) == [raw]
    app.wait_inflight_empty(1)
    assert app.tokens() == []


def test_namespace_keeps_apps_apart(app: App) -> None:
    d = app.start(config=app.config(redis={"url": app.redis_url, "namespace": "app1"}))
    ident = app.wait_booted(d, namespace="app1")
    app.enqueue("Record", "other-app")  # no namespace: not this worker's
    Client(app.redis_url, namespace="app1").enqueue("Record", ["mine"], None, {})
    app.wait_tokens(["mine"])
    assert app.r.sismember("app1:processes", ident)
    assert app.r.exists(f"app1:{ident}")
    assert app.r.llen("queue:default") == 1
    wait_until(lambda: app.r.get("app1:stat:processed") == b"1", 5, what="app1:stat:processed == 1")
    assert not app.r.exists("processes")


# -- delayed calls ---------------------------------------------------------------------------------------


@pytest.fixture
def jobs_module(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The job module imported in the test process too, as the producer side of an app would."""
    monkeypatch.setenv("SWARMD_TEST_LEDGER", str(app.ledger))
    monkeypatch.setenv("SWARMD_TEST_FLAGS", str(app.flags))
    monkeypatch.syspath_prepend(str(app.root))
    monkeypatch.setattr(client_mod, "_default", app.client)
    sys.modules.pop(JOBS_MODULE, None)
    module = importlib.import_module(JOBS_MODULE)
    yield module
    sys.modules.pop(JOBS_MODULE, None)


def test_delay_runs_a_function_under_delay_allow(app: App, jobs_module: ModuleType) -> None:
    app.start(config=app.config(delay_allow=[JOBS_MODULE]))
    swarmd.delay(jobs_module.plain, "delayed1")
    app.wait_tokens(["delayed1"])
    assert app.r.zcard("dead") == app.r.zcard("retry") == 0


def test_delay_outside_delay_allow_is_refused_to_dead_with_the_reason(
    app: App, jobs_module: ModuleType
) -> None:
    d = app.start(config=app.config())  # delay_allow is empty by default
    jid = swarmd.delay(jobs_module.plain, "refused1")
    wait_zcard(app, "dead", 1)
    [job] = zset_jobs(app, "dead")
    assert job["jid"] == jid
    assert "DelayRefused" in job["error_class"]
    assert "delay_allow" in job["error_message"]
    assert app.r.zcard("retry") == 0
    assert app.tokens() == []
    assert any(" ERROR: " in line and "delay_allow" in line for line in d.lines())


# -- pidfile ----------------------------------------------------------------------------------------------


def test_pidfile_written_removed_and_a_second_instance_refused(app: App) -> None:
    config = app.config(pidfile="run/pids/swarmd.pid")  # missing parent folders are created
    first = app.start(config=config)
    app.wait_booted(first)
    pidfile = app.root / "run" / "pids" / "swarmd.pid"
    assert pidfile.read_text().strip() == str(first.pid)
    second = app.start(config=config)
    code = second.wait_exit()
    assert code != 0
    assert "another swarmd is running" in second.output()
    assert "Traceback" not in second.output()
    assert first.alive()
    assert pidfile.read_text().strip() == str(first.pid)
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == 0
    assert not pidfile.exists()


def test_an_idle_processor_takes_a_new_job_while_others_run_long_ones(app: App) -> None:
    # Three processors; two block on long jobs. A job pushed now must run on the third at once, not
    # when a long job ends (a partial fetch once left idle processors asleep beside the queue).
    app.start(config=app.config(concurrency=3))
    app.enqueue("Block", "long1")
    app.enqueue("Block", "long2")
    app.wait_tokens(["long1", "long2"], phase="start")
    app.enqueue("Record", "quick")
    app.wait_tokens(["quick"])
    assert app.tokens(phase="done") == ["quick"]  # the long jobs are still running
    app.flag("long1")
    app.flag("long2")
    app.wait_tokens(["long1", "long2"])


def test_a_long_job_at_the_head_does_not_hold_back_the_job_behind_it(app: App) -> None:
    # Both jobs are queued before the worker starts: with free processors, both run together.
    app.enqueue("Block", "head")
    app.enqueue("Record", "behind")
    app.start(config=app.config(concurrency=3))
    app.wait_tokens(["behind"])
    assert app.tokens(phase="start") == ["head"]
    app.flag("head")
    app.wait_tokens(["head"])


def test_a_failure_message_with_undecodable_bytes_is_recorded_and_the_worker_carries_on(app: App) -> None:
    app.start(config=app.config(concurrency=1))
    app.enqueue("FailUndecodable", "odd")
    wait_until(lambda: app.r.zcard("retry") == 1, 10, what="the failed job in retry")
    entry = json.loads(members(app.r, "retry")[0])
    assert entry["error_message"] == "no such file: \udcff.png"  # kept as a JSON \\udcff escape
    assert entry["error_class"] == "ValueError"
    app.enqueue("Record", "after")
    app.wait_tokens(["after"])
