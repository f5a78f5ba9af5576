"""Round trips and time of one limiter acquire + release (``swarmd.limiter``), below the limit.

    python benchmarks/limiter.py [--n 5000]

For each kind (concurrent, window, bucket) runs ``with limiter:`` N times in one thread against
``REDIS_URL`` or a private redis-server (swarmd.devredis), and prints the Redis commands per
acquire+release (EVALSHA and ZREM calls from ``INFO commandstats``, after a warm-up that loads the
scripts; none of the scripts calls ZREM itself) and the
microseconds per acquire+release. Every command a limiter sends is one round trip (no pipelining).
"""

from __future__ import annotations

import argparse
import time

import redis

from swarmd import connection, limiter
from swarmd.devredis import redis_url_or_private
from swarmd.keys import Keys
from swarmd.scripts import Scripts

# What a limiter sends from the client (each one round trip); commandstats also counts the commands a
# script runs inside Redis (TIME, ZADD, ...), which are not round trips.
CLIENT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_zrem", "cmdstat_script|load")


def calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(stats[k]["calls"]) for k in CLIENT_COMMANDS if k in stats)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    args = ap.parse_args()
    with redis_url_or_private() as url:
        r = redis.Redis.from_url(url)
        client = connection.connect(url)
        limiter.bind(Scripts(client, Keys(None)))
        kinds = {
            "concurrent": limiter.concurrent("bench-c", 1_000_000),
            "window": limiter.window("bench-w", 10_000_000, per=1),
            "bucket": limiter.bucket("bench-b", 10_000_000, per=1),
        }
        for name, lim in kinds.items():
            with lim:  # loads the script (NOSCRIPT, SCRIPT LOAD) before counting
                pass
            r.config_resetstat()
            started = time.perf_counter()
            for _ in range(args.n):
                with lim:
                    pass
            elapsed = time.perf_counter() - started
            per = calls(r) / args.n
            print(f"{name:11s} round trips per acquire+release {per:.2f}   {elapsed / args.n * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
