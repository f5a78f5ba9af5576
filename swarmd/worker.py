"""The worker: one process that owns a Redis pool, `concurrency` processor threads, one waiter
thread per queue, and a housekeeping loop on its main thread (heartbeat, scheduler, recovery of dead
workers, ack flushing, process title, signals).

Lifecycle: `start()` (connect, import ``require`` modules, recover, start threads), `quiet()` (stop
fetching), `stop(deadline)` (quiet, wait for running jobs until ``deadline``, push every unfinished
job back to its queue, leave the process set). `run()` does all of it in the foreground and returns
an exit code; the supervisor calls it in each forked child.

Signals are recorded in a wakeup pipe and dispatched by the loop to ``handle_<name>`` methods
(`control.signal_handler`); `HANDLED_SIGNALS`, the ones `run` installs, are those that have one.

A *quarantine worker* (``quarantine=True``) is the same with concurrency 1, fetching only from the
quarantine list (`swarmd.recovery` says why); it exits 0 once that list has stayed empty for
`QUARANTINE_IDLE_S`. Every ordinary worker's scheduler poll also reads the quarantine list's length,
and `quarantine_waiting` makes the supervisor start a quarantine worker.

Recycling: SIGUSR2 tells a worker that the TERM to follow replaces it for a reason that is its jobs'
fault (memory): the jobs still running when it pushes back are suspects, sent to the quarantine list
instead of their queues; a quarantine worker counts a crash against its job instead (its list is
recovered as if it had died). A worker may ask to be recycled itself (`ask_recycle`).

Supervisor gone (EOF on the alive pipe): the worker stops at once, pushing back what it can with few
Redis tries; whatever happens, it exits within `ORPHAN_EXIT_S` (a watcher thread ends the process if
Redis is unreachable). A job that could not be pushed back stays in the private list, which any worker
recovers once the liveness key expires: every step is atomic in Redis, so ending the process at any
instant loses nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import logging
import os
import random
import selectors
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator

import setproctitle

from swarmd import aio, connection, control, hooks, limiter, logs, recovery, registry, timeouts
from swarmd.busy import BusyJobs
from swarmd.config import Config
from swarmd.errors import BootError, ConfigError, ExitCode, RedisUnavailable
from swarmd.fetch import Fetcher
from swarmd.heartbeat import Heartbeat, new_identity
from swarmd.keys import QUARANTINE_TAG, Keys, is_quarantine_identity
from swarmd.periodic_jobs import Periodic
from swarmd.processor import Processor, poison_reporter
from swarmd.retry import Retrier
from swarmd.retrying import Backoff, until_redis_answers
from swarmd.scheduler import Scheduler
from swarmd.scripts import Scripts
from swarmd.version import __version__

log = logging.getLogger("swarmd")

SETTLE_TRIES = 10  # Redis tries for each shutdown step; then the private list waits for recovery
ORPHAN_TRIES = 2  # the same with the supervisor gone: exit soon rather than wait for Redis
ORPHAN_EXIT_S = 2.0  # with the supervisor gone, the process ends this long after it noticed
QUARANTINE_IDLE_S = 3.0  # a quarantine worker exits once its list has been empty this long
CANCEL_WAIT_S = 2.0  # how long cancelled async jobs get to run their cleanup at a hard stop


def dump_threads() -> None:
    """Log every thread's stack (TTIN, Sidekiq's convention)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame)).rstrip()
        log.warning("thread %s (%s):\n%s", names.get(ident, "?"), ident, logs.Verbatim(stack))


class Worker:
    def __init__(
        self,
        config: Config,
        identity: str | None = None,
        *,
        quarantine: bool = False,
        periodic: bool = True,
    ) -> None:
        if quarantine:
            config = dataclasses.replace(config, concurrency=1, labels=(*config.labels, "quarantine"))
            identity = identity or f"{new_identity().rsplit(':', 1)[0]}:{QUARANTINE_TAG}{os.urandom(6).hex()}"
        self.config = config
        self.identity = identity or new_identity(hostname=config.hostname)
        self.quarantine = quarantine
        # Whoever recovers this worker's list reads what it was from the identity: they must agree.
        assert is_quarantine_identity(self.identity) == quarantine, self.identity
        self.keys = Keys(config.namespace)
        self.busy = BusyJobs()
        self.processors: list[Processor] = []
        self.stopping = False
        self.stopped_remotely = False
        self._dead_processors: list[tuple[Processor, BaseException]] = []
        self._title = ""
        self._redis: connection.Redis | None = None
        self._fetcher: Fetcher | None = None
        self._deadline = 0.0
        self._stop_at: float | None = None  # a stop was asked for (signal, supervisor gone): its deadline
        self._poll_while_stopping: Callable[[], None] = lambda: None
        self.recycled = False  # SIGUSR2: the stop that follows is a recycle (see the module docstring)
        self.recycle_asked: str | None = None  # why this worker asked to be recycled (`ask_recycle`)
        self.quarantine_waiting = 0  # jobs in the quarantine list at the last scheduler poll
        self.orphaned = threading.Event()  # the supervisor is gone
        self._idle_since: float | None = None  # quarantine worker: since when its list is empty
        self._step_backoff: dict[str, Backoff] = {}  # housekeeping step -> its run of Redis errors
        self._started_hooks = False  # the app's code is loaded (and on_startup began): on_shutdown at exit
        # Time limits: the watchdog (its thread starts with the first job that has a limit); the
        # supervisor's end of the control pipe learns when a limited job would be stuck (`swarm`).
        self.tell_deadline: Callable[[float | None], None] | None = None
        self.watchdog = timeouts.Watchdog(config.timeout_grace, self._job_stuck, self._stuck_at)
        self.runs_periodic = periodic and not quarantine  # this swarm's claimer of periodic ticks
        self.periodic: Periodic | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Boot: raises `RedisUnavailable` or `BootError` with one clear line."""
        cfg = self.config
        logs.start_batching()
        started = 0
        for spec in [*cfg.require, None]:  # None: hooks registered before (preload) or by no module
            if spec is not None:
                registry.import_require(spec)
            # Right after the module that registers them: the next modules may need what they set up
            # (a Django app's models, after django.setup()).
            if hooks.registered("startup")[started:]:
                self._started_hooks = True  # from here on, on_shutdown runs at exit (also if boot fails)
                started = hooks.run_boot_hooks("startup", awaiter=aio.run, skip=started)
        self._started_hooks = True
        self._app_hooks()
        if not self.quarantine:
            registry.check_periodic(cfg.periodic)  # a config naming an unknown job: exit 78
        pool_size = cfg.concurrency + len(cfg.queues) + 4
        self._redis = redis = connection.connect(
            cfg.redis, blocking_timeout=cfg.fetch_timeout, max_connections=pool_size
        )
        connection.check_server(redis, cfg.redis)
        self.scripts = scripts = Scripts(redis, self.keys)
        # WAIT counts the replicas that have what its own connection wrote: with wait_replicas the
        # fetcher's scripts go through a client of one connection.
        wait = cfg.redis.wait_replicas
        self.fetcher = Fetcher(
            Scripts(connection.single(redis), self.keys) if wait else scripts,
            self.identity,
            cfg.queues,
            cfg.queue_order,
            cfg.fetch_timeout,
            wait_replicas=wait,
            wait_timeout=cfg.redis.wait_timeout,
            quarantine=self.quarantine,
            ahead_max=4 * cfg.concurrency,
        )
        self.retrier = Retrier(
            scripts,
            self.identity,
            max_retries=cfg.max_retries,
            dead_max_jobs=cfg.dead_max_jobs,
            dead_timeout=cfg.dead_timeout,
            limiter_backoff=cfg.limiter_backoff,
            limiter_backoff_max=cfg.limiter_backoff_max,
        )
        limiter.bind(scripts)  # `with limiter:` in this worker's jobs uses its pool and namespace
        self.scheduler = Scheduler(scripts)
        self.heartbeat = Heartbeat(scripts, self.identity, cfg, self.busy.snapshot, self._is_quiet)
        # Register (liveness key first) before fetching anything, so a private list never exists
        # without a liveness key and a registry entry that lead to it.
        self.heartbeat.beat()
        recovery.recover_dead_workers(scripts, self.identity, on_poison=poison_reporter())
        self._start_periodic()
        for _ in range(cfg.concurrency):
            self._add_processor()
        self.fetcher.start()
        now = time.monotonic()
        self._next_beat = now + cfg.beat_interval
        self._next_poll = now + random.uniform(0, cfg.poll_interval)
        self._next_recovery = now + cfg.recovery_interval
        jobs = len(registry.registered())
        log.info(
            "%s %s booted: concurrency %d, queues %s, %d job function(s) registered, config %s "
            "(environment %s), Redis %s",
            "quarantine worker" if self.quarantine else "worker",
            self.identity,
            cfg.concurrency,
            self.keys.quarantine
            if self.quarantine
            else ",".join(f"{q.name},{q.weight}" if q.weight else q.name for q in cfg.queues),
            jobs,
            cfg.path or "none",
            cfg.environment,
            cfg.redacted_redis_url(),
        )
        if not jobs:
            log.warning(
                "no job functions are registered: every job fetched fails as UnknownJob%s; name the modules "
                "that define your @swarmd.job functions in require (-r, or require: in %s)",
                " (except swarmd.delay calls under delay_allow)" if cfg.delay_allow else "",
                cfg.path or "config/swarmd.yml",
            )

    def _start_periodic(self) -> None:
        """This swarm's claimer of periodic ticks (`swarmd.periodic_jobs`): the first claim is at the first
        housekeeping pass (a missed tick within catch_up runs then)."""
        entries = [*self.config.periodic, *registry.periodic_entries()]
        if not self.runs_periodic or not entries:
            return
        jobs = registry.registered()
        options = {e.job: jobs[e.job].options for e in entries if e.job in jobs}
        self.periodic = Periodic(self.scripts, entries, options, self.config.catch_up)
        self.periodic.publish()
        log.info(
            "periodic: %d entr%s claimed by this worker",
            len(self.periodic.states),
            "y" if len(self.periodic.states) == 1 else "ies",
        )

    def _app_hooks(self) -> None:
        """The app's side of the boot once ``require`` is imported and the on_startup hooks ran:
        swarmd's loggers back if the app disabled them, the event loop if a job is async."""
        if hooks.registered("boot") and not self.config.preload:
            names = ", ".join(hooks.describe(fn) for fn in hooks.registered("boot"))
            log.warning(
                "on_boot hook(s) %s did not run: on_boot runs in the supervisor, which imports require "
                "only with preload: true (use on_startup for what each worker must do)",
                names,
            )
        logs.reclaim_loggers()
        if any(job.is_async for job in registry.registered().values()):
            aio.ensure_started()

    def _shutdown_hooks(self) -> None:
        if self._started_hooks:
            self._started_hooks = False
            hooks.run_hooks("shutdown", awaiter=aio.run)
        aio.shutdown()

    @property
    def redis(self) -> connection.Redis:
        assert self._redis is not None, "worker not started"
        return self._redis

    def _is_quiet(self) -> bool:
        return self.stopping or (self._fetcher is not None and self._fetcher.is_quiet)

    @property
    def fetcher(self) -> Fetcher:
        assert self._fetcher is not None
        return self._fetcher

    @fetcher.setter
    def fetcher(self, value: Fetcher) -> None:
        self._fetcher = value

    def _add_processor(self) -> None:
        p = Processor(
            self.fetcher,
            self.retrier,
            self.busy,
            self.config.delay_allow,
            self._processor_died,
            watchdog=self.watchdog,
            job_timeout=self.config.job_timeout,
        )
        self.processors.append(p)
        p.start()

    def _processor_died(self, processor: Processor, exc: BaseException) -> None:
        self._dead_processors.append((processor, exc))

    def quiet(self) -> None:
        if not self.fetcher.is_quiet:
            log.info("quiet: no new jobs will be fetched")
            self.fetcher.quiet()

    def stop(self, deadline: float) -> None:
        """Wait for running jobs until ``deadline``; push back whatever did not finish."""
        tries = ORPHAN_TRIES if self.orphaned.is_set() else SETTLE_TRIES
        self.stopping = True
        self._deadline = deadline
        log.info(
            "stopping: waiting up to %.1f sec for %d busy job(s)", deadline - time.monotonic(), len(self.busy)
        )
        self.fetcher.quiet()
        waiter_deadline = time.monotonic() + self.config.fetch_timeout + 1.0
        while self.busy and time.monotonic() < self._deadline:
            if self.watchdog.stuck() >= len(self.busy):
                break  # only jobs stuck past their time limit are left: waiting would not end them
            self._housekeeping(time.monotonic(), stopping=True)
            self._poll_while_stopping()
            time.sleep(min(0.05, max(0.0, self._deadline - time.monotonic())))
        unfinished = len(self.busy)
        if unfinished:
            # Async jobs can be told to stop: cancelled now, they are pushed back below with the rest.
            aio.cancel_running(CANCEL_WAIT_S)
        self.fetcher.stop(waiter_deadline)
        self._settle_redis(lambda: self.fetcher.flush_acks(raise_errors=True), "flush acks", tries)
        # Jobs still running are pushed back BEFORE the process exits: worse to lose a job than
        # to run it twice. A job that finishes after this finds its entry gone and acks nothing.
        if self.quarantine and self.recycled:
            # Recycled while running its job alone: that counts as the job's crash, exactly as if this
            # worker had died (recover.lua counts it and moves it, only if its LREM removed it).
            where = "counted as a crash of the job that ran alone (poison guard)"
            pushed = self._settle_redis(self._recover_own_list, "count the crash of the running job", tries)
        else:
            suspects = self.recycled and not self.quarantine
            where = (
                "moved to the quarantine list"
                if self.quarantine or suspects
                else "pushed back to their queues"
            )
            pushed = self._settle_redis(
                lambda: self.fetcher.drain(suspects=suspects), "push back in-flight jobs", tries
            )
        if unfinished:
            log.warning("timeout: %d job(s) still running were %s", unfinished, where)
        elif pushed:
            log.info("%d unstarted job(s) %s", pushed, where)
        # Jobs still inside a concurrency limiter were pushed back (or are stuck): their places go now
        # rather than when their leases end, since this process is about to exit.
        self._settle_redis(limiter.release_held, "release limiter leases", tries)
        # Stays in swarmd's registry if anything is left in the private list, so recovery finds it.
        self._settle_redis(self.heartbeat.clear, "leave the process set", tries)
        self._set_title()

    def _recover_own_list(self) -> int:
        done = recovery.recover_worker(self.scripts, self.identity, force=True, on_poison=poison_reporter())
        return 0 if done is None else done.moved

    def hurry(self) -> None:
        """Cut a running `stop` short: push the running jobs back now."""
        self._deadline = time.monotonic()

    def _settle_redis(self, action: Callable[[], object], what: str, tries: int = SETTLE_TRIES) -> int:
        try:
            result = until_redis_answers(action, what, tries=tries)
        except connection.RedisError:
            log.error(
                "%s: gave up; the jobs stay in %s for recovery", what, self.keys.inflight(self.identity)
            )
            return 0
        return result if isinstance(result, int) else 0

    # -- housekeeping ------------------------------------------------------------------------------
    def _housekeeping(self, now: float, *, stopping: bool = False) -> float:
        """Do what is due; return seconds until the next thing is due."""
        cfg = self.config
        # Three steps, each guarded on its own: a failure in one (a bug, a Redis error) never keeps
        # the others from running, so a scheduler poll that fails cannot stop the recovery of peers.
        with self._step("heartbeat"):
            self.fetcher.flush_acks()
            if now >= self._next_beat:
                self._next_beat = now + cfg.beat_interval
                remote = self.heartbeat.beat()
                if remote:
                    self._remote_signal(remote)
        if not stopping and not self.fetcher.is_quiet and now >= self._next_poll:
            # Jittered so workers spread their polls; never later than poll_interval (a job due at T
            # starts by T + 1 s). A poll that hit its budget comes back at once.
            self._next_poll = now + cfg.poll_interval * random.uniform(0.5, 1.0)
            with self._step("scheduler"):
                if self.scheduler.poll() is None:
                    self._next_poll = now
                self.quarantine_waiting = self.scheduler.quarantined
                if self.quarantine:
                    self._check_idle(now)
        periodic = self.periodic
        wall = time.time()
        if periodic is not None and not stopping and not self.fetcher.is_quiet and wall >= periodic.due:
            with self._step("periodic"):
                periodic.tick(wall)
        if not stopping and now >= self._next_recovery:
            self._next_recovery = now + cfg.recovery_interval
            with self._step("recovery"):
                recovery.recover_dead_workers(self.scripts, self.identity, on_poison=poison_reporter())
                recovery.prune_processes(self.redis, self.keys)
        renewal = limiter.next_renewal()  # None unless a running job holds a concurrency limiter
        if renewal is not None and now >= renewal:
            with self._step("limiter leases"):
                limiter.renew_leases(now)
        while self._dead_processors:
            proc, error = self._dead_processors.pop()
            log.error("processor thread died, starting a new one: %r", error)
            self.processors.remove(proc)
            if not self.stopping:
                self._add_processor()
        self._set_title()
        wake = min(self._next_beat, self._next_poll, self._next_recovery, now + 1.0)
        renewal = limiter.next_renewal()  # limiter leases of running jobs (swarmd.limiter)
        if renewal is not None:
            wake = min(wake, renewal)
        if periodic is not None:  # wall clock to monotonic: wake at the next tick
            wake = min(wake, now + max(0.0, periodic.due - time.time()))
        return max(0.0, wake - now)

    @contextlib.contextmanager
    def _step(self, what: str) -> Iterator[None]:
        """One housekeeping step: Redis errors are logged when a run of them starts and when it ends
        (`Backoff`'s rule; the loop itself sets the pace), anything else at once with its traceback."""
        backoff = self._step_backoff.setdefault(what, Backoff(f"housekeeping ({what})"))
        try:
            yield
        except connection.RedisError as exc:
            backoff.failed(exc)
        except Exception:  # a bug must not stop the beat: the liveness key keeps this worker's jobs
            log.exception("housekeeping (%s) failed; carrying on", what)
        else:
            backoff.ok()

    def _check_idle(self, now: float) -> None:
        """A quarantine worker exits (0) once its list has been empty, and it idle, for a while."""
        if self.quarantine_waiting or self.busy or self._stop_at is not None:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= QUARANTINE_IDLE_S:
            log.info("the quarantine list has been empty for %.0f s: exiting", now - self._idle_since)
            # A suspect that lands meanwhile is pushed back to the quarantine list by the stop, and the
            # next poll of any worker asks for a new quarantine worker.
            self._stop_at = now

    def _stuck_at(self, at: float | None) -> None:
        if self.tell_deadline is not None:
            self.tell_deadline(at)

    def _job_stuck(self, why: str) -> None:
        """The watchdog found a job stuck past its time limit and grace (from its thread)."""
        self.ask_recycle(why)

    def ask_recycle(self, why: str) -> None:
        """Ask the supervisor to replace this worker, counting its running jobs' part in it: it
        answers with SIGUSR2 and TERM (see the module docstring)."""
        if self.recycle_asked is None:
            log.warning("asking to be recycled: %s", why)
            self.recycle_asked = why

    def _remote_signal(self, name: str) -> None:
        sig = {"TSTP": signal.SIGTSTP, "TERM": signal.SIGTERM, "TTIN": signal.SIGTTIN}.get(name)
        if sig is None:
            log.warning("ignoring unknown signal %r from %s", name, self.keys.signals(self.identity))
            return
        log.info("got %s from the Web UI/API", name)
        if sig == signal.SIGTERM:
            self.stopped_remotely = True  # the supervisor does not replace this worker
        os.kill(os.getpid(), sig)

    def title(self) -> str:
        cfg = self.config
        kind = " quarantine" if self.quarantine else ""
        text = f"swarmd {__version__} {cfg.tag}{kind} [{len(self.busy)} of {cfg.concurrency} busy]"
        return text + " stopping" if self._is_quiet() else text

    def _set_title(self) -> None:
        title = self.title()
        if title != self._title:
            self._title = title
            setproctitle.setproctitle(title)

    # -- foreground loop ---------------------------------------------------------------------------
    def run(
        self,
        *,
        on_tick: Callable[[Worker], None] | None = None,
        parent_fd: int | None = None,
    ) -> int:
        """Boot, serve until TERM/INT (or EOF on ``parent_fd``), stop; return the exit code.

        TERM/INT: graceful stop within `timeout`; a second one stops at once (jobs still pushed
        back). TSTP: quiet. TTIN: log all thread stacks. USR1: reopen log files.
        """
        faulthandler.enable()  # SIGABRT from the supervisor (hung worker) dumps every stack
        logs.capture_output()  # print() in job code: log lines (after faulthandler took the real fd 2)
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        for sig in HANDLED_SIGNALS:
            if sig == signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN:
                # An ignored SIGINT stays ignored (POSIX, for background jobs). The supervisor's
                # workers ignore it: Ctrl-C reaches the whole process group and the supervisor
                # coordinates the stop.
                continue
            signal.signal(sig, lambda s, f: None)  # the wakeup fd carries the signal number
        try:
            self.start()
        except (BootError, ConfigError, RedisUnavailable) as exc:
            log.error("%s", exc)
            self._at_exit()
            return int(exc.exit_code)
        sel = selectors.DefaultSelector()
        sel.register(rfd, selectors.EVENT_READ, "signal")
        if parent_fd is not None:
            sel.register(parent_fd, selectors.EVENT_READ, "parent")
            threading.Thread(
                target=self._watch_parent, args=(parent_fd,), name="swarmd-parent", daemon=True
            ).start()
        try:
            while True:
                now = time.monotonic()
                wait = self._housekeeping(now, stopping=self._stop_at is not None)
                if on_tick is not None:
                    on_tick(self)
                if self._stop_at is not None:
                    break
                for key, _ in sel.select(wait):
                    if key.data == "parent":
                        log.error("supervisor is gone: stopping now")
                        self.orphaned.set()
                        self._stop_at = time.monotonic()
                        sel.unregister(key.fileobj)
                        continue
                    self._dispatch_signals(os.read(rfd, 64))

            def poll_while_stopping() -> None:
                try:
                    signals = os.read(rfd, 64)
                except BlockingIOError:
                    signals = b""
                self._dispatch_signals(signals)
                if on_tick is not None:  # the supervisor keeps seeing beats (busy count) while draining
                    on_tick(self)

            self._poll_while_stopping = poll_while_stopping
            assert self._stop_at is not None  # the loop above ends only then
            self.stop(self._stop_at)
        finally:
            signal.set_wakeup_fd(-1)
            os.close(rfd)
            os.close(wfd)
            self._at_exit()
            log.info("bye")
            logs.flush()
        return int(ExitCode.OK)

    def _watch_parent(self, fd: int) -> None:
        """The supervisor holds the only write end of ``fd``: EOF means it is gone. The main loop may be
        stuck in a Redis call right now (a blackhole: seconds per try), so this thread gives the stop
        `ORPHAN_EXIT_S` and then ends the process itself."""
        try:
            while os.read(fd, 64):
                pass
        except OSError:
            pass
        self.orphaned.set()  # the main loop sees the same EOF in its selector (unless a Redis call holds it)
        time.sleep(ORPHAN_EXIT_S)
        log.error(
            "supervisor is gone and the stop did not finish within %.0f s: exiting; jobs left in %s "
            "are recovered once this worker's liveness key expires",
            ORPHAN_EXIT_S,
            self.keys.inflight(self.identity),
        )
        with contextlib.suppress(Exception):
            logs.flush()
        os._exit(int(ExitCode.OK))

    def _at_exit(self) -> None:
        """At exit: the app's on_shutdown hooks, the event loop, what is left of printed lines."""
        try:
            self._shutdown_hooks()
        finally:
            logs.release_output()
            logs.flush()

    # -- signals (`HANDLED_SIGNALS` lists the ones with a handler) -----------------------------------
    def _dispatch_signals(self, signums: bytes) -> None:
        """Call ``handle_<name>`` for each signal number the wakeup pipe carried."""
        for signum in signums:
            handler = control.signal_handler(self, signum)
            if handler is None:
                name = control.signal_name(signum)
                log.warning("got signal %s, which a worker does not handle: ignored", name)
            else:
                handler()

    def handle_term(self) -> None:
        self._stop_signal("TERM")

    def handle_int(self) -> None:
        self._stop_signal("INT")

    def _stop_signal(self, name: str) -> None:
        if self.stopping:
            log.info("second stop signal: pushing running jobs back now")
            self.hurry()
        elif self._stop_at is not None:
            self._stop_at = time.monotonic()  # a second one before the stop began: no more waiting
        else:
            log.info("got %s: stopping (timeout %.0f sec)", name, self.config.timeout)
            self._stop_at = time.monotonic() + self.config.timeout

    def handle_tstp(self) -> None:
        self.quiet()

    def handle_ttin(self) -> None:
        dump_threads()

    def handle_usr1(self) -> None:
        logs.reopen_logs()
        log.info("log files reopened")

    def handle_usr2(self) -> None:
        if not self.recycled:
            self.recycled = True
            log.warning(
                "being recycled: jobs still running at the stop %s",
                "count as crashes of the job (poison guard)"
                if self.quarantine
                else "go to the quarantine list, to run alone",
            )


HANDLED_SIGNALS = control.handled_signals(Worker)
"""The signals `Worker.run` installs: those with a ``handle_<name>`` method."""
