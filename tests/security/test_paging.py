"""Class 5, paged admin lists: no admin list answers with everything at once.

An environment with many API keys, KEKs or rewrap jobs (a low-privilege key can make KEKs by
using fresh context items) once made ListApiKeys, ListKeks and ListRewrapJobs answer with all
of them in one message. Each now pages: `limit` (1 to 1000, 100 by default) and an opaque
`after` cursor; every item comes exactly once across pages, and bad cursors and limits get
INVALID_ARGUMENT, on the SQLite file and a real redis-server.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from testkit.auth import add_api_key, channel
from testkit.grpc_errors import details_of
from testkit.running import Running
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc

Lister = Callable[[int, str], Awaitable[tuple[list[str], str]]]


async def all_pages(list_page: Lister, limit: int) -> list[list[str]]:
    pages, after = [], ""
    while True:
        ids, after = await list_page(limit, after)
        pages.append(ids)
        if not after:
            return pages


@pytest.fixture
async def env_admin(running: Running) -> Any:
    if running.kind == "cluster":
        pytest.skip("sqlite and redis are enough for paging")
    environment = f"paging{uuid.uuid4().hex[:12]}"
    secret = "sk_" + f"paging-{uuid.uuid4().hex}".ljust(43, "0")
    await add_api_key(running.vaultd.store, secret, environment_id=environment)
    async with channel(running.target, secret) as chan:
        yield running, environment, chan


async def test_every_admin_list_pages(env_admin: Any) -> None:
    running, environment, chan = env_admin
    admin = apb_grpc.AdminServiceStub(chan)
    for n in range(6):  # 7 keys with the one above
        await admin.CreateApiKey(apb.CreateApiKeyRequest(name=f"k{n}", permissions=["keys:use"]))
    keys = kpb_grpc.KeyServiceStub(chan)
    for _ in range(5):
        await keys.CreateDataKey(
            kpb.CreateDataKeyRequest(key_context={"org": f"paging-{uuid.uuid4().hex}"})
        )
    for _ in range(3):
        await admin.StartRewrap(apb.StartRewrapRequest(selector=apb.KekSelector(all=True)))

    async def api_keys(limit: int, after: str) -> tuple[list[str], str]:
        got = await admin.ListApiKeys(apb.ListApiKeysRequest(limit=limit, after=after))
        return [k.id for k in got.api_keys], got.list_metadata.after

    async def keks(limit: int, after: str) -> tuple[list[str], str]:
        got = await admin.ListKeks(apb.ListKeksRequest(limit=limit, after=after))
        return [k.id for k in got.keks], got.list_metadata.after

    async def jobs(limit: int, after: str) -> tuple[list[str], str]:
        got = await admin.ListRewrapJobs(apb.ListRewrapJobsRequest(limit=limit, after=after))
        return [j.id for j in got.jobs], got.list_metadata.after

    stored_keys = [k.id for k in await running.vaultd.store.list_api_keys()
                   if k.environment_id == environment]  # fmt: skip
    stored_keks = [k.kek_id for k in await running.vaultd.store.list_keks(environment)]
    for lister, expected in ((api_keys, 7), (keks, 5), (jobs, 3)):
        pages = await all_pages(lister, 2)
        assert [len(p) for p in pages] == [2] * (expected // 2) + [expected % 2] * (expected % 2)
        flat = [i for p in pages for i in p]
        assert len(flat) == len(set(flat)) == expected
        whole, after = await lister(0, "")  # the default limit holds them all here
        assert flat == whole and after == ""
    assert sorted(stored_keks) == sorted((await keks(100, ""))[0])
    assert sorted(stored_keys) == sorted((await api_keys(100, ""))[0])


@pytest.mark.parametrize("after", ["garbage!", "e30", "W10" + "A" * 5000, "WzFd"])
@pytest.mark.parametrize("rpc", ["ListApiKeys", "ListKeks", "ListRewrapJobs"])
async def test_a_bad_cursor_is_invalid_cursor(env_admin: Any, rpc: str, after: str) -> None:
    _, _, chan = env_admin
    admin = apb_grpc.AdminServiceStub(chan)
    request = getattr(apb, f"{rpc}Request")(after=after)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(admin, rpc)(request)
    details = details_of(raised.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT and details.reason == "INVALID_CURSOR"
    assert details.violations == [("after", "is not a cursor from a previous list")]


@pytest.mark.parametrize("limit", [-1, 1001, 2**31 - 1, -(2**31)])
@pytest.mark.parametrize("rpc", ["ListApiKeys", "ListKeks", "ListRewrapJobs"])
async def test_a_bad_limit_is_invalid_argument(env_admin: Any, rpc: str, limit: int) -> None:
    _, _, chan = env_admin
    admin = apb_grpc.AdminServiceStub(chan)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(admin, rpc)(getattr(apb, f"{rpc}Request")(limit=limit))
    details = details_of(raised.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.violations and details.violations[0][0] == "limit"
