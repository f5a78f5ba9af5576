"""The daemon with ``-r path/inside/a/package.py`` runs the jobs the app enqueues by their dotted name."""

from __future__ import annotations

import textwrap

from tests.integration.conftest import JOBS_MODULE, App

PKG_JOBS = textwrap.dedent(
    f"""
    import swarmd
    from {JOBS_MODULE} import note

    @swarmd.job
    def record(token):
        note("done", token)
    """
)


def test_a_path_inside_a_package_runs_jobs_enqueued_by_the_dotted_name(app: App) -> None:
    pkg = app.root / "src" / "shop"
    (pkg / "billing").mkdir(parents=True)
    (pkg / "__init__.py").touch()
    (pkg / "billing" / "__init__.py").touch()
    (pkg / "billing" / "jobs.py").write_text(PKG_JOBS)
    d = app.start("-r", "src/shop/billing/jobs.py", config=app.config(), require=False)
    app.wait_booted(d)
    # What `from shop.billing.jobs import record; record.perform_async(...)` enqueues in the web app.
    app.enqueue("shop.billing.jobs.record", "by-dotted-name")
    app.wait_tokens(["by-dotted-name"])


def test_a_module_name_clash_exits_70_with_one_line(app: App) -> None:
    (app.root / "tasks").mkdir()
    (app.root / "tasks" / "json.py").write_text(PKG_JOBS)  # `json` is the standard library's
    result = app.run("-r", "tasks/json.py", "--redis-url", app.redis_url)
    assert result.returncode == 70, result.stderr
    named = [line for line in result.stderr.splitlines() if "tasks/json.py" in line]
    assert len(named) == 1, result.stderr
    assert "module name clash" in named[0] and "'json' is already imported from" in named[0]
    assert "Traceback" not in result.stderr
