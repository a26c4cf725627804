"""What VaultClient and AsyncVaultClient share: the channel, credentials, deadline, retries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import grpc

from vaultd.client import _rpc
from vaultd.client._local import DataKeyCache
from vaultd.v1 import key_service_pb2_grpc, object_service_pb2_grpc


class ClientBase:
    # grpc or grpc.aio: both offer secure_channel(target, credentials, options) and
    # insecure_channel(target, options), so one constructor makes either kind of channel.
    _grpc: ClassVar[Any]

    def __init__(
        self,
        target: str,
        api_key: str | None = None,
        *,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        timeout: float = 10.0,
        tls: bool | None = None,
        data_key_cache_ttl: float = 0.0,
        channel_options: Sequence[tuple[str, Any]] = (),
        key_commitment: bool = True,
        require_key_commitment: bool = False,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if (private_key is None) != (certificate_chain is None):
            raise ValueError("private_key and certificate_chain go together (mutual TLS)")
        certificates = (root_certificates, private_key, certificate_chain)
        wants_tls = any(c is not None for c in certificates)
        if tls is False and wants_tls:
            raise ValueError("certificates were given with tls=False")
        self._target = target
        self._tls = wants_tls if tls is None else tls
        self._timeout = timeout
        # Per-call metadata rather than call credentials: gRPC allows call credentials on TLS
        # channels only, and a local vaultd is often plain text.
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        # encrypt writes key-committing blobs unless key_commitment=False (the WorkOS layout,
        # for readers that know only it); decrypt reads both unless require_key_commitment.
        self._committing = key_commitment
        self._require_commitment = require_key_commitment
        self._cache = (
            DataKeyCache(data_key_cache_ttl, committing=key_commitment)
            if data_key_cache_ttl > 0
            else None
        )
        options = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _rpc.service_config()),
            *channel_options,
        ]
        if self._tls:
            credentials = grpc.ssl_channel_credentials(*certificates)
            self._channel = self._grpc.secure_channel(target, credentials, options)
        else:
            self._channel = self._grpc.insecure_channel(target, options)
        self._stubs = {
            "objects": object_service_pb2_grpc.ObjectServiceStub(self._channel),
            "keys": key_service_pb2_grpc.KeyServiceStub(self._channel),
        }

    @property
    def channel(self) -> Any:
        """The underlying channel, for other stubs (health, reflection) on the same connection."""
        return self._channel

    @property
    def timeout(self) -> float:
        """The deadline of every call, in seconds; retries happen inside it."""
        return self._timeout

    def _method(self, call: _rpc.Call[Any]) -> Any:
        return getattr(self._stubs[call.service], call.method)

    def __repr__(self) -> str:
        # Never the API key.
        return f"{type(self).__name__}({self._target!r}, tls={self._tls}, timeout={self._timeout})"
