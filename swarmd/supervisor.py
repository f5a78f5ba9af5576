"""The supervisor (placeholder until the swarm lands): pidfile, then one worker in the foreground."""

from __future__ import annotations

from swarmd.config import Config
from swarmd.pidfile import PidFile
from swarmd.worker import Worker


def run(config: Config) -> int:
    pidfile = PidFile(config.pidfile) if config.pidfile else None
    if pidfile is not None:
        pidfile.acquire()
    try:
        return Worker(config).run()
    finally:
        if pidfile is not None:
            pidfile.release()
