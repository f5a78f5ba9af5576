"""Log line shape, journal priority prefixes, logfile with reopen, syslog datagrams and fallback."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmd import logs
from swarmd.errors import ConfigError
from swarmd.logs import (
    LineFormatter,
    after_fork_in_child,
    job_extra,
    reopen_logs,
    reset_logging,
    setup_logging,
)
from swarmd.syslogsink import MAX_DATAGRAM, SyslogTarget

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"

log = logging.getLogger("swarmd.test")
job_log = logging.getLogger("swarmd.job")


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    # Leave the "swarmd" logger as we found it (propagating, no handlers) for everyone else's caplog.
    reset_logging()
    yield
    reset_logging()


def sidekiq_tid() -> str:
    n = threading.get_ident() ^ os.getpid()
    digits = ""
    while True:
        n, d = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + digits
        if not n:
            return digits


# -- line shape ------------------------------------------------------------------------------------------


def test_job_line_has_sidekiqs_shape() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    job_log.info("done: %.3f sec", 0.004, extra=job_extra("resize", "ab12cd"))
    line = out.getvalue()
    pattern = (
        rf"{STAMP} pid={os.getpid()} tid={sidekiq_tid()} class=resize jid=ab12cd INFO: done: 0.004 sec\n"
    )
    assert re.fullmatch(pattern, line), line


def test_plain_line_has_no_job_context() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    log.warning("worker %d exited: %s", 2, "SIGKILL")
    assert re.fullmatch(rf"{STAMP} pid=\d+ tid=[0-9a-z]+ WARNING: worker 2 exited: SIGKILL\n", out.getvalue())


def test_timestamp_is_utc_with_milliseconds() -> None:
    formatter = LineFormatter()
    record = logging.makeLogRecord({"msg": "x", "levelname": "INFO", "levelno": logging.INFO})
    record.created = 1795884600.1239  # 2026-11-28T16:50:00.123Z
    record.msecs = 123.9
    assert formatter.format(record).startswith("2026-11-28T16:50:00.123Z ")
    record.created += 1.0  # the per-second cache moves on
    assert formatter.format(record).startswith("2026-11-28T16:50:01.123Z ")


def test_level_is_info_unless_verbose() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    job_log.debug("start", extra=job_extra("resize", "ab12cd"))
    assert out.getvalue() == ""
    setup_logging(stream=out, env={}, verbose=True)
    job_log.debug("start", extra=job_extra("resize", "ab12cd"))
    assert "class=resize jid=ab12cd DEBUG: start" in out.getvalue()


def test_setup_again_replaces_handlers() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging(stream=first, env={})
    setup_logging(stream=second, env={})
    log.info("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1
    assert len(logging.getLogger("swarmd").handlers) == 1


def test_lines_do_not_reach_the_root_logger(caplog: pytest.LogCaptureFixture) -> None:
    setup_logging(stream=io.StringIO(), env={})
    log.info("not twice")
    assert "not twice" not in caplog.text


def test_reset_gives_the_logger_back() -> None:
    setup_logging(stream=io.StringIO(), env={})
    reset_logging()
    swarmd_logger = logging.getLogger("swarmd")
    assert swarmd_logger.handlers == []
    assert swarmd_logger.propagate
    assert swarmd_logger.level == logging.NOTSET


def test_exception_traceback_is_appended() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    try:
        raise ValueError("bad payload")
    except ValueError:
        log.exception("fail")
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("ERROR: fail")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: bad payload"


def test_default_stream_is_stderr_at_the_time(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(env={})
    log.info("to stderr")
    captured = capsys.readouterr()
    assert "INFO: to stderr" in captured.err
    assert captured.out == ""


# -- journal ---------------------------------------------------------------------------------------------


def journal_env(path: Path) -> dict[str, str]:
    st = os.stat(path)
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_journal_lines_have_priority_and_no_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with open(path, "w", encoding="utf-8") as stream:
        setup_logging(stream=stream, env=journal_env(path), verbose=True)
        log.debug("d")
        job_log.info("done: 0.004 sec", extra=job_extra("resize", "ab12cd"))
        log.warning("w")
        log.error("e")
        log.critical("c")
        reset_logging()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert re.fullmatch(
        rf"<6>pid={os.getpid()} tid=[0-9a-z]+ class=resize jid=ab12cd INFO: done: 0.004 sec", lines[1]
    )


def test_journal_traceback_lines_all_carry_the_priority(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with open(path, "w", encoding="utf-8") as stream:
        setup_logging(stream=stream, env=journal_env(path))
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            log.exception("job failed")
        reset_logging()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>RuntimeError: boom\\nsecond line"  # a message's newline is escaped


def test_journal_stream_of_another_file_keeps_timestamps(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.touch()
    path = tmp_path / "stderr"
    with open(path, "w", encoding="utf-8") as stream:
        setup_logging(stream=stream, env=journal_env(other))
        log.info("plain")
        reset_logging()
    assert re.match(STAMP, path.read_text(encoding="utf-8"))


# -- logfile ---------------------------------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_logfile_created_0640_with_parents_and_nothing_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log" / "deep" / "swarmd.log"
    out = io.StringIO()
    setup_logging(logfile=str(path), stream=out, env={})
    log.info("hello")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert re.fullmatch(rf"{STAMP} pid=\d+ tid=[0-9a-z]+ INFO: hello\n", path.read_text(encoding="utf-8"))
    assert out.getvalue() == ""
    assert capsys.readouterr().err == ""


def test_logfile_appends(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.log"
    path.write_text("old line\n", encoding="utf-8")
    setup_logging(logfile=str(path), env={})
    log.info("new line")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("old line\n")
    assert text.endswith("INFO: new line\n")


def test_logfile_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("", encoding="utf-8")
    link = tmp_path / "swarmd.log"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="symlink"):
        setup_logging(logfile=str(link), env={})
    assert target.read_text(encoding="utf-8") == ""


def test_logfile_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "swarmd.log").mkdir()
    with pytest.raises(ConfigError, match=r"logfile .*swarmd\.log"):
        setup_logging(logfile=str(tmp_path / "swarmd.log"), env={})


def test_reopen_after_rename_writes_to_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.log"
    setup_logging(logfile=str(path), env={})
    log.info("before rotation")
    os.rename(path, tmp_path / "swarmd.log.1")  # what logrotate does
    log.info("still the old file")
    reopen_logs()
    log.info("after rotation")
    rotated = (tmp_path / "swarmd.log.1").read_text(encoding="utf-8")
    assert "before rotation" in rotated
    assert "still the old file" in rotated
    assert "after rotation" not in rotated
    fresh = path.read_text(encoding="utf-8")
    assert fresh.count("\n") == 1
    assert "after rotation" in fresh


def test_reopen_failure_is_logged_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.log"
    setup_logging(logfile=str(path), env={})
    os.rename(path, tmp_path / "swarmd.log.1")
    (tmp_path / "evil").write_text("", encoding="utf-8")
    path.symlink_to(tmp_path / "evil")
    reopen_logs()
    log.info("after")
    rotated = (tmp_path / "swarmd.log.1").read_text(encoding="utf-8")
    assert "ERROR: cannot reopen logfile" in rotated
    assert "after" in rotated
    assert (tmp_path / "evil").read_text(encoding="utf-8") == ""


def test_reopen_without_logfile_is_a_no_op(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    swarmd_logger = logging.getLogger("swarmd")
    handlers = list(swarmd_logger.handlers)
    log.info("before")
    reopen_logs()  # USR1 with logs on stderr: nothing to reopen, nothing to complain about
    log.info("after")
    assert swarmd_logger.handlers == handlers
    assert [line.rsplit(": ", 1)[1] for line in out.getvalue().splitlines()] == ["before", "after"]
    reset_logging()
    reopen_logs()  # nothing installed at all: still nothing happens
    assert swarmd_logger.handlers == []
    assert out.getvalue().count("\n") == 2
    assert capsys.readouterr().err == ""


# -- batching (as in a worker) -----------------------------------------------------------------------------


class _StuckStream(io.StringIO):
    """A log stream whose first write blocks until the test lets it go (a full pipe, a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go_on = threading.Event()

    def write(self, text: str) -> int:
        if not self.entered.is_set():
            self.entered.set()
            self.go_on.wait()
        return super().write(text)


def test_a_stuck_log_write_does_not_stop_other_threads_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker batches INFO lines; its flusher writes them. While that write is stuck, a processor
    # thread logging a job's "done" line must not wait for it (it did, on the handler lock: every
    # job finishing during a slow write stalled), and no line is lost or reordered.
    monkeypatch.setattr(logs, "_batching", True)  # the worker's mode, without its flusher thread
    monkeypatch.setattr(logs, "_flush_due", threading.Event())
    stream = _StuckStream()
    setup_logging(stream=stream, env={})
    job_log.info("first")
    flusher = threading.Thread(target=logs.flush)
    flusher.start()
    assert stream.entered.wait(30)
    processor = threading.Thread(target=logs.job_event, args=(logging.INFO, "Hard", "j1", "second"))
    processor.start()
    processor.join(30)
    stuck = processor.is_alive()
    stream.go_on.set()
    flusher.join(30)
    processor.join(30)
    assert not stuck, "a thread logging an INFO line waited for another thread's write"
    logs.flush()
    assert [line.rsplit(": ", 1)[1] for line in stream.getvalue().splitlines()] == ["first", "second"]


class _BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise ValueError("I/O operation on closed file")


def test_a_failing_log_write_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(stream=_BrokenStream(), env={})
    log.warning("into the void")  # written at once: the write fails inside the logging call
    job_log.info("and again")
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err
    assert "ValueError: I/O operation on closed file" in err


class _LoggingStream(io.StringIO):
    """A stream that logs what it is given (an app's stream-to-logger shim)."""

    def write(self, text: str) -> int:
        if "from inside" not in text and "from inside" not in self.getvalue():
            log.warning("from inside the write")
        return super().write(text)


def test_a_stream_that_logs_while_it_is_written_does_not_hang() -> None:
    stream = _LoggingStream()
    setup_logging(stream=stream, env={})
    logger = threading.Thread(target=log.warning, args=("outer",))
    logger.start()
    logger.join(30)
    assert not logger.is_alive(), "logging from inside the handler's own write deadlocked"
    logs.flush()
    lines = [line.rsplit(": ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == ["outer", "from inside the write"]  # the inner line goes out with the next batch


# -- syslog ----------------------------------------------------------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="swd-", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def syslog_socket(short_dir: Path) -> Iterator[tuple[str, socket.socket]]:
    address = str(short_dir / "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    yield address, sock
    sock.close()


def test_syslog_datagram_has_priority_ident_and_pid(syslog_socket: tuple[str, socket.socket]) -> None:
    address, sock = syslog_socket
    out = io.StringIO()
    setup_logging(syslog=SyslogTarget(address=address), stream=out, env={})
    job_log.info("done: 0.004 sec ✓", extra=job_extra("resize", "ab12cd"))
    data = sock.recv(65536).decode("utf-8")
    prefix = f"<30>swarmd[{os.getpid()}]: "  # daemon (3) * 8 + info (6)
    assert data.startswith(prefix)
    assert re.fullmatch(
        r"pid=\d+ tid=[0-9a-z]+ class=resize jid=ab12cd INFO: done: 0.004 sec ✓", data[len(prefix) :]
    )
    assert out.getvalue() == ""


def test_syslog_custom_ident_and_facility(syslog_socket: tuple[str, socket.socket]) -> None:
    address, sock = syslog_socket
    setup_logging(syslog=SyslogTarget(ident="myapp", facility="local3", address=address), env={})
    log.warning("careful")
    assert sock.recv(65536).decode().startswith(f"<156>myapp[{os.getpid()}]: ")  # local3 (19) * 8 + 4


def test_syslog_pid_is_the_emitting_process(syslog_socket: tuple[str, socket.socket]) -> None:
    # A forked worker's records carry its own pid (record.process); simulated without forking.
    address, sock = syslog_socket
    setup_logging(syslog=SyslogTarget(address=address), env={})
    record = log.makeRecord(log.name, logging.ERROR, __file__, 1, "from a worker", (), None)
    record.process = 424242
    log.handle(record)
    assert sock.recv(65536).decode().startswith("<27>swarmd[424242]: pid=424242 ")


def test_syslog_traceback_is_one_datagram(syslog_socket: tuple[str, socket.socket]) -> None:
    address, sock = syslog_socket
    setup_logging(syslog=SyslogTarget(address=address), env={})
    try:
        raise KeyError("x")
    except KeyError:
        log.exception("job failed")
    data = sock.recv(65536).decode()
    assert data.startswith(f"<27>swarmd[{os.getpid()}]: ")
    assert "\nTraceback (most recent call last):\n" in data
    assert data.endswith("KeyError: 'x'")


def test_syslog_long_record_is_truncated(syslog_socket: tuple[str, socket.socket]) -> None:
    address, sock = syslog_socket
    setup_logging(syslog=SyslogTarget(address=address), env={})
    log.info("é" * 200_000)
    data = sock.recv(300_000)
    assert len(data) <= MAX_DATAGRAM
    assert data.endswith(b"[truncated]")
    data.decode("utf-8")  # not cut inside a character


def test_syslog_udp(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        setup_logging(syslog=SyslogTarget(address=f"127.0.0.1:{port}"), env={})
        log.info("over udp")
        assert sock.recv(65536).decode().startswith(f"<30>swarmd[{os.getpid()}]: ")
    assert capsys.readouterr().err == ""


def test_after_fork_in_child_gets_a_new_socket(syslog_socket: tuple[str, socket.socket]) -> None:
    address, sock = syslog_socket
    setup_logging(syslog=SyslogTarget(address=address), env={})
    log.info("one")
    after_fork_in_child()
    log.info("two")
    assert sock.recv(65536).decode().endswith("INFO: one")
    assert sock.recv(65536).decode().endswith("INFO: two")


def test_unknown_facility_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="facility"):
        setup_logging(syslog=SyslogTarget(facility="nope"), env={})


def test_missing_syslog_socket_falls_back_to_stderr_once(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = str(short_dir / "no-such-log")
    out = io.StringIO()
    setup_logging(syslog=SyslogTarget(address=address), stream=out, env={})
    log.info("first")
    log.info("second")
    log.error("third")
    lines = out.getvalue().splitlines()
    warnings = [line for line in lines if "WARNING:" in line]
    assert len(warnings) == 1
    assert address in warnings[0]
    assert "No such file or directory" in warnings[0]
    assert lines[0] == warnings[0]
    assert [line.rsplit(": ", 1)[1] for line in lines[1:]] == ["first", "second", "third"]
    assert re.fullmatch(rf"{STAMP} pid=\d+ tid=[0-9a-z]+ INFO: first", lines[1])
    captured = capsys.readouterr()
    for text in (out.getvalue(), captured.err):
        assert "Traceback" not in text
        assert "Logging error" not in text


def test_syslog_fallback_under_the_journal_keeps_priorities(short_dir: Path) -> None:
    path = short_dir / "journal"
    with open(path, "w", encoding="utf-8") as stream:
        setup_logging(
            syslog=SyslogTarget(address=str(short_dir / "gone")), stream=stream, env=journal_env(path)
        )
        log.error("e")
        reset_logging()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("<4>pid=")
    assert lines[1].startswith("<3>pid=")


def test_syslog_socket_that_goes_away_falls_back_once(
    syslog_socket: tuple[str, socket.socket], capsys: pytest.CaptureFixture[str]
) -> None:
    address, sock = syslog_socket
    out = io.StringIO()
    setup_logging(syslog=SyslogTarget(address=address), stream=out, env={})
    log.info("to syslog")
    assert sock.recv(65536).decode().endswith("to syslog")
    sock.close()  # the syslog daemon died; the path stays behind: ECONNREFUSED
    log.info("to stderr")
    log.info("still stderr")
    text = out.getvalue()
    assert text.count("WARNING:") == 1
    assert address in text
    assert "to stderr" in text
    assert "still stderr" in text
    assert "Traceback" not in text + capsys.readouterr().err
