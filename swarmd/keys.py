"""Every Redis key name swarmd reads or writes; nothing else in the package spells a key.

Sidekiq's keys (SPEC 2) keep Sidekiq's names so Ruby and Python share them. swarmd's own keys live
under ``swarmd:``:

- ``swarmd:inflight:<identity>`` (list): the worker's private in-flight list. A job is moved here
  atomically from its queue and leaves only when it succeeded, went to ``retry``/``dead``, or was
  pushed back. Jobs are stored as the exact bytes that were in the queue.
- ``swarmd:alive:<identity>`` (string with TTL): the worker's liveness key, refreshed every beat.
  When it has expired, any worker may recover the in-flight list.
- ``swarmd:workers`` (set): identities that may own an in-flight list (cleared after recovery).
- ``swarmd:recovering:<identity>`` (string, NX with TTL): taken by the one worker recovering a list.
- ``swarmd:quarantine`` (list): suspects, jobs that were in the private list of a worker that died
  (or was recycled for memory). Only a quarantine worker (concurrency 1) takes jobs from here, so each
  runs alone; it takes from the right, and jobs are pushed back on the right (the head), as in queues.
- ``swarmd:crashes:<jid>`` (integer with TTL): how many times a quarantine worker died (or was
  recycled) while running this job alone (poison guard).

A quarantine worker's identity ends in ``:quarantine-<hex>`` (`quarantine_identity`), so whoever
recovers its private list knows that the job in it was running alone.

With a namespace ``ns`` every key gets the prefix ``ns:``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

STATS_TTL = 5 * 365 * 24 * 3600
"""TTL of the daily ``stat:*:YYYY-MM-DD`` keys (Sidekiq's 5 years)."""


@dataclass(frozen=True)
class Keys:
    """Key names for one namespace (``None`` or ``""`` means no prefix)."""

    namespace: str | None = None

    def _k(self, name: str) -> str:
        return f"{self.namespace}:{name}" if self.namespace else name

    # -- Sidekiq's keys ---------------------------------------------------------------------------
    @property
    def queues(self) -> str:
        return self._k("queues")

    def queue(self, name: str) -> str:
        return self._k(f"queue:{name}")

    @property
    def schedule(self) -> str:
        return self._k("schedule")

    @property
    def retry(self) -> str:
        return self._k("retry")

    @property
    def dead(self) -> str:
        return self._k("dead")

    @property
    def processes(self) -> str:
        return self._k("processes")

    def process(self, identity: str) -> str:
        return self._k(identity)

    def work(self, identity: str) -> str:
        return self._k(f"{identity}:work")

    def workers(self, identity: str) -> str:
        return self._k(f"{identity}:workers")

    def signals(self, identity: str) -> str:
        return self._k(f"{identity}-signals")

    def stat(self, name: str) -> str:
        return self._k(f"stat:{name}")

    @property
    def process_cleanup(self) -> str:
        return self._k("process_cleanup")

    def stat_daily(self, name: str, now: float | None = None) -> str:
        day = time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))
        return self._k(f"stat:{name}:{day}")

    # -- swarmd's own keys ------------------------------------------------------------------------
    def inflight(self, identity: str) -> str:
        return self._k(f"swarmd:inflight:{identity}")

    def alive(self, identity: str) -> str:
        return self._k(f"swarmd:alive:{identity}")

    @property
    def swarmd_workers(self) -> str:
        return self._k("swarmd:workers")

    def recovering(self, identity: str) -> str:
        return self._k(f"swarmd:recovering:{identity}")

    def crashes(self, jid: str) -> str:
        return self._k(f"swarmd:crashes:{jid}")

    @property
    def quarantine(self) -> str:
        return self._k("swarmd:quarantine")


QUARANTINE_TAG = "quarantine-"
"""Starts the last part of a quarantine worker's identity (``host:pid:quarantine-<hex>``)."""


def is_quarantine_identity(identity: str) -> bool:
    """True when ``identity`` names a quarantine worker (its private list holds a job running alone)."""
    return identity.rsplit(":", 1)[-1].startswith(QUARANTINE_TAG)
