"""Per-class job metrics written by real workers, restart reasons, recovery counts, and the swarm's own
Prometheus endpoint (``metrics_port``), served by a forked metrics process the supervisor replaces."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from swarmd import connection, metrics
from swarmd.config import load_config
from swarmd.heartbeat import Heartbeat
from swarmd.keys import Keys
from swarmd.scripts import Scripts
from tests.conftest import live_group_members, wait_until
from tests.integration.conftest import App, free_port


def hint(r: redis.Redis, key: str, field: str) -> int:
    value = r.hget(key, field)
    return int(value) if value is not None else 0


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_workers_write_per_class_metrics_in_sidekiqs_layout(app: App) -> None:
    daemon = app.start(config=app.config())
    app.wait_booted(daemon)
    for i in range(3):
        app.enqueue("Record", f"r{i}")
    for i in range(2):
        app.enqueue("Fail", f"f{i}", retry=False)
    app.enqueue("NoSuchJob", 1, retry=False)
    r = app.r
    wait_until(
        lambda: hint(r, "swarmd:metrics", "Record|p") == 3 and hint(r, "swarmd:metrics", "Fail|f") == 2,
        15,
        what="the per-class totals flushed by the heartbeat",
    )
    assert hint(r, "swarmd:metrics", "Fail|p") == 2
    assert sum(hint(r, "swarmd:metrics", f"Record|b{i}") for i in range(metrics.BUCKETS)) == 3
    wait_until(lambda: hint(r, "swarmd:metrics", f"{metrics.UNKNOWN}|f") == 1, 15, what="the unknown class")
    assert not [k for k in r.scan_iter("*NoSuchJob*")]  # a made-up name makes no key of its own
    minute = [k.decode() for k in r.scan_iter("j|*") if len(k.decode().split("|")[1]) == 6]
    assert minute and all(0 < r.ttl(k) <= 3 * 24 * 3600 for k in minute)
    assert sum(hint(r, k, "Record|p") for k in minute if len(k.rsplit(":", 1)[1]) == 2) == 3  # per minute
    v7 = [k for k in r.scan_iter("j|*") if len(k.decode().split("|")[1]) == 8]
    assert sum(hint(r, k.decode(), "Record|p") for k in v7) == 3
    grams = list(r.scan_iter("h|Record-*"))
    assert grams and all(0 < r.ttl(k) <= 8 * 3600 for k in grams)
    fields = r.execute_command(  # type: ignore[no-untyped-call]
        "BITFIELD_RO", grams[0], *[a for i in range(26) for a in ("GET", "u16", f"#{i}")]
    )
    assert sum(fields) >= 1


def test_restart_reasons_and_recovered_and_poison_jobs_are_counted(app: App) -> None:
    daemon = app.start(config=app.config(crash_limit=20))
    app.wait_booted(daemon)
    # It kills its worker (a suspect, to quarantine: recovered 1), then the quarantine worker twice (the
    # first crash counted, back to quarantine: recovered 2; the second makes it poison).
    app.enqueue("Crash", "poison")
    r = app.r
    wait_until(lambda: hint(r, "swarmd:recovery", "poison") == 1, 60, what="the poison job counted")
    assert hint(r, "swarmd:recovery", "recovered") == 2
    # Only the ordinary worker is replaced in its slot; a quarantine worker is started on demand.
    wait_until(lambda: hint(r, "swarmd:restarts", "crash") == 1, 30, what="the crash restart counted")
    assert r.zcard("dead") == 1


def metrics_child(daemon_pid: int) -> int | None:
    for pid in live_group_members(daemon_pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b" metrics [" in f.read():
                    return pid
        except OSError:
            continue
    return None


def test_the_swarm_serves_metrics_and_replaces_its_metrics_process(app: App) -> None:
    port = free_port()
    daemon = app.start("--metrics-port", str(port), "-p", "2", config=app.config())
    app.wait_booted(daemon, count=2)
    app.enqueue("Record", "x")
    samples = wait_until(
        lambda: (s := scrape(port)) and s.get(("swarmd_job_runs_total", (("class", "Record"),))) == 1 and s,
        20,
        what="a scrape with the Record run",
    )
    assert isinstance(samples, dict)
    up = [k for k in samples if k[0] == "swarmd_process_up"]
    assert len(up) == 2 and all(samples[k] == 1 for k in up)
    assert samples[("swarmd_queue_size", (("queue", "default"),))] == 0
    child = metrics_child(daemon.pid)
    assert child is not None
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: metrics_child(daemon.pid) not in (None, child), 20, what="a new metrics process")
    wait_until(lambda: scrape(port) is not None, 20, what="scrapes answered again")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    assert scrape(port) is None
    assert "metrics process" in daemon.output()


def test_a_metrics_key_of_the_wrong_type_does_not_stop_the_heartbeat(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "swarmd.yml").write_text("concurrency: 2\n")
    config = load_config(str(tmp_path / "swarmd.yml"))
    client = connection.connect(redis_url)
    keys = Keys()
    now = time.time()
    client.set(keys.metrics_minute(now), "not a hash")  # written by hand, or by something else
    client.set(keys.histogram("A", now), "x" * 10)  # BITFIELD on a string works; on a list it would not
    client.lpush(keys.histograms_ten(now), "a list")
    agg = metrics.JobMetrics()
    agg.record("A", 3.0, False)
    beat = Heartbeat(Scripts(client, keys), "host:1:abc", config, dict, lambda: False, agg)
    assert beat.beat() is None
    assert client.exists("host:1:abc") and client.sismember("processes", "host:1:abc")
    assert client.hget(keys.job_totals, "A|p") == b"1"  # the other metrics commands ran
    client.close()
