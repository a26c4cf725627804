"""The route table: every route calls a method the server serves, and paths match as meant."""

from __future__ import annotations

from vaultd.api.http import routes, shapes
from vaultd.api.rpcs import RPCS
from vaultd.v1 import object_service_pb2 as opb


def test_every_route_calls_a_served_and_audited_method() -> None:
    for route in [*routes.ROUTES.values(), routes.match("GET", "/vault/v1/kv/name/x").route]:
        assert route is not None
        assert route.method in RPCS, route.method


def test_names_are_everything_after_kv_name_decoded() -> None:
    for raw, name in (
        ("/vault/v1/kv/name/plain", "plain"),
        ("/vault/v1/kv/name/a%2Fb", "a/b"),
        ("/vault/v1/kv/name/a/b/c", "a/b/c"),
        ("/vault/v1/kv/name/with%20space%25", "with space%"),
        ("/vault/v1/kv/name/metadata", "metadata"),
    ):
        found = routes.match("GET", raw)
        assert found is not None and found.route is not None
        assert found.route.method.endswith("/GetObjectByName")
        assert found.params == [name]
    put = routes.match("PUT", "/vault/v1/kv/name/x")
    assert put is not None and put.route is None  # 405, not a write to an object "name"


def test_ids_are_one_segment_each() -> None:
    found = routes.match("GET", "/vault/v1/kv/secret_1/metadata")
    assert found is not None and found.route is not None
    assert (found.route.method.rsplit("/", 1)[1], found.params) == ("DescribeObject", ["secret_1"])
    # An encoded '/' inside an id stays inside the id (which core then refuses as malformed).
    found = routes.match("GET", "/vault/v1/kv/a%2Fmetadata")
    assert found is not None and found.route is not None
    assert (found.route.method.rsplit("/", 1)[1], found.params) == ("GetObject", ["a/metadata"])
    assert routes.match("GET", "/vault/v1/kv//metadata") is None
    assert routes.match("GET", "/vault/v1/kv/x/y/z/w") is None
    assert routes.match("GET", "/other") is None
    wrong_method = routes.match("POST", "/vault/v1/kv/secret_1")
    assert wrong_method is not None and wrong_method.route is None


def test_version_numbers_are_in_metadata_and_version_lists() -> None:
    meta = opb.ObjectMetadata(id="secret_x", version_id="ver_x", version_number=3)
    assert shapes.metadata(meta)["version_number"] == 3
    listed = shapes.version_list(
        opb.ListObjectVersionsResponse(
            versions=[
                opb.ObjectVersion(id="ver_a", version_number=1),
                opb.ObjectVersion(id="ver_b", version_number=2),
            ]
        )
    )
    assert [v["version_number"] for v in listed["data"]] == [1, 2]
