"""Fixtures for the integration tests: a job module in tmp_path, a config writer, and `python -m swarmd`
as a real subprocess (own session; its process group is always SIGKILLed at teardown; its output is
printed at teardown, which pytest shows only when the test failed).

The job functions record what they do in a ledger with one ``os.write`` on an ``O_APPEND`` fd: the kernel
appends it whole, so a line survives a SIGKILL of the worker that wrote it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from swarmd import payload
from swarmd.client import Client
from tests.conftest import LEDGER_NOTE, Daemon, Ledger, wait_until
from tests.replies import as_bytes, set_members

JOBS_MODULE = "swarmd_testjobs"

JOBS_SOURCE = textwrap.dedent(
    '''
    """Job functions for swarmd's integration tests (written to tmp_path by the fixture)."""
    import os
    import time

    import swarmd

    LEDGER = os.environ["SWARMD_TEST_LEDGER"]
    FLAGS = os.environ["SWARMD_TEST_FLAGS"]


    {note}


    @swarmd.job(name="Record")
    def record(token):
        note("done", token, os.getpid(), repr(time.time()))


    @swarmd.job(name="Nap")
    def nap(token, seconds):
        time.sleep(seconds)
        note("done", token, os.getpid())


    @swarmd.job(name="RecordKw")
    def record_kw(token, *, extra=None):
        note("done", token, os.getpid(), extra)


    @swarmd.job(name="Block")
    def block(token):
        """Runs until the flag file ``<FLAGS>/<token>`` exists (at most 60 s)."""
        note("start", token, os.getpid())
        if not wait_flag(token):
            raise TimeoutError(f"flag {os.path.join(FLAGS, token)} never appeared")
        note("done", token, os.getpid())


    @swarmd.job(name="Fail")
    def fail(token):
        note("fail", token, os.getpid())
        raise ValueError(f"boom {token}")


    @swarmd.job(name="FailUndecodable")
    def fail_undecodable(token):
        """Fails with a message holding a lone surrogate (a file name of undecodable bytes)."""
        note("fail", token, os.getpid())
        raise ValueError("no such file: " + os.fsdecode(b"\\xff.png"))


    def _deep(n, token):
        if n == 0:
            raise ValueError(f"deep {token}")
        _deep(n - 1, token)


    @swarmd.job(name="FailDeep")
    def fail_deep(token):
        _deep(12, token)


    @swarmd.job(name="Crash")
    def crash(token):
        """A poison job: SIGKILLs the worker that runs it (as the OOM killer would)."""
        note("start", token, os.getpid())
        os.kill(os.getpid(), 9)


    def plain(token):
        """Not a job: only reachable through ``swarmd.delay`` and ``delay_allow``."""
        note("done", token, os.getpid())
    '''
).replace("{note}", LEDGER_NOTE)

FAST = {
    "beat_interval": 0.2,
    "poll_interval": 0.1,
    "recovery_interval": 0.2,
    "liveness_ttl": 1,
    "fetch_timeout": 0.5,
    "timeout": 2,
    "concurrency": 4,
}
"""Tiny intervals so the tests wait milliseconds, not Sidekiq's seconds."""

BARE_WORKER = """
import sys
from swarmd.cli import setup_logs
from swarmd.config import load_config
from swarmd.worker import Worker
config = load_config(sys.argv[1])
setup_logs(config)
sys.exit(Worker(config, quarantine="--quarantine" in sys.argv[2:]).run())
"""
"""One worker with no supervisor around it: what the supervisor runs in each forked child (with
``--quarantine``: a quarantine worker)."""

_SCRUBBED_ENV = ("REDIS_URL", "APP_ENV", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class App(Ledger):
    """A tmp_path app directory: job module, ledger, flags, config files, daemons."""

    def __init__(self, root: Path, redis_url: str) -> None:
        self.root = root
        self.redis_url = redis_url
        self.ledger = root / "ledger.log"
        self.flags = root / "flags"
        self.flags.mkdir()
        (root / f"{JOBS_MODULE}.py").write_text(JOBS_SOURCE)
        self.daemons: list[Daemon] = []
        self.client = Client(redis_url)
        self.r = redis.Redis.from_url(redis_url)
        self._home = redis.Redis.from_url(redis_url)  # the session's server, even if a test swaps `r`
        self.settle()
        self._home.flushall()

    def settle(self) -> None:
        """Wait until Redis has dropped every blocked client of a killed worker.

        A SIGKILLed worker is gone, but Redis may not have processed the closed socket of its BLMOVE
        yet; until it has, that BLMOVE would take (and strand) a job pushed by the next test.
        """
        wait_until(
            lambda: self._home.info("clients")["blocked_clients"] == 0, 10, what="no client blocked in Redis"
        )

    # -- config and processes ---------------------------------------------------------------------
    def config(self, name: str = "swarmd.yml", redis_url: str | None = None, **settings: Any) -> Path:
        data: dict[str, Any] = {**FAST, "redis": {"url": redis_url or self.redis_url}}
        data.update(settings)
        path = self.root / name
        path.write_text(yaml.safe_dump(data))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMD_") and k not in _SCRUBBED_ENV}
        env.update(
            SWARMD_TEST_LEDGER=str(self.ledger),
            SWARMD_TEST_FLAGS=str(self.flags),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def start(
        self,
        *args: str,
        config: Path | None = None,
        require: bool = True,
        env: dict[str, str] | None = None,
    ) -> Daemon:
        """``python -m swarmd [-r jobs] [-C config] *args`` with cwd = the app directory."""
        argv = [sys.executable, "-m", "swarmd"]
        if require:
            argv += ["-r", JOBS_MODULE]
        if config is not None:
            argv += ["-C", str(config)]
        return self._popen([*argv, *args], env)

    def start_worker(self, config: Path, *, quarantine: bool = False) -> Daemon:
        """A bare `swarmd.worker.Worker` process (config ``require`` must name the job module)."""
        extra = ["--quarantine"] if quarantine else []
        return self._popen([sys.executable, "-c", BARE_WORKER, str(config), *extra], None)

    def _popen(self, argv: list[str], env: dict[str, str] | None) -> Daemon:
        out_path = self.root / f"swarmd-{len(self.daemons)}.out"
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=self.root,
                env=env if env is not None else self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        daemon = Daemon(proc, out_path, argv[3:] if argv[1] == "-m" else ["<bare worker>", *argv[3:]])
        self.daemons.append(daemon)
        return daemon

    def run(
        self, *args: str, require: bool = False, timeout_s: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """``python -m swarmd *args`` to completion (for commands that must exit on their own)."""
        argv = [sys.executable, "-m", "swarmd"]
        if require:
            argv += ["-r", JOBS_MODULE]
        return subprocess.run(
            [*argv, *args],
            cwd=self.root,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            start_new_session=True,
            check=False,
        )

    def wait_booted(
        self, daemon: Daemon, count: int = 1, timeout_s: float = 15.0, namespace: str | None = None
    ) -> str:
        """Wait until ``count`` workers are in `processes`; return the identity of ``daemon``'s worker.

        The identity's pid is the worker's: the daemon's own pid for a bare worker, a forked child's
        under the supervisor. Both are in the daemon's process group, which is what is matched.
        """
        prefix = f"{namespace}:" if namespace else ""

        def ident() -> str | None:
            if not daemon.alive():
                pytest.fail(f"swarmd exited with {daemon.proc.returncode} before booting:\n{daemon.output()}")
            for m in set_members(self.r, f"{prefix}processes"):
                info = self.r.hget(f"{prefix}{m.decode()}", "info")
                if info is None:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    if os.getpgid(json.loads(info)["pid"]) == daemon.pid:
                        return str(m.decode())
            return None

        found = wait_until(ident, timeout_s, what="the worker to register in `processes`")
        wait_until(lambda: self.r.scard(f"{prefix}processes") >= count, timeout_s, what=f"{count} workers")
        return str(found)

    def stop_all(self) -> None:
        for d in self.daemons:
            d.kill_group()

    # -- enqueueing and the ledger ----------------------------------------------------------------
    def enqueue(self, name: str, *args: Any, queue: str = "default", **options: Any) -> str:
        jid = self.client.enqueue(name, args, None, {"queue": queue, **options})
        assert jid is not None  # no client middleware drops jobs here
        return jid

    def raw_job(self, name: str, *args: Any, queue: str = "default", **fields: Any) -> bytes:
        """The bytes of a job as the client would push it (for LPUSH/ZADD by hand)."""
        return payload.encode(payload.for_queue(payload.build(name, args, None, {"queue": queue, **fields})))

    def inflight_entries(self) -> int:
        return sum(int(self.r.llen(k)) for k in self.r.scan_iter("swarmd:inflight:*"))

    def wait_inflight_empty(self, timeout_s: float = 10.0) -> None:
        """Acks are batched into the next fetch or the next housekeeping tick: wait for them."""
        wait_until(lambda: self.inflight_entries() == 0, timeout_s, what="every in-flight list to empty")


@pytest.fixture
def app(tmp_path: Path, redis_url: str) -> Iterator[App]:
    a = App(tmp_path, redis_url)
    yield a
    a.stop_all()
    for i, d in enumerate(a.daemons):
        print(f"----- swarmd #{i} {d.args} exit={d.proc.returncode} -----")
        print(d.output())
    try:  # where the jobs were when the test ended
        print("----- Redis -----")
        for key in sorted(a.r.scan_iter("*")):
            kind = as_bytes(a.r.type(key)).decode()
            size = {"list": a.r.llen, "zset": a.r.zcard, "set": a.r.scard, "hash": a.r.hlen}.get(kind)
            print(key.decode(errors="replace"), kind, size(key) if size else "")
    except redis.RedisError as exc:
        print(f"(Redis not readable: {exc})")
    a.settle()
    a.r.close()
    a._home.close()
