"""TLS to Redis: ``rediss://`` plus ``redis: {ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs}``,
against Debian's redis-server listening on its TLS port only (``--port 0 --tls-port``) and requiring a
client certificate; the CA, server and client certificates are made by the test (tests/tlscerts.py).
With the right CA everything works; with a wrong CA, an expired server certificate or no client
certificate it fails closed: exit 69 and one line, for swarmd and swarmctl alike. The same through
Sentinel, whose Sentinels and nodes speak only TLS too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import swarmd
from swarmd.devredis import RedisServer
from swarmd.errors import RedisUnavailable
from tests.conftest import require_tool, run_ctl
from tests.integration.conftest import JOBS_MODULE, App
from tests.sentinelkit import SentinelKit, free_port
from tests.tlscerts import TlsSet, make_tls


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsSet:
    return make_tls(tmp_path_factory.mktemp("certs"))


def tls_server(make: Callable[..., RedisServer], certs: TlsSet, cert: str | None = None) -> int:
    """A redis-server on a TLS port only, requiring client certificates; returns the port."""
    port = free_port()
    good = certs.good
    make(
        extra_args=(
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", cert or good.server_cert,
            "--tls-key-file", good.server_key,
            "--tls-ca-cert-file", good.ca,
            "--tls-auth-clients", "yes",
        )
    )  # fmt: skip
    return port


def section(port: int, certs: TlsSet, ca: str | None = None, client_cert: bool = True) -> dict[str, Any]:
    redis: dict[str, Any] = {"url": f"rediss://127.0.0.1:{port}/0", "ssl_ca_certs": ca or certs.good.ca}
    if client_cert:
        redis.update(ssl_certfile=certs.good.client_cert, ssl_keyfile=certs.good.client_key)
    return redis


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_the_right_ca_works_for_every_part(app: App, redis_factory: Any, certs: TlsSet) -> None:
    port = tls_server(redis_factory, certs)
    cfg = app.config(redis=section(port, certs), require=[JOBS_MODULE])  # `swarmctl check` imports it
    app.start(config=cfg)
    client = swarmd.Client(section(port, certs))
    client.enqueue("Record", ["over-tls"], None, {})
    app.wait_tokens(["over-tls"])
    check = run_ctl("check", "-C", str(cfg), cwd=app.root, env=app.env())
    assert check.returncode == 0, check.stderr
    assert f"master:       127.0.0.1:{port} (role master, 0 replicas)" in check.stdout


@pytest.mark.parametrize("problem", ["wrong CA", "expired server certificate", "no client certificate"])
def test_tls_fails_closed(app: App, redis_factory: Any, certs: TlsSet, problem: str) -> None:
    port = tls_server(redis_factory, certs, certs.expired_cert if problem.startswith("expired") else None)
    redis = section(
        port,
        certs,
        ca=certs.wrong_ca if problem == "wrong CA" else None,
        client_cert=problem != "no client certificate",
    )
    cfg = app.config(redis=redis)
    result = app.run("-C", str(cfg), timeout_s=60)
    assert result.returncode == 69, result.stderr
    line = one_line(result.stderr)
    assert f"cannot reach Redis at rediss://127.0.0.1:{port}/0: " in line
    if problem != "no client certificate":  # the server hangs up: the client sees a TLS error, not why
        reason = "certificate has expired" if problem.startswith("expired") else "certificate verify failed"
        assert reason in line
    check = run_ctl("check", "-C", str(cfg), cwd=app.root, env=app.env())
    assert check.returncode == 69
    assert one_line(check.stderr).startswith("swarmctl: cannot reach Redis at rediss://")
    status = run_ctl("status", "-C", str(cfg), cwd=app.root, env=app.env())
    assert status.returncode == 69 and one_line(status.stderr).startswith("swarmctl: ")
    with pytest.raises(RedisUnavailable, match=r"^cannot enqueue: Redis at rediss://"):
        swarmd.Client(redis).enqueue("Record", ["never"], None, {})


@pytest.fixture
def tls_kit(certs: TlsSet) -> Iterator[SentinelKit]:
    require_tool("redis-sentinel", "redis-sentinel", "Sentinel over TLS")
    with SentinelKit(tls=certs.good) as kit:
        yield kit


def test_sentinel_over_tls(app: App, tls_kit: SentinelKit, certs: TlsSet) -> None:
    # redis-py speaks TLS to the Sentinels (sentinel_kwargs) and to the master they name.
    cfg = app.config(redis=tls_kit.settings(), require=[JOBS_MODULE])
    app.start(config=cfg)
    swarmd.Client(tls_kit.settings()).enqueue("Record", ["sentinel-tls"], None, {})
    app.wait_tokens(["sentinel-tls"])
    check = run_ctl("check", "-C", str(cfg), cwd=app.root, env=app.env())
    assert check.returncode == 0, check.stderr
    assert f"master:       127.0.0.1:{tls_kit.master().port} (role master, 1 replica)" in check.stdout
    assert "via Sentinel" in check.stdout and "(TLS)" in check.stdout
    wrong = app.config("wrong.yml", redis=tls_kit.settings(ssl_ca_certs=certs.wrong_ca))
    result = app.run("-C", str(wrong), timeout_s=60)
    assert result.returncode == 69 and "certificate verify failed" in one_line(result.stderr)
