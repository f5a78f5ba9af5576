"""The dashboard (`swarmd.web`) at the WSGI level, through Werkzeug's test client, against a real
redis-server: every route renders from Redis, each action changes Redis as it says, CSRF/auth/
read-only refuse what they must, job data is escaped, a path prefix reaches every URL, and /metrics
parses with prometheus_client's own parser in a bounded number of round trips."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client, TestResponse

from swarmd import connection, metrics, payload
from swarmd.admin import Admin
from swarmd.client import Client as JobClient
from swarmd.keys import Keys
from swarmd.web import Dashboard, create_app
from tests.integration.test_admin import CountingConnection, failed_job, fake_process, jid_of

K = Keys()
XSS = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


@pytest.fixture
def app(redis_url: str) -> Iterator[Dashboard]:
    dashboard = create_app(redis_url)
    yield dashboard
    dashboard.admin.close()


@pytest.fixture
def client(app: Dashboard) -> Client:
    return Client(app)


def token(page: TestResponse) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True))
    assert found, "no CSRF token in the page"
    return found.group(1)


def post(client: Client, page_path: str, path: str, **form: Any) -> TestResponse:
    """Load ``page_path`` (for its CSRF cookie and token), then POST ``form`` to ``path``."""
    page = client.get(page_path)
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post(path, data={"csrf": token(page), **form})


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def enqueue(redis_url: str, name: str, *args: Any, queue: str = "default") -> str:
    jid = JobClient(redis_url).enqueue(name, list(args), None, {"queue": queue})
    assert jid is not None
    return jid


def zadd(r: redis.Redis, key: str, raw: bytes, score: float | None = None) -> None:
    r.zadd(key, {raw: time.time() if score is None else score})


# -- pages render from Redis ------------------------------------------------------------------------
def test_every_page_renders_live_data(client: Client, r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    for i in range(3):
        enqueue(redis_url, "Mailer", i, queue="mail")
    r.set("stat:processed", 1234)
    r.set("stat:failed", 56)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    r.set(f"stat:processed:{today}", 77)
    zadd(r, "retry", failed_job(cls="RetryMe"))
    zadd(
        r,
        "schedule",
        payload.encode(payload.build("Later", [1], None, {"queue": "default"})),
        time.time() + 60,
    )
    zadd(r, "dead", failed_job(cls="DeadOne"))
    with connection.connect(redis_url) as conn:
        fake_process(
            conn, tmp_path, {"t1": ("critical", payload.encode(payload.build("Busy", [9], None, {})), 1)}
        )
    home = text(client.get("/"))
    assert "1,234" in home and "56" in home and "77" in home and "mail" in home and "Redis" in home
    busy = text(client.get("/busy"))
    assert "box" in busy and "shop" in busy and "Busy" in busy and "critical" in busy and "Quiet" in busy
    assert "mail" in text(client.get("/queues"))
    queue = text(client.get("/queues/mail"))
    assert queue.count("Mailer") == 3 and "Delete" in queue
    assert "RetryMe" in text(client.get("/retries"))
    assert "Later" in text(client.get("/scheduled"))
    assert "DeadOne" in text(client.get("/dead"))
    assert client.get("/job-metrics").status_code == 200
    stats = json.loads(text(client.get("/stats.json")))
    assert stats["processed"] == 1234 and stats["enqueued"] == 3
    assert client.get("/nowhere").status_code == 404
    assert client.get("/queues/nosuchqueue").status_code == 404
    assert client.get("/static/uPlot.iife.min.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_history_has_7_30_and_90_days(client: Client, r: redis.Redis) -> None:
    for days in (7, 30, 90):
        page = text(client.get(f"/?days={days}"))
        data = json.loads(html.unescape(re.search(r'id="history-data">(.*?)</script>', page).group(1)))  # type: ignore[union-attr]
        assert len(data["days"]) == days


def test_job_detail_shows_args_error_backtrace_and_times(client: Client, r: redis.Redis) -> None:
    raw = failed_job(2, cls="Detail", args=[{"user": 7, "tags": ["a", "b"]}], message="it broke")
    zadd(r, "retry", raw)
    listing = text(client.get("/retries"))
    link = re.search(r'href="(/retries/[^"]+)"', listing).group(1)  # type: ignore[union-attr]
    page = html.unescape(text(client.get(html.unescape(link))))
    assert '"user": 7' in page and "ValueError" in page and "it broke" in page
    assert "File jobs.py, line 3" in page and "Retry count" in page and jid_of(raw) in page


# -- actions ----------------------------------------------------------------------------------------
def test_retry_delete_kill_and_add_to_queue_act_on_redis(client: Client, r: redis.Redis) -> None:
    a, b, c = (failed_job(cls=f"Job{i}") for i in range(3))
    for raw in (a, b, c):
        zadd(r, "retry", raw)
    keys = re.findall(r'name="key" value="([^"]+)"', text(client.get("/retries")))
    assert len(keys) == 3
    by_jid = {k.rsplit("-", 1)[1]: html.unescape(k) for k in keys}
    response = post(client, "/retries", "/retries", action="retry", key=[by_jid[jid_of(a)]])
    assert response.status_code == 303
    assert r.llen("queue:default") == 1 and r.zcard("retry") == 2
    post(client, "/retries", "/retries", action="kill", key=[by_jid[jid_of(b)]])
    assert r.zcard("dead") == 1 and r.zcard("retry") == 1
    post(client, "/retries", "/retries", action="delete", key=[by_jid[jid_of(c)]])
    assert r.zcard("retry") == 0
    zadd(r, "schedule", payload.encode(payload.build("Soon", [1], None, {"queue": "low"})), time.time() + 999)
    (key,) = re.findall(r'name="key" value="([^"]+)"', text(client.get("/scheduled")))
    post(client, "/scheduled", "/scheduled", action="add_to_queue", key=[html.unescape(key)])
    assert r.zcard("schedule") == 0 and r.llen("queue:low") == 1


def test_actions_on_every_job_need_the_confirmation(client: Client, r: redis.Redis) -> None:
    for i in range(30):
        zadd(r, "dead", failed_job(cls="Dead"), 1000.0 + i)
    refused = post(client, "/dead", "/dead", action="retry", all="1")
    assert refused.status_code == 400 and r.zcard("dead") == 30
    done = post(client, "/dead", "/dead", action="retry", all="1", confirm="yes")
    assert done.status_code == 303 and r.zcard("dead") == 0 and r.llen("queue:default") == 30
    assert "30 job(s) retried" in text(client.get(done.headers["Location"]))


def test_entry_page_actions(client: Client, r: redis.Redis) -> None:
    raw = failed_job(cls="One")
    zadd(r, "retry", raw, 5000.0)
    path = f"/retries/5000.0-{jid_of(raw)}"
    assert client.get(path).status_code == 200
    assert post(client, path, path, action="kill").status_code == 303
    assert r.zcard("retry") == 0 and r.zcard("dead") == 1
    assert client.get(path).status_code == 404


def test_queue_delete_one_job_and_clear_with_confirmation(
    client: Client, r: redis.Redis, redis_url: str
) -> None:
    for i in range(3):
        enqueue(redis_url, "Q", i, queue="work")
    page = client.get("/queues/work")
    job = re.findall(r'name="job" value="([^"]+)"', text(page))[0]
    client.post("/queues/work", data={"csrf": token(page), "action": "delete", "job": job})
    assert r.llen("queue:work") == 2
    confirm = text(client.get("/queues/work?clear=1"))
    assert "2" in confirm and 'name="confirm"' in confirm and "required" in confirm
    assert post(client, "/queues/work", "/queues/work", action="clear").status_code == 400
    assert r.llen("queue:work") == 2
    assert post(client, "/queues/work", "/queues/work", action="clear", confirm="yes").status_code == 303
    assert r.llen("queue:work") == 0 and not r.sismember("queues", "work")


def test_quiet_and_stop_buttons_signal_the_process(
    client: Client, r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    with connection.connect(redis_url) as conn:
        beat = fake_process(conn, tmp_path, {})
    post(client, "/busy", "/busy", action="quiet", identity=beat.identity)
    assert r.lrange(f"{beat.identity}-signals", 0, -1) == [b"TSTP"]
    post(client, "/busy", "/busy", action="stop")  # every process
    assert r.lrange(f"{beat.identity}-signals", 0, -1) == [b"TERM", b"TSTP"]


def test_filter_by_class_and_by_text(client: Client, r: redis.Redis) -> None:
    zadd(r, "dead", failed_job(cls="Alpha", args=["needle-1"]))
    zadd(r, "dead", failed_job(cls="Beta", args=["other"], message="needle in the error"))
    zadd(r, "dead", failed_job(cls="Beta", args=["nothing"]))
    by_class = text(client.get("/dead?class=Alpha"))
    assert "Alpha" in by_class and "Beta" not in by_class.split("<tbody>", 1)[1]
    by_text = text(client.get("/dead?q=needle"))
    rows = by_text.split("<tbody>", 1)[1]
    assert "Alpha" in rows and "needle in the error" in rows and "nothing" not in rows


# -- security ---------------------------------------------------------------------------------------
def test_post_without_or_with_a_wrong_csrf_token_is_refused(client: Client, r: redis.Redis) -> None:
    zadd(r, "retry", failed_job())
    assert client.post("/retries", data={"action": "delete", "all": "1", "confirm": "yes"}).status_code == 403
    client.get("/retries")  # the cookie now exists; a forged field still fails
    forged = client.post(
        "/retries", data={"csrf": "x" * 32, "action": "delete", "all": "1", "confirm": "yes"}
    )
    assert forged.status_code == 403
    other = Client(client.application)  # a token from another browser's page does not fit this cookie
    stolen = token(other.get("/retries"))
    assert client.post("/retries", data={"csrf": stolen, "action": "delete", "all": "1"}).status_code == 403
    cross = post(client, "/retries", "/retries", action="delete", all="1", confirm="yes")
    assert cross.status_code == 303
    assert r.zcard("retry") == 0


def test_state_changes_need_post(client: Client, r: redis.Redis) -> None:
    zadd(r, "retry", failed_job())
    client.get("/retries?action=delete&all=1&confirm=yes")
    assert r.zcard("retry") == 1
    assert client.put("/retries").status_code == 405


def test_basic_auth(redis_url: str, r: redis.Redis) -> None:
    app = create_app(redis_url, username="ops", password="s3cret")
    client = Client(app)
    for path in ("/", "/retries", "/metrics", "/stats.json"):
        denied = client.get(path)
        assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/", auth=("ops", "wrong")).status_code == 401
    assert client.get("/", auth=("other", "s3cret")).status_code == 401
    assert client.get("/", auth=("ops", "s3cret")).status_code == 200
    assert client.get("/metrics", auth=("ops", "s3cret")).status_code == 200
    app.admin.close()
    with pytest.raises(ValueError, match="both"):
        create_app(redis_url, username="ops")


def test_read_only_has_no_buttons_and_refuses_every_post(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    zadd(r, "retry", failed_job())
    enqueue(redis_url, "Q", 1, queue="work")
    with connection.connect(redis_url) as conn:
        fake_process(conn, tmp_path, {})
    app = create_app(redis_url, read_only=True)
    client = Client(app)
    for path in ("/", "/busy", "/queues", "/queues/work", "/queues/work?clear=1", "/retries", "/dead"):
        page = text(client.get(path))
        buttons = re.findall(r"<button[^>]*>([^<]*)", page)
        assert set(buttons) <= {"Filter"} and 'method="post"' not in page, (path, buttons)
    normal = Client(create_app(redis_url))
    csrf = token(normal.get("/retries"))
    for path in ("/retries", "/busy", "/queues/work"):
        response = client.post(path, data={"csrf": csrf, "action": "delete", "all": "1", "confirm": "yes"})
        assert response.status_code == 403
    assert r.zcard("retry") == 1 and r.llen("queue:work") == 1
    app.admin.close()


def test_job_data_is_escaped_everywhere(
    client: Client, r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    job = payload.build(XSS, [XSS, {XSS: XSS}], None, {"queue": XSS})
    payload.record_failure(job, XSS, XSS, [XSS])
    raw = payload.encode(job)
    zadd(r, "dead", raw, 7000.0)
    zadd(r, "retry", raw, 7000.0)
    r.lpush(f"queue:{XSS}", raw)
    r.sadd("queues", XSS)
    with connection.connect(redis_url) as conn:
        fake_process(conn, tmp_path, {XSS: (XSS, raw, 1)})
    pages = ["/", "/busy", "/queues", "/retries", "/dead", f"/dead/7000.0-{jid_of(raw)}", f"/dead?q={XSS}"]
    for path in pages:
        page = text(client.get(path))
        assert "<script>alert" not in page and "<img src=x" not in page, path
    detail = text(client.get(f"/dead/7000.0-{jid_of(raw)}"))
    assert html.escape(XSS, quote=False) in detail or "&lt;script&gt;" in detail


def test_security_headers(client: Client) -> None:
    page = client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "<script>" not in text(page).replace("<script src=", "")  # every script is a file


def test_a_lone_surrogate_in_a_job_renders(client: Client, r: redis.Redis) -> None:
    raw = failed_job(cls="Odd", message="no such file: \udcff.png")
    zadd(r, "dead", raw, 100.0)
    assert client.get("/dead").status_code == 200
    assert "\\udcff" in text(client.get(f"/dead/100.0-{jid_of(raw)}"))


# -- mounting under a prefix --------------------------------------------------------------------------
def test_every_url_carries_the_script_name(app: Dashboard, r: redis.Redis, redis_url: str) -> None:
    zadd(r, "dead", failed_job(), 100.0)
    enqueue(redis_url, "Q", 1, queue="work")
    base = "http://localhost/admin/jobs/"  # SCRIPT_NAME=/admin/jobs, as Django or Flask mount it
    client = Client(app)
    for path in ("/", "/queues", "/queues/work", "/queues/work?clear=1", "/dead", "/busy", "/job-metrics"):
        page = client.get(path, base_url=base)
        assert page.status_code == 200, path
        urls = re.findall(r'(?:href|src|action|data-src)="([^"]+)"', text(page))
        assert urls and all(u.startswith("/admin/jobs/") for u in urls if u != "data:,"), (path, urls)
    response = Client(app).get("/", base_url=base)
    assert "Path=/admin/jobs/" in response.headers["Set-Cookie"]
    page = client.get("/dead", base_url=base)
    done = client.post(
        "/dead", base_url=base, data={"csrf": token(page), "action": "delete", "all": "1", "confirm": "yes"}
    )
    assert done.status_code == 303 and done.headers["Location"].startswith("/admin/jobs/dead")
    assert r.zcard("dead") == 0


# -- job metrics and /metrics ------------------------------------------------------------------------
def record(r: redis.Redis, name: str, ms: list[float], failures: int = 0, now: float | None = None) -> None:
    agg = metrics.JobMetrics()
    for value in ms:
        agg.record(name, value, False)
    for _ in range(failures):
        agg.record(name, 1.0, True)
    pipe = r.pipeline(transaction=True)
    metrics.write(pipe, K, agg.take(), time.time() if now is None else now)
    pipe.execute()


def test_job_metrics_page_shows_runs_failures_times_and_percentiles(client: Client, r: redis.Redis) -> None:
    record(r, "Fast", [5.0] * 90 + [250.0] * 10, failures=3)
    record(r, "Slow", [2000.0] * 10, now=time.time() - 3 * 3600)  # outside the last hour
    page = text(client.get("/job-metrics"))
    rows = page.split("<tbody>", 1)[1]
    assert "Fast" in rows and "103" in rows and "Slow" not in rows
    assert "&lt; 20.0 ms" in rows and "&lt; 335.0 ms" in rows  # p50 and p95 bucket bounds
    assert "Slow" in text(client.get("/job-metrics?hours=8"))
    assert "runs-data" in page


def test_metrics_parse_and_take_a_bounded_number_of_round_trips(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    for q in range(50):
        enqueue(redis_url, "Q", q, queue=f"q{q}")
    record(r, "Fast", [5.0, 5.0, 40.0], failures=1)
    r.hset("swarmd:restarts", mapping={"crash": 2})
    r.hset("swarmd:recovery", mapping={"recovered": 4, "poison": 1})
    zadd(r, "dead", failed_job())
    with connection.connect(redis_url) as conn:
        fake_process(conn, tmp_path, {})
    client_r = redis.Redis.from_url(redis_url, connection_class=CountingConnection)
    client_r.ping()
    app = Dashboard(Admin(client_r))
    before = CountingConnection.sent
    response = Client(app).get("/metrics")
    trips = CountingConnection.sent - before
    assert response.status_code == 200 and trips <= 5
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text(response))
        for s in family.samples
    }
    assert samples[("swarmd_queue_size", (("queue", "q7"),))] == 1
    assert ("swarmd_queue_latency_seconds", (("queue", "q7"),)) in samples
    assert samples[("swarmd_dead_size", ())] == 1
    assert samples[("swarmd_job_runs_total", (("class", "Fast"),))] == 4
    assert samples[("swarmd_job_failures_total", (("class", "Fast"),))] == 1
    assert samples[("swarmd_job_duration_seconds_count", (("class", "Fast"),))] == 3
    assert samples[("swarmd_job_duration_seconds_bucket", (("class", "Fast"), ("le", "0.02")))] == 2
    assert samples[("swarmd_worker_restarts_total", (("reason", "crash"),))] == 2
    assert samples[("swarmd_worker_restarts_total", (("reason", "memory"),))] == 0
    assert samples[("swarmd_jobs_recovered_total", ())] == 4
    assert samples[("swarmd_jobs_poisoned_total", ())] == 1
    busy = [k for k in samples if k[0] == "swarmd_process_busy"]
    assert len(busy) == 1 and samples[("swarmd_redis_up", ())] == 1
    client_r.close()


def test_metrics_when_redis_is_down(redis_factory: Any) -> None:
    server = redis_factory()
    app = create_app(server.url)
    server.stop()
    response = Client(app).get("/metrics")
    assert response.status_code == 200 and "swarmd_redis_up 0.0" in text(response)
    assert Client(app).get("/").status_code == 503
