"""The operator API: what Sidekiq's ``lib/sidekiq/api.rb`` and its Web UI do, as typed Python calls.

`swarmctl`, the web dashboard and the Prometheus ``/metrics`` endpoint all read and act through
`Admin`. It parses no arguments and prints nothing: it returns frozen dataclasses, raises `NotFound`
(exit 1 in ``swarmctl``) for a job, entry, queue or process that does not exist, `ValueError` for a
caller's mistake (an unknown set, a negative offset), and lets Redis errors through
(``swarmd.connection.RedisError``).

It reads and writes only Sidekiq's keys (plus swarmd's in-flight lists, for a total), so it works on a
Redis shared with Sidekiq processes and Sidekiq's own Web UI.

Budget: a web page makes a handful of these calls, each one a bounded number of round trips with a
bounded reply, whatever the size of the data: `page` asks Redis for one page (ZRANGE/LRANGE with
limits, never ``0 -1``), `status` takes two pipelined round trips for any number of processes and
queues, `search` does one ZSCAN step per call and returns the cursor to continue, and the ``*_all``
actions work in batches of `BATCH`. Only `find` walks whole sets (as Sidekiq's ``find_job`` does),
server-side with ZSCAN MATCH on the jid, all three sets in one pipelined step at a time: it is for
``swarmctl``; a page looks for a jid with `search` (see `find`).

Everything read from Redis is untrusted: an entry that is not JSON, not a job, has fields of the wrong
type, timestamps out of range or a backtrace that does not inflate is still listed (as undecodable,
with the reason) and can still be deleted; it never makes a listing raise. Strings decoded from
valid JSON may hold lone surrogates (``"\\ud800"`` escapes, which swarmd itself writes for an exception
message made of undecodable bytes): encode them with ``errors="backslashreplace"`` to print them.

Every move of an entry is a script that removes it first (ZREM) and acts only if that removed it
(``lua/schedule.lua``, ``lua/kill.lua``): two admins, or an admin and the scheduler, acting on one
entry at once move it exactly once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import TracebackType
from typing import Any, Literal

from swarmd import connection, metrics, payload, periodic_jobs, unique
from swarmd.config import Config, RedisSettings
from swarmd.errors import ConfigError, DecodeError, NotFound
from swarmd.keys import Keys
from swarmd.scripts import Scripts

__all__ = [
    "BATCH",
    "KINDS",
    "MAX_PAGE",
    "SIGNAL_TTL",
    "Admin",
    "BusyJob",
    "ClassMetrics",
    "ClassTotals",
    "DayStats",
    "Entry",
    "Found",
    "Host",
    "JobMetricsReport",
    "Kind",
    "MetricsSnapshot",
    "Outcome",
    "Page",
    "Process",
    "Queue",
    "RedisInfo",
    "SearchResult",
    "Status",
    "Totals",
    "by_host",
]

Kind = Literal["retry", "schedule", "dead"]
KINDS: tuple[Kind, ...] = ("retry", "schedule", "dead")
MAX_PAGE = 1000
"""The most entries one `Admin.page` / `Admin.queue_page` call returns (a larger limit is clamped)."""
BATCH = 100
"""Entries read and acted on per round trip by the ``*_all`` actions (Sidekiq's Web UI pages 100)."""
SCAN_COUNT = 1000
"""ZSCAN's COUNT for `Admin.find`, and the default of `Admin.search`."""
MAX_SCAN_COUNT = 10_000
LIST_CHUNK = 1000
"""Jobs per LRANGE when `Admin.find` looks through queues."""
SIGNAL_TTL = 60
"""As Sidekiq's Web UI: a signal nobody pops (the process is gone) does not linger."""
MAX_BACKTRACE_BYTES = 1 << 20

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_KEY = re.compile(r"([+-]?(?:inf|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?))-(.*)", re.DOTALL)


# -- reading untrusted values ----------------------------------------------------------------------
def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    """An int from a Redis reply or a JSON value (``b"12"``, ``12``, ``12.0``); None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _json_obj(raw: Any) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _when(seconds: float | None) -> dt.datetime | None:
    if seconds is None:
        return None
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):  # beyond year 9999, NaN
        return None


def _timestamp(value: Any) -> dt.datetime | None:
    """A Sidekiq timestamp field (float seconds, or Sidekiq 8's integer milliseconds)."""
    return _when(payload.read_timestamp(value))


def _glob(text: str) -> str:
    """A ZSCAN MATCH pattern for members holding ``text`` literally."""
    return "*" + _GLOB_SPECIAL.sub(r"\\\1", text) + "*"


def _literal_in_json(text: str) -> bool:
    """Whether ``text`` appears byte for byte in any JSON that holds it in a string (nothing to escape)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _backtrace(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list):  # the format of old Sidekiq versions: a plain array
        lines = value
    elif isinstance(value, str):
        try:
            lines = payload.decode_backtrace(value, MAX_BACKTRACE_BYTES)
        except (ValueError, zlib.error, RecursionError):  # base64, zlib, JSON, too big: none shown
            return None
    else:
        return None
    if not isinstance(lines, list):
        return None
    return tuple(line if isinstance(line, str) else str(line) for line in lines)


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One stored job: in ``kind`` ("retry", "schedule", "dead"; "queue" or "busy" from
    `Admin.queue_page`, `Admin.busy_jobs`, `Admin.find`), with the ``raw`` bytes as they sit in Redis
    (what every action acts on) and the ``score`` (None outside the sorted sets).

    ``data`` is the decoded job, or None with the reason in ``problem`` when it cannot be decoded;
    such an entry is still listed and deletable, and ``jid`` is read from it when it is a JSON object
    at least. Two entries are equal when kind, raw bytes and score are."""

    kind: str
    raw: bytes
    score: float | None
    data: dict[str, Any] | None = field(compare=False, repr=False)
    problem: str | None = field(compare=False, default=None)
    jid: str | None = field(compare=False, default=None)
    job_class: str | None = field(compare=False, default=None)
    wrapped: str | None = field(compare=False, default=None)
    queue: str | None = field(compare=False, default=None)
    args: list[Any] | None = field(compare=False, default=None, repr=False)
    kwargs: dict[str, Any] | None = field(compare=False, default=None, repr=False)
    retry_count: int | None = field(compare=False, default=None)
    error_class: str | None = field(compare=False, default=None)
    error_message: str | None = field(compare=False, default=None, repr=False)
    created_at: dt.datetime | None = field(compare=False, default=None, repr=False)
    enqueued_at: dt.datetime | None = field(compare=False, default=None, repr=False)
    failed_at: dt.datetime | None = field(compare=False, default=None, repr=False)
    retried_at: dt.datetime | None = field(compare=False, default=None, repr=False)

    @classmethod
    def parse(cls, kind: str, raw: bytes, score: float | None = None) -> Entry:
        """Never raises: a job that does not decode gives an entry with ``data`` None."""
        try:
            job = payload.decode(raw)
        except DecodeError as exc:
            return cls(kind, raw, score, None, problem=str(exc), jid=_str(_json_obj(raw).get("jid")))
        data = job.data
        kwargs = data.get("kwargs")
        count = data.get("retry_count")
        return cls(
            kind,
            raw,
            score,
            data,
            jid=_str(data.get("jid")),
            job_class=job.name,
            wrapped=_str(data.get("wrapped")),
            queue=_str(data.get("queue")),
            args=job.args,
            kwargs=kwargs if isinstance(kwargs, dict) else None,
            retry_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
            error_class=_str(data.get("error_class")),
            error_message=_str(data.get("error_message")),
            created_at=_timestamp(data.get("created_at")),
            enqueued_at=_timestamp(data.get("enqueued_at")),
            failed_at=_timestamp(data.get("failed_at")),
            retried_at=_timestamp(data.get("retried_at")),
        )

    @property
    def at(self) -> dt.datetime | None:
        """The score as a time: when it runs (retry, schedule) or when it died (dead)."""
        return _when(None if self.score is None else _float(self.score))

    @property
    def key(self) -> str:
        """``"<score>-<jid>"``, the key Sidekiq's Web UI puts in its URLs (`Admin.entry` takes it). An
        entry without a jid gets a digest of its bytes instead, so that it can be addressed too."""
        ident = self.jid if self.jid is not None else "~" + _digest(self.raw)
        return f"{self.score!r}-{ident}"

    @property
    def display_class(self) -> str | None:
        """The class a user thinks of: ActiveJob's ``wrapped`` class, else ``class``."""
        return self.wrapped or self.job_class

    @cached_property
    def backtrace(self) -> tuple[str, ...] | None:
        """The decoded ``error_backtrace`` lines; None when there is none or it does not decode."""
        return None if self.data is None else _backtrace(self.data.get("error_backtrace"))


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Page:
    """One page of a sorted set or a queue: ``entries`` from position ``offset`` of ``total``."""

    entries: tuple[Entry, ...]
    total: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + self.limit
        return end if end < self.total else None


@dataclass(frozen=True)
class SearchResult:
    """The matches of one ZSCAN step; call again with ``cursor`` until it is 0. ZSCAN may return a
    member twice across steps (when Redis rehashes meanwhile)."""

    entries: tuple[Entry, ...]
    cursor: int

    @property
    def done(self) -> bool:
        return self.cursor == 0


@dataclass(frozen=True)
class Process:
    """A live process record (Sidekiq's ``Process``), from ``processes`` and the ``<identity>`` hash."""

    identity: str
    hostname: str
    pid: int | None
    tag: str
    queues: tuple[str, ...]
    concurrency: int | None
    busy: int
    rss_kb: int | None
    started_at: dt.datetime | None
    beat_at: dt.datetime | None
    beat_age_s: float | None
    quiet: bool
    version: str | None
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Host:
    """The live processes of one host name (the host part of their identities), e.g. one swarm of
    several that share a Redis."""

    hostname: str
    processes: tuple[Process, ...]

    @property
    def busy(self) -> int:
        return sum(p.busy for p in self.processes)

    @property
    def concurrency(self) -> int:
        return sum(p.concurrency or 0 for p in self.processes)


def by_host(processes: Sequence[Process]) -> tuple[Host, ...]:
    """``processes`` grouped by host name, hosts sorted by name, each host's processes in the given
    order."""
    groups: dict[str, list[Process]] = {}
    for p in processes:
        groups.setdefault(p.hostname, []).append(p)
    return tuple(Host(name, tuple(groups[name])) for name in sorted(groups))


@dataclass(frozen=True)
class BusyJob:
    """A job a live process is running, from its ``<identity>:work`` hash (written every beat)."""

    identity: str
    tid: str
    queue: str | None
    job: Entry
    run_at: dt.datetime | None


@dataclass(frozen=True)
class Queue:
    """A queue: its size and latency (seconds since the oldest job was enqueued; 0.0 when empty, None
    when the oldest job has no readable ``enqueued_at``)."""

    name: str
    size: int
    latency_s: float | None


@dataclass(frozen=True)
class Totals:
    processed: int
    failed: int
    scheduled: int
    retries: int
    dead: int
    enqueued: int
    in_flight: int
    """Jobs in swarmd's private in-flight lists (running, or fetched and about to run)."""


@dataclass(frozen=True)
class Status:
    processes: tuple[Process, ...]
    queues: tuple[Queue, ...]
    totals: Totals


@dataclass(frozen=True)
class DayStats:
    date: dt.date
    processed: int
    failed: int


@dataclass(frozen=True)
class RedisInfo:
    version: str
    used_memory: int | None
    used_memory_human: str | None
    used_memory_peak_human: str | None
    connected_clients: int | None
    uptime_s: int | None
    maxmemory_policy: str | None


@dataclass(frozen=True)
class Found:
    """Where `Admin.find` found a job: ``where`` is "retry", "schedule", "dead", "queue" (then
    ``queue`` is the list it sits in) or "busy" (then ``busy`` says which process runs it)."""

    where: str
    entry: Entry
    queue: str | None = None
    busy: BusyJob | None = None


@dataclass(frozen=True)
class Outcome:
    """What an action did: ``done`` entries acted on by this call; ``gone``: no longer there (another
    admin or the scheduler acted first); ``undecodable``: left in place, they cannot be put in a queue
    (delete them)."""

    done: int = 0
    gone: int = 0
    undecodable: int = 0

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(self.done + other.done, self.gone + other.gone, self.undecodable + other.undecodable)


@dataclass(frozen=True)
class ClassTotals:
    """A job class's totals since ``swarmd:metrics`` was created (the Prometheus counters): runs,
    failures, seconds of the successful runs and their histogram (`swarmd.metrics.BOUNDS_MS`), and
    reschedules by a limiter (`swarmd.OverLimit`)."""

    name: str
    runs: int
    failures: int
    seconds: float
    buckets: tuple[int, ...]
    over_limit: int = 0


@dataclass(frozen=True)
class MetricsSnapshot:
    """What ``/metrics`` exposes, read in 2 round trips (`Admin.metrics_snapshot`)."""

    status: Status
    classes: tuple[ClassTotals, ...]
    restarts: Mapping[str, int]
    recovered: int
    poisoned: int


@dataclass(frozen=True)
class ClassMetrics:
    """One job class over a window of `Admin.job_metrics`: runs, failures, milliseconds of the
    successful runs, their mean, p50/p95 (the upper bound of the histogram bucket holding it; None
    when not read or no successful run, ``inf`` beyond the last bound) and the runs per time bucket."""

    name: str
    runs: int
    failures: int
    total_ms: int
    p50_ms: float | None
    p95_ms: float | None
    series: tuple[int, ...]
    buckets: tuple[int, ...] | None

    @property
    def mean_ms(self) -> float | None:
        done = self.runs - self.failures
        return self.total_ms / done if done > 0 else None


@dataclass(frozen=True)
class JobMetricsReport:
    """`Admin.job_metrics`: per-class metrics over the last ``hours``, in time buckets of
    ``bucket_s`` seconds starting at ``times`` (oldest first), busiest class first."""

    hours: int
    bucket_s: int
    times: tuple[dt.datetime, ...]
    classes: tuple[ClassMetrics, ...]


# -- the API ---------------------------------------------------------------------------------------
class Admin:
    """Sidekiq's API and Web UI actions on one Redis client and namespace.

    ``dead_max_jobs`` and ``dead_timeout`` bound `dead` after a kill, as the config's keys of the same
    name do after a failure (`from_config` takes them from the config)."""

    def __init__(
        self,
        redis: connection.Redis,
        namespace: str | None = None,
        *,
        dead_max_jobs: int = 10_000,
        dead_timeout: float = 180 * 24 * 3600.0,
    ) -> None:
        self.redis = redis
        self.keys = Keys(namespace)
        self.scripts = Scripts(redis, self.keys)
        self.dead_max_jobs = dead_max_jobs
        self.dead_timeout = dead_timeout
        self._owned = False

    @classmethod
    def from_url(cls, url: str | RedisSettings, namespace: str | None = None, **options: Any) -> Admin:
        """An `Admin` on its own client for ``url`` (or `RedisSettings`: Sentinel, TLS); `close` closes
        it. A malformed URL raises `ValueError` (redis-py's message)."""
        admin = cls(connection.connect(url), namespace, **options)
        admin._owned = True
        return admin

    @classmethod
    def from_config(cls, config: Config) -> Admin:
        """An `Admin` for a loaded config: its Redis settings (URL or Sentinel), namespace and `dead`
        bounds. A malformed URL raises `ConfigError` (the password is never shown)."""
        try:
            client = connection.connect(config.redis)
        except ValueError as exc:  # redis-py's URL parser
            raise ConfigError(f"redis url {config.redacted_redis_url()}: {exc}") from None
        admin = cls(
            client, config.namespace, dead_max_jobs=config.dead_max_jobs, dead_timeout=config.dead_timeout
        )
        admin._owned = True
        return admin

    def close(self) -> None:
        """Close the client if this `Admin` built it (`from_url`, `from_config`); a client passed in
        belongs to the caller."""
        if self._owned:
            self.redis.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _zset(self, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        key: str = getattr(self.keys, kind)
        return key

    def _members(self, reply: Any) -> list[str]:
        return sorted(_text(m) for m in reply)

    # -- processes, queues, totals --------------------------------------------------------------
    def processes(self) -> tuple[Process, ...]:
        """Live processes (their ``<identity>`` hash has not expired), sorted by identity. 2 round trips."""
        identities = self._members(self.redis.smembers(self.keys.processes))
        pipe = self.redis.pipeline(transaction=False)
        self._ask_processes(pipe, identities)
        return self._read_processes(identities, iter(pipe.execute()), payload.now())

    def queues(self) -> tuple[Queue, ...]:
        """Every queue in ``queues``, sorted by name, with size and latency. 2 round trips."""
        names = self._members(self.redis.smembers(self.keys.queues))
        pipe = self.redis.pipeline(transaction=False)
        self._ask_queues(pipe, names)
        return self._read_queues(names, iter(pipe.execute()), payload.now())

    def totals(self) -> Totals:
        """Sidekiq's Stats plus swarmd's in-flight count. 2 round trips."""
        return self._gather(with_processes=False).totals

    def status(self) -> Status:
        """Processes, queues and totals in 2 pipelined round trips, however many there are."""
        return self._gather(with_processes=True)

    def _gather(self, *, with_processes: bool) -> Status:
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(k.processes)
        pipe.smembers(k.queues)
        pipe.smembers(k.swarmd_workers)
        pipe.get(k.stat("processed"))
        pipe.get(k.stat("failed"))
        for key in (k.schedule, k.retry, k.dead):
            pipe.zcard(key)
        raw_procs, raw_queues, raw_workers, processed, failed, scheduled, retries, dead = pipe.execute()
        identities = self._members(raw_procs) if with_processes else []
        names, workers = self._members(raw_queues), self._members(raw_workers)
        pipe = self.redis.pipeline(transaction=False)
        self._ask_processes(pipe, identities)
        self._ask_queues(pipe, names)
        for ident in workers:
            pipe.llen(k.inflight(ident))
        replies = iter(pipe.execute())
        now = payload.now()
        procs = self._read_processes(identities, replies, now)
        queues = self._read_queues(names, replies, now)
        totals = Totals(
            processed=_int(processed) or 0,
            failed=_int(failed) or 0,
            scheduled=int(scheduled),
            retries=int(retries),
            dead=int(dead),
            enqueued=sum(q.size for q in queues),
            in_flight=sum(int(n) for n in replies),
        )
        return Status(procs, queues, totals)

    _PROCESS_FIELDS = ("info", "busy", "beat", "quiet", "rss", "concurrency")

    def _ask_processes(self, pipe: Any, identities: Sequence[str]) -> None:
        for ident in identities:
            pipe.hmget(self.keys.process(ident), list(self._PROCESS_FIELDS))

    def _read_processes(
        self, identities: Sequence[str], replies: Iterator[Any], now: float
    ) -> tuple[Process, ...]:
        found = []
        for ident in identities:
            raw_info, busy, beat, quiet, rss, concurrency = next(replies)
            if raw_info is None:  # the hash expired: the process is gone, a cleanup will SREM it
                continue
            found.append(_process(ident, _json_obj(raw_info), busy, beat, quiet, rss, concurrency, now))
        return tuple(found)

    def _ask_queues(self, pipe: Any, names: Sequence[str]) -> None:
        for name in names:
            pipe.llen(self.keys.queue(name))
            pipe.lindex(self.keys.queue(name), -1)  # the oldest job: Sidekiq's latency

    def _read_queues(self, names: Sequence[str], replies: Iterator[Any], now: float) -> tuple[Queue, ...]:
        found = []
        for name in names:
            size, oldest = int(next(replies)), next(replies)
            latency: float | None = 0.0
            if oldest is not None:
                enqueued = payload.read_timestamp(_json_obj(oldest).get("enqueued_at"))
                latency = (
                    None if enqueued is None or not math.isfinite(enqueued) else max(0.0, now - enqueued)
                )
            found.append(Queue(name, size, latency))
        return tuple(found)

    def busy_jobs(self) -> tuple[BusyJob, ...]:
        """The jobs live processes are running, oldest first (as of their last beat). Reads
        ``<identity>:work``, else ``<identity>:workers`` (what Sidekiq <= 6.4.1 writes). 2 round trips."""
        identities = self._members(self.redis.smembers(self.keys.processes))
        pipe = self.redis.pipeline(transaction=False)
        for ident in identities:
            pipe.exists(self.keys.process(ident))
            pipe.hgetall(self.keys.work(ident))
            pipe.hgetall(self.keys.workers(ident))
        replies = iter(pipe.execute())
        jobs = []
        for ident in identities:
            live, work, old_work = next(replies), next(replies), next(replies)
            if not live:
                continue
            for tid, value in sorted((work or old_work).items()):
                jobs.append(_busy_job(ident, _text(tid), value))
        far = dt.datetime.max.replace(tzinfo=dt.UTC)
        return tuple(sorted(jobs, key=lambda j: j.run_at or far))

    def history(self, days: int = 30, *, today: dt.date | None = None) -> tuple[DayStats, ...]:
        """Jobs processed and failed per day (UTC), today first, from ``stat:*:YYYY-MM-DD``. One MGET."""
        if days < 1:
            raise ValueError(f"days: expected an integer >= 1, got {days}")
        start = today or dt.datetime.now(dt.UTC).date()
        dates = [start - dt.timedelta(days=i) for i in range(days)]
        keys = [self.keys.stat(f"{name}:{d.isoformat()}") for d in dates for name in ("processed", "failed")]
        values = self.redis.mget(keys)
        return tuple(
            DayStats(d, _int(values[2 * i]) or 0, _int(values[2 * i + 1]) or 0) for i, d in enumerate(dates)
        )

    def redis_info(self) -> RedisInfo:
        """What Sidekiq's dashboard shows of Redis (INFO). One round trip."""
        info: dict[str, Any] = self.redis.info()

        def get(name: str) -> str | None:
            value = info.get(name)
            return None if value is None else _text(value)

        return RedisInfo(
            version=get("redis_version") or "?",
            used_memory=_int(info.get("used_memory")),
            used_memory_human=get("used_memory_human"),
            used_memory_peak_human=get("used_memory_peak_human"),
            connected_clients=_int(info.get("connected_clients")),
            uptime_s=_int(info.get("uptime_in_seconds")),
            maxmemory_policy=get("maxmemory_policy"),
        )

    # -- metrics -----------------------------------------------------------------------------------
    def metrics_snapshot(self) -> MetricsSnapshot:
        """Everything ``/metrics`` exposes in 2 pipelined round trips, whatever the number of
        processes, queues and job classes: totals, set sizes, each queue's size and latency, each
        process, the per-class totals (``swarmd:metrics``), restarts and recovered/poison counts."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(k.processes)
        pipe.smembers(k.queues)
        pipe.get(k.stat("processed"))
        pipe.get(k.stat("failed"))
        for key in (k.schedule, k.retry, k.dead):
            pipe.zcard(key)
        pipe.hgetall(k.job_totals)
        pipe.hgetall(k.restarts)
        pipe.hgetall(k.recovery)
        raw_procs, raw_queues, processed, failed, scheduled, retries, dead, totals, restarts, recovery = (
            pipe.execute()
        )
        identities, names = self._members(raw_procs), self._members(raw_queues)
        pipe = self.redis.pipeline(transaction=False)
        self._ask_processes(pipe, identities)
        self._ask_queues(pipe, names)
        replies = iter(pipe.execute())
        now = payload.now()
        procs = self._read_processes(identities, replies, now)
        queues = self._read_queues(names, replies, now)
        status = Status(
            procs,
            queues,
            Totals(
                processed=_int(processed) or 0,
                failed=_int(failed) or 0,
                scheduled=int(scheduled),
                retries=int(retries),
                dead=int(dead),
                enqueued=sum(q.size for q in queues),
                in_flight=0,  # not read here: one LLEN per worker would not be a bounded scrape
            ),
        )
        counts = {_text(key): _int(value) or 0 for key, value in recovery.items()}
        return MetricsSnapshot(
            status=status,
            classes=_class_totals(totals),
            restarts={_text(key): _int(value) or 0 for key, value in restarts.items()},
            recovered=counts.get("recovered", 0),
            poisoned=counts.get("poison", 0),
        )

    def job_metrics(
        self, hours: int = 1, *, now: float | None = None, histograms: int = 50
    ) -> JobMetricsReport:
        """Per-class runs, failures, time and p50/p95 over the last ``hours`` (1 to 72), from Sidekiq's
        metrics hashes: per minute for 1 hour, per 10 minutes beyond. Two round trips: one for the
        hashes of the window, one for its 10-minute histograms (one hash per window holds every
        class); the ``histograms`` busiest classes get percentiles."""
        if not 1 <= hours <= 72:
            raise ValueError(f"hours: expected an integer from 1 to 72, got {hours}")
        now = time_now() if now is None else now
        step = 60 if hours == 1 else 600
        count = hours * 3600 // step
        start = (now // step - count + 1) * step
        times = [start + i * step for i in range(count)]
        key_of = self.keys.metrics_minute if step == 60 else self.keys.metrics_ten
        pipe = self.redis.pipeline(transaction=False)
        for t in times:
            pipe.hgetall(key_of(t))
        per_class: dict[str, list[int]] = {}  # name -> [p, f, ms]
        series: dict[str, list[int]] = {}
        for index, fields in enumerate(pipe.execute()):
            for raw_field, raw_value in fields.items():
                name, _, metric = _text(raw_field).rpartition("|")
                value = _int(raw_value)
                slot = {"p": 0, "f": 1, "ms": 2}.get(metric)
                if not name or slot is None or value is None:
                    continue
                per_class.setdefault(name, [0, 0, 0])[slot] += value
                if slot == 0:
                    series.setdefault(name, [0] * count)[index] += value
        ranked = sorted(per_class, key=lambda n: (-per_class[n][0], n))
        chosen = ranked[: max(0, histograms)]
        first, last = int(now - hours * 3600) // 600 * 600, int(now) // 600 * 600
        ten_times = range(first + 600, last + 600, 600)  # the windows that overlap the last `hours`
        wanted = set(chosen)
        grams: dict[str, list[int]] = {}
        if chosen:
            pipe = self.redis.pipeline(transaction=False)
            for t in ten_times:
                pipe.hgetall(self.keys.histograms_ten(t))
            for reply in pipe.execute(raise_on_error=False):
                if not isinstance(reply, dict):  # an error (a key of another type): no histogram
                    continue
                for raw_field, raw_value in reply.items():
                    name, _, bucket = _text(raw_field).rpartition("|")
                    runs = _int(raw_value)
                    if name in wanted and bucket.isdigit() and int(bucket) < metrics.BUCKETS and runs:
                        grams.setdefault(name, [0] * metrics.BUCKETS)[int(bucket)] += max(0, runs)
        classes = []
        for name in ranked:
            p, f, ms = per_class[name]
            gram = grams.get(name, [0] * metrics.BUCKETS) if name in wanted else None
            classes.append(
                ClassMetrics(
                    name=name,
                    runs=p,
                    failures=f,
                    total_ms=ms,
                    p50_ms=None if gram is None else metrics.percentile_ms(gram, 0.50),
                    p95_ms=None if gram is None else metrics.percentile_ms(gram, 0.95),
                    series=tuple(series.get(name, [0] * count)),
                    buckets=None if gram is None else tuple(gram),
                )
            )
        return JobMetricsReport(
            hours, step, tuple(dt.datetime.fromtimestamp(t, dt.UTC) for t in times), tuple(classes)
        )

    def search_page(
        self,
        kind: Kind,
        job_class: str | None = None,
        text: str | None = None,
        *,
        cursor: int = 0,
        limit: int = 25,
        max_steps: int = 10,
        count: int = SCAN_COUNT,
    ) -> SearchResult:
        """`search` steps from ``cursor`` until ``limit`` matches, the end of the set, or ``max_steps``
        ZSCAN steps (a bounded cost per web request); call again with the returned cursor."""
        found: list[Entry] = []
        for _ in range(max(1, max_steps)):
            result = self.search(kind, job_class, text, cursor=cursor, count=count)
            found += [e for e in result.entries if e not in found]
            cursor = result.cursor
            if cursor == 0 or len(found) >= limit:
                break
        found.sort(key=lambda e: e.score or 0.0, reverse=kind == "dead")
        return SearchResult(tuple(found), cursor)

    # -- sorted sets and queues -----------------------------------------------------------------
    def page(self, kind: Kind, offset: int = 0, limit: int = 25) -> Page:
        """Entries ``offset`` .. ``offset + limit - 1`` of a set and its size, in one MULTI: `dead`
        newest first, `retry` and `schedule` soonest first (as Sidekiq's Web UI). ``limit`` is clamped
        to `MAX_PAGE`."""
        key = self._zset(kind)
        offset, limit = _window(offset, limit)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zcard(key)
        pipe.zrange(key, offset, offset + limit - 1, desc=kind == "dead", withscores=True)
        total, items = pipe.execute()
        return Page(tuple(Entry.parse(kind, raw, score) for raw, score in items), int(total), offset, limit)

    def queue_page(self, name: str, offset: int = 0, limit: int = 25, *, oldest_first: bool = False) -> Page:
        """Jobs of queue ``name``, newest first (the Web UI's default; ``oldest_first``: the next to run
        first), in one MULTI. `NotFound` when the list is empty and ``name`` is not in ``queues``."""
        key = self.keys.queue(name)
        offset, limit = _window(offset, limit)
        pipe = self.redis.pipeline(transaction=True)
        pipe.llen(key)
        if oldest_first:
            pipe.lrange(key, -offset - limit, -offset - 1)
        else:
            pipe.lrange(key, offset, offset + limit - 1)
        pipe.sismember(self.keys.queues, name)
        total, items, known = pipe.execute()
        if not total and not known:
            raise NotFound(f"no queue named {name!r}")
        if oldest_first:
            items.reverse()
        return Page(tuple(Entry.parse("queue", raw) for raw in items), int(total), offset, limit)

    def search(
        self,
        kind: Kind,
        job_class: str | None = None,
        text: str | None = None,
        *,
        jid: str | None = None,
        cursor: int = 0,
        count: int = SCAN_COUNT,
    ) -> SearchResult:
        """One ZSCAN step over a set (about ``count`` members looked at, filtered by Redis with MATCH),
        keeping entries whose class (or ActiveJob ``wrapped`` class) is ``job_class``, whose args,
        kwargs or error message contain ``text`` (case-sensitive; for an undecodable entry, its bytes)
        and whose jid is ``jid``. Sorted as `page` sorts. Call again with the returned cursor until it
        is 0: the bounded way for a web page to look for a jid (`find` walks whole sets at once)."""
        key = self._zset(kind)
        if cursor < 0:
            raise ValueError(f"cursor: expected an integer >= 0, got {cursor}")
        count = max(1, min(count, MAX_SCAN_COUNT))
        pattern = "*"
        for literal in (jid, text, job_class):  # the most selective one Redis can match byte for byte
            if literal and _literal_in_json(literal):
                pattern = _glob(literal)
                break
        reply: Any = self.redis.zscan(key, cursor, match=pattern, count=count)
        next_cursor, items = reply
        entries = [Entry.parse(kind, raw, score) for raw, score in items]
        kept = [e for e in entries if _matches(e, job_class, text) and (jid is None or e.jid == jid)]
        kept.sort(key=lambda e: e.score or 0.0, reverse=kind == "dead")
        return SearchResult(tuple(kept), int(next_cursor))

    def find(
        self, jid: str, *, kinds: Iterable[Kind] = KINDS, queues: bool = False, busy: bool = False
    ) -> list[Found]:
        """Every place job ``jid`` is in: the sets ``kinds`` (ZSCAN MATCH on the jid, then an exact
        compare, as Sidekiq's ``find_job``; the sets are scanned together, one pipelined step per
        round trip), then with ``queues`` every queue (LRANGE in chunks of `LIST_CHUNK`), then with
        ``busy`` the jobs running on live processes. An empty list when it is nowhere.

        This walks whole sets: its cost grows with their size (about a second per 100,000 entries on
        a small machine, mostly Redis's ZSCAN), like Sidekiq's ``find_job``. It is for `swarmctl`; a
        web page looks for a jid with `search` (``jid=``), one bounded step per request, or addresses
        an entry by its `Entry.key` (`entry`)."""
        if not jid:
            return []
        kinds = list(kinds)
        for kind in kinds:
            self._zset(kind)  # a ValueError for an unknown one
        found: list[Found] = []
        for kind, entry in self._scan_sets(kinds, jid):
            found.append(Found(kind, entry))
        if queues:
            found += self._scan_queues(jid)
        if busy:
            found += [Found("busy", b.job, busy=b) for b in self.busy_jobs() if b.job.jid == jid]
        return found

    def _scan_sets(self, kinds: Sequence[Kind], jid: str) -> Iterator[tuple[Kind, Entry]]:
        pattern = _glob(jid) if _literal_in_json(jid) else "*"
        cursors: dict[Kind, int] = dict.fromkeys(kinds, 0)
        hits: dict[Kind, list[Entry]] = {k: [] for k in kinds}
        while cursors:
            pipe = self.redis.pipeline(transaction=False)
            pending = list(cursors)
            for kind in pending:
                pipe.zscan(self._zset(kind), cursors[kind], match=pattern, count=SCAN_COUNT)
            for kind, (cursor, items) in zip(pending, pipe.execute(), strict=True):
                for raw, score in items:
                    if _json_obj(raw).get("jid") == jid:
                        entry = Entry.parse(kind, raw, score)
                        if entry not in hits[kind]:  # ZSCAN may repeat a member
                            hits[kind].append(entry)
                if int(cursor) == 0:
                    del cursors[kind]
                else:
                    cursors[kind] = int(cursor)
        for kind in kinds:
            for entry in hits[kind]:
                yield kind, entry

    def _scan_queues(self, jid: str) -> list[Found]:
        names = self._members(self.redis.smembers(self.keys.queues))
        needle = jid.encode() if _literal_in_json(jid) else b""
        found: list[Found] = []
        starts = dict.fromkeys(names, 0)
        while starts:
            pipe = self.redis.pipeline(transaction=False)
            pending = list(starts)
            for name in pending:
                pipe.lrange(self.keys.queue(name), starts[name], starts[name] + LIST_CHUNK - 1)
            for name, items in zip(pending, pipe.execute(), strict=True):
                for raw in items:
                    if needle in raw and _json_obj(raw).get("jid") == jid:
                        hit = Found("queue", Entry.parse("queue", raw), queue=name)
                        if hit not in found:  # an LPUSH meanwhile shifts the list: seen again
                            found.append(hit)
                if len(items) < LIST_CHUNK:
                    del starts[name]
                else:
                    starts[name] += LIST_CHUNK
        return found

    def entry(self, kind: Kind, key: str) -> Entry:
        """The entry of a set whose `Entry.key` is ``key`` (``"<score>-<jid>"``, Sidekiq's Web UI's
        key). Reads only the members with that score. `NotFound` when there is none."""
        zset = self._zset(kind)
        match = _KEY.fullmatch(key)
        score = float(match.group(1)) if match else None  # +-inf too: a score Redis can hold
        if score is None:
            raise NotFound(f"no {kind} entry {key!r:.80} (expected <score>-<jid>)")
        start = 0
        while True:
            items: Any = self.redis.zrangebyscore(
                zset, repr(score), repr(score), start, BATCH, withscores=True
            )
            for raw, member_score in items:
                entry = Entry.parse(kind, raw, member_score)
                if entry.key == key:
                    return entry
            if len(items) < BATCH:
                raise NotFound(f"no {kind} entry {key!r:.80}")
            start += BATCH

    # -- actions on sorted-set entries ------------------------------------------------------------
    def retry_now(self, kind: Kind, entries: Sequence[Entry]) -> Outcome:
        """Sidekiq's "Retry Now": each entry goes to its queue with a fresh ``enqueued_at`` and, when it
        has one, ``retry_count`` decremented (the manual attempt does not use up a retry); it keeps
        its jid. Each moves only if this call removed it from the set (``lua/schedule.lua``)."""
        return self._to_queues(self._zset(kind), entries, decrement=True)

    def add_to_queue(self, entries: Sequence[Entry]) -> Outcome:
        """Sidekiq's "Add to queue" for `schedule` entries: run them now, unchanged but for a fresh
        ``enqueued_at``; each only if this call removed it."""
        return self._to_queues(self.keys.schedule, entries, decrement=False)

    def _to_queues(self, zset: str, entries: Sequence[Entry], *, decrement: bool) -> Outcome:
        outcome = Outcome()
        for start in range(0, len(entries), BATCH):
            moves: list[tuple[bytes, bytes | None, str]] = []
            bad = 0
            for entry in entries[start : start + BATCH]:
                if entry.data is None:
                    bad += 1
                    continue
                data = dict(entry.data)
                count = data.get("retry_count")
                if decrement and isinstance(count, int) and not isinstance(count, bool):
                    data["retry_count"] = count - 1
                try:
                    job = payload.encode(payload.for_queue(data))
                except ValueError:  # a number like 1e400 decodes as inf, which JSON cannot carry back
                    bad += 1
                    continue
                moves.append((entry.raw, job, payload.Job(entry.raw, entry.data).queue))
            moved = self.scripts.schedule(zset, moves, payload.now())
            outcome += Outcome(moved, len(moves) - moved, bad)
        return outcome

    def delete(self, kind: Kind, entries: Sequence[Entry]) -> Outcome:
        """ZREM the entries (undecodable ones too); ``gone``: those no longer there."""
        zset = self._zset(kind)
        outcome = Outcome()
        for start in range(0, len(entries), BATCH):
            batch = entries[start : start + BATCH]
            members = [e.raw for e in batch]
            if any(_lock(e.data) for e in batch):
                removed = self._delete_unique(zset, batch)
            else:
                removed = int(self.redis.zrem(zset, *members))
            outcome += Outcome(removed, len(members) - removed)
        return outcome

    def _delete_unique(self, zset: str, entries: Sequence[Entry]) -> int:
        """ZREM each entry on its own, then release the unique lock (`swarmd.unique`) of each one this
        call removed: a deleted job no longer holds back identical ones."""
        pipe = self.redis.pipeline(transaction=False)
        for e in entries:
            pipe.zrem(zset, e.raw)
        removed = [bool(n) for n in pipe.execute()]
        locks = [lock for e, gone in zip(entries, removed, strict=True) if gone and (lock := _lock(e.data))]
        self.scripts.unlock(locks)
        return sum(removed)

    def kill(self, entries: Sequence[Entry]) -> Outcome:
        """Sidekiq's "Kill": move `retry` or `schedule` entries (their `Entry.kind`) to `dead`
        unchanged, each only if this call removed it (``lua/kill.lua``); `dead` is then trimmed to
        ``dead_max_jobs`` and ``dead_timeout``."""
        if others := {e.kind for e in entries} - {"retry", "schedule"}:
            raise ValueError(f"kill: entries must come from retry or schedule, not {sorted(others)}")
        outcome = Outcome()
        for kind in ("retry", "schedule"):
            chosen = [e.raw for e in entries if e.kind == kind]
            outcome += self._kill(self._zset(kind), chosen)
        return outcome

    def _kill(self, zset: str, members: Sequence[bytes]) -> Outcome:
        outcome = Outcome()
        locks = {
            raw: lock
            for raw in members
            if b"unique_key" in raw and (lock := _lock(Entry.parse("", raw).data))
        }
        if locks:  # each unique job on its own: its lock goes only if this call moved it to `dead`
            members = [raw for raw in members if raw not in locks]
            for raw, lock in locks.items():
                now = payload.now()
                moved = self.scripts.kill(
                    zset, [raw], now, dead_cutoff=now - self.dead_timeout, dead_max_jobs=self.dead_max_jobs
                )
                if moved:
                    self.scripts.unlock([lock])
                outcome += Outcome(moved, 1 - moved)
        for start in range(0, len(members), BATCH):
            batch = members[start : start + BATCH]
            now = payload.now()
            moved = self.scripts.kill(
                zset, batch, now, dead_cutoff=now - self.dead_timeout, dead_max_jobs=self.dead_max_jobs
            )
            outcome += Outcome(moved, len(batch) - moved)
        return outcome

    def retry_all(self, kind: Kind = "retry") -> Outcome:
        """`retry_now` on every entry of the set, `BATCH` at a time (never the whole set in memory).
        Acts on at most as many entries as the set held when called; undecodable ones stay."""
        zset = self._zset(kind)
        return self._in_batches(zset, lambda batch: self._to_queues(zset, batch, decrement=True), kind)

    def add_all(self) -> Outcome:
        """`add_to_queue` on every entry of `schedule`, `BATCH` at a time; undecodable ones stay."""
        zset = self.keys.schedule
        return self._in_batches(zset, lambda batch: self._to_queues(zset, batch, decrement=False), "schedule")

    def delete_all(self, kind: Kind) -> Outcome:
        """Delete every entry of the set, `BATCH` at a time; at most as many as it held when called."""
        return self._in_batches(self._zset(kind), lambda batch: self.delete(kind, batch), kind)

    def kill_all(self, kind: Kind = "retry") -> Outcome:
        """`kill` every entry of `retry` (or `schedule`), `BATCH` at a time."""
        if kind not in ("retry", "schedule"):
            raise ValueError(f"kill_all: expected retry or schedule, got {kind!r}")
        zset = self._zset(kind)
        return self._in_batches(zset, lambda batch: self._kill(zset, [e.raw for e in batch]), kind)

    def _in_batches(self, zset: str, act: Any, kind: str) -> Outcome:
        budget = int(self.redis.zcard(zset))
        skip = 0  # entries left in place (undecodable) sit at the front: read past them
        outcome = Outcome()
        while budget > 0:
            items: Any = self.redis.zrange(zset, skip, skip + min(BATCH, budget) - 1, withscores=True)
            if not items:
                break
            done: Outcome = act([Entry.parse(kind, raw, score) for raw, score in items])
            outcome += done
            skip += done.undecodable
            budget -= len(items)
        return outcome

    # -- actions on queues and processes ----------------------------------------------------------
    def delete_queue_job(self, queue: str, raw: bytes) -> bool:
        """LREM one job (its exact bytes) from a queue; False when it was no longer there."""
        removed: Any = self.redis.lrem(self.keys.queue(queue), 1, raw)  # type: ignore[arg-type]
        if removed and (lock := _lock(Entry.parse("queue", raw).data)):
            self.scripts.unlock([lock])
        return bool(removed)

    def clear_queue(self, name: str) -> int:
        """Sidekiq's ``Queue#clear``: the list and its ``queues`` member go in one MULTI. Returns how
        many jobs were deleted; `NotFound` for an unknown queue."""
        # The list is renamed aside in the same MULTI (as good as deleted for everyone else), then read
        # in batches for the unique locks its jobs hold (`swarmd.unique`), then unlinked.
        aside = f"{self.keys.queue(name)}:clearing:{payload.new_jid()}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.llen(self.keys.queue(name))
        pipe.rename(self.keys.queue(name), aside)
        pipe.srem(self.keys.queues, name)
        size, _, member = pipe.execute(raise_on_error=False)  # RENAME of a missing key: an error reply
        if not size and not member:
            raise NotFound(f"no queue named {name!r}")
        if size:
            self._release_locks_of_list(aside)
        return int(size)

    def _release_locks_of_list(self, key: str) -> None:
        try:
            for start in range(0, 1 << 62, BATCH):
                raws: Any = self.redis.lrange(key, start, start + BATCH - 1)
                locks = [
                    lock
                    for raw in raws
                    if b"unique_key" in raw and (lock := _lock(Entry.parse("q", raw).data))
                ]
                self.scripts.unlock(locks)
                if len(raws) < BATCH:
                    break
        finally:
            self.redis.unlink(key)

    def queue_size(self, name: str) -> int:
        """LLEN of a queue; `NotFound` when it is empty and not in ``queues``."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self.keys.queue(name))
        pipe.sismember(self.keys.queues, name)
        size, known = pipe.execute()
        if not size and not known:
            raise NotFound(f"no queue named {name!r}")
        return int(size)

    def live_identities(self) -> list[str]:
        """Identities in ``processes`` whose ``<identity>`` hash still exists, sorted. 2 round trips."""
        identities = self._members(self.redis.smembers(self.keys.processes))
        pipe = self.redis.pipeline(transaction=False)
        for ident in identities:
            pipe.exists(self.keys.process(ident))
        return [i for i, live in zip(identities, pipe.execute(), strict=True) if live]

    def quiet(self, identity: str | None = None) -> list[str]:
        """Sidekiq's Quiet: TSTP to one live process (None: every live one), which stops fetching at
        its next beat. Returns the identities signalled; `NotFound` for a process that is not live."""
        return self._signal("TSTP", identity)

    def stop(self, identity: str | None = None) -> list[str]:
        """Sidekiq's Stop: TERM, obeyed at the process's next beat. As `quiet`."""
        return self._signal("TERM", identity)

    def _signal(self, signal: str, identity: str | None) -> list[str]:
        """LPUSH to ``<identity>-signals`` with a TTL; the process pops one entry at each beat."""
        live = self.live_identities()
        if identity is not None and identity not in live:
            raise NotFound(f"no live process {identity!r}")
        targets = live if identity is None else [identity]
        if targets:
            pipe = self.redis.pipeline(transaction=True)
            for ident in targets:
                pipe.lpush(self.keys.signals(ident), signal)
                pipe.expire(self.keys.signals(ident), SIGNAL_TTL)
            pipe.execute()
        return targets

    # -- periodic jobs -----------------------------------------------------------------------------
    def periodic(self) -> list[periodic_jobs.Listed]:
        """Every periodic entry the workers published, with its last and next tick, soonest first."""
        return periodic_jobs.listing(self.redis, self.keys)


def _lock(data: dict[str, Any] | None) -> tuple[str, str] | None:
    """The unique lock (digest, jid) a job holds, if it is a unique job (`swarmd.unique`)."""
    return unique.lock_of(data) if data is not None and unique.FIELD in data else None


# -- helpers that read records ---------------------------------------------------------------------
def time_now() -> float:
    return payload.now()


def _class_totals(fields: Mapping[Any, Any]) -> tuple[ClassTotals, ...]:
    """``swarmd:metrics`` (``<class>|p``, ``|f``, ``|us``, ``|b<i>``, ``|o``) as one `ClassTotals` per
    class."""
    found: dict[str, dict[str, int]] = {}
    for raw_field, raw_value in fields.items():
        name, _, metric = _text(raw_field).rpartition("|")
        value = _int(raw_value)
        if name and value is not None:
            found.setdefault(name, {})[metric] = value
    out = []
    for name in sorted(found):
        values = found[name]
        buckets = tuple(max(0, values.get(f"b{i}", 0)) for i in range(metrics.BUCKETS))
        out.append(
            ClassTotals(
                name,
                values.get("p", 0),
                values.get("f", 0),
                values.get("us", 0) / 1_000_000,
                buckets,
                values.get("o", 0),
            )
        )
    return tuple(out)


def _window(offset: int, limit: int) -> tuple[int, int]:
    if offset < 0:
        raise ValueError(f"offset: expected an integer >= 0, got {offset}")
    if limit < 1:
        raise ValueError(f"limit: expected an integer >= 1, got {limit}")
    return offset, min(limit, MAX_PAGE)


def _matches(entry: Entry, job_class: str | None, text: str | None) -> bool:
    if job_class is not None and job_class not in (entry.job_class, entry.wrapped):
        return False
    if not text:
        return True
    if entry.data is None:
        return text in entry.raw.decode(errors="replace")
    haystacks = [entry.error_message or ""]
    for value in (entry.args, entry.kwargs):
        if value:  # as JSON (`"id": 5`), and each string as it is (a quote is not escaped there)
            haystacks.append(json.dumps(value, ensure_ascii=False))
            haystacks += _strings(value)
    return any(text in h for h in haystacks)


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:  # no recursion: a decoded job may nest deeper than Python recurses
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]


def _queues_of(info: Mapping[str, Any]) -> tuple[str, ...]:
    """``info.queues``, else the queues of ``info.capsules.default.weights`` (Sidekiq 8.0.9+)."""
    queues = info.get("queues")
    if not isinstance(queues, list):
        try:
            weights = info["capsules"]["default"]["weights"]
        except (KeyError, TypeError):
            return ()
        queues = list(weights) if isinstance(weights, dict) else []
    return tuple(q if isinstance(q, str) else json.dumps(q) for q in queues)


def _process(
    ident: str, info: dict[str, Any], busy: Any, beat: Any, quiet: Any, rss: Any, concurrency: Any, now: float
) -> Process:
    beat_s = _float(beat)
    labels = info.get("labels")
    pid = info.get("pid")
    return Process(
        identity=ident,
        hostname=_str(info.get("hostname")) or ident.split(":", 1)[0],
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        tag=_str(info.get("tag")) or "",
        queues=_queues_of(info),
        concurrency=_int(concurrency) if concurrency else _int(info.get("concurrency")),
        busy=_int(busy) or 0,
        rss_kb=_int(rss),
        started_at=_timestamp(info.get("started_at")),
        beat_at=_when(beat_s),
        beat_age_s=None if beat_s is None else max(0.0, now - beat_s),
        quiet=quiet == b"true",
        version=_str(info.get("version")),
        labels=tuple(x for x in labels if isinstance(x, str)) if isinstance(labels, list) else (),
    )


def _busy_job(ident: str, tid: str, value: Any) -> BusyJob:
    work = _json_obj(value)
    job = work.get("payload")
    if isinstance(job, str):  # swarmd and Sidekiq >= 6.4.2: the job's JSON as a string
        raw = job.encode(errors="surrogatepass")
    elif isinstance(job, dict):  # Sidekiq <= 6.4.1: the job as an object
        raw = payload.encode(job)
    else:
        raw = b""
    return BusyJob(
        ident, tid, _str(work.get("queue")), Entry.parse("busy", raw), _timestamp(work.get("run_at"))
    )
