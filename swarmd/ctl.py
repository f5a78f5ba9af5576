"""``swarmctl``: look at and steer a swarm through Redis, the way Sidekiq's Web UI does.

A thin layer over `swarmd.admin`: parse the arguments, call `Admin`, print. Everything that reads or
writes Redis lives in `swarmd.admin` (shared with the web dashboard and ``/metrics``), which reads and
writes only Sidekiq's keys (and swarmd's in-flight lists, for a total), so this works on Sidekiq
processes too. Moves out of ``retry``/``schedule``/``dead`` act on an entry only if that call removed
it from its set, so two admins (or a scheduler) never enqueue a job twice. "Retry now" is Sidekiq's
``SortedEntry#retry``: ``retry_count`` is decremented when present, so the manual attempt does not use
up a retry; the job keeps its jid and gets a fresh ``enqueued_at``.

Listings page through Redis (``--limit`` with ``--offset`` or ``--page``) and never load a whole set.
``clear`` asks for confirmation on a terminal; without one it needs ``--yes``.

Exit codes: 0 ok, 1 no such job/queue/process (or a confirmation declined), 2 usage, 69 Redis, 70 a
``require`` failed to import, 78 config (``check``: also when ``require`` registers no job function).
A user's mistake is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import grp
import ipaddress
import json
import logging
import os
import pwd
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from swarmd import connection, payload, registry
from swarmd.admin import KINDS, MAX_PAGE, Admin, Entry, Found, Kind, Outcome, Process, Queue, Status, by_host
from swarmd.client import Client
from swarmd.config import (
    Config,
    QueueOrder,
    format_address,
    hide_argv_passwords,
    load_config,
    parse_host_port,
)
from swarmd.errors import ConfigError, ExitCode, NotFound, PayloadError, RedisUnavailable, SwarmdError
from swarmd.unitfile import render_unit
from swarmd.version import __version__ as VERSION

NOT_FOUND = int(ExitCode.NOT_FOUND)
USAGE = int(ExitCode.USAGE)
_SETS: dict[str, Kind] = {"retries": "retry", "scheduled": "schedule", "dead": "dead"}
Handler = Callable[[argparse.Namespace, Config, Admin], int]


def _err(message: object) -> None:
    print(_clean(f"swarmctl: {message}"), file=sys.stderr)


def _clean(text: str) -> str:
    """``text`` printable: a lone surrogate (a valid ``\\udcff`` JSON escape in a job) as ``\\udcff``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Failed(Exception):
    """One line for stderr and an exit code: a usage mistake (2) or no such job/queue/process (1)."""

    def __init__(self, message: str, code: int = NOT_FOUND) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line: ``swarmctl: error: <what> (see swarmctl [COMMAND] --help)``, exit 2."""
        message = " ".join(message.split())
        self.exit(USAGE, f"swarmctl: error: {message} (see {self.prog} --help)\n")


def _common(default: Any) -> _Parser:
    p = _Parser(add_help=False)
    p.add_argument("-C", "--config", metavar="FILE", default=default, help="YAML config file")
    p.add_argument("-e", "--environment", metavar="ENV", default=default, help="config section")
    p.add_argument("--redis-url", metavar="URL", default=default, help="overrides the config's Redis URL")
    return p


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _offset(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="swarmctl",
        description="Inspect and administer swarmd (and Sidekiq) through Redis.",
        parents=[_common(None)],
    )
    p.add_argument("-V", "--version", action="version", version=f"swarmctl {VERSION}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common(argparse.SUPPRESS)]  # SUPPRESS: a value given before the command survives

    def cmd(name: str, func: Handler | None, text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=common, help=text, description=text)
        parser.set_defaults(func=func)
        return parser

    cmd("status", _status, "processes, queues and totals").add_argument("--json", action="store_true")
    cmd("check", None, "validate the config, Redis and the require modules")
    unit = cmd("unit", None, "print a systemd unit with this venv's paths")
    unit.add_argument("--user", metavar="U", help="User= (default: the owner of the workdir)")
    unit.add_argument("--group", metavar="G", help="Group= (default: the workdir's group)")
    unit.add_argument("--workdir", metavar="D", help="WorkingDirectory= (default: the current directory)")
    unit.add_argument("--template", action="store_true", help="swarmd@.service, one unit per process")
    enq = cmd("enqueue", _enqueue, "enqueue a job by name, print its jid")
    enq.add_argument("name", metavar="NAME")
    enq.add_argument("json_args", metavar="JSON_ARGS", nargs="?", default="[]", help="a JSON array")
    enq.add_argument("-q", "--queue", metavar="QUEUE")
    enq.add_argument("--in", dest="delay", type=_seconds, metavar="SECONDS", help="run in SECONDS")
    for name, what in (("retries", "retry"), ("scheduled", "schedule"), ("dead", "dead")):
        order = "newest first" if what == "dead" else "soonest first"
        listing = cmd(name, _list, f"list the {what} set, {order}")
        listing.add_argument("--limit", type=_positive_int, default=25, metavar="N", help="(default 25)")
        start = listing.add_mutually_exclusive_group()
        start.add_argument("--offset", type=_offset, default=0, metavar="N", help="skip the first N jobs")
        start.add_argument(
            "--page", type=_positive_int, metavar="P", help="page P of --limit jobs (1: first)"
        )
        listing.add_argument("--json", action="store_true")
    show = cmd("show", _show, "where a job is (retry, schedule, dead, a queue, running) and all of it")
    show.add_argument("jid", metavar="JID")
    show.add_argument("--json", action="store_true")
    retry = cmd("retry", _retry, "push jobs from retry/dead back to their queues now (Sidekiq's Retry)")
    group = retry.add_mutually_exclusive_group(required=True)
    group.add_argument("jid", metavar="JID", nargs="?")
    group.add_argument("--all", action="store_true", help="every job of --from (default: retry)")
    retry.add_argument("--from", dest="source", choices=("retry", "dead"), help="(JID default: both)")
    delete = cmd("delete", _delete, "delete a job from retry/schedule/dead")
    delete.add_argument("jid", metavar="JID")
    delete.add_argument("--from", dest="source", choices=KINDS)
    clear = cmd("clear", _clear, "delete a queue and its jobs (asks first; --yes without a terminal)")
    clear.add_argument("queue", metavar="QUEUE")
    clear.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    for name, sig in (("quiet", "TSTP"), ("stop", "TERM")):
        signal = cmd(name, _signal, f"{name} a process at its next beat ({sig} via <identity>-signals)")
        group = signal.add_mutually_exclusive_group(required=True)
        group.add_argument("identity", metavar="IDENTITY", nargs="?")
        group.add_argument("--all", action="store_true", help="every live process")
        signal.set_defaults(signal=sig)
    cmd("periodic", _periodic, "periodic jobs: each entry's schedule, last and next run").add_argument(
        "--json", action="store_true"
    )
    web = cmd("web", _web, "serve the web dashboard and /metrics (waitress; 127.0.0.1:7433 by default)")
    web.add_argument(
        "--bind", metavar="HOST:PORT", help="where to listen (default: web.bind, 127.0.0.1:7433)"
    )
    web.add_argument("--read-only", action="store_true", default=None, help="no buttons; every POST gets 403")
    return p


def main(argv: Sequence[str] | None = None) -> NoReturn:
    if argv is None:  # the real command line: no password in `ps` while Redis is slow
        hide_argv_passwords()
    args = build_parser().parse_args(argv)
    try:
        code = _run(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `swarmctl dead | head`: stop quietly (the recipe in Python's signal docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "unit":
            return _unit(args)
        config = load_config(args.config, args.environment, {"redis_url": args.redis_url})
        if args.command == "check":
            return _check(config)
        admin = Admin.from_config(config)
        try:
            func: Handler = args.func
            return func(args, config, admin)
        except connection.RedisError as exc:
            down = isinstance(exc, connection.ConnectionError | connection.TimeoutError)
            where = f"{'cannot reach ' if down else ''}Redis at {config.redacted_redis_url()}"
            raise RedisUnavailable(f"{where}: {exc}") from None
        finally:
            admin.close()
    except SwarmdError as exc:  # NotFound included: exit 1
        _err(exc)
        return int(exc.exit_code)
    except Failed as exc:
        _err(exc)
        return exc.code


# -- web -------------------------------------------------------------------------------------------
WEB_THREADS = 8


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _web(args: argparse.Namespace, config: Config, admin: Admin) -> int:
    """``swarmctl web``: the dashboard on waitress, a pure-Python production WSGI server (threads, no
    fork, nothing to compile, keeps slow clients off the app threads). Listens on loopback unless
    auth is configured."""
    web = config.web
    try:
        host, port = parse_host_port(
            args.bind or web.bind, "--bind" if args.bind else "web.bind", "127.0.0.1"
        )
    except ConfigError as exc:
        raise Failed(str(exc), USAGE if args.bind else int(ExitCode.CONFIG)) from None
    password = os.environ.get("SWARMD_WEB_PASSWORD") or web.password
    if (web.username is None) != (password is None):
        raise Failed(
            "web: set both web.username and a password (web.password or SWARMD_WEB_PASSWORD), or neither",
            int(ExitCode.CONFIG),
        )
    if not _is_loopback(host) and password is None:
        raise Failed(
            f"web: refusing to listen on {format_address(host, port)} without auth: set web.username and "
            "web.password (or SWARMD_WEB_PASSWORD), or bind 127.0.0.1",
            int(ExitCode.CONFIG),
        )
    read_only = bool(args.read_only) or web.read_only
    admin.redis.ping()  # Redis unreachable: exit 69 now rather than a 503 on every page
    import signal as signals

    import waitress

    from swarmd.web import Dashboard

    app = Dashboard(admin, read_only=read_only, username=web.username, password=password)
    try:
        server = waitress.create_server(app, host=host, port=port, threads=WEB_THREADS, ident="swarmd")
    except OSError as exc:
        raise Failed(f"web: cannot listen on {format_address(host, port)}: {exc.strerror}", 69) from None
    mode = ", read-only" if read_only else ""
    auth = ", Basic auth" if password is not None else ""
    print(
        f"swarmctl web: serving http://{format_address(host, port)}/{mode}{auth}", file=sys.stderr, flush=True
    )
    signals.signal(signals.SIGTERM, lambda s, f: sys.exit(0))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


# -- status ----------------------------------------------------------------------------------------
def _age(seconds: float | None) -> str:
    """``4.2s``, ``3m05s``, ``2h10m``, ``3d04h``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    big, small, size, part = ("m", "s", 60, 1) if seconds < 3600 else ("h", "m", 3600, 60)
    if seconds >= 86400:
        big, small, size, part = "d", "h", 86400, 3600
    return f"{int(seconds // size)}{big}{int(seconds % size // part):02d}{small}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> list[str]:
    """Aligned columns (nothing when there are no rows); `right`: indexes of the right-aligned ones."""
    if not rows:
        return []
    cells = [["-" if c is None else _clean(str(c)) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]


def _process_json(p: Process) -> dict[str, Any]:
    return {
        "identity": p.identity,
        "hostname": p.hostname,
        "pid": p.pid,
        "tag": p.tag,
        "busy": p.busy,
        "concurrency": p.concurrency,
        "rss_kb": p.rss_kb,
        "beat_age_s": None if p.beat_age_s is None else round(p.beat_age_s, 1),
        "quiet": p.quiet,
        "queues": list(p.queues),
        "version": p.version,
    }


def _queue_json(q: Queue) -> dict[str, Any]:
    return {
        "name": q.name,
        "size": q.size,
        "latency_s": None if q.latency_s is None else round(q.latency_s, 3),
    }


def status_json(status: Status) -> dict[str, Any]:
    """What `swarmctl status --json` prints (the Web UI's Busy and Queues pages plus the totals)."""
    t = status.totals
    stats = dict(
        processed=t.processed,
        failed=t.failed,
        scheduled=t.scheduled,
        retries=t.retries,
        dead=t.dead,
        in_flight=t.in_flight,
    )
    hosts = [
        {
            "hostname": h.hostname,
            "processes": [p.identity for p in h.processes],
            "busy": h.busy,
            "concurrency": h.concurrency,
        }
        for h in by_host(status.processes)
    ]
    return {
        "processes": [_process_json(p) for p in status.processes],
        "hosts": hosts,
        "queues": [_queue_json(q) for q in status.queues],
        "stats": stats,
    }


def _status(args: argparse.Namespace, config: Config, admin: Admin) -> int:
    data = status_json(admin.status())
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    procs, hosts, queues, stats = data["processes"], data["hosts"], data["queues"], data["stats"]
    by_identity = {p["identity"]: p for p in procs}
    rows: list[tuple[object, ...]] = []
    for host in hosts:  # one heading row per host, then its processes
        busy = f"{host['busy']}/{host['concurrency']}"
        count = len(host["processes"])
        rows.append(
            (f"{host['hostname']}: {count} process{'' if count == 1 else 'es'}", "", "", busy, "", "", "")
        )
        for ident in host["processes"]:
            p = by_identity[ident]
            rows.append(
                (
                    f"  {p['identity']}",
                    p["pid"],
                    p["tag"],
                    f"{p['busy']}/{p['concurrency']}",
                    "-" if p["rss_kb"] is None else f"{p['rss_kb'] / 1024:.1f} MB",
                    _age(p["beat_age_s"]),
                    "quiet" if p["quiet"] else "running",
                )
            )
    lines = [f"Processes: {len(procs)} on {_n(len(hosts), 'host')}"]
    lines += _table(
        ("HOST / IDENTITY", "PID", "TAG", "BUSY", "RSS", "BEAT", "STATE"), rows, right=(1, 3, 4, 5)
    )
    lines += ["", f"Queues: {len(queues)}"]
    lines += _table(
        ("QUEUE", "SIZE", "LATENCY"), [(q["name"], q["size"], _age(q["latency_s"])) for q in queues], (1, 2)
    )
    lines += ["", "  ".join(f"{k.replace('_', '-')} {v}" for k, v in stats.items())]
    print("\n".join(lines))
    return 0


# -- periodic --------------------------------------------------------------------------------------
def _periodic_iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def _periodic(args: argparse.Namespace, config: Config, admin: Admin) -> int:
    """``swarmctl periodic``: the entries the workers published (at their boot), soonest first."""
    entries = admin.periodic()
    if args.json:
        listed = [
            {
                "job": e.job,
                "cron": e.cron,
                "timezone": e.timezone,
                "args": e.args,
                "queue": e.queue,
                "last": _periodic_iso(e.last),
                "next": _periodic_iso(e.next),
                "published": _periodic_iso(e.seen),  # when a claimer last booted with it
            }
            for e in entries
        ]
        print(json.dumps(listed, indent=2))
        return 0
    if not entries:
        print("no periodic jobs (a worker publishes its entries when it boots)")
        return 0
    now = time.time()

    def when(ts: float | None, future: bool) -> str:
        if ts is None:
            return "-"
        stamp = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{stamp} ({'in ' if future else ''}{_age(abs(ts - now))}{'' if future else ' ago'})"

    rows = [
        (
            e.job,
            e.cron,
            e.timezone or "UTC",
            json.dumps(e.args),
            e.queue or "-",
            when(e.last, False),
            when(e.next, True),
        )
        for e in entries
    ]
    for line in _table(("JOB", "CRON", "TIMEZONE", "ARGS", "QUEUE", "LAST (UTC)", "NEXT (UTC)"), rows):
        print(line)
    return 0


# -- check and unit --------------------------------------------------------------------------------
def _describe(config: Config) -> list[tuple[str, object]]:
    order = {QueueOrder.STRICT: "strict order", QueueOrder.RANDOM: "random order"}
    queues = " ".join(f"{q.name},{q.weight}" if q.weight else q.name for q in config.queues)
    syslog = config.syslog
    return [
        ("config", config.path or "(none: defaults, SWARMD_* and flags)"),
        ("environment", config.environment),
        ("processes", config.processes),
        ("concurrency", config.concurrency),
        ("queues", f"{queues} ({order.get(config.queue_order, 'weighted random order')})"),
        ("require", ", ".join(config.require) or "-"),
        ("timeout", f"{config.timeout:g} s"),
        ("tag", config.tag),
        ("redis", config.redacted_redis_url()),
        ("namespace", config.namespace or "-"),
        ("pidfile", config.pidfile or "-"),
        ("logfile", config.logfile or "-"),
        ("syslog", f"{syslog.ident} ({syslog.facility}, {syslog.address})" if syslog else "-"),
    ]


def _check(config: Config) -> int:
    for name, value in _describe(config):
        print(f"{name + ':':13} {value}")
    code = 0
    admin = Admin.from_config(config)
    handler = logging.StreamHandler(sys.stderr)  # check_server's maxmemory-policy warning
    handler.setFormatter(logging.Formatter("swarmctl: warning: %(message)s"))
    log = logging.getLogger("swarmd")
    log.addHandler(handler)
    try:
        version = connection.check_server(admin.redis, config.redis)
        print(f"{'redis check:':13} OK, Redis {'.'.join(map(str, version))}")
        _print_replication(admin.redis)
    except (RedisUnavailable, ConfigError) as exc:  # ConfigError: a Redis Cluster node
        _err(exc)
        code = int(exc.exit_code)
    finally:
        log.removeHandler(handler)
        admin.close()
    for spec in config.require:
        try:
            registry.import_require(spec)
            print(f"{'import:':13} {spec} OK")
        except SwarmdError as exc:  # BootError
            _err(exc)
            code = code or int(ExitCode.SOFTWARE)
    jobs = len(registry.registered())
    if config.require:
        print(f"{'jobs:':13} {jobs} job functions registered")
    if config.periodic or registry.periodic_entries():
        try:
            registry.check_periodic(config.periodic)  # after require: the jobs the entries name exist
            print(
                f"{'periodic:':13} {_n(len(config.periodic) + len(registry.periodic_entries()), 'entry')} OK"
            )
        except ConfigError as exc:
            _err(exc)
            code = code or int(ExitCode.CONFIG)
    if not jobs and code == 0 and not config.delay_allow:
        # A worker would fail every job it fetches as UnknownJob: not a setup to start.
        where = f"require: {', '.join(config.require)}" if config.require else "require is empty"
        _err(
            f"no job functions registered ({where}): name the modules that define your @swarmd.job functions"
        )
        code = int(ExitCode.CONFIG)
    print("OK" if code == 0 else f"FAILED (exit {code})")
    return code


def _print_replication(redis: connection.Redis) -> None:
    """The master (``host:port``) and each replica's lag, from the master's INFO replication."""
    try:
        address = connection.server_address(redis)
        role, replicas = connection.replication(redis)
    except connection.RedisError as exc:  # INFO replication may be forbidden by ACLs
        print(f"{'master:':13} ? ({exc})")
        return
    print(f"{'master:':13} {address} (role {role}, {_n(len(replicas), 'replica')})")
    for replica in replicas:
        lag = "?" if replica["lag"] < 0 else f"{replica['lag']} s"
        behind = f"{replica['behind']} bytes behind"
        print(f"{'replica:':13} {replica['address']} {replica['state']}, lag {lag}, {behind}")


def _unit(args: argparse.Namespace) -> int:
    workdir = os.path.abspath(args.workdir or os.getcwd())
    environment = args.environment or "production"
    path = args.config
    if path is None and os.path.isfile(os.path.join(workdir, "config", "swarmd.yml")):
        path = os.path.join("config", "swarmd.yml")
    config = load_config(path, environment, cwd=workdir) if path is not None else None
    timeout = config.timeout if config is not None else 25.0
    user, group = args.user, args.group
    if user is None or group is None:
        try:
            st = os.stat(workdir)
        except OSError as exc:
            raise Failed(f"--workdir {workdir}: {exc.strerror} (or give --user and --group)", USAGE) from None
        user = user or _name(pwd.getpwuid, st.st_uid)
        group = group or _name(grp.getgrgid, st.st_gid)
    exec_path = os.path.join(os.path.dirname(sys.executable), "swarmd")  # the venv's, symlinks kept
    if not os.access(exec_path, os.X_OK):
        _err(f"warning: {exec_path} does not exist; is swarmd installed in this venv?")
    values = dict(exec_path=exec_path, workdir=workdir, config=path, user=user, group=group)
    if config is not None:  # their folders go into ReadWritePaths= when outside the app's directory
        values.update(pidfile=config.pidfile, logfile=config.logfile)
    try:
        text = render_unit(**values, environment=environment, timeout=timeout, template=args.template)
    except ValueError as exc:
        raise Failed(str(exc), USAGE) from None
    sys.stdout.write(text)
    return 0


def _name(lookup: Callable[[int], Any], ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:  # no name for that id: systemd takes the number
        return str(ident)


# -- jobs ------------------------------------------------------------------------------------------
def _enqueue(args: argparse.Namespace, config: Config, admin: Admin) -> int:
    try:
        job_args = json.loads(args.json_args)
    except ValueError as exc:
        raise Failed(f"JSON_ARGS: not valid JSON: {exc}", USAGE) from None
    if not isinstance(job_args, list):
        raise Failed(f"JSON_ARGS: expected a JSON array, got {args.json_args!r:.60}", USAGE)
    client = Client(config.redis, config.namespace)
    at = None if args.delay is None else payload.now() + args.delay
    try:
        jid = client.enqueue(args.name, job_args, None, {"queue": args.queue} if args.queue else {}, at=at)
    except PayloadError as exc:
        raise Failed(str(exc), USAGE) from None
    finally:
        client.redis.close()
    print(jid)
    return 0


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _entry_json(e: Entry) -> dict[str, Any]:
    """One job of a listing, as `swarmctl retries|scheduled|dead --json` prints it; an undecodable one
    is shown too (so that it can be found and deleted), its reason as the error."""
    bad = e.data is None
    return {
        "at": _iso(e.at),
        "score": e.score,
        "jid": e.jid,
        "class": e.job_class,
        "queue": e.queue,
        "retry_count": e.retry_count,
        "error_class": "undecodable" if bad else e.error_class,
        "error_message": e.problem if bad else e.error_message,
        "args": e.args,
    }


def _row(e: Entry) -> tuple[object, ...]:
    error_class = "undecodable" if e.data is None else e.error_class
    message = e.problem if e.data is None else e.error_message
    error = " ".join(f"{error_class}: {message}".split()) if error_class else ""
    count = "-" if e.retry_count is None else e.retry_count
    return _iso(e.at), e.jid or "-", e.job_class or "-", e.queue or "-", count, error[:70]


def _list(args: argparse.Namespace, config: Config, admin: Admin) -> int:
    kind = _SETS[args.command]
    offset = args.offset if args.page is None else (args.page - 1) * args.limit
    entries: list[Entry] = []
    total = 0
    while True:  # pages of at most MAX_PAGE: a big --limit is many bounded calls, never ZRANGE 0 -1
        page = admin.page(kind, offset + len(entries), min(MAX_PAGE, args.limit - len(entries)))
        total = total or page.total
        entries += page.entries
        if len(entries) >= args.limit or len(page.entries) < page.limit:
            break
    if args.json:
        print(json.dumps([_entry_json(e) for e in entries], indent=2))
        return 0
    order = "newest first" if kind == "dead" else "soonest first"
    shown = f"{len(entries)} shown" + (f" from #{offset + 1}" if offset else "")
    print(f"{kind}: {_n(total, 'job')}" + (f", {shown}, {order}" if total else ""))
    if entries:
        headers = ("AT", "JID", "CLASS", "QUEUE", "RETRIES", "ERROR")
        print("\n".join(_table(headers, [_row(e) for e in entries], right=(4,))))
    return 0


# -- show ------------------------------------------------------------------------------------------
def _where(found: Found, now: dt.datetime) -> str:
    e = found.entry
    at = _iso(e.at) or "-"
    ahead = None if e.at is None else (e.at - now).total_seconds()
    if found.where == "retry":
        return f"retry, next attempt at {at}" + ("" if ahead is None else f" (in {_age(max(0.0, ahead))})")
    if found.where == "schedule":
        return f"schedule, runs at {at}" + ("" if ahead is None else f" (in {_age(max(0.0, ahead))})")
    if found.where == "dead":
        return f"dead since {at}" + ("" if ahead is None else f" ({_age(max(0.0, -ahead))} ago)")
    if found.where == "queue":
        return f"queue {found.queue}, waiting to run"
    busy = found.busy
    assert busy is not None
    since = "" if busy.run_at is None else f", since {_iso(busy.run_at)}"
    return f"running on {busy.identity} (thread {busy.tid}{since})"


def _field(name: str, value: object) -> list[str]:
    """``name:`` padded to 13 columns, the value's further lines indented to match."""
    lines = str(value).splitlines() or [""]
    return [f"{name + ':':13} {lines[0]}".rstrip(), *(f"{'':13} {line}".rstrip() for line in lines[1:])]


def _show_lines(found: Found, now: dt.datetime) -> list[str]:
    e = found.entry
    lines = _field("jid", e.jid or "-") + _field("where", _where(found, now))
    if e.data is None:
        lines += _field("undecodable", e.problem)
        lines += _field("raw", e.raw[:2000].decode(errors="replace"))
        return lines
    lines += _field("class", e.job_class if not e.wrapped else f"{e.wrapped} (in {e.job_class})")
    lines += _field("queue", e.queue or "default")
    lines += _field("args", json.dumps(e.args, indent=2, ensure_ascii=False))
    if e.kwargs:
        lines += _field("kwargs", json.dumps(e.kwargs, indent=2, ensure_ascii=False))
    if e.retry_count is not None:
        lines += _field("retry count", e.retry_count)
    if e.error_class or e.error_message:
        lines += _field("error", f"{e.error_class or '-'}: {e.error_message or ''}")
    for name, when in (
        ("created at", e.created_at),
        ("enqueued at", e.enqueued_at),
        ("failed at", e.failed_at),
        ("retried at", e.retried_at),
    ):
        if when is not None:
            lines += _field(name, _iso(when))
    if e.backtrace:
        lines += ["backtrace:", *(f"  {line}" for line in e.backtrace)]
    elif e.data.get("error_backtrace") is not None:
        lines += _field("backtrace", "(present but cannot be decoded)")
    return lines


def _found_json(found: Found) -> dict[str, Any]:
    e, busy = found.entry, found.busy
    return {
        "where": found.where,
        "queue": found.queue,
        "process": None if busy is None else busy.identity,
        "thread": None if busy is None else busy.tid,
        "run_at": None if busy is None else _iso(busy.run_at),
        "at": _iso(e.at),
        "score": e.score,
        "key": None if e.score is None else e.key,
        "jid": e.jid,
        "job": e.data,
        "undecodable": e.problem,
        "backtrace": None if e.backtrace is None else list(e.backtrace),
    }


def _show(args: argparse.Namespace, config: Config, admin: Admin) -> int:
    found = admin.find(args.jid, queues=True, busy=True)
    if not found:
        raise Failed(f"no job {args.jid} in retry, schedule, dead, the queues or running")
    if args.json:
        print(json.dumps([_found_json(f) for f in found], indent=2))
        return 0
    now = dt.datetime.now(dt.UTC)
    print(_clean("\n\n".join("\n".join(_show_lines(f, now)) for f in found)))
    return 0


# -- retry / delete / clear ------------------------------------------------------------------------
def _report_retry(source: str, outcome: Outcome) -> None:
    if outcome.done:
        print(f"retried {_n(outcome.done, 'job')} from {source}")
    if outcome.undecodable:
        _err(f"{outcome.undecodable} undecodable entries left in {source} (delete them by jid or by hand)")


def _retry(args: argparse.Namespace, config: Config, admin: Admin) -> int:
    sources: list[Kind] = [args.source] if args.source else ["retry"] if args.all else ["retry", "dead"]
    if args.all:
        [source] = sources
        outcome = admin.retry_all(source)
        _report_retry(source, outcome)
        if not outcome.done:
            print(f"no jobs in {source}")
        return 0
    found = admin.find(args.jid, kinds=sources)
    moved = 0
    for source in sources:
        entries = [f.entry for f in found if f.where == source]
        outcome = admin.retry_now(source, entries) if entries else Outcome()
        _report_retry(source, outcome)
        moved += outcome.done
    if not moved:
        raise Failed(f"no job {args.jid} in {' or '.join(sources)}")
    return 0


def _delete(args: argparse.Namespace, config: Config, admin: Admin) -> int:
    sources: list[Kind] = [args.source] if args.source else list(KINDS)
    found = admin.find(args.jid, kinds=sources)
    deleted = 0
    for source in sources:
        if entries := [f.entry for f in found if f.where == source]:
            removed = admin.delete(source, entries).done
            if removed:
                print(f"deleted {args.jid} from {source}")
            deleted += removed
    if not deleted:
        raise Failed(f"no job {args.jid} in {', '.join(sources)}")
    return 0


def _confirm(question: str) -> bool:
    """Ask on the terminal (stderr, so stdout stays clean); only y or yes is a yes."""
    print(question, end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    if not answer.endswith("\n"):
        print(file=sys.stderr)  # Ctrl-C or Ctrl-D: end the prompt's line
    return answer.strip().lower() in ("y", "yes")


def _clear(args: argparse.Namespace, config: Config, admin: Admin) -> int:
    """Sidekiq's ``Queue#clear``; asks first on a terminal, refuses without one unless --yes."""
    if not args.yes:
        if not sys.stdin.isatty():
            raise Failed(f"clear: no terminal to confirm on; add --yes to delete queue {args.queue!r}", USAGE)
        size = admin.queue_size(args.queue)
        if not _confirm(f"Delete {_n(size, 'job')} from queue {args.queue}? [y/N] "):
            raise Failed(f"queue {args.queue!r} not cleared")
    print(f"cleared queue {args.queue}: {_n(admin.clear_queue(args.queue), 'job')} deleted")
    return 0


def _signal(args: argparse.Namespace, config: Config, admin: Admin) -> int:
    """TSTP (quiet) or TERM (stop) to one live process or every one, obeyed at its next beat."""
    send = admin.quiet if args.signal == "TSTP" else admin.stop
    try:
        targets = send(None if args.all else args.identity)
    except NotFound:
        raise Failed(f"no live process {args.identity!r} (see swarmctl status)") from None
    for ident in targets:
        print(f"{args.command}: {args.signal} sent to {ident}")
    if not targets:
        print("no live processes")
    return 0


if __name__ == "__main__":
    main()
