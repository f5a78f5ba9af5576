"""The app's own logging in a worker: root records through swarmd's handlers, ``log_format: json``,
``print()`` as log lines, and swarmd's loggers surviving an app's ``dictConfig``."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmd.context import JobContext, activate
from swarmd.logs import (
    capture_output,
    job_event,
    job_extra,
    reclaim_loggers,
    release_output,
    reset_logging,
    setup_logging,
)

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
app_log = logging.getLogger("myapp.billing")


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    reset_logging()
    yield
    release_output()
    reset_logging()
    root.setLevel(level)
    root.handlers[:] = handlers


def a_job() -> JobContext:
    return JobContext({"class": "Invoice", "jid": "ab12", "args": []}, "Invoice", "ab12")


# -- the app's records ---------------------------------------------------------------------------------


def test_app_records_go_through_swarmds_handler_at_the_configured_level() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={}, app_logs=True)
    app_log.info("charged %s", "ann")
    app_log.debug("not at INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(rf"{STAMP} pid={os.getpid()} tid=\w+ INFO: charged ann", lines[0]), lines


def test_app_records_logged_inside_a_job_carry_its_class_and_jid() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={}, app_logs=True)
    with activate(a_job()):
        app_log.warning("card declined")
    assert re.fullmatch(
        rf"{STAMP} pid=\d+ tid=\w+ class=Invoice jid=ab12 WARNING: card declined\n", out.getvalue()
    )


def test_verbose_lets_app_debug_through_and_an_app_loggers_own_level_stays() -> None:
    out = io.StringIO()
    noisy = logging.getLogger("noisy.lib")
    noisy.setLevel(logging.WARNING)
    try:
        setup_logging(stream=out, env={}, app_logs=True, verbose=True)
        app_log.debug("details")
        noisy.info("chatter")
    finally:
        noisy.setLevel(logging.NOTSET)
    assert out.getvalue().count("\n") == 1
    assert "DEBUG: details" in out.getvalue()


def test_app_records_go_to_the_logfile_not_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "swarmd.log"
    setup_logging(logfile=str(path), env={}, app_logs=True)
    app_log.warning("to the file")
    reset_logging()
    assert "WARNING: to the file" in path.read_text()
    assert capsys.readouterr().err == ""


def test_warnings_become_log_lines() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={}, app_logs=True)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
    assert "WARNING: " in out.getvalue() and "DeprecationWarning: old API" in out.getvalue()


def test_without_app_logs_the_root_logger_is_untouched() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    setup_logging(stream=io.StringIO(), env={})
    assert root.handlers == before


def test_reset_takes_the_handlers_off_the_root_logger_again() -> None:
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    setup_logging(stream=io.StringIO(), env={}, app_logs=True)
    assert len(root.handlers) == len(before) + 1
    reset_logging()
    assert (root.handlers, root.level) == (before, level)


def test_swarmds_loggers_come_back_after_an_apps_dict_config() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={}, app_logs=True)
    logging.getLogger("swarmd.job")  # exists, as in a worker
    # Django's LOGGING without disable_existing_loggers: False does this in django.setup().
    logging.config.dictConfig({"version": 1, "loggers": {"myapp": {"level": "INFO"}}})
    assert logging.getLogger("swarmd").disabled
    reclaim_loggers()
    logging.getLogger("swarmd").info("still here")
    job_event(logging.INFO, "Invoice", "ab12", "done: 0.001 sec")
    assert "INFO: still here" in out.getvalue()
    assert "class=Invoice jid=ab12 INFO: done: 0.001 sec" in out.getvalue()


# -- log_format: json ----------------------------------------------------------------------------------


def records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_have_the_fields_log_shippers_need() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={}, app_logs=True, log_format="json")
    logging.getLogger("swarmd").info("worker %s booted", "w1")
    with activate(a_job()):
        app_log.info("charged")
    job_event(logging.INFO, "Invoice", "ab12", "done: 0.004 sec")  # the per-job fast path
    first, second, third = records(out)
    assert set(first) == {"time", "level", "pid", "tid", "class", "jid", "logger", "message"}
    assert re.fullmatch(STAMP, str(first["time"]))
    assert (first["level"], first["pid"], first["message"]) == ("INFO", os.getpid(), "worker w1 booted")
    assert (first["class"], first["jid"], first["logger"]) == (None, None, "swarmd")
    assert (second["class"], second["jid"], second["logger"]) == ("Invoice", "ab12", "myapp.billing")
    assert (third["class"], third["jid"], third["message"]) == ("Invoice", "ab12", "done: 0.004 sec")
    assert first["tid"] == third["tid"] != ""


def test_json_carries_the_exception_as_one_string_and_payload_text_on_one_line() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={}, log_format="json")
    try:
        raise ValueError("bad\nINFO: forged line")
    except ValueError:
        logging.getLogger("swarmd.job").warning("fail %s", "x\ny", exc_info=True, extra=job_extra("C", "j"))
    assert out.getvalue().count("\n") == 1
    [record] = records(out)
    assert record["message"] == "fail x\ny"
    exception = str(record["exception"])
    assert exception.startswith("Traceback (most recent call last):")
    assert exception.endswith("ValueError: bad\nINFO: forged line")


def test_json_under_the_journal_keeps_the_priority_prefix() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={"JOURNAL_STREAM": "x"}, log_format="json")  # not this stream: plain
    logging.getLogger("swarmd").error("x")
    assert out.getvalue().startswith("{")
    r, w = os.pipe()
    try:
        with os.fdopen(w, "w", closefd=False) as stream:
            st = os.fstat(stream.fileno())
            setup_logging(
                stream=stream, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, log_format="json"
            )
            logging.getLogger("swarmd").error("boom")
            job_event(logging.INFO, "C", "j", "done: 0.001 sec")
        data = os.read(r, 65536).decode()
    finally:
        os.close(r)
        os.close(w)
    first, second = data.splitlines()
    assert first.startswith("<3>{") and json.loads(first[3:])["message"] == "boom"
    assert second.startswith("<6>{") and json.loads(second[3:])["jid"] == "j"


def test_json_goes_to_the_logfile_too(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.log"
    setup_logging(logfile=str(path), env={}, log_format="json")
    logging.getLogger("swarmd").info("to the file")
    reset_logging()
    assert json.loads(path.read_text())["message"] == "to the file"


# -- print() in a worker -------------------------------------------------------------------------------


def test_print_becomes_info_lines_and_stderr_warning_lines_with_the_job() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={}, app_logs=True)
    real_stderr = sys.stderr
    capture_output()
    try:
        with activate(a_job()):
            print("step", 1)
            print("half", end="")
            print(" whole")
            print()  # a blank line says nothing
            print("oops", file=sys.stderr)
            sys.stdout.buffer.write("bytes \u00e9\n".encode())  # what click.echo does with bytes
    finally:
        release_output()
    assert sys.stderr is real_stderr
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == [
        "class=Invoice jid=ab12 INFO: step 1",
        "class=Invoice jid=ab12 INFO: half whole",
        "class=Invoice jid=ab12 WARNING: oops",
        "class=Invoice jid=ab12 INFO: bytes \u00e9",
    ]


def test_threads_printing_at_once_never_share_a_line() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={}, app_logs=True)
    capture_output()
    barrier = threading.Barrier(4)

    def talk(name: str) -> None:
        barrier.wait()
        for i in range(200):
            print(name, end="")
            print(f"-{i}")

    threads = [threading.Thread(target=talk, args=(n,)) for n in "abcd"]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        release_output()
    messages = [line.split("INFO: ", 1)[1] for line in out.getvalue().splitlines()]
    assert sorted(messages) == sorted(f"{n}-{i}" for n in "abcd" for i in range(200))


def test_a_partial_line_is_logged_when_output_is_released() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={}, app_logs=True)
    capture_output()
    print("no newline yet", end="", flush=True)
    assert out.getvalue() == ""
    release_output()
    assert out.getvalue().endswith("INFO: no newline yet\n")


def test_swarmds_own_lines_still_reach_the_real_stderr_while_captured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging(env={}, app_logs=True)  # stderr looked up per line: the real one, not the capture
    capture_output()
    try:
        logging.getLogger("swarmd").warning("direct")
        print("printed")
    finally:
        release_output()
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 3)[3] for line in err] == ["WARNING: direct", "INFO: printed"]
