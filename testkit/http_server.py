"""A real vaultd with its WorkOS-compatible HTTP listener on, for tests/http and tests/workos_sdk.

Each server gets its own store: a fresh embedded store, or a database of the session's Redis
of its own (RedisDb.HTTP, RedisDb.WORKOS_SDK in testkit/redis_dbs.py). It is testkit/running.py's
`running_vaultd` with the HTTP listener on.
Each test makes its API keys in an environment of its own, so listings see only its objects.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.auth import ALL_PERMISSIONS, add_api_key
from testkit.running import running_vaultd
from vaultd.server import Vaultd


def new_secret() -> str:
    """An API key secret in vaultd's format: sk_ and 43 URL-safe characters."""
    return "sk_" + secrets.token_urlsafe(32)


@dataclass
class HttpVaultd:
    kind: str
    vaultd: Vaultd

    @property
    def base_url(self) -> str:
        assert self.vaultd.http is not None
        scheme = "https" if self.vaultd.http.tls else "http"
        return f"{scheme}://127.0.0.1:{self.vaultd.http.port}"

    @property
    def http_port(self) -> int:
        assert self.vaultd.http is not None
        return self.vaultd.http.port

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.vaultd.port}"

    async def new_key(
        self, environment: str | None = None, permissions: Iterable[str] = ALL_PERMISSIONS
    ) -> str:
        """A new API key's secret, in `environment` (by default a new one of its own)."""
        secret = new_secret()
        env = environment or f"env_{secrets.token_hex(6)}"
        await add_api_key(self.vaultd.store, secret, env, permissions, name="workos-tests")
        return secret


@asynccontextmanager
async def http_vaultd(
    kind: str, data_dir: Path, redis_url: str | None = None, **extra: object
) -> AsyncIterator[HttpVaultd]:
    extra.setdefault("http_listen", "127.0.0.1:0")
    async with running_vaultd(kind, data_dir, redis_url, **extra) as running:
        yield HttpVaultd(kind, running.vaultd)
