"""A test mode for your app's own tests: jobs recorded or run in process, never sent to Redis.

    import swarmd.testing

    with swarmd.testing.fake():             # record instead of push
        signup("ann@example.com")           # calls welcome.perform_async(...)
        assert [j["args"] for j in swarmd.testing.jobs(welcome)] == [["ann@example.com"]]
        swarmd.testing.drain()              # run them (and the jobs they enqueue) here

    with swarmd.testing.inline():           # run each job at once, in the caller
        signup("bob@example.com")

``swarmd.testing.mode("fake" | "inline" | "off")`` does the same as a plain call or a context manager
(leaving the block restores the mode that was on before). The pytest fixtures ``swarmd_fake`` and
``swarmd_inline`` (`swarmd.pytest_plugin`) switch per test and clear the recorded jobs.

Nothing is faked that production would refuse: a job goes through the real client (argument binding,
JSON checks, client middleware) and the test mode receives the very bytes Redis would have received,
decoded again, so a job sees its arguments after a JSON round trip, as in the worker (tuples arrive as
lists). Jobs run by name through the registry, as the worker runs them, so an unregistered name fails
here too, and inside the server middleware with `swarmd.current_job()` set, as in the worker. What is
not reproduced: retries, the lifecycle hooks (on_startup, on_failure, ...), and the daemon's
``delay_allow`` (a `swarmd.delay` call runs whatever its module). ``async def`` jobs run to completion
with `asyncio.run`; a plain function that returns a coroutine fails with `TypeError`, as in the worker.
"""

from __future__ import annotations

import contextvars
import copy
import inspect
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Literal

from swarmd import client, hooks, payload, registry
from swarmd.client import DELAYED, Outgoing
from swarmd.context import JobContext, activate
from swarmd.errors import UnknownJob

Mode = Literal["fake", "inline", "off"]
_MODES = ("fake", "inline", "off")

_lock = threading.RLock()
_mode: Mode = "off"
_recorded: list[dict[str, Any]] = []  # every queue's jobs, in push order; each carries its "queue"


class ModeSwitch:
    """The result of `mode`, `fake` and `inline`: the mode is on already; as a context manager,
    leaving the block restores the mode that was on before."""

    def __init__(self, previous: Mode, mode: Mode) -> None:
        self.previous = previous
        self.mode = mode

    def __enter__(self) -> ModeSwitch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _switch(self.previous)

    def __repr__(self) -> str:
        return f"<swarmd.testing mode {self.mode!r} (was {self.previous!r})>"


def mode(name: Mode) -> ModeSwitch:
    """Switch to ``"fake"`` (record), ``"inline"`` (run at once) or ``"off"`` (push to Redis)."""
    if name not in _MODES:
        raise ValueError(f"swarmd.testing.mode: expected 'fake', 'inline' or 'off', got {name!r}")
    with _lock:
        previous = _mode
        _switch(name)
    return ModeSwitch(previous, name)


def fake() -> ModeSwitch:
    """Record jobs per queue instead of pushing them: see `jobs`, `drain`, `clear`."""
    return mode("fake")


def inline() -> ModeSwitch:
    """Run each job in the caller as it is enqueued; its exception reaches the caller."""
    return mode("inline")


def current() -> Mode:
    """The mode that is on."""
    return _mode


def _switch(name: Mode) -> None:
    global _mode
    with _lock:
        _mode = name
        client.set_sink(None if name == "off" else _receive)


def _receive(outgoing: list[Outgoing]) -> None:
    """The client's sink in fake and inline mode: the bytes Redis would have received."""
    jobs = [_decoded(out) for out in outgoing]
    if _mode == "inline":
        for job in jobs:
            _run(job)
        return
    with _lock:
        _recorded.extend(jobs)


def _decoded(out: Outgoing) -> dict[str, Any]:
    job = payload.decode(out.raw).data
    if out.at is not None:  # a scheduled job: in Redis its time is the score in `schedule`
        job["at"] = out.at
    return job


# -- what was recorded ---------------------------------------------------------------------------------
def _matcher(func_or_name: object) -> Callable[[dict[str, Any]], bool]:
    """A job function, its name, a registered function, or a plain function enqueued with `delay`."""
    if func_or_name is None:
        return lambda job: True
    if isinstance(func_or_name, str):
        name = func_or_name
        return lambda job: job.get("class") == name
    job_name = getattr(func_or_name, "job_name", None)
    if isinstance(job_name, str):
        return lambda job: job.get("class") == job_name
    if callable(func_or_name):
        for registered in registry.registered().values():
            if registered.func is func_or_name:
                found = registered.job_name
                return lambda job: job.get("class") == found
        module = getattr(func_or_name, "__module__", "")
        target = f"{module}:{getattr(func_or_name, '__qualname__', '')}"
        return lambda job: job.get("class") == DELAYED and job.get("args", [None])[:1] == [target]
    raise TypeError(f"swarmd.testing: expected a job function or a job name, got {func_or_name!r:.60}")


def jobs(func_or_name: object = None, *, queue: str | None = None) -> list[dict[str, Any]]:
    """The recorded jobs (payload dicts, in push order) of one job, or of all with no argument.

    ``queue`` keeps those of one queue. A scheduled job carries its run time as ``at`` (epoch
    seconds). The dicts are copies: changing them changes nothing recorded.
    """
    match = _matcher(func_or_name)
    with _lock:
        return [
            copy.deepcopy(job)
            for job in _recorded
            if match(job) and (queue is None or job.get("queue") == queue)
        ]


def clear(func_or_name: object = None) -> None:
    """Forget the recorded jobs of one job, or all of them."""
    match = _matcher(func_or_name)
    with _lock:
        _recorded[:] = [job for job in _recorded if not match(job)]


def drain(func_or_name: object = None, *, max_jobs: int = 100_000) -> int:
    """Run the recorded jobs (of one job, or all) in this process, in push order, scheduled ones
    included without waiting for their time, and the jobs those enqueue, until none are left.

    Returns how many ran. A job's exception reaches the caller; that job is gone from the records and
    the others stay. More than ``max_jobs`` runs raise `RuntimeError` (a job that enqueues itself).
    """
    match = _matcher(func_or_name)
    ran = 0
    while True:
        with _lock:
            index = next((i for i, job in enumerate(_recorded) if match(job)), None)
            if index is None:
                return ran
            if ran >= max_jobs:
                raise RuntimeError(
                    f"swarmd.testing.drain: ran {ran} jobs and more keep coming (a job that enqueues itself?)"
                )
            job = _recorded.pop(index)
        _run(job)
        ran += 1


# -- running a job as the worker would -----------------------------------------------------------------
def _run(job: dict[str, Any]) -> None:
    name: str = job["class"]
    args: list[Any] = job["args"]
    kwargs: dict[str, Any] = job.get("kwargs") or {}
    func: Callable[..., Any]
    if name == DELAYED:
        target = args[0] if args else None
        module = target.split(":", 1)[0] if isinstance(target, str) else ""
        # `delay_allow` belongs to the daemon's config, which a test does not load: allow the target's module.
        func = registry.resolve_delayed(target, [module] if module else [])
        args = args[1:]
    else:
        try:
            func = registry.lookup(name)
        except UnknownJob as exc:
            raise UnknownJob(
                f"{exc} (swarmd.testing runs jobs in this process; for a job that runs elsewhere, "
                "e.g. in Ruby, use fake mode and assert on swarmd.testing.jobs)"
            ) from None
    is_async = inspect.iscoroutinefunction(func)

    def call() -> None:
        result = func(*args, **kwargs)
        if is_async:
            _run_coroutine(result)
        elif inspect.iscoroutine(result):  # as in the worker: only `async def` jobs are awaited
            raise registry.not_async_error(name, result)

    # As the worker runs it: `swarmd.current_job()` is this job, inside the server middleware.
    current = JobContext(job, name, str(job.get("jid", "-")))
    with activate(current):
        hooks.MiddlewareRun(hooks.server_middlewares(), current, call)()


def _run_coroutine(coro: Coroutine[Any, Any, Any]) -> None:
    import asyncio  # here: `import swarmd` stays free of asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    # Enqueued from inside a running event loop (an async test): asyncio.run cannot nest, so the job
    # gets its own loop in a helper thread, and the caller waits for it as for any inline job.
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    context = contextvars.copy_context()  # the job's context (current_job) travels to the thread
    thread = threading.Thread(target=context.run, args=(target,), name="swarmd-testing-job")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
