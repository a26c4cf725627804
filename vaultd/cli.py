"""The `vaultd` command: `vaultd serve`, `vaultd health`, `vaultd byok verify`,
`vaultd apikey create|list|revoke`, `vaultd audit tail`, `vaultd kek list|rotate|rewrap|jobs|
retire|shred`, `vaultd root rotate|retire`, `vaultd store init|status`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from providers import ProviderError
from vaultd import admin_cli, kek_cli, store_cli
from vaultd.core.rules import RuleError
from vaultd.core.storeguard import StoreRefused
from vaultd.settings import Settings, load_settings

# What a bad configuration raises; the CLI prints it and exits 2 instead of a traceback.
CONFIG_ERRORS = (ValidationError, FileNotFoundError, RuleError, ProviderError, ValueError)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="YAML config file (env: VAULTD_CONFIG)")
    common.add_argument("--data-dir", type=Path, help="embedded store and root key directory")
    common.add_argument("--redis-url", help="redis:// or rediss:// URL; selects the Redis store")

    parser = argparse.ArgumentParser(prog="vaultd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", parents=[common], help="run the gRPC server")
    serve.add_argument("--listen", help="HOST:PORT to listen on (default 127.0.0.1:50051)")
    serve.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    serve.add_argument("--metrics-listen", help="HOST:PORT for Prometheus /metrics (default off)")
    serve.add_argument("--console-listen", help="HOST:PORT for the web console (default off)")
    serve.add_argument("--log-format", choices=["json", "text"], help="stderr lines (default json)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate (chain); turns TLS on")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve.add_argument("--tls-client-ca", type=Path, help="PEM CA: require client certificates")
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
    admin_cli.add_commands(commands, common)
    kek_cli.add_commands(commands, common)
    store_cli.add_commands(commands, common)
    byok = commands.add_parser("byok", help="bring-your-own-key rules")
    byok_commands = byok.add_subparsers(dest="byok_command", required=True)
    byok_commands.add_parser(
        "verify",
        parents=[common],
        help="wrap and unwrap with every rule's key; exit 1 if any fails",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    env_config = os.environ.get("VAULTD_CONFIG")
    config = args.config or (Path(env_config) if env_config else None)
    return load_settings(
        config,
        data_dir=args.data_dir,
        redis_url=args.redis_url,
        listen=getattr(args, "listen", None),
        workers=getattr(args, "workers", None),
        metrics_listen=getattr(args, "metrics_listen", None),
        console_listen=getattr(args, "console_listen", None),
        log_format=getattr(args, "log_format", None),
        log_level=getattr(args, "log_level", None),
        tls_cert_file=getattr(args, "tls_cert", None),
        tls_key_file=getattr(args, "tls_key", None),
        tls_client_ca_file=getattr(args, "tls_client_ca", None),
    )


def health_check(args: argparse.Namespace, settings: Settings) -> int:
    from vaultd.healthcheck import TlsOptions, check, local_address

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


async def byok_verify(settings: Settings) -> int:
    """Print one row per rule (and the default key) and return the exit code."""
    from vaultd.server import load_key_config

    providers, rules = load_key_config(settings)
    rows = [("default", rules.default_uri)] + [(r.label, r.key_uri) for r in rules.rules]
    failures = 0
    width = max(len(label) for label, _ in rows)
    print(f"{'RULE':<{width}}  {'KEY URI':<50}  RESULT")
    for label, uri in rows:
        try:
            await providers.for_uri(uri).verify(uri)
            result = "ok"
        except ProviderError as exc:
            failures += 1
            result = f"error: {exc}"
        print(f"{label:<{width}}  {uri:<50}  {result}")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = _settings(args)
        if args.command == "byok":
            return asyncio.run(byok_verify(settings))
        if args.command == "health":
            return health_check(args, settings)
        if args.command in admin_cli.COMMANDS:
            return asyncio.run(admin_cli.run(args, settings))
        if args.command in kek_cli.COMMANDS:
            return asyncio.run(kek_cli.run(args, settings))
        if args.command in store_cli.COMMANDS:
            return asyncio.run(store_cli.run(args, settings))
        from vaultd import logs

        logs.configure(settings.log_format, settings.log_level)
        if settings.workers > 1:
            from vaultd.workers import run

            return run(settings)
        from vaultd import eventloop
        from vaultd.server import serve

        eventloop.run(serve(settings))
    except StoreRefused as exc:
        print(f"vaultd: refusing the store: {exc}", file=sys.stderr)
        return exc.exit_code
    except CONFIG_ERRORS as exc:
        print(f"vaultd: bad configuration: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
