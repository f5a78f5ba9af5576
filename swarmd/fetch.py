"""Reliable fetch into the worker's private in-flight list; ack; push back; reconcile.

Where a job is at every instant (this is what "no job is ever lost" rests on):

1. In ``queue:<name>``, until the fetch script (``lua/fetch.lua``) or BLMOVE moves it, atomically, into
   the private list ``swarmd:inflight:<identity>``. A lost reply leaves it in the private list, which
   `reconcile` scans after any connection error.
2. In the private list while Python holds it (buffered, running, or finished with its ack pending).
   If the worker dies here, the supervisor (immediately) or any other worker (when the liveness key
   expires) moves it back to its queue: `recovery.recover_worker`.
3. It leaves the private list only inside a script that also puts it where it goes next: the ack
   (LREM after success, batched into the next fetch), `retry`/`dead` (``lua/fail.lua``), or back to
   its queue (``lua/pushback.lua``). Each of them removes with LREM first and acts only if the LREM
   removed it, so two paths can never both act on one entry.

Batching: one processor thread at a time is the *leader*; it fetches as many jobs as there are idle
processors in one script call that also carries the pending acks. When that drains the queues, one
waiter thread per queue blocks in BLMOVE (timeout `fetch_timeout`) on a connection of its own, so an
idle worker picks a new job up in about a millisecond without polling; `stop` ends those BLMOVEs at
once with CLIENT UNBLOCK (or, where an ACL forbids CLIENT, within `fetch_timeout`).

Wake-ups: every processor that becomes free leads one fetch before it sleeps; a fetch that filled
every idle processor wakes one more to lead the next; a job a waiter brings wakes two processors (one
for it, one to fetch what may have come with it). Acks ride with the next fetch, or with the
housekeeping loop's flush within a second.

Fetching ahead (``ahead_max`` > 0; the worker passes four times its concurrency). While the queues hold
more than the idle processors take, the buffer also keeps the jobs the processors will take in the
next `AHEAD_S` (from the rate they finished jobs at lately; at most ``ahead_max``): a processor that
finishes a job finds the next one there instead of leading a round trip of its own or, worse, waiting
for another processor's (one fetch is in flight at a time). The refills are done by the *ahead* thread,
which a processor wakes when it takes the buffer below half of that target (`REFILL_AT`: refilling in
chunks, rather than a job or two at a time, halves the fetches and the thread's wake-ups), so no
processor waits on them; they carry the pending acks like any fetch. A job taken ahead waits in the
buffer about `AHEAD_S` (the target is what the processors take in that long), and none is taken ahead
while the worker finishes fewer than 1/`AHEAD_S` jobs a second: slow jobs stay in their queue, where any
worker may take them. `AHEAD_S` is 50 ms, not less, because a refill needs the GIL twice (to send, and
to read the reply) while ten processors compete for it; with 10 ms, at two processes on two cores, the
buffer ran dry and the processors spent 30 % of their time waiting for jobs (py-spy). Buffered jobs
are in the private list like running ones: quiet and stop push them back, recovery finds them. With
an empty buffer a processor leads as before, so an idle worker's pickup is unchanged. The quarantine
worker never fetches ahead.

Quarantine mode (``quarantine=True``, the quarantine worker: concurrency 1). Jobs come from the
quarantine list instead of the queues, each `Work` keeps its own queue (read from the job: a retry goes
there), and every push back (quiet, stop, a waiter's surplus, reconcile) returns jobs to the head of the
quarantine list, never to their queues: a suspect leaves quarantine only by running alone. An ack is
sent at once rather than with the next fetch, so the private list never holds more than the job that
is running: whoever recovers it after a crash counts that crash against that job alone.

Failover (Sentinel). Replication is asynchronous: the new master may lack the last moves of the old
one (a fetch, an ack, a move to `retry`), so its copy of the private list may hold jobs this worker
no longer holds. When the master's address changes (`connection.master_address`), the next leader
reconciles, as after a connection error, even if no command of this worker failed (redis-py
reconnects idle connections silently). A waiter leaves a connection to an old master before its
next BLMOVE (`connection.drop_if_stale`). With ``wait_replicas`` (on a client of one connection,
see `swarmd.worker`), a fetch that moved jobs is followed by WAIT, so a job starts only once its move
reached that many replicas (or the timeout passed, which is logged).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import cast

from swarmd import connection, payload
from swarmd.config import QueueOrder, QueueSpec
from swarmd.payload import Work
from swarmd.retrying import Backoff, until_redis_answers
from swarmd.scripts import Scripts

__all__ = ["Fetcher", "QueuePlan", "Work"]

log = logging.getLogger("swarmd")

MAX_BATCH = 500  # jobs per fetch call; Lua's unpack() has a stack limit near 8000
AHEAD_S = 0.05  # the buffer keeps what the processors take in this long (see the module docstring)
REFILL_AT = 0.5  # ... and is refilled once it is down to this share of that
RATE_WINDOW_S = 0.01  # the rate the processors finish jobs at is measured over at least this long...
RATE_MEMORY_S = 0.05  # ...and smoothed over this long (after a pause, only the new rate counts)


class QueuePlan:
    """Sidekiq's queue order for a fetch. Strict: the queues as declared. Random (all weights 1) and
    weighted: Sidekiq draws a fresh weighted order for every fetch, and a fetch of Sidekiq's is one
    job; a fetch of swarmd's takes many, so a queue is drawn for each of them (`shares`: how many to
    take from each queue first) and the rest comes from the queues in a fresh weighted order. Taking
    every job of a fetch from the first queue drawn would leave a weight-1 queue out of whole fetches
    (with fetching ahead, dozens of jobs in a row), though its share over time would be right."""

    def __init__(self, queues: Sequence[QueueSpec], order: QueueOrder) -> None:
        self.names = list(dict.fromkeys(q.name for q in queues))
        self.strict = order is QueueOrder.STRICT
        self._expanded = [q.name for q in queues for _ in range(max(q.weight, 1))]

    def order(self) -> list[str]:
        if self.strict:
            return self.names
        picks = random.sample(self._expanded, len(self._expanded))
        return list(dict.fromkeys(picks))

    def shares(self, names: Sequence[str], want: int) -> list[int]:
        """How many of ``want`` jobs to take from each of ``names`` first: none for strict order."""
        if self.strict or want <= 0 or len(names) < 2:
            return []
        drawn = Counter(random.choices(self._expanded, k=want))
        return [drawn[name] for name in names]


class Fetcher:
    """Hands fetched jobs to processor threads; owns the private list's bookkeeping.

    One lock, two conditions: processors wait on ``_cond``, waiter threads on ``_wcond``, so a wake-up
    meant for a processor is never taken by a waiter (and the other way round).
    """

    def __init__(
        self,
        scripts: Scripts,
        identity: str,
        queues: Sequence[QueueSpec],
        order: QueueOrder,
        fetch_timeout: float,
        *,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        quarantine: bool = False,
        ahead_max: int = 0,
    ) -> None:
        self.scripts = scripts
        self.solo = quarantine
        self.redis = scripts.redis
        self.keys = scripts.keys
        self.identity = identity
        self.inflight = scripts.keys.inflight(identity)
        self._plan = QueuePlan(queues, order)
        # A quarantine worker has one source, the quarantine list: one waiter, named after it.
        self.queue_names = ["quarantine"] if quarantine else self._plan.names
        self.fetch_timeout = fetch_timeout
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # processors wait here
        self._wcond = threading.Condition(self._lock)  # waiter threads (and reconcile) wait here
        self._acond = threading.Condition(self._lock)  # the ahead thread waits here
        self._buffer: deque[Work] = deque()
        self._acks: list[bytes] = []
        self._held: Counter[bytes] = Counter()  # every job Python holds that is in the private list
        # Acks sent whose reply was lost: the LREM may or may not have happened. They are never sent
        # again blindly: with identical bytes in flight twice, a second LREM would remove the twin
        # that is still running. `reconcile` counts the copies in the list and decides.
        self._uncertain: Counter[bytes] = Counter()
        self._idle = 0  # processors waiting in get()
        self._fetching = False  # a leader is in a fetch call
        self._dry = False  # the last fetch drained every queue: waiters block in BLMOVE
        self._quiet = False
        self._in_blmove = 0
        self._reconcile_needed = False
        self._reconciling = False
        self._stop = threading.Event()
        self._waiters: list[threading.Thread] = []
        self._waiter_ids: dict[str, int] = {}  # queue -> CLIENT ID of its waiter's connection
        self._backoff = Backoff("fetch")
        self._broken_said: dict[str, float] = {}  # queue -> when its WRONGTYPE may be logged again
        self._master: tuple[str, int] | None = None  # where the last fetch went (Sentinel mode)
        self.wait_replicas = wait_replicas
        self._wait_ms = max(1, int(wait_timeout * 1000))
        self._wait_warned = 0.0
        self.ahead_max = 0 if quarantine else ahead_max
        self._ahead = 0  # how many jobs the buffer keeps beyond the idle processors
        # The rate that sizes the buffer is of jobs *finished* (acked or released), not taken: a burst of
        # takes (a worker booting into a full queue) says nothing about how soon the processors will
        # want more, and jobs that never finish (long ones) must never be taken ahead, where they
        # would wait behind them while another worker has a free thread.
        self._finished = 0  # jobs finished since `_rate_since`
        self._rate_since = time.monotonic()
        self._rate = 0.0  # jobs/s the processors finished lately (smoothed)

    # -- processors -------------------------------------------------------------------------------
    def get(self) -> Work | None:
        """The next job for a processor, or None once the worker is quiet."""
        with self._lock:
            self._idle += 1
            # A processor that just became free tries one batch fetch (carrying pending acks) before
            # anyone blocks: jobs may have arrived while every processor was busy.
            self._dry = False
            try:
                while True:
                    if self._quiet:
                        return None
                    if self._buffer:
                        work = self._buffer.popleft()
                        if (
                            self._ahead
                            and len(self._buffer) < self._idle - 1 + self._ahead * REFILL_AT
                            and not self._fetching
                            and not self._dry
                        ):
                            self._acond.notify()  # below the target: the ahead thread refills
                        return work
                    # Dry, a fetch still leads while acks are pending (they came in while the last
                    # fetch was on its way): else they wait for the housekeeping flush, up to a second
                    # in which a crash would run those finished jobs again.
                    if not self._fetching and (not self._dry or self._acks):
                        self._lead()
                        continue
                    if self._dry:
                        self._wcond.notify_all()  # one more idle processor: the waiters may be hungry
                    self._cond.wait()
            finally:
                self._idle -= 1

    def _plan_ahead(self) -> int:
        """How many jobs the buffer keeps beyond the idle processors; called holding the lock."""
        if not self.ahead_max:
            return 0
        now = time.monotonic()
        elapsed = now - self._rate_since
        if elapsed >= RATE_WINDOW_S:
            weight = min(1.0, elapsed / RATE_MEMORY_S)
            self._rate += (self._finished / elapsed - self._rate) * weight
            self._finished = 0
            self._rate_since = now
        self._ahead = min(self.ahead_max, int(self._rate * AHEAD_S))
        return self._ahead

    def _lead(self, *, ahead: bool = False) -> None:
        """Fetch (and ack) in one round trip for every idle processor and what the buffer keeps ahead.
        Called holding the lock, by a processor (which takes one of the jobs) or the ahead thread."""
        self._fetching = True
        want = min(max(self._idle + self._plan_ahead() - len(self._buffer), 1), MAX_BATCH)
        acks = self._acks
        self._acks = []
        self._lock.release()
        got: list[Work] = []
        ok = False
        try:
            if self.redis.connection is not None:  # a client of one connection (wait_replicas)
                connection.drop_if_stale(self.redis.connection)
            master = connection.master_address(self.redis)
            if master != self._master:
                # A new master may lack this worker's last moves: look at its copy of the list.
                self._reconcile_needed |= self._master is not None
                self._master = master
            if self._reconcile_needed:
                self.reconcile()
            if self._quiet:  # quiet() ran meanwhile: only the acks go out
                want = 0
            got = self._fetch(want, acks)
            ok = True
        except connection.RedisError as exc:
            # Any error may hide a fetch that happened: a connection error can eat the reply, and a
            # script error (WRONGTYPE on one queue key) does not undo the moves before it.
            self._reconcile_needed = True
            self._backoff.wait(exc, self._stop)
        except Exception as exc:  # not Redis's (a bug, a queue name redis-py cannot encode)
            # The processor must not die of it with the acks in hand: they are sent again below,
            # and reconcile runs first in case anything moved.
            if not self._backoff.failures:
                log.exception("fetch failed")
            self._reconcile_needed = True
            self._backoff.wait(exc, self._stop)
        finally:
            self._lock.acquire()
            self._fetching = False
            if self._stop.is_set():
                self._wcond.notify_all()  # stop() waits for this fetch to end
        if ok:
            self._forget(acks)
        else:
            self._uncertain.update(acks)  # settled by the reconcile that the next leader runs first
        for work in got:
            self._held[work.raw] += 1
        if self._quiet and got:
            self._push_back_unlocked(got)  # quiet() ran while this fetch was on its way
            return
        self._buffer.extend(got)
        if not ok:
            # The next leader (after the backoff already slept) reconciles first; not dry, or a lead
            # that failed while dry (carrying acks) would leave them unsettled until a job comes.
            self._dry = False
            self._cond.notify()
        elif len(got) < want and self._reconcile_needed:
            # A waiter's BLMOVE lost its reply while this fetch was on its way: a job may sit in the
            # private list unheld. Not dry: a processor leads again now, and reconciles first.
            self._cond.notify(len(got) + 1)
        elif len(got) < want:
            # Every queue is empty now: the idle processors beyond these jobs wait for the waiters.
            self._dry = True
            self._wcond.notify_all()
            self._cond.notify(len(got) if ahead else max(len(got) - 1, 0))
            if self._acks:
                self._cond.notify()  # one more to carry the acks that came meanwhile (see get)
        else:
            # One processor per job beyond the one this thread takes, plus one to lead the next
            # fetch: the queues may hold more.
            self._cond.notify(len(got))

    def _fetch(self, want: int, acks: list[bytes]) -> list[Work]:
        names = [] if self.solo else self._plan.order()
        shares = [] if self.solo else self._plan.shares(names, want)
        fetched = self.scripts.fetch(self.identity, names, want, acks, quarantine=self.solo, shares=shares)
        if fetched.jobs and self.wait_replicas:
            self._wait(self.redis.wait(self.wait_replicas, self._wait_ms))
        self._backoff.ok()
        for index, error in fetched.broken:
            self._report_broken(names[index], error)
        if self.solo:
            return [self._suspect(raw) for _, raw in fetched.jobs]
        return [Work(raw, names[index]) for index, raw in fetched.jobs]

    def _report_broken(self, name: str, error: str) -> None:
        """A queue that Redis refuses to read (a key someone SET by hand): skipped, said once a minute."""
        now = time.monotonic()
        if now >= self._broken_said.get(name, 0.0):
            self._broken_said[name] = now + 60.0
            log.error("queue %s cannot be read and is skipped: %s", name, error)

    @staticmethod
    def _suspect(raw: bytes) -> Work:
        """A job from the quarantine list, with its own queue ("" if undecodable: it goes to dead)."""
        return Work(raw, payload.queue_of(raw) or "")

    def _wait(self, acked: int) -> None:
        """After WAIT: too few replicas is logged (once a minute); the jobs run anyway (a failover now
        could make them run twice, never lose them)."""
        now = time.monotonic()
        if acked < self.wait_replicas and now - self._wait_warned > 60:
            self._wait_warned = now
            log.warning(
                "wait_replicas: fetched jobs reached %d of %d replica(s) within %d ms; running them anyway",
                acked,
                self.wait_replicas,
                self._wait_ms,
            )

    def _forget(self, raws: Sequence[bytes]) -> None:
        for raw in raws:
            n = self._held[raw] - 1
            if n > 0:
                self._held[raw] = n
            else:
                self._held.pop(raw, None)

    def ack(self, work: Work) -> None:
        """The job succeeded: remove it from the private list with the next fetch (or flush)."""
        with self._lock:
            # This processor calls get() next and, finding the buffer empty, leads a fetch that
            # carries this ack: no thread needs waking.
            self._acks.append(work.raw)
            self._finished += 1
        if self.solo:
            # At once: a crash from now on must not be counted against a job that already succeeded.
            # On a Redis error the ack stays pending and goes with the next fetch or flush.
            self.flush_acks()

    def release(self, work: Work) -> None:
        """The job left the private list through another script (retry, dead, pushback)."""
        with self._lock:
            self._forget([work.raw])
            self._finished += 1

    def flush_acks(self, *, raise_errors: bool = False) -> None:
        """Send pending acks now (housekeeping; shutdown with ``raise_errors`` so it is retried)."""
        with self._lock:
            acks, self._acks = self._acks, []
        if not acks:
            return
        try:
            self._fetch(0, acks)
        except connection.RedisError as exc:
            with self._lock:
                self._uncertain.update(acks)  # the reply was lost: settled by `reconcile`
                self._reconcile_needed = True
                # Which the next leader runs: an idle worker (dry) has none until a job comes.
                self._dry = False
                self._cond.notify()
            if raise_errors:
                raise
            log.warning("ack: Redis error, will reconcile: %s", exc)
            return
        with self._lock:
            self._forget(acks)

    # -- blocking waiters -------------------------------------------------------------------------
    def start(self) -> None:
        if self.ahead_max:
            threading.Thread(target=self._ahead_loop, name="swarmd-fetch-ahead", daemon=True).start()
        for name in self.queue_names:
            t = threading.Thread(
                target=self._wait_loop, args=(name,), name=f"swarmd-wait-{name}", daemon=True
            )
            t.start()
            self._waiters.append(t)

    def _ahead_loop(self) -> None:
        """Refill the buffer up to its target whenever a processor takes it below (`get` wakes it)."""
        with self._lock:
            while not self._stop.is_set():
                if (
                    not self._quiet
                    and not self._fetching
                    and not self._dry
                    and self._ahead
                    and len(self._buffer) < self._idle + self._ahead * REFILL_AT
                ):
                    self._lead(ahead=True)
                else:
                    self._acond.wait()

    def _hungry(self) -> bool:
        return (
            self._dry
            and self._idle > len(self._buffer)
            and not self._quiet
            and not self._reconciling
            and not self._fetching
        )

    def _wait_loop(self, name: str) -> None:
        # A connection of its own for the thread's life, whose CLIENT ID lets stop() end a blocked
        # BLMOVE at once (CLIENT UNBLOCK) instead of waiting out its timeout.
        pool = self.redis.connection_pool
        try:  # get_connection connects: Redis may be down right now
            conn = until_redis_answers(pool.get_connection, f"fetch {name}", stop=self._stop)
        except connection.RedisError:
            return  # stopped before Redis came back
        try:
            self._wait_on(name, conn)
        finally:
            pool.release(conn)

    def _wait_on(self, name: str, conn: connection.Connection) -> None:
        key = self.keys.quarantine if self.solo else self.keys.queue(name)
        backoff = Backoff(f"fetch {name}")
        client_id: int | None = None
        while True:
            with self._lock:
                while not self._hungry() and not self._stop.is_set():
                    self._wcond.wait()
                if self._stop.is_set():
                    return
                self._in_blmove += 1
            raw: bytes | None = None
            try:
                if connection.drop_if_stale(conn):
                    client_id = None  # a new connection, to the new master: a new CLIENT ID
                if client_id is None:
                    client_id = self._client_id(conn)
                    with self._lock:
                        self._waiter_ids[name] = client_id
                # Atomic move: the job is in the private list before the reply leaves Redis.
                conn.send_command("BLMOVE", key, self.inflight, "RIGHT", "LEFT", self.fetch_timeout)  # type: ignore[no-untyped-call]
                raw = cast("bytes | None", conn.read_response())
                if raw is not None and self.wait_replicas:
                    conn.send_command("WAIT", self.wait_replicas, self._wait_ms)  # type: ignore[no-untyped-call]
                    self._wait(int(conn.read_response()))
                backoff.ok()
            except connection.RedisError as exc:
                conn.disconnect()  # type: ignore[no-untyped-call]  # reconnects on the next command, new client id
                client_id = None
                if isinstance(exc, connection.ResponseError):
                    # An error reply is the reply: the command was refused and moved nothing (UNBLOCKED
                    # or READONLY in a failover, WRONGTYPE for a queue key someone SET by hand).
                    if str(exc).startswith("WRONGTYPE"):
                        self._report_broken(name, str(exc))
                else:
                    with self._lock:
                        # The move may have happened with its reply lost. Reconcile runs in a leader:
                        # stop being dry so that an idle processor leads (and reconciles) now.
                        self._reconcile_needed = True
                        self._dry = False
                        self._cond.notify()
                backoff.wait(exc, self._stop)
            finally:
                with self._lock:
                    if raw is not None:
                        # Held before reconcile may look: it must never take this job for a stranger.
                        self._held[raw] += 1
                    self._in_blmove -= 1
                    self._wcond.notify_all()
            if raw is None:
                continue
            work = self._suspect(raw) if self.solo else Work(raw, name)
            with self._lock:
                if not self._quiet and self._idle > len(self._buffer):
                    self._buffer.append(work)
                    self._dry = False
                    # One processor for this job, one to lead a batch fetch: a job rarely comes alone.
                    self._cond.notify(2)
                    continue
            # Quiet, or no processor is free for it (another waiter or a leader was faster): back to
            # the head of its queue, where another worker may take it now.
            self.push_back([work], log_errors=True)

    @staticmethod
    def _client_id(conn: connection.Connection) -> int:
        """This connection's CLIENT ID, or 0 when an ACL forbids CLIENT (stop then waits out the
        blocking timeout instead of unblocking)."""
        conn.send_command("CLIENT", "ID")  # type: ignore[no-untyped-call]
        try:
            return int(conn.read_response())
        except connection.ResponseError:
            return 0

    # -- quiet, stop, push back -------------------------------------------------------------------
    def quiet(self) -> None:
        """Stop handing out jobs; buffered jobs that never started go back to their queues."""
        with self._lock:
            self._quiet = True
            unstarted = list(self._buffer)
            self._buffer.clear()
            self._cond.notify_all()
            self._wcond.notify_all()
            self._acond.notify_all()
        self.push_back(unstarted, log_errors=True)

    def stop(self, deadline: float) -> None:
        """Quiet, then wait (until ``deadline``) for the waiters to leave BLMOVE and a leader to
        finish its fetch, so nothing moves into the private list after the final drain."""
        self.quiet()
        self._stop.set()
        with self._lock:
            self._wcond.notify_all()
            self._acond.notify_all()
        # End blocked BLMOVEs now (as if they timed out); repeated, since a waiter may have been
        # about to send one when the first unblock went out.
        while any(t.is_alive() for t in self._waiters) and time.monotonic() < deadline:
            with self._lock:
                ids = list(self._waiter_ids.values())
            for client_id in ids:
                if client_id:
                    with contextlib.suppress(connection.RedisError):
                        self.redis.client_unblock(client_id)
            for t in self._waiters:
                t.join(min(0.05, max(0.0, deadline - time.monotonic())))
        with self._lock:
            while self._fetching and time.monotonic() < deadline:
                self._wcond.wait(0.05)

    def push_back(
        self,
        works: Sequence[Work],
        *,
        forget: bool = True,
        log_errors: bool = False,
        suspects: bool = False,
    ) -> int:
        """Put jobs back at the head of their queues (RPUSH); a job without a queue (undecodable)
        goes to `dead` unchanged. To the head of the quarantine list instead in quarantine mode or
        with ``suspects``. ``log_errors``: on a Redis error the jobs stay in the private list (still
        held: the final `drain` or a recovery takes them) and the error is logged.

        pushback.lua moves each entry only if its LREM removed it: a job that already left the list
        (acked, failed, recovered) is never pushed back as well."""
        if not works:
            return 0
        try:
            moved = self.scripts.push_back(
                self.identity,
                [(w.raw, w.queue) for w in works],
                payload.now(),
                quarantine=self.solo or suspects,
            )
        except connection.RedisError as exc:
            if not log_errors:
                raise
            log.warning(
                "could not push %d job(s) back yet (they stay in the private list): %s", len(works), exc
            )
            return 0
        if forget:
            with self._lock:
                self._forget([w.raw for w in works])
        return moved

    def _push_back_unlocked(self, works: Sequence[Work]) -> None:
        """`push_back` from code that holds the lock."""
        self._lock.release()
        try:
            self.push_back(works, log_errors=True)
        finally:
            self._lock.acquire()

    def drain(self, *, suspects: bool = False) -> int:
        """At exit: everything still in the private list goes back to its queue (to the quarantine
        list in quarantine mode, or with ``suspects``: the jobs of a worker recycled for memory)."""
        raws = cast("list[bytes]", self.redis.lrange(self.inflight, 0, -1))
        works = [Work(raw, payload.queue_of(raw) or "") for raw in raws]
        for work in works:
            if not work.queue:
                log.error("undecodable job in the private list moved to dead unchanged: %.300r", work.raw)
        return self.push_back(works, suspects=suspects)

    # -- after a Redis error ----------------------------------------------------------------------
    def reconcile(self) -> None:
        """Settle the private list after a Redis error: push back entries this worker does not hold (a
        fetch whose reply was lost) and finish acks whose reply was lost.

        Runs in the leader with no other fetch and no BLMOVE in progress, so for each distinct job the
        copies in the list are: those Python still runs or buffers, those whose uncertain ack did not
        happen, and strangers moved in by a call whose reply never arrived. Counting copies (never
        re-sending an ack blindly) keeps a twin with the same bytes that is still running in the list.
        """
        with self._lock:
            self._reconciling = True
            while self._in_blmove:
                self._wcond.wait(0.1)
            held, uncertain = Counter(self._held), Counter(self._uncertain)
        try:
            in_list = Counter(cast("list[bytes]", self.redis.lrange(self.inflight, 0, -1)))
            resend: list[bytes] = []
            strangers: list[Work] = []
            for raw, copies in in_list.items():
                extra = copies - (held[raw] - uncertain[raw])  # beyond the jobs still in Python's hands
                if extra <= 0:
                    continue
                unacked = min(extra, uncertain[raw])
                resend += [raw] * unacked
                stranger = Work(raw, payload.queue_of(raw) or "")  # push_back: to quarantine if solo
                strangers += [stranger] * (extra - unacked)
            if resend:
                self._fetch(0, resend)  # these acks did not happen: now they do, and count
            if strangers:
                moved = self.push_back(strangers, forget=False)  # never held: nothing to forget
                log.warning("reconcile: pushed back %d job(s) whose fetch reply was lost", moved)
            with self._lock:
                # Every uncertain ack is settled now: done before, or done just above.
                self._forget(list(uncertain.elements()))
                self._uncertain -= uncertain
            self._reconcile_needed = False
        finally:
            with self._lock:
                self._reconciling = False
                self._wcond.notify_all()

    # -- introspection ----------------------------------------------------------------------------
    @property
    def is_quiet(self) -> bool:
        return self._quiet
