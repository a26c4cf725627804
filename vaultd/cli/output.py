"""What the operator commands share: the parser type, tables on stdout, times in them, and who
the operator is (the audit actor of a command's changes)."""

from __future__ import annotations

import argparse
import getpass
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeAlias

from vaultd.core.audit import Origin
from vaultd.core.types import Actor

# A string: argparse._SubParsersAction is not subscriptable at run time.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""Where each command group adds its parser (`add_parser(commands, common)`)."""


def command_group(commands: Subcommands, name: str, help: str) -> Subcommands:
    """`vaultd NAME ...`: a group whose chosen command is in args.NAME_command."""
    group = commands.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True)


def print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, two spaces apart."""
    lines = [header, *rows]
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    for row in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name, as in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def cli_origin(environment_id: str, command: str) -> Origin:
    """The audit origin of a command's change: the actor "cli", named after the operator."""
    return Origin(environment_id, Actor("cli", operator()), method=command)
