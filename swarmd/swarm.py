"""The swarm's I/O around the `swarmd.supervisor.Supervisor` state machine: `run()`.

Redis check, pidfile, preload, then one single-threaded loop (`selectors` over the
`signal.set_wakeup_fd` pipe and every worker's control pipe), `os.fork()` of workers, `waitpid`
reaping, the process title. `_Reporter` is the worker's end of its control pipe (the lines are
`swarmd.control`'s). The rules (when to
spawn, replace, kill, stop) live in the state machine; see its module for why no job is lost.
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
from collections.abc import Callable
from typing import NoReturn

import setproctitle

from swarmd import connection, control, hooks, logs, recovery, registry, systemd
from swarmd.config import Config
from swarmd.errors import BootError, ExitCode
from swarmd.heartbeat import new_identity
from swarmd.keys import Keys
from swarmd.pidfile import PidFile
from swarmd.processor import poison_reporter
from swarmd.scripts import Scripts
from swarmd.supervisor import HANDLED, Supervisor
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

    def __call__(self, worker: Worker) -> None:
        now = time.monotonic()
        busy = len(worker.busy)
        if worker.stopped_remotely and not self.told_stopped:
            self.told_stopped = True  # before the worker exits, so its slot is not refilled
            self._write(control.STOPPED_REMOTELY)
        if not self.booted:
            self.booted = True
            self._write(control.BOOTED)
        elif now - self.sent < (0.1 if busy != self.busy else 0.5):
            return  # Worker.stop polls every 50 ms: no need to tell each one
        self.busy, self.sent = busy, now
        self._write(control.beat(busy))

    def _write(self, message: control.Message) -> None:
        # Non-blocking and < PIPE_BUF: a line arrives whole or not at all, and a stopped supervisor
        # (full pipe) or a dead one (EPIPE) never blocks or kills the worker.
        with contextlib.suppress(OSError):
            os.write(self.fd, message.encode())


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

    def install(self) -> None:
        for sig in HANDLED:
            # The C-level handler writes the signal number into the wakeup fd; the loop does the rest.
            self.handlers[sig] = signal.signal(sig, lambda s, f: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)
        for fd in [*self.pipes, self.wake_r, self.wake_w, self.alive_r, self.alive_w]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.sel.close()

    def spawn(self, index: int, config: Config) -> tuple[int, str]:
        token = os.urandom(6).hex()
        ctl_r, ctl_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
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
            os.close(ctl_r)
            os.close(ctl_w)
            raise
        if pid == 0:
            self._child(config, _identity(os.getpid(), token), ctl_r, ctl_w, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(ctl_w)
        self.pipes[ctl_r] = (pid, bytearray())
        self.fd_of[pid] = ctl_r
        self.sel.register(ctl_r, selectors.EVENT_READ)
        return pid, _identity(pid, token)

    def _child(
        self, config: Config, identity: str, ctl_r: int, ctl_w: int, mask: set[int | signal.Signals]
    ) -> NoReturn:
        # Never returns: os._exit, so nothing of the supervisor's stack (its `finally` that releases
        # the pidfile, atexit handlers) ever runs in a worker.
        code = int(ExitCode.SOFTWARE)
        try:
            signal.set_wakeup_fd(-1)
            for sig, handler in self.handlers.items():
                signal.signal(sig, handler)
            # Ctrl-C and a terminal hang-up reach the whole process group: the supervisor decides.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for fd in [ctl_r, *self.pipes, self.wake_r, self.wake_w, self.alive_w]:
                os.close(fd)
            self.sel.close()
            lock_fd = self.pidfile._lock_fd if self.pidfile is not None else None
            if lock_fd is not None:  # the flock stays the supervisor's alone: a new swarm is not
                os.close(lock_fd)  # refused while this worker drains after the supervisor died
            systemd.scrub_child_environment()
            random.seed()
            logs.after_fork_in_child()
            setproctitle.setproctitle(f"swarmd {__version__} {config.tag} [booting]")
            code = Worker(config, identity).run(on_tick=_Reporter(ctl_w), parent_fd=self.alive_r)
        except connection.RedisError as exc:  # a Redis error at boot that the worker did not wrap
            log.error("worker %s: Redis error: %s", identity, exc)
            code = int(ExitCode.UNAVAILABLE)
        except BaseException:
            log.exception("worker %s failed", identity)
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
            fd = self.fd_of.get(pid)
            if fd is not None:  # its last lines ("booted"?) before its exit
                self._read(sup, fd)
            # `exited` recovers its in-flight list now. Should the supervisor die right here, the list
            # is still registered under an identity whose liveness key expires: the workers of the
            # next swarm (or of another host) recover it (Worker.start, recovery_interval).
            sup.exited(pid, status)


def _identity(pid: int, token: str) -> str:
    # Parent and child build the same identity: the child knows its pid, the parent learns it from fork.
    return f"{new_identity(pid).rsplit(':', 1)[0]}:{token}"


def _kill(pid: int, sig: int) -> None:
    os.kill(pid, sig)


def _recover_inflight(identity: str, config: Config) -> str | None:
    """`Supervisor`'s ``recover``: None once done, else why not (the supervisor logs it and retries)."""
    # A short-lived connection: the supervisor holds none when it forks.
    client = connection.connect(config.redis_url)
    try:
        scripts = Scripts(client, Keys(config.namespace))
        # on_death for poison jobs: only with the app's hooks loaded here (preload: true)
        done = recovery.recover_worker(scripts, identity, force=True, on_poison=poison_reporter())
        # None: another recoverer holds the lock (it may have died mid-way): try again a little later.
        return None if done is not None else "another process holds its recovery lock"
    except connection.RedisError as exc:
        return str(exc) or type(exc).__name__
    except Exception:  # a bug must not stop the supervisor; the liveness key still leads to the list
        log.exception("recovering the in-flight jobs of %s failed", identity)
        return None
    finally:
        client.close()


def _check_redis(config: Config) -> None:
    client = connection.connect(config.redis_url)
    try:
        connection.check_server(client, config.redis_url)  # RedisUnavailable -> exit 69
    finally:
        client.close()  # closed before any fork


def run(config: Config, reload: Callable[[], Config] | None = None) -> int:
    """Run the swarm in the foreground until it stops; return the exit code (SPEC 1.7).

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
        loop.install()
        sup = Supervisor(
            config,
            spawn=loop.spawn,
            kill=_kill,
            recover=_recover_inflight,
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
            loop.close()
        notifier.close()
        if pidfile is not None:
            pidfile.release()
