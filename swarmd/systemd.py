"""Talking to systemd: sd_notify(3) readiness, status, reload, stop and watchdog.

Only the supervisor talks to systemd. Workers call `scrub_child_environment()` right after fork, and a
`Notifier` inherited through fork stays silent in the child (it remembers the pid that created it), so a
worker can never send `READY=1` or `WATCHDOG=1` on the swarm's behalf.

Built on `sdnotify.SystemdNotifier` (the dependency) with its gaps fixed:

- STATUS= is sent as UTF-8; sdnotify encodes latin-1 and silently drops anything else ("4 of 4 up ✓").
- The address comes from the `env` mapping given to `Notifier` (tests pass their own), including the
  `@abstract` form; no `NOTIFY_SOCKET` (or an unusable one, e.g. `vsock:`) makes every call a no-op.
- Each message is sent with `sendto()` on an unconnected socket, so a notify socket re-created at the
  same path (a test harness, a re-executed manager) keeps receiving; sdnotify connects once and then
  loses every message silently.
- Nothing raises: a failed send is logged at DEBUG and `Notifier.send()` returns False.
- A send cannot hang the supervisor's loop: the socket has a 1 s timeout.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

import sdnotify

__all__ = ["Notifier", "scrub_child_environment"]

log = logging.getLogger("swarmd.systemd")

SEND_TIMEOUT_S = 1.0

# Variables systemd hands to the main process only; a forked worker must not see them.
_CHILD_SCRUB = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
_CHILD_SCRUB_PREFIX = "LISTEN_"  # LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES (socket activation)


class _SdNotifier(sdnotify.SystemdNotifier):  # type: ignore[misc]  # sdnotify ships no type hints
    """sdnotify's notifier with an explicit address, UTF-8 payloads and reported failures.

    `SystemdNotifier.__init__` is deliberately not called: it reads `os.environ` itself, connects once
    and swallows every error. `notify(str)` keeps sdnotify's calling convention.
    """

    def __init__(self, address: str) -> None:
        self.debug = False
        # "@name" is the Linux abstract namespace: a leading NUL byte on the wire.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.socket: socket.socket | None = None

    def notify(self, state: str) -> None:
        """Send one datagram; raises OSError (the caller decides how loud to be)."""
        data = state.encode("utf-8", "replace")  # a lone surrogate must not raise
        if self.socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # CLOEXEC by default
            sock.settimeout(SEND_TIMEOUT_S)
            self.socket = sock
        self.socket.sendto(data, self.address)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def _usable_address(address: str) -> bool:
    # sd_notify(3) accepts an absolute path or "@abstract"; "vsock:CID:PORT" needs AF_VSOCK (unsupported).
    return len(address) > 1 and address[0] in "/@"


class Notifier:
    """sd_notify(3) messages for the supervisor; every method is a no-op when not under systemd.

    The environment is read once, at construction: build the Notifier in the supervisor before forking.
    Not thread-safe (the supervisor's loop is single-threaded).
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._pid = os.getpid()
        self._last_status: str | None = None
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        address = env.get("NOTIFY_SOCKET", "")
        self._sd: _SdNotifier | None = None
        if address and _usable_address(address):
            self._sd = _SdNotifier(address)
        elif address:
            log.debug("NOTIFY_SOCKET=%r is not supported; not notifying systemd", address)
        self.address = address
        self.enabled: bool = self._sd is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=VALUE` fields as one datagram; True if it was handed to the socket."""
        if self._sd is None:
            return False
        if os.getpid() != self._pid:
            return False  # inherited by a forked worker: only the supervisor may talk to systemd
        state = "\n".join(fields)
        try:
            self._sd.notify(state)
        except OSError as exc:
            log.debug("sd_notify to %s failed (%s): %r", self.address, exc, state)
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        self._send_with_status(["READY=1"], status)

    def reloading(self, status: str | None = None) -> None:
        # MONOTONIC_USEC is required by Type=notify-reload (v253+) and ignored by older managers.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send_with_status(["RELOADING=1", f"MONOTONIC_USEC={usec}"], status)

    def stopping(self, status: str | None = None) -> None:
        self._send_with_status(["STOPPING=1"], status)

    def status(self, text: str) -> None:
        """Send STATUS= only when it differs from the last one sent (callers may call it every tick)."""
        if _one_line(text) != self._last_status:
            self._send_with_status([], text)

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when no watchdog is ours.

        As sd_watchdog_enabled(3): only when WATCHDOG_PID is unset or names this process. None as well
        when there is no notify socket to ping.
        """
        if not self.enabled:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / 2_000_000 if usec > 0 else None

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more (start/stop/reload timeout); repeat before it runs out."""
        self.send(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")

    def close(self) -> None:
        if self._sd is not None:
            self._sd.close()

    def _send_with_status(self, fields: list[str], status: str | None) -> None:
        if status is not None:
            status = _one_line(status)
            fields.append(f"STATUS={status}")
        if self.send(*fields) and status is not None:
            self._last_status = status


def _one_line(text: str) -> str:
    # STATUS= is a single line: a newline would start a new (bogus) KEY=VALUE field.
    return " ".join(text.splitlines()) if "\n" in text or "\r" in text else text


def scrub_child_environment() -> None:
    """Forget systemd's per-service variables in a forked worker (call right after fork)."""
    for name in list(os.environ):
        if name in _CHILD_SCRUB or name.startswith(_CHILD_SCRUB_PREFIX):
            del os.environ[name]
