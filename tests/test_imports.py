"""The headless layers must never pull in napari or a Qt binding (CLI / training on a GPU node)."""
import subprocess
import sys

HEADLESS = ["napari_risnet", "napari_risnet.clicks", "napari_risnet.model",
            "napari_risnet.inference", "napari_risnet.evaluation.robot", "napari_risnet.evaluation.images",
            "napari_risnet.evaluation.baselines", "napari_risnet.data", "napari_risnet.training",
            "napari_risnet.training.trainer", "napari_risnet.training.finetune",
            "napari_risnet.annotation", "napari_risnet.annotation", "napari_risnet.cli",
            "napari_risnet.annotation.project", "napari_risnet._napari.plugin_state",
            "napari_risnet._napari.triton_guard", "napari_risnet._napari.reader",
            "napari_risnet.evaluation.stacks", "napari_risnet.inference.merge",
            "napari_risnet.model.grow", "napari_risnet.model.averaging",
            "napari_risnet.training.pack", "napari_risnet.training.rollouts", "napari_risnet.annotation.corrections",
            "napari_risnet.annotation.replay", "napari_risnet.annotation.cache",
            "napari_risnet.inference.settings", "napari_risnet.inference.network_pass",
            "napari_risnet.training.fast_depthwise", "napari_risnet.training.frozen_bf16"]


def test_headless_modules_do_not_import_napari_or_qt():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in HEADLESS)
            + "from napari_risnet.cli import build_parser; build_parser()\n"
            + "bad = [m for m in sys.modules if m.split('.')[0] in "
              "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy')]\n"
            + "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
