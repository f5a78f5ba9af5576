"""Fixtures for the system tests: the real daemon (``python -m swarmd``) in its own session, a real
redis-server, and the sockets systemd and syslog would own, owned by the test instead.

- `NotifySocket`: a datagram socket given to the daemon as ``NOTIFY_SOCKET``; ``SO_PASSCRED`` makes
  the kernel attach each sender's pid, so tests can check that only the supervisor ever notifies.
- `SyslogSocket`: a datagram socket the config's ``syslog.address`` points at.
- Job functions record what they do in a ledger, one ``os.write`` on an ``O_APPEND`` fd per line, so a
  line survives a SIGKILL of the worker that wrote it.

At teardown the daemon's process group (supervisor and workers) is SIGKILLed, and its output is
printed, which pytest shows only when the test failed.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import yaml

from swarmd.client import Client
from tests.conftest import LEDGER_NOTE, Ledger, wait_until
from tests.conftest import Daemon as BaseDaemon

JOBS_MODULE = "swarm_jobs"

JOBS_SOURCE = textwrap.dedent(
    '''
    """Job functions for swarmd's system tests (written to tmp_path by the fixture)."""
    import os
    import time

    import swarmd

    LEDGER = os.environ["SWARMD_TEST_LEDGER"]
    FLAGS = os.environ["SWARMD_TEST_FLAGS"]
    BALLAST = []


    {note}


    @swarmd.job(name="Record")
    def record(token, seconds=0):
        note("start", token, os.getpid())
        time.sleep(seconds)
        note("done", token, os.getpid())


    @swarmd.job(name="Block")
    def block(token):
        """Runs until the flag file ``<FLAGS>/<token>`` exists (at most 60 s)."""
        note("start", token, os.getpid())
        wait_flag(token)
        note("done", token, os.getpid())


    @swarmd.job(name="Exit")
    def exit_now(token):
        """A poison job: the worker running it exits at once (a segfault, os._exit in a C library)."""
        note("start", token, os.getpid())
        os._exit(1)


    @swarmd.job(name="Bloat")
    def bloat(token, mb):
        """Keeps ``mb`` MB alive in a module global: the worker's memory only grows."""
        BALLAST.append(b"x" * (mb << 20))  # written, so the pages are resident
        note("done", token, os.getpid())


    @swarmd.job(name="Hog")
    def hog(token, mb):
        """A memory hog: holds ``mb`` MB and runs until the flag ``<FLAGS>/<token>`` exists (60 s)."""
        note("start", token, os.getpid())
        ballast = b"x" * (mb << 20)
        wait_flag(token)
        note("done", token, os.getpid(), len(ballast))


    @swarmd.job(name="Crash")
    def crash(token):
        """A poison job: SIGKILLs the worker that runs it."""
        note("start", token, os.getpid())
        os.kill(os.getpid(), 9)
    '''
).replace("{note}", LEDGER_NOTE)

FAST: dict[str, Any] = {
    "beat_interval": 0.2,
    "poll_interval": 0.1,
    "recovery_interval": 0.5,
    "liveness_ttl": 5,
    "fetch_timeout": 0.5,
    "timeout": 3,
    "concurrency": 4,
    "heartbeat_timeout": 10,
    "memory_check_interval": 0.2,
    "boot_timeout": 20,
    "tag": "systest",
}
"""Tiny intervals so the tests wait milliseconds, not Sidekiq's seconds."""

_SCRUBBED_ENV = ("REDIS_URL", "APP_ENV", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


@dataclass
class Datagram:
    text: str
    pid: int

    @property
    def fields(self) -> list[str]:
        return self.text.split("\n")


class NotifySocket:
    """What systemd listens on: one datagram per message, the sender's pid from SCM_CREDENTIALS."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.received: list[Datagram] = []

    def poll(self) -> list[Datagram]:
        """Every datagram received so far (reads what is queued, without waiting)."""
        while True:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
            except BlockingIOError:
                return self.received
            pid = -1
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", cdata[:12])[0]
            self.received.append(Datagram(data.decode("utf-8"), pid))

    def with_field(self, field: str, pid: int | None = None) -> list[Datagram]:
        return [d for d in self.poll() if field in d.fields and pid in (None, d.pid)]

    def wait_for(
        self, field: str, count: int = 1, timeout_s: float = 20.0, pid: int | None = None
    ) -> Datagram:
        wait_until(lambda: len(self.with_field(field, pid)) >= count, timeout_s, what=f"{field} (x{count})")
        return self.with_field(field, pid)[count - 1]

    def order(self, *fields: str) -> list[str]:
        """The fields of interest in the order they arrived (e.g. READY=1, RELOADING=1, ...)."""
        return [f for d in self.poll() for f in d.fields if f in fields]

    def close(self) -> None:
        self.sock.close()


class SyslogSocket:
    """A syslog daemon's datagram socket (what /dev/log is)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.received: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.received.append(self.sock.recv(65536).decode("utf-8", "replace"))
            except BlockingIOError:
                return self.received

    def close(self) -> None:
        self.sock.close()


class Daemon(BaseDaemon):
    """The shared daemon handle, plus the supervisor's workers as /proc shows them."""

    def children(self) -> list[int]:
        """The supervisor's live children (workers, the quarantine worker, recovery children)."""
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return []
        return [p for p in pids if _state(p) not in ("Z", "X", "")]

    def workers(self) -> list[int]:
        """The supervisor's ordinary workers (not the quarantine worker, nor a recovery child, nor a
        child so freshly forked that it still has the supervisor's title)."""
        others = (" quarantine [", " recovering ", " supervisor [")
        return [p for p in self.children() if not any(text in cmdline(p) for text in others)]

    def quarantine_workers(self) -> list[int]:
        return [p for p in self.children() if " quarantine [" in cmdline(p)]

    def wait_workers(self, count: int, timeout_s: float = 20.0, exclude: Sequence[int] = ()) -> list[int]:
        """Wait until ``count`` workers run, none of them in ``exclude``, each booted (titled)."""

        def ready() -> list[int] | None:
            if not self.alive():
                pytest.fail(f"swarmd exited with {self.proc.returncode}:\n{self.output()}")
            pids = self.workers()
            if len(pids) != count or set(pids) & set(exclude):
                return None
            if not all(" busy]" in cmdline(p) for p in pids):
                return None  # forked but not booted yet
            return pids

        pids = wait_until(ready, timeout_s, what=f"{count} booted workers (not {list(exclude)})")
        return cast("list[int]", pids)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def cmdline(pid: int) -> str:
    """The process title as `ps` shows it (setproctitle rewrites the argv area)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Swarm(Ledger):
    """A tmp_path app directory: job module, ledger, flags, config, sockets, daemons."""

    def __init__(self, root: Path, redis_url: str, sockets: str) -> None:
        self.root = root
        self.redis_url = redis_url
        self.ledger = root / "ledger.log"
        self.flags = root / "flags"
        self.flags.mkdir()
        (root / f"{JOBS_MODULE}.py").write_text(JOBS_SOURCE)
        self.notify = NotifySocket(os.path.join(sockets, "notify"))
        self.syslog_path = os.path.join(sockets, "syslog")
        self._syslog: SyslogSocket | None = None
        self.daemons: list[Daemon] = []
        self.client = Client(redis_url)
        self.r = redis.Redis.from_url(redis_url)

    @property
    def syslog(self) -> SyslogSocket:
        if self._syslog is None:
            self._syslog = SyslogSocket(self.syslog_path)
        return self._syslog

    def config(self, name: str = "swarmd.yml", **settings: Any) -> Path:
        data: dict[str, Any] = {**FAST, "redis": {"url": self.redis_url}, **settings}
        path = self.root / name
        path.write_text(yaml.safe_dump(data))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMD_") and k not in _SCRUBBED_ENV}
        env.update(
            SWARMD_TEST_LEDGER=str(self.ledger),
            SWARMD_TEST_FLAGS=str(self.flags),
            NOTIFY_SOCKET=self.notify.path,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def start(
        self, *args: str, config: Path | None = None, require: bool = True, env: dict[str, str] | None = None
    ) -> Daemon:
        """``python -m swarmd [-r jobs] -C <config> *args`` with cwd = the app directory."""
        argv = [sys.executable, "-m", "swarmd"]
        if require:
            argv += ["-r", JOBS_MODULE]
        argv += ["-C", str(config or self.config()), *args]
        out_path = self.root / f"swarmd-{len(self.daemons)}.out"
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=self.root,
                env=self.env(**(env or {})),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        daemon = Daemon(proc, out_path, argv[3:])
        self.daemons.append(daemon)
        return daemon

    def start_ready(self, *args: str, processes: int = 2, config: Path | None = None, **env: str) -> Daemon:
        daemon = self.start("--processes", str(processes), *args, config=config, env=env)
        wait_until(
            lambda: self.notify.with_field("READY=1", daemon.pid) or not daemon.alive(),
            20,
            what="READY=1 from the supervisor",
        )
        assert daemon.alive(), f"swarmd exited with {daemon.proc.returncode}:\n{daemon.output()}"
        strangers = {d.pid for d in self.notify.poll()} - {d.pid for d in self.daemons}
        assert not strangers, f"sd_notify datagrams from pids that are no supervisor: {strangers}"
        return daemon

    # -- jobs and the ledger ----------------------------------------------------------------------
    def enqueue(self, name: str, *args: Any, queue: str = "default") -> str:
        jid = self.client.enqueue(name, args, None, {"queue": queue})
        assert jid is not None  # no client middleware drops jobs here
        return jid

    def enqueue_many(self, name: str, arg_lists: Sequence[Sequence[Any]]) -> None:
        self.client.enqueue_bulk(name, arg_lists, {"queue": "default"})

    def inflight(self) -> int:
        return sum(int(self.r.llen(k)) for k in self.r.scan_iter("swarmd:inflight:*"))

    def stop_all(self) -> None:
        for d in self.daemons:
            d.kill_group()


@pytest.fixture
def sockets() -> Iterator[str]:
    """A short folder for AF_UNIX sockets (paths are limited to 107 bytes; tmp_path can be longer)."""
    path = tempfile.mkdtemp(prefix="swd-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def swarm(tmp_path: Path, redis_url: str, sockets: str) -> Iterator[Swarm]:
    s = Swarm(tmp_path, redis_url, sockets)
    try:
        yield s
    finally:
        s.stop_all()
        for i, d in enumerate(s.daemons):
            print(f"----- swarmd #{i} {d.args} exit={d.proc.returncode} -----")
            print(d.output())
        print("----- notify -----")
        for dg in s.notify.poll():
            print(dg.pid, dg.text.replace("\n", " | "))
        s.notify.close()
        if s._syslog is not None:
            s._syslog.close()
        s.r.close()
        if s.client._redis is not None:
            s.client._redis.close()
