"""THE CEILING, not a job system: a bare redis-py consumer, the fastest plain Python does on a job shape.

What ``benchmarks/peers.py`` compares swarmd with, besides Sidekiq. Each of ``--threads`` threads loops:
one pipeline of 10 ``LMOVE queue:default -> ceiling:p:<pid>:<n>`` (its own processing list), decode each
job's JSON, call the shape's body (``benchmarks/shapes.py``) with its args, one pipeline of ``LREM``s
for the jobs it ran. No logging, no retries, no heartbeat, no busy map, no metrics, no middleware, no
recovery of a crashed consumer: the at-least-once part alone (each job is in a list in Redis at every
instant) and nothing else. An empty queue is polled every millisecond.

    BENCH_REDIS_URL=unix:///.../redis.sock python benchmarks/ceiling.py --shape redis [--threads 10]

On SIGTERM the threads finish their batch, and the process adds its round trips (pipelines sent; the
job body's own commands are not counted here) to ``ceiling:trips`` and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from shapes import SHAPES, r

BATCH = 10
QUEUE = "queue:default"


def consume(private: str, body: object, stop: threading.Event, trips: list[int]) -> None:
    call = body  # type: ignore[assignment]
    sent = 0
    while not stop.is_set():
        pipe = r.pipeline(transaction=False)
        for _ in range(BATCH):
            pipe.lmove(QUEUE, private, "RIGHT", "LEFT")
        raws = [raw for raw in pipe.execute() if raw is not None]
        sent += 1
        if not raws:
            time.sleep(0.001)
            continue
        for raw in raws:
            job = json.loads(raw)
            call(*job["args"])  # type: ignore[operator]
        pipe = r.pipeline(transaction=False)
        for raw in raws:
            pipe.lrem(private, 1, raw)
        pipe.execute()
        sent += 1
    trips.append(sent)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="noop")
    ap.add_argument("--threads", type=int, default=10)
    args = ap.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    trips: list[int] = []
    threads = [
        threading.Thread(
            target=consume, args=(f"ceiling:p:{os.getpid()}:{n}", SHAPES[args.shape], stop, trips)
        )
        for n in range(args.threads)
    ]
    for t in threads:
        t.start()
    while not stop.is_set():
        stop.wait(0.5)
    for t in threads:
        t.join()
    r.incrby("ceiling:trips", sum(trips))


if __name__ == "__main__":
    main()
