"""Release numbers compared as numbers ("0.10.0" after "0.9.0"): which preset, which bundled
model, which record is newer all turn on it."""
from __future__ import annotations


def release_key(version: str) -> tuple[int, ...]:
    """``"v0.14.0+local"`` → ``(0, 14, 0)``; a clear error for text that is no release number."""
    try:
        return tuple(int(p) for p in str(version).lstrip("v").split("+")[0].split(".")[:3])
    except ValueError:
        raise ValueError(f"{version!r} is not a release number (e.g. 0.14.0)") from None


__all__ = ["release_key"]
