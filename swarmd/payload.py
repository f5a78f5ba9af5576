"""Job JSON, exactly as Sidekiq 6/7 writes it.

A job is a JSON object: ``class``, ``args``, ``jid``, ``queue``, ``retry``, ``created_at``,
``enqueued_at`` and, after a failure, ``retry_count``, ``error_message``, ``error_class``,
``failed_at``, ``retried_at`` and (with ``backtrace``) ``error_backtrace``. ``kwargs`` is swarmd's
own. Unknown fields are preserved: a decoded job keeps its whole hash and re-encodes it.

Timestamps are written as float epoch seconds, always with a decimal point (Sidekiq 8 would read an
integer as milliseconds). Both float seconds and Sidekiq 8's integer milliseconds are read.

This module touches no Redis and no threads.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import time
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from swarmd.errors import DecodeError, PayloadError

MAX_SAFE_INT = 2**53
MAX_ERROR_MESSAGE = 10_000
KEY_FIELDS = ("jid", "queue", "retry_queue")
"""Job fields that swarmd or Sidekiq put into Redis key names: `decode` checks they can be."""
STRICT_KEY_FIELDS = frozenset({"jid", "queue"})  # must be strings when present


def new_jid() -> str:
    """24 hex characters, like Sidekiq's ``SecureRandom.hex(12)``."""
    return secrets.token_hex(12)


def now() -> float:
    return time.time()


def read_timestamp(value: object) -> float | None:
    """Epoch seconds from a Sidekiq timestamp: float seconds (<= 7.x) or integer ms (8.x)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and value > 100_000_000_000:  # later than 5138 AD in seconds: ms
        return value / 1000.0
    return float(value)


# -- validation of client values -------------------------------------------------------------------


def _utf8_ok(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_json_native(value: object, path: str) -> None:
    """Raise `PayloadError` (a `TypeError`) naming the path of the first value JSON cannot carry."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if not _utf8_ok(value):
            raise PayloadError(f"{path}: string with a lone surrogate is not valid UTF-8 JSON")
        return
    if isinstance(value, int):
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return
        raise PayloadError(f"{path}: integer {value} is beyond ±2**53 and would lose precision in JSON")
    if isinstance(value, float):
        if math.isfinite(value):
            return
        raise PayloadError(f"{path}: {value!r} is not valid JSON")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_json_native(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(
                    f"{path}: dict key {key!r} is a {type(key).__name__}, JSON keys must be str"
                )
            if not _utf8_ok(key):
                raise PayloadError(f"{path}: dict key {key!r} has a lone surrogate, not valid UTF-8 JSON")
            check_json_native(item, f"{path}[{key!r}]")
        return
    raise PayloadError(
        f"{path}: {type(value).__name__} {value!r:.60} is not JSON-native "
        "(use str, int, float, bool, None, list or dict with str keys)"
    )


def encode(job: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes, UTF-8, no NaN.

    A lone surrogate (from a ``\\udcff`` escape in a job someone else wrote, or an exception message
    made of undecodable bytes) cannot be UTF-8: then the whole job is written with ASCII escapes, which
    is the same JSON value.
    """
    text = json.dumps(job, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(job, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def build(
    name: str,
    args: Iterable[Any],
    kwargs: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    *,
    jid: str | None = None,
    at: float | None = None,
) -> dict[str, Any]:
    """A new job hash. ``options`` hold queue, retry, backtrace and any other Sidekiq field."""
    args = list(args)
    check_json_native(args, "args")
    if kwargs:
        check_json_native(dict(kwargs), "kwargs")
    for key, value in options.items():
        check_json_native(value, key)
    queue = options.get("queue", "default")
    if not isinstance(queue, str) or not queue:
        raise PayloadError(f"queue: expected a non-empty string, got {queue!r}")
    created = now()
    job: dict[str, Any] = {"retry": True, "queue": queue}
    job.update(options)
    job["class"] = name
    job["args"] = args
    if kwargs:
        job["kwargs"] = dict(kwargs)
    job["jid"] = jid or new_jid()
    job["created_at"] = created
    if at is None:
        job["enqueued_at"] = created
    return job


def for_queue(job: dict[str, Any]) -> dict[str, Any]:
    """The job as it goes into a queue: with a fresh ``enqueued_at`` (scheduler, retry, push)."""
    job["enqueued_at"] = now()
    return job


# -- decoding jobs read from Redis -----------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # ``1e999`` is valid JSON that Python reads as infinity, which no encoder will write back: a job
    # holding one could never be re-encoded (scheduler, retry), so it is refused at decode like NaN.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of the float range")
    return value


_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)

# Every job is decoded once per run: msgspec reads one in a seventh of the json module's time (json
# took 10 % of a worker's Python time on a one-INCR job). Integers of any size stay ints (a Ruby Bignum
# argument must), and what msgspec refuses goes to the json module, whose verdict and message stand as
# they always did: NaN/Infinity, 1e999, a lone surrogate, deep nesting, bad UTF-8, a BOM.
_fast_decoder = msgspec.json.Decoder()


def _load(raw: bytes) -> Any:
    try:
        return _fast_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return _decoder.decode(raw.decode("utf-8"))


class Job:
    """A decoded job: the raw bytes as they sit in Redis, and the hash."""

    __slots__ = ("data", "raw")

    def __init__(self, raw: bytes, data: dict[str, Any]) -> None:
        self.raw = raw
        self.data = data

    @property
    def name(self) -> str:
        return str(self.data["class"])

    @property
    def jid(self) -> str:
        return str(self.data.get("jid", "-"))

    @property
    def queue(self) -> str:
        return str(self.data.get("queue") or "default")

    @property
    def args(self) -> list[Any]:
        args: list[Any] = self.data["args"]
        return args

    @property
    def kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = self.data.get("kwargs") or {}
        return kwargs


def decode(raw: bytes) -> Job:
    """Decode and check a job; any problem raises `DecodeError` with the reason."""
    try:
        data = _load(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DecodeError(f"not JSON: {exc}"[:300]) from None
    if not isinstance(data, dict):
        raise DecodeError(f"not a JSON object but {type(data).__name__}")
    name = data.get("class")
    if not isinstance(name, str) or not name:
        raise DecodeError("missing or invalid 'class'")
    if not isinstance(data.get("args"), list):
        raise DecodeError("missing or invalid 'args' (expected an array)")
    if "kwargs" in data and not isinstance(data["kwargs"], dict | None):
        raise DecodeError("invalid 'kwargs' (expected an object)")
    # Fields that become part of Redis key names (`queue:<queue>`, `queue:<retry_queue>`,
    # `swarmd:crashes:<jid>`): redis-py encodes a key name as strict UTF-8, so a lone surrogate (a
    # `\udcff` escape in the JSON) would raise in every batch that carries this job. Rejected here, the
    # job is a malformed one like any other: dead, unchanged, one ERROR line.
    # A `retry_queue` that is no string is ignored (retry.py), as Sidekiq ignores a falsy one.
    for field in KEY_FIELDS:
        value = data.get(field)
        if field in data and field in STRICT_KEY_FIELDS and not isinstance(value, str):
            raise DecodeError(f"invalid '{field}' (expected a string)")
        if isinstance(value, str) and not _utf8_ok(value):
            raise DecodeError(f"invalid '{field}' (a lone surrogate cannot be part of a Redis key name)")
    retry = data.get("retry", True)
    if retry is not None and not isinstance(retry, bool | int):
        raise DecodeError("invalid 'retry' (expected true, false or an integer)")
    return Job(raw, data)


def queue_of(raw: bytes) -> str | None:
    """The queue a raw job belongs to, or None when it cannot be decoded."""
    try:
        return decode(raw).queue
    except DecodeError:
        return None


class Work:
    """A fetched job: the raw bytes as they sit in the private list, and the queue it came from."""

    __slots__ = ("queue", "raw")

    def __init__(self, raw: bytes, queue: str) -> None:
        self.raw = raw
        self.queue = queue


# -- failure fields --------------------------------------------------------------------------------


def error_class_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def encode_backtrace(lines: list[str]) -> str:
    """Sidekiq's ``error_backtrace``: base64 of zlib of a JSON array of lines."""
    return base64.b64encode(zlib.compress(json.dumps(lines).encode())).decode()


def decode_backtrace(text: str, max_bytes: int | None = None) -> list[str]:
    """The lines of an ``error_backtrace``. With ``max_bytes``, a value that inflates beyond it raises
    `ValueError` before it is inflated further (a small value from Redis can inflate to gigabytes)."""
    if max_bytes is None:
        lines: list[str] = json.loads(zlib.decompress(base64.b64decode(text)))
        return lines
    inflater = zlib.decompressobj()
    inflated = inflater.decompress(base64.b64decode(text), max_bytes)
    if inflater.unconsumed_tail:
        raise ValueError(f"error_backtrace inflates beyond {max_bytes} bytes")
    lines = json.loads(inflated)
    return lines


def record_failure(
    data: dict[str, Any], error_class: str, message: str, backtrace: list[str] | None = None
) -> int:
    """Write Sidekiq's failure fields into ``data``; return the new ``retry_count``."""
    at = now()
    if "retry_count" in data and isinstance(data["retry_count"], int):
        data["retry_count"] += 1
        data["retried_at"] = at
    else:
        data["retry_count"] = 0
        data["failed_at"] = at
    data["error_message"] = message[:MAX_ERROR_MESSAGE]
    data["error_class"] = error_class
    if backtrace is not None:
        data["error_backtrace"] = encode_backtrace(backtrace)
    count: int = data["retry_count"]
    return count
