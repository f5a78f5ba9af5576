"""Enqueue jobs: push, bulk push, schedule.

Every job goes the same way: built and checked (JSON-native values, and the arguments bound to the job
function's signature when the function is known here), passed through the client middleware
(`swarmd.hooks`), checked again, then pushed. Any error on the way raises before anything is sent.
In a test mode (`swarmd.testing`) the last step hands the exact bytes to the test mode instead of Redis.

Every push is ``LPUSH queue:<name>`` plus ``SADD queues <name>`` in one round trip, exactly what
Sidekiq's client does, so Ruby workers read what Python writes. A scheduled job is ``ZADD schedule``
with the run-at time as score and no ``enqueued_at`` (Sidekiq strips it there).

A call returns only after Redis replied; if Redis is unreachable, times out or refuses us, a
`RedisUnavailable` (also a builtin `ConnectionError`) reaches the caller, so a jid returned by
`perform_async` is always a job that Redis has.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from swarmd import connection, hooks, payload, unique
from swarmd.config import DEFAULT_REDIS_URL, RedisSettings, load_config, redis_settings
from swarmd.config import redis_url as _redis_url
from swarmd.errors import PayloadError, RedisUnavailable
from swarmd.keys import Keys

DEFAULT_URL = DEFAULT_REDIS_URL
DELAYED = "swarmd.Delayed"
"""Job name of `delay` calls: args are ``["module:qualname", *args]``."""

# Sidekiq treats an interval above this as an absolute epoch time (`perform_in(ts)`).
_ABSOLUTE_AFTER = 1_000_000_000
_BULK_BATCH = 1000
_MAX_REDIS_ERROR = 300  # a pipeline error quotes the command, i.e. a whole job: keep the message short


class Outgoing(NamedTuple):
    """One job exactly as it goes to Redis: ``raw`` into ``queue:<queue>``, or into `schedule` at ``at``."""

    queue: str
    raw: bytes
    at: float | None


Sink = Callable[[list[Outgoing]], None]
_sink: Sink | None = None


def set_sink(sink: Sink | None) -> Sink | None:
    """Send every push to ``sink`` instead of Redis (None: Redis again); returns the previous sink.

    Used by `swarmd.testing`: the sink receives the very bytes Redis would have received, after the
    client middleware, and no Redis connection is made.
    """
    global _sink
    previous, _sink = _sink, sink
    return previous


def sink_active() -> bool:
    """True while `swarmd.testing` holds pushes (fake or inline mode): nothing talks to Redis."""
    return _sink is not None


def to_outgoing(job: dict[str, Any]) -> Outgoing:
    """Encode a built job (``at`` set: scheduled, without ``enqueued_at``, as Sidekiq stores it)."""
    at = job.pop("at", None)
    if at is not None:
        job.pop("enqueued_at", None)
        return Outgoing(job["queue"], payload.encode(job), float(at))
    return Outgoing(job["queue"], payload.encode(payload.for_queue(job)), None)


RedisTarget = str | RedisSettings | Mapping[str, Any] | None
"""Where the client's Redis is: a URL, `RedisSettings`, or a mapping spelled like the config file's
``redis:`` section (``{"sentinels": [...], "master_name": ..., "password": ...}``)."""


def _settings(target: RedisTarget, where: str) -> RedisSettings:
    if isinstance(target, RedisSettings):
        return target
    if isinstance(target, Mapping):
        return redis_settings(target, where=where)
    return RedisSettings(url=_redis_url(target, where=where))


class Client:
    """A connection to one Redis (and namespace) for enqueueing."""

    def __init__(self, redis_url: RedisTarget = None, namespace: str | None = None) -> None:
        """``redis_url``: a URL, `RedisSettings` or a ``redis:`` mapping (Sentinel, TLS files, ...); a URL
        is ``redis_url`` > ``SWARMD_REDIS_URL`` > ``REDIS_URL`` > ``redis://localhost:6379/0`` (the
        daemon's rule without the config file, `swarmd.config.redis_url`). Bad settings raise
        `ConfigError`."""
        self.settings = _settings(redis_url, "redis_url" if isinstance(redis_url, str | None) else "redis")
        self.redis_url = self.settings.url  # unused in Sentinel mode
        self.keys = Keys(namespace)
        self._redis: connection.Redis | None = None
        self._lock = threading.Lock()

    @property
    def redis(self) -> connection.Redis:
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    self._redis = connection.connect(self.settings)
        return self._redis

    # -- low level --------------------------------------------------------------------------------
    def push_jobs(self, jobs: Sequence[dict[str, Any]]) -> None:
        """Push already-built jobs (no middleware): immediate ones to their queues, ones with ``at``
        to `schedule`, in one round trip. Raises `RedisUnavailable` if Redis cannot take them."""
        if not jobs:
            return
        outgoing = [to_outgoing(job) for job in jobs]
        sink = _sink
        if sink is not None:
            sink(outgoing)
            return
        by_queue: dict[str, list[bytes]] = {}
        scheduled: dict[bytes, float] = {}
        for out in outgoing:
            if out.at is not None:
                scheduled[out.raw] = out.at
            else:
                by_queue.setdefault(out.queue, []).append(out.raw)
        wait = self.settings.wait_replicas
        try:
            pipe = self.redis.pipeline(transaction=False)
            for queue, raws in by_queue.items():
                pipe.sadd(self.keys.queues, queue)
                for start in range(0, len(raws), _BULK_BATCH):
                    pipe.lpush(self.keys.queue(queue), *raws[start : start + _BULK_BATCH])
            if scheduled:
                items = list(scheduled.items())
                for start in range(0, len(items), _BULK_BATCH):
                    pipe.zadd(self.keys.schedule, dict(items[start : start + _BULK_BATCH]))
            if wait:
                # On the pipeline's connection: WAIT counts the replicas that have this client's writes.
                pipe.wait(wait, max(1, int(self.settings.wait_timeout * 1000)))
            replies = pipe.execute()
        except connection.RedisError as exc:
            raise self._unavailable(exc) from exc
        if wait and (acked := int(replies[-1])) < wait:
            raise RedisUnavailable(
                f"enqueue: Redis at {self.settings.describe()} took the job(s), but only {acked} of the "
                f"{wait} replica(s) of wait_replicas confirmed them within {self.settings.wait_timeout:g} s; "
                "a failover now could lose them (pushing again may run them twice)"
            )

    def _unavailable(self, exc: connection.RedisError) -> RedisUnavailable:
        where = self.settings.describe()
        detail = f"{type(exc).__name__}: {exc}"[:_MAX_REDIS_ERROR]
        if isinstance(exc, connection.TimeoutError):
            # The commands may have run and only the reply be lost: say so rather than guess.
            return RedisUnavailable(
                f"cannot enqueue: Redis at {where} did not answer in time; "
                f"the job may or may not have been pushed ({detail})"
            )
        if isinstance(exc, connection.ConnectionError):  # auth errors are ConnectionErrors in redis-py
            return RedisUnavailable(f"cannot enqueue: Redis at {where} is unavailable ({detail})")
        return RedisUnavailable(f"cannot enqueue: Redis at {where} refused the push ({detail})")

    def _submit(self, jobs: list[dict[str, Any]]) -> list[str | None]:
        """Client middleware, then push; the jid of each job, None for one a middleware dropped (or a
        unique job whose lock an identical job holds)."""
        kept = run_client_middleware(jobs)
        pushing = [job for job in kept if job is not None]
        if any("unique_for" in job for job in pushing):
            refused = self._push_unique(pushing)
            pushing = [job for job in pushing if unique.ttl_of(job) is None]
            kept = [None if job is None or id(job) in refused else job for job in kept]
        self.push_jobs(pushing)
        return [None if job is None else str(job["jid"]) for job in kept]

    def _push_unique(self, jobs: list[dict[str, Any]]) -> set[int]:
        """Push the unique jobs of ``jobs`` (`swarmd.unique`), each only if it took its lock; the
        ``id()`` of each one refused. In a test mode every one goes to the sink (no locks there)."""
        pending: list[tuple[dict[str, Any], str, int, Outgoing]] = []
        for job in jobs:
            ttl = unique.ttl_of(job)
            if ttl is not None:
                key = job[unique.FIELD] = unique.digest(job)
                pending.append((job, key, ttl, to_outgoing(job)))
        sink = _sink
        if sink is not None:
            sink([out for *_, out in pending])
            return set()
        if _unique_pusher is None:  # swarmd/__init__ imports swarmd.registry, which installs it
            raise RuntimeError("swarmd.registry was not imported: unique jobs cannot be pushed")
        entries = [(key, str(job["jid"]), ttl, out.raw, out.queue, out.at) for job, key, ttl, out in pending]
        wait = self.settings.wait_replicas
        try:
            pushed, acked = _unique_pusher(self.redis, self.keys, entries, wait, self.settings.wait_timeout)
        except connection.RedisError as exc:
            raise self._unavailable(exc) from exc
        if acked is not None and acked < wait:
            raise RedisUnavailable(
                f"enqueue: Redis at {self.settings.describe()} took the unique job(s), but only {acked} "
                f"of the {wait} replica(s) of wait_replicas confirmed them within "
                f"{self.settings.wait_timeout:g} s"
            )
        return {id(job) for (job, *_), ok in zip(pending, pushed, strict=True) if not ok}

    def push(self, item: Mapping[str, Any]) -> str | None:
        """Sidekiq's ``Client.push``: a raw job hash with at least ``class`` and ``args``.

        Returns the jid, or None if a client middleware dropped the job.
        """
        return self.push_bulk_items([item])[0]

    def push_bulk_items(self, items: Iterable[Mapping[str, Any]]) -> list[str | None]:
        return self._submit([_job_from_item(item) for item in items])

    def enqueue(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, Any],
        at: float | None = None,
    ) -> str | None:
        """Build, check and push one job; its jid, or None if a client middleware dropped it."""
        if at is not None and at <= payload.now():
            at = None  # a time in the past runs now, as in Sidekiq
        job = payload.build(name, args, kwargs, options, at=at)
        if at is not None:
            job["at"] = at
        return self._submit([job])[0]

    def enqueue_bulk(
        self, name: str, arg_lists: Iterable[Sequence[Any]], options: Mapping[str, Any]
    ) -> list[str | None]:
        """All jobs or none: each item is checked (and passed through middleware) before any push.

        The jids in item order, None where a client middleware dropped the job (as in Sidekiq 7).
        """
        jobs = []
        for i, args in enumerate(arg_lists):
            if not isinstance(args, list | tuple):
                raise PayloadError(
                    f"perform_bulk item [{i}]: expected a list or tuple of args, got {args!r:.60}"
                )
            jobs.append(payload.build(name, args, None, options))
        return self._submit(jobs)


# -- unique jobs: the push script is called through `swarmd.scripts` (a higher layer) ----------------
UniqueEntry = tuple[str, str, int, bytes, str, float | None]
"""One unique job to push: lock digest, jid, lock TTL (s), the job's bytes, queue, ``at`` (None: now)."""
UniquePusher = Callable[[Any, Keys, list[UniqueEntry], int, float], tuple[list[bool], int | None]]
_unique_pusher: UniquePusher | None = None


def set_unique_pusher(pusher: UniquePusher) -> None:
    """Installed by `swarmd.registry` at import: `swarmd.scripts.push_unique` (only `swarmd.scripts`
    knows the script's layout, and this module is below it)."""
    global _unique_pusher
    _unique_pusher = pusher


# -- client middleware -----------------------------------------------------------------------------
def run_client_middleware(jobs: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """Each job through every client middleware, in registration order; None where one dropped it.

    Every job of a call goes through before any is pushed: a middleware that raises stops the whole
    call and nothing is pushed (an enqueue never loses a job in silence). Each result is checked
    again, so a middleware cannot push what the client itself would refuse.
    """
    chain = hooks.client_middlewares()
    if not chain:
        return list(jobs)
    out: list[dict[str, Any] | None] = []
    for job in jobs:
        current: dict[str, Any] | None = job
        for mw in chain:
            if current is None:
                break
            current = _checked_result(mw, mw(current))
        out.append(current)
    return out


def _checked_result(mw: hooks.ClientMiddleware, result: object) -> dict[str, Any] | None:
    if result is None:
        return None
    where = f"client middleware {getattr(mw, '__qualname__', None) or type(mw).__qualname__}"
    if not isinstance(result, dict):
        raise PayloadError(f"{where}: returned {type(result).__name__}, expected the job dict or None")
    payload.check_json_native(result, f"{where}: job")
    for field in ("class", "queue", "jid"):
        if not isinstance(result.get(field), str) or not result[field]:
            raise PayloadError(
                f"{where}: job[{field!r}] must be a non-empty string, got {result.get(field)!r:.60}"
            )
    if not isinstance(result.get("args"), list):
        raise PayloadError(f"{where}: job['args'] must be a list, got {result.get('args')!r:.60}")
    kwargs = result.get("kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise PayloadError(f"{where}: job['kwargs'] must be a dict, got {kwargs!r:.60}")
    at = result.get("at")
    if at is not None and (isinstance(at, bool) or not isinstance(at, int | float)):
        raise PayloadError(f"{where}: job['at'] must be epoch seconds, got {at!r:.60}")
    return result


# -- arguments against the job function's signature -------------------------------------------------
class CallCheck:
    """Which arguments a function takes, from its signature (computed once, here).

    A job with the wrong arguments would otherwise be accepted, fail in the worker and be retried for
    weeks; calling `check` raises `TypeError` naming the job at once, as calling the function would.
    """

    __slots__ = ("_max", "_min", "_name", "signature")
    _min: float
    _max: float

    def __init__(self, func: Callable[..., Any]) -> None:
        self._name = f"{getattr(func, '__qualname__', None) or getattr(func, '__name__', 'job')}()"
        try:
            self.signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins and C callables have none: no check then
            self.signature = None
            return
        params = list(self.signature.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self._min = sum(1 for p in positional if p.default is p.empty)
        self._max = math.inf if any(p.kind is p.VAR_POSITIONAL for p in params) else len(positional)
        if any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params):
            self._min = math.inf  # a call without keywords cannot bind: always take the full check

    def check(self, args: Sequence[Any], kwargs: Mapping[str, Any], job: str) -> None:
        sig = self.signature
        if sig is None:
            return
        if not kwargs and self._min <= len(args) <= self._max:
            return  # binds for sure: the fast path of perform_bulk's items
        if len(args) > self._max:
            # Python's own wording (inspect.Signature.bind only says "too many positional arguments").
            most = int(self._max)
            least = sum(
                1
                for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            )
            takes = f"{most}" if least == most else f"from {least} to {most}"
            noun = "argument" if takes == "1" else "arguments"
            verb = "was" if len(args) == 1 else "were"
            raise TypeError(
                f"{self._name} takes {takes} positional {noun} but {len(args)} {verb} given (job {job})"
            )
        try:
            sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self._name} {exc} (job {job})") from None


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
    redis: RedisSettings | Mapping[str, Any] | None = None,
) -> Client:
    """Set the default client: explicit values, or the Redis settings of a swarmd YAML file.

    ``redis``: `RedisSettings` or a mapping spelled like the file's ``redis:`` section (Sentinel,
    passwords, TLS files, ``wait_replicas``); ``redis_url`` is the short form for a URL alone. An
    explicit ``redis_url`` or ``redis`` wins over the file's."""
    global _default
    if redis_url is not None and redis is not None:
        raise TypeError("configure: give redis_url or redis, not both")
    target: RedisTarget = redis if redis is not None else redis_url
    if config is not None:
        cfg = load_config(config, environment)
        target = target or cfg.redis
        namespace = namespace if namespace is not None else cfg.namespace
    with _default_lock:
        _default = Client(target, namespace)
        return _default


def default_client() -> Client:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Client()
    return _default


def push(item: Mapping[str, Any]) -> str | None:
    """Push a raw Sidekiq job hash (e.g. for a Ruby worker) with the default client.

    Returns the jid, or None if a client middleware dropped the job.
    """
    return default_client().push(item)


def delay(func: Callable[..., Any], *args: Any, **kwargs: Any) -> str | None:
    """Enqueue a call of a module-level function (workers run it only under ``delay_allow``).

    The arguments are bound to ``func``'s signature first: a wrong call raises `TypeError` here.
    """
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or not qualname or "<" in qualname or "." in qualname:  # what a worker can resolve
        raise PayloadError(f"delay: {func!r:.60} is not a module-level function")
    CallCheck(func).check(args, kwargs, f"{DELAYED} {module}:{qualname}")
    return default_client().enqueue(DELAYED, [f"{module}:{qualname}", *args], kwargs, {"queue": "default"})
