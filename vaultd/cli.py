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

from providers import ProviderError
from vaultd import admin_cli, byok_cli, kek_cli, startup, store_cli
from vaultd.settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="YAML config file (env: VAULTD_CONFIG)")
    common.add_argument(
        "--data-dir",
        type=Path,
        help="embedded store and root key directory (default ./vaultd-data; env: VAULTD_DATA_DIR)",
    )
    common.add_argument(
        "--redis-url",
        help="redis://, rediss://, redis+sentinel:// or redis+cluster:// URL; selects the Redis "
        "store (default: none, the embedded store; env: VAULTD_REDIS_URL)",
    )

    parser = argparse.ArgumentParser(prog="vaultd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vaultd {startup.version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the gRPC server",
        description="Run the gRPC server. Options beat VAULTD_* variables, which beat --config.",
        epilog="A fresh store's first admin API key comes from VAULTD_BOOTSTRAP_API_KEY "
        "(sk_ + 43 base64url characters); without it one is generated, printed once and written "
        "to DATA_DIR/first-admin-key (mode 0600). Start-up failures print one line and exit 2 "
        "(configuration) or 1 (run time).",
    )
    serve.add_argument(
        "--listen", help="HOST:PORT to listen on (default 127.0.0.1:50051; env: VAULTD_LISTEN)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port (default 1; env: VAULTD_WORKERS)",
    )
    serve.add_argument(
        "--metrics-listen",
        help="HOST:PORT for Prometheus /metrics (default off; env: VAULTD_METRICS_LISTEN)",
    )
    serve.add_argument(
        "--http-listen",
        help="HOST:PORT for the WorkOS-compatible HTTP API (default off; env: VAULTD_HTTP_LISTEN)",
    )
    serve.add_argument(
        "--console-listen",
        help="HOST:PORT for the web console (default off; env: VAULTD_CONSOLE_LISTEN)",
    )
    serve.add_argument(
        "--log-format",
        choices=["json", "text"],
        help="stderr lines (default json; env: VAULTD_LOG_FORMAT)",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="default info; warning drops the access lines (env: VAULTD_LOG_LEVEL)",
    )
    serve.add_argument(
        "--tls-cert", type=Path, help="PEM certificate (chain); turns TLS on (default off)"
    )
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve.add_argument(
        "--tls-client-ca", type=Path, help="PEM CA: require client certificates (mutual TLS)"
    )
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
    verify = byok_commands.add_parser(
        "verify",
        parents=[common],
        help="wrap and unwrap with every configured rule's key, or with one registered key "
        "(ID and --environment); exit 1 if any fails",
    )
    verify.add_argument("id", nargs="?", help="a registered key's id (byok_...)")
    verify.add_argument("--environment", help="the registered key's environment")
    byok_cli.add_commands(byok_commands, common)
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
        http_listen=getattr(args, "http_listen", None),
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
    # Every key of every rule: a secondary key that does not answer is found now, not when
    # the primary fails.
    rows = [("default", rules.default_uri)]
    rows += [(r.label, uri) for r in rules.rules for uri in r.key_uris]
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
    settings: Settings | None = None
    try:
        settings = _settings(args)
        return _run(args, settings)
    except Exception as exc:
        # A known start-up failure is one line (vaultd/startup.py); anything else is a bug and
        # keeps its traceback.
        failure = startup.describe(
            exc,
            listen=settings.listen if settings else None,
            redis_url=settings.redis_url if settings else None,
        )
        if failure is None:
            raise
        print(f"vaultd: {failure.message}", file=sys.stderr)
        return failure.exit_code


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "byok":
        if args.byok_command == "verify" and args.id is None:
            return asyncio.run(byok_verify(settings))
        if args.byok_command == "verify" and not args.environment:
            print("vaultd: byok verify ID needs --environment", file=sys.stderr)
            return 2
        return asyncio.run(byok_cli.run(args, settings))
    if args.command == "health":
        return health_check(args, settings)
    if args.command in admin_cli.COMMANDS:
        return asyncio.run(admin_cli.run(args, settings))
    if args.command in kek_cli.COMMANDS:
        return asyncio.run(kek_cli.run(args, settings))
    if args.command in store_cli.COMMANDS:
        return asyncio.run(store_cli.run(args, settings))
    from vaultd import logs

    startup.check_address(settings.listen, startup.LISTEN_SETTING)
    if settings.metrics_listen:
        startup.check_address(settings.metrics_listen, startup.METRICS_SETTING)
    logs.configure(settings.log_format, settings.log_level)
    startup.check_port_free(settings.listen, shared=settings.workers > 1)
    if settings.workers > 1:
        from vaultd.workers import run

        return run(settings)
    from vaultd import eventloop
    from vaultd.server import serve

    eventloop.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
