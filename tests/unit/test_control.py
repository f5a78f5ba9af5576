"""The control-pipe lines between workers and the supervisor, and signal dispatch to handle_<name>."""

from __future__ import annotations

import logging
import signal

import pytest

from swarmd import control
from swarmd.config import Config
from swarmd.supervisor import HANDLED, Supervisor
from swarmd.worker import HANDLED_SIGNALS, Worker
from tests.unit.test_supervisor import Harness, config


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (control.BOOTED, b"booted\n"),
        (control.STOPPED_REMOTELY, b"stopped-remotely\n"),
        (control.QUARANTINE, b"quarantine\n"),
        (control.RECYCLE, b"recycle\n"),
        (control.beat(0), b"beat 0\n"),
        (control.beat(250), b"beat 250\n"),
    ],
)
def test_every_message_round_trips(message: control.Message, line: bytes) -> None:
    assert message.encode() == line
    assert control.decode(line.decode().rstrip("\n")) == message


@pytest.mark.parametrize(
    "line",
    ["", "boot", "booted ", "BOOTED", "beat", "beat ", "beat x", "beat -1", "beat 1.5", "beat 3 4",
     "beat +3", "beat \uff13", "beat 12345678901234567890", "stopped", "\x00", "booted\r"],
)  # fmt: skip
def test_garbage_lines_decode_to_nothing(line: str) -> None:
    assert control.decode(line) is None


def test_supervisor_ignores_a_garbage_line_and_logs_it_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="swarmd")
    h = Harness(config(processes=1))
    (pid,) = h.started(1)
    h.sup.message(pid, "beat 3")
    h.sup.message(pid, "beat lots")
    h.sup.message(pid, "\x1b[2Jhello")
    assert h.sup.children[pid].busy == 3
    garbage = [r for r in caplog.records if "unknown line" in r.getMessage()]
    assert [r.levelno for r in garbage] == [logging.DEBUG, logging.DEBUG]
    assert "'beat lots'" in garbage[0].getMessage()


def test_the_supervisor_reads_what_a_worker_writes() -> None:
    h = Harness(config(processes=1))
    h.sup.start()
    (pid,) = h.pids()
    for message in (control.BOOTED, control.beat(4), control.STOPPED_REMOTELY):
        for line in message.encode().decode().splitlines():
            h.sup.message(pid, line)
    child = h.sup.children[pid]
    assert child.booted_at is not None
    assert child.busy == 4
    assert child.stopped_remotely


# -- signals --------------------------------------------------------------------------------------------


def test_handlers_are_found_by_signal_name() -> None:
    class Target:
        def handle_term(self) -> str:
            return "term"

        handle_hup = "not callable"

    target = Target()
    handler = control.signal_handler(target, signal.SIGTERM)
    assert handler is not None and handler() == "term"
    assert control.signal_handler(target, signal.SIGHUP) is None
    assert control.signal_handler(target, signal.SIGUSR2) is None
    assert control.signal_handler(target, 250) is None  # no such signal at all
    assert control.handled_signals(Target) == (signal.SIGTERM,)


def test_installed_signals_are_the_documented_ones() -> None:
    # README's signal table, plus CHLD, which only wakes the supervisor's loop to reap.
    assert set(HANDLED) == {
        signal.SIGTERM, signal.SIGINT, signal.SIGTSTP, signal.SIGHUP, signal.SIGUSR1, signal.SIGTTIN,
        signal.SIGCHLD,
    }  # fmt: skip
    # Workers leave HUP to the supervisor (a reload replaces them); USR2 is the supervisor's "you
    # are being recycled" before a TERM.
    assert set(HANDLED_SIGNALS) == {
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGTSTP,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGTTIN,
    }


def test_supervisor_logs_an_unhandled_signal_and_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(config(processes=1))
    h.started(1)
    h.sup.signal(signal.SIGUSR2)
    h.sup.signal(250)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "got signal USR2, which the supervisor does not handle: ignored",
        "got signal 250, which the supervisor does not handle: ignored",
    ]
    assert h.kills() == []
    assert not h.sup.done


def test_supervisor_dispatches_to_handle_methods() -> None:
    calls: list[tuple[str, float]] = []

    class Recording(Supervisor):
        def handle_hup(self, now: float) -> None:
            calls.append(("hup", now))

    h = Harness(config(processes=1))
    sup = Recording(
        h.sup.config,
        spawn=h.spawn,
        kill=h.kill,
        recover=h.recover,
        notifier=h.notifier,
        clock=lambda: 42.0,
    )
    sup.signal(signal.SIGHUP)
    assert calls == [("hup", 42.0)]


def test_worker_stops_on_term_at_once_on_a_second_and_logs_an_unhandled_signal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker(Config(path=None, environment="test", timeout=30.0))  # not started: no Redis needed
    worker._dispatch_signals(bytes([signal.SIGWINCH]))
    assert worker._stop_at is None
    assert "got signal WINCH, which a worker does not handle: ignored" in caplog.text
    worker._dispatch_signals(bytes([signal.SIGTERM]))
    first = worker._stop_at
    assert first is not None
    worker._dispatch_signals(bytes([signal.SIGINT]))
    assert worker._stop_at is not None and worker._stop_at < first  # the second one: no waiting
