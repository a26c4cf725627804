"""Redis clients from vaultd's storage URLs: one server, Redis Cluster, or Sentinel.

    redis://[user:password@]host:port[/db]          rediss:// for TLS
    redis+cluster://[user:password@]host:port[,host:port...]
    redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]

The password (also the masters' password behind Sentinel) comes from the URL's user info.

`?wait_replicas=N` makes every write wait until N replicas confirm it (Redis WAIT) before it is
acknowledged; a write they do not confirm in time is reported unavailable (its outcome is
unknown), never as done. Replication is asynchronous, so without it a failover can lose writes
the clients were told succeeded. Sentinel URLs therefore default to 1, the rest to 0.
Every client fails fast rather than retrying by itself: a reply lost to a dropped connection
leaves a write's outcome unknown, and a replayed create would report its own name as taken
(see redis/connection.py). Cluster redirects (MOVED/ASK) are still followed: they are no retry.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

SOCKET_TIMEOUT_SECONDS = 5.0
MAX_CONNECTIONS = 256
"""Connections per process to one Redis server; more concurrent commands queue for one."""
SENTINEL_MAX_CONNECTIONS = 4096
SCHEMES = ("redis", "rediss", "redis+cluster", "redis+sentinel")

RedisClient = Redis | RedisCluster


def _no_retry() -> Retry:
    return Retry(NoBackoff(), retries=0)


def _common(timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": _no_retry(),
    }


def _hosts(netloc: str, scheme: str) -> list[tuple[str, int]]:
    hosts = []
    for part in netloc.rpartition("@")[2].split(","):
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{scheme}:// URLs list host:port pairs separated by commas")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


def wait_replicas(url: str) -> tuple[str, int]:
    """The URL without its `wait_replicas` parameter, and the parameter's value."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = [value for name, value in query if name == "wait_replicas"]
    default = 1 if parts.scheme == "redis+sentinel" else 0
    if given and not given[-1].isdigit():
        raise ValueError("wait_replicas must be a whole number of replicas")
    replicas = int(given[-1]) if given else default
    if replicas and parts.scheme == "redis+cluster":
        raise ValueError("wait_replicas is not supported on redis+cluster:// yet")
    rest = urlencode([(name, value) for name, value in query if name != "wait_replicas"])
    return urlunsplit(parts._replace(query=rest)), replicas


def redis_client(url: str, timeout: float = SOCKET_TIMEOUT_SECONDS) -> RedisClient:
    """A client for any of the URL forms above, its sockets timing out after `timeout` seconds;
    nothing is contacted yet."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in SCHEMES:
        # The scheme only: the rest of the URL may hold a password.
        raise ValueError(
            f"unsupported Redis URL scheme {scheme!r}: use one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if scheme in ("redis", "rediss"):
        # Blocking: past MAX_CONNECTIONS calls in flight, a command waits for a free connection
        # (up to the socket timeout) instead of failing at once, as redis-py's default pool does.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=timeout, **_common(timeout)
        )
        return Redis.from_pool(pool)
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    if scheme == "redis+cluster":
        nodes = [ClusterNode(host, port) for host, port in _hosts(parts.netloc, scheme)]
        return RedisCluster(
            startup_nodes=nodes,
            username=username,
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=_no_retry(),
        )
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("redis+sentinel:// URLs end with /service_name (the monitored master)")
    db = int(path[1]) if len(path) > 1 else 0
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        _hosts(parts.netloc, scheme),
        sentinel_kwargs={"socket_timeout": timeout},
        db=db,
        username=username,
        password=password,
        # Sentinel's pool cannot block: make it as large as a burst may need.
        max_connections=SENTINEL_MAX_CONNECTIONS,
        **_common(timeout),
    )
    master: Redis = sentinel.master_for(path[0])
    return master
