"""The frozen `Config` and `load_config`: YAML file, environment section, ``${VAR}``, ``SWARMD_*``, flags.

Precedence: defaults < file top level < the environment's section < ``SWARMD_*`` < ``overrides`` (flags),
except that ``overrides["require"]`` (``-r``) adds its modules to those of the file (or ``SWARMD_REQUIRE``).
The file is ``path``, else ``config/swarmd.yml`` under ``cwd`` if it exists; the environment is the
argument, else ``SWARMD_ENV``, else ``APP_ENV``, else ``development``. File rules (a superset of sidekiq.yml):
``:key:`` means ``key:`` at every level; ``strict`` is ignored, as by Sidekiq. An unknown top-level key
holding a mapping (or nothing) is an environment section, unless it is spelled almost like a known key
(``Redis:``); the section named by the environment is merged over the top level key by key (``redis.url``
and ``redis.namespace`` count as two keys). ``average_scheduled_poll_interval`` and Sidekiq's
``dead_timeout_in_seconds`` are aliases of ``poll_interval`` and ``dead_timeout``.
``${VAR}`` and ``${VAR:-default}`` (default when unset or empty) are expanded in every string value; other
``$`` are literal. Like ERB output, an expanded value may spell a number or boolean, and is split like
the matching ``SWARMD_*`` variable.

Variables (empty counts as unset): ``SWARMD_CONCURRENCY``, ``_PROCESSES``, ``_TIMEOUT``, ``_MAX_MEMORY_MB``;
``SWARMD_QUEUES``: items separated by spaces, each ``name`` or ``name,weight`` (``"critical,3 low"``);
``SWARMD_REQUIRE``: comma separated; ``SWARMD_TAG``, ``_PIDFILE``, ``_LOGFILE``, ``_NAMESPACE``,
``_HOSTNAME``, ``_REDIS_URL``, ``_LOG_FORMAT`` (text or json); ``SWARMD_VERBOSE``: 1/true/yes/on or
0/false/no/off; ``SWARMD_SYSLOG``: 1/true enables, 0/false disables, anything else is the ident
(facility and address from the file are kept).
Redis (`RedisSettings`, the ``redis:`` section): where it is, flag > ``SWARMD_REDIS_URL`` > the file's
``redis.url`` or ``redis.sentinels`` (an environment section's choice replaces the top level's) >
``REDIS_URL`` > ``redis://localhost:6379/0`` (`redis_url`, shared with the client, is that rule for a
URL); the other keys (passwords, ``db``, TLS files, ``wait_replicas``) apply to whichever wins. All of
it is checked when loaded (a port that is no number, an unknown query parameter, a Sentinel without
``master_name``, a TLS file that does not exist, a TLS key without TLS: one line and exit 78, never a
traceback at connect time).

The file is read only if it is a regular file (a FIFO would block), within the bounds of `_Loader`
(nesting, integer length, alias expansion); a ``pidfile`` or ``logfile`` that exists must be a regular
file too. The default ``tag`` is the name of the working directory's `app_dir` (Capistrano's
``current`` and ``releases/<number>`` stand for the app's directory).

Every problem is a `ConfigError` of one line, ``<file>: <key.path>: expected ..., got ...``, located by
the variable's name for ``SWARMD_*`` and by the flag (``--concurrency``) for ``overrides``.
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import json
import math
import os
import re
import stat
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import setproctitle
import yaml

from swarmd import cron
from swarmd.errors import ConfigError
from swarmd.syslogsink import InvalidTarget, facility_code, parse_address

__all__ = [
    "DEFAULT_REDIS_URL",
    "Config",
    "PeriodicEntry",
    "QueueOrder",
    "QueueSpec",
    "RedisSettings",
    "SyslogConfig",
    "WebConfig",
    "app_dir",
    "default_tag",
    "format_address",
    "hide_argv_passwords",
    "load_config",
    "parse_host_port",
    "parse_queue",
    "redact_argv",
    "redact_url",
    "redis_settings",
    "redis_url",
]

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    weight: int  # 0 when no weight was given


class QueueOrder(enum.Enum):
    STRICT = "strict"
    RANDOM = "random"
    WEIGHTED = "weighted"


@dataclass(frozen=True)
class SyslogConfig:
    ident: str = "swarmd"
    facility: str = "daemon"  # a key of logging.handlers.SysLogHandler.facility_names
    address: str = "/dev/log"  # a path (unix datagram), "@name" (abstract unix) or "host:port" (udp)


CERT_REQS = ("required", "optional", "none")
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class RedisSettings:
    """Where Redis is and how to talk to it: the config's ``redis:`` section, checked.

    Either a URL (``url``), or Sentinel: ``sentinels`` ((host, port) pairs) and ``master_name``, in
    which case ``url`` is unused. The other fields apply to both: in URL mode a value the URL itself
    carries (its password, its database) wins, as in redis-py. `swarmd.connection.connect` turns this
    into a client; passwords never appear in ``repr`` or `describe`.
    """

    url: str = DEFAULT_REDIS_URL
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    db: int | None = None
    ssl: bool = False  # TLS with Sentinel (to the Sentinels and to the master); a URL says rediss://
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str | None = None  # one of CERT_REQS; redis-py's default is "required"
    wait_replicas: int = 0  # WAIT for this many replicas after an enqueue and after a fetch
    wait_timeout: float = 1.0  # seconds WAIT may block

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    @property
    def tls(self) -> bool:
        return self.ssl if self.is_sentinel else self.url.startswith("rediss://")

    def describe(self) -> str:
        """Where Redis is, for logs and messages: the URL redacted, or the Sentinels and master name."""
        if not self.is_sentinel:
            return redact_url(self.url)
        hosts = ",".join(_host_port(host, port) for host, port in self.sentinels)
        tls = " (TLS)" if self.ssl else ""
        return f"master {self.master_name!r} via Sentinel {hosts}{tls}"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class WebConfig:
    """The ``web:`` section, read by ``swarmctl web``: where it listens and who may use it."""

    bind: str = "127.0.0.1:7433"  # HOST:PORT; off loopback only with username and password set
    username: str | None = None
    password: str | None = None  # also SWARMD_WEB_PASSWORD (which wins)
    read_only: bool = False

    def __repr__(self) -> str:  # a config is logged and printed: never its password
        secret = None if self.password is None else "***"
        return f"WebConfig(bind={self.bind!r}, username={self.username!r}, password={secret!r}, " + (
            f"read_only={self.read_only!r})"
        )


@dataclass(frozen=True)
class Config:
    path: str | None  # the config file actually read (None if none)
    environment: str
    concurrency: int = 10
    processes: int = 1
    timeout: float = 25.0  # shutdown timeout, seconds
    queues: tuple[QueueSpec, ...] = (QueueSpec("default", 0),)
    require: tuple[str, ...] = ()
    tag: str = ""  # filled by the loader: the working directory's name (or the Capistrano app's)
    labels: tuple[str, ...] = ()
    verbose: bool = False
    pidfile: str | None = None
    logfile: str | None = None
    syslog: SyslogConfig | None = None
    log_format: str = "text"  # "text" (Sidekiq's line) or "json" (one object per line), every destination
    redis: RedisSettings = RedisSettings()
    namespace: str | None = None
    hostname: str | None = None  # the host part of worker identities (else the machine's name)
    max_memory_mb: int | None = None
    heartbeat_timeout: float = 60.0  # supervisor kills a worker silent this long
    preload: bool = False
    delay_allow: tuple[str, ...] = ()
    max_retries: int = 25
    dead_max_jobs: int = 10_000
    dead_timeout: float = 180 * 24 * 3600.0
    # tuning intervals (seconds); configurable so tests run fast
    beat_interval: float = 5.0  # Sidekiq heartbeat
    poll_interval: float = 1.0  # scheduler poll (Sidekiq alias key: average_scheduled_poll_interval)
    fetch_timeout: float = 2.0  # blocking fetch timeout
    liveness_ttl: float = 20.0  # TTL of a worker's liveness key; the loader checks it exceeds beat_interval
    recovery_interval: float = 5.0  # how often a worker looks for dead workers' in-flight lists
    boot_timeout: float = 30.0
    crash_limit: int = 10  # crashes ...
    crash_window: float = 60.0  # ... within this window -> supervisor exits 70
    memory_check_interval: float = 5.0
    metrics_port: str | None = None  # "HOST:PORT" the swarm serves Prometheus /metrics on (None: off)
    web: WebConfig = WebConfig()
    # Time limits and limiters (README "Time limits", "Rate and concurrency limits").
    job_timeout: float | None = None  # seconds; the time limit of a job without one of its own
    timeout_grace: float = 10.0  # a job still running this long after its limit: its worker is recycled
    limiter_backoff: float = 1.0  # first delay of a job rescheduled by a limiter; doubled each time ...
    limiter_backoff_max: float = 60.0  # ... up to this
    periodic: tuple[PeriodicEntry, ...] = ()  # periodic jobs (README "Periodic jobs")
    catch_up: float | None = None  # after downtime, the latest missed tick runs if at most this old

    @property
    def queue_order(self) -> QueueOrder:
        """Sidekiq's rule: no weights (all 0) -> strict; all weights 1 -> random; otherwise weighted."""
        weights = {q.weight for q in self.queues}
        if weights == {0}:
            return QueueOrder.STRICT
        return QueueOrder.RANDOM if weights == {1} else QueueOrder.WEIGHTED

    @property
    def redis_url(self) -> str:
        """The URL of `redis` (unused in Sentinel mode: build clients from `redis`, never from this)."""
        return self.redis.url

    def redacted_redis_url(self) -> str:
        """Where Redis is, password hidden (`RedisSettings.describe`)."""
        return self.redis.describe()


class _Text(str):
    """A string from an environment variable or a ``${VAR}`` expansion: it may spell a number or bool."""

    def flag(self) -> bool | None:
        return _WORDS.get(self.strip().lower())


_WORDS = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(("0", "false", "no", "off"), False)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_INTS = dict(concurrency=1, processes=1, max_memory_mb=1, max_retries=0, dead_max_jobs=0, crash_limit=1)
_NUMBERS = {"timeout", "heartbeat_timeout", "dead_timeout", "beat_interval", "poll_interval", "fetch_timeout"}
_NUMBERS |= {"liveness_ttl", "recovery_interval", "boot_timeout", "crash_window", "memory_check_interval"}
_NUMBERS |= {
    "job_timeout",
    "timeout_grace",
    "limiter_backoff",
    "limiter_backoff_max",
}  # time limits, limiters
_NULLABLE_NUMBERS = {"job_timeout"}
_BOOLS, _LISTS = {"verbose", "preload"}, {"require", "labels", "delay_allow"}
_NULLABLE_STRS = {"pidfile", "logfile", "namespace", "hostname"}
_OTHERS = {"tag", "redis_url", "queues", "syslog", "metrics_port", "web", "log_format"}
_CHOICES = {"log_format": ("text", "json")}
_PERIODIC_KEYS = {"periodic", "catch_up"}  # file only: no SWARMD_* variable
_SETTINGS = _INTS.keys() | _NUMBERS | _BOOLS | _LISTS | _NULLABLE_STRS | _OTHERS | _PERIODIC_KEYS
_ALIASES = {"average_scheduled_poll_interval": "poll_interval", "dead_timeout_in_seconds": "dead_timeout"}
_FILE_KEYS = _SETTINGS - {"redis_url"} | {"redis", "strict"} | _ALIASES.keys()
_ENV_NAMES = (
    _NULLABLE_STRS | _OTHERS | {"concurrency", "processes", "max_memory_mb", "timeout", "verbose", "require"}
)
_ENV_VARS = {
    f"SWARMD_{name.upper()}": name for name in sorted(_ENV_NAMES - {"redis_url", "web"})
}  # see redis_url()


def _fail(where: str, expected: str, value: Any) -> ConfigError:
    if value is None or isinstance(value, bool):
        got = {None: "null", True: "true", False: "false"}[value]
    elif isinstance(value, int) and value.bit_length() > 64:  # str() of a huge int raises ValueError
        got = f"an integer of {value.bit_length()} bits"
    elif isinstance(value, str | int | float):
        got = repr(value)
        if len(got) > 100:  # one readable line, even for a 5,000-digit number
            got = f"{got[:80]}... ({len(str(value))} characters)"
    elif isinstance(value, list | tuple):
        got = "a list" if value else "an empty list"
    else:
        got = "a mapping" if isinstance(value, dict) else f"a {type(value).__name__}"
    return ConfigError(f"{where}: expected {expected}, got {got}")


def _unknown(where: str, key: str, choices: Any) -> ConfigError:
    if key == "redis_url":
        return ConfigError(f"{where}: unknown key (write the URL as redis: {{url: ...}})")
    close = difflib.get_close_matches(key, sorted(choices), n=1)
    return ConfigError(f"{where}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""))


def _int(value: Any, where: str, minimum: int, what: str = "an integer", null: bool = False) -> int | None:
    if value is None and null:
        return None
    # At most 30 digits: int() refuses strings beyond 4,300 digits with a ValueError of its own.
    number = int(value) if isinstance(value, _Text) and re.fullmatch(r"\s*[-+]?\d{1,30}\s*", value) else value
    if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
        raise _fail(where, f"{what} >= {minimum}" + (" or null" if null else ""), value)
    return number


def _convert(name: str, value: Any, where: str, current: Any) -> Any:
    """`value` for setting `name` (whose value so far is `current`), checked and typed."""
    if name in _PERIODIC_KEYS:
        return _periodic_entries(value, where) if name == "periodic" else _catch_up(value, where)
    if name in _INTS:
        return _int(value, where, _INTS[name], null=name == "max_memory_mb")
    if name in _NULLABLE_NUMBERS and value is None:
        return None
    if name in _NUMBERS:
        number = value
        if isinstance(value, _Text):
            with contextlib.suppress(ValueError):
                number = float(value)
        if isinstance(number, bool) or not isinstance(number, int | float) or not 0 < number < math.inf:
            raise _fail(where, "a number > 0", value)
        try:
            return float(number)
        except OverflowError:  # an int beyond float's range
            raise _fail(where, "a number > 0 that fits a float", value) from None
    if name in _BOOLS:
        if not isinstance(flag := value.flag() if isinstance(value, _Text) else value, bool):
            raise _fail(where, "true or false", value)
        return flag
    if name in _LISTS:
        if isinstance(value, _Text):  # SWARMD_REQUIRE or ${...}: comma separated
            return tuple(item.strip() for item in value.split(",") if item.strip())
        items = [] if value is None else [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise _fail(where, "a list of strings", value)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise _fail(f"{where}[{i}]", "a non-empty string", item)
        return tuple(str(item) for item in items)
    if name in _CHOICES:
        choices = _CHOICES[name]
        text = value.strip().lower() if isinstance(value, str) else value
        if text not in choices:
            raise _fail(where, " or ".join(choices), value)
        return str(text)
    if name == "queues":
        return _queues(value, where)
    if name == "syslog":
        return _syslog(value, where, current)
    if name == "metrics_port":
        return metrics_address(value, where)
    if name == "web":
        return _web(value, where, current)
    if name in _NULLABLE_STRS and value in (None, ""):
        return None
    if not isinstance(value, str):
        raise _fail(where, "a string or null" if name in _NULLABLE_STRS else "a string", value)
    _encodable(value, where)
    if name == "redis_url":
        return _check_redis_url(value, where)
    if name == "hostname" and (
        len(value) > 255 or not re.fullmatch(r"[^\s:]+", value) or not value.isprintable()
    ):
        raise _fail(where, "a host name without ':', spaces or control characters (at most 255)", value)
    return str(value)


def _encodable(text: str, where: str) -> None:
    """Refuse a string UTF-8 cannot carry (a lone surrogate, from a YAML ``"\\udc80"`` escape or a
    mis-decoded environment): it would become a traceback at the first Redis key or log line made of it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(where, "valid Unicode text (no lone surrogates)", text) from None


# -- periodic jobs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeriodicEntry:
    """One periodic job: ``job`` (a registered name) with ``args`` at each tick of ``cron``."""

    cron: str
    job: str
    args: tuple[Any, ...] = ()
    queue: str | None = None  # None: the job's own queue option, else "default"
    timezone: str | None = None  # an IANA name; None: UTC
    where: str = field(default="", compare=False)  # where it was written, for error lines


_PERIODIC_FIELDS = ("cron", "job", "args", "queue", "timezone")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*")
_UNIT_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _periodic_entries(value: Any, where: str) -> tuple[PeriodicEntry, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _fail(where, "a list of {cron, job, args, queue, timezone} entries", value)
    entries = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise _fail(at, "a mapping with cron and job", item)
        for key in item:
            if key not in _PERIODIC_FIELDS:
                raise _unknown(f"{at}.{key}", str(key), _PERIODIC_FIELDS)
        for key in ("cron", "job"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise _fail(f"{at}.{key}", "a non-empty string", item.get(key))
        args = item.get("args", [])
        if args is None:
            args = []
        if not isinstance(args, list):
            raise _fail(f"{at}.args", "a list", args)
        try:
            json.dumps(args, allow_nan=False)
        except (TypeError, ValueError):
            what = "JSON values (strings, numbers, booleans, null, lists, mappings)"
            raise _fail(f"{at}.args", what, args) from None
        queue = item.get("queue")
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise _fail(f"{at}.queue", "a non-empty string", queue)
        timezone = item.get("timezone")
        try:
            schedule = cron.parse(item["cron"], timezone)
        except cron.CronError as exc:
            raise ConfigError(f"{at}: {exc}") from None
        entries.append(
            PeriodicEntry(schedule.expr, item["job"].strip(), tuple(args), queue, timezone, where=at)
        )
    return tuple(entries)


def _catch_up(value: Any, where: str) -> float | None:
    """Seconds, or a duration such as ``90s``, ``15m``, ``1h``, ``2d``; null: no limit."""
    if value is None:
        return None
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match:
            seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
            if 0 < seconds < math.inf:
                return seconds
    elif not isinstance(value, bool) and isinstance(value, int | float) and 0 < value < math.inf:
        return float(value)
    raise _fail(where, "a duration > 0 (seconds, or e.g. 90s, 15m, 1h, 2d) or null", value)


def parse_queue(text: str) -> QueueSpec:
    """``"name"`` or ``"name,weight"`` (the ``-q`` flag); raises `ConfigError` (not ValueError)."""
    return _queue(text, "--queue")


def _queue(text: Any, where: str) -> QueueSpec:
    name: Any = text
    weight: Any = 0
    if isinstance(text, QueueSpec):
        name, weight = text.name, text.weight
    elif isinstance(text, str) and text.count(",") == 1:
        name, weight = text.split(",")[0].strip(), _Text(text.split(",")[1].strip())
    elif isinstance(text, list | tuple) and 1 <= len(text) <= 2:  # YAML's [name, weight]
        name, weight = text[0], text[1] if len(text) == 2 else 0
    elif not isinstance(text, str) or "," in text:
        raise _fail(where, 'a queue name, "name,weight" or [name, weight]', text)
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise _fail(where, "a queue name without spaces", name)
    _encodable(name, where)
    return QueueSpec(str(name), _int(weight, where, 0, what="an integer weight") or 0)


def _queues(value: Any, where: str) -> tuple[QueueSpec, ...]:
    if isinstance(value, _Text):  # SWARMD_QUEUES or ${...}: items separated by spaces
        located = [(item, where) for item in value.split()]
    elif isinstance(value, list | tuple):  # file key paths carry the item's index; variables and flags don't
        located = [(item, f"{where}[{i}]" if ": " in where else where) for i, item in enumerate(value)]
    elif isinstance(value, str):
        located = [(value, where)]
    else:
        raise _fail(where, "a list of queues", value)
    if not located:
        raise _fail(where, "at least one queue", value)
    specs: dict[str, QueueSpec] = {}
    for item, item_where in located:
        spec = _queue(item, item_where)
        if spec.name in specs:
            raise ConfigError(f"{item_where}: expected each queue once, got {spec.name!r} again")
        specs[spec.name] = spec
    return tuple(specs.values())


def _syslog(value: Any, where: str, current: SyslogConfig | None) -> SyslogConfig | None:
    if isinstance(value, _Text) and value.flag() is not None:
        value = value.flag()
    if value is None or value is False:
        return None
    if isinstance(value, str):
        value = replace(current or SyslogConfig(), ident=str(value))  # keep facility/address set earlier
    elif isinstance(value, dict):
        for key in sorted(value.keys() - {"ident", "facility", "address"})[:1]:
            raise _unknown(f"{where}.{key}", key, ("ident", "facility", "address"))
        value = SyslogConfig(**{k: _convert("tag", v, f"{where}.{k}", None) for k, v in value.items()})
    config = current or SyslogConfig() if value is True else value
    if not isinstance(config, SyslogConfig):
        raise _fail(where, "true, false, an ident or a mapping of ident/facility/address", value)
    if not config.ident:
        raise _fail(f"{where}.ident", "a non-empty string", config.ident)
    try:  # the checks of the handler that will send to it (swarmd.syslogsink)
        facility_code(config.facility)
        parse_address(config.address)
    except InvalidTarget as exc:
        raise _fail(f"{where}.{exc.key}", exc.expected, exc.value) from None
    return replace(config, facility=config.facility.lower())


def parse_host_port(value: Any, where: str, default_host: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPV6]:PORT`` as (host, port); `ConfigError` otherwise."""
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else None
    host, port_text = default_host, text
    if text is not None and ":" in text:
        host, _, port_text = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host or not host:
            port_text = None
    if port_text is None or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise _fail(where, "PORT or HOST:PORT with a port from 1 to 65535", value)
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def metrics_address(value: Any, where: str) -> str | None:
    """``metrics_port``: null/false (off), a port (on 127.0.0.1) or ``HOST:PORT``, as ``"HOST:PORT"``."""
    if value is None or value is False or (isinstance(value, _Text) and value.flag() is False):
        return None
    return format_address(*parse_host_port(value, where, "127.0.0.1"))


def _web(value: Any, where: str, current: WebConfig | None) -> WebConfig:
    if value is None:
        return current or WebConfig()
    if not isinstance(value, dict):
        raise _fail(where, "a mapping of bind/username/password/read_only", value)
    config = current or WebConfig()
    for key in value:
        sub = f"{where}.{key}"
        item = value[key]
        if key == "bind":
            config = replace(config, bind=format_address(*parse_host_port(item, sub, "127.0.0.1")))
        elif key in ("username", "password"):
            if item is not None and (not isinstance(item, str) or not item):
                raise _fail(sub, "a non-empty string or null", item)
            text = None if item is None else str(item)
            config = replace(config, username=text) if key == "username" else replace(config, password=text)
        elif key == "read_only":
            flag = item.flag() if isinstance(item, _Text) else item
            if not isinstance(flag, bool):
                raise _fail(sub, "true or false", item)
            config = replace(config, read_only=flag)
        else:
            raise _unknown(sub, key, ("bind", "username", "password", "read_only"))
    return config


def _keys(node: dict[Any, Any], prefix: str) -> dict[str, Any]:
    """One mapping level, Sidekiq's ``:key`` read as ``key``; `prefix` is ``"<file>: "`` or ``"<where>."``."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if not isinstance(key, str):
            raise _fail(prefix.rstrip(" :."), "string keys", key)
        if (name := key.removeprefix(":")) in out:
            raise ConfigError(f"{prefix}{name}: expected one spelling, got both {name!r} and ':{name}'")
        out[name] = value
    return out


def _walk(node: Any, where: str, env: Mapping[str, str]) -> Any:
    """`node` with ``:key`` spelling undone and ``${VAR}`` expanded, all the way down."""
    if isinstance(node, list):
        return [_walk(item, f"{where}[{i}]", env) for i, item in enumerate(node)]
    if isinstance(node, dict):
        return {key: _walk(value, f"{where}.{key}", env) for key, value in _keys(node, f"{where}.").items()}
    if not isinstance(node, str) or not _VAR.search(node):
        return node

    def substitute(match: re.Match[str]) -> str:
        value = env.get(match[1])
        if match[2] is not None and not value:
            return match[2]
        if value is None:
            raise ConfigError(
                f"{where}: environment variable {match[1]} is not set (or use ${{VAR:-default}})"
            )
        return value

    return _Text(_VAR.sub(substitute, node))


def _layer(data: dict[str, Any], loc: str, env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """File keys -> ``{setting: (value, where)}``; ``loc`` is ``"<file>: "`` or ``"<file>: <env>."``."""
    out: dict[str, tuple[Any, str]] = {}
    for key, value in data.items():
        where = f"{loc}{key}"
        if key not in _FILE_KEYS:
            raise _unknown(where, key, _FILE_KEYS)
        value = _walk(value, where, env)
        if key == "redis" and not isinstance(value, dict):
            raise _fail(where, "a mapping ({url: ...} or {sentinels: [...], master_name: ...})", value)
        for sub, sub_value in value.items() if key == "redis" else [("", value)]:
            name = {"": _ALIASES.get(key, key), "url": "redis_url", "namespace": "namespace"}.get(sub)
            if name is None and sub in _REDIS_KEYS:
                name = f"redis.{sub}"
            item_where = f"{where}.{sub}" if sub else where
            if name is None:
                raise _unknown(item_where, sub, _REDIS_KEYS | {"url", "namespace"})
            if name in out:
                other = out[name][1].split(": ")[-1]
                raise ConfigError(f"{item_where}: expected {name} to be set once, got it also at {other}")
            out[name] = (sub_value, item_where)
    if "redis_url" in out and "redis.sentinels" in out:
        raise ConfigError(
            f"{out['redis.sentinels'][1]}: expected either redis.url or redis.sentinels, got both"
        )
    out.pop("strict", None)
    return out


MAX_DEPTH = 64
"""Deepest nesting a config file may have (aliases included); a real one has 4 levels."""
MAX_NODES = 100_000
"""Most values a config file may expand to, each alias counted with everything it stands for."""
_MAX_INT_CHARS = 40


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader within the bounds of a config file.

    Unbounded, a hostile or broken file costs a traceback or the machine: PyYAML composes nested
    collections recursively (a RecursionError at about 1,000 levels), `int()` refuses strings beyond
    4,300 digits with a bare ValueError, and a few lines of nested aliases (a "billion laughs") stand
    for 10^9 values, which `_walk` would copy one by one. So nesting stops at `MAX_DEPTH`, an integer at
    `_MAX_INT_CHARS` characters, and a document whose aliases expand beyond `MAX_NODES` values, or refer
    to themselves, is refused before anything is constructed. Each is a MarkedYAMLError naming the line.
    """

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = self.construct_scalar(node)
        if len(text) > _MAX_INT_CHARS:
            problem = f"an integer of {len(text)} characters (at most {_MAX_INT_CHARS})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that expands beyond `MAX_NODES` values or `MAX_DEPTH` levels, or has a cycle."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) it expands to
    active: set[int] = set()

    def measure(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in done:
            return done[key]
        if key in active:
            raise yaml.composer.ComposerError(None, None, "an alias inside its own anchor", node.start_mark)
        active.add(key)
        values, levels = 1, 0
        children = node.value if isinstance(node, yaml.SequenceNode) else []
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        for child in children:
            child_values, child_levels = measure(child)
            values, levels = values + child_values, max(levels, child_levels + 1)
            if values > MAX_NODES or levels > MAX_DEPTH:
                what = f"{MAX_NODES} values" if values > MAX_NODES else f"{MAX_DEPTH} levels"
                raise yaml.composer.ComposerError(
                    None, None, f"aliases expand to more than {what}", node.start_mark
                )
        active.discard(key)
        done[key] = (values, levels)
        return values, levels

    measure(root)


def _read_bytes(path: str) -> bytes:
    """The file's bytes; anything but a regular file is refused before a blocking read (a FIFO)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path}: expected a regular config file, got {_file_kind(mode)}")
        with open(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def _load_yaml(data: bytes) -> Any:
    """One YAML document through `_Loader`, a bounded `yaml.SafeLoader`: plain data only, never an
    arbitrary Python object (what ``yaml.safe_load`` does, with the bounds)."""
    loader = _Loader(data)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_file(path: str, environment: str, env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    try:
        doc = _load_yaml(_read_bytes(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except yaml.MarkedYAMLError as exc:
        line = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise ConfigError(f"{path}: {line}invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, OverflowError) as exc:  # a constructor's own error: a date such as 2026-13-45
        raise ConfigError(f"{path}: invalid YAML value: {' '.join(str(exc).split())}") from None
    if not isinstance(doc := {} if doc is None else doc, dict):
        raise _fail(path, "a mapping at the top level", doc)
    top, section = {}, {}
    for key, value in _keys(doc, f"{path}: ").items():
        if key in _FILE_KEYS:
            top[key] = value
        elif value is not None and not isinstance(value, dict):
            raise _unknown(f"{path}: {key}", key, _FILE_KEYS)
        elif key == environment:
            section = _keys(value or {}, f"{path}: {key}.")
        elif difflib.get_close_matches(key, _FILE_KEYS, n=1, cutoff=0.8):  # `Redis:` is a typo, not an env
            raise _unknown(f"{path}: {key}", key, _FILE_KEYS)
    top_layer = _layer(top, f"{path}: ", env)
    section_layer = _layer(section, f"{path}: {environment}.", env)
    if section_layer.keys() & {"redis_url", "redis.sentinels"}:
        # The section picks where Redis is (a URL or Sentinels); the top level's other choice goes.
        top_layer.pop("redis_url", None)
        top_layer.pop("redis.sentinels", None)
    return top_layer | section_layer


def app_dir(path: str) -> str:
    """The app's directory for a working directory `path`: `path` itself, except in a Capistrano layout.

    ``<app>/current`` (the symlink a unit's WorkingDirectory names) and ``<app>/releases/<release>``
    where the release's name starts with a digit (what ``current`` resolves to: Capistrano's
    timestamps, Mina's and Deployer's numbers) are ``<app>``. This is Sidekiq's rule (it tags a
    ``releases/<number>`` directory with the app's name), plus ``current``, so the daemon (which sees the
    resolved release) and `swarmctl unit` (which sees ``current``) agree. ``<app>/releases/v2`` is not a
    Capistrano release, and stays ``v2``. Purely lexical: `path` is normalized, not resolved.
    """
    path = os.path.normpath(path)
    parent, name = os.path.split(path)
    if name == "current" and os.path.basename(parent):
        return parent
    app = os.path.dirname(parent)
    if name[:1].isdigit() and os.path.basename(parent) == "releases" and os.path.basename(app):
        return app
    return path


def default_tag(path: str) -> str:
    """The default `tag` for working directory `path`: the name of its `app_dir` (``swarmd`` for ``/``)."""
    return os.path.basename(app_dir(path)) or "swarmd"


def _check_regular_file(path: str, where: str) -> None:
    """Refuse a pidfile or logfile path that exists and is not a regular file: opening a FIFO blocks
    until a reader comes, and a device or directory is never what was meant. A missing one is created
    later; a symlink is refused when it is opened (O_NOFOLLOW)."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: expected a regular file, got {_file_kind(st.st_mode)} at {path}")


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
    kinds |= {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((kind for test, kind in kinds.items() if test(mode)), "not a regular file")


def load_config(
    path: str | None = None,
    environment: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Config:
    """Read, merge and validate (see the module docstring); raises `ConfigError` with one line."""
    env = os.environ if env is None else env
    environment = environment or env.get("SWARMD_ENV") or env.get("APP_ENV") or "development"
    if path is None:
        default = os.path.join(cwd or "", "config", "swarmd.yml")
        path = default if os.path.exists(default) else None
    elif cwd is not None:
        path = os.path.join(cwd, path)
    settings: dict[str, Any] = {}
    wheres: dict[str, str] = {}

    def apply(name: str, value: Any, where: str) -> None:
        settings[name], wheres[name] = _convert(name, value, where, settings.get(name)), where

    from_file = _read_file(path, environment, env) if path else {}
    redis_file = {name: from_file.pop(name) for name in list(from_file) if name.startswith("redis")}
    for name, (value, where) in from_file.items():
        apply(name, value, where)
    for var, name in _ENV_VARS.items():
        if env.get(var):
            apply(name, _Text(env[var]), var)
    overrides = dict(overrides or {})
    flag_url = overrides.pop("redis_url", None)
    for name, value in overrides.items():
        if name not in _SETTINGS:
            raise ConfigError(f"overrides: {name}: unknown setting")
        if value is not None:
            flag = "--queue" if name == "queues" else f"--{name.replace('_', '-')}"
            before = settings.get(name, ())
            apply(name, _Text(value) if isinstance(value, str) else value, flag)
            if name == "require":  # -r adds to the file's (and SWARMD_REQUIRE's) modules
                settings[name] = tuple(dict.fromkeys((*before, *settings[name])))
    settings["redis"] = _redis_settings(flag_url, "--redis-url", redis_file, env, cwd)
    settings.setdefault("tag", default_tag(os.path.realpath(os.getcwd() if cwd is None else cwd)))
    for name in ("pidfile", "logfile"):
        if settings.get(name):
            _check_regular_file(os.path.join(cwd or "", settings[name]), wheres[name])
    config = Config(path=path, environment=environment, **settings)
    # The liveness key must outlive a beat interval (else a live worker looks dead between two
    # beats) plus a blocking fetch (else a frozen worker's BLMOVE, still blocked in Redis after its
    # list was recovered, could move a job into a list nobody recovers any more).
    ttl, least = config.liveness_ttl, config.beat_interval + config.fetch_timeout
    if ttl <= least:
        what = f"a number > beat_interval + fetch_timeout ({least:g})"
        if "liveness_ttl" in wheres:
            raise _fail(wheres["liveness_ttl"], what, ttl)
        key = "beat_interval" if "beat_interval" in wheres else "fetch_timeout"
        expected = f"a number keeping beat_interval + fetch_timeout below liveness_ttl ({ttl:g})"
        raise _fail(wheres[key], expected, getattr(config, key))
    return config


def redact_url(url: str) -> str:
    """The URL with its password (in the userinfo or ``?password=``) replaced by ``***``, for logs."""
    head, qmark, query = url.partition("?")
    scheme, slashes, rest = head.partition("//")
    if not slashes:
        scheme, rest = "", head
    userinfo, at, hostinfo = rest.rpartition("@")  # the last '@', so an unescaped '@' or '/' stays hidden
    if at and ":" in userinfo:
        head = f"{scheme}{slashes}{userinfo.partition(':')[0]}:***@{hostinfo}"
    return head + qmark + re.sub(r"((?:^|&)password=)[^&]*", r"\1***", query, flags=re.IGNORECASE)


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the password of every URL in it redacted (for the process title)."""
    return [redact_url(arg) if "://" in arg else arg for arg in argv]


def hide_argv_passwords() -> None:
    """Set the process title to the command line with URL passwords redacted, if it holds any.

    ``--redis-url redis://:secret@...`` would otherwise show in ``ps`` and /proc/<pid>/cmdline until
    swarmd's supervisor sets its own title, for as long as a mute Redis keeps it waiting, and for the
    whole run of ``swarmctl``. `swarmd` and `swarmctl` call this first thing, before any network I/O;
    the environment (``SWARMD_REDIS_URL``) and the config file are the places for a password.
    """
    argv = list(sys.orig_argv or sys.argv)
    redacted = redact_argv(argv)
    if redacted != argv:
        setproctitle.setproctitle(" ".join(redacted))


# -- the Redis URL -----------------------------------------------------------------------------------

# Query parameters redis-py reads from a URL, by the type it converts them to. Others are refused:
# redis-py would hand them to the connection class as keyword arguments (a TypeError at the first
# command), and some would undo what swarmd sets on purpose (socket_timeout must outlast a blocking
# fetch, decode_responses must stay off, retries must stay off: see swarmd/connection.py).
_URL_INTS = {"db", "health_check_interval", "ssl_min_version"}
_URL_STRS = {"username", "password", "client_name"}
_URL_TLS = {"ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_password"}
_URL_TLS |= {"ssl_check_hostname", "ssl_min_version"}
_URL_BOOLS = {"true", "false", "yes", "no", "1", "0", "on", "off", "y", "n", "t", "f"}
_URL_SWARMD = {"socket_timeout", "socket_connect_timeout", "socket_keepalive", "retry_on_timeout"}
_URL_SWARMD |= {"retry_on_error", "max_connections", "decode_responses", "protocol", "timeout"}


def redis_url(
    given: str | None = None,
    *,
    where: str = "redis_url",
    file: tuple[Any, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The Redis URL to use, checked; the one precedence rule of the daemon and the client.

    ``given`` (``--redis-url``, or the argument of `swarmd.Client`/`swarmd.configure`, named by
    ``where``) > ``SWARMD_REDIS_URL`` > the config file's ``redis.url`` (``file``: value and where it
    is, the daemon's only) > ``REDIS_URL`` > ``redis://localhost:6379/0``. Empty strings count as unset.
    Raises `ConfigError`: one line naming where the URL came from and what is wrong with it, the
    password redacted.
    """
    env = os.environ if env is None else env
    if given:
        return _check_redis_url(given, where)
    if env.get("SWARMD_REDIS_URL"):
        return _check_redis_url(env["SWARMD_REDIS_URL"], "SWARMD_REDIS_URL")
    if file is not None:
        return _check_redis_url(*file)
    if env.get("REDIS_URL"):
        return _check_redis_url(env["REDIS_URL"], "REDIS_URL")
    return DEFAULT_REDIS_URL


def _check_redis_url(value: Any, where: str) -> str:
    """`value` if redis-py will connect to what it says (else a `ConfigError`); the scheme lowercased.

    redis-py itself raises a bare ValueError for some mistakes (a port that is no number) and silently
    ignores others (``redis://host/notadb`` is db 0), so the URL is checked here, by the same rules.
    Messages show the URL redacted, never a piece cut out of it: a password holding ``/`` cuts the
    URL in unexpected places.
    """
    if not isinstance(value, str):
        raise _fail(where, "a redis://, rediss:// or unix:// URL", value)
    shown = redact_url(value)

    def bad(expected: str) -> ConfigError:
        hint, rest = "", value.partition("//")[2]
        if "@" in rest[len(rest.split("/")[0].split("?")[0].split("#")[0]) :]:
            hint = " (percent-encode '/', '?', '#' and '@' in a password: %2F %3F %23 %40)"
        return ConfigError(f"{_fail(where, expected, shown)}{hint}")

    scheme, colon_slashes, rest = value.partition("://")
    if not colon_slashes or scheme.lower() not in ("redis", "rediss", "unix"):
        raise _fail(where, "a redis://, rediss:// or unix:// URL", shown)
    text = f"{scheme.lower()}://{rest}"
    if any(char.isspace() or not char.isprintable() for char in text):
        raise bad("a URL without spaces or control characters")
    try:
        url = urllib.parse.urlsplit(text)
    except ValueError:
        raise bad("a well-formed URL (an IPv6 address goes in [brackets])") from None
    if url.fragment or text.endswith("#"):
        raise bad("a URL without '#'")
    try:
        port = url.port
    except ValueError:
        port = 0
    if port == 0:
        raise bad("a port number 1-65535 after the host")
    if url.scheme == "unix":
        if url.hostname or not url.path.startswith("/"):
            raise bad("unix:///absolute/path/to/redis.sock (three slashes)")
    elif url.path not in ("", "/") and not re.fullmatch(r"/\d{1,9}/?", url.path):
        raise bad("a database number after the host (redis://host:6379/0)")
    for name, values in urllib.parse.parse_qs(url.query, keep_blank_values=True).items():
        if name in _URL_SWARMD:
            raise bad(f"no {name!r} in the query (swarmd sets it)")
        if name in _URL_TLS and url.scheme != "rediss":
            raise bad(f"no {name!r} in the query of a non-TLS URL (use rediss://)")
        if name not in _URL_INTS | _URL_STRS | _URL_TLS:
            known = ", ".join(sorted(_URL_INTS | _URL_STRS | _URL_TLS))
            raise bad(f"query parameters among {known}; not {name!r}")
        if name in _URL_INTS and not re.fullmatch(r"\d{1,9}", values[0]):
            raise bad(f"a whole number >= 0 for {name!r} in the query")
        if name == "ssl_cert_reqs" and values[0].lower() not in CERT_REQS:
            raise bad(f"ssl_cert_reqs one of {', '.join(CERT_REQS)} in the query")
        if name == "ssl_check_hostname" and values[0].lower() not in _URL_BOOLS:
            raise bad("ssl_check_hostname true or false in the query")
    return text


# -- the redis: section ------------------------------------------------------------------------------

_REDIS_KEYS = frozenset(
    {"sentinels", "master_name", "username", "password", "sentinel_username", "sentinel_password", "db"}
    | {"ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "wait_replicas", "wait_timeout"}
)
"""Keys of ``redis:`` besides ``url`` and ``namespace`` (those are settings of their own)."""
_TLS_KEYS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")


def redis_settings(
    section: Mapping[str, Any] | None = None,
    *,
    where: str = "redis",
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> RedisSettings:
    """`RedisSettings` from a mapping spelled like the config file's ``redis:`` section (``url``,
    ``sentinels``, ``master_name``, ``password``, ``ssl_ca_certs``, ...), for `swarmd.configure` and
    `swarmd.Client`. Without ``url`` or ``sentinels`` the URL is the client's rule: ``SWARMD_REDIS_URL``
    > ``REDIS_URL`` > ``redis://localhost:6379/0``. ``namespace`` is not part of it (refused here).
    Raises `ConfigError` naming ``where.<key>``."""
    items: dict[str, tuple[Any, str]] = {}
    for key, value in (section or {}).items():
        key_where = f"{where}.{key}"
        if key == "url":
            items["redis_url"] = (value, key_where)
        elif key in _REDIS_KEYS:
            items[f"redis.{key}"] = (value, key_where)
        else:
            raise _unknown(key_where, str(key), _REDIS_KEYS | {"url"})
    if "redis_url" in items and "redis.sentinels" in items:
        raise ConfigError(f"{where}: expected either url or sentinels, got both")
    url = items.pop("redis_url", (None, ""))
    return _redis_settings(url[0], url[1] or f"{where}.url", items, env, cwd)


def _redis_settings(
    given: str | None,
    given_where: str,
    items: Mapping[str, tuple[Any, str]],
    env: Mapping[str, str] | None,
    cwd: str | None = None,
) -> RedisSettings:
    """The settings from ``redis.*`` items (value, where); where Redis is: ``given`` (the flag) >
    ``SWARMD_REDIS_URL`` > the file (``redis.url`` or ``redis.sentinels``) > ``REDIS_URL`` > default."""
    env = os.environ if env is None else env
    opts = {name.removeprefix("redis."): vw for name, vw in items.items() if name != "redis_url"}
    sentinels = opts.pop("sentinels", (None, ""))
    values: dict[str, Any] = {}
    if sentinels[0] is not None and not given and not env.get("SWARMD_REDIS_URL"):
        values["sentinels"] = _sentinels(*sentinels)
        name, name_where = opts.get("master_name", (None, sentinels[1].rsplit(".", 1)[0] + ".master_name"))
        if not isinstance(name, str) or not name or any(c.isspace() or not c.isprintable() for c in name):
            raise _fail(
                name_where, "the master's name as Sentinel knows it (sentinel monitor <name> ...)", name
            )
        values["master_name"] = str(name)
    else:
        values["url"] = redis_url(given, where=given_where, file=items.get("redis_url"), env=env)
    for key in ("username", "password", "sentinel_username", "sentinel_password"):
        value, key_where = opts.get(key, (None, ""))
        if value is not None and not isinstance(value, str):
            raise _fail(key_where, "a string (quote a password YAML would read as a number)", value)
        values[key] = str(value) if value else None
    if "db" in opts:
        values["db"] = _int(opts["db"][0], opts["db"][1], 0, null=True)
    if "ssl" in opts:
        value, key_where = opts["ssl"]
        flag = value.flag() if isinstance(value, _Text) else value
        if not isinstance(flag, bool):
            raise _fail(key_where, "true or false", value)
        values["ssl"] = flag
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if opts.get(key, (None,))[0] is not None:
            values[key] = _readable_file(*opts[key], cwd)
    if "ssl_cert_reqs" in opts and opts["ssl_cert_reqs"][0] is not None:
        value, key_where = opts["ssl_cert_reqs"]
        if value not in CERT_REQS:
            raise _fail(key_where, f"one of {', '.join(CERT_REQS)}", value)
        values["ssl_cert_reqs"] = str(value)
    if "wait_replicas" in opts:
        values["wait_replicas"] = _int(opts["wait_replicas"][0], opts["wait_replicas"][1], 0)
    if "wait_timeout" in opts:
        values["wait_timeout"] = _convert("timeout", *opts["wait_timeout"], None)
    settings = RedisSettings(**values)
    if not settings.is_sentinel and settings.ssl and not settings.tls:
        raise _fail(opts["ssl"][1], "false with a redis:// or unix:// URL (for TLS write rediss://)", True)
    if not settings.tls:
        for key in _TLS_KEYS:
            if getattr(settings, key) is not None:
                wanted = "ssl: true with sentinels" if settings.is_sentinel else "a rediss:// URL"
                redis = settings.describe()
                raise ConfigError(
                    f"{opts[key][1]}: expected TLS ({wanted}) for a TLS setting; Redis is {redis}"
                )
    if settings.ssl_keyfile and not settings.ssl_certfile:
        raise _fail(
            opts["ssl_keyfile"][1].rsplit(".", 1)[0] + ".ssl_certfile",
            "the client certificate that goes with ssl_keyfile",
            None,
        )
    return settings


def _sentinels(value: Any, where: str) -> tuple[tuple[str, int], ...]:
    """``["10.0.0.1:26379", "[::1]:26380", "sentinel-3"]`` or one comma-separated string (a ``${VAR}``)."""
    items = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise _fail(where, 'a list of Sentinel addresses ("host:port")', value)
    out: list[tuple[str, int]] = []
    for i, item in enumerate(items):
        item_where = f"{where}[{i}]" if not isinstance(value, str) else where
        if not isinstance(item, str) or not item:
            raise _fail(item_where, 'a Sentinel address "host:port"', item)
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?|([^\s:\[\]/@]+)(?::(\d{1,5}))?", item)
        port = int((match[2] or match[4] or SENTINEL_PORT) if match else 0)
        if match is None or not 0 < port < 65536:
            raise _fail(item_where, 'a Sentinel address "host:port" (IPv6 in [brackets], port 1-65535)', item)
        out.append((match[1] or match[3], port))
    if len(set(out)) != len(out):
        raise _fail(where, "each Sentinel once", value)
    return tuple(out)


def _readable_file(value: Any, where: str, cwd: str | None) -> str:
    """A TLS file path, checked now: a missing CA file found at the first connection would be a
    retry loop instead of one line at start."""
    if not isinstance(value, str) or not value:
        raise _fail(where, "the path of a PEM file", value)
    path = os.path.join(cwd or "", os.path.expanduser(value))
    if not os.path.isfile(path):
        raise _fail(where, "the path of a PEM file", f"{value} (no such file)")
    if not os.access(path, os.R_OK):
        raise _fail(where, "a PEM file this user can read", value)
    return os.path.expanduser(value)
