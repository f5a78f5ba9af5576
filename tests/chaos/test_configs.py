"""A few hundred broken configs (and bad flags), by category: each must give one line on stderr and exit
78 (2 or 78 for a bad flag), never a traceback, never a hang.

Every config runs through ``swarmd``'s real command line (`swarmd.cli.main`) in a process of its own,
forked by `tests.chaos.configrunner` (imports once, forks per config: milliseconds each). The full
campaign also runs each one as ``python -m swarmd``. ``REDIS_URL`` points at a closed port, so a config
that is wrongly accepted ends quickly with exit 69 and is reported as accepted.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.configrunner import ends, limit_memory
from tests.chaos.fuzz import BrokenConfig, broken_configs
from tests.chaos.harness import FULL, Report
from tests.conftest import TIMEOUT_SCALE

CATEGORIES: dict[str, str | None] = {
    "wrong types": None,
    "unknown keys": None,
    "bad queues": None,
    "bad URLs": None,
    "bad TLS options": None,
    "deep nesting": None,
    "huge integers": None,
    "alias bombs": None,
    "FIFOs": None,
    "usage": None,
}
"""Every category, and why it fails today (a strict xfail) if it does."""
TIMEOUT_S = 3.0 * TIMEOUT_SCALE
UNREACHABLE = "redis://127.0.0.1:1/0"
_SCRUBBED = ("REDIS_URL", "APP_ENV", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


def chosen() -> list[BrokenConfig]:
    configs = broken_configs(random.Random(20261130))  # fixed: every xdist worker sees the same set
    return configs if FULL else [c for c in configs if c.short]


def materialize(config: BrokenConfig, folder: Path) -> list[str]:
    """Write ``config`` into ``folder``; return swarmd's argv for it."""
    if config.kind == "none":
        return list(config.args)
    path = folder / f"{config.name}.yml"
    if config.kind == "fifo":
        os.mkfifo(path)
    elif config.kind == "dir":
        path.mkdir()
    else:
        text = config.text or ""
        if "FIFO" in text:
            fifo = folder / f"{config.name}.fifo"
            os.mkfifo(fifo)
            text = text.replace("FIFO", str(fifo))
        path.write_text(text)
    return ["-e", "production", "-C", str(path), *config.args]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMD_") and k not in _SCRUBBED}
    env.update(REDIS_URL=UNREACHABLE, PYTHONUNBUFFERED="1")
    return env


def run_all(root: Path) -> list[dict[str, Any]]:
    folder = root / "configs"
    folder.mkdir()
    configs = chosen()
    cases = [{"name": c.name, "argv": materialize(c, folder), "cwd": str(folder)} for c in configs]
    spec = root / "spec.json"
    spec.write_text(json.dumps({"cases": cases, "env": environment(), "timeout": TIMEOUT_S, "parallel": 4}))
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos.configrunner", str(spec)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S * len(cases) + 60,
        check=True,
    )
    forked = json.loads(done.stdout)
    results = [{"category": c.category, "name": c.name, "how": "fork", **forked[c.name]} for c in configs]
    if FULL:  # and each one as a user runs it: a process of its own
        with ThreadPoolExecutor(2) as pool:
            results += pool.map(
                lambda case: cli_run(case, folder), [(c, cases[i]) for i, c in enumerate(configs)]
            )
    return results


def cli_run(pair: tuple[BrokenConfig, dict[str, Any]], folder: Path) -> dict[str, Any]:
    config, case = pair
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarmd", *case["argv"]],
        cwd=folder,
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=limit_memory,
    )
    hung = False
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S + 5)  # a process start costs about a second here
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        hung = True
    return {
        "category": config.category,
        "name": config.name,
        "how": "python -m swarmd",
        "code": proc.returncode,
        "stdout": ends(out),
        "stderr": ends(err),
        "hung": hung,
    }


@pytest.fixture(scope="session")
def config_results(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[list[dict[str, Any]]]:
    """Every config's result, computed once per test session even with xdist (the first worker runs
    them under a file lock; the others read the file)."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    with open(shared / "chaos-configs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = shared / "chaos-configs.json"
        if not data.exists():
            root = shared / "chaos-configs"
            root.mkdir()
            data.write_text(json.dumps(run_all(root)))
        results = json.loads(data.read_text())
    yield results


def problem(result: dict[str, Any]) -> str | None:
    """What is wrong with one run, or None."""
    expected = (2, 78) if result["category"] == "usage" else (78,)
    err = result["stderr"]
    lines = [line for line in err.splitlines() if line.strip()]
    if result["hung"]:
        return f"hung: killed after {TIMEOUT_S:g} s"
    if "Traceback" in err or "Traceback" in result["stdout"]:
        return f"traceback, exit {result['code']}: {lines[-1] if lines else ''}"[:300]
    if result["code"] == 69:
        return "accepted: it went on to the Redis check (exit 69)"
    if result["code"] not in expected:
        return f"exit {result['code']} (expected {' or '.join(map(str, expected))}): {err.strip()[:200]}"
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr (expected one), the first: {lines[0][:80] if lines else ''}"
    return None


@pytest.mark.xdist_group("chaos-configs")  # one worker runs them (`make test` uses --dist loadgroup)
@pytest.mark.parametrize(
    "category",
    [
        pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=reason)] if reason else [])
        for name, reason in CATEGORIES.items()
    ],
)
def test_broken_configs(category: str, config_results: list[dict[str, Any]], report: Report) -> None:
    results = [r for r in config_results if r["category"] == category]
    configs = len({r["name"] for r in results})
    bad = [(r["name"], r["how"], why) for r in results if (why := problem(r))]
    report.row(
        f"broken configs: {category}",
        jobs=f"{configs} configs",
        note=(
            f"{len(bad)} bad run(s), e.g. {bad[0][0]} ({bad[0][1]}): {bad[0][2][:150]}"
            if bad
            else "each: one line on stderr, exit " + ("2 or 78" if category == "usage" else "78")
        )[:400],
    )
    assert configs > 0
    assert not bad, "\n".join(f"{name} ({how}): {why}" for name, how, why in bad[:15])
