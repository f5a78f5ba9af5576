"""What the operator API costs on a big Redis: 100,000 dead + 100,000 retries + 50 queues.

Fills a private Redis (see swarmd.devredis; never ``REDIS_URL``, since it writes 200,000 jobs) with
failed jobs as swarmd's retry code stores them (with a backtrace), 50 queues of ``--queue-jobs`` jobs
each and a few process records, then times, as medians of ``--runs`` runs:

- the `swarmd.admin.Admin` calls a web page makes (status, a page of dead, page 2000 of dead, one
  search step, a whole search, `find` of a jid across the three sets), in this process;
- `swarmctl status`, `swarmctl dead`, `swarmctl dead --page 2000`, `swarmctl show JID` as a user runs
  them (a new Python process each time: most of that is the interpreter and imports starting).

    python benchmarks/admin.py [--entries 100000] [--queues 50] [--queue-jobs 1000] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from swarmd import payload
from swarmd.admin import Admin
from swarmd.devredis import RedisServer


def failed_job(i: int) -> bytes:
    job = payload.build(
        "Billing::ChargeCustomer" if i % 10 else "MailerJob",
        [i, f"customer-{i}@example.com", {"plan": "pro", "cents": 4900}],
        None,
        {"queue": "default", "backtrace": True},
    )
    lines = [f'File "/srv/app/billing.py", line {n}, in charge' for n in range(10)]
    payload.record_failure(
        job, "billing.GatewayTimeout", f"gateway timed out after 30 s (attempt {i})", lines
    )
    return payload.encode(job)


def fill(admin: Admin, entries: int, queues: int, queue_jobs: int) -> str:
    """Returns the jid of a job in the middle of `retry`."""
    now = time.time()
    r = admin.redis
    middle = b""
    for key, sign in ((admin.keys.dead, -1), (admin.keys.retry, 1)):
        for start in range(0, entries, 5000):
            batch: dict[bytes, float] = {}
            for i in range(start, min(entries, start + 5000)):
                raw = failed_job(i)
                batch[raw] = now + sign * i
                if key == admin.keys.retry and i == entries // 2:
                    middle = raw
            r.zadd(key, batch)
    pipe = r.pipeline(transaction=False)
    for q in range(queues):
        name = f"queue{q:02d}"
        jobs = [
            payload.encode(payload.build("Work", [q, i], None, {"queue": name})) for i in range(queue_jobs)
        ]
        pipe.lpush(admin.keys.queue(name), *jobs)
        pipe.sadd(admin.keys.queues, name)
    for p in range(4):  # process records as a live worker writes them (hash, TTL, busy jobs)
        ident = f"bench:{p}:000000"
        info = f'{{"hostname":"bench","pid":{p},"tag":"bench","concurrency":10,"queues":["queue00"]}}'
        pipe.hset(ident, mapping={"info": info, "busy": 0, "beat": time.time(), "quiet": "false"})
        pipe.sadd(admin.keys.processes, ident)
    pipe.execute()
    return str(payload.decode(middle).jid)


def median_ms(call: Callable[[], object], runs: int) -> tuple[float, float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times), max(times)


def whole_search(admin: Admin) -> int:
    found, cursor = 0, 0
    while True:
        result = admin.search("dead", job_class="MailerJob", text="attempt 4", cursor=cursor)
        found += len(result.entries)
        cursor = result.cursor
        if result.done:
            return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000, help="in dead and in retry (default 100000)")
    ap.add_argument("--queues", type=int, default=50)
    ap.add_argument("--queue-jobs", type=int, default=1000, help="jobs per queue (default 1000)")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with RedisServer() as server:
        admin = Admin.from_url(server.url)
        t0 = time.perf_counter()
        jid = fill(admin, args.entries, args.queues, args.queue_jobs)
        totals = admin.totals()
        print(
            f"filled in {time.perf_counter() - t0:.1f} s: dead {totals.dead}, retry {totals.retries}, "
            f"{args.queues} queues, {totals.enqueued} enqueued; "
            f"{admin.redis_info().used_memory_human} used by Redis"
        )
        page_2000 = 1999 * 25
        key = admin.find(jid)[0].entry.key
        calls: list[tuple[str, Callable[[], object]]] = [
            ("status()", admin.status),
            ("page('dead', 0, 25)", lambda: admin.page("dead", 0, 25)),
            ("page('dead', 49975, 25)  (page 2000)", lambda: admin.page("dead", page_2000, 25)),
            ("page('retry', 50000, 100)", lambda: admin.page("retry", 50_000, 100)),
            ("search('dead', class, text): one step", lambda: admin.search("dead", "MailerJob", "attempt 4")),
            ("search('dead', class, text): every step", lambda: whole_search(admin)),
            ("find(jid): retry, schedule, dead", lambda: admin.find(jid)),
            ("find(jid, queues=True, busy=True)", lambda: admin.find(jid, queues=True, busy=True)),
            ("entry('retry', key)", lambda: admin.entry("retry", key)),
            ("search('retry', jid=jid): one step", lambda: admin.search("retry", jid=jid)),
            ("history(30)", lambda: admin.history(30)),
        ]
        print(f"\nin-process Admin calls, ms (median [min-max] of {args.runs}):")
        for name, call in calls:
            med, lo, hi = median_ms(call, args.runs)
            print(f"  {name:44} {med:8.2f}  [{lo:.2f}-{hi:.2f}]")
        common = ["--redis-url", server.url]
        commands = [
            ["--version"],
            ["status", *common],
            ["dead", *common],
            ["dead", "--page", "2000", *common],
            ["show", jid, *common],
        ]
        print(
            f"\nswarmctl as a new process, ms (median [min-max] of {args.runs}; `--version` is the start-up):"
        )
        for argv in commands:

            def run(argv: list[str] = argv) -> None:
                subprocess.run([sys.executable, "-m", "swarmd.ctl", *argv], check=True, capture_output=True)

            med, lo, hi = median_ms(run, args.runs)
            shown = " ".join(a for a in argv if a not in common)
            print(f"  swarmctl {shown:35} {med:8.1f}  [{lo:.1f}-{hi:.1f}]")
        admin.close()


if __name__ == "__main__":
    main()
