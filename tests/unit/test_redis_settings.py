"""The ``redis:`` section (URL or Sentinel, passwords, TLS files, wait_replicas) and ``hostname:``, as a
user writes them: what they load to, and the one line a mistake gets."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from swarmd.config import RedisSettings, load_config, redis_settings
from swarmd.errors import ConfigError, ExitCode
from swarmd.heartbeat import new_identity


def load(
    tmp_path: Path, text: str, environment: str = "development", env: dict[str, str] | None = None
) -> Any:
    path = tmp_path / "swarmd.yml"
    path.write_text(text)
    return load_config(str(path), environment, env=env or {}, cwd=str(tmp_path))


def error(
    tmp_path: Path, text: str, environment: str = "development", env: dict[str, str] | None = None
) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, environment, env)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == ExitCode.CONFIG
    return message.removeprefix(f"{tmp_path / 'swarmd.yml'}: ")


SENTINEL_YML = """\
redis:
  sentinels: ["10.0.0.1:26379", "10.0.0.2:26380", "sentinel-3", "[fe80::1]:26381"]
  master_name: mymaster
  sentinel_password: s3cret
  password: hunter2
  db: 3
  namespace: shop
"""


def test_sentinel_settings_load(tmp_path: Path) -> None:
    config = load(tmp_path, SENTINEL_YML)
    settings = config.redis
    assert settings.is_sentinel
    assert settings.sentinels == (
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26380),
        ("sentinel-3", 26379),  # the default Sentinel port
        ("fe80::1", 26381),
    )
    assert (settings.master_name, settings.password, settings.sentinel_password) == (
        "mymaster",
        "hunter2",
        "s3cret",
    )
    assert (settings.db, config.namespace) == (3, "shop")


def test_passwords_never_show(tmp_path: Path) -> None:
    config = load(tmp_path, SENTINEL_YML)
    shown = f"{config.redacted_redis_url()} {config.redis!r} {config!r}"
    assert "hunter2" not in shown and "s3cret" not in shown
    assert config.redacted_redis_url() == (
        "master 'mymaster' via Sentinel 10.0.0.1:26379,10.0.0.2:26380,sentinel-3:26379,[fe80::1]:26381"
    )


def test_sentinels_from_one_variable(tmp_path: Path) -> None:
    text = "redis: {sentinels: '${REDIS_SENTINELS}', master_name: '${REDIS_MASTER:-mymaster}'}\n"
    config = load(tmp_path, text, env={"REDIS_SENTINELS": "a:1, b:2,c"})
    assert config.redis.sentinels == (("a", 1), ("b", 2), ("c", 26379))
    assert config.redis.master_name == "mymaster"


def test_an_environment_section_picks_url_or_sentinels(tmp_path: Path) -> None:
    text = (
        "redis: {url: 'redis://localhost:6379/0', password: pw}\n"
        "production:\n  redis: {sentinels: ['s1:26379'], master_name: prod}\n"
        "staging:\n  redis: {url: 'redis://staging:6379/1'}\n"
    )
    assert load(tmp_path, text).redis == RedisSettings(url="redis://localhost:6379/0", password="pw")
    production = load(tmp_path, text, "production").redis
    assert (production.sentinels, production.master_name, production.password) == (
        (("s1", 26379),),
        "prod",
        "pw",
    )
    staging = load(tmp_path, text, "staging").redis
    assert (staging.url, staging.is_sentinel) == ("redis://staging:6379/1", False)


def test_sentinels_rank_with_the_file_in_the_url_precedence(tmp_path: Path) -> None:
    # --redis-url and SWARMD_REDIS_URL outrank the file (its Sentinels too); REDIS_URL does not.
    assert load(tmp_path, SENTINEL_YML, env={"REDIS_URL": "redis://plain/0"}).redis.is_sentinel
    config = load(tmp_path, SENTINEL_YML, env={"SWARMD_REDIS_URL": "redis://elsewhere:6379/0"})
    assert (config.redis.is_sentinel, config.redis_url, config.redis.password) == (
        False,
        "redis://elsewhere:6379/0",
        "hunter2",  # the other keys still apply (a value in the URL would win)
    )
    path = tmp_path / "swarmd.yml"
    flagged = load_config(str(path), env={}, overrides={"redis_url": "redis://flag:6379/0"})
    assert flagged.redis_url == "redis://flag:6379/0" and not flagged.redis.is_sentinel


def test_tls_keys_with_a_rediss_url(tmp_path: Path) -> None:
    for name in ("ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_text("PEM")
    text = (
        "redis:\n  url: rediss://redis.internal:6380/0\n  ssl_ca_certs: ca.crt\n"
        "  ssl_certfile: client.crt\n  ssl_keyfile: client.key\n  ssl_cert_reqs: required\n"
    )
    settings = load(tmp_path, text).redis
    assert settings.tls
    assert (settings.ssl_ca_certs, settings.ssl_certfile, settings.ssl_keyfile, settings.ssl_cert_reqs) == (
        "ca.crt",
        "client.crt",
        "client.key",
        "required",
    )


def test_tls_with_sentinels_is_ssl_true(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("PEM")
    text = "redis: {sentinels: [s:26379], master_name: m, ssl: true, ssl_ca_certs: ca.crt}\n"
    settings = load(tmp_path, text).redis
    assert settings.tls and settings.describe().endswith("(TLS)")


def test_wait_replicas(tmp_path: Path) -> None:
    settings = load(tmp_path, "redis: {url: 'redis://h:6379/0', wait_replicas: 1, wait_timeout: 0.5}\n").redis
    assert (settings.wait_replicas, settings.wait_timeout) == (1, 0.5)
    assert RedisSettings().wait_replicas == 0  # off unless asked for


HOST = "a host name without ':', spaces or control characters (at most 255)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "redis: {sentinels: ['s:26379']}\n",
            "redis.master_name: expected the master's name as Sentinel knows it "
            "(sentinel monitor <name> ...), got null",
        ),
        (
            "redis: {sentinels: [], master_name: m}\n",
            'redis.sentinels: expected a list of Sentinel addresses ("host:port"), got an empty list',
        ),
        (
            "redis: {sentinels: ['s:0'], master_name: m}\n",
            'redis.sentinels[0]: expected a Sentinel address "host:port" (IPv6 in [brackets], port 1-65535), '
            "got 's:0'",
        ),
        (
            "redis: {sentinels: ['s:1', 's:1'], master_name: m}\n",
            "redis.sentinels: expected each Sentinel once, got a list",
        ),
        (
            "redis: {url: 'redis://h/0', sentinels: ['s:1'], master_name: m}\n",
            "redis.sentinels: expected either redis.url or redis.sentinels, got both",
        ),
        ("redis: {sentinel: ['s:1']}\n", "redis.sentinel: unknown key (did you mean 'sentinels'?)"),
        ("redis: {url: 'redis://h/0', db: -1}\n", "redis.db: expected an integer >= 0 or null, got -1"),
        (
            "redis: {url: 'redis://h/0', password: 12345}\n",
            "redis.password: expected a string (quote a password YAML would read as a number), got 12345",
        ),
        (
            "redis: {url: 'redis://h/0', ssl_cert_reqs: required}\n",
            "redis.ssl_cert_reqs: expected TLS (a rediss:// URL) for a TLS setting; Redis is redis://h/0",
        ),
        (
            "redis: {url: 'rediss://h/0', ssl_cert_reqs: maybe}\n",
            "redis.ssl_cert_reqs: expected one of required, optional, none, got 'maybe'",
        ),
        (
            "redis: {url: 'rediss://h/0', ssl_ca_certs: /nonexistent/ca.crt}\n",
            "redis.ssl_ca_certs: expected the path of a PEM file, got '/nonexistent/ca.crt (no such file)'",
        ),
        (
            "redis: {url: 'redis://h/0', ssl: true}\n",
            "redis.ssl: expected false with a redis:// or unix:// URL (for TLS write rediss://), got true",
        ),
        (
            "redis: {url: 'redis://h/0', wait_replicas: -1}\n",
            "redis.wait_replicas: expected an integer >= 0, got -1",
        ),
        ("hostname: 'web 1'\n", f"hostname: expected {HOST}, got 'web 1'"),
        ("hostname: 'a:b'\n", f"hostname: expected {HOST}, got 'a:b'"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text) == expected


def test_a_tls_file_path_names_the_key_in_a_section(tmp_path: Path) -> None:
    text = "production:\n  redis: {url: 'redis://h/0', ssl_ca_certs: x.crt}\n"
    assert error(tmp_path, text, "production").startswith("production.redis.ssl_ca_certs: ")


def test_redis_settings_from_a_mapping_as_configure_takes_it() -> None:
    settings = redis_settings({"sentinels": ["a:1"], "master_name": "m", "password": "pw"}, env={})
    assert (settings.sentinels, settings.master_name, settings.password) == ((("a", 1),), "m", "pw")
    assert redis_settings({"password": "pw"}, env={"REDIS_URL": "redis://plain/2"}).url == "redis://plain/2"
    with pytest.raises(ConfigError, match=r"^redis\.namespace: unknown key"):
        redis_settings({"namespace": "x"}, env={})


def test_every_settings_field_is_a_redis_key(tmp_path: Path) -> None:
    """A field added to `RedisSettings` must be settable under ``redis:``."""
    (tmp_path / "f.pem").write_text("PEM")
    values: dict[str, Any] = {"sentinels": ["s:26379"], "ssl": True}
    for field in dataclasses.fields(RedisSettings):
        if field.name in values or field.name == "url":
            continue
        default = field.default
        if field.name == "db":
            values[field.name] = 5
        elif field.name.startswith("ssl_"):
            values[field.name] = "none" if field.name == "ssl_cert_reqs" else "f.pem"
        elif isinstance(default, int | float):
            values[field.name] = default + 2
        else:
            values[field.name] = "x7"
    settings = redis_settings(values, env={}, cwd=str(tmp_path))
    for name, value in values.items():
        got = getattr(settings, name)
        assert got == ((("s", 26379),) if name == "sentinels" else value), name


# -- hostname ----------------------------------------------------------------------------------------


def test_hostname_from_the_file_or_swarmd_hostname(tmp_path: Path) -> None:
    assert load(tmp_path, "hostname: web-1\n").hostname == "web-1"
    assert load(tmp_path, "hostname: web-1\n", env={"SWARMD_HOSTNAME": "web-2"}).hostname == "web-2"
    assert load(tmp_path, "").hostname is None


def test_the_identity_carries_the_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNO", raising=False)
    host, pid, token = new_identity(42, "web-1").split(":")
    assert (host, pid, len(token)) == ("web-1", "42", 12)
    assert new_identity(42).split(":")[0] not in ("", "web-1")  # the machine's name
