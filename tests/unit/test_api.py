"""The public API of ``import swarmd``: pinned, so a change to it is a deliberate one."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

import swarmd
from swarmd import errors, registry, version

PUBLIC = [
    "BootError",
    "Client",
    "ConfigError",
    "DecodeError",
    "DelayRefused",
    "JobContext",
    "JobFunction",
    "JobTimeout",
    "OverLimit",
    "PayloadError",
    "PoisonJob",
    "RedisUnavailable",
    "SwarmdError",
    "UnknownJob",
    "__version__",
    "client_middleware",
    "configure",
    "current_job",
    "delay",
    "job",
    "limiter",
    "on_boot",
    "on_death",
    "on_failure",
    "on_shutdown",
    "on_startup",
    "periodic",
    "push",
    "server_middleware",
    "testing",
]


def test_all_is_pinned() -> None:
    assert sorted(swarmd.__all__) == PUBLIC


def test_every_public_name_exists() -> None:
    for name in swarmd.__all__:
        assert getattr(swarmd, name) is not None, name


def test_one_version_everywhere() -> None:
    package = Path(swarmd.__file__).parent
    pyproject = tomllib.loads((package.parent / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "swarmd.version.__version__"}
    assert swarmd.__version__ == version.__version__
    literal = re.compile(re.escape(f'"{version.__version__}"'))
    sources = [p for p in package.glob("*.py") if p.name != "version.py"]
    elsewhere = [p.name for p in sources if literal.search(p.read_text())]
    assert not elsewhere, f"the version string is written again in {elsewhere}: import swarmd.version"


def test_exception_tree() -> None:
    for name in ("ConfigError", "PayloadError", "DecodeError", "UnknownJob", "RedisUnavailable", "BootError"):
        assert issubclass(getattr(swarmd, name), swarmd.SwarmdError), name
    assert issubclass(swarmd.PayloadError, TypeError)  # bad args raise TypeError, as json.dumps does
    assert issubclass(swarmd.DelayRefused, swarmd.UnknownJob)
    assert swarmd.ConfigError.exit_code == 78
    assert swarmd.RedisUnavailable.exit_code == 69
    assert swarmd.BootError.exit_code == 70


def test_poison_job_error_class_is_spelled_as_documented() -> None:
    assert errors.POISON_JOB == "swarmd.PoisonJob" == f"swarmd.{swarmd.PoisonJob.__name__}"


# -- the decorator, as README shows it -----------------------------------------------------------------


@swarmd.job
def resize(path: str, width: int) -> str:
    return f"{path}@{width}"


@swarmd.job(queue="critical", retry=5, name="HardWorker", backtrace=20)
def hard_work(name: str, count: int) -> int:
    return count


def test_job_name_defaults_to_module_and_qualname() -> None:
    assert resize.job_name == f"{__name__}.resize"
    assert registry.lookup(f"{__name__}.resize") is resize.func


def test_job_options_and_explicit_name() -> None:
    assert hard_work.job_name == "HardWorker"
    assert hard_work.options == {"queue": "critical", "retry": 5, "backtrace": 20}
    assert registry.lookup("HardWorker") is hard_work.func


def test_plain_call_runs_inline() -> None:
    assert resize("a.png", 100) == "a.png@100"
    # functools.wraps: docs, tracebacks and pickling see the function
    assert vars(resize)["__name__"] == "resize"


def test_delay_is_an_alias_of_perform_async() -> None:
    assert resize.delay == resize.perform_async


def test_set_returns_a_view_and_leaves_the_job_alone() -> None:
    view = hard_work.set(queue="low", retry=False)
    assert view.options == {"queue": "low", "retry": False, "backtrace": 20}
    assert hard_work.options["queue"] == "critical"


def test_unknown_job_name_is_an_unknown_job_error() -> None:
    with pytest.raises(swarmd.UnknownJob, match="NoSuchJob"):
        registry.lookup("NoSuchJob")


def test_unknown_job_name_suggests_the_closest_registered_ones() -> None:
    with pytest.raises(swarmd.UnknownJob) as info:
        registry.lookup("HardWorkr")
    assert str(info.value).startswith(
        "no job function is registered as 'HardWorkr' (did you mean 'HardWorker'"
    )
    # The same function name under another module path (the app imports it as myapp.jobs, not jobs).
    assert repr(f"{__name__}.resize") in (registry.suggest("elsewhere.resize") or "")
    assert registry.suggest("zzzzzzzz") is None
    assert registry.suggest("x" * 10_000) is None  # a payload's huge name costs nothing


@pytest.mark.parametrize(
    ("allow", "target", "ok"),
    [
        (("urllib",), "urllib.parse:urljoin", True),  # a prefix covers its submodules
        (("urllib.parse",), "urllib.parse:urljoin", True),
        (("urllib.",), "urllib.parse:urljoin", True),
        (("u",), "urllib.parse:urljoin", False),  # a prefix is a whole module name, not a string prefix
        ((), "urllib.parse:urljoin", False),  # empty by default: refused
        (("os",), "os.path:join", False),  # os.path is posixpath: join is not defined in "os.path"
        (("urllib",), "no-colon", False),
        (("urllib",), 5, False),
    ],
)
def test_delay_allow_prefixes(allow: tuple[str, ...], target: Any, ok: bool) -> None:
    if ok:
        assert registry.resolve_delayed(target, allow)("a/", "b") == "a/b"
    else:
        with pytest.raises(swarmd.DelayRefused):
            registry.resolve_delayed(target, allow)
