"""swarmd side by side with Sidekiq 6.4.1 and a bare redis-py consumer (the ceiling), by job shape.

For each job shape (``benchmarks/shapes.py``: ``noop``, ``redis`` = one INCR through a module-level
client, ``io`` = sleep 1 ms, ``cpu`` = ~1 ms of pure Python/Ruby), each process count (``--processes``,
default 1 and 2, 10 threads each) and each run, the three drain the same pre-filled ``queue:default``
(N jobs pushed by Sidekiq's own ``push_bulk``, so all three read Sidekiq's format) from one Redis on a
Unix socket, one after the other: swarmd, Sidekiq, the ceiling, swarmd, ... (interleaved, so a noisy
neighbour hurts all alike).

- **swarmd**: ``swarmd -r peerjobs -c 10 -p P`` with default logging (one line per job, batched).
- **Sidekiq 6.4.1** (Debian's ruby-sidekiq): P processes ``sidekiq -c 10``, default logging (two lines
  per job); redis-rb's per-BRPOP deprecation warning is silenced. The Ruby bodies match the Python ones
  (a ``ConnectionPool`` of 10 redis-rb clients for ``redis``, the same loop count for ``cpu``).
- **ceiling** (``benchmarks/ceiling.py``): not a job system; P processes of 10 threads, LMOVE x10 per
  pipeline, the body, LREM x10 per pipeline; no logging, no bookkeeping.

The clock runs from the first job taken (the queue is shorter than N) until every job is done: swarmd's
``stat:processed`` reaches N, the ceiling's processing lists are empty, for Sidekiq the queue is empty
(the at most 10 x P jobs it still runs then are not waited for: in its favour) and, for ``redis``, the
INCR counter reaches N for all three. Boot time is not counted.

Per-job costs over the same window: CPU (utime + stime of every process of the system, swarmd's
supervisor included), context switches (voluntary and involuntary, summed over every thread's
``/proc/<pid>/task/<tid>/status``), Redis commands and round trips (``INFO commandstats``, minus this
script's own polling): swarmd's round trips are the commands a client sends (EVALSHA, BLMOVE, EXEC of
the heartbeat's MULTI, ...), not those its scripts run; Sidekiq's are all its commands (its heartbeat's
MULTI, once per 5 s, is counted command by command); the ceiling's are its pipelines (it counts them)
plus the bodies' own commands; and the Redis server's own CPU per job (``INFO cpu``, this script's
polling included, the same for all).

    python benchmarks/peers.py [--jobs 20000] [--runs 3] [--processes 1,2] [--shapes noop,redis,io,cpu]
                               [--systems swarmd,sidekiq,ceiling] [--markdown] [--baseline DIR]

``--baseline DIR`` adds the system ``base``: swarmd imported from ``DIR/swarmd`` (say, ``git archive``
of an older commit unpacked there), run in turn with the others, for before/after comparisons.

``cpu`` runs N/5 jobs (each takes ~1 ms of one core). Needs ``ruby`` and the ``sidekiq`` gem
(``apt-get install ruby-sidekiq``) for the Sidekiq rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from typing import Any

import redis

from swarmd import procfs
from swarmd.devredis import RedisServer

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = ("swarmd", "sidekiq", "ceiling", "base")
SHAPE_NAMES = ("noop", "redis", "io", "cpu")

RUBY_JOB = textwrap.dedent(
    """
    require "sidekiq"
    require "connection_pool"
    Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)
    Sidekiq.configure_server { |c| c.redis = { path: ENV.fetch("REDIS_SOCKET") } }
    Sidekiq.configure_client { |c| c.redis = { path: ENV.fetch("REDIS_SOCKET") } }
    SHAPE = ENV.fetch("BENCH_SHAPE", "noop")
    CPU_ITERATIONS = 5000
    POOL = ConnectionPool.new(size: 10) { Redis.new(path: ENV.fetch("REDIS_SOCKET")) }
    class ShapeJob
      include Sidekiq::Worker
      def perform(i)
        case SHAPE
        when "redis" then POOL.with { |c| c.incr("bench:incr") }
        when "io" then sleep 0.001
        when "cpu"
          x = 0
          CPU_ITERATIONS.times { |n| x += n * n }
        end
      end
    end
    """
)
RUBY_FILL = textwrap.dedent(
    """
    require_relative "shapejob"
    ARGV[0].to_i.times.each_slice(1000) do |s|
      Sidekiq::Client.push_bulk("class" => ShapeJob, "args" => s.map { |i| [i] })
    end
    """
)
PY_JOB = textwrap.dedent(
    f"""
    import os, sys
    sys.path.insert(0, {HERE!r})
    import swarmd
    from shapes import SHAPES

    swarmd.job(name="ShapeJob")(SHAPES[os.environ["BENCH_SHAPE"]])
    """
)

# Commands a swarmd worker sends itself (one round trip each); the rest run inside its scripts or MULTI.
SWARMD_TRIPS = {
    "evalsha", "eval", "blmove", "ping", "exec", "zrange", "lrange", "smembers", "exists", "llen",
    "get", "info", "config|get", "script|load", "client|setname", "client|id", "hello", "select",
}  # fmt: skip


class Harness:
    """This script's own Redis calls, counted so they can be taken out of the system's numbers."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url)
        self.sent: Counter[str] = Counter()

    def call(self, name: str, *args: Any) -> Any:
        self.sent[name] += 1
        return self.r.execute_command(name.replace("|", " ").upper(), *args)

    def commandstats(self) -> Counter[str]:
        stats = self.call("info", "commandstats")
        out: Counter[str] = Counter()
        for key, value in stats.items():
            out[key.removeprefix("cmdstat_")] = int(value["calls"])
        return out

    def server_cpu(self) -> float:
        """Seconds of CPU the Redis server used so far (user + system; its one busy thread and the
        small background ones): one process for all the systems, so its share per job compares them."""
        info = self.call("info", "cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def session_pids(leaders: list[int]) -> list[int]:
    """Every live process in the sessions these leaders started (start_new_session)."""
    wanted = set(leaders)
    return [pid for pid, fields in procfs.all_stats() if int(fields[3]) in wanted]


def usage(leaders: list[int]) -> tuple[float, float, dict[tuple[int, int], tuple[int, int]]]:
    """(CPU seconds of the sessions' processes, of it in the kernel, {(pid, tid): (voluntary,
    involuntary) switches})."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu = kernel = 0.0
    switches: dict[tuple[int, int], tuple[int, int]] = {}
    for pid in session_pids(leaders):
        fields = procfs.stat_fields(pid)
        if fields is None:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / tick
        kernel += int(fields[12]) / tick
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    text = f.read()
            except OSError:
                continue
            vol = invol = 0
            for line in text.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    vol = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol = int(line.split()[1])
            switches[(pid, int(tid))] = (vol, invol)
    return cpu, kernel, switches


def commands(system: str, calls: Counter[str], ceiling_trips: int, body: int) -> tuple[float, float]:
    """(commands, round trips) of a run; ``body``: the job bodies' own round trips (one INCR each in
    the redis shape; redis-py sends it as INCRBY, which swarmd's scripts use too, so it is not told
    apart by name). See the module docstring."""
    total = sum(calls.values())
    if system in ("swarmd", "base"):
        trips = body + sum(n for k, n in calls.items() if k in SWARMD_TRIPS)
    elif system == "ceiling":
        trips = body + ceiling_trips
    else:
        trips = total
    return total, trips


def run_once(
    system: str, shape: str, processes: int, jobs: int, workdir: str, url: str, env: dict[str, str]
) -> dict[str, float]:
    h = Harness(url)
    h.call("flushall")
    subprocess.run(["ruby", "fill.rb", str(jobs)], cwd=workdir, env=env, check=True)
    env = {**env, "BENCH_SHAPE": shape}
    if system in ("swarmd", "base"):
        cmds = [[sys.executable, "-m", "swarmd", "-r", "peerjobs", "-c", "10", "-p", str(processes)]]
        cmds[0] += ["--redis-url", url]
    elif system == "sidekiq":
        cmds = [["sidekiq", "-r", "./shapejob.rb", "-c", "10", "-q", "default"]] * processes
    else:
        cmds = [[sys.executable, os.path.join(HERE, "ceiling.py"), "--shape", shape]] * processes
    h.call("config|resetstat")
    before = h.commandstats()
    log = open(os.path.join(workdir, f"{system}.log"), "w")  # noqa: SIM115
    procs = [
        subprocess.Popen(c, cwd=workdir, env=env, stdout=log, stderr=log, start_new_session=True)
        for c in cmds
    ]
    leaders = [p.pid for p in procs]

    def check_alive() -> None:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"{system} exited early; see {log.name}")

    try:
        while h.call("llen", "queue:default") >= jobs:
            check_alive()
            time.sleep(0.002)
        t0 = time.perf_counter()
        cpu0, sys0, sw0 = usage(leaders)
        server0 = h.server_cpu()
        while True:
            check_alive()
            if h.call("llen", "queue:default") == 0 and not (
                (shape == "redis" and int(h.call("get", "bench:incr") or 0) < jobs)
                or (system in ("swarmd", "base") and int(h.call("get", "stat:processed") or 0) < jobs)
                or (system == "ceiling" and h.call("keys", "ceiling:p:*"))
            ):
                break
            time.sleep(0.005)
        t1 = time.perf_counter()
        cpu1, sys1, sw1 = usage(leaders)
        server1 = h.server_cpu()
        after = h.commandstats()
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        log.close()
    calls = after - before - h.sent
    ceiling_trips = int(h.r.get("ceiling:trips") or 0) if system == "ceiling" else 0
    total, trips = commands(system, calls, ceiling_trips, jobs if shape == "redis" else 0)
    vol = sum(v - sw0.get(k, (0, 0))[0] for k, (v, _) in sw1.items())
    invol = sum(i - sw0.get(k, (0, 0))[1] for k, (_, i) in sw1.items())
    return {
        "jobs_s": jobs / (t1 - t0),
        "cpu_us": (cpu1 - cpu0) * 1e6 / jobs,
        "sys_us": (sys1 - sys0) * 1e6 / jobs,
        "redis_us": (server1 - server0) * 1e6 / jobs,
        "vcs": vol / jobs,
        "ivcs": invol / jobs,
        "trips": trips / jobs,
        "cmds": total / jobs,
    }


def med(values: list[float]) -> float:
    return statistics.median(values)


def report(
    results: dict[tuple[str, int, str], list[dict[str, float]]],
    shapes: list[str],
    processes: list[int],
    systems: list[str],
    markdown: bool,
) -> None:
    print()
    print(
        f"{'shape':6} {'P':>2} {'system':8} {'jobs/s':>8} {'[min - max]':>17} {'CPU us/job':>10} {'sys':>5} "
        f"{'vcs/job':>8} {'ivcs/job':>8} {'trips/job':>9} {'cmds/job':>8} {'redis us':>8}"
    )
    for shape in shapes:
        for p in processes:
            for system in systems:
                runs = results.get((shape, p, system))
                if not runs:
                    continue
                rate = [x["jobs_s"] for x in runs]
                print(
                    f"{shape:6} {p:>2} {system:8} {med(rate):8.0f} [{min(rate):7.0f} - {max(rate):7.0f}] "
                    f"{med([x['cpu_us'] for x in runs]):10.1f} {med([x['sys_us'] for x in runs]):5.0f} "
                    f"{med([x['vcs'] for x in runs]):8.2f} "
                    f"{med([x['ivcs'] for x in runs]):8.2f} {med([x['trips'] for x in runs]):9.2f} "
                    f"{med([x['cmds'] for x in runs]):8.2f} {med([x['redis_us'] for x in runs]):8.1f}"
                )
            ratios = []
            for mine in ("swarmd", "base"):
                ours = results.get((shape, p, mine))
                for other in ("sidekiq", "ceiling", "base"):
                    theirs = results.get((shape, p, other))
                    if ours and theirs and other != mine:
                        ratio = med([x["jobs_s"] for x in ours]) / med([x["jobs_s"] for x in theirs])
                        ratios.append(f"{mine}/{other} {ratio:.2f}")
            if ratios:
                print(f"{'':18} {', '.join(ratios)}")
    if not markdown:
        return
    print()
    print("| shape | processes | " + " | ".join(systems) + " | swarmd / Sidekiq | swarmd / ceiling |")
    print("|---|---|" + "---|" * (len(systems) + 2))
    for shape in shapes:
        for p in processes:
            cells = []
            medians = {}
            for system in systems:
                runs = results.get((shape, p, system), [])
                rate = [x["jobs_s"] for x in runs]
                if not rate:
                    cells.append("-")
                    continue
                medians[system] = med(rate)
                cost = (
                    f"{med([x['cpu_us'] for x in runs]):.0f} µs CPU "
                    f"({med([x['sys_us'] for x in runs]):.0f} sys), "
                    f"{med([x['vcs'] for x in runs]):.2f}+{med([x['ivcs'] for x in runs]):.2f} cs, "
                    f"{med([x['trips'] for x in runs]):.2f} trips, "
                    f"Redis {med([x['redis_us'] for x in runs]):.0f} µs"
                )
                cells.append(f"**{medians[system]:,.0f}** [{min(rate):,.0f}-{max(rate):,.0f}]<br>{cost}")
            ratio = [
                f"{medians['swarmd'] / medians[o]:.2f}" if "swarmd" in medians and o in medians else "-"
                for o in ("sidekiq", "ceiling")
            ]
            print(f"| {shape} | {p} | " + " | ".join(cells) + f" | {ratio[0]} | {ratio[1]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--processes", default="1,2", help="comma-separated process counts")
    ap.add_argument("--shapes", default=",".join(SHAPE_NAMES))
    ap.add_argument("--systems", default="swarmd,sidekiq,ceiling")
    ap.add_argument("--markdown", action="store_true", help="also print README's table")
    ap.add_argument("--baseline", help="a folder holding another swarmd/ to compare with (system 'base')")
    args = ap.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    systems = [s for s in args.systems.split(",") if s]
    if args.baseline and "base" not in systems:
        systems.append("base")
    processes = [int(p) for p in args.processes.split(",") if p]
    if set(shapes) - set(SHAPE_NAMES) or set(systems) - set(SYSTEMS):
        raise SystemExit(f"--shapes: one of {SHAPE_NAMES}; --systems: one of {SYSTEMS}")
    if not shutil.which("ruby"):
        raise SystemExit("needs ruby to fill the queue (and Sidekiq): apt-get install ruby-sidekiq")
    if "sidekiq" in systems and not shutil.which("sidekiq"):
        raise SystemExit("needs Sidekiq: apt-get install ruby-sidekiq (or --systems swarmd,ceiling)")
    results: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="swarmd-peers-") as d, RedisServer() as server:
        for name, text in (("shapejob.rb", RUBY_JOB), ("fill.rb", RUBY_FILL), ("peerjobs.py", PY_JOB)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        env = {**os.environ, "REDIS_SOCKET": server.socket, "BENCH_REDIS_URL": server.url}
        base_env = {**env, "PYTHONPATH": os.path.abspath(args.baseline or ".")}
        for run in range(args.runs):
            for p in processes:
                for shape in shapes:
                    jobs = args.jobs // 5 if shape == "cpu" else args.jobs
                    for system in systems:
                        res = run_once(
                            system, shape, p, jobs, d, server.url, base_env if system == "base" else env
                        )
                        results.setdefault((shape, p, system), []).append(res)
                        print(
                            f"run {run + 1}: {shape:5} P={p} {system:8} {res['jobs_s']:8.0f} jobs/s, "
                            f"{res['cpu_us']:.0f} us CPU/job ({res['sys_us']:.0f} sys), "
                            f"{res['trips']:.2f} trips/job, "
                            f"{res['vcs']:.2f}+{res['ivcs']:.2f} cs/job",
                            flush=True,
                        )
    print(
        f"\n{args.jobs} jobs a run ({args.jobs // 5} for cpu), 10 threads a process, {args.runs} interleaved "
        "runs; medians; cs = context switches (voluntary+involuntary) per job"
    )
    report(results, shapes, processes, systems, args.markdown)


if __name__ == "__main__":
    main()
