"""Redis Cluster (3 masters) and Sentinel (master + replica + sentinel) on free loopback ports.

Started and stopped by the tests, like RedisServer; never the system Redis.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from testkit.redis_server import RedisServer, _free_port

READY_TIMEOUT_SECONDS = 20.0


def _cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
    ).stdout


def _wait(condition: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"redis topology not ready: {condition}")


def _cluster_args(directory: Path) -> list[str]:
    return [
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(directory / "nodes.conf"),
        "--cluster-node-timeout", "2000",
        # An explicit bus port: the default (port + 10000) overflows for high ports.
        "--cluster-port", str(_free_port()),
    ]  # fmt: skip


class RedisClusterSet:
    """Three cluster-enabled masters, slots spread by `redis-cli --cluster create`."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [
            RedisServer(directory / f"node{i}", extra_args=_cluster_args(directory / f"node{i}"))
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def __enter__(self) -> RedisClusterSet:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses,
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"cluster create failed: {created.stdout}{created.stderr}")
        _wait("cluster_state:ok on every node", self._all_ok)
        return self

    def _all_ok(self) -> bool:
        return all("cluster_state:ok" in _cli(n.port, "cluster", "info") for n in self.nodes)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for node in self.nodes:
            node.stop()


# A replica's first sync otherwise waits 5 s for more replicas to join the same transfer.
_NO_SYNC_DELAY = ["--repl-diskless-sync-delay", "0"]


class RedisSentinelSet:
    """A master, one replica and one sentinel watching them as `service`."""

    service = "vaultd-master"

    def __init__(self, directory: Path, extra_args: Sequence[str] = ()) -> None:
        self.directory = directory
        self.extra_args = [*_NO_SYNC_DELAY, *extra_args]
        self.master = RedisServer(directory / "master", extra_args=self.extra_args)
        self.replica: RedisServer | None = None
        self.sentinel_port = 0
        self._sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service}"

    def current_master_port(self) -> int:
        reply = _cli(self.sentinel_port, "sentinel", "get-master-addr-by-name", self.service)
        return int(reply.split()[1])

    def __enter__(self) -> RedisSentinelSet:
        self.master.start()
        replica_of = ["--replicaof", "127.0.0.1", str(self.master.port), *self.extra_args]
        self.replica = RedisServer(self.directory / "replica", extra_args=replica_of)
        self.replica.start()
        replica = self.replica
        _wait(
            "replica in sync",
            lambda: "master_link_status:up" in _cli(replica.port, "info", "replication"),
        )
        self.sentinel_port = _free_port()
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
        )
        with open(self.directory / "sentinel.log", "ab") as log:
            self._sentinel = subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
            )
        _wait("sentinel knows the master", lambda: self._master_known())
        return self

    def _master_known(self) -> bool:
        try:
            return self.current_master_port() == self.master.port
        except (IndexError, ValueError):
            return False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sentinel is not None:
            self._sentinel.terminate()
            self._sentinel.wait(10)
        for server in (self.replica, self.master):
            if server is not None and server.running:
                server.stop()
