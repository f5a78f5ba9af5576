"""Sidekiq-compatible process records, swarmd's liveness key, and ``-signals``.

Every beat (5 s by default) one MULTI writes what Sidekiq's Web UI and API read: ``SADD processes``,
the ``<identity>`` hash (info, busy, beat, quiet, rss, rtt_us, concurrency; TTL 60 s), the busy jobs
under both ``<identity>:work`` (Sidekiq >= 6.4.2) and ``<identity>:workers`` (6.4.1), and pops one
entry of ``<identity>-signals`` (TSTP or TERM from the Web UI's Quiet/Stop buttons). The same MULTI
refreshes swarmd's liveness key, whose expiry lets other workers recover this worker's private list,
and carries the per-class job metrics recorded since the last beat (`swarmd.metrics`): they cost no
round trip of their own. A beat that fails puts them back for the next one.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from swarmd import metrics
from swarmd.busy import BusyJob
from swarmd.config import Config, QueueOrder
from swarmd.procfs import read_rss_kb
from swarmd.scripts import Scripts
from swarmd.version import __version__

PROCESS_TTL = 60


def new_identity(pid: int | None = None, hostname: str | None = None) -> str:
    """``host:pid:hex``: the host is ``hostname`` (the config's ``hostname:`` or ``SWARMD_HOSTNAME``),
    else Heroku's ``DYNO``, else the machine's name. Swarms on different hosts (or containers that
    share a host name) must differ here: the identity names each worker's private list."""
    host = hostname or os.environ.get("DYNO") or socket.gethostname()
    return f"{host}:{pid or os.getpid()}:{os.urandom(6).hex()}"


class Heartbeat:
    def __init__(
        self,
        scripts: Scripts,
        identity: str,
        config: Config,
        busy: Callable[[], Mapping[str, BusyJob]],  # a copy of the worker's `BusyJobs` (its snapshot)
        quiet: Callable[[], bool],
        job_metrics: metrics.JobMetrics | None = None,
    ) -> None:
        self.scripts = scripts
        self.redis = scripts.redis
        self.keys = scripts.keys
        self.identity = identity
        self.config = config
        self._busy = busy
        self._quiet = quiet
        self.metrics = metrics.PROCESS if job_metrics is None else job_metrics
        self.info = json.dumps(self._info())

    def _info(self) -> dict[str, Any]:
        cfg = self.config
        names = list(dict.fromkeys(q.name for q in cfg.queues))
        weights = {q.name: q.weight for q in cfg.queues}
        mode = {QueueOrder.STRICT: "strict", QueueOrder.RANDOM: "random"}.get(cfg.queue_order, "weighted")
        return {
            "hostname": self.identity.split(":", 1)[0],
            "started_at": time.time(),
            "pid": os.getpid(),
            "tag": cfg.tag,
            "concurrency": cfg.concurrency,
            "queues": names,
            "weights": [weights],
            "capsules": {"default": {"concurrency": cfg.concurrency, "mode": mode, "weights": weights}},
            "labels": [*cfg.labels, "swarmd"],
            "identity": self.identity,
            "version": f"swarmd {__version__}",
            "embedded": False,
        }

    def beat(self) -> str | None:
        """Write the process records; return a signal name popped from ``-signals``, if any."""
        t0 = time.perf_counter()
        self.redis.ping()
        rtt_us = int((time.perf_counter() - t0) * 1_000_000)
        busy = self._busy()
        work: dict[Any, Any] = {
            tid: json.dumps({"queue": queue, "payload": raw.decode(errors="replace"), "run_at": run_at})
            for tid, (queue, raw, run_at) in busy.items()
        }
        k = self.keys
        ident = self.identity
        pipe = self.redis.pipeline(transaction=True)
        for key in (k.work(ident), k.workers(ident)):
            pipe.delete(key)
            if work:
                pipe.hset(key, mapping=work)
                pipe.expire(key, PROCESS_TTL)
        pipe.sadd(k.processes, ident)
        pipe.hset(
            k.process(ident),
            mapping={
                "info": self.info,
                "busy": len(busy),
                "beat": time.time(),
                "quiet": "true" if self._quiet() else "false",
                "rss": read_rss_kb(),
                "rtt_us": rtt_us,
                "concurrency": self.config.concurrency,
            },
        )
        pipe.expire(k.process(ident), PROCESS_TTL)
        pipe.set(k.alive(ident), int(time.time()), px=max(1, int(self.config.liveness_ttl * 1000)))
        pipe.sadd(k.swarmd_workers, ident)
        taken = self.metrics.take()
        first_metric = len(pipe.command_stack)
        metric_commands = metrics.write(pipe, k, taken, time.time())
        pipe.rpop(k.signals(ident))
        try:
            replies = pipe.execute(raise_on_error=False)
        except Exception:
            self.metrics.restore(taken)
            raise
        # A metrics key of the wrong type (written by hand) fails only its own commands; the beat counts.
        # (The MULTI and QUEUED replies are not part of `replies`: index i is command i.)
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception) and not first_metric <= i < first_metric + metric_commands:
                raise reply
        signal = replies[-1]
        return signal.decode(errors="replace") if isinstance(signal, bytes) and signal else None

    def clear(self) -> bool:
        """At a clean exit: leave `processes` (the ``<identity>`` hash expires by itself, as in
        Sidekiq) and, if the private list is empty, swarmd's registry (``lua/leave.lua``). Returns
        whether the list was empty. The job metrics recorded since the last beat are written first
        (as Sidekiq flushes them at exit)."""
        taken = self.metrics.take()
        if taken != ({}, {}):
            pipe = self.redis.pipeline(transaction=True)
            metrics.write(pipe, self.keys, taken, time.time())
            try:
                pipe.execute(raise_on_error=False)  # a metrics key of the wrong type must not stop the exit
            except Exception:
                self.metrics.restore(taken)
                raise
        return self.scripts.leave(self.identity)
