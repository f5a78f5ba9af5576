"""Runs ``swarmd``'s command line (`swarmd.cli.main`) once per case, each in a forked child.

``python -m tests.chaos.configrunner SPEC.json`` reads ``{"cases": [{"name", "argv", "cwd"}], "env": {...},
"timeout": s, "parallel": n}`` and prints one JSON object: name -> {"code", "stdout", "stderr", "hung"}.

Python and swarmd are imported once, here; each case is a fork that runs ``main(argv)`` as
``python -m swarmd`` would (an uncaught exception prints its traceback and exits 1; ``sys.exit("text")``
prints the text), with stdin /dev/null, stdout and stderr in files, in a session of its own. A case
that has not exited after ``timeout`` seconds is SIGKILLed with its whole session and reported as hung.
A few hundred configs then cost seconds instead of a process start (about a second here) each.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from typing import Any

MEMORY_LIMIT = 1 << 30
"""Address space of each case: an alias bomb ends in a MemoryError, not in the machine's swap."""


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _child(case: dict[str, Any], env: dict[str, str], out: str, err: str) -> None:
    os.setsid()
    limit_memory()
    os.chdir(case["cwd"])
    os.environ.clear()
    os.environ.update(env)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
    os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
    from swarmd import cli

    code = 1
    try:
        cli.main(case["argv"])
        code = 0
    except SystemExit as exc:  # what the interpreter does with it at the top level
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def ends(text: str) -> str:
    """A long output's beginning and end (where a traceback's exception is)."""
    return text if len(text) <= 6000 else f"{text[:2000]}\n[...]\n{text[-4000:]}"


def run(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from swarmd import cli  # noqa: F401  (imported once, before the forks)

    cases: list[dict[str, Any]] = list(spec["cases"])
    env: dict[str, str] = spec["env"]
    timeout = float(spec["timeout"])
    parallel = int(spec.get("parallel", 4))
    results: dict[str, dict[str, Any]] = {}
    running: dict[int, tuple[dict[str, Any], float, str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="swd-cfg-") as tmp:
        while cases or running:
            while cases and len(running) < parallel:
                case = cases.pop(0)
                out = os.path.join(tmp, f"{case['name']}.out")
                err = os.path.join(tmp, f"{case['name']}.err")
                pid = os.fork()
                if pid == 0:
                    _child(case, env, out, err)
                running[pid] = (case, time.monotonic(), out, err)
            for pid, (case, started, out, err) in list(running.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                hung = False
                if not done:
                    if time.monotonic() - started < timeout:
                        continue
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    _, status = os.waitpid(pid, 0)
                    hung = True
                del running[pid]
                with open(out, errors="replace") as o, open(err, errors="replace") as e:
                    results[case["name"]] = {
                        "code": os.waitstatus_to_exitcode(status),
                        "stdout": ends(o.read()),
                        "stderr": ends(e.read()),
                        "hung": hung,
                    }
            time.sleep(0.005)
    return results


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(json.dumps(run(json.load(f))))
