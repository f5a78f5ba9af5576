"""swarmd side by side with Sidekiq 6.4.1 (Debian's ruby-sidekiq) on the same Redis and machine.

Both drain N no-op jobs from ``queue:default``; the clock runs from process start until the queue is
empty (bin/sidekiqload's metric), repetitions interleaved (swarmd, Sidekiq, swarmd, ...). Sidekiq runs
with its default logging (two lines per job, as swarmd's default writes one); redis-rb's per-BRPOP
deprecation warning is silenced.

    python benchmarks/peers.py [--jobs 100000] [--runs 3] [--processes 1]

Needs ``ruby`` and the ``sidekiq`` gem (``apt-get install ruby-sidekiq``).
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

import redis

from swarmd.devredis import RedisServer

RUBY_JOB = textwrap.dedent(
    """
    require "sidekiq"
    Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)
    Sidekiq.configure_server { |c| c.redis = { path: ENV.fetch("REDIS_SOCKET") } }
    Sidekiq.configure_client { |c| c.redis = { path: ENV.fetch("REDIS_SOCKET") } }
    class NoopJob
      include Sidekiq::Worker
      def perform(i); end
    end
    """
)
RUBY_FILL = textwrap.dedent(
    """
    require_relative "noop"
    ARGV[0].to_i.times.each_slice(1000) do |s|
      Sidekiq::Client.push_bulk("class" => NoopJob, "args" => s.map { |i| [i] })
    end
    """
)
PY_JOB = "import swarmd\n\n@swarmd.job(name='NoopJob')\ndef noop(i):\n    pass\n"


def drain(cmds: list[list[str]], r: redis.Redis, jobs: int, cwd: str, env: dict[str, str]) -> float:
    log = open(os.path.join(cwd, "run.log"), "w")  # noqa: SIM115
    started = time.perf_counter()
    procs = [
        subprocess.Popen(c, cwd=cwd, env=env, stdout=log, stderr=log, start_new_session=True) for c in cmds
    ]
    try:
        while r.llen("queue:default") > 0:
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"{cmds[0][0]} exited early; see {log.name}")
            time.sleep(0.005)
        return jobs / (time.perf_counter() - started)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--processes", type=int, default=1)
    args = ap.parse_args()
    if not shutil.which("sidekiq"):
        raise SystemExit("needs Sidekiq: apt-get install ruby-sidekiq")
    results: dict[str, list[float]] = {"swarmd": [], "sidekiq": []}
    with tempfile.TemporaryDirectory(prefix="swarmd-peers-") as d, RedisServer() as server:
        for name, text in (("noop.rb", RUBY_JOB), ("fill.rb", RUBY_FILL), ("peerjobs.py", PY_JOB)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        env = {**os.environ, "REDIS_SOCKET": server.socket}
        r = redis.Redis.from_url(server.url)
        swarmd_cmd = [
            [sys.executable, "-m", "swarmd", "-r", "peerjobs", "-c", "10", "-p", str(args.processes)]
        ]
        swarmd_cmd[0] += ["--redis-url", server.url]
        sidekiq_cmd = [["sidekiq", "-r", "./noop.rb", "-c", "10", "-q", "default"]] * args.processes
        for _ in range(args.runs):
            for name, cmds in (("swarmd", swarmd_cmd), ("sidekiq", sidekiq_cmd)):
                r.flushall()
                subprocess.run(["ruby", "fill.rb", str(args.jobs)], cwd=d, env=env, check=True)
                results[name].append(drain(cmds, r, args.jobs, d, env))
    print(f"{args.jobs} no-op jobs, {args.processes} process(es) x 10 threads, {args.runs} interleaved runs")
    print("  drain jobs/s from process start: median [min - max]")
    for name, values in results.items():
        print(f"  {name:8} {statistics.median(values):9.0f} [{min(values):.0f} - {max(values):.0f}]")


if __name__ == "__main__":
    main()
