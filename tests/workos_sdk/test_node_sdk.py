"""The official WorkOS Node SDK (@workos-inc/node, pinned in package.json) against vaultd.

flows.mjs runs every Vault call the SDK has, as documented, over a real socket to a real
vaultd (embedded store and Redis), and asserts what the SDK returns and raises. node runs as a
child process while this test awaits it, so the event loop serving vaultd keeps serving. Then
this side checks over gRPC what the SDK did: its local-encryption blob opens with vaultd's
Decrypt RPC, and the SDK opened a blob vaultd's Encrypt sealed in the WorkOS layout (and refused
the key-committing layout vaultd's Encrypt writes by default, which it cannot read).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import uuid
from pathlib import Path

import grpc
import pytest

from testkit.auth import bearer
from testkit.http_server import HttpVaultd
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc
from vaultd.v1 import object_service_pb2 as opb
from vaultd.v1 import object_service_pb2_grpc as opb_grpc

HERE = Path(__file__).resolve().parent
NODE_TIMEOUT_SECONDS = 120


def node_or_skip() -> str:
    """The node binary; skips locally without `npm install` here, fails in CI."""
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules/@workos-inc/node").is_dir():
        message = "missing node or @workos-inc/node: run `npm install` in tests/workos_sdk"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return node


async def run_flows(
    server: HttpVaultd, api_key: str, run_id: str, server_blob: str, committing_blob: str
) -> dict:
    reader_key = await server.new_key(permissions=["objects:read"])
    node = node_or_skip()
    process = await asyncio.create_subprocess_exec(
        node,
        str(HERE / "flows.mjs"),
        cwd=HERE,
        env={
            "PATH": os.environ.get("PATH", ""),
            "WORKOS_API_KEY": api_key,
            "VAULTD_HTTP_PORT": str(server.http_port),
            "RUN_ID": run_id,
            "SERVER_BLOB": server_blob,
            "COMMITTING_BLOB": committing_blob,
            "READER_API_KEY": reader_key,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT_SECONDS)
    assert process.returncode == 0, stderr.decode(errors="replace")[-4000:]
    result: dict = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def test_every_vault_call_of_the_node_sdk(http_server: HttpVaultd) -> None:
    api_key = await http_server.new_key()
    run_id = uuid.uuid4().hex[:12]
    context = {"organization_id": f"org_{run_id}"}
    # vaultd's Encrypt in the WorkOS layout (workos_compatible), which the SDK reads; vaultd's
    # own default, the key-committing layout, the SDK refuses (docs/HTTP.md).
    async with grpc.aio.insecure_channel(http_server.grpc_target) as channel:
        keys = kpb_grpc.KeyServiceStub(channel)
        compatible = await keys.Encrypt(
            kpb.EncryptRequest(
                plaintext=b"data from vaultd",
                key_context=context,
                associated_data=b"aad-server",
                workos_compatible=True,
            ),
            metadata=bearer(api_key),
        )
        workos_layout = compatible.ciphertext
        committing = await keys.Encrypt(
            kpb.EncryptRequest(
                plaintext=b"committing", key_context=context, associated_data=b"aad-server"
            ),
            metadata=bearer(api_key),
        )
        result = await run_flows(
            http_server,
            api_key,
            run_id,
            base64.b64encode(workos_layout).decode(),
            base64.b64encode(committing.ciphertext).decode(),
        )

        # The SDK opened what vaultd's Encrypt sealed in the WorkOS layout ...
        assert result["fromServer"] == "data from vaultd"
        # ... and vaultd's Decrypt opens what the SDK sealed locally.
        opened = await keys.Decrypt(
            kpb.DecryptRequest(
                ciphertext=base64.b64decode(result["sdkBlob"]), associated_data=b"aad-node"
            ),
            metadata=bearer(api_key),
        )
        assert opened.plaintext == b"data from node"

        # What the SDK wrote is what gRPC reads: listed names, and the deleted object gone.
        objects = opb_grpc.ObjectServiceStub(channel)
        listing = await objects.ListObjects(
            opb.ListObjectsRequest(limit=100), metadata=bearer(api_key)
        )
        remaining = sorted(o.name for o in listing.objects)
        assert remaining == sorted(n for n in result["listed"] if not n.startswith("stripe/"))
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await objects.GetObject(
                opb.GetObjectRequest(id=result["updatedId"]), metadata=bearer(api_key)
            )
        assert gone.value.code() is grpc.StatusCode.NOT_FOUND
