"""The files in units/: rendered by render_unit, accepted silently by systemd-analyze, visudo, logrotate.

`systemd-analyze verify` exits 0 on most warnings (unknown keys, obsolete settings), so these tests
require its output to be empty. It refuses a unit whose ExecStart binary is missing, so the checked-in
units are verified after pointing ExecStart at an executable in tmp_path. It does not look users up:
`User=deploy` verifies silently on a machine without that user (checked on systemd 252).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swarmd.config import load_config
from swarmd.unitfile import PLACEHOLDERS, render_unit
from tests.conftest import require_tool

UNITS = Path(__file__).resolve().parents[2] / "units"
SERVICE = UNITS / "swarmd.service"
TEMPLATE = UNITS / "swarmd@.service"
SUDOERS = UNITS / "swarmd.sudoers"
LOGROTATE = UNITS / "swarmd.logrotate"
SBIN_PATH = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"


def which(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def settings(text: str) -> dict[str, dict[str, str]]:
    """Section -> key -> value of a unit file (last one wins; comments dropped)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current[key] = value
    return sections


# -- the checked-in files are render_unit's output ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "template"), [(SERVICE, False), (TEMPLATE, True)], ids=["service", "template"]
)
def test_checked_in_unit_is_render_unit_output(path: Path, template: bool) -> None:
    assert path.read_text(encoding="utf-8") == render_unit(**PLACEHOLDERS, template=template), (
        f"{path.name} drifted from swarmd.unitfile.render_unit; regenerate it from PLACEHOLDERS"
    )


def test_service_settings() -> None:
    unit = settings(render_unit(**PLACEHOLDERS))
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"] == "/srv/myapp/.venv/bin/swarmd -e production -C config/swarmd.yml"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["WorkingDirectory"] == "/srv/myapp"
    assert (service["User"], service["Group"]) == ("deploy", "deploy")
    assert service["UMask"] == "0002"
    assert service["Restart"] == "always"
    assert service["RestartSec"] == "1"
    assert service["RestartPreventExitStatus"] == "2 78"
    assert service["KillMode"] == "mixed"
    assert service["TimeoutStopSec"] == "40"
    assert service["WatchdogSec"] == "30"
    assert service["OOMPolicy"] == "continue"
    assert service["SyslogIdentifier"] == "swarmd"
    assert service["Environment"] == "MALLOC_ARENA_MAX=2 PYTHONUNBUFFERED=1"
    for key in SANDBOX_YES:
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/srv/myapp"
    assert service["ProtectHome"] == "read-only"
    assert service["ProtectProc"] == "invisible"
    assert service["CapabilityBoundingSet"] == ""
    assert service["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert service["SystemCallFilter"] == "@system-service"
    for absent in ("PIDFile", "StandardOutput", "StandardError", *LEFT_OUT):
        assert absent not in service
    assert "StartLimitIntervalSec" in unit["Unit"]
    assert "StartLimitBurst" in unit["Unit"]
    assert unit["Unit"]["After"] == "network-online.target redis-server.service"
    assert unit["Unit"]["Wants"] == "network-online.target"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


SANDBOX_YES = (
    "NoNewPrivileges", "PrivateTmp", "PrivateDevices", "PrivateMounts", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
    "RestrictNamespaces", "LockPersonality", "RestrictRealtime", "RestrictSUIDSGID",
)  # fmt: skip
LEFT_OUT = (
    "MemoryDenyWriteExecute",
    "PrivateNetwork",
    "IPAddressDeny",
    "PrivateUsers",
    "ProcSubset",
    "RemoveIPC",
)


@pytest.mark.parametrize("template", [False, True], ids=["service", "template"])
def test_each_sandbox_setting_left_out_says_why(template: bool) -> None:
    text = render_unit(**PLACEHOLDERS, template=template)
    comments = [line for line in text.splitlines() if line.startswith("#")]
    for name in LEFT_OUT:
        [line] = [line for line in comments if f" {name}=" in line]
        assert len(line.split(f"{name}=", 1)[1].strip()) > 20, line  # a reason, not just the name


def test_comments_name_the_two_lines_to_edit_and_reload() -> None:
    text = render_unit(**PLACEHOLDERS)
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "WorkingDirectory=" in comments
    assert "ExecStart=" in comments
    assert "virtualenv" in comments
    assert "systemctl reload swarmd" in comments
    assert "TimeoutStopSec" in comments


@pytest.mark.parametrize(("timeout", "expected"), [(25.0, "40"), (0.0, "15"), (60.0, "75"), (12.5, "28")])
def test_timeout_stop_exceeds_timeout_by_more_than_10_s(timeout: float, expected: str) -> None:
    text = render_unit(**{**PLACEHOLDERS, "timeout": timeout})
    stop = settings(text)["Service"]["TimeoutStopSec"]
    assert stop == expected
    assert float(stop) >= timeout + 10


def test_template_runs_one_process_per_instance() -> None:
    unit = settings(render_unit(**PLACEHOLDERS, template=True))
    service = unit["Service"]
    expected = "/srv/myapp/.venv/bin/swarmd -e production -C config/swarmd.yml --processes 1 --tag myapp-%i"
    assert service["ExecStart"] == expected
    assert service["SyslogIdentifier"] == "swarmd"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/srv/myapp"
    assert "systemctl enable --now swarmd@{1..4}" in TEMPLATE.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("workdir", "tag", "writable"),
    [
        ("/srv/myapp", "myapp", "/srv/myapp"),
        ("/srv/myapp/current", "myapp", "/srv/myapp"),  # writable: shared/ too, where log/ and tmp/ point
        ("/srv/myapp/releases/20261128", "myapp", "/srv/myapp"),
        ("/srv/app/releases/v2", "v2", "/srv/app/releases/v2"),  # not a Capistrano release
    ],
)
def test_template_tag_and_writable_dir_are_the_app_s(workdir: str, tag: str, writable: str) -> None:
    service = settings(render_unit(**{**PLACEHOLDERS, "workdir": workdir}, template=True))["Service"]
    assert service["ExecStart"].endswith(f"--tag {tag}-%i")
    assert service["ReadWritePaths"] == writable


def test_template_tag_is_the_tag_the_daemon_gives_itself(tmp_path: Path) -> None:
    # The unit names `current`; the daemon's working directory is the release it resolves to.
    release = tmp_path / "shop" / "releases" / "20261128"
    release.mkdir(parents=True)
    (tmp_path / "shop" / "current").symlink_to(release)
    for workdir in (tmp_path / "shop" / "current", release):
        service = settings(render_unit(**{**PLACEHOLDERS, "workdir": str(workdir)}, template=True))["Service"]
        daemon_tag = load_config(env={}, cwd=str(workdir)).tag
        assert service["ExecStart"].endswith(f"--tag {daemon_tag}-%i")
        assert daemon_tag == "shop"


@pytest.mark.parametrize(
    ("pidfile", "logfile", "writable"),
    [
        (None, None, "/srv/myapp"),
        ("tmp/pids/swarmd.pid", "log/swarmd.log", "/srv/myapp"),  # relative: inside the app
        ("/run/myapp/swarmd.pid", "/var/log/myapp/swarmd.log", "/srv/myapp -/run/myapp -/var/log/myapp"),
        ("/var/log/myapp/swarmd.pid", "/var/log/myapp/swarmd.log", "/srv/myapp -/var/log/myapp"),
        ("/tmp/swarmd.pid", "/srv/myapp/log/swarmd.log", "/srv/myapp"),  # /tmp is the unit's own
        (None, "../shared/log/x.log", "/srv/myapp -/srv/shared/log"),
        (None, "/var/log/my app/x.log", '/srv/myapp "-/var/log/my app"'),
    ],
)
def test_pidfile_and_logfile_folders_are_writable(
    pidfile: str | None, logfile: str | None, writable: str
) -> None:
    text = render_unit(**PLACEHOLDERS, pidfile=pidfile, logfile=logfile)
    assert settings(text)["Service"]["ReadWritePaths"] == writable


def test_optional_values_are_left_out() -> None:
    service = settings(
        render_unit(exec_path="/opt/venv/bin/swarmd", workdir="/app", config=None, user=None, group=None)
    )["Service"]
    assert service["ExecStart"] == "/opt/venv/bin/swarmd -e production"
    assert "User" not in service
    assert "Group" not in service


def test_paths_are_normalized() -> None:
    text = render_unit(
        exec_path="/opt//venv/./bin/swarmd", workdir="/srv/myapp/", config=None, user=None, group=None
    )
    service = settings(text)["Service"]
    assert service["ExecStart"].split()[0] == "/opt/venv/bin/swarmd"
    assert service["WorkingDirectory"] == "/srv/myapp"


def test_special_characters_are_escaped() -> None:
    text = render_unit(
        exec_path="/opt/my app/bin/swarmd", workdir="/srv/100%", config="a$b.yml", user=None, group=None
    )
    service = settings(text)["Service"]
    assert service["ExecStart"] == '"/opt/my app/bin/swarmd" -e production -C a$$b.yml'
    assert service["WorkingDirectory"] == "/srv/100%%"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"exec_path": "bin/swarmd"},
        {"exec_path": "/opt/it's/bin/swarmd"},
        {"exec_path": "/opt/a\\b/bin/swarmd"},
        {"exec_path": "/opt/a\tb/bin/swarmd"},
        {"workdir": "srv/myapp"},
        {"workdir": "/srv/myapp/current/../shared"},
        {"workdir": "/srv/my\napp"},
        {"config": "x\ny"},
        {"user": "de ploy"},
        {"group": "x\n"},
        {"timeout": -1.0},
        {"timeout": float("nan")},
    ],
)
def test_unwritable_values_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        render_unit(**{**PLACEHOLDERS, **kwargs})


# -- systemd-analyze verify --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    return require_tool("systemd-analyze", "systemd", "unit file checks", path=SBIN_PATH)


@pytest.fixture
def fake_swarmd(tmp_path: Path) -> Path:
    path = tmp_path / "venv" / "bin" / "swarmd"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def verify(systemd_analyze: str, unit_path: Path) -> str:
    """Everything systemd-analyze verify prints (stdout + stderr), plus its exit code when non-zero."""
    proc = subprocess.run(
        [systemd_analyze, "verify", str(unit_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
        check=False,
    )
    output = proc.stdout + proc.stderr
    return output + (f"[exit {proc.returncode}]" if proc.returncode else "")


@pytest.mark.parametrize("template", [False, True], ids=["service", "template"])
def test_rendered_unit_verifies_silently(
    systemd_analyze: str, fake_swarmd: Path, tmp_path: Path, template: bool
) -> None:
    name = "swarmd@.service" if template else "swarmd.service"
    unit = tmp_path / "units" / name
    unit.parent.mkdir()
    text = render_unit(
        exec_path=str(fake_swarmd),
        workdir=str(tmp_path),
        config="config/swarmd.yml",
        user="deploy",  # verify does not look users up; kept as shipped
        group="deploy",
        template=template,
    )
    unit.write_text(text, encoding="utf-8")
    assert verify(systemd_analyze, unit) == ""


def test_rendered_unit_with_odd_paths_verifies_silently(systemd_analyze: str, tmp_path: Path) -> None:
    # Spaces, % and $ in paths must survive systemd's quoting, specifier and variable expansion: a wrong
    # escape makes systemd look for another binary and verify fail, and bad quoting of an argument is
    # an "Unbalanced quoting" warning.
    exe = tmp_path / "my venv 100%" / "b$in" / "swarmd"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n", encoding="utf-8")
    exe.chmod(0o755)
    workdir = tmp_path / "app 100%"
    workdir.mkdir()
    unit = tmp_path / "swarmd@.service"
    unit.write_text(
        render_unit(
            exec_path=str(exe),
            workdir=str(workdir),
            config='my "c" \\f$HOME%i.yml',
            user=None,
            group=None,
            template=True,
        ),
        encoding="utf-8",
    )
    assert verify(systemd_analyze, unit) == ""
    instance = tmp_path / "swarmd@2.service"
    shutil.copy(unit, instance)
    assert verify(systemd_analyze, instance) == ""


def test_verify_catches_a_missing_binary(systemd_analyze: str, tmp_path: Path) -> None:
    # Guards the guard: the checked-in unit as is names a binary that does not exist here.
    unit = tmp_path / "swarmd.service"
    unit.write_text(
        SERVICE.read_text(encoding="utf-8").replace("/srv/myapp/", "/nonexistent/"), encoding="utf-8"
    )
    assert verify(systemd_analyze, unit) != ""


@pytest.mark.parametrize(
    ("source", "names"),
    [(SERVICE, ["swarmd.service"]), (TEMPLATE, ["swarmd@.service", "swarmd@1.service"])],
    ids=["service", "template"],
)
def test_checked_in_unit_verifies_silently(
    systemd_analyze: str, fake_swarmd: Path, tmp_path: Path, source: Path, names: list[str]
) -> None:
    text = source.read_text(encoding="utf-8")
    placeholder = str(PLACEHOLDERS["exec_path"])
    assert f"ExecStart={placeholder} " in text
    text = text.replace(f"ExecStart={placeholder} ", f"ExecStart={fake_swarmd} ")
    for name in names:
        unit = tmp_path / name
        unit.write_text(text, encoding="utf-8")
        assert verify(systemd_analyze, unit) == "", name


# -- sudoers -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def visudo() -> str:
    return require_tool("visudo", "sudo", path=SBIN_PATH)


@pytest.fixture(scope="session")
def logrotate() -> str:
    return require_tool("logrotate", "logrotate", path=SBIN_PATH)


def test_sudoers_passes_visudo(visudo: str) -> None:
    proc = subprocess.run([visudo, "-c", "-f", str(SUDOERS)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sudoers_allows_exactly_restart_reload_status() -> None:
    text = SUDOERS.read_text(encoding="utf-8")
    rules = re.sub(r"\\\n\s*", " ", "\n".join(line for line in text.splitlines() if not line.startswith("#")))
    commands = re.search(r"Cmnd_Alias SWARMD = (.*)", rules)
    assert commands is not None
    allowed = {command.strip() for command in commands.group(1).split(",")}
    assert allowed == {
        f"/usr/bin/systemctl {verb} {unit}"
        for verb in ("restart", "reload", "status")
        for unit in ("swarmd", "swarmd.service")
    }
    assert re.search(r"^%deploy ALL=\(root\) NOPASSWD: SWARMD$", rules, re.MULTILINE)


# -- logrotate ---------------------------------------------------------------------------------------------


def test_logrotate_signals_the_main_process_with_usr1() -> None:
    text = LOGROTATE.read_text(encoding="utf-8")
    assert re.search(
        r"postrotate\n\s+/usr/bin/systemctl kill --signal=USR1 --kill-whom=main swarmd.service", text
    )
    assert "/srv/myapp/log/swarmd.log {" in text


def test_logrotate_config_parses(logrotate: str, tmp_path: Path) -> None:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "swarmd.log").write_text("a line\n", encoding="utf-8")
    text = LOGROTATE.read_text(encoding="utf-8")
    text = text.replace("deploy deploy", f"{user} {group}").replace("/srv/myapp/log", str(log_dir))
    conf = tmp_path / "swarmd.logrotate"
    conf.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [logrotate, "--debug", "--force", "--state", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in (proc.stdout + proc.stderr).lower()
    assert "running postrotate script" in proc.stdout + proc.stderr


def test_the_unit_swarmctl_prints_verifies_silently(systemd_analyze: str, tmp_path: Path) -> None:
    # What a user runs: `swarmctl unit` in their app directory, with this venv's real swarmd.
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "swarmd.yml").write_text("concurrency: 5\n", encoding="utf-8")
    swarmctl = Path(sys.executable).parent / "swarmctl"
    proc = subprocess.run(
        [str(swarmctl), "unit", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        f"ExecStart={Path(sys.executable).parent / 'swarmd'} -e production -C config/swarmd.yml"
        in proc.stdout
    )
    unit = tmp_path / "swarmd.service"
    unit.write_text(proc.stdout, encoding="utf-8")
    assert verify(systemd_analyze, unit) == ""


def test_swarmctl_unit_makes_the_config_s_log_folder_writable(systemd_analyze: str, tmp_path: Path) -> None:
    config = tmp_path / "config" / "swarmd.yml"
    config.parent.mkdir()
    log_dir = "/var/log/swarmd-unit-test"  # outside the app directory (and never created: `-` skips it)
    config.write_text(f"logfile: {log_dir}/swarmd.log\npidfile: tmp/s.pid\n")
    app = tmp_path / "app"
    app.mkdir()
    swarmctl = str(Path(sys.executable).parent / "swarmctl")
    proc = subprocess.run(
        [swarmctl, "unit", "-C", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=app,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert settings(proc.stdout)["Service"]["ReadWritePaths"] == f"{app} -{log_dir}"
    unit = tmp_path / "swarmd.service"
    unit.write_text(proc.stdout, encoding="utf-8")
    assert verify(systemd_analyze, unit) == ""


# -- systemd-analyze security ------------------------------------------------------------------------------


def security_score(systemd_analyze: str, unit_path: Path) -> float:
    proc = subprocess.run(
        [systemd_analyze, "security", "--offline=true", "--no-pager", str(unit_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"},
        check=False,
    )
    if "--offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) ", proc.stdout)
    assert found, proc.stdout + proc.stderr
    return float(found[1])


@pytest.mark.parametrize("template", [False, True], ids=["service", "template"])
def test_the_sandbox_rates_ok(
    systemd_analyze: str, fake_swarmd: Path, tmp_path: Path, template: bool
) -> None:
    unit = tmp_path / ("swarmd@1.service" if template else "swarmd.service")
    text = render_unit(**{**PLACEHOLDERS, "exec_path": str(fake_swarmd)}, template=template)
    unit.write_text(text, encoding="utf-8")
    score = security_score(systemd_analyze, unit)
    assert score <= 4.0  # "OK" (the unit shipped before this sandbox rated 7.3 MEDIUM)
    version = subprocess.run([systemd_analyze, "--version"], capture_output=True, text=True, check=False)
    if version.stdout.startswith("systemd 252 "):  # the number the unit's comment gives
        assert f"rates it {score:.1f} OK on systemd 252" in text
