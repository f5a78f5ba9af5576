"""`swarmd.periodic_jobs.Periodic` against a real Redis (catch-up after downtime, job fields), and
what an operator sees: ``swarmctl periodic``, ``swarmctl check`` and the dashboard's /periodic page."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from werkzeug.test import Client

from swarmd import connection
from swarmd.config import PeriodicEntry
from swarmd.keys import Keys
from swarmd.periodic_jobs import Periodic
from swarmd.scripts import Scripts
from swarmd.web.app import create_app
from tests.conftest import run_ctl
from tests.replies import items

HOUR = "0 * * * *"
T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # on the hour


@pytest.fixture
def scripts(redis_url: str) -> Iterator[Scripts]:
    client = connection.connect(redis_url)
    yield Scripts(client, Keys())
    client.close()


def hourly(catch_up: float | None, scripts: Scripts, **options: object) -> Periodic:
    entry = PeriodicEntry(HOUR, "Report", ("daily", 1), None)
    return Periodic(scripts, [entry], {"Report": {"queue": "reports", **options}}, catch_up)


def jobs(r: redis.Redis, queue: str = "reports") -> list[dict[str, object]]:
    return [json.loads(raw) for raw in reversed(items(r, f"queue:{queue}"))]


def test_ticks_run_once_and_a_new_entry_starts_at_its_next_tick(scripts: Scripts, r: redis.Redis) -> None:
    p = hourly(None, scripts, retry=3)
    assert p.tick(T0 + 60) == 0  # first sight: the 10:00 tick is recorded, not run
    assert p.due == T0 + 3600
    assert p.tick(T0 + 3600 + 0.2) == 1
    assert hourly(None, scripts).tick(T0 + 3600 + 0.5) == 0  # another swarm: already claimed
    [job] = jobs(r)
    assert job["class"] == "Report" and job["args"] == ["daily", 1] and job["periodic_at"] == T0 + 3600
    assert job["queue"] == "reports" and job["retry"] == 3 and "enqueued_at" in job


def test_after_downtime_only_the_latest_missed_tick_runs(scripts: Scripts, r: redis.Redis) -> None:
    hourly(None, scripts).tick(T0)
    assert hourly(None, scripts).tick(T0 + 5 * 3600 + 1200) == 1  # 4 ticks missed: the last one runs
    assert [job["periodic_at"] for job in jobs(r)] == [T0 + 5 * 3600]


def test_a_missed_tick_older_than_catch_up_is_skipped(scripts: Scripts, r: redis.Redis) -> None:
    hourly(600, scripts).tick(T0)
    assert hourly(600, scripts).tick(T0 + 3 * 3600 + 1200) == 0  # 20 min late: beyond catch_up 10 min
    assert hourly(600, scripts).tick(T0 + 4 * 3600 + 300) == 1  # 5 min late: within it
    assert [job["periodic_at"] for job in jobs(r)] == [T0 + 4 * 3600]


def test_an_entry_given_twice_is_one_entry(scripts: Scripts, r: redis.Redis) -> None:
    entry = PeriodicEntry(HOUR, "Report", (), "low")
    p = Periodic(scripts, [entry, entry], {}, None)
    assert len(p.states) == 1
    p.tick(T0)
    assert p.tick(T0 + 3600) == 1 and len(jobs(r, "low")) == 1


def test_swarmctl_periodic_and_the_dashboard_list_last_and_next_run(
    scripts: Scripts, redis_url: str, tmp_path: Path
) -> None:
    p = hourly(None, scripts)
    p.publish()
    p.tick(T0)
    p.tick(T0 + 3600)
    result = run_ctl("periodic", "--redis-url", redis_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[:5] == ["JOB", "CRON", "TIMEZONE", "ARGS", "QUEUE"]
    assert row.startswith("Report") and HOUR in row and '["daily", 1]' in row
    listed = json.loads(run_ctl("periodic", "--json", "--redis-url", redis_url, cwd=tmp_path).stdout)
    assert listed[0]["last"].startswith("2023-11-14T2") and listed[0]["next"] > listed[0]["last"]
    assert listed[0]["published"] is not None  # when a claimer booted with it: an old one is a removed entry
    dashboard = create_app(redis_url)
    try:
        page = Client(dashboard).get("/periodic")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "Report" in html and HOUR in html and "2023-11-14" in html
    finally:
        dashboard.admin.close()


def test_swarmctl_periodic_without_entries_says_so(redis_url: str, tmp_path: Path) -> None:
    result = run_ctl("periodic", "--redis-url", redis_url, cwd=tmp_path)
    assert result.returncode == 0 and "no periodic jobs" in result.stdout


JOBS = "import swarmd\n\n@swarmd.job(name='Report')\ndef report():\n    pass\n"
GOOD = "require: [ok_jobs]\nperiodic:\n  - {cron: '0 * * * *', job: Report}\n"


def test_swarmctl_check_refuses_a_periodic_entry_naming_no_job(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "ok_jobs.py").write_text(JOBS)
    (tmp_path / "swarmd.yml").write_text(GOOD + "  - {cron: '0 3 * * *', job: Reprot}\n")
    result = run_ctl("check", "-C", "swarmd.yml", "--redis-url", redis_url, cwd=tmp_path)
    assert result.returncode == 78
    assert result.stderr.splitlines() == [
        "swarmctl: swarmd.yml: periodic[1].job: no job function is registered as 'Reprot' "
        "(did you mean 'Report'?)"
    ]
    (tmp_path / "swarmd.yml").write_text(GOOD)
    result = run_ctl("check", "-C", "swarmd.yml", "--redis-url", redis_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "periodic:     1 entry OK" in result.stdout


def test_through_berlins_dst_transitions_a_missing_time_is_skipped_and_a_repeated_one_runs_once(
    scripts: Scripts, r: redis.Redis
) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    entry = PeriodicEntry("30 2 * * *", "Report", (), "dst", "Europe/Berlin")
    p = Periodic(scripts, [entry], {}, None)

    def local(*fields: int, fold: int = 0) -> float:
        y, mo, d, h, mi = fields
        return dt.datetime(y, mo, d, h, mi, tzinfo=berlin, fold=fold).timestamp()

    p.tick(local(2026, 3, 27, 12, 0))  # first sight
    # The worker's loop wakes every second or so: walk through both transition nights minute by minute.
    for start, end in (
        (local(2026, 3, 28, 0, 0), local(2026, 3, 30, 4, 0)),
        (local(2026, 10, 24, 0, 0), local(2026, 10, 26, 4, 0)),
    ):
        t = start
        while t <= end:
            p.tick(t)
            t += 60
    ran = [dt.datetime.fromtimestamp(float(job["periodic_at"]), berlin) for job in jobs(r, "dst")]  # type: ignore[arg-type]
    assert [when.strftime("%m-%d %H:%M%z") for when in ran] == [
        "03-28 02:30+0100",
        "03-30 02:30+0200",  # 03-29 02:30 does not exist: skipped, not run at 03:00
        "10-23 02:30+0200",  # the months not walked through: only the latest missed tick runs
        "10-24 02:30+0200",
        "10-25 02:30+0200",  # 02:30 twice on 10-25: once, at the first
        "10-26 02:30+0100",
    ]
