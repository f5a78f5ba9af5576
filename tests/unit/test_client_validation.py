"""Bad values are refused at enqueue with a TypeError naming their path, before any Redis call.

"Before any Redis call" is proven by a client pointed at a Unix socket that does not exist: any Redis
call would raise ConnectionError, so a TypeError means nothing was sent. The control case shows that
a good call on the same client does reach for Redis.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import swarmd
from swarmd import client as client_mod
from swarmd.client import Client
from swarmd.registry import JobFunction


@pytest.fixture
def nowhere(tmp_path: Path) -> Client:
    return Client(f"unix://{tmp_path}/no-such-redis.sock")


@pytest.fixture
def default_nowhere(nowhere: Client, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.setattr(client_mod, "_default", nowhere)
    yield nowhere


@swarmd.job(name="ValidationProbe")
def probe(*args: Any, **kwargs: Any) -> None:
    pass


def module_level_function(x: int) -> int:
    return x


def bound(nowhere: Client) -> JobFunction[..., None]:
    return probe.set(client=nowhere)  # type: ignore[return-value]


WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

BAD_CALLS: dict[str, tuple[Callable[[Client], object], str]] = {
    "perform_async datetime": (lambda c: bound(c).perform_async(1, {"when": WHEN}), "args[1]['when']"),
    "perform_async set": (lambda c: bound(c).perform_async({1, 2}), "args[0]"),
    "perform_async bytes": (lambda c: bound(c).perform_async(b"x"), "args[0]"),
    "perform_async Decimal": (lambda c: bound(c).perform_async(decimal.Decimal(1)), "args[0]"),
    "perform_async NaN": (lambda c: bound(c).perform_async([float("nan")]), "args[0][0]"),
    "perform_async inf": (lambda c: bound(c).perform_async(float("inf")), "args[0]"),
    "perform_async -inf": (lambda c: bound(c).perform_async(float("-inf")), "args[0]"),
    "perform_async 2**53+1": (lambda c: bound(c).perform_async(2**53 + 1), "args[0]"),
    "perform_async int key": (lambda c: bound(c).perform_async({1: "a"}), "args[0]"),
    "perform_async kwarg": (lambda c: bound(c).perform_async(when=WHEN), "kwargs['when']"),
    "delay alias": (lambda c: bound(c).delay(1, b"x"), "args[1]"),
    "perform_in": (lambda c: bound(c).perform_in(60, {"s": {1}}), "args[0]['s']"),
    "perform_at": (lambda c: bound(c).perform_at(WHEN, WHEN), "args[0]"),
    "perform_bulk": (lambda c: bound(c).perform_bulk([(1,), (2,), (b"x",)]), "args[0]"),
    "push": (
        lambda c: c.push({"class": "RubyWorker", "args": [1, {"d": decimal.Decimal(2)}]}),
        "args[1]['d']",
    ),
    "set option": (lambda c: bound(c).set(tags=[{1, 2}]).perform_async(), "tags[0]"),
}


@pytest.mark.parametrize("call", sorted(BAD_CALLS))
def test_bad_value_is_a_type_error_before_any_redis_call(nowhere: Client, call: str) -> None:
    fn, path = BAD_CALLS[call]
    with pytest.raises(TypeError) as info:
        fn(nowhere)
    assert path in str(info.value), str(info.value)


def test_swarmd_push_and_delay_use_the_same_check(default_nowhere: Client) -> None:
    with pytest.raises(TypeError, match=r"args\[0\]"):
        swarmd.push({"class": "RubyWorker", "queue": "default", "args": [{1, 2}]})
    with pytest.raises(TypeError, match=r"kwargs\['x'\]"):
        swarmd.delay(module_level_function, x=b"bytes")
    with pytest.raises(TypeError, match=r"args\[1\]"):  # args[0] is the function's "module:qualname"
        swarmd.delay(module_level_function, {1})


def test_control_a_good_call_does_reach_for_redis(nowhere: Client, default_nowhere: Client) -> None:
    # Without this, the TypeError tests above would pass even if validation happened after the call.
    for good in (
        lambda: bound(nowhere).perform_async(1, {"when": "2026-01-01"}),
        lambda: bound(nowhere).perform_bulk([(1,), (2,)]),
        lambda: swarmd.push({"class": "RubyWorker", "args": [1]}),
        lambda: swarmd.delay(module_level_function, 1),
    ):
        with pytest.raises(swarmd.RedisUnavailable):
            good()


def test_lone_surrogate_is_a_type_error_naming_the_path(nowhere: Client) -> None:
    # A str, but not UTF-8 encodable: it cannot travel as JSON to a Ruby or Python reader.
    with pytest.raises(TypeError, match=r"args\[1\]\['k'\]"):
        bound(nowhere).perform_async("ok", {"k": "x\ud800"})
    with pytest.raises(TypeError, match=r"kwargs\['k'\]"):
        bound(nowhere).perform_async(k="\udc00")


@pytest.mark.parametrize("call", ["args dict key", "kwargs name"])
def test_lone_surrogate_in_a_dict_key_is_a_type_error(nowhere: Client, call: str) -> None:
    try:
        if call == "args dict key":
            bound(nowhere).perform_async({"\ud800": 1})
        else:
            bound(nowhere).perform_async(**{"\udc00": 1})
    except TypeError as exc:
        assert "args[0]" in str(exc) or "kwargs" in str(exc), str(exc)
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc}") from None
    else:
        raise AssertionError("no error at all")


# -- other refusals, same rule: nothing is sent --------------------------------------------------------


def test_naive_datetime_is_refused(nowhere: Client) -> None:
    with pytest.raises(TypeError, match="naive datetime"):
        bound(nowhere).perform_at(dt.datetime(2026, 1, 1), 1)


@pytest.mark.parametrize("interval", ["10", None, True])
def test_perform_in_needs_seconds_or_timedelta(nowhere: Client, interval: object) -> None:
    with pytest.raises(TypeError, match="perform_in"):
        bound(nowhere).perform_in(interval, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("when", ["2026-01-01", None, dt.date(2026, 1, 1)])
def test_perform_at_needs_aware_datetime_or_epoch(nowhere: Client, when: object) -> None:
    with pytest.raises(TypeError, match="perform_at"):
        bound(nowhere).perform_at(when, 1)  # type: ignore[arg-type]


def test_perform_bulk_items_must_be_arg_lists(nowhere: Client) -> None:
    with pytest.raises(TypeError, match=r"perform_bulk item \[1\]"):
        bound(nowhere).perform_bulk([(1,), "not a list"])


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ({"args": [1]}, "'class'"),
        ({"class": "", "args": [1]}, "'class'"),
        ({"class": "X"}, "'args'"),
        ({"class": "X", "args": "1"}, "'args'"),
        ({"class": "X", "args": [], "queue": 5}, "queue"),
    ],
)
def test_push_needs_a_sidekiq_hash(nowhere: Client, item: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        nowhere.push(item)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        probe.set(queu="low")
    with pytest.raises(TypeError, match="unknown option"):
        swarmd.job(retries=3)


def test_delay_needs_a_module_level_function(default_nowhere: Client) -> None:
    def nested() -> None:
        pass

    for func in (nested, lambda: None, Client.push, str.upper):  # methods: workers run functions only
        with pytest.raises(TypeError, match="module-level function"):
            swarmd.delay(func)
