"""``-r path/to/pkg/jobs.py`` imports ``pkg.jobs``: the name the enqueuing app uses for its jobs.

Job names are ``module.qualname``; a path imported as a top-level ``jobs`` would register ``jobs.add``
while the app enqueues ``pkg.jobs.add``, and every job would fail as UnknownJob. Each test builds its
own uniquely named package in tmp_path and removes what it imported.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmd import registry
from swarmd.errors import BootError

JOBS = textwrap.dedent(
    """
    import swarmd

    @swarmd.job
    def add(a, b):
        return a + b
    """
)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """cwd = tmp_path; sys.path and sys.modules restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def unique(tmp_path: Path) -> str:
    return "app_" + tmp_path.name.replace("-", "_").lower()


def package(root: Path, dotted: str, source: str = JOBS) -> Path:
    """Write ``root/<a>/<b>/.../<module>.py`` with an ``__init__.py`` in every folder."""
    *folders, module = dotted.split(".")
    here = root
    for folder in folders:
        here = here / folder
        here.mkdir(parents=True, exist_ok=True)
        (here / "__init__.py").touch()
    path = here / f"{module}.py"
    path.write_text(source)
    return path


def test_a_path_inside_a_package_registers_the_dotted_name(isolated: Path) -> None:
    pkg = unique(isolated)
    package(isolated / "src", f"{pkg}.sub.jobs")
    registry.import_require(f"src/{pkg}/sub/jobs.py")
    assert f"{pkg}.sub.jobs.add" in registry.registered()
    assert "jobs.add" not in registry.registered()
    assert registry.lookup(f"{pkg}.sub.jobs.add")(1, 2) == 3
    assert str(isolated / "src") in sys.path  # the package root's parent, so the package imports
    assert sys.modules[f"{pkg}.sub.jobs"].__file__ == str(isolated / "src" / pkg / "sub" / "jobs.py")


def test_the_app_and_the_path_share_one_module(isolated: Path) -> None:
    # The app imported pkg.jobs itself (or `preload` did), then the worker requires the path: no
    # second copy, no clash.
    pkg = unique(isolated)
    package(isolated, f"{pkg}.jobs")
    sys.path.insert(0, str(isolated))
    __import__(f"{pkg}.jobs")
    registry.import_require(f"{pkg}/jobs.py")
    registry.import_require(f"./{pkg}/jobs.py")
    assert f"{pkg}.jobs.add" in registry.registered()


def test_a_package_folder_or_its_init_is_the_package(isolated: Path) -> None:
    pkg = unique(isolated)
    package(isolated, f"{pkg}.__init__", JOBS)
    registry.import_require(f"{pkg}/")
    assert f"{pkg}.add" in registry.registered()
    registry.import_require(f"{pkg}/__init__.py")


def test_a_file_outside_any_package_is_still_a_top_level_module(isolated: Path) -> None:
    name = unique(isolated) + "_flat"
    (isolated / "lib").mkdir()
    (isolated / "lib" / f"{name}.py").write_text(JOBS)
    registry.import_require(f"lib/{name}.py")
    assert f"{name}.add" in registry.registered()


def test_a_name_already_imported_from_another_file_is_one_clear_line(isolated: Path) -> None:
    # Silently "already imported" before: `-r tasks/json.py` registered nothing at all.
    (isolated / "tasks").mkdir()
    (isolated / "tasks" / "json.py").write_text(JOBS)
    with pytest.raises(BootError) as info:
        registry.import_require("tasks/json.py")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("require tasks/json.py: module name clash:")
    assert "'json' is already imported from" in message
    assert os.path.dirname(os.__file__) in message


def test_a_parent_package_imported_from_elsewhere_is_a_clash(isolated: Path) -> None:
    pkg = unique(isolated)
    package(isolated / "old", f"{pkg}.other")
    sys.path.insert(0, str(isolated / "old"))
    __import__(f"{pkg}.other")  # an installed copy of the same package, say
    package(isolated / "new", f"{pkg}.jobs")
    with pytest.raises(BootError) as info:
        registry.import_require(f"new/{pkg}/jobs.py")
    message = str(info.value)
    assert f"is module '{pkg}.jobs', but '{pkg}' is already imported from" in message
    assert str(isolated / "old") in message


def test_a_package_shadowed_earlier_on_sys_path_is_a_clash(isolated: Path) -> None:
    pkg = unique(isolated)
    package(isolated / "installed", f"{pkg}.jobs")
    package(isolated / "src", f"{pkg}.jobs")
    sys.path.insert(0, str(isolated / "installed"))
    sys.path.insert(0, str(isolated / "src"))
    sys.path.remove(str(isolated / "src"))
    sys.path.append(str(isolated / "src"))  # on sys.path, but after the other copy
    with pytest.raises(BootError) as info:
        registry.import_require(f"src/{pkg}/jobs.py")
    message = str(info.value)
    assert f"importing '{pkg}.jobs' gives {isolated / 'installed' / pkg / 'jobs.py'}" in message


def test_a_package_folder_on_sys_path_makes_the_path_ambiguous(isolated: Path) -> None:
    # `cd myapp && swarmd -r jobs.py`: the file is `jobs` from here and `myapp.jobs` from the parent.
    pkg = unique(isolated)
    path = package(isolated, f"{pkg}.jobs")
    os.chdir(path.parent)
    with pytest.raises(BootError) as info:
        registry.import_require("jobs.py")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("require jobs.py: ambiguous path:")
    assert f"'{pkg}.jobs' from {isolated}" in message
    assert f"'jobs' from {path.parent}" in message
    assert f"cd {isolated} && swarmd -r {pkg}.jobs" in message
    assert f"{pkg}.jobs" not in sys.modules and "jobs" not in sys.modules  # nothing imported


def test_a_missing_path_is_one_line(isolated: Path) -> None:
    with pytest.raises(BootError, match=r"^require nope/jobs.py: no such file$"):
        registry.import_require("nope/jobs.py")


def test_an_import_error_inside_the_package_names_the_path(isolated: Path) -> None:
    pkg = unique(isolated)
    package(isolated, f"{pkg}.jobs", "raise RuntimeError('database is not configured')\n")
    with pytest.raises(BootError) as info:
        registry.import_require(f"{pkg}/jobs.py")
    assert str(info.value) == f"require {pkg}/jobs.py failed: RuntimeError: database is not configured"
