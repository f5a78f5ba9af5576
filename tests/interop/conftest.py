"""Interop fixtures: real Ruby Sidekiq 6.4.1 (Debian's ``ruby-sidekiq``) against swarmd on one Redis.

Without Ruby's Sidekiq the whole folder skips with one line saying how to enable it.
Under CI (``CI=true``) these tests must run: as root the first test's set-up installs ``ruby-sidekiq``
with apt-get, and any failure to get it is a loud test error, never a skip.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.helpers import Interop, RubyEnv

ENABLE = "Sidekiq interop tests need Ruby's Sidekiq 6; enable them with `apt-get install ruby-sidekiq`"
PROBE = (
    'require "sidekiq"; require "sidekiq/api"; '
    'require "sidekiq/web"; require "rack/mock"; print Sidekiq::VERSION'
)
APT_LOCK = "/tmp/swarmd-interop-apt.lock"


def _probe() -> RubyEnv | str:
    """The Ruby set-up, or why it is not usable."""
    ruby, sidekiq = shutil.which("ruby"), shutil.which("sidekiq")
    if ruby is None or sidekiq is None:
        return f"ruby: {ruby or 'missing'}, sidekiq command: {sidekiq or 'missing'}"
    done = subprocess.run([ruby, "-e", PROBE], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return f"ruby cannot load Sidekiq: {done.stderr.strip()[-500:]}"
    if not done.stdout.startswith("6."):
        return f"these tests target Sidekiq 6.x (Debian's ruby-sidekiq 6.4.1), found {done.stdout}"
    return RubyEnv(ruby, sidekiq, done.stdout)


def _apt_install() -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv, timeout in ((["apt-get", "update"], 600), (["apt-get", "install", "-y", "ruby-sidekiq"], 1200)):
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"CI: `{' '.join(argv)}` failed: {exc}", pytrace=False)
        if done.returncode != 0:
            output = done.stdout[-2000:] + done.stderr[-2000:]
            pytest.fail(f"CI: `{' '.join(argv)}` exited {done.returncode}:\n{output}", pytrace=False)


FOUND = _probe()
SKIP_ALL = not isinstance(FOUND, RubyEnv) and os.environ.get("CI") != "true"
if SKIP_ALL:
    # One line for the whole folder: only test_sidekiq_setup.py is collected, and it skips, saying
    # how to enable the rest.
    collect_ignore = [
        p.name for p in Path(__file__).parent.glob("test_*.py") if p.name != "test_sidekiq_setup.py"
    ]


@pytest.fixture(scope="session", autouse=True)
def sidekiq_ruby() -> RubyEnv:
    found = FOUND
    if isinstance(found, RubyEnv):
        return found
    if SKIP_ALL:
        pytest.skip(f"{ENABLE} ({found})")
    if os.geteuid() != 0:
        pytest.fail(f"CI=true but not root, so ruby-sidekiq cannot be installed ({found})", pytrace=False)
    # One installer at a time (pytest-xdist runs a session per worker); the others re-probe after it.
    with open(APT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _probe()
        if not isinstance(found, RubyEnv):
            _apt_install()
            found = _probe()
    if not isinstance(found, RubyEnv):
        pytest.fail(f"CI: installed ruby-sidekiq but it is still not usable: {found}", pytrace=False)
    return found


@pytest.fixture
def interop(tmp_path: Path, redis_url: str, sidekiq_ruby: RubyEnv) -> Iterator[Interop]:
    world = Interop(tmp_path, redis_url, sidekiq_ruby)
    try:
        yield world
    finally:
        world.close()
