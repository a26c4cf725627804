"""Deleted objects: UndeleteObject and PurgeObject (docs/API.md, "Deleted objects").

DeleteObject (core/objects.py) only marks an object deleted. Within the retention
(`deleted_retention_days`) an undelete clears the mark, and the object comes back with every
version exactly as it was: nothing was re-encrypted or copied. After the retention the object
is due for the purge job (core/purge.py), and an undelete answers NOT_FOUND even before the job
has run, so what a caller can recover never depends on when the job last ran. A purge destroys
a deleted object at once; a live one is refused (OBJECT_NOT_DELETED), so no single call can
destroy a live object without the delete that the retention protects.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from vaultd import storage
from vaultd.core.errors import ObjectNotDeleted
from vaultd.core.objectviews import ObjectMetadata, metadata_of, not_found
from vaultd.core.scope import UNSCOPED, ContextScope
from vaultd.core.types import store_errors
from vaultd.core.validation import validate_object_id
from vaultd.storage.base import ObjectStore


class DeletedObjects:
    """Undelete within the retention; purge a deleted object at once."""

    def __init__(
        self,
        store: ObjectStore,
        retention: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock

    async def undelete(
        self, environment_id: str, object_id: str, *, scope: ContextScope = UNSCOPED
    ) -> ObjectMetadata:
        """Restore a deleted object; NOT_FOUND when there is none deleted within the retention
        (never deleted, purged, or deleted too long ago), or it is outside a scoped caller's
        scope (checked before anything changes: a key context never changes)."""
        validate_object_id(object_id)
        deleted_since = self._clock() - self._retention
        with store_errors():
            if not scope.unrestricted:
                context = await self._store.deleted_context(environment_id, object_id)
                if context is None or not scope.allows(context):
                    raise not_found(object_id)
            if not await self._store.undelete_object(environment_id, object_id, deleted_since):
                raise not_found(object_id)
            restored = await self._store.get_object(environment_id, object_id)
        if restored is None:  # deleted again, by another caller, in between
            raise not_found(object_id)
        return metadata_of(restored)

    async def purge(self, environment_id: str, object_id: str) -> None:
        """Destroy a deleted object, every version and its name, now."""
        validate_object_id(object_id)
        with store_errors():
            try:
                purged = await self._store.purge_object(environment_id, object_id)
            except storage.ObjectMissing:
                raise not_found(object_id) from None
        if not purged:
            raise ObjectNotDeleted(
                f"object {object_id} is not deleted: delete it before purging it",
                metadata={"object_id": object_id},
            )
