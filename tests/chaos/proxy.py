"""A TCP proxy for the network faults of the chaos suite: delays, blackholes and connection resets.

Lost replies come from `tests.integration.faultproxy.FaultProxy`; chain the two to have all four::

    swarmd -> ChaosProxy -> FaultProxy -> redis-server

Loopback only, bounded (`MAX_CONNECTIONS`), controlled in-process by the test:

- `delay(s)`: every chunk, each way, waits ``s`` seconds before it is relayed (order is kept);
- `blackhole()` / `heal()`: nothing is relayed meanwhile, and new connections are accepted (the kernel
  does that) but not connected upstream: what a client sees of a network partition. What was sent
  during the blackhole is delivered after `heal()`, as TCP retransmission would, unless the client
  gave up on that connection first;
- `reset()`: every open connection is closed with a TCP RST on both sides (``SO_LINGER`` 0).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

MAX_CONNECTIONS = 256
_RST = struct.pack("ii", 1, 0)


class ChaosProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._resetting: set[tuple[socket.socket, socket.socket]] = set()
        self._pending = 0  # accepted, not yet connected upstream
        self._open = threading.Event()  # cleared: blackhole
        self._open.set()
        self._delay_s = 0.0
        self._closed = False
        self.resets = 0
        """Connections reset so far."""
        self._accepter = threading.Thread(target=self._accept_loop, name="chaosproxy-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> ChaosProxy:
        self._accepter.start()
        return self

    # -- faults ------------------------------------------------------------------------------------
    def delay(self, seconds: float) -> None:
        self._delay_s = seconds

    def blackhole(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self._delay_s = 0.0
        self._open.set()

    def reset(self) -> int:
        """RST every open connection; return how many there were."""
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
            self._resetting.update(pairs)
        for pair in pairs:
            for s in pair:
                # SO_LINGER 0: the close sends RST instead of FIN. A close() from this thread would not
                # end the pipe threads' recv() (nor send anything while they hold the socket): SHUT_RD
                # wakes them, sending nothing, and they close the pair.
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                    s.shutdown(socket.SHUT_RD)
        self.resets += len(pairs)
        return len(pairs)

    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    # -- plumbing ----------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            with self._lock:
                if self._closed or len(self._pairs) + self._pending >= MAX_CONNECTIONS:
                    client.close()
                    continue
                self._pending += 1
            threading.Thread(
                target=self._connect, args=(client,), name="chaosproxy-conn", daemon=True
            ).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            self._open.wait()  # a blackhole holds new connections too
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                return
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._pairs.add((client, server))
        finally:
            with self._lock:
                self._pending -= 1
        pair = (client, server)
        for src, dst in ((client, server), (server, client)):
            threading.Thread(
                target=self._pipe, args=(src, dst, pair), name="chaosproxy-pipe", daemon=True
            ).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        try:
            while data := src.recv(65536):
                self._open.wait()
                if self._delay_s:
                    time.sleep(self._delay_s)
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._pairs.discard(pair)
            reset = pair in self._resetting
        for s in pair:
            if not reset:  # an orderly end: FIN both ways (a reset closes without it: RST)
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pairs = list(self._pairs)
            self._pairs.clear()
        self._listener.close()
        self._open.set()
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def __enter__(self) -> ChaosProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
