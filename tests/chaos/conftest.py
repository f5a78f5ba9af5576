"""Fixtures of the chaos suite: every test here is marked ``chaos``; a `ChaosSwarm` on the session's
Redis (scenarios that kill Redis use private servers from ``redis_factory``); a `Report` whose rows are
printed and, under ``$SWARMD_CHAOS_REPORT``, appended with the test's outcome for benchmarks/chaos.py.

At teardown every daemon's process group is SIGKILLed and its output printed (pytest shows it only
when the test failed).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from tests.chaos.harness import ChaosSwarm, Report
from tests.conftest import wait_until

_OUTCOME = pytest.StashKey[tuple[str, str]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.chaos)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        reason = str(getattr(rep, "wasxfail", ""))
        if reason:  # an expected failure, or a non-strict unexpected pass
            state = "xfail" if rep.skipped else "xpass"
        elif rep.failed and str(rep.longrepr).startswith("[XPASS(strict)]"):
            state, reason = "XPASS(strict)", str(rep.longrepr)  # fixed: remove the xfail mark
        else:
            state = "pass" if rep.passed else rep.outcome
        item.stash[_OUTCOME] = (state, reason.removeprefix("reason: "))


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[Report]:
    rep = Report(request.node.nodeid)
    yield rep
    rep.write(*request.node.stash.get(_OUTCOME, ("error", "")))


@pytest.fixture
def swarm(tmp_path: Path, redis_url: str) -> Iterator[ChaosSwarm]:
    s = ChaosSwarm(tmp_path, redis_url)
    try:
        yield s
    finally:
        for d in s.daemons:
            d.kill_group()
        for i, d in enumerate(s.daemons):
            print(f"----- swarmd #{i} {d.args} exit={d.proc.returncode} -----")
            print(d.output()[-20000:])
        try:
            print("----- Redis -----")
            for key in sorted(s.r.scan_iter("*")):
                kind = cast(bytes, s.r.type(key)).decode()
                size = {"list": s.r.llen, "zset": s.r.zcard, "set": s.r.scard, "hash": s.r.hlen}.get(kind)
                print(key.decode(errors="replace"), kind, size(key) if size else "")
        except redis.RedisError as exc:
            print(f"(Redis not readable: {exc})")
        s.close()
        home = redis.Redis.from_url(redis_url)  # the session's server: the next test's jobs must not
        try:  # be taken by a killed worker's BLMOVE that Redis has not dropped yet
            wait_until(lambda: home.info("clients")["blocked_clients"] == 0, 10, what="no client blocked")
        finally:
            home.close()
