"""Checked by mypy, never run: `perform_*` take the job function's own parameters.

tests/unit/test_typing.py runs ``mypy --strict --warn-unused-ignores`` on this file. Each wrong call
carries the ignore mypy must need for it: if typing regresses and mypy stops flagging the call, the
ignore becomes unused and the test fails. The correct calls must check clean.
"""

from __future__ import annotations

import datetime as dt

import swarmd


@swarmd.job
def add(a: int, b: int) -> int:
    return a + b


@swarmd.job(queue="low")
def greet(name: str, *, loud: bool = False) -> str:
    return name


@swarmd.job
async def fetch(url: str) -> bytes:
    return url.encode()


when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

# -- right calls ---------------------------------------------------------------------------------------
jid: str | None = add.perform_async(1, 2)
add.perform_async(a=1, b=2)
add.delay(1, b=2)
add.perform_in(30, 1, 2)
add.perform_in(dt.timedelta(seconds=30), 1, 2)
add.perform_at(when, 1, 2)
add.perform_at(1_900_000_000.0, 1, 2)
add.set(queue="critical").perform_async(1, 2)
add.set(queue="critical").perform_in(5, 1, 2)
greet.perform_async("ann", loud=True)
fetch.perform_async("https://example.com")
jids: list[str | None] = add.perform_bulk([(1, 2), (3, 4)])
total: int = add(1, 2)

# -- wrong calls: each must stay an error --------------------------------------------------------------
add.perform_async(1, 2, 3)  # type: ignore[call-arg]
add.perform_async(1)  # type: ignore[call-arg]
add.perform_async("1", 2)  # type: ignore[arg-type]
add.perform_async(1, c=2)  # type: ignore[call-arg]
add.delay(1, 2, 3)  # type: ignore[call-arg]
add.perform_in(30, 1, 2, 3)  # type: ignore[call-arg]
add.perform_in(30, "1", 2)  # type: ignore[arg-type]
add.perform_in("soon", 1, 2)  # type: ignore[arg-type]
add.perform_at(when, 1)  # type: ignore[call-arg]
add.perform_at(when, 1, "2")  # type: ignore[arg-type]
add.set(queue="low").perform_async(1, 2, 3)  # type: ignore[call-arg]
add.set(queue="low").perform_async("1", 2)  # type: ignore[arg-type]
add.set(queue="low").perform_in(5, 1, "2")  # type: ignore[arg-type]
add.set(queue="low").perform_at(when, 1, "2")  # type: ignore[arg-type]
greet.perform_async("ann", True)  # type: ignore[call-arg]
greet.perform_async("ann", loud="yes")  # type: ignore[arg-type]
fetch.perform_async(b"https://example.com")  # type: ignore[arg-type]
not_a_jid: str = add.perform_async(1, 2)  # type: ignore[assignment]
