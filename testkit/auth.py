"""API keys for tests: a known admin key, channels that send a key, keys made on a store.

Servers started by tests get BOOTSTRAP_API_KEY (settings.bootstrap_api_key) and channels made by
`channel()` send it on every call, as `authorization: Bearer ...` metadata. A call that passes
its own authorization metadata keeps it, so a test can still try other keys (or none) on the
same channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import grpc
from ulid import ULID

from vaultd.core.apikeys import secret_hash
from vaultd.storage import ApiKeyRecord, Store

BOOTSTRAP_API_KEY = "sk_vaultd-tests-bootstrap-admin-key-0000000000"
ALL_PERMISSIONS = ("objects:read", "objects:write", "keys:use", "admin")


def bearer(api_key: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying `api_key`."""
    return (("authorization", f"Bearer {api_key}"),)


class _Bearer:
    """Adds `authorization: Bearer <api_key>` to every call that has no authorization yet.

    grpc.aio files an interceptor under the first call kind it implements only, so each kind
    gets its own class below.
    """

    def __init__(self, api_key: str) -> None:
        self._entry = bearer(api_key)[0]

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = list(details.metadata or ())
        if not any(key == "authorization" for key, _ in metadata):
            metadata.append(self._entry)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def bearer_interceptors(api_key: str) -> list[Any]:
    """Client interceptors that send `api_key` on every unary and streaming call."""
    return [kind(api_key) for kind in (_UnaryUnary, _UnaryStream, _StreamStream)]


def channel(target: str, api_key: str | None = BOOTSTRAP_API_KEY) -> grpc.aio.Channel:
    """An insecure channel to `target` sending `api_key` (None: sending no key)."""
    return grpc.aio.insecure_channel(
        target, interceptors=bearer_interceptors(api_key) if api_key else None
    )


async def add_api_key(
    store: Store,
    secret: str,
    environment_id: str = "default",
    permissions: Iterable[str] = ALL_PERMISSIONS,
    name: str = "tests",
) -> ApiKeyRecord:
    """The key with this secret, added to the store directly unless it is there already."""
    digest = secret_hash(secret)
    found = await store.find_api_key(digest)
    if found is not None:
        return found
    record = ApiKeyRecord(
        id=f"key_{ULID()}",
        name=name,
        environment_id=environment_id,
        permissions=tuple(permissions),
        secret_hash=digest,
        created_at=datetime.now(UTC),
    )
    await store.add_api_key(record)
    return record
