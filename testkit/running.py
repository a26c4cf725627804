"""The one way tests run a real vaultd in-process: `running_vaultd` starts it on a free port
with an admin API key and a channel that sends it, and yields a `Running` handle.

Every suite's server fixture (tests/conftest.py's session-wide `running`, the fuzz, lifecycle,
console, HTTP and amplification servers) is this factory with its own settings and database.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from testkit.auth import BOOTSTRAP_API_KEY, add_api_key, channel
from vaultd.core.objects import ObjectVault
from vaultd.core.types import Actor
from vaultd.server import Vaultd, start
from vaultd.settings import Settings
from vaultd.v1 import admin_service_pb2_grpc, key_service_pb2_grpc, object_service_pb2_grpc


@dataclass
class Running:
    kind: str  # the store: "sqlite", "redis" or "cluster"
    vaultd: Vaultd
    data_dir: Path
    redis_url: str | None
    channel: grpc.aio.Channel  # sends api_key on every call that names no key of its own
    api_key: str = BOOTSTRAP_API_KEY  # admin in environment "default"

    @property
    def objects(self) -> object_service_pb2_grpc.ObjectServiceStub:
        return object_service_pb2_grpc.ObjectServiceStub(self.channel)

    @property
    def keys(self) -> key_service_pb2_grpc.KeyServiceStub:
        return key_service_pb2_grpc.KeyServiceStub(self.channel)

    @property
    def admin(self) -> admin_service_pb2_grpc.AdminServiceStub:
        return admin_service_pb2_grpc.AdminServiceStub(self.channel)

    def vault(self) -> ObjectVault:
        """The server's own object vault (same store, same keyring), to seed many objects
        without a gRPC call each."""
        return ObjectVault(self.vaultd.store, self.vaultd.keyring)

    def redis_node_urls(self) -> list[str]:
        """A plain redis:// URL per node holding this server's data (every cluster master)."""
        if self.redis_url is None:
            return []
        if self.redis_url.startswith("redis+cluster://"):
            return [f"redis://{h}/0" for h in self.redis_url.split("://")[1].split(",")]
        return [self.redis_url]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.vaultd.port}"


# Who the tests' own writes through `Running.vault()` are audited as.
SEEDING_ACTOR = Actor("tests", "lifecycle seeding")

_ROOT_KEYS = Path(tempfile.mkdtemp(prefix="vaultd-test-root-keys-"))


def shared_root_key(redis_url: str) -> Path:
    """One root key file per Redis database for the whole session. The servers that tests start
    on one database are one deployment: a store's identity names the root key that made it, and
    vaultd refuses a store made with another (vaultd/core/storeguard.py)."""
    # A directory each: the root key remembers its store in a store-id file beside it.
    directory = _ROOT_KEYS / redis_url.replace("/", "_").replace(":", "_")
    directory.mkdir(exist_ok=True)
    return directory / "root.key"


def settings_for(data_dir: Path, redis_url: str | None, **extra: object) -> Settings:
    """Settings for a test server on a free port whose first admin key is BOOTSTRAP_API_KEY;
    on Redis, with the database's shared root key."""
    extra.setdefault("bootstrap_api_key", BOOTSTRAP_API_KEY)
    if redis_url is not None:
        extra.setdefault("root_key_file", shared_root_key(redis_url))
    return Settings(
        listen="127.0.0.1:0",
        data_dir=data_dir,
        redis_url=redis_url,
        **extra,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running_vaultd(
    kind: str, data_dir: Path, redis_url: str | None, **extra: object
) -> AsyncIterator[Running]:
    """A vaultd started in this process with `settings_for(data_dir, redis_url, **extra)`,
    stopped on exit. `kind` names its store for test ids and messages."""
    vaultd = await start(settings_for(data_dir, redis_url, **extra))
    client: grpc.aio.Channel | None = None
    try:
        # Bootstrap only happens on an empty store, and a shared Redis database may hold other
        # servers' keys already: make sure the admin key exists either way.
        await add_api_key(vaultd.store, BOOTSTRAP_API_KEY, name="bootstrap")
        client = channel(f"127.0.0.1:{vaultd.port}")
        yield Running(kind, vaultd, data_dir, redis_url, client)
    finally:
        if client is not None:
            await client.close()
        await vaultd.stop(None)
