"""The most the ``io`` job shape can reach on this machine: threads that do nothing but sleep 1 ms.

``benchmarks/peers.py``'s ``io`` jobs each call ``time.sleep(0.001)``. A sleep of 1 ms lasts longer
than 1 ms (timer slack, the wake-up, the GIL taken back), so N threads cannot run more than N / (the
real length of one sleep) such jobs a second, whatever runs them. This prints that bound for 1 and 10
threads (10 = swarmd's default concurrency, and what peers.py runs), with no Redis and no job system.

    python benchmarks/sleep_bound.py [--seconds 2] [--threads 10]
"""

from __future__ import annotations

import argparse
import threading
import time


def sleeps_per_second(threads: int, seconds: float) -> float:
    counts: list[int] = []

    def run() -> None:
        n = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            time.sleep(0.001)
            n += 1
        counts.append(n)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return sum(counts) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=10)
    args = ap.parse_args()
    for threads in sorted({1, args.threads}):
        rate = sleeps_per_second(threads, args.seconds)
        each_ms = threads / rate * 1000
        print(f"{threads:3} thread(s): {rate:8,.0f} sleeps of 1 ms a second, {each_ms:.3f} ms each")


if __name__ == "__main__":
    main()
