"""The swarm's I/O around the `swarmd.supervisor.Supervisor` state machine: `run()`.

Redis check, pidfile, preload, then one single-threaded loop (`selectors` over the
`signal.set_wakeup_fd` pipe and every worker's control pipe), `os.fork()` of workers and of recovery
children, `waitpid` reaping, the process title. `_Reporter` is the worker's end of its control pipe
(the lines are `swarmd.control`'s). The rules (when to spawn, replace, kill, stop) live in the state
machine; see its module for why no job is lost.

The supervisor process never holds a Redis connection after the start check: a child inherits none,
and nothing in the loop can wait on the network. Recovering a dead worker's list is the Redis work it
has; it runs in a forked child (`_Loop.recover`).

With ``metrics_port`` the loop also forks a small metrics process (`_MetricsProcess`) that serves
Prometheus's ``/metrics`` (`swarmd.prometheus.serve`). It is a child like a worker rather than a thread
or a socket of the supervisor's, so the supervisor stays single-threaded, holds no Redis connection
when it forks, and its loop never waits on the network or on a scrape: the child holds the listening
socket and its own Redis client. The loop starts it after the workers, replaces it when it dies (after
0.5 s, doubling to 30 s while it keeps dying, e.g. on a port in use), restarts it when a reload changes
the address, stops it last, and the child exits on its own when the supervisor's alive pipe closes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

import setproctitle

from swarmd import connection, control, hooks, logs, metrics, recovery, registry, systemd
from swarmd.config import Config, RedisSettings
from swarmd.errors import BootError, ExitCode
from swarmd.heartbeat import new_identity
from swarmd.keys import QUARANTINE_TAG, Keys
from swarmd.pidfile import PidFile
from swarmd.processor import poison_reporter
from swarmd.scripts import Scripts
from swarmd.supervisor import HANDLED, RECOVERY_FOR_S, Phase, Supervisor, describe_exit
from swarmd.version import __version__
from swarmd.worker import Worker

__all__ = ["run"]

log = logging.getLogger("swarmd")


class _Reporter:
    """The worker's end of its control pipe (called by `Worker.run` as ``on_tick``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.booted = False
        self.busy = -1
        self.sent = 0.0
        self.told_stopped = False
        self.told_recycle = False
        self.told_quarantine = -1e9

    def __call__(self, worker: Worker) -> None:
        now = time.monotonic()
        busy = len(worker.busy)
        if worker.stopped_remotely and not self.told_stopped:
            self.told_stopped = True  # before the worker exits, so its slot is not refilled
            self._write(control.STOPPED_REMOTELY)
        if worker.recycle_asked is not None and not self.told_recycle:
            self.told_recycle = True
            self._write(control.RECYCLE)
        if worker.quarantine_waiting and not worker.quarantine and now - self.told_quarantine >= 1.0:
            self.told_quarantine = now  # said again every second while suspects wait
            self._write(control.QUARANTINE)
        if not self.booted:
            self.booted = True
            self._write(control.BOOTED)
        elif now - self.sent < (0.1 if busy != self.busy else 0.5):
            return  # Worker.stop polls every 50 ms: no need to tell each one
        self.busy, self.sent = busy, now
        self._write(control.beat(busy))

    def stuck_at(self, at: float | None) -> None:
        """From the watchdog (any thread), before a job with a time limit starts: see `control`."""
        self._write(control.stuck_at(at))

    def _write(self, message: control.Message) -> None:
        # Non-blocking and < PIPE_BUF: a line arrives whole or not at all, and a stopped supervisor
        # (full pipe) or a dead one (EPIPE) never blocks or kills the worker.
        with contextlib.suppress(OSError):
            os.write(self.fd, message.encode())


METRICS_BACKOFF_S = (0.5, 30.0)
METRICS_STOP_S = 2.0


class _MetricsProcess:
    """The loop's record of the metrics child (see the module docstring)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.address: str | None = None  # what the running child listens on
        self.redis: tuple[RedisSettings, str | None] | None = None  # and the Redis and namespace it reads
        self.due = 0.0  # no new child before this (monotonic)
        self.delay = METRICS_BACKOFF_S[0]
        self.started = 0.0
        self.told_to_stop = False  # its exit is expected: replaced at once (reload) or not at all


class _Loop:
    """Signals, control pipes, fork and waitpid for `Supervisor`; used only by `run`."""

    def __init__(self, pidfile: PidFile | None) -> None:
        self.pidfile = pidfile
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # The supervisor holds the only write end; workers see EOF on the read end when it is gone.
        self.alive_r, self.alive_w = os.pipe2(os.O_CLOEXEC)
        self.pipes: dict[int, tuple[int, bytearray]] = {}  # fd -> (pid, partial line)
        self.fd_of: dict[int, int] = {}  # pid -> fd
        self.handlers: dict[int, signal._HANDLER] = {}
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        self.metrics = _MetricsProcess()
        self.config: Config | None = None  # the supervisor's current config (the metrics child's Redis)

    def install(self) -> None:
        for sig in HANDLED:
            # The C-level handler writes the signal number into the wakeup fd; the loop does the rest.
            self.handlers[sig] = signal.signal(sig, lambda s, f: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig, handler in self.handlers.items():
            # The swarm is over and the process exits next: a late TERM (systemd, a script sending
            # several) must not turn the exit code into a death by signal, so the stop signals are
            # ignored rather than given back their default action.
            stop = sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
            signal.signal(sig, signal.SIG_IGN if stop else handler)
        for fd in [*self.pipes, self.wake_r, self.wake_w, self.alive_r, self.alive_w]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.sel.close()

    def spawn(
        self,
        index: int,
        config: Config,
        *,
        quarantine: bool = False,
        reason: str | None = None,
        periodic: bool = False,
    ) -> tuple[int, str]:
        token = (QUARANTINE_TAG if quarantine else "") + os.urandom(6).hex()
        ctl_r, ctl_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

        def work(identity: str) -> int:
            if reason is not None:  # counted in Redis by the first heartbeat (swarmd_worker_restarts_total)
                metrics.PROCESS.note_restart(reason)
            try:
                # One worker per swarm (the supervisor's first slot) claims the periodic ticks.
                worker = Worker(config, identity, quarantine=quarantine, periodic=periodic)
                reporter = _Reporter(ctl_w)
                worker.tell_deadline = reporter.stuck_at
                return worker.run(on_tick=reporter, parent_fd=self.alive_r)
            except connection.RedisError as exc:  # a Redis error at boot that the worker did not wrap
                log.error("worker %s: Redis error: %s", identity, exc)
                return int(ExitCode.UNAVAILABLE)

        kind = " quarantine" if quarantine else ""
        try:
            title = f"swarmd {__version__} {config.tag}{kind} [booting]"
            pid = self._fork(work, token, title, keep=(ctl_w,), close=(ctl_r,), hostname=config.hostname)
        except OSError:
            os.close(ctl_r)
            os.close(ctl_w)
            raise
        os.close(ctl_w)
        self.pipes[ctl_r] = (pid, bytearray())
        self.fd_of[pid] = ctl_r
        self.sel.register(ctl_r, selectors.EVENT_READ)
        return pid, _identity(pid, token, config.hostname)

    def recover(self, targets: Sequence[tuple[str, Config]]) -> int:
        """`Supervisor`'s ``recover``: fork a child that recovers these dead workers' in-flight lists
        (retrying for at most `RECOVERY_FOR_S`) and exits 0 once all are done, 1 if it gave up."""

        def work(_identity: str) -> int:
            return _recover_lists(targets)

        title = f"swarmd {__version__} recovering {len(targets)} in-flight list(s)"
        return self._fork(work, "recovery", title)

    def _fork(
        self,
        body: Callable[[str], int],
        token: str,
        title: str,
        keep: Sequence[int] = (),
        close: Sequence[int] = (),
        hostname: str | None = None,
    ) -> int:
        """Fork a child that runs ``body(identity)`` and exits with its result; return its pid."""
        if threading.active_count() > 1:
            log.warning(
                "forking with %d threads running (started by preloaded code?)", threading.active_count()
            )
        # Blocked until the child has reset its handlers: a signal landing in between would otherwise
        # run the supervisor's handler in the child and write into the supervisor's wakeup pipe.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:
            self._child(body, _identity(os.getpid(), token, hostname), title, keep, close, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return pid

    def _child(
        self,
        body: Callable[[str], int],
        identity: str,
        title: str,
        keep: Sequence[int],
        close: Sequence[int],
        mask: set[int | signal.Signals],
    ) -> NoReturn:
        # Never returns: os._exit, so nothing of the supervisor's stack (its `finally` that releases
        # the pidfile, atexit handlers) ever runs in a child.
        code = int(ExitCode.SOFTWARE)
        try:
            signal.set_wakeup_fd(-1)
            for sig, handler in self.handlers.items():
                signal.signal(sig, handler)
            # Ctrl-C and a terminal hang-up reach the whole process group: the supervisor decides.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            # Every pipe of the supervisor's but ``keep``; the write end of the alive pipe above all,
            # or workers would not see EOF once the supervisor is gone.
            for fd in [*close, *self.pipes, self.wake_r, self.wake_w, self.alive_w]:
                if fd not in keep:
                    os.close(fd)
            self.sel.close()
            lock_fd = self.pidfile._lock_fd if self.pidfile is not None else None
            if lock_fd is not None:  # the flock stays the supervisor's alone: a new swarm is not
                os.close(lock_fd)  # refused while this child drains after the supervisor died
            systemd.scrub_child_environment()
            random.seed()
            logs.after_fork_in_child()
            setproctitle.setproctitle(title)
            code = body(identity)
        except BaseException:
            log.exception("%s failed", identity or "recovery child")
        finally:
            with contextlib.suppress(Exception):
                logs.flush()  # workers batch INFO lines; os._exit would drop what is pending
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)

    def wait(self, sup: Supervisor, timeout: float) -> None:
        """Wait up to ``timeout``; feed ``sup`` the lines, exits and signals that arrived."""
        signals = b""
        for key, _ in self.sel.select(timeout):
            fd = int(key.fd)
            if fd == self.wake_r:
                with contextlib.suppress(BlockingIOError):
                    signals += os.read(fd, 512)
            else:
                self._read(sup, fd)
        self.reap(sup)
        for signum in signals:
            sup.signal(signum)

    def _read(self, sup: Supervisor, fd: int) -> None:
        pid, buf = self.pipes[fd]
        while True:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                break
            if not data:  # EOF: the worker exited (or closed it); waitpid tells the rest
                self.sel.unregister(fd)
                os.close(fd)
                del self.pipes[fd]
                self.fd_of.pop(pid, None)
                break
            buf += data
        *lines, rest = buf.split(b"\n")
        buf[:] = rest
        for line in lines:
            sup.message(pid, line.decode(errors="replace"))

    def reap(self, sup: Supervisor) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.metrics.pid:
                self._metrics_exited(status)
                continue
            fd = self.fd_of.get(pid)
            if fd is not None:  # its last lines ("booted"?) before its exit
                self._read(sup, fd)
            # `exited` recovers its in-flight list now. Should the supervisor die right here, the list
            # is still registered under an identity whose liveness key expires: the workers of the
            # next swarm (or of another host) recover it (Worker.start, recovery_interval).
            sup.exited(pid, status)

    # -- the metrics process -------------------------------------------------------------------------
    def tend_metrics(self, address: str | None, stopping: bool) -> None:
        """Start, replace or stop the metrics child so that it serves ``address`` (None: none) from the
        Redis of the current config (a reload that changes either replaces it)."""
        m = self.metrics
        if m.pid is not None:
            changed = address != m.address or self._metrics_redis() != m.redis
            if (stopping or changed) and not m.told_to_stop:
                m.told_to_stop = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(m.pid, signal.SIGTERM)  # reaped by `reap`; a new one starts after that
            return
        if address is None or stopping or time.monotonic() < m.due:
            return
        try:
            pid = self._fork(
                lambda _identity: self._serve_metrics(address),
                "metrics",
                f"swarmd {__version__} metrics [{address}]",
            )
        except OSError as exc:
            log.error("cannot start the metrics process: %s", exc)
            self._metrics_backoff()
            return
        m.pid, m.address, m.started, m.told_to_stop = pid, address, time.monotonic(), False
        m.redis = self._metrics_redis()

    def _metrics_redis(self) -> tuple[RedisSettings, str | None] | None:
        return None if self.config is None else (self.config.redis, self.config.namespace)

    def _serve_metrics(self, address: str) -> int:
        """The metrics child's body (run by `_fork`, which resets what the supervisor set up)."""
        from swarmd import prometheus  # only this process needs prometheus_client
        from swarmd.admin import Admin
        from swarmd.config import parse_host_port

        host, port = parse_host_port(address, "metrics_port", "127.0.0.1")
        assert self.config is not None
        with Admin.from_config(self.config) as admin:
            return prometheus.serve(admin, host, port, parent_fd=self.alive_r)

    def _metrics_exited(self, status: int) -> None:
        m = self.metrics
        code = os.waitstatus_to_exitcode(status)
        m.pid = None
        if m.told_to_stop:
            m.due = time.monotonic()
            return
        if time.monotonic() - m.started > 60.0:  # it had been serving: a new failure starts the backoff over
            m.delay = METRICS_BACKOFF_S[0]
        log.warning(
            "the metrics process (%s) %s; starting a new one in %.1f s",
            m.address,
            describe_exit(code),
            m.delay,
        )
        self._metrics_backoff()

    def _metrics_backoff(self) -> None:
        m = self.metrics
        m.due = time.monotonic() + m.delay
        m.delay = min(m.delay * 2, METRICS_BACKOFF_S[1])

    def stop_metrics(self) -> None:
        """At the swarm's end: TERM, up to `METRICS_STOP_S` for it to exit, then KILL."""
        pid = self.metrics.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + METRICS_STOP_S
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    self.metrics.pid = None
                    return
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self.metrics.pid = None


def _identity(pid: int, token: str, hostname: str | None) -> str:
    # Parent and child build the same identity: the child knows its pid, the parent learns it from fork.
    return f"{new_identity(pid, hostname).rsplit(':', 1)[0]}:{token}"


def _kill(pid: int, sig: int) -> None:
    os.kill(pid, sig)


def _recover_lists(targets: Sequence[tuple[str, Config]]) -> int:
    """The recovery child's work: 0 once every list is recovered, 1 if it gave up on some."""
    clients: dict[tuple[RedisSettings, str | None], Scripts] = {}
    work: list[tuple[Scripts, str]] = []
    for identity, config in targets:  # one client per Redis and namespace (a reload may change them)
        where = (config.redis, config.namespace)
        if where not in clients:
            clients[where] = Scripts(connection.connect(config.redis), Keys(config.namespace))
        work.append((clients[where], identity))
    try:
        # on_death for poison jobs: only with the app's hooks loaded here (preload: true)
        return 1 if recovery.recover_for(work, RECOVERY_FOR_S, on_poison=poison_reporter()) else 0
    finally:
        for scripts in clients.values():
            scripts.redis.close()


def _check_redis(config: Config) -> None:
    client = connection.connect(config.redis)
    try:
        connection.check_server(client, config.redis)  # RedisUnavailable -> exit 69, a cluster 78
    finally:
        client.close()  # closed before any fork


def run(config: Config, reload: Callable[[], Config] | None = None) -> int:
    """Run the swarm in the foreground until it stops; return the exit code.

    ``reload`` re-reads the config (with the same command-line overrides) on HUP.
    """
    notifier = systemd.Notifier()  # reads NOTIFY_SOCKET/WATCHDOG_* before workers scrub them
    _check_redis(config)
    pidfile = PidFile(config.pidfile) if config.pidfile else None
    if pidfile is not None:
        pidfile.acquire()
    loop: _Loop | None = None
    try:
        if config.preload:
            try:
                for spec in config.require:
                    registry.import_require(spec)
                hooks.run_boot_hooks("boot")  # once, before the first fork (README: on_boot)
            except BootError as exc:
                log.error("%s", exc)
                notifier.stopping(status=f"preload failed: {exc}")
                return int(ExitCode.SOFTWARE)
        # Objects alive now are never collected in the workers, so their pages stay shared (CoW).
        gc.freeze()
        loop = _Loop(pidfile)
        loop.config = config
        loop.install()
        sup = Supervisor(
            config,
            spawn=loop.spawn,
            kill=_kill,
            recover=loop.recover,
            notifier=notifier,
            reload=reload,
            set_title=setproctitle.setproctitle,
            reopen_logs=logs.reopen_logs,
        )
        try:
            sup.start()
            while not sup.done:
                timeout = sup.tick()
                if sup.done:
                    break
                loop.config = sup.config
                loop.tend_metrics(sup.config.metrics_port, stopping=sup.phase is Phase.STOPPING)
                loop.wait(sup, timeout)
        except Exception:
            # Workers see EOF on the alive pipe once this process is gone, and stop at once pushing
            # their jobs back; no job is lost by exiting here.
            log.exception("supervisor failed; workers stop on their own")
            return int(ExitCode.SOFTWARE)
        log.info("bye (exit %d)", sup.stop_code)
        return sup.stop_code
    finally:
        if loop is not None:
            loop.stop_metrics()
            loop.close()
        notifier.close()
        if pidfile is not None:
            pidfile.release()
