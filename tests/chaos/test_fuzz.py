"""Fuzzed payloads pushed by hand into a queue, `schedule` and `retry` (random and mutated Sidekiq jobs:
lone surrogates, huge numbers, deep nesting, wrong types, broken UTF-8, truncated JSON, ...).

Each payload must end in `dead` unchanged (it does not decode) or be run (it decodes: it runs, fails
into `retry`/`dead` as a job, is dropped because its ``retry`` says so, or waits in the queue it names
when no worker serves that queue). The worker carries on (same process throughout, no traceback of
swarmd's own code), and every normal job runs. Seeded: ``SWARMD_CHAOS_SEED=<seed>`` replays a run.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest

from swarmd.retry import max_attempts
from tests.chaos import fuzz
from tests.chaos.fuzz import FUZZ_CLASS, Fuzzed, PayloadFuzzer
from tests.chaos.harness import (
    FULL,
    ChaosSwarm,
    Report,
    SwarmDaemon,
    chaos_work,
    pick,
    swarmd_tracebacks,
    until,
)
from tests.conftest import wait_until


@dataclass
class Outcomes:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return ", ".join(f"{what} {n}" for what, n in sorted(self.counts.items(), key=lambda kv: -kv[1]))


def push(swarm: ChaosSwarm, target: str, items: Sequence[Fuzzed]) -> None:
    """LPUSH into ``queue:default``, or ZADD into `schedule`/`retry` as due now, in one pipeline."""
    pipe = swarm.r.pipeline(transaction=False)
    due = time.time() - 1
    for start in range(0, len(items), 500):
        raws = [item.raw for item in items[start : start + 500]]
        if target == "queue":
            pipe.lpush("queue:default", *raws)
        else:
            pipe.zadd(target, dict.fromkeys(raws, due))
    pipe.execute()


def members(swarm: ChaosSwarm, key: str) -> list[bytes]:
    kind = swarm.r.type(key)
    if kind == b"list":
        return cast("list[bytes]", swarm.r.lrange(key, 0, -1))
    if kind == b"zset":
        return cast("list[bytes]", swarm.r.zrange(key, 0, -1))
    return []


def fuzz_id(raw: bytes) -> str | None:
    with contextlib.suppress(ValueError, TypeError, RecursionError):
        data = json.loads(raw)
        if isinstance(data, dict) and isinstance(data.get("fuzz_id"), str):
            return str(data["fuzz_id"])
    return None


def outcomes(swarm: ChaosSwarm, target: str, items: Sequence[Fuzzed]) -> Outcomes:
    """Where each payload ended, and which ended where they may not."""
    dead = set(members(swarm, "dead"))
    by_id: dict[str, str] = {}
    for key in ["dead", "retry", *(k.decode(errors="replace") for k in swarm.r.scan_iter("queue:*"))]:
        for raw in members(swarm, key):
            if (fid := fuzz_id(raw)) is not None:
                by_id.setdefault(fid, "dead" if key == "dead" else "retry" if key == "retry" else "queue")
    ran = Counter(swarm.tokens())
    out = Outcomes()
    for item in items:
        job = item.decoded()
        if item.raw in dead:  # always an acceptable end for a payload from outside
            out.counts["dead unchanged"] += 1
            continue
        if job is None:
            out.problems.append(f"{item.token}: does not decode, not in dead unchanged: {item.raw[:120]!r}")
            continue
        parked = target != "queue" and job.queue != "default"  # moved to a queue nobody here serves
        if item.must_run() and not parked:
            if ran[item.token]:
                out.counts["ran"] += 1
            else:
                out.problems.append(
                    f"{item.token}: decodes as {FUZZ_CLASS} but never ran: {item.raw[:120]!r}"
                )
        elif not item.tracked():
            out.counts["ran, token garbled"] += 1  # decodes, its fuzz_id mangled: the invariants cover it
        elif item.token in by_id:
            where = by_id[item.token]
            out.counts[
                {"dead": "failed into dead", "retry": "failed into retry", "queue": "in its queue"}[where]
            ] += 1
        elif job.name == FUZZ_CLASS and not parked:
            out.counts["ran"] += 1  # args garbled: it ran without recording its token
        elif job.data.get("retry", True) is False or job.data.get("dead") is False:
            out.counts["failed, dropped (retry: false)"] += 1
        elif max_attempts(job.data.get("retry", True), 25) == 0 and job.data.get("dead") is False:
            out.counts["failed, dropped"] += 1
        else:
            out.problems.append(f"{item.token}: decodes, ended nowhere: {item.raw[:160]!r}")
    return out


def due_left(swarm: ChaosSwarm, before: float) -> int:
    return int(swarm.r.zcount("schedule", "-inf", before)) + int(swarm.r.zcount("retry", "-inf", before))


def settled(swarm: ChaosSwarm, before: float) -> bool:
    """Nothing left to do: the queue and every private list empty, nothing due in schedule/retry."""
    return swarm.r.llen("queue:default") == 0 and swarm.inflight() == 0 and due_left(swarm, before) == 0


def run_fuzz(
    swarm: ChaosSwarm, report: Report, scenario: str, targets: Sequence[str], items: dict[str, list[Fuzzed]]
) -> tuple[SwarmDaemon, Outcomes]:
    d = swarm.start_booted(1, swarm.config(concurrency=4))
    [worker] = d.booted_workers()
    for target in targets:
        push(swarm, target, items[target])
    pushed = time.time()
    # Normal jobs after the fuzz: straight into the queue, and through `schedule` (the scheduler
    # must keep moving jobs whatever sits beside them).
    normal = swarm.perform([f"n{i}" for i in range(pick(50, 300))])
    work = swarm.via(chaos_work)
    for i in range(pick(20, 100)):
        work.perform_in(0.5, f"sched{i}")
        swarm.acked.append(f"sched{i}")

    def broken() -> str | None:
        if d.booted_workers() != [worker]:
            return f"the worker did not carry on: workers {d.workers()} (was {worker})"
        tracebacks = swarmd_tracebacks(d.output())
        if not tracebacks:
            return None
        lines = tracebacks[0].splitlines()
        after = lines[0].split(": ", 1)[-1][:100]  # the message of the log line that carried it
        return f"swarmd's own traceback: {lines[-1][:120]} (after: {after})\n" + tracebacks[0][-3000:]

    problem = swarm.wait_done(swarm.acked, pick(60, 240), watch=[d], also=broken)
    if problem is None:
        last_due = max(pushed, time.time())
        problem = until(lambda: broken() or settled(swarm, last_due), 60, [d])
        problem = problem and f"not settled: {problem}; queue {swarm.r.llen('queue:default')}, " + (
            f"in flight {swarm.inflight()}, due in schedule/retry {due_left(swarm, last_due)}"
        )
    found = Outcomes()
    for target in targets:
        result = outcomes(swarm, target, items[target])
        found.counts.update(result.counts)
        if problem is None:  # else the run was cut short: where payloads are says little
            found.problems += result.problems
    tally = swarm.tally(normal)
    total = sum(len(items[t]) for t in targets)
    report.row(
        scenario,
        tally,
        jobs=f"{total} fuzzed + {tally.jobs} normal",
        note=(f"{len(found.problems)} payload(s) ended wrong; " if found.problems else "") + found.summary(),
        problem=problem,
    )
    tally.check(problem)
    assert not found.problems, "\n".join(found.problems[:10])
    return d, found


@pytest.mark.parametrize("target", ["queue", "schedule", "retry"])
def test_fuzzed_payloads(target: str, swarm: ChaosSwarm, report: Report) -> None:
    seed = fuzz.seed(FULL)
    print(f"SWARMD_CHAOS_SEED={seed}")
    items = PayloadFuzzer(random.Random(f"{seed}-{target}")).batch(pick(200, 3400))
    run_fuzz(swarm, report, f"fuzzed payloads into {target} (seed {seed})", [target], {target: items})


def test_numbers_beyond_float_range(swarm: ChaosSwarm, report: Report) -> None:
    seed = fuzz.seed(FULL)
    print(f"SWARMD_CHAOS_SEED={seed}")
    fuzzer = PayloadFuzzer(random.Random(seed), beyond_float=True)
    targets = ["queue", "schedule", "retry"]
    items = {t: fuzzer.batch(pick(20, 200)) for t in targets}
    run_fuzz(swarm, report, "numbers beyond float range (1e999)", targets, items)


def test_lone_surrogates_in_key_fields(swarm: ChaosSwarm, report: Report) -> None:
    seed = fuzz.seed(FULL)
    print(f"SWARMD_CHAOS_SEED={seed}")
    fuzzer = PayloadFuzzer(random.Random(seed), key_surrogates=True)
    targets = ["queue", "schedule", "retry"]
    items = {t: fuzzer.batch(pick(20, 200)) for t in targets}
    d, _ = run_fuzz(swarm, report, "lone surrogates in queue/retry_queue/jid", targets, items)
    # One fetched beside normal jobs when its worker is SIGKILLed: the normal ones all come back, and
    # it ends in dead unchanged (a decoder that refuses it) or runs (one that takes it).
    block = json.dumps({"class": "ChaosBlock", "args": ["blk"], "jid": "\udcff", "queue": "default"}).encode()
    swarm.flag("blk")  # if it runs, it ends at once
    swarm.r.lpush("queue:default", block)
    beside = swarm.perform([f"beside{i}" for i in range(3)], seconds=1.0)
    wait_until(
        lambda: all(where.startswith("swarmd:") for where in swarm.tokens_in_redis().values()),
        10,
        what="the normal jobs in a private list",
    )
    [worker] = d.booted_workers()
    swarm.sigkill(worker)
    problem = swarm.wait_done(beside, 30, watch=[d])
    if problem is None:
        problem = until(lambda: block in members(swarm, "dead") or "blk" in swarm.tokens(), 30, [d])
    tally = swarm.tally(beside)
    report.row("lone surrogate jid in flight at SIGKILL", tally, problem=problem)
    tally.check(problem)


def test_newlines_in_class_and_jid_forge_no_log_line(swarm: ChaosSwarm, report: Report) -> None:
    seed = fuzz.seed(FULL)
    items = PayloadFuzzer(random.Random(seed), control=True).batch(pick(20, 100))
    d, _ = run_fuzz(swarm, report, "newlines in class/jid (log forging)", ["queue"], {"queue": items})
    forged = [line for line in re.split(r"[\r\n]", d.output()) if line.startswith(fuzz.FORGED)]
    report.rows[-1].note += f"; {len(forged)} forged log line(s)"
    assert not forged, f"log lines forged by payloads: {forged[:3]}"
