"""The bundled models, by the release that first shipped each, so that a project replays with
the model that made it after a release ships new weights.

A project records ``checkpoint = "default"`` and, from 0.14.0 on, ``bundled`` = the release
that first shipped that default model; a record without it was written by 0.13.0 or earlier,
whose default was the stage-5 model first shipped in 0.5.0 (earlier models are not kept). A
release that ships new weights renames the current file after its release in ``BUNDLED`` (e.g.
``risnet_0.5.0.pt``) and appends its own: every recorded project keeps its model.
"""
from __future__ import annotations

from pathlib import Path

from napari_risnet.releases import release_key

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

#: (first release that shipped it, file in ``WEIGHTS_DIR``), oldest first; the last is current
BUNDLED: tuple[tuple[str, str], ...] = (("0.5.0", "risnet_0.5.0.pt"),
                                         ("0.24.0", "risnet_default.pt"))
#: the release whose bundled model ``"default"`` means today
CURRENT = BUNDLED[-1][0]
#: what a record without ``bundled`` used: the default of every release from 0.5.0 to 0.13.0
BEFORE_RECORDED = "0.13.0"


def checkpoint_record(checkpoint: str | Path | None) -> dict[str, str]:
    """How a project names its model: a file by its absolute path, the bundled one as
    ``"default"`` with the release that first shipped it (replay rebuilds with that model after
    a release ships new weights)."""
    if checkpoint not in (None, "", "default"):
        return {"checkpoint": str(Path(checkpoint).expanduser().resolve())}
    return {"checkpoint": "default", "bundled": CURRENT}


def bundled_release(release: str | None = None) -> str:
    """The release that first shipped the model bundled with ``release`` (None: today's)."""
    if release is None:
        return CURRENT
    shipped = [first for first, _ in BUNDLED if release_key(first) <= release_key(release)]
    if not shipped:
        raise ValueError(f"no bundled model of release {release} is kept (the oldest is "
                         f"{BUNDLED[0][0]}'s): give the checkpoint file")
    return shipped[-1]


def bundled_weights(release: str | None = None) -> Path:
    """The file of the model bundled with ``release`` (None: today's); a clear error while it
    is missing (a source checkout without the weights)."""
    first = bundled_release(release)
    path = WEIGHTS_DIR / dict(BUNDLED)[first]
    if not path.is_file():
        raise FileNotFoundError(f"no bundled model of release {first} at {path}: pass a "
                                f"checkpoint (--checkpoint FILE) or train one with "
                                f"`napari-risnet train`")
    return path


def recorded_weights(model_record: dict) -> Path:
    """The bundled model a project's ``model`` record names (``checkpoint = "default"``)."""
    return bundled_weights(str(model_record.get("bundled") or BEFORE_RECORDED))


__all__ = ["BEFORE_RECORDED", "BUNDLED", "CURRENT", "WEIGHTS_DIR", "bundled_release",
           "bundled_weights", "checkpoint_record", "recorded_weights"]
