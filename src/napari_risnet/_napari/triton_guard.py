"""Keep triton out of the napari process (imported by the widget modules before torch loads).

Why: torchvision's ``roi_align`` (used by RIS-Net's local head) imports ``torch._dynamo``, whose
``utils`` module imports ``triton`` when the package is installed (CUDA builds of torch ship it).
``libtriton`` carries its own LLVM; loaded *after* napari has created its OpenGL context on a
Mesa driver that also uses LLVM (llvmpipe on VMs, remote desktops and CI), the process dies with
a segmentation fault in ``triton/knobs.py`` on the first prediction. Inference never needs
triton (it only serves ``torch.compile``), so the napari process tells Python that triton is
absent: torch then takes its triton-free paths. Headless use (CLI, training) is untouched.

Set ``NAPARI_RISNET_ALLOW_TRITON=1`` to opt out (e.g. another plugin in the same napari needs
``torch.compile`` on a GPU with vendor OpenGL drivers).
"""
from __future__ import annotations

import os
import sys

ALLOW_ENV = "NAPARI_RISNET_ALLOW_TRITON"


def keep_triton_out() -> bool:
    """Make ``import triton`` fail in this process unless it is already loaded or the user
    opted out. Returns whether triton is now blocked.

    ``sys.modules["triton"] = None`` is Python's documented way to mark a module as missing:
    ``import triton`` raises ImportError and ``importlib.util.find_spec("triton")`` returns None,
    which is exactly what torch checks before using it.
    """
    if os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes"):
        return False
    if "triton" in sys.modules:
        return sys.modules["triton"] is None  # already loaded (safely, before the GL context)
    sys.modules["triton"] = None  # type: ignore[assignment]
    return True


__all__ = ["ALLOW_ENV", "keep_triton_out"]
