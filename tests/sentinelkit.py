"""A throw-away Redis with Sentinel on loopback, for the tests and ``benchmarks/failover.py``.

One master, ``replicas`` replicas and ``sentinels`` Sentinel processes (quorum: a majority), each on
a loopback port of its own, each process in a session of its own so that a test can SIGKILL one
(`SentinelKit.kill_master`) as a crash would, and bring it back as a replica of the new master. With
``tls`` every node and Sentinel listens on its TLS port only (``--port 0``), replicates over TLS and
requires client certificates. Needs ``redis-server`` and ``redis-sentinel`` (Debian's packages) on
PATH; nothing is written outside a temp dir, and `stop()` (or the context manager, or interpreter
exit) ends every process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

__all__ = ["Node", "SentinelKit", "TlsFiles", "free_port"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA that signed everything, the servers' certificate and key (also used by the
    nodes and Sentinels as clients of each other), and a client certificate and key."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _wait(predicate: Callable[[], object], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (redis.RedisError, OSError) as exc:
            last, value = exc, None
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}" + (f" ({last})" if last else ""))


class Node:
    """One ``redis-server`` or ``redis-sentinel`` process on a loopback port."""

    def __init__(self, kind: str, port: int, root: str, lines: list[str], tls: TlsFiles | None) -> None:
        self.kind = kind  # "redis" or "sentinel"
        self.port = port
        self.dir = tempfile.mkdtemp(prefix=f"{kind}-{port}-", dir=root)
        self.conf = os.path.join(self.dir, f"{kind}.conf")
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        listen = [f"port {port}"] if tls is None else ["port 0", f"tls-port {port}", *_tls_lines(tls)]
        base = ["bind 127.0.0.1", "daemonize no", f"dir {self.dir}", f"logfile {self.dir}/{kind}.log"]
        if kind == "redis":
            base += ['save ""', "appendonly no"]
        self._lines = [*listen, *base, *lines]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, extra: list[str] | None = None) -> Node:
        """Start (again) with the config lines given at creation plus ``extra``; wait for PING."""
        with open(self.conf, "w") as f:  # Sentinel rewrites its file: a restart starts from ours
            f.write("\n".join([*self._lines, *(extra or [])]) + "\n")
        binary = shutil.which("redis-sentinel" if self.kind == "sentinel" else "redis-server")
        if binary is None:
            raise RuntimeError(
                f"no {'redis-sentinel' if self.kind == 'sentinel' else 'redis-server'} on PATH"
            )
        self.proc = subprocess.Popen(
            [binary, self.conf], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        _wait(self._answers, 10, f"{self.kind} on port {self.port} to answer")
        return self

    def _answers(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} on port {self.port} exited; see {self.dir}/{self.kind}.log")
        with contextlib.closing(self.client()) as c:
            try:
                c.ping()
            except redis.AuthenticationError:  # up, with a password
                pass
            except redis.ResponseError as exc:
                if "NOAUTH" not in str(exc):
                    raise
        return True

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain redis-py client (decoded replies) to this process."""
        options: dict[str, Any] = dict(socket_timeout=5, socket_connect_timeout=5, decode_responses=True)
        if self.tls is not None:
            options.update(
                ssl=True,
                ssl_ca_certs=self.tls.ca,
                ssl_certfile=self.tls.client_cert,
                ssl_keyfile=self.tls.client_key,
            )
        options.update(kwargs)
        return redis.Redis("127.0.0.1", self.port, **options)

    def kill(self) -> None:
        """SIGKILL, as a crash would (the process group: nothing of it survives)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _tls_lines(tls: TlsFiles) -> list[str]:
    return [
        f"tls-cert-file {tls.server_cert}",
        f"tls-key-file {tls.server_key}",
        f"tls-client-cert-file {tls.server_cert}",
        f"tls-client-key-file {tls.server_key}",
        f"tls-ca-cert-file {tls.ca}",
        "tls-auth-clients yes",
        "tls-replication yes",
    ]


class SentinelKit:
    """``with SentinelKit() as kit: kit.sentinel_addresses, kit.master_name, kit.failover()``."""

    def __init__(
        self,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        master_name: str = "mymaster",
        redis_lines: tuple[str, ...] = (),
        password: str | None = None,
        sentinel_password: str | None = None,
        tls: TlsFiles | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 4000,
    ) -> None:
        self.root = tempfile.mkdtemp(prefix="swd-sentinel-", dir="/tmp")
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.tls = tls
        auth = [f"requirepass {password}", f"masterauth {password}"] if password else []
        self.nodes = [
            Node("redis", free_port(), self.root, [*auth, *redis_lines], tls) for _ in range(1 + replicas)
        ]
        first = self.nodes[0]
        monitor = [
            f"sentinel monitor {master_name} 127.0.0.1 {first.port} {sentinels // 2 + 1}",
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
            f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
            f"sentinel parallel-syncs {master_name} 1",
        ]
        if password:
            monitor.append(f"sentinel auth-pass {master_name} {password}")
        if sentinel_password:
            monitor += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
        self.sentinels = [Node("sentinel", free_port(), self.root, monitor, tls) for _ in range(sentinels)]

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> SentinelKit:
        atexit.register(self.stop)
        try:
            master, *replicas = self.nodes
            master.start()
            for node in replicas:
                node.start([f"replicaof 127.0.0.1 {master.port}"])
            for node in self.sentinels:
                node.start()
            self.wait_stable()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SentinelKit:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what clients need ------------------------------------------------------------------------
    @property
    def sentinel_addresses(self) -> list[str]:
        return [s.address for s in self.sentinels]

    def settings(self, **extra: Any) -> dict[str, Any]:
        """The ``redis:`` section of a swarmd config for this setup (``extra`` keys added)."""
        section: dict[str, Any] = {"sentinels": self.sentinel_addresses, "master_name": self.master_name}
        if self.password:
            section["password"] = self.password
        if self.sentinel_password:
            section["sentinel_password"] = self.sentinel_password
        if self.tls is not None:
            section.update(
                ssl=True,
                ssl_ca_certs=self.tls.ca,
                ssl_certfile=self.tls.client_cert,
                ssl_keyfile=self.tls.client_key,
            )
        return {**section, **extra}

    def node_client(self, node: Node, **kwargs: Any) -> redis.Redis:
        return node.client(password=self.password, **kwargs)

    def sentinel_client(self, node: Node) -> redis.Redis:
        return node.client(password=self.sentinel_password)

    # -- state ------------------------------------------------------------------------------------
    def master(self) -> Node:
        """The node every running Sentinel names as the master (waits until they agree)."""

        def agreed() -> Node | None:
            ports = set()
            for s in self.sentinels:
                if s.running:
                    with contextlib.closing(self.sentinel_client(s)) as c:
                        addr: Any = c.sentinel_get_master_addr_by_name(self.master_name)
                    ports.add(int(addr[1]))
            if len(ports) != 1:
                return None
            port = ports.pop()
            return next(n for n in self.nodes if n.port == port)

        node: Node = _wait(agreed, 30, "the Sentinels to agree on the master")
        return node

    def replicas(self) -> list[Node]:
        master = self.master()
        return [n for n in self.nodes if n is not master]

    def wait_stable(self, timeout_s: float = 60) -> Node:
        """Until the Sentinels agree on a master that says it is one, every other running node is its
        replica with the link up, and every Sentinel knows every other one and every running replica."""
        master = self.master()
        running = [n for n in self.nodes if n.running and n is not master]

        def stable() -> bool:
            with contextlib.closing(self.node_client(master)) as c:
                if c.info("replication")["role"] != "master":
                    return False
            for node in running:
                with contextlib.closing(self.node_client(node)) as c:
                    info = c.info("replication")
                if info.get("master_port") != master.port or info.get("master_link_status") != "up":
                    return False
            for s in (s for s in self.sentinels if s.running):
                with contextlib.closing(self.sentinel_client(s)) as c:
                    state: dict[str, Any] = c.sentinel_master(self.master_name)  # type: ignore[assignment]
                    seen: list[dict[str, Any]] = c.sentinel_slaves(self.master_name)
                good = [r for r in seen if not r["is_sdown"] and r.get("master-link-status") == "ok"]
                others = sum(1 for x in self.sentinels if x.running) - 1
                if int(state["num-other-sentinels"]) < others or len(good) < len(running):
                    return False
                if int(state["port"]) != master.port or state["is_sdown"] or state["is_odown"]:
                    return False
            return True

        _wait(stable, timeout_s, "the Sentinel setup to be stable")
        return master

    # -- failures ---------------------------------------------------------------------------------
    def failover(self, timeout_s: float = 60) -> tuple[Node, Node]:
        """``SENTINEL FAILOVER``: returns (old master, new master) once the setup is stable again."""
        old = self.wait_stable()
        with contextlib.closing(self.sentinel_client(self.sentinels[0])) as c:
            c.sentinel_failover(self.master_name)
        _wait(lambda: self.master() is not old, timeout_s, "the Sentinels to name a new master")
        new = self.wait_stable(timeout_s)
        return old, new

    def kill_master(self, timeout_s: float = 60) -> tuple[Node, Node]:
        """SIGKILL the master; returns (killed node, new master) once the Sentinels promoted one. The
        killed node stays down: `restart_as_replica` brings it back."""
        old = self.wait_stable()
        old.kill()
        _wait(lambda: self.master() is not old, timeout_s, "the Sentinels to promote a replica")
        return old, self.master()

    def restart_as_replica(self, node: Node) -> None:
        """Start a killed node as a replica of the current master (never as an empty master: without
        persistence, a master that comes back before the failover would replicate its empty data
        set to every replica), and wait until the setup is stable."""
        master = self.master()
        node.start([f"replicaof 127.0.0.1 {master.port}"])
        self.wait_stable()
