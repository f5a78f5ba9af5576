"""The Prometheus exposition of a swarm: a `prometheus_client` collector over `Admin.metrics_snapshot`.

Served by the dashboard's ``/metrics`` and, with ``metrics_port``, by the swarm itself (`serve`, run in
a small process the supervisor forks: see `swarmd.swarm`). A scrape reads Redis in 2 pipelined round
trips whatever the number of queues, processes, classes or jobs. Every name starts with ``swarmd_``;
README "Metrics" lists them.

Counters come from totals that only grow in Redis (``stat:processed``, ``swarmd:metrics``,
``swarmd:restarts``, ``swarmd:recovery``), so ``rate()`` and ``histogram_quantile()`` work across
scrapes, restarts of workers and of the scraping process. When Redis cannot be read, the scrape says so
with ``swarmd_redis_up 0`` (and nothing else) instead of failing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from swarmd import connection
from swarmd.admin import Admin
from swarmd.metrics import BOUNDS_MS, RESTART_REASONS

__all__ = ["SwarmdCollector", "registry_for", "serve"]

log = logging.getLogger("swarmd")

PROCESS_STALE_S = 60.0
"""A process whose last beat is older than this is reported as down (Sidekiq's heartbeat TTL)."""


class SwarmdCollector(Collector):
    """Reads Redis at every scrape (no cache: what a scrape shows is what Redis holds)."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def describe(self) -> list[Metric]:
        return []  # collected live: the registry must not call `collect` when it is registered

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("swarmd_redis_up", "1 if this scrape could read Redis, else 0")
        try:
            snap = self.admin.metrics_snapshot()
        except connection.RedisError as exc:
            log.warning("metrics scrape: Redis error: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        status, totals = snap.status, snap.status.totals

        size = GaugeMetricFamily("swarmd_queue_size", "Jobs waiting in the queue", labels=["queue"])
        latency = GaugeMetricFamily(
            "swarmd_queue_latency_seconds", "Age of the oldest job in the queue", labels=["queue"]
        )
        for q in status.queues:
            size.add_metric([q.name], q.size)
            if q.latency_s is not None:
                latency.add_metric([q.name], q.latency_s)
        yield size
        yield latency
        yield _counter("swarmd_jobs_processed", "Jobs processed (Sidekiq's stat:processed)", totals.processed)
        yield _counter("swarmd_jobs_failed", "Jobs that failed (Sidekiq's stat:failed)", totals.failed)
        yield _gauge("swarmd_retry_size", "Jobs in the retry set", totals.retries)
        yield _gauge("swarmd_scheduled_size", "Jobs in the schedule set", totals.scheduled)
        yield _gauge("swarmd_dead_size", "Jobs in the dead set", totals.dead)
        yield _gauge("swarmd_enqueued", "Jobs waiting in all queues", totals.enqueued)

        labels = ["identity", "hostname", "tag"]
        busy = GaugeMetricFamily("swarmd_process_busy", "Jobs the process is running", labels=labels)
        threads = GaugeMetricFamily("swarmd_process_concurrency", "The process's job threads", labels=labels)
        alive = GaugeMetricFamily(
            "swarmd_process_up", "1 if the process beat within the last minute", labels=labels
        )
        quiet = GaugeMetricFamily("swarmd_process_quiet", "1 if the process is quiet", labels=labels)
        rss = GaugeMetricFamily("swarmd_process_rss_bytes", "Resident memory of the process", labels=labels)
        for p in status.processes:
            values = [p.identity, p.hostname, p.tag]
            busy.add_metric(values, p.busy)
            threads.add_metric(values, p.concurrency or 0)
            fresh = p.beat_age_s is not None and p.beat_age_s < PROCESS_STALE_S
            alive.add_metric(values, 1 if fresh else 0)
            quiet.add_metric(values, 1 if p.quiet else 0)
            if p.rss_kb is not None:
                rss.add_metric(values, p.rss_kb * 1024)
        yield from (busy, threads, alive, quiet, rss)
        yield _gauge("swarmd_processes", "Live processes (swarmd and Sidekiq)", len(status.processes))

        duration = HistogramMetricFamily(
            "swarmd_job_duration_seconds", "Run time of successful jobs, by class", labels=["class"]
        )
        runs = CounterMetricFamily("swarmd_job_runs", "Jobs run, by class", labels=["class"])
        failures = CounterMetricFamily("swarmd_job_failures", "Jobs that failed, by class", labels=["class"])
        over_limit = CounterMetricFamily(
            "swarmd_job_over_limit",
            "Jobs rescheduled by a limiter (swarmd.OverLimit), by class",
            labels=["class"],
        )
        for c in snap.classes:
            cumulative, buckets = 0, []
            for bound_ms, count in zip(BOUNDS_MS, c.buckets, strict=False):
                cumulative += count
                buckets.append((_le(bound_ms / 1000), float(cumulative)))
            buckets.append(("+Inf", float(sum(c.buckets))))
            duration.add_metric([c.name], buckets, c.seconds)
            runs.add_metric([c.name], c.runs)
            failures.add_metric([c.name], c.failures)
            over_limit.add_metric([c.name], c.over_limit)
        yield from (duration, runs, failures, over_limit)

        restarts = CounterMetricFamily(
            "swarmd_worker_restarts", "Workers started to replace another, by reason", labels=["reason"]
        )
        for reason in sorted(set(RESTART_REASONS) | set(snap.restarts)):
            restarts.add_metric([reason], snap.restarts.get(reason, 0))
        yield restarts
        yield _counter(
            "swarmd_jobs_recovered",
            "In-flight jobs of dead workers pushed back to their queues",
            snap.recovered,
        )
        yield _counter(
            "swarmd_jobs_poisoned", "Jobs sent to dead as swarmd.PoisonJob (in 3 crashes)", snap.poisoned
        )


def _le(seconds: float) -> str:
    return f"{seconds:g}"


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)


def registry_for(admin: Admin) -> CollectorRegistry:
    """A registry holding only swarmd's collector (no process or platform metrics of the scraper)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwarmdCollector(admin))
    return registry


def serve(admin: Admin, host: str, port: int, parent_fd: int | None = None) -> int:
    """Serve ``/metrics`` on ``host:port`` until TERM/INT or EOF on ``parent_fd`` (the supervisor's
    alive pipe); returns an exit code. Runs in the metrics process the supervisor forks."""
    registry = registry_for(admin)
    try:
        server, thread = exposition.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%d: %s", host, port, exc)
        return 69
    log.info("metrics: serving Prometheus /metrics on http://%s:%d/metrics", host, server.server_port)
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: None)
    sel = selectors.DefaultSelector()
    sel.register(rfd, selectors.EVENT_READ)
    if parent_fd is not None:
        sel.register(parent_fd, selectors.EVENT_READ)
    try:
        while thread.is_alive():
            if sel.select(1.0):  # a signal, or EOF on the alive pipe: the supervisor is gone
                break
    finally:
        signal.set_wakeup_fd(-1)
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        stopper.join(2.0)
        with contextlib.suppress(Exception):
            server.server_close()
        sel.close()
        os.close(rfd)
        os.close(wfd)
    return 0


def wsgi_app(admin: Admin) -> Any:
    """A WSGI app serving the exposition (content negotiation and gzip as ``prometheus_client`` does)."""
    return exposition.make_wsgi_app(registry_for(admin))
