"""Interop fixtures: real Ruby Sidekiq 6.4.1 (Debian's ``ruby-sidekiq``) against swarmd on one Redis.

Without Ruby's Sidekiq the whole folder skips with one line saying how to enable it. Under CI
(``CI=true``; .ci/run installs ``ruby-sidekiq``) these tests must run: a missing Sidekiq is a loud
test error there, never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.interop.helpers import Interop, RubyEnv

ENABLE = "Sidekiq interop tests need Ruby's Sidekiq 6; enable them with `apt-get install ruby-sidekiq`"
PROBE = (
    'require "sidekiq"; require "sidekiq/api"; '
    'require "sidekiq/web"; require "rack/mock"; print Sidekiq::VERSION'
)


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


FOUND = _probe()
SKIP_ALL = not isinstance(FOUND, RubyEnv) and not IN_CI
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
    pytest.fail(f"CI=true but {ENABLE.split(';')[0]}: add ruby-sidekiq to .ci/run ({found})", pytrace=False)


@pytest.fixture
def interop(tmp_path: Path, redis_url: str, sidekiq_ruby: RubyEnv) -> Iterator[Interop]:
    world = Interop(tmp_path, redis_url, sidekiq_ruby)
    try:
        yield world
    finally:
        world.close()
