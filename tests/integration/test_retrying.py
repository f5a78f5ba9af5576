"""Retrying until Redis answers, against a real redis-server that goes away and comes back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from swarmd import connection
from swarmd.devredis import RedisServer
from swarmd.retrying import until_redis_answers
from tests.conftest import wait_until


def test_a_retry_loop_carries_on_when_redis_comes_back_and_says_so_twice(
    redis_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="swarmd")
    server = redis_factory()
    client = connection.connect(server.url)
    client.set("key", "value")  # nothing persisted: it will be gone after the restart
    server.kill()
    results: list[object] = []
    thread = threading.Thread(
        target=lambda: results.append(until_redis_answers(lambda: client.set("key", "again"), "set key"))
    )
    thread.start()
    wait_until(lambda: any(r.levelno == logging.WARNING for r in caplog.records), 10, "the first failure")
    server.start()
    thread.join(30)
    assert not thread.is_alive()
    assert results == [True]
    assert client.get("key") == b"again"
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.getMessage().startswith("set key")]
    assert len(lines) == 2, lines  # one when it started failing, one when Redis was back
    assert lines[0][0] == "WARNING" and "failed, retrying with backoff" in lines[0][1]
    assert lines[1][0] == "INFO" and "works again after" in lines[1][1]
    client.close()
