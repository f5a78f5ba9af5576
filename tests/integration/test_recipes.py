"""The README's recipes (Sentry, Django, Flask, SQLAlchemy), run as written against a real swarmd.

Each test takes the recipe's code blocks out of README.md (under its ``#### <name>`` heading) into the
file the block's first comment names (``myapp/swarmd_hooks.py``, ...), adds a job module of its own that
records what it saw in the ledger, and runs ``python -m swarmd`` on it: a README change that breaks a
recipe breaks its test.
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LEDGER_NOTE, Daemon, wait_until
from tests.integration.conftest import App

README = Path(__file__).resolve().parents[2] / "README.md"

LEDGER_HELPER = 'import os\n\nLEDGER = os.environ["SWARMD_TEST_LEDGER"]\n\n' + LEDGER_NOTE


def recipe_blocks(heading: str) -> list[str]:
    """The ```python blocks under ``#### heading`` in README.md, in order."""
    text = README.read_text()
    section = text.split(f"\n#### {heading}\n", 1)[1]
    section = re.split(r"\n#{2,4} ", section, maxsplit=1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, f"no python block under #### {heading}"
    return blocks


def install(app: App, heading: str) -> list[str]:
    """Write each recipe block to the file its first line names (``# myapp/x.py ...``)."""
    written = []
    for block in recipe_blocks(heading):
        found = re.match(r"# (\S+\.py)", block)
        assert found, f"the {heading} recipe's block does not start with its file name: {block[:60]!r}"
        path = app.root / found[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(block)
        written.append(found[1])
    return written


def write(app: App, relative: str, source: str) -> None:
    path = app.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


def start(app: App, env: dict[str, str], *require: str, **settings: Any) -> Daemon:
    args = [arg for module in require for arg in ("-r", module)]
    return app.start(*args, config=app.config(**settings), require=False, env=env)


# -- Sentry ------------------------------------------------------------------------------------------------


class FakeSentry(BaseHTTPRequestHandler):
    """Sentry's envelope endpoint: keeps every event it is sent."""

    events: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        lines = body.split(b"\n")
        for header, item in itertools.pairwise(lines[1:]):  # after the envelope's header
            try:
                if json.loads(header).get("type") == "event":
                    self.events.append(json.loads(item))
            except (ValueError, AttributeError):
                continue
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sentry() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    events: list[dict[str, Any]] = []
    handler = type("Handler", (FakeSentry,), {"events": events})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://publickey@127.0.0.1:{server.server_address[1]}/42", events
    server.shutdown()
    server.server_close()


def test_sentry_recipe_reports_failures_with_the_job_context(
    app: App, sentry: tuple[str, list[dict[str, Any]]]
) -> None:
    dsn, events = sentry
    assert install(app, "Sentry") == ["myapp/swarmd_hooks.py"]
    write(
        app,
        "myapp/jobs.py",
        """
        import swarmd


        @swarmd.job(name="Charge")
        def charge(customer):
            raise ValueError(f"card declined for {customer}")
        """,
    )
    env = app.env(SENTRY_DSN=dsn, APP_ENV="test")
    d = start(app, env, "myapp.swarmd_hooks", "myapp.jobs")
    jid = app.enqueue("Charge", "ann", retry=3)
    wait_until(lambda: events, 20, what="an event at the fake Sentry")
    [event] = events
    [exception] = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("ValueError", "card declined for ann")
    assert event["tags"]["swarmd.class"] == "Charge" and event["tags"]["swarmd.queue"] == "default"
    assert event["contexts"]["swarmd job"] == {"jid": jid, "args": ["ann"], "retry_count": 0}
    assert event["environment"] == "test"
    wait_until(lambda: app.r.zcard("retry") == 1, 10, what="the failure stored as usual")
    d.signal(15)
    assert d.wait_exit() == 0
    assert len(events) == 1


# -- Django ------------------------------------------------------------------------------------------------

DJANGO_SETTINGS = """
import os

SECRET_KEY = "recipe-test"
INSTALLED_APPS = ["myapp"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["APP_DB"]}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
# Without disable_existing_loggers: False, dictConfig closes every handler and disables every logger
# that exists when django.setup() runs: swarmd's lines must keep coming all the same.
LOGGING = {"version": 1, "loggers": {"myapp": {"level": "INFO"}}}
"""

DJANGO_MODELS = """
from django.db import models


class User(models.Model):
    email = models.CharField(max_length=200)
"""

DJANGO_JOBS = (
    LEDGER_HELPER
    + """
import swarmd
from django.db import connection

from myapp.models import User  # at the top: django.setup() ran right after myapp.swarmd_hooks


@swarmd.job
def send_welcome(user_id):
    fresh = connection.connection is None  # the middleware closed the previous job's connection
    user = User.objects.get(pk=user_id)
    note("welcome", user.email, fresh)
"""
)

SIGN_UPS = """
import os

import django
import redis

django.setup()

from django.core.management import call_command
from django.db import transaction

from myapp.accounts import sign_up

call_command("migrate", run_syncdb=True, verbosity=0)
r = redis.Redis.from_url(os.environ["SWARMD_REDIS_URL"])


class Rollback(Exception):
    pass


try:
    with transaction.atomic():
        sign_up("rolled-back@example.com")
        assert r.llen("queue:default") == 0, "pushed before the commit"
        raise Rollback
except Rollback:
    pass
assert r.llen("queue:default") == 0, "pushed for a rolled-back row"
sign_up("ann@example.com")
sign_up("bob@example.com")
assert r.llen("queue:default") == 2
print("signed up")
"""


def test_django_recipe_sets_up_django_closes_connections_and_enqueues_after_commit(app: App) -> None:
    assert install(app, "Django") == ["myapp/swarmd_hooks.py", "myapp/accounts.py"]
    write(app, "myapp/settings.py", DJANGO_SETTINGS)
    write(app, "myapp/models.py", DJANGO_MODELS)
    write(app, "myapp/jobs.py", DJANGO_JOBS)
    env = app.env(
        DJANGO_SETTINGS_MODULE="myapp.settings",
        APP_DB=str(app.root / "db.sqlite3"),
        SWARMD_REDIS_URL=app.redis_url,
    )
    signed = subprocess.run(
        [sys.executable, "-c", SIGN_UPS], cwd=app.root, env=env, capture_output=True, text=True, timeout=60
    )
    assert signed.stdout.strip() == "signed up", signed.stdout + signed.stderr
    del env["SWARMD_REDIS_URL"]  # the daemon takes its Redis from the config
    d = start(app, env, "myapp.swarmd_hooks", "myapp.jobs", concurrency=1)
    wait_until(lambda: len(app.tokens("welcome")) == 2, 20, what="both welcome jobs")
    assert sorted(e[1:] for e in app.entries()) == [["ann@example.com", "True"], ["bob@example.com", "True"]]
    d.signal(15)
    assert d.wait_exit() == 0
    assert (
        len([line for line in d.lines() if "class=myapp.jobs.send_welcome" in line and "done:" in line]) == 2
    )
    assert "bye" in d.output()


# -- Flask -------------------------------------------------------------------------------------------------

FLASK_APP = """
from flask import Flask


def create_app():
    app = Flask("myapp")
    app.config["GREETING"] = "hello-from-flask"
    return app
"""

FLASK_JOBS = (
    LEDGER_HELPER
    + """
import asyncio

import swarmd
from flask import current_app, g


@swarmd.job(name="Greet")
def greet(token):
    g.token = token  # per job: g lives in the app context the middleware pushed
    note("done", token, current_app.config["GREETING"], g.token)


@swarmd.job(name="AsyncGreet")
async def async_greet(token):
    await asyncio.sleep(0)
    note("done", token, current_app.config["GREETING"])
"""
)


def test_flask_recipe_gives_jobs_an_app_context_sync_and_async(app: App) -> None:
    write(app, "myapp/__init__.py", FLASK_APP)
    assert install(app, "Flask") == ["myapp/swarmd_hooks.py"]
    (app.root / "myapp" / "__init__.py").write_text(textwrap.dedent(FLASK_APP))  # install() touched it
    write(app, "myapp/jobs.py", FLASK_JOBS)
    start(app, app.env(), "myapp.swarmd_hooks", "myapp.jobs")
    app.enqueue("Greet", "g1")
    app.enqueue("AsyncGreet", "g2")
    app.wait_tokens(["g1", "g2"])
    assert sorted(app.entries()) == [
        ["done", "g1", "hello-from-flask", "g1"],
        ["done", "g2", "hello-from-flask"],
    ]


# -- SQLAlchemy --------------------------------------------------------------------------------------------

SQLALCHEMY_DB = """
import os

from sqlalchemy import create_engine, event, text

engine = create_engine(f"sqlite:///{os.environ['APP_DB']}")


@event.listens_for(engine, "connect")
def remember_pid(dbapi_connection, record):
    record.info["pid"] = os.getpid()  # which process opened this connection


with engine.begin() as conn:  # the app touches its database at import: the pool keeps a connection
    conn.execute(text("CREATE TABLE IF NOT EXISTS visits (token TEXT, pid INTEGER)"))
"""

SQLALCHEMY_JOBS = (
    LEDGER_HELPER
    + """
import swarmd
from sqlalchemy import text

from myapp.db import engine


@swarmd.job(name="Visit")
def visit(token):
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO visits VALUES (:t, :p)"), {"t": token, "p": os.getpid()})
        note("done", token, os.getpid(), conn.connection.info["pid"])
"""
)


def test_sqlalchemy_recipe_gives_each_worker_its_own_connections(app: App) -> None:
    assert install(app, "SQLAlchemy") == ["myapp/swarmd_hooks.py"]
    write(app, "myapp/db.py", SQLALCHEMY_DB)
    write(app, "myapp/jobs.py", SQLALCHEMY_JOBS)
    db = app.root / "db.sqlite3"
    env = app.env(APP_DB=str(db))
    d = start(app, env, "myapp.swarmd_hooks", "myapp.jobs", preload=True, processes=2)
    tokens = [f"v{i}" for i in range(20)]
    for token in tokens:
        app.enqueue("Visit", token)
    app.wait_tokens(tokens)
    ran = [e for e in app.entries() if e[0] == "done"]
    assert all(worker == opened for _, _, worker, opened in ran)  # never the supervisor's connection
    assert str(d.pid) not in {e[2] for e in ran}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM visits").fetchone() == (20,)
