"""A summary as the JSON a result file holds: its fields, with ``extra`` (the run's settings,
model, timings) spread to the top level where the table scripts read them."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any


def summary_json(summary: Any) -> dict:
    """The dataclass ``summary``'s fields, its ``extra`` dict merged in."""
    d = asdict(summary)
    d.update(d.pop("extra"))
    return d


__all__ = ["summary_json"]
