"""Fixtures for the dashboard's browser tests: Debian's chromium driven by Playwright (never a browser
that Playwright downloads), a real swarm (`app`, from the integration fixtures) and a real ``swarmctl
web`` subprocess. Without chromium the tests skip with one line saying how to enable them (under
``CI=true`` they fail instead: see `require_tool`)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool, wait_until
from tests.integration.conftest import App, app, free_port

__all__ = ["App", "Web", "app", "browser", "web"]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Web:
    """A ``swarmctl web`` subprocess on a free loopback port."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, out: Path) -> None:
        self.proc = proc
        self.port = port
        self.out = out
        self.url = f"http://127.0.0.1:{port}"

    def output(self) -> str:
        return self.out.read_text(errors="replace")


@pytest.fixture
def web(app: App, tmp_path: Path) -> Iterator[Callable[..., Web]]:
    """``web(*flags, config=None, env=None, wait=True)`` starts ``swarmctl web`` against the app's Redis."""
    started: list[Web] = []

    def start(
        *flags: str, config: Path | None = None, env: dict[str, str] | None = None, wait: bool = True
    ) -> Web:
        port = free_port()
        argv = [sys.executable, "-m", "swarmd.ctl", "web", *flags]
        if "--bind" not in flags:
            argv += ["--bind", f"127.0.0.1:{port}"]
        else:
            port = int(flags[flags.index("--bind") + 1].rsplit(":", 1)[1])
        if config is not None:
            argv += ["-C", str(config)]
        out = tmp_path / f"web-{len(started)}.out"
        environment = app.env(SWARMD_REDIS_URL=app.redis_url, **(env or {}))
        with open(out, "wb") as f:
            proc = subprocess.Popen(argv, cwd=app.root, env=environment, stdout=f, stderr=subprocess.STDOUT)
        server = Web(proc, port, out)
        started.append(server)
        if wait:

            def answers() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"swarmctl web exited with {proc.returncode}:\n{server.output()}")
                try:
                    urllib.request.urlopen(f"{server.url}/static/style.css", timeout=2).close()
                except (urllib.error.URLError, ConnectionError):
                    return False
                return True

            wait_until(answers, 15, what="swarmctl web to answer")
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(10)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``browser(**context_options)`` -> a Playwright BrowserContext on Debian's chromium, each with a
    fresh ``--user-data-dir``; all closed at teardown."""
    chromium = require_tool("chromium", "chromium", "browser tests of the dashboard")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - a dev dependency
        pytest.skip("playwright not installed; enable with `pip install -e '.[dev]'`")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    manager = sync_playwright().start()
    contexts: list[Any] = []

    def open_context(**options: Any) -> Any:
        profile = tmp_path / f"profile-{len(contexts)}"
        profile.mkdir()
        context = manager.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            **options,
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()
    manager.stop()
