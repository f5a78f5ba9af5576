"""Pickup latency (idle and under load) and idle memory of one worker (run by ``make bench``).

Starts ``swarmd`` (one worker, concurrency 10) on empty queues, then

1. idle: pushes 200 jobs one at a time, 20 ms apart; then the same to a bare redis-py consumer in a
   process of its own, blocked in BLMOVE (the floor: what Redis and this machine's wake-ups cost);
2. under load (``--busy 0.8``): pushes jobs that each sleep ``--hold`` ms (10) at random (Poisson)
   times, for ``--seconds`` (5), at the rate that keeps that share of the 10 threads busy: 0.8 x 10 /
   the jobs' real duration, measured first on 20 of them (a 10 ms sleep takes longer on a busy
   machine).

Each job records when it was sent (its argument, taken just before the enqueue), when it started and
when it ended, to a file. Prints p50/p90/p99/max pickup latency (sent -> started) of each part, the
busy share reached (the jobs' own durations / threads / time), and, for the loaded part, the same
percentiles of a perfect queue of 10 threads with no overhead fed the same send times and durations:
queueing alone (at 80 % busy a job often finds every thread taken); the difference is swarmd's.
Then the worker's RSS and PSS after it has been idle for 3 s.

    python benchmarks/latency.py [--jobs 200] [--busy 0.8] [--hold 10] [--seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

import swarmd
from swarmd.devredis import RedisServer

JOB_MODULE = textwrap.dedent(
    """
    import os, time
    import swarmd

    OUT = os.environ["LATENCY_OUT"]

    @swarmd.job(name="bench.stamp")
    def stamp(sent, hold_ms=0):
        started = time.time()
        if hold_ms:
            time.sleep(hold_ms / 1000)
        fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{sent:.6f} {started:.6f} {time.time():.6f}\\n".encode())
        os.close(fd)
    """
)


# The floor of idle pickup on this machine: a bare redis-py consumer in a process of its own, blocked in
# BLMOVE, that stamps the job the moment the reply arrives (no threads to hand it to, no bookkeeping).
FLOOR_CONSUMER = textwrap.dedent(
    """
    import json, sys, time, redis
    r = redis.Redis.from_url(sys.argv[1])
    while True:
        raw = r.blmove("queue:floor", "floor:inflight", 0, "RIGHT", "LEFT")
        started = time.time()
        sent = json.loads(raw)["args"][0]
        with open(sys.argv[2], "a") as f:
            f.write(f"{sent:.6f} {started:.6f} {started:.6f}\\n")
    """
)


def memory_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def read_runs(path: str, want: int) -> list[tuple[float, float, float]]:
    """(sent, started, ended) of each job, once ``want`` of them are written (or after 10 s)."""
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError), open(path) as f:
            lines = f.read().splitlines()
        if len(lines) >= want:
            break
        time.sleep(0.05)
    runs = [tuple(float(x) for x in line.split()) for line in lines]
    return sorted((a, b, c) for a, b, c in runs)


def ideal_ms(runs: list[tuple[float, float, float]], threads: int) -> list[float]:
    """The pickup latencies of a perfect queue with ``threads`` servers and no overhead at all, for
    the same send times and the same job durations: what queueing alone costs at this load."""
    free = [0.0] * threads
    out = []
    for sent, started, ended in runs:
        i = min(range(threads), key=free.__getitem__)
        start = max(sent, free[i])
        free[i] = start + (ended - started)
        out.append((start - sent) * 1000)
    return out


def show(title: str, ms: list[float]) -> None:
    print(title)
    print(
        f"  pickup latency ms: p50 {pct(ms, 50):.2f}  p90 {pct(ms, 90):.2f}  "
        f"p99 {pct(ms, 99):.2f}  max {max(ms):.2f}"
    )


def measure_floor(url: str, job: Any, jobs: int, out: str) -> list[float]:
    """Idle pickup of the bare consumer (`FLOOR_CONSUMER`), sent the same way as swarmd's jobs."""
    consumer = subprocess.Popen([sys.executable, "-c", FLOOR_CONSUMER, url, out], start_new_session=True)
    try:
        floor_job = job.set(queue="floor")
        floor_job.perform_async(time.time())  # warm-up: the consumer has started
        while not os.path.exists(out):
            time.sleep(0.01)
        time.sleep(1)
        os.unlink(out)
        for _ in range(jobs):
            floor_job.perform_async(time.time())
            time.sleep(0.02)
        return [(b - a) * 1000 for a, b, _ in read_runs(out, jobs)]
    finally:
        os.killpg(consumer.pid, signal.SIGTERM)
        consumer.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--busy", type=float, default=0.8, help="share of the threads kept busy (0: skip)")
    ap.add_argument("--hold", type=float, default=10.0, help="ms each job of the loaded part sleeps")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the loaded part")
    args = ap.parse_args()
    concurrency = 10
    loaded: list[float] = []
    runs: list[tuple[float, float, float]] = []
    sent_loaded = 0
    load_s = 0.0
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as workdir, RedisServer() as server:
        with open(os.path.join(workdir, "latencyjobs.py"), "w") as f:
            f.write(JOB_MODULE)
        out = os.path.join(workdir, "latency.txt")
        env = {**os.environ, "LATENCY_OUT": out}
        cmd = [sys.executable, "-m", "swarmd", "-r", "latencyjobs", "-c", str(concurrency)]
        cmd += ["--redis-url", server.url]
        log = open(os.path.join(workdir, "swarmd.log"), "w")  # noqa: SIM115
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stderr=log, start_new_session=True)
        try:
            client = swarmd.Client(server.url)
            sys.path.insert(0, workdir)
            os.environ["LATENCY_OUT"] = out
            from latencyjobs import stamp  # type: ignore[import-not-found]

            job = stamp.set(client=client)
            job.perform_async(time.time())  # warm-up: the worker has booted
            while not os.path.exists(out):
                time.sleep(0.01)
            time.sleep(3)
            rss, pss = memory_kb(proc.pid)
            os.unlink(out)
            for _ in range(args.jobs):
                job.perform_async(time.time())
                time.sleep(0.02)
            idle = [(b - a) * 1000 for a, b, _ in read_runs(out, args.jobs)]
            os.unlink(out)
            floor = measure_floor(server.url, job, args.jobs, os.path.join(workdir, "floor.txt"))
            if args.busy > 0:
                for _ in range(20):
                    job.perform_async(time.time(), args.hold)
                    time.sleep(args.hold / 1000 / 2)
                took = [c - b for _, b, c in read_runs(out, 20)]
                os.unlink(out)
                rate = args.busy * concurrency / (sum(took) / len(took))
                rng = random.Random(1)
                started = time.perf_counter()
                due = started
                while due - started < args.seconds:
                    due += rng.expovariate(rate)
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    job.perform_async(time.time(), args.hold)
                    sent_loaded += 1
                load_s = time.perf_counter() - started
                runs = read_runs(out, sent_loaded)
                loaded = [(b - a) * 1000 for a, b, _ in runs]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            log.close()
    print(f"swarmd {swarmd.__version__}: one worker, concurrency {concurrency}")
    show(f"idle: {len(idle)} jobs sent 20 ms apart", idle)
    show("  the floor: a bare redis-py consumer blocked in BLMOVE, a process of its own, same sends:", floor)
    if loaded:
        busy = sum(c - b for _, b, c in runs) / concurrency / load_s
        show(
            f"under load: {len(loaded)} jobs of {args.hold:g} ms sent at random times, "
            f"{sent_loaded / load_s:.0f}/s "
            f"for {load_s:.1f} s: {busy:.0%} of the threads busy (as the jobs timed themselves)",
            loaded,
        )
        show(
            "  a perfect queue, same sends and job durations, no overhead (queueing alone):",
            ideal_ms(runs, concurrency),
        )
    print(f"  idle worker memory: RSS {rss / 1024:.1f} MB, PSS {pss / 1024:.1f} MB")


if __name__ == "__main__":
    main()
