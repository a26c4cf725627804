"""Reading the runnable blocks of a Markdown page, so tests run the docs exactly as written.

A block is runnable when the line before its fence is `<!-- tested: NAME -->`.
"""

from __future__ import annotations

import re
from pathlib import Path

_BLOCK = re.compile(r"^<!-- tested: ([\w-]+) -->\n```(?:sh|bash)\n(.*?)^```", re.M | re.S)


def runnable_blocks(page: Path) -> dict[str, str]:
    """Each `<!-- tested: NAME -->` block's shell text, by NAME."""
    blocks: dict[str, str] = {}
    for name, body in _BLOCK.findall(page.read_text()):
        assert name not in blocks, f"{page.name}: two blocks are named {name}"
        blocks[name] = body
    return blocks


def fenced_blocks(page: Path, language: str) -> list[str]:
    """Every ```language block's text, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), re.M | re.S)
