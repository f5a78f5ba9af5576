"""swarmd on Redis with Sentinel: 1 master, 1 replica and 3 Sentinels on loopback (tests/sentinelkit.py),
real processes throughout. Every part (workers, supervisor, client, swarmctl, swarmd.admin) reaches the
master through the Sentinels and follows it across a failover without a restart; with the recommended
settings (``min-replicas-to-write 1`` and ``wait_replicas: 1``) no acknowledged job is lost, under load,
through ``SENTINEL FAILOVER`` and through a SIGKILL of the master (the ledger proves it; how many jobs
ran twice is printed). Also: a Redis Cluster node or a replica named by URL stops the boot with one line.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import swarmd
from swarmd import connection, payload
from swarmd.admin import Admin
from swarmd.config import load_config, redis_settings
from swarmd.keys import Keys
from swarmd.scripts import Fetched, Scripts
from tests.conftest import require_tool, run_ctl, wait_until
from tests.integration.conftest import JOBS_MODULE, App
from tests.sentinelkit import Enqueuer, Node, SentinelKit, free_cluster_port, read_ledger, tally

RECOMMENDED = {"min-replicas-to-write": "1", "min-replicas-max-lag": "10"}
STEADY: dict[str, Any] = {
    # A failover takes seconds: liveness keys must outlive it, or every worker looks dead to the others
    # (its jobs would be recovered while it runs them: run twice, never lost; not what is tested here).
    "beat_interval": 1,
    "liveness_ttl": 20,
    "recovery_interval": 1,
    "fetch_timeout": 1,
    "poll_interval": 0.5,
}


@pytest.fixture(scope="module")
def kit() -> Iterator[SentinelKit]:
    require_tool("redis-sentinel", "redis-sentinel", "Sentinel failover tests")
    with SentinelKit() as k:
        yield k


@pytest.fixture
def sentinel(kit: SentinelKit) -> Iterator[SentinelKit]:
    """The kit, stable, its data flushed, replication settings back to Redis's defaults."""
    master = kit.wait_stable()
    for node in kit.nodes:
        with contextlib.closing(kit.node_client(node)) as c:
            c.config_set("min-replicas-to-write", "0")
    with contextlib.closing(kit.node_client(master)) as c:
        c.flushall()
    yield kit


def master_client(kit: SentinelKit) -> Any:
    return kit.node_client(kit.master())


def test_every_part_reaches_the_master_through_sentinel(app: App, sentinel: SentinelKit) -> None:
    master, replica = sentinel.master(), sentinel.replicas()[0]
    cfg = app.config(
        redis=sentinel.settings(), processes=1, require=[JOBS_MODULE]
    )  # `swarmctl check` imports it
    daemon = app.start(config=cfg)
    client = swarmd.Client(sentinel.settings())
    tokens = [f"s{i}" for i in range(5)]
    for token in tokens:
        client.enqueue("Record", [token], None, {})
    app.wait_tokens(tokens)
    assert daemon.alive()

    check = run_ctl("check", "-C", str(cfg), cwd=app.root, env=app.env())
    assert check.returncode == 0, check.stderr
    assert f"master:       127.0.0.1:{master.port} (role master, 1 replica)" in check.stdout
    assert f"replica:      127.0.0.1:{replica.port} online, lag " in check.stdout
    assert "master 'mymaster' via Sentinel 127.0.0.1:" in check.stdout  # the redis: line, no password

    status = run_ctl("status", "-C", str(cfg), cwd=app.root, env=app.env())
    assert status.returncode == 0 and "Processes: 1 on 1 host" in status.stdout, status.stderr

    with Admin.from_config(load_config(str(cfg))) as admin:
        assert [p.busy for p in admin.processes()] == [0]
    default = swarmd.configure(config=str(cfg))
    assert default.settings.is_sentinel
    assert default.enqueue("Record", ["via-configure"], None, {}) is not None
    app.wait_tokens(["via-configure"])


def test_scripts_are_loaded_again_on_a_new_master(sentinel: SentinelKit) -> None:
    # Sentinel does not copy the script cache: the new master answers NOSCRIPT, and redis-py's Script
    # loads the script and calls it again (swarmd/scripts.py relies on that).
    client = connection.connect(redis_settings(sentinel.settings()))
    scripts = Scripts(client, Keys(None))
    first = payload.encode(payload.for_queue(payload.build("Record", ["a"], None, {"queue": "default"})))
    client.lpush("queue:default", first)
    assert scripts.fetch("h:1:a", ["default"], 1, []).jobs == [(0, first)]
    sha = scripts._scripts["fetch"].sha
    _, new = sentinel.failover()
    with contextlib.closing(sentinel.node_client(new)) as c:
        assert c.script_exists(sha) == [False]
    second = payload.encode(payload.for_queue(payload.build("Record", ["b"], None, {"queue": "default"})))

    def answers(action: Any) -> Any:
        try:
            return action()
        except connection.ConnectionError:  # the failover closed this client's connections
            return None

    wait_until(lambda: answers(lambda: client.lpush("queue:default", second)), 10, what="a push")
    fetched = wait_until(
        lambda: answers(lambda: scripts.fetch("h:1:a", ["default"], 1, [])), 10, what="a fetch"
    )
    assert isinstance(fetched, Fetched) and fetched.jobs == [(0, second)]
    with contextlib.closing(sentinel.node_client(new)) as c:
        assert c.script_exists(sha) == [True]
    client.close()


def test_a_stale_connection_follows_the_master_and_readonly_is_a_connection_error(
    sentinel: SentinelKit,
) -> None:
    settings = redis_settings(sentinel.settings())
    held = connection.single(connection.connect(settings))  # one connection, held (as a waiter's is)
    held.set("k", "before")
    old = sentinel.master()
    direct = connection.connect(f"redis://127.0.0.1:{old.port}/0")  # by URL, to what will be a replica
    direct.ping()
    _, new = sentinel.failover()

    # A write to the demoted master is a ConnectionError (the caller reconnects and reconciles), never
    # a ReadOnlyError that a caller would take for a failed command.
    with pytest.raises(connection.ConnectionError, match="READONLY"):
        wait_until(lambda: direct.set("x", 1) and False, 10, what="a write to the demoted master to fail")

    def written() -> bool:
        try:
            return bool(held.set("k", "after"))
        except connection.ConnectionError:  # its socket was closed by the failover: reconnects next time
            return False

    wait_until(written, 10, what="the held connection to reach the new master")
    with contextlib.closing(sentinel.node_client(new)) as c:
        assert c.get("k") == "after"
    direct.close()
    held.close()


def _swarms(app: App, kit: SentinelKit, **redis: Any) -> tuple[Path, list[Any]]:
    cfg = app.config(redis=kit.settings(**redis), processes=2, concurrency=4, **STEADY)
    daemons = [app.start(config=cfg, env=app.env(SWARMD_HOSTNAME=host)) for host in ("host-a", "host-b")]
    with contextlib.closing(master_client(kit)) as c:
        wait_until(lambda: c.scard("processes") == 4, 30, what="4 workers of 2 swarms")
    return cfg, daemons


def _identities(kit: SentinelKit) -> set[str]:
    with contextlib.closing(master_client(kit)) as c:
        return {m.decode() if isinstance(m, bytes) else m for m in c.smembers("processes")}


@pytest.mark.parametrize("failure", ["sentinel-failover", "sigkill-master"])
def test_no_acknowledged_job_is_lost_across_a_failover(app: App, sentinel: SentinelKit, failure: str) -> None:
    for node in sentinel.nodes:
        with contextlib.closing(sentinel.node_client(node)) as c:
            for key, value in RECOMMENDED.items():
                c.config_set(key, value)
    cfg, daemons = _swarms(app, sentinel, wait_replicas=1)
    before = _identities(sentinel)
    enqueuer = Enqueuer(swarmd.Client(sentinel.settings(wait_replicas=1)), rate=150, job="Record")
    enqueuer.start()
    try:
        wait_until(lambda: len(enqueuer.acked) >= 150, 30, what="jobs acknowledged before the failure")
        if failure == "sentinel-failover":
            sentinel.failover()
        else:
            old, _ = sentinel.kill_master()
            sentinel.restart_as_replica(old)  # as systemd would, as a replica: never as an empty master
        during = len(enqueuer.acked)
        wait_until(
            lambda: len(enqueuer.acked) >= during + 150, 60, what="jobs acknowledged after the failover"
        )
    finally:
        enqueuer.stop()

    def all_ran() -> bool:
        done = {token for token, _, _ in read_ledger(str(app.ledger))}
        return all(token in done for token in enqueuer.acked)

    wait_until(all_ran, 90, what=f"every acknowledged job to run ({tally(enqueuer, str(app.ledger)).line()})")
    result = tally(enqueuer, str(app.ledger))
    print(f"{failure}: {result.line()}")
    assert result.lost == []
    # Every part followed the master without a restart: the same 4 workers, both swarms up; swarmctl
    # finds the new master.
    assert all(d.alive() for d in daemons)
    assert _identities(sentinel) == before
    assert not any("exited" in d.output() for d in daemons)
    check = run_ctl("check", "-C", str(cfg), cwd=app.root, env=app.env())
    assert f"master:       127.0.0.1:{sentinel.master().port} (role master, 1 replica)" in check.stdout


# -- what swarmd refuses at boot ---------------------------------------------------------------------


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_replica_named_by_url_stops_the_boot(app: App, sentinel: SentinelKit) -> None:
    replica: Node = sentinel.replicas()[0]
    url = f"redis://127.0.0.1:{replica.port}/0"
    result = app.run("--redis-url", url, timeout_s=60)
    assert result.returncode == 69
    assert _one_line(result).endswith(
        f"Redis at {url} is a read-only replica; point swarmd at the master (or use Sentinel)"
    )


def test_a_redis_cluster_node_stops_the_boot_with_78(app: App, redis_factory: Any, tmp_path: Path) -> None:
    port = free_cluster_port()
    server = redis_factory(
        port=port,
        extra_args=("--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")),
    )
    result = app.run("--redis-url", server.url, timeout_s=60)
    assert result.returncode == 78
    assert "is a Redis Cluster node (cluster_enabled:1)" in _one_line(result)
    check = run_ctl("check", "--redis-url", server.url, cwd=tmp_path)
    assert check.returncode == 78
    assert "is a Redis Cluster node" in check.stderr and "Traceback" not in check.stderr


# -- wait_replicas -------------------------------------------------------------------------------------


def test_wait_replicas_says_when_a_push_is_not_on_a_replica_yet(app: App) -> None:
    # The session's Redis has no replica: WAIT 1 times out. The push happened (the job runs), but the
    # caller is told it is not confirmed on a replica (a failover now could lose it).
    redis = {"url": app.redis_url, "wait_replicas": 1, "wait_timeout": 0.05}
    client = swarmd.Client(redis)
    with pytest.raises(swarmd.RedisUnavailable, match=r"took the job\(s\), but only 0 of the 1 replica\(s\)"):
        client.enqueue("Record", ["unconfirmed"], None, {})
    assert app.r.llen("queue:default") == 1
    daemon = app.start(config=app.config(redis=redis))
    app.wait_tokens(["unconfirmed"])  # fetched jobs run even when WAIT falls short; it is logged
    daemon.wait_log("wait_replicas: fetched jobs reached 0 of 1 replica(s) within 50 ms; running them anyway")
