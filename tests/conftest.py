"""Shared fixtures: a real redis-server per xdist worker (never a mock), a clean db per test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

from swarmd import procfs
from swarmd.devredis import RedisServer

TIMEOUT_SCALE = float(os.environ.get("SWARMD_TEST_TIMEOUT_SCALE", "1"))
IN_CI = os.environ.get("CI") == "true"

LEDGER_NOTE = """
def note(*words):
    # One write on an O_APPEND fd: the kernel appends the line whole, so it survives a SIGKILL.
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(str(w) for w in words) + "\\n").encode())
    finally:
        os.close(fd)


def wait_flag(name, seconds=60):
    # Until the test creates the flag file <FLAGS>/<name>; False if it never did.
    deadline = time.monotonic() + seconds
    while not os.path.exists(os.path.join(FLAGS, name)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
"""
"""The helpers of a job module written by a test, spliced in with ``{note}``: ``note(*words)``, one
ledger line, and ``wait_flag(name)``, which returns once the test creates the flag file (the module
defines ``LEDGER``, the ledger's path, and ``FLAGS``, the flags folder, and imports ``os`` and
``time``)."""


def require_tool(tool: str, package: str, why: str = "", path: str | None = None) -> str:
    """The path of ``tool`` from Debian's ``package``. Missing: one skip line saying how to enable the
    test, or under CI (``CI=true``, set by .ci/run, which installs every package the tests need) a
    failure. Tests never install packages themselves."""
    found = shutil.which(tool, path=path)
    if found is not None:
        return found
    what = f"{tool} not installed{f' ({why})' if why else ''}"
    if IN_CI:
        pytest.fail(f"CI=true but {what}: add {package} to the apt-get line of .ci/run", pytrace=False)
    pytest.skip(f"{what}; enable with `apt-get install {package}`")


def wait_until(predicate: Callable[[], object], timeout_s: float = 10.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it is truthy; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s * TIMEOUT_SCALE
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


def run_ctl(
    *argv: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[str]:
    """`swarmctl ARGV` as a separate process, the way a user runs it (pass the app's env when
    ``check`` must import a test job module)."""
    return subprocess.run(
        [sys.executable, "-m", "swarmd.ctl", *argv],
        cwd=cwd,
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


# The Rails deploy guide's sidekiq.yml, byte for byte (note the 3-space indent under staging).
SIDEKIQ_YML = """\
---
verbose: false
concurrency: 10
pidfile: ./tmp/pids/sidekiq.pid
logfile: ./log/sidekiq.log
queues:
  - default
  - low
production:
  concurrency: 25
staging:
   concurrency: 15
"""


class Ledger:
    """What test jobs did: one ``<phase> <token> ...`` line per event in ``ledger`` (written with one
    O_APPEND write each, so it survives a SIGKILL), and flag files in ``flags`` that jobs wait for."""

    ledger: Path
    flags: Path

    def flag(self, token: str) -> None:
        (self.flags / token).touch()

    def entries(self) -> list[list[str]]:
        if not self.ledger.exists():
            return []
        return [line.split() for line in self.ledger.read_text().splitlines() if line.strip()]

    def tokens(self, phase: str = "done") -> list[str]:
        return [e[1] for e in self.entries() if e[0] == phase]

    def count(self, phase: str = "done") -> Counter[str]:
        return Counter(self.tokens(phase))

    def wait_tokens(self, tokens: Sequence[str], phase: str = "done", timeout_s: float = 30.0) -> None:
        want = set(tokens)
        wait_until(
            lambda: want <= set(self.tokens(phase)),
            timeout_s,
            what=f"{len(want)} job(s) to reach {phase!r} (have {len(want & set(self.tokens(phase)))})",
        )


def live_group_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that have not exited yet (zombies have closed their sockets)."""
    return [pid for pid, fields in procfs.all_stats() if int(fields[2]) == pgid and fields[0] != "Z"]


class Daemon:
    """A `python -m swarmd` subprocess in its own session (its pid is its process group id)."""

    def __init__(self, proc: subprocess.Popen[bytes], out_path: Path, args: Sequence[str]) -> None:
        self.proc = proc
        self.out_path = out_path
        self.args = list(args)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def lines(self) -> list[str]:
        return [line for line in self.output().splitlines() if line.strip()]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL the whole process group: the daemon and any worker it forked (a host crash).

        Returns once every member has exited: a worker that is still dying keeps its BLMOVE blocked
        in Redis, which would take a job pushed by the next step of the test.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        wait_until(lambda: not live_group_members(self.proc.pid), 10, what="the process group to exit")

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"swarmd {self.args} did not exit within {timeout_s} s:\n{self.output()}")

    def wait_log(self, text: str, timeout_s: float = 20.0, count: int = 1) -> None:
        wait_until(lambda: self.output().count(text) >= count, timeout_s, what=f"{text!r} in swarmd's output")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Private servers for tests that kill or restart Redis."""
    servers: list[RedisServer] = []

    def make(**kwargs: object) -> RedisServer:
        server = RedisServer(**kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
