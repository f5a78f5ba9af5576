"""sd_notify(3) messages, received on a test-owned datagram socket with the sender's credentials."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import struct
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from swarmd.systemd import Notifier, scrub_child_environment


@dataclass
class Datagram:
    text: str
    pid: int


class NotifyReceiver:
    """What systemd does with $NOTIFY_SOCKET: one datagram per message, sender pid via SCM_CREDENTIALS."""

    def __init__(self, address: str) -> None:
        self.address = address  # the NOTIFY_SOCKET value: a path or "@abstract"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def recv(self, timeout_s: float = 5.0) -> Datagram:
        self.sock.settimeout(timeout_s)
        data, ancdata, _flags, _addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
        pid = -1
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("3i", cdata[:12])
        return Datagram(data.decode("utf-8"), pid)

    def pending(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(65536).decode("utf-8"))
        except BlockingIOError:
            return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[str]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="swd-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest, short_dir: str) -> Iterator[NotifyReceiver]:
    if request.param == "path":
        address = os.path.join(short_dir, "notify")
    else:
        address = f"@swarmd-test-{uuid.uuid4().hex}"
    rx = NotifyReceiver(address)
    yield rx
    rx.close()


@pytest.fixture
def notifier(receiver: NotifyReceiver) -> Iterator[Notifier]:
    n = Notifier({"NOTIFY_SOCKET": receiver.address})
    yield n
    n.close()


def test_ready_with_utf8_status_from_this_pid(receiver: NotifyReceiver, notifier: Notifier) -> None:
    assert notifier.enabled
    notifier.ready("4 of 4 up ✓, 13 of 100 busy")
    got = receiver.recv()
    assert got.text == "READY=1\nSTATUS=4 of 4 up ✓, 13 of 100 busy"
    assert got.pid == os.getpid()


def test_ready_without_status(receiver: NotifyReceiver, notifier: Notifier) -> None:
    notifier.ready()
    assert receiver.recv().text == "READY=1"


def test_status_is_sent_only_when_it_changes(receiver: NotifyReceiver, notifier: Notifier) -> None:
    notifier.status("1 of 4 up")
    notifier.status("1 of 4 up")
    notifier.status("2 of 4 up")
    notifier.status("2 of 4 up")
    assert receiver.recv().text == "STATUS=1 of 4 up"
    assert receiver.recv().text == "STATUS=2 of 4 up"
    notifier.watchdog()  # a marker: nothing else may come before it
    assert receiver.recv().text == "WATCHDOG=1"
    assert receiver.pending() == []


def test_status_after_ready_counts_as_sent(receiver: NotifyReceiver, notifier: Notifier) -> None:
    notifier.ready("4 of 4 up")
    notifier.status("4 of 4 up")
    notifier.stopping("stopping")
    assert receiver.recv().text == "READY=1\nSTATUS=4 of 4 up"
    assert receiver.recv().text == "STOPPING=1\nSTATUS=stopping"
    assert receiver.pending() == []


def test_status_is_one_line(receiver: NotifyReceiver, notifier: Notifier) -> None:
    notifier.status("boot failed:\nImportError")
    assert receiver.recv().text == "STATUS=boot failed: ImportError"


def test_reloading_carries_monotonic_usec(receiver: NotifyReceiver, notifier: Notifier) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = receiver.recv().text.split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_stopping_watchdog_and_extend_timeout(receiver: NotifyReceiver, notifier: Notifier) -> None:
    notifier.stopping()
    notifier.watchdog()
    notifier.extend_timeout(2.5)
    assert [receiver.recv().text for _ in range(3)] == [
        "STOPPING=1",
        "WATCHDOG=1",
        "EXTEND_TIMEOUT_USEC=2500000",
    ]


def test_a_receiver_recreated_at_the_same_path_still_gets_messages(short_dir: str) -> None:
    # sdnotify connects once and then loses everything silently after the socket is re-created.
    address = os.path.join(short_dir, "notify")
    first = NotifyReceiver(address)
    n = Notifier({"NOTIFY_SOCKET": address})
    try:
        n.watchdog()
        assert first.recv().text == "WATCHDOG=1"
        first.close()
        os.unlink(address)
        second = NotifyReceiver(address)
        try:
            n.watchdog()
            assert second.recv().text == "WATCHDOG=1"
        finally:
            second.close()
    finally:
        n.close()


def test_a_forked_copy_stays_silent(
    receiver: NotifyReceiver, notifier: Notifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker inherits the supervisor's Notifier through fork; simulated by a different getpid().
    monkeypatch.setattr(os, "getpid", lambda: 1)
    notifier.ready("worker must not say this")
    notifier.watchdog()
    monkeypatch.undo()
    notifier.stopping()
    assert receiver.recv().text == "STOPPING=1"
    assert receiver.pending() == []


def test_no_notify_socket_is_a_no_op() -> None:
    n = Notifier({})
    assert not n.enabled
    n.ready("x")
    n.reloading()
    n.status("y")
    n.watchdog()
    n.extend_timeout(10)
    n.stopping()
    assert n.watchdog_interval() is None
    assert n.send("READY=1") is False


@pytest.mark.parametrize("address", ["vsock:2:1234", "relative/path", "@"])
def test_unsupported_notify_socket_is_a_no_op(address: str) -> None:
    n = Notifier({"NOTIFY_SOCKET": address})
    assert not n.enabled
    n.ready()


def test_send_failure_never_raises_and_logs_at_debug(
    short_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    missing = os.path.join(short_dir, "gone")
    n = Notifier({"NOTIFY_SOCKET": missing})
    try:
        assert n.enabled
        with caplog.at_level(logging.DEBUG, logger="swarmd.systemd"):
            n.ready("x")
            n.watchdog()
            assert n.send("READY=1") is False
        records = [r for r in caplog.records if r.name == "swarmd.systemd"]
        assert records
        assert all(r.levelno == logging.DEBUG for r in records)
        assert missing in records[0].getMessage()
    finally:
        n.close()


def test_status_unsent_is_retried(short_dir: str) -> None:
    # A STATUS that could not be sent is not remembered as sent.
    address = os.path.join(short_dir, "notify")
    n = Notifier({"NOTIFY_SOCKET": address})
    try:
        n.status("4 of 4 up")  # nobody listening yet
        rx = NotifyReceiver(address)
        try:
            n.status("4 of 4 up")
            assert rx.recv().text == "STATUS=4 of 4 up"
        finally:
            rx.close()
    finally:
        n.close()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<self>"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<other>"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(extra: dict[str, str], expected: float | None) -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify"}
    for key, value in extra.items():
        env[key] = {"<self>": str(os.getpid()), "<other>": str(os.getpid() + 1)}.get(value, value)
    n = Notifier(env)
    assert n.watchdog_interval() == expected


def test_watchdog_interval_needs_a_notify_socket() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() is None


def test_reads_os_environ_by_default(receiver: NotifyReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
    n = Notifier()
    try:
        n.ready()
        assert receiver.recv().text == "READY=1"
    finally:
        n.close()


def test_scrub_child_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("REDIS_URL", "redis://localhost")
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")  # the inherited stderr still is the journal
    scrub_child_environment()
    for name in (
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ):
        assert name not in os.environ
    assert os.environ["REDIS_URL"] == "redis://localhost"
    assert os.environ["JOURNAL_STREAM"] == "8:1234"
    scrub_child_environment()  # idempotent
