"""BusyJobs: the running jobs as processor threads write them and the heartbeat reads them."""

from __future__ import annotations

import threading

from swarmd.busy import BusyJob, BusyJobs


def test_start_finish_snapshot_and_len() -> None:
    busy = BusyJobs()
    assert len(busy) == 0 and not busy
    busy.start("t1", "default", b'{"jid":"a"}', 100)
    busy.start("t2", "low", b'{"jid":"b"}', 101)
    snap = busy.snapshot()
    assert snap == {"t1": BusyJob("default", b'{"jid":"a"}', 100), "t2": BusyJob("low", b'{"jid":"b"}', 101)}
    queue, raw, run_at = snap["t1"]  # what the heartbeat unpacks
    assert (queue, raw, run_at) == ("default", b'{"jid":"a"}', 100)
    busy.finish("t1")
    busy.finish("t1")  # twice is harmless
    assert len(busy) == 1
    assert "t1" in snap  # a snapshot is a copy: later changes do not reach it


def test_readers_never_see_a_table_being_changed() -> None:
    busy = BusyJobs()
    stop = threading.Event()
    errors: list[BaseException] = []

    def processor(n: int) -> None:
        try:
            while not stop.is_set():
                for i in range(50):
                    busy.start(f"{n}-{i}", "default", b"{}", i)
                for i in range(50):
                    busy.finish(f"{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=processor, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(2_000):
            snap = busy.snapshot()
            assert all(isinstance(job, BusyJob) for job in snap.values())
            assert 0 <= len(busy) <= 200
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert len(busy) == 0
