"""Everything swarmd reads from ``/proc``: a process's memory, for the heartbeat and the supervisor;
and its ``stat`` line, with which the tests and the benchmarks find and measure swarmd's processes.

Linux only, like the rest of swarmd; a reader returns 0 or None (never raises) when the process is
gone or the file is missing, so a worker that exits between two samples is no error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

__all__ = ["all_stats", "read_pss_kb", "read_rss_kb", "stat_fields"]


def _field_kb(path: str, field: bytes) -> int | None:
    """The first ``<field> <n> kB`` line of a ``/proc`` file, in KB; None if absent or unreadable."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_rss_kb(pid: int | None = None) -> int:
    """Resident set size in KB of ``pid`` (default: this process), from ``status``; 0 if unknown.

    What Sidekiq's Web UI shows as a process's RSS.
    """
    return _field_kb(f"/proc/{pid or 'self'}/status", b"VmRSS:") or 0


def read_pss_kb(pid: int) -> int | None:
    """Proportional set size in KB of ``pid`` (its RSS if PSS is unavailable); None if it is gone.

    PSS, not RSS, for a worker's memory limit: after fork (and more so with ``preload``) workers share
    pages with the supervisor copy-on-write, and RSS would charge every shared page to every worker.
    """
    pss = _field_kb(f"/proc/{pid}/smaps_rollup", b"Pss:")
    return pss if pss is not None else read_rss_kb(pid) or None


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces and
    parentheses): index 0 is the state, 2 the process group, 3 the session, 11/12 utime/stime in
    clock ticks. None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def all_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, `stat_fields`) of every process alive now."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := stat_fields(int(entry))) is not None:
            yield int(entry), fields
