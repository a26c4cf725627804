"""A real vaultd with its WorkOS-compatible HTTP listener on, for tests/http and tests/workos_sdk.

Each server gets its own store: a fresh embedded store, or a database of the session's Redis
of its own (tests/http: 11, tests/workos_sdk: 12; no other suite uses them, and two vaultds with
different root keys must not share a database).
Each test makes its API keys in an environment of its own, so listings see only its objects.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.auth import ALL_PERMISSIONS, BOOTSTRAP_API_KEY, add_api_key
from vaultd.server import Vaultd, start
from vaultd.settings import Settings


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


def redis_url_for(server_url: str, db: int) -> str:
    return server_url.removesuffix("/0") + f"/{db}"


@asynccontextmanager
async def http_vaultd(
    kind: str, data_dir: Path, redis_url: str | None = None, **extra: object
) -> AsyncIterator[HttpVaultd]:
    extra.setdefault("http_listen", "127.0.0.1:0")
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=data_dir,
        redis_url=redis_url,
        bootstrap_api_key=BOOTSTRAP_API_KEY,
        **extra,  # type: ignore[arg-type]
    )
    vaultd = await start(settings)
    try:
        yield HttpVaultd(kind, vaultd)
    finally:
        await vaultd.stop(None)
