"""The Python client for vaultd: VaultClient (blocking) and AsyncVaultClient (asyncio).

Both speak every ObjectService and KeyService call under Pythonic names and encrypt and decrypt
locally in the blob docs/FORMAT.md specifies, so only data keys cross the network.

Layout: `_rpc` builds each call once (request, response parsing, retry policy), `_local` holds
local encrypt/decrypt as steps both clients drive, `_base` the channel set-up; `_sync` and `_aio`
only decide how to wait.
"""

from vaultd.client._aio import AsyncVaultClient
from vaultd.client._sync import VaultClient
from vaultd.client.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    DecryptionFailed,
    IntegrityViolation,
    InvalidArgument,
    InvalidKeyContext,
    KeyShredded,
    KeyUnavailable,
    NameTaken,
    ObjectNotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    VaultdError,
    VersionConflict,
)
from vaultd.client.models import (
    Actor,
    DataKey,
    ObjectDigest,
    ObjectMetadata,
    ObjectVersion,
    VaultObject,
)

__all__ = [
    "Actor",
    "AsyncVaultClient",
    "BackendUnavailable",
    "DataKey",
    "DeadlineExceeded",
    "DecryptionFailed",
    "IntegrityViolation",
    "InvalidArgument",
    "InvalidKeyContext",
    "KeyShredded",
    "KeyUnavailable",
    "NameTaken",
    "ObjectDigest",
    "ObjectMetadata",
    "ObjectNotFound",
    "ObjectVersion",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "VaultClient",
    "VaultObject",
    "VaultdError",
    "VersionConflict",
]
