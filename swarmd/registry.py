"""Job functions: the ``@swarmd.job`` decorator, name -> function lookup, ``require`` imports.

Only functions registered here (and delayed calls under ``delay_allow``) ever run: a job's ``class``
is looked up by name, never imported by path.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from swarmd import cron, scripts, unique
from swarmd.client import (
    DELAYED,
    CallCheck,
    Client,
    default_client,
    interval_to_epoch,
    set_unique_pusher,
    when_to_epoch,
)
from swarmd.config import PeriodicEntry
from swarmd.errors import BootError, ConfigError, DelayRefused, UnknownJob

P = ParamSpec("P")
R = TypeVar("R")

_OPTION_NAMES = {"queue", "retry", "backtrace", "retry_queue", "dead", "tags", "timeout"}
_OPTION_NAMES |= unique.OPTIONS  # unique_for, unique_until (swarmd.unique)
set_unique_pusher(scripts.push_unique)  # the client's unique pushes go through swarmd.scripts


def check_timeout(value: Any, where: str) -> float | None:
    """A job's ``timeout`` option: seconds > 0 (or None: no limit of its own); TypeError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise TypeError(f"{where}: timeout: expected a number of seconds > 0 or None, got {value!r:.80}")
    return float(value)


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
        self._job.call_check.check(args, kwargs, self.job_name)

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
        if "timeout" in options:
            check_timeout(options["timeout"], "set()")
        client = options.pop("client", None) or self.client
        options = unique.check_options(options, "set()")
        return JobOptions(self._job, {**self.options, **options}, client)


class JobOptions(_Enqueuer[P]):
    def __init__(self, job: JobFunction[P, Any], options: dict[str, Any], client: Client | None) -> None:
        self._job = job
        self.job_name, self.options, self.client = job.job_name, options, client


class JobFunction(_Enqueuer[P], Generic[P, R]):
    """A registered job function: call it to run inline, or ``perform_async`` to enqueue it.

    An ``async def`` function works too: calling it returns its coroutine, as calling the function
    would; the worker awaits it on its event loop (`swarmd.aio`), `swarmd.testing` with `asyncio.run`.
    """

    def __init__(self, func: Callable[P, R], name: str, options: dict[str, Any]) -> None:
        self.func = func
        self.job_name = name
        self.options = options
        self.client = None
        self._job = self
        self._call_check: CallCheck | None = None
        self.is_async = inspect.iscoroutinefunction(func)  # computed once: the worker reads it per job
        self.timeout = check_timeout(options.get("timeout"), f"@job {name}")  # read per job, too
        functools.update_wrapper(self, func)

    @property
    def call_check(self) -> CallCheck:
        """What enqueued arguments are bound against: the signature, computed once per job function."""
        if self._call_check is None:
            self._call_check = CallCheck(self.func)
        return self._call_check

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
    check_timeout(options.get("timeout"), "@job")
    options = unique.check_options(options, "@job")
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
    return lookup_job(name).func


def lookup_job(name: str) -> JobFunction[Any, Any]:
    """The job function registered as ``name``; else `UnknownJob`, naming the closest registered names."""
    try:
        return _registry[name]
    except KeyError:
        hint = suggest(name)
        raise UnknownJob(
            f"no job function is registered as {name!r}" + (f" (did you mean {hint}?)" if hint else "")
        ) from None


def registered() -> Mapping[str, JobFunction[Any, Any]]:
    return _registry


def not_async_error(name: str, result: Any) -> TypeError:
    """The failure of a job function that is not ``async def`` but returned a coroutine (which is
    closed here: it never runs, and would otherwise warn "never awaited" at some later time)."""
    result.close()
    return TypeError(
        f"job function {name} returned a coroutine but is not `async def`, so it was not run: "
        "declare the function `async def` (a decorator may have hidden that it is one)"
    )


_suggestions: dict[str, str | None] = {}
_suggested_for = 0  # len(_registry) when _suggestions was filled: a new registration clears it
MAX_SUGGESTIONS = 1000  # cached names; an unknown name is usually the same few names again and again


def suggest(name: str) -> str | None:
    """The registered names closest to ``name`` (difflib), quoted and joined with "or", or None.

    Cached per name: a deploy that enqueues a new job before the workers have its code makes the same
    unknown name come back at every retry.
    """
    global _suggested_for
    if len(name) > 200:  # a payload's name: difflib's cost grows with its length squared
        return None
    if _suggested_for != len(_registry) or len(_suggestions) >= MAX_SUGGESTIONS:
        _suggestions.clear()
        _suggested_for = len(_registry)
    if name in _suggestions:
        return _suggestions[name]
    close = difflib.get_close_matches(name, list(_registry), n=3, cutoff=0.6)
    if not close:  # a different module path with the same function name: myapp.jobs.x vs jobs.x
        tail = name.rpartition(".")[2]
        close = [known for known in _registry if known.rpartition(".")[2] == tail][:3]
    hint = " or ".join(repr(c) for c in close) or None
    _suggestions[name] = hint
    return hint


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
    """Import a ``require`` entry: a dotted module, or a path to a ``.py`` file (or a package folder).

    The working directory is on ``sys.path``. A path inside a package is imported under its dotted
    name (``-r src/myapp/jobs.py`` is ``myapp.jobs``, with ``src`` put on ``sys.path``), because job
    names are ``module.qualname`` and must be the names the enqueuing app uses; see `module_name_of`.
    Any problem becomes a `BootError` with one line: a missing file, a name clash, an ambiguous path,
    or the module's own exception (its last line).
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if spec.endswith(".py") or os.sep in spec:
            _import_path(spec)
        else:
            importlib.import_module(spec)
    except BootError:
        raise
    except ConfigError as exc:  # swarmd's own check of the app's settings (a bad @swarmd.periodic): exit 78
        raise ConfigError(f"require {spec}: {exc}") from exc
    except BaseException as exc:  # an app's import may raise anything, SystemExit included
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        raise BootError(f"require {spec} failed: {last}") from exc


def module_name_of(path: str) -> tuple[str, str]:
    """(dotted module name, the folder to import it from) of the ``.py`` file at absolute ``path``.

    Walks up while the folder has an ``__init__.py`` (and a name an import can spell): the topmost
    such folder is the package root, and its parent is where the import starts, exactly as for the
    app that enqueues ``myapp.jobs.add``. A file outside any package is its own top-level module.
    """
    folder, filename = os.path.split(path)
    stem = filename[:-3] if filename.endswith(".py") else filename
    parts = [] if stem == "__init__" else [stem]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        parent, name = os.path.split(folder)
        if parent == folder or not name.isidentifier():
            break
        parts.insert(0, name)
        folder = parent
    if not parts:
        raise BootError(f"require {path}: an __init__.py outside any package folder")
    return ".".join(parts), folder


def _import_path(spec: str) -> None:
    path = os.path.abspath(spec)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "__init__.py")):
        path = os.path.join(path, "__init__.py")
    if not os.path.isfile(path):
        raise BootError(f"require {spec}: no such file")
    name, start = module_name_of(path)
    on_path = {os.path.abspath(entry or os.curdir): entry for entry in sys.path}
    # A package folder that is itself on sys.path makes a second name for the same file (often the
    # working directory: `cd myapp && swarmd -r jobs.py`): which one the app uses cannot be known.
    others = []
    module_file = os.path.dirname(path) if os.path.basename(path) == "__init__.py" else path
    inner = os.path.dirname(module_file)
    while inner != start:  # every folder from the file's up to the package root
        if inner in on_path:
            other = os.path.relpath(os.path.splitext(module_file)[0], inner).replace(os.sep, ".")
            others.append(f"{other!r} from {inner}")
        inner = os.path.dirname(inner)
    if others:
        raise BootError(
            f"require {spec}: ambiguous path: it is module {name!r} from {start} and "
            f"{' and '.join(others)} (on sys.path); require the module name your app imports, from the "
            f"folder it imports it from (e.g. cd {start} && swarmd -r {name})"
        )
    if start not in on_path:
        sys.path.insert(0, start)
    _check_free(spec, name, path, start)
    module = sys.modules.get(name) or importlib.import_module(name)
    found = getattr(module, "__file__", None)
    if not _same_file(found, path):
        raise BootError(
            f"require {spec}: module name clash: {spec} is module {name!r}, but importing {name!r} "
            f"gives {found or 'a module without a file'}"
        )


def _check_free(spec: str, name: str, path: str, start: str) -> None:
    """Refuse a name (or a parent package of it) already imported from another file."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        module = sys.modules.get(prefix)
        if module is None:
            continue
        if i == len(parts):
            where = getattr(module, "__file__", None)
            if _same_file(where, path):
                return
        else:
            folder = os.path.join(start, *parts[:i])
            paths = list(getattr(module, "__path__", None) or ())
            if any(_same_file(p, folder) for p in paths):
                continue
            where = getattr(module, "__file__", None) or (paths[0] if paths else None)
        raise BootError(
            f"require {spec}: module name clash: {spec} is module {name!r}, but {prefix!r} is already "
            f"imported from {where or 'a module without a file'}"
        )


def _same_file(a: str | None, b: str) -> bool:
    if not a:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# -- periodic jobs (swarmd.periodic_jobs runs them) -------------------------------------------------------
_periodic: list[PeriodicEntry] = []


def periodic(cron_expr: str, timezone: str | None = None) -> Callable[[JobFunction[P, R]], JobFunction[P, R]]:
    """Run a job function at each tick of ``cron_expr`` (5 fields, or 6 with seconds first) in
    ``timezone`` (an IANA name; default UTC), stacked on ``@swarmd.job``::

        @swarmd.periodic("0 * * * *")
        @swarmd.job
        def hourly_report(): ...

    The function must take no required arguments. A bad expression or time zone raises `ConfigError`
    (a worker importing the module exits 78)."""

    def register(func: JobFunction[P, R]) -> JobFunction[P, R]:
        if not isinstance(func, JobFunction):
            raise TypeError(
                f"@swarmd.periodic: expected an @swarmd.job function (stack @swarmd.periodic above "
                f"@swarmd.job), got {func!r:.80}"
            )
        where = f"@swarmd.periodic({cron_expr!r}) on {func.job_name}"
        try:
            func.call_check.check((), {}, func.job_name)
        except TypeError as exc:
            raise ConfigError(f"{where}: a periodic job takes no required arguments: {exc}") from None
        try:
            schedule = cron.parse(cron_expr, timezone)
        except cron.CronError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        _periodic.append(PeriodicEntry(schedule.expr, func.job_name, (), None, timezone, where=where))
        return func

    return register


def periodic_entries() -> list[PeriodicEntry]:
    """The entries ``@swarmd.periodic`` registered in this process, in registration order."""
    return list(_periodic)


def check_periodic(entries: Sequence[PeriodicEntry]) -> None:
    """Raise `ConfigError` for the first entry whose job no function is registered as (after
    ``require``: the config's ``periodic:`` may name any job)."""
    for entry in entries:
        try:
            lookup_job(entry.job)
        except UnknownJob as exc:
            raise ConfigError(f"{entry.where or 'periodic'}.job: {exc}") from None
