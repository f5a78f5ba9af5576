"""`mypy --strict` flags a wrong `perform_*` call in an app, as it flags a wrong call of the function."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ROOT / "tests" / "typecheck" / "check_perform.py"


def test_perform_calls_are_typed_with_the_job_functions_parameters() -> None:
    # --warn-unused-ignores: a wrong call in the file that mypy stops flagging fails this test.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            "--no-error-summary",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(CHECKED),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
