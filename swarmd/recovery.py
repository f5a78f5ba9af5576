"""Recovery of the private in-flight lists of workers that died, and the poison-job guard.

Who recovers, and when:
- the supervisor, right after it reaps a worker that died (``force=True``: it saw the death);
- every worker, at start and every `recovery_interval`, for each identity in ``swarmd:workers``
  whose liveness key has expired (a killed process whose supervisor died too, a vanished host).

Only one recoverer works on a list at a time (``SET swarmd:recovering:<id> NX EX``), and inside
``lua/recover.lua`` each job is pushed back only if that call's LREM removed it, so even two
recoverers racing past the lock could not push a job twice.

Poison guard: each recovery counts one crash for every job in the list (``swarmd:crashes:<jid>``,
TTL 24 h); a job counted ``POISON_CRASHES`` times goes to `dead` with ``error_class
"swarmd.PoisonJob"`` instead of crashing workers forever. Jobs running beside a poison job are
counted too; they reach the limit only if they shared three crashes with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, cast

from swarmd import connection, payload
from swarmd.errors import POISON_JOB, DecodeError
from swarmd.keys import Keys
from swarmd.scripts import Scripts

log = logging.getLogger("swarmd")

POISON_CRASHES = 3
CRASH_TTL = 24 * 3600
LOCK_TTL = 10  # refreshed after every batch of 100 jobs; a dead recoverer's lock frees quickly


OnPoison = Callable[[dict[str, Any]], None]
"""Called with each job this recovery sent to `dead` as poison (the hash as stored there)."""


def recover_worker(
    scripts: Scripts, identity: str, *, force: bool = False, on_poison: OnPoison | None = None
) -> tuple[int, int] | None:
    """Push a dead worker's in-flight jobs back; return (requeued, sent to dead), or None when
    another recoverer holds the lock (the caller may try again later). ``on_poison`` (the app's
    on_death hooks) is called for each job this call made poison, after it is in `dead`."""
    redis, keys = scripts.redis, scripts.keys
    lock = keys.recovering(identity)
    token = os.urandom(8).hex()
    if not redis.set(lock, token, nx=True, ex=LOCK_TTL):
        return None
    try:
        inflight = keys.inflight(identity)
        requeued = poisoned = 0
        while True:
            raws = cast("list[bytes]", redis.lrange(inflight, -100, -1))
            jobs: list[tuple[bytes, str | None, str, bytes]] = []
            for raw in raws:
                try:
                    job = payload.decode(raw)
                except DecodeError:
                    jobs.append((raw, None, hashlib.sha1(raw).hexdigest(), raw))
                    continue
                poison = dict(job.data)
                payload.record_failure(
                    poison,
                    POISON_JOB,
                    f"in flight in a worker that crashed {POISON_CRASHES} times (last: {identity})",
                )
                jid = job.data.get("jid") or hashlib.sha1(raw).hexdigest()  # no jid: one counter per job
                jobs.append((raw, job.queue, str(jid), payload.encode(poison)))
            result = scripts.recover(
                identity,
                jobs,
                force=force,
                crash_ttl=CRASH_TTL,
                poison_crashes=POISON_CRASHES,
                now=payload.now(),
            )
            if result is None:
                return (requeued, poisoned)  # alive after all (it beat again): nothing to recover
            redis.expire(lock, LOCK_TTL)
            requeued += result.requeued
            poisoned += result.poisoned
            if result.poisoned and on_poison is not None:
                _report_poison(scripts, jobs, on_poison)
            if not raws or len(raws) < 100:
                break
        if requeued or poisoned:
            log.warning(
                "recovered %d in-flight job(s) of dead worker %s (%d to dead as poison)",
                requeued,
                identity,
                poisoned,
            )
        return (requeued, poisoned)
    finally:
        if redis.get(lock) == token.encode():  # never release a lock that expired and was re-taken
            redis.delete(lock)


def _report_poison(
    scripts: Scripts, jobs: Sequence[tuple[bytes, str | None, str, bytes]], on_poison: OnPoison
) -> None:
    """Call ``on_poison`` for the jobs of a batch that went to `dead` as poison in that call: their
    poison record (it names this recovery's time) is in `dead`. Undecodable ones have no job to report."""
    candidates = [poison for _, queue, _, poison in jobs if queue is not None]
    if not candidates:
        return
    pipe = scripts.redis.pipeline(transaction=False)
    for poison in candidates:
        pipe.zscore(scripts.keys.dead, poison)
    for poison, score in zip(candidates, pipe.execute(), strict=True):
        if score is not None:
            on_poison(json.loads(poison))


def recover_dead_workers(
    scripts: Scripts, own_identity: str | None = None, on_poison: OnPoison | None = None
) -> int:
    """Recover every registered worker whose liveness key has expired; return jobs requeued."""
    redis, keys = scripts.redis, scripts.keys
    others = [m.decode(errors="replace") for m in cast("set[bytes]", redis.smembers(keys.swarmd_workers))]
    others = [i for i in others if i != own_identity]
    if not others:
        return 0
    pipe = redis.pipeline(transaction=False)  # one round trip for every liveness check
    for identity in others:
        pipe.exists(keys.alive(identity))
    total = 0
    for identity, alive in zip(others, pipe.execute(), strict=True):
        if alive:
            continue
        # recover.lua checks the liveness key again, atomically: a worker that beat since is left alone.
        result = recover_worker(scripts, identity, on_poison=on_poison)
        if result is not None:
            total += result[0] + result[1]
    return total


def prune_processes(redis: connection.Redis, keys: Keys) -> int:
    """Drop members of `processes` whose heartbeat hash expired (as Sidekiq's cleanup does)."""
    if not redis.set(keys.process_cleanup, "1", nx=True, ex=60):
        return 0
    members = list(cast("set[bytes]", redis.smembers(keys.processes)))
    if not members:
        return 0
    pipe = redis.pipeline(transaction=False)
    for m in members:
        pipe.exists(keys.process(m.decode(errors="replace")))
    gone = [m for m, alive in zip(members, pipe.execute(), strict=True) if not alive]
    if gone:
        redis.srem(keys.processes, *gone)
    return len(gone)
