"""Sidekiq's queue orders as a fetch of many jobs applies them (`swarmd.fetch.QueuePlan`)."""

from __future__ import annotations

from collections import Counter

from swarmd.config import QueueOrder, QueueSpec
from swarmd.fetch import QueuePlan


def test_strict_order_is_the_declared_one_and_takes_no_shares() -> None:
    plan = QueuePlan([QueueSpec("critical", 0), QueueSpec("default", 0)], QueueOrder.STRICT)
    assert plan.order() == ["critical", "default"]
    assert plan.shares(plan.order(), 10) == []


def test_weighted_shares_follow_the_weights_job_by_job() -> None:
    # Sidekiq draws a queue by weight for each fetch of one job; a fetch of 20 draws 20 times, so a
    # weight-3 queue gets about three jobs in four, not whole fetches three times in four.
    plan = QueuePlan([QueueSpec("a", 3), QueueSpec("b", 1)], QueueOrder.WEIGHTED)
    totals: Counter[str] = Counter()
    mixed = 0
    for _ in range(500):
        names = plan.order()
        shares = plan.shares(names, 20)
        assert sum(shares) == 20 and len(shares) == 2
        totals.update(dict(zip(names, shares, strict=True)))
        mixed += all(shares)
    assert 0.70 < totals["a"] / 10_000 < 0.80  # 10,000 draws: the bounds are > 10 standard deviations
    assert mixed > 400  # nearly every fetch holds jobs of both queues (P(no b in 20) = 0.75**20 = 0.3 %)


def test_random_order_shares_are_even_and_one_queue_takes_none() -> None:
    plan = QueuePlan([QueueSpec("a", 1), QueueSpec("b", 1)], QueueOrder.RANDOM)
    drawn = Counter[str]()
    for _ in range(500):
        names = plan.order()
        drawn.update(dict(zip(names, plan.shares(names, 10), strict=True)))
    assert 0.45 < drawn["a"] / 5_000 < 0.55
    single = QueuePlan([QueueSpec("only", 2)], QueueOrder.WEIGHTED)
    assert single.shares(single.order(), 5) == []
