"""Contract tests of the limiter scripts (``lua/limit_*.lua``) and the over-limit reschedule
(``lua/overlimit.lua``), each called through `Scripts` against a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from swarmd import connection, limiter
from swarmd.errors import OverLimit
from swarmd.keys import Keys
from swarmd.scripts import Scripts
from tests.conftest import wait_until
from tests.integration.test_scripts import job
from tests.replies import items, scored

ME = "host:1:abc"


@pytest.fixture(params=[None, "ns"], ids=["plain", "namespaced"])
def scripts(request: pytest.FixtureRequest, redis_url: str, r: redis.Redis) -> Iterator[Scripts]:
    r.flushall()
    client = connection.connect(redis_url)
    yield Scripts(client, Keys(request.param))
    client.close()


def redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


# -- concurrent ----------------------------------------------------------------------------------------


def test_concurrent_grants_up_to_the_limit_and_a_release_frees_a_place(
    scripts: Scripts, r: redis.Redis
) -> None:
    key = scripts.keys.limiter("concurrent", "api")
    before = redis_ms(r)
    grants = [scripts.limit_concurrent("api", f"t{i}", 3, 60_000) for i in range(3)]
    assert all(g.granted for g in grants)
    assert all(before <= g.now_ms <= redis_ms(r) for g in grants)  # Redis's clock, in ms
    refused = scripts.limit_concurrent("api", "t3", 3, 60_000)
    assert not refused.granted
    assert 0 < refused.wait_ms <= 60_000  # until the first lease ends
    assert r.zcard(key) == 3
    assert 0 < r.pttl(key) <= 60_000
    scripts.limit_release("api", "t1")
    assert scripts.limit_concurrent("api", "t3", 3, 60_000).granted
    assert {m.decode() for m, _ in scored(r, key)} == {"t0", "t2", "t3"}


def test_concurrent_acquire_sent_again_takes_one_place_not_two(scripts: Scripts, r: redis.Redis) -> None:
    assert scripts.limit_concurrent("api", "same", 2, 60_000).granted
    assert scripts.limit_concurrent("api", "same", 2, 60_000).granted  # a lost reply, sent again
    assert r.zcard(scripts.keys.limiter("concurrent", "api")) == 1
    assert scripts.limit_concurrent("api", "other", 2, 60_000).granted


def test_a_holder_that_never_releases_loses_its_place_when_its_lease_ends(
    scripts: Scripts, r: redis.Redis
) -> None:
    assert scripts.limit_concurrent("api", "dead-holder", 1, 200).granted
    assert not scripts.limit_concurrent("api", "waiting", 1, 60_000).granted
    wait_until(lambda: scripts.limit_concurrent("api", "waiting", 1, 60_000).granted, 5, what="the lease end")
    assert [m.decode() for m, _ in scored(r, scripts.keys.limiter("concurrent", "api"))] == ["waiting"]


def test_renew_extends_a_held_lease_and_reports_a_lost_one(scripts: Scripts, r: redis.Redis) -> None:
    key = scripts.keys.limiter("concurrent", "api")
    assert scripts.limit_concurrent("api", "holder", 1, 1_000).granted
    first = r.zscore(key, "holder")
    assert first is not None
    renewed = scripts.limit_concurrent("api", "holder", 1, 60_000, renew=True)
    assert renewed.granted
    later = r.zscore(key, "holder")
    assert later is not None and later > first + 50_000
    scripts.limit_release("api", "holder")
    assert not scripts.limit_concurrent("api", "holder", 1, 60_000, renew=True).granted
    assert r.zcard(key) == 0  # a renew never takes a place


# -- window ----------------------------------------------------------------------------------------------


def test_window_grants_limit_per_window_then_says_how_long_to_wait(scripts: Scripts, r: redis.Redis) -> None:
    key = scripts.keys.limiter("window", "mail")
    grants = [scripts.limit_window("mail", f"g{i}", 2, 500) for i in range(2)]
    assert all(g.granted for g in grants)
    refused = scripts.limit_window("mail", "g2", 2, 500)
    assert not refused.granted and 0 < refused.wait_ms <= 500
    assert r.zcard(key) == 2 and 0 < r.pttl(key) <= 500
    wait_until(lambda: scripts.limit_window("mail", "g2", 2, 500).granted, 5, what="the window to slide")
    times = sorted(int(score) for _, score in scored(r, key))
    oldest = min(g.now_ms for g in grants)
    assert times[-1] - oldest >= 500  # the third grant came one full window after the first
    assert scripts.limit_window("mail", "g2", 2, 500).granted  # sent again: the same grant, no new entry
    assert r.zcard(key) <= 2


# -- bucket ----------------------------------------------------------------------------------------------


def test_bucket_allows_a_burst_of_its_size_then_refills_over_time(scripts: Scripts, r: redis.Redis) -> None:
    key = scripts.keys.limiter("bucket", "sms")
    burst = [scripts.limit_bucket("sms", 3, 600) for _ in range(3)]
    assert all(g.granted for g in burst)
    refused = scripts.limit_bucket("sms", 3, 600)
    assert not refused.granted and 0 < refused.wait_ms <= 200  # one token per 200 ms
    assert float(r.hget(key, "tokens") or -1) < 1
    assert 0 < r.pttl(key) <= 600 + 1000
    wait_until(lambda: scripts.limit_bucket("sms", 3, 600).granted, 5, what="a token")


# -- over-limit reschedule -----------------------------------------------------------------------------------


def test_over_limit_moves_the_job_to_schedule_only_if_it_removed_it(scripts: Scripts, r: redis.Redis) -> None:
    k = scripts.keys
    raw = job("t1")
    r.lpush(k.inflight(ME), raw)
    stored = json.dumps({**json.loads(raw), "overrated": 1}).encode()
    assert scripts.over_limit(ME, raw, stored, 1_900_000_000.5)
    assert items(r, k.inflight(ME)) == []
    assert scored(r, k.schedule) == [(stored, 1_900_000_000.5)]
    assert not scripts.over_limit(ME, raw, stored + b" ", 1_900_000_001.0)  # no longer in the list
    assert scored(r, k.schedule) == [(stored, 1_900_000_000.5)]
    assert not r.exists("stat:failed", "stat:processed", k.retry)  # not a failure, not processed


# -- the Python side, on the same scripts ----------------------------------------------------------


def test_with_a_concurrency_limiter_at_its_limit_raises_over_limit_after_wait_timeout(
    scripts: Scripts, r: redis.Redis
) -> None:
    limiter.bind(scripts)
    try:
        lim = limiter.concurrent("solo", 1, lease=30, wait_timeout=0.2)
        with lim as lease:
            assert lease.name == "solo" and lease.granted_at > 0
            with pytest.raises(OverLimit) as info, lim:
                pass
            assert info.value.limiter == "solo"
        with lim:  # released on the way out: free again
            pass
        assert r.zcard(scripts.keys.limiter("concurrent", "solo")) == 0
        assert limiter.next_renewal() is None  # nothing held, nothing to renew
    finally:
        limiter.bind(None)


def test_limiters_refuse_bad_arguments_with_one_line() -> None:
    with pytest.raises(ValueError, match="limit: expected an integer >= 1, got 0"):
        limiter.concurrent("x", 0)
    with pytest.raises(ValueError, match="lease: expected a number of seconds > 0"):
        limiter.concurrent("x", 1, lease=0)
    with pytest.raises(ValueError, match="per: expected a number of seconds > 0"):
        limiter.window("x", 1, per=float("nan"))
    with pytest.raises(ValueError, match="limiter name"):
        limiter.bucket("", 1)
