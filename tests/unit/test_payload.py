"""Job JSON as Sidekiq writes and reads it: encoding, decoding, failure fields, backoff."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
import zlib
from typing import Any

import pytest

from swarmd import payload
from swarmd.errors import DecodeError, PayloadError
from swarmd.retry import backoff_seconds, max_attempts

# -- encoding -------------------------------------------------------------------------------------------


def test_new_job_has_sidekiq_fields_and_a_24_hex_jid() -> None:
    job = payload.build("HardWorker", ["bob", 5], None, {"queue": "critical", "retry": 3})
    assert job["class"] == "HardWorker"
    assert job["args"] == ["bob", 5]
    assert job["queue"] == "critical"
    assert job["retry"] == 3
    assert re.fullmatch(r"[0-9a-f]{24}", job["jid"])
    assert job["enqueued_at"] == job["created_at"]
    assert "kwargs" not in job  # swarmd's own field appears only when there are kwargs


def test_defaults_are_sidekiqs() -> None:
    job = payload.build("x", [], None, {})
    assert job["queue"] == "default"
    assert job["retry"] is True


def test_jids_are_unique() -> None:
    assert len({payload.new_jid() for _ in range(10_000)}) == 10_000


def test_scheduled_job_has_no_enqueued_at() -> None:
    job = payload.build("x", [], None, {}, at=2e9)
    assert "enqueued_at" not in job
    assert isinstance(job["created_at"], float)


@pytest.mark.parametrize("when", [1_700_000_000.0, 1_700_000_000.5, 1e9])
def test_timestamps_are_written_with_a_decimal_point(monkeypatch: pytest.MonkeyPatch, when: float) -> None:
    # Sidekiq 8 reads an integer timestamp as milliseconds: a whole second must still say ".0".
    monkeypatch.setattr(payload, "now", lambda: when)
    raw = payload.encode(payload.for_queue(payload.build("x", [], None, {})))
    for field in ("created_at", "enqueued_at"):
        text = re.search(rf'"{field}":([^,}}]+)', raw.decode())
        assert text is not None
        assert "." in text[1] or "e" in text[1], text[1]
        assert json.loads(raw)[field] == when


def test_failure_timestamps_are_written_with_a_decimal_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payload, "now", lambda: 1_700_000_000.0)
    data = payload.build("x", [], None, {})
    payload.record_failure(data, "ValueError", "boom")
    payload.record_failure(data, "ValueError", "boom again")
    raw = payload.encode(data).decode()
    assert '"failed_at":1700000000.0' in raw
    assert '"retried_at":1700000000.0' in raw


def test_encode_is_compact_utf8() -> None:
    raw = payload.encode({"class": "x", "args": ["é→"]})
    assert raw == '{"class":"x","args":["é→"]}'.encode()


def test_kwargs_travel_in_their_own_field() -> None:
    job = payload.build("x", [1], {"width": 100}, {})
    assert job["args"] == [1]
    assert job["kwargs"] == {"width": 100}


def test_tuple_args_become_a_list() -> None:
    assert json.loads(payload.encode(payload.build("x", (1, (2, 3)), None, {})))["args"] == [1, [2, 3]]


# -- timestamps read ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1_700_000_000.25, 1_700_000_000.25),  # Sidekiq <= 7: float seconds
        (1_700_000_000, 1_700_000_000.0),  # integer seconds
        (1_700_000_000_250, 1_700_000_000.25),  # Sidekiq 8: integer milliseconds
        (True, None),
        ("1700000000", None),
        (None, None),
    ],
)
def test_read_timestamp(value: object, seconds: float | None) -> None:
    assert payload.read_timestamp(value) == seconds


# -- JSON-native check ----------------------------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ([1, {"when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}], "args[1]['when']"),
        ([{1, 2}], "args[0]"),
        (["ok", b"bytes"], "args[1]"),
        ([decimal.Decimal("1.5")], "args[0]"),
        ([[1, 2, float("nan")]], "args[0][2]"),
        ([{"a": {"b": float("inf")}}], "args[0]['a']['b']"),
        ([float("-inf")], "args[0]"),
        ([2**53 + 1], "args[0]"),
        ([-(2**53) - 1], "args[0]"),
        ([{1: "int key"}], "args[0]"),
        ([{"k": [None, Opaque()]}], "args[0]['k'][1]"),
    ],
)
def test_non_json_native_values_are_type_errors_naming_the_path(args: list[Any], path: str) -> None:
    with pytest.raises(TypeError) as info:
        payload.build("x", args, None, {})
    assert isinstance(info.value, PayloadError)
    assert str(info.value).startswith(f"{path}: "), str(info.value)


def test_kwargs_paths() -> None:
    with pytest.raises(TypeError, match=r"^kwargs\['when'\]: "):
        payload.build("x", [], {"when": dt.date(2026, 1, 1)}, {})


def test_non_str_key_message_names_the_key_type() -> None:
    with pytest.raises(TypeError, match=r"dict key 1 is a int"):
        payload.build("x", [{1: "a"}], None, {})


@pytest.mark.parametrize(
    "value", [2**53, -(2**53), 0, 1.5, -0.0, "s", True, None, [], {}, {"a": [1, {"b": None}]}]
)
def test_json_native_values_pass_and_round_trip(value: Any) -> None:
    raw = payload.encode(payload.build("x", [value], None, {}))
    assert payload.decode(raw).args == [value]


def test_options_are_checked_too() -> None:
    with pytest.raises(TypeError, match=r"^tags\[0\]: "):
        payload.build("x", [], None, {"tags": [object()]})


def test_queue_must_be_a_non_empty_string() -> None:
    with pytest.raises(TypeError, match="queue"):
        payload.build("x", [], None, {"queue": ""})


# -- decoding -------------------------------------------------------------------------------------------


def test_unknown_fields_are_preserved() -> None:
    raw = b'{"class":"x","args":[1],"bid":"b-1","custom":{"a":[1,2.5]},"jid":"abc","queue":"q"}'
    job = payload.decode(raw)
    assert job.raw == raw
    assert json.loads(payload.encode(job.data)) == json.loads(raw)
    payload.record_failure(job.data, "ValueError", "boom")
    again = json.loads(payload.encode(job.data))
    assert again["bid"] == "b-1"
    assert again["custom"] == {"a": [1, 2.5]}


def test_decoded_job_accessors() -> None:
    job = payload.decode(b'{"class":"A","args":[1],"kwargs":{"k":2},"jid":"j1","queue":"low"}')
    assert (job.name, job.args, job.kwargs, job.jid, job.queue) == ("A", [1], {"k": 2}, "j1", "low")
    bare = payload.decode(b'{"class":"A","args":[]}')
    assert (bare.kwargs, bare.queue) == ({}, "default")


def test_sidekiq8_millisecond_timestamps_decode() -> None:
    job = payload.decode(b'{"class":"A","args":[],"created_at":1700000000250,"enqueued_at":1700000000500}')
    assert payload.read_timestamp(job.data["enqueued_at"]) == 1_700_000_000.5


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),  # invalid UTF-8
        (b'{"class":"x","args":[NaN]}', "not JSON"),
        (b'{"class":"x","args":[Infinity]}', "not JSON"),
        (b'{"class":"x","args":[-Infinity]}', "not JSON"),
        (b'{"class":"x","args":[1e999]}', "out of the float range"),  # valid JSON, but no encoder writes it
        (b'{"class":"x","args":[{"a":-1E400}]}', "out of the float range"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),  # nesting deeper than the recursion limit
        (b"[1]", "not a JSON object"),
        (b'"str"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'{"args":[]}', "'class'"),
        (b'{"class":"","args":[]}', "'class'"),
        (b'{"class":1,"args":[]}', "'class'"),
        (b'{"class":"x"}', "'args'"),
        (b'{"class":"x","args":{}}', "'args'"),
        (b'{"class":"x","args":"a"}', "'args'"),
        (b'{"class":"x","args":[],"kwargs":[1]}', "'kwargs'"),
        (b'{"class":"x","args":[],"jid":5}', "'jid'"),
        (b'{"class":"x","args":[],"queue":["q"]}', "'queue'"),
        (b'{"class":"x","args":[],"retry":"yes"}', "'retry'"),
    ],
)
def test_every_decode_error_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        payload.decode(raw)
    assert reason in str(info.value)
    assert len(str(info.value)) <= 300  # one line in the log, never a megabyte of payload


@pytest.mark.parametrize(
    "args",
    [
        "[2,-3,0,-0]",
        "[123456789012345678901234567890,-98765432109876543210987654321]",  # Ruby Bignums stay ints
        "[18446744073709551616,-9223372036854775809,9007199254740993]",  # just beyond 64 and 53 bits
        "[0.1,1e5,1E+2,-2.5e-3,1e-400,1.7976931348623157e308,5e-324,123456789012345678901234567890.5]",
        '["\\u00e9\\ud83d\\ude00","é😀","tab\\t nl\\n \\"q\\" \\\\ \\/","\\u0000","\x7f"]',
        '["\\udcff"]',  # a lone surrogate in an argument: valid for the json module, refused by msgspec
        '[{"a":1,"a":2},{"":null,"t":true,"f":false},[[[]]],{}]',
    ],
)
def test_decode_reads_every_value_as_the_json_module_does(args: str) -> None:
    # Jobs are read by msgspec, falling back to the json module on what msgspec refuses: either way
    # the job function must get exactly what the json module would give it (ints of any size as ints).
    raw = f'{{"class":"x","args":{args},"jid":"j","queue":"q"}}'.encode()
    expected = json.loads(raw)
    got = payload.decode(raw).data
    assert got == expected
    assert repr(got) == repr(expected)  # no int read as a float, nor -0.0 as 0


def test_queue_of_undecodable_is_none() -> None:
    assert payload.queue_of(b"garbage") is None
    assert payload.queue_of(b'{"class":"x","args":[],"queue":"low"}') == "low"


# -- failure fields ----------------------------------------------------------------------------------------


def test_first_failure_then_retries_as_sidekiq_counts_them() -> None:
    data = payload.build("x", [], None, {})
    assert payload.record_failure(data, "ValueError", "one") == 0
    assert data["retry_count"] == 0
    assert "retried_at" not in data
    assert isinstance(data["failed_at"], float)
    assert payload.record_failure(data, "KeyError", "two") == 1
    assert data["retry_count"] == 1
    assert isinstance(data["retried_at"], float)
    assert (data["error_class"], data["error_message"]) == ("KeyError", "two")


def test_error_message_is_capped() -> None:
    data = payload.build("x", [], None, {})
    payload.record_failure(data, "E", "x" * 50_000)
    assert len(data["error_message"]) == 10_000


def test_error_class_names() -> None:
    class Custom(Exception):
        pass

    assert payload.error_class_name(ValueError()) == "ValueError"
    assert payload.error_class_name(Custom()) == f"{__name__}.test_error_class_names.<locals>.Custom"


def test_error_backtrace_is_base64_of_zlib_of_json() -> None:
    lines = ['File "a.py", line 1, in <module>', "ValueError: boom ✓"]
    text = payload.encode_backtrace(lines)
    # Decode it as Sidekiq does (Base64.decode64 -> Zlib::Inflate.inflate -> JSON.parse), independently.
    assert json.loads(zlib.decompress(base64.b64decode(text))) == lines
    assert payload.decode_backtrace(text) == lines
    data = payload.build("x", [], None, {})
    payload.record_failure(data, "ValueError", "boom", lines)
    assert payload.decode_backtrace(data["error_backtrace"]) == lines


# -- retry policy -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 5, 24])
def test_backoff_is_sidekiqs_formula(count: int) -> None:
    allowed = {float(count**4 + 15 + k * (count + 1)) for k in range(10)}
    seen = {backoff_seconds(count) for _ in range(2_000)}
    assert seen <= allowed
    assert len(seen) > 1  # the rand(10) jitter is there


@pytest.mark.parametrize(("retry", "attempts"), [(True, 25), (None, 25), (5, 5), (0, 0), (False, 0), (-3, 0)])
def test_retry_option_to_attempts(retry: object, attempts: int) -> None:
    assert max_attempts(retry, 25) == attempts
