"""Per-job time limits, with two swarms (two ``swarmd`` processes) on one Redis.

A job looping in Python stops with `swarmd.JobTimeout` at its limit and counts as a failure; an
``async def`` job is cancelled the same way. A job the exception cannot reach is *stuck* once its grace
has passed: one asleep in a single long ``time.sleep`` (its worker asks to be recycled: its other jobs
finish) and one spinning in C code that holds the GIL (the whole worker is frozen: its supervisor kills
it as hung, its other jobs are recovered). Either way the stuck job then runs alone in quarantine
workers and ends in `dead` as poison; nothing else is lost.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from swarmd.recovery import POISON_RUNS
from tests.conftest import Daemon, wait_until
from tests.integration.conftest import App
from tests.replies import members

LIMIT_JOBS = "limit_jobs"

LIMIT_JOBS_SOURCE = textwrap.dedent(
    '''
    import asyncio
    import os
    import re
    import time

    import swarmd
    from swarmd_testjobs import note


    @swarmd.job(name="Loop", timeout=1)
    def loop(token):
        note("start", token, os.getpid())
        for _ in range(1000):
            time.sleep(0.1)
        note("done", token, os.getpid())


    @swarmd.job(name="Caught", timeout=1)
    def caught(token):
        """Catches JobTimeout and returns: the run still ran past its limit."""
        note("start", token, os.getpid())
        try:
            for _ in range(1000):
                time.sleep(0.1)
        except swarmd.JobTimeout:
            note("caught", token, os.getpid())


    @swarmd.job(name="AsyncLoop", timeout=1)
    async def async_loop(token):
        note("start", token, os.getpid())
        for _ in range(1000):
            await asyncio.sleep(0.1)
        note("done", token, os.getpid())


    @swarmd.job(name="Unlimited")
    def unlimited(token, seconds):
        note("start", token, os.getpid())
        for _ in range(int(seconds * 10)):
            time.sleep(0.1)
        note("done", token, os.getpid())


    @swarmd.job(name="LongSleep", timeout=1)
    def long_sleep(token):
        """One long sleep: JobTimeout cannot be raised before it returns (the grace path)."""
        note("start", token, os.getpid())
        time.sleep(100)
        note("done", token, os.getpid())


    @swarmd.job(name="Regex", timeout=1)
    def regex(token):
        """A catastrophic regex: C code that holds the GIL for ever, freezing its whole worker."""
        note("start", token, os.getpid())
        re.match(r"(a+)+$", "a" * 64 + "b")
        note("done", token, os.getpid())
    '''
)


def setup(app: App) -> None:
    (app.root / f"{LIMIT_JOBS}.py").write_text(LIMIT_JOBS_SOURCE)


def swarm(app: App, name: str, **settings: Any) -> Daemon:
    config: Path = app.config(name, **{"timeout_grace": 1, **settings})
    return app.start("-r", LIMIT_JOBS, config=config)


def dead(app: App) -> dict[str, dict[str, Any]]:
    """The jobs in `dead` by their first argument."""
    jobs = [json.loads(m) for m in members(app.r, "dead")]
    return {job["args"][0]: job for job in jobs}


def starts(app: App, token: str) -> list[int]:
    return [int(e[2]) for e in app.entries() if e[0] == "start" and e[1] == token]


def test_python_and_async_jobs_fail_with_job_timeout_at_their_limit(app: App) -> None:
    setup(app)
    swarm(app, "a.yml")
    swarm(app, "b.yml", job_timeout=1)
    app.wait_booted(app.daemons[1], count=2)
    app.enqueue("Loop", "loop", retry=0)
    app.enqueue("AsyncLoop", "async", retry=0)
    app.enqueue("Caught", "caught", retry=0)
    app.enqueue("Unlimited", "set", 30, retry=0, timeout=1)  # `.set(timeout=1)` writes it in the payload
    app.enqueue("Unlimited", "quick", 0.2, retry=0)  # no limit of its own, and 1 s is plenty
    wait_until(lambda: len(dead(app)) == 4, 30, what="four jobs in dead")
    app.wait_tokens(["quick"])
    jobs = dead(app)
    for token in ("loop", "async", "caught", "set"):
        assert jobs[token]["error_class"] == "swarmd.JobTimeout", jobs[token]
        assert jobs[token]["error_message"] == "the job ran past its time limit of 1 s"
    assert app.count("done") == {"quick": 1}
    assert app.count("caught") == {"caught": 1}
    assert int(app.r.get("stat:failed") or 0) == 4
    app.wait_inflight_empty()


def test_a_job_timing_out_is_retried_as_any_failure(app: App) -> None:
    setup(app)
    swarm(app, "a.yml")
    swarm(app, "b.yml")
    app.wait_booted(app.daemons[1], count=2)
    app.enqueue("Loop", "loop", retry=1)
    wait_until(lambda: app.r.zcard("retry") == 1, 30, what="the job in retry")
    [entry] = members(app.r, "retry")
    job = json.loads(entry)
    assert (job["error_class"], job["retry_count"]) == ("swarmd.JobTimeout", 0)


def test_a_job_asleep_past_its_grace_recycles_its_worker_and_ends_dead_as_poison(app: App) -> None:
    setup(app)
    a = swarm(app, "a.yml", queues=["a"], concurrency=4, timeout=10)
    swarm(app, "b.yml", queues=["b"])
    app.wait_booted(a, count=2)
    siblings = ["s1", "s2", "s3"]
    for token in siblings:
        app.enqueue("Block", token, queue="a")
    wait_until(lambda: len(app.tokens("start")) == 3, 20, what="the siblings running")
    app.enqueue("LongSleep", "sleepy", queue="a")
    wait_until(lambda: starts(app, "sleepy"), 20, what="the sleeping job running")
    first = starts(app, "sleepy")[0]
    a.wait_log("asking to be recycled: job LongSleep")
    for token in siblings:  # the worker being recycled lets its other jobs finish
        app.flag(token)
    app.wait_tokens(siblings)
    assert {int(e[2]) for e in app.entries() if e[0] == "done"} == {first}
    wait_until(lambda: "sleepy" in dead(app), 90, what="the stuck job dead as poison")
    assert dead(app)["sleepy"]["error_class"] == "swarmd.PoisonJob"
    assert len(starts(app, "sleepy")) == POISON_RUNS
    assert app.count("done") == dict.fromkeys(siblings, 1)
    assert app.r.llen("swarmd:quarantine") == app.r.llen("queue:a") == 0


def test_a_job_spinning_in_c_gets_its_frozen_worker_killed_and_ends_dead_as_poison(app: App) -> None:
    setup(app)
    # heartbeat_timeout is far away: what kills the frozen worker is the job's time limit and grace.
    # Its liveness key outlives that (as with the default liveness_ttl), so its supervisor, which sees
    # the death, recovers its jobs, not the other swarm (which would take it for a vanished host).
    slow = {"heartbeat_timeout": 600, "liveness_ttl": 30}
    a = swarm(app, "a.yml", queues=["a"], concurrency=4, **slow)
    swarm(app, "b.yml", queues=["b"], **slow)
    app.wait_booted(a, count=2)
    siblings = ["s1", "s2", "s3"]
    for token in siblings:
        app.enqueue("Block", token, queue="a")
    wait_until(lambda: len(app.tokens("start")) == 3, 20, what="the siblings running")
    app.enqueue("Regex", "regex", queue="a")
    wait_until(lambda: starts(app, "regex"), 20, what="the regex running")
    for token in siblings:  # too late for the frozen worker: they finish once recovered
        app.flag(token)
    a.wait_log("with a job stuck past its time limit", timeout_s=30)
    app.wait_tokens(siblings, timeout_s=60)
    wait_until(lambda: "regex" in dead(app), 120, what="the spinning job dead as poison")
    assert dead(app)["regex"]["error_class"] == "swarmd.PoisonJob"
    assert len(starts(app, "regex")) == POISON_RUNS
    assert set(app.count("done")) == set(siblings)
    assert app.r.llen("swarmd:quarantine") == app.r.llen("queue:a") == 0
