"""The widget's annotation projects (issue 10): autosave on every commit, reopen (same image
again, "Open project…", napari's reader for the folder), and the annotation continues."""
from __future__ import annotations

import numpy as np
import tifffile
from PIL import Image as PILImage

from napari_risnet.annotation.project import Project
from napari_risnet.metrics import iou

from test_widget import disc_mask, press_key, user_click

SHAPE = (96, 96)
DISCS = [(30, 30), (66, 66)]


def two_discs(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(30, 8, SHAPE)
    img[disc_mask(SHAPE, DISCS[0], 12)] += 170
    img[disc_mask(SHAPE, DISCS[1], 12)] += 120
    return np.clip(img, 0, 255).astype(np.uint8)


def saved_labels(folder) -> np.ndarray:
    return np.asarray(Project(folder).load(writable=False).labels)


def dock(make_napari_viewer, graphcut_factory, image=None, path=None):
    from napari_risnet._napari.widget import RISNetWidget

    viewer = make_napari_viewer()
    if path is not None:
        viewer.open(str(path))
    elif image is not None:
        viewer.add_image(image, name="img")
    widget = RISNetWidget(viewer, segmenter_factory=graphcut_factory)
    viewer.window.add_dock_widget(widget, name="RIS-Net")
    return viewer, widget


def commit_disc(widget, qtbot, centre, other) -> int:
    user_click(widget, qtbot, centre)
    user_click(widget, qtbot, other, button=2)  # graph cut: the other disc is background
    press_key(widget, "c")
    return max(widget.session.objects)


def test_commits_autosave_and_the_same_image_reopens(make_napari_viewer, graphcut_factory,
                                                     qtbot, tmp_path) -> None:
    img = two_discs()
    viewer, widget = dock(make_napari_viewer, graphcut_factory, img)
    folder = widget.annotation.project.folder
    assert folder == tmp_path / "risnet-projects" / "img.risnet"
    assert not folder.exists() and "created at the first commit" in widget.project_label.text()
    assert commit_disc(widget, qtbot, DISCS[0], DISCS[1]) == 1
    saved = saved_labels(folder)
    assert iou(saved == 1, disc_mask(SHAPE, DISCS[0], 12)) > 0.9
    assert str(folder) in widget.project_label.text() and "saved" in widget.project_label.text()
    widget.undo()  # undoing the commit is saved too
    assert not saved_labels(folder).any()
    widget.redo()
    assert (saved_labels(folder) == 1).any()
    user_click(widget, qtbot, DISCS[1])  # being clicked when napari closes: not saved
    viewer.close()

    viewer2, widget2 = dock(make_napari_viewer, graphcut_factory, img)
    assert widget2.annotation.project.folder == folder
    assert sorted(widget2.session.objects) == [1] and widget2.session.n_current_clicks == 0
    labels = widget2.annotation.labels.data
    assert iou(labels == 1, disc_mask(SHAPE, DISCS[0], 12)) > 0.9
    assert len(widget2.annotation.points.data) == 2  # the object's clicks are shown again
    assert commit_disc(widget2, qtbot, DISCS[1], DISCS[0]) == 2  # the annotation continues
    assert sorted(Project(folder).load().object_ids) == [1, 2]

    # another image with the same layer name gets its own folder
    viewer3, widget3 = dock(make_napari_viewer, graphcut_factory, two_discs(seed=5))
    assert widget3.annotation.project.folder.name == "img.risnet 2"
    assert not widget3.session.objects


def test_open_project_and_the_reader(make_napari_viewer, graphcut_factory, qtbot,
                                     tmp_path) -> None:
    path = tmp_path / "cells.png"
    PILImage.fromarray(two_discs()).save(path)
    viewer, widget = dock(make_napari_viewer, graphcut_factory, path=path)
    folder = tmp_path / "cells.risnet"  # beside the image file
    assert widget.annotation.project.folder == folder
    commit_disc(widget, qtbot, DISCS[0], DISCS[1])
    viewer.close()

    # "Open project…" in an empty viewer: the image comes back from its file
    viewer2, widget2 = dock(make_napari_viewer, graphcut_factory)
    assert widget2.open_project(folder)
    assert [ly.name for ly in viewer2.layers][0] == "cells"
    assert sorted(widget2.session.objects) == [1]
    assert widget2.annotation.labels.data[DISCS[0]] == 1
    viewer2.close()

    # napari's reader: File > Open the folder, then dock the widget
    from napari_risnet._napari.widget import RISNetWidget

    viewer3 = make_napari_viewer()
    viewer3.open(str(folder), plugin="napari-risnet")
    names = [ly.name for ly in viewer3.layers]
    assert names == ["cells", "cells RIS-Net labels (saved)"]
    widget3 = RISNetWidget(viewer3, segmenter_factory=graphcut_factory)
    viewer3.window.add_dock_widget(widget3, name="RIS-Net")
    qtbot.waitUntil(lambda: "cells RIS-Net labels (saved)" not in
                    [ly.name for ly in viewer3.layers], timeout=5000)
    assert sorted(widget3.session.objects) == [1]
    assert commit_disc(widget3, qtbot, DISCS[1], DISCS[0]) == 2


def test_change_folder(risnet_widget, qtbot, tmp_path) -> None:
    viewer, widget = risnet_widget(two_discs())
    user_click(widget, qtbot, DISCS[0])
    press_key(widget, "c")
    old = widget.annotation.project.folder
    assert Project(old).exists()  # autosaved at the commit
    target = tmp_path / "mine.risnet"
    assert widget.choose_project_folder(target)
    assert Project(target).load().object_ids == [1]
    assert str(target) in widget.project_label.text()
    assert not widget.choose_project_folder(old)  # another project: refused, not overwritten
    assert widget.annotation.project.folder == target


def test_a_widget_project_replays_identically(make_napari_viewer, graphcut_factory, qtbot,
                                              tmp_path, capsys) -> None:
    from napari_risnet.cli import main

    img = two_discs()
    tifffile.imwrite(tmp_path / "img.tif", img)
    graphcut_factory.method_name = "graphcut"  # what the project records for replay
    viewer, widget = dock(make_napari_viewer, graphcut_factory, img)
    commit_disc(widget, qtbot, DISCS[0], DISCS[1])
    commit_disc(widget, qtbot, DISCS[1], DISCS[0])
    folder = widget.annotation.project.folder
    assert Project(folder).load().model["method"] == "graphcut"
    out = tmp_path / "replayed.tif"
    assert main(["replay", str(folder), "--image", str(tmp_path / "img.tif"), "-o",
                 str(out)]) == 0
    assert "identical" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(out), widget.annotation.labels.data)


def test_the_project_records_the_predictors_settings(make_napari_viewer, qtbot) -> None:
    """What replay needs to rebuild the predictor after a release changes its defaults."""
    from napari_risnet.evaluation.baselines import GraphCutBaseline

    class RecordingSegmenter(GraphCutBaseline):
        def recorded_settings(self):
            return {"focus_from": 3, "magnified_bias": 0.25}

    def factory(**settings):
        return RecordingSegmenter()

    viewer, widget = dock(make_napari_viewer, factory, two_discs())
    commit_disc(widget, qtbot, DISCS[0], DISCS[1])
    model = Project(widget.annotation.project.folder).load().model
    assert model["predictor"] == {"focus_from": 3, "magnified_bias": 0.25}
