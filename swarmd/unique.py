"""Unique jobs: the options ``unique_for``/``unique_until`` and the lock's name (a digest of the job).

While a job with the same ``class``, ``queue``, ``args`` and ``kwargs`` is enqueued, scheduled, retrying
or running, pushing an identical one pushes nothing and returns None instead of a jid. The client takes
the lock and pushes in one script (``lua/unique.lua``: SET NX EX, then LPUSH or ZADD), so there is no
check-then-push race. The lock holds the jid of the job that took it and only that jid releases it: at
the job's start (``unique_until: start``) or its success (``success``, the default), when it goes to
`dead` or is dropped (``lua/fail.lua``, the poison guard), or is deleted through ``swarmctl`` or the
dashboard. It always expires after ``unique_for`` seconds, whatever happened to the job.

The digest is computed when the job is pushed (after client middleware) and stored in the job as
``unique_key``, so a retry to another queue (``retry_queue``) still releases the right lock.

This module touches no Redis.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from swarmd.errors import PayloadError

OPTIONS = frozenset({"unique_for", "unique_until"})
UNTIL = ("success", "start")
FIELD = "unique_key"  # the lock's digest, in the job hash
_DIGEST = re.compile(r"[0-9a-f]{40}")


def check_options(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``unique_for`` as whole seconds >= 1 (a timedelta or a number; rounded up) and ``unique_until``
    checked; the other options as they are. Raises `PayloadError` naming ``where``."""
    if not OPTIONS & options.keys():
        return dict(options)
    out = dict(options)
    ttl = out.get("unique_for")
    if isinstance(ttl, dt.timedelta):
        ttl = ttl.total_seconds()
    if ttl is None:
        out.pop("unique_for", None)
    elif isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
        raise PayloadError(
            f"{where}: unique_for: expected seconds > 0 (a number or a timedelta), got {ttl!r:.60}"
        )
    else:
        out["unique_for"] = max(1, math.ceil(ttl))
    until = out.get("unique_until")
    if until is not None and until not in UNTIL:
        raise PayloadError(f"{where}: unique_until: expected 'success' or 'start', got {until!r:.60}")
    return out


def digest(job: Mapping[str, Any]) -> str:
    """The lock's name for ``job``: its class, queue, args and kwargs (key order does not matter)."""
    text = json.dumps(
        [job.get("class"), job.get("queue"), job.get("args"), job.get("kwargs") or {}],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def lock_of(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """(digest, jid) of a fetched job that holds a unique lock, None for any other job. Untrusted: a
    digest that is not one is ignored (and the lock can only be released by the jid holding it)."""
    key, jid = job.get(FIELD), job.get("jid")
    if isinstance(key, str) and isinstance(jid, str) and _DIGEST.fullmatch(key):
        return key, jid
    return None


def ttl_of(job: Mapping[str, Any]) -> int | None:
    """The lock's TTL of a job to push (``unique_for``, whole seconds), None for an ordinary job."""
    ttl = job.get("unique_for")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
        return None
    return max(1, math.ceil(ttl))


def releases_at_start(job: Mapping[str, Any]) -> bool:
    return job.get("unique_until") == "start"
