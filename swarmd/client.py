"""Enqueue jobs: push, bulk push, schedule (SPEC 1.2).

Every push is ``LPUSH queue:<name>`` plus ``SADD queues <name>`` in one round trip, exactly what
Sidekiq's client does, so Ruby workers read what Python writes. A scheduled job is ``ZADD schedule``
with the run-at time as score and no ``enqueued_at`` (Sidekiq strips it there).

A call returns only after Redis replied; if Redis is unreachable the error reaches the caller, so a
jid returned by `perform_async` is always a job that Redis has.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from swarmd import connection, payload
from swarmd.config import DEFAULT_REDIS_URL, load_config
from swarmd.config import redis_url as _redis_url
from swarmd.errors import PayloadError
from swarmd.keys import Keys

DEFAULT_URL = DEFAULT_REDIS_URL
DELAYED = "swarmd.Delayed"
"""Job name of `delay` calls: args are ``["module:qualname", *args]``."""

# Sidekiq treats an interval above this as an absolute epoch time (`perform_in(ts)`).
_ABSOLUTE_AFTER = 1_000_000_000
_BULK_BATCH = 1000


class Client:
    """A connection to one Redis (and namespace) for enqueueing."""

    def __init__(self, redis_url: str | None = None, namespace: str | None = None) -> None:
        """``redis_url`` > ``SWARMD_REDIS_URL`` > ``REDIS_URL`` > ``redis://localhost:6379/0`` (the daemon's
        rule without the config file, `swarmd.config.redis_url`); a malformed URL raises `ConfigError`."""
        self.redis_url = _redis_url(redis_url, where="redis_url")
        self.keys = Keys(namespace)
        self._redis: connection.Redis | None = None
        self._lock = threading.Lock()

    @property
    def redis(self) -> connection.Redis:
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    self._redis = connection.connect(self.redis_url)
        return self._redis

    # -- low level --------------------------------------------------------------------------------
    def push_jobs(self, jobs: Sequence[dict[str, Any]]) -> None:
        """Push already-built jobs: immediate ones to their queues, ones with ``at`` to `schedule`."""
        pipe = self.redis.pipeline(transaction=False)
        by_queue: dict[str, list[bytes]] = {}
        scheduled: dict[bytes, float] = {}
        for job in jobs:
            at = job.pop("at", None)
            if at is not None:
                job.pop("enqueued_at", None)
                scheduled[payload.encode(job)] = float(at)
            else:
                by_queue.setdefault(job["queue"], []).append(payload.encode(payload.for_queue(job)))
        for queue, raws in by_queue.items():
            pipe.sadd(self.keys.queues, queue)
            for start in range(0, len(raws), _BULK_BATCH):
                pipe.lpush(self.keys.queue(queue), *raws[start : start + _BULK_BATCH])
        if scheduled:
            items = list(scheduled.items())
            for start in range(0, len(items), _BULK_BATCH):
                pipe.zadd(self.keys.schedule, dict(items[start : start + _BULK_BATCH]))
        pipe.execute()

    def push(self, item: Mapping[str, Any]) -> str:
        """Sidekiq's ``Client.push``: a raw job hash with at least ``class`` and ``args``."""
        return self.push_bulk_items([item])[0]

    def push_bulk_items(self, items: Iterable[Mapping[str, Any]]) -> list[str]:
        jobs = [_job_from_item(item) for item in items]
        self.push_jobs(jobs)
        return [str(job["jid"]) for job in jobs]

    def enqueue(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, Any],
        at: float | None = None,
    ) -> str:
        if at is not None and at <= payload.now():
            at = None  # a time in the past runs now, as in Sidekiq
        job = payload.build(name, args, kwargs, options, at=at)
        if at is not None:
            job["at"] = at
        self.push_jobs([job])
        return str(job["jid"])

    def enqueue_bulk(
        self, name: str, arg_lists: Iterable[Sequence[Any]], options: Mapping[str, Any]
    ) -> list[str]:
        jobs = []
        for i, args in enumerate(arg_lists):
            if not isinstance(args, list | tuple):
                raise PayloadError(
                    f"perform_bulk item [{i}]: expected a list or tuple of args, got {args!r:.60}"
                )
            jobs.append(payload.build(name, args, None, options))
        self.push_jobs(jobs)
        return [str(job["jid"]) for job in jobs]


def _job_from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise PayloadError(f"push: expected a job hash, got {type(item).__name__}")
    item = dict(item)
    name = item.pop("class", None)
    if isinstance(name, type) or callable(name):
        name = getattr(name, "job_name", None) or f"{name.__module__}.{name.__qualname__}"
    if not isinstance(name, str) or not name:
        raise PayloadError("push: 'class' must be a non-empty string (the job name)")
    args = item.pop("args", None)
    if not isinstance(args, list | tuple):
        raise PayloadError("push: 'args' must be a list")
    kwargs = item.pop("kwargs", None)
    at = item.pop("at", None)
    jid = item.pop("jid", None)
    created_at = item.pop("created_at", None)
    item.pop("enqueued_at", None)
    job = payload.build(name, args, kwargs, item, jid=jid if isinstance(jid, str) else None, at=at)
    if at is not None:
        when = when_to_epoch(at)
        if when > payload.now():
            job["at"] = when
        else:
            job["enqueued_at"] = job["created_at"]
    kept = payload.read_timestamp(created_at)  # float seconds, also from Sidekiq 8's integer ms
    if kept is not None:  # Sidekiq's `created_at ||= now`: a job pushed again keeps its creation time
        job["created_at"] = kept
    return job


def when_to_epoch(when: object) -> float:
    """An aware datetime or epoch seconds -> epoch seconds."""
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise PayloadError("perform_at: naive datetime; pass an aware datetime (e.g. with tz=UTC)")
        return when.timestamp()
    if isinstance(when, int | float) and not isinstance(when, bool):
        return float(when)
    raise PayloadError(f"perform_at: expected an aware datetime or epoch seconds, got {when!r:.60}")


def interval_to_epoch(interval: object) -> float:
    """Seconds or a timedelta from now -> epoch seconds (large numbers are absolute, as in Sidekiq)."""
    if isinstance(interval, dt.timedelta):
        return payload.now() + interval.total_seconds()
    if isinstance(interval, int | float) and not isinstance(interval, bool):
        return float(interval) if interval >= _ABSOLUTE_AFTER else payload.now() + float(interval)
    raise PayloadError(f"perform_in: expected seconds or a timedelta, got {interval!r:.60}")


# -- the process-wide default client ----------------------------------------------------------------
_default: Client | None = None
_default_lock = threading.Lock()


def configure(
    redis_url: str | None = None,
    namespace: str | None = None,
    *,
    config: str | None = None,
    environment: str | None = None,
) -> Client:
    """Set the default client: explicit values, or the Redis settings of a swarmd YAML file."""
    global _default
    if config is not None:
        cfg = load_config(config, environment)
        redis_url = redis_url or cfg.redis_url
        namespace = namespace if namespace is not None else cfg.namespace
    with _default_lock:
        _default = Client(redis_url, namespace)
        return _default


def default_client() -> Client:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Client()
    return _default


def push(item: Mapping[str, Any]) -> str:
    """Push a raw Sidekiq job hash (e.g. for a Ruby worker) with the default client."""
    return default_client().push(item)


def delay(func: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Enqueue a call of a module-level function (workers run it only under ``delay_allow``)."""
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or not qualname or "<" in qualname or "." in qualname:  # what a worker can resolve
        raise PayloadError(f"delay: {func!r:.60} is not a module-level function")
    return default_client().enqueue(DELAYED, [f"{module}:{qualname}", *args], kwargs, {"queue": "default"})
