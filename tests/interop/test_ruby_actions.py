"""Ruby-side actions act on swarmd: retrying and deleting from Sidekiq's sets, and the Busy page's
Quiet/Stop (``Sidekiq::Process#quiet!``/``#stop!`` push TSTP/TERM to ``<identity>-signals``)."""

from __future__ import annotations

import os

from tests.conftest import wait_until
from tests.interop.helpers import INTEROP, Interop
from tests.replies import jid

pytestmark = INTEROP


def test_retry_one_retry_now_and_retry_all_run_in_swarmd(interop: Interop) -> None:
    interop.start_swarmd()
    jids = {key: interop.client.push({"class": "FailOnceJob", "args": [key, {"k": key}]}) for key in "abcd"}
    wait_until(lambda: interop.r.zcard("retry") == 4, 10, "4 first failures in `retry`")

    interop.ruby("retry_one", jids["a"])  # SortedEntry#retry: what the API offers
    assert [r["args"] for r in interop.wait_records("FailOnceJob", 1)] == [["a", {"k": "a"}]]

    entry = next(e for e in interop.state()["retries"] if e["jid"] == jids["b"])
    page = interop.web(f"/retries/{entry['score']}-{jids['b']}", "POST", retry="Retry Now")
    assert page["status"] == 302  # the Web UI's "Retry Now" button
    interop.wait_records("FailOnceJob", 2)

    interop.ruby("retry_all")  # the Web UI's "Retry All"
    records = interop.wait_records("FailOnceJob", 4)
    assert sorted(r["args"][0] for r in records) == ["a", "b", "c", "d"]
    assert interop.r.zcard("retry") == 0


def test_dead_jobs_deleted_and_retried_from_ruby(interop: Interop) -> None:
    interop.start_swarmd()
    doomed = interop.client.push({"class": "FailingJob", "args": ["doomed"], "retry": 0})
    revived = interop.client.push({"class": "FailOnceJob", "args": ["revived"], "retry": 0})
    wait_until(lambda: interop.r.zcard("dead") == 2, 10, "2 jobs in `dead`")
    assert {e["jid"] for e in interop.state()["dead"]} == {doomed, revived}

    interop.ruby("dead_delete", doomed)
    assert [e["jid"] for e in interop.state()["dead"]] == [revived]
    assert interop.r.zcard("dead") == 1

    interop.ruby("dead_retry_all")
    assert [r["args"] for r in interop.wait_records("FailOnceJob", 1)] == [["revived"]]
    assert interop.r.zcard("dead") == 0


def test_quiet_and_stop_from_ruby(interop: Interop) -> None:
    daemon = interop.start_swarmd()
    ident = daemon.identity
    pid = int(ident.split(":")[1])
    busy_jid = interop.client.push({"class": "BlockingJob", "args": ["never"]})
    wait_until(lambda: interop.r.hget(ident, "busy") == "1", 10, "the blocking job to start")

    interop.ruby("quiet", ident)
    wait_until(lambda: interop.state()["processes"][0]["stopping"], 10, "ProcessSet to show it quiet")
    # Quiet: a job pushed now is not fetched, however many beats go by.
    waiting_jid = interop.client.push({"class": "HardWorker", "args": ["after quiet"]})
    interop.wait_beats(ident, 3)
    assert [[j["jid"] for j in q["jobs"]] for q in interop.state()["queues"]] == [[waiting_jid]]

    interop.ruby("dump_threads", ident)  # TTIN: every thread's stack in the log
    wait_until(lambda: "swarmd-processor" in daemon.output(), 10, "TTIN's thread dump")

    interop.ruby("stop", ident)
    # That worker stops: the job still running at its shutdown timeout goes back to its queue.
    wait_until(lambda: not interop.r.sismember("processes", ident), 15, "the worker to leave `processes`")
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 15, "the worker to exit")
    assert ident not in [p["identity"] for p in interop.state()["processes"]]

    # What follows is the supervisor's policy, not Sidekiq's format: it replaces the worker (as
    # sidekiqswarm re-forks a child), or it exits once no worker is left. Either way no job is lost.
    wait_until(
        lambda: daemon.exited() or interop.identity_of(daemon) not in (None, ident), 15, "replace or exit"
    )
    if daemon.exited():
        assert daemon.proc.returncode == 0
        queued = [j["jid"] for q in interop.state()["queues"] for j in q["jobs"]]
        assert sorted(queued) == sorted([jid(busy_jid), jid(waiting_jid)])
        interop.start_swarmd(tag="second")
    else:
        replacement = interop.identity_of(daemon)
        wait_until(
            lambda: (
                [(w["process"], w["job"]["jid"]) for w in interop.state()["workers"]]
                == [(replacement, busy_jid)]
            ),
            15,
            "the replacement worker to run the pushed-back job",
        )
    interop.flag("never")
    assert [r["args"] for r in interop.wait_records("BlockingJob", 1)] == [["never"]]
    assert [r["args"] for r in interop.wait_records("HardWorker", 1)] == [["after quiet"]]
