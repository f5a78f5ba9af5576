"""The supervisor: forks `processes` workers, watches them, replaces them, and speaks for the swarm.

Two halves:

- `Supervisor`, the state machine. It decides, and acts only through what it is given: ``spawn`` (a
  worker for a slot, or the quarantine worker), ``kill``, ``recover`` (fork a short-lived child that
  recovers dead workers' in-flight lists), a `systemd.Notifier`, a clock. It is fed events:
  `message` (a line from a worker's control pipe), `exited` (a reaped pid, a worker's or a recovery
  child's), `signal`, and `tick`. Unit tests drive it with fakes, without fork.
- `swarmd.swarm.run()`, the I/O: Redis check, pidfile, preload, one single-threaded `selectors` loop
  over the `signal.set_wakeup_fd` pipe and the workers' control pipes, `os.fork()`, `waitpid`, the
  title.

Pipes. Each worker writes lines to its own control pipe (`swarmd.control`): ``booted`` once it has
reached Redis and started its processors, then ``beat <busy>`` at every housekeeping tick (at least
every second). The supervisor uses them for readiness, STATUS, titles and the `heartbeat_timeout`
check. All workers hold the read end of one "alive" pipe whose only write end is the supervisor's: EOF
there means the supervisor is gone, and workers stop at once, pushing their jobs back (no polling of
``getppid``).

Signals. `signal` dispatches each one to its ``handle_<name>`` method (`control.signal_handler`);
`HANDLED`, the signals `run` installs, are those that have one.

Exits: exit 70 is for workers that cannot boot. One that fails to boot before the first READY=1
stops the swarm with exit 70 (69 if it could not reach Redis), after STOPPING=1, and lets systemd's
start limits decide; later, more than `crash_limit` deaths before "booted" within `crash_window` do
the same (exit 69 never counts: a Redis outage is waited out). A worker that booted and then died is
never part of a crash loop, however often it happens: it was killed from outside (the OOM killer) or
by a job, and the poison guard deals with the job (`swarmd.recovery`). Every death is replaced after
a per-slot exponential backoff (0.1 s doubling to 30 s, ±20 % jitter, reset once the worker had been
up for 60 s); a clean exit (0) is replaced at once. Workers retired on purpose (reload, memory, stop)
are replaced by a rolling step before they are told to stop, so their exit needs no replacement.

Recycling: a worker replaced for memory (or at its own request, control ``recycle``) gets SIGUSR2
before its TERM: the jobs still running when it pushes back are its fault's suspects, and go to the
quarantine list instead of their queues (see `swarmd.worker`).

The quarantine worker: when a worker says the quarantine list holds jobs (control ``quarantine``),
the supervisor forks one quarantine worker (concurrency 1) unless one runs. It is outside the
`processes` slots: not counted in "N of N up", not needed for READY=1, not replaced after a clean
exit (it exits 0 once its list stayed empty), started again on demand after a crash (with its own
backoff), recycled without replacement when over `max_memory_mb`, and retired by a reload.

No job is lost when any process dies, because a job lives in Redis, never only in a
process: in its queue, or in the private in-flight list of the worker that fetched it (see
`swarmd.fetch`). When a worker dies, however it dies, the supervisor reaps it and forks a recovery
child for its identity right away (``recover``), so its in-flight jobs are moved on within
milliseconds. The supervisor's loop never waits on the network (it holds no Redis connection at all,
so forking stays safe): the child does the Redis work, retrying with backoff for `RECOVERY_FOR_S`,
and is reaped like a worker; one child at a time, for every identity pending when it starts. Should
the child fail (Redis away for longer), any worker recovers the list once the dead worker's liveness
key expires. When the supervisor itself dies, its workers read EOF on the alive pipe and push their
jobs back (giving up after a second or two if Redis is away); if they are killed too, the liveness
keys expire and the next swarm's workers recover the lists at boot.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import random
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from swarmd import control, logs, systemd
from swarmd.config import Config
from swarmd.errors import ExitCode
from swarmd.metrics import RESTART_REASONS as RESTART_REASONS
from swarmd.procfs import read_pss_kb
from swarmd.retrying import Backoff
from swarmd.version import __version__

__all__ = ["HANDLED", "Child", "Phase", "Slot", "Supervisor", "describe_exit"]

log = logging.getLogger("swarmd")

BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a worker up this long resets its slot's backoff
STUCK_SILENCE_S = 3.0  # silence that, past a job's time limit and grace, makes a worker hung
MEMORY_SAMPLES = 3  # samples in a row above max_memory_mb before a worker is replaced
ABORT_GRACE_S = 2.0  # after SIGABRT (stack dump), SIGKILL if the worker is still there
HURRY_AFTER_S = 0.2  # fast stop: the second TERM, late enough not to merge with the first
# How long a recovery child retries: by then the dead worker's liveness key (`liveness_ttl`, 20 s by
# default) has long expired, and any worker recovers the list.
RECOVERY_FOR_S = 60.0
RECOVERY_STOP_GRACE_S = 10.0  # while stopping, a recovery child is SIGKILLed after this
FORK_TRIES = 10  # failed forks of a recovery child in a row: then the workers recover the lists
EXTEND_EVERY_S = 2.0


class Spawn(Protocol):
    def __call__(
        self,
        index: int,
        config: Config,
        *,
        quarantine: bool = False,
        reason: str | None = None,
        periodic: bool = False,
    ) -> tuple[int, str]:
        """Start a worker for slot ``index`` (or the quarantine worker) with ``config``; return its
        pid and identity (raises OSError). ``reason`` says why it replaces another worker
        (`RESTART_REASONS`), None for a worker of the swarm's start; the worker counts it in Redis
        (``swarmd_worker_restarts_total``). ``periodic``: it claims the swarm's periodic ticks."""
        ...


Recover = Callable[[Sequence[tuple[str, Config]]], int]
"""Fork a short-lived child that recovers the in-flight lists of these (identity, config) dead
workers, retrying with backoff for at most `RECOVERY_FOR_S`; return its pid (raises OSError)."""


class Phase(enum.Enum):
    STARTING = "starting"  # forking the first workers; READY=1 not sent yet
    RUNNING = "running"
    STOPPING = "stopping"


@dataclass(eq=False)
class Slot:
    """One of the `processes` places in the swarm; its worker changes over time."""

    index: int
    worker: Child | None = None
    incoming: Child | None = None  # the worker's replacement while a rolling step is under way
    crashes: int = 0  # crashes in a row: the backoff exponent
    respawn_at: float | None = None  # when to start a worker for an empty slot
    retry_at: float | None = None  # a failed rolling step is not retried before this
    replace: str | None = None  # why the worker should be replaced by a rolling step (memory)
    handover: bool = False  # replaced by a rolling step so that its next worker claims periodic ticks
    reason: str | None = None  # why the next worker of this slot replaces one (`RESTART_REASONS`)


@dataclass(eq=False)
class Child:
    """A forked worker, from spawn until it is reaped."""

    pid: int
    identity: str
    slot: Slot
    config: Config
    generation: int
    started: float
    last_seen: float
    booted_at: float | None = None
    busy: int = 0
    retiring: bool = False  # told to stop: its exit is expected, and it is not replaced
    kill_at: float | None = None  # SIGKILL if still alive then (stop deadline, or after SIGABRT)
    hurry_at: float | None = None  # send a second TERM then (fast stop)
    aborted: bool = False  # got SIGABRT for being hung
    mem_over: int = 0  # memory samples in a row above max_memory_mb
    stopped_remotely: bool = False  # Stop from Sidekiq's Web UI / swarmctl: not replaced
    periodic: bool = False  # it claims the swarm's periodic ticks (the worker of the first slot)
    quarantine: bool = False  # the quarantine worker (outside the slots)
    recycled: str | None = None  # why it got SIGUSR2 before its TERM (memory, its own request)
    stuck_at: float | None = None  # a job with a time limit is stuck from then on (control ``stuck-at``)

    @property
    def name(self) -> str:
        if self.quarantine:
            return f"quarantine worker (pid {self.pid})"
        return f"worker {self.slot.index + 1} (pid {self.pid})"


def describe_exit(code: int) -> str:
    """``os.waitstatus_to_exitcode`` result -> words (negative = killed by that signal)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"was killed by {name}"


@dataclass(eq=False)
class _Recoverer:
    """A recovery child (see `Recover`), from fork until it is reaped."""

    pid: int
    identities: list[str]
    kill_at: float | None = None


def _noop() -> None:
    pass


class Supervisor:
    """The swarm's state machine (see the module docstring); single-threaded, driven by `run`."""

    def __init__(
        self,
        config: Config,
        *,
        spawn: Spawn,
        kill: Callable[[int, int], None],
        recover: Recover,
        notifier: systemd.Notifier,
        clock: Callable[[], float] = time.monotonic,
        reload: Callable[[], Config] | None = None,
        memory_kb: Callable[[int], int | None] = read_pss_kb,
        set_title: Callable[[str], None] = lambda title: None,
        reopen_logs: Callable[[], None] = _noop,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self._spawn_fn = spawn
        self._kill_fn = kill
        self._recover_fn = recover
        self.notifier = notifier
        self._clock = clock
        self._reload_fn = reload
        self._memory_kb = memory_kb
        self._set_title = set_title
        self._reopen_logs = reopen_logs
        self._rand = rand
        self.phase = Phase.STARTING
        self.generation = 1  # bumped by each reload; older workers are replaced one at a time
        self.slots = [Slot(i) for i in range(config.processes)]
        self.children: dict[int, Child] = {}
        self.reloading = False
        self.quiet = False
        self.stop_code = int(ExitCode.OK)
        self._reload_notified = False
        self._rollback: tuple[Config, int] | None = None  # config to go back to if a reload fails
        self._crash_times: deque[float] = deque()
        self._to_recover: list[tuple[str, Config]] = []  # (identity, config) of reaped workers
        self._recoverer: _Recoverer | None = None
        self._recover_at: float | None = None  # after a failed fork: the next try
        self._fork_backoff = Backoff("starting a recovery child", rand=rand, clock=clock)
        self.quarantine_worker: Child | None = None
        self._quarantine_slot = Slot(-1)  # its backoff and not-before time; never in `slots`
        self._quarantine_wanted = False  # a worker said the quarantine list holds jobs
        now = clock()
        self._last_tick = now
        self._next_memory = now + config.memory_check_interval
        self._watchdog_s = notifier.watchdog_interval()
        self._next_watchdog = now
        self._next_extend = now
        self._published: tuple[str, str, float] = ("", "", -1e9)  # coarse part, text, when
        self._publish_at: float | None = None

    # -- queries ---------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once the swarm is stopping, every worker has been reaped and their in-flight lists
        recovered (or given up on): `run` returns `stop_code`."""
        return (
            self.phase is Phase.STOPPING
            and not self.children
            and self._recoverer is None
            and not self._to_recover
        )

    def up(self) -> int:
        return sum(
            1 for s in self.slots if s.worker and s.worker.booted_at is not None and not s.worker.retiring
        )

    def counts(self) -> str:
        n = self.config.processes
        busy = sum(c.busy for c in self.children.values() if not c.quarantine)
        return f"{min(self.up(), n)} of {n} up, {busy} of {n * self.config.concurrency} busy"

    def status_text(self) -> str:
        """``4 of 4 up, 13 of 100 busy`` plus `` reloading``/`` stopping``: STATUS=."""
        return self.counts() + self._state_suffix()

    def _state_suffix(self) -> str:
        if self.phase is Phase.STOPPING or self.quiet:
            return " stopping"  # quiet is the first half of stopping, as in Sidekiq's titles
        return " reloading" if self.reloading else ""

    def title(self) -> str:
        """``swarmd 0.1.0 myapp supervisor [4 of 4 up, 13 of 100 busy]``."""
        return f"swarmd {__version__} {self.config.tag} supervisor [{self.counts()}]{self._state_suffix()}"

    # -- events ----------------------------------------------------------------------------------
    def start(self) -> None:
        now = self._clock()
        log.info(
            "swarmd %s starting %d worker(s) of concurrency %d (pid %d)",
            __version__,
            self.config.processes,
            self.config.concurrency,
            os.getpid(),
        )
        for slot in self.slots:
            self._spawn(slot, now)
        self._publish(now, force=True)

    def message(self, pid: int, line: str) -> None:
        """A line from worker ``pid``'s control pipe (`swarmd.control`); any line is a sign of life."""
        child = self.children.get(pid)
        if child is None:
            return
        now = self._clock()
        child.last_seen = now
        message = control.decode(line)
        if message is None:
            log.debug("%s sent an unknown line %r", child.name, line)
        elif message.kind is control.Kind.BOOTED:
            self._booted(child, now)
        elif message.kind is control.Kind.BEAT:
            child.busy = message.busy
        elif message.kind is control.Kind.STOPPED_REMOTELY:
            child.stopped_remotely = True
        elif message.kind is control.Kind.QUARANTINE:
            self._quarantine_wanted = True
            self._start_quarantine(now)
        elif message.kind is control.Kind.RECYCLE:
            self._recycle_asked(child, now)
        elif message.kind is control.Kind.STUCK_AT:
            child.stuck_at = message.busy / 1000.0 if message.busy else None

    def exited(self, pid: int, status: int) -> None:
        """``waitpid`` reported ``pid`` with wait status ``status``."""
        now = self._clock()
        if self._recoverer is not None and pid == self._recoverer.pid:
            self._recovery_exited(status, now)
            return
        child = self.children.pop(pid, None)
        if child is None:
            return  # not ours (swarmd as PID 1 in a container adopts orphans): reaped, ignored
        code = os.waitstatus_to_exitcode(status)
        how = describe_exit(code)
        # Its jobs go back first, whatever happens next: the process is gone, its list is not.
        self._to_recover.append((child.identity, child.config))
        self._start_recovery(now)
        if child.quarantine:
            self._quarantine_exited(child, code, how, now)
            return
        slot = child.slot
        if slot.worker is child:
            slot.worker = None
        if child.retiring or self.phase is Phase.STOPPING:
            level = logging.INFO if code in (0, -signal.SIGTERM) else logging.WARNING
            log.log(level, "%s %s", child.name, how)
            if slot.incoming is child:
                slot.incoming = None
            return
        if slot.incoming is child:
            slot.incoming = None
            self._replacement_failed(slot, child, how, now, counts=code != ExitCode.UNAVAILABLE)
            return
        boot_failure = code in (ExitCode.UNAVAILABLE, ExitCode.SOFTWARE, ExitCode.CONFIG) or child.aborted
        if child.booted_at is None and self.phase is Phase.STARTING and boot_failure:
            # Exit 70 (BootError: the import of `require` failed), 78 (a setting the app's code
            # refutes: a periodic entry naming no registered job), 69 (Redis) or a boot timeout. Any
            # other death before "booted" (a poison job fetched at once, the OOM killer) is a crash.
            if code not in (ExitCode.UNAVAILABLE, ExitCode.CONFIG):
                code = int(ExitCode.SOFTWARE)
            log.error(
                "%s %s before it booted (its error is logged above); stopping the swarm", child.name, how
            )
            self._stop(now, code=code, fast=True)
            return
        if child.booted_at is not None and code == 0 and not child.aborted:
            if child.stopped_remotely and slot.incoming is None:
                # Stop from Sidekiq's Web UI (or `swarmctl stop`) means that process is gone, as in
                # Sidekiq; a reload brings the configured number of workers back.
                first = slot is self.slots[0]
                self.slots.remove(slot)
                log.info(
                    "%s stopped from the Web UI/API; not replaced (%d left)", child.name, len(self.slots)
                )
                if not self.slots:
                    self._stop(now, code=int(ExitCode.OK), fast=False)
                elif first:
                    # Its worker claimed the periodic ticks: the worker of the new first slot is replaced
                    # (a rolling step, its jobs finish) by one that claims them, so a swarm keeps
                    # enqueuing them whichever workers are stopped.
                    self.slots[0].handover = True
                return
            log.info("%s %s; starting a new one", child.name, how)
            slot.reason = "exit"
            if slot.incoming is None:
                slot.respawn_at = now
            return
        if code == -signal.SIGKILL and not child.aborted:
            how += " (perhaps out of memory?)"
        # Only a worker that never booted can be part of a crash loop: one that booted and died was
        # killed from outside or by a job (the poison guard takes the job out of circulation), and
        # exiting would stop every other job too. A worker that could not reach Redis (69) is not
        # one either: the swarm waits a Redis outage out with backoff instead of leaving it to
        # systemd's start limits.
        slot.reason = "hung" if child.aborted else "crash"
        self._crashed(slot, child, how, now, counts=child.booted_at is None and code != ExitCode.UNAVAILABLE)

    def signal(self, signum: int) -> None:
        """A signal the supervisor received (read from the wakeup fd), dispatched to its ``handle_<name>``
        method; logging is safe here. A signal without a handler is logged and ignored."""
        now = self._clock()
        handler = control.signal_handler(self, signum)
        if handler is None:
            log.warning(
                "got signal %s, which the supervisor does not handle: ignored", control.signal_name(signum)
            )
        else:
            handler(now)
        self._publish(now)

    # -- signal handlers (`HANDLED` lists the signals that have one) ---------------------------------
    def handle_term(self, now: float) -> None:
        self._stop_signal("TERM", now)

    def handle_int(self, now: float) -> None:
        self._stop_signal("INT", now)

    def _stop_signal(self, name: str, now: float) -> None:
        if self.phase is Phase.STOPPING:
            log.info("got %s again: stopping now; running jobs go back to their queues", name)
            self._hurry(now, at_once=True)
        else:
            log.info("got %s: stopping (timeout %.0f s)", name, self.config.timeout)
            self._stop(now, code=self.stop_code, fast=False)

    def handle_tstp(self, now: float) -> None:
        log.info("got TSTP: workers stop fetching new jobs")
        self.quiet = True
        self._forward(signal.SIGTSTP)

    def handle_hup(self, now: float) -> None:
        self._reload(now)

    def handle_usr1(self, now: float) -> None:
        self._reopen_logs()
        log.info("got USR1: log files reopened")
        self._forward(signal.SIGUSR1)

    def handle_ttin(self, now: float) -> None:
        log.info("got TTIN: every worker logs its threads' stacks")
        self._forward(signal.SIGTTIN)

    def handle_chld(self, now: float) -> None:
        """Only wakes the loop: `run` reaps after every wakeup anyway."""

    def tick(self) -> float:
        """Act on every timer that is due; return the seconds until the next one (at most 1)."""
        now = self._clock()
        self._check_stall(now)
        self._check_kill_deadlines(now)
        if self.phase is not Phase.STOPPING:
            self._check_liveness(now)
            self._check_memory(now)
            self._respawn_due(now)
            self._start_quarantine(now)
            self._check_ready(now)
            self._roll(now)
        self._start_recovery(now)
        self._systemd(now)
        self._publish(now)
        self._last_tick = now
        return self._next_wakeup(now)

    # -- workers ---------------------------------------------------------------------------------
    def _spawn(self, slot: Slot, now: float, *, incoming: bool = False) -> Child | None:
        try:
            periodic = bool(self.slots) and slot is self.slots[0]
            pid, identity = self._spawn_fn(slot.index, self.config, reason=slot.reason, periodic=periodic)
        except OSError as exc:  # EAGAIN/ENOMEM from fork: try again later, like a crash
            log.error("cannot start worker %d: %s", slot.index + 1, exc)
            if incoming:
                slot.retry_at = now + self._backoff(slot)
            else:
                slot.respawn_at = now + self._backoff(slot)
            return None
        child = Child(pid, identity, slot, self.config, self.generation, started=now, last_seen=now)
        child.periodic = periodic
        self.children[pid] = child
        slot.reason = None
        slot.respawn_at = None
        if incoming:
            slot.incoming = child
        else:
            slot.worker = child
        log.debug("%s started: %s", child.name, identity)
        return child

    def _booted(self, child: Child, now: float) -> None:
        if child.booted_at is not None:
            return
        child.booted_at = now
        if self.phase is Phase.STOPPING or child.retiring:
            return
        if self.quiet:  # a worker started after TSTP must not fetch either
            self._kill(child.pid, signal.SIGTSTP)
        slot = child.slot
        if child.periodic:
            slot.handover = False
        if slot.incoming is child:
            why = slot.replace
            old, slot.worker, slot.incoming = slot.worker, child, None
            slot.replace, slot.retry_at = None, None
            if old is not None:
                # Only now, with its replacement serving, is the old worker told to stop: no capacity
                # gap. It finishes or pushes back its jobs itself.
                log.info("%s booted; stopping %s", child.name, old.name)
                if why is not None:
                    self._recycle(old, why, now)
                else:
                    self._retire(old, now)

    def _recycle(self, child: Child, why: str, now: float) -> None:
        """Retire ``child`` for its jobs' sake: SIGUSR2 first, so that the jobs still running when it
        pushes back go to the quarantine list (or, in the quarantine worker, count as a crash)."""
        if child.retiring:
            return
        child.recycled = why
        self._kill(child.pid, signal.SIGUSR2)  # delivered before the TERM (lower number, sent first)
        self._retire(child, now)

    def _recycle_asked(self, child: Child, now: float) -> None:
        """The worker asked to be recycled (control ``recycle``)."""
        if child.retiring or self.phase is Phase.STOPPING:
            return
        why = "the worker asked to be recycled"
        log.info("%s asks to be recycled", child.name)
        if child.quarantine:
            self._recycle(child, why, now)
        elif child.slot.worker is child and child.slot.replace is None:
            child.slot.replace = why  # a rolling step replaces it, then `_booted` recycles it

    def _retire(self, child: Child, now: float) -> None:
        if child.retiring:
            return
        child.retiring = True
        child.kill_at = now + child.config.timeout + self._grace(child.config)
        self._kill(child.pid, signal.SIGTERM)

    @staticmethod
    def _grace(config: Config) -> float:
        # After `timeout`, a worker still joins its fetch threads (<= fetch_timeout) and pushes its
        # unfinished jobs back; then it gets SIGKILL (and its list is recovered by us).
        return config.fetch_timeout + 3.0

    def _crashed(self, slot: Slot, child: Child, how: str, now: float, *, counts: bool) -> None:
        if child.booted_at is not None and now - child.booted_at >= STABLE_AFTER_S:
            slot.crashes = 0
        if counts and self._count_crash(now):
            return
        delay = self._backoff(slot)
        when = "before it booted" if child.booted_at is None else f"after {now - child.started:.1f} s"
        log.error("%s %s %s; starting a new one in %.1f s", child.name, how, when, delay)
        if slot.incoming is None:
            slot.respawn_at = now + delay

    def _count_crash(self, now: float) -> bool:
        """Record a worker's death before it booted; True if that makes a crash loop (the swarm is
        then stopping with 70)."""
        self._crash_times.append(now)
        while self._crash_times and self._crash_times[0] < now - self.config.crash_window:
            self._crash_times.popleft()
        if len(self._crash_times) <= self.config.crash_limit:
            return False
        log.error(
            "crash loop: %d workers died before they booted within %.0f s (crash_limit %d); "
            "stopping the swarm",
            len(self._crash_times),
            self.config.crash_window,
            self.config.crash_limit,
        )
        self._stop(now, code=int(ExitCode.SOFTWARE), fast=True)
        return True

    def _backoff(self, slot: Slot) -> float:
        slot.crashes += 1
        delay = BACKOFF_BASE_S * 2.0 ** min(slot.crashes - 1, 20) * (0.8 + 0.4 * self._rand())
        return min(delay, BACKOFF_MAX_S)

    def _replacement_failed(self, slot: Slot, child: Child, how: str, now: float, *, counts: bool) -> None:
        """A rolling step's new worker died before it booted: the old one keeps serving."""
        log.error("%s (a replacement) %s before it booted; the old worker keeps running", child.name, how)
        if counts and self._count_crash(now):
            return
        delay = self._backoff(slot)
        if slot.worker is None:  # the old one died meanwhile: an ordinary respawn
            slot.respawn_at = now + delay
        elif self.reloading and child.generation == self.generation:
            self._abort_reload(f"new worker {how} before it booted", now)
        else:
            slot.retry_at = now + delay

    def _kill(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # exited, not reaped yet: the loop reaps it
            self._kill_fn(pid, sig)

    def _forward(self, sig: int) -> None:
        for child in list(self.children.values()):
            self._kill(child.pid, sig)

    # -- recovery of dead workers' lists ---------------------------------------------------------
    def _start_recovery(self, now: float) -> None:
        """Fork a recovery child for every identity pending, unless one runs (it is reaped by the loop,
        which then starts the next); never blocks."""
        if self._recoverer is not None or not self._to_recover:
            return
        if self._recover_at is not None and now < self._recover_at:
            return
        targets, self._to_recover = self._to_recover, []
        identities = [identity for identity, _ in targets]
        try:
            pid = self._recover_fn(targets)
        except OSError as exc:  # EAGAIN/ENOMEM from fork
            if self._fork_backoff.failures + 1 >= FORK_TRIES or self.phase is Phase.STOPPING:
                log.error(
                    "cannot start the recovery of %s (%s); workers recover the lists once the liveness "
                    "keys expire",
                    ", ".join(identities),
                    exc,
                )
                self._fork_backoff.failures = 0
                self._recover_at = None
                return
            self._to_recover = targets + self._to_recover
            self._recover_at = now + self._fork_backoff.failed(exc)
            return
        self._fork_backoff.ok()
        self._recover_at = None
        self._recoverer = _Recoverer(pid, identities)
        if self.phase is Phase.STOPPING:
            self._recoverer.kill_at = now + RECOVERY_STOP_GRACE_S
        log.debug("recovery child (pid %d) started for %s", pid, ", ".join(identities))

    def _recovery_exited(self, status: int, now: float) -> None:
        recoverer, self._recoverer = self._recoverer, None
        assert recoverer is not None
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.warning(
                "the recovery of %s %s; workers recover what is left once the liveness keys expire",
                ", ".join(recoverer.identities),
                describe_exit(code),
            )
        self._start_recovery(now)

    # -- the quarantine worker -------------------------------------------------------------------
    def _start_quarantine(self, now: float) -> None:
        """Start the quarantine worker if a worker asked for one and none runs (see the module
        docstring); after a crash, not before its backoff is over."""
        if not self._quarantine_wanted or self.quarantine_worker is not None:
            return
        if self.phase is Phase.STOPPING or self.quiet:
            return
        qslot = self._quarantine_slot
        if qslot.respawn_at is not None and now < qslot.respawn_at:
            return  # `_next_wakeup` brings the loop back then
        self._quarantine_wanted = False
        try:
            pid, identity = self._spawn_fn(qslot.index, self.config, quarantine=True)
        except OSError as exc:
            log.error("cannot start the quarantine worker: %s", exc)
            qslot.respawn_at = now + self._backoff(qslot)
            self._quarantine_wanted = True
            return
        qslot.respawn_at = None
        child = Child(
            pid, identity, qslot, self.config, self.generation, started=now, last_seen=now, quarantine=True
        )
        self.children[pid] = child
        self.quarantine_worker = child
        log.info("%s started: suspects from the quarantine list run one at a time", child.name)

    def _quarantine_exited(self, child: Child, code: int, how: str, now: float) -> None:
        self.quarantine_worker = None
        qslot = child.slot
        if child.retiring or self.phase is Phase.STOPPING:
            level = logging.INFO if code in (0, -signal.SIGTERM) else logging.WARNING
            log.log(
                level, "%s %s%s", child.name, how, f" (recycled: {child.recycled})" if child.recycled else ""
            )
            return
        if child.booted_at is not None and code == 0 and not child.aborted:
            log.info("%s %s: its list is empty; another starts when suspects arrive", child.name, how)
            return
        # As for slot workers: only a death before "booted" can be part of a crash loop. After boot,
        # the job it ran alone is to blame and its crash has been counted (recovery of its list):
        # that is the quarantine doing its work, so the next suspect runs at once, not after a
        # growing backoff (with several poison jobs, innocent suspects would wait minutes).
        if child.booted_at is not None:
            qslot.crashes = 0
            delay = BACKOFF_BASE_S
        else:
            if code != ExitCode.UNAVAILABLE and self._count_crash(now):
                return
            delay = self._backoff(qslot)
        qslot.respawn_at = now + delay
        log.error(
            "%s %s after %.1f s; another starts when suspects are waiting, in %.1f s at the earliest",
            child.name,
            how,
            now - child.started,
            delay,
        )

    # -- timers ----------------------------------------------------------------------------------
    def _check_stall(self, now: float) -> None:
        # The beats of a supervisor that was stopped or starved wait in the pipes and were read just
        # now; but do not kill a worker for a silence that was the supervisor's own.
        stalled = now - self._last_tick
        if stalled > max(2.0, self.config.heartbeat_timeout / 2):
            log.warning("supervisor loop stalled for %.1f s; worker silence before now is forgiven", stalled)
            for child in self.children.values():
                child.last_seen = max(child.last_seen, now)
                if child.booted_at is None:
                    child.started = max(child.started, now - stalled / 2)

    def _check_kill_deadlines(self, now: float) -> None:
        recoverer = self._recoverer
        if recoverer is not None and recoverer.kill_at is not None and now >= recoverer.kill_at:
            recoverer.kill_at = None
            log.warning("recovery child (pid %d) is still running: SIGKILL", recoverer.pid)
            self._kill(recoverer.pid, signal.SIGKILL)
        for child in list(self.children.values()):
            if child.hurry_at is not None and now >= child.hurry_at:
                child.hurry_at = None
                self._kill(child.pid, signal.SIGTERM)
            if child.kill_at is not None and now >= child.kill_at:
                child.kill_at = None
                log.warning("%s is still running: SIGKILL (its jobs go back to their queues)", child.name)
                self._kill(child.pid, signal.SIGKILL)

    def _check_liveness(self, now: float) -> None:
        cfg = self.config
        for child in list(self.children.values()):
            if child.retiring or child.aborted:
                continue
            if (
                child.stuck_at is not None
                and now > child.stuck_at
                and now - child.last_seen > STUCK_SILENCE_S
            ):
                # A job past its time limit and grace, and the worker silent: frozen in C code that
                # holds the GIL (its watchdog cannot run either). Its jobs are recovered as suspects.
                silent = now - child.last_seen
                self._abort(child, f"was silent for {silent:.1f} s with a job stuck past its time limit", now)
            elif child.booted_at is None:
                if now - child.started > cfg.boot_timeout:
                    self._abort(child, f"did not boot within {cfg.boot_timeout:g} s", now)
            elif now - child.last_seen > cfg.heartbeat_timeout:
                silent = now - child.last_seen
                self._abort(
                    child, f"was silent for {silent:.1f} s (heartbeat_timeout {cfg.heartbeat_timeout:g})", now
                )

    def _abort(self, child: Child, why: str, now: float) -> None:
        log.error("%s %s: SIGABRT (its threads' stacks follow), then SIGKILL", child.name, why)
        child.aborted = True
        child.kill_at = now + ABORT_GRACE_S
        self._kill(child.pid, signal.SIGABRT)
        self._kill(child.pid, signal.SIGCONT)  # a stopped worker must run to dump its stacks and die

    def _check_memory(self, now: float) -> None:
        limit_mb = self.config.max_memory_mb
        if not limit_mb or now < self._next_memory:
            return
        self._next_memory = now + self.config.memory_check_interval
        for slot in self.slots:
            child = slot.worker
            if child is None or child.booted_at is None or child.retiring or slot.replace or slot.incoming:
                continue
            kb = self._memory_kb(child.pid)
            if kb is None:
                continue
            child.mem_over = child.mem_over + 1 if kb > limit_mb * 1024 else 0
            if child.mem_over >= MEMORY_SAMPLES:
                log.warning(
                    "%s uses %d MB, above max_memory_mb %d for %d samples in a row: replacing it",
                    child.name,
                    kb // 1024,
                    limit_mb,
                    child.mem_over,
                )
                slot.replace = f"memory {kb // 1024} MB > max_memory_mb {limit_mb}"
        child = self.quarantine_worker
        if child is not None and child.booted_at is not None and not child.retiring:
            kb = self._memory_kb(child.pid)
            if kb is None:
                return
            child.mem_over = child.mem_over + 1 if kb > limit_mb * 1024 else 0
            if child.mem_over >= MEMORY_SAMPLES:
                # No replacement to wait for: another one starts on demand. The job it runs alone
                # is to blame: the recycle counts as its crash.
                why = f"memory {kb // 1024} MB > max_memory_mb {limit_mb}"
                log.warning(
                    "%s uses %d MB, above max_memory_mb %d: recycling it", child.name, kb // 1024, limit_mb
                )
                self._recycle(child, why, now)

    def _respawn_due(self, now: float) -> None:
        for slot in self.slots[: self.config.processes]:
            due = slot.respawn_at is not None and now >= slot.respawn_at
            if due and slot.worker is None and slot.incoming is None:
                self._spawn(slot, now)

    def _check_ready(self, now: float) -> None:
        if self.phase is not Phase.STARTING:
            return
        if all(s.worker and s.worker.booted_at is not None for s in self.slots):
            self.phase = Phase.RUNNING
            log.info("all %d worker(s) booted: ready", len(self.slots))
            self.notifier.ready(status=self.status_text())

    def _roll(self, now: float) -> None:
        """One rolling step at a time: start the replacement of a worker that runs an older config (or
        is over its memory limit); `_booted` retires the old one once the new one has booted."""
        if self.phase is not Phase.RUNNING or any(s.incoming for s in self.slots):
            return
        n = self.config.processes
        for slot in self.slots[:n]:
            child = slot.worker
            if child is None or child.booted_at is None or child.retiring:
                continue
            why = slot.replace or ("reload" if child.generation < self.generation else None)
            if why is None and slot.handover and not child.periodic:
                why = "to take over the periodic jobs"
            if why and (slot.retry_at is None or now >= slot.retry_at):
                log.info("replacing %s (%s)", child.name, why)
                slot.reason = "memory" if slot.replace else "reload"
                self._spawn(slot, now, incoming=True)
                return
        if len(self.slots) > n:  # a reload lowered `processes`: retire the surplus last
            for slot in self.slots[n:]:
                for child in (slot.worker, slot.incoming):
                    if child is not None:
                        self._retire(child, now)
            del self.slots[n:]
        if self.reloading and all(
            s.worker and s.worker.booted_at is not None and s.worker.generation >= self.generation
            for s in self.slots
        ):
            self.reloading = False
            self._rollback = None
            log.info("reload done: %d worker(s) replaced one at a time", n)
            if self._reload_notified:
                self.notifier.ready(status=self.status_text())

    def _retire_all(self, now: float) -> None:
        for slot in self.slots:
            slot.respawn_at = slot.retry_at = None
        for child in list(self.children.values()):
            self._retire(child, now)

    def _stop(self, now: float, *, code: int, fast: bool) -> None:
        if self.phase is Phase.STOPPING:
            return
        self.phase = Phase.STOPPING
        self.reloading = False
        self.stop_code = code
        self.notifier.stopping(status=self.status_text())
        self._retire_all(now)
        if self._recoverer is not None and self._recoverer.kill_at is None:
            self._recoverer.kill_at = now + RECOVERY_STOP_GRACE_S
        if fast:
            self._hurry(now, at_once=False)
        self._publish(now, force=True)

    def _hurry(self, now: float, *, at_once: bool) -> None:
        """A second TERM to every worker: it stops waiting for its jobs and pushes them back."""
        for child in self.children.values():
            if at_once:
                self._kill(child.pid, signal.SIGTERM)
            else:  # two TERMs sent together would merge into one pending signal
                child.hurry_at = now + HURRY_AFTER_S
            deadline = now + HURRY_AFTER_S + self._grace(child.config)
            child.kill_at = deadline if child.kill_at is None else min(child.kill_at, deadline)

    # -- reload ----------------------------------------------------------------------------------
    def _reload(self, now: float) -> None:
        if self.phase is Phase.STOPPING:
            log.info("got HUP while stopping: ignored")
            return
        log.info("got HUP: reloading the config, then replacing workers one at a time")
        self._reload_notified = self.phase is Phase.RUNNING
        if self._reload_notified:
            self.notifier.reloading(status="reloading")
        old = self.config
        try:
            new = self._reload_fn() if self._reload_fn is not None else old
        except Exception as exc:  # a broken config changes nothing
            log.error("reload failed, nothing changed: %s", exc)
            if self._reload_notified:
                self.notifier.ready(status=f"reload failed: {exc}")
            return
        changed = [
            name
            for name in ("logfile", "syslog", "log_format", "pidfile", "preload")
            if getattr(old, name) != getattr(new, name)
        ]
        if changed:
            log.warning("reload: %s take(s) effect at the next restart", ", ".join(changed))
        if old.preload:
            log.warning("reload: preload is on, so new workers run the code loaded at start")
        if new.verbose != old.verbose:
            logs.set_level(verbose=new.verbose)
        if self._rollback is None:
            self._rollback = (old, self.generation)
        if self.quarantine_worker is not None:
            # It pushes its job back to the quarantine list; the next one starts on demand, new code.
            self._retire(self.quarantine_worker, now)
        self.config = new
        self.generation += 1
        self.reloading = True
        for index in range(len(self.slots), new.processes):
            self.slots.append(Slot(index, respawn_at=now))
        self._publish(now, force=True)

    def _abort_reload(self, why: str, now: float) -> None:
        log.error("reload aborted (%s): the remaining workers keep the previous config", why)
        if self._rollback is not None:
            self.config = self._rollback[0]
            self._rollback = None
        # Accept the mix as it is: workers already replaced stay; nobody else is replaced.
        self.generation += 1
        for child in self.children.values():
            child.generation = self.generation
        self.reloading = False
        for index in range(len(self.slots), self.config.processes):
            self.slots.append(Slot(index, respawn_at=now))
        if self._reload_notified:
            self.notifier.ready(status=f"reload failed: {why}")

    # -- systemd, title --------------------------------------------------------------------------
    def _systemd(self, now: float) -> None:
        if self._watchdog_s is not None and now >= self._next_watchdog:
            # From the loop, not a thread: a wedged loop stops the pings, and systemd acts.
            self.notifier.watchdog()
            self._next_watchdog = now + self._watchdog_s
        waiting = self.children or self._recoverer is not None
        if self.phase is Phase.STOPPING and waiting and now >= self._next_extend:
            # EXTEND_TIMEOUT_USEC never shortens TimeoutStopSec; it only matters once that has
            # passed, so it is sent all along the drain rather than guessing systemd's timeout.
            deadlines = [c.kill_at or now for c in self.children.values()]
            if self._recoverer is not None:
                deadlines.append(self._recoverer.kill_at or now)
            latest = max(deadlines)
            self.notifier.extend_timeout(latest - now + 5.0)
            self._next_extend = now + EXTEND_EVERY_S

    def _publish(self, now: float, *, force: bool = False) -> None:
        """STATUS= and the title, on change; busy-count-only changes at most once a second."""
        text = self.status_text()
        coarse = f"{self.up()}{self._state_suffix()}{self.config.processes}"
        last_coarse, last_text, last_at = self._published
        if text == last_text:
            self._publish_at = None
            return
        if not force and coarse == last_coarse and now - last_at < 1.0:
            self._publish_at = last_at + 1.0
            return
        self._published = (coarse, text, now)
        self._publish_at = None
        self.notifier.status(text)
        self._set_title(self.title())

    def _next_wakeup(self, now: float) -> float:
        times = [now + 1.0, self._next_memory if self.config.max_memory_mb else now + 1.0]
        times += [t for s in self.slots for t in (s.respawn_at, s.retry_at) if t is not None]
        for c in self.children.values():
            times += [t for t in (c.kill_at, c.hurry_at) if t is not None]
            if not (c.retiring or c.aborted):
                timeout = self.config.boot_timeout if c.booted_at is None else self.config.heartbeat_timeout
                times.append((c.started if c.booted_at is None else c.last_seen) + timeout)
        if self._recover_at is not None:
            times.append(self._recover_at)
        if self._recoverer is not None and self._recoverer.kill_at is not None:
            times.append(self._recoverer.kill_at)
        qslot = self._quarantine_slot
        if self._quarantine_wanted and qslot.respawn_at is not None:
            times.append(qslot.respawn_at)
        if self._watchdog_s is not None:
            times.append(self._next_watchdog)
        if self._publish_at is not None:
            times.append(self._publish_at)
        return max(0.0, min(times) - now)


HANDLED = control.handled_signals(Supervisor)
"""The signals `run` installs: those with a ``handle_<name>`` method. All of them wake the loop."""


# -- the real world -----------------------------------------------------------------------------------
