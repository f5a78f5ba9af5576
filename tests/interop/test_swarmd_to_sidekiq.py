"""Python enqueues, Ruby runs: swarmd's client feeding the real Sidekiq 6.4.1 server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import swarmd
import swarmd.client
from tests.interop.helpers import INTEROP, NASTY, Interop

pytestmark = INTEROP

# A Ruby class name registered in Python: perform_* enqueues for the Ruby worker; the body never runs
# in these tests (no swarmd daemon serves the queue).
ruby_worker = swarmd.job(name="RubyWorker")(lambda *args, **kwargs: None)


@pytest.fixture
def default_client(interop: Interop, monkeypatch: pytest.MonkeyPatch) -> Iterator[swarmd.Client]:
    """``swarmd.configure`` for this test's Redis; the previous default client comes back after it."""
    monkeypatch.setattr(swarmd.client, "_default", None)
    client = swarmd.configure(redis_url=interop.url)
    yield client
    if client._redis is not None:
        client._redis.close()


def test_push_and_perform_run_in_sidekiq(interop: Interop, default_client: swarmd.Client) -> None:
    interop.start_sidekiq()
    # swarmd's client refuses integers beyond 2**53; everything else in NASTY goes.
    args = ["push", *(v for v in NASTY if not (type(v) is int and abs(v) > 2**53))]
    jids = {swarmd.push({"class": "RubyWorker", "queue": "default", "args": args}): args}
    jids[ruby_worker.perform_async("async", {"nested": [None, 1.5, "é"]})] = [
        "async",
        {"nested": [None, 1.5, "é"]},
    ]
    # kwargs travel in swarmd's own `kwargs` field, which Sidekiq ignores: Ruby gets the args.
    jids[ruby_worker.perform_async("with kwargs", width=3)] = ["with kwargs"]
    # Sidekiq's poller moves it from `schedule` when due.
    jids[ruby_worker.perform_in(0.5, "perform_in", 2.5)] = ["perform_in", 2.5]
    bulk = ruby_worker.perform_bulk([("bulk", i) for i in range(3)])
    jids.update({jid: ["bulk", i] for i, jid in enumerate(bulk)})

    ran = interop.wait_records("RubyWorker", len(jids))
    assert {rec["jid"]: rec["args"] for rec in ran} == jids


def test_python_writes_what_ruby_wrote(interop: Interop, default_client: swarmd.Client) -> None:
    """The same push from both clients leaves the same job shape in the queue (values aside)."""
    ruby_jid = interop.ruby("push", {"class": "RubyWorker", "queue": "parked", "args": [1, "a"]})
    py_jid = swarmd.push({"class": "RubyWorker", "queue": "parked", "args": [1, "a"]})
    queue = {j["jid"]: j["item"] for j in interop.state()["queues"][0]["jobs"]}
    ruby_job, py_job = queue[ruby_jid], queue[py_jid]
    assert sorted(py_job) == sorted(ruby_job)
    for field, value in ruby_job.items():
        assert type(py_job[field]) is type(value), field
    for field in ("class", "args", "queue", "retry"):
        assert py_job[field] == ruby_job[field]
    assert interop.r.smembers("queues") == {"parked"}


def test_push_keeps_a_given_created_at_like_sidekiq(interop: Interop, default_client: swarmd.Client) -> None:
    item = {"class": "RubyWorker", "queue": "parked", "args": [], "created_at": 1700000000.25}
    ruby_jid = interop.ruby("push", item)
    py_jid = swarmd.push(item)
    queue = {j["jid"]: j["item"] for j in interop.state()["queues"][0]["jobs"]}
    assert queue[ruby_jid]["created_at"] == 1700000000.25
    assert queue[py_jid]["created_at"] == 1700000000.25
