"""Job functions run by the real swarmd daemon in the interop tests.

The test copies this file into its tmp dir and starts ``python -m swarmd -r pyjobs``. Every job that
completes writes what it received to ``$INTEROP_OUT/<name>-<n>.json`` (written aside, then renamed,
so the test never reads half a file). Names are Ruby-style class names, as a Rails app would use.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import swarmd

OUT = Path(os.environ["INTEROP_OUT"])


def record(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    stem = f"{name}-{uuid.uuid4().hex}"
    tmp = OUT / f".{stem}.tmp"
    tmp.write_text(json.dumps({"class": name, "args": list(args), "kwargs": kwargs}, ensure_ascii=False))
    tmp.rename(OUT / f"{stem}.json")


@swarmd.job(name="HardWorker")
def hard_worker(*args: Any, **kwargs: Any) -> None:
    record("HardWorker", args, kwargs)


@swarmd.job(name="BlockingJob")
def blocking_job(flag: str, *args: Any) -> None:
    """Runs until the test creates ``$INTEROP_OUT/<flag>`` (or 60 s pass)."""
    deadline = time.monotonic() + 60
    while not (OUT / flag).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    record("BlockingJob", (flag, *args), {})


@swarmd.job(name="FailingJob")
def failing_job(*args: Any) -> None:
    raise ValueError("boom")


@swarmd.job(name="FailOnceJob")
def fail_once_job(key: str, *args: Any) -> None:
    """Fails on its first run for ``key``, succeeds on every later one."""
    marker = OUT / f"failed-once-{key}"
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"first run of {key} fails")
    record("FailOnceJob", (key, *args), {})
