"""Processes and scripts for the interop tests: the real swarmd daemon, the real Sidekiq server, and
Sidekiq 6.4.1's client/API/Web UI through ``api.rb``. Everything runs against the test's own Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import redis

import swarmd
from tests.conftest import wait_until

HERE = Path(__file__).resolve().parent
API_RB = HERE / "api.rb"
WORKER_RB = HERE / "worker.rb"
PYJOBS = HERE / "pyjobs.py"

# Every interop test: marked, and timed on its body only (the first test's set-up may install
# ruby-sidekiq under CI, which takes longer than the global per-test timeout).
INTEROP = [pytest.mark.interop, pytest.mark.timeout(120, func_only=True)]

# Args that must cross the language border unchanged: nested hashes, nulls, floats, unicode,
# integers beyond 2**53 (Ruby has bignums; nothing on the way may turn them into floats).
NASTY: list[Any] = [
    1,
    -0.5,
    0.1,
    1e100,
    -2.5e-07,
    12345678901234567890,
    None,
    True,
    False,
    "",
    'héllo wörld ✓ 日本語 🎉 "quoted" back\\slash \n newline',
    [],
    {},
    {"nested": {"list": [1, 2.25, None, {"deep": ["x", {"deeper": None}]}], "null": None}},
    [[["three", "levels"]], {"k": [0.0, -0.0, 3.0]}],
]


@dataclass(frozen=True)
class RubyEnv:
    ruby: str
    sidekiq: str
    version: str


class Daemon:
    """A long-running process in its own session; its output goes to a file in the test's tmp dir."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = cwd / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def kill(self) -> None:
        """SIGKILL the whole process group (workers included); return once every member is dead.

        Waiting for the leader is not enough: a dying worker still blocked in BLMOVE could take a
        job the next test pushes (Redis serves it before it reads the closed socket).
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while group_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


class Swarmd(Daemon):
    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], tag: str) -> None:
        super().__init__(name, argv, cwd, env)
        self.tag = tag
        self.identity = ""


class Interop:
    """One test's world: its Redis, its tmp dir, the daemons it started, the Ruby scripts."""

    def __init__(self, tmp_path: Path, redis_url: str, ruby: RubyEnv) -> None:
        self.tmp = tmp_path
        self.url = redis_url
        self.ruby_env = ruby
        self.out = tmp_path / "out"
        self.out.mkdir()
        self.env = dict(os.environ, INTEROP_REDIS_URL=redis_url, INTEROP_OUT=str(self.out))
        for var in ("RAILS_ENV", "RACK_ENV", "APP_ENV", "SWARMD_ENV", "REDIS_URL", "SWARMD_REDIS_URL"):
            self.env.pop(var, None)
        self.r = redis.Redis.from_url(redis_url, decode_responses=True)
        self.client = swarmd.Client(redis_url)
        self.daemons: list[Daemon] = []

    def close(self) -> None:
        for d in self.daemons:
            d.kill()
        for d in self.daemons:  # shown by pytest only when the test failed
            print(f"----- {d.name} (pid {d.pid}, exit {d.proc.returncode}) -----\n{d.output()}")
        self.r.close()
        if self.client._redis is not None:
            self.client._redis.close()

    # -- swarmd ------------------------------------------------------------------------------------
    def start_swarmd(
        self, *, queues: tuple[str, ...] = ("default",), concurrency: int = 2, tag: str = "interop"
    ) -> Swarmd:
        """``python -m swarmd -r pyjobs -C swarmd.yml``; returns once its worker heartbeats."""
        name = f"swarmd{len(self.daemons)}"
        shutil.copy(PYJOBS, self.tmp / "pyjobs.py")
        config = {
            "concurrency": concurrency,
            "queues": list(queues),
            "tag": tag,
            "timeout": 2,
            "beat_interval": 0.5,
            "poll_interval": 0.2,
            "liveness_ttl": 3,
            "fetch_timeout": 0.5,
            "redis": {"url": self.url},
        }
        (self.tmp / f"{name}.yml").write_text(json.dumps(config))  # JSON is YAML
        argv = [sys.executable, "-m", "swarmd", "-r", "pyjobs", "-C", f"{name}.yml"]
        daemon = Swarmd(name, argv, self.tmp, self.env, tag)
        self.daemons.append(daemon)

        def registered() -> str | None:
            if daemon.exited():
                pytest.fail(f"{name} exited with {daemon.proc.returncode}:\n{daemon.output()}")
            return self.identity_of(daemon)

        daemon.identity = str(wait_until(registered, 15, f"{name} to heartbeat into `processes`"))
        return daemon

    def identity_of(self, daemon: Swarmd) -> str | None:
        """The identity of the daemon's worker in `processes` (found by its tag), if it heartbeats."""
        for identity in sorted(cast("set[str]", self.r.smembers("processes"))):  # decode_responses
            raw = self.r.hget(identity, "info")
            info = json.loads(raw) if raw else {}
            if info.get("tag") == daemon.tag and "swarmd" in info.get("labels", []):
                return identity
        return None

    def wait_beats(self, identity: str, n: int = 2) -> None:
        """Wait until the process has written ``n`` more heartbeats (so it has seen what came before)."""
        for i in range(n):
            before = self.r.hget(identity, "beat")

            def moved_on(b: object = before) -> bool:
                return self.r.hget(identity, "beat") != b

            wait_until(moved_on, 10, f"heartbeat {i + 1} of {n}")

    # -- Sidekiq -----------------------------------------------------------------------------------
    def start_sidekiq(self, *, queues: tuple[str, ...] = ("default",), concurrency: int = 2) -> Daemon:
        """The real server: ``sidekiq -r worker.rb -q ... -c N -t 1``; returns once it heartbeats."""
        name = f"sidekiq{len(self.daemons)}"
        argv = [self.ruby_env.sidekiq, "-r", str(WORKER_RB), "-c", str(concurrency), "-t", "1"]
        for q in queues:
            argv += ["-q", q]
        daemon = Daemon(name, argv, self.tmp, self.env)
        self.daemons.append(daemon)

        def registered() -> bool:
            if daemon.exited():
                pytest.fail(f"{name} exited with {daemon.proc.returncode}:\n{daemon.output()}")
            for identity in self.r.smembers("processes"):
                raw = self.r.hget(identity, "info")
                if raw and json.loads(raw).get("pid") == daemon.pid:
                    return True
            return False

        wait_until(registered, 30, f"{name} to heartbeat into `processes`")
        return daemon

    # -- Ruby scripts ------------------------------------------------------------------------------
    def ruby(self, command: str, arg: Any = None) -> Any:
        """``ruby api.rb COMMAND JSON`` -> the command's result."""
        argv = [self.ruby_env.ruby, str(API_RB), command]
        if arg is not None:
            argv.append(json.dumps(arg))
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            pytest.fail(f"ruby api.rb {command} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
        return json.loads(done.stdout)["result"]

    def state(self) -> dict[str, Any]:
        """Everything Sidekiq's API (the Web UI's data) sees, as one JSON document."""
        result: dict[str, Any] = self.ruby("state")
        return result

    def web(self, path: str, method: str = "GET", **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.ruby("web", {"method": method, "path": path, "params": params})
        return result

    # -- what the jobs did -------------------------------------------------------------------------
    def records(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.out.glob(f"{name}-*.json"))]

    def wait_records(self, name: str, n: int, timeout_s: float = 15) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.records(name)) >= n, timeout_s, f"{n} {name} job(s) to run")
        found = self.records(name)
        assert len(found) == n, found
        return found

    def flag(self, name: str) -> None:
        (self.out / name).touch()


def now() -> float:
    return time.time()
