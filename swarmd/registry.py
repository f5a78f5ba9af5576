"""Job functions: the ``@swarmd.job`` decorator, name -> function lookup, ``require`` imports.

Only functions registered here (and delayed calls under ``delay_allow``) ever run: a job's ``class``
is looked up by name, never imported by path.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from swarmd.client import (
    DELAYED,
    Client,
    check_call,
    default_client,
    interval_to_epoch,
    signature_of,
    when_to_epoch,
)
from swarmd.errors import BootError, DelayRefused, UnknownJob

P = ParamSpec("P")
R = TypeVar("R")

_OPTION_NAMES = {"queue", "retry", "backtrace", "retry_queue", "dead", "tags"}
_UNSET: Any = object()


class _Enqueuer(Generic[P]):
    """The ``perform_*`` methods, shared by a job function and its ``set(...)`` view.

    They take the job function's own parameters (``P``), so a type checker flags a wrong call, and
    bind the arguments to its signature at run time, so a wrong call raises `TypeError` before
    anything is sent. Each returns the jid, or None if a client middleware dropped the job.
    """

    job_name: str
    options: dict[str, Any]
    client: Client | None
    _job: JobFunction[P, Any]

    def _client(self) -> Client:
        return self.client or default_client()

    def _check(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        job = self._job
        check_call(job.signature, job.func, self.job_name, args, kwargs)

    def perform_async(self, /, *args: P.args, **kwargs: P.kwargs) -> str | None:
        self._check(args, kwargs)
        return self._client().enqueue(self.job_name, args, kwargs, self.options)

    delay = perform_async

    def perform_in(self, interval: float | dt.timedelta, /, *args: P.args, **kwargs: P.kwargs) -> str | None:
        """Run after ``interval`` seconds (or a timedelta); above 1e9 it is an epoch time, as in Sidekiq."""
        self._check(args, kwargs)
        at = interval_to_epoch(interval)
        return self._client().enqueue(self.job_name, args, kwargs, self.options, at=at)

    def perform_at(self, when: float | dt.datetime, /, *args: P.args, **kwargs: P.kwargs) -> str | None:
        """Run at ``when``: an aware datetime or epoch seconds."""
        self._check(args, kwargs)
        at = when_to_epoch(when)
        return self._client().enqueue(self.job_name, args, kwargs, self.options, at=at)

    def perform_bulk(self, arg_lists: Iterable[Sequence[Any]]) -> list[str | None]:
        """One job per item (a list or tuple of positional args); all are checked before any push."""
        items = list(arg_lists)
        for i, args in enumerate(items):
            if isinstance(args, list | tuple):  # anything else: the client's one-line PayloadError
                try:
                    self._check(args, {})
                except TypeError as exc:
                    raise TypeError(f"perform_bulk item [{i}]: {exc}") from None
        return self._client().enqueue_bulk(self.job_name, items, self.options)

    def set(self, **options: Any) -> JobOptions[P]:
        """A view with other options (``queue``, ``retry``, ...; ``client``), same parameters."""
        unknown = set(options) - _OPTION_NAMES - {"client"}
        if unknown:
            raise TypeError(f"set(): unknown option(s) {sorted(unknown)}; known: {sorted(_OPTION_NAMES)}")
        client = options.pop("client", None) or self.client
        return JobOptions(self._job, {**self.options, **options}, client)


class JobOptions(_Enqueuer[P]):
    def __init__(self, job: JobFunction[P, Any], options: dict[str, Any], client: Client | None) -> None:
        self._job = job
        self.job_name, self.options, self.client = job.job_name, options, client


class JobFunction(_Enqueuer[P], Generic[P, R]):
    """A registered job function: call it to run inline, or ``perform_async`` to enqueue it.

    An ``async def`` function works too: calling it returns its coroutine, as calling the function
    would; the worker (and `swarmd.testing`) run it to completion.
    """

    def __init__(self, func: Callable[P, R], name: str, options: dict[str, Any]) -> None:
        self.func = func
        self.job_name = name
        self.options = options
        self.client = None
        self._job = self
        self._signature: inspect.Signature | None = _UNSET
        functools.update_wrapper(self, func)

    @property
    def signature(self) -> inspect.Signature | None:
        """The job function's signature, computed once (None: it has none to check against)."""
        if self._signature is _UNSET:
            self._signature = signature_of(self.func)
        return self._signature

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<swarmd job {self.job_name}>"


_registry: dict[str, JobFunction[Any, Any]] = {}


@overload
def job(func: Callable[P, R], /) -> JobFunction[P, R]: ...
@overload
def job(
    *, name: str | None = None, queue: str | None = None, retry: bool | int | None = None, **options: Any
) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...
def job(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str | None = None,
    retry: bool | int | None = None,
    **options: Any,
) -> JobFunction[P, R] | Callable[[Callable[P, R]], JobFunction[P, R]]:
    """Register a job function; its name defaults to ``module.qualname``."""
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"@job: unknown option(s) {sorted(unknown)}; known: {sorted(_OPTION_NAMES)}")
    if queue is not None:
        options["queue"] = queue
    if retry is not None:
        options["retry"] = retry

    def register(f: Callable[P, R]) -> JobFunction[P, R]:
        job_name = name or f"{f.__module__}.{f.__qualname__}"
        wrapped = JobFunction(f, job_name, dict(options))
        _registry[job_name] = wrapped
        return wrapped

    return register(func) if func is not None else register


def lookup(name: str) -> Callable[..., Any]:
    try:
        return _registry[name].func
    except KeyError:
        raise UnknownJob(f"no job function is registered as {name!r}") from None


def registered() -> Mapping[str, JobFunction[Any, Any]]:
    return _registry


def resolve_delayed(target: object, allow: Sequence[str]) -> Callable[..., Any]:
    """The function of a `swarmd.delay` call, if its module is allowed by ``delay_allow``."""
    if not isinstance(target, str) or ":" not in target:
        raise DelayRefused(f"{DELAYED}: first argument must be 'module:qualname', got {target!r:.80}")
    module, qualname = target.split(":", 1)
    if not any(module == p or module.startswith(p.rstrip(".") + ".") for p in allow):
        raise DelayRefused(f"{DELAYED}: module {module!r} is not in delay_allow {list(allow)}")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise UnknownJob(f"{DELAYED}: {target} is not callable")
    return obj  # type: ignore[no-any-return]


def import_require(spec: str) -> None:
    """Import a ``require`` entry: a dotted module, or a path to a ``.py`` file.

    The working directory is on ``sys.path``. Any exception becomes a `BootError` whose message
    names the module and the exception's last line.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if spec.endswith(".py") or os.sep in spec:
            path = os.path.abspath(spec)
            if not os.path.isfile(path):
                raise BootError(f"require {spec}: no such file")
            sys.path.insert(0, os.path.dirname(path))
            mod_name = os.path.splitext(os.path.basename(path))[0]
            if mod_name not in sys.modules:
                importlib.import_module(mod_name)
        else:
            importlib.import_module(spec)
    except BootError:
        raise
    except BaseException as exc:  # an app's import may raise anything, SystemExit included
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        raise BootError(f"require {spec} failed: {last}") from exc
