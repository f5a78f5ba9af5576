"""Config loading as a user sees it: files, environment sections, ``${VAR}``, ``SWARMD_*``, flags, errors."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmd.config import (
    Config,
    PeriodicEntry,
    QueueOrder,
    QueueSpec,
    SyslogConfig,
    app_dir,
    default_tag,
    load_config,
    parse_queue,
    redact_argv,
    redact_url,
    redis_url,
)
from swarmd.errors import ConfigError, ExitCode
from tests.conftest import SIDEKIQ_YML

# Sidekiq 6 spelling: symbol keys, weighted queues in both list and string form.
SIDEKIQ6_YML = """\
---
:concurrency: 5
:timeout: 8
:strict: false
:queues:
  - [critical, 3]
  - default
  - low,1
:production:
  :concurrency: 20
"""


def write(directory: Path, text: str, name: str = "swarmd.yml") -> str:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def load(tmp_path: Path, text: str, environment: str = "development", **kwargs: Any) -> Config:
    kwargs.setdefault("env", {})
    return load_config(write(tmp_path, text), environment, cwd=str(tmp_path), **kwargs)


def error(tmp_path: Path, text: str, environment: str = "production", **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, environment, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == ExitCode.CONFIG
    return message


# -- the seed file and Sidekiq's spelling -----------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "concurrency"), [("production", 25), ("staging", 15), ("development", 10)]
)
def test_rails_guide_sidekiq_yml_loads_unchanged(tmp_path: Path, environment: str, concurrency: int) -> None:
    config = load(tmp_path, SIDEKIQ_YML, environment)
    assert config.environment == environment
    assert config.concurrency == concurrency
    assert config.queues == (QueueSpec("default", 0), QueueSpec("low", 0))
    assert config.queue_order is QueueOrder.STRICT
    assert config.pidfile == "./tmp/pids/sidekiq.pid"  # relative paths are kept as written
    assert config.logfile == "./log/sidekiq.log"
    assert config.verbose is False
    assert config.timeout == 25.0 and config.processes == 1  # untouched defaults


def test_sidekiq6_colon_keys_and_weights(tmp_path: Path) -> None:
    config = load(tmp_path, SIDEKIQ6_YML)
    assert config.concurrency == 5
    assert config.timeout == 8.0
    assert config.queues == (QueueSpec("critical", 3), QueueSpec("default", 0), QueueSpec("low", 1))
    assert config.queue_order is QueueOrder.WEIGHTED
    assert load(tmp_path, SIDEKIQ6_YML, "production").concurrency == 20


def test_colon_keys_at_every_level(tmp_path: Path) -> None:
    text = ":redis:\n  :url: redis://cache:6379/2\n  :namespace: app\n:syslog:\n  :facility: local3\n"
    config = load(tmp_path, text)
    assert config.redis_url == "redis://cache:6379/2"
    assert config.namespace == "app"
    assert config.syslog == SyslogConfig(facility="local3")


def test_spec_example_file_loads(tmp_path: Path) -> None:
    text = """\
verbose: false
concurrency: 10
processes: 4
timeout: 25
pidfile: ./tmp/pids/swarmd.pid
logfile: ./log/swarmd.log
require: [myapp.jobs]
tag: myapp
queues:
  - default
  - low
redis:
  url: "redis://${REDIS_SERVER:-127.0.0.1}:6379/0"
syslog: {ident: swarmd, facility: daemon, address: /dev/log}
max_memory_mb: 512
heartbeat_timeout: 60
production:
  concurrency: 25
staging:
  concurrency: 15
"""
    config = load(tmp_path, text, "production")
    assert (config.processes, config.concurrency, config.tag) == (4, 25, "myapp")
    assert config.require == ("myapp.jobs",)
    assert config.redis_url == "redis://127.0.0.1:6379/0"
    assert config.syslog == SyslogConfig("swarmd", "daemon", "/dev/log")
    assert config.max_memory_mb == 512
    assert config.heartbeat_timeout == 60.0


def test_every_config_field_is_a_file_key(tmp_path: Path) -> None:
    """A setting added to `Config` must be settable from the file (`redis` is the next test's)."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Config):
        if field.name in (
            "path",
            "environment",
            "redis",
            "syslog",
            "queues",
            "web",
            "metrics_port",
            "periodic",
        ):
            continue  # structured values: their own tests below
        default = field.default
        if isinstance(default, tuple):
            values[field.name] = ["x"]
        elif isinstance(default, bool):
            values[field.name] = not default
        elif isinstance(default, int | float):
            values[field.name] = default * 3 if field.name != "beat_interval" else 1
        elif field.name == "log_format":
            values[field.name] = "json"
        else:
            strings = ("pidfile", "logfile", "tag", "namespace", "hostname")
            values[field.name] = "seven" if field.name in strings else 7
    config = load(tmp_path, yaml.safe_dump(values))
    for name, value in values.items():
        got = getattr(config, name)
        assert got == (tuple(value) if isinstance(value, list) else value), name


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.concurrency == 10
    assert config.queues == (QueueSpec("default", 0),)
    assert config.redis_url == "redis://localhost:6379/0"
    assert config.syslog is None


def test_strict_is_ignored_and_sidekiq_aliases_are_read(tmp_path: Path) -> None:
    text = "strict: true\naverage_scheduled_poll_interval: 15\ndead_timeout_in_seconds: 3600\n"
    config = load(tmp_path, text)
    assert config.poll_interval == 15.0
    assert config.dead_timeout == 3600.0


# -- discovery and environment ------------------------------------------------------------------------


def test_config_swarmd_yml_is_found_under_cwd(tmp_path: Path) -> None:
    path = write(tmp_path / "config", "concurrency: 3\n")
    config = load_config(env={}, cwd=str(tmp_path))
    assert config.path == path
    assert config.concurrency == 3


def test_no_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(env={}, cwd=str(tmp_path))
    assert config.path is None
    assert config.concurrency == 10
    assert config.environment == "development"


def test_relative_path_is_read_from_cwd(tmp_path: Path) -> None:
    write(tmp_path / "deploy", "concurrency: 4\n", "workers.yml")
    config = load_config("deploy/workers.yml", env={}, cwd=str(tmp_path))
    assert config.concurrency == 4


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SWARMD_ENV": "staging", "APP_ENV": "production"}, "staging"),
        ({"APP_ENV": "production"}, "production"),
        ({"SWARMD_ENV": "", "APP_ENV": "production"}, "production"),
        ({}, "development"),
    ],
)
def test_environment_comes_from_swarmd_env_then_app_env(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    config = load_config(write(tmp_path, SIDEKIQ_YML), env=env, cwd=str(tmp_path))
    assert config.environment == expected
    assert config.concurrency == {"staging": 15, "production": 25, "development": 10}[expected]


def test_explicit_environment_beats_variables(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SIDEKIQ_YML), "staging", env={"SWARMD_ENV": "production"})
    assert config.concurrency == 15


def test_other_environment_sections_are_not_expanded(tmp_path: Path) -> None:
    text = 'staging:\n  redis: {url: "redis://${STAGING_HOST}/0"}\nproduction:\n  concurrency: 30\n'
    assert load(tmp_path, text, "production").concurrency == 30


def test_empty_environment_section_is_allowed(tmp_path: Path) -> None:
    assert load(tmp_path, "concurrency: 7\nproduction:\n", "production").concurrency == 7


def test_section_changes_redis_url_but_keeps_namespace(tmp_path: Path) -> None:
    text = "redis: {url: 'redis://dev/0', namespace: app}\nproduction:\n  redis: {url: 'redis://prod/0'}\n"
    config = load(tmp_path, text, "production")
    assert (config.redis_url, config.namespace) == ("redis://prod/0", "app")


# -- ${VAR} -----------------------------------------------------------------------------------------


def test_variables_are_expanded_in_strings_lists_and_mappings(tmp_path: Path) -> None:
    text = """\
redis: {url: "redis://${REDIS_HOST}:${REDIS_PORT:-6379}/0"}
require: ["${APP}.jobs", plain]
tag: "${TAG:-fallback}"
pidfile: "/run/$$/cost-$5/${APP}.pid"
"""
    config = load(tmp_path, text, env={"REDIS_HOST": "cache", "APP": "shop", "TAG": ""})
    assert config.redis_url == "redis://cache:6379/0"
    assert config.require == ("shop.jobs", "plain")
    assert config.tag == "fallback"  # `:-` also covers an empty variable, as in the shell
    assert config.pidfile == "/run/$$/cost-$5/shop.pid"  # other `$` are literal


def test_expanded_values_may_be_numbers_booleans_and_queue_lists(tmp_path: Path) -> None:
    text = "concurrency: ${THREADS:-5}\nverbose: ${DEBUG:-no}\ntimeout: ${GRACE}\nqueues: ${QUEUES}\n"
    config = load(tmp_path, text, env={"DEBUG": "yes", "GRACE": "7.5", "QUEUES": "critical,2 default"})
    assert config.concurrency == 5
    assert config.verbose is True
    assert config.timeout == 7.5
    assert config.queues == (QueueSpec("critical", 2), QueueSpec("default", 0))


def test_unset_variable_names_variable_and_key_path(tmp_path: Path) -> None:
    text = "production:\n  redis:\n    url: redis://${REDIS_HOST}/0\n"
    message = error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'swarmd.yml'}: production.redis.url: ")
    assert "REDIS_HOST is not set" in message


def test_unset_variable_in_list_item_names_index(tmp_path: Path) -> None:
    message = error(tmp_path, "require: [ok, '${MODULE}']\n")
    assert ": require[1]: environment variable MODULE is not set" in message


# -- queues -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queues", "order"),
    [
        ("[critical, default, low]", QueueOrder.STRICT),
        ("[critical, default]", QueueOrder.STRICT),
        ("['critical,1', [default, 1]]", QueueOrder.RANDOM),
        ("[[critical, 5], [default, 2], low]", QueueOrder.WEIGHTED),
        ("['critical,2', 'default,2']", QueueOrder.WEIGHTED),
    ],
)
def test_queue_order_follows_sidekiq(tmp_path: Path, queues: str, order: QueueOrder) -> None:
    assert load(tmp_path, f"queues: {queues}\n").queue_order is order


def test_single_queue_string(tmp_path: Path) -> None:
    assert load(tmp_path, "queues: mailers\n").queues == (QueueSpec("mailers", 0),)


def test_parse_queue_for_the_command_line() -> None:
    assert parse_queue("default") == QueueSpec("default", 0)
    assert parse_queue("critical,3") == QueueSpec("critical", 3)
    assert parse_queue("low, 1") == QueueSpec("low", 1)
    with pytest.raises(ConfigError, match=r"^--queue: expected an integer weight >= 0, got 'x'$"):
        parse_queue("low,x")
    with pytest.raises(ConfigError, match=r"^--queue: expected a queue name without spaces, got ''$"):
        parse_queue(",2")


# -- SWARMD_* and overrides -------------------------------------------------------------------------


def test_precedence_for_concurrency(tmp_path: Path) -> None:
    path = write(tmp_path, SIDEKIQ_YML)
    assert load_config(path, "development", env={}).concurrency == 10  # file
    assert load_config(path, "production", env={}).concurrency == 25  # env section
    env = {"SWARMD_CONCURRENCY": "30"}
    assert load_config(path, "production", env=env).concurrency == 30  # SWARMD_*
    config = load_config(path, "production", env=env, overrides={"concurrency": 40})
    assert config.concurrency == 40  # command line
    assert load_config(path, "production", env=env, overrides={"concurrency": None}).concurrency == 30


def test_precedence_for_redis_url(tmp_path: Path) -> None:
    path = write(tmp_path, "production:\n  redis: {url: 'redis://from-file/0'}\n")
    env = {"REDIS_URL": "redis://from-redis-url/0"}
    assert load_config(None, env={}, cwd=str(tmp_path)).redis_url == "redis://localhost:6379/0"
    assert load_config(None, env=env, cwd=str(tmp_path)).redis_url == "redis://from-redis-url/0"
    assert load_config(path, "production", env=env).redis_url == "redis://from-file/0"
    env["SWARMD_REDIS_URL"] = "redis://from-swarmd/0"
    assert load_config(path, "production", env=env).redis_url == "redis://from-swarmd/0"
    config = load_config(path, "production", env=env, overrides={"redis_url": "redis://from-flag/0"})
    assert config.redis_url == "redis://from-flag/0"


def test_swarmd_variables(tmp_path: Path) -> None:
    env = {
        "SWARMD_PROCESSES": "4",
        "SWARMD_TIMEOUT": "9.5",
        "SWARMD_QUEUES": "critical,3  default low,1",
        "SWARMD_REQUIRE": "app.jobs, app.mail ,",
        "SWARMD_TAG": "shop",
        "SWARMD_VERBOSE": "yes",
        "SWARMD_PIDFILE": "run/swarmd.pid",
        "SWARMD_LOGFILE": "/var/log/swarmd.log",
        "SWARMD_NAMESPACE": "shop",
        "SWARMD_MAX_MEMORY_MB": "768",
        "SWARMD_SYSLOG": "true",
        "SWARMD_CONCURRENCY": "",  # empty counts as unset
    }
    config = load_config(env=env, cwd=str(tmp_path))
    assert (config.processes, config.timeout, config.concurrency) == (4, 9.5, 10)
    assert config.queues == (QueueSpec("critical", 3), QueueSpec("default", 0), QueueSpec("low", 1))
    assert config.require == ("app.jobs", "app.mail")
    assert (config.tag, config.verbose, config.namespace) == ("shop", True, "shop")
    assert (config.pidfile, config.logfile) == ("run/swarmd.pid", "/var/log/swarmd.log")
    assert config.max_memory_mb == 768
    assert config.syslog == SyslogConfig()


@pytest.mark.parametrize(("value", "verbose"), [("1", True), ("TRUE", True), ("no", False), ("0", False)])
def test_swarmd_verbose_words(tmp_path: Path, value: str, verbose: bool) -> None:
    config = load(tmp_path, f"verbose: {str(not verbose).lower()}\n", env={"SWARMD_VERBOSE": value})
    assert config.verbose is verbose


def test_syslog_forms(tmp_path: Path) -> None:
    assert load(tmp_path, "syslog: true\n").syslog == SyslogConfig()
    assert load(tmp_path, "syslog: false\n").syslog is None
    assert load(tmp_path, "syslog: billing\n").syslog == SyslogConfig(ident="billing")
    text = "syslog: {facility: LOCAL0, address: 'logs.internal:514'}\n"
    assert load(tmp_path, text).syslog == SyslogConfig("swarmd", "local0", "logs.internal:514")


def test_syslog_ident_from_variable_or_flag_keeps_file_facility(tmp_path: Path) -> None:
    text = "syslog: {facility: local2, address: /run/log.sock}\n"
    config = load(tmp_path, text, env={"SWARMD_SYSLOG": "billing"})
    assert config.syslog == SyslogConfig("billing", "local2", "/run/log.sock")
    assert load(tmp_path, text, overrides={"syslog": True}).syslog == SyslogConfig(
        "swarmd", "local2", "/run/log.sock"
    )
    assert load(tmp_path, text, env={"SWARMD_SYSLOG": "off"}).syslog is None
    assert load(tmp_path, "", overrides={"syslog": "api"}).syslog == SyslogConfig(ident="api")


def test_overrides_from_the_command_line(tmp_path: Path) -> None:
    overrides = {
        "queues": ["critical,2", QueueSpec("low", 0)],
        "require": ["app/jobs.py"],
        "verbose": True,
        "timeout": 3,
        "tag": "cli",
        "pidfile": "p.pid",
        "logfile": "l.log",
        "processes": 2,
        "syslog": SyslogConfig(ident="x", facility="user"),
    }
    config = load(tmp_path, SIDEKIQ_YML, overrides=overrides)
    assert config.queues == (QueueSpec("critical", 2), QueueSpec("low", 0))
    assert config.require == ("app/jobs.py",)
    assert (config.verbose, config.timeout, config.tag, config.processes) == (True, 3.0, "cli", 2)
    assert (config.pidfile, config.logfile) == ("p.pid", "l.log")
    assert config.syslog == SyslogConfig(ident="x", facility="user")


def test_require_flags_add_to_the_files_require(tmp_path: Path) -> None:
    text = "require: [myapp.jobs, myapp.mail]\n"
    config = load(tmp_path, text, overrides={"require": ["myapp.reports", "myapp.jobs"]})
    assert config.require == ("myapp.jobs", "myapp.mail", "myapp.reports")  # once each, file's first
    env = {"SWARMD_REQUIRE": "other.jobs"}  # the variable replaces the file's, -r adds to it
    assert load(tmp_path, text, env=env, overrides={"require": ["x"]}).require == ("other.jobs", "x")
    assert load(tmp_path, "", overrides={"require": ["x"]}).require == ("x",)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("", {}, "text"),
        ("log_format: json\n", {}, "json"),
        ("log_format: JSON\n", {}, "json"),
        ("log_format: json\n", {"SWARMD_LOG_FORMAT": "text"}, "text"),
        ("production:\n  log_format: json\n", {}, "json"),
    ],
)
def test_log_format(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    assert load(tmp_path, text, "production", env=env).log_format == expected


def test_an_unknown_log_format_is_one_line(tmp_path: Path) -> None:
    message = error(tmp_path, "log_format: xml\n")
    assert message.endswith("swarmd.yml: log_format: expected text or json, got 'xml'")
    message = error(tmp_path, "", env={"SWARMD_LOG_FORMAT": "logfmt"})
    assert message == "SWARMD_LOG_FORMAT: expected text or json, got 'logfmt'"


# -- tag ----------------------------------------------------------------------------------------------


def test_tag_defaults_to_working_directory_name(tmp_path: Path) -> None:
    app = tmp_path / "billing"
    app.mkdir()
    assert load_config(env={}, cwd=str(app)).tag == "billing"


def test_tag_of_a_capistrano_release_is_the_app_name(tmp_path: Path) -> None:
    release = tmp_path / "shop" / "releases" / "20260128153000"
    release.mkdir(parents=True)
    assert load_config(env={}, cwd=str(release)).tag == "shop"
    other = tmp_path / "shop" / "releases" / "old"
    other.mkdir()
    assert load_config(env={}, cwd=str(other)).tag == "old"


@pytest.mark.parametrize(
    ("path", "app", "tag"),
    [
        ("/srv/shop", "/srv/shop", "shop"),
        ("/srv/shop/", "/srv/shop", "shop"),
        ("/srv/shop/current", "/srv/shop", "shop"),  # Capistrano's symlink, as a unit names it
        ("/srv/shop/releases/20260128153000", "/srv/shop", "shop"),  # ... and what it resolves to
        ("/srv/shop/releases/7", "/srv/shop", "shop"),  # Mina's and Deployer's numbered releases
        ("/srv/app/releases/v2", "/srv/app/releases/v2", "v2"),  # not a release: as Sidekiq
        ("/releases/2026", "/releases/2026", "2026"),  # no app directory above
        ("/current", "/current", "current"),
        ("/", "/", "swarmd"),
    ],
)
def test_app_dir_and_default_tag(path: str, app: str, tag: str) -> None:
    assert (app_dir(path), default_tag(path)) == (app, tag)


def test_tag_of_capistrano_current_is_the_app_name(tmp_path: Path) -> None:
    # The daemon sees the resolved release (getcwd), or `current` itself when it is a real directory.
    release = tmp_path / "shop" / "releases" / "20260128153000"
    release.mkdir(parents=True)
    (tmp_path / "shop" / "current").symlink_to(release)
    assert load_config(env={}, cwd=str(tmp_path / "shop" / "current")).tag == "shop"
    (tmp_path / "blog" / "current").mkdir(parents=True)
    assert load_config(env={}, cwd=str(tmp_path / "blog" / "current")).tag == "blog"
    (tmp_path / "app" / "releases" / "v2").mkdir(parents=True)
    assert load_config(env={}, cwd=str(tmp_path / "app" / "releases" / "v2")).tag == "v2"


def test_tag_from_file_beats_directory(tmp_path: Path) -> None:
    assert load(tmp_path, "tag: storefront\n").tag == "storefront"


# -- errors: one line naming file, key path and expectation --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("production:\n  concurrency: 0\n", "production.concurrency: expected an integer >= 1, got 0"),
        ("concurrency: true\n", "concurrency: expected an integer >= 1, got true"),
        ("processes: '4'\n", "processes: expected an integer >= 1, got '4'"),
        ("concurrencyy: 10\n", "concurrencyy: unknown key (did you mean 'concurrency'?)"),
        ("production:\n  timout: 5\n", "production.timout: unknown key (did you mean 'timeout'?)"),
        ("frobnicate: 3\n", "frobnicate: unknown key"),
        ("Redis: {url: 'redis://x'}\n", "Redis: unknown key (did you mean 'redis'?)"),
        ("redis_url: redis://x\n", "redis_url: unknown key (write the URL as redis: {url: ...})"),
        ("redis: {uri: 'redis://x'}\n", "redis.uri: unknown key (did you mean 'url'?)"),
        (
            "redis: 'redis://x'\n",
            "redis: expected a mapping ({url: ...} or {sentinels: [...], master_name: ...}), got 'redis://x'",
        ),
        (
            "redis: {url: 'http://u:hunter2@x'}\n",
            "redis.url: expected a redis://, rediss:// or unix:// URL, got 'http://u:***@x'",
        ),
        ("queues: []\n", "queues: expected at least one queue, got an empty list"),
        ("queues: [default, low, default]\n", "queues[2]: expected each queue once, got 'default' again"),
        ("queues: [[critical, -1]]\n", "queues[0]: expected an integer weight >= 0, got -1"),
        ("queues: ['low,one']\n", "queues[0]: expected an integer weight >= 0, got 'one'"),
        (
            "queues: ['a,1,2']\n",
            "queues[0]: expected a queue name, \"name,weight\" or [name, weight], got 'a,1,2'",
        ),
        ("queues: {default: 1}\n", "queues: expected a list of queues, got a mapping"),
        ("timeout: 0\n", "timeout: expected a number > 0, got 0"),
        ("poll_interval: -1\n", "poll_interval: expected a number > 0, got -1"),
        ("timeout: .inf\n", "timeout: expected a number > 0, got inf"),
        ("verbose: 'yes'\n", "verbose: expected true or false, got 'yes'"),
        ("max_memory_mb: 0\n", "max_memory_mb: expected an integer >= 1 or null, got 0"),
        ("require: [app.jobs, 3]\n", "require[1]: expected a non-empty string, got 3"),
        ("labels: {a: 1}\n", "labels: expected a list of strings, got a mapping"),
        ("tag: 12\n", "tag: expected a string, got 12"),
        ('tag: "a\\udc80"\n', "tag: expected valid Unicode text (no lone surrogates), got 'a\\udc80'"),
        (
            'queues: ["a\\udc80b"]\n',
            "queues[0]: expected valid Unicode text (no lone surrogates), got 'a\\udc80b'",
        ),
        ("pidfile: [a]\n", "pidfile: expected a string or null, got a list"),
        (
            "syslog: {facility: kernel}\n",
            "syslog.facility: expected a facility such as daemon, user or local0..local7, got 'kernel'",
        ),
        (
            "syslog: {address: loghost}\n",
            "syslog.address: expected a socket path or host:port, got 'loghost'",
        ),
        ("syslog: {ident: x, level: info}\n", "syslog.level: unknown key"),
        (
            "syslog: 3\n",
            "syslog: expected true, false, an ident or a mapping of ident/facility/address, got 3",
        ),
        ("liveness_ttl: 3\n", "liveness_ttl: expected a number > beat_interval + fetch_timeout (7), got 3.0"),
        (
            ":concurrency: 1\nconcurrency: 2\n",
            "concurrency: expected one spelling, got both 'concurrency' and ':concurrency'",
        ),
        (
            "namespace: a\nredis: {namespace: b}\n",
            "redis.namespace: expected namespace to be set once, got it also at namespace",
        ),
        ("- default\n", "expected a mapping at the top level, got a list"),
    ],
)
def test_file_errors_name_file_key_and_expectation(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text) == f"{tmp_path / 'swarmd.yml'}: {expected}"


def test_bad_yaml_names_line(tmp_path: Path) -> None:
    message = error(tmp_path, "concurrency: 10\nqueues:\n  - default\n - low\n")
    problem = "expected <block end>, but found '<block sequence start>'"
    assert message == f"{tmp_path / 'swarmd.yml'}: line 4: invalid YAML: {problem}"


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.yml"
    path.write_bytes(b"tag: caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert str(info.value).startswith(f"{path}: invalid YAML: ")
    assert "position 8" in str(info.value) and "\n" not in str(info.value)


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r": expected a regular config file, got a directory$"):
        load_config(str(tmp_path), env={})
    (tmp_path / "locked.yml").write_text("concurrency: 2\n")
    (tmp_path / "locked.yml").chmod(0)
    if os.access(tmp_path / "locked.yml", os.R_OK):
        return  # root reads anything
    with pytest.raises(ConfigError, match=r"locked.yml: cannot read config file: Permission denied$"):
        load_config(str(tmp_path / "locked.yml"), env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "nope.yml"), env={})
    assert str(info.value) == f"{tmp_path / 'nope.yml'}: no such config file"


def test_discovered_file_errors_use_the_path_as_found(tmp_path: Path) -> None:
    write(tmp_path / "config", "production:\n  concurrency: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(environment="production", env={}, cwd=str(tmp_path))
    assert str(info.value) == (
        f"{tmp_path}/config/swarmd.yml: production.concurrency: expected an integer >= 1, got 0"
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SWARMD_CONCURRENCY": "abc"}, "SWARMD_CONCURRENCY: expected an integer >= 1, got 'abc'"),
        ({"SWARMD_PROCESSES": "0"}, "SWARMD_PROCESSES: expected an integer >= 1, got '0'"),
        ({"SWARMD_TIMEOUT": "soon"}, "SWARMD_TIMEOUT: expected a number > 0, got 'soon'"),
        ({"SWARMD_VERBOSE": "maybe"}, "SWARMD_VERBOSE: expected true or false, got 'maybe'"),
        ({"SWARMD_QUEUES": "a,x"}, "SWARMD_QUEUES: expected an integer weight >= 0, got 'x'"),
        ({"SWARMD_QUEUES": "a b a"}, "SWARMD_QUEUES: expected each queue once, got 'a' again"),
        (
            {"SWARMD_MAX_MEMORY_MB": "1.5"},
            "SWARMD_MAX_MEMORY_MB: expected an integer >= 1 or null, got '1.5'",
        ),
        (
            {"REDIS_URL": "localhost:6379"},
            "REDIS_URL: expected a redis://, rediss:// or unix:// URL, got 'localhost:6379'",
        ),
    ],
)
def test_variable_errors_name_the_variable(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env=env, cwd=str(tmp_path))
    assert str(info.value) == expected


def test_override_errors_name_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--concurrency: expected an integer >= 1, got 0$"):
        load_config(env={}, cwd=str(tmp_path), overrides={"concurrency": 0})
    with pytest.raises(ConfigError, match=r"^--queue: expected each queue once, got 'a' again$"):
        load_config(env={}, cwd=str(tmp_path), overrides={"queues": ["a", "a,2"]})
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(env={}, cwd=str(tmp_path), overrides={"concurency": 3})


# -- redaction ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://app:s3cret@h", "redis://app:***@h"),
        ("rediss://app:p@ss/w0rd@h:6380/1", "rediss://app:***@h:6380/1"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("redis://app@cache/0", "redis://app@cache/0"),
        ("unix:///run/redis.sock?db=2&password=s3cret", "unix:///run/redis.sock?db=2&password=***"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_config_redacts_its_redis_url(tmp_path: Path) -> None:
    config = load_config(env={"SWARMD_REDIS_URL": "redis://:hunter2@cache:6379/0"}, cwd=str(tmp_path))
    assert config.redacted_redis_url() == "redis://:***@cache:6379/0"
    assert "hunter2" not in config.redacted_redis_url()


def test_redact_argv_hides_every_url_password() -> None:
    argv = [
        "swarmd",
        "--redis-url",
        "redis://:s3cret@h/0",
        "--redis-url=rediss://u:s3cret@h:6380/1",
        "-c",
        "a:b@c",
    ]
    assert redact_argv(argv) == [
        "swarmd", "--redis-url", "redis://:***@h/0", "--redis-url=rediss://u:***@h:6380/1", "-c", "a:b@c"
    ]  # fmt: skip


# -- the Redis URL: one precedence rule, checked at load ------------------------------------------------


def test_redis_url_precedence_is_one_rule() -> None:
    env = {"SWARMD_REDIS_URL": "redis://swarmd/0", "REDIS_URL": "redis://plain/0"}
    file = ("redis://file/0", "swarmd.yml: redis.url")
    assert redis_url("redis://given/0", file=file, env=env) == "redis://given/0"
    assert redis_url(None, file=file, env=env) == "redis://swarmd/0"
    assert redis_url("", file=file, env={**env, "SWARMD_REDIS_URL": ""}) == "redis://file/0"
    assert redis_url(None, env={"REDIS_URL": "redis://plain/0"}) == "redis://plain/0"
    assert redis_url(None, env={}) == "redis://localhost:6379/0"


def test_client_and_daemon_share_the_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmd.client import Client

    monkeypatch.setenv("SWARMD_REDIS_URL", "redis://swarmd/0")
    monkeypatch.setenv("REDIS_URL", "redis://plain/0")
    assert (
        Client().redis_url == load_config(env=os.environ, cwd=str(tmp_path)).redis_url == "redis://swarmd/0"
    )
    monkeypatch.delenv("SWARMD_REDIS_URL")
    assert Client().redis_url == load_config(env=os.environ, cwd=str(tmp_path)).redis_url == "redis://plain/0"
    assert Client("redis://arg/0").redis_url == "redis://arg/0"


GOOD_URLS = [
    "redis://127.0.0.1:6379/0",
    "redis://h",
    "redis://h/",
    "redis://h:6379",
    "redis://:pw@h:6379/15",
    "redis://user:p%2Fw@h/1",
    "redis://[::1]:6379/0",
    "rediss://u:pw@h:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false",
    "redis://h/0?health_check_interval=10&client_name=web",
    "unix:///run/redis/redis.sock",
    "unix://:pw@/run/redis.sock?db=3",
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_redis_urls_load(url: str) -> None:
    assert redis_url(url, env={}) == url


def test_the_scheme_is_lowercased_for_redis_py() -> None:
    assert redis_url("REDIS://h/0", env={}) == "redis://h/0"


BAD_URLS = [
    ("redis://127.0.0.1:notaport/0", "a port number 1-65535"),
    ("redis://127.0.0.1:99999/0", "a port number 1-65535"),
    ("redis://127.0.0.1:0/0", "a port number 1-65535"),
    ("redis://[::1", "well-formed URL"),
    ("redis://[::1:6379/0", "well-formed URL"),
    ("redis://h/notadb", "a database number"),
    ("redis://h/0/1", "a database number"),
    ("redis://h/0?db=x", "a whole number >= 0 for 'db'"),
    ("redis://h/0?socket_timeout=1", "swarmd sets it"),
    ("redis://h/0?decode_responses=true", "swarmd sets it"),
    ("redis://h/0?ssl_certfile=/c.pem", "rediss://"),
    ("rediss://h/0?ssl_cert_reqs=sometimes", "ssl_cert_reqs one of required, optional, none"),
    ("rediss://h/0?ssl_check_hostname=perhaps", "ssl_check_hostname true or false"),
    ("redis://h/0?foo=bar", "not 'foo'"),
    ("redis://h/0#x", "without '#'"),
    ("redis://h /0", "without spaces"),
    ("redis://h/0\n", "control characters"),
    ("unix://run/redis.sock", "three slashes"),
    ("unix://", "three slashes"),
    ("http://h/0", "redis://, rediss:// or unix://"),
    ("localhost:6379", "redis://, rediss:// or unix://"),
]


@pytest.mark.parametrize(("url", "expected"), BAD_URLS)
def test_bad_redis_urls_are_one_line_naming_the_source(url: str, expected: str) -> None:
    for where, kwargs in [
        ("--redis-url", {"given": url, "where": "--redis-url", "env": {}}),
        ("SWARMD_REDIS_URL", {"env": {"SWARMD_REDIS_URL": url}}),
        ("REDIS_URL", {"env": {"REDIS_URL": url}}),
        ("x.yml: redis.url", {"file": (url, "x.yml: redis.url"), "env": {}}),
    ]:
        with pytest.raises(ConfigError) as info:
            redis_url(**kwargs)  # type: ignore[arg-type]
        message = str(info.value)
        assert message.startswith(f"{where}: expected ")
        assert expected in message
        assert "\n" not in message
        assert info.value.exit_code == ExitCode.CONFIG


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@h:notaport/0",
        "redis://u:hunter2@h/x",
        "redis://:hun/ter2@h:6379/0",
        "redis://:hunter2@[::1",
    ],
)
def test_bad_redis_url_messages_never_show_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        redis_url(url, env={})
    assert "hun" not in str(info.value)
    assert "***" in str(info.value)


def test_a_password_with_a_slash_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match="percent-encode"):
        redis_url("redis://:pa/ss@h:6379/0", env={})


def test_bad_redis_url_in_a_file_names_file_and_key(tmp_path: Path) -> None:
    message = error(tmp_path, "production:\n  redis: {url: 'redis://:pw@h:port/0'}\n")
    assert message == (
        f"{tmp_path / 'swarmd.yml'}: production.redis.url: expected a port number 1-65535 after the host, "
        "got 'redis://:***@h:port/0'"
    )


def test_bad_redis_url_flag_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--redis-url: expected a database number"):
        load_config(env={}, cwd=str(tmp_path), overrides={"redis_url": "redis://h/notadb"})


def test_a_bad_url_of_a_lower_source_is_not_looked_at(tmp_path: Path) -> None:
    env = {"REDIS_URL": "redis://h:bad/0"}  # another program's variable, overridden by the flag
    config = load_config(env=env, cwd=str(tmp_path), overrides={"redis_url": "redis://good/0"})
    assert config.redis_url == "redis://good/0"


# -- hostile or broken files: one line, quickly ----------------------------------------------------------


@pytest.mark.parametrize("levels", [65, 900, 5000])
def test_deep_nesting_is_refused(tmp_path: Path, levels: int) -> None:
    for text in (
        "tag: " + "[" * levels + "]" * levels + "\n",
        "tag: " + "{a: " * levels + "}" * levels + "\n",
        "a:\n" + "".join(f"{' ' * i}b:\n" for i in range(1, min(levels, 300))),  # block style: n² bytes
    ):
        message = error(tmp_path, text)
        assert "nested deeper than 64 levels" in message


def test_nesting_within_the_bound_is_a_normal_error(tmp_path: Path) -> None:
    assert "expected a string" in error(tmp_path, "tag: " + "[" * 60 + "]" * 60 + "\n")


@pytest.mark.parametrize("text", ["concurrency: " + "1" * 5000 + "\n", "concurrency: 0x" + "f" * 5000 + "\n"])
def test_a_huge_integer_is_refused(tmp_path: Path, text: str) -> None:
    message = error(tmp_path, text)
    assert "line 1: invalid YAML: an integer of" in message
    assert len(message) < 300


def test_huge_numbers_from_variables(tmp_path: Path) -> None:
    message = error(tmp_path, "", env={"SWARMD_CONCURRENCY": "1" * 5000})
    assert (
        message.startswith("SWARMD_CONCURRENCY: expected an integer >= 1, got '1111") and len(message) < 300
    )
    assert "expected a number > 0" in error(tmp_path, "timeout: ${T}\n", env={"T": "9" * 400})


def test_a_bad_date_is_one_line(tmp_path: Path) -> None:
    assert "invalid YAML value: month must be in 1..12" in error(tmp_path, "tag: 2026-13-45\n")


BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
require: *g
"""


def test_billion_laughs_is_refused_before_it_expands(tmp_path: Path) -> None:
    message = error(tmp_path, BILLION_LAUGHS)
    assert "aliases expand to more than 100000 values" in message


def test_an_alias_chain_deeper_than_the_bound_is_refused(tmp_path: Path) -> None:
    text = "x0: &x0 [1]\n" + "".join(f"x{i}: &x{i} [*x{i - 1}]\n" for i in range(1, 200))
    assert "aliases expand to more than 64 levels" in error(tmp_path, text)


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert "an alias inside its own anchor" in error(tmp_path, "require: &a [*a]\n")


def test_ordinary_aliases_and_merges_still_load(tmp_path: Path) -> None:
    text = "base: &base {concurrency: 3, queues: [a, b]}\nproduction:\n  <<: *base\n  timeout: 4\n"
    text = text.replace("base: &base", "development: &base")
    config = load(tmp_path, text, "production")
    assert (config.concurrency, config.timeout, [q.name for q in config.queues]) == (3, 4.0, ["a", "b"])


def test_a_fifo_as_config_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "swarmd.yml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"swarmd.yml: expected a regular config file, got a FIFO$"):
        load_config(str(fifo), env={})


@pytest.mark.parametrize("name", ["logfile", "pidfile"])
def test_a_fifo_as_logfile_or_pidfile_is_refused(tmp_path: Path, name: str) -> None:
    os.mkfifo(tmp_path / "x.fifo")
    expected = rf"^{name}: expected a regular file, got a FIFO at .*x.fifo$"
    with pytest.raises(ConfigError, match=expected.replace(f"^{name}", f"^--{name}")):
        load_config(env={}, cwd=str(tmp_path), overrides={name: "x.fifo"})
    assert error(tmp_path, f"{name}: x.fifo\n").endswith(
        f"{name}: expected a regular file, got a FIFO at {tmp_path}/x.fifo"
    )
    assert error(tmp_path, f"{name}: .\n").endswith("got a directory at " + f"{tmp_path}/.")
    assert getattr(load(tmp_path, f"{name}: new/{name}.x\n"), name) == f"new/{name}.x"  # missing: made later


def test_web_and_metrics_port_keys(tmp_path: Path) -> None:
    text = (
        'metrics_port: 9191\nweb: {bind: "0.0.0.0:8000", username: ops, password: s3cret, read_only: true}\n'
    )
    config = load(tmp_path, text)
    assert config.metrics_port == "127.0.0.1:9191"  # a port alone listens on loopback
    assert config.web.bind == "0.0.0.0:8000" and config.web.username == "ops"
    assert config.web.password == "s3cret" and config.web.read_only is True
    assert "s3cret" not in repr(config)  # a config may be logged: never its password
    defaults = load(tmp_path, "")
    assert defaults.metrics_port is None and defaults.web.bind == "127.0.0.1:7433"
    assert load(tmp_path, 'metrics_port: "[::1]:9000"\n').metrics_port == "[::1]:9000"
    assert load(tmp_path, "metrics_port: false\n").metrics_port is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "metrics_port: 99999",
            "metrics_port: expected PORT or HOST:PORT with a port from 1 to 65535, got 99999",
        ),
        (
            "metrics_port: [1]",
            "metrics_port: expected PORT or HOST:PORT with a port from 1 to 65535, got a list",
        ),
        (
            "web: {bind: nowhere}",
            "web.bind: expected PORT or HOST:PORT with a port from 1 to 65535, got 'nowhere'",
        ),
        ("web: {passwd: x}", "web.passwd: unknown key (did you mean 'password'?)"),
        ("web: 3", "web: expected a mapping of bind/username/password/read_only, got 3"),
        ("web: {read_only: maybe}", "web.read_only: expected true or false, got 'maybe'"),
        ("web: {username: ''}", "web.username: expected a non-empty string or null, got ''"),
    ],
)
def test_web_and_metrics_port_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text + "\n")
    assert str(err.value).endswith(message) and "\n" not in str(err.value)


# -- periodic jobs ---------------------------------------------------------------------------------


def test_periodic_entries_and_catch_up_load_with_the_environment_section_over_the_top_level(
    tmp_path: Path,
) -> None:
    text = """
periodic:
  - {cron: "*/5 * * * *", job: Report, args: [1, "x"], queue: low, timezone: Europe/Berlin}
catch_up: 1h
production:
  periodic:
    - {cron: "0  3 * * *", job: Nightly}
  catch_up: 90
"""
    dev = load(tmp_path, text)
    assert dev.periodic == (PeriodicEntry("*/5 * * * *", "Report", (1, "x"), "low", "Europe/Berlin"),)
    assert dev.catch_up == 3600.0
    prod = load(tmp_path, text, "production")
    assert prod.periodic == (PeriodicEntry("0 3 * * *", "Nightly"),)  # spaces normalised
    assert prod.catch_up == 90.0
    assert load(tmp_path, "").periodic == () and load(tmp_path, "").catch_up is None
    assert load(tmp_path, "catch_up: 15m").catch_up == 900.0
    assert load(tmp_path, "catch_up: 2d").catch_up == 172800.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("periodic: {cron: x}", "periodic: expected a list of {cron, job, args, queue, timezone} entries"),
        ("periodic: [{cron: '61 * * * *', job: J}]", "periodic[0]: bad cron expression '61 * * * *'"),
        ("periodic: [{cron: '* * * * *', job: J, timezone: Moon/Base}]", "periodic[0]: unknown time zone"),
        ("periodic: [{cron: '* * * * *', job: J, args: 5}]", "periodic[0].args: expected a list, got 5"),
        ("periodic: [{cron: '* * * * *', job: J, queue: ''}]", "periodic[0].queue: expected a non-empty"),
        ("periodic: [{cron: '* * * * *', job: J, tz: UTC}]", "periodic[0].tz: unknown key"),
        ("periodic: [{cron: '* * * * *'}]", "periodic[0].job: expected a non-empty string, got null"),
        ("catch_up: soon", "catch_up: expected a duration > 0"),
        ("catch_up: 0", "catch_up: expected a duration > 0"),
    ],
)
def test_a_bad_periodic_setting_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.exit_code == ExitCode.CONFIG
    assert message in str(info.value) and "\n" not in str(info.value)
