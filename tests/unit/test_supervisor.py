"""The supervisor's state machine, driven without fork: fake spawn/kill/recover (a recovery child is a
pid the test reaps when it likes), a fake clock, and a Notifier whose datagrams are captured instead of
sent."""

from __future__ import annotations

import functools
import logging
import signal
from collections.abc import Sequence
from typing import Any

import pytest

from swarmd.config import Config
from swarmd.errors import ConfigError
from swarmd.supervisor import ABORT_GRACE_S, RECOVERY_STOP_GRACE_S, Supervisor, describe_exit
from swarmd.systemd import Notifier


def exit_status(code: int) -> int:
    """A wait status as `os.waitpid` returns it for ``exit(code)``."""
    return code << 8


def signal_status(sig: int) -> int:
    return int(sig)


class CapturingNotifier(Notifier):
    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__({"NOTIFY_SOCKET": "/nonexistent/notify", **(env or {})})
        self.sent: list[str] = []

    def send(self, *fields: str) -> bool:
        self.sent.append("\n".join(fields))
        return True

    def has(self, key: str) -> list[str]:
        return [m for m in self.sent if key in m.split("\n")]

    def keys(self) -> list[str]:
        """Each datagram's first field (READY=1, STATUS=..., ...), without STATUS-only datagrams."""
        return [m.split("\n")[0] for m in self.sent if not m.startswith("STATUS=")]


class Harness:
    """A Supervisor with every effect recorded in one ordered list of events."""

    def __init__(self, config: Config, *, reload: Any = None, env: dict[str, str] | None = None) -> None:
        self.now = 1000.0
        self.next_pid = 100
        self.events: list[tuple[Any, ...]] = []
        self.reasons: list[str | None] = []  # the restart reason of each spawn, in order
        self.periodic: list[int] = []  # the workers started to claim periodic ticks
        self.memory: dict[int, int] = {}
        self.fork_fails = 0  # so many `recover` calls raise OSError (fork failing)
        self.recoverers: list[int] = []  # recovery children not reaped yet
        self.notifier = CapturingNotifier(env)
        self.titles: list[str] = []
        self.sup = Supervisor(
            config,
            spawn=self.spawn,
            kill=self.kill,
            recover=self.recover,
            notifier=self.notifier,
            clock=lambda: self.now,
            reload=reload,
            memory_kb=lambda pid: self.memory.get(pid),
            set_title=self.titles.append,
            rand=lambda: 0.5,  # jitter factor 1.0
        )

    def spawn(
        self,
        index: int,
        config: Config,
        *,
        quarantine: bool = False,
        reason: str | None = None,
        periodic: bool = False,
    ) -> tuple[int, str]:
        if not quarantine:
            self.reasons.append(reason)
        self.next_pid += 1
        if periodic:
            self.periodic.append(self.next_pid)
        if quarantine:
            self.events.append(("spawn-quarantine", self.next_pid))
            return self.next_pid, f"host:{self.next_pid}:quarantine-abc"
        self.events.append(("spawn", index, self.next_pid))
        return self.next_pid, f"host:{self.next_pid}:abc"

    def kill(self, pid: int, sig: int) -> None:
        self.events.append(("kill", pid, signal.Signals(sig).name))

    def recover(self, targets: Sequence[tuple[str, Config]]) -> int:
        if self.fork_fails:
            self.fork_fails -= 1
            self.events.append(("recover-fork-failed",))
            raise BlockingIOError(11, "Resource temporarily unavailable")
        self.next_pid += 1
        self.events.append(("recover", tuple(identity for identity, _ in targets)))
        self.recoverers.append(self.next_pid)
        return self.next_pid

    def reap_recoveries(self, code: int = 0) -> None:
        """The recovery children exit (0: every list recovered)."""
        while self.recoverers:
            self.sup.exited(self.recoverers.pop(0), exit_status(code))

    # -- helpers ---------------------------------------------------------------------------------
    def pids(self) -> list[int]:
        """The pid serving each slot."""
        return [s.worker.pid if s.worker else 0 for s in self.sup.slots]

    def boot(self, *pids: int) -> None:
        for pid in pids:
            self.sup.message(pid, "booted")
            self.sup.message(pid, "beat 0")
        self.sup.tick()

    def advance(self, seconds: float, *, beat: bool = True, step: float = 0.05) -> None:
        """Move the clock in small steps, ticking (and, unless told not to, beating) as the loop would."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = min(end, self.now + step)
            if beat:
                for pid, child in list(self.sup.children.items()):
                    if child.booted_at is not None:
                        self.sup.message(pid, f"beat {child.busy}")
            self.sup.tick()

    def spawns(self) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == "spawn"]

    def recoveries(self) -> list[tuple[str, ...]]:
        """The identities of each recovery child started, in order."""
        return [e[1] for e in self.events if e[0] == "recover"]

    def kills(self, sig: str | None = None) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == "kill" and (sig is None or e[2] == sig)]

    def started(self, processes: int) -> list[int]:
        self.sup.start()
        pids = self.pids()
        assert len(pids) == processes and all(pids)
        self.boot(*pids)
        return pids


def config(**kw: Any) -> Config:
    base: dict[str, Any] = dict(path=None, environment="test", processes=2, concurrency=5, timeout=10.0)
    base.update(kw)
    return Config(**base)


def test_ready_only_once_every_worker_booted() -> None:
    h = Harness(config(processes=3))
    h.sup.start()
    a, b, c = h.pids()
    h.sup.message(a, "booted")
    h.sup.message(b, "booted")
    h.sup.tick()
    assert h.notifier.has("READY=1") == []
    h.sup.message(c, "booted")
    h.sup.tick()
    ready = h.notifier.has("READY=1")
    assert len(ready) == 1
    assert "STATUS=3 of 3 up, 0 of 15 busy" in ready[0].split("\n")
    assert h.titles[-1] == f"swarmd 0.1.0 {h.sup.config.tag} supervisor [3 of 3 up, 0 of 15 busy]"


def test_status_counts_busy_processors() -> None:
    h = Harness(config(processes=2))
    a, b = h.started(2)
    h.sup.message(a, "beat 3")
    h.sup.message(b, "beat 4")
    h.advance(1.1, beat=False)
    assert h.notifier.sent[-1] == "STATUS=2 of 2 up, 7 of 10 busy"
    assert h.titles[-1].endswith("supervisor [2 of 2 up, 7 of 10 busy]")


def test_crash_is_recovered_and_replaced_with_growing_backoff_that_resets_after_a_healthy_minute() -> None:
    h = Harness(config(processes=1, crash_limit=100))
    (pid,) = h.started(1)
    delays = []
    for _ in range(5):
        h.advance(0.5)  # up for a while, then it crashes
        h.sup.exited(pid, signal_status(signal.SIGKILL))
        assert h.events[-1] == ("recover", (f"host:{pid}:abc",))  # jobs back right at the reap
        h.reap_recoveries()
        respawn_at = h.sup.slots[0].respawn_at
        assert respawn_at is not None
        delays.append(round(respawn_at - h.now, 3))
        h.advance(respawn_at - h.now - 0.01)
        assert h.pids() == [0]  # not before its time
        h.advance(0.02)
        assert h.pids()[0] not in (0, pid)
        pid = h.pids()[0]
        h.boot(pid)
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert h.reasons == [None] + ["crash"] * 5  # each replacement counts its restart reason
    h.advance(61.0)  # healthy for a minute: the next crash starts again at 0.1 s
    h.sup.exited(pid, exit_status(1))
    assert h.sup.slots[0].respawn_at == pytest.approx(h.now + 0.1)


def test_backoff_jitter_stays_within_twenty_percent() -> None:
    for r, expected in ((0.0, 0.08), (1.0, 0.12)):
        h = Harness(config(processes=1))
        h.sup._rand = functools.partial(float, r)
        (pid,) = h.started(1)
        h.sup.exited(pid, exit_status(1))
        assert h.sup.slots[0].respawn_at == pytest.approx(h.now + expected)


def test_backoff_is_capped_at_30_seconds() -> None:
    h = Harness(config(processes=1, crash_limit=1000, crash_window=1.0))
    (pid,) = h.started(1)
    for _ in range(12):
        h.sup.exited(pid, exit_status(1))
        crashed_at = h.now
        h.advance(31.0, step=0.5)
        pid = h.pids()[0]
        h.boot(pid)
    assert h.sup.children[pid].started - crashed_at <= 30.0 + 0.5


def test_workers_that_keep_failing_to_boot_after_ready_stop_the_swarm_with_70() -> None:
    h = Harness(config(processes=2, crash_limit=3, crash_window=60.0))
    a, b = h.started(2)
    h.sup.exited(a, exit_status(1))  # booted, then died: not a crash loop, however often
    for _ in range(3):
        h.advance(2.0)
        h.sup.exited(h.pids()[0], exit_status(70))  # the new code cannot be imported
    assert h.notifier.has("STOPPING=1") == []
    h.advance(2.0)
    h.sup.exited(h.pids()[0], exit_status(70))  # the 4th within a minute: more than crash_limit
    assert h.notifier.has("STOPPING=1")
    assert h.sup.stop_code == 70
    assert ("kill", b, "SIGTERM") in h.events
    h.advance(0.5)  # a fast stop: a second TERM, after the first one was surely handled
    assert h.kills().count(("kill", b, "SIGTERM")) == 2
    assert not h.sup.done
    h.sup.exited(b, exit_status(0))
    assert not h.sup.done  # b's list is being recovered
    h.reap_recoveries()
    assert h.sup.done and h.sup.stop_code == 70
    assert len(h.spawns()) == 6  # nothing respawned after the stop began


@pytest.mark.parametrize(
    "how", [signal_status(signal.SIGKILL), exit_status(1), signal_status(signal.SIGABRT)]
)
def test_a_booted_worker_dying_again_and_again_never_stops_the_swarm(how: int) -> None:
    # An OOM killer (or a job) killing a worker every 2 s: each one is replaced, with backoff.
    h = Harness(config(processes=2, crash_limit=10, crash_window=60.0))
    h.started(2)
    for _ in range(15):
        victim = h.pids()[0]
        h.advance(2.0)
        h.sup.exited(victim, how)
        h.reap_recoveries()
        h.advance(max(0.0, (h.sup.slots[0].respawn_at or h.now) - h.now) + 0.05)
        h.boot(h.pids()[0])
    assert h.notifier.has("STOPPING=1") == []
    assert h.sup.phase.value == "running" and h.sup.up() == 2
    assert len(h.recoveries()) == 15


def test_workers_that_cannot_reach_redis_never_make_a_crash_loop() -> None:
    h = Harness(config(processes=1, crash_limit=2, crash_window=600.0))
    h.started(1)
    h.sup.exited(h.pids()[0], signal_status(signal.SIGKILL))
    for _ in range(10):  # a Redis restart: every new worker exits 69 before it booted
        h.advance((h.sup.slots[0].respawn_at or h.now) - h.now + 0.05)
        h.sup.exited(h.pids()[0], exit_status(69))
    h.advance((h.sup.slots[0].respawn_at or h.now) - h.now + 0.05)
    h.boot(h.pids()[0])
    assert h.notifier.has("STOPPING=1") == [] and h.sup.up() == 1


@pytest.mark.parametrize(("code", "expected"), [(70, 70), (69, 69)])
def test_worker_failing_to_boot_before_ready_stops_the_swarm(
    code: int, expected: int, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(config(processes=2))
    h.sup.start()
    a, b = h.pids()
    h.sup.message(b, "booted")
    with caplog.at_level(logging.ERROR, logger="swarmd"):
        h.sup.exited(a, exit_status(code))
    assert f"worker 1 (pid {a}) exited with code {code} before it booted" in caplog.text
    assert h.notifier.has("STOPPING=1") and h.notifier.has("READY=1") == []
    h.sup.exited(b, exit_status(0))
    h.reap_recoveries()
    h.sup.tick()
    assert h.sup.done and h.sup.stop_code == expected
    assert len(h.spawns()) == 2


def test_crash_before_boot_at_start_is_a_crash_not_a_boot_failure() -> None:
    h = Harness(config(processes=1))
    h.sup.start()
    (pid,) = h.pids()
    h.sup.exited(pid, exit_status(1))  # e.g. a poison job fetched before "booted" reached us
    h.advance(0.2)
    assert h.notifier.has("STOPPING=1") == [] and h.pids()[0] not in (0, pid)
    h.boot(h.pids()[0])
    assert h.notifier.has("READY=1")


def test_boot_timeout_before_ready_aborts_then_stops_with_70() -> None:
    h = Harness(config(processes=1, boot_timeout=5.0))
    h.sup.start()
    (pid,) = h.pids()
    h.advance(5.2, beat=False)
    assert ("kill", pid, "SIGABRT") in h.events
    h.sup.exited(pid, signal_status(signal.SIGABRT))
    h.reap_recoveries()
    assert h.sup.done and h.sup.stop_code == 70


def test_clean_exit_is_replaced_at_once_without_backoff() -> None:
    h = Harness(config(processes=1))
    (pid,) = h.started(1)
    h.sup.exited(pid, exit_status(0))
    h.sup.tick()
    assert len(h.spawns()) == 2 and h.pids()[0] != pid
    assert h.sup.slots[0].crashes == 0
    assert h.reasons == [None, "exit"]


def test_rolling_reload_boots_each_new_worker_before_the_old_one_is_told_to_stop() -> None:
    new_config = config(processes=2, concurrency=7)
    h = Harness(config(processes=2), reload=lambda: new_config)
    a, b = h.started(2)
    h.events.clear()
    h.sup.signal(signal.SIGHUP)
    h.advance(1.0)
    assert h.notifier.keys()[-1] == "RELOADING=1"
    assert "MONOTONIC_USEC=" in h.notifier.has("RELOADING=1")[-1]
    assert h.spawns() == [("spawn", 0, 103)] and h.kills() == []  # one at a time, old one untouched
    h.boot(103)
    h.advance(1.0)
    h.boot(104)
    h.advance(1.0)
    assert [e for e in h.events if e[0] in ("spawn", "kill")] == [
        ("spawn", 0, 103),
        ("kill", a, "SIGTERM"),
        ("spawn", 1, 104),
        ("kill", b, "SIGTERM"),
    ]
    assert h.notifier.keys()[-1] == "READY=1"
    assert h.sup.config.concurrency == 7
    h.sup.exited(a, exit_status(0))
    h.sup.exited(b, exit_status(0))
    h.advance(1.0)
    assert h.pids() == [103, 104] and len(h.spawns()) == 2  # the retired ones are not replaced
    assert h.reasons == [None, None, "reload", "reload"]


def test_reload_with_a_broken_config_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Config:
        raise ConfigError("swarmd.yml: concurrency: expected an integer >= 1, got 0")

    h = Harness(config(processes=2), reload=broken)
    h.started(2)
    h.events.clear()
    with caplog.at_level(logging.ERROR, logger="swarmd"):
        h.sup.signal(signal.SIGHUP)
        h.advance(2.0)
    assert "reload failed, nothing changed: swarmd.yml: concurrency" in caplog.text
    assert h.spawns() == [] and h.kills() == []
    assert h.notifier.keys()[-2:] == ["RELOADING=1", "READY=1"]
    assert "reload failed" in h.notifier.has("READY=1")[-1]


def test_reload_aborts_when_a_new_worker_cannot_boot() -> None:
    h = Harness(config(processes=2), reload=lambda: config(processes=2, concurrency=3))
    a, b = h.started(2)
    h.sup.signal(signal.SIGHUP)
    h.advance(0.5)
    (new,) = [e[2] for e in h.spawns()[2:]]
    h.sup.exited(new, exit_status(70))
    h.advance(5.0)
    assert h.pids() == [a, b] and h.kills() == []
    assert len(h.spawns()) == 3  # no further attempt at the aborted reload
    assert h.sup.config.concurrency == 5  # the previous config is back
    assert "reload failed" in h.notifier.has("READY=1")[-1]


def test_reload_can_change_the_number_of_processes() -> None:
    h = Harness(config(processes=3), reload=lambda: config(processes=1))
    a, b, c = h.started(3)
    h.sup.signal(signal.SIGHUP)
    h.advance(0.5)
    h.boot(h.spawns()[-1][2])
    h.advance(0.5)
    assert {("kill", a, "SIGTERM"), ("kill", b, "SIGTERM"), ("kill", c, "SIGTERM")} <= set(h.events)
    assert len(h.sup.slots) == 1 and h.notifier.keys()[-1] == "READY=1"


def test_memory_limit_replaces_the_worker_after_three_samples_in_a_row() -> None:
    h = Harness(config(processes=2, max_memory_mb=100, memory_check_interval=1.0))
    a, b = h.started(2)
    h.memory = {a: 150 * 1024, b: 50 * 1024}
    h.advance(1.0)
    h.advance(1.0)
    h.memory[a] = 90 * 1024  # one sample under the limit starts the count again
    h.advance(1.0)
    h.memory[a] = 150 * 1024
    h.advance(2.0)
    assert len(h.spawns()) == 2
    h.advance(1.0)  # the third sample in a row
    assert len(h.spawns()) == 3 and h.spawns()[-1][1] == 0
    assert h.kills() == []  # the old one keeps serving until its replacement booted
    new = h.spawns()[-1][2]
    h.boot(new)
    # SIGUSR2 first: the jobs still running when it pushes back go to the quarantine list.
    assert h.kills() == [("kill", a, "SIGUSR2"), ("kill", a, "SIGTERM")]
    h.sup.exited(a, exit_status(0))
    h.advance(3.0)
    assert h.pids() == [new, b] and len(h.spawns()) == 3
    assert h.reasons == [None, None, "memory"]


def test_silent_worker_gets_sigabrt_then_sigkill_then_is_replaced() -> None:
    h = Harness(config(processes=2, heartbeat_timeout=5.0))
    a, b = h.started(2)
    h.events.clear()
    h.advance(4.0, beat=False)
    h.sup.message(b, "beat 0")  # b keeps beating, a is hung
    h.advance(1.5, beat=False)
    h.sup.message(b, "beat 0")
    assert h.kills() == [("kill", a, "SIGABRT"), ("kill", a, "SIGCONT")]
    h.advance(ABORT_GRACE_S + 0.1, beat=False)
    h.sup.message(b, "beat 0")
    assert h.kills()[-1] == ("kill", a, "SIGKILL")
    h.sup.exited(a, signal_status(signal.SIGKILL))
    assert ("recover", (f"host:{a}:abc",)) in h.events
    h.advance(0.5)
    assert h.pids()[0] not in (0, a) and h.pids()[1] == b
    assert not [k for k in h.kills() if k[1] == b]
    assert h.reasons == [None, None, "hung"]


def test_term_stops_gracefully_then_kills_stragglers_at_the_deadline() -> None:
    h = Harness(config(processes=2, timeout=10.0, fetch_timeout=2.0))
    a, b = h.started(2)
    h.sup.signal(signal.SIGTERM)
    assert h.notifier.keys()[-1] == "STOPPING=1"
    assert h.kills() == [("kill", a, "SIGTERM"), ("kill", b, "SIGTERM")]
    assert h.titles[-1].endswith(" stopping")
    h.advance(3.0)
    h.sup.exited(a, exit_status(0))
    h.reap_recoveries()
    h.advance(11.0)
    assert h.kills()[-1] == ("kill", b, "SIGTERM")  # 14 s: still within timeout + grace (10 + 2 + 3)
    assert any(m.startswith("EXTEND_TIMEOUT_USEC=") for m in h.notifier.sent)  # systemd, wait for us
    h.advance(1.1)
    assert h.kills()[-1] == ("kill", b, "SIGKILL")
    h.sup.exited(b, signal_status(signal.SIGKILL))
    assert h.recoveries() == [(f"host:{a}:abc",), (f"host:{b}:abc",)]
    assert not h.sup.done  # until b's jobs are back
    h.reap_recoveries()
    assert h.sup.done and h.sup.stop_code == 0
    assert len(h.spawns()) == 2


def test_second_term_hurries_the_workers() -> None:
    h = Harness(config(processes=1, timeout=60.0))
    (pid,) = h.started(1)
    h.sup.signal(signal.SIGINT)
    h.advance(1.0)
    h.sup.signal(signal.SIGTERM)
    assert h.kills() == [("kill", pid, "SIGTERM"), ("kill", pid, "SIGTERM")]
    h.advance(10.0)  # no longer waits for the 60 s timeout
    assert h.kills()[-1] == ("kill", pid, "SIGKILL")


def test_tstp_quiets_every_worker_including_later_ones() -> None:
    h = Harness(config(processes=2))
    a, b = h.started(2)
    h.sup.signal(signal.SIGTSTP)
    assert h.kills() == [("kill", a, "SIGTSTP"), ("kill", b, "SIGTSTP")]
    assert h.titles[-1].endswith("] stopping")
    h.sup.exited(a, exit_status(1))
    h.advance(0.5)
    new = h.pids()[0]
    h.boot(new)
    assert h.kills()[-1] == ("kill", new, "SIGTSTP")


def test_usr1_reopens_own_logs_and_forwards_ttin_and_usr1() -> None:
    reopened = []
    h = Harness(config(processes=1))
    h.sup._reopen_logs = lambda: reopened.append(1)
    (pid,) = h.started(1)
    h.sup.signal(signal.SIGUSR1)
    h.sup.signal(signal.SIGTTIN)
    assert reopened == [1]
    assert h.kills() == [("kill", pid, "SIGUSR1"), ("kill", pid, "SIGTTIN")]


def test_recovery_runs_in_one_child_at_a_time_for_every_identity_pending() -> None:
    h = Harness(config(processes=3))
    a, b, c = h.started(3)
    h.sup.exited(a, signal_status(signal.SIGKILL))
    h.sup.exited(b, signal_status(signal.SIGKILL))  # while a's recovery child runs
    h.advance(1.0)
    assert h.recoveries() == [(f"host:{a}:abc",)]
    h.reap_recoveries()  # then the next child takes what is pending
    assert h.recoveries() == [(f"host:{a}:abc",), (f"host:{b}:abc",)]
    h.sup.exited(c, signal_status(signal.SIGKILL))
    h.reap_recoveries(code=1)  # gave up (Redis away): logged; the workers recover b's list later
    assert h.recoveries()[-1] == (f"host:{c}:abc",)
    h.reap_recoveries()
    assert len(h.recoveries()) == 3
    h.advance(5.0)
    assert len(h.recoveries()) == 3  # a child that gave up is not started again


def test_the_loop_keeps_ticking_while_a_recovery_child_waits_for_redis() -> None:
    # The supervisor never waits on the network: while the child retries, pings and STATUS go on.
    h = Harness(config(processes=2), env={"WATCHDOG_USEC": "1000000"})
    a, _ = h.started(2)
    h.sup.exited(a, signal_status(signal.SIGKILL))
    before = len(h.notifier.has("WATCHDOG=1"))
    h.advance(10.0, step=0.1)
    assert len(h.notifier.has("WATCHDOG=1")) - before >= 19
    assert h.notifier.has("STATUS=1 of 2 up, 0 of 10 busy")
    assert h.recoverers  # the child still retries: the loop never waited for it


def test_a_failed_fork_of_the_recovery_child_is_retried_with_backoff_then_left_to_the_workers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(config(processes=1))
    (pid,) = h.started(1)
    h.fork_fails = 2
    h.sup.exited(pid, signal_status(signal.SIGKILL))
    h.advance(3.0)
    assert h.recoveries() == [(f"host:{pid}:abc",)]
    h.reap_recoveries()
    other = Harness(config(processes=1))
    (pid,) = other.started(1)
    other.fork_fails = 1000
    other.sup.exited(pid, signal_status(signal.SIGKILL))
    other.advance(60.0, step=0.5)
    assert other.recoveries() == []
    assert any("cannot start the recovery" in r.getMessage() for r in caplog.records)
    assert other.sup._to_recover == []


def test_stop_waits_for_the_recovery_child_then_kills_it_after_a_grace() -> None:
    h = Harness(config(processes=1, timeout=1.0, fetch_timeout=0.5))
    (pid,) = h.started(1)
    h.sup.exited(pid, signal_status(signal.SIGKILL))
    (recoverer,) = h.recoverers
    h.advance(0.2)
    h.sup.signal(signal.SIGTERM)
    new = h.pids()[0]
    if new:
        h.sup.exited(new, exit_status(0))
    h.advance(RECOVERY_STOP_GRACE_S - 1.0)
    assert not h.sup.done and ("kill", recoverer, "SIGKILL") not in h.events
    h.advance(1.5)
    assert ("kill", recoverer, "SIGKILL") in h.events
    h.reap_recoveries(code=-9)
    h.reap_recoveries()
    assert h.sup.done


def test_watchdog_pings_every_half_interval_only_when_it_is_ours() -> None:
    h = Harness(config(processes=1), env={"WATCHDOG_USEC": "2000000"})
    h.started(1)
    before = len(h.notifier.has("WATCHDOG=1"))
    h.advance(3.2)
    assert len(h.notifier.has("WATCHDOG=1")) - before == 3
    other = Harness(config(processes=1), env={"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    other.started(1)
    other.advance(3.0)
    assert other.notifier.has("WATCHDOG=1") == []


def test_spawn_failure_is_retried_with_backoff() -> None:
    h = Harness(config(processes=1))
    calls = []

    def failing(
        index: int,
        config: Config,
        *,
        quarantine: bool = False,
        reason: str | None = None,
        periodic: bool = False,
    ) -> tuple[int, str]:
        calls.append(h.now)
        if len(calls) < 3:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return h.spawn(index, config, quarantine=quarantine, reason=reason, periodic=periodic)

    h.sup._spawn_fn = failing
    h.sup.start()
    h.advance(1.0)
    assert len(calls) == 3 and h.pids()[0] != 0


def test_unknown_children_are_ignored() -> None:
    h = Harness(config(processes=1))
    h.started(1)
    h.sup.exited(4242, exit_status(0))
    h.sup.message(4242, "booted")
    assert [e for e in h.events if e[0] == "recover"] == []


def test_loop_stall_is_not_held_against_the_workers() -> None:
    h = Harness(config(processes=1, heartbeat_timeout=5.0))
    h.started(1)
    h.now += 30.0  # the supervisor itself was stopped (SIGSTOP) for 30 s
    h.sup.tick()
    h.advance(2.0, beat=False)
    assert h.kills() == []


def test_describe_exit() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-9) == "was killed by SIGKILL"


# -- the quarantine worker --------------------------------------------------------------------------------


def quarantine_spawns(h: Harness) -> list[int]:
    return [e[1] for e in h.events if e[0] == "spawn-quarantine"]


def test_a_quarantine_worker_starts_on_demand_once_and_is_not_counted_as_up() -> None:
    h = Harness(config(processes=2))
    h.sup.start()
    a, b = h.pids()
    h.sup.message(a, "booted")
    h.sup.message(a, "quarantine")  # a's poll found suspects: needed now, even before READY
    h.sup.message(b, "quarantine")
    (q,) = quarantine_spawns(h)
    assert h.sup.children[q].identity.endswith(":quarantine-abc")
    h.sup.message(q, "booted")
    h.sup.message(q, "beat 1")
    h.sup.tick()
    assert h.notifier.has("READY=1") == []  # b has not booted: the quarantine worker does not count
    h.boot(b)
    assert len(h.notifier.has("READY=1")) == 1
    assert h.sup.status_text() == "2 of 2 up, 0 of 10 busy"
    h.sup.message(a, "quarantine")
    h.advance(2.0)
    assert quarantine_spawns(h) == [q]  # one at a time


def test_a_quarantine_worker_that_exits_clean_is_not_replaced_and_one_that_crashes_backs_off() -> None:
    h = Harness(config(processes=1, crash_limit=1))
    (a,) = h.started(1)
    h.sup.message(a, "quarantine")
    (q,) = quarantine_spawns(h)
    h.boot(q)
    h.sup.exited(q, exit_status(0))  # its list stayed empty
    assert h.recoveries() == [(f"host:{q}:quarantine-abc",)]
    h.reap_recoveries()
    h.advance(5.0)
    assert quarantine_spawns(h) == [q]
    h.sup.message(a, "quarantine")  # suspects again
    (_, q2) = quarantine_spawns(h)
    h.boot(q2)
    h.sup.exited(q2, signal_status(signal.SIGKILL))  # its job killed it: counted by the recovery
    h.reap_recoveries()
    h.sup.message(a, "quarantine")
    assert len(quarantine_spawns(h)) == 2  # not before its backoff
    h.advance(0.2)
    assert len(quarantine_spawns(h)) == 3
    assert h.notifier.has("STOPPING=1") == []  # a booted worker's death is no crash loop


def test_a_quarantine_worker_over_the_memory_limit_is_recycled_without_a_replacement() -> None:
    h = Harness(config(processes=1, max_memory_mb=100, memory_check_interval=1.0))
    (a,) = h.started(1)
    h.sup.message(a, "quarantine")
    (q,) = quarantine_spawns(h)
    h.boot(q)
    h.memory = {q: 300 * 1024}
    h.advance(3.5)
    assert [k for k in h.kills() if k[1] == q] == [("kill", q, "SIGUSR2"), ("kill", q, "SIGTERM")]
    assert len(h.spawns()) == 1 and len(quarantine_spawns(h)) == 1


def test_one_worker_claims_periodic_ticks_even_after_it_is_stopped_from_the_web_ui() -> None:
    h = Harness(config(processes=3))
    a, b, c = h.started(3)
    assert h.periodic == [a]  # the first slot's worker, and only it
    h.sup.message(a, "stopped-remotely")
    h.sup.exited(a, exit_status(0))
    h.advance(0.5)
    # Not replaced (as in Sidekiq), but the new first slot's worker is replaced, gently (its jobs
    # finish), by one that claims the ticks: the swarm does not stop enqueuing them.
    new = h.spawns()[-1][2]
    assert h.spawns()[-1][1] == 1 and h.periodic == [a, new]
    assert h.kills() == []
    h.boot(new)
    h.advance(0.5)
    assert h.kills() == [("kill", b, "SIGTERM")]
    h.sup.exited(b, exit_status(0))
    h.advance(1.0)
    assert h.pids() == [new, c] and h.periodic == [a, new]  # nothing else is replaced


def test_a_worker_asking_to_be_recycled_is_replaced_then_gets_usr2_before_term() -> None:
    h = Harness(config(processes=1))
    (a,) = h.started(1)
    h.sup.message(a, "recycle")
    h.advance(0.5)
    new = h.spawns()[-1][2]
    assert new != a and h.kills() == []
    h.boot(new)
    assert h.kills() == [("kill", a, "SIGUSR2"), ("kill", a, "SIGTERM")]


def test_reload_and_stop_retire_the_quarantine_worker() -> None:
    h = Harness(config(processes=1), reload=lambda: config(processes=1, concurrency=3))
    (a,) = h.started(1)
    h.sup.message(a, "quarantine")
    (q,) = quarantine_spawns(h)
    h.boot(q)
    h.sup.signal(signal.SIGHUP)
    assert ("kill", q, "SIGTERM") in h.kills() and ("kill", q, "SIGUSR2") not in h.kills()
    h.sup.exited(q, exit_status(0))
    h.reap_recoveries()
    h.sup.message(a, "quarantine")
    (_, q2) = quarantine_spawns(h)
    h.boot(q2)
    h.sup.signal(signal.SIGTERM)
    assert ("kill", q2, "SIGTERM") in h.kills()
    h.sup.message(a, "quarantine")  # no new one while stopping
    assert len(quarantine_spawns(h)) == 2
