"""Typed exceptions for vaultd's error reasons (docs/ARCHITECTURE.md section 7), for both clients.

A failed call becomes the exception its `google.rpc.ErrorInfo` reason names (read from the
`grpc-status-details-bin` trailer); without one (a proxy, a transport failure) the status code
picks a class. Local failures (a blob that does not parse or authenticate) raise the same classes
the server would, so a caller cannot tell whether the client or the server refused a blob.
Messages come from the server or from vaultd.core, which never put a value, key or plaintext in one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from vaultd.core.errors import VaultError

DOMAIN = "vaultd"
_DETAILS_KEY = "grpc-status-details-bin"


class VaultdError(Exception):
    """Any failed vaultd call: its gRPC status code, ErrorInfo reason, message and metadata."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        violations: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        # (field, description) pairs from google.rpc.BadRequest, when the server sent one.
        self.violations = violations

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason or '-'}: {self.message}"


class InvalidArgument(VaultdError):
    """A request field breaks a rule (INVALID_ARGUMENT); `violations` names the fields."""


class InvalidKeyContext(InvalidArgument):
    """The key context breaks a rule: 1 to 10 items, short non-empty keys and values."""


class DecryptionFailed(InvalidArgument):
    """A blob or encrypted_keys is malformed, altered, or the associated data is wrong."""


class ObjectNotFound(VaultdError):
    """No such object or version in the caller's environment."""


class NameTaken(VaultdError):
    """Another object in the environment already has this name."""


class VersionConflict(VaultdError):
    """The version_check is stale; `current_version_id` is the version to check against now."""

    @property
    def current_version_id(self) -> str | None:
        return self.metadata.get("current_version_id")


class KeyUnavailable(VaultdError):
    """A provider key (a tenant's CMK) is revoked, disabled or not accessible."""


class KeyShredded(VaultdError):
    """The context item's KEKs were destroyed on purpose; its data is gone for good."""


class BackendUnavailable(VaultdError):
    """vaultd, its storage or a KMS cannot be reached right now; retrying later may work."""


class DeadlineExceeded(VaultdError):
    """The call did not finish within the client's timeout."""


class Unauthenticated(VaultdError):
    """No API key, or one vaultd does not know."""


class PermissionDenied(VaultdError):
    """The API key may not do this."""


class ResourceExhausted(VaultdError):
    """Over a rate or size limit."""


class IntegrityViolation(VaultdError):
    """The server refused to serve stored data that fails its integrity checks (a record
    swapped, relabelled or rolled back in the store): a matter for the operator."""


_BY_REASON: dict[str, type[VaultdError]] = {
    "INVALID_KEY_CONTEXT": InvalidKeyContext,
    "DECRYPTION_FAILED": DecryptionFailed,
    "OBJECT_NOT_FOUND": ObjectNotFound,
    "NAME_TAKEN": NameTaken,
    "VERSION_CONFLICT": VersionConflict,
    "KEY_UNAVAILABLE": KeyUnavailable,
    "KEY_SHREDDED": KeyShredded,
    "BACKEND_UNAVAILABLE": BackendUnavailable,
    "INTEGRITY_VIOLATION": IntegrityViolation,
}
_BY_CODE: dict[Any, type[VaultdError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: ObjectNotFound,
    grpc.StatusCode.ALREADY_EXISTS: NameTaken,
    grpc.StatusCode.ABORTED: VersionConflict,
    grpc.StatusCode.FAILED_PRECONDITION: KeyUnavailable,
    grpc.StatusCode.UNAVAILABLE: BackendUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DATA_LOSS: IntegrityViolation,
}


def _make(
    code: Any,
    reason: str,
    message: str,
    metadata: Mapping[str, str],
    violations: tuple[tuple[str, str], ...],
    *,
    trusted_reason: bool,
) -> VaultdError:
    cls = (_BY_REASON.get(reason) if trusted_reason else None) or _BY_CODE.get(code, VaultdError)
    return cls(code, reason, message, metadata, violations)


def from_rpc_error(error: grpc.RpcError) -> VaultdError:
    """The typed exception for a failed call (sync or asyncio)."""
    code = error.code()
    reason, domain = "", ""
    metadata: dict[str, str] = {}
    violations: tuple[tuple[str, str], ...] = ()
    raw = dict(error.trailing_metadata() or ()).get(_DETAILS_KEY)
    if isinstance(raw, bytes):
        try:
            status = status_pb2.Status.FromString(raw)
        except Exception:  # a garbled trailer must not hide the status code itself
            status = status_pb2.Status()
        for packed in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            if packed.Unpack(info):
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif packed.Unpack(bad):
                violations = tuple((v.field, v.description) for v in bad.field_violations)
    # Only vaultd's own ErrorInfo picks a class by reason; anything else falls back to the code.
    return _make(
        code,
        reason,
        error.details() or "",
        metadata,
        violations,
        trusted_reason=domain == DOMAIN,
    )


def from_core_error(error: VaultError) -> VaultdError:
    """The exception for a local failure, the same one the server would have sent."""
    violations = tuple((v.field, v.description) for v in error.violations)
    return _make(
        grpc.StatusCode[error.code],
        error.reason,
        error.message,
        error.metadata,
        violations,
        trusted_reason=True,
    )
