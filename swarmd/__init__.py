"""swarmd: background jobs for Python, in Sidekiq's Redis format.

    import swarmd

    @swarmd.job
    def resize(path, width): ...

    resize.perform_async("a.png", 100)

Run them with ``swarmd -r myapp.jobs``. Inside a job, ``swarmd.current_job()`` tells which one runs;
``swarmd.server_middleware`` and the ``@swarmd.on_startup``/``on_shutdown``/``on_boot``/``on_failure``/
``on_death`` hooks fit it into your app. In your app's tests, ``swarmd.testing.fake()`` records jobs
and ``swarmd.testing.inline()`` runs them in process.
"""

from __future__ import annotations

from swarmd import (
    limiter,  # `swarmd.limiter.concurrent(...)` after a plain `import swarmd`
    testing,  # `swarmd.testing.fake()` works after a plain `import swarmd`
)
from swarmd.client import Client, configure, delay, push
from swarmd.context import JobContext, current_job
from swarmd.errors import (
    BootError,
    ConfigError,
    DecodeError,
    DelayRefused,
    JobTimeout,
    OverLimit,
    PayloadError,
    PoisonJob,
    RedisUnavailable,
    SwarmdError,
    UnknownJob,
)
from swarmd.hooks import (
    client_middleware,
    on_boot,
    on_death,
    on_failure,
    on_shutdown,
    on_startup,
    server_middleware,
)
from swarmd.registry import JobFunction, job, periodic
from swarmd.version import __version__

__all__ = [
    "BootError",
    "Client",
    "ConfigError",
    "DecodeError",
    "DelayRefused",
    "JobContext",
    "JobFunction",
    "JobTimeout",
    "OverLimit",
    "PayloadError",
    "PoisonJob",
    "RedisUnavailable",
    "SwarmdError",
    "UnknownJob",
    "__version__",
    "client_middleware",
    "configure",
    "current_job",
    "delay",
    "job",
    "limiter",
    "on_boot",
    "on_death",
    "on_failure",
    "on_shutdown",
    "on_startup",
    "periodic",
    "push",
    "server_middleware",
    "testing",
]
