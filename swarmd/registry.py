"""Job functions: the ``@swarmd.job`` decorator, name -> function lookup, ``require`` imports.

Only functions registered here (and delayed calls under ``delay_allow``) ever run: a job's ``class``
is looked up by name, never imported by path.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from swarmd.client import DELAYED, Client, default_client, interval_to_epoch, when_to_epoch
from swarmd.errors import BootError, DelayRefused, UnknownJob

P = ParamSpec("P")
R = TypeVar("R")

_OPTION_NAMES = {"queue", "retry", "backtrace", "retry_queue", "dead", "tags"}


class _Enqueuer:
    """The ``perform_*`` methods, shared by a job function and its ``set(...)`` view."""

    job_name: str
    options: dict[str, Any]
    client: Client | None

    def _client(self) -> Client:
        return self.client or default_client()

    def perform_async(self, *args: Any, **kwargs: Any) -> str:
        return self._client().enqueue(self.job_name, args, kwargs, self.options)

    delay = perform_async

    def perform_in(self, interval: Any, *args: Any, **kwargs: Any) -> str:
        return self._client().enqueue(
            self.job_name, args, kwargs, self.options, at=interval_to_epoch(interval)
        )

    def perform_at(self, when: Any, *args: Any, **kwargs: Any) -> str:
        return self._client().enqueue(self.job_name, args, kwargs, self.options, at=when_to_epoch(when))

    def perform_bulk(self, arg_lists: Iterable[Sequence[Any]]) -> list[str]:
        return self._client().enqueue_bulk(self.job_name, arg_lists, self.options)

    def set(self, **options: Any) -> JobOptions:
        unknown = set(options) - _OPTION_NAMES - {"client"}
        if unknown:
            raise TypeError(f"set(): unknown option(s) {sorted(unknown)}; known: {sorted(_OPTION_NAMES)}")
        client = options.pop("client", None) or self.client
        return JobOptions(self.job_name, {**self.options, **options}, client)


class JobOptions(_Enqueuer):
    def __init__(self, name: str, options: dict[str, Any], client: Client | None) -> None:
        self.job_name, self.options, self.client = name, options, client


class JobFunction(_Enqueuer, Generic[P, R]):
    """A registered job function: call it to run inline, or ``perform_async`` to enqueue it."""

    def __init__(self, func: Callable[P, R], name: str, options: dict[str, Any]) -> None:
        self.func = func
        self.job_name = name
        self.options = options
        self.client = None
        functools.update_wrapper(self, func)

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
