"""Throughput of one swarm on no-op jobs (run by ``make bench``).

Fills ``queue:default`` with N jobs through ``perform_bulk``, starts ``swarmd`` (one worker process
with concurrency 10 unless told otherwise), and waits until ``stat:processed`` reaches N. The jobs do
nothing (``--job noop``) or one ``INCR`` through a module-level redis-py client (``--job redis``, the
shape of a typical small job: one round trip of its own).
Prints jobs/s (from the first job to the last, and from process start), Redis commands and round
trips per job (from ``INFO commandstats``), and worker CPU per job.

    python benchmarks/throughput.py [--jobs 100000] [--processes 1] [--concurrency 10] [--runs 3]
                                    [--job noop|redis]
    python benchmarks/throughput.py --sentinel [--wait-replicas 1] [...]

Uses ``REDIS_URL`` if set, else a private redis-server (see swarmd.devredis). ``--sentinel`` starts a
master, a replica and 3 Sentinels on loopback (tests/sentinelkit.py; needs redis-sentinel) and runs
each round twice, alternating: once with the master's TCP address as URL, once through Sentinel
(``redis: {sentinels, master_name}``), and prints both and their ratio. ``--wait-replicas N`` adds
``wait_replicas: N`` to both (WAIT after every enqueue and every fetch that moved jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

import redis

import swarmd
from swarmd.devredis import redis_url_or_private

# Commands only a client sends (each is one round trip); everything else ran inside a script or a
# MULTI block that counts once as EXEC.
ROUND_TRIP_COMMANDS = {
    "evalsha", "eval", "blmove", "ping", "exec", "zrange", "lrange", "smembers", "exists",
    "llen", "get", "info", "config|get", "script|load", "client|setname", "hello", "select",
}  # fmt: skip

JOB_MODULE = textwrap.dedent(
    """
    import os

    import redis

    import swarmd

    r = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])  # one client per worker (imported after fork)

    @swarmd.job(name="bench.noop")
    def noop(i):
        pass

    @swarmd.job(name="bench.incr")
    def incr(i):
        r.incr("bench:incr")
    """
)


def commandstats(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def children_cpu(pid: int) -> float:
    """utime+stime of ``pid`` and its live children, seconds."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def run_once(
    url: str,
    jobs: int,
    processes: int,
    concurrency: int,
    workdir: str,
    redis_section: dict[str, Any] | None = None,
    job: str = "noop",
) -> dict[str, float]:
    """One round; ``redis_section`` (a config's ``redis:``) instead of ``--redis-url``, if given (``url``
    still names the master, for FLUSHALL and the counters)."""
    r = redis.Redis.from_url(url)
    r.flushall()
    client = swarmd.Client(redis_section or url)
    sys.path.insert(0, workdir)
    os.environ["BENCH_REDIS_URL"] = url
    import benchjobs  # type: ignore[import-not-found]

    func = benchjobs.incr if job == "redis" else benchjobs.noop
    t0 = time.perf_counter()
    for start in range(0, jobs, 10_000):
        func.set(client=client).perform_bulk([(i,) for i in range(start, min(jobs, start + 10_000))])
    enqueue_s = time.perf_counter() - t0
    r.config_resetstat()
    before = commandstats(r)
    log = open(os.path.join(workdir, "swarmd.log"), "w")  # noqa: SIM115
    cmd = [sys.executable, "-m", "swarmd", "-r", "benchjobs", "-c", str(concurrency), "-p", str(processes)]
    if redis_section is None:
        cmd += ["--redis-url", url, "-g", "bench"]
    else:
        with open(os.path.join(workdir, "swarmd.yml"), "w") as f:
            json.dump({"redis": redis_section}, f)  # JSON is YAML
        cmd += ["-C", "swarmd.yml", "-g", "bench"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, stderr=log, stdout=log, start_new_session=True)
    first = None
    done = 0
    try:
        while done < jobs:
            done = int(r.get("stat:processed") or 0)
            if first is None and (done or r.llen("queue:default") < jobs):
                first = time.perf_counter()
            if proc.poll() is not None:
                raise SystemExit(f"swarmd exited early with {proc.returncode}; see {log.name}")
            time.sleep(0.005)
        finished = time.perf_counter()
        cpu = children_cpu(proc.pid)
        after = commandstats(r)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total_calls = sum(calls.values())
    trips = sum(v for k, v in calls.items() if k in ROUND_TRIP_COMMANDS)
    assert first is not None
    return {
        "enqueue_jobs_s": jobs / enqueue_s,
        "jobs_s": jobs / (finished - first),
        "jobs_s_from_start": jobs / (finished - started),
        "cmds_per_job": total_calls / jobs,
        "round_trips_per_job": trips / jobs,
        "cpu_ms_per_job": cpu * 1000 / jobs,
    }


def summarize(title: str, results: list[dict[str, float]]) -> dict[str, float]:
    print(title)
    medians = {}
    for key in results[0]:
        values = [res[key] for res in results]
        medians[key] = statistics.median(values)
        print(f"  {key:22} median {medians[key]:10.2f}   [{min(values):.2f} - {max(values):.2f}]")
    return medians


def sentinel_rounds(args: argparse.Namespace, workdir: str) -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.sentinelkit import SentinelKit

    extra = {"wait_replicas": args.wait_replicas} if args.wait_replicas else {}
    with SentinelKit() as kit:
        master = kit.master()
        url = f"redis://127.0.0.1:{master.port}/0"
        direct: list[dict[str, float]] = []
        through: list[dict[str, float]] = []
        for _ in range(args.runs):  # alternating, so that a noisy neighbour hurts both alike
            direct.append(
                run_once(
                    url,
                    args.jobs,
                    args.processes,
                    args.concurrency,
                    workdir,
                    {"url": url, **extra},
                    job=args.job,
                )
            )
            through.append(
                run_once(
                    url,
                    args.jobs,
                    args.processes,
                    args.concurrency,
                    workdir,
                    kit.settings(**extra),
                    job=args.job,
                )
            )
    head = f"swarmd {swarmd.__version__}: {args.jobs} no-op jobs, --processes {args.processes}, "
    head += f"concurrency {args.concurrency}, {args.runs} run(s) each" + (
        f", wait_replicas {args.wait_replicas}" if extra else ""
    )
    print(head)
    a = summarize(f"direct: {url}", direct)
    b = summarize("through Sentinel: 1 master, 1 replica, 3 Sentinels", through)
    jobs, enqueue = b["jobs_s"] / a["jobs_s"], b["enqueue_jobs_s"] / a["enqueue_jobs_s"]
    print(f"Sentinel / direct: jobs_s {jobs:.3f}, enqueue_jobs_s {enqueue:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--sentinel", action="store_true", help="direct vs through Sentinel (needs redis-sentinel)"
    )
    ap.add_argument("--wait-replicas", type=int, default=0, help="with --sentinel: wait_replicas for both")
    ap.add_argument("--job", choices=("noop", "redis"), default="noop", help="what each job does")
    args = ap.parse_args()
    if args.sentinel:
        with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as workdir:
            with open(os.path.join(workdir, "benchjobs.py"), "w") as f:
                f.write(JOB_MODULE)
            sentinel_rounds(args, workdir)
        return
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as workdir:
        with open(os.path.join(workdir, "benchjobs.py"), "w") as f:
            f.write(JOB_MODULE)
        with redis_url_or_private() as url:
            results = [
                run_once(url, args.jobs, args.processes, args.concurrency, workdir, job=args.job)
                for _ in range(args.runs)
            ]
    print(
        f"swarmd {swarmd.__version__}: {args.jobs} {args.job} jobs, --processes {args.processes}, "
        f"concurrency {args.concurrency}, {args.runs} run(s)"
    )
    for key in results[0]:
        values = [res[key] for res in results]
        digits = 3 if max(values) < 10 else 2  # per-job numbers (CPU ms) need the third decimal
        low, median, high = min(values), statistics.median(values), max(values)
        print(f"  {key:22} median {median:10.{digits}f}   [{low:.{digits}f} - {high:.{digits}f}]")


if __name__ == "__main__":
    main()
