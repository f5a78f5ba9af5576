"""``swarmd``: argparse -> Config -> the swarm; exceptions -> documented exit codes.

A user's mistake is one line on stderr and an exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from swarmd import logs
from swarmd.config import Config, hide_argv_passwords, load_config, parse_queue
from swarmd.errors import ConfigError, ExitCode, SwarmdError
from swarmd.version import __version__ as VERSION

log = logging.getLogger("swarmd")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, as every other mistake: ``swarmd: error: <what> (see swarmd --help)``, exit 2."""
        message = " ".join(message.split())
        self.exit(int(ExitCode.USAGE), f"swarmd: error: {message} (see swarmd --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="swarmd", description="Run swarmd workers (Sidekiq-compatible jobs for Python).")
    p.add_argument(
        "-C", "--config", metavar="FILE", help="YAML config (default: config/swarmd.yml if present)"
    )
    p.add_argument(
        "-e",
        "--environment",
        metavar="ENV",
        help="config section to apply (default: SWARMD_ENV, APP_ENV, development)",
    )
    p.add_argument("-p", "--processes", type=int, metavar="N", help="worker processes (default 1)")
    p.add_argument(
        "-c", "--concurrency", type=int, metavar="N", help="processor threads per worker (default 10)"
    )
    p.add_argument(
        "-q", "--queue", action="append", metavar="QUEUE[,WEIGHT]", help="queue to process (repeatable)"
    )
    p.add_argument(
        "-r",
        "--require",
        action="append",
        metavar="MODULE_OR_PATH",
        help="module or .py file with job functions (repeatable; added to the config file's require)",
    )
    p.add_argument("-t", "--timeout", type=float, metavar="SECONDS", help="shutdown timeout (default 25)")
    p.add_argument("-g", "--tag", help="tag shown in process titles and the Web UI")
    p.add_argument("-v", "--verbose", action="store_true", default=None, help="log at DEBUG")
    p.add_argument("-P", "--pidfile", metavar="PIDFILE")
    p.add_argument("-L", "--logfile", metavar="LOGFILE")
    p.add_argument(
        "--syslog", nargs="?", const=True, metavar="IDENT", help="log to syslog (identifier default: swarmd)"
    )
    p.add_argument("--redis-url", metavar="URL")
    p.add_argument(
        "--metrics-port",
        metavar="[HOST:]PORT",
        help="serve Prometheus /metrics there (a port alone: on 127.0.0.1)",
    )
    p.add_argument("-V", "--version", action="version", version=f"swarmd {VERSION}")
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {
        "processes": args.processes,
        "concurrency": args.concurrency,
        "timeout": args.timeout,
        "tag": args.tag,
        "verbose": args.verbose,
        "pidfile": args.pidfile,
        "logfile": args.logfile,
        "redis_url": args.redis_url,
        "require": args.require,
        "metrics_port": args.metrics_port,
    }
    if args.queue:
        try:
            overrides["queues"] = [parse_queue(q) for q in args.queue]
        except ConfigError as exc:
            raise ConfigError(f"--queue: {exc}") from None
    if args.syslog is not None:
        overrides["syslog"] = args.syslog  # True or an ident; the file's facility and address are kept
    return load_config(args.config, args.environment, overrides)


def setup_logs(config: Config) -> None:
    syslog = None
    if config.syslog is not None:
        syslog = logs.SyslogTarget(config.syslog.ident, config.syslog.facility, config.syslog.address)
    log_format: logs.LogFormat = "json" if config.log_format == "json" else "text"
    logs.setup_logging(
        verbose=config.verbose, logfile=config.logfile, syslog=syslog, log_format=log_format, app_logs=True
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    if argv is None:  # the real command line (tests call main(argv) in their own process)
        hide_argv_passwords()
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"swarmd: {exc}", file=sys.stderr)
        sys.exit(int(ExitCode.CONFIG))
    try:
        setup_logs(config)
    except ConfigError as exc:  # a logfile that cannot be opened, an unknown syslog facility
        print(f"swarmd: {exc}", file=sys.stderr)
        sys.exit(int(ExitCode.CONFIG))
    except OSError as exc:
        print(f"swarmd: logfile {config.logfile}: {exc.strerror}", file=sys.stderr)
        sys.exit(int(ExitCode.CONFIG))
    from swarmd.swarm import run  # imported late: `swarmd --version` stays fast

    try:
        # HUP re-reads the config file with the same flags (a broken one is rejected by the supervisor).
        code = run(config, reload=lambda: config_from_args(args))
    except SwarmdError as exc:
        log.error("%s", exc)
        code = int(exc.exit_code)
    sys.exit(code)
