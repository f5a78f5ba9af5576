"""The Redis scripts under ``swarmd/lua``: loaded once per client, one typed method each.

This module is the only code that knows the scripts' KEYS and ARGV layouts; callers pass identities,
queue names and raw jobs, never key lists. Each script's own header comment says what it guarantees
(every one of them removes an entry with LREM/ZREM first and acts only if that removed it), and
``docs/redis-layout.md`` lists the keys.

One `Scripts` object per Redis client: it reads every script's source once per process and calls it
by SHA (EVALSHA), loading it on a NOSCRIPT reply (after a Redis restart or a failover to a server that
never saw it) and sending the call again. That is safe because NOSCRIPT means the script did not run.

One bad entry never blocks a batch: when a batch call of `push_back`, `schedule` or `recover` fails
with an error that is not Redis's (redis-py refusing to encode a key name, say), the entries are sent
again one at a time, and the one that fails again goes to `dead` unchanged (one ERROR line). Sending
again is safe: every script removes an entry with LREM/ZREM first and acts only if that removed it, so
an entry that did move in the failed call is skipped.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from swarmd import connection
from swarmd.keys import STATS_TTL, Keys

if TYPE_CHECKING:
    from redis.commands.core import Script

    from swarmd.connection import Redis

__all__ = ["Claim", "Fate", "Fetched", "Grant", "Recovered", "Rescue", "Scripts", "UniquePush", "push_unique"]

log = logging.getLogger("swarmd")

T = TypeVar("T")

Fate = Literal["dead", "quarantine", "count", "requeue"]
"""Where `Scripts.recover` sends one job of a dead worker's list (see ``lua/recover.lua``)."""


class Rescue(NamedTuple):
    """One job of a dead worker's list, as `Scripts.recover` takes it."""

    raw: bytes  # as it is in the list
    fate: Fate
    counter: str  # its counter id (the jid, or a digest of its bytes): crashes or vanishings
    poison: bytes = b""  # the job as it goes to `dead` if this crash makes it poison (fate "count")
    queue: str = ""  # where it goes back to (fate "requeue")


NAMES: tuple[str, ...] = ("fetch", "fail", "pushback", "schedule", "recover", "leave", "kill")
NAMES = (*NAMES, "periodic", "unique", "unlock")  # periodic and unique jobs (the end of `Scripts`)
LIMIT_NAMES = ("limit_concurrent", "limit_window", "limit_bucket", "overlimit")  # swarmd.limiter's


@functools.cache
def source(name: str) -> str:
    """The text of ``swarmd/lua/<name>.lua`` (read once per process)."""
    return resources.files("swarmd").joinpath("lua", f"{name}.lua").read_text()


@dataclass(frozen=True)
class Fetched:
    """What one `Scripts.fetch` call moved: (queue index, raw job) pairs, and the queues it had to
    skip because their key is not a list: (queue index, Redis's error)."""

    jobs: list[tuple[int, bytes]]
    broken: list[tuple[int, str]]


@dataclass(frozen=True)
class Recovered:
    """What one `Scripts.recover` call did."""

    quarantined: int  # to the quarantine list
    poisoned: int  # to `dead` as poison
    unchanged: int  # undecodable: to `dead` unchanged
    requeued: int = 0  # back to their queues (a worker that vanished unseen)

    @property
    def moved(self) -> int:
        return self.quarantined + self.poisoned + self.unchanged + self.requeued

    def __add__(self, other: Recovered) -> Recovered:
        return Recovered(
            self.quarantined + other.quarantined,
            self.poisoned + other.poisoned,
            self.unchanged + other.unchanged,
            self.requeued + other.requeued,
        )


class Grant(NamedTuple):
    """A limiter script's answer: whether it granted, Redis's clock (epoch ms) and, when it refused,
    about how many ms until it could grant."""

    granted: bool
    now_ms: int
    wait_ms: int = 0

    @classmethod
    def of(cls, reply: Any) -> Grant:
        granted, now = bool(int(reply[0])), int(reply[1])
        return cls(granted, now, max(0, int(reply[2])) if len(reply) > 2 else 0)


def crash_id(raw: bytes) -> str:
    """The crash counter id of a job without a usable jid: a digest of its bytes."""
    return hashlib.sha1(raw).hexdigest()


class Scripts:
    """Every Lua script of swarmd, bound to one Redis client and one namespace."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        # register_script computes the SHA locally and sends nothing; redis-py's Script.__call__ is
        # EVALSHA with the NOSCRIPT fallback (SCRIPT LOAD, then EVALSHA again).
        self._scripts: dict[str, Script] = {
            name: redis.register_script(source(name)) for name in (*NAMES, *LIMIT_NAMES)
        }

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self._scripts[name](keys=list(keys), args=list(args))

    # -- the worker's private list --------------------------------------------------------------
    def fetch(
        self,
        identity: str,
        queues: Sequence[str],
        want: int,
        acks: Sequence[bytes],
        now: float | None = None,
        *,
        quarantine: bool = False,
        shares: Sequence[int] = (),
    ) -> Fetched:
        """Ack ``acks`` (LREM from the private list, counted as processed) and move up to ``want`` jobs
        from ``queues`` (tried in this order) into it. ``shares`` (one per queue): how many to take
        from each queue first, the rest then as above. ``quarantine``: take them from the quarantine
        list instead (``queues`` is ignored; index 0 in the result). A queue whose key is not a list is
        skipped and reported in `Fetched.broken` (index, error), so it cannot starve the others."""
        k = self.keys
        keys = [k.inflight(identity), k.stat("processed"), k.stat_daily("processed", now)]
        keys += [k.quarantine] if quarantine else [k.queue(name) for name in queues]
        if shares and (quarantine or len(shares) != len(queues)):
            raise ValueError("fetch: one share per queue")
        reply = self._run("fetch", keys, [want, STATS_TTL, len(shares), *shares, *acks])
        fetched = Fetched([], [])
        for i in range(0, len(reply), 2):
            index = int(reply[i])
            if index < 0:
                error = reply[i + 1]
                fetched.broken.append(
                    (-1 - index, error.decode(errors="replace") if isinstance(error, bytes) else str(error))
                )
            else:
                fetched.jobs.append((index, reply[i + 1]))
        return fetched

    def push_back(
        self,
        identity: str,
        jobs: Sequence[tuple[bytes, str | None]],
        now: float,
        *,
        quarantine: bool = False,
    ) -> int:
        """Move (raw job, queue) pairs from the private list back to the head of their queues; a job
        whose queue is None or "" (undecodable) goes to `dead` unchanged, scored ``now``. With
        ``quarantine`` every other job goes to the head of the quarantine list instead. Returns how
        many moved (an entry no longer in the list is skipped)."""
        if not jobs:
            return 0

        def call(batch: Sequence[tuple[bytes, str | None]]) -> int:
            k = self.keys
            keys = [k.inflight(identity), k.dead]
            keys += [
                (k.quarantine if quarantine else k.queue(queue)) if queue else k.dead for _, queue in batch
            ]
            moved: int = self._run("pushback", keys, [now, *(raw for raw, _ in batch)])
            return moved

        return _batch_or_each(
            "push back", jobs, call, lambda job: (job[0], None), lambda job: job[0], sum_ints
        )

    def fail(
        self,
        identity: str,
        raw: bytes,
        stored: bytes,
        mode: str,
        score: float,
        *,
        dead_cutoff: float = 0.0,
        dead_max_jobs: int = 0,
        now: float | None = None,
        unique: tuple[str, str] | None = None,
    ) -> bool:
        """Take ``raw`` out of the private list and store ``stored`` in `retry` (``mode`` "retry") or
        `dead` ("dead": then drop entries scored below ``dead_cutoff`` and keep at most
        ``dead_max_jobs``), or nowhere ("drop"); count it as processed and failed. False when ``raw``
        was no longer in the private list (nothing was done). ``unique``: the job's (lock digest, jid),
        released when the job goes to `dead` or is dropped."""
        k = self.keys
        keys = [
            k.inflight(identity),
            k.retry if mode == "retry" else k.dead,
            k.stat("processed"),
            k.stat_daily("processed", now),
            k.stat("failed"),
            k.stat_daily("failed", now),
        ]
        args: list[Any] = [raw, stored, score, STATS_TTL, mode]
        if mode == "dead":
            args += [dead_cutoff, dead_max_jobs]
        if unique is not None:
            keys.append(k.unique(unique[0]))
            args.append(unique[1])
        return bool(self._run("fail", keys, args))

    def leave(self, identity: str) -> bool:
        """A clean exit: out of `processes`, busy hashes and liveness key deleted; out of swarmd's
        registry only if the private list is empty. Returns whether it was."""
        k = self.keys
        keys = [
            k.processes,
            k.work(identity),
            k.workers(identity),
            k.alive(identity),
            k.swarmd_workers,
            k.inflight(identity),
        ]
        return bool(self._run("leave", keys, [identity]))

    # -- sorted sets ------------------------------------------------------------------------------
    def schedule(self, zset: str, entries: Sequence[tuple[bytes, bytes | None, str]], now: float) -> int:
        """Move members of ``zset`` to their queues, each only if this call's ZREM removed it.

        ``entries``: (member as read, the job as it goes into its queue, queue name); a job of None
        moves the member to `dead` unchanged (it cannot be decoded). Returns how many moved."""
        if not entries:
            return 0

        def call(batch: Sequence[tuple[bytes, bytes | None, str]]) -> int:
            k = self.keys
            keys = [zset, k.queues, k.dead]
            args: list[Any] = [now]
            for member, job, queue in batch:
                keys.append(k.dead if job is None else k.queue(queue))
                args += [member, member if job is None else job, queue]
            moved: int = self._run("schedule", keys, args)
            return moved

        return _batch_or_each(
            f"move due jobs from {zset}",
            entries,
            call,
            lambda entry: (entry[0], None, ""),
            lambda entry: entry[0],
            sum_ints,
        )

    def kill(
        self, zset: str, members: Sequence[bytes], now: float, *, dead_cutoff: float, dead_max_jobs: int
    ) -> int:
        """Move ``members`` of ``zset`` (`retry` or `schedule`) to `dead` unchanged, scored ``now``, each
        only if this call's ZREM removed it; then drop entries of `dead` scored below ``dead_cutoff``
        and keep at most ``dead_max_jobs``. Returns how many moved."""
        if not members:
            return 0
        moved: int = self._run("kill", [zset, self.keys.dead], [now, dead_cutoff, dead_max_jobs, *members])
        return moved

    # -- recovery ---------------------------------------------------------------------------------
    def recover(
        self,
        identity: str,
        jobs: Sequence[Rescue],
        *,
        force: bool,
        crash_ttl: int,
        poison_crashes: int,
        vanish_limit: int,
        now: float,
    ) -> Recovered | None:
        """Move a dead worker's jobs out of its private list, each to its fate (`Rescue`). Once the list
        is empty, the worker leaves swarmd's registry and Sidekiq's process records go. Without
        ``force`` nothing happens while the worker's liveness key exists: returns None then."""

        def call(batch: Sequence[Rescue]) -> Recovered | None:
            k = self.keys
            keys = [k.inflight(identity), k.alive(identity), k.dead, k.swarmd_workers, k.quarantine]
            keys += [k.processes, k.process(identity), k.work(identity), k.workers(identity), k.recovery]
            args: list[Any] = [identity, "1" if force else "0", crash_ttl, poison_crashes, now, vanish_limit]
            for job in batch:
                if job.fate == "requeue":
                    keys += [k.queue(job.queue), k.vanished(job.counter)]
                else:  # the first key is not read for these fates
                    keys += [k.quarantine, k.crashes(job.counter)]
                args += [job.raw, job.fate, job.poison if job.fate == "count" else b""]
            result = self._run("recover", keys, args)
            if result == -1:
                return None
            return Recovered(int(result[0]), int(result[1]), int(result[2]), int(result[3]))

        def add(a: Recovered | None, b: Recovered | None) -> Recovered | None:
            return None if a is None or b is None else a + b

        return _batch_or_each(
            f"recover the private list of {identity}",
            jobs,
            call,
            lambda job: Rescue(job.raw, "dead", crash_id(job.raw)),
            lambda job: job.raw,
            add,
        )

    # -- limiters (swarmd.limiter) and the over-limit reschedule -----------------------------------
    def limit_concurrent(
        self, name: str, token: str, limit: int, lease_ms: int, *, renew: bool = False
    ) -> Grant:
        """Take (or, with ``renew``, extend) a place of concurrency limiter ``name`` for ``token``."""
        key = self.keys.limiter("concurrent", name)
        mode = "renew" if renew else "acquire"
        return Grant.of(self._run("limit_concurrent", [key], [token, limit, lease_ms, mode]))

    def limit_release(self, name: str, token: str) -> None:
        """Give back ``token``'s place of concurrency limiter ``name`` (nothing if its lease ended)."""
        self.redis.zrem(self.keys.limiter("concurrent", name), token)

    def limit_window(self, name: str, token: str, limit: int, per_ms: int) -> Grant:
        """One grant of window limiter ``name`` (at most ``limit`` in any ``per_ms``)."""
        key = self.keys.limiter("window", name)
        return Grant.of(self._run("limit_window", [key], [limit, per_ms, token]))

    def limit_bucket(self, name: str, limit: int, per_ms: int) -> Grant:
        """One token of bucket limiter ``name`` (size ``limit``, refilled ``limit`` per ``per_ms``)."""
        return Grant.of(self._run("limit_bucket", [self.keys.limiter("bucket", name)], [limit, per_ms]))

    def over_limit(self, identity: str, raw: bytes, stored: bytes, at: float) -> bool:
        """Move ``raw`` from the private list to `schedule` as ``stored``, due at ``at`` (epoch s), only
        if this call removed it; False when it was no longer there (nothing was done)."""
        keys = [self.keys.inflight(identity), self.keys.schedule]
        return bool(self._run("overlimit", keys, [raw, stored, at]))

    # -- periodic jobs ------------------------------------------------------------------------------
    def periodic(self, claims: Sequence[Claim]) -> list[int]:
        """Claim each entry's tick and push its job if this call claimed it (``lua/periodic.lua``), all
        in one round trip. Per claim: 1 pushed, 0 already claimed (nothing done), -1 recorded without a
        push (an entry seen for the first time, or a claim with ``push`` False)."""
        if not claims:
            return []
        k = self.keys
        keys = [k.periodic, k.queues, *(k.queue(c.queue) for c in claims)]
        args: list[Any] = []
        for c in claims:
            args += [c.entry, repr(float(c.tick)), c.raw, c.queue, "1" if c.push else "0"]
        return [int(x) for x in self._run("periodic", keys, args)]

    # -- unique jobs --------------------------------------------------------------------------------
    def unlock(self, locks: Sequence[tuple[str, str]]) -> int:
        """Release unique locks given as (digest, jid), each only if it still holds that jid
        (``lua/unlock.lua``). Returns how many were released."""
        if not locks:
            return 0
        released: int = self._run(
            "unlock", [self.keys.unique(digest) for digest, _ in locks], [jid for _, jid in locks]
        )
        return released


def push_unique(
    redis: Redis,
    keys: Keys,
    entries: Sequence[tuple[str, str, int, bytes, str, float | None]],
    wait: int = 0,
    wait_timeout: float = 1.0,
) -> tuple[list[bool], int | None]:
    """Push unique jobs with ``lua/unique.lua`` (each only if it took its lock), in one round trip;
    with ``wait`` then WAIT for that many replicas on the same connection (a pipeline). Returns whether
    each job was pushed, and the replicas WAIT counted (None without ``wait``). The client's path
    (`swarmd.client` calls it through the hook `swarmd.registry` installs)."""
    script = _unique_script(redis)
    key_list = [keys.queues]
    args: list[Any] = []
    for job in map(UniquePush._make, entries):
        key_list += [keys.unique(job.digest), keys.schedule if job.at is not None else keys.queue(job.queue)]
        args += [job.jid, job.ttl, job.raw, job.queue, "" if job.at is None else repr(float(job.at))]
    if not wait:
        return [bool(int(x)) for x in script(keys=key_list, args=args)], None
    pipe = redis.pipeline(transaction=False)
    script(keys=key_list, args=args, client=pipe)
    pipe.wait(wait, max(1, int(wait_timeout * 1000)))
    pushed, acked = pipe.execute()
    return [bool(int(x)) for x in pushed], int(acked)


_unique_scripts: weakref.WeakKeyDictionary[Any, Script] = weakref.WeakKeyDictionary()


def _unique_script(redis: Redis) -> Script:
    """``lua/unique.lua`` registered on ``redis`` (once per client: no round trip)."""
    script = _unique_scripts.get(redis)
    if script is None:
        script = _unique_scripts[redis] = redis.register_script(source("unique"))
    return script


class UniquePush(NamedTuple):
    """One unique job, as `push_unique` pushes it (given as a plain tuple in this order)."""

    digest: str  # its lock's name (`swarmd.unique.digest`)
    jid: str
    ttl: int  # unique_for, seconds
    raw: bytes
    queue: str
    at: float | None  # None: now (its queue), else its score in `schedule`


class Claim(NamedTuple):
    """One periodic entry's tick, as `Scripts.periodic` claims it."""

    entry: str  # the entry's id
    tick: float  # epoch seconds
    raw: bytes  # the job as it goes into its queue
    queue: str
    push: bool = True  # False: only record the tick (a missed tick older than catch_up)


def sum_ints(a: int, b: int) -> int:
    return a + b


R = TypeVar("R")


def _batch_or_each(
    what: str,
    entries: Sequence[T],
    call: Callable[[Sequence[T]], R],
    unchanged: Callable[[T], T],
    raw_of: Callable[[T], bytes],
    add: Callable[[R, R], R],
) -> R:
    """``call(entries)``; if that fails with an error that is not Redis's, ``call`` for each entry on
    its own, and for an entry that fails again ``call([unchanged(entry)])``, which sends it to `dead`
    unchanged. Results are combined with ``add``. A Redis error is raised as it is: the caller retries."""
    try:
        return call(entries)
    except connection.RedisError:
        raise
    except Exception as exc:
        if not entries:
            raise
        log.warning("%s: %d entries could not be sent (%r); trying one at a time", what, len(entries), exc)
    total: R | None = None
    for entry in entries:
        try:
            result = call([entry])
        except connection.RedisError:
            raise
        except Exception as exc:
            log.error(
                "%s: an entry Redis cannot take (%s) moved to dead unchanged: %.300r",
                what,
                exc,
                raw_of(entry),
            )
            result = call([unchanged(entry)])
        total = result if total is None else add(total, result)
    assert total is not None
    return total
