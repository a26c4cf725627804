"""What a root key remembers of the store it served: the store id, in a `store-id` file beside
the root key file (in the data directory by default).

The store's identity says which store it is; this file says which store this root key expects.
A store that comes back empty, or a URL that now reaches another store, is then refused
(vaultd/core/storeguard.py) instead of served afresh. The file holds no secret; it is written
0600 all the same, like the root key beside it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vaultd.core.storeguard import KnownStore, StoreRefused

log = logging.getLogger(__name__)

STORE_ID_FILE = "store-id"


def known_store(directory: Path) -> KnownStore:
    """The store id remembered in `directory` (None: none yet), and how to remember another."""
    path = directory / STORE_ID_FILE
    try:
        store_id = path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        store_id = None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreRefused(f"cannot read {path}: {exc}", exit_code=2) from None

    def remember(new_id: str) -> None:
        if not directory.is_dir():
            log.info("not remembering store %s: %s is not a directory", new_id, directory)
            return
        temporary = path.with_name(f".{STORE_ID_FILE}.{os.getpid()}")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(new_id + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            # Best effort (a root key on a read-only mount): the store's identity still guards
            # against another root key; an emptied store would be served afresh.
            log.warning("could not remember store %s in %s: %s", new_id, path, exc)

    return KnownStore(store_id, remember)
