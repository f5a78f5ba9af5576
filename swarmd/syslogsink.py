"""Syslog transport: one RFC 3164-style datagram per log record, to a unix socket or over UDP.

A record becomes ``<PRI>ident[pid]: line``, without timestamp (the receiver stamps it). A multi-line
record (a traceback) stays ONE datagram with its newlines (journald keeps it as one multi-line
message; rsyslog shows ``#012``), truncated to `MAX_DATAGRAM` bytes without splitting a UTF-8
character. The pid is the process that logged, so a forked worker shows its own. If sending fails,
`SyslogHandler` falls back to stderr for good, announced by exactly one WARNING line naming the
address and the error.

Sending never blocks. A unix datagram socket whose receiver stops reading (journald or rsyslog
stalled, a test that bound the socket and went away) fills up, and a blocking ``sendto`` would then
hold the logging lock, and with it every job thread that logs: a stuck log reader must not stop the
jobs. So the socket is non-blocking; a record that finds it full is dropped and counted, and the
next record that gets through is preceded by one WARNING saying how many were dropped. A full
socket is a passing condition, unlike an error (no such socket): it never causes the fallback.

Addresses (`parse_address` is the one reader, for the config check and the handler alike):

- a path containing ``/``: a unix datagram socket (``/dev/log``, ``/run/systemd/journal/syslog``);
- ``@name``: a Linux abstract unix socket (the ``@`` notation of systemd and ``ss``);
- ``host:port``, or ``[v6addr]:port``: UDP.

No swarmd imports, so that `swarmd.config` (layer 1) checks a config with the same code the handler
sends with; a bad facility or address is an `InvalidTarget` (a ValueError), which the config loader
and `swarmd.logs.setup_logging` turn into their one-line ConfigError.
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass
from logging.handlers import SysLogHandler

__all__ = [
    "MAX_DATAGRAM",
    "InvalidTarget",
    "SyslogHandler",
    "SyslogTarget",
    "facility_code",
    "parse_address",
    "severity",
    "truncate",
]

MAX_DATAGRAM = 60_000
"""Largest syslog datagram sent, in bytes (Linux refuses ~200 KB ones with EMSGSIZE)."""

_SMALL_DATAGRAM = 2_048  # retry size when a receiver's buffer is smaller than MAX_DATAGRAM

Address = tuple[socket.AddressFamily, str | tuple[str, int]]
"""What `socket.sendto` needs: the family, then a path (abstract ones start with NUL) or (host, port)."""


@dataclass(frozen=True)
class SyslogTarget:
    """Where syslog lines go: `address` is a socket path, ``@abstract`` or ``host:port`` (see module)."""

    ident: str = "swarmd"
    facility: str = "daemon"
    address: str = "/dev/log"


class InvalidTarget(ValueError):
    """A syslog setting that cannot work: `key` (``facility`` or ``address``), `expected`, `value`."""

    def __init__(self, key: str, expected: str, value: str) -> None:
        super().__init__(f"syslog.{key}: expected {expected}, got {value!r}")
        self.key = key
        self.expected = expected
        self.value = value


def facility_code(name: str) -> int:
    """The facility's number (``daemon`` -> 3), case-insensitive; raises `InvalidTarget`."""
    code = SysLogHandler.facility_names.get(name.lower())
    if code is None:
        raise InvalidTarget("facility", "a facility such as daemon, user or local0..local7", name)
    return code


def parse_address(address: str) -> Address:
    """Where `sendto` sends for a configured address (see the module docstring); raises `InvalidTarget`."""
    if address.startswith("@") and len(address) > 1:
        return socket.AF_UNIX, "\0" + address[1:]
    if "/" in address:
        return socket.AF_UNIX, address
    host, colon, port = address.rpartition(":")
    if colon and host and port.isdigit() and 0 < int(port) < 65536:
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return family, (host, int(port))
    raise InvalidTarget("address", "a socket path or host:port", address)


_SEVERITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def severity(levelno: int) -> int:
    """The syslog severity (0 emerg .. 7 debug) of a logging level; also journald's ``<N>`` prefix."""
    found = _SEVERITIES.get(levelno)
    if found is not None:
        return found
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    return 6 if levelno >= logging.INFO else 7


def truncate(data: bytes, limit: int) -> bytes:
    """``data`` cut to at most ``limit`` bytes, marked ``... [truncated]``, never inside a UTF-8 character."""
    if len(data) <= limit:
        return data
    marker = b"... [truncated]"
    cut = data[: limit - len(marker)]
    return cut.decode("utf-8", "ignore").encode("utf-8") + marker


class SyslogHandler(logging.Handler):
    """RFC 3164-style datagrams ``<PRI>ident[pid]: line``; on failure, ``fallback`` for good (one warning).

    Not the stdlib SysLogHandler: that one prints a "--- Logging error ---" traceback per record when
    /dev/log is missing, and bakes a static ident into every forked child. Raises `InvalidTarget` for
    a bad facility or address.
    """

    def __init__(self, target: SyslogTarget, fallback: logging.Handler, formatter: logging.Formatter) -> None:
        super().__init__()
        self._facility = facility_code(target.facility) << 3
        self._family, self._address = parse_address(target.address)
        self.target = target
        self._fallback = fallback
        self.fallen_back = False
        self._sock: socket.socket | None = None
        self.dropped = 0
        """Records dropped because the receiver's buffer was full, since the last one that got through."""
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        if self.fallen_back:
            self._fallback.handle(record)
            return
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        pri = self._facility | severity(record.levelno)
        data = f"<{pri}>{self.target.ident}[{record.process}]: {line}".encode("utf-8", "backslashreplace")
        try:
            if self.dropped and not self._send(self._dropped_notice(record)):
                self.dropped += 1  # still full: this record goes the same way
                return
            if self._send(data):
                self.dropped = 0
            else:
                self.dropped += 1
        except OSError as exc:
            self._fall_back(exc)
            self._fallback.handle(record)

    def _dropped_notice(self, record: logging.LogRecord) -> bytes:
        pri = self._facility | severity(logging.WARNING)
        notice = self.format(
            logging.LogRecord(
                "swarmd.logs",
                logging.WARNING,
                __file__,
                0,
                "syslog at %s was full: %d log lines dropped",
                (self.target.address, self.dropped),
                None,
            )
        )
        return f"<{pri}>{self.target.ident}[{record.process}]: {notice}".encode("utf-8", "backslashreplace")

    def _send(self, data: bytes) -> bool:
        """Send one datagram; False if the receiver's buffer is full (the datagram is not sent)."""
        if self._sock is None:
            self._sock = socket.socket(self._family, socket.SOCK_DGRAM)  # unconnected: survives restarts
            self._sock.setblocking(False)  # see the module docstring: a stalled reader must not stall jobs
        try:
            try:
                self._sock.sendto(truncate(data, MAX_DATAGRAM), self._address)
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    raise
                self._sock.sendto(truncate(data, _SMALL_DATAGRAM), self._address)
        except BlockingIOError:
            return False
        return True

    def _fall_back(self, exc: OSError) -> None:
        self.fallen_back = True
        self._close_socket()
        warning = logging.LogRecord(
            "swarmd.logs",
            logging.WARNING,
            __file__,
            0,
            "syslog at %s failed (%s); logging to stderr from now on",
            (self.target.address, exc),
            None,
        )
        self._fallback.handle(warning)

    def recreate_socket(self) -> None:
        """Drop the socket (a forked child must not share its parent's); the next record opens one."""
        self.acquire()
        try:
            self._close_socket()
        finally:
            self.release()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        self.recreate_socket()
        super().close()
