"""The syslog transport: the one address reader that the config check and the handler share, Linux
abstract sockets (``@name``), truncation. Datagram shape and fallback are in test_logs.py."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmd.config import SyslogConfig, load_config
from swarmd.errors import ConfigError
from swarmd.logs import reset_logging, setup_logging
from swarmd.syslogsink import InvalidTarget, SyslogTarget, parse_address, truncate

log = logging.getLogger("swarmd.test")


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    reset_logging()
    yield
    reset_logging()


VALID = [
    ("/dev/log", (socket.AF_UNIX, "/dev/log")),
    ("run/log.sock", (socket.AF_UNIX, "run/log.sock")),  # relative: a path all the same
    ("@swarmd-log", (socket.AF_UNIX, "\0swarmd-log")),  # Linux abstract namespace
    ("@with/slash:514", (socket.AF_UNIX, "\0with/slash:514")),
    ("logs.internal:514", (socket.AF_INET, ("logs.internal", 514))),
    ("127.0.0.1:65535", (socket.AF_INET, ("127.0.0.1", 65535))),
    ("[::1]:514", (socket.AF_INET6, ("::1", 514))),
    ("::1:514", (socket.AF_INET6, ("::1", 514))),
]
INVALID = ["", "@", "loghost", "loghost:", ":514", "loghost:0", "loghost:65536", "loghost:syslog"]


@pytest.mark.parametrize(("address", "expected"), VALID)
def test_valid_addresses(address: str, expected: object) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", INVALID)
def test_invalid_addresses(address: str) -> None:
    with pytest.raises(InvalidTarget) as info:
        parse_address(address)
    assert str(info.value) == f"syslog.address: expected a socket path or host:port, got {address!r}"


@pytest.mark.parametrize("address", [a for a, _ in VALID] + INVALID)
def test_config_and_handler_agree_on_every_address(tmp_path: Path, address: str) -> None:
    path = tmp_path / "swarmd.yml"
    path.write_text(f"syslog: {{address: {address!r}}}\n")
    try:
        parse_address(address)
        handler_ok = True
    except InvalidTarget:
        handler_ok = False
    try:
        config = load_config(str(path), "test", env={}, cwd=str(tmp_path))
        assert config.syslog == SyslogConfig(address=address)
        config_ok = True
    except ConfigError as exc:
        assert str(exc) == f"{path}: syslog.address: expected a socket path or host:port, got {address!r}"
        config_ok = False
    assert config_ok == handler_ok


def test_abstract_socket_from_the_config_receives_the_lines(tmp_path: Path) -> None:
    name = f"swarmd-test-{os.getpid()}-{os.urandom(4).hex()}"
    (tmp_path / "swarmd.yml").write_text(f"syslog: {{ident: shop, address: '@{name}'}}\n")
    config = load_config(str(tmp_path / "swarmd.yml"), "test", env={}, cwd=str(tmp_path))
    assert config.syslog is not None
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        out = io.StringIO()
        target = SyslogTarget(config.syslog.ident, config.syslog.facility, config.syslog.address)
        setup_logging(syslog=target, stream=out, env={})
        log.info("to an abstract socket")
        data = sock.recv(65536).decode()
    assert data.startswith(f"<30>shop[{os.getpid()}]: ")
    assert data.endswith("INFO: to an abstract socket")
    assert out.getvalue() == ""  # no fallback to stderr


def test_an_invalid_address_given_to_logging_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        setup_logging(syslog=SyslogTarget(address="loghost"), env={})
    assert str(info.value) == "syslog.address: expected a socket path or host:port, got 'loghost'"


def test_truncate_keeps_short_data_and_marks_cut_data() -> None:
    assert truncate(b"short", 100) == b"short"
    cut = truncate("é".encode() * 100, 50)
    assert len(cut) <= 50
    assert cut.endswith(b"... [truncated]")
    cut.decode("utf-8")  # not cut inside a character


def test_a_receiver_that_stops_reading_costs_log_lines_not_a_stuck_logger(tmp_path: Path) -> None:
    # journald or rsyslog stalled: its socket buffer fills. A blocking sendto would hold the logging
    # lock, and every job thread that logs, until it read again; instead lines are dropped and counted.
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        out = io.StringIO()
        setup_logging(syslog=SyslogTarget(ident="shop", address=path), stream=out, env={})
        total = 2_000  # far more than the buffer holds (the kernel's datagram queue is short, too)
        done = threading.Event()

        def flood() -> None:
            for i in range(total):
                log.warning("line %d", i)
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        assert done.wait(60), "logging blocked on a full syslog socket"
        sock.setblocking(False)
        received = []
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(sock.recv(65536).decode())
        assert 0 < len(received) < total
        log.warning("after the reader woke up")
        sock.settimeout(5)
        notice, after = sock.recv(65536).decode(), sock.recv(65536).decode()
    dropped = total - len(received)
    assert notice.startswith("<28>shop[")
    assert notice.endswith(f"WARNING: syslog at {path} was full: {dropped} log lines dropped")
    assert after.endswith("WARNING: after the reader woke up")
    assert out.getvalue() == ""  # a full socket is not a failure: no fallback to stderr
