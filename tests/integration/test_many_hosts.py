"""Several swarms on one Redis, told apart by the host part of their identities (``SWARMD_HOSTNAME`` or
``hostname:``): they share queues, `swarmctl status` groups their processes by host, a swarm that dies
without a trace is recovered by the other exactly once, and a paused one (SIGSTOP, as a VM migration or
a long GC would) has its jobs run a second time by the other while it sleeps, and carries on when it
wakes up, losing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from typing import Any

from tests.conftest import Daemon, live_group_members, wait_until
from tests.integration.conftest import App
from tests.replies import set_members


def ctl(app: App, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarmd.ctl", *argv, "--redis-url", app.redis_url],
        cwd=app.root,
        capture_output=True,
        text=True,
        timeout=60,
    )


def identities(app: App) -> list[str]:
    return sorted(m.decode() for m in set_members(app.r, "processes"))


def hosts_up(app: App, *counts: tuple[str, int]) -> None:
    def up() -> bool:
        seen = Counter(i.split(":")[0] for i in identities(app))
        return all(seen[host] == n for host, n in counts)

    wait_until(up, 30, what=f"workers {counts} in `processes`")


def start(
    app: App, host: str, name: str, *, by_env: bool, processes: int = 1, concurrency: int = 4
) -> Daemon:
    settings: dict[str, Any] = {"processes": processes, "concurrency": concurrency}
    if by_env:
        return app.start(config=app.config(name, **settings), env=app.env(SWARMD_HOSTNAME=host))
    return app.start(config=app.config(name, hostname=host, **settings))


def started_by(app: App, token: str) -> list[int]:
    return [int(e[2]) for e in app.entries() if e[0] == "start" and e[1] == token]


def pids_of(daemon: Daemon) -> set[int]:
    return set(live_group_members(daemon.pid))


def test_two_hosts_share_the_queues_and_status_groups_them(app: App) -> None:
    start(app, "host-a", "a.yml", by_env=True)
    start(app, "host-b", "b.yml", by_env=False, processes=2)
    hosts_up(app, ("host-a", 1), ("host-b", 2))
    tokens = [f"t{i}" for i in range(30)]
    for token in tokens:
        app.enqueue("Record", token)
    app.wait_tokens(tokens)
    assert set(app.count().values()) == {1}

    out = ctl(app, "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Processes: 3 on 2 hosts"
    assert [line.split()[:2] for line in lines if line.startswith("host-")] == [
        ["host-a:", "1"],
        ["host-b:", "2"],
    ]
    data = json.loads(ctl(app, "status", "--json").stdout)
    assert [(h["hostname"], len(h["processes"])) for h in data["hosts"]] == [("host-a", 1), ("host-b", 2)]


def test_a_swarm_that_dies_without_a_trace_is_recovered_by_the_other_exactly_once(app: App) -> None:
    a = start(app, "host-a", "a.yml", by_env=True, processes=2, concurrency=2)
    hosts_up(app, ("host-a", 2))
    tokens = [f"b{i}" for i in range(4)]
    for token in tokens:
        app.enqueue("Block", token)
    wait_until(lambda: all(started_by(app, t) for t in tokens), 30, what="host-a running every job")
    a_pids = pids_of(a)
    assert all(set(started_by(app, t)) <= a_pids for t in tokens)

    b = start(app, "host-b", "b.yml", by_env=False, concurrency=4)
    hosts_up(app, ("host-b", 1))
    a.kill_group()  # the whole swarm, supervisor included: nothing of host-a recovers anything
    # host-b finds host-a's liveness keys expired (liveness_ttl) at its next recovery pass, pushes
    # the jobs back, and runs them.
    wait_until(lambda: all(len(started_by(app, t)) == 2 for t in tokens), 30, what="host-b to take them over")
    b_pids = pids_of(b)
    assert all(started_by(app, t)[1] in b_pids for t in tokens)
    for token in tokens:
        app.flag(token)
    app.wait_tokens(tokens)
    app.enqueue("Record", "later")  # runs after anything still queued: no second copy is left
    app.wait_tokens(["later"])
    assert {t: app.count()[t] for t in tokens} == dict.fromkeys(tokens, 1)
    app.wait_inflight_empty()
    assert all(not i.startswith(b"host-a:") for i in set_members(app.r, "swarmd:workers"))


def test_a_paused_host_runs_its_jobs_again_elsewhere_and_carries_on_when_it_wakes(app: App) -> None:
    a = start(app, "host-a", "a.yml", by_env=True, concurrency=1)
    hosts_up(app, ("host-a", 1))
    app.enqueue("Block", "p")
    wait_until(lambda: started_by(app, "p"), 30, what="host-a to start the job")
    b = start(app, "host-b", "b.yml", by_env=True, concurrency=1)
    hosts_up(app, ("host-b", 1))
    a_ident = next(i for i in identities(app) if i.startswith("host-a:"))

    os.killpg(a.pid, signal.SIGSTOP)  # the whole swarm sleeps (a VM migration, a long GC pause)
    try:
        # Its liveness key expires: host-b recovers the job and runs it while host-a still "runs" it.
        wait_until(lambda: len(started_by(app, "p")) == 2, 30, what="host-b to run the paused host's job")
        app.flag("p")
        wait_until(lambda: app.count()["p"] == 1, 30, what="host-b to finish it")
    finally:
        os.killpg(a.pid, signal.SIGCONT)
    # Awake, host-a finishes its copy too (the job ran twice); its ack removes nothing (the entry is
    # gone); it beats again and goes on taking jobs.
    wait_until(lambda: app.count()["p"] == 2, 30, what="host-a to finish its copy")
    wait_until(lambda: app.r.exists(f"swarmd:alive:{a_ident}"), 30, what="host-a to beat again")
    b.kill_group()
    tokens = [f"after{i}" for i in range(10)]
    for token in tokens:
        app.enqueue("Record", token)
    app.wait_tokens(tokens)
    a_pids = pids_of(a)
    assert {int(e[2]) for e in app.entries() if e[1] in tokens} <= a_pids
    assert all(app.count()[t] == 1 for t in tokens)
    app.wait_inflight_empty()
