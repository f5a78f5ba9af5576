"""Fake mode records the same job that production pushes to Redis (only jid and times differ)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import swarmd
import swarmd.testing
from swarmd import hooks
from swarmd.client import Client
from tests.replies import items, members

VOLATILE = {"jid", "created_at", "enqueued_at", "at"}


@swarmd.job(name="ParityProbe", queue="reports", retry=3, backtrace=True)
def report(name: str, rows: list[Any], *, fmt: str = "csv") -> None:
    pass


def stamp(job: dict[str, Any]) -> dict[str, Any]:
    job["trace_id"] = "abc123"
    return job


@pytest.fixture
def c(redis_url: str) -> Iterator[Client]:
    hooks.client_middleware(stamp)
    yield Client(redis_url)
    hooks.remove_client_middleware(stamp)
    swarmd.testing.mode("off")
    swarmd.testing.clear()


def stable(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k not in VOLATILE}


def test_fake_mode_records_what_production_pushes(c: Client, r: redis.Redis) -> None:
    def enqueue() -> None:
        p = report.set(client=c)
        p.perform_async("q3", [(1, "a"), {"total": 2.5}], fmt="xlsx")
        p.perform_in(600, "q4", [])

    enqueue()
    pushed = [json.loads(raw) for raw in items(r, "queue:reports")]
    pushed += [json.loads(raw) for raw in members(r, "schedule")]
    with swarmd.testing.fake():
        enqueue()
    recorded = swarmd.testing.jobs(report)
    assert [stable(j) for j in recorded] == [stable(j) for j in pushed]
    assert set(recorded[0]) == set(pushed[0])  # same fields, trace_id included
    assert set(recorded[1]) == set(pushed[1]) | {"at"}  # the time Redis keeps as the score
