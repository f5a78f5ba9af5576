"""Ruby enqueues, swarmd runs: Sidekiq 6.4.1's ``Sidekiq::Client`` feeding Python job functions."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.interop.helpers import INTEROP, NASTY, Interop, now

pytestmark = INTEROP


def test_client_push_and_push_bulk_run_in_swarmd_with_identical_args(interop: Interop) -> None:
    interop.start_swarmd()
    jid = interop.ruby("push", {"class": "HardWorker", "args": ["push", *NASTY]})
    bulk = interop.ruby("push_bulk", {"class": "HardWorker", "args": [["bulk", i, NASTY] for i in range(3)]})
    kw = interop.ruby("push", {"class": "HardWorker", "args": ["kwargs"], "kwargs": {"width": 3, "x": None}})
    assert len({jid, kw, *bulk}) == 5

    got = sorted(interop.wait_records("HardWorker", 5), key=lambda rec: repr(rec["args"]))
    assert [rec["args"] for rec in got] == sorted(
        [["push", *NASTY], ["kwargs"], *(["bulk", i, NASTY] for i in range(3))], key=repr
    )
    # `kwargs` is swarmd's own field: a Ruby producer may set it, and the job function gets them.
    assert [rec["kwargs"] for rec in got if rec["args"] == ["kwargs"]] == [{"width": 3, "x": None}]
    # Sidekiq's API counts what swarmd processed.
    wait_until(lambda: interop.state()["stats"]["processed"] == 5, 10, "Stats#processed == 5")


def test_client_push_with_at_runs_when_due_in_swarmd(interop: Interop) -> None:
    interop.start_swarmd()
    soon = now() + 1.0
    later = now() + 3600
    soon_jid = interop.ruby("push", {"class": "HardWorker", "args": ["soon", *NASTY], "at": soon})
    later_jid = interop.ruby("push", {"class": "HardWorker", "args": ["later", NASTY], "at": later})
    bulk_jids = interop.ruby(
        "push_bulk", {"class": "HardWorker", "args": [["bulk-at", 0], ["bulk-at", 1]], "at": [soon, soon]}
    )

    # swarmd's scheduler moves the due ones to their queue: they run with their args intact.
    records = interop.wait_records("HardWorker", 3)
    assert sorted(rec["args"] for rec in records if rec["args"][0] != "soon") == [
        ["bulk-at", 0],
        ["bulk-at", 1],
    ]
    assert [rec["args"] for rec in records if rec["args"][0] == "soon"] == [["soon", *NASTY]]
    assert soon_jid not in bulk_jids

    # The far one waits in `schedule`, where Sidekiq's ScheduledSet shows it; the Web UI's
    # "Add to queue" (ScheduledSet entry #add_to_queue) hands it to swarmd now.
    scheduled = interop.state()["scheduled"]
    assert [(e["jid"], e["args"]) for e in scheduled] == [(later_jid, ["later", NASTY])]
    assert scheduled[0]["score"] == pytest.approx(later, abs=0.01)
    interop.ruby("scheduled_add_to_queue", later_jid)
    records = interop.wait_records("HardWorker", 4)
    assert ["later", NASTY] in [rec["args"] for rec in records]
    assert interop.r.zcard("schedule") == 0
