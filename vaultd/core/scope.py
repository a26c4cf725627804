"""Context-scoped API keys (docs/AUTH.md): which key contexts a key may touch.

A key may carry constraints `key=value` or `key=prefix*`. Constraints on the same context key
are alternatives (any one may match); constraints on different keys must all hold. A context
satisfies a scope when, for every constrained key, it has that key with a value matching one of
its alternatives; other items of the context are free. A key with no constraints is not
confined at all (UNSCOPED), and every check below lets it through without a store read.

The rule lives here only: objects.py and datakeys.py ask `allows`, and the stores apply it to
listings through ScanFilter.in_scope, so gRPC and the HTTP adapter share one copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vaultd.core.errors import ContextNotPermitted, InvalidArgument
from vaultd.core.validation import validate_key_context

Constraint = tuple[str, str]
MAX_CONSTRAINTS = 20
_REASON = "INVALID_CONTEXT_CONSTRAINT"


@dataclass(frozen=True, slots=True)
class ContextScope:
    """The constraints of one API key; empty: any context."""

    constraints: tuple[Constraint, ...] = ()

    @property
    def unrestricted(self) -> bool:
        return not self.constraints

    def allows(self, context: Mapping[str, str]) -> bool:
        return self.allows_items(context.items())

    def allows_items(self, items: Iterable[tuple[str, str]]) -> bool:
        """Whether these items satisfy the scope. A key may appear more than once (the items a
        blob's entries name): then every one of its values must match, so a blob that mixes
        another tenant's entries with one of ours is not let through by ours."""
        values: dict[str, list[str]] = {}
        for key, value in items:
            values.setdefault(key, []).append(value)
        return all(
            key in values and all(_matches(value, patterns) for value in values[key])
            for key, patterns in self._patterns().items()
        )

    def check(self, context: Mapping[str, str]) -> None:
        """ContextNotPermitted unless a new object or data key may have this context."""
        if not self.allows(context):
            raise ContextNotPermitted("this API key may not use this key context")

    def _patterns(self) -> dict[str, list[str]]:
        patterns: dict[str, list[str]] = {}
        for key, pattern in self.constraints:
            patterns.setdefault(key, []).append(pattern)
        return patterns


UNSCOPED = ContextScope()


def _matches(value: str, patterns: Iterable[str]) -> bool:
    return any(value.startswith(p[:-1]) if p.endswith("*") else value == p for p in patterns)


def format_constraint(constraint: Constraint) -> str:
    """A constraint as it is written: `key=value` or `key=prefix*`."""
    return "=".join(constraint)


def parse_constraints(
    texts: Iterable[str], field: str = "context_constraints"
) -> tuple[Constraint, ...]:
    """`key=value` or `key=prefix*` texts as constraints: NFC-normalised, without repeats, in the
    order given. Keys and values follow the key-context rules (validation.py); the only `*`
    allowed is one at the end of a value, after at least one other character."""
    constraints: list[Constraint] = []
    texts = list(texts)
    if len(texts) > MAX_CONSTRAINTS:
        raise InvalidArgument(
            field,
            f"has {len(texts)} constraints; at most {MAX_CONSTRAINTS} are allowed",
            reason=_REASON,
        )
    for i, text in enumerate(texts):
        constraint = _parse_one(text, f"{field}[{i}]")
        if constraint not in constraints:
            constraints.append(constraint)
    return tuple(constraints)


def _parse_one(text: str, where: str) -> Constraint:
    key, sep, pattern = text.partition("=")
    if not sep:
        raise InvalidArgument(where, "must be key=value or key=prefix*", reason=_REASON)
    value = pattern[:-1] if pattern.endswith("*") else pattern
    if "*" in value:
        raise InvalidArgument(
            where, "only one '*', at the end of the value, is allowed", reason=_REASON
        )
    if not value:
        raise InvalidArgument(where, "value (or prefix before '*') is empty", reason=_REASON)
    try:
        ((key, value),) = validate_key_context({key: value}, where)
    except InvalidArgument as exc:
        raise InvalidArgument(where, exc.violations[0].description, reason=_REASON) from None
    return key, (value + "*" if pattern.endswith("*") else value)
