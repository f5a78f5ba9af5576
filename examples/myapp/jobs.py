"""Example job functions: what an app's ``jobs.py`` looks like."""

from __future__ import annotations

import hashlib
import logging
import random
import time

import swarmd

log = logging.getLogger(__name__)


@swarmd.job
def resize(path: str, width: int) -> None:
    """Pretend to resize an image: a little CPU and a little waiting."""
    hashlib.sha256(f"{path}:{width}".encode() * 100).hexdigest()
    time.sleep(random.uniform(0.001, 0.005))


@swarmd.job(queue="critical", retry=5)
def send_receipt(order_id: int, email: str) -> None:
    time.sleep(0.002)


@swarmd.job(queue="low", retry=2, backtrace=10)
def flaky(n: int) -> None:
    """Fails now and then: failures go to the retry set, with Sidekiq's backoff."""
    if random.random() < 0.2:
        raise RuntimeError(f"flaky job {n} failed, will be retried")
