"""Redis away, and a bad network between swarmd and Redis: an outage (Redis stopped and restarted under
load), connection resets, delays, lost replies and a blackhole (a partition) through the fault proxies.

The app enqueues straight into Redis all along (a `Producer`: only the calls that returned a jid count);
swarmd talks to Redis through ``ChaosProxy -> FaultProxy``. Recovery time: from the end of a fault to
the first job that finished after it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from swarmd.devredis import RedisServer
from tests.chaos.harness import ChaosSwarm, Producer, Report, SwarmDaemon, pick, seconds, spread, until
from tests.chaos.proxy import ChaosProxy
from tests.integration.conftest import free_port
from tests.integration.faultproxy import FaultProxy


def recovered_after(
    swarm: ChaosSwarm, when: float, watch: Sequence[SwarmDaemon], timeout_s: float = 30.0
) -> float | None:
    """Seconds from ``when`` (wall clock) until a job finished after it (None if none did in time)."""
    until(lambda: swarm.first_done_after(when) is not None, timeout_s, watch)
    return swarm.first_done_after(when)


def stop_redis(server: RedisServer) -> None:
    """A clean Redis stop (SIGTERM: it writes its append-only file and exits); `start()` brings it back."""
    proc = server.proc
    assert proc is not None
    proc.terminate()
    proc.wait(10)
    server.proc = None


def test_redis_outage_under_load(
    redis_factory: Callable[..., RedisServer], swarm: ChaosSwarm, report: Report
) -> None:
    server = redis_factory(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    swarm.use_redis(server.url)
    d = swarm.start_booted(2)
    outage_s = pick(2.0, 8.0)
    recoveries: list[float] = []
    with Producer(swarm, "load", seconds=0.005) as producer:
        for _ in range(pick(1, 3)):
            swarm.wait_progress(50, d)
            stop_redis(server)
            time.sleep(outage_s)  # the outage itself
            server.start()
            up = time.time()
            recovery = recovered_after(swarm, up, [d])
            if recovery is not None:
                recoveries.append(recovery)
    problem = swarm.wait_done(swarm.acked, 60, watch=[d])
    tally = swarm.tally()
    report.row(
        "Redis outage under load (stop, restart)",
        tally,
        recovery=spread(recoveries),
        note=f"{pick(1, 3)} outage(s) of {outage_s:g} s; {producer.refused} enqueue(s) refused meanwhile",
        problem=problem,
    )
    tally.check(problem)
    swarm.wait_settled()


@pytest.fixture
def proxied(
    redis_factory: Callable[..., RedisServer],
) -> Iterator[tuple[RedisServer, FaultProxy, ChaosProxy]]:
    """A private Redis on a TCP port and ``ChaosProxy -> FaultProxy`` in front of it.

    Requested before ``swarm``, so the swarm is killed before the proxies and Redis go away."""
    server = redis_factory(port=free_port())
    fault = FaultProxy(server.port or 0).start()
    chaos = ChaosProxy(fault.port).start()
    yield server, fault, chaos
    chaos.close()
    fault.close()


def test_connection_resets(
    proxied: tuple[RedisServer, FaultProxy, ChaosProxy], swarm: ChaosSwarm, report: Report
) -> None:
    server, _, chaos = proxied
    swarm.use_redis(server.url)
    d = swarm.start_booted(2, swarm.config(redis_url=chaos.url))
    recoveries: list[float] = []
    with Producer(swarm, "load", seconds=0.005):
        for _ in range(pick(3, 30)):
            swarm.wait_progress(30, d)
            chaos.reset()
            recovery = recovered_after(swarm, time.time(), [d])
            if recovery is not None:
                recoveries.append(recovery)
    problem = swarm.wait_done(swarm.acked, 60, watch=[d])
    tally = swarm.tally()
    report.row(
        "proxy: connection resets (RST)",
        tally,
        recovery=spread(recoveries),
        note=f"{chaos.resets} connections reset",
        problem=problem,
    )
    tally.check(problem)
    swarm.wait_settled()


def test_delays(
    proxied: tuple[RedisServer, FaultProxy, ChaosProxy], swarm: ChaosSwarm, report: Report
) -> None:
    server, _, chaos = proxied
    swarm.use_redis(server.url)
    d = swarm.start_booted(2, swarm.config(redis_url=chaos.url))
    delays = pick([0.2], [0.01, 0.05, 0.2, 1.0, 3.0])
    recoveries: list[float] = []
    with Producer(swarm, "load", seconds=0.005):
        for delay in delays:
            swarm.wait_progress(30, d)
            chaos.delay(delay)
            time.sleep(pick(1.5, 8.0))  # the fault's duration
            chaos.heal()
            recovery = recovered_after(swarm, time.time(), [d])
            if recovery is not None:
                recoveries.append(recovery)
    problem = swarm.wait_done(swarm.acked, 60, watch=[d])
    tally = swarm.tally()
    report.row(
        "proxy: delays",
        tally,
        recovery=spread(recoveries),
        note="each chunk delayed " + ", ".join(f"{s:g}" for s in delays) + f" s, {pick(1.5, 8):g} s each",
        problem=problem,
    )
    tally.check(problem)
    swarm.wait_settled()


def test_lost_replies(
    proxied: tuple[RedisServer, FaultProxy, ChaosProxy], swarm: ChaosSwarm, report: Report
) -> None:
    server, fault, chaos = proxied
    swarm.use_redis(server.url)
    d = swarm.start_booted(2, swarm.config(redis_url=chaos.url))
    attempts = pick(6, 40)
    with Producer(swarm, "load", seconds=0.005):
        for i in range(attempts):
            swarm.wait_progress(10, d)
            # A fetch script's reply (a busy worker) or a BLMOVE's (an idle one) that carries a job:
            # Redis moved the job into the private list, the worker never learns it. A burst of jobs
            # makes the workers busy (they fetch with the script); one job finds them idle (BLMOVE).
            busy = i % 2 == 0
            fault.drop_next_reply(b"EVALSHA" if busy else b"BLMOVE", containing=b'"class":"ChaosWork"')
            swarm.perform([f"lr{i}-{j}" for j in range(40 if busy else 1)], seconds=0.01 if busy else 0.0)
            fault.dropped_event.wait(3)
    problem = swarm.wait_done(swarm.acked, 60, watch=[d])
    tally = swarm.tally()
    report.row(
        "proxy: lost replies (fetch, BLMOVE)",
        tally,
        note=f"{len(fault.dropped)} of {attempts} replies dropped",
        problem=problem,
    )
    tally.check(problem)
    swarm.wait_settled()


def test_blackhole_while_a_worker_dies(
    proxied: tuple[RedisServer, FaultProxy, ChaosProxy], swarm: ChaosSwarm, report: Report
) -> None:
    server, _, chaos = proxied
    swarm.use_redis(server.url)
    # heartbeat_timeout 6: the supervisor calls a loop stall beyond 3 s a stall (and says so).
    d = swarm.start_booted(2, swarm.config(redis_url=chaos.url, heartbeat_timeout=6))
    hole_s = pick(4.0, 30.0)
    with Producer(swarm, "load", seconds=0.005):
        swarm.wait_progress(50, d)
        chaos.blackhole()
        # A worker dies while nothing reaches Redis: its jobs must still come back, and the supervisor
        # must keep serving (watchdog, heartbeats, respawns) while it cannot recover them yet.
        swarm.sigkill(random.choice(d.booted_workers()))
        time.sleep(hole_s)  # the partition itself
        chaos.heal()
        recovery = recovered_after(swarm, time.time(), [d], 60)
    problem = swarm.wait_done(swarm.acked, 90, watch=[d])
    tally = swarm.tally()
    stalls = [line.split(" WARNING: ", 1)[-1] for line in d.lines() if "supervisor loop stalled" in line]
    report.row(
        "proxy: blackhole while a worker dies",
        tally,
        recovery=seconds(recovery),
        note=f"{hole_s:g} s blackhole; "
        + (f"supervisor: {stalls[0]}" if stalls else "the supervisor never stalled"),
        problem=problem,
    )
    tally.check(problem)
    assert not stalls, f"the supervisor's loop blocked on Redis: {stalls}"
    swarm.wait_settled()
