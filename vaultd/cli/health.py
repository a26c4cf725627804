"""`vaultd health`: exit 0 if a running vaultd's health service says SERVING (a container's
HEALTHCHECK)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vaultd.cli.output import Subcommands
from vaultd.healthcheck import TlsOptions, check, local_address
from vaultd.settings import Settings

COMMAND = "health"


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    health = commands.add_parser(
        "health", parents=[common], help="exit 0 if vaultd's health service says SERVING"
    )
    health.add_argument("--address", help="HOST:PORT (default: the configured listen address)")
    health.add_argument("--service", default="", help="service name (default: the server)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    # Defaults from variables, so a container's HEALTHCHECK follows its TLS set-up unchanged.
    for flag, what in [
        ("ca", "CA that signed vaultd's certificate; turns TLS on"),
        ("cert", "client certificate, for mutual TLS"),
        ("key", "client key, for mutual TLS"),
    ]:
        variable = f"VAULTD_HEALTH_TLS_{flag.upper()}"
        health.add_argument(
            f"--tls-{flag}",
            type=Path,
            default=os.environ.get(variable),
            help=f"{what} (env: {variable})",
        )
    health.add_argument(
        "--tls-server-name",
        default=os.environ.get("VAULTD_HEALTH_TLS_SERVER_NAME"),
        help="name to verify in vaultd's certificate (env: VAULTD_HEALTH_TLS_SERVER_NAME)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    tls = None
    if args.tls_ca or args.tls_cert:
        tls = TlsOptions(
            Path(args.tls_ca) if args.tls_ca else None,
            Path(args.tls_cert) if args.tls_cert else None,
            Path(args.tls_key) if args.tls_key else None,
            args.tls_server_name,
        )
    address = args.address or local_address(settings.listen)
    status = check(address, service=args.service, timeout=args.timeout, tls=tls)
    print(status)
    return 0 if status == "SERVING" else 1
