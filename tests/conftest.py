"""Shared fixtures: a real redis-server per xdist worker (never a mock), a clean db per test."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from swarmd.devredis import RedisServer

TIMEOUT_SCALE = float(os.environ.get("SWARMD_TEST_TIMEOUT_SCALE", "1"))


def wait_until(predicate: Callable[[], object], timeout_s: float = 10.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it is truthy; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s * TIMEOUT_SCALE
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Private servers for tests that kill or restart Redis."""
    servers: list[RedisServer] = []

    def make(**kwargs: object) -> RedisServer:
        server = RedisServer(**kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
