"""The storage errors: what a Store raises, each one mapped by core onto a domain error."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the storage errors; core maps each one onto a domain error."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, timed out, or cannot take the write now.

    `cause` is a short code an operator can act on (ENOSPC, SQLITE_FULL, NO_REPLICA, TIMEOUT,
    ...); the message says it in words. Neither ever holds a value or a key.
    """

    def __init__(self, message: str, cause: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.cause = cause


class NameTaken(StoreError):
    """Another live object in the environment already has this name."""


class ObjectMissing(StoreError):
    """No object with this id exists in the environment."""


class VersionMismatch(StoreError):
    """The expected version id is not the current one."""

    def __init__(self, current_version_id: str) -> None:
        super().__init__("version mismatch")
        self.current_version_id = current_version_id


class BadCursor(StoreError):
    """A cursor that no read of this store returned."""


class KekChanged(StoreError):
    """A write named a KEK version (by its stamp) that the store no longer holds as it was:
    lost in a failover or an emptied store, shredded, or re-wrapped since it was read. Nothing
    was written; the caller reads the KEK again and retries."""

    def __init__(self, kek_id: str) -> None:
        super().__init__(f"KEK {kek_id} changed in the store")
        self.kek_id = kek_id
