"""The dashboard's WSGI application: routes, security (Basic auth, CSRF, CSP, read-only) and pages.

Security, since the dashboard can delete and re-run jobs:

- HTTP Basic auth when a username and password are set, both compared with `hmac.compare_digest`
  (``swarmctl web`` refuses to listen off loopback without them);
- every state-changing request is a POST carrying a CSRF token: a random token in a cookie
  (``HttpOnly``, ``SameSite=Strict``, scoped to the mount path) signed with HMAC-SHA256, and the same
  token in a hidden form field (double submit). A POST whose cookie signature or field does not match
  is refused with 403. (No check of the ``Origin`` header: behind a reverse proxy that rewrites
  ``Host`` it would refuse every legitimate POST, and another site can read neither the cookie nor a
  page holding the token.);
- everything from Redis (args, error messages, class, queue and host names) is rendered by
  autoescaping templates; JSON for the charts goes into ``<script type="application/json">`` through
  Jinja's ``tojson`` (which escapes ``<``, ``>``, ``&`` and ``'``), never into executable script;
- a strict Content-Security-Policy (scripts and styles only from the dashboard's own static files,
  no inline script, no framing), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy``;
- read-only mode renders no buttons or forms that change anything and answers every POST with 403.

The CSRF signing key is ``SWARMD_WEB_SECRET`` if set, else derived from the configured password, else
random per process (then, behind a multi-process server without auth, set ``SWARMD_WEB_SECRET`` so
that every process accepts the others' tokens).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import math
import mimetypes
import os
import secrets
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

import jinja2
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, MapAdapter, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from swarmd import connection, metrics, prometheus
from swarmd.admin import KINDS, Admin, Entry, Kind, Outcome
from swarmd.config import RedisSettings
from swarmd.config import redis_url as resolve_redis_url
from swarmd.errors import NotFound as AdminNotFound
from swarmd.version import __version__

__all__ = ["Dashboard", "create_app"]

PAGE_SIZE = 25
SCAN_STEP = 500  # entries looked at per ZSCAN step of a filtered listing (at most 10 steps a request)
CSRF_COOKIE = "swarmd_csrf"
CSRF_FIELD = "csrf"
SETS: dict[str, Kind] = {"retries": "retry", "scheduled": "schedule", "dead": "dead"}
TITLES = {"retries": "Retries", "scheduled": "Scheduled", "dead": "Dead"}
HISTORY_DAYS = (7, 30, 90)
METRIC_HOURS = (1, 8, 24)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC = resources.files("swarmd.web").joinpath("static")
STATIC_FILES = frozenset(
    p.name for p in STATIC.iterdir() if p.is_file() and not p.name.startswith(".")
)  # the only files /static/ serves: no path from a URL ever reaches the file system

URLS = Map(
    [
        Rule("/", endpoint="dashboard"),
        Rule("/stats.json", endpoint="stats"),
        Rule("/busy", endpoint="busy", methods=["GET", "POST"]),
        Rule("/queues", endpoint="queues"),
        Rule("/queues/<path:name>", endpoint="queue", methods=["GET", "POST"]),
        Rule("/<any(retries, scheduled, dead):section>", endpoint="set", methods=["GET", "POST"]),
        Rule(
            "/<any(retries, scheduled, dead):section>/<path:key>", endpoint="entry", methods=["GET", "POST"]
        ),
        Rule("/job-metrics", endpoint="job_metrics"),
        Rule("/periodic", endpoint="periodic"),
        Rule("/metrics", endpoint="metrics"),
        Rule("/static/<path:filename>", endpoint="static"),
    ],
    strict_slashes=False,
)


def create_app(
    redis_url: str | RedisSettings | None = None,
    namespace: str | None = None,
    read_only: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> Dashboard:
    """The dashboard as a WSGI callable. ``redis_url``: a URL or `swarmd.config.RedisSettings` (Sentinel,
    TLS files); None: ``SWARMD_REDIS_URL``, else ``REDIS_URL``, else ``redis://localhost:6379/0`` (the
    client's rule); ``namespace`` None: ``SWARMD_NAMESPACE`` or
    none. With ``username``, Basic auth is required (``password`` None: ``SWARMD_WEB_PASSWORD``).
    Raises `swarmd.errors.ConfigError` for a malformed URL and `ValueError` for a username without a
    password (or the reverse)."""
    url = redis_url if isinstance(redis_url, RedisSettings) else resolve_redis_url(redis_url)
    if namespace is None:
        namespace = os.environ.get("SWARMD_NAMESPACE") or None
    if password is None and username is not None:
        password = os.environ.get("SWARMD_WEB_PASSWORD") or None
    if (username is None) != (password is None):
        raise ValueError("web auth: set both a username and a password, or neither")
    return Dashboard(
        Admin.from_url(url, namespace), read_only=read_only, username=username, password=password
    )


def _clean(text: str) -> str:
    """A lone surrogate (a valid ``\\ud800`` escape in a job's JSON) shown as ``\\ud800``, not an error."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=repr)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if value is None:
        return ""
    seconds = ((now or dt.datetime.now(dt.UTC)) - value).total_seconds()
    return _duration(abs(seconds)) + (" ago" if seconds >= 0 else " from now")


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    if math.isinf(value):
        return f"> {metrics.BOUNDS_MS[-1] / 1000:g} s"
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _bytes(kb: int | None) -> str:
    if kb is None:
        return ""
    return f"{kb / 1024:.1f} MB" if kb < 1024 * 1024 else f"{kb / 1024 / 1024:.2f} GB"


def _encode_raw(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_raw(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BadRequest("malformed job reference") from None


class Dashboard:
    """The WSGI application (`create_app`). ``admin`` is used from several threads: redis-py's pool
    is thread-safe and nothing else here keeps per-request state."""

    def __init__(
        self,
        admin: Admin,
        *,
        read_only: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.admin = admin
        self.read_only = read_only
        self.username = username
        self.password = password
        secret = os.environ.get("SWARMD_WEB_SECRET")
        if secret:
            self._key = hashlib.sha256(b"swarmd-web-csrf:" + secret.encode()).digest()
        elif password is not None:
            self._key = hashlib.sha256(f"swarmd-web-csrf:{username}:{password}".encode()).digest()
        else:
            self._key = secrets.token_bytes(32)
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("swarmd.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            when=_when,
            compact=_compact,
            ago=_ago,
            duration=_duration,
            ms=_ms,
            kb=_bytes,
            pretty=_pretty,
            raw=_encode_raw,
        )
        self.metrics_app = prometheus.wsgi_app(admin)
        self._views: dict[str, Callable[..., Response]] = {
            "dashboard": self.dashboard,
            "stats": self.stats,
            "busy": self.busy,
            "queues": self.queues,
            "queue": self.queue,
            "set": self.sorted_set,
            "entry": self.entry,
            "job_metrics": self.job_metrics,
            "periodic": self.periodic,
            "static": self.static,
        }

    # -- WSGI ----------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        adapter = URLS.bind_to_environ(environ)
        try:
            endpoint, values = adapter.match()
            if endpoint == "static":  # assets carry no job data and need no login (the CSP loads them)
                response = self.static(request, adapter, **values)
            else:
                self._authorize(request)
                if endpoint == "metrics":
                    return self._metrics(environ, start_response)  # type: ignore[no-any-return]
                if request.method == "POST":
                    self._check_post(request)
                response = self._views[endpoint](request, adapter, **values)
        except HTTPException as exc:
            response = self._error(request, adapter, exc)
        except connection.RedisError as exc:
            response = self._error(request, adapter, None, f"Redis error: {exc}", 503)
        self._secure(response, request)
        return response(environ, start_response)

    def _metrics(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def with_headers(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            headers = [*headers, ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]
            return start_response(status, headers, *rest)

        return self.metrics_app(environ, with_headers)

    def _authorize(self, request: Request) -> None:
        if self.username is None or self.password is None:
            return
        auth = request.authorization
        given_user = (auth.username or "") if auth is not None and auth.type == "basic" else ""
        given_password = (auth.password or "") if auth is not None and auth.type == "basic" else ""
        # Both compared every time, in constant time: no timing tells which one was wrong.
        user_ok = hmac.compare_digest(given_user.encode(), self.username.encode())
        password_ok = hmac.compare_digest(given_password.encode(), self.password.encode())
        if not (user_ok and password_ok):
            raise _Unauthorized()

    # -- CSRF ------------------------------------------------------------------------------------------
    def _sign(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def _cookie_token(self, request: Request) -> str | None:
        value = request.cookies.get(CSRF_COOKIE, "")
        token, _, signature = value.partition(".")
        if token and signature and hmac.compare_digest(signature.encode(), self._sign(token).encode()):
            return token
        return None

    def _check_post(self, request: Request) -> None:
        if self.read_only:
            raise Forbidden("the dashboard is read-only")
        token = self._cookie_token(request)
        given = request.form.get(CSRF_FIELD, "")
        if token is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise Forbidden("missing or invalid CSRF token: reload the page and try again")

    def _secure(self, response: Response, request: Request) -> None:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            h.setdefault("Cache-Control", "no-store")

    # -- rendering -------------------------------------------------------------------------------------
    def render(
        self, request: Request, adapter: MapAdapter, template: str, http_status: int = 200, **context: Any
    ) -> Response:
        token = self._cookie_token(request)
        fresh = token is None
        if token is None:
            token = secrets.token_urlsafe(24)

        def url(endpoint: str, **values: Any) -> str:
            return adapter.build(endpoint, values)

        body = self.env.get_template(template).render(
            url=url,
            csrf=token,
            csrf_field=CSRF_FIELD,
            read_only=self.read_only,
            version=__version__,
            request_path=request.path,
            args=request.args,
            now=dt.datetime.now(dt.UTC),
            sets=SETS,
            titles=TITLES,
            **context,
        )
        response = Response(_clean(body).encode("utf-8"), status=http_status, mimetype="text/html")
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                f"{token}.{self._sign(token)}",
                path=(request.script_root or "") + "/",
                httponly=True,
                samesite="Strict",
                secure=request.scheme == "https",
            )
        return response

    def _error(
        self,
        request: Request,
        adapter: MapAdapter,
        exc: HTTPException | None,
        message: str | None = None,
        status: int | None = None,
    ) -> Response:
        code = status or (exc.code if exc is not None and exc.code else 500)
        text = message or (exc.description if exc is not None else None) or "error"
        if isinstance(exc, _Unauthorized):
            return Response(
                "authentication required\n",
                401,
                {"WWW-Authenticate": 'Basic realm="swarmd", charset="UTF-8"'},
                mimetype="text/plain",
            )
        if isinstance(exc, MethodNotAllowed):
            response = exc.get_response()
            return Response(
                str(text) + "\n", code, {"Allow": response.headers.get("Allow", "")}, mimetype="text/plain"
            )
        try:
            return self.render(request, adapter, "error.html", http_status=code, code=code, message=str(text))
        except Exception:  # never an error while reporting one
            return Response(f"{code} {text}\n", code, mimetype="text/plain")

    def _back(self, adapter: MapAdapter, endpoint: str, message: str, **values: Any) -> Response:
        """303 to a page (the POST-redirect-GET pattern) with a one-line message."""
        target = adapter.build(endpoint, {**values, "msg": message})
        return redirect(target, code=303)

    # -- pages -----------------------------------------------------------------------------------------
    def dashboard(self, request: Request, adapter: MapAdapter) -> Response:
        days = request.args.get("days", "30")
        days_n = int(days) if days.isdigit() and int(days) in HISTORY_DAYS else 30
        status = self.admin.status()
        history = self.admin.history(days_n)
        info = self.admin.redis_info()
        chart = {
            "days": [d.date.isoformat() for d in reversed(history)],
            "processed": [d.processed for d in reversed(history)],
            "failed": [d.failed for d in reversed(history)],
        }
        return self.render(
            request,
            adapter,
            "dashboard.html",
            status=status,
            totals=status.totals,
            history=history,
            days=days_n,
            history_days=HISTORY_DAYS,
            info=info,
            chart=chart,
            busy=sum(p.busy for p in status.processes),
        )

    def stats(self, request: Request, adapter: MapAdapter) -> Response:
        """The live graph's data: totals now (the page turns successive values into rates)."""
        t = self.admin.totals()
        data = {
            "time": dt.datetime.now(dt.UTC).timestamp(),
            "processed": t.processed,
            "failed": t.failed,
            "enqueued": t.enqueued,
            "retries": t.retries,
            "scheduled": t.scheduled,
            "dead": t.dead,
            "in_flight": t.in_flight,
        }
        return Response(json.dumps(data), mimetype="application/json", headers={"Cache-Control": "no-store"})

    def busy(self, request: Request, adapter: MapAdapter) -> Response:
        if request.method == "POST":
            action = request.form.get("action")
            identity = request.form.get("identity") or None
            if action not in ("quiet", "stop"):
                raise BadRequest("action: expected quiet or stop")
            try:
                done = self.admin.quiet(identity) if action == "quiet" else self.admin.stop(identity)
            except AdminNotFound as exc:
                return self._back(adapter, "busy", str(exc))
            verb = "Quiet" if action == "quiet" else "Stop"
            return self._back(adapter, "busy", f"{verb} sent to {len(done)} process(es)")
        processes = self.admin.processes()
        jobs = self.admin.busy_jobs()
        return self.render(request, adapter, "busy.html", processes=processes, jobs=jobs)

    def queues(self, request: Request, adapter: MapAdapter) -> Response:
        return self.render(request, adapter, "queues.html", queues=self.admin.queues())

    def queue(self, request: Request, adapter: MapAdapter, name: str) -> Response:
        if request.method == "POST":
            action = request.form.get("action")
            if action == "delete":
                raw = _decode_raw(request.form.get("job", ""))
                gone = not self.admin.delete_queue_job(name, raw)
                return self._back(adapter, "queue", "job already gone" if gone else "job deleted", name=name)
            if action == "clear":
                if request.form.get("confirm") != "yes":
                    raise BadRequest("clearing a queue needs the confirmation box ticked")
                try:
                    n = self.admin.clear_queue(name)
                except AdminNotFound as exc:
                    return self._back(adapter, "queues", str(exc))
                return self._back(adapter, "queues", f"queue {name} cleared: {n} job(s) deleted")
            raise BadRequest("action: expected delete or clear")
        page = _page_number(request)
        try:
            if request.args.get("clear"):
                size = self.admin.queue_size(name)
                return self.render(request, adapter, "clear.html", name=name, size=size)
            listing = self.admin.queue_page(name, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        except AdminNotFound as exc:
            raise NotFound(str(exc)) from None
        return self.render(request, adapter, "queue.html", name=name, listing=listing, page=page)

    def sorted_set(self, request: Request, adapter: MapAdapter, section: str) -> Response:
        kind = SETS[section]
        if request.method == "POST":
            return self._set_action(request, adapter, section, kind)
        page = _page_number(request)
        job_class = request.args.get("class", "").strip() or None
        text = request.args.get("q", "").strip() or None
        cursor_text = request.args.get("cursor", "0")
        listing = None
        result = None
        if job_class or text:
            cursor = int(cursor_text) if cursor_text.isdigit() else 0
            result = self.admin.search_page(
                kind, job_class, text, cursor=cursor, limit=PAGE_SIZE, count=SCAN_STEP
            )
        else:
            listing = self.admin.page(kind, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        return self.render(
            request,
            adapter,
            "set.html",
            section=section,
            kind=kind,
            title=TITLES[section],
            listing=listing,
            result=result,
            page=page,
            job_class=job_class or "",
            text=text or "",
        )

    def _set_action(self, request: Request, adapter: MapAdapter, section: str, kind: Kind) -> Response:
        action = request.form.get("action", "")
        allowed = {"retry": ("retry", "dead"), "delete": KINDS, "kill": ("retry", "schedule")}
        allowed["add_to_queue"] = ("schedule",)
        if action not in allowed or kind not in allowed[action]:
            raise BadRequest(f"action {action!r:.40} does not apply to {section}")
        if request.form.get("all"):
            if request.form.get("confirm") != "yes":
                raise BadRequest("an action on every job needs the confirmation box ticked")
            if action == "retry":
                outcome = self.admin.retry_all(kind)
            elif action == "delete":
                outcome = self.admin.delete_all(kind)
            elif action == "kill":
                outcome = self.admin.kill_all(kind)
            else:
                outcome = self.admin.add_all()
            return self._back(adapter, "set", _outcome(action, outcome), section=section)
        entries = []
        for key in request.form.getlist("key")[:1000]:
            try:
                entries.append(self.admin.entry(kind, key))
            except AdminNotFound:
                continue
        outcome = self._act(kind, action, entries)
        missing = len(request.form.getlist("key")[:1000]) - len(entries)
        outcome = Outcome(outcome.done, outcome.gone + missing, outcome.undecodable)
        return self._back(adapter, "set", _outcome(action, outcome), section=section)

    def _act(self, kind: Kind, action: str, entries: list[Entry]) -> Outcome:
        if action == "retry":
            return self.admin.retry_now(kind, entries)
        if action == "delete":
            return self.admin.delete(kind, entries)
        if action == "kill":
            return self.admin.kill(entries)
        return self.admin.add_to_queue(entries)

    def entry(self, request: Request, adapter: MapAdapter, section: str, key: str) -> Response:
        kind = SETS[section]
        if request.method == "POST":
            action = request.form.get("action", "")
            allowed = {"retry": ("retry", "dead"), "delete": KINDS, "kill": ("retry", "schedule")}
            allowed["add_to_queue"] = ("schedule",)
            if action not in allowed or kind not in allowed[action]:
                raise BadRequest(f"action {action!r:.40} does not apply to {section}")
            try:
                found = self.admin.entry(kind, key)
            except AdminNotFound:
                return self._back(adapter, "set", "job already gone", section=section)
            outcome = self._act(kind, action, [found])
            return self._back(adapter, "set", _outcome(action, outcome), section=section)
        try:
            found = self.admin.entry(kind, key)
        except AdminNotFound as exc:
            raise NotFound(str(exc)) from None
        return self.render(
            request, adapter, "entry.html", section=section, kind=kind, title=TITLES[section], e=found
        )

    def job_metrics(self, request: Request, adapter: MapAdapter) -> Response:
        hours_text = request.args.get("hours", "1")
        hours = int(hours_text) if hours_text.isdigit() and int(hours_text) in METRIC_HOURS else 1
        report = self.admin.job_metrics(hours)
        top = report.classes[:8]
        step = report.bucket_s
        chart = {
            "times": [t.timestamp() for t in report.times],
            "step": step,
            "series": [{"name": c.name, "runs": list(c.series)} for c in top],
        }
        return self.render(
            request,
            adapter,
            "job_metrics.html",
            report=report,
            hours=hours,
            metric_hours=METRIC_HOURS,
            chart=chart,
            labels=metrics.LABELS,
        )

    def periodic(self, request: Request, adapter: MapAdapter) -> Response:
        """The periodic entries the workers published, with their last and next run."""

        def at(ts: float | None) -> dt.datetime | None:
            return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)

        rows = [(e, at(e.last), at(e.next)) for e in self.admin.periodic()]
        return self.render(request, adapter, "periodic.html", rows=rows)

    def static(self, request: Request, adapter: MapAdapter, filename: str) -> Response:
        if filename not in STATIC_FILES:
            raise NotFound()
        data = STATIC.joinpath(filename).read_bytes()
        mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if filename.endswith(".LICENSE"):
            mimetype = "text/plain"
        response = Response(data, mimetype=mimetype)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response


class _Unauthorized(HTTPException):
    code = 401
    description = "authentication required"


def _page_number(request: Request) -> int:
    text = request.args.get("page", "1")
    return max(1, min(int(text), 10_000_000)) if text.isdigit() and len(text) < 12 else 1


def _outcome(action: str, outcome: Outcome) -> str:
    verbs = {
        "retry": "retried",
        "delete": "deleted",
        "kill": "killed",
        "add_to_queue": "added to their queues",
    }
    text = f"{outcome.done} job(s) {verbs.get(action, action)}"
    if outcome.gone:
        text += f", {outcome.gone} already gone"
    if outcome.undecodable:
        text += f", {outcome.undecodable} undecodable left in place (delete them)"
    return text
