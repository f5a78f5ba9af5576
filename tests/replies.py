"""Typed reads of Redis replies for the tests.

redis-py types a reply as ``bytes | str`` (it cannot know ``decode_responses``); every client the tests
build leaves it False, so a reply is bytes. These helpers say so once, and check it at run time.
"""

from __future__ import annotations

from typing import cast

import redis


def as_bytes(value: object) -> bytes:
    """A reply that must be bytes (a list entry, a zset member, a GET of an existing key)."""
    assert isinstance(value, bytes), f"expected bytes from Redis, got {value!r}"
    return value


def as_int(value: object) -> int:
    """An integer stored as a string (a counter), or 0 when the key does not exist."""
    if value is None:
        return 0
    assert isinstance(value, bytes | str | int), f"expected a number from Redis, got {value!r}"
    return int(value)


def items(r: redis.Redis, key: str) -> list[bytes]:
    """Every entry of a list, left (newest LPUSH) to right (next RPOP)."""
    return [as_bytes(v) for v in r.lrange(key, 0, -1)]


def members(r: redis.Redis, key: str) -> list[bytes]:
    """Every member of a sorted set, lowest score first."""
    return [as_bytes(v) for v in r.zrange(key, 0, -1)]


def scored(r: redis.Redis, key: str) -> list[tuple[bytes, float]]:
    """Every (member, score) of a sorted set, lowest score first."""
    pairs = cast("list[tuple[bytes, float]]", r.zrange(key, 0, -1, withscores=True))
    return [(as_bytes(m), float(s)) for m, s in pairs]


def set_members(r: redis.Redis, key: str) -> set[bytes]:
    return {as_bytes(v) for v in r.smembers(key)}


def counter(r: redis.Redis, key: str) -> int:
    """The value of an INCR counter; 0 when it does not exist."""
    return as_int(r.get(key))


def jid(value: str | None) -> str:
    """The jid an enqueue returned; None would mean a client middleware dropped the job, and no test
    here installs one that does."""
    assert value is not None, "the job was dropped by a client middleware"
    return value
