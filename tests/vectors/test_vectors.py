"""Every vector in tests/vectors/*.json against vaultd.core, read as docs/FORMAT.md says.

The reading procedure (FORMAT.md, "Test vectors"): parse the blob, parse encrypted_keys, unwrap
the entries with the vector's KEKs, open the data with the data key they give. A positive vector
must open to its plaintext with every entry unwrapping to its data key; a negative vector must
be refused as DECRYPTION_FAILED at exactly the step it names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.vectors import generate
from tests.vectors.generate import Vector, plaintext_of, unb64
from vaultd.core.blob import LocalBlob, open_local
from vaultd.core.envelope import EncryptedKeys, Purpose, unwrap_entry
from vaultd.core.errors import DecryptionFailed, VaultError
from vaultd.core.keyring import kek_id_for

VECTORS = generate.load_vectors()
POSITIVE = [v for v in VECTORS if v["valid"]]
NEGATIVE = [v for v in VECTORS if not v["valid"]]


def _aad(vector: Vector) -> bytes:
    value = vector["associated_data"]
    return b"" if value is None else unb64(value)


class Refused(Exception):
    """A vector refused at `step` with vaultd's own `error`."""

    def __init__(self, step: str, error: VaultError) -> None:
        super().__init__(f"{step}: {error}")
        self.step = step
        self.error = error


def read(vector: Vector) -> tuple[str, bytes]:
    """(last step, plaintext), or Refused naming the step that refused the vector."""
    step = "blob"
    try:
        blob = LocalBlob.parse(unb64(vector["blob"]))
        step = "encrypted_keys"
        keys = EncryptedKeys.parse(blob.encrypted_keys)
        step = "entry"
        keks = {(k["kek_id"], k["version"]): unb64(k["key"]) for k in vector["keks"]}
        data_key = None
        # As vaultd does: the first entry whose KEK the reader has and that authenticates.
        for entry in keys.entries:
            kek = keks.get((entry.kek_id, entry.kek_version))
            if kek is None:
                continue
            try:
                # A client holds data keys: format 2 must carry the data-key label.
                data_key = unwrap_entry(keys, entry, kek, Purpose.DATA_KEY)
                break
            except DecryptionFailed:
                continue
        if data_key is None:
            raise DecryptionFailed("no entry of encrypted_keys authenticates")
        step = "data"
        return step, open_local(data_key, blob, _aad(vector))
    except VaultError as exc:
        raise Refused(step, exc) from exc


@pytest.mark.parametrize("vector", POSITIVE, ids=[v["name"] for v in POSITIVE])
def test_positive_vector_opens(vector: Vector) -> None:
    raw = unb64(vector["blob"])
    blob = LocalBlob.parse(raw)
    assert blob.to_bytes() == raw, "the blob is not in canonical (shortest LEB128) form"
    assert blob.encrypted_keys == unb64(vector["encrypted_keys"])
    keys = EncryptedKeys.parse(blob.encrypted_keys)
    assert keys.to_bytes() == blob.encrypted_keys
    assert keys.dek_id == unb64(vector["dek_id"])
    data_key = unb64(vector["data_key"])
    assert data_key not in blob.encrypted_keys
    assert [(e.kek_id, e.kek_version) for e in keys.entries] == [
        (k["kek_id"], k["version"]) for k in vector["keks"]
    ]
    assert vector["key_ids"] == [f"{e.kek_id}.v{e.kek_version}" for e in keys.entries]
    if vector["kek_ids_derived"]:
        items = sorted(vector["key_context"].items())
        assert [e.kek_id for e in keys.entries] == [
            kek_id_for(vector["environment_id"], k, v) for k, v in items
        ]
    for entry, kek in zip(keys.entries, vector["keks"], strict=True):
        assert unwrap_entry(keys, entry, unb64(kek["key"]), Purpose.DATA_KEY) == data_key
    assert keys.format_version == vector["encrypted_keys_format"]
    assert Purpose(vector["entry_label"].encode()).format_version == keys.format_version
    assert blob.committing == (vector["blob_variant"] == "committing")
    assert read(vector) == ("data", plaintext_of(vector))


@pytest.mark.parametrize("vector", NEGATIVE, ids=[v["name"] for v in NEGATIVE])
def test_negative_vector_fails_where_it_says(vector: Vector) -> None:
    with pytest.raises(Refused) as caught:
        read(vector)
    error = caught.value.error
    assert (error.code, error.reason) == (vector["error_code"], vector["error_reason"])
    assert caught.value.step == vector["fails_at"]
    assert vector["data_key"] not in error.message
    assert unb64(vector["data_key"]).hex() not in error.message


def test_empty_associated_data_is_no_associated_data() -> None:
    (vector,) = [v for v in POSITIVE if v["name"] == "empty-aad-equals-none"]
    assert read({**vector, "associated_data": None})[1] == plaintext_of(vector)


def test_committed_files_are_what_the_generator_makes() -> None:
    assert generate.check() == []


def test_the_checker_refuses_an_edited_file(tmp_path: Path) -> None:
    generate.write(tmp_path)
    assert generate.check(tmp_path) == []
    path = tmp_path / "negative.json"
    document = json.loads(path.read_text())
    document["vectors"][0]["fails_at"] = "entry"
    path.write_text(json.dumps(document))
    (tmp_path / "stray.json").write_text("{}")
    problems = generate.check(tmp_path)
    assert "negative.json: differs from what generate.py makes; regenerate it" in problems
    assert "stray.json: not made by generate.py" in problems


def test_the_checker_requires_the_coverage_issue_3_asks_for() -> None:
    few = [v for v in VECTORS if v["valid"] and v["name"] != "one-mib-plaintext-aad"][:5]
    problems = generate._coverage_problems(few)
    assert "missing: at least 12 positive vectors" in problems
    assert "missing: a 1 MiB plaintext" in problems
    assert "missing: negative vectors failing at every step" in problems
    assert generate._coverage_problems(VECTORS) == []


def test_vectors_cover_every_failure_stage() -> None:
    assert len(POSITIVE) >= 12 and len(NEGATIVE) >= 40
    assert {v["fails_at"] for v in NEGATIVE} == set(generate.STAGES)
