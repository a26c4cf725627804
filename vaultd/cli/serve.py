"""`vaultd serve`: check the addresses and the port, then serve in this process (vaultd/server.py)
or in --workers processes (vaultd/workers.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaultd import eventloop, logs, startup
from vaultd.cli.output import Subcommands
from vaultd.settings import Settings

COMMAND = "serve"


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "serve",
        parents=[common],
        help="run the gRPC server",
        description="Run the gRPC server. Options beat VAULTD_* variables, which beat --config.",
        epilog="A fresh store's first admin API key comes from VAULTD_BOOTSTRAP_API_KEY "
        "(sk_ + 43 base64url characters); without it one is generated, printed once and written "
        "to DATA_DIR/first-admin-key (mode 0600). Start-up failures print one line and exit 2 "
        "(configuration) or 1 (run time).",
    )
    parser.add_argument(
        "--listen", help="HOST:PORT to listen on (default 127.0.0.1:50051; env: VAULTD_LISTEN)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port (default 1; env: VAULTD_WORKERS)",
    )
    for flag, what, variable in [
        ("metrics-listen", "Prometheus /metrics", "VAULTD_METRICS_LISTEN"),
        ("http-listen", "the WorkOS-compatible HTTP API", "VAULTD_HTTP_LISTEN"),
        ("console-listen", "the web console", "VAULTD_CONSOLE_LISTEN"),
    ]:
        parser.add_argument(
            f"--{flag}", help=f"HOST:PORT for {what} (default off; env: {variable})"
        )
    parser.add_argument(
        "--log-format",
        choices=["json", "text"],
        help="stderr lines (default json; env: VAULTD_LOG_FORMAT)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="default info; warning drops the access lines (env: VAULTD_LOG_LEVEL)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, help="PEM certificate (chain); turns TLS on (default off)"
    )
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca", type=Path, help="PEM CA: require client certificates (mutual TLS)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    startup.check_address(settings.listen, startup.LISTEN_SETTING)
    if settings.metrics_listen:
        startup.check_address(settings.metrics_listen, startup.METRICS_SETTING)
    logs.configure(settings.log_format, settings.log_level)
    startup.check_port_free(settings.listen, shared=settings.workers > 1)
    # Imported here: the other commands need neither gRPC's server nor the listeners.
    if settings.workers > 1:
        from vaultd import workers

        return workers.run(settings)
    from vaultd.server import serve

    eventloop.run(serve(settings))
    return 0
