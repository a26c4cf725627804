"""The OpenAPI document: committed = served = built from the route table; and fuzzing from it.

The fuzz test runs `vaultd serve --http-listen` as a separate process (the test is sync, as
Hypothesis drives it, so nothing in this process could serve) and sends it requests that
schemathesis generates from the document, checking each answer against it: no 5xx, only
documented statuses, the documented content type and JSON shapes.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from testkit.auth import BOOTSTRAP_API_KEY
from testkit.http_client import call, send
from testkit.http_server import HttpVaultd
from testkit.serving import VAULTD, clean_env, free_port
from vaultd.api.http import openapi, routes

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = (
    ".venv/bin/python -c 'import json; from vaultd.api.http.openapi import document; "
    "print(json.dumps(document(), indent=2, ensure_ascii=False))' > docs/openapi.json"
)


def test_the_committed_document_is_the_built_one() -> None:
    committed = json.loads(DOCUMENT.read_text())
    assert committed == openapi.document(), f"regenerate it: {REGENERATE}"


def test_every_route_is_documented() -> None:
    paths = openapi.document()["paths"]
    operations = {op["operationId"] for path in paths.values() for op in path.values()}
    served = {r.method.rsplit("/", 1)[1] for r in [*routes.ROUTES.values(), routes.BY_NAME]}
    assert operations == served


async def test_served_at_openapi_json_without_a_key(http_server: HttpVaultd) -> None:
    reply = await call(http_server.base_url, "GET", "/openapi.json")
    assert reply.status == 200
    assert reply.json == openapi.document()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`vaultd serve` with its HTTP listener; its base URL."""
    workdir = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = clean_env() | {
        "VAULTD_LISTEN": f"127.0.0.1:{free_port()}",
        "VAULTD_HTTP_LISTEN": f"127.0.0.1:{port}",
        "VAULTD_BOOTSTRAP_API_KEY": BOOTSTRAP_API_KEY,
        "VAULTD_DATA_DIR": str(workdir / "data"),
        "VAULTD_ACCESS_LOG": "false",
    }
    log = workdir / "vaultd.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(VAULTD), "serve"], env=env, stdout=out, stderr=out)
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                send(base_url + "/openapi.json", "GET", None, {}, None)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError(log.read_text()[-2000:])
        yield base_url
    finally:
        process.terminate()
        process.wait(15)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


SCHEMA = schemathesis.openapi.from_dict(openapi.document())
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.mark.parametrize(
    "operation",
    [result.ok() for result in SCHEMA.get_all_operations()],
    ids=lambda op: op.label,
)
def test_fuzzing_finds_no_server_error_and_no_undocumented_answer(
    served: str, operation: schemathesis.APIOperation
) -> None:
    headers = {"Authorization": f"Bearer {BOOTSTRAP_API_KEY}"}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=served, headers=headers)
        case.validate_response(response, checks=CHECKS)

    run()
