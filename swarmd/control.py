"""How the supervisor and its workers are told what to do: control-pipe lines and signal handlers.

**Control pipe.** Each worker writes lines to its own pipe, read by the supervisor:

- ``booted``: it reached Redis and started its processors (readiness, READY=1);
- ``beat <busy>``: a sign of life with its busy job count, at every housekeeping tick (at least every
  second): STATUS=, titles, the `heartbeat_timeout` check;
- ``stopped-remotely``: Stop came from Sidekiq's Web UI or ``swarmctl stop``, so its exit must not be
  replaced;
- ``quarantine``: its scheduler poll found jobs in the quarantine list: the supervisor starts a
  quarantine worker if none runs;
- ``recycle``: it asks to be replaced for its jobs' sake; the supervisor answers as to a worker over
  its memory limit: SIGUSR2 (its running jobs are to blame) and TERM, once a replacement has booted.
- ``stuck-at <ms>``: when (CLOCK_MONOTONIC, milliseconds; 0: never) the first of its running jobs with
  a time limit would be stuck past its limit and grace. Sent before such a job starts: a job stuck in
  C code that holds the GIL freezes the whole worker, which then cannot ask for anything, so the
  supervisor kills a worker silent past that moment as hung (README "Time limits").

`encode` and `decode` are the only code that knows the spelling. A line is ASCII, ends with a newline
and is far shorter than PIPE_BUF, so a non-blocking write delivers it whole or not at all. `decode`
returns None for anything else (the reader logs it at DEBUG and otherwise ignores it).

**Signals.** The supervisor and the worker record a signal in a wakeup pipe (the handler does nothing
else) and their loop dispatches it with `signal_handler` to the method named after it: SIGTERM to
``handle_term``, SIGHUP to ``handle_hup``. `handled_signals` lists the signals a class has a handler
for, which are the ones it installs, so the two never drift apart.
"""

from __future__ import annotations

import enum
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "BOOTED",
    "QUARANTINE",
    "RECYCLE",
    "STOPPED_REMOTELY",
    "Kind",
    "Message",
    "beat",
    "decode",
    "handled_signals",
    "signal_handler",
]


class Kind(enum.Enum):
    BOOTED = "booted"
    BEAT = "beat"
    STOPPED_REMOTELY = "stopped-remotely"
    QUARANTINE = "quarantine"
    RECYCLE = "recycle"
    STUCK_AT = "stuck-at"


@dataclass(frozen=True)
class Message:
    kind: Kind
    busy: int = 0  # jobs running, for BEAT; milliseconds (monotonic) for STUCK_AT

    def encode(self) -> bytes:
        if self.kind is Kind.BEAT:
            return b"beat %d\n" % self.busy
        if self.kind is Kind.STUCK_AT:
            return b"stuck-at %d\n" % self.busy
        return f"{self.kind.value}\n".encode()


BOOTED = Message(Kind.BOOTED)
STOPPED_REMOTELY = Message(Kind.STOPPED_REMOTELY)
QUARANTINE = Message(Kind.QUARANTINE)
RECYCLE = Message(Kind.RECYCLE)


def beat(busy: int) -> Message:
    return Message(Kind.BEAT, busy)


def stuck_at(at: float | None) -> Message:
    """``stuck-at``: ``at`` in monotonic seconds, None for "no limited job is running"."""
    return Message(Kind.STUCK_AT, 0 if at is None else max(1, int(at * 1000)))


_BEAT = re.compile(r"beat ([0-9]{1,9})")
_STUCK_AT = re.compile(r"stuck-at ([0-9]{1,15})")
_BARE = {m.kind.value: m for m in (BOOTED, STOPPED_REMOTELY, QUARANTINE, RECYCLE)}


def decode(line: str) -> Message | None:
    """The message a line (without its newline) carries; None for a line that is none of them."""
    message = _BARE.get(line)
    if message is not None:
        return message
    match = _BEAT.fullmatch(line)
    if match:
        return beat(int(match[1]))
    match = _STUCK_AT.fullmatch(line)
    return Message(Kind.STUCK_AT, int(match[1])) if match else None


# -- signals ------------------------------------------------------------------------------------------


def signal_name(signum: int) -> str:
    """``TERM`` for SIGTERM; the number as text for a signal Python has no name for."""
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        return str(signum)


def signal_handler(target: object, signum: int) -> Callable[..., object] | None:
    """``target.handle_<name>`` for ``signum`` (``handle_term`` for SIGTERM), or None if it has none."""
    handler = getattr(target, f"handle_{signal_name(signum).lower()}", None)
    return handler if callable(handler) else None


def handled_signals(cls: type) -> tuple[signal.Signals, ...]:
    """Every signal ``cls`` has a ``handle_<name>`` method for, in signal number order."""
    return tuple(
        s for s in signal.Signals if callable(getattr(cls, f"handle_{signal_name(s).lower()}", None))
    )
