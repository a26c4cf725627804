"""Names no other test uses, so tests sharing a server keep apart without cleaning up."""

from __future__ import annotations

import uuid


def unique(prefix: str = "obj") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
