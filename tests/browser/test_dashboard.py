"""The dashboard in a real browser (Debian's chromium through Playwright), served by a real ``swarmctl
web`` against a real swarm running real jobs: every page renders live data, every button does what it
says (checked in Redis), job data stays text, CSRF, auth and read-only hold. One test writes the
screenshot README shows (docs/dashboard.png)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from swarmd import payload
from tests.browser.conftest import Web
from tests.conftest import wait_until
from tests.integration.conftest import App, free_port

# README shows docs/dashboard.png. It is rewritten only when asked (SWARMD_UPDATE_SCREENSHOT=1), so a
# test run does not leave the checkout modified; otherwise the screenshot goes to the test's tmp dir.
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
XSS_ARGS = [
    "<script>alert('args')</script>",
    '"><img src=x onerror=alert(1)>',
    "</pre><b onmouseover=alert(2)>hi</b>",
]
XSS_ERROR = "<script>alert('error')</script><svg onload=alert(3)>"


def dead_job(app: App, cls: str, args: list[Any], message: str, score: float) -> bytes:
    job = payload.build(cls, args, None, {"queue": "default"})
    payload.record_failure(job, "ValueError", message, [f"File jobs.py, line 3, in {cls}", message])
    raw = payload.encode(job)
    app.r.zadd("dead", {raw: score})
    return raw


def points(page: Any) -> int:
    return int(page.get_attribute("#live", "data-points") or 0)


def busy_swarm(app: App, processes: int = 2) -> None:
    """A swarm with something in every page: runs, failures (retries), a running job, a schedule."""
    daemon = app.start("-p", str(processes), config=app.config(beat_interval=0.3))
    app.wait_booted(daemon, count=processes)
    for i in range(40):
        app.enqueue("Record", f"ok{i}")
    for i in range(6):
        app.enqueue("Fail", f"f{i}")
    app.enqueue("Block", "long")  # runs until its flag file exists: the Busy page shows it
    app.client.enqueue("Record", ["later"], None, {"queue": "default"}, at=time.time() + 3600)
    app.r.lpush("queue:mailers", *[app.raw_job("Mailer", i, queue="mailers") for i in range(12)])
    app.r.sadd("queues", "mailers")
    wait_until(lambda: app.r.zcard("retry") == 6, 20, what="six failures in retry")
    # Due in an hour rather than in ~20 s: they must stay in retry while the test looks at them.
    members = cast("list[bytes]", app.r.zrange("retry", 0, -1))
    app.r.zadd("retry", {m: time.time() + 3600 + i for i, m in enumerate(members)})
    wait_until(lambda: app.count("start")["long"] == 1, 20, what="the long job to start")


def test_every_page_renders_live_data_and_the_live_graph_moves(
    app: App, web: Callable[..., Web], browser: Callable[..., Any], tmp_path: Path
) -> None:
    busy_swarm(app)
    server = web()
    page = browser().new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{server.url}/?interval=1")
    wait_until(lambda: int(page.inner_text("#stat-processed").replace(",", "")) >= 46, 20, what="totals")
    assert page.inner_text("#stat-retries") == "6"
    wait_until(lambda: int(page.get_attribute("#live", "data-points") or 0) >= 2, 20, what="the live graph")
    assert page.locator("#live canvas").count() >= 1 and page.locator("#history canvas").count() >= 1
    assert "mailers" in page.inner_text("main") and "Redis" in page.inner_text("main")
    for days in ("7 days", "90 days"):
        page.click(f"text={days}")
        assert page.locator("#history canvas").count() >= 1
    page.goto(f"{server.url}/?interval=1")
    for i in range(8):  # a little traffic for the screenshot's live graph
        for j in range(20 * (i % 3 + 1)):
            app.enqueue("Record", f"s{i}-{j}")
        wait_until(lambda: points(page) > i, 10, what="a graph point")  # noqa: B023
    update = os.environ.get("SWARMD_UPDATE_SCREENSHOT") == "1" or not DOCS_SCREENSHOT.exists()
    shot = DOCS_SCREENSHOT if update else tmp_path / "dashboard.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")

    page.goto(f"{server.url}/busy")
    rows = page.locator("#processes tbody tr")
    assert rows.count() == 2
    assert "Block" in page.inner_text("#jobs") and "long" in page.inner_text("#jobs")

    page.goto(f"{server.url}/queues")
    assert "mailers" in page.inner_text("#queues") and "12" in page.inner_text("#queues")
    page.click("#queues >> text=mailers")
    assert page.locator("#jobs tbody tr").count() == 12

    page.goto(f"{server.url}/retries")
    assert page.locator("#entries tbody tr").count() == 6 and "boom" in page.inner_text("#entries")
    page.click("#entries tbody tr >> nth=0 >> a")
    assert "ValueError: boom" in page.inner_text("main") and "Next retry" in page.inner_text("main")
    page.goto(f"{server.url}/scheduled")
    assert "later" in page.inner_text("#entries")
    page.goto(f"{server.url}/dead")
    assert "No jobs" in page.inner_text("#entries")
    page.goto(f"{server.url}/job-metrics")
    wait_until(lambda: "Record" in page.inner_text("#classes"), 10, what="Record in the metrics table")
    assert page.get_attribute("#runs", "data-ready") == "1"
    assert not errors, errors  # no CSP violation, no script error
    (app.flags / "long").touch()


def test_every_button_does_what_it_says(
    app: App, web: Callable[..., Web], browser: Callable[..., Any]
) -> None:
    busy_swarm(app, processes=1)
    server = web()
    page = browser().new_page()
    r = app.r

    # Retries: one selected job retried now, one killed, one deleted; then "Kill all" needs its box.
    page.goto(f"{server.url}/retries")
    boxes = page.locator('input[name="key"]')
    boxes.nth(0).check()
    page.click("#selection >> text=Retry now")
    assert "1 job(s) retried" in page.inner_text(".flash")
    wait_until(
        lambda: r.zcard("retry") in (5, 6), 5, what="the retried job out of retry"
    )  # it fails again later
    page.goto(f"{server.url}/retries")
    before_dead = r.zcard("dead")
    page.locator('input[name="key"]').nth(0).check()
    page.click("#selection >> text=Kill")
    assert r.zcard("dead") == before_dead + 1
    page.locator('input[name="key"]').nth(0).check()
    page.click("#selection >> text=Delete")
    assert "1 job(s) deleted" in page.inner_text(".flash")
    left = r.zcard("retry")
    page.click("form.all >> text=Kill all")  # the required box is not ticked: the browser does not submit
    assert r.zcard("retry") == left
    page.check('form.all input[name="confirm"]')
    page.click("form.all >> text=Kill all")
    assert r.zcard("retry") == 0 and "killed" in page.inner_text(".flash")

    # Dead: select all on the page (select.js), retry them.
    page.goto(f"{server.url}/dead")
    dead = r.zcard("dead")
    page.check("input.select-all")
    page.click("#selection >> text=Retry now")
    assert f"{dead} job(s) retried" in page.inner_text(".flash") and r.zcard("dead") == 0

    # Scheduled: add to queue now.
    page.goto(f"{server.url}/scheduled")
    page.locator('input[name="key"]').nth(0).check()
    page.click("#selection >> text=Add to queue")
    assert r.zcard("schedule") == 0
    wait_until(lambda: app.count()["later"] == 1, 10, what="the scheduled job to run")

    # A queue: delete one job, then clear it through the confirmation page.
    page.goto(f"{server.url}/queues/mailers")
    page.locator("#jobs tbody tr >> nth=0 >> text=Delete").click()
    assert r.llen("queue:mailers") == 11
    page.click("text=Clear queue…")
    page.click("button:has-text('Clear queue')")  # without the box: nothing happens
    assert r.llen("queue:mailers") == 11
    page.check('input[name="confirm"]')
    page.click("button:has-text('Clear queue')")
    assert r.llen("queue:mailers") == 0 and "cleared" in page.inner_text(".flash")

    # Busy: Quiet, then Stop, through the process's signals list (obeyed at its next beat).
    page.goto(f"{server.url}/busy")
    identity = page.get_attribute("#processes tbody tr", "data-identity")
    assert identity
    page.click("#processes >> text=Quiet")
    wait_until(lambda: r.hget(identity, "quiet") == b"true", 10, what="the process to be quiet")
    page.goto(f"{server.url}/busy")
    assert "quiet" in page.inner_text("#processes")
    (app.flags / "long").touch()
    page.click("#processes >> button:has-text('Stop')")
    wait_until(lambda: not app.daemons[0].alive(), 20, what="the swarm to stop")


def test_job_data_stays_text(app: App, web: Callable[..., Web], browser: Callable[..., Any]) -> None:
    raw = dead_job(app, "<b>Evil</b><script>alert('class')</script>", XSS_ARGS, XSS_ERROR, 4242.0)
    app.r.lpush("queue:<script>alert('q')</script>", raw)
    app.r.sadd("queues", "<script>alert('q')</script>")
    server = web()
    page = browser().new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    for path in ("/", "/queues", "/dead", f"/dead/4242.0-{json.loads(raw)['jid']}", "/dead?q=script"):
        page.goto(server.url + path)
        page.mouse.move(200, 300)
        page.wait_for_timeout(100)
    page.goto(f"{server.url}/dead/4242.0-{json.loads(raw)['jid']}")
    assert "<script>alert('args')</script>" in page.inner_text("#args")
    assert '"><img src=x onerror=alert(1)>' in page.inner_text("#args")
    assert XSS_ERROR in page.inner_text("#error-message")
    assert "<b>Evil</b>" in page.inner_text("h1")
    assert page.locator("main img").count() == 0 and page.locator("main svg").count() == 0
    assert page.locator("main script").count() == 0
    page.goto(f"{server.url}/queues")
    assert "<script>alert('q')</script>" in page.inner_text("#queues")
    assert dialogs == []


def test_csrf_token_is_required(app: App, web: Callable[..., Web], browser: Callable[..., Any]) -> None:
    dead_job(app, "Keep", [1], "bad", 1.0)
    server = web()
    context = browser()
    page = context.new_page()
    page.goto(f"{server.url}/dead")
    form = {"action": "delete", "all": "1", "confirm": "yes"}
    refused = context.request.post(f"{server.url}/dead", form=form, max_redirects=0)
    assert refused.status == 403 and app.r.zcard("dead") == 1
    forged = context.request.post(f"{server.url}/dead", form={**form, "csrf": "forged"}, max_redirects=0)
    assert forged.status == 403 and app.r.zcard("dead") == 1
    token = page.get_attribute('input[name="csrf"]', "value")
    assert token
    ok = context.request.post(f"{server.url}/dead", form={**form, "csrf": token}, max_redirects=0)
    assert ok.status == 303 and app.r.zcard("dead") == 0


def test_auth_is_required_off_loopback(
    app: App, web: Callable[..., Web], browser: Callable[..., Any], tmp_path: Path
) -> None:
    port = free_port()
    refused = subprocess.run(
        [sys.executable, "-m", "swarmd.ctl", "web", "--bind", f"0.0.0.0:{port}"],
        cwd=app.root,
        env=app.env(SWARMD_REDIS_URL=app.redis_url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 78 and "without auth" in refused.stderr and "Traceback" not in refused.stderr
    config = tmp_path / "web.yml"
    config.write_text(yaml.safe_dump({"web": {"username": "ops"}}))
    server = web("--bind", f"0.0.0.0:{port}", config=config, env={"SWARMD_WEB_PASSWORD": "pa55"})
    anonymous = browser().request.get(f"http://127.0.0.1:{port}/")  # the browser's own HTTP stack
    assert anonymous.status == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    allowed = browser(http_credentials={"username": "ops", "password": "pa55"}).new_page()
    response = allowed.goto(f"http://127.0.0.1:{port}/retries")
    assert response is not None and response.status == 200 and "Retries" in allowed.inner_text("h1")
    wrong = urllib.request.Request(
        f"http://127.0.0.1:{port}/", headers={"Authorization": "Basic b3BzOm5vcGU="}
    )
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(wrong, timeout=10)  # ops:nope
    assert denied.value.code == 401
    denied.value.close()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0


def test_read_only_has_no_buttons_and_refuses_posts(
    app: App, web: Callable[..., Web], browser: Callable[..., Any]
) -> None:
    busy_swarm(app, processes=1)
    writable = web()
    server = web("--read-only")
    context = browser()
    page = context.new_page()
    for path in ("/", "/busy", "/queues", "/queues/mailers", "/retries", "/scheduled", "/job-metrics"):
        page.goto(server.url + path)
        labels = [b.strip() for b in page.locator("button").all_inner_texts()]
        assert set(labels) <= {"Filter"}, (path, labels)
        assert page.locator('form[method="post"]').count() == 0
    assert "read-only" in page.inner_text("header")
    other = context.new_page()
    other.goto(f"{writable.url}/retries")
    token = other.get_attribute('input[name="csrf"]', "value")
    retries = app.r.zcard("retry")
    for path in ("/retries", "/busy", "/queues/mailers"):
        response = context.request.post(
            server.url + path, form={"csrf": token or "", "action": "delete", "all": "1", "confirm": "yes"}
        )
        assert response.status == 403
    assert app.r.zcard("retry") == retries and app.r.llen("queue:mailers") == 12
    (app.flags / "long").touch()
    assert re.search(r"serving http://127\.0\.0\.1:\d+/, read-only", server.output())
