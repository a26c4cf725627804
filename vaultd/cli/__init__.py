"""The `vaultd` command: `vaultd serve`, `vaultd health`, `vaultd byok add|list|verify|remove`,
`vaultd apikey create|list|revoke`, `vaultd audit tail|verify|hash`, `vaultd kek list|rotate|
rewrap|jobs|retire|shred`, `vaultd root rotate|retire`, `vaultd store init|status`.

One module per command group in this package; each adds its own subparser (`add_parser`) and
runs its commands (`run`, the exit code). This module reads the settings they share and turns a
known failure into one line for the operator.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from vaultd import startup
from vaultd.cli import apikey, audit, byok, health, kek, root, serve, store
from vaultd.settings import Settings, load_settings

GROUPS: dict[str, ModuleType] = {
    group.COMMAND: group for group in (serve, health, apikey, audit, kek, root, store, byok)
}


def _common() -> argparse.ArgumentParser:
    """The options every command reads its settings from."""
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
    return common


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaultd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"vaultd {startup.version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    common = _common()
    for group in GROUPS.values():
        group.add_parser(commands, common)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings: Settings | None = None
    try:
        settings = _settings(args)
        code: int = GROUPS[args.command].run(args, settings)
        return code
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
