"""Concurrency and rate limits (``swarmd.limiter``), with two swarms (two ``swarmd`` processes) on one
Redis: the limits hold across both, a holder SIGKILLed inside a concurrency limiter blocks the others
only until its lease ends, and a job over a limit is rescheduled, not failed.

The jobs record how many of them are inside a concurrency limiter at once in Redis (INCR on the way
in, DECR on the way out, the maximum kept by a script), and the Redis time of each window or bucket
grant in the ledger.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from typing import Any

from tests.conftest import Daemon, wait_until
from tests.integration.conftest import App
from tests.replies import members

LIMIT_JOBS = "limiter_jobs"

LIMIT_JOBS_SOURCE = textwrap.dedent(
    '''
    import os
    import time

    import redis

    import swarmd
    from swarmd_testjobs import FLAGS, note, wait_flag

    R = redis.Redis.from_url(os.environ["SWARMD_TEST_REDIS"])
    KEEP_MAX = "if tonumber(redis.call('GET', KEYS[1]) or 0) < tonumber(ARGV[1]) then " \\
        "redis.call('SET', KEYS[1], ARGV[1]) end"

    X = swarmd.limiter.concurrent("x", 3)
    K = swarmd.limiter.concurrent("k", 1, lease=3, wait_timeout=0.5)
    W = swarmd.limiter.window("w", 5, per=1)
    B = swarmd.limiter.bucket("b", 5, per=1)
    SOLO = swarmd.limiter.concurrent("solo", 1, wait_timeout=0.2)


    @swarmd.job(name="Inside")
    def inside(token):
        with X:
            R.eval(KEEP_MAX, 1, "test:max", R.incr("test:inside"))
            time.sleep(0.05)
            R.decr("test:inside")
        note("done", token, os.getpid())


    @swarmd.job(name="Hold")
    def hold(token):
        """Holds `k` until SIGKILLed, the first time it runs; passes through when it runs again."""
        with K:
            note("inside", token, os.getpid())
            held = os.path.join(FLAGS, "held-" + token)
            if not os.path.exists(held):
                open(held, "w").close()
                wait_flag("never")
        note("done", token, os.getpid())


    @swarmd.job(name="Windowed")
    def windowed(token):
        with W as lease:
            note("granted", token, repr(lease.granted_at))
        note("done", token, os.getpid())


    @swarmd.job(name="Bucketed")
    def bucketed(token):
        with B as lease:
            note("granted", token, repr(lease.granted_at))
        note("done", token, os.getpid())


    @swarmd.job(name="SoloBlock")
    def solo_block(token):
        with SOLO:
            note("inside", token, os.getpid())
            wait_flag(token)
        note("done", token, os.getpid())


    @swarmd.job(name="SoloQuick")
    def solo_quick(token):
        with SOLO:
            note("done", token, os.getpid())
    '''
)


def two_swarms(app: App, **settings: Any) -> tuple[Daemon, Daemon]:
    (app.root / f"{LIMIT_JOBS}.py").write_text(LIMIT_JOBS_SOURCE)
    env = app.env(SWARMD_TEST_REDIS=app.redis_url)
    config = {"limiter_backoff": 0.2, "limiter_backoff_max": 1, **settings}
    a = app.start("-r", LIMIT_JOBS, config=app.config("a.yml", **config), env=env)
    b = app.start("-r", LIMIT_JOBS, config=app.config("b.yml", **config), env=env)
    app.wait_booted(a)
    app.wait_booted(b, count=2 * int(settings.get("processes", 1)))
    return a, b


def grants(app: App) -> list[float]:
    return sorted(float(e[2]) for e in app.entries() if e[0] == "granted")


def test_a_concurrency_limit_holds_across_two_swarms_and_every_job_completes(app: App) -> None:
    two_swarms(app)
    tokens = [f"t{i}" for i in range(40)]
    app.client.enqueue_bulk("Inside", [(t,) for t in tokens], {})
    app.wait_tokens(tokens, timeout_s=60)
    assert int(app.r.get("test:max") or 0) <= 3
    assert int(app.r.get("test:inside") or 0) == 0
    assert app.count() == dict.fromkeys(tokens, 1)
    assert app.r.zcard("dead") == app.r.zcard("retry") == 0
    app.wait_inflight_empty()


def test_a_concurrency_limit_holds_through_a_rolling_reload_of_one_swarm(app: App) -> None:
    a, _ = two_swarms(app, processes=2)
    tokens = [f"t{i}" for i in range(60)]
    app.client.enqueue_bulk("Inside", [(t,) for t in tokens], {})
    wait_until(lambda: len(app.tokens()) >= 5, 30, what="some jobs done")
    a.signal(signal.SIGHUP)  # every worker of `a` replaced one at a time, while jobs hold the limiter
    a.wait_log("reload done", timeout_s=60)
    app.wait_tokens(tokens, timeout_s=90)
    assert int(app.r.get("test:max") or 0) <= 3
    assert set(app.count()) == set(tokens)
    assert app.r.zcard("dead") == app.r.zcard("retry") == 0
    app.wait_inflight_empty()
    wait_until(lambda: app.r.zcard("swarmd:limiter:concurrent:x") == 0, 10, what="every place given back")


def test_a_holder_sigkilled_inside_blocks_the_others_only_until_its_lease_ends(app: App) -> None:
    a, b = two_swarms(app)
    app.enqueue("Hold", "h1")
    wait_until(lambda: [e for e in app.entries() if e[0] == "inside"], 20, what="the holder inside")
    holder = int(next(e[2] for e in app.entries() if e[0] == "inside"))
    victim, survivor = (a, b) if os.getpgid(holder) == a.pid else (b, a)
    victim.kill_group()
    quick = ["h2", "h3", "h4"]
    for token in quick:  # `held-<token>` does not exist for them: each would hold for ever
        (app.flags / f"held-{token}").touch()
        app.enqueue("Hold", token)
    # The dead holder's lease ends within 3 s; meanwhile the others are rescheduled, not failed.
    app.wait_tokens([*quick, "h1"], timeout_s=60)  # h1 too: recovered from the dead swarm, run again
    assert survivor.alive()
    assert app.r.zcard("dead") == app.r.zcard("retry") == 0
    assert app.r.zcard("swarmd:limiter:concurrent:k") == 0


def test_window_and_bucket_limits_hold_over_a_run_on_two_swarms(app: App) -> None:
    two_swarms(app)
    windowed = [f"w{i}" for i in range(20)]
    app.client.enqueue_bulk("Windowed", [(t,) for t in windowed], {})
    app.wait_tokens(windowed, timeout_s=60)
    times = grants(app)
    assert len(times) == 20
    # At most 5 grants in any 1 s: the 6th grant after any grant comes a full second later (Redis ms).
    assert all(times[i + 5] - times[i] >= 0.999 for i in range(len(times) - 5)), times

    app.ledger.write_text("")
    bucketed = [f"b{i}" for i in range(20)]
    app.client.enqueue_bulk("Bucketed", [(t,) for t in bucketed], {})
    app.wait_tokens(bucketed, timeout_s=60)
    times = grants(app)
    assert len(times) == 20
    # A bucket of 5 refilled at 5 a second: any n grants span at least (n - 5) / 5 seconds.
    for i in range(len(times)):
        for j in range(i + 5, len(times)):
            assert times[j] - times[i] >= (j - i + 1 - 5) / 5 - 0.002, (i, j, times)


def test_a_job_over_its_limit_is_rescheduled_not_failed_and_counted_in_the_metrics(app: App) -> None:
    a, _ = two_swarms(app)
    app.enqueue("SoloBlock", "s1")
    wait_until(lambda: app.count("inside") == {"s1": 1}, 20, what="the holder inside")
    jid = app.enqueue("SoloQuick", "q1", retry=2)

    def rescheduled() -> dict[str, Any] | None:
        for member in members(app.r, "schedule"):
            data = json.loads(member)
            if data["jid"] == jid:
                return dict(data)
        return None

    found = wait_until(rescheduled, 20, what="the job over the limit in schedule")
    assert isinstance(found, dict)
    assert found["overrated"] >= 1
    assert "retry_count" not in found and "error_class" not in found  # not a failure
    assert app.r.zcard("retry") == app.r.zcard("dead") == 0
    assert int(app.r.get("stat:failed") or 0) == 0
    app.flag("s1")
    app.wait_tokens(["s1", "q1"], timeout_s=30)
    assert app.count() == {"s1": 1, "q1": 1}
    wait_until(lambda: int(app.r.hget("swarmd:metrics", "SoloQuick|o") or 0) >= 1, 20, what="the metric")
    assert int(app.r.hget("swarmd:metrics", "SoloQuick|f") or 0) == 0
    logs = a.output() + app.daemons[1].output()
    assert "limiter concurrent 'solo' (limit 1) still at its limit" in logs
    assert "rescheduled in" in logs
