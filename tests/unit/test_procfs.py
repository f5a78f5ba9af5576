"""The /proc readers: this process's memory, a worker's PSS, its stat line, and a process that is gone."""

from __future__ import annotations

import os
import subprocess
import sys

from swarmd.procfs import all_stats, read_pss_kb, read_rss_kb, stat_fields


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


def test_stat_fields_survive_a_command_name_with_spaces_and_parentheses() -> None:
    # The name (field 2) may hold ") (": the fields are read after its last parenthesis.
    rename = "open('/proc/self/comm', 'w').write('a) (b c'); print(flush=True); input()"
    child = subprocess.Popen(
        [sys.executable, "-c", rename], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()  # renamed
        fields = stat_fields(child.pid)
        assert fields is not None
        assert fields[0] in "RS"  # its state
        assert int(fields[2]) == os.getpgid(child.pid) and int(fields[3]) == os.getsid(child.pid)
        assert dict(all_stats())[child.pid][2:4] == fields[2:4]
    finally:
        child.communicate("\n")
    assert stat_fields(child.pid) is None
    assert child.pid not in dict(all_stats())
