"""The job shapes of ``benchmarks/peers.py``: the same four bodies for swarmd, Sidekiq and the ceiling.

- ``noop``: nothing (what the queue machinery itself costs);
- ``redis``: one ``INCR`` through a module-level redis-py client (one round trip of the job's own, the
  shape of a small real job);
- ``io``: ``time.sleep(0.001)``, a stand-in for an HTTP call (the GIL is released: threads overlap);
- ``cpu``: ``CPU_ITERATIONS`` iterations of a pure-Python loop, about 1 ms on this machine (the GIL is
  held: one core per process at most).

The Ruby bodies in ``peers.py`` do the same (a ``ConnectionPool`` of redis-rb clients stands in for
redis-py's pooled client; the same loop count for ``cpu``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import redis

CPU_ITERATIONS = 5000

# One client per process, made at import (a swarmd worker imports its job modules after the fork).
r = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/0"))


def noop(i: int) -> None:
    pass


def incr(i: int) -> None:
    r.incr("bench:incr")


def io(i: int) -> None:
    time.sleep(0.001)


def cpu(i: int) -> None:
    x = 0
    for n in range(CPU_ITERATIONS):
        x += n * n


SHAPES: dict[str, Callable[[Any], None]] = {"noop": noop, "redis": incr, "io": io, "cpu": cpu}
