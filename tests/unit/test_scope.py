"""ContextScope (core/scope.py): OR within one context key, AND across keys, prefixes, and the
parsing of `key=value` / `key=prefix*` constraints."""

from __future__ import annotations

import pytest

from vaultd.core.errors import ContextNotPermitted, InvalidArgument
from vaultd.core.scope import UNSCOPED, ContextScope, format_constraint, parse_constraints

SCOPE = ContextScope((("org", "A"), ("org", "B*"), ("region", "eu")))


@pytest.mark.parametrize(
    ("context", "allowed"),
    [
        ({"org": "A", "region": "eu"}, True),
        ({"org": "B", "region": "eu", "user": "u1"}, True),
        ({"org": "Bravo", "region": "eu"}, True),
        ({"org": "A"}, False),
        ({"region": "eu"}, False),
        ({"org": "AA", "region": "eu"}, False),
        ({"org": "a", "region": "eu"}, False),
        ({"org": "A", "region": "eu-west"}, False),
        ({}, False),
    ],
)
def test_allows(context: dict[str, str], allowed: bool) -> None:
    assert SCOPE.allows(context) is allowed
    assert UNSCOPED.allows(context) and UNSCOPED.unrestricted


def test_every_value_of_a_repeated_key_must_match() -> None:
    """A blob's entries may name one key twice (a spliced blob): one in-scope value is not
    enough."""
    assert SCOPE.allows_items([("org", "A"), ("region", "eu"), ("org", "B1")])
    assert not SCOPE.allows_items([("org", "A"), ("region", "eu"), ("org", "C")])
    with pytest.raises(ContextNotPermitted):
        SCOPE.check({"org": "C", "region": "eu"})


def test_parse_normalises_dedupes_and_round_trips() -> None:
    parsed = parse_constraints(["org=A", "org=B*", "org=A", "re\u0301gion=e\u0301*"])
    assert parsed == (("org", "A"), ("org", "B*"), ("région", "é*"))
    assert [format_constraint(c) for c in parsed] == ["org=A", "org=B*", "région=é*"]
    assert parse_constraints(["k=a=b"]) == (("k", "a=b"),)  # the first '=' splits


@pytest.mark.parametrize("bad", ["org", "=A", "org=", "org=*", "org=a*b", "org=a**", "o\u200brg=A"])
def test_bad_constraints_name_their_position(bad: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_constraints(["org=A", bad])
    assert caught.value.reason == "INVALID_CONTEXT_CONSTRAINT"
    assert caught.value.violations[0].field.startswith("context_constraints[1]")


def test_too_many_constraints_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        parse_constraints([f"k=v{i}" for i in range(21)])
