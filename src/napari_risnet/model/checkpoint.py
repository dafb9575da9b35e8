"""Checkpoints that rebuild their model alone: {format, config, state_dict, meta}.

Loaded with ``weights_only=True`` and ``strict=True``; anything else is refused with a message
that says what the file is (or is not).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from napari_risnet.model.risnet import RISNet, RISNetConfig

FORMAT = "napari-risnet/1"
#: Architecture version 2 (previous-mask input, refinement decoder) is written as format 2, so
#: a release that only knows version 1 refuses it by name instead of failing on its config.
FORMAT_V2 = "napari-risnet/2"
FORMATS = (FORMAT, FORMAT_V2)


class CheckpointError(ValueError):
    """A file that is not a usable napari-risnet checkpoint."""


def save_checkpoint(path: str | os.PathLike, model: RISNet, meta: dict[str, Any] | None = None,
                    half: bool = False, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` atomically (temp file + rename: a kill never leaves a torn file).

    Args:
        half: store floating tensors as fp16 (the bundled weights).
        extra: more entries to store beside the model (optimizer state for resuming).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
             for k, v in model.state_dict().items()}
    cfg = model.config.to_dict()
    cfg["backbone_kwargs"] = {**cfg["backbone_kwargs"], "pretrained": False}
    fmt = FORMAT_V2 if model.config.version == 2 else FORMAT
    payload = {"format": fmt, "config": cfg, "state_dict": state, "meta": dict(meta or {})}
    if extra:
        payload.update(extra)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; keep the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read and validate the raw payload of a checkpoint (no model built); ``~`` is the home
    folder, as a shell would read it (a widget's text field or ``--checkpoint=~/m.pt`` keep it)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged / foreign files
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (damaged, truncated "
                              f"or not a weights-only file): {exc}") from exc
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if isinstance(fmt, str) and fmt.startswith("napari-risnet/") and fmt not in FORMATS:
        raise CheckpointError(f"{path} was written by a newer napari-risnet (checkpoint format "
                              f"{fmt!r}); this version reads {', '.join(FORMATS)}: upgrade "
                              f"napari-risnet to use it")
    if fmt not in FORMATS:
        raise CheckpointError(f"{path} is not a napari-risnet checkpoint (expected format "
                              f"{' or '.join(map(repr, FORMATS))}); export one with "
                              f"`napari-risnet train/finetune`")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path} lacks its {key!r} entry")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[RISNet, dict[str, Any]]:
    """Rebuild the model saved in ``path`` (strict) and return it in eval mode with its meta."""
    payload = read_checkpoint(path, map_location)
    return model_from_payload(payload, path, payload["state_dict"], map_location), \
        dict(payload.get("meta", {}))


def model_from_payload(payload: dict[str, Any], path: str | os.PathLike,
                       state_dict: dict[str, torch.Tensor],
                       map_location: str | torch.device = "cpu") -> RISNet:
    """The architecture ``payload`` (from :func:`read_checkpoint`) describes with
    ``state_dict``'s weights (strict), in eval mode: the saved weights, or others the file
    holds beside them (a training run's weight average)."""
    try:
        config = RISNetConfig.from_dict(payload["config"])
        model = RISNet(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its architecture config cannot be built: {exc}") from exc
    state = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the architecture they claim "
                              f"({config.backbone}): {str(exc)[:400]}") from exc
    model.eval()
    return model.to(map_location)
