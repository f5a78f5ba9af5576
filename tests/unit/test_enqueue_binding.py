"""Wrong arguments are refused at enqueue, as calling the function would refuse them.

Without this, ``add.perform_async(1, 2, 3)`` for ``def add(a, b)`` returns a jid, and the job fails in
the worker and is retried for weeks. The client here points at a Unix socket that does not exist: a
`TypeError` means nothing was sent, and the control cases show that a right call does reach for Redis.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import swarmd
from swarmd import client as client_mod
from swarmd.client import Client
from swarmd.registry import JobFunction


@swarmd.job(name="myapp.jobs.add")
def add(a: int, b: int) -> int:
    return a + b


@swarmd.job(name="myapp.jobs.greet")
def greet(name: str, greeting: str = "hello", *, loud: bool = False) -> str:
    return f"{greeting} {name}{'!' if loud else ''}"


@swarmd.job(name="myapp.jobs.anything")
def anything(*args: Any, **kwargs: Any) -> None:
    pass


@swarmd.job(name="myapp.jobs.fetch")
async def fetch(url: str) -> str:
    return url


def plain(a: int) -> int:
    return a


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    c = Client(f"unix://{tmp_path}/no-such-redis.sock")
    monkeypatch.setattr(client_mod, "_default", c)
    yield c


WHEN = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
# The wrong calls below are wrong on purpose: these tests check what happens at run time (mypy would
# refuse them, which tests/unit/test_typing.py checks), so they go through untyped names.
untyped_add: Any = add
untyped_greet: Any = greet
untyped_fetch: Any = fetch
ADD_3 = "add() takes 2 positional arguments but 3 were given (job myapp.jobs.add)"

# Every enqueue path, with a call add() cannot take.
WRONG: dict[str, tuple[Callable[[], object], str]] = {
    "perform_async": (lambda: untyped_add.perform_async(1, 2, 3), ADD_3),
    "delay": (lambda: untyped_add.delay(1, 2, 3), ADD_3),
    "perform_in": (lambda: untyped_add.perform_in(60, 1, 2, 3), ADD_3),
    "perform_in timedelta": (lambda: untyped_add.perform_in(dt.timedelta(minutes=1), 1), "missing"),
    "perform_at": (lambda: untyped_add.perform_at(WHEN, 1, 2, 3), ADD_3),
    "perform_bulk": (
        lambda: untyped_add.perform_bulk([(1, 2), (3, 4), (5, 6, 7)]),
        f"perform_bulk item [2]: {ADD_3}",
    ),
    "set().perform_async": (
        lambda: untyped_add.set(queue="low").perform_async(1),
        "missing a required argument: 'b'",
    ),
    "set().perform_in": (
        lambda: untyped_add.set(retry=False).perform_in(5, 1, 2, c=3),
        "unexpected keyword argument 'c'",
    ),
    "set().perform_bulk": (
        lambda: untyped_add.set(queue="low").perform_bulk([(1,)]),
        "perform_bulk item [0]",
    ),
    "missing": (
        lambda: untyped_add.perform_async(1),
        "add() missing a required argument: 'b' (job myapp.jobs.add)",
    ),
    "unknown kwarg": (
        lambda: untyped_add.perform_async(1, 2, c=3),
        "add() got an unexpected keyword argument 'c'",
    ),
    "twice": (lambda: untyped_add.perform_async(1, a=2), "multiple values for argument 'a'"),
    "defaults": (
        lambda: untyped_greet.perform_async("ann", "hi", True),
        "greet() takes from 1 to 2 positional arguments but 3 were given (job myapp.jobs.greet)",
    ),
    "keyword-only": (lambda: untyped_greet.perform_async(), "greet() missing a required argument: 'name'"),
    "async def": (
        lambda: untyped_fetch.perform_async("a", "b"),
        "fetch() takes 1 positional argument but 2 were given (job myapp.jobs.fetch)",
    ),
    "swarmd.delay": (
        lambda: swarmd.delay(plain, 1, 2),
        "plain() takes 1 positional argument but 2 were given",
    ),
}


@pytest.mark.parametrize("call", sorted(WRONG))
def test_a_wrong_call_is_a_type_error_naming_the_job_before_any_redis_call(
    nowhere: Client, call: str
) -> None:
    fn, message = WRONG[call]
    with pytest.raises(TypeError) as info:
        fn()
    assert not isinstance(info.value, swarmd.RedisUnavailable)
    assert message in str(info.value), str(info.value)


def test_the_message_is_exactly_pythons_with_the_job_name(nowhere: Client) -> None:
    with pytest.raises(TypeError) as info:
        untyped_add.perform_async(1, 2, 3)
    assert str(info.value) == ADD_3
    try:  # the same words as calling the function itself
        add(1, 2, 3)  # type: ignore[call-arg]
    except TypeError as exc:
        assert str(info.value) == f"{exc} (job myapp.jobs.add)"


RIGHT: dict[str, Callable[[], object]] = {
    "positional": lambda: add.perform_async(1, 2),
    "keywords": lambda: add.perform_async(a=1, b=2),
    "default and keyword-only": lambda: greet.perform_async("ann", loud=True),
    "var args": lambda: anything.perform_async(1, 2, 3, x=4),
    "perform_in": lambda: add.perform_in(5, 1, b=2),
    "perform_at": lambda: add.set(queue="low").perform_at(WHEN, 1, 2),
    "perform_bulk": lambda: add.perform_bulk([(1, 2), [3, 4]]),
    "async def": lambda: fetch.perform_async("https://example.com"),
    "swarmd.delay": lambda: swarmd.delay(plain, 1),
}


@pytest.mark.parametrize("call", sorted(RIGHT))
def test_a_right_call_goes_on_to_redis(nowhere: Client, call: str) -> None:
    # The control: these get past the check and fail only because this Redis does not exist.
    with pytest.raises(swarmd.RedisUnavailable):
        RIGHT[call]()


def test_a_perform_bulk_with_one_wrong_item_pushes_none(nowhere: Client) -> None:
    with pytest.raises(TypeError, match=re.escape("perform_bulk item [1]")):
        add.perform_bulk([(1, 2), (1,), (3, 4)])


def test_the_signature_is_computed_once_per_job_function(
    nowhere: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    @swarmd.job(name="myapp.jobs.once")
    def once(a: int) -> None:
        pass

    calls: list[object] = []
    real = inspect.signature

    def counting(obj: Any, *args: Any, **kwargs: Any) -> inspect.Signature:
        calls.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting)
    for _ in range(3):
        with pytest.raises(TypeError):
            once.perform_async()  # type: ignore[call-arg]
    assert len(calls) == 1


def test_async_def_job_keeps_working() -> None:
    assert isinstance(fetch, JobFunction)
    assert fetch.job_name == "myapp.jobs.fetch"
    assert inspect.iscoroutinefunction(fetch.func)
    coro = fetch("u")  # a plain call returns the coroutine, as calling the function would
    assert inspect.iscoroutine(coro)
    coro.close()
