"""Key providers: one small interface, one module per KMS, chosen by the key URI's scheme.

A provider wraps and unwraps a key-encryption key under a provider key named by a URI
(`internal://root`, `aws-kms://arn:...`, ...), binding the given associated data so a wrapped
key only unwraps for the context item it was made for. Providers know nothing of objects; they
raise only the two errors below, which core maps onto vaultd's error model.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

Binding = Mapping[str, str]
"""What a wrapped key is bound to; providers pass it as AAD or an encryption context."""

ENTRY_POINT_GROUP = "vaultd.providers"


class ProviderError(Exception):
    """Base of provider errors. Messages name the key URI, never key material."""


class KeyUnavailableError(ProviderError):
    """The provider refused: the key is revoked, disabled, unknown or denied, or this wrapped key
    does not open under it. Retrying cannot help.

    `denied` is True when the provider refused the key itself (access denied, key disabled or
    scheduled for deletion, key not found, role or credentials refused): the customer's
    revocation, which should drop cached KEKs under that key and stop new writes at once. It is
    False when only the request was at fault (a corrupt wrapped key, another binding, a key URI
    that does not parse): the key may be fine for everything else.
    """

    def __init__(self, message: str, *, denied: bool = False) -> None:
        super().__init__(message)
        self.denied = denied


class ProviderUnavailableError(ProviderError):
    """The provider cannot be reached, timed out, or answered with a server error: an outage,
    not an answer about the key. `retry_after` (seconds) is when trying again makes sense, if
    known (a circuit breaker's remaining cool-down).

    `deadline_reached` is True when the call stopped because the caller's deadline
    (providers.deadline) left no room for another attempt: an answer for that caller only. A
    caller sharing the call's result (a single-flight cache) with time left should try again
    itself rather than take this error as its own.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, deadline_reached: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.deadline_reached = deadline_reached


class UnknownSchemeError(ProviderError):
    """No provider is registered for the URI's scheme."""


class ProviderSetupError(ProviderError):
    """A provider cannot start: its SDK is missing or its settings are wrong. Raised at start-up."""


def require(module: str, extra: str) -> Any:
    """Import a provider's SDK lazily, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ProviderSetupError(
            f"the {extra} provider needs {module}: pip install 'vaultd[{extra}]'"
        ) from None


@runtime_checkable
class KeyProvider(Protocol):
    """What every provider implements."""

    scheme: str
    """The URI scheme this provider answers for, e.g. "aws-kms"."""

    async def wrap(self, key_uri: str, key: bytes, binding: Binding) -> bytes:
        """Encrypt `key` under the provider key, bound to `binding`."""
        ...

    async def unwrap(self, key_uri: str, wrapped: bytes, binding: Binding) -> bytes:
        """Decrypt what `wrap` returned; fails unless `binding` is the same."""
        ...

    async def verify(self, key_uri: str) -> None:
        """Raise a ProviderError unless the key can wrap and unwrap now."""
        ...


def needs_rewrap(provider: KeyProvider, key_uri: str, wrapped: bytes) -> bool:
    """Whether `wrapped` should be re-wrapped because the provider key itself moved on.

    Optional for providers: one that holds versions of its own key and wraps under the newest
    (the internal provider's root key) defines `needs_rewrap(key_uri, wrapped) -> bool`. Cloud
    KMSs rotate their key material behind the same key URI and keep decrypting old ciphertext,
    so they need nothing.
    """
    check = getattr(provider, "needs_rewrap", None)
    return bool(check(key_uri, wrapped)) if check is not None else False


def canonical_binding(binding: Binding) -> bytes:
    """One byte string per binding, for providers that take AAD bytes rather than a map."""
    return json.dumps(dict(binding), sort_keys=True, separators=(",", ":")).encode()


def scheme_of(key_uri: str) -> str:
    scheme, sep, rest = key_uri.partition("://")
    if not sep or not scheme or not rest:
        raise UnknownSchemeError(f"{key_uri!r} is not a key URI of the form scheme://key")
    return scheme


class ProviderRegistry:
    """Providers by scheme. An instance is built at start-up and injected, never a global."""

    def __init__(self, providers: Iterable[KeyProvider] = ()) -> None:
        self._by_scheme: dict[str, KeyProvider] = {}
        for provider in providers:
            self.register(provider)

    def register(self, provider: KeyProvider) -> None:
        if provider.scheme in self._by_scheme:
            raise ValueError(f"a provider for {provider.scheme}:// is already registered")
        self._by_scheme[provider.scheme] = provider

    def for_uri(self, key_uri: str) -> KeyProvider:
        scheme = scheme_of(key_uri)
        try:
            return self._by_scheme[scheme]
        except KeyError:
            raise UnknownSchemeError(
                f"no provider is configured for {scheme}:// (key {key_uri})"
            ) from None

    @property
    def schemes(self) -> frozenset[str]:
        return frozenset(self._by_scheme)


BUILT_IN = {
    "aws-kms": "providers.aws_kms:AwsKmsProvider",
    "gcp-kms": "providers.gcp_kms:GcpKmsProvider",
    "azure-kv": "providers.azure_kv:AzureKvProvider",
    "hcvault": "providers.hcvault:HcVaultProvider",
}
"""Provider classes by scheme, imported only when configured (their SDKs are optional extras).
Other packages add schemes through `vaultd.providers` entry points naming a class."""


def provider_class(scheme: str) -> Any:
    """The class for a scheme: built in, or from an installed package's entry point."""
    if scheme in BUILT_IN:
        module, _, name = BUILT_IN[scheme].partition(":")
        return getattr(importlib.import_module(module), name)
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        return ep.load()
    known = sorted({*BUILT_IN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
    raise ProviderSetupError(f"providers: unknown provider {scheme!r} (known: {', '.join(known)})")


def build_registry(
    settings: Mapping[str, Mapping[str, Any]], always: Iterable[KeyProvider] = ()
) -> ProviderRegistry:
    """A registry of `always` plus one provider per configured scheme, each checked now."""
    registry = ProviderRegistry(always)
    for scheme, options in settings.items():
        registry.register(provider_class(scheme).from_settings(options or {}))
    return registry
