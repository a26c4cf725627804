"""Which provider key governs each context item: the BYOK rules of docs/ARCHITECTURE.md section 5.

A rule matches ONE context item: a key and either an exact value (`org_abc`) or a value prefix
(`org_*`, a single trailing `*`). Items no rule governs use the default URI (the internal root
key). When several rules match an item, an exact value beats any prefix and a longer prefix
beats a shorter one; two rules of equal weight that can match the same item (the same key and
the same value or prefix) are a configuration error at load, never a guess at run time.

When any item of a context is governed by a rule, only the governed items' KEKs wrap the DEK
(the BYOK guarantee of section 4): a tenant that revokes its CMK then makes its data unreadable,
whatever other items the context holds.

A rule may name several keys, the primary first (`key: [aws-kms://..., gcp-kms://...]`): each
KEK version is then wrapped by every one of them, and any one unwraps it, so a regional outage
or a lost key leaves the tenant readable. Revoking access then means revoking every key.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vaultd.core.validation import KeyContext


class RuleError(ValueError):
    """A BYOK rule cannot be used; the message names the rule."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Items with this key whose value equals (or, for a prefix rule, starts with) `value`."""

    item_key: str
    value: str
    key_uri: str
    is_prefix: bool = False
    label: str = ""
    secondary_uris: tuple[str, ...] = ()

    @property
    def key_uris(self) -> tuple[str, ...]:
        """Every key that wraps the KEKs this rule governs, the primary first."""
        return (self.key_uri, *self.secondary_uris)

    @classmethod
    def parse(cls, index: int, match: Mapping[str, str], keys: str | Sequence[str]) -> Rule:
        uris = (keys,) if isinstance(keys, str) else tuple(keys)
        key_uri = " + ".join(uris)
        if len(match) != 1:
            raise RuleError(
                f"byok rule {index + 1} ({dict(match)}): match exactly one context item, "
                f"e.g. {{organization_id: org_abc}}"
            )
        ((item_key, pattern),) = match.items()
        label = f"byok rule {index + 1} ({item_key}={pattern} -> {key_uri})"
        if not item_key or not pattern:
            raise RuleError(f"{label}: the key and value must not be empty")
        is_prefix = pattern.endswith("*")
        value = pattern[:-1] if is_prefix else pattern
        if "*" in value:
            raise RuleError(f"{label}: only one trailing '*' is allowed in a value")
        if not uris:
            raise RuleError(f"{label}: name at least one key")
        if len(set(uris)) != len(uris):
            raise RuleError(f"{label}: a key is listed twice")
        return cls(item_key, value, uris[0], is_prefix, label, uris[1:])


class Resolver(Protocol):
    """What resolving items needs: KeyRules, or an environment's BYOK keys over them."""

    def key_uri(self, item_key: str, item_value: str) -> str: ...

    def key_uris(self, item_key: str, item_value: str) -> tuple[str, ...]: ...

    def items_to_wrap(self, context: KeyContext) -> KeyContext: ...


class KeyRules:
    """Resolves context items to provider key URIs."""

    def __init__(self, default_uri: str, rules: Iterable[Rule] = ()) -> None:
        self.default_uri = default_uri
        self.rules = tuple(rules)
        # Indexed so resolving an item costs a dict lookup, however many tenants have rules.
        self._exact: dict[tuple[str, str], Rule] = {}
        self._prefixes: dict[str, list[Rule]] = {}
        seen: dict[tuple[str, str, bool], Rule] = {}
        for rule in self.rules:
            twin = seen.setdefault((rule.item_key, rule.value, rule.is_prefix), rule)
            if twin is not rule:
                raise RuleError(f"{rule.label} overlaps {twin.label} with equal weight; remove one")
            if rule.is_prefix:
                self._prefixes.setdefault(rule.item_key, []).append(rule)
            else:
                self._exact[(rule.item_key, rule.value)] = rule
        for candidates in self._prefixes.values():
            candidates.sort(key=lambda r: len(r.value), reverse=True)

    @classmethod
    def from_config(
        cls,
        default_uri: str,
        entries: Iterable[tuple[Mapping[str, str], str | Sequence[str]]],
        configured_schemes: Collection[str],
    ) -> KeyRules:
        """Rules from (match, key URI or URIs) pairs, refusing any whose provider is not
        configured."""
        rules = []
        for index, (match, keys) in enumerate(entries):
            rule = Rule.parse(index, match, keys)
            for key_uri in rule.key_uris:
                scheme, sep, rest = key_uri.partition("://")
                if not sep or not rest:
                    raise RuleError(f"{rule.label}: key must be a URI such as aws-kms://arn:...")
                if scheme not in configured_schemes:
                    raise RuleError(
                        f"{rule.label}: no provider is configured for {scheme}:// "
                        f"(configured: {', '.join(sorted(configured_schemes)) or 'none'}); "
                        f"add it under providers:"
                    )
            rules.append(rule)
        return cls(default_uri, rules)

    def governing_rule(self, item_key: str, item_value: str) -> Rule | None:
        exact = self._exact.get((item_key, item_value))
        if exact is not None:
            return exact
        candidates = self._prefixes.get(item_key, ())
        return next((r for r in candidates if item_value.startswith(r.value)), None)

    def key_uri(self, item_key: str, item_value: str) -> str:
        return self.key_uris(item_key, item_value)[0]

    def key_uris(self, item_key: str, item_value: str) -> tuple[str, ...]:
        rule = self.governing_rule(item_key, item_value)
        return rule.key_uris if rule else (self.default_uri,)

    def items_to_wrap(self, context: KeyContext) -> KeyContext:
        """The items whose KEKs wrap a DEK for this context (the BYOK guarantee)."""
        governed = tuple(item for item in context if self.governing_rule(*item))
        return governed or context
