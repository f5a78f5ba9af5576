"""The swarm's budgets (issue 3): start-up, idle cost, recovery of a killed worker, throughput by processes.

    python benchmarks/swarm.py [--runs 5] [--idle 10] [--jobs 50000] [--skip-throughput]

1. start -> READY=1 with ``--processes 4``: from spawning ``python -m swarmd`` to the READY=1 datagram on a
   notify socket of our own (median of ``--runs``).
2. The supervisor's RSS, PSS and USS (private pages) once ready, and its CPU over ``--idle`` seconds
   of an idle swarm.
3. A killed worker (SIGKILL, its first crash, both of its processors busy with long jobs): time until
   its private in-flight list is empty (its jobs moved to the quarantine list, by the supervisor's
   recovery child) and
   until a replacement worker has booted (median of ``--runs``, a fresh swarm each run).
4. ``benchmarks/throughput.py --processes 1`` and ``--processes 2`` (concurrency 10), side by side.

Uses ``REDIS_URL`` if set, else a private redis-server (see swarmd.devredis). Budgets: READY <= 1.5 s;
supervisor RSS <= 25 MB and idle CPU <= 1 % of a core; jobs back <= 2 s and replacement <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable

import redis

from swarmd.devredis import redis_url_or_private

HERE = os.path.dirname(os.path.abspath(__file__))

JOB_MODULE = textwrap.dedent(
    """
    import time

    import swarmd

    @swarmd.job(name="bench.sleep")
    def sleep(seconds):
        time.sleep(seconds)
    """
)


class Swarm:
    """One ``python -m swarmd`` in its own session, with a notify socket; always killed at the end."""

    def __init__(self, url: str, workdir: str, *args: str) -> None:
        self.sock_path = os.path.join(tempfile.mkdtemp(prefix="swd-", dir="/tmp"), "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        env["NOTIFY_SOCKET"] = self.sock_path
        cmd = [sys.executable, "-m", "swarmd", "-r", "benchjobs", "--redis-url", url, "-g", "bench", *args]
        self.log = open(os.path.join(workdir, "swarmd.log"), "ab")  # noqa: SIM115
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=self.log, stderr=self.log, start_new_session=True
        )

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Seconds from spawn to READY=1."""
        self.sock.settimeout(timeout_s)
        while True:
            data = self.sock.recv(65536)
            if b"READY=1" in data.split(b"\n"):
                return time.perf_counter() - self.started

    def workers(self) -> list[int]:
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.sock.close()
        os.unlink(self.sock_path)
        os.rmdir(os.path.dirname(self.sock_path))
        self.log.close()


def proc_kb(pid: int, field: bytes, path: str = "status") -> int:
    with open(f"/proc/{pid}/{path}", "rb") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """CPU time of ``pid`` in seconds, to the nanosecond (/proc/<pid>/stat counts 10 ms ticks)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def poll(predicate: Callable[[], bool], timeout_s: float = 30.0) -> float:
    """Seconds until ``predicate()`` holds (polled every ~0.5 ms)."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout_s:
            raise SystemExit("timed out; see swarmd.log in the work dir")
        time.sleep(0.0005)
    return time.perf_counter() - start


def identity_of(r: redis.Redis, pid: int) -> str:
    for member in r.smembers("processes"):
        info = r.hget(member, "info")
        if info and json.loads(info)["pid"] == pid:
            return member.decode() if isinstance(member, bytes) else str(member)
    raise SystemExit(f"worker {pid} is not registered")


def killed_worker(url: str, workdir: str) -> tuple[float, float]:
    """(jobs out of its list, replacement booted) after SIGKILL of one worker, seconds."""
    r = redis.Redis.from_url(url)
    r.flushall()
    swarm = Swarm(url, workdir, "--processes", "2", "--concurrency", "2")
    try:
        swarm.wait_ready()
        for _ in range(4):  # every processor busy: recovered jobs have nowhere to go but the queue
            r.lpush(
                "queue:default",
                json.dumps({"class": "bench.sleep", "args": [60], "jid": os.urandom(12).hex()}),
            )
        poll(lambda: r.llen("queue:default") == 0)
        victim = swarm.workers()[0]
        inflight = f"swarmd:inflight:{identity_of(r, victim)}"
        poll(lambda: r.llen(inflight) == 2)
        killed = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        poll(lambda: r.llen(inflight) == 0)
        back = time.perf_counter() - killed

        def replaced() -> bool:
            # Not the quarantine worker the recovered jobs bring, nor the recovery child.
            pids = [p for p in swarm.workers() if p != victim and "busy]" in title(p)]
            pids = [p for p in pids if " quarantine [" not in title(p)]
            return len(pids) == 2 and all("busy]" in title(p) for p in pids)

        poll(replaced)
        return back, time.perf_counter() - killed
    finally:
        swarm.close()
        r.close()


def throughput(processes: int, jobs: int, runs: int) -> dict[str, float]:
    cmd = [sys.executable, os.path.join(HERE, "throughput.py"), "--processes", str(processes)]
    cmd += ["--jobs", str(jobs), "--runs", str(runs)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {m[1]: float(m[2]) for m in re.finditer(r"^\s+(\w+)\s+median\s+([\d.]+)", out, re.M)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    ap.add_argument("--jobs", type=int, default=50_000, help="jobs per throughput run")
    ap.add_argument("--throughput-runs", type=int, default=3)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as workdir:
        with open(os.path.join(workdir, "benchjobs.py"), "w") as f:
            f.write(JOB_MODULE)
        with redis_url_or_private() as url:
            r = redis.Redis.from_url(url)
            ready = []
            for _ in range(args.runs):
                r.flushall()
                swarm = Swarm(url, workdir, "--processes", "4")
                try:
                    ready.append(swarm.wait_ready())
                finally:
                    swarm.close()
            rows.append(("start -> READY=1, --processes 4", _stats(ready, "s"), "<= 1.5 s"))

            r.flushall()
            swarm = Swarm(url, workdir, "--processes", "4")
            try:
                swarm.wait_ready()
                time.sleep(1.0)  # let start-up settle
                pid = swarm.proc.pid
                rss, pss = proc_kb(pid, b"VmRSS:"), proc_kb(pid, b"Pss:", "smaps_rollup")
                uss = proc_kb(pid, b"Private_Clean:", "smaps_rollup")
                uss += proc_kb(pid, b"Private_Dirty:", "smaps_rollup")
                redis_rss = _import_redis_rss_kb()
                cpu0, t0 = cpu_s(pid), time.perf_counter()
                time.sleep(args.idle)
                cpu = (cpu_s(pid) - cpu0) / (time.perf_counter() - t0) * 100
            finally:
                swarm.close()
            memory = f"{rss / 1024:.1f} / {pss / 1024:.1f} / {uss / 1024:.1f} MB"
            rows.append(("supervisor RSS / PSS / USS, ready", memory, "<= 25 MB"))
            rows.append(("  for scale: RSS of python -c 'import redis'", f"{redis_rss / 1024:.1f} MB", ""))
            rows.append(
                (f"supervisor CPU, idle {args.idle:g} s, 4 workers", f"{cpu:.3f} % of a core", "<= 1 %")
            )

            results = [killed_worker(url, workdir) for _ in range(args.runs)]
            rows.append(("killed worker: jobs back in queue", _stats([b for b, _ in results], "s"), "<= 2 s"))
            rows.append(("killed worker: replacement booted", _stats([t for _, t in results], "s"), "<= 1 s"))
            r.close()
    if not args.skip_throughput:  # throughput.py starts its own Redis (or uses REDIS_URL)
        for processes in (1, 2):
            res = throughput(processes, args.jobs, args.throughput_runs)
            rows.append(
                (
                    f"throughput --processes {processes} -c 10 (jobs/s)",
                    f"{res['jobs_s']:.0f} (from start {res['jobs_s_from_start']:.0f})",
                    "report",
                )
            )
    print(f"$ python benchmarks/swarm.py {' '.join(sys.argv[1:])}".rstrip())
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measure':{width}}  {'result':32}  budget")
    for name, value, budget in rows:
        print(f"{name:{width}}  {value:32}  {budget}")


def _import_redis_rss_kb() -> int:
    code = "import re, redis; print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    return int(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def _stats(values: list[float], unit: str) -> str:
    scale = 1000 if unit == "s" else 1
    shown = "ms" if unit == "s" else unit
    return (
        f"median {statistics.median(values) * scale:.0f} {shown} "
        f"[{min(values) * scale:.0f}-{max(values) * scale:.0f}]"
    )


if __name__ == "__main__":
    main()
