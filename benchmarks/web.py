"""What the dashboard costs on a big Redis: 100,000 dead + 100,000 retries + 50 queues.

Fills a private Redis (the data of benchmarks/admin.py, plus an hour of per-class job metrics for 20
classes), then, in this process:

- every page of `swarmd.web` through its WSGI callable (Werkzeug's test client, no HTTP server), ``--runs``
  requests each: p50 and p95 server time (wall clock, which includes waiting for Redis and, on a shared
  machine, for a core; and this process's CPU time, which does not count other processes);
- ``/metrics``: time, and Redis round trips counted on the connection (one packed send = one round
  trip) and cross-checked with ``INFO commandstats``;
- the per-job cost of the metrics aggregate (`swarmd.metrics.JobMetrics.track` around a no-op, and
  `record` alone), against a no-op job's budget at the measured throughput.

    python benchmarks/web.py [--entries 100000] [--queues 50] [--runs 50]

Throughput before/after (the flush's share) is ``benchmarks/throughput.py``, medians of 3.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from admin import fill

from swarmd import metrics
from swarmd.admin import Admin
from swarmd.devredis import RedisServer
from swarmd.keys import Keys
from swarmd.web import Dashboard


class CountingConnection(redis.UnixDomainSocketConnection):
    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def job_metrics(r: redis.Redis, classes: int) -> None:
    """An hour of per-minute metrics for ``classes`` job classes, as workers flush them."""
    now = time.time()
    for minute in range(60):
        agg = metrics.JobMetrics()
        for c in range(classes):
            for i in range(50):
                agg.record(f"App::Job{c:02d}", (i * 7 + c) % 400 + 0.5, i % 17 == 0)
        pipe = r.pipeline(transaction=True)
        metrics.write(pipe, Keys(), agg.take(), now - minute * 60)
        pipe.execute()


def per_job_costs() -> str:
    """CPU nanoseconds per call of `JobMetrics.track` around nothing and of `record` (process time,
    so that other processes on a shared machine do not count)."""
    agg = metrics.JobMetrics()

    def track() -> None:
        with agg.track("bench.noop"):
            pass

    def record() -> None:
        agg.record("bench.noop", 0.01, False)

    def nothing() -> None:
        pass

    best = {}
    for name, call in (("track", track), ("record", record), ("nothing", nothing)):
        runs = []
        for _ in range(5):
            t = time.process_time()
            for _ in range(200_000):
                call()
            runs.append((time.process_time() - t) / 200_000 * 1e9)
        best[name] = min(runs)
    track_ns, record_ns = best["track"] - best["nothing"], best["record"] - best["nothing"]
    return (
        f"track() {track_ns:.0f} ns, record() {record_ns:.0f} ns"
        " (a no-op job at 16,000 jobs/s takes 62,500 ns of which 2 % is 1,250 ns)"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000, help="in dead and in retry (default 100000)")
    ap.add_argument("--queues", type=int, default=50)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    from werkzeug.test import Client

    with RedisServer() as server:
        plain = redis.Redis.from_url(server.url)
        t0 = time.perf_counter()
        admin = Admin(plain)
        middle = fill(admin, args.entries, args.queues, 1000)
        job_metrics(plain, 20)
        print(
            f"filled in {time.perf_counter() - t0:.1f} s: {args.entries} dead, {args.entries} retries, "
            f"{args.queues} queues of 1000, 20 job classes x 60 minutes of metrics"
        )
        client_r = redis.Redis.from_url(server.url, connection_class=CountingConnection)
        app = Dashboard(Admin(client_r))
        client = Client(app)
        del middle
        key = admin.page("retry", args.entries // 2, 1).entries[0].key
        pages = [
            "/", "/?days=90", "/stats.json", "/busy", "/queues", "/queues/queue07", "/queues/queue07?page=40",
            "/retries", "/retries?page=2000", "/dead", "/dead?page=4000", "/scheduled",
            "/dead?class=MailerJob", "/dead?q=attempt%204", f"/retries/{key}",
            "/job-metrics", "/job-metrics?hours=8", "/job-metrics?hours=24", "/metrics",
        ]  # fmt: skip
        print(f"\n{'page':34} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'CPU p95':>8} {'trips':>6}")
        worst = worst_cpu = 0.0
        for path in pages:
            client.get(path)  # warm: template compiled, scripts loaded
            times, cpu, trips = [], [], []
            for _ in range(args.runs):
                before = CountingConnection.sent
                t, c = time.perf_counter(), time.process_time()
                response = client.get(path)
                times.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)
                trips.append(CountingConnection.sent - before)
                assert response.status_code == 200, (path, response.status_code)
            p95, cpu95 = percentile(times, 0.95), percentile(cpu, 0.95)
            if path != "/metrics":
                worst, worst_cpu = max(worst, p95), max(worst_cpu, cpu95)
            label = path if len(path) <= 34 else path[:31] + "..."
            p50, top = statistics.median(times), max(times)
            print(f"{label:34} {p50:7.1f} {p95:7.1f} {top:7.1f} {cpu95:8.1f} {max(trips):6d}")
        print(f"\nworst page p95: {worst:.1f} ms wall, {worst_cpu:.1f} ms CPU of this process")

        stats0 = plain.info("commandstats")
        client.get("/metrics")
        stats1 = plain.info("commandstats")
        calls = {k: int(v["calls"]) - int(stats0.get(k, {"calls": 0})["calls"]) for k, v in stats1.items()}
        commands = sum(v for k, v in calls.items() if k != "cmdstat_info")
        print(f"/metrics: {commands} Redis commands in the scrape (INFO commandstats)")

        print(f"\nper job (CPU time, best of 5 x 200,000): {per_job_costs()}")
        client_r.close()
        plain.close()


if __name__ == "__main__":
    main()
