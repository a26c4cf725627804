"""What a running vaultd keeps at rest, read straight from its store: for tests that check no
secret is ever written in the clear."""

from __future__ import annotations

import redis.asyncio as aioredis

from testkit.running import Running


def _raw(reply: bytes | str) -> bytes:
    # redis-py types replies as bytes | str; without decode_responses they are bytes.
    return reply if isinstance(reply, bytes) else reply.encode()


async def stored_bytes(running: Running) -> bytes:
    """Every byte vaultd keeps at rest: each Redis key and field, or each file in the data dir."""
    if running.redis_url:
        chunks: list[bytes] = []
        for url in running.redis_node_urls():
            client: aioredis.Redis = aioredis.from_url(url)
            async for key in client.scan_iter(match="*"):
                kind = _raw(await client.type(key)).decode()
                chunks.append(_raw(key))
                if kind == "hash":
                    for field, value in (await client.hgetall(key)).items():
                        chunks += [_raw(field), _raw(value)]
                elif kind == "zset":
                    members = await client.zrange(key, 0, -1)  # without scores: members only
                    chunks += [_raw(member) for member in members]  # type: ignore[arg-type]
                elif kind == "string":
                    chunks.append(_raw(await client.get(key) or b""))
                else:
                    chunks += [str(await client.dump(key)).encode()]
            await client.aclose()
        return b"\n".join(chunks)
    return b"\n".join(p.read_bytes() for p in running.data_dir.rglob("*") if p.is_file())
