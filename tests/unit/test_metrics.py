"""`swarmd.metrics`: the per-class aggregate the processors feed (no Redis here)."""

from __future__ import annotations

import threading

from swarmd import metrics
from swarmd.errors import UnknownJob
from swarmd.keys import Keys


def test_buckets_follow_sidekiqs_bounds() -> None:
    agg = metrics.JobMetrics()
    for ms in (0.5, 19.9, 20.0, 334_999.0, 335_000.0, 10_000_000.0):
        agg.record("A", ms, False)
    agg.record("A", 5.0, True)  # a failure: counted, not timed (Sidekiq's rule)
    stats, _ = agg.take()
    runs, failures, us, *buckets, over_limit = stats["A"]
    assert (runs, failures) == (7, 1)
    assert buckets[0] == 2 and buckets[1] == 1 and buckets[24] == 1 and buckets[25] == 2
    assert abs(us - (0.5 + 19.9 + 20.0 + 334_999.0 + 335_000.0 + 10_000_000.0) * 1000) < 10
    assert len(buckets) == metrics.BUCKETS == 26 and over_limit == 0
    assert agg.take() == ({}, {})  # take forgets


def test_track_times_the_block_and_tells_failures_and_unknown_classes_apart() -> None:
    agg = metrics.JobMetrics()
    with agg.track("Good"):
        pass
    try:
        with agg.track("Bad"):
            raise ValueError("boom")
    except ValueError:
        pass
    try:
        with agg.track("MadeUp"):
            raise UnknownJob("no job function is registered as 'MadeUp'")
    except UnknownJob:
        pass
    stats, _ = agg.take()
    assert stats["Good"][:2] == [1, 0] and stats["Bad"][:2] == [1, 1]
    assert "MadeUp" not in stats and stats[metrics.UNKNOWN][:2] == [1, 1]


def test_class_names_are_bounded() -> None:
    agg = metrics.JobMetrics()
    for i in range(metrics.MAX_CLASSES + 50):
        agg.record(f"C{i}", 1.0, False)
    stats, _ = agg.take()
    assert len(stats) == metrics.MAX_CLASSES + 1 and stats[metrics.OTHER][0] == 50


def test_restore_merges_what_a_failed_flush_took() -> None:
    agg = metrics.JobMetrics()
    agg.record("A", 1.0, False)
    agg.note_restart("crash")
    taken = agg.take()
    agg.record("A", 1.0, True)
    agg.restore(taken)
    stats, restarts = agg.take()
    assert stats["A"][:2] == [2, 1] and restarts == {"crash": 1}


def test_concurrent_records_are_all_counted() -> None:
    agg = metrics.JobMetrics()

    def work() -> None:
        for _ in range(5000):
            agg.record("A", 1.0, False)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert agg.take()[0]["A"][0] == 20_000


def test_percentile_is_the_upper_bound_of_its_bucket() -> None:
    buckets = [0] * metrics.BUCKETS
    buckets[0], buckets[7] = 90, 10
    assert metrics.percentile_ms(buckets, 0.5) == 20.0
    assert metrics.percentile_ms(buckets, 0.95) == 335.0
    buckets[25] = 1000
    assert metrics.percentile_ms(buckets, 0.95) == float("inf")
    assert metrics.percentile_ms([0] * metrics.BUCKETS, 0.5) is None


def test_key_names_follow_sidekiq() -> None:
    k = Keys()
    t = 1795940240.0  # 2026-11-29 08:17:20 UTC
    assert k.metrics_minute(t) == "j|261129|8:17"
    assert k.metrics_ten(t) == "j|261129|8:1"
    assert k.metrics_minute_v7(t) == "j|20261129|8:17"
    assert k.histogram("Mailer", t) == "h|Mailer-29-8:17"
    assert Keys("ns").histograms_ten(t) == "ns:swarmd:h|261129|8:1"
