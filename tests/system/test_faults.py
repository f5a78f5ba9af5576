"""Faults a fault-injection campaign drove swarmd through, with the real daemon: workers killed from
outside again and again, a memory hog, a Redis blackhole while a worker dies, and a supervisor killed
while Redis is blackholed. The blackhole is `tests.integration.faultproxy.FaultProxy` between the
swarm and a private Redis: connections stay open, every byte is dropped."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import cast

import pytest
import redis

from swarmd.client import Client
from swarmd.devredis import RedisServer
from tests.conftest import wait_until
from tests.integration.conftest import free_port
from tests.integration.faultproxy import FaultProxy
from tests.system.conftest import Swarm, _state


@pytest.fixture
def proxied(redis_factory: Callable[..., RedisServer], swarm: Swarm) -> Iterator[FaultProxy]:
    """A private Redis on a TCP port and a fault proxy in front of it; the swarm's config points at
    the proxy (``swarm.config(redis={"url": proxy.url})``), the test's own clients at Redis itself."""
    server = redis_factory(port=free_port())
    proxy = FaultProxy(server.port or 0).start()
    swarm.client = Client(server.url)
    swarm.r.close()
    swarm.r = redis.Redis.from_url(server.url)
    yield proxy
    proxy.close()


def gone(pid: int) -> bool:
    return _state(pid) in ("Z", "X", "")


def test_a_worker_killed_from_outside_again_and_again_never_stops_the_swarm(swarm: Swarm) -> None:
    # An OOM killer picking a worker every few seconds: more than crash_limit (10) deaths within
    # crash_window (60 s). A booted worker that dies is replaced with backoff; exit 70 is only for
    # workers that cannot boot.
    daemon = swarm.start_ready(processes=4, config=swarm.config(concurrency=1))
    for _ in range(15):
        victim = min(daemon.wait_workers(4, timeout_s=40))  # the oldest: each slot in turn
        os.kill(victim, signal.SIGKILL)
        daemon.wait_workers(4, exclude=[victim], timeout_s=40)
    out = daemon.output()
    assert out.count("was killed by SIGKILL") == 15
    assert "crash loop" not in out and daemon.alive()
    swarm.enqueue("Record", "still-serving")
    swarm.wait_tokens(["still-serving"])


def test_a_memory_hog_is_recycled_into_quarantine_and_ends_dead(swarm: Swarm) -> None:
    # Replaced for memory, its worker pushes the hog (still running) to the quarantine list; there it
    # runs alone, its quarantine worker is recycled for memory too, and that counts as its crash.
    daemon = swarm.start_ready(processes=1, config=swarm.config(max_memory_mb=120, concurrency=2))
    swarm.enqueue("Hog", "hog", 200)
    wait_until(lambda: swarm.r.zcard("dead") == 1, 90, what="the memory hog in dead")
    dead = json.loads(cast("list[bytes]", swarm.r.zrange("dead", 0, -1))[0])
    assert dead["class"] == "Hog" and dead["error_class"] == "swarmd.PoisonJob"
    assert 2 <= swarm.count("start")["hog"] <= 3
    assert "done" not in {e[0] for e in swarm.entries() if e[1] == "hog"}
    out = daemon.output()
    assert "above max_memory_mb 120" in out and "being recycled" in out
    swarm.enqueue("Record", "after-hog")
    swarm.wait_tokens(["after-hog"])
    assert daemon.alive()


def test_the_supervisor_keeps_its_watchdog_going_while_recovery_cannot_reach_redis(
    swarm: Swarm, proxied: FaultProxy
) -> None:
    watchdog_s = 3.0
    config = swarm.config(redis={"url": proxied.url})
    daemon = swarm.start_ready(processes=2, config=config, WATCHDOG_USEC=str(int(watchdog_s * 1e6)))
    swarm.enqueue("Block", "held")
    swarm.wait_tokens(["held"], phase="start")
    victim = int(next(e[2] for e in swarm.entries() if e[:2] == ["start", "held"]))
    proxied.blackhole(True)
    os.kill(victim, signal.SIGKILL)
    # The recovery of its list cannot reach Redis for as long as the blackhole lasts (each try waits
    # for its socket timeout, 7 s); meanwhile the supervisor's loop must go on: systemd kills a
    # service whose pings are further apart than WATCHDOG_USEC.
    before = len(swarm.notify.with_field("WATCHDOG=1"))
    pings: list[float] = [time.monotonic()]
    end = pings[0] + 10.0
    while time.monotonic() < end:
        now_seen = len(swarm.notify.with_field("WATCHDOG=1"))
        if now_seen > before:
            pings.append(time.monotonic())
            before = now_seen
        time.sleep(0.02)
    pings.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < watchdog_s, f"gaps between watchdog pings: {gaps}"
    statuses = [f for d in swarm.notify.poll() for f in d.fields if f.startswith("STATUS=")]
    assert any(f.startswith("STATUS=1 of 2 up") for f in statuses), statuses
    proxied.blackhole(False)
    swarm.flag("held")
    swarm.wait_tokens(["held"], timeout_s=60)  # its list was recovered once Redis answered again
    wait_until(lambda: swarm.inflight() == 0, 30, what="empty in-flight lists")
    assert daemon.alive()


def test_a_worker_whose_supervisor_was_killed_exits_on_its_own_while_redis_is_blackholed(
    swarm: Swarm, proxied: FaultProxy
) -> None:
    daemon = swarm.start_ready(processes=1, config=swarm.config(redis={"url": proxied.url}))
    swarm.enqueue("Block", "orphan")
    swarm.wait_tokens(["orphan"], phase="start")
    [worker] = daemon.workers()
    proxied.blackhole(True)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.proc.wait()
    wait_until(lambda: gone(worker), 15, what="the orphaned worker to exit on its own")
    assert "supervisor is gone" in daemon.output()
    # It could not push its job back: the job waits in its private list, and the next swarm's
    # workers recover it once the liveness key has expired.
    proxied.blackhole(False)
    swarm.flag("orphan")
    again = swarm.start_ready(processes=1, config=swarm.config(redis={"url": proxied.url}))
    swarm.wait_tokens(["orphan"], timeout_s=60)
    wait_until(lambda: swarm.inflight() == 0, 30, what="empty in-flight lists")
    assert again.alive()
