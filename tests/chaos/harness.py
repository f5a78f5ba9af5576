"""The chaos suite's harness: a swarm in a tmp_path app directory, its jobs, the ledger count, the report.

Jobs write one line per event with one ``os.write`` on an ``O_APPEND`` fd (`tests.conftest.Ledger`): the
ledger is a file no fault touches (Redis may be killed, the swarm too). Every normal job is enqueued
through ``perform_async`` and counts as acknowledged only once that call returned its jid; at the end
a `Tally` counts, for the acknowledged tokens:

- lost: never ran and nowhere in Redis any more (not in a queue, a private list, schedule/retry/dead);
- pending: never ran, still in Redis (the run was cut short: not lost, but the scenario did not finish);
- duplicates: ran more than once (at-least-once allows them, except where the promise says otherwise);
- innocents dead: normal jobs found in `dead`.

Short mode (the default, what ``make test`` runs) shrinks job counts and fault durations;
``SWARMD_CHAOS=full`` (``make chaos``) runs the whole campaign. Nothing here asserts a duration: recovery
times are measured and reported (`Report`), never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import redis
import yaml

import swarmd
from swarmd.client import Client
from swarmd.errors import RedisUnavailable
from swarmd.registry import JobFunction, JobOptions
from tests.conftest import LEDGER_NOTE, TIMEOUT_SCALE, Daemon, Ledger, wait_until

T = TypeVar("T")

FULL = os.environ.get("SWARMD_CHAOS", "short").strip().lower() == "full"
"""``SWARMD_CHAOS=full`` runs the whole campaign (``make chaos``); anything else the short version."""


def pick(short: T, full: T) -> T:
    """The short-mode or the full-mode value of a scenario parameter."""
    return full if FULL else short


JOBS_MODULE = "chaos_jobs"

JOBS_SOURCE = textwrap.dedent(
    '''
    """Job functions of swarmd's chaos suite (written to tmp_path by the harness)."""
    import os
    import re
    import time

    import swarmd

    LEDGER = os.environ["SWARMD_TEST_LEDGER"]
    FLAGS = os.environ["SWARMD_TEST_FLAGS"]
    FUZZ_TOKEN = re.compile(r"fz[0-9]+")


    {note}


    @swarmd.job(name="ChaosWork")
    def work(token, seconds=0.0):
        """A normal job: sleeps a little, then records that it ran (token, pid, wall time)."""
        if seconds:
            time.sleep(seconds)
        note("done", token, os.getpid(), f"{time.time():.6f}")


    @swarmd.job(name="ChaosBlock")
    def block(token):
        """Runs until the flag file ``<FLAGS>/<token>`` exists (at most 60 s)."""
        note("start", token, os.getpid(), f"{time.time():.6f}")
        wait_flag(token)
        note("done", token, os.getpid(), f"{time.time():.6f}")


    @swarmd.job(name="ChaosKillSelf")
    def kill_self(token):
        """A poison job: SIGKILLs the worker running it (as the OOM killer would)."""
        note("start", token, os.getpid(), f"{time.time():.6f}")
        os.kill(os.getpid(), 9)


    @swarmd.job(name="ChaosAbort")
    def abort(token):
        """A poison job: aborts the worker running it (a C library's assert, a segfault)."""
        note("start", token, os.getpid(), f"{time.time():.6f}")
        os.abort()


    @swarmd.job(name="ChaosHog")
    def hog(token, mb, seconds):
        """A poison job: holds ``mb`` MB (written, so resident) for up to ``seconds``."""
        note("start", token, os.getpid(), f"{time.time():.6f}")
        ballast = b"x" * (mb << 20)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
        note("done", token, os.getpid(), f"{time.time():.6f}", len(ballast))


    @swarmd.job(name="ChaosFuzz")
    def fuzz(*args, **kwargs):
        """What a fuzzed payload that decodes runs: records its token if ``args[0]`` still is one."""
        token = args[0] if args and isinstance(args[0], str) and FUZZ_TOKEN.fullmatch(args[0]) else "?"
        note("done", token, os.getpid(), f"{time.time():.6f}")
    '''
).replace("{note}", LEDGER_NOTE)

NORMAL_CLASSES = frozenset({"ChaosWork"})
"""Jobs that must never end in `dead` (innocents)."""


def is_normal(job: dict[str, Any]) -> bool:
    """A normal job (``ChaosWork`` with its token first): not one of the fuzzed payloads beside it."""
    name, args = job.get("class"), job.get("args")
    return isinstance(name, str) and name in NORMAL_CLASSES and isinstance(args, list) and bool(args)


# Stubs of the same names in the test process: enqueueing goes through `perform_async` as an app's would.
@swarmd.job(name="ChaosWork")
def chaos_work(token: str, seconds: float = 0.0) -> None:
    raise NotImplementedError("runs in the swarm")


@swarmd.job(name="ChaosBlock")
def chaos_block(token: str) -> None:
    raise NotImplementedError("runs in the swarm")


@swarmd.job(name="ChaosKillSelf")
def chaos_kill_self(token: str) -> None:
    raise NotImplementedError("runs in the swarm")


@swarmd.job(name="ChaosAbort")
def chaos_abort(token: str) -> None:
    raise NotImplementedError("runs in the swarm")


@swarmd.job(name="ChaosHog")
def chaos_hog(token: str, mb: int, seconds: float) -> None:
    raise NotImplementedError("runs in the swarm")


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
    "dead_max_jobs": 1_000_000,
    "tag": "chaos",
}
"""Tiny intervals so scenarios wait milliseconds, not Sidekiq's seconds."""

_SCRUBBED_ENV = ("REDIS_URL", "APP_ENV", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


# -- processes --------------------------------------------------------------------------------------------


def process_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc (``""`` once it is gone)."""
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


class SwarmDaemon(Daemon):
    """The shared daemon handle, plus the supervisor's workers as /proc shows them."""

    def workers(self) -> list[int]:
        """The supervisor's live children (its workers)."""
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return []
        return [p for p in pids if process_state(p) not in ("Z", "X", "")]

    def booted_workers(self) -> list[int]:
        """Workers that have booted (their title shows the busy count, set once they serve)."""
        return [p for p in self.workers() if " busy]" in cmdline(p)]

    def exit_text(self) -> str:
        """Why the swarm is gone, for a failure message: exit code, its last ERROR, its last lines."""
        lines = self.lines()
        errors = [line.split(" ERROR: ", 1)[1] for line in lines if " ERROR: " in line]
        why = f" after: {errors[-1]}" if errors else ""
        tail = "\n".join(lines[-15:])
        return f"swarmd exited with {self.proc.returncode}{why}\n(its last lines:\n{tail})"


# -- the swarm ----------------------------------------------------------------------------------------------


class ChaosSwarm(Ledger):
    """A tmp_path app directory: job module, ledger, flags, config files, daemons, the acknowledged tokens."""

    def __init__(self, root: Path, redis_url: str) -> None:
        self.root = root
        self.ledger = root / "ledger.log"
        self.flags = root / "flags"
        self.flags.mkdir()
        (root / f"{JOBS_MODULE}.py").write_text(JOBS_SOURCE)
        self.daemons: list[SwarmDaemon] = []
        self.acked: list[str] = []
        """Tokens whose ``perform_async`` returned a jid (Redis has the job)."""
        self.killed: set[int] = set()
        """Pids this scenario SIGKILLed (a duplicate with a run on one of them is explained)."""
        self._clients: list[Client] = []
        self.redis_url = redis_url
        self.client = self._client(redis_url)
        self.r = redis.Redis.from_url(redis_url)

    def _client(self, url: str) -> Client:
        client = Client(url)
        self._clients.append(client)
        return client

    def use_redis(self, url: str) -> None:
        """Point the test's clients at another server (a private one that the scenario kills)."""
        self.redis_url = url
        self.client = self._client(url)
        self.r.close()
        self.r = redis.Redis.from_url(url)

    def close(self) -> None:
        for d in self.daemons:
            d.kill_group()
        self.r.close()
        for client in self._clients:
            if client._redis is not None:
                client._redis.close()

    # -- config and processes -------------------------------------------------------------------------
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

    def start(self, *args: str, config: Path | None = None, env: dict[str, str] | None = None) -> SwarmDaemon:
        """``python -m swarmd -r chaos_jobs -C <config> *args`` with cwd = the app directory."""
        argv = [sys.executable, "-m", "swarmd", "-r", JOBS_MODULE, "-C", str(config or self.config()), *args]
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
        daemon = SwarmDaemon(proc, out_path, argv[3:])
        self.daemons.append(daemon)
        return daemon

    def start_booted(
        self, processes: int = 2, config: Path | None = None, env: dict[str, str] | None = None
    ) -> SwarmDaemon:
        """A swarm of ``processes`` workers, returned once every worker has booted."""
        daemon = self.start("--processes", str(processes), config=config, env=env)
        self.wait_booted(daemon, processes)
        return daemon

    def wait_booted(self, daemon: SwarmDaemon, count: int, timeout_s: float = 30.0) -> list[int]:
        def booted() -> list[int] | None:
            if not daemon.alive():
                pytest.fail(daemon.exit_text(), pytrace=False)
            pids = daemon.booted_workers()
            return pids if len(pids) >= count else None

        return cast("list[int]", wait_until(booted, timeout_s, what=f"{count} booted worker(s)"))

    def sigkill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.killed.add(pid)

    # -- enqueueing ---------------------------------------------------------------------------------------
    def via(self, job: JobFunction[..., Any]) -> JobOptions[...]:
        """``job`` enqueueing through this swarm's client (``job.set(client=...)``)."""
        return job.set(client=self.client)

    def perform(self, tokens: Iterable[str], seconds: float = 0.0) -> list[str]:
        """``ChaosWork.perform_async(token, seconds)`` for each token; all of them are acknowledged."""
        work = self.via(chaos_work)
        done = []
        for token in tokens:
            work.perform_async(token, seconds)
            self.acked.append(token)
            done.append(token)
        return done

    # -- the ledger ---------------------------------------------------------------------------------------
    def done_entries(self) -> list[list[str]]:
        return [e for e in self.entries() if e[0] == "done"]

    def first_done_after(self, when: float) -> float | None:
        """Seconds from ``when`` (wall clock) to the first job that finished after it, if any did."""
        later = [float(e[3]) for e in self.done_entries() if len(e) > 3 and float(e[3]) > when]
        return min(later) - when if later else None

    def wait_progress(self, jobs: int, daemon: SwarmDaemon, timeout_s: float = 30.0) -> None:
        """Wait until ``jobs`` more jobs have run (so that a fault hits a busy swarm)."""
        want = len(self.done_entries()) + jobs

        def progressed() -> bool:
            if not daemon.alive():
                pytest.fail(daemon.exit_text(), pytrace=False)
            return len(self.done_entries()) >= want

        wait_until(progressed, timeout_s, what=f"{jobs} more jobs to run")

    def wait_done(
        self,
        tokens: Sequence[str],
        timeout_s: float,
        watch: Sequence[SwarmDaemon] = (),
        also: Callable[[], str | None] | None = None,
        fail_fast: bool = not FULL,
    ) -> str | None:
        """Wait until every token has run. Returns None, or what went wrong instead: a watched swarm
        exited, an innocent job reached `dead`, ``also()`` said something, or the time ran out.

        Without ``fail_fast`` (the full campaign, whose table should count every innocent job in dead),
        a token in dead counts as settled and the run goes on; the tally reports it."""
        want = set(tokens)
        stranded = StrandWatch(self)

        def check() -> bool | str:
            ran = set(self.tokens())
            have = want & ran
            if have == want:
                return True
            with contextlib.suppress(redis.RedisError):
                if problem := stranded(ran):
                    return problem
            with contextlib.suppress(redis.RedisError):
                innocents = self.innocents_dead()
                if innocents and fail_fast:
                    return f"{len(innocents)} normal job(s) in dead, e.g. {innocents[0]}"
                if innocents and want <= have | {i.split()[0] for i in innocents}:
                    return f"{len(innocents)} normal job(s) in dead, e.g. {innocents[0]}"
            if also is not None and (problem := also()):
                return problem
            return False

        problem = until(check, timeout_s, watch)
        if problem is not None and problem.startswith("timed out"):
            missing = len(want - set(self.tokens()))
            problem += f": {missing} of {len(want)} job(s) not run"
        return problem

    def wait_settled(self, timeout_s: float = 15.0) -> None:
        """Wait until every private list is empty (acks travel with the next fetch or tick)."""
        wait_until(lambda: self.inflight() == 0, timeout_s, what="every in-flight list to empty")

    def inflight(self) -> int:
        total = 0
        for key in self.r.scan_iter("swarmd:inflight:*"):
            total += self.r.llen(key)
        return total

    def dead_jobs(self) -> list[dict[str, Any]]:
        jobs = []
        for raw in cast("list[bytes]", self.r.zrange("dead", 0, -1)):
            with contextlib.suppress(ValueError, RecursionError):
                job = json.loads(raw)
                if isinstance(job, dict):
                    jobs.append(job)
        return jobs

    def innocents_dead(self) -> list[str]:
        """Tokens of normal jobs in `dead` (with their error class)."""
        return [f"{job['args'][0]} ({job.get('error_class')})" for job in self.dead_jobs() if is_normal(job)]

    def tokens_in_redis(self) -> dict[str, str]:
        """Tokens of normal jobs anywhere in Redis (any list: queues, private lists; any sorted set), and
        the key each is in: one snapshot (MULTI), so a job moving from a queue into a private list
        meanwhile is seen in one of them."""
        keys = list(self.r.scan_iter("*"))
        kinds = self.r.pipeline(transaction=False)
        for key in keys:
            kinds.type(key)
        reads = [
            (key, kind) for key, kind in zip(keys, kinds.execute(), strict=True) if kind in (b"list", b"zset")
        ]
        snapshot = self.r.pipeline(transaction=True)
        for key, kind in reads:
            if kind == b"list":
                snapshot.lrange(key, 0, -1)
            else:
                snapshot.zrange(key, 0, -1)
        found: dict[str, str] = {}
        for (key, _), members in zip(reads, snapshot.execute(raise_on_error=False), strict=True):
            if not isinstance(members, list):
                continue  # the key changed type meanwhile
            for raw in members:
                with contextlib.suppress(ValueError, RecursionError):
                    job = json.loads(raw)
                    if isinstance(job, dict) and is_normal(job):
                        found[str(job["args"][0])] = key.decode(errors="replace")
        return found

    def tally(self, tokens: Sequence[str] | None = None) -> Tally:
        """Count what happened to ``tokens`` (default: every acknowledged token).

        Redis is read before the ledger: a job that left Redis before the snapshot had written its
        ledger line by then (a job is acknowledged after it ran). A job is lost only if three such
        looks, a moment apart, all miss it (a private list created between SCAN and MULTI)."""
        acked = list(self.acked if tokens is None else tokens)
        lost: list[str] | None = None
        for attempt in range(3):
            pending: list[str] = []
            innocents: list[str] = []
            try:
                in_redis = self.tokens_in_redis()
                innocents = self.innocents_dead()
            except redis.RedisError:
                in_redis = None  # Redis is down: nothing can be called lost
            counts = self.count("done")
            never = [t for t in acked if not counts[t]]
            if in_redis is None:
                pending, missing = never, []
            else:
                pending = [f"{t} (in {in_redis[t]})" for t in never if t in in_redis]
                missing = [t for t in never if t not in in_redis]
            lost = missing if lost is None else [t for t in lost if t in missing]
            if not lost:
                break
            time.sleep(0.2 * (attempt + 1))
        assert lost is not None
        acked_set = set(acked)
        dups = {t: n for t, n in counts.items() if n > 1 and t in acked_set}
        return Tally(len(acked), lost, pending, dups, innocents, self.explained(dups), bool(self.killed))

    def explained(self, duplicates: Iterable[str]) -> set[str]:
        """Duplicates with a run on a process this scenario SIGKILLed (its ack could not be sent)."""
        pids: dict[str, set[int]] = {}
        for e in self.done_entries():
            pids.setdefault(e[1], set()).add(int(e[2]))
        return {t for t in duplicates if pids.get(t, set()) & self.killed}


STRANDED = "stranded in the private list of a live, idle worker"


class StrandWatch:
    """Finds normal jobs that sit in the private list of a live worker without running: such a job
    is not lost (a stop or a recovery would push it back) but never runs while its worker lives.

    A job counts once it has sat there, never run and not running (not in ``<identity>:work``), for
    `AFTER_S` while the worker was alive and not stopped (SIGSTOP): a fetched job starts at once, so
    only a job nobody holds stays that long. (A job that ran may wait longer for its ack while Redis
    is away: it does not count.)"""

    AFTER_S = 5.0

    def __init__(self, swarm: ChaosSwarm) -> None:
        self.swarm = swarm
        self.since: dict[tuple[str, str], float] = {}

    def __call__(self, ran: set[str]) -> str | None:
        """The first job (not in ``ran``, the tokens that ran) stranded for `AFTER_S`, if any."""
        r = self.swarm.r
        now = time.monotonic()
        seen: set[tuple[str, str]] = set()
        for key in r.scan_iter("swarmd:inflight:*"):
            identity = key.decode(errors="replace").removeprefix("swarmd:inflight:")
            pid = identity.split(":")[1] if identity.count(":") >= 2 else ""
            if (
                not r.exists(f"swarmd:alive:{identity}")
                or not pid.isdigit()
                or process_state(int(pid)) in ("T", "t", "")
            ):
                continue  # dead or frozen: recovery's business
            running = {_token(_payload(v)) for v in cast("list[bytes]", r.hvals(f"{identity}:work"))}
            for raw in cast("list[bytes]", r.lrange(key, 0, -1)):
                token = _token(raw)
                if token is None or token in running or token in ran:
                    continue  # not a normal job, running, or run and waiting for its ack
                seen.add((identity, token))
                first = self.since.setdefault((identity, token), now)
                if now - first >= self.AFTER_S:
                    return f"{token} {STRANDED} ({identity}) for {now - first:.0f} s"
        self.since = {k: v for k, v in self.since.items() if k in seen}
        return None


def _payload(value: bytes) -> bytes:
    with contextlib.suppress(ValueError, TypeError, AttributeError, RecursionError):
        return str(json.loads(value)["payload"]).encode()
    return b""


def _token(raw: bytes) -> str | None:
    """The token of a normal job's raw bytes (None for anything else)."""
    with contextlib.suppress(ValueError, RecursionError):
        job = json.loads(raw)
        if isinstance(job, dict) and is_normal(job):
            return str(job["args"][0])
    return None


@dataclass
class Tally:
    jobs: int
    lost: list[str]
    pending: list[str]
    duplicates: dict[str, int]
    innocents_dead: list[str]
    explained: set[str] = field(default_factory=set)
    """Duplicates with a run in a process the scenario SIGKILLed."""
    kills: bool = False

    def check(self, problem: str | None = None, *, duplicates_allowed: bool = True) -> None:
        """Fail on what the promise forbids: a loss, an innocent job in dead, a run that could not finish,
        and (where the promise says so) any duplicate."""
        assert not self.lost, f"{len(self.lost)} acknowledged job(s) lost, e.g. {self.lost[:5]}"
        assert not self.innocents_dead, f"innocent jobs in dead: {self.innocents_dead[:5]}"
        never = f"{len(self.pending)} job(s) never ran, still in Redis: {self.pending[:5]}"
        assert problem is None, problem + (f"; {never}" if self.pending else "")
        assert not self.pending, never
        if not duplicates_allowed:
            assert not self.duplicates, (
                f"duplicates where none may happen: {dict(list(self.duplicates.items())[:5])}"
            )


def until(check: Callable[[], bool | str], timeout_s: float, watch: Sequence[SwarmDaemon] = ()) -> str | None:
    """Poll ``check()`` (True: done, False: not yet, a string: what went wrong) until it is done; return
    None, or the problem: what ``check`` said, that a watched swarm exited, or that time ran out."""
    deadline = time.monotonic() + timeout_s * TIMEOUT_SCALE
    while True:
        result = check()
        if result is True:
            return None
        if isinstance(result, str):
            return result
        for d in watch:
            if not d.alive():
                return d.exit_text()
        if time.monotonic() > deadline:
            return f"timed out after {timeout_s:g} s"
        time.sleep(0.05)


# -- producers and fault loops ------------------------------------------------------------------------------


class Producer:
    """A thread calling ``perform_async`` in a loop while a fault happens; only the calls that returned a
    jid are acknowledged (a call that raised told the app its job was not taken)."""

    def __init__(self, swarm: ChaosSwarm, prefix: str, seconds: float = 0.0, pause_s: float = 0.005) -> None:
        self.swarm = swarm
        self.prefix = prefix
        self.seconds = seconds
        self.pause_s = pause_s
        self.refused = 0
        self.acked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"producer-{prefix}", daemon=True)

    def _run(self) -> None:
        client = Client(self.swarm.redis_url)
        work = chaos_work.set(client=client)
        i = 0
        try:
            while not self._stop.is_set():
                token = f"{self.prefix}{i}"
                i += 1
                try:
                    work.perform_async(token, self.seconds)
                except (redis.RedisError, RedisUnavailable):  # the app is told: not taken
                    self.refused += 1
                    self._stop.wait(0.05)
                    continue
                self.acked.append(token)
                self._stop.wait(self.pause_s)
        finally:
            if client._redis is not None:
                client._redis.close()

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.swarm.acked.extend(self.acked)


@contextlib.contextmanager
def background(target: Callable[[threading.Event], None], name: str) -> Iterator[threading.Event]:
    """Run ``target(stop)`` in a thread for the duration of the block; re-raise what it raised."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(60)
    if errors:
        raise errors[0]


# -- swarmd's output ---------------------------------------------------------------------------------------

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z pid=\d+ tid=\S+ ")
JOB_FAILURE = re.compile(r" class=.* jid=.* WARNING: ")


def records(output: str) -> list[list[str]]:
    """Log records: a line in swarmd's shape and the lines that follow it without that shape."""
    out: list[list[str]] = []
    for line in output.splitlines():
        if LOG_LINE.match(line) or not out:
            out.append([line])
        else:
            out[-1].append(line)
    return out


def swarmd_tracebacks(output: str) -> list[str]:
    """Tracebacks of swarmd's own code: any but the one a failing job's WARNING carries (a job's error is
    the app's, reported as Sidekiq does), and any uncaught exception of a thread or a process."""
    found = []
    for record in records(output):
        text = "\n".join(record)
        uncaught = "Exception in thread" in text or ("Fatal Python error" in text and "Aborted" not in text)
        logged = "Traceback (most recent call last)" in text and not JOB_FAILURE.search(record[0])
        if uncaught or logged:
            found.append(text)
    return found


@dataclass
class Row:
    scenario: str
    jobs: int | str
    lost: int | str = "-"
    duplicates: int | str = "-"
    innocents_dead: int | str = "-"
    recovery: str = "-"
    note: str = ""


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def spread(values: Sequence[float]) -> str:
    """``max X s, median Y s`` of measured durations (``-`` if none)."""
    if not values:
        return "-"
    ordered = sorted(values)
    median = f", median {seconds(ordered[len(ordered) // 2])}" if len(ordered) > 1 else ""
    return f"max {seconds(ordered[-1])}{median}"


class Report:
    """The rows one scenario reports: printed at teardown (``pytest -s`` shows them; a failure report
    always does) and appended as JSON lines to ``$SWARMD_CHAOS_REPORT`` (benchmarks/chaos.py's table)."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.rows: list[Row] = []

    def row(
        self,
        scenario: str,
        tally: Tally | None = None,
        *,
        recovery: str = "-",
        note: str = "",
        problem: str | None = None,
        **cells: Any,
    ) -> Row:
        """Record (and print) a row; ``problem``, what cut the scenario short, joins the note."""
        if problem:
            note = (note + "; " if note else "") + problem.splitlines()[0][:300]
        row = Row(scenario, 0, recovery=recovery, note=note)
        if tally is not None:
            row.jobs, row.lost = tally.jobs, len(tally.lost)
            dups = len(tally.duplicates)
            unexplained = dups - len(tally.explained)
            row.duplicates = f"{dups} ({unexplained} unexplained)" if tally.kills and dups else dups
            row.innocents_dead = len(tally.innocents_dead)
            if tally.pending:
                row.note = (
                    row.note + "; " if row.note else ""
                ) + f"{len(tally.pending)} never ran (still in Redis)"
        for key, value in cells.items():
            setattr(row, key, value)
        self.rows.append(row)
        print(
            f"CHAOS {scenario}: jobs {row.jobs}, lost {row.lost}, duplicates {row.duplicates}, "
            f"innocents dead {row.innocents_dead}, recovery {row.recovery}"
            + (f" ({row.note})" if row.note else "")
        )
        return row

    def write(self, outcome: str, reason: str = "") -> None:
        path = os.environ.get("SWARMD_CHAOS_REPORT")
        if not path:
            return
        mode = "full" if FULL else "short"
        with open(path, "a") as f:
            for row in self.rows:
                record = {
                    "test": self.test,
                    "outcome": outcome,
                    "reason": reason,
                    "mode": mode,
                    **row.__dict__,
                }
                f.write(json.dumps(record) + "\n")
