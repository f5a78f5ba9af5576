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
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

__all__ = [
    "Enqueuer",
    "Node",
    "SentinelKit",
    "Tally",
    "TlsFiles",
    "free_port",
    "read_ledger",
    "tally",
    "wait_ledger",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, where a cluster node also listens) is free
    and exists: an ephemeral port above 55535 has none, and redis-server would exit at start."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
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

        why = ["not checked yet"]

        def stable() -> bool:
            why[0] = self._unstable(master, running)
            return not why[0]

        try:
            _wait(stable, timeout_s, "the Sentinel setup to be stable")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {why[0]}\n{self.log_tails()}") from None
        return master

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every node's and Sentinel's log (for a failure message)."""
        out = []
        for node in [*self.nodes, *self.sentinels]:
            path = os.path.join(node.dir, f"{node.kind}.log")
            with contextlib.suppress(OSError), open(path) as f:
                tail = f.read().splitlines()[-lines:]
            out.append(f"--- {node.kind} {node.port} ---\n" + "\n".join(tail))
        return "\n".join(out)

    def _unstable(self, master: Node, running: list[Node]) -> str:
        """Why the setup is not stable yet ("" when it is)."""
        with contextlib.closing(self.node_client(master)) as c:
            if c.info("replication")["role"] != "master":
                return f"{master.port} is no master yet"
        for node in running:
            with contextlib.closing(self.node_client(node)) as c:
                info = c.info("replication")
            if info.get("master_port") != master.port or info.get("master_link_status") != "up":
                return f"{node.port} is no replica of {master.port} with the link up yet"
        for s in (s for s in self.sentinels if s.running):
            with contextlib.closing(self.sentinel_client(s)) as c:
                state: dict[str, Any] = c.sentinel_master(self.master_name)  # type: ignore[assignment]
                seen: list[dict[str, Any]] = c.sentinel_slaves(self.master_name)
            good = [r for r in seen if not r["is_sdown"] and r.get("master-link-status") == "ok"]
            others = sum(1 for x in self.sentinels if x.running) - 1
            if int(state["num-other-sentinels"]) < others:
                return f"Sentinel {s.port} knows {state['num-other-sentinels']} of {others} other Sentinels"
            if len(good) < len(running):
                shown = [(r["port"], r["flags"], r.get("master-link-status")) for r in seen]
                return f"Sentinel {s.port} sees replicas {shown}"
            if int(state["port"]) != master.port or state["is_sdown"] or state["is_odown"]:
                return f"Sentinel {s.port} sees master {state['port']} flags {state['flags']}"
        return ""

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


# -- a ledger under load (the failover tests and benchmarks/failover.py) -----------------------------

LEDGER_JOBS = '''
"""One job that writes its token to a ledger, one O_APPEND write per line (survives a SIGKILL)."""
import os
import time

import swarmd

LEDGER = os.environ["SWARMD_LEDGER"]


@swarmd.job(name="LedgerJob")
def ledger_job(token):
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"done {token} {os.getpid()} {time.time()!r}\\n".encode())
    finally:
        os.close(fd)
'''


class Enqueuer(threading.Thread):
    """Enqueues ``job`` (its one argument: a token ``<prefix><n>``) at about ``rate`` per second until
    `stop`, sorting each push by what the client said: acknowledged (a jid came back), refused (an
    error that says nothing was pushed), or uncertain (an error after which the job may exist: a
    timeout, or a push that ``wait_replicas`` could not confirm)."""

    def __init__(self, client: Any, rate: float = 200.0, prefix: str = "j", job: str = "LedgerJob") -> None:
        super().__init__(name="enqueuer", daemon=True)
        self.client = client
        self.job = job
        self.rate = rate
        self.prefix = prefix
        self.acked: dict[str, float] = {}
        self.refused: dict[str, float] = {}
        self.uncertain: dict[str, float] = {}
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        from swarmd.errors import RedisUnavailable

        n = 0
        start = time.monotonic()
        while not self._halt.is_set():
            n += 1
            token = f"{self.prefix}{n}"
            now = time.time()
            try:
                self.client.enqueue(self.job, [token], None, {})
            except RedisUnavailable as exc:
                text = str(exc)
                sure = "may or may not" not in text and "took the job" not in text
                (self.refused if sure else self.uncertain)[token] = now
                if len(self.errors) < 1000:
                    self.errors.append(text)
                time.sleep(0.01)  # Redis is away: do not spin
            else:
                self.acked[token] = now
            delay = start + n / self.rate - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def read_ledger(path: str) -> list[tuple[str, int, float]]:
    """(token, pid, time) of every ``done`` line."""
    out = []
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "done":
                out.append((parts[1], int(parts[2]), float(parts[3])))
    return out


@dataclass
class Tally:
    """What the ledger says about the acknowledged jobs."""

    enqueued: int  # acknowledged
    refused: int
    uncertain: int
    ran: int  # acknowledged jobs that ran at least once
    lost: list[str]  # acknowledged, never ran
    twice: int  # jobs (any) that ran more than once

    def line(self) -> str:
        return (
            f"enqueued {self.enqueued} (refused {self.refused}, uncertain {self.uncertain}), ran {self.ran}, "
            f"lost {len(self.lost)}, ran twice {self.twice}"
        )


def tally(enqueuer: Enqueuer, ledger: str) -> Tally:
    runs = Counter(token for token, _, _ in read_ledger(ledger))
    lost = sorted(t for t in enqueuer.acked if runs[t] == 0)
    return Tally(
        enqueued=len(enqueuer.acked),
        refused=len(enqueuer.refused),
        uncertain=len(enqueuer.uncertain),
        ran=sum(1 for t in enqueuer.acked if runs[t]),
        lost=lost,
        twice=sum(1 for c in runs.values() if c > 1),
    )


def wait_ledger(enqueuer: Enqueuer, ledger: str, quiet_s: float = 5.0, timeout_s: float = 120.0) -> None:
    """Until every acknowledged job ran, or the ledger stopped growing for ``quiet_s`` (then some
    are missing: the caller's tally says which)."""
    deadline = time.monotonic() + timeout_s
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        done = {t for t, _, _ in read_ledger(ledger)}
        if all(t in done for t in enqueuer.acked):
            return
        if len(done) != size:
            size, since = len(done), time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return
        time.sleep(0.1)
