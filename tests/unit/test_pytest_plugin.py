"""The ``swarmd`` pytest plugin, as an app's test suite gets it: through the installed entry point.

A small app and its tests are written to tmp_path (no conftest.py) and run by pytest in a subprocess.
Its Redis URL points nowhere, so a test that passes in a fixture's mode touched no Redis.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

APP_JOBS = textwrap.dedent(
    """
    import swarmd

    sent = []

    @swarmd.job
    def welcome(email):
        sent.append(email)

    def signup(email):
        welcome.perform_async(email)
    """
)

USER_TESTS = textwrap.dedent(
    """
    import pytest
    import swarmd
    from myapp.jobs import sent, signup, welcome


    def test_fake_records(swarmd_fake):
        signup("ann@example.com")
        assert [j["args"] for j in swarmd_fake.jobs(welcome)] == [["ann@example.com"]]
        assert sent == []
        assert swarmd_fake.drain() == 1
        assert sent == ["ann@example.com"]


    def test_fake_that_fails_with_jobs_recorded(swarmd_fake):
        signup("left@example.com")
        assert False, "this test fails on purpose"


    def test_fake_starts_clean(swarmd_fake):
        assert swarmd_fake.jobs() == []
        assert swarmd.testing.current() == "fake"


    def test_inline_runs_at_once(swarmd_inline):
        signup("bob@example.com")
        assert sent[-1] == "bob@example.com"


    def test_inline_refuses_what_production_refuses(swarmd_inline):
        with pytest.raises(TypeError, match=r"args\\[0\\]"):
            welcome.perform_async({1, 2})


    def test_without_a_fixture_the_mode_is_off_again():
        assert swarmd.testing.current() == "off"
        assert swarmd.testing.jobs() == []
        with pytest.raises(swarmd.RedisUnavailable):  # the real client, pointed nowhere
            signup("carol@example.com")
    """
)


def run_user_suite(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "SWARMD_"))}
    env["SWARMD_REDIS_URL"] = f"unix://{root}/no-such-redis.sock"
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *extra, "tests"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_app(root: Path) -> None:
    (root / "myapp").mkdir()
    (root / "myapp" / "__init__.py").touch()
    (root / "myapp" / "jobs.py").write_text(APP_JOBS)
    (root / "tests").mkdir()
    (root / "tests" / "test_signup.py").write_text(USER_TESTS)
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\nfilterwarnings = error\n")


def test_the_fixtures_come_from_the_installed_plugin(tmp_path: Path) -> None:
    write_app(tmp_path)
    result = run_user_suite(tmp_path)
    summary = result.stdout.strip().splitlines()[-1]
    assert re.match(r"1 failed, 5 passed in ", summary), result.stdout + result.stderr
    assert "test_fake_that_fails_with_jobs_recorded" in result.stdout  # the one meant to fail


def test_without_the_plugin_the_fixtures_are_missing(tmp_path: Path) -> None:
    # The control: nothing else (no conftest.py) provides them.
    write_app(tmp_path)
    result = run_user_suite(tmp_path, "-p", "no:swarmd")
    assert "fixture 'swarmd_fake' not found" in result.stdout, result.stdout + result.stderr
