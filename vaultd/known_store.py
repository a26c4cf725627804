"""What this host remembers of the store it served: the store id, in DATA_DIR/store-id.

The store's identity says which store it is; this file says which store this host expects. A
store that comes back empty, or a URL that now reaches another store, is then refused
(vaultd/core/storeguard.py) instead of served afresh. The file holds no secret; it is written
0600 all the same, like everything in the data directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vaultd.core.storeguard import KnownStore, StoreRefused

log = logging.getLogger(__name__)

STORE_ID_FILE = "store-id"


def known_store(data_dir: Path, root_key_is_new: bool) -> KnownStore:
    """The store id remembered in `data_dir` (None: none yet), and how to remember another."""
    path = data_dir / STORE_ID_FILE
    try:
        store_id = path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        store_id = None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreRefused(f"cannot read {path}: {exc}", exit_code=2) from None

    def remember(new_id: str) -> None:
        if not data_dir.is_dir():
            # A Redis deployment whose root key lives elsewhere need not have a data directory;
            # the store's identity still guards against another root key.
            log.info("not remembering store %s: %s is not a directory", new_id, data_dir)
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
            # Best effort: without the file, an emptied store is still caught by the root key
            # file's history; only a replaced one with the same root key would go unnoticed.
            log.warning("could not remember store %s in %s: %s", new_id, path, exc)

    return KnownStore(store_id, root_key_is_new, remember)
