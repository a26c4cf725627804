"""The operator web console (docs/CONSOLE.md): server-rendered pages over the core services,
served on console_listen; off by default."""

from vaultd.console.listener import ConsoleListener, start_console
from vaultd.console.services import Console

__all__ = ["Console", "ConsoleListener", "start_console"]
