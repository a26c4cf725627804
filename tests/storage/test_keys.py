"""Key names come from one function, so that one function is tested to the character."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultd.storage.keys import (
    AUTH_TAG,
    CONTEXT_ITEM_HASH,
    ENVIRONMENT_ID,
    JOBS_TAG,
    KEK_ID,
    OBJECT_ID,
    REWRAP_JOB_ID,
    AuthKind,
    JobKind,
    Kind,
    audit_key,
    auth_key,
    context_item_key,
    job_key,
    key,
)

ENV = "env_test-1"
OBJ = "secret_01J9Z3K4ABCDEFGHJKMNPQRSTV"
KEK = "kek_0123456789abcdef0123456789abcdef"
ITEM_HASH = hashlib.sha256(b"organization_id\0org_1").hexdigest()


@pytest.mark.parametrize(
    ("kind", "ident", "expected"),
    [
        (Kind.OBJECTS, None, "vaultd:{env_test-1}:objects"),
        (Kind.DIGESTS, None, "vaultd:{env_test-1}:digests"),
        (Kind.NAMES, None, "vaultd:{env_test-1}:names"),
        (Kind.DELETED, None, "vaultd:{env_test-1}:deleted"),
        (Kind.OBJECT, OBJ, "vaultd:{env_test-1}:obj:secret_01J9Z3K4ABCDEFGHJKMNPQRSTV"),
        (
            Kind.VERSIONS,
            OBJ,
            "vaultd:{env_test-1}:obj:secret_01J9Z3K4ABCDEFGHJKMNPQRSTV:versions",
        ),
        (
            Kind.HISTORY,
            OBJ,
            "vaultd:{env_test-1}:obj:secret_01J9Z3K4ABCDEFGHJKMNPQRSTV:history",
        ),
        (Kind.KEK, KEK, "vaultd:{env_test-1}:kek:kek_0123456789abcdef0123456789abcdef"),
        (
            Kind.KEK_STATE,
            KEK,
            "vaultd:{env_test-1}:kek:kek_0123456789abcdef0123456789abcdef:state",
        ),
        (Kind.KEKS, None, "vaultd:{env_test-1}:keks"),
        (Kind.FENCE, None, "vaultd:{env_test-1}:fence"),
        (Kind.AUDIT, None, "vaultd:{env_test-1}:audit"),
        (Kind.BYOK, None, "vaultd:{env_test-1}:byok"),
        (Kind.BYOK_MATCHES, None, "vaultd:{env_test-1}:byok-matches"),
        (Kind.KEK_COUNTS, None, "vaultd:{env_test-1}:kek-counts"),
        (Kind.CONTEXT_ITEM, ITEM_HASH, f"vaultd:{{env_test-1}}:ctx:{ITEM_HASH}"),
        (Kind.CONTEXT_INDEXED, None, "vaultd:{env_test-1}:ctx-indexed"),
    ],
)
def test_exact_key_names(kind: Kind, ident: str | None, expected: str) -> None:
    assert key(ENV, kind, ident) == expected


def test_every_kind_is_covered_above() -> None:
    # A new kind must get its exact name pinned in test_exact_key_names.
    assert len(Kind) == 17


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (AuthKind.API_KEYS, "vaultd:{@auth}:apikeys"),
        (AuthKind.API_KEY_HASHES, "vaultd:{@auth}:apikey-hashes"),
        (AuthKind.API_KEYS_REVOKED, "vaultd:{@auth}:apikeys-revoked"),
        (AuthKind.AUDIT, "vaultd:{@auth}:audit"),
    ],
)
def test_exact_auth_key_names(kind: AuthKind, expected: str) -> None:
    # `@` is never in an environment id, so no environment's keys can share this tag.
    assert auth_key(kind) == expected
    assert not ENVIRONMENT_ID.fullmatch(AUTH_TAG)


def test_every_auth_kind_is_covered_above() -> None:
    assert len(AuthKind) == 4


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (JobKind.REWRAP, "vaultd:{@jobs}:rewrap"),
        (JobKind.REWRAP_HOLDERS, "vaultd:{@jobs}:rewrap-holders"),
        (JobKind.MIGRATIONS, "vaultd:{@jobs}:migrations"),
        (JobKind.LEASES, "vaultd:{@jobs}:leases"),
        (JobKind.DELETED_ENVIRONMENTS, "vaultd:{@jobs}:deleted-environments"),
    ],
)
def test_exact_job_key_names(kind: JobKind, expected: str) -> None:
    assert job_key(kind) == expected
    assert not ENVIRONMENT_ID.fullmatch(JOBS_TAG)


def test_every_job_kind_is_covered_above() -> None:
    assert len(JobKind) == 5


def test_rewrap_job_ids() -> None:
    assert REWRAP_JOB_ID.fullmatch("rewrap_01J9Z3K4ABCDEFGHJKMNPQRSTV")
    for bad in [
        "",
        "rewrap_",
        "rewrap_01j9z3k4abcdefghjkmnpqrstv",
        "rewrap_01J9Z3K4ABCDEFGHJKMNPQRS}V",
    ]:
        assert not REWRAP_JOB_ID.fullmatch(bad)


def test_audit_streams_of_environments_and_of_unauthenticated_calls() -> None:
    assert audit_key(ENV) == "vaultd:{env_test-1}:audit"
    assert audit_key("") == "vaultd:{@auth}:audit"


@pytest.mark.parametrize(
    "environment_id",
    ["", "a}b", "a{b", "a:b", "a b", "a*b", "ä", "a\nb", "x" * 65, "1:}:{2"],
)
def test_bad_environment_ids_never_reach_a_key(environment_id: str) -> None:
    with pytest.raises(ValueError, match="environment id"):
        key(environment_id, Kind.NAMES)


@pytest.mark.parametrize(
    ("kind", "ident"),
    [
        (Kind.OBJECT, ""),  # rq's `rq:job::id`: an empty id must not make a `::` name
        (Kind.OBJECT, "secret_"),
        (Kind.OBJECT, "secret_01J9Z3K4ABCDEFGHJKMNPQRST"),  # 25 characters
        (Kind.OBJECT, "secret_01j9z3k4abcdefghjkmnpqrstv"),  # lower case
        (Kind.OBJECT, "secret_01J9Z3K4ABCDEFGHJKMNPQRS:V"),
        (Kind.VERSIONS, "secret_01J9Z3K4ABCDEFGHJKMNPQRS}V"),
        (Kind.HISTORY, "ver_01J9Z3K4ABCDEFGHJKMNPQRSTV"),
        (Kind.OBJECT, OBJ + "\n"),
        (Kind.KEK, "kek_0123456789ABCDEF0123456789ABCDEF"),
        (Kind.KEK, OBJ),
        (Kind.KEK_STATE, OBJ),
        (Kind.KEK_STATE, "kek_0123456789abcdef0123456789abcdef:x"),
        (Kind.OBJECT, KEK),
    ],
)
def test_bad_ids_never_reach_a_key(kind: Kind, ident: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        key(ENV, kind, ident)


def test_an_id_is_required_exactly_where_the_kind_has_one() -> None:
    with pytest.raises(ValueError, match="needs an id"):
        key(ENV, Kind.OBJECT)
    with pytest.raises(ValueError, match="takes no id"):
        key(ENV, Kind.NAMES, OBJ)


@given(
    environment_id=st.from_regex(ENVIRONMENT_ID, fullmatch=True),
    object_id=st.from_regex(OBJECT_ID, fullmatch=True),
)
def test_every_key_of_an_environment_shares_its_hash_tag(
    environment_id: str, object_id: str
) -> None:
    for kind in Kind:
        idents = {KEK_ID: KEK, OBJECT_ID: object_id, CONTEXT_ITEM_HASH: ITEM_HASH}
        ident = idents[kind.id_rule] if kind.id_rule else None
        name = key(environment_id, kind, ident)
        # Redis Cluster hashes the text between the first `{` and the next `}`.
        tag = name[name.index("{") + 1 : name.index("}")]
        assert tag == environment_id
        assert "::" not in name
        assert not name.endswith(":")
        assert name.count("{") == name.count("}") == 1


def test_a_context_items_index_is_named_by_the_hash_of_the_item() -> None:
    # Characters a key context allows but a key name must not carry never reach the name.
    assert context_item_key(ENV, "organization_id", "org_1") == f"vaultd:{{{ENV}}}:ctx:{ITEM_HASH}"
    odd = context_item_key(ENV, "a:b", "{x}")
    assert odd.count("{") == 1 and odd.endswith(hashlib.sha256(b"a:b\0{x}").hexdigest())
    assert context_item_key(ENV, "k", "v\u00e9") != context_item_key(ENV, "k", "ve\u0301")
