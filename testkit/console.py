"""The web console tests' server handle and constants; the fixtures are tests/console/conftest.py.

The browser is Debian's chromium (/usr/bin/chromium, `apt-get install chromium`), launched by the
Python `playwright` package, so no browser is downloaded.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc

from testkit.standins.hcvault import HcVaultStandIn
from vaultd.server import Vaultd
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

CHROMIUM = os.environ.get("VAULTD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
READ_ONLY_KEY = "sk_vaultd-tests-console-reader-000000000000000"
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}


@dataclass
class ConsoleServer:
    vaultd: Vaultd
    channel: grpc.aio.Channel
    url: str  # http://127.0.0.1:PORT/console
    kms: HcVaultStandIn  # the KMS stand-in run-time BYOK keys live in

    @property
    def admin(self) -> apb_grpc.AdminServiceStub:
        return apb_grpc.AdminServiceStub(self.channel)

    @property
    def objects(self) -> pb_grpc.ObjectServiceStub:
        return pb_grpc.ObjectServiceStub(self.channel)

    async def seed(self, org: str, count: int) -> list[str]:
        """`count` objects under organization_id=org, made over gRPC; their ids."""
        ids = []
        for n in range(count):
            reply = await self.objects.CreateObject(
                pb.CreateObjectRequest(
                    name=f"console-{org}-{n}-{uuid.uuid4().hex[:6]}",
                    value=b"not shown by the console",
                    key_context={"organization_id": org},
                )
            )
            ids.append(reply.metadata.id)
        return ids
