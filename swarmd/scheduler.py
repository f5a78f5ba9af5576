"""Due jobs from `schedule` and `retry` into their queues (``lua/schedule.lua``), each exactly once.

Python reads due members (ZRANGE BYSCORE, read-only) and sets a fresh ``enqueued_at`` in each (Lua's
cjson would mangle numbers of more than 14 digits, so JSON is never re-encoded in Lua); the script
then moves a member only if its ZREM succeeds. If a worker dies between the read and the script,
nothing has changed in Redis; if two workers race, the ZREM lets exactly one of them move each job.
A member that cannot be decoded (or whose queue cannot be a key name) goes to `dead` unchanged, and
never stops the poll for the others (`Scripts.schedule` sends a failing batch again one at a time).

The first request of each poll also reads the length of the quarantine list (pipelined: no extra
round trip); `quarantined` tells the worker whether suspects wait for a quarantine worker.
"""

from __future__ import annotations

import logging
from typing import cast

from swarmd import payload
from swarmd.errors import DecodeError
from swarmd.scripts import Scripts

log = logging.getLogger("swarmd")

BATCH = 100
MAX_BATCHES = 20  # per poll: the housekeeping loop (and so the heartbeat) never waits long


class Scheduler:
    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts
        self.redis = scripts.redis
        self.keys = scripts.keys
        self.quarantined = 0
        """Jobs in the quarantine list at the last poll."""

    def poll(self) -> int | None:
        """Move due jobs; return how many moved, or None when more are due than one poll's budget
        (`MAX_BATCHES` of `BATCH`): the caller polls again at once."""
        moved = 0
        batches = 0
        for zset in (self.keys.retry, self.keys.schedule):
            while True:
                if batches == MAX_BATCHES:
                    return None
                batches += 1
                now = payload.now()
                members = self._due(zset, now, first=batches == 1)
                if not members:
                    break
                moved += self._move(zset, members, now)
                if len(members) < BATCH:
                    break
        return moved

    def _due(self, zset: str, now: float, *, first: bool) -> list[bytes]:
        if not first:
            return cast(
                "list[bytes]", self.redis.zrange(zset, "-inf", now, byscore=True, offset=0, num=BATCH)
            )
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self.keys.quarantine)
        pipe.zrange(zset, "-inf", now, byscore=True, offset=0, num=BATCH)
        quarantined, members = pipe.execute()
        self.quarantined = int(quarantined)
        return cast("list[bytes]", members)

    def _move(self, zset: str, members: list[bytes], now: float) -> int:
        entries: list[tuple[bytes, bytes | None, str]] = []
        for member in members:
            try:
                job = payload.decode(member)
            except DecodeError as exc:
                log.error("undecodable job in %s moved to dead unchanged: %s", zset, exc)
                entries.append((member, None, ""))
                continue
            entries.append((member, payload.encode(payload.for_queue(job.data)), job.queue))
        return self.scripts.schedule(zset, entries, now)
