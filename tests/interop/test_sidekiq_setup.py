"""The interop set-up itself: Ruby's Sidekiq is there (or, outside CI, the one line saying how to get
it). The other interop modules are collected only when it is there or under CI."""

from __future__ import annotations

import subprocess

from tests.interop.helpers import API_RB, INTEROP, RubyEnv

pytestmark = INTEROP


def test_ruby_sidekiq_is_usable(sidekiq_ruby: RubyEnv) -> None:
    assert sidekiq_ruby.version.startswith("6.")
    done = subprocess.run([sidekiq_ruby.ruby, "-c", str(API_RB)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
