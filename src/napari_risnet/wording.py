"""Words for counts in messages shown to users (the widgets and the command line)."""
from __future__ import annotations


def plural(n: int, word: str) -> str:
    """``1 click``, ``2 clicks`` (the last word takes the s)."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


__all__ = ["plural"]
