"""One version everywhere: pyproject, ``napari_risnet.__version__``, ``napari-risnet --version``
and an entry in CHANGELOG.md.

``__version__`` comes from the installed metadata, so after a version bump these tests pass once
the package is installed again (``pip install -e .``).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import napari_risnet

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def test_version_is_pyprojects():
    assert napari_risnet.__version__ == _pyproject_version(), (
        "the installed metadata is stale: reinstall the package (pip install -e .)")


def test_cli_prints_the_version():
    out = subprocess.run([sys.executable, "-m", "napari_risnet", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"napari-risnet {napari_risnet.__version__}"


def test_changelog_has_an_entry_for_the_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    version = re.escape(_pyproject_version())
    assert re.search(rf"^## \[{version}\]", changelog, flags=re.M), (
        f"CHANGELOG.md has no '## [{_pyproject_version()}]' entry")
