"""What of an error a caller may see: a caller without the admin permission gets the same code
and reason without what names a tenant's provider key (SECURITY.md section 9); the operator
still learns which key failed, from the log."""

from __future__ import annotations

import logging

from vaultd.core.apikeys import Permission
from vaultd.core.errors import VaultError
from vaultd.core.records import ApiKeyRecord

log = logging.getLogger(__name__)


def is_admin(key: ApiKeyRecord | None) -> bool:
    return key is not None and Permission.ADMIN.value in key.permissions


def shown(error: BaseException, key: ApiKeyRecord | None, method: str) -> BaseException:
    """`error` as the caller of `method` holding `key` may see it; itself when nothing hides."""
    if not isinstance(error, VaultError) or is_admin(key):
        return error
    hidden = error.for_non_admin()
    if hidden is not error:
        log.warning("%s: %s (%s)", method, error.message, error.metadata)
    return hidden
