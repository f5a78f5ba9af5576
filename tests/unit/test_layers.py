"""The module layering of ARCHITECTURE.md: a module imports only from strictly lower layers.

Imports are read with `ast` from the source (nothing is imported), including imports inside
functions; imports under ``if TYPE_CHECKING:`` are type-only and exempt. ``from swarmd import x``
counts as importing ``swarmd.x`` when ``x`` is a module, else the package itself (layer of
``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import swarmd

PACKAGE = Path(swarmd.__file__).parent

LAYERS: dict[str, int] = {
    "errors": 0,
    "keys": 0,
    "version": 0,  # the one version string
    "procfs": 0,  # every /proc reader
    "busy": 0,  # the lock-guarded table of running jobs
    "cron": 0,  # cron schedules in a time zone (cronsim): pure, read by `config` and the periodic jobs
    "syslogsink": 0,  # a leaf, so that `config` checks syslog addresses with the handler's own parser
    "config": 1,
    "timeouts": 1,  # the per-job time limit watchdog (errors only), built by `worker`, armed by `processor`
    "metrics": 1,  # the per-class job metrics aggregate and its Redis layout (keys, errors only)
    "payload": 1,
    "unique": 1,  # unique jobs' options and lock digest (pure): read by `client`, `registry`, `processor`
    "connection": 2,
    "context": 2,  # the running job (`current_job`): read by `logs`, set by `processor` and `testing`
    "aio": 2,  # the worker's event loop for async jobs: a leaf, started lazily after fork
    "logs": 3,  # reads the running job from `context` for the class/jid of app lines
    "systemd": 2,
    "devredis": 2,
    "hooks": 2,  # registries of middleware and hooks, read by the client and the worker side
    "pidfile": 2,
    "unitfile": 2,  # `ctl` renders units with it; it takes the app-directory rule from `config`
    "control": 2,  # the control-pipe lines and signal dispatch, for `worker` and `supervisor`
    "client": 3,
    "scripts": 3,
    "retrying": 3,  # retry until Redis answers: needs `connection` for its errors
    "registry": 4,
    "periodic_jobs": 4,  # claims periodic ticks (over `scripts`, `cron`); run by `worker`, listed by `admin`
    "fetch": 4,
    "retry": 4,
    "scheduler": 4,
    "heartbeat": 4,
    "recovery": 4,
    "limiter": 4,  # swarmd.limiter: concurrency/window/bucket over `scripts`, the default client's Redis
    "processor": 5,
    "testing": 5,  # the test mode: the client's sink plus the registry to run jobs by name
    "pytest_plugin": 6,  # fixtures over `testing`
    "admin": 5,  # the operator API under `ctl`, the web dashboard and /metrics
    "worker": 6,
    "prometheus": 6,  # the /metrics exposition over `admin`, served by `web` and the swarm's metrics process
    "supervisor": 7,  # the state machine
    "web": 7,  # the dashboard package (over `admin` and `prometheus`), served by `ctl`
    "swarm": 8,  # its I/O: fork, pipes, signals, `run`
    "cli": 9,
    "ctl": 8,
    "__init__": 8,
    "__main__": 10,  # the `python -m swarmd` shim on top of cli
}

KNOWN_VIOLATIONS: dict[str, str] = {}
"""module -> why, for a violation reported and not yet fixed (the test is a strict xfail meanwhile)."""


def modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py"))


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str) -> list[tuple[str, int]]:
    """(imported module, line) for every runtime import in ``swarmd/<module>.py``."""
    return imports_in((PACKAGE / f"{module}.py").read_text())


def imports_in(source: str) -> list[tuple[str, int]]:
    tree = ast.parse(source)
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            assert isinstance(node, ast.If)
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against the package
                base = "swarmd" + (f".{base}" if base else "")
            if base == "swarmd":
                for alias in node.names:
                    sub = alias.name
                    is_module = (PACKAGE / f"{sub}.py").exists()
                    found.append((f"swarmd.{sub}" if is_module else "swarmd", node.lineno))
            else:
                found.append((base, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def swarmd_imports(module: str) -> list[tuple[str, int]]:
    return swarmd_only(imports(module))


def swarmd_only(found: list[tuple[str, int]]) -> list[tuple[str, int]]:
    out = []
    for name, line in found:
        if name == "swarmd":
            out.append(("__init__", line))
        elif name.startswith("swarmd."):
            out.append((name.split(".")[1], line))
    return out


def test_every_module_has_a_layer() -> None:
    missing = [m for m in modules() if m not in LAYERS]
    assert not missing, f"add these modules to LAYERS (ARCHITECTURE.md's module map): {missing}"


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(m, marks=pytest.mark.xfail(reason=f"bug: {KNOWN_VIOLATIONS[m]}", strict=True))
        if m in KNOWN_VIOLATIONS
        else m
        for m in modules()
    ],
)
def test_module_imports_only_lower_layers(module: str) -> None:
    layer = LAYERS.get(module)
    if layer is None:
        pytest.fail(f"{module} has no layer (see test_every_module_has_a_layer)")
    bad = [
        f"swarmd/{module}.py:{line} imports {target} (layer {LAYERS.get(target)})"
        for target, line in swarmd_imports(module)
        if target != module and LAYERS.get(target, 99) >= layer
    ]
    assert not bad, f"{module} is layer {layer}; " + "; ".join(bad)


@pytest.mark.parametrize("module", modules())
def test_redis_is_imported_only_by_connection(module: str) -> None:
    redis_imports = [
        (name, line) for name, line in imports(module) if name == "redis" or name.startswith("redis.")
    ]
    if module == "connection":
        assert redis_imports, "connection.py is the one module that builds redis clients"
    else:
        assert not redis_imports, f"swarmd/{module}.py imports redis at runtime: {redis_imports}"


def test_payload_touches_no_redis_and_no_threads() -> None:
    names = {name.split(".")[0] for name, _ in imports("payload")}
    assert not names & {"redis", "threading", "concurrent", "socket"}
    assert {m for m, _ in swarmd_imports("payload")} <= {"errors"}


def test_the_import_reader_sees_every_kind_of_import() -> None:
    source = """
from typing import TYPE_CHECKING
import swarmd.keys
from swarmd import fetch, __version__
from . import payload
from .errors import DecodeError
if TYPE_CHECKING:
    import redis
    from swarmd.worker import Worker
else:
    from swarmd import retry
def late():
    from swarmd.supervisor import run
    import redis.exceptions
"""
    found = imports_in(source)
    assert sorted(m for m, _ in swarmd_only(found)) == sorted(
        ["keys", "fetch", "__init__", "payload", "errors", "retry", "supervisor"]
    )
    assert ("redis.exceptions", 14) in found
    assert ("redis", 8) not in found
