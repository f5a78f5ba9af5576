"""`registry.resolve_delayed`: a payload names ``module:name``; only a plain function defined in a module
under ``delay_allow`` may run. Every way of reaching anything else is refused as `DelayRefused`.

The module ``hello`` below is the chaos campaign's job module plus what such modules usually import.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import swarmd
from swarmd import registry

HELLO = textwrap.dedent(
    """
    import os
    import subprocess
    from subprocess import run

    import swarmd


    @swarmd.job(name="Hello")
    def hello(path):
        with open(path, "w") as f:
            f.write("ran\\n")


    def greet(path, word="hi"):
        with open(path, "w") as f:
            f.write(word + "\\n")


    class Mailer:
        @staticmethod
        def send(path):
            with open(path, "w") as f:
                f.write("sent\\n")


    greeter = greet.__get__(object())  # a bound method: not a plain function
    """
)


@pytest.fixture
def hello(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Modules ``hello`` (imported) and ``hellopkg`` (a package with submodules, not imported)."""
    (tmp_path / "hello.py").write_text(HELLO)
    pkg = tmp_path / "hellopkg"
    (pkg / "mail").mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"open({str(tmp_path / 'pkg-imported')!r}, 'w').close()\n")
    (pkg / "mail" / "__init__.py").write_text("")
    (pkg / "mail" / "letters.py").write_text(HELLO)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("hello", "hellopkg", "hellopkg.mail", "hellopkg.mail.letters"):
        sys.modules.pop(name, None)
    __import__("hello")
    yield tmp_path
    for name in ("hello", "hellopkg", "hellopkg.mail", "hellopkg.mail.letters"):
        sys.modules.pop(name, None)


ATTACKS = [
    "hello:swarmd.registry.os.system",  # a walk through imported modules
    "hello:os.system",
    "hello:os.system.__call__",
    "hello:subprocess.run",
    "hello:run",  # re-exported: defined in subprocess, not in hello
    ":os.system",  # no module: no prefix can allow it
    ":subprocess.run",
    "hello:__builtins__",
    "hello:__loader__",
    "hello:os",  # a module, not a function
    "hello:Mailer",  # a class: calling it runs __init__
    "hello:Mailer.send",
    "hello:greeter",  # a bound method
    "hello:swarmd",
    ".hello:greet",  # relative module names
    "hello:greet:x",
    "hello :greet",
]


@pytest.mark.parametrize("target", ATTACKS)
def test_anything_but_a_function_defined_in_the_allowed_module_is_refused(hello: Path, target: str) -> None:
    with pytest.raises(swarmd.DelayRefused):
        registry.resolve_delayed(target, ["hello"])


@pytest.mark.parametrize(
    "allow", [["hello"], ["os"], ["subprocess"], ["swarmd"], [""], ["."], ["hello", "os"]]
)
def test_builtins_and_walks_are_refused_whatever_is_allowed(hello: Path, allow: list[str]) -> None:
    for target in ("os:system", "hello:os.system", "swarmd:registry.os.system", "os:system.__call__"):
        with pytest.raises(swarmd.DelayRefused):
            registry.resolve_delayed(target, allow)


def test_a_function_defined_in_the_allowed_module_runs(hello: Path) -> None:
    registry.resolve_delayed("hello:greet", ["hello"])(str(hello / "out"), word="hey")
    assert (hello / "out").read_text() == "hey\n"


def test_a_registered_job_function_runs_as_its_plain_function(hello: Path) -> None:
    func: Any = registry.resolve_delayed("hello:hello", ["hello"])
    assert not isinstance(func, registry.JobFunction)
    func(str(hello / "out"))
    assert (hello / "out").read_text() == "ran\n"


def test_a_module_under_the_prefix_is_imported_on_first_use(hello: Path) -> None:
    func = registry.resolve_delayed("hellopkg.mail.letters:greet", ["hellopkg"])
    func(str(hello / "out"))
    assert (hello / "out").read_text() == "hi\n"
    assert "hellopkg.mail.letters" in sys.modules


def test_a_parent_package_outside_the_prefix_is_never_imported(hello: Path) -> None:
    with pytest.raises(swarmd.DelayRefused, match="outside delay_allow"):
        registry.resolve_delayed("hellopkg.mail.letters:greet", ["hellopkg.mail"])
    assert "hellopkg" not in sys.modules
    assert not (hello / "pkg-imported").exists()
    __import__("hellopkg")  # imported by the app itself: then the prefix below it is usable
    assert registry.resolve_delayed("hellopkg.mail.letters:greet", ["hellopkg.mail"]).__name__ == "greet"


def test_a_module_outside_the_prefixes_is_never_imported(hello: Path) -> None:
    with pytest.raises(swarmd.DelayRefused):
        registry.resolve_delayed("hellopkg.mail.letters:greet", ["hello"])
    assert "hellopkg" not in sys.modules


def test_a_missing_module_or_function_is_an_unknown_job_not_a_refusal(hello: Path) -> None:
    # The web app may already run code the worker has not been deployed with: retried, not dead.
    for target in ("hellopkg.nothing:greet", "hello:nothing", "hello.os:system"):
        with pytest.raises(swarmd.UnknownJob) as info:
            registry.resolve_delayed(target, ["hello", "hellopkg"])
        assert not isinstance(info.value, swarmd.DelayRefused)
