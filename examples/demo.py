"""`make demo`: a private Redis, a 2-process swarm on the example app, a batch of jobs with a
progress bar, `swarmctl status`, then a clean stop. Leaves nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import redis  # noqa: E402

import swarmd  # noqa: E402
from swarmd.devredis import RedisServer  # noqa: E402

JOBS = 3000


def bar(done: int, total: int, width: int = 40) -> str:
    filled = width * done // total
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def show_log(path: str, head: int, tail: int) -> None:
    with open(path) as f:
        lines = f.read().splitlines()
    print(f"--- swarmd's log ({len(lines)} lines; first {head} and last {tail}) ---")
    for line in lines[:head]:
        print(line)
    if len(lines) > head + tail:
        print("...")
    for line in lines[max(head, len(lines) - tail) :]:
        print(line)
    print("---")


def main() -> int:
    bindir = os.path.dirname(sys.executable)
    with RedisServer() as server:
        env = {**os.environ, "REDIS_URL": server.url}
        os.environ["REDIS_URL"] = server.url
        print(f"private Redis at {server.url}")
        cmd = [os.path.join(bindir, "swarmd"), "--processes", "2", "-C", "config.yml"]
        print("$", " ".join(["swarmd", *cmd[1:]]))
        log_path = os.path.join(server.dir, "swarmd.log")
        log = open(log_path, "w")  # noqa: SIM115 - closed below, after the swarm stopped
        swarm = subprocess.Popen(cmd, cwd=HERE, env=env, stderr=log, start_new_session=True)
        try:
            r = redis.Redis.from_url(server.url)
            deadline = time.monotonic() + 30
            while r.scard("processes") < 2:
                if swarm.poll() is not None or time.monotonic() > deadline:
                    print("swarmd did not start:", file=sys.stderr)
                    show_log(log_path, 0, 20)
                    return 1
                time.sleep(0.05)
            from myapp.jobs import flaky, resize, send_receipt

            swarmd.configure(server.url)
            resize.perform_bulk([(f"img/{i}.png", 100 + i % 400) for i in range(JOBS - 200)])
            for i in range(100):
                send_receipt.perform_async(i, f"user{i}@example.com")
                flaky.perform_async(i)
            resize.perform_in(2, "later.png", 640)
            total = JOBS + 1
            while True:
                done = int(r.get("stat:processed") or 0)
                print("\r" + bar(min(done, total), total), end="", flush=True)
                if done >= total:
                    break
                if swarm.poll() is not None:
                    print("\nswarmd exited early:", file=sys.stderr)
                    show_log(log_path, 0, 20)
                    return 1
                time.sleep(0.1)
            print()
            subprocess.run([os.path.join(bindir, "swarmctl"), "status"], cwd=HERE, env=env, check=False)
        finally:
            if swarm.poll() is None:
                os.killpg(swarm.pid, signal.SIGTERM)
            try:
                swarm.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(swarm.pid, signal.SIGKILL)
                swarm.wait()
            log.close()
        show_log(log_path, 4, 8)
        print(f"swarmd stopped (exit {swarm.returncode}); Redis stopped. Nothing is left running.")
        return 0 if swarm.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
