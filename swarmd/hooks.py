"""Registries of middleware and hooks: the places an app plugs its own code into swarmd.

- client middleware (`client_middleware`): sees every job the client is about to push, may amend it or
  drop it; `swarmd.client` runs them.
- server middleware (`server_middleware`): ``mw(job, call_next)`` wraps every run of a job in a worker;
  it returns ``call_next()``'s result (the job function's), and may observe, time, skip (not call
  ``call_next``: the job counts as done) or raise (the job counts as failed and is retried as usual).
  The first one registered is the outermost. They run in the processor thread, also around an
  ``async def`` job (``call_next()`` then waits for the coroutine on the worker's event loop).
- lifecycle hooks (`on_boot`, `on_startup`, `on_shutdown`, `on_failure`, `on_death`); see README.md
  "Using swarmd in your app" for when each runs.

`swarmd.processor`, `swarmd.worker` and `swarmd.swarm` run them through `MiddlewareRun` and
`run_hooks`/`run_boot_hooks`, which log a hook that raises (one ERROR with its traceback) and never let
it lose or repeat a job.

Each registry is a tuple replaced under a lock: a registration from one thread never disturbs a job
or push that is iterating the old tuple in another. An app registers them at import time, in a module
that ``require`` names (the modules the worker imports).
"""

from __future__ import annotations

import inspect
import logging
import threading
import traceback
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from swarmd.errors import BootError

if TYPE_CHECKING:
    from swarmd.context import JobContext

__all__ = [
    "ClientMiddleware",
    "MiddlewareRun",
    "ServerMiddleware",
    "client_middleware",
    "client_middlewares",
    "describe",
    "on_boot",
    "on_death",
    "on_failure",
    "on_shutdown",
    "on_startup",
    "registered",
    "remove_client_middleware",
    "remove_hook",
    "remove_server_middleware",
    "run_boot_hooks",
    "run_hooks",
    "server_middleware",
    "server_middlewares",
]

log = logging.getLogger("swarmd")

ClientMiddleware = Callable[[dict[str, Any]], dict[str, Any] | None]
"""``mw(payload) -> payload | None``: return the (amended) job dict, or None to drop that push."""

ServerMiddleware = Callable[["JobContext", Callable[[], Any]], Any]
"""``mw(job, call_next) -> call_next()``: wraps each run of a job in a worker."""

Kind = Literal["boot", "startup", "shutdown", "failure", "death"]
KINDS: tuple[Kind, ...] = ("boot", "startup", "shutdown", "failure", "death")

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_client_middleware: tuple[ClientMiddleware, ...] = ()
_server_middleware: tuple[ServerMiddleware, ...] = ()
_hooks: dict[Kind, tuple[Callable[..., Any], ...]] = dict.fromkeys(KINDS, ())


def describe(fn: object) -> str:
    """``module.qualname`` of a hook or middleware, for log lines."""
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}" if module else str(name)


# -- client middleware -----------------------------------------------------------------------------------


def client_middleware(mw: ClientMiddleware) -> ClientMiddleware:
    """Register ``mw`` to run on every job about to be pushed, after those registered before it.

    Returns ``mw``, so it also works as a decorator. Registering the same object again is a no-op.
    """
    global _client_middleware
    if not callable(mw):
        raise TypeError(
            f"client_middleware: expected a callable mw(payload) -> payload | None, got {mw!r:.60}"
        )
    with _lock:
        if mw not in _client_middleware:
            _client_middleware = (*_client_middleware, mw)
    return mw


def remove_client_middleware(mw: ClientMiddleware) -> None:
    """Unregister ``mw`` (no error if it was not registered)."""
    global _client_middleware
    with _lock:
        _client_middleware = tuple(m for m in _client_middleware if m is not mw)


def client_middlewares() -> tuple[ClientMiddleware, ...]:
    """The registered client middleware, in the order they run."""
    return _client_middleware


# -- server middleware -----------------------------------------------------------------------------------


def server_middleware(mw: F) -> F:
    """Register ``mw(job, call_next)`` around every run of a job in a worker, inside those registered
    before it. It must return ``call_next()``'s result (or skip the job by not calling it).

    Returns ``mw``, so it also works as a decorator. Registering the same object again is a no-op. An
    ``async def`` middleware is refused: it would return a coroutine without running the job.
    """
    global _server_middleware
    if not callable(mw):
        raise TypeError(f"server_middleware: expected a callable mw(job, call_next), got {mw!r:.60}")
    if inspect.iscoroutinefunction(mw):
        raise TypeError(
            f"server_middleware: {describe(mw)} is async def; a server middleware is a plain function "
            "(it runs in the processor thread, also around async jobs)"
        )
    with _lock:
        if mw not in _server_middleware:
            _server_middleware = (*_server_middleware, mw)
    return mw


def remove_server_middleware(mw: ServerMiddleware) -> None:
    """Unregister ``mw`` (no error if it was not registered)."""
    global _server_middleware
    with _lock:
        _server_middleware = tuple(m for m in _server_middleware if m is not mw)


def server_middlewares() -> tuple[ServerMiddleware, ...]:
    """The registered server middleware, outermost first."""
    return _server_middleware


class MiddlewareRun:
    """One run of a job through the server middleware chain.

    ``call_next`` is good for one call each (a second call raises `RuntimeError`: a job never runs
    twice in one run). After an exception, `culprit` names the middleware it came from when it was not
    the job's own exception passing through (the processor logs that one as an ERROR).
    """

    __slots__ = ("_chain", "_job", "_job_exc", "_target", "culprit")

    def __init__(
        self, chain: tuple[ServerMiddleware, ...], job: JobContext, target: Callable[[], Any]
    ) -> None:
        self._chain = chain
        self._job = job
        self._target = target
        self._job_exc: BaseException | None = None
        self.culprit: ServerMiddleware | None = None

    def __call__(self) -> Any:
        return self._step(0)

    def _step(self, index: int) -> Any:
        if index == len(self._chain):
            try:
                return self._target()
            except BaseException as exc:
                self._job_exc = exc
                raise
        mw = self._chain[index]
        called = False

        def call_next() -> Any:
            nonlocal called
            if called:
                raise RuntimeError(
                    f"server middleware {describe(mw)} called call_next() twice; the job runs once"
                )
            called = True
            return self._step(index + 1)

        try:
            return mw(self._job, call_next)
        except BaseException as exc:
            if exc is not self._job_exc and self.culprit is None:
                self.culprit = mw  # the innermost middleware the exception came out of
            raise


# -- lifecycle hooks -------------------------------------------------------------------------------------


def _register(kind: Kind, fn: F) -> F:
    if not callable(fn):
        raise TypeError(f"on_{kind}: expected a function, got {fn!r:.60}")
    with _lock:
        if fn not in _hooks[kind]:
            _hooks[kind] = (*_hooks[kind], fn)
    return fn


def on_boot(fn: F) -> F:
    """``fn()`` runs once in the supervisor before it forks the first worker; only with ``preload:
    true`` (without it the supervisor never imports ``require``). It must not open connections or
    start threads: the workers would inherit them. Raising stops the swarm (exit 70)."""
    return _register("boot", fn)


def on_startup(fn: F) -> F:
    """``fn()`` runs in each worker after the fork, right after the ``require`` module that registers it
    is imported (modules listed after that one may rely on it, e.g. on ``django.setup()``), before the
    worker fetches a job. Raising stops that worker from booting (exit 70, one line)."""
    return _register("startup", fn)


def on_shutdown(fn: F) -> F:
    """``fn()`` runs in each worker after its last job (finished or pushed back), before it exits."""
    return _register("shutdown", fn)


def on_failure(fn: F) -> F:
    """``fn(job, exc)`` runs after each failed run of a job, once the failure is stored."""
    return _register("failure", fn)


def on_death(fn: F) -> F:
    """``fn(job, exc)`` runs when a job goes to `dead` (retries exhausted, ``retry: 0``, refused, poison)
    or runs out of retries with ``dead: false``."""
    return _register("death", fn)


def remove_hook(fn: Callable[..., Any]) -> None:
    """Unregister ``fn`` from every lifecycle hook list (no error if it was not registered)."""
    with _lock:
        for kind in KINDS:
            _hooks[kind] = tuple(h for h in _hooks[kind] if h is not fn)


def registered(kind: Kind) -> tuple[Callable[..., Any], ...]:
    """The registered hooks of one kind, in registration order."""
    return _hooks[kind]


Awaiter = Callable[[Coroutine[Any, Any, Any]], Any]


def _call(fn: Callable[..., Any], args: tuple[Any, ...], awaiter: Awaiter | None) -> None:
    result = fn(*args)
    if inspect.iscoroutine(result):  # an async def hook: awaited where the caller says
        if awaiter is None:
            import asyncio  # only the supervisor's on_boot gets here

            asyncio.run(result)
        else:
            awaiter(result)


def run_hooks(kind: Kind, *args: Any, awaiter: Awaiter | None = None) -> None:
    """Call every hook of ``kind``; one that raises is logged (one ERROR with its traceback) and the
    next one still runs. ``awaiter`` runs the coroutine of an ``async def`` hook (default: `asyncio.run`)."""
    for fn in _hooks[kind]:
        try:
            _call(fn, args, awaiter)
        except BaseException:  # a hook's failure never changes what happens to the job or the worker
            log.error("on_%s hook %s raised; carrying on", kind, describe(fn), exc_info=True)


def run_boot_hooks(kind: Literal["boot", "startup"], *, awaiter: Awaiter | None = None, skip: int = 0) -> int:
    """Call the hooks of ``kind`` after the first ``skip``; return how many are registered (the next
    ``skip``). The first that raises stops the boot: a `BootError` of one line (the hook and its
    exception's last line; the traceback is logged at DEBUG, shown with ``-v``)."""
    registered = _hooks[kind]
    for fn in registered[skip:]:
        try:
            _call(fn, (), awaiter)
        except BaseException as exc:
            log.debug("on_%s hook %s raised", kind, describe(fn), exc_info=True)
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            raise BootError(f"on_{kind} hook {describe(fn)} failed: {last}") from exc
    return len(registered)
