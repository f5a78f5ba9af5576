"""Unique jobs with two swarms sharing one Redis: the lock holds while the job is enqueued, scheduled
or running, and is released at its success (or its start, ``unique_until: start``), when it goes to
`dead`, when an operator deletes it (``swarmctl delete``) or clears its queue, and by a poison job's
trip to `dead`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from tests.conftest import LEDGER_NOTE, wait_until
from tests.system.conftest import Swarm

MODULE = "unique_jobs"
SOURCE = textwrap.dedent(
    """
    import os
    import time

    import swarmd

    LEDGER = os.environ["SWARMD_TEST_LEDGER"]
    FLAGS = os.environ["SWARMD_TEST_FLAGS"]


    {note}


    @swarmd.job(name="UBlock")
    def ublock(token):
        note("start", token, os.getpid())
        wait_flag(token)
        note("done", token, os.getpid())


    @swarmd.job(name="UFail")
    def ufail(token):
        note("start", token, os.getpid())
        raise RuntimeError("fails on purpose")
    """
).replace("{note}", LEDGER_NOTE)


def push(swarm: Swarm, name: str, token: str, **options: Any) -> str | None:
    at = options.pop("at", None)
    return swarm.client.enqueue(
        name, [token], None, {"queue": "default", "unique_for": 600, **options}, at=at
    )


@pytest.fixture
def swarms(swarm: Swarm) -> Swarm:
    (swarm.root / f"{MODULE}.py").write_text(SOURCE)
    config = swarm.config(concurrency=2)
    swarm.start_ready("-r", MODULE, processes=1, config=config)
    swarm.start_ready("-r", MODULE, processes=1, config=config)
    return swarm


def test_the_lock_holds_while_queued_and_running_and_goes_at_success(swarms: Swarm) -> None:
    s = swarms
    assert push(s, "UBlock", "s") is not None
    assert push(s, "UBlock", "s") is None
    s.wait_tokens(["s"], phase="start")
    assert push(s, "UBlock", "s") is None  # running
    s.flag("s")
    s.wait_tokens(["s"])
    wait_until(lambda: push(s, "UBlock", "s") is not None, 10, what="the lock to go at the job's success")
    wait_until(lambda: s.count()["s"] == 2, 20, what="the second run")


def test_unique_until_start_releases_the_lock_when_the_job_starts(swarms: Swarm) -> None:
    s = swarms
    assert push(s, "UBlock", "st", unique_until="start", at=time.time() + 2) is not None
    assert push(s, "UBlock", "st", unique_until="start") is None  # scheduled: not started yet
    s.wait_tokens(["st"], phase="start")
    wait_until(lambda: push(s, "UBlock", "st", unique_until="start") is not None, 10, what="release at start")
    s.flag("st")
    wait_until(lambda: s.count()["st"] == 2, 20, what="both runs")


def test_a_job_that_goes_to_dead_releases_its_lock(swarms: Swarm) -> None:
    s = swarms
    assert push(s, "UFail", "d", retry=0) is not None
    wait_until(lambda: s.r.zcard("dead") == 1, 20, what="the job in dead")
    assert push(s, "UFail", "d", retry=0) is not None
    wait_until(lambda: s.r.zcard("dead") == 2, 20, what="the second one in dead")


def test_a_retrying_job_keeps_its_lock(swarms: Swarm) -> None:
    s = swarms
    assert push(s, "UFail", "r", retry=5) is not None
    wait_until(lambda: s.r.zcard("retry") == 1, 20, what="the job in retry")
    assert push(s, "UFail", "r", retry=5) is None


def test_deleting_a_scheduled_job_or_clearing_its_queue_releases_its_lock(swarms: Swarm) -> None:
    s = swarms
    jid = push(s, "UBlock", "del", at=time.time() + 3600)
    assert jid is not None and push(s, "UBlock", "del") is None
    result = subprocess.run(
        [sys.executable, "-m", "swarmd.ctl", "delete", jid, "--redis-url", s.redis_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert push(s, "UBlock", "del", queue="parked") is not None  # a queue no swarm fetches from
    assert push(s, "UBlock", "del", queue="parked") is None
    result = subprocess.run(
        [sys.executable, "-m", "swarmd.ctl", "clear", "parked", "--yes", "--redis-url", s.redis_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert push(s, "UBlock", "del", queue="parked") is not None
    assert not s.tokens("start")  # none of them ever ran


def test_a_poison_job_sent_to_dead_by_the_poison_guard_releases_its_lock(swarms: Swarm) -> None:
    s = swarms
    assert push(s, "Crash", "p") is not None  # SIGKILLs each worker that runs it
    wait_until(lambda: s.r.zcard("dead") == 1, 60, what="the poison job in dead")
    [raw] = s.r.zrange("dead", 0, -1)
    assert b"swarmd.PoisonJob" in raw
    # The recoverer releases the lock right after the script that moved the job to dead (a recoverer
    # dying in between leaves it to expire after unique_for): a push is accepted again soon after.
    wait_until(lambda: push(s, "Crash", "p") is not None, 30, what="the lock released after the poison")
