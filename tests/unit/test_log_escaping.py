"""Log forging: a payload's control characters (class, jid, a job's error message) never start a line.

Through the real formatter as `setup_logging` installs it: the logging path, the per-job fast path
(`job_event`) and the journal's ``<N>``-prefixed form.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from swarmd import logs
from swarmd.logs import LineFormatter, Verbatim, escape, job_event, job_extra, reset_logging, setup_logging

log = logging.getLogger("swarmd.test")
job_log = logging.getLogger("swarmd.job")
FORGED = "2026-01-01T00:00:00.000Z pid=1 tid=x INFO: forged"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    reset_logging()


def logged() -> io.StringIO:
    out = io.StringIO()
    setup_logging(stream=out, env={}, verbose=True)
    return out


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain text", "plain text"),
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),
        ("tab\there", "tab\\there"),
        ("nul\x00del\x7fc1\x85\x9b", "nul\\x00del\\x7fc1\\x85\\x9b"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("bidi\u202eevil\u2066", "bidi\\u202eevil\\u2066"),
        ("caf\u00e9 \u4e2d\u6587 \u00a0", "caf\u00e9 \u4e2d\u6587 \u00a0"),  # printable or spaces: kept
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


def test_class_and_jid_are_escaped_on_the_logging_path() -> None:
    out = logged()
    job_log.info("done", extra=job_extra(f"Job\n{FORGED}", f"j\r\n{FORGED}\x1b[0m"))
    [line] = out.getvalue().splitlines()
    assert f" class=Job\\n{FORGED} jid=j\\r\\n{FORGED}\\x1b[0m INFO: done" in line


def test_class_jid_and_text_are_escaped_on_the_fast_path() -> None:
    out = logged()
    job_event(logging.INFO, f"Job\n{FORGED}", f"j\n{FORGED}", f"done\n{FORGED}")
    job_event(logging.DEBUG, "Job\x1b[31m", "j", "start")
    logs.flush()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert f"class=Job\\n{FORGED} jid=j\\n{FORGED} INFO: done\\n{FORGED}" in lines[0]
    assert "class=Job\\x1b[31m jid=j DEBUG: start" in lines[1]


def test_message_arguments_are_escaped_and_keep_their_format() -> None:
    out = logged()
    error = ValueError(f"boom\n{FORGED}")
    log.warning("%s: %s (%d tries, %.1f s, %r)", "ValueError", error, 3, 1.25, "x\ny")
    log.info("%(who)s said %(what)r", {"who": "a\nb", "what": "c\rd"})
    log.error(error)  # an exception as the message itself
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].endswith(f"WARNING: ValueError: boom\\n{FORGED} (3 tries, 1.2 s, 'x\\ny')")
    assert lines[1].endswith("INFO: a\\nb said 'c\\rd'")
    assert lines[2].endswith(f"ERROR: boom\\n{FORGED}")


def test_a_traceback_keeps_its_lines_but_not_the_payloads_newlines() -> None:
    out = logged()
    try:
        try:
            raise KeyError(f"inner\n{FORGED}")
        except KeyError as inner:
            exc = ValueError(f"outer\n{FORGED}\x1b[2J")
            exc.add_note(f"note\n{FORGED}")
            raise exc from inner
    except ValueError as caught:
        job_log.warning("%s: %s", "ValueError", caught, exc_info=caught, extra=job_extra("Fail", "j1"))
    lines = out.getvalue().splitlines()
    assert lines[1] == "Traceback (most recent call last):"
    assert not [line for line in lines if line.startswith(FORGED[:10])]
    assert f"KeyError: 'inner\\n{FORGED}'" in lines
    assert f"ValueError: outer\\n{FORGED}\\x1b[2J" in lines
    assert f"note\\n{FORGED}" in lines
    assert any("direct cause" in line for line in lines)
    assert "\x1b" not in out.getvalue()


def test_journal_lines_each_keep_their_priority() -> None:
    formatter = LineFormatter(timestamps=False, priority_prefix=True)
    record = logging.makeLogRecord(
        {"msg": "%s", "args": (f"x\n{FORGED}",), "levelno": logging.INFO, "levelname": "INFO"}
    )
    record.job_class, record.jid = f"A\n<3>{FORGED}", "j"
    text = formatter.format(record)
    assert text.count("\n") == 0
    assert text.startswith("<6>pid=")


def test_verbatim_text_keeps_its_newlines() -> None:
    out = logged()
    log.warning("thread %s:\n%s", "main\nx", Verbatim('  File "a.py", line 1\n    f()'))
    assert out.getvalue().splitlines()[1:] == ['  File "a.py", line 1', "    f()"]
    assert "main\\nx" in out.getvalue()
