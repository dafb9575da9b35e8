"""The held-out split of the training folders: which images the trainer keeps for validation.
One function, shared by the trainer, the packer and fine-tuning, so they never disagree."""
from __future__ import annotations

import zlib


def is_validation(key: str, fraction: float) -> bool:
    """Deterministic split by image key (stable across runs and machines)."""
    return (zlib.crc32(key.split(":z")[0].encode()) % 10_000) < fraction * 10_000


__all__ = ["is_validation"]
