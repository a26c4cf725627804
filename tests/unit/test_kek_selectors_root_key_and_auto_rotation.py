"""The pieces of the key lifecycle on their own: selectors, the root key file, the internal
provider following the file, and automatic rotation by age (on a real embedded store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from providers import KeyUnavailableError, ProviderRegistry, needs_rewrap
from providers.internal import DEFAULT_URI, InternalProvider, RootKeyFile
from vaultd.core.cache import TtlCache
from vaultd.core.errors import InvalidArgument, InvalidKeyContext
from vaultd.core.keyring import Keyring
from vaultd.core.lifecycle import KekSelector, parse_item
from vaultd.core.rules import KeyRules
from vaultd.storage import SqliteStore
from vaultd.storage.records import KekRecord, KekVersion

BINDING = {"vaultd:item": "a=b"}


def record(item_value: str, *uris: str) -> KekRecord:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    versions = tuple(KekVersion("org", item_value, n, u, b"w", at) for n, u in enumerate(uris, 1))
    return KekRecord("kek_" + "0" * 32, "org", item_value, versions)


RULES = KeyRules.from_config(
    DEFAULT_URI,
    [({"org": "byok_*"}, "hcvault://t/keys/k")],
    {
        "internal",
        "hcvault",
    },
)


@pytest.mark.parametrize(
    ("items", "prefix", "every", "error"),
    [
        ((), "", False, InvalidArgument),
        (("org=a",), "x://", False, InvalidArgument),
        (("org=a",), "", True, InvalidArgument),
        (("org",), "", False, InvalidArgument),
        (("=a",), "", False, InvalidKeyContext),
        (("org=",), "", False, InvalidKeyContext),
    ],
)
def test_a_selector_names_exactly_one_way(
    items: tuple[str, ...], prefix: str, every: bool, error: type[Exception]
) -> None:
    with pytest.raises(error):
        KekSelector.parse(items, prefix, every)


def test_selectors_match_items_patterns_and_key_uris() -> None:
    exact = KekSelector.parse(["org=a", "org=byok_*"], "", False)
    assert exact.exact_items() == (("org", "a"),)
    assert [exact.matches(record(v, DEFAULT_URI), RULES) for v in ("a", "ab", "byok_1")] == [
        True,
        False,
        True,
    ]
    by_uri = KekSelector.parse([], "hcvault://", False)
    assert by_uri.matches(record("byok_1", DEFAULT_URI), RULES), "its rule names hcvault now"
    assert by_uri.matches(record("a", "hcvault://old/keys/k"), RULES), "a version is there"
    assert not by_uri.matches(record("a", DEFAULT_URI), RULES)
    assert KekSelector.parse([], "", True).matches(record("z", DEFAULT_URI), RULES)
    assert parse_item("org=a*", pattern=True) == ("org", "a*")
    with pytest.raises(InvalidKeyContext):
        parse_item("org=" + "x" * 501)


def test_root_key_file_rotates_and_retires_in_place(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    first = RootKeyFile.create(path)
    rotated = RootKeyFile.rotate(path)
    assert (rotated.primary, sorted(rotated.keys)) == (2, [1, 2])
    assert rotated.keys[1] == first.keys[1] and rotated.keys[2] != first.keys[1]
    assert path.stat().st_mode & 0o777 == 0o600
    assert RootKeyFile.load(path) == rotated
    with pytest.raises(ValueError, match="primary"):
        RootKeyFile.retire(path, 3)
    retired = RootKeyFile.retire(path, 2)
    assert (retired.primary, list(retired.keys)) == (2, [2])
    doc = json.loads(path.read_text())
    assert [v["version"] for v in doc["versions"]] == [2] and doc["versions"][0]["created_at"]
    assert not (tmp_path / "root.key.new").exists()


async def test_internal_provider_follows_the_file_it_was_started_from(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    provider = InternalProvider.from_file(path)
    old = await provider.wrap(DEFAULT_URI, b"k" * 32, BINDING)
    assert not needs_rewrap(provider, DEFAULT_URI, old)

    RootKeyFile.rotate(path)  # as `vaultd root rotate` beside a running server
    assert needs_rewrap(provider, DEFAULT_URI, old)
    new = await provider.wrap(DEFAULT_URI, b"k" * 32, BINDING)
    assert new[1:5] == (2).to_bytes(4, "big") and not needs_rewrap(provider, DEFAULT_URI, new)
    assert await provider.unwrap(DEFAULT_URI, old, BINDING) == b"k" * 32

    RootKeyFile.retire(path, 2)
    with pytest.raises(KeyUnavailableError, match="version 1 is not available"):
        await provider.unwrap(DEFAULT_URI, old, BINDING)
    assert await provider.unwrap(DEFAULT_URI, new, BINDING) == b"k" * 32


async def test_a_kek_older_than_the_rotation_period_gets_a_new_version_on_use(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "vaultd.db")
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    providers = ProviderRegistry([InternalProvider.from_file(tmp_path / "root.key")])
    keyring = Keyring(
        store,
        providers,
        KeyRules.from_config(DEFAULT_URI, [], providers.schemes),
        TtlCache(0, 0),  # every call asks the store, as a process would once its TTL passed
        clock=lambda: now[0],
        rotation_period=timedelta(days=30),
    )
    context = (("org", "a"),)
    try:
        (first,) = await keyring.current_keks("default", context)
        now[0] += timedelta(days=29)
        (same,) = await keyring.current_keks("default", context)
        now[0] += timedelta(days=2)
        (rotated,) = await keyring.current_keks("default", context)
        (again,) = await keyring.current_keks("default", context)
        assert [k.version for k in (first, same, rotated, again)] == [1, 1, 2, 2]
        assert rotated.key != first.key
        kek = await store.get_kek("default", first.kek_id)
        assert kek is not None
        assert [v.created_at for v in kek.versions] == [now[0] - timedelta(days=31), now[0]]
    finally:
        await store.close()
