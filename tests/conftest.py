"""Shared fixtures: a real redis-server per xdist worker (never a mock), a clean db per test."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

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


# The Rails deploy guide's sidekiq.yml, byte for byte (note the 3-space indent under staging).
SIDEKIQ_YML = """\
---
verbose: false
concurrency: 10
pidfile: ./tmp/pids/sidekiq.pid
logfile: ./log/sidekiq.log
queues:
  - default
  - low
production:
  concurrency: 25
staging:
   concurrency: 15
"""


class Ledger:
    """What test jobs did: one ``<phase> <token> ...`` line per event in ``ledger`` (written with one
    O_APPEND write each, so it survives a SIGKILL), and flag files in ``flags`` that jobs wait for."""

    ledger: Path
    flags: Path

    def flag(self, token: str) -> None:
        (self.flags / token).touch()

    def entries(self) -> list[list[str]]:
        if not self.ledger.exists():
            return []
        return [line.split() for line in self.ledger.read_text().splitlines() if line.strip()]

    def tokens(self, phase: str = "done") -> list[str]:
        return [e[1] for e in self.entries() if e[0] == phase]

    def count(self, phase: str = "done") -> Counter[str]:
        return Counter(self.tokens(phase))

    def wait_tokens(self, tokens: Sequence[str], phase: str = "done", timeout_s: float = 30.0) -> None:
        want = set(tokens)
        wait_until(
            lambda: want <= set(self.tokens(phase)),
            timeout_s,
            what=f"{len(want)} job(s) to reach {phase!r} (have {len(want & set(self.tokens(phase)))})",
        )


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
