"""The `vaultd` command: `vaultd serve`, `vaultd byok verify`."""

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
from vaultd.core.rules import RuleError
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
    )


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
        from vaultd.server import serve

        asyncio.run(serve(settings))
    except CONFIG_ERRORS as exc:
        print(f"vaultd: bad configuration: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
