"""Log lines for the supervisor and workers: stderr, the journal, a file, or syslog.

Everything swarmd logs goes through the logger named "swarmd" (job lines through "swarmd.job"), which
`setup_logging()` configures; the "swarmd" logger stops propagating to the root logger, so an
application's own logging config never prints swarmd's lines twice. In the daemon (``app_logs``) the
same handlers also go on the root logger, so the app's records come out the same way, and in a worker
`capture_output()` turns ``print()`` into log lines; a line logged inside a job gets the job's
``class=``/``jid=`` from `swarmd.context`. ``log_format: json`` swaps `LineFormatter` for `JsonFormatter`
everywhere, the per-job fast path (`job_event`) included.

Line shape (Sidekiq's)::

    2026-11-28T16:50:00.123Z pid=1234 tid=k1 class=resize jid=ab12cd INFO: done: 0.004 sec

`class=`/`jid=` appear when the record carries them: ``log.info("done", extra=job_extra(name, jid))``.

Payload text never forges a line: control characters (C0 including newline, CR and ESC, DEL, C1,
U+2028/2029 and the bidi overrides) are written as escapes (``\n``, ``\x1b``) in ``class=``, ``jid=``,
every ``%`` argument of a message (a job's error message, an identity read from Redis) and the message
line of a logged exception, including its causes and notes. The format string, traceback frames and
`Verbatim` arguments (swarmd's own multi-line text, such as TTIN's stacks) are written as they are.

Where lines go (one destination, as Sidekiq 5's ``-L``; a file or syslog is not *also* copied to stderr):

- default: stderr. When stderr is the journal (``$JOURNAL_STREAM`` is the dev:ino of the stream) the
  timestamp is dropped (journald stamps every line) and **every** line, including each line of a
  traceback, starts with a ``<N>`` syslog priority, so ``journalctl -p err`` shows whole tracebacks.
  journald splits a stream at newlines, so a multi-line record cannot stay one journal entry.
- ``logfile``: appended, created 0640 (less if the umask says so) without following a symlink, parent
  folders created; `reopen_logs()` (USR1, logrotate's postrotate) reopens it by path.
- ``syslog``: one RFC 3164-style datagram per record, ``<PRI>ident[pid]: line`` without timestamp, by
  `swarmd.syslogsink` (the transport: addresses, truncation, the fallback to stderr for good, announced
  by exactly one WARNING line).
- ``logfile`` and ``syslog`` together: both.

Forked workers inherit the handlers: the logfile is opened O_APPEND, so processes sharing it never
overwrite each other; a worker calls `after_fork_in_child()` to get its own syslog socket.

Passwords in Redis URLs are redacted by `swarmd.config.redact_url` before they are logged.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import numbers
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, TextIO

from swarmd.context import running
from swarmd.errors import ConfigError
from swarmd.syslogsink import InvalidTarget, SyslogHandler, SyslogTarget
from swarmd.syslogsink import severity as _priority  # the journal's <N> prefixes are syslog severities

__all__ = [
    "JsonFormatter",
    "LineFormatter",
    "SyslogTarget",
    "Verbatim",
    "after_fork_in_child",
    "capture_output",
    "escape",
    "flush",
    "job_event",
    "job_extra",
    "reclaim_loggers",
    "release_output",
    "reopen_logs",
    "reset_logging",
    "set_level",
    "setup_logging",
    "start_batching",
]

LogFormat = Literal["text", "json"]

LOGGER_NAME = "swarmd"

log = logging.getLogger("swarmd.logs")


def job_extra(job_class: str, jid: str) -> dict[str, str]:
    """The ``extra=`` of a job's log line, shown as ``class=... jid=...``."""
    return {"job_class": job_class, "jid": jid}


# -- formatting -----------------------------------------------------------------------------------------

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, digit = divmod(n, 36)
        out = _B36[digit] + out
        if not n:
            return out


_tids: dict[tuple[int, int], str] = {}


def _tid(thread: int | None, pid: int | None) -> str:
    """Sidekiq's short thread id: (thread id XOR pid) in base 36."""
    key = (thread or 0, pid or 0)
    tid = _tids.get(key)
    if tid is None:
        if len(_tids) > 4096:  # threads come and go over a long life: bound the cache
            _tids.clear()
        tid = _tids[key] = _base36(key[0] ^ key[1])
    return tid


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match[0]
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape(text: str) -> str:
    """`text` with control characters written as escapes (``\\n``, ``\\x1b``), for text from a payload:
    it can then neither start a log line of its own nor move a terminal's cursor."""
    if text.isprintable():  # the common case, in C: nothing to escape
        return text
    return _CONTROL.sub(_escape_char, text)


class Verbatim(str):
    """A log argument written as it is, newlines included: swarmd's own multi-line text (a stack)."""


class _Escaped:
    """A log argument whose ``%s``/``%r`` text is escaped."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return escape(str(self.value))

    def __repr__(self) -> str:
        return escape(repr(self.value))


def _arg(value: object) -> object:
    if isinstance(value, numbers.Number | Verbatim):  # numbers keep %d and %.3f working
        return value
    return _Escaped(value)


def _message(record: logging.LogRecord) -> str:
    """`record.getMessage()` with every argument escaped (the format string is swarmd's own)."""
    msg = record.msg if isinstance(record.msg, str) else escape(str(record.msg))
    args = record.args
    if not args:
        return msg
    if isinstance(args, Mapping):
        return msg % {key: _arg(value) for key, value in args.items()}
    return msg % tuple(_arg(value) for value in args)


def _escape_exception(te: traceback.TracebackException, seen: set[int]) -> None:
    """Escape the message lines of an exception, its causes, contexts, group members and notes."""
    if id(te) in seen:
        return
    seen.add(id(te))
    text = getattr(te, "_str", None)  # the exception's str(), as format_exception_only writes it
    if isinstance(text, str):
        te._str = escape(text)  # type: ignore[attr-defined]
    notes = getattr(te, "__notes__", None)
    if isinstance(notes, list):
        te.__notes__ = [escape(note) if isinstance(note, str) else note for note in notes]
    if isinstance(getattr(te, "msg", None), str):  # SyntaxError's message
        te.msg = escape(te.msg)
    for other in (te.__cause__, te.__context__, *(getattr(te, "exceptions", None) or ())):
        if isinstance(other, traceback.TracebackException):
            _escape_exception(other, seen)


class LineFormatter(logging.Formatter):
    """Formats a record as one Sidekiq-shaped line (plus traceback lines); cheap enough for ~10k lines/s.

    The date part of the timestamp is rendered once per second and cached; no `formatTime`/`strftime`
    per record.
    """

    def __init__(self, *, timestamps: bool = True, priority_prefix: bool = False) -> None:
        super().__init__()
        self.timestamps = timestamps
        self.priority_prefix = priority_prefix
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        text = _message(record)
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        elif record.exc_text:  # a record built elsewhere (a multiprocessing queue): no exception to read
            text = f"{text}\n{escape(record.exc_text)}"
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}"
        job_class, jid = _job_of(record)
        return self.format_fields(
            record.created,
            record.levelno,
            record.levelname,
            record.process,
            record.thread,
            job_class,
            jid,
            text,
        )

    def formatException(
        self, ei: tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
    ) -> str:
        """The traceback as `logging` writes it, with the exception messages escaped (they are where
        payload text ends up: ``ValueError(f"bad {arg}")``). Formatted per handler, never cached on the
        record: the cached text of another formatter could hold a payload's newline."""
        if ei[1] is None:
            return super().formatException(ei)
        te = traceback.TracebackException(type(ei[1]), ei[1], ei[2], compact=True)
        _escape_exception(te, set())
        return "".join(te.format()).rstrip("\n")

    def format_fields(
        self,
        created: float,
        levelno: int,
        levelname: str,
        process: int | None,
        thread: int | None,
        job_class: str | None,
        jid: str | None,
        text: str,
    ) -> str:
        context = ""
        if job_class is not None:  # both come from the payload
            context = f" class={escape(str(job_class))}"
        if jid is not None:
            context = f"{context} jid={escape(str(jid))}"
        tid = _tid(thread, process)
        line = f"pid={process} tid={tid}{context} {levelname}: {text}"
        if self.timestamps:
            line = f"{self._stamp(created)} {line}"
        if self.priority_prefix:
            prefix = f"<{_priority(levelno)}>"
            if "\n" in line:
                return "\n".join(prefix + part for part in line.split("\n"))
            return prefix + line
        return line

    def _stamp(self, created: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:  # a tuple swap: threads racing here both compute the same value
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"


def _job_of(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """The record's ``class``/``jid``: its own (``extra=``), else the job running in the logging thread,
    so that the app's lines logged inside a job carry them too."""
    attrs = record.__dict__
    job_class, jid = attrs.get("job_class"), attrs.get("jid")
    if job_class is None and jid is None:
        job = running()
        if job is not None:
            return job
    return job_class, jid


class JsonFormatter(LineFormatter):
    """One JSON object per record, on one line, for log shippers (``log_format: json``)::

        {"time": "2026-11-28T16:50:00.123Z", "level": "INFO", "pid": 1234, "tid": "k1",
         "class": "resize", "jid": "ab12cd", "logger": "swarmd.job", "message": "done: 0.004 sec"}

    ``class`` and ``jid`` are null outside a job; ``exception`` (the traceback, one string) and ``stack``
    appear when the record has them. JSON escapes every control character, so a payload's text cannot
    start a line of its own here either; the message is not otherwise escaped. Under the journal the
    line keeps its ``<N>`` priority prefix (journald strips it and sets the entry's priority).
    """

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format from the app: keep what it meant to say
            message = f"{record.msg!s} {record.args!r}"
        exception = None
        if record.exc_info and record.exc_info[1] is not None:
            exception = "".join(traceback.format_exception(record.exc_info[1])).rstrip("\n")
        elif record.exc_text:
            exception = record.exc_text
        job_class, jid = _job_of(record)
        fields = self._fields(
            record.created, record.levelname, record.process, record.thread, job_class, jid, message
        )
        fields["logger"] = record.name
        if exception is not None:
            fields["exception"] = exception
        if record.stack_info:
            fields["stack"] = record.stack_info
        return self._line(record.levelno, fields)

    def format_fields(
        self,
        created: float,
        levelno: int,
        levelname: str,
        process: int | None,
        thread: int | None,
        job_class: str | None,
        jid: str | None,
        text: str,
    ) -> str:
        fields = self._fields(created, levelname, process, thread, job_class, jid, text)
        fields["logger"] = "swarmd.job"
        return self._line(levelno, fields)

    def _fields(
        self,
        created: float,
        levelname: str,
        process: int | None,
        thread: int | None,
        job_class: object,
        jid: object,
        message: str,
    ) -> dict[str, object]:
        return {
            "time": self._stamp(created),
            "level": levelname,
            "pid": process,
            "tid": _tid(thread, process),
            "class": None if job_class is None else str(job_class),
            "jid": None if jid is None else str(jid),
            "message": message,
        }

    def _line(self, levelno: int, fields: dict[str, object]) -> str:
        line = json.dumps(fields, ensure_ascii=False, default=str)
        return f"<{_priority(levelno)}>{line}" if self.priority_prefix else line


def _formatter(
    log_format: LogFormat, *, timestamps: bool = True, priority_prefix: bool = False
) -> LineFormatter:
    cls = JsonFormatter if log_format == "json" else LineFormatter
    return cls(timestamps=timestamps, priority_prefix=priority_prefix)


def _is_journal(stream: TextIO, env: Mapping[str, str]) -> bool:
    """True when `stream` is the journal's stream (systemd sets JOURNAL_STREAM=<dev>:<ino> of it)."""
    expected = env.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # StringIO, closed or fd-less streams
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


# -- handlers -------------------------------------------------------------------------------------------


_batching = False
_flush_due = threading.Event()
_batching_handlers: list[_BatchingHandler] = []


class _BatchingHandler(logging.Handler):
    """Writes formatted lines; in batching mode (workers), INFO/DEBUG lines are collected and written
    together every `BATCH_INTERVAL_S` or 64 KB, so ten processor threads logging ``done`` lines do
    not queue on one write(2) each. WARNING and above are written at once, with what is pending
    before them (order is kept).

    The handler's own lock guards only the pending lines: it is held to format nothing and write
    nothing, just to append or take lines, a few microseconds. Were the write done under it, every
    thread finishing a job would queue behind the flusher for the whole write *and* for the wait for
    the GIL after its write(2) returns (up to the 5 ms switch interval while ten threads run): that
    convoy cost 15 % of the processors' time. A writer takes the pending lines and a ticket under the
    handler lock, lets go of it, and writes when its ticket is served (`_turn`), so batches are
    written in the order their lines were queued and nobody waits for a write holding the handler
    lock. A line logged by the writing thread itself (a stream that logs what it is given, an error
    printed to a captured stderr) is only queued: it goes out with the next batch, never waits for
    the write it is part of."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []
        self._pending_size = 0
        self._owned_close = False
        self._turn = threading.Condition(threading.Lock())
        self._tickets = 0  # handed out with each batch taken (under the handler lock)
        self._serving = 0  # the ticket whose batch may be written now (under `_turn`)
        self._writer = threading.local()  # .active: this thread is writing a batch
        _batching_handlers.append(self)

    def _write(self, text: str) -> None:
        raise NotImplementedError

    def handle(self, record: logging.LogRecord) -> bool:
        """`logging.Handler.handle`, but formatting outside the handler lock and writing after it."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.add(line, record.levelno)

    def add(self, line: str, levelno: int) -> None:
        """Queue one formatted line; write what is pending now if it is due (`_queue`)."""
        self.acquire()
        try:
            due = self._queue(line, levelno)
        finally:
            self.release()
        if due:
            self.flush()

    @property
    def writing(self) -> bool:
        """Whether the calling thread is inside this handler's write (see the class docstring)."""
        return bool(getattr(self._writer, "active", False))

    def _queue(self, line: str, levelno: int) -> bool:
        """Queue one formatted line; the caller holds the handler lock. True when the caller must
        `flush` once it has let go of that lock: not batching, a WARNING or worse, or 64 KB pending.
        Never while this thread is writing: its line waits for the next batch."""
        self._pending.append(line + "\n")
        self._pending_size += len(line) + 1
        if _batching and levelno < logging.WARNING and self._pending_size < 65536:
            if not _flush_due.is_set():
                _flush_due.set()
            return False
        if self.writing:  # only here, off the per-job path: batched lines never flush
            if _batching:
                _flush_due.set()
            return False
        return True

    def flush(self) -> None:
        """Write what is pending. Returns once every line queued before the call is written (a batch
        another thread took just before is waited for), except inside this thread's own write."""
        if self.writing:
            return
        with self._exclusive() as text:
            self._write_batch(text)

    def _write_batch(self, text: str) -> None:
        """Write a batch; called holding the write turn (`_exclusive`)."""
        if not text:
            return
        self._writer.active = True
        try:
            self._write(text)
        except Exception:
            # Still this batch's turn, so a line that handleError logs back through us only queues.
            self.handleError(logging.makeLogRecord({"msg": text.rstrip()}))
        finally:
            self._writer.active = False

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[str]:
        """The pending lines, taken with a ticket under the handler lock; the body runs when that
        ticket is served: after every batch taken before, and before any taken after."""
        self.acquire()
        try:
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            ticket = self._tickets
            self._tickets += 1
        finally:
            self.release()
        with self._turn:
            while self._serving != ticket:
                self._turn.wait()
        try:
            yield text
        finally:
            with self._turn:
                self._serving += 1
                self._turn.notify_all()

    def after_fork_in_child(self) -> None:
        """The parent's writers do not exist here: no turn is waited for."""
        self._turn = threading.Condition(threading.Lock())
        self._serving = self._tickets
        self._writer = threading.local()

    def close(self) -> None:
        """Flush; close for good only when swarmd uninstalls the handler (`owned_close`).

        ``logging.config.dictConfig`` in app code (Django's ``LOGGING`` in ``django.setup()``) closes
        every handler that exists, ours included, though they stay on swarmd's loggers: those lines
        must keep coming. At interpreter exit `logging.shutdown` closes them too; the process is ending.
        """
        self.flush()
        if not self._owned_close:
            return
        if self in _batching_handlers:
            _batching_handlers.remove(self)
        super().close()

    def owned_close(self) -> None:
        self._owned_close = True
        self.close()


BATCH_INTERVAL_S = 0.05


def start_batching() -> None:
    """Collect INFO/DEBUG lines and write them in batches (a worker calls this; its flusher is a
    thread, so the single-threaded supervisor never does). `flush()` writes what is pending."""
    global _batching
    if _batching:
        return
    _batching = True
    threading.Thread(target=_flush_loop, name="swarmd-log-flush", daemon=True).start()


def _flush_loop() -> None:
    while True:
        _flush_due.wait()
        time.sleep(BATCH_INTERVAL_S)
        _flush_due.clear()
        flush()


def flush() -> None:
    """Write every pending line now (a worker calls this before it exits)."""
    for handler in list(_batching_handlers):
        handler.flush()


def _stop_batching_after_fork() -> None:
    global _batching
    _batching = False  # the flusher thread does not exist in a forked child
    for handler in _batching_handlers:
        handler.after_fork_in_child()


os.register_at_fork(after_in_child=_stop_batching_after_fork)


class _StreamHandler(_BatchingHandler):
    """Writes lines to a text stream; with no stream given, to whatever `sys.stderr` is at the time."""

    def __init__(self, stream: TextIO | None, formatter: logging.Formatter) -> None:
        super().__init__()
        self.stream = stream
        self.setFormatter(formatter)

    def _write(self, text: str) -> None:
        stream = self.stream if self.stream is not None else _real_stderr or sys.stderr
        stream.write(text)
        stream.flush()


def _open_logfile(path: str) -> int:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    # O_NOFOLLOW: a symlink planted at the log path must not redirect our writes.
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)


def _describe_open_error(path: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"logfile {path}: is a symlink; refusing to follow it"
    return f"logfile {path}: cannot open: {exc.strerror or exc}"


class _FileHandler(_BatchingHandler):
    """Appends lines to a file, each batch with one write(2) (O_APPEND: safe across forked workers)."""

    def __init__(self, path: str, formatter: logging.Formatter) -> None:
        self._fd = -1
        super().__init__()
        self.path = os.path.abspath(path)  # a later chdir must not move the log
        try:
            self._fd = _open_logfile(self.path)
        except OSError as exc:
            _batching_handlers.remove(self)
            raise ConfigError(_describe_open_error(self.path, exc)) from exc
        self._broken = False
        self.setFormatter(formatter)

    def _write(self, text: str) -> None:
        try:
            data = text.encode("utf-8", "backslashreplace")
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
            self._broken = False
        except OSError as exc:  # disk full, EIO: say so once per outage, not once per line
            if not self._broken:
                self._broken = True
                _emergency(f"swarmd: cannot write to logfile {self.path}: {exc}")

    def reopen(self) -> None:
        """Open the path again (logrotate renamed the old file); keeps the old file on failure."""
        fd = _open_logfile(self.path)
        with self._exclusive() as pending:  # no batch is being written to the old file as we swap
            self._write_batch(pending)  # it belongs to the old file
            old, self._fd = self._fd, fd
            self._broken = False
        os.close(old)

    def close(self) -> None:
        if self._owned_close:
            with self._exclusive() as pending:
                self._write_batch(pending)
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
        super().close()


def _emergency(line: str) -> None:
    try:
        stream = _real_stderr or sys.stderr
        stream.write(line + "\n")
        stream.flush()
    except Exception:  # stderr gone as well: nothing left to tell
        pass


# -- the per-job fast path ------------------------------------------------------------------------------

_job_logger = logging.getLogger(LOGGER_NAME + ".job")
_fast_handlers: list[_BatchingHandler] = []
"""The installed handlers when all of them are swarmd's own line handlers (then `job_event` formats
and queues a line without building a LogRecord); empty otherwise."""


def job_event(levelno: int, job_class: str, jid: str, text: str) -> None:
    """Log a job's ``start``/``done``/``fail`` line: the same line as through the logging module,
    at a third of the cost (no LogRecord, no caller lookup), which matters at 10,000 jobs/s."""
    if not _job_logger.isEnabledFor(levelno):
        return
    handlers = _fast_handlers
    if not handlers or _job_logger.handlers or _job_logger.filters:
        _job_logger.log(levelno, "%s", text, extra={"job_class": job_class, "jid": jid})
        return
    created = time.time()
    pid = _pid  # os.getpid() is a system call; this one is kept right across forks
    thread = threading.get_ident()
    levelname = logging.getLevelName(levelno)
    for handler in handlers:
        if levelno < handler.level:
            continue
        formatter = handler.formatter
        assert isinstance(formatter, LineFormatter)
        line = formatter.format_fields(created, levelno, levelname, pid, thread, job_class, jid, escape(text))
        handler.add(line, levelno)


# -- public API -----------------------------------------------------------------------------------------

_lock = threading.Lock()
_installed: list[logging.Handler] = []


def _reinit_lock_after_fork() -> None:
    global _lock, _pid
    _lock = threading.Lock()  # a thread of the parent may have held it at fork time
    _pid = os.getpid()


_pid = os.getpid()


os.register_at_fork(after_in_child=_reinit_lock_after_fork)


def setup_logging(
    *,
    verbose: bool = False,
    logfile: str | None = None,
    syslog: SyslogTarget | None = None,
    stream: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    log_format: LogFormat = "text",
    app_logs: bool = False,
) -> None:
    """Configure the "swarmd" logger; calling it again replaces what the previous call installed.

    `stream` defaults to `sys.stderr` (looked up per line); `env` to `os.environ` (JOURNAL_STREAM).
    ``log_format`` "json" writes `JsonFormatter` lines to every destination. ``app_logs`` (the daemon
    sets it) also installs the handlers on the root logger at the same level, so the app's own
    `logging` records (the root logger and its children, `warnings` too) come out the same way, with
    the job's class and jid when logged inside a job; a logger the app configured keeps its level.
    Raises ConfigError when the logfile cannot be opened or the syslog facility or address is invalid.
    """
    env = os.environ if env is None else env
    journal = _is_journal(stream if stream is not None else sys.stderr, env)
    stderr_handler = _StreamHandler(
        stream, _formatter(log_format, timestamps=not journal, priority_prefix=journal)
    )
    handlers: list[logging.Handler] = []
    try:
        if logfile:
            handlers.append(_FileHandler(logfile, _formatter(log_format)))
        if syslog is not None:
            try:
                handlers.append(
                    SyslogHandler(syslog, stderr_handler, _formatter(log_format, timestamps=False))
                )
            except InvalidTarget as exc:
                raise ConfigError(str(exc)) from None
    except BaseException:
        for handler in handlers:
            if isinstance(handler, _BatchingHandler):
                handler.owned_close()
            else:
                handler.close()
        raise
    if not handlers:
        handlers.append(stderr_handler)

    logger = logging.getLogger(LOGGER_NAME)
    level = logging.DEBUG if verbose else logging.INFO
    with _lock:
        _uninstall(logger)
        _installed.extend(handlers)
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
        fast = [h for h in handlers if isinstance(h, _BatchingHandler)]
        _fast_handlers[:] = fast if len(fast) == len(handlers) else []
        if app_logs:
            root = logging.getLogger()
            _root_saved.append(root.level)
            for handler in handlers:
                root.addHandler(handler)
            root.setLevel(level)
            logging.captureWarnings(True)  # `warnings.warn` in app code: a WARNING line of py.warnings


def set_level(*, verbose: bool) -> None:
    """Change the level of swarmd's lines (and of the app's, if `setup_logging` took them): a reload."""
    level = logging.DEBUG if verbose else logging.INFO
    with _lock:
        logging.getLogger(LOGGER_NAME).setLevel(level)
        if _root_saved:
            logging.getLogger().setLevel(level)


def reset_logging() -> None:
    """Remove and close what `setup_logging` installed; the "swarmd" logger is back to stdlib defaults."""
    logger = logging.getLogger(LOGGER_NAME)
    with _lock:
        _uninstall(logger)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


_root_saved: list[int] = []  # the root logger's level before `app_logs` changed it


def _uninstall(logger: logging.Logger) -> None:
    _fast_handlers.clear()
    root = logging.getLogger()
    for handler in _installed:
        logger.removeHandler(handler)
        root.removeHandler(handler)
        if isinstance(handler, _BatchingHandler):
            handler.owned_close()
        else:
            handler.close()
    _installed.clear()
    if _root_saved:
        root.setLevel(_root_saved[0])
        _root_saved.clear()
        logging.captureWarnings(False)


def reclaim_loggers() -> None:
    """Enable swarmd's loggers again if app code disabled them.

    ``logging.config.dictConfig`` disables every logger that exists and that its config does not name,
    unless told ``disable_existing_loggers: False``; Django's ``LOGGING`` setting goes through it in
    ``django.setup()``. swarmd's own lines must not vanish because of that: the worker calls this after
    the ``on_startup`` hooks. The app's choices about its own loggers and the root logger stay.
    """
    manager = logging.Logger.manager
    for name, logger in list(manager.loggerDict.items()):
        if (name == LOGGER_NAME or name.startswith(LOGGER_NAME + ".")) and isinstance(logger, logging.Logger):
            logger.disabled = False


# -- print() and the std streams of a worker ------------------------------------------------------------

_real_stderr: TextIO | None = None  # the stderr the handlers write to while the std streams are captured
_capture_guard = threading.local()


class _LineWriter(io.TextIOBase):
    """A `sys.stdout`/`sys.stderr` stand-in that logs each complete line written to it.

    Partial lines are kept per thread until their newline comes, so lines printed by threads at the
    same time never interleave (``print`` writes its text and its newline separately). `flush` does
    not cut a line (``print(".", end="", flush=True)`` adds to one line); a line longer than
    `MAX_LINE` is logged in pieces. `fileno` is the original stream's, for code that writes to the fd
    itself (faulthandler).
    """

    MAX_LINE = 65536

    def __init__(self, logger: logging.Logger, level: int, original: TextIO) -> None:
        super().__init__()
        self._logger = logger
        self._level = level
        self.original = original
        self._lock = threading.Lock()
        self._partial: dict[int, str] = {}
        self.buffer = _BytesLineWriter(self)  # what code writing bytes (sys.stdout.buffer.write) uses

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if getattr(_capture_guard, "active", False):  # logging itself failed and reports it: no loop
            return self.original.write(text)
        me = threading.get_ident()
        with self._lock:
            buffered = self._partial.pop(me, "") + text
            *lines, rest = buffered.split("\n")
            while len(rest) > self.MAX_LINE:
                lines.append(rest[: self.MAX_LINE])
                rest = rest[self.MAX_LINE :]
            if rest:
                if len(self._partial) > 1024:  # threads that died mid-line: let their pieces go out
                    lines.extend(self._partial.values())
                    self._partial.clear()
                self._partial[me] = rest
        for line in lines:
            self._log(line)
        return len(text)

    def _log(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        _capture_guard.active = True
        try:
            self._logger.log(self._level, "%s", line)
        finally:
            _capture_guard.active = False

    def finish(self) -> None:
        """Log every partial line (at exit)."""
        with self._lock:
            rest = list(self._partial.values())
            self._partial.clear()
        for line in rest:
            self._log(line)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.original, "errors", None)


class _BytesLineWriter(io.RawIOBase):
    """``sys.stdout.buffer`` of a captured stream: bytes decoded as UTF-8 into the text writer."""

    def __init__(self, text: _LineWriter) -> None:
        super().__init__()
        self._text = text

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._text.write(bytes(view).decode("utf-8", "backslashreplace"))
        return view.nbytes


def capture_output() -> None:
    """In a worker: send ``print()`` and other writes to `sys.stdout`/`sys.stderr` into the log, each
    line an INFO record of the logger "swarmd.stdout" or a WARNING of "swarmd.stderr" (with the job's
    class and jid when written inside a job). swarmd's own handlers keep writing to the real stderr."""
    global _real_stderr
    if isinstance(sys.stdout, _LineWriter) or isinstance(sys.stderr, _LineWriter):
        return
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    _real_stderr = sys.stderr
    sys.stdout = _LineWriter(logging.getLogger(LOGGER_NAME + ".stdout"), logging.INFO, sys.stdout)
    sys.stderr = _LineWriter(logging.getLogger(LOGGER_NAME + ".stderr"), logging.WARNING, sys.stderr)


def release_output() -> None:
    """Log what is left of partial lines and put the original `sys.stdout`/`sys.stderr` back."""
    global _real_stderr
    for name in ("stdout", "stderr"):
        writer = getattr(sys, name)
        if isinstance(writer, _LineWriter):
            writer.finish()
            setattr(sys, name, writer.original)
    _real_stderr = None


def reopen_logs() -> None:
    """Reopen the logfile by path (USR1 after logrotate moved it); a no-op without a logfile.

    A failure is logged (to the old file, which stays open) and never raised.
    """
    with _lock:
        handlers = list(_installed)
    for handler in handlers:
        if isinstance(handler, _FileHandler):
            try:
                handler.reopen()
            except OSError as exc:
                log.error("cannot reopen %s", _describe_open_error(handler.path, exc))


def after_fork_in_child() -> None:
    """In a forked worker: drop the syslog socket shared with the parent (the next line opens its own)."""
    with _lock:
        handlers = list(_installed)
    for handler in handlers:
        if isinstance(handler, SyslogHandler):
            handler.recreate_socket()
