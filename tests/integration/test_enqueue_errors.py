"""An enqueue that Redis cannot take raises `swarmd.RedisUnavailable`, never a raw redis-py error.

It is also a builtin `ConnectionError` (an app's existing ``except ConnectionError`` keeps working),
and its one-line message names the Redis URL with the password redacted.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import swarmd
from swarmd.client import Client
from swarmd.devredis import RedisServer
from tests.integration.conftest import free_port


@swarmd.job(name="EnqueueErrorProbe")
def probe(x: int) -> None:
    pass


def raised_by(c: Client) -> swarmd.RedisUnavailable:
    with pytest.raises(swarmd.RedisUnavailable) as info:
        probe.set(client=c).perform_async(1)
    return info.value


def test_redis_down_is_redis_unavailable_with_the_url_and_no_password() -> None:
    url = f"redis://:sekret-pw@127.0.0.1:{free_port()}/0"  # nothing listens there
    exc = raised_by(Client(url))
    message = str(exc)
    assert isinstance(exc, ConnectionError)  # the builtin
    assert message.startswith(f"cannot enqueue: Redis at redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}")
    assert "ConnectionError" in message
    assert "sekret-pw" not in message
    assert "\n" not in message


def test_existing_except_connection_error_clauses_keep_working() -> None:
    c = Client(f"redis://127.0.0.1:{free_port()}/0")
    try:
        probe.set(client=c).perform_async(1)
    except ConnectionError as exc:  # what an app wrote before swarmd had its own class
        caught: BaseException = exc
    assert isinstance(caught, swarmd.RedisUnavailable)
    assert isinstance(caught, swarmd.SwarmdError)


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_a_timeout_says_the_job_may_or_may_not_have_been_pushed(black_hole: int) -> None:
    c = Client(f"redis://:sekret-pw@127.0.0.1:{black_hole}/0")
    # The client's own socket timeout is 7 s; a real client with a short one keeps the test short.
    c._redis = redis.Redis(port=black_hole, socket_timeout=0.3, retry=Retry(NoBackoff(), 0))
    exc = raised_by(c)
    assert isinstance(exc, ConnectionError)
    assert "did not answer in time; the job may or may not have been pushed" in str(exc)
    assert "TimeoutError" in str(exc)
    assert f"redis://:***@127.0.0.1:{black_hole}/0" in str(exc)


@pytest.fixture
def locked(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_factory(
        port=free_port(),
        extra_args=(
            "--requirepass", "right-pw",
            "--user", "reader", "on", ">reader-pw", "~*", "&*", "+@all", "-lpush",
        ),
    )  # fmt: skip


@pytest.mark.parametrize("userinfo", ["", ":wrong-pw@", "reader:wrong-pw@"])
def test_a_refused_password_is_redis_unavailable(locked: RedisServer, userinfo: str) -> None:
    exc = raised_by(Client(f"redis://{userinfo}127.0.0.1:{locked.port}/0"))
    assert "AuthenticationError" in str(exc), str(exc)
    assert "wrong-pw" not in str(exc)
    assert isinstance(exc, ConnectionError)


def test_a_command_the_acl_forbids_is_redis_unavailable(locked: RedisServer) -> None:
    exc = raised_by(Client(f"redis://reader:reader-pw@127.0.0.1:{locked.port}/0"))
    assert f"Redis at redis://reader:***@127.0.0.1:{locked.port}/0 refused the push" in str(exc)
    assert "NoPermissionError" in str(exc)
    assert "reader-pw" not in str(exc)


def test_the_right_password_enqueues(locked: RedisServer) -> None:
    url = f"redis://:right-pw@127.0.0.1:{locked.port}/0"
    jid = probe.set(client=Client(url)).perform_async(1)
    r = redis.Redis.from_url(url)
    try:
        assert jid is not None and jid.encode() in r.lrange("queue:default", 0, -1)[0]
    finally:
        r.close()
