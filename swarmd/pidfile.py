"""The pidfile: written atomically, one live instance at a time, never through a symlink.

``<pidfile>.lock`` is held with ``flock`` for the life of the process, so a second instance is
refused even when a stale pidfile names a recycled pid. The pid is written to a temp file in the same
folder and renamed over the pidfile (readers never see a half-written file); at exit it is removed
only if it still holds our pid.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

from swarmd.errors import ConfigError, ExitCode, SwarmdError


class AlreadyRunning(SwarmdError):
    """Another live swarmd holds this pidfile; restarting would not help, hence exit 78."""

    exit_code = ExitCode.CONFIG


class PidFile:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._lock_fd: int | None = None
        self.pid = 0

    def acquire(self) -> None:
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
            if os.path.islink(self.path):
                raise ConfigError(f"pidfile {self.path}: is a symlink; refusing to follow it")
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"pidfile {self.path}.lock: is a symlink; refusing to follow it") from None
            raise ConfigError(f"pidfile {self.path}: cannot create: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            other = self._read()
            raise AlreadyRunning(
                f"pidfile {self.path}: another swarmd is running" + (f" (pid {other})" if other else "")
            ) from None
        self._lock_fd = fd
        self.write(os.getpid())

    def write(self, pid: int) -> None:
        tmp = f"{self.path}.{pid}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{pid}\n".encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.path)  # rename replaces a symlink itself, never its target
        self.pid = pid

    def _read(self) -> int | None:
        try:
            with open(self.path) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._lock_fd is None:
            return
        if self._read() == self.pid:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self._lock_fd)
        self._lock_fd = None
