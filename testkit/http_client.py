"""A bare HTTP client for the HTTP-level tests: exact statuses, headers and bodies, no SDK."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def send(
    url: str,
    method: str,
    data: bytes | None,
    headers: dict[str, str],
    context: ssl.SSLContext | None,
) -> Reply:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as reply:
            return Reply(
                reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
            )
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


async def call(
    base_url: str,
    method: str,
    path: str,
    *,
    api_key: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> Reply:
    """One request, in a thread so the event loop serving vaultd keeps serving."""
    sent = dict(headers or {})
    if api_key is not None:
        sent["Authorization"] = f"Bearer {api_key}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    return await asyncio.to_thread(send, base_url + path, method, data, sent, context)
