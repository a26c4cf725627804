"""The one exception tree of vaultd's domain.

Each error names its gRPC status code as a plain string (core never imports grpc) and a stable
reason; vaultd.api.errors maps them onto a google.rpc.Status with ErrorInfo and BadRequest.
Messages and metadata never carry a value, a key or a plaintext: only ids, names of fields and
the rule that was broken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field, as google.rpc.BadRequest.FieldViolation shows it."""

    field: str
    description: str


# Error metadata only callers with the admin permission receive.
ADMIN_ONLY_METADATA = frozenset({"key_uri"})


class VaultError(Exception):
    """Base of every error a client may see, with its status code and reason."""

    code: str = "INTERNAL"
    reason: str = "INTERNAL"
    # Seconds after which a retry may succeed; when set, the status carries google.rpc.RetryInfo.
    retry_delay: float | None = None

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata or {})
        self.violations = violations

    def for_non_admin(self) -> VaultError:
        """This error as a caller without the admin permission may see it: the same code and
        reason, without what names a tenant's provider key (a CMK URI names its cloud account,
        region and key; SECURITY.md section 9). Itself when there is nothing to hide."""
        if ADMIN_ONLY_METADATA.isdisjoint(self.metadata):
            return self
        shown = type(self).__new__(type(self))
        VaultError.__init__(
            shown,
            self.public_message,
            metadata={k: v for k, v in self.metadata.items() if k not in ADMIN_ONLY_METADATA},
            violations=self.violations,
        )
        shown.reason = self.reason
        shown.retry_delay = self.retry_delay
        return shown

    @property
    def public_message(self) -> str:
        """The message for callers who may not see the provider key's URI."""
        return f"{self.reason.lower().replace('_', ' ')}; an admin can find which key in the logs"


class InvalidArgument(VaultError):
    """A request field breaks a rule; `reason` says which kind of field."""

    code = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str, *, reason: str | None = None) -> None:
        super().__init__(
            f"{field}: {description}", violations=(FieldViolation(field, description),)
        )
        if reason is not None:
            self.reason = reason


class InvalidKeyContext(InvalidArgument):
    reason = "INVALID_KEY_CONTEXT"


class InvalidName(InvalidArgument):
    reason = "INVALID_NAME"


class ValueTooLarge(InvalidArgument):
    reason = "VALUE_TOO_LARGE"


class InvalidCursor(InvalidArgument):
    reason = "INVALID_CURSOR"


class InvalidId(InvalidArgument):
    reason = "INVALID_ID"


class InvalidBlob(InvalidArgument):
    """A blob (encrypted_keys, ciphertext) is not well formed.

    To a client this is the same failure as a blob that does not authenticate: it cannot be
    opened. One reason for both keeps callers from branching on how a blob was damaged.
    """

    reason = "DECRYPTION_FAILED"


class DecryptionFailed(VaultError):
    """Ciphertext or associated data did not authenticate."""

    code = "INVALID_ARGUMENT"
    reason = "DECRYPTION_FAILED"


class IntegrityViolation(VaultError):
    """Stored data contradicts what authenticates it (a swapped, relabelled or rolled-back
    record, or a KEK recorded for another item): refused, never served (docs/SECURITY.md)."""

    code = "DATA_LOSS"
    reason = "INTEGRITY_VIOLATION"


class ObjectNotFound(VaultError):
    code = "NOT_FOUND"
    reason = "OBJECT_NOT_FOUND"


class NameTaken(VaultError):
    code = "ALREADY_EXISTS"
    reason = "NAME_TAKEN"


class ObjectNotDeleted(VaultError):
    """PurgeObject names a live object: only a deleted one may be purged (delete it first)."""

    code = "FAILED_PRECONDITION"
    reason = "OBJECT_NOT_DELETED"


class VersionConflict(VaultError):
    """A stale version_check; the current version id travels in the metadata."""

    code = "ABORTED"
    reason = "VERSION_CONFLICT"

    def __init__(self, object_id: str, current_version_id: str) -> None:
        super().__init__(
            f"object {object_id} is at version {current_version_id}, not the one checked",
            metadata={"object_id": object_id, "current_version_id": current_version_id},
        )
        self.current_version_id = current_version_id


class KeyUnavailable(VaultError):
    """A provider key is revoked, disabled, unknown or access to it is denied."""

    code = "FAILED_PRECONDITION"
    reason = "KEY_UNAVAILABLE"

    @property
    def public_message(self) -> str:
        return (
            "the provider key protecting this data is unavailable (revoked, disabled or "
            "access denied); an admin can find which in the logs"
        )


class KeyShredded(VaultError):
    """The context item's KEKs were destroyed on purpose."""

    code = "FAILED_PRECONDITION"
    reason = "KEY_SHREDDED"


class KeyVersionRetired(VaultError):
    """A wrapped key names a KEK version below the KEK's min_decryption_version."""

    code = "FAILED_PRECONDITION"
    reason = "KEY_VERSION_RETIRED"


class KekNotFound(VaultError):
    """No KEK exists for the context item named (none was made for it yet)."""

    code = "NOT_FOUND"
    reason = "KEK_NOT_FOUND"


class RewrapJobNotFound(VaultError):
    code = "NOT_FOUND"
    reason = "REWRAP_JOB_NOT_FOUND"


class BackendUnavailable(VaultError):
    """Storage or a KMS cannot be reached or timed out."""

    code = "UNAVAILABLE"
    reason = "BACKEND_UNAVAILABLE"

    @property
    def public_message(self) -> str:
        return "a key provider is unavailable; retry later"


class KeyProviderUnavailable(BackendUnavailable):
    """A KMS did not answer (in time) or answered with a server error: an outage, not a
    refusal. `retry_delay` carries the provider's hint (its breaker's cool-down).

    `deadline_reached`: the provider stopped because the caller's own deadline left no room for
    another attempt. A caller that only shared the call (the KEK cache's single flight) and has
    time left should try again itself rather than take this as its answer.
    """

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        retry_delay: float | None = None,
        deadline_reached: bool = False,
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.retry_delay = retry_delay
        self.deadline_reached = deadline_reached


class StoreIdentityMismatch(VaultError):
    """The store is not the one this deployment served: emptied or replaced (storeguard.py)."""

    code = "UNAVAILABLE"
    reason = "STORE_IDENTITY_MISMATCH"


class StoreNotDurable(VaultError):
    """The store would lose acknowledged writes on a restart, and vaultd was not told to
    accept that (storeguard.py)."""

    code = "UNAVAILABLE"
    reason = "STORE_NOT_DURABLE"


class Unauthenticated(VaultError):
    code = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


class ApiKeyMissing(Unauthenticated):
    """No `authorization: Bearer <key>` metadata."""

    reason = "API_KEY_MISSING"


class ApiKeyMalformed(Unauthenticated):
    """The authorization metadata is not one `Bearer sk_...` key of the right shape."""

    reason = "API_KEY_MALFORMED"


class ApiKeyInvalid(Unauthenticated):
    """No such key, or it was revoked: one reason for both, so a caller cannot tell which."""

    reason = "API_KEY_INVALID"


class PermissionDenied(VaultError):
    code = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"


class ContextNotPermitted(PermissionDenied):
    """A context-scoped API key asked to create, decrypt or re-key under a key context outside
    its constraints (core/scope.py). Names no context: for a decrypt it would be another
    tenant's, recovered from the blob."""

    reason = "CONTEXT_NOT_PERMITTED"


class ApiKeyNotFound(VaultError):
    code = "NOT_FOUND"
    reason = "API_KEY_NOT_FOUND"


class ResourceExhausted(VaultError):
    code = "RESOURCE_EXHAUSTED"
    reason = "RESOURCE_EXHAUSTED"


class KekQuotaExceeded(ResourceExhausted):
    """A new KEK would pass a quota (quota.py); `retry_delay` is set when waiting helps."""

    reason = "KEK_QUOTA_EXCEEDED"

    def __init__(self, quota: str, limit: int, retry_delay: float | None) -> None:
        super().__init__(
            f"no new KEK: the {quota.replace('_', ' ')} quota ({limit}) is spent"
            + (f"; retry in {retry_delay:.1f}s" if retry_delay else ""),
            metadata={"quota": quota, "limit": str(limit)},
        )
        self.retry_delay = retry_delay


class RateLimited(ResourceExhausted):
    """The caller spent its rate limit; `retry_delay` says when its next call may go ahead."""

    reason = "RATE_LIMITED"

    def __init__(self, retry_delay: float) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_delay:.3f}s")
        self.retry_delay = retry_delay


class ByokKeyNotFound(VaultError):
    code = "NOT_FOUND"
    reason = "BYOK_KEY_NOT_FOUND"


class ByokKeyConflict(VaultError):
    """Another BYOK key or a configured rule already governs the same match; `conflicts_with`
    in the metadata names it."""

    code = "ALREADY_EXISTS"
    reason = "BYOK_KEY_CONFLICT"


class ByokKeyVerificationFailed(VaultError):
    """A wrap and unwrap of a probe through the key's provider failed; nothing was registered."""

    code = "FAILED_PRECONDITION"
    reason = "BYOK_KEY_VERIFICATION_FAILED"
