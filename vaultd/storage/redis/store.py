"""The Redis store: one Lua script per change, every key of an environment in one hash slot.

Key names come from `keys.key()`; each carries its environment id as a Redis Cluster hash tag
(`vaultd:{env}:...`). All of one environment's keys therefore live in one slot, so a script may
touch an object, its versions, the name index and the scan index together and still be legal on
Redis Cluster, where a script's keys must share a slot; and a script runs atomically, so no
reader ever sees half a change and no crash leaves one. The cost: one environment's data and
traffic sit on one shard. Environments spread over the cluster; one huge environment does not.

RedisStore is the composition of one mixin per aggregate (objects.py, keks.py, ...), each on
the shared plumbing of connection.py; every Lua script is in scripts.py or purge_scripts.py.
"""

from __future__ import annotations

from vaultd.storage.redis.apikeys import RedisApiKeys
from vaultd.storage.redis.audit import RedisAudit
from vaultd.storage.redis.byok import RedisByokKeys
from vaultd.storage.redis.deleted import RedisDeletedObjects
from vaultd.storage.redis.identity import RedisIdentity
from vaultd.storage.redis.jobs import RedisJobs
from vaultd.storage.redis.kek_counts import RedisKekCounts
from vaultd.storage.redis.keks import RedisKeks
from vaultd.storage.redis.objects import RedisObjects


class RedisStore(
    RedisObjects,
    RedisDeletedObjects,
    RedisKeks,
    RedisApiKeys,
    RedisAudit,
    RedisJobs,
    RedisByokKeys,
    RedisKekCounts,
    RedisIdentity,
):
    """A Store on Redis, through redis-py asyncio."""
