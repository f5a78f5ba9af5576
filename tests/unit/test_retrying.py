"""The one backoff for Redis retries: its schedule, its two log lines, and the retry loop's limits."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from swarmd import connection
from swarmd.retrying import BASE_S, CAP_S, Backoff, until_redis_answers


def unreachable_url() -> str:
    """A Redis URL nothing listens on: every command fails with a real connection error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_schedule_doubles_from_a_tenth_of_a_second_up_to_the_cap() -> None:
    slowest = Backoff("x", rand=lambda: 1.0)  # jitter factor 1.0: the schedule itself
    assert [round(slowest.failed("e"), 3) for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    fastest = Backoff("x", rand=lambda: 0.0)  # jitter never takes more than half away
    assert [round(fastest.failed("e"), 3) for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert (BASE_S, CAP_S) == (0.1, 2.0)


def test_a_success_starts_the_schedule_over() -> None:
    backoff = Backoff("x", rand=lambda: 1.0)
    for _ in range(5):
        backoff.failed("e")
    backoff.ok()
    assert backoff.failed("e") == pytest.approx(0.1)


def test_one_warning_when_failures_start_one_line_when_it_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="swarmd")
    now = [100.0]
    backoff = Backoff("flush acks", clock=lambda: now[0])
    backoff.ok()  # nothing failed: nothing to say
    for i in range(20):
        backoff.failed(f"connection refused #{i}")
        now[0] += 1.0
    backoff.ok()
    backoff.ok()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "flush acks failed, retrying with backoff: connection refused #0"),
        ("INFO", "flush acks works again after 20.0 s (20 failed tries)"),
    ]


def test_retry_loop_gives_up_after_its_tries_with_the_last_error(caplog: pytest.LogCaptureFixture) -> None:
    client = connection.connect(unreachable_url())
    calls = []

    def ping() -> object:
        calls.append(1)
        return client.ping()

    with pytest.raises(connection.ConnectionError):
        until_redis_answers(ping, "ping", tries=3)
    assert len(calls) == 3
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    client.close()


def test_retry_loop_returns_the_result_once_it_works(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swarmd")
    failures = [connection.ConnectionError("refused"), connection.TimeoutError("timed out")]

    def action() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert until_redis_answers(action, "push back", tries=5) == "done"
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


def test_retry_loop_raises_other_errors_at_once() -> None:
    calls = []

    def action() -> None:
        calls.append(1)
        raise KeyError("a bug, not Redis")

    with pytest.raises(KeyError):
        until_redis_answers(action, "x", tries=5)
    assert calls == [1]


def test_retry_loop_without_a_limit_ends_when_stopped() -> None:
    client = connection.connect(unreachable_url())
    stop = threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            until_redis_answers(client.ping, "ping", stop=stop)
        except connection.RedisError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], connection.ConnectionError)
    client.close()
