"""BYOK rules: resolution by weight, the BYOK guarantee, and refusal of bad rules at load."""

from __future__ import annotations

import pytest

from vaultd.core.rules import KeyRules, RuleError

SCHEMES = {"internal", "aws-kms", "hcvault"}


def rules(*entries: tuple[dict[str, str], str | list[str]]) -> KeyRules:
    return KeyRules.from_config("internal://root", entries, SCHEMES)


def test_exact_beats_prefix_and_longer_prefix_beats_shorter() -> None:
    r = rules(
        ({"organization_id": "org_*"}, "hcvault://transit/keys/all"),
        ({"organization_id": "org_ab*"}, "hcvault://transit/keys/ab"),
        ({"organization_id": "org_abc"}, "aws-kms://arn:aws:kms:r:1:key/abc"),
    )
    assert r.key_uri("organization_id", "org_abc") == "aws-kms://arn:aws:kms:r:1:key/abc"
    assert r.key_uri("organization_id", "org_abd") == "hcvault://transit/keys/ab"
    assert r.key_uri("organization_id", "org_x") == "hcvault://transit/keys/all"
    assert r.key_uri("organization_id", "other") == "internal://root"
    assert r.key_uri("user_id", "org_abc") == "internal://root"


def test_byok_items_alone_wrap_when_any_item_is_governed() -> None:
    r = rules(({"organization_id": "org_abc"}, "aws-kms://arn:aws:kms:r:1:key/abc"))
    mixed = (("organization_id", "org_abc"), ("user_id", "u1"))
    assert r.items_to_wrap(mixed) == (("organization_id", "org_abc"),)
    plain = (("organization_id", "org_zzz"), ("user_id", "u1"))
    assert r.items_to_wrap(plain) == plain


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([({"organization_id": "org_a"}, "nope://x")], "byok rule 1 .*no provider is configured"),
        ([({"organization_id": "org_a"}, "gcp-kms://projects/p")], "byok rule 1 .*gcp-kms"),
        ([({"organization_id": "org_a"}, "not a uri")], "byok rule 1 .*must be a URI"),
        ([({"a": "1", "b": "2"}, "hcvault://t/keys/k")], "byok rule 1 .*exactly one"),
        ([({"a": "x*y"}, "hcvault://t/keys/k")], "byok rule 1 .*trailing"),
        (
            [
                ({"organization_id": "org_*"}, "hcvault://t/keys/a"),
                ({"organization_id": "org_*"}, "hcvault://t/keys/b"),
            ],
            "byok rule 2 .*overlaps byok rule 1",
        ),
        (
            [
                ({"organization_id": "org_a"}, "hcvault://t/keys/a"),
                ({"organization_id": "org_a"}, "aws-kms://arn:k"),
            ],
            "byok rule 2 .*overlaps byok rule 1",
        ),
        ([({"organization_id": "org_a"}, [])], "byok rule 1 .*at least one key"),
        (
            [({"organization_id": "org_a"}, ["aws-kms://arn:k", "gcp-kms://projects/p"])],
            r"byok rule 1 \(organization_id=org_a -> aws-kms://arn:k \+ gcp-kms://projects/p\)"
            ".*no provider is configured for gcp-kms",
        ),
        (
            [({"organization_id": "org_a"}, ["aws-kms://arn:k", "aws-kms://arn:k"])],
            "byok rule 1 .*listed twice",
        ),
    ],
)
def test_bad_rules_fail_at_load_naming_the_rule(
    entries: list[tuple[dict[str, str], str | list[str]]], message: str
) -> None:
    with pytest.raises(RuleError, match=message):
        rules(*entries)


def test_a_rule_with_several_keys_names_the_primary_first() -> None:
    r = rules(({"organization_id": "org_*"}, ["aws-kms://arn:eu", "hcvault://t/keys/us"]))
    assert r.key_uris("organization_id", "org_a") == ("aws-kms://arn:eu", "hcvault://t/keys/us")
    assert r.key_uri("organization_id", "org_a") == "aws-kms://arn:eu"
    assert r.key_uris("user_id", "u1") == ("internal://root",)
