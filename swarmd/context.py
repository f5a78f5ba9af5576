"""The job that is running: `current_job()` and the `JobContext` object the hooks receive.

Inside a job (its function, the server middleware around it, and the ``on_failure``/``on_death``
hooks), ``swarmd.current_job()`` returns a `JobContext`; outside of one it returns None. It lives in a
`contextvars.ContextVar`, so each processor thread sees its own job, and an ``async def`` job sees it
too (its task is started with a copy of the processor thread's context). A plain `threading.Thread`
started by a job does not inherit context variables: start it as
``threading.Thread(target=contextvars.copy_context().run, args=(fn,))``, or hand it ``job =
swarmd.current_job()`` (its ``logger`` carries the class and jid). `asyncio.to_thread` and
``loop.run_in_executor`` copy the context themselves.

`swarmd.logs` reads the running job from here to put ``class=``/``jid=`` in every line logged inside
a job, the app's own lines included; this module imports nothing above `swarmd.payload` for that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from swarmd.payload import read_timestamp

__all__ = ["JobContext", "JobLogger", "activate", "current_job", "current_var", "running", "start"]

Running = list[Any]
"""What the context variable holds during a run: ``[payload, name, jid, JobContext | None]``. A list
(built in C) rather than the `JobContext` itself: a processor sets one per job, at thousands of jobs a
second, and most jobs never ask for their context; `current_job()` builds it on first use and keeps it,
so every caller in that run gets the same object."""

current_var: ContextVar[Running | None] = ContextVar("swarmd_current_job", default=None)


def current_job() -> JobContext | None:
    """The job running in this thread (or asyncio task), or None outside a job."""
    cell = current_var.get()
    if cell is None:
        return None
    job: JobContext | None = cell[3]
    if job is None:
        job = cell[3] = JobContext(cell[0], cell[1], cell[2])
    return job


def running() -> tuple[str, str] | None:
    """The running job's (name, jid), without building its `JobContext` (for log lines)."""
    cell = current_var.get()
    return None if cell is None else (cell[1], cell[2])


def start(payload: dict[str, Any], name: str, jid: str) -> Token[Running | None]:
    """Make this job the current one; `current_var.reset(token)` ends it."""
    return current_var.set([payload, name, jid, None])


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that puts the job's ``class=`` and ``jid=`` in each line, from whatever thread it is used."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), **(self.extra or {})}
        return msg, kwargs


class JobContext:
    """One run of a job, as its function, middleware and hooks see it.

    ``name`` is the job's ``class`` (the name its function is registered under), ``args``/``kwargs`` its
    arguments as decoded from JSON, ``retry_count`` how many times it failed before this run (0 on the
    first run, 1 on the first retry; Sidekiq's payload field, which is absent on the first run and 0 on
    the first retry, plus one), ``enqueued_at``/``created_at`` epoch seconds (None when the payload has
    none), and ``payload`` the whole job hash as fetched (extra fields such as a client middleware's
    included; what a middleware changes in it is what a retry stores).
    """

    __slots__ = ("_logger", "jid", "name", "payload")

    def __init__(self, payload: dict[str, Any], name: str, jid: str) -> None:
        self.payload = payload
        self.name = name
        self.jid = jid
        self._logger: JobLogger | None = None

    @property
    def queue(self) -> str:
        return str(self.payload.get("queue") or "default")

    @property
    def args(self) -> list[Any]:
        args = self.payload.get("args")
        return args if isinstance(args, list) else []

    @property
    def kwargs(self) -> dict[str, Any]:
        kwargs = self.payload.get("kwargs")
        return kwargs if isinstance(kwargs, dict) else {}

    @property
    def retry_count(self) -> int:
        count = self.payload.get("retry_count")
        return count + 1 if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 0

    @property
    def enqueued_at(self) -> float | None:
        return read_timestamp(self.payload.get("enqueued_at"))

    @property
    def created_at(self) -> float | None:
        return read_timestamp(self.payload.get("created_at"))

    @property
    def logger(self) -> JobLogger:
        """The ``swarmd.job`` logger with this job's class and jid in every line (also in other threads)."""
        if self._logger is None:
            self._logger = JobLogger(
                logging.getLogger("swarmd.job"), {"job_class": self.name, "jid": self.jid}
            )
        return self._logger

    def __repr__(self) -> str:
        return f"<swarmd job {self.name} jid={self.jid}>"


@contextmanager
def activate(job: JobContext) -> Iterator[JobContext]:
    """Make ``job`` the current job of this thread (or task) for the ``with`` block."""
    token = current_var.set([job.payload, job.name, job.jid, job])
    try:
        yield job
    finally:
        current_var.reset(token)
