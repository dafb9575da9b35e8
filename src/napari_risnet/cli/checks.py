"""What the command line accepts and writes: clicks and thread counts as arguments, the
checks that run before any model is loaded, and the mask file it writes."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence


#: Masks are written losslessly: a JPEG mask holds dozens of grey levels, not two.
MASK_SUFFIXES = (".tif", ".tiff", ".png")


def parse_click(text: str):
    from napari_risnet.clicks import Click

    parts = text.split(",")
    if len(parts) != 3 or parts[2] not in ("+", "-"):
        raise argparse.ArgumentTypeError(f"click must be ROW,COL,+ or ROW,COL,- (got {text!r})")
    try:
        return Click(float(parts[0]), float(parts[1]), parts[2] == "+")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"click {text!r}: row and col must be numbers") from exc


def threads_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"threads must be a whole number, got {text!r}"
                                         ) from exc
    if n < 1:
        raise argparse.ArgumentTypeError(f"threads must be at least 1, got {n}")
    return n


def set_threads(n: int | None) -> None:
    """On a small CPU shared with other work, fewer torch threads avoid OpenMP stalls."""
    from napari_risnet.threads import check_threads

    n = check_threads(n)
    if n:
        import torch

        torch.set_num_threads(n)


def check_image_path(path: str | Path) -> None:
    """Before loading a model: the image must be a file."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a folder, not an image file (give one image, e.g. "
                         f"{p / 'image.tif'})")
    if not p.exists():
        raise FileNotFoundError(f"no such image file: {p}")


def check_mask_output(path: str | Path) -> None:
    """Before predicting: a lossless format in an existing folder."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"-o {out} is a folder: give a mask file name, e.g. {out / 'mask.tif'}")
    if out.suffix.lower() not in MASK_SUFFIXES:
        raise ValueError(f"-o {out}: {out.suffix or 'no suffix'} is not a lossless mask format "
                         f"(a JPEG mask holds many grey levels); use .tif or .png")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"-o {out}: the folder {out.parent} does not exist (create it "
                                f"first)")


def write_mask(path: str | Path, mask) -> None:
    import numpy as np
    import tifffile

    out = Path(path)
    mask = np.asarray(mask).astype(np.uint8) * 255
    if out.suffix.lower() in (".tif", ".tiff"):
        tifffile.imwrite(out, mask)
    else:
        from PIL import Image

        Image.fromarray(mask).save(out)


def join_click_values(argv: Sequence[str]) -> list[str]:
    """``--click -5,10,+`` -> ``--click=-5,10,+``: argparse would take a value starting with
    '-' for an option (only plain negative numbers are exempt), so negative coordinates would
    need the '=' form."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--click":
            value = next(it, None)
            if value is not None and value.startswith("-") and "," in value:
                out.append(f"--click={value}")
                continue
            out.append(arg)
            if value is not None:
                out.append(value)
            continue
        out.append(arg)
    return out


__all__ = ["MASK_SUFFIXES", "check_image_path", "check_mask_output", "join_click_values",
           "parse_click", "set_threads", "threads_arg", "write_mask"]
