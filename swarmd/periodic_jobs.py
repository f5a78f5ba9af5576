"""Periodic jobs: each tick of each entry enqueued exactly once, however many swarms share the Redis.

Entries come from the config's ``periodic:`` list and from ``@swarmd.periodic`` (`swarmd.registry`).
In each swarm one worker runs them (the worker of the supervisor's first slot; during a rolling reload
its replacement may run beside it for a moment, which is harmless): it keeps each entry's next tick in
memory, and when a tick is due it claims it with one script call (``lua/periodic.lua``) that moves the
entry's "last tick" forward and pushes the job only if that moved it. So any number of workers in any
number of swarms may claim the same tick and exactly one pushes it; there is no single beat process to
forget, and a swarm that is down (or SIGKILLed) is simply not among the claimers. One round trip per
tick (of all entries due at that tick) per swarm.

After downtime (no swarm running at a tick), the missed ticks are skipped except the latest one, which
is pushed at once if it is at most ``catch_up`` old (no limit by default). An entry Redis has never
seen starts at its next tick. The tick rule for time zones and DST is `swarmd.cron`'s.

Each job is built like a client's (``payload.build``, the job function's options, ``queue`` from the
entry if it names one) plus ``periodic_at``, the tick's epoch seconds; it is pushed by the script, so
client middleware and unique locks do not apply (the claim already makes each tick one job).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmd import cron, payload
from swarmd.config import PeriodicEntry
from swarmd.scripts import Claim, Scripts

log = logging.getLogger("swarmd")


def entry_id(entry: PeriodicEntry) -> str:
    """The entry's name in Redis: the same entry in every swarm's config is the same tick record."""
    return json.dumps(list(describe(entry).values()), separators=(",", ":"), ensure_ascii=False)


def describe(entry: PeriodicEntry) -> dict[str, Any]:
    """The entry as it is published in Redis (`Keys.periodic_entries`), for ``swarmctl periodic``."""
    return {
        "job": entry.job,
        "cron": entry.cron,
        "timezone": entry.timezone,
        "args": list(entry.args),
        "queue": entry.queue,
    }


@dataclass
class _State:
    entry: PeriodicEntry
    id: str
    schedule: cron.Schedule
    options: dict[str, Any]  # the job function's options, ``queue`` resolved
    due: float = 0.0  # epoch seconds of the next tick to claim (0: at once, at boot)


class Periodic:
    """The periodic entries of one worker: `due` says when to call `tick`."""

    def __init__(
        self,
        scripts: Scripts,
        entries: Sequence[PeriodicEntry],
        job_options: Mapping[str, Mapping[str, Any]],
        catch_up: float | None,
    ) -> None:
        """``job_options``: job name -> that job function's options (``queue``, ``retry``, ...)."""
        self.scripts = scripts
        self.catch_up = catch_up
        self.states: list[_State] = []
        seen: set[str] = set()
        for entry in entries:
            eid = entry_id(entry)
            if eid in seen:  # written twice (config and decorator): one entry, one job per tick
                continue
            seen.add(eid)
            options = dict(job_options.get(entry.job, {}))
            if entry.queue is not None:
                options["queue"] = entry.queue
            options.setdefault("queue", "default")
            self.states.append(_State(entry, eid, cron.parse(entry.cron, entry.timezone), options))

    @property
    def due(self) -> float:
        """Epoch seconds when `tick` has something to do (inf: no entries)."""
        return min((s.due for s in self.states), default=float("inf"))

    def publish(self) -> None:
        """Record the entries in Redis for ``swarmctl periodic`` and the dashboard (one round trip)."""
        if not self.states:
            return
        now = time.time()
        mapping: dict[Any, Any] = {s.id: json.dumps({**describe(s.entry), "seen": now}) for s in self.states}
        self.scripts.redis.hset(self.scripts.keys.periodic_entries, mapping=mapping)

    def tick(self, now: float | None = None) -> int:
        """Claim every entry whose tick is due (one script call for all of them); returns how many
        jobs this call pushed. A Redis error propagates: the due times stay, so the next call claims
        again (a claim that did land is then "already claimed")."""
        now = time.time() if now is None else now
        claims: list[Claim] = []
        claimed: list[tuple[_State, float]] = []
        for state in self.states:
            if now < state.due:
                continue
            tick = state.schedule.latest(now)
            if tick is None:
                state.due = state.schedule.next_after(now)
                continue
            push = self.catch_up is None or now - tick <= self.catch_up
            job = payload.build(state.entry.job, state.entry.args, None, state.options)
            job["periodic_at"] = tick
            raw = payload.encode(payload.for_queue(job))
            claims.append(Claim(state.id, tick, raw, job["queue"], push))
            claimed.append((state, tick))
        if not claims:
            return 0
        results = self.scripts.periodic(claims)
        pushed = 0
        for (state, tick), result in zip(claimed, results, strict=True):
            state.due = state.schedule.next_after(max(now, tick))
            if result == 1:
                pushed += 1
                log.info(
                    "periodic %s (%s): enqueued the tick of %s", state.entry.job, state.entry.cron, _at(tick)
                )
            elif result == -1:
                why = (
                    "older than catch_up"
                    if self.catch_up is not None and now - tick > self.catch_up
                    else "new entry"
                )
                log.info(
                    "periodic %s (%s): tick of %s recorded, not run (%s)",
                    state.entry.job,
                    state.entry.cron,
                    _at(tick),
                    why,
                )
        return pushed


def _at(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(frozen=True)
class Listed:
    """One entry as ``swarmctl periodic`` and the dashboard show it."""

    job: str
    cron: str
    timezone: str | None
    args: list[Any]
    queue: str | None
    last: float | None  # the last tick claimed (run or recorded), epoch seconds
    next: float | None  # the next tick after now
    seen: float | None  # when a worker last published it (its boot)


def listing(redis: Any, keys: Any, now: float | None = None) -> list[Listed]:
    """Every entry published in Redis, with its last and next tick; sorted by next run. Values that
    are not what swarmd writes (untrusted) are shown as unknown, never raise."""
    now = time.time() if now is None else now
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.periodic_entries)
    pipe.hgetall(keys.periodic)
    entries, lasts = pipe.execute()
    out: list[Listed] = []
    for raw_id, raw in entries.items():
        try:
            data = json.loads(raw)
            job, expr = str(data["job"]), str(data["cron"])
            tz = data.get("timezone")
            args = data.get("args") or []
            queue = data.get("queue")
            seen = data.get("seen")
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        try:
            next_tick: float | None = cron.parse(expr, tz).next_after(now)
        except cron.CronError:
            next_tick = None
        last_raw = lasts.get(raw_id)
        try:
            last = float(last_raw) if last_raw is not None else None
        except ValueError:
            last = None
        out.append(
            Listed(
                job,
                expr,
                tz if isinstance(tz, str) else None,
                args if isinstance(args, list) else [],
                queue if isinstance(queue, str) else None,
                last,
                next_tick,
                float(seen) if isinstance(seen, int | float) else None,
            )
        )
    out.sort(key=lambda e: (e.next if e.next is not None else float("inf"), e.job))
    return out
