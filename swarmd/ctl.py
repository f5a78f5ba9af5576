"""``swarmctl``: look at and steer a swarm through Redis, the way Sidekiq's Web UI does (SPEC 1.4).

It reads and writes only Sidekiq's keys (and swarmd's in-flight lists, for a total), so it works on
Sidekiq processes too. Moves out of ``retry``/``dead`` reuse ``lua/schedule.lua``: a job is pushed only
if this call removed it from the set, so two admins (or a scheduler) can never enqueue it twice.
"Retry now" is Sidekiq's ``SortedEntry#retry``: ``retry_count`` is decremented when present, so the
manual attempt does not use up a retry; the job keeps its jid and gets a fresh ``enqueued_at``.

Exit codes: 0 ok, 1 no such job/queue/process, 2 usage, 69 Redis, 70 a ``require`` failed to import,
78 config (SPEC 1.7). A user's mistake is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import grp
import json
import logging
import os
import pwd
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from swarmd import connection, payload, registry
from swarmd.client import Client
from swarmd.config import Config, QueueOrder, hide_argv_passwords, load_config
from swarmd.errors import ConfigError, DecodeError, ExitCode, PayloadError, RedisUnavailable, SwarmdError
from swarmd.keys import Keys
from swarmd.scripts import Scripts
from swarmd.unitfile import render_unit
from swarmd.version import __version__ as VERSION

NOT_FOUND = 1
USAGE = int(ExitCode.USAGE)
SIGNAL_TTL = 60  # as Sidekiq's Web UI: a signal nobody pops (process gone) does not linger
_SETS = {"retries": "retry", "scheduled": "schedule", "dead": "dead"}
_BATCH = 100
Handler = Callable[[argparse.Namespace, Config, Keys, connection.Redis], int]


def _err(message: object) -> None:
    print(f"swarmctl: {message}", file=sys.stderr)


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
        listing = cmd(name, _list, f"list the {what} set")
        listing.add_argument("--limit", type=_positive_int, default=25, metavar="N", help="(default 25)")
        listing.add_argument("--json", action="store_true")
    retry = cmd("retry", _retry, "push jobs from retry/dead back to their queues now (Sidekiq's Retry)")
    group = retry.add_mutually_exclusive_group(required=True)
    group.add_argument("jid", metavar="JID", nargs="?")
    group.add_argument("--all", action="store_true", help="every job of --from (default: retry)")
    retry.add_argument("--from", dest="source", choices=("retry", "dead"), help="(JID default: both)")
    delete = cmd("delete", _delete, "delete a job from retry/schedule/dead")
    delete.add_argument("jid", metavar="JID")
    delete.add_argument("--from", dest="source", choices=("retry", "schedule", "dead"))
    cmd("clear", _clear, "delete a queue and its jobs").add_argument("queue", metavar="QUEUE")
    for name, sig in (("quiet", "TSTP"), ("stop", "TERM")):
        signal = cmd(name, _signal, f"{name} a process at its next beat ({sig} via <identity>-signals)")
        group = signal.add_mutually_exclusive_group(required=True)
        group.add_argument("identity", metavar="IDENTITY", nargs="?")
        group.add_argument("--all", action="store_true", help="every live process")
        signal.set_defaults(signal=sig)
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
        redis = _connect(config)
        try:
            func: Handler = args.func
            return func(args, config, Keys(config.namespace), redis)
        except connection.RedisError as exc:
            down = isinstance(exc, connection.ConnectionError | connection.TimeoutError)
            where = f"{'cannot reach ' if down else ''}Redis at {config.redacted_redis_url()}"
            raise RedisUnavailable(f"{where}: {exc}") from None
        finally:
            redis.close()
    except SwarmdError as exc:
        _err(exc)
        return int(exc.exit_code)
    except Failed as exc:
        _err(exc)
        return exc.code


def _connect(config: Config) -> connection.Redis:
    try:
        return connection.connect(config.redis_url)
    except ValueError as exc:  # redis-py's URL parser
        raise ConfigError(f"redis url {config.redacted_redis_url()}: {exc}") from None


# -- status ----------------------------------------------------------------------------------------
def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _json_obj(raw: Any) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _members(redis: connection.Redis, key: str) -> list[str]:
    members: Any = redis.smembers(key)
    return sorted(m.decode(errors="replace") for m in members)


def _queues_of(info: dict[str, Any]) -> list[Any]:
    """``info.queues``, else the queues of ``info.capsules.default.weights`` (Sidekiq 8.0.9+)."""
    if isinstance(queues := info.get("queues"), list):
        return queues
    try:
        return list(info["capsules"]["default"]["weights"])
    except (KeyError, TypeError):
        return []


def status_data(redis: connection.Redis, keys: Keys) -> dict[str, Any]:
    """What `swarmctl status --json` prints (the Web UI's Busy and Queues pages plus the totals)."""
    now = payload.now()
    idents, names = _members(redis, keys.processes), _members(redis, keys.queues)
    workers = _members(redis, keys.swarmd_workers)
    pipe = redis.pipeline(transaction=False)
    for ident in idents:
        pipe.hmget(keys.process(ident), ["info", "busy", "beat", "quiet", "rss", "concurrency"])
    for name in names:
        pipe.llen(keys.queue(name))
        pipe.lindex(keys.queue(name), -1)  # the oldest job: Sidekiq's latency
    for key in (keys.stat("processed"), keys.stat("failed")):
        pipe.get(key)
    for key in (keys.schedule, keys.retry, keys.dead):
        pipe.zcard(key)
    for ident in workers:
        pipe.llen(keys.inflight(ident))
    replies = iter(pipe.execute())
    processes = []
    for ident in idents:
        raw_info, busy, beat, quiet, rss, concurrency = next(replies)
        if raw_info is None:  # the hash expired: the process is gone, cleanup will SREM it
            continue
        info = _json_obj(raw_info)
        processes.append(
            {
                "identity": ident,
                "hostname": info.get("hostname", ident.split(":", 1)[0]),
                "pid": info.get("pid"),
                "tag": info.get("tag", ""),
                "busy": _int(busy) or 0,
                "concurrency": _int(concurrency) if concurrency else _int(info.get("concurrency")),
                "rss_kb": _int(rss),
                "beat_age_s": None if _int(beat) is None else round(max(0.0, now - float(beat)), 1),
                "quiet": quiet == b"true",
                "queues": _queues_of(info),
                "version": info.get("version"),
            }
        )
    queues = []
    for name in names:
        size, oldest = next(replies), next(replies)
        latency: float | None = 0.0
        if oldest is not None:
            enqueued = payload.read_timestamp(_json_obj(oldest).get("enqueued_at"))
            latency = None if enqueued is None else round(max(0.0, now - enqueued), 3)
        queues.append({"name": name, "size": size, "latency_s": latency})
    totals = [_int(next(replies)) or 0 for _ in range(5)]
    stats = dict(zip(("processed", "failed", "scheduled", "retries", "dead"), totals, strict=True))
    stats["in_flight"] = sum(replies)
    return {"processes": processes, "queues": queues, "stats": stats}


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
    cells = [["-" if c is None else str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]


def _status(args: argparse.Namespace, config: Config, keys: Keys, redis: connection.Redis) -> int:
    data = status_data(redis, keys)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    procs, queues, stats = data["processes"], data["queues"], data["stats"]
    rows = [
        (
            p["identity"],
            p["pid"],
            p["tag"],
            f"{p['busy']}/{p['concurrency']}",
            "-" if p["rss_kb"] is None else f"{p['rss_kb'] / 1024:.1f} MB",
            _age(p["beat_age_s"]),
            "quiet" if p["quiet"] else "running",
        )
        for p in procs
    ]
    lines = [f"Processes: {len(procs)}"]
    lines += _table(("IDENTITY", "PID", "TAG", "BUSY", "RSS", "BEAT", "STATE"), rows, right=(1, 3, 4, 5))
    lines += ["", f"Queues: {len(queues)}"]
    lines += _table(
        ("QUEUE", "SIZE", "LATENCY"), [(q["name"], q["size"], _age(q["latency_s"])) for q in queues], (1, 2)
    )
    lines += ["", "  ".join(f"{k.replace('_', '-')} {v}" for k, v in stats.items())]
    print("\n".join(lines))
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
    redis = _connect(config)
    handler = logging.StreamHandler(sys.stderr)  # check_server's maxmemory-policy warning
    handler.setFormatter(logging.Formatter("swarmctl: warning: %(message)s"))
    log = logging.getLogger("swarmd")
    log.addHandler(handler)
    try:
        version = connection.check_server(redis, config.redis_url)
        print(f"{'redis check:':13} OK, Redis {'.'.join(map(str, version))}")
    except RedisUnavailable as exc:
        _err(exc)
        code = int(ExitCode.UNAVAILABLE)
    finally:
        log.removeHandler(handler)
        redis.close()
    for spec in config.require:
        try:
            registry.import_require(spec)
            print(f"{'import:':13} {spec} OK")
        except SwarmdError as exc:  # BootError
            _err(exc)
            code = code or int(ExitCode.SOFTWARE)
    if config.require:
        print(f"{'jobs:':13} {len(registry.registered())} job functions registered")
    print("OK" if code == 0 else f"FAILED (exit {code})")
    return code


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
def _enqueue(args: argparse.Namespace, config: Config, keys: Keys, redis: connection.Redis) -> int:
    try:
        job_args = json.loads(args.json_args)
    except ValueError as exc:
        raise Failed(f"JSON_ARGS: not valid JSON: {exc}", USAGE) from None
    if not isinstance(job_args, list):
        raise Failed(f"JSON_ARGS: expected a JSON array, got {args.json_args!r:.60}", USAGE)
    client = Client(config.redis_url, config.namespace)
    at = None if args.delay is None else payload.now() + args.delay
    try:
        jid = client.enqueue(args.name, job_args, None, {"queue": args.queue} if args.queue else {}, at=at)
    except PayloadError as exc:
        raise Failed(str(exc), USAGE) from None
    finally:
        client.redis.close()
    print(jid)
    return 0


def _entry(raw: bytes, score: float) -> dict[str, Any]:
    at = dt.datetime.fromtimestamp(score, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    fields = ("jid", "class", "queue", "retry_count", "error_class", "error_message", "args")
    try:
        data = payload.decode(raw).data
    except DecodeError as exc:  # shown, so that it can be found and deleted
        data = {"error_class": "undecodable", "error_message": str(exc), "jid": _json_obj(raw).get("jid")}
    return {"at": at, "score": score} | {f: data.get(f) for f in fields}


def _row(e: dict[str, Any]) -> tuple[object, ...]:
    error = " ".join(f"{e['error_class']}: {e['error_message']}".split()) if e["error_class"] else ""
    count = "-" if e["retry_count"] is None else e["retry_count"]
    return e["at"], e["jid"] or "-", e["class"] or "-", e["queue"] or "-", count, error[:70]


def _list(args: argparse.Namespace, config: Config, keys: Keys, redis: connection.Redis) -> int:
    key = getattr(keys, _SETS[args.command])
    newest_first = args.command == "dead"
    total: Any = redis.zcard(key)
    found: Any = redis.zrange(key, 0, args.limit - 1, desc=newest_first, withscores=True)
    entries = [_entry(raw, score) for raw, score in found]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    order = "newest first" if newest_first else "soonest first"
    print(
        f"{_SETS[args.command]}: {_n(total, 'job')}" + (f", {len(entries)} shown, {order}" if total else "")
    )
    if entries:
        headers = ("AT", "JID", "CLASS", "QUEUE", "RETRIES", "ERROR")
        print("\n".join(_table(headers, [_row(e) for e in entries], right=(4,))))
    return 0


def _find(redis: connection.Redis, key: str, jid: str) -> list[bytes]:
    """The members of zset `key` whose jid is `jid` (Sidekiq's ``find_job``: ZSCAN, then compare)."""
    pattern = "*" + re.sub(r"([*?\[\]\\])", r"\\\1", jid) + "*"
    found = []
    for member, _score in redis.zscan_iter(key, match=pattern, count=1000):
        if _json_obj(member).get("jid") == jid:
            found.append(member)
    return found


def requeue(redis: connection.Redis, keys: Keys, zset: str, members: Sequence[bytes]) -> tuple[int, int]:
    """Sidekiq's "Retry now" for these members of `zset`; returns (moved, undecodable)."""
    scripts = Scripts(redis, keys)
    moved = bad = 0
    for start in range(0, len(members), _BATCH):
        entries: list[tuple[bytes, bytes | None, str]] = []
        for member in members[start : start + _BATCH]:
            try:
                job = payload.decode(member)
            except DecodeError:
                bad += 1
                continue
            data = dict(job.data)
            count = data.get("retry_count")
            if isinstance(count, int) and not isinstance(count, bool):
                data["retry_count"] = count - 1  # the manual attempt does not use up a retry
            entries.append((member, payload.encode(payload.for_queue(data)), job.queue))
        moved += scripts.schedule(zset, entries, payload.now())
    return moved, bad


def _retry(args: argparse.Namespace, config: Config, keys: Keys, redis: connection.Redis) -> int:
    sources = [args.source] if args.source else ["retry"] if args.all else ["retry", "dead"]
    moved = 0
    for source in sources:
        key = getattr(keys, source)
        members: Any = redis.zrange(key, 0, -1) if args.all else _find(redis, key, args.jid)
        done, bad = requeue(redis, keys, key, members)
        moved += done
        if done:
            print(f"retried {_n(done, 'job')} from {source}")
        if bad:
            _err(f"{bad} undecodable entries left in {source} (delete them by jid or by hand)")
    if args.jid and not moved:
        raise Failed(f"no job {args.jid} in {' or '.join(sources)}")
    if args.all and not moved:
        print(f"no jobs in {sources[0]}")
    return 0


def _delete(args: argparse.Namespace, config: Config, keys: Keys, redis: connection.Redis) -> int:
    sources = [args.source] if args.source else ["retry", "schedule", "dead"]
    deleted = 0
    for source in sources:
        key = getattr(keys, source)
        if members := _find(redis, key, args.jid):
            removed: Any = redis.zrem(key, *members)
            if removed:
                print(f"deleted {args.jid} from {source}")
            deleted += removed
    if not deleted:
        raise Failed(f"no job {args.jid} in {', '.join(sources)}")
    return 0


def _clear(args: argparse.Namespace, config: Config, keys: Keys, redis: connection.Redis) -> int:
    """Sidekiq's ``Queue#clear``: the list and its ``queues`` member go in one MULTI."""
    pipe = redis.pipeline(transaction=True)
    pipe.llen(keys.queue(args.queue))
    pipe.unlink(keys.queue(args.queue))
    pipe.srem(keys.queues, args.queue)
    size, _, member = pipe.execute()
    if not size and not member:
        raise Failed(f"no queue named {args.queue!r}")
    print(f"cleared queue {args.queue}: {_n(size, 'job')} deleted")
    return 0


def _signal(args: argparse.Namespace, config: Config, keys: Keys, redis: connection.Redis) -> int:
    """LPUSH TSTP/TERM to ``<identity>-signals``; the process pops one at each beat and obeys."""
    live = [i for i in _members(redis, keys.processes) if redis.exists(keys.process(i))]
    if args.identity is not None and args.identity not in live:
        raise Failed(f"no live process {args.identity!r} (see swarmctl status)")
    targets = live if args.all else [args.identity]
    pipe = redis.pipeline(transaction=True)
    for ident in targets:
        pipe.lpush(keys.signals(ident), args.signal)
        pipe.expire(keys.signals(ident), SIGNAL_TTL)
    pipe.execute()
    for ident in targets:
        print(f"{args.command}: {args.signal} sent to {ident}")
    if not targets:
        print("no live processes")
    return 0


if __name__ == "__main__":
    main()
