"""Concurrency and rate limits shared by every swarm on one Redis (Sidekiq Enterprise's limiters).

    import swarmd

    API = swarmd.limiter.concurrent("partner-api", 3, lease=60, wait_timeout=5)

    @swarmd.job
    def sync(account_id):
        with API:  # at most 3 jobs inside at once, on every host
            call_partner(account_id)

Three kinds, each one Lua script (``swarmd/lua/limit_*.lua``) that reads Redis's clock (TIME), never
a client's:

- `concurrent`: at most ``limit`` holders at once. A holder's place is a lease (a sorted-set member
  scored with when it ends); ``with`` takes it (one round trip) and gives it back (one more, ZREM).
  A holder that dies without giving it back (SIGKILL, a lost host) loses it when the lease ends. A
  worker renews the leases its running jobs hold from its housekeeping loop (about every
  ``lease / 3``, at least every second), so a job that runs longer than its lease keeps its place as
  long as its worker is alive.
- `window`: at most ``limit`` grants in any ``per`` seconds (a sliding window of the grants' times).
- `bucket`: a token bucket of ``limit`` tokens refilled at ``limit / per`` a second; bursts up to
  ``limit``. Nothing to give back.

When the limit is reached, ``with`` waits (polling, never longer than ``wait_timeout``; a window or a
bucket that cannot grant within ``wait_timeout`` gives up at once) and then raises `OverLimit`: the
worker reschedules the job with a short growing backoff (``limiter_backoff``), which is not a failure
and leaves its retries untouched (see `swarmd.processor`). Outside a worker (a script, a web request)
the same ``with`` works on the default client's Redis (`swarmd.configure`); `OverLimit` then simply
propagates, and nothing renews a lease. Under `swarmd.testing` (fake or inline mode) every limiter
grants at once without Redis.

A limiter object is cheap and thread-safe; define it once at module level and use it from any number
of jobs, threads and ``async`` jobs (``async with`` waits without blocking the event loop).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import os
import random
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType
from typing import cast

from swarmd.client import default_client, sink_active
from swarmd.errors import OverLimit
from swarmd.scripts import Grant, Scripts

__all__ = ["Bucket", "Concurrent", "Lease", "Limiter", "Window", "bind", "bucket", "concurrent", "window"]

log = logging.getLogger("swarmd")

POLL_FIRST_S = 0.01  # first wait of a concurrency limiter at its limit; it grows 1.5x per try ...
POLL_MAX_S = 0.25  # ... up to this
MAX_NAME = 200

_bound: Scripts | None = None  # the worker's own (its pool and namespace): `bind`
_default: tuple[int, Scripts] | None = None


def bind(scripts: Scripts | None) -> None:
    """Use ``scripts`` (a worker's Redis client and namespace) for every limiter in this process."""
    global _bound
    _bound = scripts


def _scripts() -> Scripts:
    global _default
    if _bound is not None:
        return _bound
    client = default_client()
    if _default is None or _default[0] != id(client):
        _default = (id(client), Scripts(client.redis, client.keys))
    return _default[1]


@dataclass(frozen=True)
class Lease:
    """What ``with limiter as lease:`` gives: the limiter's name, this grant's token, and when Redis
    granted it (epoch seconds, Redis's clock)."""

    name: str
    token: str
    granted_at: float
    local: bool = False  # granted without Redis (`swarmd.testing` mode): nothing to give back


class Limiter:
    """The common part: validation, the waiting loop, ``with`` and ``async with``."""

    kind = ""

    def __init__(self, name: str, limit: int, wait_timeout: float) -> None:
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise ValueError(
                f"limiter name: expected a non-empty string of at most {MAX_NAME}, got {name!r:.80}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limiter {name}: limit: expected an integer >= 1, got {limit!r:.80}")
        self.name = name
        self.limit = limit
        self.wait_timeout = _seconds(name, "wait_timeout", wait_timeout, zero=True)
        self._held: contextvars.ContextVar[tuple[Lease, ...]] = contextvars.ContextVar(
            f"swarmd-limiter-{name}", default=()
        )

    def __repr__(self) -> str:
        return f"<swarmd limiter {self.kind} {self.name!r} limit {self.limit}>"

    # -- what each kind does ------------------------------------------------------------------------
    def _try(self, scripts: Scripts, token: str) -> Grant:
        raise NotImplementedError

    def _granted(self, scripts: Scripts, lease: Lease) -> None:
        """A grant was made (a concurrency limiter starts renewing it)."""

    def _release(self, lease: Lease) -> None:
        """Give the grant back (only a concurrency limiter has anything to give back)."""

    def _pause(self, grant: Grant, tries: int) -> float:
        """How long to wait before the next try after ``grant`` refused (the ``tries``-th refusal)."""
        return grant.wait_ms / 1000.0 + random.uniform(0.0, 0.01)

    # -- acquiring ---------------------------------------------------------------------------------
    def _attempts(self) -> tuple[Scripts, str]:
        return _scripts(), os.urandom(12).hex()

    def _over(self, waited: float) -> OverLimit:
        return OverLimit(
            self.name,
            f"limiter {self.kind} {self.name!r} (limit {self.limit}) still at its limit after {waited:.1f} s",
        )

    def _testing(self) -> Lease | None:
        """Under `swarmd.testing` (fake or inline, outside a worker) every limiter grants at once."""
        if _bound is None and sink_active():
            return Lease(self.name, "testing", time.time(), local=True)
        return None

    def acquire(self) -> Lease:
        """Take a grant, waiting up to ``wait_timeout``; `OverLimit` if none came. Prefer ``with``."""
        if (lease := self._testing()) is not None:
            return lease
        tries = self._tries()
        try:
            while True:
                time.sleep(next(tries))
        except StopIteration as granted:
            return cast("Lease", granted.value)

    async def acquire_async(self) -> Lease:
        """`acquire` for ``async`` jobs: waits with `asyncio.sleep` (each try is one short Redis call)."""
        if (lease := self._testing()) is not None:
            return lease
        tries = self._tries()
        try:
            while True:
                await asyncio.sleep(next(tries))
        except StopIteration as granted:
            return cast("Lease", granted.value)

    def _tries(self) -> Generator[float, None, Lease]:
        """The acquire loop of `acquire` and `acquire_async`: one Redis call per try, yielding the pause
        to sleep before the next (each caller sleeps its own way); returns the lease, or raises
        `OverLimit` when the next pause would end past ``wait_timeout``."""
        scripts, token = self._attempts()
        started = time.monotonic()
        tries = 0
        while True:
            grant = self._try(scripts, token)
            if grant.granted:
                return self._took(scripts, token, grant)
            tries += 1
            pause = self._pause(grant, tries)
            left = started + self.wait_timeout - time.monotonic()
            if pause > left:
                raise self._over(time.monotonic() - started)
            yield pause

    def _took(self, scripts: Scripts, token: str, grant: Grant) -> Lease:
        lease = Lease(self.name, token, grant.now_ms / 1000.0)
        self._granted(scripts, lease)
        return lease

    def release(self, lease: Lease) -> None:
        self._release(lease)

    # -- with / async with ---------------------------------------------------------------------------
    def __enter__(self) -> Lease:
        lease = self.acquire()
        self._held.set((*self._held.get(), lease))
        return lease

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        held = self._held.get()
        if held:
            self._held.set(held[:-1])
            self.release(held[-1])

    async def __aenter__(self) -> Lease:
        lease = await self.acquire_async()
        self._held.set((*self._held.get(), lease))
        return lease

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Concurrent(Limiter):
    kind = "concurrent"

    def __init__(self, name: str, limit: int, lease: float, wait_timeout: float) -> None:
        super().__init__(name, limit, wait_timeout)
        self.lease = _seconds(name, "lease", lease)
        self.lease_ms = max(1, math.ceil(self.lease * 1000))

    def _try(self, scripts: Scripts, token: str) -> Grant:
        return scripts.limit_concurrent(self.name, token, self.limit, self.lease_ms)

    def _pause(self, grant: Grant, tries: int) -> float:
        # Holders leave whenever their job is done, not when their lease ends: poll, growing and capped.
        return min(POLL_MAX_S, POLL_FIRST_S * 1.5 ** (tries - 1)) * random.uniform(0.8, 1.2)

    def _granted(self, scripts: Scripts, lease: Lease) -> None:
        _renewals.add(lease.token, _Renewal(scripts, self, lease.token))

    def _release(self, lease: Lease) -> None:
        if lease.local:
            return
        renewal = _renewals.pop(lease.token)
        scripts = renewal.scripts if renewal is not None else _scripts()
        scripts.limit_release(self.name, lease.token)


class Window(Limiter):
    kind = "window"

    def __init__(self, name: str, limit: int, per: float, wait_timeout: float) -> None:
        super().__init__(name, limit, wait_timeout)
        self.per = _seconds(name, "per", per)
        self.per_ms = max(1, math.ceil(self.per * 1000))

    def _try(self, scripts: Scripts, token: str) -> Grant:
        return scripts.limit_window(self.name, token, self.limit, self.per_ms)


class Bucket(Limiter):
    kind = "bucket"

    def __init__(self, name: str, limit: int, per: float, wait_timeout: float) -> None:
        super().__init__(name, limit, wait_timeout)
        self.per = _seconds(name, "per", per)
        self.per_ms = max(1, math.ceil(self.per * 1000))

    def _try(self, scripts: Scripts, token: str) -> Grant:
        return scripts.limit_bucket(self.name, self.limit, self.per_ms)


def concurrent(name: str, limit: int, lease: float = 60, wait_timeout: float = 5) -> Concurrent:
    """At most ``limit`` holders of ``name`` at once across every swarm on this Redis; a holder that
    dies is dropped ``lease`` seconds after its last renewal. Use as ``with limiter:`` in a job."""
    return Concurrent(name, limit, lease, wait_timeout)


def window(name: str, limit: int, per: float = 1, wait_timeout: float = 5) -> Window:
    """At most ``limit`` grants of ``name`` in any ``per`` seconds, across every swarm on this Redis."""
    return Window(name, limit, per, wait_timeout)


def bucket(name: str, limit: int, per: float = 1, wait_timeout: float = 5) -> Bucket:
    """A token bucket ``name``: bursts of up to ``limit``, refilled at ``limit`` per ``per`` seconds."""
    return Bucket(name, limit, per, wait_timeout)


def _seconds(name: str, what: str, value: object, *, zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):  # type: ignore[operator]
        expected = "a number of seconds >= 0" if zero else "a number of seconds > 0"
        raise ValueError(f"limiter {name}: {what}: expected {expected}, got {value!r:.80}")
    return float(value)  # type: ignore[arg-type]


# -- lease renewal (a worker's housekeeping) ------------------------------------------------------------


@dataclass
class _Renewal:
    scripts: Scripts
    limiter: Concurrent
    token: str
    due: float = 0.0  # monotonic time of the next renewal
    owner: int = 0  # the thread that holds it

    def __post_init__(self) -> None:
        self.due = time.monotonic() + self.limiter.lease / 3
        self.owner = threading.get_ident()


class _Renewals:
    """The concurrency leases this process holds right now, renewed by `renew_leases`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, _Renewal] = {}

    def add(self, token: str, renewal: _Renewal) -> None:
        with self._lock:
            self._held[token] = renewal

    def pop(self, token: str) -> _Renewal | None:
        with self._lock:
            return self._held.pop(token, None)

    def pop_owned(self, owner: int) -> list[_Renewal]:
        with self._lock:
            mine = [r for r in self._held.values() if r.owner == owner]
            for renewal in mine:
                del self._held[renewal.token]
            return mine

    def pop_all(self) -> list[_Renewal]:
        with self._lock:
            held, self._held = list(self._held.values()), {}
            return held

    def due(self, now: float) -> list[_Renewal]:
        with self._lock:
            return [r for r in self._held.values() if r.due <= now]

    def next_due(self) -> float | None:
        with self._lock:
            return min((r.due for r in self._held.values()), default=None)


_renewals = _Renewals()


def renew_leases(now: float | None = None) -> int:
    """Renew every concurrency lease held in this process that is due (a third of its lease since the
    last renewal); the worker calls it from its housekeeping loop. Returns how many were renewed. A
    lease found gone (it ended while Redis was unreachable, or was never renewed in time) is logged:
    until the job leaves the ``with``, one more holder than the limit may run."""
    now = time.monotonic() if now is None else now
    renewed = 0
    for renewal in _renewals.due(now):
        limiter = renewal.limiter
        grant = renewal.scripts.limit_concurrent(
            limiter.name, renewal.token, limiter.limit, limiter.lease_ms, renew=True
        )
        renewal.due = now + limiter.lease / 3
        if grant.granted:
            renewed += 1
        else:
            _renewals.pop(renewal.token)
            log.warning(
                "limiter concurrent %r: a running job's lease had ended before it was renewed (lease "
                "%.0f s): the limit may be exceeded by one until that job leaves the limiter",
                limiter.name,
                limiter.lease,
            )
    return renewed


def release_thread_leases() -> int:
    """Give back every concurrency lease the calling thread still holds: after a job of this thread was
    interrupted by its time limit (`JobTimeout` may land inside ``with``'s own code). Returns how many."""
    released = 0
    for renewal in _renewals.pop_owned(threading.get_ident()):
        try:
            renewal.scripts.limit_release(renewal.limiter.name, renewal.token)
            released += 1
        except Exception:  # the lease ends on its own: releasing only frees the place sooner
            log.warning(
                "limiter concurrent %r: could not release a lease; it ends on its own", renewal.limiter.name
            )
    return released


def release_held() -> int:
    """Give back every concurrency lease this process holds (a worker at its exit: the jobs that held
    them were pushed back). Returns how many."""
    released = 0
    for renewal in _renewals.pop_all():
        renewal.scripts.limit_release(renewal.limiter.name, renewal.token)
        released += 1
    return released


def next_renewal() -> float | None:
    """Monotonic time of the next lease renewal due in this process, or None when none is held."""
    return _renewals.next_due()


def _forget_after_fork() -> None:
    global _bound, _default, _renewals
    _bound, _default = None, None  # a forked child has its own connections and holds no lease
    _renewals = _Renewals()


os.register_at_fork(after_in_child=_forget_after_fork)
