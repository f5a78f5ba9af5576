"""A small TCP proxy between a worker and Redis that can lose a reply.

Loopback only, bounded (at most `MAX_CONNECTIONS` client connections, two daemon threads each), and
controlled in-process by the test::

    with FaultProxy(upstream_port) as proxy:
        url = proxy.url                       # give this to the worker
        proxy.drop_next_reply(b"BLMOVE", containing=b"tok1")   # arm

The proxy remembers, per connection, the name of the last command the client sent. When armed and
a reply to that command arrives whose bytes contain ``containing`` (e.g. a token in the job it
carries), the proxy closes both sockets instead of relaying it: Redis has executed the command, the
client never learns its result. That is the "lost reply" a network fault causes. It fires once, then disarms.

``proxy.blackhole(True)`` is a network partition: connections are still accepted (and stay open), but
every byte in either direction is dropped, so each command waits for its socket timeout. Bytes sent
meanwhile stay lost after ``blackhole(False)``; clients recover by reconnecting after their timeout.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

MAX_CONNECTIONS = 64


def _command_name(data: bytes) -> bytes | None:
    """The command name of a RESP array ``*N\\r\\n$L\\r\\nNAME\\r\\n...`` (the first in ``data``)."""
    if not data.startswith(b"*"):
        return None
    parts = data.split(b"\r\n", 3)
    if len(parts) < 3 or not parts[1].startswith(b"$"):
        return None
    return parts[2].upper()


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: tuple[bytes, bytes] | None = None
        self._blackhole = False
        self._sockets: set[socket.socket] = set()
        self._connections = 0
        self._closed = False
        self.dropped: list[bytes] = []
        """Command names whose reply was lost, in order."""
        self.dropped_event = threading.Event()
        self._accepter = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> FaultProxy:
        self._accepter.start()
        return self

    def blackhole(self, on: bool) -> None:
        """Drop every byte both ways (``True``) until called with ``False``."""
        with self._lock:
            self._blackhole = on

    def _swallowed(self) -> bool:
        with self._lock:
            return self._blackhole

    def drop_next_reply(self, command: bytes, containing: bytes) -> None:
        """Lose the next reply to ``command`` (e.g. ``b"BLMOVE"``) whose bytes contain ``containing``."""
        with self._lock:
            self._armed = (command.upper(), containing)
            self.dropped_event.clear()

    # -- plumbing ---------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            with self._lock:
                if self._closed or self._connections >= MAX_CONNECTIONS:
                    client.close()
                    continue
                self._connections += 1
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                with self._lock:
                    self._connections -= 1
                continue
            state = {"last": b""}
            with self._lock:
                self._sockets.update((client, server))
            for target, args in (
                (self._client_to_server, (client, server, state)),
                (self._server_to_client, (server, client, state)),
            ):
                threading.Thread(target=target, args=args, name="faultproxy-pipe", daemon=True).start()

    def _client_to_server(
        self, client: socket.socket, server: socket.socket, state: dict[str, bytes]
    ) -> None:
        try:
            while data := client.recv(65536):
                if self._swallowed():
                    continue
                name = _command_name(data)
                if name is not None:
                    state["last"] = name
                server.sendall(data)
        except OSError:
            pass
        self._close_pair(client, server)

    def _server_to_client(
        self, server: socket.socket, client: socket.socket, state: dict[str, bytes]
    ) -> None:
        try:
            while data := server.recv(65536):
                if self._swallowed():
                    continue
                with self._lock:
                    armed = self._armed
                    drop = armed is not None and state["last"] == armed[0] and armed[1] in data
                    if drop:
                        self._armed = None
                        self.dropped.append(state["last"])
                if drop:
                    self._close_pair(client, server)
                    self.dropped_event.set()
                    return
                client.sendall(data)
        except OSError:
            pass
        self._close_pair(client, server)

    def _close_pair(self, a: socket.socket, b: socket.socket) -> None:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        with self._lock:
            if a in self._sockets:
                self._connections -= 1
            self._sockets.discard(a)
            self._sockets.discard(b)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        self._listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
