"""The chaos campaign (tests/chaos) in full, and its table: what each scenario did to how many jobs.

    python benchmarks/chaos.py [--short] [--workers N] [--seed N] [-k EXPR] [--out FILE]

Runs ``pytest tests/chaos`` with ``SWARMD_CHAOS=full`` (``--short``: the short version ``make test`` runs)
and prints one row per scenario: acknowledged jobs, lost, duplicates, innocent jobs in `dead`, recovery
time, the test's outcome (xfail = a known defect, named in the footnotes) and what happened. Every job
is counted in a ledger no fault touches (see tests/chaos/harness.py). ``--seed`` replays the fuzzed
payloads of an earlier run (the table names the seed). The exit code is pytest's.

The full campaign takes 6-9 minutes on a 2-core machine; each scenario starts its own swarm (and
Redis, where it kills one) with real processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = ["test_kills", "test_poison", "test_network", "test_signals", "test_fuzz", "test_configs"]
COLUMNS = ["scenario", "jobs", "lost", "duplicates", "innocents dead", "recovery", "outcome", "what happened"]


def run(args: argparse.Namespace, report: str) -> int:
    env = dict(os.environ, SWARMD_CHAOS="short" if args.short else "full", SWARMD_CHAOS_REPORT=report)
    if args.seed is not None:
        env["SWARMD_CHAOS_SEED"] = str(args.seed)
    cmd = [sys.executable, "-m", "pytest", "tests/chaos", "-p", "no:cacheprovider", "-q", "-rfEX"]
    cmd += ["--timeout", "1800"]  # a full scenario runs for minutes
    if args.workers > 1:
        cmd += ["-n", str(args.workers), "--dist", "loadgroup"]
    if args.k:
        cmd += ["-k", args.k]
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows, with the xfail reasons as numbered footnotes."""

    def rank(row: dict[str, Any]) -> tuple[int, str]:
        module = row["test"].split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        return (ORDER.index(module) if module in ORDER else len(ORDER), row["test"])

    rows = sorted(rows, key=rank)
    reasons: list[str] = []
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        outcome = row["outcome"]
        reason = row.get("reason") or ""
        if reason:
            if reason not in reasons:
                reasons.append(reason)
            outcome += f" [{reasons.index(reason) + 1}]"
        cells = [row["scenario"], row["jobs"], row["lost"], row["duplicates"], row["innocents_dead"]]
        cells += [row["recovery"], outcome, row["note"]]
        lines.append("| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in cells) + " |")
    notes = [f"- [{i}] {reason}" for i, reason in enumerate(reasons, 1)]
    return "\n".join(lines + (["", *notes] if notes else []))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short", action="store_true", help="the short version (what `make test` runs)")
    p.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default 2)")
    p.add_argument("--seed", type=int, help="replay the fuzzed payloads of an earlier run")
    p.add_argument("-k", help="only the scenarios matching this pytest -k expression")
    p.add_argument("--out", help="also write the table to this file")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="swd-chaos-") as tmp:
        report = os.path.join(tmp, "report.jsonl")
        started = time.monotonic()
        code = run(args, report)
        elapsed = time.monotonic() - started
        rows = []
        if os.path.exists(report):
            with open(report) as f:
                rows = [json.loads(line) for line in f if line.strip()]
    mode = "short" if args.short else "full"
    text = (
        table(rows) + f"\n\n{len(rows)} rows, {mode} campaign, {elapsed / 60:.1f} min, pytest exit {code}\n"
    )
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
