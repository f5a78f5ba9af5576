"""Client middleware: ``mw(payload) -> payload | None`` sees every job about to be pushed.

It may amend the job (what lands in Redis carries the change), drop it (None: nothing is pushed), or
raise (the caller gets the exception and nothing of that call is pushed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import swarmd
from swarmd import hooks
from swarmd.client import Client
from tests.replies import items, members, scored

Payload = dict[str, Any]
Middleware = Callable[[Payload], Payload | None]


@swarmd.job(name="MiddlewareProbe")
def probe(x: int) -> None:
    pass


@pytest.fixture
def c(redis_url: str) -> Client:
    return Client(redis_url)


@pytest.fixture
def use() -> Iterator[Callable[[Middleware], Middleware]]:
    """Register middleware for one test; unregistered afterwards."""
    added: list[Middleware] = []

    def register(mw: Middleware) -> Middleware:
        added.append(swarmd.client_middleware(mw))
        return mw

    yield register
    for mw in added:
        hooks.remove_client_middleware(mw)


def everything(r: redis.Redis) -> list[Payload]:
    jobs = [json.loads(raw) for key in r.scan_iter("queue:*") for raw in items(r, key)]
    return jobs + [json.loads(raw) for raw in members(r, "schedule")]


def test_a_middleware_amends_every_kind_of_push(
    c: Client, r: redis.Redis, use: Callable[[Middleware], Middleware]
) -> None:
    seen: list[Payload] = []

    @use
    def tenant(job: Payload) -> Payload:
        seen.append(dict(job))
        job["tenant"] = "acme"
        return job

    p = probe.set(client=c)
    jid = p.perform_async(1)
    p.perform_in(600, 2)
    p.perform_bulk([(3,), (4,)])
    c.push({"class": "RubyWorker", "queue": "ruby", "args": [5]})
    jobs = everything(r)
    assert len(jobs) == 5
    assert all(job["tenant"] == "acme" for job in jobs)
    assert sorted(job["args"][0] for job in jobs) == [1, 2, 3, 4, 5]
    # It sees the job as it will be pushed: jid, class, args, queue; `at` on a scheduled one.
    assert seen[0]["jid"] == jid and seen[0]["class"] == "MiddlewareProbe" and seen[0]["args"] == [1]
    assert "at" in seen[1] and "at" not in seen[0]
    assert r.zcard("schedule") == 1


def test_middleware_runs_in_registration_order(
    c: Client, r: redis.Redis, use: Callable[[Middleware], Middleware]
) -> None:
    def first(job: Payload) -> Payload:
        job["trail"] = [*job.get("trail", []), "first"]
        return job

    def second(job: Payload) -> Payload:
        job["trail"] = [*job.get("trail", []), "second"]
        return {**job, "copied": True}  # a new dict is fine too

    use(first)
    use(second)
    use(first)  # registering the same middleware again changes nothing
    probe.set(client=c).perform_async(1)
    [job] = everything(r)
    assert job["trail"] == ["first", "second"]
    assert job["copied"] is True


def test_none_drops_that_push(c: Client, r: redis.Redis, use: Callable[[Middleware], Middleware]) -> None:
    use(lambda job: None if job["args"][0] % 2 else job)
    p = probe.set(client=c)
    assert p.perform_async(1) is None
    assert p.perform_in(60, 3) is None
    assert everything(r) == []
    assert r.smembers("queues") == set()
    jids = p.perform_bulk([(2,), (3,), (4,)])
    assert jids[1] is None and jids[0] and jids[2]
    assert sorted(job["jid"] for job in everything(r)) == sorted([jids[0], jids[2]])
    assert c.push({"class": "X", "args": [5]}) is None


def test_a_middleware_that_raises_reaches_the_caller_and_nothing_is_pushed(
    c: Client, r: redis.Redis, use: Callable[[Middleware], Middleware]
) -> None:
    class TenantMissing(Exception):
        pass

    @use
    def strict(job: Payload) -> Payload:
        if job["args"][0] == 3:
            raise TenantMissing("no tenant for job 3")
        return job

    with pytest.raises(TenantMissing, match="no tenant"):
        probe.set(client=c).perform_async(3)
    with pytest.raises(TenantMissing):  # the third item fails: the first two are not pushed either
        probe.set(client=c).perform_bulk([(1,), (2,), (3,), (4,)])
    assert everything(r) == []


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (lambda job: {**job, "span": object()}, r"client middleware .*: job\['span'\]: object"),
        (lambda job: {**job, "args": (1,)}, r"job\['args'\] must be a list"),
        (lambda job: {k: v for k, v in job.items() if k != "class"}, r"job\['class'\] must be a non-empty"),
        (lambda job: {**job, "queue": ""}, r"job\['queue'\] must be a non-empty"),
        (lambda job: {**job, "at": "tomorrow"}, r"job\['at'\] must be epoch seconds"),
        (lambda job: {**job, "kwargs": [1]}, r"job\['kwargs'\] must be a dict"),
        (lambda job: [job], r"returned list, expected the job dict or None"),
    ],
)
def test_a_middleware_result_is_checked_again(
    c: Client,
    r: redis.Redis,
    use: Callable[[Middleware], Middleware],
    result: Middleware,
    message: str,
) -> None:
    use(result)
    with pytest.raises(swarmd.PayloadError, match=message):
        probe.set(client=c).perform_async(1)
    assert everything(r) == []


def test_middleware_runs_after_the_clients_own_checks(
    c: Client, use: Callable[[Middleware], Middleware]
) -> None:
    calls: list[Payload] = []

    def spy(job: Payload) -> Payload:
        calls.append(job)
        return job

    use(spy)
    with pytest.raises(TypeError, match=r"args\[0\]"):
        probe.set(client=c).perform_async({1, 2})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes 1 positional argument"):
        probe.set(client=c).perform_async(1, 2)  # type: ignore[call-arg]
    assert calls == []


def test_a_middleware_may_reroute_or_schedule(
    c: Client, r: redis.Redis, use: Callable[[Middleware], Middleware]
) -> None:
    @use
    def reroute(job: Payload) -> Payload:
        job["queue"] = "tenant-acme"
        if job["args"][0] == 2:
            job["at"] = 4_000_000_000.0  # off-peak
        return job

    probe.set(client=c).perform_async(1)
    probe.set(client=c).perform_async(2)
    assert r.llen("queue:tenant-acme") == 1
    assert r.smembers("queues") == {b"tenant-acme"}
    [(raw, score)] = scored(r, "schedule")
    assert score == 4_000_000_000.0
    assert json.loads(raw)["args"] == [2] and "enqueued_at" not in json.loads(raw)


def test_client_middleware_is_a_decorator_and_refuses_non_callables() -> None:
    def mw(job: Payload) -> Payload:
        return job

    try:
        assert swarmd.client_middleware(mw) is mw
        assert mw in hooks.client_middlewares()
    finally:
        hooks.remove_client_middleware(mw)
    assert mw not in hooks.client_middlewares()
    with pytest.raises(TypeError, match="expected a callable"):
        swarmd.client_middleware("not callable")  # type: ignore[arg-type]
