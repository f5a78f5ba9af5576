"""``python -m swarmd`` as a user types it: the seed YAML, flags, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import swarmd
from swarmd.client import Client
from swarmd.devredis import RedisServer
from tests.conftest import SIDEKIQ_YML
from tests.integration.conftest import JOBS_MODULE, App, free_port
from tests.replies import as_bytes


@pytest.mark.parametrize(("environment", "concurrency"), [("production", 25), ("staging", 15), (None, 10)])
def test_seed_yaml_runs_unchanged(app: App, environment: str | None, concurrency: int) -> None:
    (app.root / "sidekiq.yml").write_text(SIDEKIQ_YML)
    args = ["-C", "sidekiq.yml"] + (["-e", environment] if environment else [])
    d = app.start(*args, env=app.env(REDIS_URL=app.redis_url))  # the file names no Redis: REDIS_URL
    ident = app.wait_booted(d)
    assert app.r.hget(ident, "concurrency") == str(concurrency).encode()
    info = json.loads(as_bytes(app.r.hget(ident, "info")))
    assert info["queues"] == ["default", "low"]
    assert info["concurrency"] == concurrency
    pidfile = app.root / "tmp" / "pids" / "sidekiq.pid"  # relative to the working directory
    assert pidfile.read_text().strip() == str(d.pid)
    app.enqueue("Record", "seeded", queue="low")
    app.wait_tokens(["seeded"])
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert not pidfile.exists()
    log = (app.root / "log" / "sidekiq.log").read_text()  # logfile: lines go there, not to stderr
    assert f"booted: concurrency {concurrency}" in log
    assert "class=Record" in log
    assert "bye" in log


def test_flags_override_the_file(app: App) -> None:
    (app.root / "sidekiq.yml").write_text(SIDEKIQ_YML)
    d = app.start(
        "-C", "sidekiq.yml", "-e", "production", "-c", "3", "-q", "urgent", "-q", "low,2",
        "-g", "flagged", "--redis-url", app.redis_url,
    )  # fmt: skip
    ident = app.wait_booted(d)
    info = json.loads(as_bytes(app.r.hget(ident, "info")))
    assert (info["concurrency"], info["queues"], info["tag"]) == (3, ["urgent", "low"], "flagged")


# -- errors a user makes: one line, the right exit code, no traceback --------------------------------------


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("concurency: 5\n", ["concurency", "did you mean 'concurrency'"]),
        ("queues: [default, low\n", ["line", "YAML"]),
        ("concurrency: 0\n", ["concurrency", ">= 1"]),
        ("production:\n  concurrency: many\n", ["production.concurrency", "integer"]),
        ("queues: [a, a]\n", ["queues", "'a'"]),
        ("redis:\n  url: ${NO_SUCH_VARIABLE_HERE}\n", ["NO_SUCH_VARIABLE_HERE"]),
        # a worker would look dead while its blocking fetch can still move a job into its list
        ("liveness_ttl: 1\nfetch_timeout: 10\n", ["liveness_ttl", "fetch_timeout"]),
    ],
)
def test_broken_config_exits_78_with_one_line(app: App, text: str, expected: list[str]) -> None:
    (app.root / "broken.yml").write_text(text)
    result = app.run("-C", "broken.yml", "-e", "production")
    assert result.returncode == 78, result.stderr
    line = one_line(result.stderr)
    assert "broken.yml" in line
    for word in expected:
        assert word in line, line


def test_missing_config_file_exits_78(app: App) -> None:
    result = app.run("-C", "nowhere/swarmd.yml")
    assert result.returncode == 78
    assert "nowhere/swarmd.yml" in one_line(result.stderr)


def test_bad_flag_value_exits_78_naming_the_flag(app: App) -> None:
    result = app.run("-c", "0", "--redis-url", app.redis_url)
    assert result.returncode == 78
    assert "--concurrency" in one_line(result.stderr)


@pytest.mark.parametrize("argv", [["--no-such-flag"], ["-c", "many"], ["-t"], ["-q"], ["-p", "1.5"]])
def test_usage_errors_exit_2_with_one_line(app: App, argv: list[str]) -> None:
    result = app.run(*argv)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("swarmd: error: ")
    assert line.endswith(" (see swarmd --help)")


@pytest.mark.parametrize("argv", [["bogus"], ["retries", "--limit", "0"], []])
def test_swarmctl_usage_errors_exit_2_with_one_line(app: App, argv: list[str]) -> None:
    result = swarmctl(app, *argv)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("swarmctl: error: ")
    assert line.endswith("--help)")


def swarmctl(app: App, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "swarmctl"), *argv],
        cwd=app.root,
        env=env or app.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


BAD_URLS = ["redis://127.0.0.1:notaport/0", "redis://[::1", "redis://127.0.0.1:99999/0", "redis://h/notadb"]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("source", ["flag", "variable", "file"])
@pytest.mark.parametrize("command", ["swarmd", "swarmctl"])
def test_a_malformed_redis_url_is_one_line_and_exit_78(app: App, url: str, source: str, command: str) -> None:
    url = url.replace("redis://", "redis://:hunter2@")
    argv, env, where = [], app.env(), {"flag": "--redis-url", "variable": "SWARMD_REDIS_URL"}.get(source)
    if source == "flag":
        argv = ["--redis-url", url]
    elif source == "variable":
        env["SWARMD_REDIS_URL"] = url
    else:
        (app.root / "bad.yml").write_text(f"redis:\n  url: '{url}'\n")
        argv, where = ["-C", "bad.yml"], "bad.yml: redis.url"
    if command == "swarmd":
        result = subprocess.run(
            [sys.executable, "-m", "swarmd", *argv], cwd=app.root, env=env, capture_output=True, text=True,
            timeout=30, check=False,
        )  # fmt: skip
    else:
        result = swarmctl(app, *argv, "status", env=env)
    assert result.returncode == 78, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"{command}: {where}: expected "), line
    assert "hunter2" not in result.stderr
    assert "redis://:***@" in line


def test_configure_with_a_malformed_url_raises_one_line(app: App) -> None:
    code = """
import swarmd
try:
    swarmd.configure(redis_url="redis://h:notaport/0")
except swarmd.ConfigError as exc:
    print(exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], env=app.env(), capture_output=True, text=True, check=False
    )
    assert (
        result.stdout
        == "redis_url: expected a port number 1-65535 after the host, got 'redis://h:notaport/0'\n"
    )


@pytest.mark.parametrize("flag", ["-C", "-L", "-P"])
def test_a_fifo_as_config_logfile_or_pidfile_exits_78_without_hanging(app: App, flag: str) -> None:
    os.mkfifo(app.root / "fifo")
    result = app.run(flag, "fifo", "--redis-url", app.redis_url, timeout_s=30)
    assert result.returncode == 78, result.stderr
    assert "got a FIFO" in one_line(result.stderr)


BILLION_LAUGHS = (
    "a: &a ["
    + ", ".join(["lol"] * 10)
    + "]\n"
    + "".join(
        f"{b}: &{b} [" + ", ".join([f"*{a}"] * 10) + "]\n"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "require: *i\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tag: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than"),
        ("concurrency: " + "7" * 5000 + "\n", "an integer of 5000 characters"),
        (BILLION_LAUGHS, "aliases expand to more than"),
    ],
    ids=["deep", "long-int", "billion-laughs"],
)
def test_hostile_config_files_exit_78_with_one_line(app: App, text: str, expected: str) -> None:
    (app.root / "hostile.yml").write_text(text)
    result = app.run("-C", "hostile.yml")
    assert result.returncode == 78, result.stderr
    assert expected in one_line(result.stderr)


def test_version(app: App) -> None:
    result = app.run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"swarmd {swarmd.__version__}"


def test_require_that_raises_at_import_exits_70_naming_the_module(app: App) -> None:
    (app.root / "badjobs.py").write_text("import swarmd\nraise RuntimeError('database is not configured')\n")
    result = app.run("-r", "badjobs", "--redis-url", app.redis_url)
    assert result.returncode == 70, result.stderr
    # One line names the module and its error (the supervisor may add a line about the stop).
    named = [line for line in result.stderr.splitlines() if "badjobs" in line]
    assert len(named) == 1, result.stderr
    assert " ERROR: " in named[0]
    assert "database is not configured" in named[0]
    assert "Traceback" not in result.stderr


def test_require_of_a_missing_module_exits_70(app: App) -> None:
    result = app.run("-r", "no_such_module_xyz", "--redis-url", app.redis_url)
    assert result.returncode == 70, result.stderr
    assert "no_such_module_xyz" in result.stderr
    assert "Traceback" not in result.stderr


def test_require_a_py_file_path(app: App) -> None:
    d = app.start("-r", f"./{JOBS_MODULE}.py", config=app.config(), require=False)
    app.wait_booted(d)
    app.enqueue("Record", "by-path")
    app.wait_tokens(["by-path"])


def test_unreachable_redis_exits_69_with_one_line_and_no_password(app: App) -> None:
    url = f"redis://:sekret-pw@127.0.0.1:{free_port()}/0"  # nothing listens there
    result = app.run("-r", JOBS_MODULE, "--redis-url", url)
    assert result.returncode == 69, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    assert "127.0.0.1" in errors[0]
    assert "sekret-pw" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", ["symlink", "file-in-the-way"])
def test_unopenable_logfile_exits_78_with_one_line(app: App, case: str) -> None:
    target = app.root / "elsewhere.log"
    if case == "symlink":  # planted by someone else: never write through it
        (app.root / "swarmd.log").symlink_to(target)
        logfile = "swarmd.log"
    else:
        (app.root / "log").write_text("a file where the log folder should be\n")
        logfile = "log/swarmd.log"
    result = app.run("-L", logfile, "--redis-url", app.redis_url)
    assert not target.exists()
    assert result.returncode == 78, result.stderr
    assert logfile in one_line(result.stderr)


def test_pidfile_symlink_is_refused(app: App) -> None:
    target = app.root / "elsewhere.pid"
    (app.root / "swarmd.pid").symlink_to(target)
    result = app.run("-P", "swarmd.pid", "--redis-url", app.redis_url, require=True)
    assert result.returncode == 78, result.stderr
    assert "symlink" in result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists()


@pytest.mark.parametrize("url_auth", ["default-user", "acl-user"])
def test_a_wrong_password_exits_69_at_once_with_one_line(
    redis_factory: Callable[..., RedisServer], app: App, url_auth: str
) -> None:
    # A wrong password fails fast with one clear line, no reconnect storm; the right one
    # (legacy requirepass, or an ACL user) boots.
    server = redis_factory(
        port=free_port(),
        extra_args=("--requirepass", "right-pw", "--user", "jobs", "on", ">jobs-pw", "~*", "&*", "+@all"),
    )
    user, right = ("", "right-pw") if url_auth == "default-user" else ("jobs", "jobs-pw")
    wrong_url = f"redis://{user}:wrong-pw@127.0.0.1:{server.port}/0"
    result = app.run("-r", JOBS_MODULE, "--redis-url", wrong_url)
    assert result.returncode == 69, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    assert "credentials" in errors[0] or "password" in errors[0].lower()
    assert "wrong-pw" not in result.stderr
    assert "Traceback" not in result.stderr
    right_url = f"redis://{user}:{right}@127.0.0.1:{server.port}/0"
    app.client = Client(right_url)
    d = app.start("--redis-url", right_url)
    app.enqueue("Record", "authenticated")
    app.wait_tokens(["authenticated"])
    assert "right-pw" not in d.output() and "jobs-pw" not in d.output()


def test_an_acl_user_without_client_commands_runs_and_stops(
    redis_factory: Callable[..., RedisServer], app: App
) -> None:
    # A least-privilege ACL user (no CLIENT commands): swarmd must not depend on CLIENT SETNAME, ID or
    # UNBLOCK to work; it only stops less promptly (waiting out the blocking fetch timeout).
    server = redis_factory(
        port=free_port(), extra_args=("--user", "jobs", "on", ">jobs-pw", "~*", "&*", "+@all", "-client")
    )
    url = f"redis://jobs:jobs-pw@127.0.0.1:{server.port}/0"
    app.client = Client(url)
    d = app.start("--redis-url", url)
    app.enqueue("Record", "least-privilege")
    app.wait_tokens(["least-privilege"])
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
