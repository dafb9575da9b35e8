"""A project written by an earlier release (``tests/fixtures/replay_project``, made by
``tests/fixtures/make_replay_project.py`` with the bundled model) replays to identical labels:
the recorded predictor settings rebuild the predictor that made them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from napari_risnet.annotation.project import Project
from napari_risnet.cli import main

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "replay_project"


def test_a_committed_project_replays_to_identical_labels(tmp_path, capsys) -> None:
    state = Project(FIXTURE / "project").load()
    assert len(state.object_ids) == 6 and len(state.records) == 29
    out = tmp_path / "replayed.tif"
    assert main(["replay", str(FIXTURE / "project"), "--image", str(FIXTURE / "image.png"),
                 "-o", str(out), "--device", "cpu"]) == 0
    assert "identical to the saved labels" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(out), state.labels)
