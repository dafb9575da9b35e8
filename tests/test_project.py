"""Annotation projects (issue 10): autosave, reopen, replay, and nothing lost to a kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_risnet.annotation.project import (ImageInfo, Project, default_folder, fingerprint,
                                              open_session, replay)
from napari_risnet.cli import main
from napari_risnet.clicks import Click
from napari_risnet.annotation import AnnotationSession

CENTRES = [(30, 30), (30, 90), (80, 60), (85, 20)]
RADIUS = 12


def discs_image(shape=(112, 120), centres=CENTRES, radius=RADIUS, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(40, 8, shape)
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    for k, (r, c) in enumerate(centres):
        img[(rr - r) ** 2 + (cc - c) ** 2 <= radius ** 2] += 150 + 10 * k
    return np.clip(img, 0, 255).astype(np.uint8)


class ComponentSegmenter:
    """Deterministic and fast: the bright components under the positive clicks, minus those
    under negative clicks (graph cut would take every disc of this image at once)."""

    def set_image(self, image, channels=None) -> None:
        from scipy import ndimage

        self.components, _ = ndimage.label(np.asarray(image) > 120)

    def predict(self, clicks, prev_mask=None):
        mask = np.zeros(self.components.shape, bool)
        for c in clicks:
            comp = self.components[int(round(c.row)), int(round(c.col))]
            if comp:
                mask = mask | (self.components == comp) if c.positive else \
                    mask & (self.components != comp)
        return SimpleNamespace(mask=mask)  # what the session reads of a Prediction


def test_save_restore_and_continue(tmp_path) -> None:
    img = discs_image()
    session = AnnotationSession(img, ComponentSegmenter())
    session.add_click(Click(*CENTRES[0]))
    session.commit()
    session.add_click(Click(*CENTRES[1]))
    session.add_click(Click(5, 5, False))
    session.commit()
    session.add_click(Click(*CENTRES[2]))  # being clicked: not part of the project yet
    project = Project(tmp_path / "p")
    project.save(session, ImageInfo.of(img), {"method": "graphcut"})
    assert not list((tmp_path / "p").glob("*.tmp"))
    record = json.loads((tmp_path / "p" / "project.json").read_text())
    assert record["objects"] == [1, 2] and len(record["clicks"]) == 3

    reopened, project, state = open_session(tmp_path / "p", img, ComponentSegmenter())
    assert state is not None and state.object_ids == [1, 2]
    np.testing.assert_array_equal(reopened.labels, session.labels)
    committed = [r for r in session.click_records() if r.object_id]
    assert reopened.click_records() == committed
    assert reopened.n_current_clicks == 0 and not reopened.can_undo
    reopened.add_click(Click(*CENTRES[2]))  # the annotation continues
    assert reopened.commit() == 3
    with pytest.raises(ValueError, match="another image"):
        open_session(tmp_path / "p", discs_image(seed=1), ComponentSegmenter())
    with pytest.raises(ValueError, match="shape"):
        open_session(tmp_path / "p", img[:50], ComponentSegmenter())


def test_replay_honours_replace_existing(tmp_path) -> None:
    img = discs_image()
    session = AnnotationSession(img, ComponentSegmenter())
    session.add_click(Click(*CENTRES[0]))
    session.commit()
    session.add_click(Click(*CENTRES[0]))
    session.commit(overwrite=True)  # the same disc, painted over object 1
    project = Project(tmp_path / "p")
    project.save(session, ImageInfo.of(img), overwrite_ids=[2])
    state = project.load()
    rebuilt = replay(state, img, ComponentSegmenter())
    np.testing.assert_array_equal(rebuilt, session.labels)
    assert (rebuilt == 2).any() and not (rebuilt == 1).any()


def test_default_folder(tmp_path, monkeypatch) -> None:
    assert default_folder(tmp_path / "cells.tif", "cells") == tmp_path / "cells.risnet"
    monkeypatch.setenv("NAPARI_RISNET_PROJECTS", str(tmp_path / "root"))
    assert default_folder(None, "nuclei (DSB2018)") == \
        tmp_path / "root" / "nuclei (DSB2018).risnet"
    assert default_folder(None, "a/b:c").name == "a_b_c.risnet"
    assert fingerprint(np.zeros((4, 5))) != fingerprint(np.ones((4, 5)))


def _segment(image, project, click, *extra) -> int:
    return main(["segment", str(image), "--click", click, *extra, "--project", str(project),
                 "--device", "cpu"])


def _discs_project(tmp_path, n: int):
    """The first ``n`` discs clicked into a project with the bundled model (CLI)."""
    image = tmp_path / "discs.png"
    Image.fromarray(discs_image()).save(image)
    project = tmp_path / "proj"
    for r, c in CENTRES[:n]:
        assert _segment(image, project, f"{r},{c},+") == 0
    return image, project, saved_labels(project)


def read_until(proc: subprocess.Popen, marker: str, timeout_s: float = 120) -> list[str]:
    """The lines a child process prints, up to and including ``marker`` (or its end)."""
    seen: list[str] = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        line = proc.stdout.readline().strip()
        if not line:
            break
        seen.append(line)
        if line == marker:
            break
    return seen


def saved_labels(folder) -> np.ndarray:
    """A project's labels as one array (read-only look)."""
    return np.asarray(Project(folder).load(writable=False).labels)


def as_previous_layout(folder, edit=None) -> dict:
    """Rewrite a project as the previous release stored it: labels.tif whose ImageDescription
    holds the record (version 1), project.json beside it, no labels.zarr; ``edit(record)``
    changes the record first."""
    import shutil

    from napari_risnet.annotation.project import DESCRIPTION_HEADER

    labels = saved_labels(folder)
    record = json.loads((folder / "project.json").read_text())
    record["version"] = 1
    record.pop("generation", None)
    record["labels"] = {"file": "labels.tif", "shape": list(labels.shape),
                        "dtype": str(labels.dtype)}
    if edit is not None:
        edit(record)
    text = json.dumps(record)
    tifffile.imwrite(folder / "labels.tif", labels, description=f"{DESCRIPTION_HEADER}\n{text}",
                     metadata=None, compression="zlib")
    (folder / "project.json").write_text(text)
    for store in folder.glob("labels*.zarr"):
        shutil.rmtree(store)
    return record


def test_segment_into_project_then_replay_is_identical(tmp_path, capsys) -> None:
    """Three objects through `segment --project` with the real bundled model, then `replay`
    rebuilds labels identical to the saved ones."""
    image, project, saved = _discs_project(tmp_path, 3)
    assert sorted(np.unique(saved)) == [0, 1, 2, 3]
    for k, (r, c) in enumerate(CENTRES[:3]):
        assert saved[r, c] == k + 1
    out = tmp_path / "replayed.tif"
    assert main(["replay", str(project), "-o", str(out), "--device", "cpu"]) == 0
    assert "identical to the saved labels" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(out), saved)
    # never over another object: the first disc again is refused, the project unchanged
    assert _segment(image, project, f"{CENTRES[0][0]},{CENTRES[0][1]},+") == 2
    assert "under other objects" in capsys.readouterr().err
    np.testing.assert_array_equal(saved_labels(project), saved)


def test_replay_rebuilds_the_recorded_predictor_after_the_defaults_change(tmp_path, capsys,
                                                                          monkeypatch) -> None:
    """A project records its predictor's settings: when a later release changes a default (here
    a strong magnified-window bias), replay still rebuilds the labels; a project saved without
    the record is replayed with the new defaults, and says so."""
    _, project, saved = _discs_project(tmp_path, 2)
    record = json.loads((project / "project.json").read_text())["model"]["predictor"]
    assert record["magnified_bias"] == 0.5 and record["small_object_from"] == 2.0
    assert record["magnified_bias_from"] == 1.0
    assert record["click_threshold"] == 0.05
    assert record["focus_from"] == 2
    assert record["graphcut_params"]["pairwise_weight"] == 0.5

    _release_defaults(monkeypatch, magnified_bias=4.0)  # "the next release's default"
    out = tmp_path / "replayed.tif"
    assert main(["replay", str(project), "-o", str(out), "--device", "cpu"]) == 0
    assert "identical to the saved labels" in capsys.readouterr().out
    as_previous_layout(project, lambda meta: meta["model"].pop("predictor"))
    assert main(["replay", str(project), "-o", str(out), "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert "predates recorded predictor settings" in said and "differs" in said
    assert (tifffile.imread(out) > 0).sum() > (saved > 0).sum()  # grown by the new bias


def _release_defaults(monkeypatch, **values) -> None:
    """Make ``PredictorSettings()`` answer with ``values`` as its defaults, as another release
    would (the presets stay as they are)."""
    import dataclasses

    from napari_risnet.inference.settings import PredictorSettings

    names = [f.name for f in dataclasses.fields(PredictorSettings)]
    defaults = list(PredictorSettings.__init__.__defaults__)
    for name, value in values.items():
        defaults[names.index(name)] = value
    monkeypatch.setattr(PredictorSettings.__init__, "__defaults__", tuple(defaults))


# what each earlier release did that a later one changed, as the settings its record lacked
RELEASE_0_28_0: dict = {}  # 0.29.0 changed no setting
RELEASE_0_27_0 = {**RELEASE_0_28_0}  # 0.28.0 changed no setting
RELEASE_0_26_0 = {**RELEASE_0_27_0, "fold_batchnorm": False}  # the BatchNorms unfolded
RELEASE_0_25_0 = {**RELEASE_0_26_0}  # 0.26.0 changed no setting
RELEASE_0_24_0 = {**RELEASE_0_25_0, "merge_from": 0}  # no late merge
RELEASE_0_23_0 = {**RELEASE_0_24_0, "merge_from": 2,  # the merges and the spill limit on
                  "spill_ratio": 20.0}
RELEASE_0_11_0 = {**RELEASE_0_23_0, "merge_always_from": 0}  # the merge's guard at every click
RELEASE_0_10_0 = {**RELEASE_0_11_0, "spill_ratio": 0.0}  # no spill limit on a click's edit
RELEASE_0_9_0 = {"refine_expand": 1.6, "refine_max_growth": 3.0,  # first zoom-in grew by expand
                 **RELEASE_0_10_0}
RELEASE_0_8_0 = {"magnified_bias_from": 2.0, **RELEASE_0_9_0}  # the bias's floor: small_object_from
# 0.7.0: the bias on every magnified window, no local threshold
RELEASE_0_7_0 = {"small_object_from": 1.0, "click_threshold": 0.0, "click_threshold_small": 0.0,
                 "magnified_bias_from": 1.0, **RELEASE_0_9_0}
RELEASES = {"0.28.0": RELEASE_0_28_0, "0.27.0": RELEASE_0_27_0, "0.26.0": RELEASE_0_26_0,
            "0.25.0": RELEASE_0_25_0, "0.24.0": RELEASE_0_24_0, "0.23.0": RELEASE_0_23_0,
            "0.11.0": RELEASE_0_11_0, "0.10.0": RELEASE_0_10_0, "0.9.0": RELEASE_0_9_0,
            "0.8.0": RELEASE_0_8_0, "0.7.0": RELEASE_0_7_0}


def test_the_presets_are_what_each_release_changed():
    import dataclasses

    from napari_risnet.inference.settings import PredictorSettings

    for version, lacked in RELEASES.items():
        assert PredictorSettings.for_release(version) == \
            dataclasses.replace(PredictorSettings(), **lacked), version


@pytest.mark.parametrize("version", ["0.9.0", "0.8.0", "0.7.0"])
def test_a_project_from_an_earlier_release_replays_identically(tmp_path, capsys, monkeypatch,
                                                               version) -> None:
    """Labels made by an earlier release, whose record names no release and lacks the settings
    added since, replay to the same labels. 0.8.0's behaviour (no bias on a soft-edged disc seen
    1.6x enlarged) differs from today's defaults there, so its replay holds only if the missing
    floor is taken from the record's ``small_object_from``; 0.9.0's (the first zoom-in grown by
    ``expand``) only if the missing ``refine_expand`` is taken from the record's ``expand``;
    0.7.0's record also lacks 0.8.0's settings."""
    from scipy import ndimage

    from napari_risnet.inference.predictor import Predictor

    previous = RELEASES[version]
    rr, cc = np.mgrid[:300, :300]
    disc = ndimage.gaussian_filter(((rr - 100) ** 2 + (cc - 100) ** 2 < 50 ** 2) * 160.0, 4)
    pixels = disc + 40 + np.random.default_rng(0).normal(0, 8, disc.shape)
    image = tmp_path / "disc.png"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(image)
    with monkeypatch.context() as m:
        _release_defaults(m, **previous)
        project = tmp_path / "proj"
        assert _segment(image, project, "100,100,+") == 0
    saved = saved_labels(project)

    def drop_newer_settings(meta):  # the record as that release wrote it
        for key in [*previous, "release"]:
            del meta["model"]["predictor"][key]

    as_previous_layout(project, drop_newer_settings)
    out = tmp_path / "replayed.tif"
    assert main(["replay", str(project), "-o", str(out), "--device", "cpu"]) == 0
    assert "identical to the saved labels" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(out), saved)
    if version != "0.7.0":  # ...where today's defaults answer differently
        today = Predictor(checkpoint="default", device="cpu")
        today.set_image(np.asarray(Image.open(image)))
        assert (today.predict([Click(100, 100)]).mask != (saved > 0)).sum() > 50


def test_segment_project_on_a_stack_with_graphcut(tmp_path, capsys) -> None:
    stack = np.stack([discs_image(seed=s) for s in range(3)])
    image = tmp_path / "stack.tif"
    tifffile.imwrite(image, stack)
    project = tmp_path / "proj"
    assert _segment(image, project, "30,30,+", "--slice", "1", "--method", "graphcut") == 0
    assert _segment(image, project, "3,4,-", "--click", "30,90,+", "--slice", "2",
                    "--method", "graphcut") == 2  # the first click must be positive
    assert "first click" in capsys.readouterr().err
    assert _segment(image, project, "30,90,+", "--click", "-3,4,-", "--slice", "2",
                    "--method", "graphcut") == 2  # -3 is outside: a one-line error
    assert "outside" in capsys.readouterr().err
    assert _segment(image, project, "30,90,+", "--click", "3,4,-", "--slice", "2",
                    "--method", "graphcut") == 0
    labels = saved_labels(project)
    assert labels[1, 30, 30] == 1 and labels[2, 30, 90] == 2 and not labels[0].any()
    out = tmp_path / "r.tif"
    assert main(["replay", str(project), "-o", str(out)]) == 0
    np.testing.assert_array_equal(tifffile.imread(out), labels)


KILL_SCRIPT = textwrap.dedent(r"""
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from test_project import CENTRES, ComponentSegmenter, discs_image
    from napari_risnet.annotation.project import ImageInfo, Project
    from napari_risnet.clicks import Click
    from napari_risnet.annotation import AnnotationSession

    img = discs_image()
    session = AnnotationSession(img, ComponentSegmenter())
    project = Project(sys.argv[1])
    info = ImageInfo.of(img)
    for k, (r, c) in enumerate(CENTRES):
        session.add_click(Click(r, c))
        session.commit()
        project.save(session, info, {"method": "graphcut"})
        print(f"SAVED {k + 1}", flush=True)
    session.add_click(Click(5, 5))  # an object being clicked when the process dies
    print("CLICKING", flush=True)
    while True:  # the process keeps saving until it is killed mid-write
        project.save(session, info, {"method": "graphcut"})
""")


@pytest.mark.parametrize("kill_after", ["SAVED 2", "CLICKING"])
def test_a_killed_process_loses_no_committed_object(tmp_path, kill_after) -> None:
    folder = tmp_path / "proj"
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(folder), tests_dir],
                            stdout=subprocess.PIPE, text=True)
    try:
        seen = read_until(proc, kill_after)
        if kill_after == "CLICKING":
            time.sleep(0.3)  # inside the save loop: most likely in the middle of a write
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
        proc.stdout.close()
    assert kill_after in seen and proc.returncode == -signal.SIGKILL
    committed = int(seen[-2 if kill_after == "CLICKING" else -1].split()[1])
    img = discs_image()
    session, _, state = open_session(folder, img, ComponentSegmenter())
    assert state is not None
    ids = sorted(session.objects)
    assert ids[:committed] == list(range(1, committed + 1))  # every committed object
    assert sorted(int(i) for i in np.unique(session.labels) if i) == ids  # pixels = records
    for k in ids:
        r, c = CENTRES[k - 1]
        assert session.labels[r, c] == k
    if kill_after == "CLICKING":
        assert ids == [1, 2, 3, 4] and session.n_current_clicks == 0


def test_a_propagated_object_restores_and_replays(tmp_path) -> None:
    """Propagated slices keep their source and derived clicks through save / restore / replay."""
    from napari_risnet.evaluation.baselines import GraphCutBaseline

    rng = np.random.default_rng(0)
    stack = np.clip(rng.normal(40, 8, (6, 64, 64)), 0, 255)
    rr, cc = np.mgrid[:64, :64]
    for z in range(6):
        stack[z][(rr - 32) ** 2 + (cc - 30) ** 2 <= (10 + z) ** 2] += 150
    stack = stack.astype(np.uint8)
    session = AnnotationSession(stack, GraphCutBaseline())
    session.add_click(Click(32, 30), slice_key=(2,))
    object_id = session.commit()
    result = session.propagate(object_id)
    assert result.slices  # carried to some neighbours
    project = Project(tmp_path / "p")
    project.save(session, ImageInfo.of(stack), {"method": "graphcut"})
    reopened, _, state = open_session(tmp_path / "p", stack, GraphCutBaseline())
    assert reopened.click_records() == session.click_records()
    assert any(r.source is not None for r in state.records)
    np.testing.assert_array_equal(replay(state, stack, GraphCutBaseline()), session.labels)
