"""Defects a fault-injection campaign found, each reproduced with the real daemon: a lone surrogate in
a field that becomes a Redis key name, and innocent jobs dead-lettered by the poison guard.

A lone surrogate (``"\\udcff"`` in the JSON) decodes to a Python str that redis-py refuses to encode
as a key name. Such a job must go to `dead` unchanged with one ERROR line, and never stop a loop that
serves every other job (scheduler, recovery, push back).
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from swarmd import payload
from tests.conftest import wait_until
from tests.integration.conftest import App
from tests.replies import members, set_members


def surrogate_job(field: str, jid: str = "a" * 24) -> bytes:
    fields = {"class": "NoSuchJob", "args": [], "queue": "default", "jid": jid, "retry": True}
    text = json.dumps(fields)[:-1] + f', "{field}": "\\udcff"}}'  # the escape, as Ruby or a hand could write
    return text.encode()


def error_lines(app: App, text: str) -> list[str]:
    return [line for d in app.daemons for line in d.lines() if " ERROR: " in line and text in line]


def test_the_campaigns_surrogate_jobs_go_to_dead_unchanged_and_the_scheduler_keeps_serving(app: App) -> None:
    d = app.start(config=app.config())
    app.wait_booted(d)
    # As pushed by hand in the campaign: it would fail (no such job) and retry to queue "\udcff".
    pushed = surrogate_job("retry_queue")
    app.r.lpush("queue:default", pushed)
    # What that retry looked like in the campaign once due: every poll of every worker raised on it.
    due = surrogate_job("queue", jid="b" * 24)
    app.r.zadd("retry", {due: payload.now() - 1})
    jid = app.client.enqueue("Record", ["later"], None, {"queue": "default"}, at=payload.now() + 0.5)
    app.wait_tokens(["later"])
    wait_until(lambda: app.r.zcard("dead") == 2, 10, what="both surrogate jobs in dead")
    assert set(app.r.zrange("dead", 0, -1)) == {pushed, due}  # unchanged, byte for byte
    assert app.r.zcard("retry") == app.r.zcard("schedule") == 0
    assert len(error_lines(app, "invalid 'retry_queue'")) == 1
    assert len(error_lines(app, "invalid 'queue'")) == 1
    assert not [line for line in d.lines() if "Traceback" in line or "housekeeping (" in line]
    assert jid and d.alive()


def test_a_surrogate_job_in_flight_when_its_worker_is_sigkilled_blocks_no_other_job(app: App) -> None:
    d = app.start(config=app.config(concurrency=2))
    ident = app.wait_booted(d)
    app.enqueue("Block", "k1")
    app.wait_tokens(["k1"], phase="start")
    # The surrogate job beside it in the private list (as a fetch would have put it there).
    bad = surrogate_job("queue")
    app.r.lpush(f"swarmd:inflight:{ident}", bad)
    [worker] = [int(ident.split(":")[1])]
    app.flag("k1")  # its next run may finish
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: app.r.zrange("dead", 0, -1) == [bad], 10, what="the surrogate job in dead unchanged")
    app.wait_tokens(["k1"])  # recovered to the quarantine list, then run alone
    wait_until(lambda: app.inflight_entries() == 0, 10, what="every in-flight list to empty")
    assert app.r.llen("swarmd:quarantine") == 0
    app.enqueue("Record", "after")
    app.wait_tokens(["after"])
    assert len(error_lines(app, "invalid 'queue'")) == 1


def test_a_surrogate_job_in_flight_at_term_goes_to_dead_and_the_others_go_back(app: App) -> None:
    d = app.start(config=app.config(concurrency=2, timeout=0.5))
    ident = app.wait_booted(d)
    app.enqueue("Block", "k2")
    app.wait_tokens(["k2"], phase="start")
    bad = surrogate_job("queue")
    app.r.lpush(f"swarmd:inflight:{ident}", bad)
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert app.r.zrange("dead", 0, -1) == [bad]
    [back] = app.r.lrange("queue:default", 0, -1)
    assert json.loads(back)["args"] == ["k2"]
    assert app.inflight_entries() == 0
    # Today's failure mode was "worker ... failed" with a traceback, jobs left behind, and exit 0.
    assert not [line for line in d.lines() if "Traceback" in line or line.endswith(" failed")]


def test_a_killed_worker_leaves_the_process_set_as_soon_as_its_list_is_recovered(app: App) -> None:
    # Not after the 60 s TTL of its records: `swarmctl status` and Sidekiq's Web UI drop it at once.
    d = app.start("--processes", "2", config=app.config())
    app.wait_booted(d, count=2)
    ident = next(m.decode() for m in set_members(app.r, "processes"))
    app.r.hset(f"{ident}:work", "tid", "{}")  # as if a job had been busy in it at its last beat
    os.kill(int(ident.split(":")[1]), signal.SIGKILL)
    wait_until(lambda: not app.r.sismember("processes", ident), 10, what="the dead worker out of `processes`")
    assert not app.r.exists(ident, f"{ident}:work", f"{ident}:workers", f"swarmd:alive:{ident}")
    assert not app.r.sismember("swarmd:workers", ident)
    app.wait_booted(d, count=2)  # its replacement


# -- the poison guard -------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_poison_jobs_among_normal_ones_only_the_poison_goes_to_dead(app: App) -> None:
    # 300 normal jobs and 3 that SIGKILL their own worker, next to each other so that batch fetches
    # take normal jobs with them: no normal job may be dead-lettered, each poison job is dead after at
    # most 3 runs, and the swarm never exits.
    d = app.start("--processes", "2", config=app.config(concurrency=4))
    app.wait_booted(d, count=2)
    normal = [f"n{i}" for i in range(300)]
    poison = [f"p{i}" for i in range(3)]
    app.client.enqueue_bulk("Record", [(t,) for t in normal[:150]], {})
    app.client.enqueue_bulk("Crash", [(t,) for t in poison], {})
    app.client.enqueue_bulk("Record", [(t,) for t in normal[150:]], {})
    app.wait_tokens(normal, timeout_s=90)
    wait_until(lambda: app.r.zcard("dead") == 3, 60, what="the 3 poison jobs in dead")
    dead = [json.loads(m) for m in members(app.r, "dead")]
    assert sorted(j["args"][0] for j in dead) == poison
    assert all(j["class"] == "Crash" and j["error_class"] == "swarmd.PoisonJob" for j in dead)
    runs = app.count("start")
    assert all(1 <= runs[p] <= 3 for p in poison), runs
    wait_until(lambda: app.r.llen("swarmd:quarantine") == 0, 20, what="an empty quarantine list")
    assert app.r.zcard("retry") == 0 and app.r.llen("queue:default") == 0
    assert d.alive() and "crash loop" not in d.output()
