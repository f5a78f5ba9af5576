"""systemd unit files for swarmd: `units/swarmd.service` and `units/swarmd@.service`.

`render_unit()` is the single source of both: the checked-in files are its output for the placeholder
values in `PLACEHOLDERS` (a test keeps them identical), and `swarmctl unit` calls it with the real
paths of the running interpreter's venv.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from swarmd.config import app_dir, default_tag

__all__ = ["PLACEHOLDERS", "render_unit"]

PLACEHOLDERS: dict[str, Any] = {
    "exec_path": "/srv/myapp/.venv/bin/swarmd",
    "workdir": "/srv/myapp",
    "config": "config/swarmd.yml",
    "environment": "production",
    "user": "deploy",
    "group": "deploy",
    "timeout": 25.0,
}
"""The values the checked-in `units/*.service` files are rendered with."""

SECURITY_SCORE = "1.6 OK on systemd 252"
"""What `systemd-analyze security --offline=true` says of the unit (a test keeps it <= 4.0)."""

STOP_GRACE_S = 15
"""TimeoutStopSec = timeout + this: the drain, then reaping and pushing jobs back (at least 10 s)."""

_SAFE_WORD = re.compile(r"[A-Za-z0-9_@%$+=:,./-]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?|[0-9]+")

_HEADER = """\
# {unit}: {summary}
#
# Generate this file with your real paths:   swarmctl unit -e {environment}{template_flag} > {unit}
# Install:  sudo cp {unit} /etc/systemd/system/ && sudo systemctl daemon-reload
#           {enable}
#
# The two lines to edit:
#   WorkingDirectory=  your app's root; relative paths (config, `require`, logfile) start there.
#   ExecStart=         the `swarmd` script INSIDE your app's virtualenv, <venv>/bin/swarmd. This is the
#                      line people get wrong: systemd does not activate a venv or read your shell's PATH,
#                      and a swarmd from another Python cannot import your jobs. `swarmctl unit` prints it.
#
# Deploys: `systemctl reload {reload_name}` is a rolling restart (SIGHUP): the config is re-read, workers
# are replaced one at a time, each new one booted before the old one stops; no job is lost and there is
# no capacity gap. New code is imported by the new workers.
# Stop: SIGTERM goes to the supervisor only (KillMode=mixed), which drains its workers for `timeout`
# ({timeout} s) and pushes unfinished jobs back to their queues. TimeoutStopSec= must exceed `timeout`
# + 10 s, or systemd SIGKILLs the drain: raise both together.
"""

_TEMPLATE_NOTE = """\
#
# One unit per worker process: each instance is a swarm of one worker (`--processes 1`), tagged
# <app>-<instance>, with its own supervisor, watchdog, restarts and private /tmp. Instead of swarmd.service,
# not next to it: start as many as you need, e.g. one per CPU:
#   systemctl enable --now swarmd@{{1..4}}
#   systemctl reload 'swarmd@*'          (rolling restart of every instance)
"""

_BODY = """\

[Unit]
Description={description}
Wants=network-online.target
After=network-online.target redis-server.service
# A crash loop (e.g. a deploy whose jobs fail to import) gives up after 30 starts in 10 minutes; enough
# to ride out a Redis restart. `systemctl reset-failed {reload_name}` re-arms it.
StartLimitIntervalSec=600
StartLimitBurst=30

[Service]
Type=notify
NotifyAccess=main
WorkingDirectory={workdir}
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
{identity}\
UMask=0002
Environment=MALLOC_ARENA_MAX=2 PYTHONUNBUFFERED=1
Restart=always
RestartSec=1
# 2 = usage error, 78 = invalid config: restarting cannot fix those.
RestartPreventExitStatus=2 78
KillMode=mixed
TimeoutStopSec={timeout_stop}
# The supervisor pings from its own loop every 15 s; a wedged loop gets SIGABRT and a restart.
WatchdogSec=30
# The supervisor replaces a worker the kernel OOM-killed; the default (stop) would stop the whole unit.
OOMPolicy=continue
SyslogIdentifier=swarmd
{extra_logging}\
# Sandbox: what a job daemon can live with (`systemd-analyze security` rates it {score}).
# Jobs that need more get it from a drop-in: `systemctl edit {edit_name}` (README: Deploy with systemd).
# The file system is read-only except the app's directory (and the config's logfile/pidfile folders);
# a pidfile or logfile elsewhere needs its folder in ReadWritePaths=.
ProtectSystem=strict
ReadWritePaths={writable}
# /home stays readable (apps and their virtualenvs often live under /home/<user>) but not writable;
# an app directory there is writable through ReadWritePaths= above. Jobs writing to ~/.cache need a drop-in.
ProtectHome=read-only
# Jobs get their own /tmp and /var/tmp: do not hand files to other services through /tmp.
PrivateTmp=yes
# /dev has only the pseudo devices (null, zero, urandom, ...): GPU jobs need PrivateDevices=no.
PrivateDevices=yes
PrivateMounts=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
# Calls outside the set a system service uses fail with EPERM instead of killing the process.
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
SystemCallArchitectures=native
# No new namespaces: headless Chrome's sandbox needs RestrictNamespaces=no (or run it with --no-sandbox).
RestrictNamespaces=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
# Left out on purpose:
#   MemoryDenyWriteExecute=  JITs (numba, PyPy, V8 in headless Chrome) and libffi callbacks need memory
#                            that is writable and executable.
#   PrivateNetwork=, IPAddressDeny=  jobs reach Redis and whatever else they work with over the network.
#   PrivateUsers=            files of other users (shared uploads, a database socket) would show as nobody.
#   ProcSubset=pid           jobs and libraries such as psutil read /proc/meminfo, /proc/cpuinfo.
#   RemoveIPC=               would also delete the semaphores and shared memory of every other process of
#                            this user (the web app's) whenever swarmd stops.
#   UMask=0077               UMask=0002 above keeps what jobs write group-writable for the deploy group.

[Install]
WantedBy=multi-user.target
"""


def render_unit(
    *,
    exec_path: str,
    workdir: str,
    config: str | None,
    environment: str = "production",
    user: str | None,
    group: str | None,
    timeout: float = 25.0,
    template: bool = False,
    pidfile: str | None = None,
    logfile: str | None = None,
) -> str:
    """The text of `swarmd.service` (or `swarmd@.service` when `template`) for these values.

    `exec_path` and `workdir` must be absolute; `config` may be relative to `workdir`; `user`/`group`
    None leave User=/Group= out (the service then runs as root: only sensible in a container).
    `pidfile`/`logfile` (the config's, relative to `workdir` or absolute) add their folders to
    ReadWritePaths= when they lie outside the app's directory.
    Raises ValueError for values that cannot be written into a unit file.
    """
    exec_path = _normalized("exec_path", exec_path)
    workdir = _normalized("workdir", workdir)
    if any(char in exec_path for char in "\"'\\") or not exec_path.isprintable():
        # systemd 252: "Executable name contains special characters", however it is quoted.
        raise ValueError(
            f"systemd refuses quotes, backslashes and control characters in exec_path: {exec_path!r}"
        )
    if not (timeout >= 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a non-negative number of seconds: {timeout!r}")
    for what, name in (("user", user), ("group", group)):
        if name is not None and not _NAME.fullmatch(name):
            raise ValueError(f"{what} is not a valid user/group name: {name!r}")

    argv = [_word(exec_path, command=True), "-e", _word(environment)]
    if config is not None:
        argv += ["-C", _word(config)]
    if template:
        # %i is the instance name ("1" for swarmd@1): tags myapp-1, myapp-2, ... (setproctitle, Web UI).
        argv += ["--processes", "1", "--tag", _word(_escape(default_tag(workdir)) + "-%i", specifiers=True)]
    identity = "".join(f"{key}={value}\n" for key, value in (("User", user), ("Group", group)) if value)
    unit = "swarmd@.service" if template else "swarmd.service"
    fields = {
        "unit": unit,
        "summary": "one unit per swarmd worker process (systemd template)"
        if template
        else "one swarmd swarm (a supervisor and its worker processes) for one app",
        "environment": environment,
        "template_flag": " --template" if template else "",
        "enable": "sudo systemctl enable --now swarmd@{1..4}"
        if template
        else "sudo systemctl enable --now swarmd",
        "reload_name": "'swarmd@*'" if template else "swarmd",
        "edit_name": "swarmd@.service" if template else "swarmd",
        "timeout": _seconds(timeout),
        "description": "swarmd job worker %i" if template else "swarmd job daemon",
        "workdir": _path_value(workdir),
        "exec_start": " ".join(argv),
        "identity": identity,
        "timeout_stop": _seconds(math.ceil(timeout) + STOP_GRACE_S),
        "extra_logging": "LogExtraFields=SWARMD_INSTANCE=%i\n" if template else "",
        "writable": " ".join(_path_word(path) for path in _writable(workdir, pidfile, logfile)),
        "score": SECURITY_SCORE,
    }
    header = _HEADER + (_TEMPLATE_NOTE if template else "")
    return header.format(**fields) + _BODY.format(**fields)


def _normalized(what: str, path: str) -> str:
    """systemd wants absolute, normalized paths ("path is not normalized" otherwise)."""
    if not os.path.isabs(path):
        raise ValueError(f"{what} must be absolute: {path!r}")
    if ".." in path.split("/"):  # normpath would guess wrong across a symlink (capistrano's current/)
        raise ValueError(f"{what} must not contain '..': {path!r}")
    return "/" + os.path.normpath(path).lstrip("/")  # normpath keeps a leading "//"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _writable(workdir: str, pidfile: str | None, logfile: str | None) -> list[str]:
    """ReadWritePaths=: the app's directory (for Capistrano's ``current``, the app's root, which holds
    ``shared/`` where ``log`` and ``tmp/pids`` point), then the folders of the pidfile and logfile that
    lie elsewhere, each with ``-`` (ignored while missing: swarmd creates the logfile's folder, but
    only where it may write). Folders under /tmp and /var/tmp are private to the unit anyway."""
    app = app_dir(workdir)
    paths = [app]
    for path in (pidfile, logfile):
        if not path:
            continue
        folder = os.path.normpath(os.path.join(workdir, os.path.dirname(path)))
        covered = (app, "/tmp", "/var/tmp")  # /tmp and /var/tmp: the unit's own (PrivateTmp=yes)
        if not any(folder == p or folder.startswith(p.rstrip("/") + "/") for p in covered) and (
            "-" + folder not in paths
        ):
            paths.append("-" + folder)
    return paths


def _escape(text: str) -> str:
    """Make text literal in a unit file: `%` starts a specifier."""
    return text.replace("%", "%%")


def _check_line(text: str) -> None:
    if any(char in text for char in "\n\r\0"):
        raise ValueError(f"a newline or NUL cannot be written into a unit file: {text!r}")


def _path_value(path: str) -> str:
    _check_line(path)
    if path != path.strip():
        raise ValueError(f"leading or trailing whitespace is lost in a unit file: {path!r}")
    return _escape(path)


def _path_word(path: str) -> str:
    """One word of a path list (ReadWritePaths=): specifiers made literal, quoted when needed."""
    _check_line(path)
    text = _escape(path)
    if _SAFE_WORD.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _word(arg: str, *, specifiers: bool = False, command: bool = False) -> str:
    """One ExecStart= word: specifiers and $VARIABLES made literal, quoted when needed.

    systemd expands $VARIABLES in arguments only, not in the command's path (checked on 252 with
    systemd-analyze verify), so `$` is doubled everywhere but in the first word.
    """
    _check_line(arg)
    text = arg if specifiers else _escape(arg)
    if not command:
        text = text.replace("$", "$$")
    if text and _SAFE_WORD.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
