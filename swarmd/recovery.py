"""Recovery of the private in-flight lists of workers that died, and the poison-job guard.

Who recovers, and when:
- a short-lived child of the supervisor, right after the supervisor reaped a worker (``force=True``:
  the process is known to be gone), retrying with backoff for a bounded time (`recover_for`);
- every worker, at start and every `recovery_interval`, for each identity in ``swarmd:workers``
  whose liveness key has expired (a killed process whose supervisor died too, a vanished host);
- a quarantine worker that is recycled (memory) while its job runs: its own list, at its stop.

Only one recoverer works on a list at a time (``SET swarmd:recovering:<id> NX EX``), and inside
``lua/recover.lua`` each job is moved only if that call's LREM removed it, so even two recoverers
racing past the lock could not move a job twice.

Poison guard (quarantine). The jobs in an ordinary worker's list when its supervisor saw it die
(``force``) are *suspects*: any one of them may have killed it, or none (an OOM kill from outside, a
SIGKILL). They are not counted; they go to the quarantine list (``swarmd:quarantine``), where a
quarantine worker (concurrency 1) runs them one at a time. The job in a quarantine worker's list ran
alone, so its death is that job's fault: one crash is counted (``swarmd:crashes:<jid>``, TTL 24 h), and
at `QUARANTINE_CRASHES` the job goes to `dead` with ``error_class "swarmd.PoisonJob"``; otherwise back
to the quarantine list. A poison job thus runs at most 1 + `QUARANTINE_CRASHES` times, and no innocent
job beside it is ever dead-lettered. A quarantine worker's identity says what it is
(`keys.is_quarantine_identity`), so whoever recovers its list counts exactly. An entry that cannot be
decoded goes to `dead` unchanged, with one ERROR line.

An ordinary worker that vanished unseen (its liveness key expired: a host lost, a whole swarm killed, a
long pause) is rarely a job's doing: its jobs go back to their queues, so a lost host's jobs are not all
run one at a time. Each such vanishing is counted per job (``swarmd:vanished:<jid>``, TTL 24 h): a job
found in `VANISH_LIMIT` of them (one that takes its whole swarm down with it, so no supervisor ever sees
the death) becomes a suspect. A quarantine worker's job is counted whoever recovers its list.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from swarmd import connection, payload, unique
from swarmd.errors import POISON_JOB, DecodeError
from swarmd.keys import Keys, is_quarantine_identity
from swarmd.retrying import Backoff
from swarmd.scripts import Recovered, Rescue, Scripts, crash_id

log = logging.getLogger("swarmd")

QUARANTINE_CRASHES = 2  # deaths of a quarantine worker running the job alone: then it is poison
VANISH_LIMIT = 3  # ordinary workers vanished unseen while holding the job: then it is a suspect
POISON_RUNS = 1 + QUARANTINE_CRASHES  # runs of a poison job when its supervisor sees the first death
CRASH_TTL = 24 * 3600
LOCK_TTL = 10  # refreshed after every batch of 100 jobs; a dead recoverer's lock frees quickly
BATCH = 100


def _entries(identity: str, raws: Sequence[bytes], *, counting: bool, seen_dying: bool) -> list[Rescue]:
    jobs: list[Rescue] = []
    for raw in raws:
        try:
            job = payload.decode(raw)
        except DecodeError as exc:
            log.error("undecodable job in the private list of %s moved to dead unchanged: %s", identity, exc)
            jobs.append(Rescue(raw, "dead", crash_id(raw)))
            continue
        counter = str(job.data.get("jid") or crash_id(raw))  # no jid: one counter per job
        if counting:  # it ran alone: its worker's death is its doing, whoever saw it
            poison = dict(job.data)
            payload.record_failure(
                poison,
                POISON_JOB,
                f"its worker died (or was recycled for memory) each time it ran alone in a quarantine "
                f"worker, {QUARANTINE_CRASHES} times (last: {identity}), after a first death beside "
                "other jobs",
            )
            jobs.append(Rescue(raw, "count", counter, payload.encode(poison)))
        elif seen_dying:
            jobs.append(Rescue(raw, "quarantine", counter))
        else:
            # Its worker vanished unseen (a host lost, a whole swarm killed, a long pause): rarely a
            # job's doing, and running every job of a lost host one at a time would stall them all.
            # Back to its queue; only a job found in `VANISH_LIMIT` vanished workers (one that takes
            # its whole swarm down with it) becomes a suspect.
            jobs.append(Rescue(raw, "requeue", counter, queue=job.queue))
    return jobs


OnPoison = Callable[[dict[str, Any]], None]
"""Called with each job a recovery sent to `dead` as poison (the hash as stored there): the app's
``on_death`` hooks, in a process that has them loaded."""


def recover_worker(
    scripts: Scripts, identity: str, *, force: bool = False, on_poison: OnPoison | None = None
) -> Recovered | None:
    """Move a dead worker's in-flight jobs out of its list (see the module docstring); return what
    was done, or None when another recoverer holds the lock (the caller may try again later).
    ``on_poison`` is called for each job this call made poison, once it is in `dead`."""
    redis, keys = scripts.redis, scripts.keys
    # redis-py's Lock: a random token, SET NX PX, and token-checked extend/release in Lua, so a
    # recoverer never frees or extends a lock that expired and another one took. The lock only saves
    # work: two recoverers racing past it could not move a job twice (see the module docstring).
    lock = redis.lock(keys.recovering(identity), timeout=LOCK_TTL, blocking=False)
    if not lock.acquire():
        return None
    counting = is_quarantine_identity(identity)
    try:
        inflight = keys.inflight(identity)
        done = Recovered(0, 0, 0, 0)
        while True:
            raws = cast("list[bytes]", redis.lrange(inflight, -BATCH, -1))
            jobs = _entries(identity, raws, counting=counting, seen_dying=force)
            result = scripts.recover(
                identity,
                jobs,
                force=force,
                crash_ttl=CRASH_TTL,
                poison_crashes=QUARANTINE_CRASHES,
                vanish_limit=VANISH_LIMIT,
                now=payload.now(),
            )
            if result is None:
                return done  # alive after all (it beat again): nothing to recover
            # Lost (expired and re-taken) or not extended: carry on, the scripts stay exact without it.
            with contextlib.suppress(connection.RedisError):
                lock.extend(LOCK_TTL, replace_ttl=True)
            done += result
            if result.poisoned:
                _report_poison(scripts, jobs, on_poison)
            if len(raws) < BATCH:
                break
        if done.moved:
            log.warning(
                "recovered %d in-flight job(s) of %s %s: %d back to their queues, %d to the quarantine "
                "list (%s), %d to dead as poison, %d undecodable to dead",
                done.moved,
                "quarantine worker" if counting else "dead worker",
                identity,
                done.requeued,
                done.quarantined,
                "to run again alone" if counting else "suspects, each to run alone",
                done.poisoned,
                done.unchanged,
            )
        return done
    finally:
        # Not ours any more (expired mid-way), or Redis gone: either way it expires by itself.
        with contextlib.suppress(connection.RedisError):
            lock.release()


def _report_poison(scripts: Scripts, jobs: Sequence[Rescue], on_poison: OnPoison | None) -> None:
    """For the jobs of a batch that went to `dead` as poison in that call (their poison record, which
    names this recovery, is in `dead`; the others went back to the quarantine): release the unique
    lock a poison job holds (`swarmd.unique`), then call ``on_poison`` for each."""
    candidates = [job.poison for job in jobs if job.fate == "count"]
    if not candidates:
        return
    pipe = scripts.redis.pipeline(transaction=False)
    for poison in candidates:
        pipe.zscore(scripts.keys.dead, poison)
    poisoned = [
        json.loads(poison)
        for poison, score in zip(candidates, pipe.execute(), strict=True)
        if score is not None
    ]
    # After recover.lua, not inside it: the job is already safe in `dead`. A recoverer that dies (or
    # loses the reply) here leaves only the lock behind, and it expires after its unique_for.
    scripts.unlock([lock for data in poisoned if unique.FIELD in data and (lock := unique.lock_of(data))])
    if on_poison is not None:
        for data in poisoned:
            on_poison(data)


def recover_dead_workers(
    scripts: Scripts, own_identity: str | None = None, on_poison: OnPoison | None = None
) -> int:
    """Recover every registered worker whose liveness key has expired; return jobs moved."""
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
            total += result.moved
    return total


def recover_for(
    targets: Sequence[tuple[Scripts, str]],
    seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_poison: OnPoison | None = None,
) -> list[str]:
    """Recover (``force``) each (scripts, identity), retrying on Redis errors (or a held lock) with
    `Backoff` for about ``seconds``; return the identities given up on. What the supervisor's recovery
    child runs: giving up is safe, since the liveness keys expire and the workers recover the lists."""
    deadline = clock() + seconds
    pending = list(targets)
    backoff = Backoff(f"recovering the in-flight jobs of {', '.join(i for _, i in targets)}")
    while True:
        failure: object = None
        left: list[tuple[Scripts, str]] = []
        for scripts, identity in pending:
            try:
                done = recover_worker(scripts, identity, force=True, on_poison=on_poison)
            except connection.RedisError as exc:
                failure = str(exc) or type(exc).__name__
                left.append((scripts, identity))
                continue
            except Exception:  # a bug: the liveness key still leads the workers to the list
                log.exception("recovering the in-flight jobs of %s failed", identity)
                continue
            if done is None:  # another recoverer holds the lock (it may have died mid-way)
                failure = failure or f"another process holds the recovery lock of {identity}"
                left.append((scripts, identity))
        pending = left
        if not pending:
            backoff.ok()
            return []
        delay = backoff.failed(failure)
        if clock() + delay > deadline:
            identities = [i for _, i in pending]
            log.error(
                "gave up recovering the in-flight jobs of %s; workers will, once the liveness keys expire",
                ", ".join(identities),
            )
            return identities
        sleep(delay)


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
