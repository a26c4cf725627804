"""Local stand-ins for the KMS providers, speaking each provider's wire protocol on 127.0.0.1.

Every stand-in fixture yields an object of this shape, so BYOK, fault and benchmark tests can
drive any provider the same way.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol


class StandIn(Protocol):
    scheme: str
    """The key URI scheme of the provider this stands in for."""

    provider_settings: dict[str, Any]
    """What goes under `providers: {<scheme>: ...}` in vaultd's config to reach this stand-in."""

    calls: Counter[str]
    """How many wrap ("wrap") and unwrap ("unwrap") requests the stand-in itself received."""

    def create_key(self, name: str) -> str:
        """Create a key in the stand-in and return its vaultd key URI."""
        ...

    def revoke(self, key_uri: str) -> None:
        """Make the key unusable (disabled, deleted or access denied), as a tenant revoking it."""
        ...

    def restore(self, key_uri: str) -> None:
        """Undo revoke(): the same key material works again."""
        ...

    def stop(self) -> None:
        """Take the stand-in off the network (an outage)."""
        ...

    def start(self) -> None:
        """Bring it back on the same address after stop()."""
        ...
