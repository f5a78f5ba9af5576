"""Idle pickup latency and idle memory of one worker (run by ``make bench``).

Starts ``swarmd`` (one worker, concurrency 10) on empty queues, then pushes 200 jobs one at a time,
20 ms apart. Each job records ``time.time() - enqueued_at`` (the job's own payload field, read with
``swarmd`` job kwargs) to a file. Prints p50/p90/p99/max pickup latency, and the worker's RSS and
PSS after it has been idle for 3 s.

    python benchmarks/latency.py [--jobs 200]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import swarmd
from swarmd.devredis import RedisServer

JOB_MODULE = textwrap.dedent(
    """
    import os, time
    import swarmd

    OUT = os.environ["LATENCY_OUT"]

    @swarmd.job(name="bench.stamp")
    def stamp(sent):
        fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{time.time() - sent:.6f}\\n".encode())
        os.close(fd)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as workdir, RedisServer() as server:
        with open(os.path.join(workdir, "latencyjobs.py"), "w") as f:
            f.write(JOB_MODULE)
        out = os.path.join(workdir, "latency.txt")
        env = {**os.environ, "LATENCY_OUT": out}
        cmd = [sys.executable, "-m", "swarmd", "-r", "latencyjobs", "-c", "10", "--redis-url", server.url]
        log = open(os.path.join(workdir, "swarmd.log"), "w")  # noqa: SIM115
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stderr=log, start_new_session=True)
        try:
            client = swarmd.Client(server.url)
            sys.path.insert(0, workdir)
            os.environ["LATENCY_OUT"] = out
            from latencyjobs import stamp  # type: ignore[import-not-found]

            stamp.set(client=client).perform_async(time.time())  # warm-up: the worker has booted
            while not os.path.exists(out):
                time.sleep(0.01)
            time.sleep(3)
            rss, pss = memory_kb(proc.pid)
            os.unlink(out)
            for _ in range(args.jobs):
                stamp.set(client=client).perform_async(time.time())
                time.sleep(0.02)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with open(out) as f:
                    lines = f.read().split()
                if len(lines) >= args.jobs:
                    break
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            log.close()
    ms = [float(x) * 1000 for x in lines]
    print(f"swarmd {swarmd.__version__}: idle worker, concurrency 10, {len(ms)} jobs sent 20 ms apart")
    print(
        f"  pickup latency ms: p50 {pct(ms, 50):.2f}  p90 {pct(ms, 90):.2f}  "
        f"p99 {pct(ms, 99):.2f}  max {max(ms):.2f}"
    )
    print(f"  idle worker memory: RSS {rss / 1024:.1f} MB, PSS {pss / 1024:.1f} MB")


if __name__ == "__main__":
    main()
