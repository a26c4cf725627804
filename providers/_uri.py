"""The `?name=value` options of a key URI (role to assume, account to impersonate, Vault to
reach), checked the same way by every provider before any call."""

from __future__ import annotations

from urllib.parse import parse_qs

from providers import KeyUnavailableError


def uri_options(key_uri: str, query: str, known: frozenset[str]) -> dict[str, str]:
    """The options in `query` (the part of `key_uri` after `?`): each one of `known`, given
    once, with a value; KeyUnavailableError naming what is wrong otherwise."""
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise KeyUnavailableError(f"{key_uri}: the part after ? is not name=value pairs") from None
    unknown = sorted(set(params) - known)
    if unknown:
        raise KeyUnavailableError(
            f"{key_uri}: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    if any(len(values) != 1 for values in params.values()):
        raise KeyUnavailableError(f"{key_uri}: a parameter is given more than once")
    if empty := sorted(name for name, values in params.items() if not values[0]):
        raise KeyUnavailableError(f"{key_uri}: parameter(s) {', '.join(empty)} have no value")
    return {name: values[0] for name, values in params.items()}
