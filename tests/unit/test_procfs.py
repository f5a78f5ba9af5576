"""The /proc readers: this process's memory, a worker's PSS, and a process that is gone."""

from __future__ import annotations

import os
import subprocess
import sys

from swarmd.procfs import read_pss_kb, read_rss_kb


def test_rss_of_this_process() -> None:
    rss = read_rss_kb()
    assert rss > 1024  # a Python process is more than a megabyte
    assert abs(read_rss_kb(os.getpid()) - rss) < 64 * 1024


def test_pss_of_a_live_process_is_at_most_its_rss() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        pss = read_pss_kb(child.pid)
        assert pss is not None and 0 < pss <= read_rss_kb(child.pid) + 64
    finally:
        child.communicate(b"")


def test_a_process_that_is_gone_has_no_memory() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: /proc/<pid> is gone
    assert read_pss_kb(child.pid) is None
    assert read_rss_kb(child.pid) == 0
