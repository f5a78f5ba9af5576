"""The Redis scripts under ``swarmd/lua``: loaded once per client, one typed method each.

This module is the only code that knows the scripts' KEYS and ARGV layouts; callers pass identities,
queue names and raw jobs, never key lists. Each script's own header comment says what it guarantees
(every one of them removes an entry with LREM/ZREM first and acts only if that removed it), and
``docs/redis-layout.md`` lists the keys.

One `Scripts` object per Redis client: it reads every script's source once per process and calls it
by SHA (EVALSHA), loading it on a NOSCRIPT reply (after a Redis restart or a failover to a server that
never saw it) and sending the call again. That is safe because NOSCRIPT means the script did not run.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from swarmd.keys import STATS_TTL, Keys

if TYPE_CHECKING:
    from redis.commands.core import Script

    from swarmd.connection import Redis

__all__ = ["Recovered", "Scripts"]

NAMES = ("fetch", "fail", "pushback", "schedule", "recover", "leave", "kill")


@functools.cache
def source(name: str) -> str:
    """The text of ``swarmd/lua/<name>.lua`` (read once per process)."""
    return resources.files("swarmd").joinpath("lua", f"{name}.lua").read_text()


@dataclass(frozen=True)
class Recovered:
    """What one `Scripts.recover` call did."""

    requeued: int
    poisoned: int


class Scripts:
    """Every Lua script of swarmd, bound to one Redis client and one namespace."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        # register_script computes the SHA locally and sends nothing; redis-py's Script.__call__ is
        # EVALSHA with the NOSCRIPT fallback (SCRIPT LOAD, then EVALSHA again).
        self._scripts: dict[str, Script] = {name: redis.register_script(source(name)) for name in NAMES}

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self._scripts[name](keys=list(keys), args=list(args))

    # -- the worker's private list --------------------------------------------------------------
    def fetch(
        self, identity: str, queues: Sequence[str], want: int, acks: Sequence[bytes], now: float | None = None
    ) -> list[tuple[int, bytes]]:
        """Ack ``acks`` (LREM from the private list, counted as processed) and move up to ``want`` jobs
        from ``queues`` (tried in this order) into it; returns (index into ``queues``, raw job) pairs."""
        k = self.keys
        keys = [k.inflight(identity), k.stat("processed"), k.stat_daily("processed", now)]
        keys += [k.queue(name) for name in queues]
        reply = self._run("fetch", keys, [want, STATS_TTL, *acks])
        return [(int(reply[i]), reply[i + 1]) for i in range(0, len(reply), 2)]

    def push_back(self, identity: str, jobs: Sequence[tuple[bytes, str | None]], now: float) -> int:
        """Move (raw job, queue) pairs from the private list back to the head of their queues; a job
        whose queue is None (undecodable) goes to `dead` unchanged, scored ``now``. Returns how many
        moved (an entry no longer in the list is skipped)."""
        if not jobs:
            return 0
        k = self.keys
        keys = [k.inflight(identity), k.dead]
        keys += [k.queue(queue) if queue else k.dead for _, queue in jobs]
        moved: int = self._run("pushback", keys, [now, *(raw for raw, _ in jobs)])
        return moved

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
    ) -> bool:
        """Take ``raw`` out of the private list and store ``stored`` in `retry` (``mode`` "retry") or
        `dead` ("dead": then drop entries scored below ``dead_cutoff`` and keep at most
        ``dead_max_jobs``), or nowhere ("drop"); count it as processed and failed. False when ``raw``
        was no longer in the private list (nothing was done)."""
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
        k = self.keys
        keys = [zset, k.queues, k.dead]
        args: list[Any] = [now]
        for member, job, queue in entries:
            keys.append(k.dead if job is None else k.queue(queue))
            args += [member, member if job is None else job, queue]
        moved: int = self._run("schedule", keys, args)
        return moved

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
        jobs: Sequence[tuple[bytes, str | None, str, bytes]],
        *,
        force: bool,
        crash_ttl: int,
        poison_crashes: int,
        now: float,
    ) -> Recovered | None:
        """Push a dead worker's jobs back: ``jobs`` are (raw, queue or None when undecodable, crash
        counter id, the job as it goes to `dead` if this crash makes it poison). Without ``force``
        nothing happens while the worker's liveness key exists: returns None then."""
        k = self.keys
        keys = [k.inflight(identity), k.alive(identity), k.dead, k.swarmd_workers]
        args: list[Any] = [identity, "1" if force else "0", crash_ttl, poison_crashes, now]
        for raw, queue, counter, poison in jobs:
            keys += [k.queue(queue) if queue else k.dead, k.crashes(counter)]
            args += [raw, poison]
        keys.append(k.recovery)
        result = self._run("recover", keys, args)
        if result == -1:
            return None
        return Recovered(int(result[0]), int(result[1]))
