"""Defects a chaos campaign found, through the real daemon: delayed-call targets that reach other code,
log lines forged by a payload, and a Redis password visible in `ps`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmd.client import DELAYED
from tests.conftest import wait_until
from tests.integration.conftest import JOBS_MODULE, App
from tests.replies import members

# -- swarmd.Delayed: only a plain function defined in an allowed module runs ----------------------------

ATTACKS: list[tuple[str, dict[str, Any]]] = [
    (f"{JOBS_MODULE}:swarmd.registry.os.system", {}),
    (f"{JOBS_MODULE}:os.system", {}),
    (f"{JOBS_MODULE}:os.system.__call__", {}),
    (":os.system", {}),
    (":subprocess.run", {"shell": True}),
    (f"{JOBS_MODULE}:swarmd.registry.subprocess.run", {"shell": True}),
    (f"{JOBS_MODULE}:os.execv", {}),
]


def test_delayed_targets_outside_plain_functions_go_to_dead_and_run_nothing(app: App) -> None:
    d = app.start(config=app.config(delay_allow=[JOBS_MODULE]))
    app.wait_booted(d)
    marks = []
    for i, (target, kwargs) in enumerate(ATTACKS):
        mark = app.root / f"pwned-{i}"
        marks.append(mark)
        app.client.enqueue(DELAYED, [target, f"touch {mark}"], kwargs, {"queue": "default"})
    app.client.enqueue(DELAYED, [f"{JOBS_MODULE}:plain", "legit"], None, {"queue": "default"})
    app.wait_tokens(["legit"])  # a legitimate delayed function still runs
    wait_until(lambda: app.r.zcard("dead") == len(ATTACKS), 10, what=f"{len(ATTACKS)} jobs in dead")
    dead = [json.loads(raw) for raw in members(app.r, "dead")]
    assert {job["error_class"] for job in dead} == {"swarmd.DelayRefused"}
    assert sorted(job["args"][0] for job in dead) == sorted(target for target, _ in ATTACKS)
    assert app.r.zcard("retry") == 0
    assert [str(mark) for mark in marks if mark.exists()] == []
    assert d.alive()


# -- log forging: a payload's control characters never start a line ------------------------------------

FORGED = "2026-01-01T00:00:00.000Z pid=1 tid=x INFO: forged"


def test_a_newline_in_class_jid_or_error_message_cannot_forge_a_log_line(app: App) -> None:
    d = app.start(config=app.config(verbose=True))  # DEBUG: the `start` line carries class and jid too
    app.wait_booted(d)
    app.client.push({"class": f"Nope\n{FORGED}\x1b[2J", "args": [], "jid": "a" * 24})
    app.client.push({"class": "Record", "args": ["logged"], "jid": f"j1\r\n{FORGED}"})
    app.enqueue("Fail", f"x\n{FORGED}\x1b[31m")  # the job's own error message carries the payload
    app.wait_tokens(["logged"])
    wait_until(lambda: app.r.zcard("retry") == 2, 10, what="two failures in retry")
    wait_until(lambda: d.output().count("fail: ") >= 2, 10, what="both failures logged")
    lines = d.lines()
    assert not [line for line in lines if line.startswith(FORGED[:24])]
    assert "\x1b" not in d.output()
    assert "\r" not in d.output()
    assert any(f"class=Nope\\n{FORGED}\\x1b[2J" in line for line in lines)
    assert any(f"jid=j1\\r\\n{FORGED}" in line for line in lines)
    assert any(f"ValueError: boom x\\n{FORGED}\\x1b[31m" in line for line in lines)


# -- the Redis password never shows in `ps` -----------------------------------------------------------------


@pytest.fixture
def mute_redis() -> Iterator[socket.socket]:
    """A listening socket that accepts connections and never answers (a wedged Redis)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(30)
        yield server


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


@pytest.mark.parametrize("command", ["swarmd", "swarmctl"])
def test_the_password_of_redis_url_is_not_in_the_command_line(
    app: App, mute_redis: socket.socket, command: str
) -> None:
    port = mute_redis.getsockname()[1]
    url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
    exe = str(Path(sys.executable).parent / command)
    argv = [exe, "--redis-url", url] + (["status"] if command == "swarmctl" else ["-r", JOBS_MODULE])
    with subprocess.Popen(
        argv, cwd=app.root, env=app.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    ) as proc:  # fmt: skip
        try:
            conn, _ = mute_redis.accept()  # it is talking to "Redis" now, and waits for an answer
            with conn:
                title = cmdline(proc.pid)
                assert "hunter2-secret" not in title
                assert "--redis-url" in title  # the rest of the command line is still there
                assert proc.poll() is None
        finally:
            proc.kill()
