"""Exceptions and exit codes.

Exception tree::

    SwarmdError
    ├── ConfigError           config file, environment or flags are invalid       -> exit 78
    ├── PayloadError          a value given to the client is not JSON-native (a TypeError;
    │                         raised before any Redis call)
    ├── DecodeError           a job read from Redis cannot be decoded (it goes to `dead` unchanged)
    ├── UnknownJob            no job function is registered under that name (a failure: retried)
    │   └── DelayRefused      a delayed call outside ``delay_allow`` (refused: straight to `dead`)
    ├── RedisUnavailable      Redis unreachable, too old or refusing our password -> exit 69
    │                         (also a builtin `ConnectionError`, so `except ConnectionError` catches
    │                         an enqueue that could not reach Redis)
    ├── NotFound              `swarmd.admin`: no such job, entry, queue or live process -> exit 1
    └── BootError             a worker could not boot (import error of `require`) -> exit 70

Raised inside a job, and handled by the processor: `JobTimeout` (the job ran past its time limit: a
failure, retried as any other) and `OverLimit` (a `swarmd.limiter` limit was still reached after its
``wait_timeout``: the job is rescheduled, not failed).

`PoisonJob` is not raised: its name is the `error_class` written on a job whose worker died while
running it three times (the last two alone, in a quarantine worker: see `swarmd.recovery`).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Documented exit codes of `swarmd` and `swarmctl`, from sysexits.h."""

    OK = 0
    NOT_FOUND = 1
    USAGE = 2
    UNAVAILABLE = 69
    SOFTWARE = 70
    CONFIG = 78


class SwarmdError(Exception):
    """Base of every error swarmd raises on purpose."""

    exit_code: ExitCode = ExitCode.SOFTWARE


class ConfigError(SwarmdError):
    """The configuration is invalid; the message is one line naming file, key path and expectation."""

    exit_code = ExitCode.CONFIG


class PayloadError(SwarmdError, TypeError):
    """An argument is not JSON-native; the message names the path of the bad value."""


class DecodeError(SwarmdError):
    """A job payload read from Redis is not a valid Sidekiq job."""


class UnknownJob(SwarmdError):
    """No job function is registered under the job's `class` name."""


class DelayRefused(UnknownJob):
    """A `swarmd.delay` call names a function outside ``delay_allow``: refused, straight to `dead`."""


class RedisUnavailable(SwarmdError, ConnectionError):
    """Redis cannot be used: unreachable, too old, or it refused our credentials.

    A builtin `ConnectionError` too: code that already catches ``ConnectionError`` around an enqueue
    keeps working. The message names the Redis URL with its password redacted.
    """

    exit_code = ExitCode.UNAVAILABLE


class NotFound(SwarmdError):
    """`swarmd.admin` found no such job, sorted-set entry, queue or live process (``swarmctl`` exit 1)."""

    exit_code = ExitCode.NOT_FOUND


class BootError(SwarmdError):
    """A worker could not boot, e.g. a `require` module failed to import."""

    exit_code = ExitCode.SOFTWARE


class PoisonJob(SwarmdError):
    """Never raised: its name, ``swarmd.PoisonJob``, is the ``error_class`` written on a job whose
    worker died (or was recycled for memory) while running it three times, the last two alone."""


POISON_JOB = "swarmd.PoisonJob"


class JobTimeout(SwarmdError):
    """Raised inside a job that ran past its time limit (``@swarmd.job(timeout=...)``, ``job_timeout``);
    the run counts as a failure (retried, then dead, as usual). See README "Time limits"."""

    def __init__(self, *args: object) -> None:
        # Raised by the watchdog as a bare class (no arguments): still a readable message in the job.
        super().__init__(*(args or ("the job ran past its time limit",)))


class OverLimit(SwarmdError):
    """A `swarmd.limiter` limit was still reached after the limiter's ``wait_timeout``. Raised from
    ``with limiter:`` inside a job; the processor reschedules the job with a short backoff: not a
    failure, its retries untouched. See README "Rate and concurrency limits"."""

    def __init__(self, limiter: str, message: str) -> None:
        super().__init__(message)
        self.limiter = limiter


# Recorded as the `error_class` of a failed job: the name users import (``swarmd.JobTimeout``).
JobTimeout.__module__ = OverLimit.__module__ = "swarmd"
