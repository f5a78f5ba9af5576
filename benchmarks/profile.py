"""Where a worker's time goes on a job shape: py-spy on every thread, idle ones included.

Fills ``queue:default`` with N jobs of a shape (``benchmarks/shapes.py``), starts one ``swarmd`` worker
(concurrency 10), records it with ``py-spy record --threads --idle --format raw`` while it drains, and
prints, per thread kind, the share of samples by the innermost swarmd/redis-py/stdlib function
(and by state: running Python, or waiting: a lock, a socket, a sleep).

    python benchmarks/profile.py [--shape redis] [--jobs 60000] [--seconds 6] [--top 25] [--processes 1]

Needs ``py-spy`` (``pip install py-spy``) and the right to ptrace the worker (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict

import redis

import swarmd
from swarmd.devredis import RedisServer

HERE = os.path.dirname(os.path.abspath(__file__))
JOB_MODULE = textwrap.dedent(
    f"""
    import os, sys
    sys.path.insert(0, {HERE!r})
    import swarmd
    from shapes import SHAPES

    job = swarmd.job(name="ShapeJob")(SHAPES[os.environ["BENCH_SHAPE"]])
    """
)


def worker_pid(supervisor: int) -> int | None:
    try:
        with open(f"/proc/{supervisor}/task/{supervisor}/children") as f:
            pids = [int(p) for p in f.read().split()]
    except OSError:
        return None
    return pids[0] if pids else None


def kind(thread: str) -> str:
    """A thread's kind from py-spy's thread label (``process ...;thread (0x..)`` lines)."""
    return re.sub(r"\s*\(?0x[0-9a-f]+\)?", "", thread).strip() or "?"


PARTS = (  # (a frame's text contains, the part of the job path it stands for), first match wins
    ("shapes.py", "the job body"),
    ("Fetcher._lead", "fetch (the script call, its reply, the buffer)"),
    ("Fetcher._wait_on", "waiter (BLMOVE)"),
    ("job_event", "the per-job log line"),
    ("_flush_loop", "log flusher thread"),
    ("decode (", "payload decode and checks"),
    ("busy.py", "busy map"),
    ("metrics.py", "per-class metrics"),
    ("context.py", "job context"),
    ("Fetcher.get", "hand-off (get)"),
    ("Fetcher.ack", "hand-off (ack)"),
    ("Processor._invoke", "registry lookup and call"),
    ("Processor.process", "processor (the rest of process())"),
    ("Processor._run", "processor loop"),
    ("Worker.run", "main thread (housekeeping)"),
)


def part_of(stack: str) -> str:
    for needle, part in PARTS:
        if needle in stack:
            return part
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="redis")
    ap.add_argument("--jobs", type=int, default=60_000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--processes", type=int, default=1, help="workers; the first one is recorded")
    ap.add_argument("--active", action="store_true", help="only samples of threads running (no --idle)")
    ap.add_argument("--gil", action="store_true", help="only samples of the thread holding the GIL")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    with tempfile.TemporaryDirectory(prefix="swarmd-prof-") as d, RedisServer() as server:
        with open(os.path.join(d, "profjobs.py"), "w") as f:
            f.write(JOB_MODULE)
        env = {**os.environ, "BENCH_SHAPE": args.shape, "BENCH_REDIS_URL": server.url}
        os.environ.update(env)
        sys.path.insert(0, d)
        import profjobs  # type: ignore[import-not-found]

        client = swarmd.Client(server.url)
        for start in range(0, args.jobs, 10_000):
            profjobs.job.set(client=client).perform_bulk(
                [(i,) for i in range(start, min(args.jobs, start + 10_000))]
            )
        cmd = [sys.executable, "-m", "swarmd", "-r", "profjobs", "-c", "10", "-p", str(args.processes)]
        cmd += ["--redis-url", server.url]
        log = open(os.path.join(d, "swarmd.log"), "w")  # noqa: SIM115
        proc = subprocess.Popen(cmd, cwd=d, env=env, stderr=log, stdout=log, start_new_session=True)
        r = redis.Redis.from_url(server.url)
        try:
            while r.llen("queue:default") >= args.jobs:
                time.sleep(0.01)
            pid = worker_pid(proc.pid)
            assert pid is not None
            out = os.path.join(d, "raw.txt")
            record = [spy, "record", "--pid", str(pid), "--threads", "--format", "raw"]
            record += ["--gil"] if args.gil else [] if args.active else ["--idle"]
            record += [
                "--nonblocking",
                "--duration",
                str(int(args.seconds)),
                "--rate",
                "200",
                "--output",
                out,
            ]
            subprocess.run(
                record,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            left = r.llen("queue:default")
            with open(out) as f:
                lines = f.read().splitlines()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            log.close()
    print(
        f"swarmd {swarmd.__version__}, shape {args.shape}: {args.jobs - left} jobs left the queue by the end"
    )
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        parts[part_of(stack)] += int(count)
        frames = stack.split(";")
        thread = kind(frames[0]) if frames else "?"
        frames = frames[1:]
        leaf = frames[-1] if frames else "?"
        if args.active or args.gil:  # by the outermost frame below the processor's loop: which part
            outer = [fr for fr in frames if "swarmd/" in fr or "shapes.py" in fr]
            leaf = outer[2] if len(outer) > 2 else leaf
        leaf = re.sub(r" \((.*/)?([^/]*)\)", r" (\2)", leaf)
        # The swarmd frame nearest the leaf: which part of swarmd the time belongs to.
        ours = next(
            (re.sub(r" \((.*/)?([^/]*)\)", r" (\2)", fr) for fr in reversed(frames) if "swarmd/" in fr), "-"
        )
        by_kind[thread][f"{leaf}  <- {ours}"] += int(count)
        totals[thread] += int(count)
    whole = sum(parts.values())
    print(f"\nby part of the job path, all threads ({whole} samples):")
    for what, n in parts.most_common():
        print(f"  {100 * n / whole:5.1f}%  {what}")
    for thread, counts in sorted(by_kind.items(), key=lambda kv: -totals[kv[0]]):
        print(f"\n{thread}: {totals[thread]} samples")
        for what, n in counts.most_common(args.top):
            print(f"  {100 * n / totals[thread]:5.1f}%  {what}")


if __name__ == "__main__":
    main()
