"""What a test needs to run a real vaultd: its settings and the handle the `running` fixture
(tests/conftest.py, one server per store for the whole session) yields."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc

from tests.support.auth import BOOTSTRAP_API_KEY
from vaultd.server import Vaultd
from vaultd.settings import Settings
from vaultd.v1 import object_service_pb2_grpc


@dataclass
class Running:
    kind: str
    vaultd: Vaultd
    data_dir: Path
    redis_url: str | None
    channel: grpc.aio.Channel  # sends api_key on every call that names no key of its own
    api_key: str = BOOTSTRAP_API_KEY  # admin in environment "default"

    @property
    def objects(self) -> object_service_pb2_grpc.ObjectServiceStub:
        return object_service_pb2_grpc.ObjectServiceStub(self.channel)

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
    return Settings(listen="127.0.0.1:0", data_dir=data_dir, redis_url=redis_url, **extra)
