"""`swarmd.current_job()` and the `JobContext` it returns (the object the hooks get too)."""

from __future__ import annotations

import asyncio
import contextvars
import io
import re
import threading
from collections.abc import Iterator

import pytest

import swarmd
from swarmd.context import JobContext, activate
from swarmd.logs import reset_logging, setup_logging


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    reset_logging()
    yield
    reset_logging()


PAYLOAD = {
    "class": "myapp.jobs.resize",
    "jid": "ab12cd",
    "queue": "images",
    "args": ["a.png", 100],
    "kwargs": {"fast": True},
    "created_at": 1795884600.25,
    "enqueued_at": 1795884601000,  # Sidekiq 8 writes integer milliseconds
    "tenant": 7,
}


def make(**fields: object) -> JobContext:
    data = {**PAYLOAD, **fields}
    return JobContext(data, str(data["class"]), str(data["jid"]))


def test_fields_come_from_the_payload() -> None:
    job = make()
    assert (job.jid, job.name, job.queue) == ("ab12cd", "myapp.jobs.resize", "images")
    assert (job.args, job.kwargs) == (["a.png", 100], {"fast": True})
    assert job.created_at == 1795884600.25
    assert job.enqueued_at == 1795884601.0
    assert job.payload["tenant"] == 7  # a client middleware's extra field
    assert repr(job) == "<swarmd job myapp.jobs.resize jid=ab12cd>"


@pytest.mark.parametrize(
    ("retry_count", "expected"),
    [(None, 0), (0, 1), (4, 5), ("x", 0), (True, 0)],  # absent on the first run; Sidekiq's 0 = 1st retry
)
def test_retry_count_is_the_number_of_earlier_failures(retry_count: object, expected: int) -> None:
    job = make() if retry_count is None else make(retry_count=retry_count)
    assert job.retry_count == expected


def test_missing_fields_have_safe_values() -> None:
    job = JobContext({"class": "X", "args": []}, "X", "-")
    assert (job.queue, job.kwargs, job.enqueued_at, job.created_at) == ("default", {}, None, None)


def test_current_job_is_none_outside_a_job_and_the_job_inside() -> None:
    assert swarmd.current_job() is None
    job = make()
    with activate(job):
        assert swarmd.current_job() is job
    assert swarmd.current_job() is None


def test_a_copied_context_carries_the_job_into_a_thread_and_a_plain_thread_does_not() -> None:
    job = make()
    seen: dict[str, object] = {}
    with activate(job):
        ctx = contextvars.copy_context()
        plain = threading.Thread(target=lambda: seen.update(plain=swarmd.current_job()))
        copied = threading.Thread(target=ctx.run, args=(lambda: seen.update(copied=swarmd.current_job()),))
        for t in (plain, copied):
            t.start()
            t.join()
    assert seen == {"plain": None, "copied": job}


def test_an_asyncio_task_sees_the_job_it_was_started_in() -> None:
    job = make()

    async def inner() -> object:
        return await asyncio.to_thread(swarmd.current_job)  # to_thread copies the context too

    with activate(job):
        assert asyncio.run(inner()) is job


def test_the_job_logger_adds_class_and_jid_from_any_thread() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    job = make()
    thread = threading.Thread(target=job.logger.info, args=("resized %d files", 3))
    thread.start()
    thread.join()
    line = out.getvalue()
    assert re.search(r" class=myapp\.jobs\.resize jid=ab12cd INFO: resized 3 files\n$", line), line
