"""Signals under load: clean TERMs (no duplicate may happen), TERM storms, HUP storms (a reload replaces
every worker gracefully: no duplicate either), SIGSTOP/SIGCONT of a worker and of the supervisor."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import signal
import time

from tests.chaos.harness import ChaosSwarm, Producer, Report, pick, seconds, until


def stamp(line: str) -> float:
    """The wall-clock time of a log line (``2026-11-28T16:50:00.123Z pid=...``)."""
    return dt.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.UTC).timestamp()


def test_clean_term_under_load_runs_no_job_twice(swarm: ChaosSwarm, report: Report) -> None:
    cycles = pick(2, 6)
    swarm.perform([f"pre{i}" for i in range(pick(150, 3000))], seconds=0.005)
    stops: list[float] = []
    codes: list[int | None] = []
    with Producer(swarm, "load", seconds=0.005):
        for _ in range(cycles):
            d = swarm.start_booted(2)
            swarm.wait_progress(50, d)
            started = time.monotonic()
            d.signal(signal.SIGTERM)
            codes.append(d.wait_exit(30))
            stops.append(time.monotonic() - started)
    d = swarm.start_booted(2)  # the swarm after the last restart runs what is left
    problem = swarm.wait_done(swarm.acked, 60, watch=[d])
    tally = swarm.tally()
    report.row(
        "TERM (one, clean) under load, restart",
        tally,
        recovery=f"stop took max {seconds(max(stops))}",
        note=f"{cycles} stops, exit codes {codes}",
        problem=problem,
    )
    assert codes == [0] * cycles, f"a TERM should exit 0: {codes}"
    tally.check(problem, duplicates_allowed=False)
    swarm.wait_settled()


def test_term_storm_under_load(swarm: ChaosSwarm, report: Report) -> None:
    storms, burst = pick(2, 6), pick(5, 10)
    swarm.perform([f"pre{i}" for i in range(pick(150, 3000))], seconds=0.005)
    codes: list[int | None] = []
    with Producer(swarm, "load", seconds=0.005):
        for _ in range(storms):
            d = swarm.start_booted(2)
            swarm.wait_progress(50, d)
            for _ in range(burst):  # the second TERM stops at once, running jobs pushed back
                with contextlib.suppress(ProcessLookupError):
                    d.signal(signal.SIGTERM)
                time.sleep(random.uniform(0.0, 0.1))
            codes.append(d.wait_exit(30))
    d = swarm.start_booted(2)
    problem = swarm.wait_done(swarm.acked, 60, watch=[d])
    tally = swarm.tally()
    report.row(
        "TERM storm under load, restart",
        tally,
        note=f"{storms} storms of {burst} TERMs, exit codes {codes}",
        problem=problem,
    )
    tally.check(problem)  # duplicates allowed: the second TERM pushes running jobs back
    swarm.wait_settled()
    wrong = [c for c in codes if c != 0]
    assert not wrong, f"TERM storms should exit 0: {codes}"


def test_hup_storm_under_load_runs_no_job_twice(swarm: ChaosSwarm, report: Report) -> None:
    hups = pick(6, 30)
    d = swarm.start_booted(2)
    first = d.workers()
    with Producer(swarm, "load", seconds=0.005):
        last_hup = 0.0
        for _ in range(hups):
            swarm.wait_progress(5, d)
            time.sleep(random.uniform(0.0, 0.3))
            last_hup = time.time()  # before the signal: the supervisor's lines about it come later
            d.signal(signal.SIGHUP)
        # Done: a "reload done" line after the last HUP, and no worker left from before the storm.
        problem = until(
            lambda: (
                any("reload done" in line and stamp(line) > last_hup for line in d.lines())
                and not set(first) & set(d.workers())
            ),
            60,
            [d],
        )
    reloaded = [stamp(line) for line in d.lines() if "reload done" in line and stamp(line) > last_hup]
    problem = problem or swarm.wait_done(swarm.acked, 60, watch=[d])
    tally = swarm.tally()
    d.signal(signal.SIGTERM)
    code = d.wait_exit(30)
    report.row(
        "HUP storm under load",
        tally,
        recovery=f"reload done {seconds(min(reloaded) - last_hup)} after the last HUP" if reloaded else "-",
        note=f"{hups} HUPs; then TERM: exit {code}",
        problem=problem,
    )
    tally.check(problem, duplicates_allowed=False)
    assert code == 0


def test_sigstop_and_sigcont_of_a_worker(swarm: ChaosSwarm, report: Report) -> None:
    # liveness_ttl 1.5: a worker frozen longer has its private list recovered by the other one.
    # A stop beyond heartbeat_timeout (full run) makes the supervisor replace the frozen worker.
    pauses = pick([2.0], [3.0, 15.0])
    d = swarm.start_booted(2, swarm.config(liveness_ttl=1.5))
    recoveries: list[float] = []
    with Producer(swarm, "load", seconds=0.005):
        for pause in pauses:
            swarm.wait_progress(50, d)
            victim = random.choice(d.booted_workers())
            os.kill(victim, signal.SIGSTOP)
            time.sleep(pause)  # the freeze itself
            with contextlib.suppress(ProcessLookupError):  # beyond heartbeat_timeout it was replaced
                os.kill(victim, signal.SIGCONT)
            thawed = time.time()
            # Recovered: the thawed worker runs a job again, or (after heartbeat_timeout) its replacement.
            before = set(d.workers()) - {victim}

            def back(thawed: float = thawed, before: set[int] = before) -> float | None:
                runs = [
                    float(e[3])
                    for e in swarm.done_entries()
                    if float(e[3]) > thawed and int(e[2]) not in before
                ]
                return min(runs) - thawed if runs else None

            problem = until(lambda: back() is not None and len(d.booted_workers()) == 2, 30, [d])
            recovery = back()
            if problem is None and recovery is not None:
                recoveries.append(recovery)
    problem = swarm.wait_done(swarm.acked, 60, watch=[d])
    tally = swarm.tally()
    report.row(
        "SIGSTOP/SIGCONT of a worker under load",
        tally,
        recovery=f"max {seconds(max(recoveries))} after SIGCONT" if recoveries else "-",
        note="frozen for "
        + ", ".join(f"{p:g}" for p in pauses)
        + " s (liveness_ttl 1.5, heartbeat_timeout 10)",
        problem=problem,
    )
    tally.check(problem)
    swarm.wait_settled()


def test_sigstop_and_sigcont_of_the_supervisor(swarm: ChaosSwarm, report: Report) -> None:
    pause = pick(2.0, 15.0)
    d = swarm.start_booted(2)
    workers = sorted(d.workers())
    with Producer(swarm, "load", seconds=0.005):
        swarm.wait_progress(50, d)
        os.kill(d.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        swarm.wait_progress(50, d)  # the workers serve on while their supervisor is frozen
        time.sleep(max(0.0, pause - (time.monotonic() - frozen)))  # the rest of the freeze
        os.kill(d.pid, signal.SIGCONT)
        swarm.wait_progress(50, d)
    problem = swarm.wait_done(swarm.acked, 60, watch=[d])
    tally = swarm.tally()
    after = sorted(d.workers())
    report.row(
        "SIGSTOP/SIGCONT of the supervisor under load",
        tally,
        note=f"frozen for {pause:g} s; workers {'unchanged' if after == workers else 'replaced'}",
        problem=problem,
    )
    tally.check(problem)
    assert after == workers, "a worker was replaced for a silence that was the frozen supervisor's"
    swarm.wait_settled()
