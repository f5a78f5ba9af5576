"""Poison jobs among normal ones: jobs that SIGKILL or abort their worker, and a job that hogs memory.

Each poison job must end in `dead` (as ``swarmd.PoisonJob``) after at most 3 runs, no normal job may
end there, every normal job runs, and the swarm never exits because of them.
"""

from __future__ import annotations

import contextlib
import json
import random
from typing import cast

from swarmd.errors import POISON_JOB
from tests.chaos.harness import (
    ChaosSwarm,
    Report,
    chaos_abort,
    chaos_hog,
    chaos_kill_self,
    pick,
    until,
)

MAX_RUNS = 3


def quarantined(swarm: ChaosSwarm) -> set[str]:
    """Tokens (args[0]) of the jobs waiting in the quarantine list."""
    out = set()
    for raw in cast("list[bytes]", swarm.r.lrange("swarmd:quarantine", 0, -1)):
        with contextlib.suppress(ValueError, TypeError, IndexError, KeyError):
            out.add(str(json.loads(raw)["args"][0]))
    return out


def poison_state(swarm: ChaosSwarm, tokens: list[str]) -> tuple[list[str], dict[str, int]]:
    """Poison tokens found in `dead` as PoisonJob, and how often each poison job started."""
    dead = [
        str(job["args"][0])
        for job in swarm.dead_jobs()
        if job.get("error_class") == POISON_JOB and job.get("args") and job["args"][0] in tokens
    ]
    starts = swarm.count("start")
    return dead, {t: starts[t] for t in tokens}


def test_poison_jobs_among_normal_ones(swarm: ChaosSwarm, report: Report) -> None:
    d = swarm.start_booted(2)
    normal = [f"n{i}" for i in range(pick(200, 2000))]
    poison = [(chaos_kill_self, f"kill{i}") for i in range(pick(2, 5))]
    poison += [(chaos_abort, f"abort{i}") for i in range(pick(2, 5))]
    random.shuffle(poison)
    # Spread the poison jobs among the normal ones, each behind a batch of normal jobs.
    batch = len(normal) // len(poison)
    for i, (job, token) in enumerate(poison):
        swarm.perform(normal[i * batch : (i + 1) * batch], seconds=0.005)
        swarm.via(job).perform_async(token)
    swarm.perform(normal[len(poison) * batch :], seconds=0.005)
    tokens = [t for _, t in poison]

    def poison_check() -> bool | str:
        dead, starts = poison_state(swarm, tokens)
        over = {t: n for t, n in starts.items() if n > MAX_RUNS}
        if over:
            return f"poison job(s) ran more than {MAX_RUNS} times: {over}"
        return len(dead) == len(tokens)

    def also() -> str | None:
        problem = poison_check()
        return problem if isinstance(problem, str) else None

    problem = swarm.wait_done(normal, pick(60, 180), watch=[d], also=also)
    if problem is None:  # every normal job ran: now every poison job must reach dead
        problem = until(poison_check, 60, [d])
    tally = swarm.tally()
    dead, starts = poison_state(swarm, tokens)
    waiting = quarantined(swarm)
    report.row(
        "poison jobs (SIGKILL self, abort) among normal ones",
        tally,
        note=f"{len(dead)} of {len(tokens)} poison jobs in dead, runs of each: {sorted(starts.values())}"
        + (f"; {len(waiting)} job(s) still waiting in the quarantine" if waiting else ""),
        problem=problem,
    )
    tally.check(problem)
    assert d.alive(), d.exit_text()


def test_memory_hog_job_ends_in_dead(swarm: ChaosSwarm, report: Report) -> None:
    # timeout 0.5: a worker replaced for its memory waits 0.5 s for the hog, then pushes it back.
    d = swarm.start_booted(2, swarm.config(max_memory_mb=100, timeout=0.5, memory_check_interval=0.1))
    normal = swarm.perform([f"n{i}" for i in range(pick(100, 1000))], seconds=0.005)
    swarm.via(chaos_hog).perform_async("hog", 160, 30)

    def hog_check() -> bool | str:
        dead, starts = poison_state(swarm, ["hog"])
        if starts["hog"] > MAX_RUNS:
            return f"the memory hog ran {starts['hog']} times and is still not in dead"
        return bool(dead)

    problem = swarm.wait_done(normal, 60, watch=[d]) or until(hog_check, 60, [d])
    tally = swarm.tally()
    _, starts = poison_state(swarm, ["hog"])
    report.row(
        "memory hog (160 MB, max_memory_mb 100) among normal ones",
        tally,
        note=f"the hog ran {starts['hog']} time(s)",
        problem=problem,
    )
    tally.check(problem)
