"""`vaultd health`: ask vaultd's gRPC health service whether it is SERVING.

For container HEALTHCHECKs and exec probes: it prints the status and the command exits 0 when
SERVING, 1 otherwise (including when vaultd cannot be reached). The address defaults to the
configured listen address, a wildcard host meaning this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vaultd.metrics import split_host_port

_WILDCARDS = {"", "0.0.0.0", "::"}


def local_address(listen: str) -> str:
    """Where to reach a server listening on `listen` from the same machine."""
    host, port = split_host_port(listen)
    if host in _WILDCARDS:
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class TlsOptions:
    """TLS for the check: the CA that signed vaultd's certificate, and for mutual TLS a client
    certificate and key; `server_name` when the address is not a name the certificate holds."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None


def check(
    address: str, *, service: str = "", timeout: float = 3.0, tls: TlsOptions | None = None
) -> str:
    """The status name ("SERVING", "NOT_SERVING", ...) or the gRPC error's code name."""
    options = (
        [("grpc.ssl_target_name_override", tls.server_name)] if tls and tls.server_name else []
    )
    if tls is None:
        channel = grpc.insecure_channel(address)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca_file.read_bytes() if tls.ca_file else None,
            private_key=tls.key_file.read_bytes() if tls.key_file else None,
            certificate_chain=tls.cert_file.read_bytes() if tls.cert_file else None,
        )
        channel = grpc.secure_channel(address, credentials, options)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
