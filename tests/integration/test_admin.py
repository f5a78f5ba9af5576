"""`swarmd.admin` against a real redis-server, in-process: reads, paging, search, find, actions, what
Redis was asked (round trips counted on a real connection, commands read back from SLOWLOG), and the
`swarmctl` commands built on it (show, clear's confirmation)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from swarmd import connection, payload
from swarmd.admin import MAX_PAGE, Admin, Entry, Found, Outcome, Process
from swarmd.busy import BusyJob
from swarmd.config import load_config
from swarmd.ctl import main
from swarmd.errors import ConfigError, NotFound
from swarmd.heartbeat import Heartbeat
from swarmd.keys import Keys
from swarmd.scripts import Scripts
from tests.conftest import run_ctl

K = Keys()


# -- helpers ---------------------------------------------------------------------------------------
class CountingConnection(redis.UnixDomainSocketConnection):
    """A real connection that counts what it sends: one packed send is one round trip (a pipeline
    sends all its commands in one)."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


@pytest.fixture
def conn(redis_url: str) -> Iterator[connection.Redis]:
    client = connection.connect(redis_url)
    yield client
    client.close()


@pytest.fixture
def admin(conn: connection.Redis) -> Admin:
    return Admin(conn)


@pytest.fixture
def counted(redis_url: str) -> Iterator[Callable[[Callable[[Admin], object]], int]]:
    """``trips(call)``: how many round trips ``call`` took on an `Admin` of a counting client."""
    client = redis.Redis.from_url(redis_url, connection_class=CountingConnection)
    client.ping()  # the connection's own handshake is not counted
    counting = Admin(client)

    def trips(call: Callable[[Admin], object]) -> int:
        before = CountingConnection.sent
        call(counting)
        return CountingConnection.sent - before

    yield trips
    client.close()


@pytest.fixture
def slowlog(r: redis.Redis) -> Iterator[Callable[[], list[list[str]]]]:
    """Every command Redis runs is logged (threshold 0); ``asked()`` returns them as token lists."""
    r.config_set("slowlog-log-slower-than", 0)
    r.config_set("slowlog-max-len", 100_000)
    r.slowlog_reset()

    def asked() -> list[list[str]]:
        entries = r.slowlog_get(100_000)
        return [e["command"].decode(errors="replace").split(" ") for e in reversed(entries)]

    yield asked
    r.config_set("slowlog-log-slower-than", 10_000)
    r.config_set("slowlog-max-len", 128)


def zmembers(r: redis.Redis, key: str) -> list[bytes]:
    return cast(list[bytes], r.zrange(key, 0, -1))


def lmembers(r: redis.Redis, key: str) -> list[bytes]:
    return cast(list[bytes], r.lrange(key, 0, -1))


def failed_job(
    count: int = 0, *, cls: str = "Boom", args: list[Any] | None = None, message: str = "bad"
) -> bytes:
    """A job as swarmd's retry code stores it after ``count`` + 1 failures, with a backtrace."""
    job = payload.build(cls, [1, "a"] if args is None else args, None, {"queue": "default"})
    for _ in range(count + 1):
        payload.record_failure(job, "ValueError", message, ["File jobs.py, line 3", "ValueError: bad"])
    return payload.encode(job)


def jid_of(raw: bytes) -> str:
    return str(json.loads(raw)["jid"])


def fill(r: redis.Redis, key: str, n: int, start: float, step: float = 1.0, **options: Any) -> list[bytes]:
    raws = [failed_job(**options) for _ in range(n)]
    pipe = r.pipeline(transaction=False)
    for i in range(0, n, 1000):
        pipe.zadd(key, {raw: start + (i + j) * step for j, raw in enumerate(raws[i : i + 1000])})
    pipe.execute()
    return raws


def fake_process(
    conn: connection.Redis, tmp_path: Path, jobs: dict[str, tuple[str, bytes, int]]
) -> Heartbeat:
    """A process record written by swarmd's own heartbeat code (what a live worker writes)."""
    (tmp_path / "swarmd.yml").write_text("tag: shop\nqueues: [critical, default]\nconcurrency: 7\n")
    config = load_config(str(tmp_path / "swarmd.yml"))
    identity = f"box:{4000 + len(jobs)}:{os.urandom(6).hex()}"
    busy = {tid: BusyJob(*job) for tid, job in jobs.items()}
    beat = Heartbeat(Scripts(conn, K), identity, config, lambda: busy, lambda: False)
    beat.beat()
    return beat


GARBAGE = [
    b"\xff not json",
    b"[1, 2]",
    b'{"class": 5, "args": []}',
    b'{"class": "A", "args": {}, "jid": "half"}',
    b'{"class": "A", "args": [], "jid": 7}',
    b'"\xed\xa0\x80"',  # a lone surrogate as raw bytes: not UTF-8
    b"[" * 100_000 + b"]" * 100_000,  # deeper than any decoder recurses
    b"",
]
"""Members that are not jobs: each must be listed (undecodable), never make a call raise."""


# -- processes, queues, totals, history ------------------------------------------------------------
def test_status_reads_everything_in_two_round_trips(
    admin: Admin,
    r: redis.Redis,
    conn: connection.Redis,
    tmp_path: Path,
    counted: Callable[[Callable[[Admin], object]], int],
) -> None:
    run_at = int(time.time()) - 3
    busy = {"t1": ("default", failed_job(), run_at)}
    beat = fake_process(conn, tmp_path, busy)
    r.sadd(K.processes, "gone:1:000000000000")  # its hash expired: not listed
    now = time.time()
    r.sadd(K.queues, "floats", "millis", "broken", "empty")
    r.lpush(K.queue("floats"), json.dumps({"class": "A", "args": [], "enqueued_at": now - 5.0}))
    r.lpush(K.queue("floats"), json.dumps({"class": "A", "args": [], "enqueued_at": now}))
    r.lpush(K.queue("millis"), json.dumps({"class": "A", "args": [], "enqueued_at": int((now - 9) * 1000)}))
    r.lpush(K.queue("broken"), b"\xff not json")
    r.set(K.stat("processed"), 41)
    r.set(K.stat("failed"), b"garbage")
    fill(r, K.retry, 2, now + 10)
    fill(r, K.dead, 1, now - 10)
    r.sadd(K.swarmd_workers, "w1", "w2")
    r.lpush(K.inflight("w1"), b"a", b"b")
    r.lpush(K.inflight("w2"), b"c")

    status = admin.status()
    [proc] = status.processes
    assert (proc.identity, proc.hostname, proc.pid, proc.tag) == (beat.identity, "box", os.getpid(), "shop")
    assert (proc.busy, proc.concurrency, proc.quiet) == (1, 7, False)
    assert proc.queues == ("critical", "default")
    assert proc.labels == ("swarmd",)
    assert proc.version is not None and proc.version.startswith("swarmd ")
    assert proc.rss_kb is not None and proc.rss_kb > 1000
    assert proc.beat_age_s is not None and 0 <= proc.beat_age_s < 5
    assert proc.started_at is not None and proc.beat_at is not None
    assert abs((proc.beat_at - dt.datetime.now(dt.UTC)).total_seconds()) < 5
    queues = {q.name: q for q in status.queues}
    assert [q.name for q in status.queues] == ["broken", "empty", "floats", "millis"]
    assert queues["floats"].size == 2 and 4.5 < (queues["floats"].latency_s or 0) < 15
    assert 8.5 < (queues["millis"].latency_s or 0) < 20  # Sidekiq 8's integer milliseconds
    assert queues["broken"].latency_s is None
    assert (queues["empty"].size, queues["empty"].latency_s) == (0, 0.0)
    t = status.totals
    assert (t.processed, t.failed, t.scheduled, t.retries, t.dead, t.enqueued, t.in_flight) == (
        41, 0, 0, 2, 1, 4, 3
    )  # fmt: skip
    assert admin.totals() == t
    assert [p.identity for p in admin.processes()] == [beat.identity]
    assert [(q.name, q.size) for q in admin.queues()] == [(q.name, q.size) for q in status.queues]

    # However many processes and queues: the same two round trips (never one per queue or process).
    assert counted(lambda a: a.status()) == 2
    for i in range(50):
        r.sadd(K.queues, f"q{i}")
        r.lpush(K.queue(f"q{i}"), json.dumps({"class": "A", "args": [], "enqueued_at": now}))
    for _ in range(5):
        fake_process(conn, tmp_path, {})
    assert len(admin.status().queues) == 54
    assert counted(lambda a: a.status()) == 2
    assert counted(lambda a: a.processes()) == 2
    assert counted(lambda a: a.queues()) == 2
    assert counted(lambda a: a.totals()) == 2


def test_process_records_of_ruby_sidekiq_and_garbage(admin: Admin, r: redis.Redis) -> None:
    """6.4.1 keeps concurrency in `info`; 8.x in a hash field and its queues under `capsules`; and a
    record with every field of the wrong type is still listed."""
    old, new, bad, worse = "vm:1:aa", "vm:2:bb", "vm:3:cc", "vm:4:dd"
    info: dict[str, Any] = {"hostname": "vm", "pid": 1, "tag": "t", "concurrency": 4, "queues": ["a", "b"]}
    info |= {"started_at": int(time.time() * 1000), "labels": ["x", 5]}
    r.hset(old, mapping={"info": json.dumps(info), "busy": 2, "beat": time.time() - 3, "quiet": "true"})
    info = {"pid": 2, "version": "8.1.7", "capsules": {"default": {"weights": {"mail": 0}}}}
    r.hset(new, mapping={"info": json.dumps(info), "busy": 0, "beat": time.time(), "concurrency": 5})
    info = {"hostname": 5, "pid": "x", "tag": [], "queues": "a", "labels": "x", "started_at": 1e400}
    r.hset(bad, mapping={"info": json.dumps(info), "busy": "x", "beat": "inf", "rss": "nan"})
    r.hset(worse, mapping={"info": b"\xff{", "busy": b"\xff", "beat": b"", "concurrency": b"\xff"})
    r.sadd(K.processes, old, new, bad, worse)
    procs = {p.identity: p for p in admin.processes()}
    assert (procs[old].concurrency, procs[old].queues, procs[old].quiet, procs[old].busy) == (
        4,
        ("a", "b"),
        True,
        2,
    )
    assert procs[old].started_at is not None and procs[old].labels == ("x",)
    assert (procs[new].concurrency, procs[new].queues, procs[new].version) == (5, ("mail",), "8.1.7")
    assert procs[bad] == Process(
        identity=bad,
        hostname="vm",
        pid=None,
        tag="",
        queues=(),
        concurrency=None,
        busy=0,
        rss_kb=None,
        started_at=None,
        beat_at=None,
        beat_age_s=None,
        quiet=False,
        version=None,
        labels=(),
    )
    assert (procs[worse].hostname, procs[worse].busy, procs[worse].concurrency) == ("vm", 0, None)


def test_busy_jobs_from_swarmd_and_sidekiq_records(
    admin: Admin, r: redis.Redis, conn: connection.Redis, tmp_path: Path
) -> None:
    first, second = failed_job(), failed_job()
    now = int(time.time())
    beat = fake_process(conn, tmp_path, {"t2": ("default", first, now - 5), "t1": ("low", second, now - 9)})
    ruby = "vm:7:ee"  # Sidekiq 6.4.1: only `:workers`, the payload as an object
    r.hset(ruby, mapping={"info": json.dumps({"hostname": "vm"}), "busy": 2})
    r.sadd(K.processes, ruby)
    r.hset(
        K.workers(ruby),
        mapping={
            "tid9": json.dumps(
                {"queue": "rb", "payload": {"class": "R", "args": [1], "jid": "rj"}, "run_at": now}
            ),
            "tid8": b"\xff garbage",
        },
    )
    jobs = admin.busy_jobs()
    assert [(j.identity, j.tid, j.queue, j.job.jid) for j in jobs] == [
        (beat.identity, "t1", "low", jid_of(second)),
        (beat.identity, "t2", "default", jid_of(first)),
        (ruby, "tid9", "rb", "rj"),
        (ruby, "tid8", None, None),  # listed, undecodable, last (no run_at)
    ]
    assert jobs[0].run_at == dt.datetime.fromtimestamp(now - 9, dt.UTC)
    assert jobs[0].job.kind == "busy" and jobs[0].job.raw == second
    assert jobs[3].job.data is None and jobs[3].job.problem


def test_history_is_one_mget(
    admin: Admin, r: redis.Redis, counted: Callable[[Callable[[Admin], object]], int]
) -> None:
    today = dt.date(2026, 3, 2)
    r.set(K.stat("processed:2026-03-02"), 10)
    r.set(K.stat("failed:2026-03-02"), 1)
    r.set(K.stat("processed:2026-02-28"), 7)  # across the month's end
    r.set(K.stat("failed:2026-03-01"), b"garbage")
    days = admin.history(4, today=today)
    assert [(d.date.isoformat(), d.processed, d.failed) for d in days] == [
        ("2026-03-02", 10, 1),
        ("2026-03-01", 0, 0),
        ("2026-02-28", 7, 0),
        ("2026-02-27", 0, 0),
    ]
    assert counted(lambda a: a.history(180)) == 1
    assert len(admin.history(1)) == 1
    with pytest.raises(ValueError, match="days"):
        admin.history(0)


def test_redis_info(admin: Admin, r: redis.Redis) -> None:
    info = admin.redis_info()
    server = r.info()
    assert info.version == server["redis_version"]
    assert info.used_memory is not None and info.used_memory > 0
    assert info.used_memory_human and info.connected_clients and info.connected_clients >= 1
    assert info.uptime_s is not None and info.maxmemory_policy == "noeviction"


# -- paging ----------------------------------------------------------------------------------------
def test_page_orders_like_the_web_ui_and_its_edges(
    admin: Admin, r: redis.Redis, counted: Callable[[Callable[[Admin], object]], int]
) -> None:
    now = time.time()
    dead = fill(r, K.dead, 5, now - 100)  # dead[4] died last
    retry = fill(r, K.retry, 5, now + 100)  # retry[0] runs first
    page = admin.page("dead", 0, 2)
    assert [e.raw for e in page.entries] == [dead[4], dead[3]]  # newest first
    assert (page.total, page.offset, page.limit, page.next_offset) == (5, 0, 2, 2)
    page = admin.page("dead", 4, 2)
    assert [e.raw for e in page.entries] == [dead[0]] and page.next_offset is None
    assert [e.raw for e in admin.page("retry", 1, 3).entries] == retry[1:4]  # soonest first
    past = admin.page("retry", 99, 10)
    assert (past.entries, past.total, past.next_offset) == ((), 5, None)
    empty = admin.page("schedule")
    assert (empty.entries, empty.total) == ((), 0)
    assert admin.page("retry", 0, 10**9).limit == MAX_PAGE
    entry = admin.page("retry", 0, 1).entries[0]
    assert (entry.kind, entry.jid, entry.job_class, entry.queue) == (
        "retry",
        jid_of(retry[0]),
        "Boom",
        "default",
    )
    assert entry.score == pytest.approx(now + 100)
    assert (entry.retry_count, entry.error_class, entry.error_message, entry.args) == (
        0,
        "ValueError",
        "bad",
        [1, "a"],
    )
    assert entry.backtrace == ("File jobs.py, line 3", "ValueError: bad")
    assert entry.at == dt.datetime.fromtimestamp(cast(float, entry.score), dt.UTC)
    assert entry.failed_at is not None and entry.created_at is not None and entry.retried_at is None
    assert counted(lambda a: a.page("dead", 2, 2)) == 1
    with pytest.raises(ValueError, match="offset"):
        admin.page("dead", -1, 5)
    with pytest.raises(ValueError, match="limit"):
        admin.page("dead", 0, 0)
    with pytest.raises(ValueError, match="kind"):
        admin.page("queue", 0, 5)  # type: ignore[arg-type]


def test_queue_page(admin: Admin, r: redis.Redis) -> None:
    raws = [json.dumps({"class": "A", "args": [i], "jid": f"j{i}"}).encode() for i in range(5)]
    for raw in raws:
        r.lpush(K.queue("mail"), raw)  # consumers take from the right: j0 runs next
    r.sadd(K.queues, "mail", "idle")
    page = admin.queue_page("mail", 0, 2)
    assert [e.jid for e in page.entries] == ["j4", "j3"] and page.total == 5  # newest first
    assert [e.jid for e in admin.queue_page("mail", 1, 2, oldest_first=True).entries] == ["j1", "j2"]
    assert [e.jid for e in admin.queue_page("mail", 4, 9, oldest_first=True).entries] == ["j4"]
    assert admin.queue_page("mail", 5, 2).entries == ()
    assert admin.queue_page("idle").total == 0  # known but empty
    with pytest.raises(NotFound, match="no queue named 'nope'"):
        admin.queue_page("nope")
    assert page.entries[0].kind == "queue" and page.entries[0].score is None


def test_paging_5000_entries_never_asks_for_the_whole_set(
    admin: Admin, r: redis.Redis, slowlog: Callable[[], list[list[str]]]
) -> None:
    raws = fill(r, K.dead, 5000, time.time() - 10_000)
    slowlog()  # the fill is not part of it
    r.slowlog_reset()
    seen: list[bytes] = []
    offset: int | None = 0
    while offset is not None:
        page = admin.page("dead", offset, 100)
        assert len(page.entries) <= 100 and page.total == 5000
        seen += [e.raw for e in page.entries]
        offset = page.next_offset
    assert seen == raws[::-1]
    ranges = [c for c in slowlog() if c[0].lower() in ("zrange", "zrevrange")]
    assert len(ranges) == 50
    for command in ranges:
        start, stop = int(command[2]), int(command[3])
        assert 0 <= start <= stop and stop - start + 1 <= 100, command
    asked = {c[0].lower() for c in slowlog()}
    assert not asked & {"zscan", "zrangebyscore", "zrangebylex", "sort", "dump"}


# -- undecodable entries ---------------------------------------------------------------------------
def test_garbage_is_listed_as_undecodable_and_can_be_deleted(admin: Admin, r: redis.Redis) -> None:
    now = time.time()
    r.zadd(K.retry, {raw: now + i for i, raw in enumerate(GARBAGE)})
    r.zadd(K.retry, {failed_job(): now + 100})
    page = admin.page("retry", 0, 100)
    assert len(page.entries) == len(GARBAGE) + 1
    bad = page.entries[: len(GARBAGE)]
    assert all(e.data is None and e.problem for e in bad)
    assert [e.raw for e in bad] == GARBAGE
    assert bad[3].jid == "half" and bad[4].jid is None  # a JSON object's jid when it is a string
    assert all(e.job_class is None and e.args is None and e.backtrace is None for e in bad)
    assert page.entries[-1].data is not None
    keys = {e.key for e in page.entries}
    assert len(keys) == len(page.entries)  # each one addressable, with or without a jid
    for e in bad:
        assert admin.entry("retry", e.key) == e
    assert admin.retry_now("retry", bad) == Outcome(undecodable=len(GARBAGE))
    assert admin.search("retry", text="not json").entries == (bad[0],)
    assert admin.delete("retry", bad) == Outcome(done=len(GARBAGE))
    assert admin.page("retry").total == 1


def test_valid_jobs_with_strange_fields_decode_without_raising(admin: Admin, r: redis.Redis) -> None:
    bomb = base64.b64encode(zlib.compress(b"[" + b'"a",' * 5_000_000 + b'"a"]')).decode()
    jobs: list[dict[str, Any]] = [
        {"class": "A", "args": ["\ud800"], "jid": "s1", "error_message": "\udcff.png"},  # escaped surrogates
        {"class": "A", "args": [], "jid": "t1", "created_at": 1e300, "failed_at": "x", "enqueued_at": True},
        {"class": "A", "args": [], "jid": "b1", "error_backtrace": "not base64!"},
        {"class": "A", "args": [], "jid": "b2", "error_backtrace": bomb},
        {"class": "A", "args": [], "jid": "b3", "error_backtrace": ["old", "format"]},
        {"class": "A", "args": [], "jid": "b4", "error_backtrace": payload.encode_backtrace(["x"])[:8]},
        {"class": "A", "args": [], "jid": "r1", "retry_count": "3", "error_class": 5, "kwargs": None},
        {"class": "Wrapper", "wrapped": "MyJob", "args": [{"job_class": "MyJob"}], "jid": "w1"},
    ]
    r.zadd(K.dead, {json.dumps(job).encode(): i for i, job in enumerate(jobs)})
    r.zadd(K.dead, {b'{"class":"A","args":[],"jid":"inf"}': float("inf")})
    entries = {e.jid: e for e in admin.page("dead", 0, 100).entries}
    assert all(e.data is not None for e in entries.values())
    assert entries["s1"].args == ["\ud800"] and entries["s1"].error_message == "\udcff.png"
    assert (entries["t1"].created_at, entries["t1"].failed_at, entries["t1"].enqueued_at) == (
        None,
        None,
        None,
    )
    assert entries["b1"].backtrace is None and entries["b2"].backtrace is None
    assert entries["b3"].backtrace == ("old", "format") and entries["b4"].backtrace is None
    assert (entries["r1"].retry_count, entries["r1"].error_class, entries["r1"].kwargs) == (None, None, None)
    assert (entries["w1"].display_class, entries["w1"].job_class) == ("MyJob", "Wrapper")
    assert entries["inf"].at is None and admin.entry("dead", entries["inf"].key) == entries["inf"]
    assert admin.retry_now("dead", list(entries.values())) == Outcome(done=len(entries))

    overflow = b'{"class":"A","args":[1e400],"jid":"o1"}'  # Python reads inf, which JSON cannot carry back
    r.zadd(K.dead, {overflow: 1})
    [entry] = admin.page("dead").entries
    assert entry.data is None and entry.problem is not None and "out of the float range" in entry.problem
    assert entry.jid == "o1"  # still listed, and found by its jid
    assert admin.retry_now("dead", [entry]) == Outcome(undecodable=1)
    assert zmembers(r, K.dead) == [overflow]


# -- entry, search, find ---------------------------------------------------------------------------
def test_entry_by_sidekiq_key(admin: Admin, r: redis.Redis) -> None:
    score = 1767225600.123456
    same_score = [failed_job() for _ in range(250)]  # more than one read of members with that score
    r.zadd(K.retry, {raw: score for raw in same_score})
    r.zadd(K.retry, {failed_job(): score + 1})
    wanted = same_score[137]
    entry = admin.entry("retry", f"{score!r}-{jid_of(wanted)}")
    assert (entry.raw, entry.score, entry.key) == (wanted, score, f"1767225600.123456-{jid_of(wanted)}")
    with pytest.raises(NotFound, match="no retry entry"):
        admin.entry("retry", f"{score + 1!r}-{jid_of(wanted)}")
    for key in ("", "garbage", f"-{jid_of(wanted)}", "nan-abc", "1e999-abc"):
        with pytest.raises(NotFound):
            admin.entry("retry", key)
    with pytest.raises(NotFound):
        admin.entry("dead", entry.key)
    negative = failed_job()
    r.zadd(K.schedule, {negative: -5.5})
    assert admin.entry("schedule", f"-5.5-{jid_of(negative)}").raw == negative


def test_search_by_class_and_text_in_bounded_steps(admin: Admin, r: redis.Redis) -> None:
    now = time.time()
    fill(r, K.retry, 2000, now, cls="Boring", message="timeout")
    wanted = fill(r, K.retry, 30, now + 5000, cls="Mailer", args=["bob@example.com", 5], message="SMTP 554")
    odd = fill(r, K.retry, 3, now + 9000, cls="Mailer", args=['quote " and ünï'], message="x")
    r.zadd(K.retry, {b"\xff garbage Mailer": now})

    def collect(**query: Any) -> list[Entry]:
        found: list[Entry] = []
        cursor, steps = 0, 0
        while True:
            result = admin.search("retry", cursor=cursor, count=200, **query)
            found += result.entries
            cursor, steps = result.cursor, steps + 1
            if result.done:
                break
        assert steps > 1  # one call never walks the whole set
        return found

    by_class = collect(job_class="Mailer")
    assert {e.raw for e in by_class} == set(wanted + odd)
    assert {e.raw for e in collect(text="bob@example")} == set(wanted)
    assert {e.raw for e in collect(text="SMTP 554")} == set(wanted)  # the error message
    assert {e.raw for e in collect(job_class="Boring", text="bob")} == set()
    assert {e.raw for e in collect(text='quote " and ünï')} == set(odd)  # not a MATCH literal: filtered here
    assert {e.raw for e in collect(text="ünï")} == set(odd)
    assert [e.raw for e in collect(text="\xff garbage") if e.data is None] == []  # replacement chars
    assert len(collect(text="garbage Mailer")) == 1
    assert [e.raw for e in collect(jid=jid_of(wanted[7]))] == [wanted[7]]
    assert collect(jid=jid_of(wanted[7]), job_class="Boring") == []
    assert len(collect()) >= 2034
    first = admin.search("retry", job_class="Mailer", cursor=0, count=10_000_000)
    assert first.entries == tuple(sorted(first.entries, key=lambda e: e.score or 0))
    with pytest.raises(ValueError):
        admin.search("retry", cursor=-1)


def test_find_across_sets_queues_and_running_jobs(
    admin: Admin, r: redis.Redis, conn: connection.Redis, tmp_path: Path
) -> None:
    job = failed_job()
    jid = jid_of(job)
    now = time.time()
    fill(r, K.retry, 3000, now)
    r.zadd(K.retry, {job: now + 10})
    r.zadd(K.dead, {job: now - 10})
    prefix = job.replace(jid.encode(), jid[:-1].encode())  # a jid that only starts like it
    r.zadd(K.schedule, {prefix: now})
    r.sadd(K.queues, "big", "small")
    r.lpush(K.queue("big"), *[json.dumps({"class": "A", "args": [i], "jid": f"x{i}"}) for i in range(2500)])
    r.rpush(K.queue("big"), job)  # beyond the first chunks
    r.lpush(K.queue("small"), b"\xff" + jid.encode())  # holds the jid but is not a job
    beat = fake_process(conn, tmp_path, {"t1": ("default", job, int(now))})
    found = admin.find(jid, queues=True, busy=True)
    assert [(f.where, f.queue) for f in found] == [
        ("retry", None),
        ("dead", None),
        ("queue", "big"),
        ("busy", None),
    ]
    assert all(f.entry.raw == job for f in found)
    assert found[0].entry.score == pytest.approx(now + 10)
    busy = found[3].busy
    assert busy is not None and (busy.identity, busy.tid) == (beat.identity, "t1")
    assert [f.where for f in admin.find(jid)] == ["retry", "dead"]  # the sets only, by default
    assert [f.where for f in admin.find(jid, kinds=["dead"])] == ["dead"]
    assert admin.find(jid[:-1]) == [Found("schedule", Entry.parse("schedule", prefix, now))]
    assert admin.find("*") == [] and admin.find("") == []  # a jid is not a pattern
    assert admin.find("nope", queues=True, busy=True) == []


# -- actions ---------------------------------------------------------------------------------------
def test_retry_now_add_to_queue_delete_and_kill(admin: Admin, r: redis.Redis) -> None:
    now = time.time()
    [in_retry] = fill(r, K.retry, 1, now + 50, count=3)
    fill(r, K.dead, 1, now - 50, count=25)
    scheduled = payload.encode(payload.build("Later", [1], None, {"queue": "low"}, at=now + 99))
    r.zadd(K.schedule, {scheduled: now + 99})

    assert admin.retry_now("retry", admin.page("retry").entries) == Outcome(done=1)
    moved = json.loads(lmembers(r, K.queue("default"))[0])
    assert moved["jid"] == jid_of(in_retry) and moved["retry_count"] == 2  # does not use up a retry
    assert moved["enqueued_at"] == pytest.approx(time.time(), abs=5) and moved["error_class"] == "ValueError"
    assert admin.retry_now("dead", admin.page("dead").entries) == Outcome(done=1)
    assert json.loads(lmembers(r, K.queue("default"))[0])["retry_count"] == 24

    assert admin.add_to_queue(admin.page("schedule").entries) == Outcome(done=1)
    [queued] = lmembers(r, K.queue("low"))
    assert json.loads(queued)["jid"] == jid_of(scheduled) and "retry_count" not in json.loads(queued)
    assert cast(set[bytes], r.smembers(K.queues)) == {b"default", b"low"}
    assert r.zcard(K.retry) == r.zcard(K.dead) == r.zcard(K.schedule) == 0

    fill(r, K.retry, 2, now)
    fill(r, K.dead, 1, now)
    assert admin.delete("retry", admin.page("retry", 0, 1).entries) == Outcome(done=1)
    assert r.zcard(K.retry) == 1
    with pytest.raises(ValueError, match="kill"):
        admin.kill(admin.page("dead").entries + admin.page("retry").entries)
    assert r.zcard(K.retry) == 1  # nothing was done


def test_kill_moves_unchanged_and_trims_dead(conn: connection.Redis, r: redis.Redis) -> None:
    admin = Admin(conn, dead_max_jobs=4, dead_timeout=3600)
    now = time.time()
    fill(r, K.dead, 1, now - 7200)  # older than dead_timeout: dropped at the next kill
    kept = fill(r, K.dead, 2, now - 60)
    retry = fill(r, K.retry, 2, now + 60)
    scheduled = fill(r, K.schedule, 1, now + 60)
    entries = admin.page("retry").entries + admin.page("schedule").entries
    assert admin.kill(entries) == Outcome(done=3)
    assert r.zcard(K.retry) == r.zcard(K.schedule) == 0
    assert set(zmembers(r, K.dead)) == {kept[1], *retry, *scheduled}  # 4 at most: the oldest went
    for raw in retry:
        assert cast(float, r.zscore(K.dead, raw)) == pytest.approx(time.time(), abs=5)


def racers(redis_url: str, n: int = 2) -> list[Admin]:
    return [Admin.from_url(redis_url) for _ in range(n)]


def race(*calls: Callable[[], Outcome]) -> list[Outcome]:
    """Run the calls at the same moment, one thread each."""
    barrier = threading.Barrier(len(calls))
    results: list[Outcome | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(o is not None for o in results)
    return cast(list[Outcome], results)


ACTIONS: dict[str, Callable[[Admin, Entry], Outcome]] = {
    "retry": lambda admin, e: admin.retry_now("retry", [e]),
    "kill": lambda admin, e: admin.kill([e]),
    "delete": lambda admin, e: admin.delete("retry", [e]),
}


def race_once(redis_url: str, first: str, second: str) -> list[Outcome]:
    """Two admins read the same entry, then act on it at the same moment."""
    a, b = racers(redis_url)
    try:
        entry_a, entry_b = a.page("retry").entries[0], b.page("retry").entries[0]
        return race(lambda: ACTIONS[first](a, entry_a), lambda: ACTIONS[second](b, entry_b))
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    ("first", "second"),
    [("retry", "retry"), ("kill", "kill"), ("delete", "delete"), ("retry", "kill"), ("kill", "delete")],
)
def test_two_admins_racing_on_one_entry_exactly_one_acts(
    redis_url: str, r: redis.Redis, first: str, second: str
) -> None:
    for _ in range(20):
        r.flushdb()
        fill(r, K.retry, 1, time.time())
        outcomes = race_once(redis_url, first, second)
        assert sorted(o.done for o in outcomes) == [0, 1]
        assert sorted(o.gone for o in outcomes) == [0, 1]
        winner = (first, second)[[o.done for o in outcomes].index(1)]
        places = r.zcard(K.retry) + r.zcard(K.dead) + r.llen(K.queue("default"))
        assert places == (0 if winner == "delete" else 1)  # never twice: in one place, or deleted
        assert r.zcard(K.retry) == 0


def test_all_actions_work_in_batches(
    admin: Admin, r: redis.Redis, slowlog: Callable[[], list[list[str]]]
) -> None:
    now = time.time()
    r.zadd(K.retry, {b"\xff undecodable %d" % i: now - 1000 + i for i in range(150)})  # in front, > a batch
    fill(r, K.retry, 5000, now)
    r.slowlog_reset()
    assert admin.retry_all("retry") == Outcome(done=5000, undecodable=150)
    assert r.llen(K.queue("default")) == 5000 and r.zcard(K.retry) == 150
    ranges = [c for c in slowlog() if c[0].lower() in ("zrange", "zrevrange")]
    assert len(ranges) == 52
    assert all(int(c[3]) - int(c[2]) + 1 <= 100 for c in ranges)

    fill(r, K.schedule, 1234, now)
    assert admin.kill_all("schedule") == Outcome(done=1234)
    assert (r.zcard(K.schedule), r.zcard(K.dead)) == (0, 1234)
    assert admin.kill_all() == Outcome(done=150)  # undecodable entries can be killed: moved unchanged
    assert admin.retry_all("dead") == Outcome(done=1234, undecodable=150)
    assert admin.delete_all("dead") == Outcome(done=150)
    assert admin.delete_all("retry") == Outcome()
    ranges = [c for c in slowlog() if c[0].lower() in ("zrange", "zrevrange")]
    assert all(int(c[3]) - int(c[2]) + 1 <= 100 and int(c[3]) >= 0 for c in ranges)
    with pytest.raises(ValueError):
        admin.kill_all("dead")


def test_queue_actions(admin: Admin, r: redis.Redis) -> None:
    raws = [json.dumps({"class": "A", "args": [i]}).encode() for i in range(3)]
    r.lpush(K.queue("low"), *raws)
    r.sadd(K.queues, "low", "default")
    assert admin.queue_size("low") == 3 and admin.queue_size("default") == 0
    assert admin.delete_queue_job("low", raws[1]) is True
    assert admin.delete_queue_job("low", raws[1]) is False
    assert lmembers(r, K.queue("low")) == [raws[2], raws[0]]
    assert admin.clear_queue("low") == 2
    assert not r.exists(K.queue("low")) and cast(set[bytes], r.smembers(K.queues)) == {b"default"}
    assert admin.clear_queue("default") == 0  # known, empty: forgotten
    with pytest.raises(NotFound, match="no queue named 'low'"):
        admin.clear_queue("low")
    with pytest.raises(NotFound, match="no queue named 'low'"):
        admin.queue_size("low")


def test_quiet_and_stop(admin: Admin, r: redis.Redis, conn: connection.Redis, tmp_path: Path) -> None:
    first = fake_process(conn, tmp_path, {})
    second = fake_process(conn, tmp_path, {"t": ("default", failed_job(), 0)})
    assert admin.quiet(first.identity) == [first.identity]
    assert lmembers(r, K.signals(first.identity)) == [b"TSTP"]
    assert 0 < r.ttl(K.signals(first.identity)) <= 60
    assert first.beat() == "TSTP"  # what the worker pops at its next beat
    assert admin.stop() == sorted([first.identity, second.identity])
    assert first.beat() == "TERM" and second.beat() == "TERM"
    r.delete(K.process(second.identity))  # expired: no longer live
    with pytest.raises(NotFound, match="no live process"):
        admin.stop(second.identity)
    assert not r.exists(K.signals(second.identity))
    assert admin.live_identities() == [first.identity]


def test_constructors_and_close(
    redis_url: str, r: redis.Redis, tmp_path: Path, conn: connection.Redis
) -> None:
    (tmp_path / "ns.yml").write_text(
        f"redis:\n  url: {redis_url}\n  namespace: shop\ndead_max_jobs: 7\ndead_timeout: 60\n"
    )
    r.sadd("shop:queues", "mail")
    with Admin.from_config(load_config(str(tmp_path / "ns.yml"))) as admin:
        assert [q.name for q in admin.queues()] == ["mail"]
        assert (admin.dead_max_jobs, admin.dead_timeout) == (7, 60)
    (tmp_path / "bad.yml").write_text("redis:\n  url: redis://user:secret@host:notaport/0\n")
    with pytest.raises(ConfigError) as info:
        Admin.from_config(load_config(str(tmp_path / "bad.yml")))
    assert "secret" not in str(info.value)
    with Admin.from_url(redis_url, "shop") as admin:
        assert admin.queue_size("mail") == 0
    borrowed = Admin(conn)
    borrowed.close()
    assert conn.ping()  # a client passed in belongs to the caller


# -- swarmctl on top of it -------------------------------------------------------------------------
def ctl(capsys: pytest.CaptureFixture[str], *argv: str) -> subprocess.CompletedProcess[str]:
    """`swarmctl ARGV` in this process (stdin is not a terminal under pytest)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(argv), int(exit_info.value.code or 0), out, err)


def test_swarmctl_show(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis, conn: connection.Redis, tmp_path: Path
) -> None:
    job = payload.build("Boom", [1, {"to": "bob"}], {"k": 2}, {"queue": "mail"})
    for _ in range(3):
        payload.record_failure(
            job, "ValueError", "bad value\nsecond line \udcff", ["File a.py, line 1", "boom"]
        )
    raw = payload.encode(job)
    now = time.time()
    r.zadd(K.retry, {raw: now + 7800})
    fake_process(conn, tmp_path, {"t7": ("mail", raw, int(now))})
    result = ctl(capsys, "show", job["jid"], "--redis-url", redis_url)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split("\n\n")
    lines = first.splitlines()
    assert lines[0] == f"jid:          {job['jid']}"
    assert lines[1].startswith("where:        retry, next attempt at 20") and "(in 2h" in lines[1]
    assert "class:        Boom" in first and "queue:        mail" in first
    assert 'args:         [\n                1,\n                {\n                  "to": "bob"' in first
    assert "retry count:  2" in first
    assert "error:        ValueError: bad value\n              second line \\udcff" in first
    assert "backtrace:\n  File a.py, line 1\n  boom" in first
    assert "failed at:" in first and "retried at:" in first and "created at:" in first
    assert "where:        running on box:" in second and "(thread t7, since " in second

    result = ctl(capsys, "show", job["jid"], "--json", "--redis-url", redis_url)
    data = json.loads(result.stdout)
    assert [d["where"] for d in data] == ["retry", "busy"]
    assert data[0]["job"]["error_message"] == "bad value\nsecond line \udcff"
    assert data[0]["key"] == f"{data[0]['score']!r}-{job['jid']}"
    assert data[1]["thread"] == "t7" and data[0]["backtrace"] == ["File a.py, line 1", "boom"]

    r.zadd(K.dead, {b"\xff" + job["jid"].encode(): now})
    r.zadd(K.dead, {json.dumps({"jid": "halfjob"}).encode(): now})
    result = ctl(capsys, "show", "halfjob", "--redis-url", redis_url)
    assert result.returncode == 0
    assert (
        "undecodable:  missing or invalid 'class'" in result.stdout
        and 'raw:          {"jid"' in result.stdout
    )

    result = ctl(capsys, "show", "0123456789abcdef01234567", "--redis-url", redis_url)
    assert (result.returncode, result.stdout) == (1, "")
    assert (
        result.stderr
        == "swarmctl: no job 0123456789abcdef01234567 in retry, schedule, dead, the queues or running\n"
    )


def test_swarmctl_clear_asks_on_a_terminal_and_refuses_without_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_url: str, r: redis.Redis
) -> None:
    r.lpush(K.queue("low"), b"1", b"2", b"3")
    r.sadd(K.queues, "low")
    result = run_ctl("clear", "low", "--redis-url", redis_url)  # stdin is not a terminal
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "swarmctl: clear: no terminal to confirm on; add --yes to delete queue 'low'\n"
    assert r.llen(K.queue("low")) == 3

    def on_a_terminal(answer: bytes) -> subprocess.CompletedProcess[str]:
        controller, terminal = os.openpty()
        with open(terminal, encoding="utf-8") as stdin:
            os.write(controller, answer)
            monkeypatch.setattr(sys, "stdin", stdin)
            try:
                return ctl(capsys, "clear", "low", "--redis-url", redis_url)
            finally:
                monkeypatch.undo()
                os.close(controller)

    result = on_a_terminal(b"n\n")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "Delete 3 jobs from queue low? [y/N] swarmctl: queue 'low' not cleared\n"
    assert r.llen(K.queue("low")) == 3
    result = on_a_terminal(b"\n")  # the default is no
    assert result.returncode == 1 and r.llen(K.queue("low")) == 3
    result = on_a_terminal(b"yes\n")
    assert (result.returncode, result.stdout) == (0, "cleared queue low: 3 jobs deleted\n")
    assert result.stderr == "Delete 3 jobs from queue low? [y/N] "
    assert not r.exists(K.queue("low"))
    result = on_a_terminal(b"y\n")  # unknown: nothing to ask
    assert (result.returncode, result.stderr) == (1, "swarmctl: no queue named 'low'\n")

    r.lpush(K.queue("low"), b"1")
    result = ctl(capsys, "clear", "low", "--yes", "--redis-url", redis_url)
    assert (result.returncode, result.stdout) == (0, "cleared queue low: 1 job deleted\n")


def test_swarmctl_listings_page(capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis) -> None:
    raws = fill(r, K.dead, 30, time.time() - 1000)
    jids = [jid_of(raw) for raw in raws[::-1]]  # newest first

    def listed(*argv: str) -> tuple[str, list[str]]:
        result = ctl(capsys, "dead", *argv, "--redis-url", redis_url)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        return lines[0], [line.split()[1] for line in lines[2:]]

    assert listed() == ("dead: 30 jobs, 25 shown, newest first", jids[:25])
    assert listed("--limit", "10", "--page", "2") == (
        "dead: 30 jobs, 10 shown from #11, newest first",
        jids[10:20],
    )
    assert listed("--offset", "28") == ("dead: 30 jobs, 2 shown from #29, newest first", jids[28:])
    assert listed("--page", "9") == ("dead: 30 jobs, 0 shown from #201, newest first", [])
    result = ctl(capsys, "dead", "--json", "--limit", "2", "--offset", "1", "--redis-url", redis_url)
    assert [e["jid"] for e in json.loads(result.stdout)] == jids[1:3]


def test_swarmctl_big_limit_is_read_in_pages(
    capsys: pytest.CaptureFixture[str], redis_url: str, r: redis.Redis, slowlog: Callable[[], list[list[str]]]
) -> None:
    raws = fill(r, K.retry, 2500, time.time())
    r.slowlog_reset()
    result = ctl(capsys, "retries", "--json", "--limit", "2200", "--offset", "100", "--redis-url", redis_url)
    assert [e["jid"] for e in json.loads(result.stdout)] == [jid_of(raw) for raw in raws[100:2300]]
    ranges = [c for c in slowlog() if c[0].lower() in ("zrange", "zrevrange")]
    assert [(int(c[2]), int(c[3])) for c in ranges] == [(100, 1099), (1100, 2099), (2100, 2299)]
