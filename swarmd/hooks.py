"""Registries of middleware and hooks: the places an app plugs its own code into swarmd.

Today it holds the client middleware (Sidekiq's client middleware in Python form): callables that
see every job the client is about to push and may amend it or drop it. `swarmd.client` calls them;
this module only keeps the lists, so that any layer above it can read them.

Each registry is a tuple replaced under a lock: a registration from one thread never disturbs a push
that is iterating the old tuple in another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

ClientMiddleware = Callable[[dict[str, Any]], dict[str, Any] | None]
"""``mw(payload) -> payload | None``: return the (amended) job dict, or None to drop that push."""

_lock = threading.Lock()
_client_middleware: tuple[ClientMiddleware, ...] = ()


def client_middleware(mw: ClientMiddleware) -> ClientMiddleware:
    """Register ``mw`` to run on every job about to be pushed, after those registered before it.

    Returns ``mw``, so it also works as a decorator. Registering the same object again is a no-op.
    """
    global _client_middleware
    if not callable(mw):
        raise TypeError(
            f"client_middleware: expected a callable mw(payload) -> payload | None, got {mw!r:.60}"
        )
    with _lock:
        if mw not in _client_middleware:
            _client_middleware = (*_client_middleware, mw)
    return mw


def remove_client_middleware(mw: ClientMiddleware) -> None:
    """Unregister ``mw`` (no error if it was not registered)."""
    global _client_middleware
    with _lock:
        _client_middleware = tuple(m for m in _client_middleware if m is not mw)


def client_middlewares() -> tuple[ClientMiddleware, ...]:
    """The registered client middleware, in the order they run."""
    return _client_middleware
