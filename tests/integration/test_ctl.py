"""`swarmctl` against a real redis-server: state is built the way swarmd and Sidekiq write it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from swarmd import Client, connection, payload
from swarmd.admin import Admin, Outcome
from swarmd.busy import BusyJob
from swarmd.config import load_config
from swarmd.ctl import main
from swarmd.heartbeat import Heartbeat
from swarmd.keys import Keys
from swarmd.scripts import Scripts
from tests.conftest import run_ctl, wait_until

K = Keys()


def ctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`swarmctl ARGV` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.fixture
def conn(redis_url: str) -> Iterator[connection.Redis]:
    client = connection.connect(redis_url)
    yield client
    client.close()


def fake_process(conn: connection.Redis, tmp_path: Path, busy: int = 0, tag: str = "shop") -> Heartbeat:
    """A process record written by swarmd's own heartbeat code (what a live worker writes)."""
    (tmp_path / "swarmd.yml").write_text(f"tag: {tag}\nqueues: [critical, default]\nconcurrency: 7\n")
    config = load_config(str(tmp_path / "swarmd.yml"))
    jobs = {f"t{i}": BusyJob("default", b'{"class":"X","args":[]}', int(time.time())) for i in range(busy)}
    identity = f"box:{4000 + busy}:{os.urandom(6).hex()}"
    beat = Heartbeat(Scripts(conn, K), identity, config, lambda: jobs, lambda: False)
    beat.beat()
    return beat


def failed_job(count: int = 0) -> bytes:
    """A job as swarmd's retry code stores it after `count` + 1 failures."""
    job = payload.build("Boom", [1, "a"], None, {"queue": "default"})
    for _ in range(count + 1):
        payload.record_failure(job, "ValueError", "bad value\nsecond line")
    return payload.encode(job)


def zmembers(r: redis.Redis, key: str) -> list[bytes]:
    return cast(list[bytes], r.zrange(key, 0, -1))


def add_failed(r: redis.Redis, key: str, *offsets: float, count: int = 0) -> list[str]:
    jids = []
    now = time.time()
    for offset in offsets:
        raw = failed_job(count)
        r.zadd(key, {raw: now + offset})
        jids.append(json.loads(raw)["jid"])
    return jids


# -- status ----------------------------------------------------------------------------------------
def test_status_json_reads_processes_queues_and_totals(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis, conn: connection.Redis, tmp_path: Path
) -> None:
    beat = fake_process(conn, tmp_path, busy=2)
    r.sadd(K.processes, "gone:1:000000000000")  # its hash expired: not listed
    now = time.time()
    r.sadd(K.queues, "floats", "millis", "broken", "empty")
    r.lpush(K.queue("floats"), json.dumps({"class": "A", "args": [], "enqueued_at": now - 5.0}))
    r.lpush(K.queue("floats"), json.dumps({"class": "A", "args": [], "enqueued_at": now}))  # newer
    r.lpush(K.queue("millis"), json.dumps({"class": "A", "args": [], "enqueued_at": int((now - 9) * 1000)}))
    r.lpush(K.queue("broken"), b"\xff not json")
    r.set(K.stat("processed"), 41)
    r.set(K.stat("failed"), 3)
    add_failed(r, K.retry, 10, 20)
    add_failed(r, K.dead, -10)
    r.zadd(K.schedule, {b'{"class":"A","args":[]}': now + 60})
    r.sadd(K.swarmd_workers, "w1", "w2")
    r.lpush(K.inflight("w1"), b"a", b"b")
    r.lpush(K.inflight("w2"), b"c")

    code, out, err = ctl(capsys, "status", "--json", "--redis-url", redis_url)
    assert (code, err) == (0, "")
    data = json.loads(out)
    [proc] = data["processes"]
    assert proc["identity"] == beat.identity
    assert proc["hostname"] == "box"
    assert proc["pid"] == os.getpid()
    assert proc["tag"] == "shop"
    assert (proc["busy"], proc["concurrency"]) == (2, 7)
    assert proc["rss_kb"] > 1000
    assert 0 <= proc["beat_age_s"] < 5
    assert proc["quiet"] is False
    assert proc["queues"] == ["critical", "default"]
    assert proc["version"].startswith("swarmd ")
    queues = {q["name"]: q for q in data["queues"]}
    assert queues["floats"]["size"] == 2
    assert 4.5 < queues["floats"]["latency_s"] < 15  # the oldest job, float seconds
    assert 8.5 < queues["millis"]["latency_s"] < 20  # Sidekiq 8's integer milliseconds
    assert queues["broken"]["latency_s"] is None
    assert queues["empty"] == {"name": "empty", "size": 0, "latency_s": 0.0}
    assert data["stats"] == {
        "processed": 41,
        "failed": 3,
        "scheduled": 1,
        "retries": 2,
        "dead": 1,
        "in_flight": 3,
    }


def test_status_reads_ruby_sidekiq_process_records(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis
) -> None:
    """6.4.1 keeps concurrency in `info` only (as a real 6.4.1 process record shows); 8.1.2+ moves it to a
    hash field, and 8.0.9+ lists queues under `capsules`."""
    old, new = "vm:13384:692b6d3f1a6e", "vm:13385:0123456789ab"
    info = {
        "hostname": "vm",
        "started_at": time.time(),
        "pid": 13384,
        "tag": "mytag",
        "concurrency": 4,
        "queues": ["critical", "default"],
        "labels": [],
        "identity": old,
    }
    r.hset(
        old,
        mapping={
            "info": json.dumps(info),
            "busy": 2,
            "beat": time.time() - 3,
            "quiet": "true",
            "rss": 30316,
            "rtt_us": 134,
        },
    )
    info = {
        "hostname": "vm",
        "pid": 13385,
        "tag": "mytag",
        "version": "8.1.7",
        "identity": new,
        "capsules": {"default": {"concurrency": 5, "mode": "strict", "weights": {"mail": 0}}},
    }
    r.hset(
        new,
        mapping={
            "info": json.dumps(info),
            "busy": 0,
            "beat": time.time(),
            "quiet": "false",
            "concurrency": 5,
        },
    )
    r.sadd(K.processes, old, new)
    code, out, _ = ctl(capsys, "status", "--json", "--redis-url", redis_url)
    assert code == 0
    procs = json.loads(out)["processes"]
    assert [(p["identity"], p["pid"], p["concurrency"], p["queues"]) for p in procs] == [
        (old, 13384, 4, ["critical", "default"]),
        (new, 13385, 5, ["mail"]),
    ]
    assert (procs[0]["quiet"], procs[0]["busy"], procs[0]["rss_kb"]) == (True, 2, 30316)
    assert 2.5 < procs[0]["beat_age_s"] < 10
    assert (procs[1]["rss_kb"], procs[1]["version"]) == (None, "8.1.7")
    code, out, _ = ctl(capsys, "status", "--redis-url", redis_url)
    assert out.splitlines()[2].split() == ["vm:", "2", "processes", "2/9"]  # both on host "vm"
    row = out.splitlines()[3].split()
    assert row[:6] == [old, "13384", "mytag", "2/4", "29.6", "MB"] and row[-1] == "quiet"


def test_status_human_is_a_table(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis, conn: connection.Redis, tmp_path: Path
) -> None:
    beat = fake_process(conn, tmp_path, busy=3)
    Client(redis_url).enqueue("Job", [1], None, {"queue": "mail"})
    code, out, _ = ctl(capsys, "status", "--redis-url", redis_url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Processes: 1 on 1 host"
    assert lines[1].split() == ["HOST", "/", "IDENTITY", "PID", "TAG", "BUSY", "RSS", "BEAT", "STATE"]
    assert lines[2].split() == [f"{beat.identity.split(':')[0]}:", "1", "process", "3/7"]
    row = lines[3].split()
    assert row[:4] == [beat.identity, str(os.getpid()), "shop", "3/7"]
    assert row[-1] == "running"
    assert "Queues: 1" in lines
    assert any(line.split()[:2] == ["mail", "1"] for line in lines)
    assert lines[-1].split()[:4] == ["processed", "0", "failed", "0"]


def test_status_namespace_from_config(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    cfg = tmp_path / "ns.yml"
    cfg.write_text(f"redis:\n  url: {redis_url}\n  namespace: shop\n")
    Client(redis_url, "shop").enqueue("Job", [], None, {})
    code, out, _ = ctl(capsys, "status", "--json", "-C", str(cfg))
    assert code == 0
    assert json.loads(out)["queues"] == [{"name": "default", "size": 1, "latency_s": pytest.approx(0, abs=5)}]
    assert r.llen("shop:queue:default") == 1


def test_status_of_a_real_worker_then_quiet_and_stop(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "ctl_e2e_jobs.py").write_text(
        "import swarmd\n\n@swarmd.job(name='E2E')\ndef e2e(x):\n    return x\n"
    )
    (tmp_path / "swarmd.yml").write_text(
        "tag: e2e\nconcurrency: 2\nqueues: [e2e]\nbeat_interval: 0.2\npoll_interval: 0.2\n"
    )
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarmd", "-C", "swarmd.yml", "-r", "ctl_e2e_jobs", "--redis-url", redis_url],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    common = ("--redis-url", redis_url)

    def status() -> dict[str, Any]:
        result = run_ctl("status", "--json", *common)
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    try:
        wait_until(lambda: status()["processes"], 30, "the worker's process record")
        [record] = status()["processes"]
        assert (record["tag"], record["concurrency"], record["queues"]) == ("e2e", 2, ["e2e"])
        assert run_ctl("enqueue", "E2E", "[5]", "-q", "e2e", *common).returncode == 0
        wait_until(lambda: status()["stats"]["processed"] == 1, 30, "the job to run")

        quiet = run_ctl("quiet", record["identity"], *common)
        assert quiet.returncode == 0, quiet.stderr
        wait_until(lambda: status()["processes"][0]["quiet"], 30, "the worker to obey TSTP")
        assert "quiet" in run_ctl("status", *common).stdout

        assert run_ctl("stop", "--all", *common).returncode == 0
        ident = record["identity"]
        wait_until(lambda: ident not in [p["identity"] for p in status()["processes"]], 30, "a clean stop")
    except BaseException:
        print((tmp_path / "worker.log").read_text(errors="replace"))
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()


# -- check -----------------------------------------------------------------------------------------
def test_check_ok_prints_the_settings(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "ok_jobs.py").write_text("import swarmd\n\n@swarmd.job\ndef ok():\n    pass\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "swarmd.yml").write_text(
        "queues: [[critical, 3], [low, 1]]\nrequire: [ok_jobs]\nproduction:\n  concurrency: 25\n"
    )
    result = run_ctl("check", "-e", "production", "--redis-url", redis_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    settings = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    assert settings["config"].strip() == "config/swarmd.yml"
    assert settings["environment"].strip() == "production"
    assert settings["concurrency"].strip() == "25"
    assert settings["queues"].strip() == "critical,3 low,1 (weighted random order)"
    assert settings["redis check"].strip().startswith("OK, Redis ")
    assert settings["import"].strip() == "ok_jobs OK"
    assert result.stdout.splitlines()[-1] == "OK"


def test_check_bad_config_exits_78(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("concurrency: 0\n")
    result = run_ctl("check", "-C", "bad.yml", cwd=tmp_path)
    assert result.returncode == 78
    assert result.stderr.splitlines() == ["swarmctl: bad.yml: concurrency: expected an integer >= 1, got 0"]


def test_check_unreachable_redis_exits_69_without_the_password(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/no-such.sock?password=hunter2"
    result = run_ctl("check", "--redis-url", url, cwd=tmp_path)
    assert result.returncode == 69
    assert "hunter2" not in result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("swarmctl: cannot reach Redis at unix://") and "password=***" in line
    assert "redis:" in result.stdout  # what swarmd would run with is printed first


def test_check_failing_require_exits_70(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "broken_jobs.py").write_text("raise RuntimeError('no database configured')\n")
    (tmp_path / "swarmd.yml").write_text("require: [broken_jobs, missing_module]\n")
    result = run_ctl("check", "-C", "swarmd.yml", "--redis-url", redis_url, cwd=tmp_path)
    assert result.returncode == 70
    errors = result.stderr.splitlines()
    assert errors[0] == "swarmctl: require broken_jobs failed: RuntimeError: no database configured"
    assert errors[1].startswith("swarmctl: require missing_module failed: ModuleNotFoundError")
    assert "Traceback" not in result.stderr


def test_check_warns_about_an_evicting_maxmemory_policy(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    (tmp_path / "ok_jobs.py").write_text("import swarmd\n\n@swarmd.job\ndef ok():\n    pass\n")
    (tmp_path / "swarmd.yml").write_text("require: [ok_jobs]\n")
    r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        result = run_ctl("check", "-C", "swarmd.yml", "--redis-url", redis_url, cwd=tmp_path)
    finally:
        r.config_set("maxmemory-policy", "noeviction")
    assert result.returncode == 0
    assert "swarmctl: warning: Redis maxmemory-policy is allkeys-lru" in result.stderr


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ("require: [no_jobs]\n", "require: no_jobs"),  # imports fine, defines no @swarmd.job
        ("concurrency: 2\n", "require is empty"),
    ],
)
def test_check_fails_78_when_require_registers_no_job(
    redis_url: str, tmp_path: Path, config: str, where: str
) -> None:
    (tmp_path / "no_jobs.py").write_text("def helper():\n    pass\n")
    (tmp_path / "swarmd.yml").write_text(config)
    result = run_ctl("check", "-C", "swarmd.yml", "--redis-url", redis_url, cwd=tmp_path)
    assert result.returncode == 78, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"swarmctl: no job functions registered ({where}): name the modules that define your "
        "@swarmd.job functions"
    ]
    assert result.stdout.splitlines()[-1] == "FAILED (exit 78)"


def test_check_with_delay_allow_and_no_jobs_is_ok(redis_url: str, tmp_path: Path) -> None:
    """A swarm that runs only swarmd.delay calls has no job functions and is a valid setup."""
    (tmp_path / "swarmd.yml").write_text("delay_allow: [myapp.mail]\n")
    result = run_ctl("check", "-C", "swarmd.yml", "--redis-url", redis_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# -- enqueue ---------------------------------------------------------------------------------------
def test_enqueue_pushes_a_sidekiq_job(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis
) -> None:
    code, out, _ = ctl(
        capsys, "enqueue", "HardWorker", '["bob", 5, {"a": null}]', "-q", "critical", "--redis-url", redis_url
    )
    assert code == 0
    jid = out.strip()
    assert len(jid) == 24
    [raw] = r.lrange(K.queue("critical"), 0, -1)
    job = json.loads(raw)
    assert (job["class"], job["args"], job["jid"], job["queue"]) == (
        "HardWorker",
        ["bob", 5, {"a": None}],
        jid,
        "critical",
    )
    assert isinstance(job["enqueued_at"], float)
    assert r.smembers(K.queues) == {b"critical"}

    code, out, _ = ctl(capsys, "enqueue", "Later", "--in", "60", "--redis-url", redis_url)
    assert code == 0
    [(raw, score)] = cast(list[tuple[bytes, float]], r.zrange(K.schedule, 0, -1, withscores=True))
    assert json.loads(raw)["jid"] == out.strip() and json.loads(raw)["args"] == []
    assert score == pytest.approx(time.time() + 60, abs=5)


# -- retries / scheduled / dead --------------------------------------------------------------------
def test_listings_order_limit_and_json(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis
) -> None:
    soon, later, _ = add_failed(r, K.retry, 100, 200, 300, count=2)
    old, new = add_failed(r, K.dead, -300, -100)
    r.zadd(K.dead, {b"not json": time.time()})

    code, out, _ = ctl(capsys, "retries", "--redis-url", redis_url, "--limit", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "retry: 3 jobs, 2 shown, soonest first"
    assert lines[1].split() == ["AT", "JID", "CLASS", "QUEUE", "RETRIES", "ERROR"]
    assert [line.split()[1] for line in lines[2:]] == [soon, later]
    assert lines[2].split()[2:] == ["Boom", "default", "2", "ValueError:", "bad", "value", "second", "line"]
    assert lines[2].split()[0].endswith("Z")

    code, out, _ = ctl(capsys, "dead", "--json", "--redis-url", redis_url)
    entries = json.loads(out)
    assert [e["jid"] for e in entries] == [None, new, old]  # newest first
    assert entries[0]["error_class"] == "undecodable"
    assert entries[1]["class"] == "Boom" and entries[1]["retry_count"] == 0
    assert entries[1]["args"] == [1, "a"] and entries[1]["error_message"] == "bad value\nsecond line"
    assert entries[1]["score"] == pytest.approx(time.time() - 100, abs=5)

    code, out, _ = ctl(capsys, "scheduled", "--redis-url", redis_url)
    assert (code, out) == (0, "schedule: 0 jobs\n")


# -- retry / delete / clear ------------------------------------------------------------------------
def test_retry_moves_a_job_back_exactly_once(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis
) -> None:
    [jid] = add_failed(r, K.retry, 500, count=3)
    [other] = add_failed(r, K.retry, 600)
    code, out, _ = ctl(capsys, "retry", jid, "--redis-url", redis_url)
    assert (code, out) == (0, "retried 1 job from retry\n")
    [raw] = r.lrange(K.queue("default"), 0, -1)
    job = json.loads(raw)
    assert job["jid"] == jid
    assert job["retry_count"] == 2  # Sidekiq's "Retry now": this attempt does not use up a retry
    assert job["enqueued_at"] == pytest.approx(time.time(), abs=5)
    assert job["error_class"] == "ValueError"  # failure fields are kept, as in Sidekiq
    assert r.smembers(K.queues) == {b"default"}
    assert [json.loads(m)["jid"] for m in zmembers(r, K.retry)] == [other]

    code, _, err = ctl(capsys, "retry", jid, "--redis-url", redis_url)
    assert (code, err) == (1, f"swarmctl: no job {jid} in retry or dead\n")
    assert r.llen(K.queue("default")) == 1


def test_retry_now_of_a_stale_snapshot_pushes_nothing(
    redis_url: str, r: redis.Redis, conn: connection.Redis
) -> None:
    add_failed(r, K.retry, 500, 600)
    admin = Admin(conn)
    entries = admin.page("retry", 0, 10).entries
    assert admin.retry_now("retry", entries) == Outcome(done=2)
    assert admin.retry_now("retry", entries) == Outcome(gone=2)  # a second admin, or the scheduler, lost
    assert r.llen(K.queue("default")) == 2


def test_retry_from_dead_and_retry_all(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis
) -> None:
    [dead_jid] = add_failed(r, K.dead, -50, count=25)
    add_failed(r, K.retry, 10, 20, 30)
    r.zadd(K.retry, {b"\x00garbage": 1})
    code, out, _ = ctl(capsys, "retry", dead_jid, "--redis-url", redis_url)
    assert (code, out) == (0, "retried 1 job from dead\n")
    assert json.loads(r.lindex(K.queue("default"), 0) or b"")["retry_count"] == 24

    code, out, err = ctl(capsys, "retry", "--all", "--redis-url", redis_url)
    assert (code, out) == (0, "retried 3 jobs from retry\n")
    assert err == "swarmctl: 1 undecodable entries left in retry (delete them by jid or by hand)\n"
    assert r.llen(K.queue("default")) == 4
    assert r.zrange(K.retry, 0, -1) == [b"\x00garbage"]

    add_failed(r, K.dead, -5, -6)
    code, out, _ = ctl(capsys, "retry", "--all", "--from", "dead", "--redis-url", redis_url)
    assert (code, out, r.zcard(K.dead)) == (0, "retried 2 jobs from dead\n", 0)


def test_delete(capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis) -> None:
    [retry_jid] = add_failed(r, K.retry, 5)
    [dead_jid, keep] = add_failed(r, K.dead, -5, -6)
    jid = Client(redis_url).enqueue("Later", [], None, {}, at=time.time() + 300)
    assert jid is not None
    for target, where in ((retry_jid, "retry"), (dead_jid, "dead"), (jid, "schedule")):
        code, out, _ = ctl(capsys, "delete", target, "--redis-url", redis_url)
        assert (code, out) == (0, f"deleted {target} from {where}\n")
    assert (r.zcard(K.retry), r.zcard(K.schedule)) == (0, 0)
    assert [json.loads(m)["jid"] for m in zmembers(r, K.dead)] == [keep]
    code, _, err = ctl(capsys, "delete", keep, "--from", "retry", "--redis-url", redis_url)
    assert (code, err) == (1, f"swarmctl: no job {keep} in retry\n")
    code, _, _ = ctl(capsys, "delete", "*", "--redis-url", redis_url)  # not a glob
    assert code == 1 and r.zcard(K.dead) == 1


def test_clear(capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis) -> None:
    client = Client(redis_url)
    client.enqueue_bulk("Job", [[1], [2], [3]], {"queue": "low"})
    client.enqueue("Job", [], None, {})
    result = run_ctl("clear", "low", "--yes", "--redis-url", redis_url)
    assert (result.returncode, result.stdout) == (0, "cleared queue low: 3 jobs deleted\n")
    assert not r.exists(K.queue("low"))
    assert r.smembers(K.queues) == {b"default"}
    code, _, err = ctl(capsys, "clear", "low", "-y", "--redis-url", redis_url)
    assert (code, err) == (1, "swarmctl: no queue named 'low'\n")


# -- quiet / stop ----------------------------------------------------------------------------------
def test_quiet_and_stop_push_the_signal(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis, conn: connection.Redis, tmp_path: Path
) -> None:
    first = fake_process(conn, tmp_path, busy=0)
    second = fake_process(conn, tmp_path, busy=1)
    code, out, _ = ctl(capsys, "quiet", first.identity, "--redis-url", redis_url)
    assert (code, out) == (0, f"quiet: TSTP sent to {first.identity}\n")
    assert r.lrange(K.signals(first.identity), 0, -1) == [b"TSTP"]
    assert 0 < r.ttl(K.signals(first.identity)) <= 60
    assert first.beat() == "TSTP"  # what the worker pops at its next beat

    code, out, _ = ctl(capsys, "stop", "--all", "--redis-url", redis_url)
    assert code == 0 and len(out.splitlines()) == 2
    assert first.beat() == "TERM" and second.beat() == "TERM"

    r.delete(K.process(second.identity))  # expired: no longer live
    code, _, err = ctl(capsys, "stop", second.identity, "--redis-url", redis_url)
    assert (code, err) == (1, f"swarmctl: no live process {second.identity!r} (see swarmctl status)\n")
    assert not r.exists(K.signals(second.identity))


def test_redis_unreachable_exits_69(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = ctl(capsys, "dead", "--redis-url", f"unix://{tmp_path}/gone.sock")
    assert (code, out) == (69, "")
    [line] = err.splitlines()
    assert line.startswith(f"swarmctl: cannot reach Redis at unix://{tmp_path}/gone.sock: ")
