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
import types
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
    """The function a `swarmd.delay` call names, ``"module:name"``, if ``delay_allow`` allows it.

    A payload is untrusted, so only a plain Python function (a real `types.FunctionType`, or the
    function of an ``@swarmd.job``) *defined in* the module named may run: its ``__module__`` is that
    module, ``name`` is one identifier (no dotted walk through other objects, such as
    ``mod:os.system``), never a dunder, and it is read from the module's own namespace (no module
    ``__getattr__``). Builtins, classes, re-exported functions (``from subprocess import run``) and
    bound methods are refused. Everything refused is a `DelayRefused` (straight to `dead`, nothing run).

    Importing: ``delay_allow`` names module prefixes whose code the operator trusts, and a web app
    delays functions from modules the worker's ``require`` list may not import itself, so a module
    under an allowed prefix that is not imported yet is imported (its top-level code runs, as on any
    import of it). A module outside the allowed prefixes is never imported: when a parent package of
    the module lies outside the prefix (``delay_allow: [myapp.mail]`` and ``myapp`` not yet imported),
    the call is refused rather than run that package's ``__init__``. A missing module or name is an
    `UnknownJob` (retried, as an unknown ``class``: the web app may run newer code than the worker).
    """
    if not isinstance(target, str) or target.count(":") != 1:
        raise DelayRefused(f"{DELAYED}: first argument must be 'module:name', got {target!r:.80}")
    module_name, name = target.split(":")
    parts = module_name.split(".")
    if not all(part.isidentifier() for part in parts):
        raise DelayRefused(f"{DELAYED}: {module_name!r:.80} is not a module name")
    if not name.isidentifier() or name.startswith("__"):
        raise DelayRefused(f"{DELAYED}: {name!r:.80} is not the name of a module-level function")
    prefixes = [p.rstrip(".").split(".") for p in allow]
    allowing = [p for p in prefixes if parts[: len(p)] == p]
    if not allowing:
        raise DelayRefused(f"{DELAYED}: module {module_name!r} is not in delay_allow {list(allow)}")
    shortest = min(len(p) for p in allowing)
    outside = [".".join(parts[:i]) for i in range(1, shortest)]  # parents the prefix does not cover
    missing = [parent for parent in outside if parent not in sys.modules]
    if missing:
        raise DelayRefused(
            f"{DELAYED}: importing {module_name} would import {missing[0]}, which is outside delay_allow"
        )
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and f"{module_name}.".startswith(f"{exc.name}."):  # that module, not one it imports
                raise UnknownJob(f"{DELAYED}: no module named {module_name!r}") from None
            raise
    if not isinstance(module, types.ModuleType):  # sys.modules may hold other objects
        raise DelayRefused(f"{DELAYED}: {module_name} is not a module")
    func = vars(module).get(name)
    if isinstance(func, JobFunction):
        func = func.func
    if not isinstance(func, types.FunctionType):
        if func is None:
            raise UnknownJob(f"{DELAYED}: module {module_name} has no function {name!r}")
        kind = type(func).__name__
        raise DelayRefused(f"{DELAYED}: {module_name}:{name} is a {kind}, not a function defined there")
    if func.__module__ != module_name:
        raise DelayRefused(
            f"{DELAYED}: {module_name}:{name} is defined in {func.__module__!r:.80}, not in {module_name}"
        )
    return func


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
