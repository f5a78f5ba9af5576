"""The only module that builds Redis clients (the Lua scripts are `swarmd.scripts`).

`connect` turns a `RedisSettings` (the config's ``redis:`` section: a URL, or Sentinels and a master
name; passwords, database, TLS files) into a redis-py client, always with the same options:

- Automatic retry OFF. A retry layer that re-sends a command whose reply was lost would run BLMOVE
  or a claim script twice and strand a job in the private list; swarmd handles connection errors
  itself (back off, reconnect, then reconcile the private list, see `fetch.Fetcher.reconcile`).
- Responses are bytes (``decode_responses=False``): a job pushed by hand may not be UTF-8, and one
  such job must never break a reply that carries other jobs.
- The socket timeout outlives the longest blocking command (BLMOVE for ``fetch_timeout``), and TCP
  keepalive is on, so a master that vanished (a dead host sends no RST) is noticed.

Failover. A server that stopped being the writable master answers a write with ``READONLY`` (a
demoted master), ``NOREPLICAS`` (a master cut off from its replicas under ``min-replicas-to-write``)
or, to a blocked BLMOVE, ``UNBLOCKED``. Each of those is turned into a `ConnectionError` after the
connection is closed, so every caller treats it as the connection error it is: the next command
connects again (through Sentinel: to the master it names now) and the fetcher reconciles its
private list. In Sentinel mode the pool also asks the Sentinels where the master is at most once
per `FOLLOW_S` when a connection is taken from it: redis-py then closes the idle connections to an
old master, and `master_address` tells the fetcher that the master changed (a write acknowledged
by the old master may be missing on the new one: see README "High availability").
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis
import redis.connection
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, ReadOnlyError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool, SentinelManagedConnection

from swarmd.config import RedisSettings
from swarmd.errors import ConfigError, RedisUnavailable

log = logging.getLogger("swarmd")

MIN_REDIS = (6, 2)
FOLLOW_S = 1.0  # Sentinel mode: ask where the master is at most this often (per client)
SENTINEL_TIMEOUT_S = 2.0  # a Sentinel answers SENTINEL MASTERS at once, or another one is asked
Redis = redis.Redis
Connection = redis.connection.AbstractConnection
ConnectionError = redis.ConnectionError
TimeoutError = redis.TimeoutError
RedisError = redis.RedisError
ResponseError = redis.ResponseError

_NOT_MASTER = ("NOREPLICAS", "UNBLOCKED")


def _read(conn: Any, read: Any, args: Any, kwargs: Any) -> Any:
    """``read(*args, **kwargs)``, with a not-the-master-any-more error turned into a connection error."""
    try:
        return read(*args, **kwargs)
    except ResponseError as exc:
        if not isinstance(exc, ReadOnlyError) and not str(exc).startswith(_NOT_MASTER):
            raise
        conn.disconnect()
        what = f"READONLY {exc}" if isinstance(exc, ReadOnlyError) else str(exc)
        raise ConnectionError(f"{what} (not a writable master any more: reconnecting)") from exc


class _TCPConnection(redis.connection.Connection):
    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        return _read(self, super().read_response, args, kwargs)


class _SSLConnection(redis.connection.SSLConnection):
    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        return _read(self, super().read_response, args, kwargs)


class _UnixConnection(redis.connection.UnixDomainSocketConnection):
    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        return _read(self, super().read_response, args, kwargs)


class _SentinelConnection(SentinelManagedConnection):
    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        # redis-py turns READONLY into a ConnectionError here already; NOREPLICAS and UNBLOCKED too.
        return _read(self, super().read_response, args, kwargs)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # A closed connection that is sent a command reconnects in redis-py's send_packed_command to
        # the address it had (for a connection taken from the pool, the pool's connect() has asked
        # the Sentinels first; one held for long, a waiter's, would go back to the old master for
        # ever): connect through the Sentinels here.
        if self._sock is None:
            self.connect()  # type: ignore[no-untyped-call]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class _SentinelSSLConnection(_SentinelConnection, redis.connection.SSLConnection):
    pass


_URL_CLASSES: dict[type[Any], type[Any]] = {
    redis.connection.Connection: _TCPConnection,
    redis.connection.SSLConnection: _SSLConnection,
    redis.connection.UnixDomainSocketConnection: _UnixConnection,
}


class _Sentinel(Sentinel):
    """redis-py's Sentinel manager, whose "no master" error is one short line (redis-py's quotes
    the repr of every Sentinel client, a few kilobytes per log line while a failover goes on)."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        problems = []
        for i, sentinel in enumerate(self.sentinels):
            kwargs = sentinel.connection_pool.connection_kwargs
            where = f"{kwargs.get('host')}:{kwargs.get('port')}"
            try:
                masters: dict[str, Any] = sentinel.sentinel_masters()  # type: ignore[assignment]
                state = masters.get(service_name)
            except (ConnectionError, TimeoutError) as exc:
                problems.append(f"{where}: {type(exc).__name__}: {exc}")
                continue
            if state and self.check_master_state(state, service_name):  # type: ignore[no-untyped-call]
                self.sentinels[0], self.sentinels[i] = sentinel, self.sentinels[0]  # ask it first next time
                return str(state["ip"]), int(state["port"])
            problems.append(f"{where}: {'no such master' if not state else 'master down or failing over'}")
        raise MasterNotFoundError(f"no master {service_name!r} from Sentinel ({'; '.join(problems)})")


class _SentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool, which also looks the master up again (at most every `FOLLOW_S`)
    when a connection is taken, so that idle connections leave an old master that is still up
    (after ``SENTINEL FAILOVER`` it stays a writable master until Sentinel reconfigures it, seconds
    later), and which closes its Sentinel connections with its own."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._next_follow = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_follow:
            self._next_follow = now + FOLLOW_S
            # On a change redis-py closes the idle connections. No master known right now: the
            # connect below raises MasterNotFoundError itself.
            with contextlib.suppress(RedisError):
                self.get_master_address()  # type: ignore[no-untyped-call]
        return super().get_connection(*args, **kwargs)

    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        if inuse_connections:  # closing the client (not redis-py dropping idle connections)
            for sentinel in self.sentinel_manager.sentinels:
                sentinel.close()


def _tls_options(settings: RedisSettings) -> dict[str, Any]:
    if not settings.tls:
        return {}
    options = {
        "ssl_ca_certs": settings.ssl_ca_certs,
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
        "ssl_cert_reqs": settings.ssl_cert_reqs,
    }
    return {key: value for key, value in options.items() if value is not None}


def connect(
    target: RedisSettings | str, *, blocking_timeout: float = 2.0, max_connections: int | None = None
) -> redis.Redis:
    """A client for ``target`` (settings, or a URL); its socket timeout outlives the longest blocking
    command we send. Connects lazily: nothing is sent before the first command."""
    settings = target if isinstance(target, RedisSettings) else RedisSettings(url=target)
    options: dict[str, Any] = {
        "decode_responses": False,
        "socket_timeout": blocking_timeout + 5.0,
        "socket_connect_timeout": 5.0,
        "retry": Retry(NoBackoff(), 0),
        "max_connections": max_connections,
        # No client_name: CLIENT SETNAME on every connect would lock out least-privilege ACL users.
    }
    for key in ("username", "password", "db"):
        if getattr(settings, key) is not None:
            options[key] = getattr(settings, key)
    if settings.is_sentinel:
        tls = _tls_options(settings)
        sentinel_options: dict[str, Any] = {
            "socket_timeout": SENTINEL_TIMEOUT_S,
            "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),
            "username": settings.sentinel_username,
            "password": settings.sentinel_password,
        }
        if settings.ssl:
            sentinel_options.update(ssl=True, **tls)
        manager = _Sentinel(list(settings.sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
        client: redis.Redis = manager.master_for(  # type: ignore[no-untyped-call]
            settings.master_name,
            connection_pool_class=_SentinelPool,
            connection_class=_SentinelSSLConnection if settings.ssl else _SentinelConnection,
            socket_keepalive=True,
            **options,
            **tls,
        )
        return client
    kwargs: dict[str, Any] = redis.connection.parse_url(settings.url)  # type: ignore[no-untyped-call]
    url_class = kwargs.pop("connection_class", redis.connection.Connection)
    if url_class is not redis.connection.UnixDomainSocketConnection:
        options["socket_keepalive"] = True  # a dead peer on TCP is noticed without a command
    options.update(_tls_options(settings))
    options.update(kwargs)  # what the URL says wins, as in redis-py's from_url
    pool = redis.ConnectionPool(connection_class=_URL_CLASSES.get(url_class, url_class), **options)
    return redis.Redis.from_pool(pool)


def single(client: redis.Redis) -> redis.Redis:
    """A client that sends everything over one connection of ``client``'s pool (taken now), for
    WAIT, which counts the replicas that have what that connection wrote."""
    one: redis.Redis = client.client()  # type: ignore[no-untyped-call]
    return one


def master_address(client: redis.Redis) -> tuple[str, int] | None:
    """Sentinel mode: the master the client's pool connects to now (None before it has asked the
    Sentinels); None in URL mode, where the address never changes."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        address = pool.master_address
        return None if address is None else (str(address[0]), int(address[1]))
    return None


def drop_if_stale(conn: Connection) -> bool:
    """Close a connection that a caller holds for long (a waiter's) if it is connected to another
    server than the master its pool found last; the next command connects to that one. True if
    closed. Sentinel mode only: elsewhere always False."""
    proxy = getattr(conn, "connection_pool", None)
    if not isinstance(conn, SentinelManagedConnection) or proxy is None:
        return False
    master = proxy.master_address
    if master is None or (conn.host, conn.port) == tuple(master):
        return False
    conn.disconnect()  # type: ignore[no-untyped-call]
    return True


def server_address(client: redis.Redis) -> str:
    """``host:port`` (or the socket path) of the server the client talks to; in Sentinel mode the
    master the Sentinels name now."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
    else:
        kwargs = pool.connection_kwargs
        if "path" in kwargs:
            return str(kwargs["path"])
        host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def replication(client: redis.Redis) -> tuple[str, list[dict[str, Any]]]:
    """(role, replicas) from INFO replication: each replica's ``address``, ``state``, ``lag`` (seconds
    since its last acknowledgement) and ``behind`` (bytes of the replication stream not yet
    acknowledged)."""
    info: dict[str, Any] = client.info("replication")
    offset = int(info.get("master_repl_offset", 0) or 0)
    replicas = []
    for key in sorted(k for k in info if k.startswith("slave") and k[5:].isdigit()):
        entry = info[key]
        if not isinstance(entry, dict):
            continue
        host, port = str(entry.get("ip", "?")), entry.get("port", "?")
        replicas.append(
            {
                "address": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                "state": str(entry.get("state", "?")),
                "lag": int(entry.get("lag", -1)),
                "behind": max(0, offset - int(entry.get("offset", 0) or 0)),
            }
        )
    return str(info.get("role", "?")), replicas


def _tls_hint(message: str) -> str:
    if "ssl" in message.lower() or "certificate" in message:
        return f"{message} (TLS: check ssl_ca_certs, and the server certificate's names and dates)"
    return message


def check_server(client: redis.Redis, target: RedisSettings | str) -> tuple[int, ...]:
    """Ping, check the version (>= 6.2), refuse a Redis Cluster node and (given a URL) a replica, and
    warn about an evicting ``maxmemory-policy``.

    Raises `RedisUnavailable` with one clear line (the password is never shown), or `ConfigError`
    for a cluster node (swarmd's scripts touch keys of many hash slots: see README).
    """
    settings = target if isinstance(target, RedisSettings) else RedisSettings(url=target)
    where = settings.describe()
    try:
        info: dict[str, Any] = client.info("server")
        cluster: dict[str, Any] = client.info("cluster")
        role = "master" if settings.is_sentinel else str(client.info("replication").get("role"))
    except (AuthenticationError, AuthorizationError) as exc:
        raise RedisUnavailable(f"Redis at {where} refused our credentials: {exc}") from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise RedisUnavailable(f"Redis at {where} refused our credentials: {exc}") from None
        raise RedisUnavailable(f"Redis at {where} answered with an error: {exc}") from None
    except redis.RedisError as exc:
        raise RedisUnavailable(_tls_hint(f"cannot reach Redis at {where}: {exc}")) from None
    version = tuple(int(p) for p in str(info.get("redis_version", "0")).split(".")[:3] if p.isdigit())
    if version[:2] < MIN_REDIS:
        raise RedisUnavailable(
            f"Redis at {where} is version {info.get('redis_version')}; swarmd needs 6.2 or newer"
        )
    if str(cluster.get("cluster_enabled", "0")) == "1":
        raise ConfigError(
            f"Redis at {where} is a Redis Cluster node (cluster_enabled:1); swarmd needs one master "
            "(its scripts move jobs between keys of different hash slots): use Sentinel for failover"
        )
    if role == "slave":
        raise RedisUnavailable(
            f"Redis at {where} is a read-only replica; point swarmd at the master (or use Sentinel)"
        )
    try:
        reply: dict[Any, Any] = client.config_get("maxmemory-policy")
    except redis.RedisError:  # CONFIG may be forbidden by ACLs: nothing to check then
        reply = {}
    # redis-py returns CONFIG GET as str even with decode_responses=False; accept bytes too.
    policy = reply.get("maxmemory-policy", reply.get(b"maxmemory-policy", "noeviction"))
    if isinstance(policy, bytes):
        policy = policy.decode(errors="replace")
    if policy != "noeviction":
        log.warning(
            "Redis maxmemory-policy is %s: Redis may evict queues, and evicted jobs are lost; "
            "set maxmemory-policy noeviction",
            policy,
        )
    return version
