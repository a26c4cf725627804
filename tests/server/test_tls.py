"""TLS and mutual TLS: the Python client over TLS, a client without a certificate refused."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from testkit.auth import BOOTSTRAP_API_KEY
from testkit.running import settings_for
from testkit.serving import VAULTD, clean_env
from testkit.tls import Pki, make_pki
from vaultd.client import AsyncVaultClient, BackendUnavailable
from vaultd.healthcheck import TlsOptions, check, local_address
from vaultd.server import Vaultd, start
from vaultd.settings import load_settings

CONTEXT = {"organization_id": "org_tls"}


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
async def tls_server(tmp_path: Path, pki: Pki) -> AsyncIterator[tuple[Vaultd, dict[str, Path]]]:
    files = pki.write(tmp_path / "pki")
    vaultd = await start(
        settings_for(
            tmp_path, None, tls_cert_file=files["server_cert"], tls_key_file=files["server_key"]
        )
    )
    yield vaultd, files
    await vaultd.stop(None)


@pytest.fixture
async def mtls_server(tmp_path: Path, pki: Pki) -> AsyncIterator[tuple[Vaultd, dict[str, Path]]]:
    files = pki.write(tmp_path / "pki")
    vaultd = await start(
        settings_for(
            tmp_path,
            None,
            tls_cert_file=files["server_cert"],
            tls_key_file=files["server_key"],
            tls_client_ca_file=files["ca"],
        )
    )
    yield vaultd, files
    await vaultd.stop(None)


async def test_python_client_over_tls(tls_server: tuple[Vaultd, dict[str, Path]], pki: Pki) -> None:
    vaultd, _ = tls_server
    target = f"localhost:{vaultd.port}"
    async with AsyncVaultClient(target, BOOTSTRAP_API_KEY, root_certificates=pki.ca) as client:
        created = await client.create_object("over-tls", b"sealed in transit", CONTEXT)
        assert (await client.get_object(created.id)).value == b"sealed in transit"
    # A plaintext client cannot talk to a TLS server.
    async with AsyncVaultClient(target, BOOTSTRAP_API_KEY, timeout=2) as plaintext:
        with pytest.raises(BackendUnavailable):
            await plaintext.get_object(created.id)


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    mtls_server: tuple[Vaultd, dict[str, Path]], pki: Pki
) -> None:
    vaultd, _ = mtls_server
    target = f"localhost:{vaultd.port}"
    async with AsyncVaultClient(
        target,
        BOOTSTRAP_API_KEY,
        root_certificates=pki.ca,
        private_key=pki.client_key,
        certificate_chain=pki.client_cert,
    ) as client:
        created = await client.create_object("over-mtls", b"both sides known", CONTEXT)
        assert (await client.get_object(created.id)).value == b"both sides known"
    async with AsyncVaultClient(
        target, BOOTSTRAP_API_KEY, root_certificates=pki.ca, timeout=2
    ) as anonymous:
        with pytest.raises(BackendUnavailable):
            await anonymous.get_object(created.id)


async def _health(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    # In a thread: the server under test runs on this event loop and must keep answering.
    result = await asyncio.to_thread(
        subprocess.run,
        [str(VAULTD), "health", *args],
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout.strip()


async def test_health_command_over_mutual_tls(mtls_server: tuple[Vaultd, dict[str, Path]]) -> None:
    vaultd, files = mtls_server
    address = f"localhost:{vaultd.port}"
    # The container HEALTHCHECK's way: the TLS files come from VAULTD_HEALTH_TLS_* variables.
    env = {
        "VAULTD_HEALTH_TLS_CA": str(files["ca"]),
        "VAULTD_HEALTH_TLS_CERT": str(files["client_cert"]),
        "VAULTD_HEALTH_TLS_KEY": str(files["client_key"]),
    }
    assert await _health("--address", address, env=env) == (0, "SERVING")
    # Without a client certificate the handshake fails: the check says so instead of SERVING.
    status = await asyncio.to_thread(check, address, timeout=2, tls=TlsOptions(ca_file=files["ca"]))
    assert status == "UNAVAILABLE"


def test_health_reaches_a_wildcard_listener_on_this_machine() -> None:
    assert local_address("0.0.0.0:50051") == "127.0.0.1:50051"
    assert local_address("[::]:50051") == "127.0.0.1:50051"
    assert local_address("[::1]:7") == "[::1]:7"
    assert local_address("vault.internal:7") == "vault.internal:7"


def test_tls_in_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VAULTD_TLS_CERT_FILE", "VAULTD_TLS_KEY_FILE", "VAULTD_TLS_CLIENT_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "vaultd.yaml"
    config.write_text(
        "tls: {cert_file: /etc/vaultd/tls.crt, key_file: /etc/vaultd/tls.key,"
        " client_ca_file: /etc/vaultd/clients.pem}\n"
    )
    settings = load_settings(config)
    assert settings.tls_cert_file == Path("/etc/vaultd/tls.crt")
    assert settings.tls_key_file == Path("/etc/vaultd/tls.key")
    assert settings.tls_client_ca_file == Path("/etc/vaultd/clients.pem")
    # An option beats the file, as for every setting.
    assert load_settings(config, tls_key_file=Path("/k")).tls_key_file == Path("/k")

    config.write_text("tls: {cert_file: /etc/vaultd/tls.crt}\n")
    with pytest.raises(ValidationError, match="go together"):
        load_settings(config)
    config.write_text("tls: {client_ca_file: /etc/vaultd/clients.pem}\n")
    with pytest.raises(ValidationError, match="needs cert_file"):
        load_settings(config)
