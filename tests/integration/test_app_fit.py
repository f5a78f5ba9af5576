"""swarmd in a real app, worker side: async jobs, unknown names, the boot line, the app's logging and
print(), the job context, server middleware and lifecycle hooks, each in a real ``python -m swarmd``.

Each test writes its own job module (``appjobs.py``) next to the fixture's, from `PRELUDE` plus what the
test needs, and reads what happened from the ledger, from Redis and from the log.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from swarmd import payload
from tests.conftest import LEDGER_NOTE, Daemon, wait_until
from tests.integration.conftest import JOBS_MODULE, JOBS_SOURCE, App
from tests.replies import members

PRELUDE = (
    """
import asyncio
import contextvars
import json
import logging
import os
import sys
import threading
import time

import swarmd

LEDGER = os.environ["SWARMD_TEST_LEDGER"]
FLAGS = os.environ["SWARMD_TEST_FLAGS"]
log = logging.getLogger(__name__)

"""
    + LEDGER_NOTE
    + """

async def await_flag(token):
    flag = os.path.join(FLAGS, token)
    while not os.path.exists(flag):
        await asyncio.sleep(0.01)
"""
)


def jobs_module(app: App, source: str, name: str = "appjobs") -> str:
    (app.root / f"{name}.py").write_text(PRELUDE + textwrap.dedent(source))
    return name


def start(app: App, module: str, *args: str, **settings: Any) -> Daemon:
    """swarmd with the fixture's jobs and ``module`` (``-r`` adds to the config's require)."""
    return app.start("-r", module, *args, config=app.config(**settings))


def stop(daemon: Daemon) -> None:
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0, daemon.output()


def log_lines(daemon: Daemon, text: str) -> list[str]:
    return [line for line in daemon.lines() if text in line]


def zset_jobs(app: App, key: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in members(app.r, key)]


# -- async def jobs ----------------------------------------------------------------------------------------

ASYNC_JOBS = """
@swarmd.job(name="AsyncRecord")
async def async_record(token):
    await asyncio.sleep(0.001)
    note("done", token, os.getpid(), swarmd.current_job().jid)


@swarmd.job(name="AsyncFail")
async def async_fail(token):
    await asyncio.sleep(0)
    raise ValueError(f"async boom {token}")


@swarmd.job(name="AsyncBlock")
async def async_block(token):
    note("start", token, os.getpid())
    try:
        await await_flag(token)
    except asyncio.CancelledError:
        note("cancelled", token)
        raise
    note("done", token, os.getpid())


@swarmd.job(name="ReturnsCoroutine")
def returns_coroutine(token):
    note("called", token)
    return asyncio.sleep(0)
"""


def test_async_jobs_run_next_to_sync_ones_and_are_counted(app: App) -> None:
    d = start(app, jobs_module(app, ASYNC_JOBS))
    jids = {app.enqueue("AsyncRecord", f"a{i}"): f"a{i}" for i in range(20)}
    for i in range(20):
        app.enqueue("Record", f"s{i}")
    tokens = [f"a{i}" for i in range(20)] + [f"s{i}" for i in range(20)]
    app.wait_tokens(tokens)
    assert app.count() == dict.fromkeys(tokens, 1)
    ran = {e[1]: e[3] for e in app.entries() if e[1].startswith("a")}
    assert {jid: token for token, jid in ran.items()} == jids  # current_job() inside the coroutine
    wait_until(lambda: int(app.r.get("stat:processed") or 0) == 40, 10, what="40 processed")
    app.wait_inflight_empty()
    stop(d)
    assert len(log_lines(d, "class=AsyncRecord")) == 20  # a `done` line each


def test_an_async_job_that_raises_is_retried_like_any_other(app: App) -> None:
    d = start(app, jobs_module(app, ASYNC_JOBS))
    jid = app.enqueue("AsyncFail", "x")
    wait_until(lambda: app.r.zcard("retry") == 1, 10, what="the job in retry")
    [job] = zset_jobs(app, "retry")
    assert (job["jid"], job["error_class"], job["error_message"]) == (jid, "ValueError", "async boom x")
    assert job["retry_count"] == 0
    wait_until(lambda: int(app.r.get("stat:failed") or 0) == 1, 10, what="stat:failed == 1")
    assert any(f"jid={jid} INFO: fail:" in line for line in d.lines())


def test_an_async_job_holds_a_processor_slot_while_it_runs(app: App) -> None:
    d = start(app, jobs_module(app, ASYNC_JOBS), concurrency=1)
    app.enqueue("AsyncBlock", "slow")
    app.enqueue("Record", "next")
    app.wait_tokens(["slow"], phase="start")
    identity = app.wait_booted(d)
    wait_until(lambda: app.r.hlen(f"{identity}:work") == 1, 10, what="the async job listed as busy")
    # The one processor waits for the coroutine: the sync job is still in its queue, not run.
    assert app.r.llen("queue:default") == 1
    assert app.tokens() == []
    app.flag("slow")
    app.wait_tokens(["slow", "next"])
    assert app.tokens() == ["slow", "next"]


def test_a_hard_stop_cancels_a_running_async_job_and_pushes_it_back(app: App) -> None:
    module = jobs_module(app, ASYNC_JOBS)
    d = start(app, module, timeout=0.5)
    raw = app.raw_job("AsyncBlock", "long")
    app.r.lpush("queue:default", raw)
    app.wait_tokens(["long"], phase="start")
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert app.tokens("cancelled") == ["long"]  # its CancelledError cleanup ran
    assert app.r.lrange("queue:default", 0, -1) == [raw]  # back, unchanged, not in retry
    assert app.r.zcard("retry") == 0 and int(app.r.get("stat:failed") or 0) == 0
    assert log_lines(d, "INFO: cancelled by the stop")
    app.flag("long")
    start(app, module)
    app.wait_tokens(["long"])


def test_a_plain_job_returning_a_coroutine_fails_with_a_clear_message(app: App) -> None:
    d = start(app, jobs_module(app, ASYNC_JOBS))
    app.enqueue("ReturnsCoroutine", "c")
    wait_until(lambda: app.r.zcard("retry") == 1, 10, what="the job in retry")
    [job] = zset_jobs(app, "retry")
    assert job["error_class"] == "TypeError"
    assert job["error_message"] == (
        "job function ReturnsCoroutine returned a coroutine but is not `async def`, so it was not run: "
        "declare the function `async def` (a decorator may have hidden that it is one)"
    )
    stop(d)
    assert "never awaited" not in d.output()


# -- unknown names, the boot line, require -----------------------------------------------------------------


def test_an_unknown_name_warns_once_with_a_suggestion_and_keeps_being_retried(app: App) -> None:
    d = app.start(config=app.config())
    for i in range(3):
        app.enqueue("Recrod", f"r{i}")
    wait_until(lambda: app.r.zcard("retry") == 3, 10, what="3 jobs in retry")
    assert {j["error_class"] for j in zset_jobs(app, "retry")} == {"swarmd.errors.UnknownJob"}
    [message] = {j["error_message"] for j in zset_jobs(app, "retry")}
    assert message.startswith("no job function is registered as 'Recrod' (did you mean 'Record'")
    stop(d)
    [warning] = [line for line in d.lines() if "WARNING" in line and "Recrod" in line]
    assert f"WARNING: {message}; retried as usual" in warning
    assert "Traceback" not in d.output()


def test_the_boot_line_names_config_environment_and_registered_jobs(app: App) -> None:
    config = app.config(require=[JOBS_MODULE])
    d = app.start("-e", "staging", config=config, require=False)
    app.wait_booted(d)
    d.wait_log("booted: concurrency")
    [line] = log_lines(d, "booted: concurrency")
    found = re.search(r"(\d+) job function\(s\) registered, config (\S+) \(environment staging\)", line)
    assert found is not None, line
    assert int(found[1]) == JOBS_SOURCE.count("@swarmd.job") and found[2] == str(config)
    assert "WARNING" not in d.output()


def test_zero_registered_jobs_is_a_warning_at_boot(app: App) -> None:
    (app.root / "nojobs.py").write_text("def helper():\n    pass\n")
    d = app.start("-r", "nojobs", config=app.config(), require=False)
    d.wait_log("no job functions are registered")
    [line] = log_lines(d, "no job functions are registered")
    assert " WARNING: " in line and "require" in line
    assert "0 job function(s) registered" in d.output()


def test_a_require_flag_adds_to_the_config_files_require(app: App) -> None:
    module = jobs_module(app, ASYNC_JOBS)
    config = app.config(require=[JOBS_MODULE])
    app.start("-r", module, config=config, require=False)
    app.enqueue("Record", "from-the-file")
    app.enqueue("AsyncRecord", "from-the-flag")
    app.wait_tokens(["from-the-file", "from-the-flag"])


# -- the app's logging and print() -------------------------------------------------------------------------

LOGGING_JOBS = """
@swarmd.job(name="Chatty")
def chatty(token):
    log.info("info from the app %s", token)
    log.debug("debug from the app %s", token)
    logging.getLogger().warning("root warning %s", token)
    print("printed", token)
    print("to stderr", token, file=sys.stderr)
    note("done", token)
"""


def test_app_logging_and_print_in_a_job_reach_the_log_with_class_and_jid(app: App) -> None:
    d = start(app, jobs_module(app, LOGGING_JOBS))
    jid = app.enqueue("Chatty", "t1")
    app.wait_tokens(["t1"])
    stop(d)
    context = f"class=Chatty jid={jid}"
    assert log_lines(d, "info from the app t1") == [
        line for line in d.lines() if f"{context} INFO: info from the app t1" in line
    ]
    for text in ("INFO: info from the app t1", "WARNING: root warning t1", "INFO: printed t1"):
        [line] = log_lines(d, text)
        assert f"{context} {text}" in line, line
    [line] = log_lines(d, "to stderr t1")
    assert f"{context} WARNING: to stderr t1" in line
    assert not log_lines(d, "debug from the app")  # INFO is the configured level


def test_verbose_shows_the_apps_debug_lines(app: App) -> None:
    d = start(app, jobs_module(app, LOGGING_JOBS), "-v")
    app.enqueue("Chatty", "t2")
    app.wait_tokens(["t2"])
    stop(d)
    [line] = log_lines(d, "debug from the app t2")
    assert "DEBUG: debug from the app t2" in line


def test_app_logging_goes_to_the_logfile_as_json(app: App) -> None:
    logfile = app.root / "log" / "swarmd.log"
    d = start(app, jobs_module(app, LOGGING_JOBS), logfile=str(logfile), log_format="json")
    jid = app.enqueue("Chatty", "t3")
    app.wait_tokens(["t3"])
    stop(d)
    records = [json.loads(line) for line in logfile.read_text().splitlines()]
    ours = {r["message"]: r for r in records if r["jid"] == jid}
    assert {"info from the app t3", "root warning t3", "printed t3", "to stderr t3", "done: "} <= {
        m if not m.startswith("done: ") else "done: " for m in ours
    }
    info = ours["info from the app t3"]
    assert (info["level"], info["class"], info["logger"]) == ("INFO", "Chatty", "appjobs")
    assert {"time", "pid", "tid"} <= set(info)
    assert "t3" not in d.output()  # nothing of it on stderr


def test_app_logging_goes_to_syslog(app: App, tmp_path: Path) -> None:
    address = str(tmp_path / "syslog.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    got: list[str] = []
    # Read all along, as a syslog daemon does: an unread socket fills up and blocks the sender.
    reader = threading.Thread(target=lambda: _read_datagrams(receiver, got), daemon=True)
    reader.start()
    try:
        d = start(app, jobs_module(app, LOGGING_JOBS), syslog={"ident": "myapp", "address": address})
        jid = app.enqueue("Chatty", "t4")
        app.wait_tokens(["t4"])
        wait_until(lambda: any("info from the app t4" in g for g in got), 10, what="the app's syslog line")
        stop(d)
    finally:
        receiver.shutdown(socket.SHUT_RDWR)
        receiver.close()
        reader.join(5)
    [line] = [g for g in got if "info from the app t4" in g]
    expected = rf"<30>myapp\[\d+\]: pid=\d+ tid=\w+ class=Chatty jid={jid} INFO: info from the app t4"
    assert re.fullmatch(expected, line), line
    assert "t4" not in d.output()


def _read_datagrams(sock: socket.socket, into: list[str]) -> None:
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        into.append(data.decode(errors="replace"))


# -- the job context ---------------------------------------------------------------------------------------

CONTEXT_JOBS = """
def describe(job):
    if job is None:
        return None
    return {
        "jid": job.jid, "name": job.name, "queue": job.queue, "args": job.args, "kwargs": job.kwargs,
        "retry_count": job.retry_count, "enqueued_at": job.enqueued_at, "created_at": job.created_at,
    }


@swarmd.job(name="WhoAmI")
def who_am_i(token, *, extra=None):
    job = swarmd.current_job()
    seen = {"job": describe(job)}
    plain = threading.Thread(target=lambda: seen.update(plain=describe(swarmd.current_job())))
    ctx = contextvars.copy_context()
    copied = threading.Thread(target=ctx.run, args=(lambda: seen.update(copied=swarmd.current_job().jid),))
    logger_thread = threading.Thread(target=job.logger.info, args=("from a plain thread %s", token))
    for t in (plain, copied, logger_thread):
        t.start()
        t.join()
    note("done", token, json.dumps(seen, separators=(",", ":")))


@swarmd.job(name="AsyncWhoAmI")
async def async_who_am_i(token):
    note("done", token, json.dumps(describe(swarmd.current_job()), separators=(",", ":")))
"""


def context_seen(app: App, token: str) -> Any:
    [entry] = [e for e in app.entries() if e[1] == token]
    return json.loads(entry[2])


def test_current_job_inside_a_job_its_threads_and_an_async_job(app: App) -> None:
    d = start(app, jobs_module(app, CONTEXT_JOBS))
    jid = app.client.enqueue("WhoAmI", ["w1"], {"extra": 5}, {"queue": "default"})
    async_jid = app.enqueue("AsyncWhoAmI", "w2")
    app.wait_tokens(["w1", "w2"])
    seen = context_seen(app, "w1")
    job = seen["job"]
    assert (job["jid"], job["name"], job["queue"]) == (jid, "WhoAmI", "default")
    assert (job["args"], job["kwargs"], job["retry_count"]) == (["w1"], {"extra": 5}, 0)
    assert job["created_at"] <= job["enqueued_at"]
    assert seen["plain"] is None  # a plain Thread does not inherit context variables
    assert seen["copied"] == jid  # copy_context().run does
    assert context_seen(app, "w2")["jid"] == async_jid
    stop(d)
    [line] = log_lines(d, "from a plain thread w1")
    assert f"class=WhoAmI jid={jid} INFO: from a plain thread w1" in line


def test_retry_count_counts_the_earlier_failures(app: App) -> None:
    start(app, jobs_module(app, CONTEXT_JOBS))
    job = payload.build("WhoAmI", ["again"], None, {"queue": "default"})
    job.update(retry_count=1, error_class="ValueError", error_message="x")  # failed twice before
    app.r.lpush("queue:default", payload.encode(payload.for_queue(job)))
    app.wait_tokens(["again"])
    assert context_seen(app, "again")["job"]["retry_count"] == 2


# -- server middleware -------------------------------------------------------------------------------------

MIDDLEWARE_JOBS = """
@swarmd.server_middleware
def outer(job, call_next):
    note("mw", "outer>", job.name, job.jid)
    result = call_next()
    note("mw", "outer<", result)
    return result


@swarmd.server_middleware
def gate(job, call_next):
    if job.args and job.args[0] == "skip":
        note("mw", "skipped", job.jid)
        return None
    if job.args and job.args[0] == "mw-bug":
        raise KeyError("tenant_id")
    return call_next()


@swarmd.job(name="Answer")
def answer(token):
    note("done", token)
    return 42
"""


def test_server_middleware_wraps_each_job_in_order_and_sees_its_result(app: App) -> None:
    start(app, jobs_module(app, MIDDLEWARE_JOBS))
    jid = app.enqueue("Answer", "a1")
    app.wait_tokens(["a1"])
    wait_until(lambda: ["mw", "outer<", "42"] in app.entries(), 10, what="the outer middleware's end")
    assert app.entries() == [["mw", "outer>", "Answer", jid], ["done", "a1"], ["mw", "outer<", "42"]]


def test_a_middleware_that_skips_the_job_counts_it_done(app: App) -> None:
    start(app, jobs_module(app, MIDDLEWARE_JOBS))
    jid = app.enqueue("Answer", "skip")
    wait_until(lambda: int(app.r.get("stat:processed") or 0) == 1, 10, what="the job counted")
    assert ["mw", "skipped", jid] in app.entries()
    assert app.tokens() == []
    app.wait_inflight_empty()
    assert app.r.zcard("retry") == 0 and int(app.r.get("stat:failed") or 0) == 0


def test_a_raising_middleware_fails_the_job_once_with_one_error_line(app: App) -> None:
    d = start(app, jobs_module(app, MIDDLEWARE_JOBS))
    jid = app.enqueue("Answer", "mw-bug")
    wait_until(lambda: app.r.zcard("retry") == 1, 10, what="the job in retry")
    [job] = zset_jobs(app, "retry")
    assert (job["jid"], job["error_class"], job["error_message"]) == (jid, "KeyError", "'tenant_id'")
    stop(d)
    assert app.tokens() == []  # never ran, and never twice
    [error] = [line for line in d.lines() if " ERROR: " in line]
    assert error.endswith(
        f"class=Answer jid={jid} ERROR: server middleware appjobs.gate raised; the job counts as failed"
    )
    assert "KeyError: 'tenant_id'" in d.output()  # its traceback follows


# -- lifecycle hooks ---------------------------------------------------------------------------------------

HOOK_JOBS = """
@swarmd.on_boot
def boot():
    note("boot", os.getpid())


@swarmd.on_startup
def startup():
    note("startup", os.getpid())


@swarmd.on_shutdown
def shutdown():
    note("shutdown", os.getpid())


@swarmd.on_failure
def broken_reporter(job, exc):
    raise RuntimeError("the error tracker is down")


@swarmd.on_failure
def failure(job, exc):
    note("failure", job.jid, job.name, type(exc).__name__, job.retry_count)


@swarmd.on_death
def death(job, exc):
    note("death", job.jid, job.name, type(exc).__name__)


@swarmd.job(name="Ok")
def ok(token):
    note("done", token, os.getpid())


@swarmd.job(name="Boom")
def boom(token):
    raise ValueError(token)
"""


def test_startup_runs_in_each_worker_before_jobs_and_shutdown_after_the_last(app: App) -> None:
    d = start(app, jobs_module(app, HOOK_JOBS), "-p", "2")
    app.enqueue("Ok", "o1")
    app.wait_tokens(["o1"])
    wait_until(lambda: len(app.tokens("startup")) == 2, 10, what="both workers' startup hooks")
    stop(d)
    phases = [e[0] for e in app.entries()]
    pids = {phase: sorted(e[1] for e in app.entries() if e[0] == phase) for phase in ("startup", "shutdown")}
    assert pids["startup"] == pids["shutdown"] and len(set(pids["startup"])) == 2
    assert str(d.pid) not in pids["startup"]  # in the workers, not the supervisor
    job_pid = next(e[2] for e in app.entries() if e[0] == "done")
    worker_phases = [e[0] for e in app.entries() if e[-1] == job_pid or e[1] == job_pid]
    assert worker_phases == ["startup", "done", "shutdown"]
    assert "boot" not in phases  # no preload: the supervisor never imported the module
    warnings = log_lines(d, "on_boot hook(s) appjobs.boot did not run")
    assert len(warnings) == 2 and all(" WARNING: " in line for line in warnings)  # one per worker


def test_failure_and_death_hooks_get_the_job_and_the_exception(app: App) -> None:
    d = start(app, jobs_module(app, HOOK_JOBS))
    retried = app.enqueue("Boom", "b1", retry=3)
    killed = app.enqueue("Boom", "b2", retry=0)
    wait_until(lambda: app.r.zcard("retry") == 1 and app.r.zcard("dead") == 1, 10, what="retry and dead")
    wait_until(lambda: len(app.tokens("failure")) == 2 and app.tokens("death"), 10, what="the hooks")
    assert sorted(e for e in app.entries() if e[0] == "failure") == sorted(
        [["failure", retried, "Boom", "ValueError", "0"], ["failure", killed, "Boom", "ValueError", "0"]]
    )
    assert [e for e in app.entries() if e[0] == "death"] == [["death", killed, "Boom", "ValueError"]]
    stop(d)
    # The raising reporter: one ERROR (with traceback) per failure, and the failures are stored anyway.
    errors = [line for line in d.lines() if " ERROR: " in line]
    assert len(errors) == 2
    assert all("on_failure hook appjobs.broken_reporter raised; carrying on" in line for line in errors)
    assert d.output().count("RuntimeError: the error tracker is down") == 2


def test_a_raising_startup_hook_fails_the_boot_with_exit_70_and_one_line(app: App) -> None:
    module = jobs_module(
        app,
        """
        @swarmd.on_startup
        def check_settings():
            raise RuntimeError("SECRET_KEY is not set")


        @swarmd.job(name="Never")
        def never():
            pass
        """,
    )
    d = start(app, module)
    assert d.wait_exit() == 70
    [line] = log_lines(d, "check_settings")
    assert line.endswith(
        "ERROR: on_startup hook appjobs.check_settings failed: RuntimeError: SECRET_KEY is not set"
    )
    assert "Traceback" not in d.output()


def test_on_boot_runs_once_in_the_supervisor_before_any_worker_with_preload(app: App) -> None:
    d = start(app, jobs_module(app, HOOK_JOBS), "-p", "2", preload=True)
    wait_until(lambda: len(app.tokens("startup")) == 2, 10, what="both workers' startup hooks")
    assert app.entries()[0] == ["boot", str(d.pid)]
    assert app.tokens("boot") == [str(d.pid)]
    stop(d)
    assert not log_lines(d, "did not run")


def test_a_poison_job_calls_on_death_in_the_supervisor_with_preload(app: App) -> None:
    module = jobs_module(app, HOOK_JOBS)
    raw = app.raw_job("Crash", "p1")
    jid = json.loads(raw)["jid"]
    app.r.lpush("queue:default", raw)
    start(app, module, preload=True, concurrency=1)
    wait_until(lambda: app.tokens("death"), 60, what="on_death for the poison job")
    assert [e for e in app.entries() if e[0] == "death"] == [["death", jid, "Crash", "PoisonJob"]]
    assert app.r.zcard("dead") == 1


@pytest.mark.parametrize("where", ["stderr", "logfile"])
def test_swarmds_own_lines_survive_an_apps_dict_config_in_startup(app: App, where: str) -> None:
    module = jobs_module(
        app,
        """
        import logging.config


        @swarmd.on_startup
        def configure_logging():  # what django.setup() does with a LOGGING setting
            logging.config.dictConfig({"version": 1, "loggers": {"appjobs": {"level": "INFO"}}})


        @swarmd.job(name="Ok")
        def ok(token):
            note("done", token)
        """,
    )
    logfile = app.root / "swarmd.log"
    d = start(app, module, **({"logfile": str(logfile)} if where == "logfile" else {}))
    jid = app.enqueue("Ok", "o1")
    app.wait_tokens(["o1"])
    stop(d)
    text = logfile.read_text() if where == "logfile" else d.output()
    assert f"jid={jid} INFO: done:" in text
    assert "booted:" in text and "bye" in text
