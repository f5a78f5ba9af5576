"""What a Redis failover costs swarmd: jobs lost, jobs run twice, and how long jobs stall (README "High
availability"). Needs Debian's redis-server and redis-sentinel.

    python benchmarks/failover.py [--rate 300] [--before 5] [--after 8] [--runs 1] [--replicas 2]
                                  [--skip-cost] [--only default,min-replicas,wait] [--failures ...]

For each setting (default Redis; ``min-replicas-to-write 1``, ``min-replicas-max-lag 10`` and
``repl-diskless-sync-delay 0``; those plus swarmd's ``wait_replicas: 1``) and each failure
(``SENTINEL FAILOVER``; SIGKILL of the master, which comes back as a replica once the Sentinels
promoted another, as systemd would restart it): a fresh
master with ``--replicas`` replicas and 3 Sentinels (down-after-milliseconds 1000) on loopback, two
swarms ("hosts") of 2 workers x concurrency 4, one client enqueueing ``--rate`` jobs a second (each
job writes its token to a ledger), ``--before`` seconds of that, the failure, ``--after`` seconds of
it after the Sentinels named the new master, then until every acknowledged job ran (or the ledger
stood still for 10 s). Printed per run: jobs acknowledged (a jid came back), refused (the client
raised: nothing pushed) and uncertain (raised, but the job may exist), acknowledged jobs lost, jobs
that ran twice, the failover time (failure -> the first ``+switch-master``), the stall (the longest
time no job finished, from 1 s before the failure), and when jobs ran again, counted from the switch
(the budget: at most 2 s after it; negative: before the switch, on the old master).

Then what ``wait_replicas: 1`` costs: single ``perform_async`` calls per second, and no-op jobs per
second through a swarm (benchmarks/throughput.py), each with and without it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import swarmd  # noqa: E402
from tests.sentinelkit import LEDGER_JOBS, Enqueuer, SentinelKit, read_ledger, tally, wait_ledger  # noqa: E402

RECOMMENDED = ("min-replicas-to-write 1", "min-replicas-max-lag 10", "repl-diskless-sync-delay 0")
SETTINGS = {
    "default": ((), {}),
    "min-replicas": (RECOMMENDED, {}),
    "wait": (RECOMMENDED, {"wait_replicas": 1}),
}
LABELS = {
    "default": "Redis defaults",
    "min-replicas": "min-replicas-to-write 1 (+ max-lag 10, diskless delay 0)",
    "wait": "the same + wait_replicas: 1",
}


@dataclass
class Row:
    setting: str
    failure: str
    enqueued: int
    refused: int
    uncertain: int
    lost: int
    twice: int
    failover_s: float
    stall_s: float
    resumed_s: float | None  # from +switch-master to the end of the stall (None: no stall to speak of)

    @property
    def resumed(self) -> str:
        return "-" if self.resumed_s is None else f"{self.resumed_s:+.1f} s"


class SwitchWatch:
    """The time of the first ``+switch-master`` any Sentinel publishes (the others learn of it, and
    publish it, a second or two later)."""

    def __init__(self, kit: SentinelKit) -> None:
        self.at: float | None = None
        self._done = threading.Event()
        self._subs = []
        for node in kit.sentinels:
            pubsub = kit.sentinel_client(node).pubsub()  # type: ignore[no-untyped-call]
            pubsub.subscribe("+switch-master")
            self._subs.append(pubsub)
            threading.Thread(target=self._listen, args=(pubsub,), daemon=True).start()

    def _listen(self, pubsub: Any) -> None:
        for message in pubsub.listen():
            if message["type"] == "message":
                self.at = min(self.at or time.time(), time.time())
                self._done.set()
                return

    def wait(self, timeout: float) -> float | None:
        self._done.wait(timeout)
        return self.at


def run_case(setting: str, failure: str, args: argparse.Namespace, workdir: str) -> Row:
    lines, extra = SETTINGS[setting]
    ledger = os.path.join(workdir, f"ledger-{setting}-{failure}-{time.time()}")
    with SentinelKit(replicas=args.replicas, redis_lines=lines) as kit:
        config = {"concurrency": 4, "processes": 2, "require": ["ledgerjobs"], "redis": kit.settings(**extra)}
        path = os.path.join(workdir, "swarmd.yml")
        with open(path, "w") as f:
            json.dump(config, f)
        env = dict(os.environ, SWARMD_LEDGER=ledger)
        swarms = []
        for host in ("host-a", "host-b"):
            log = open(os.path.join(workdir, f"{host}-{setting}-{failure}.log"), "w")  # noqa: SIM115
            swarms.append(
                subprocess.Popen(
                    [sys.executable, "-m", "swarmd", "-C", "swarmd.yml"],
                    cwd=workdir,
                    env=dict(env, SWARMD_HOSTNAME=host),
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
        try:
            with contextlib.closing(kit.node_client(kit.master())) as c:
                deadline = time.monotonic() + 60
                while c.scard("processes") < 4:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"the swarms did not boot; see {workdir}")
                    time.sleep(0.1)
            enqueuer = Enqueuer(swarmd.Client(kit.settings(**extra)), rate=args.rate)
            enqueuer.start()
            time.sleep(args.before)
            watch = SwitchWatch(kit)
            time.sleep(0.2)  # subscribed
            failed_at = time.time()
            if failure.endswith("FAILOVER"):
                if failure.startswith("planned"):
                    # The master refuses writes as soon as one replica leaves it (the one promoted), so
                    # that nothing it takes afterwards is confirmed by a replica that will resync.
                    with contextlib.closing(kit.node_client(kit.master())) as c:
                        c.config_set("min-replicas-to-write", str(args.replicas))
                with contextlib.closing(kit.sentinel_client(kit.sentinels[0])) as c:
                    c.sentinel_failover(kit.master_name)
                old = None
            else:
                old = kit.master()
                old.kill()
            switched_at = watch.wait(60) or time.time()
            if old is not None:
                kit.restart_as_replica(old)
            time.sleep(max(0.0, switched_at + args.after - time.time()))
            enqueuer.stop()
            wait_ledger(enqueuer, ledger, quiet_s=10, timeout_s=180)
        finally:
            for proc in swarms:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in swarms:
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    result = tally(enqueuer, ledger)
    done = sorted(t for _, _, t in read_ledger(ledger) if t >= failed_at - 1)
    start, end = max(itertools.pairwise(done), key=lambda pair: pair[1] - pair[0], default=(0.0, 0.0))
    return Row(
        setting,
        failure,
        result.enqueued,
        result.refused,
        result.uncertain,
        len(result.lost),
        result.twice,
        switched_at - failed_at,
        end - start,
        end - switched_at if end - start >= 0.5 else None,
    )


def cost_of_wait(args: argparse.Namespace, workdir: str) -> None:
    import throughput  # benchmarks/throughput.py

    with SentinelKit(replicas=args.replicas) as kit:
        master = kit.master()
        url = f"redis://127.0.0.1:{master.port}/0"
        print(f"\nwait_replicas: 1 ({args.replicas} replicas on loopback, through Sentinel)")
        for extra in ({}, {"wait_replicas": 1}):
            client = swarmd.Client(kit.settings(**extra))
            rates = []
            for _ in range(3):
                t0 = time.perf_counter()
                for i in range(2000):
                    client.enqueue("bench.noop", [i], None, {})
                rates.append(2000 / (time.perf_counter() - t0))
            name = "with" if extra else "without"
            print(f"  single perform_async/s {name:8} median {statistics.median(rates):8.0f}")
        with open(os.path.join(workdir, "benchjobs.py"), "w") as f:
            f.write(throughput.JOB_MODULE)
        for extra in ({}, {"wait_replicas": 1}):
            jobs = [
                throughput.run_once(url, args.cost_jobs, 1, 10, workdir, kit.settings(**extra))["jobs_s"]
                for _ in range(3)
            ]
            name = "with" if extra else "without"
            print(f"  no-op jobs/s (1 x 10)  {name:8} median {statistics.median(jobs):8.0f}   {jobs}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=300.0, help="jobs enqueued per second")
    ap.add_argument("--before", type=float, default=5.0, help="seconds of load before the failure")
    ap.add_argument("--after", type=float, default=8.0, help="seconds of load after the switch")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--only", default=",".join(SETTINGS), help="settings to run: " + ",".join(SETTINGS))
    ap.add_argument("--skip-cost", action="store_true", help="skip the cost of wait_replicas")
    ap.add_argument(
        "--failures",
        default="SENTINEL FAILOVER,SIGKILL master",
        help='also "planned SENTINEL FAILOVER": min-replicas-to-write = --replicas on the master first',
    )
    ap.add_argument("--cost-jobs", type=int, default=20_000)
    args = ap.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="swarmd-failover-") as workdir:
        with open(os.path.join(workdir, "ledgerjobs.py"), "w") as f:
            f.write(LEDGER_JOBS)
        for setting in args.only.split(","):
            for failure in args.failures.split(","):
                for _ in range(args.runs):
                    row = run_case(setting, failure, args, workdir)
                    rows.append(row)
                    print(
                        f"{LABELS[setting]:58} {failure:25} enqueued {row.enqueued:5} "
                        f"refused {row.refused:4} uncertain {row.uncertain:2} lost {row.lost:4} "
                        f"twice {row.twice:3} "
                        f"failover {row.failover_s:5.1f} s stall {row.stall_s:5.1f} s "
                        f"resumed {row.resumed} after the switch",
                        flush=True,
                    )
        print(
            f"\nswarmd {swarmd.__version__}: 1 master + {args.replicas} replica(s) + 3 Sentinels, "
            f"2 swarms x 2 workers x 4 threads, {args.rate:g} jobs/s"
        )
        print("| settings | failure | acknowledged | refused | uncertain | lost | ran twice |", end="")
        print(" failover | stall | jobs run again |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            counts = f"{r.enqueued} | {r.refused} | {r.uncertain} | {r.lost} | {r.twice}"
            times = f"{r.failover_s:.1f} s | {r.stall_s:.1f} s | {r.resumed}"
            print(f"| {LABELS[r.setting]} | {r.failure} | {counts} | {times} |")
        if not args.skip_cost:
            cost_of_wait(args, workdir)


if __name__ == "__main__":
    main()
