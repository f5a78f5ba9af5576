"""The only module that builds Redis clients (the Lua scripts are `swarmd.scripts`).

Clients are built with redis-py's automatic retry switched OFF. A retry layer that re-sends a
command whose reply was lost would run BLMOVE or a claim script twice and strand a job in the
private list; swarmd handles connection errors itself (back off, reconnect, then reconcile the
private list, see `fetch.Fetcher.reconcile`).

Responses are bytes (``decode_responses=False``): a job pushed by hand may not be UTF-8, and one
such job must never break a reply that carries other jobs.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.retry import Retry

from swarmd.config import redact_url
from swarmd.errors import RedisUnavailable

log = logging.getLogger("swarmd")

MIN_REDIS = (6, 2)
Redis = redis.Redis
Connection = redis.connection.AbstractConnection
ConnectionError = redis.ConnectionError
TimeoutError = redis.TimeoutError
RedisError = redis.RedisError
ResponseError = redis.ResponseError


def connect(url: str, *, blocking_timeout: float = 2.0, max_connections: int | None = None) -> redis.Redis:
    """A client for ``url``; its socket timeout outlives the longest blocking command we send."""
    options: dict[str, Any] = {}
    if not url.startswith("unix:"):
        options["socket_keepalive"] = True  # a dead peer on TCP is noticed without a command
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=blocking_timeout + 5.0,
        socket_connect_timeout=5.0,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
        # No client_name: CLIENT SETNAME on every connect would lock out least-privilege ACL users.
        **options,
    )


def check_server(client: redis.Redis, url: str) -> tuple[int, ...]:
    """Ping, check the version (>= 6.2) and warn about an evicting ``maxmemory-policy``.

    Raises `RedisUnavailable` with one clear line (the password is never shown).
    """
    where = redact_url(url)
    try:
        info: dict[str, Any] = client.info("server")
    except (AuthenticationError, AuthorizationError) as exc:
        raise RedisUnavailable(f"Redis at {where} refused our credentials: {exc}") from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise RedisUnavailable(f"Redis at {where} refused our credentials: {exc}") from None
        raise RedisUnavailable(f"Redis at {where} answered with an error: {exc}") from None
    except redis.RedisError as exc:
        raise RedisUnavailable(f"cannot reach Redis at {where}: {exc}") from None
    version = tuple(int(p) for p in str(info.get("redis_version", "0")).split(".")[:3] if p.isdigit())
    if version[:2] < MIN_REDIS:
        raise RedisUnavailable(
            f"Redis at {where} is version {info.get('redis_version')}; swarmd needs 6.2 or newer"
        )
    try:
        reply: dict[Any, Any] = client.config_get("maxmemory-policy")
    except redis.RedisError:  # CONFIG may be forbidden by ACLs: nothing to check then
        reply = {}
    # redis-py returns CONFIG GET as str even with decode_responses=False; accept bytes too.
    policy = reply.get("maxmemory-policy", reply.get(b"maxmemory-policy", "noeviction"))
    if isinstance(policy, bytes):
        policy = policy.decode(errors="replace")
    if policy != "noeviction":
        log.warning(
            "Redis maxmemory-policy is %s: Redis may evict queues, and evicted jobs are lost; "
            "set maxmemory-policy noeviction",
            policy,
        )
    return version
