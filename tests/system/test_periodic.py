"""Periodic jobs across two swarms sharing one Redis: each tick enqueued exactly once, while one swarm
is SIGKILLed and restarted and the other is HUP-reloaded; bad entries are one line and exit 78.

The schedule has a seconds field (cronsim reads a sixth field, in front, as seconds), so a test sees
dozens of ticks in about a minute with the same code path as ``* * * * *``.
"""

from __future__ import annotations

import json
import signal
import textwrap
from collections import defaultdict

import pytest

from swarmd.admin import Admin
from tests.conftest import LEDGER_NOTE, wait_until
from tests.system.conftest import Swarm

TICK_MODULE = "tick_jobs"
TICK_SOURCE = textwrap.dedent(
    """
    import os

    import swarmd

    LEDGER = os.environ["SWARMD_TEST_LEDGER"]


    {note}


    @swarmd.job(name="Tick")
    def tick(label="config"):
        job = swarmd.current_job()
        note("tick", label, int(job.payload["periodic_at"]), job.jid)


    @swarmd.periodic("*/2 * * * * *", timezone="Europe/Berlin")
    @swarmd.job(name="Decorated")
    def decorated():
        job = swarmd.current_job()
        note("tick", "decorated", int(job.payload["periodic_at"]), job.jid)
    """
).replace("{note}", LEDGER_NOTE)

EVERY_S = 2


def ticks(swarm: Swarm, label: str) -> dict[int, set[str]]:
    """tick time -> the jids of the jobs that ran for it (a job run twice, after a SIGKILL, is one jid)."""
    out: dict[int, set[str]] = defaultdict(set)
    for entry in swarm.entries():
        if entry[0] == "tick" and entry[1] == label:
            out[int(entry[2])].add(entry[3])
    for raw in swarm.r.lrange("queue:default", 0, -1):  # pushed after the swarms stopped fetching
        job = json.loads(raw)
        if (job["args"] or ["decorated"])[0] == label:
            out[int(job["periodic_at"])].add(job["jid"])
    return out


def enqueued_by(text: str) -> int:
    return text.count("enqueued the tick of")


@pytest.mark.timeout(240)
def test_two_swarms_enqueue_each_tick_once_through_a_sigkill_and_a_reload(swarm: Swarm) -> None:
    (swarm.root / f"{TICK_MODULE}.py").write_text(TICK_SOURCE)
    config = swarm.config(
        periodic=[{"cron": f"*/{EVERY_S} * * * * *", "job": "Tick", "args": ["config"]}],
    )
    a = swarm.start_ready("-r", TICK_MODULE, config=config)
    b = swarm.start_ready("-r", TICK_MODULE, config=config)

    def seen() -> int:
        return len(ticks(swarm, "config"))

    wait_until(lambda: seen() >= 8, 60, what="8 ticks with both swarms up")
    a.kill_group()  # a host lost: its claimer (and the job it may be running) gone without a word
    wait_until(lambda: seen() >= 12, 60, what="ticks while only one swarm runs")
    a = swarm.start_ready("-r", TICK_MODULE, config=config)
    b.signal(signal.SIGHUP)  # a rolling reload: slot 0's worker is replaced while A claims
    b.wait_log("reload done", 60)
    wait_until(lambda: seen() >= 30, 90, what="30 ticks through the restart and the reload")
    for d in (a, b):
        d.signal(signal.SIGTERM)
    for d in (a, b):
        assert d.wait_exit(30) == 0

    for label in ("config", "decorated"):
        got = ticks(swarm, label)
        assert got, label
        doubled = {t: jids for t, jids in got.items() if len(jids) > 1}
        assert not doubled, f"{label}: ticks enqueued more than once: {doubled}"
        first, last = min(got), max(got)
        missing = [t for t in range(first, last + 1, EVERY_S) if t not in got]
        # One swarm always ran: a tick is never lost (each tick's claim lands within a second or so).
        assert not missing, f"{label}: ticks never enqueued: {missing} of {first}..{last}"
    # Both swarms took part: whichever claimer came first pushed, the other found the tick taken.
    outputs = [d.output() for d in swarm.daemons]
    assert enqueued_by(outputs[0] + outputs[2]) > 0, "swarm A never enqueued a tick"
    assert enqueued_by(outputs[1]) > 0, "swarm B never enqueued a tick"
    # What `swarmctl periodic` and the dashboard show: both entries, each with its last and next tick.
    admin = Admin.from_url(swarm.redis_url)
    try:
        listed = {(e.job, e.timezone): e for e in admin.periodic()}
    finally:
        admin.close()
    assert set(listed) == {("Tick", None), ("Decorated", "Europe/Berlin")}
    tick = listed[("Tick", None)]
    assert tick.args == ["config"] and tick.last is not None and tick.last >= max(ticks(swarm, "config"))
    assert tick.next is not None and tick.next > tick.last


def test_a_periodic_entry_naming_an_unknown_job_stops_the_swarm_with_exit_78(swarm: Swarm) -> None:
    config = swarm.config(periodic=[{"cron": "0 * * * *", "job": "Recrod"}])
    daemon = swarm.start("--processes", "2", config=config)
    assert daemon.wait_exit(30) == 78
    lines = [line for line in daemon.lines() if "Recrod" in line]
    assert lines and "periodic[0].job: no job function is registered as 'Recrod'" in lines[0]
    assert "did you mean 'Record'" in lines[0]
    assert "Traceback" not in daemon.output()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"cron": "61 * * * *", "job": "Record"},
            "periodic[0]: bad cron expression '61 * * * *': Bad minute",
        ),
        (
            {"cron": "* * *", "job": "Record"},
            "periodic[0]: bad cron expression '* * *': Wrong number of fields",
        ),
        (
            {"cron": "0 3 * * *", "job": "Record", "timezone": "Europe/Berln"},
            "periodic[0]: unknown time zone 'Europe/Berln'",
        ),
        ({"cron": "0 3 * * *", "job": "Record", "every": 5}, "periodic[0].every: unknown key"),
        ({"cron": "0 3 * * *"}, "periodic[0].job: expected a non-empty string, got null"),
    ],
)
def test_a_bad_periodic_entry_is_one_line_and_exit_78(
    swarm: Swarm, entry: dict[str, object], message: str
) -> None:
    config = swarm.config(periodic=[entry])
    daemon = swarm.start(config=config)
    assert daemon.wait_exit(30) == 78
    out = daemon.output().strip()
    assert len(out.splitlines()) == 1, out
    assert message in out


def test_a_bad_periodic_decorator_is_one_line_and_exit_78(swarm: Swarm) -> None:
    (swarm.root / "bad_periodic.py").write_text(
        "import swarmd\n\n"
        "@swarmd.periodic('0 3 * * *', timezone='Mars/Olympus')\n@swarmd.job\ndef f():\n    pass\n"
    )
    daemon = swarm.start("--processes", "1", "-r", "bad_periodic")
    assert daemon.wait_exit(30) == 78
    lines = [line for line in daemon.lines() if "Mars/Olympus" in line]
    assert lines and "unknown time zone 'Mars/Olympus'" in lines[0]
    assert "Traceback" not in daemon.output()
