"""The swarm as users and systemd see it: real `python -m swarmd`, real signals, real redis-server,
the notify and syslog sockets owned by the test (issue 3, item 10). No timing assertions: every wait
is a `wait_until` with a generous timeout."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from tests.conftest import wait_until
from tests.system.conftest import Swarm, cmdline

TITLE = re.compile(r"^swarmd 0\.1\.0 systest \[\d+ of 4 busy\]( stopping)?$")


def _title_ends(pid: int, suffix: str) -> bool:
    return cmdline(pid).endswith(suffix)


def _matches(pattern: re.Pattern[str], text: Callable[[], str]) -> bool:
    return pattern.search(text()) is not None


def test_ready_only_after_all_workers_booted_and_titles(swarm: Swarm) -> None:
    daemon = swarm.start("--processes", "3")
    ready = swarm.notify.wait_for("READY=1")
    # Each worker registers in Redis before it tells the supervisor it booted: all three are there.
    assert swarm.r.scard("processes") == 3
    assert ready.pid == daemon.pid
    assert "STATUS=3 of 3 up, 0 of 12 busy" in ready.fields
    before = swarm.notify.poll()[: swarm.notify.poll().index(ready)]
    assert before and all("READY=1" not in d.fields and "STATUS=3 of 3 up" not in d.text for d in before)
    daemon.wait_log("booted: concurrency 4", count=3)
    workers = daemon.wait_workers(3)
    wait_until(
        lambda: cmdline(daemon.pid) == "swarmd 0.1.0 systest supervisor [3 of 3 up, 0 of 12 busy]",
        10,
        what=f"the supervisor's title (have {cmdline(daemon.pid)!r})",
    )
    for pid in workers:
        assert TITLE.match(cmdline(pid)), cmdline(pid)
    assert {d.pid for d in swarm.notify.poll()} == {daemon.pid}


def test_watchdog_pings_come_from_the_supervisor_only(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=2, WATCHDOG_USEC="200000")
    swarm.notify.wait_for("WATCHDOG=1", count=5)
    assert {d.pid for d in swarm.notify.poll()} == {daemon.pid}  # no datagram from any worker
    other = swarm.start_ready(processes=1, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    time.sleep(1.0)  # a negative check: nothing may arrive from the second swarm during this second
    assert not [d for d in swarm.notify.poll() if d.pid == other.pid and "WATCHDOG=1" in d.fields]


def test_sigkill_of_a_worker_under_load_loses_no_job(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=2)
    tokens = [f"t{i}" for i in range(300)]
    swarm.enqueue_many("Record", [(t, 0.01) for t in tokens])
    wait_until(lambda: len(swarm.tokens()) >= 20, 20, what="some jobs done")
    old = daemon.workers()
    victim = old[0]
    os.kill(victim, signal.SIGKILL)
    daemon.wait_workers(2, exclude=[victim])
    swarm.wait_tokens(tokens, timeout_s=60)
    assert set(swarm.tokens()) == set(tokens)
    assert f"(pid {victim}) was killed by SIGKILL" in daemon.output()
    wait_until(lambda: swarm.inflight() == 0, 10, what="empty in-flight lists")


def test_poison_job_exiting_the_worker_runs_alone_in_quarantine_and_ends_dead(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=1, config=swarm.config(concurrency=1))
    swarm.enqueue("Exit", "poison")
    tokens = [f"ok{i}" for i in range(10)]
    swarm.enqueue_many("Record", [(t,) for t in tokens])
    swarm.wait_tokens(tokens, timeout_s=60)
    wait_until(lambda: swarm.r.zcard("dead") == 1, 30, what="the poison job in dead")
    dead = json.loads(cast("list[bytes]", swarm.r.zrange("dead", 0, -1))[0])
    assert dead["class"] == "Exit" and dead["error_class"] == "swarmd.PoisonJob"
    runs = [int(e[2]) for e in swarm.entries() if e[:2] == ["start", "poison"]]
    assert len(runs) == 3  # once among the others, then twice alone
    out = daemon.output()
    # The ordinary worker died once and was replaced with backoff; then quarantine workers ran it.
    assert re.search(rf"worker 1 \(pid {runs[0]}\) exited with code 1 .*; starting a new one in", out)
    for pid in runs[1:]:
        assert f"quarantine worker (pid {pid}) exited with code 1" in out
    assert "crash loop" not in out
    assert daemon.alive()


def test_require_of_a_module_that_fails_to_import_exits_70(swarm: Swarm) -> None:
    (swarm.root / "broken_jobs.py").write_text(
        "import swarmd\nraise ImportError('no such thing: frobnicate')\n"
    )
    daemon = swarm.start("--processes", "2", "-r", "broken_jobs")
    assert daemon.wait_exit(30) == 70
    out = daemon.output()
    assert "require broken_jobs failed: ImportError: no such thing: frobnicate" in out
    assert "exited with code 70 before it booted" in out
    assert out.count("require broken_jobs failed") <= 2  # one per worker: no respawn loop
    assert swarm.notify.with_field("STOPPING=1") and not swarm.notify.with_field("READY=1")


def test_unreachable_redis_exits_69(swarm: Swarm) -> None:
    daemon = swarm.start("--redis-url", "redis://127.0.0.1:1/0")
    assert daemon.wait_exit(30) == 69
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in daemon.output()


def test_term_during_long_jobs_pushes_them_back_and_exits_0(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=2, config=swarm.config(timeout=1))
    tokens = [f"long{i}" for i in range(3)]
    swarm.enqueue_many("Block", [(t,) for t in tokens])
    swarm.wait_tokens(tokens, phase="start")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    stopping = swarm.notify.with_field("STOPPING=1")
    assert stopping and stopping[0].pid == daemon.pid
    assert swarm.r.llen("queue:default") == 3
    assert swarm.inflight() == 0
    assert not daemon.workers()


def test_ctrl_c_on_the_process_group_stops_gracefully(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=2)
    swarm.enqueue("Record", "before", 0.5)
    swarm.wait_tokens(["before"], phase="start")
    os.killpg(daemon.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert daemon.wait_exit(30) == 0
    assert swarm.tokens() == ["before"]  # the running job finished: workers ignored INT themselves


def test_second_term_stops_at_once_pushing_jobs_back(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=1, config=swarm.config(timeout=60))
    swarm.enqueue("Block", "stuck")
    swarm.wait_tokens(["stuck"], phase="start")
    daemon.signal(signal.SIGTERM)
    daemon.wait_log("stopping: waiting up to")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    assert swarm.r.llen("queue:default") == 1


def test_supervisor_killed_workers_stop_and_push_jobs_back(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=2)
    tokens = [f"b{i}" for i in range(2)]
    swarm.enqueue_many("Block", [(t,) for t in tokens])
    swarm.wait_tokens(tokens, phase="start")
    workers = daemon.workers()
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.proc.wait()
    wait_until(
        lambda: not any(os.path.exists(f"/proc/{p}") for p in workers), 20, what="orphaned workers to exit"
    )
    assert swarm.r.llen("queue:default") == 2 and swarm.inflight() == 0


def test_hup_under_load_replaces_every_worker_and_loses_no_job(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=2)
    old = daemon.wait_workers(2)
    tokens = [f"h{i}" for i in range(400)]
    swarm.enqueue_many("Record", [(t, 0.01) for t in tokens])
    wait_until(lambda: len(swarm.tokens()) >= 20, 20, what="some jobs done")
    daemon.signal(signal.SIGHUP)
    swarm.notify.wait_for("READY=1", count=2, timeout_s=30)
    new = daemon.wait_workers(2, exclude=old)
    assert not set(new) & set(old)
    swarm.wait_tokens(tokens, timeout_s=60)
    assert swarm.notify.order("READY=1", "RELOADING=1") == ["READY=1", "RELOADING=1", "READY=1"]
    reloading = swarm.notify.with_field("RELOADING=1")[0]
    assert reloading.pid == daemon.pid and any(f.startswith("MONOTONIC_USEC=") for f in reloading.fields)
    out = daemon.output()
    for pid in old:  # each old worker was told to stop only once its replacement had booted
        assert re.search(rf"worker \d \(pid \d+\) booted; stopping worker \d \(pid {pid}\)", out), out


def test_hup_with_a_broken_config_keeps_the_workers(swarm: Swarm) -> None:
    config = swarm.config()
    daemon = swarm.start_ready(processes=2, config=config)
    old = daemon.wait_workers(2)
    config.write_text(config.read_text() + "concurrency: 0\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_log("reload failed, nothing changed")
    swarm.notify.wait_for("READY=1", count=2)
    assert "concurrency: expected an integer >= 1, got 0" in daemon.output()
    assert sorted(daemon.workers()) == sorted(old)
    swarm.enqueue("Record", "still-works")
    swarm.wait_tokens(["still-works"])


def test_tstp_quiets_the_workers(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=2)
    workers = daemon.wait_workers(2)
    daemon.signal(signal.SIGTSTP)
    for pid in workers:
        wait_until(functools.partial(_title_ends, pid, " stopping"), 10, what=f"worker {pid} quiet")
    wait_until(lambda: cmdline(daemon.pid).endswith("] stopping"), 10, what="the supervisor's title")
    swarm.enqueue("Record", "later")
    time.sleep(1.0)  # a negative check: a quiet swarm fetches nothing
    assert swarm.r.llen("queue:default") == 1 and swarm.tokens() == []
    assert daemon.alive()


def test_sigstopped_worker_is_replaced_after_heartbeat_timeout(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=2, config=swarm.config(heartbeat_timeout=2))
    workers = daemon.wait_workers(2)
    os.kill(workers[0], signal.SIGSTOP)
    daemon.wait_workers(2, exclude=[workers[0]], timeout_s=30)
    out = daemon.output()
    assert f"(pid {workers[0]}) was silent for" in out
    assert "SIGABRT" in out
    assert "Fatal Python error: Aborted" in out  # faulthandler's dump of every thread
    assert workers[1] in daemon.workers()


def test_worker_above_max_memory_is_replaced(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=2, config=swarm.config(max_memory_mb=120))
    workers = daemon.wait_workers(2)
    swarm.enqueue("Bloat", "fat", 200)
    swarm.wait_tokens(["fat"])
    fat = int(next(e[2] for e in swarm.entries() if e[1] == "fat"))
    assert fat in workers
    daemon.wait_workers(2, exclude=[fat], timeout_s=30)
    out = daemon.output()
    assert f"(pid {fat}) uses" in out and "above max_memory_mb 120 for 3 samples in a row" in out
    assert re.search(rf"booted; stopping worker \d \(pid {fat}\)", out)


def test_syslog_lines_carry_the_identifier_from_every_process(swarm: Swarm) -> None:
    syslog = swarm.syslog
    config = swarm.config(syslog={"ident": "myident", "facility": "local3", "address": syslog.path})
    daemon = swarm.start_ready(processes=2, config=config)
    workers = daemon.wait_workers(2)
    swarm.enqueue("Record", "logged")
    swarm.wait_tokens(["logged"])

    def senders() -> set[int]:
        return {int(m) for m in re.findall(r"^<\d+>myident\[(\d+)\]: ", "\n".join(syslog.poll()), re.M)}

    wait_until(lambda: {daemon.pid, *workers} <= senders(), 10, what="lines from supervisor and workers")
    assert all(line.startswith("<15") or line.startswith("<1") for line in syslog.poll())
    assert "done: " in "\n".join(syslog.poll())
    assert "booted" not in daemon.output()  # syslog replaces stderr


def test_syslog_flag_sets_the_identifier_and_keeps_the_address_from_the_file(swarm: Swarm) -> None:
    syslog = swarm.syslog
    config = swarm.config(syslog={"ident": "fromfile", "address": syslog.path})
    daemon = swarm.start_ready("--syslog", "myident", processes=1, config=config)
    wait_until(
        lambda: any(f"myident[{daemon.pid}]: " in m for m in syslog.poll()), 10, what="a line tagged myident"
    )


def test_usr1_reopens_a_rotated_logfile(swarm: Swarm, tmp_path: Path) -> None:
    logfile = tmp_path / "log" / "swarmd.log"
    daemon = swarm.start_ready(processes=2, config=swarm.config(logfile=str(logfile)))
    workers = daemon.wait_workers(2)
    wait_until(lambda: logfile.read_text().count("booted: concurrency") == 2, 10, what="boot lines")
    logfile.rename(tmp_path / "log" / "swarmd.log.1")
    daemon.signal(signal.SIGUSR1)
    wait_until(lambda: logfile.exists(), 10, what="a new logfile")
    wait_until(
        lambda: all(f"pid={p} " in logfile.read_text() for p in [daemon.pid, *workers]),
        10,
        what="every process writing to the new logfile",
    )
    swarm.enqueue("Record", "after-rotate")
    swarm.wait_tokens(["after-rotate"])
    wait_until(lambda: "class=Record" in logfile.read_text(), 10, what="the job's line in the new file")
    assert "after-rotate" not in (tmp_path / "log" / "swarmd.log.1").read_text()


def test_ttin_dumps_every_workers_threads(swarm: Swarm) -> None:
    daemon = swarm.start_ready(processes=2)
    workers = daemon.wait_workers(2)
    daemon.signal(signal.SIGTTIN)
    for pid in workers:
        pattern = re.compile(rf"pid={pid} .*thread swarmd-processor")
        wait_until(functools.partial(_matches, pattern, daemon.output), 10, what=f"stacks of worker {pid}")


def test_pidfile_is_ours_while_running_and_removed_at_exit(swarm: Swarm, tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "swarmd.pid"
    daemon = swarm.start_ready("--pidfile", str(pidfile), processes=2)
    assert pidfile.read_text().strip() == str(daemon.pid)
    second = swarm.start("--pidfile", str(pidfile))
    assert second.wait_exit(30) == 78
    assert "another swarmd is running" in second.output()
    victim = daemon.workers()[0]
    os.kill(victim, signal.SIGKILL)  # a dying worker must not take the pidfile with it
    daemon.wait_workers(2, exclude=[victim])
    assert pidfile.read_text().strip() == str(daemon.pid)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    assert not pidfile.exists()
