"""`swarmctl` without Redis: argument parsing, usage errors (exit 2), config errors (78), `unit`."""

from __future__ import annotations

import grp
import os
import pwd
import re
import sys
from pathlib import Path

import pytest

from swarmd.ctl import _age, build_parser, main

NO_REDIS = ("--redis-url", "unix:///nonexistent/swarmctl-test.sock")
VENV_SWARMD = os.path.join(os.path.dirname(sys.executable), "swarmd")


def ctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["status", "--bogus"],
        ["enqueue"],
        ["enqueue", "Job", "[]", "extra"],
        ["enqueue", "Job", "--in", "-1"],
        ["enqueue", "Job", "--in", "soon"],
        ["retries", "--limit", "0"],
        ["dead", "--limit", "x"],
        ["dead", "--offset", "-1"],
        ["dead", "--offset", "x"],
        ["retries", "--page", "0"],
        ["scheduled", "--offset", "1", "--page", "2"],
        ["show"],
        ["show", "abc", "def"],
        ["retry"],
        ["retry", "abc", "--all"],
        ["retry", "abc", "--from", "schedule"],
        ["delete"],
        ["delete", "abc", "--from", "queue"],
        ["clear"],
        ["clear", "low", "--yes", "extra"],
        ["quiet"],
        ["stop", "host:1:abc", "--all"],
        ["unit", "--template=yes"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = ctl(capsys, *argv, *NO_REDIS)
    assert (code, out) == (2, "")
    [line] = err.splitlines()  # one line, as every other mistake
    assert line.startswith("swarmctl: error: ")
    assert re.search(r" \(see swarmctl( \w+)? --help\)$", line), line


@pytest.mark.parametrize(
    ("json_args", "message"),
    [
        ("[1,", "swarmctl: JSON_ARGS: not valid JSON: "),
        ('{"a": 1}', "swarmctl: JSON_ARGS: expected a JSON array, got "),
        ("[NaN]", "swarmctl: args[0]: nan is not valid JSON"),
        ("[9007199254740993]", "swarmctl: args[0]: integer 9007199254740993 is beyond"),
    ],
)
def test_bad_json_args_exit_2_before_any_redis_call(
    capsys: pytest.CaptureFixture[str], json_args: str, message: str
) -> None:
    code, out, err = ctl(capsys, "enqueue", "Job", json_args, *NO_REDIS)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith(message)


def test_common_options_before_or_after_the_command() -> None:
    parser = build_parser()
    args = parser.parse_args(["-C", "a.yml", "-e", "staging", "status"])
    assert (args.config, args.environment, args.redis_url) == ("a.yml", "staging", None)
    args = parser.parse_args(["status", "-C", "b.yml", "--redis-url", "redis://h"])
    assert (args.config, args.environment, args.redis_url) == ("b.yml", None, "redis://h")
    args = parser.parse_args(["-C", "a.yml", "dead", "--limit", "3"])
    assert (args.config, args.limit, args.json) == ("a.yml", 3, False)
    args = parser.parse_args(["enqueue", "Job", "--in", "1.5", "-q", "low"])
    assert (args.name, args.json_args, args.delay, args.queue) == ("Job", "[]", 1.5, "low")


def test_listing_pages() -> None:
    parser = build_parser()
    args = parser.parse_args(["dead", "--page", "3", "--limit", "10"])
    assert (args.page, args.offset, args.limit) == (3, 0, 10)
    args = parser.parse_args(["retries", "--offset", "40"])
    assert (args.page, args.offset, args.limit) == (None, 40, 25)


def test_clear_without_a_terminal_refuses_before_any_redis_call(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = ctl(capsys, "clear", "low", *NO_REDIS)  # stdin is not a terminal under pytest
    assert (code, out) == (2, "")
    assert err == "swarmctl: clear: no terminal to confirm on; add --yes to delete queue 'low'\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = ctl(capsys, "--version")
    assert code == 0 and out.startswith("swarmctl ")


def test_config_error_is_one_line_exit_78(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = ctl(capsys, "status", "-C", str(tmp_path / "missing.yml"), *NO_REDIS)
    assert (code, out) == (78, "")
    assert err == f"swarmctl: {tmp_path}/missing.yml: no such config file\n"
    code, _, err = ctl(capsys, "status", "--redis-url", "http://example.com")
    assert code == 78 and err.startswith("swarmctl: --redis-url: expected a redis://")


def test_unreachable_redis_exits_69(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = ctl(capsys, "status", *NO_REDIS)
    assert (code, out) == (69, "")
    assert err.startswith("swarmctl: cannot reach Redis at unix:///nonexistent/swarmctl-test.sock: ")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.04, "0.0s"), (4.25, "4.2s"), (185, "3m05s"), (7800, "2h10m"), (273600, "3d04h")],
)
def test_age(seconds: float | None, text: str) -> None:
    assert _age(seconds) == text


# -- unit ------------------------------------------------------------------------------------------
def settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_unit_uses_this_venvs_swarmd_and_the_workdirs_owner(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "swarmd.yml").write_text("timeout: 40\nproduction:\n  timeout: 50\n")
    code, out, err = ctl(capsys, "unit", "--workdir", str(tmp_path))
    assert code == 0, err
    unit = settings(out)
    assert unit["ExecStart"] == f"{VENV_SWARMD} -e production -C config/swarmd.yml"
    assert unit["WorkingDirectory"] == str(tmp_path)
    assert unit["User"] == pwd.getpwuid(tmp_path.stat().st_uid).pw_name
    assert unit["Group"] == grp.getgrgid(tmp_path.stat().st_gid).gr_name
    assert unit["TimeoutStopSec"] == "65"  # the production section's timeout + 15
    assert unit["Type"] == "notify"


def test_unit_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "myapp"
    app.mkdir()
    (app / "swarmd.yml").write_text("timeout: 5\nstaging:\n  timeout: 10\n")
    monkeypatch.chdir(app)
    code, out, _ = ctl(
        capsys, "unit", "-C", "swarmd.yml", "-e", "staging", "--user", "web", "--group", "www", "--template"
    )
    assert code == 0
    unit = settings(out)
    assert unit["ExecStart"] == f"{VENV_SWARMD} -e staging -C swarmd.yml --processes 1 --tag myapp-%i"
    assert (unit["WorkingDirectory"], unit["User"], unit["Group"]) == (str(app), "web", "www")
    assert unit["TimeoutStopSec"] == "25"
    assert out.startswith("# swarmd@.service")

    code, out, _ = ctl(capsys, "unit", "--workdir", str(tmp_path))  # no config file: none on the line
    assert code == 0 and settings(out)["ExecStart"] == f"{VENV_SWARMD} -e production"


def test_unit_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = ctl(capsys, "unit", "--workdir", str(tmp_path / "nope"))
    assert (code, out) == (2, "")
    assert (
        err
        == f"swarmctl: --workdir {tmp_path}/nope: No such file or directory (or give --user and --group)\n"
    )
    code, _, err = ctl(capsys, "unit", "--workdir", str(tmp_path), "-C", "missing.yml")
    assert code == 78 and err == f"swarmctl: {tmp_path}/missing.yml: no such config file\n"
    code, _, err = ctl(capsys, "unit", "--workdir", str(tmp_path), "--user", "bad name")
    assert code == 2 and err == "swarmctl: user is not a valid user/group name: 'bad name'\n"
