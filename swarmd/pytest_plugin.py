"""pytest fixtures for your app's tests, installed with swarmd as the ``swarmd`` pytest plugin.

    def test_signup_sends_a_welcome(swarmd_fake):
        signup("ann@example.com")
        assert [j["args"] for j in swarmd_fake.jobs(welcome)] == [["ann@example.com"]]
        swarmd_fake.drain()

    def test_signup_end_to_end(swarmd_inline):
        signup("bob@example.com")          # welcome runs here, at once

Each fixture switches `swarmd.testing` to its mode for one test, yields the `swarmd.testing` module,
then restores the mode that was on before and forgets the recorded jobs (also when the test failed).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from swarmd import testing


def _in_mode(name: str) -> Iterator[ModuleType]:
    testing.clear()
    try:
        with testing.mode("fake" if name == "fake" else "inline"):
            yield testing
    finally:
        testing.clear()


@pytest.fixture
def swarmd_fake() -> Iterator[ModuleType]:
    """Jobs are recorded instead of pushed: ``swarmd_fake.jobs(func)``, ``.drain()``, ``.clear()``."""
    yield from _in_mode("fake")


@pytest.fixture
def swarmd_inline() -> Iterator[ModuleType]:
    """Jobs run at once in the test, after a JSON round trip; their exceptions reach the test."""
    yield from _in_mode("inline")
