"""An annotator's day, second pass (issue 26): driven like a user through napari's own mouse
and key dispatch, with the graph cut baseline (no weights needed)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.notifications import notification_manager

from napari_risnet.metrics import iou
from napari_risnet.training.finetune import FinetuneResult

from test_widget import (SHAPE, FakeMouseEvent, disc_mask, make_disc_image, press_key,
                         user_click, wait, _fake_finetune_module)

A, B = (30, 30), (70, 70)


def two_discs() -> np.ndarray:
    return np.maximum(make_disc_image(SHAPE, A, 10), make_disc_image(SHAPE, B, 10, seed=1))


def commit_a(widget, qtbot) -> None:
    """Object 1 = disc A (a negative click on B: the discs are equally bright)."""
    user_click(widget, qtbot, A)
    user_click(widget, qtbot, B, button=2)
    press_key(widget, "c")
    qtbot.waitUntil(lambda: not widget.busy and not widget._deferred, timeout=10000)


def held_factory(graphcut_factory, hold):
    """A segmenter factory whose every prediction first calls ``hold()`` (the test lets it go)."""
    def factory(**settings):
        seg = graphcut_factory()
        predict = seg.predict

        def held(clicks, prev_mask=None):
            hold()
            return predict(clicks, prev_mask=prev_mask)

        seg.predict = held
        return seg

    return factory


def messages_since(n: int) -> list[str]:
    return [str(r.message) for r in notification_manager.records[n:]]


def canvas_click(viewer, position, button=1) -> None:
    """A click as napari's canvas dispatches it: the viewer's callbacks, then the active
    layer's."""
    for kind, dispatch in (("mouse_press", mouse_press_callbacks),
                           ("mouse_release", mouse_release_callbacks)):
        event = ReadOnlyWrapper(FakeMouseEvent(position, kind, button), exceptions=("handled",))
        dispatch(viewer, event)
        layer = viewer.layers.selection.active
        if layer is not None:
            dispatch(layer, event)


def canvas_key(viewer, key: str) -> None:
    """A key as napari's canvas dispatches it: active layer's keymap, then the viewer's."""
    handler = viewer.window._qt_viewer._key_map_handler
    handler.press_key(key)
    handler.release_key(key)


# -- 1. threads ----------------------------------------------------------------------------------
def test_default_threads_leave_room_on_a_small_machine() -> None:
    from napari_risnet.threads import default_threads

    assert [default_threads(n) for n in (1, 2, 4, 6, 8, 32)] == [1, 1, 1, 3, 4, 4]


def test_threads_setting_reaches_torch_before_the_prediction(risnet_widget, qtbot,
                                                             graphcut_factory) -> None:
    import torch

    from napari_risnet.threads import default_threads

    seen: list[int] = []
    built: list[dict] = []

    def factory(**settings):
        built.append(settings)
        seg = graphcut_factory()
        predict = seg.predict

        def recording(clicks, prev_mask=None):
            seen.append(torch.get_num_threads())
            return predict(clicks, prev_mask=prev_mask)

        seg.predict = recording
        return seg

    before = torch.get_num_threads()
    try:
        viewer, widget = risnet_widget(make_disc_image(SHAPE, A, 10))
        assert widget.threads_spin.value() == default_threads()
        widget.segmenter_factory = factory
        widget._on_settings_changed()
        widget.threads_spin.setValue(2)
        user_click(widget, qtbot, A)
        assert seen == [2] and built[-1]["threads"] == 2
        widget.threads_spin.setValue(1)  # applies from the next click, no model reload
        user_click(widget, qtbot, (5, 5), button=2)
        assert seen[-1] == 1 and len(built) == 1
    finally:
        torch.set_num_threads(before)


def test_finetune_widget_passes_steps_and_threads(risnet_widget, qtbot, monkeypatch,
                                                  tmp_path) -> None:
    from napari_risnet._napari.finetune_widget import FinetuneWidget

    calls: list = []
    _fake_finetune_module(monkeypatch, calls)
    viewer, widget = risnet_widget(make_disc_image(SHAPE, A, 10))
    widget.annotation.labels.data[20:40, 20:40] = 1
    ft = FinetuneWidget(viewer)
    ft.labels_combo.setCurrentText("img RIS-Net labels")
    ft.out_edit.setText(str(tmp_path / "ft.pt"))
    ft.steps_spin.setValue(5)
    ft.threads_spin.setValue(2)
    ft.run_button.click()
    qtbot.waitUntil(lambda: not ft.busy, timeout=20000)
    assert calls[0]["steps_per_epoch"] == 5 and calls[0]["threads"] == 2


# -- 2. the correction trap ------------------------------------------------------------------
def test_click_on_a_committed_object_then_far_away_does_not_merge(risnet_widget, qtbot) -> None:
    """Issue 26's scenario: commit A; click A; click a far object B; c -> B is a new object."""
    from napari_risnet._napari.widget import CORRECTION_VALUE

    viewer, widget = risnet_widget(two_discs())
    commit_a(widget, qtbot)
    labels = widget.annotation.labels.data
    area_a = int((labels == 1).sum())
    user_click(widget, qtbot, A)  # on committed A, nothing in progress: correction mode
    assert widget.object_spin.value() == 1
    assert "CORRECTING OBJECT 1" in widget.status_label.text()
    assert (widget.annotation.preview.data == CORRECTION_VALUE).sum() == (labels == 1).sum()
    n = len(notification_manager.records)
    user_click(widget, qtbot, B)  # far from A: a new object, and it says so
    assert any("starts a new object" in m for m in messages_since(n))
    assert widget.object_spin.value() == 0 and widget.session.n_current_clicks == 1
    assert "CORRECTING" not in widget.status_label.text()
    assert not (widget.annotation.preview.data == CORRECTION_VALUE).any()
    press_key(widget, "c")
    assert abs(int((labels == 1).sum()) - area_a) < 0.2 * area_a  # A did not swallow B
    assert iou(labels == 2, disc_mask(SHAPE, B, 10)) > 0.85
    assert sorted(widget.session.objects) == [1, 2]


def test_correction_mode_is_ended_by_c_and_far_negative_clicks_are_refused(risnet_widget,
                                                                           qtbot) -> None:
    viewer, widget = risnet_widget(two_discs())
    commit_a(widget, qtbot)
    user_click(widget, qtbot, A)
    n = len(notification_manager.records)
    user_click(widget, qtbot, B, button=2)  # a far negative click neither corrects nor starts
    assert any("does not correct it" in m for m in messages_since(n))
    assert widget.object_spin.value() == 1 and widget.session.n_current_clicks == 0
    user_click(widget, qtbot, (A[0], A[1] + 12), button=2)  # near A: corrects A
    assert widget.session.objects[1].slices[()].clicks[-1].positive is False
    n = len(notification_manager.records)
    press_key(widget, "c")  # ends the correction: never "nothing to commit"
    assert not any("nothing to commit" in m for m in messages_since(n))
    assert widget.object_spin.value() == 0
    assert "object 1 corrected" in widget.status_label.text()


def test_a_click_on_another_committed_object_switches_the_correction(risnet_widget,
                                                                      qtbot) -> None:
    viewer, widget = risnet_widget(two_discs())
    commit_a(widget, qtbot)
    user_click(widget, qtbot, B)
    press_key(widget, "c")
    user_click(widget, qtbot, A)
    assert widget.object_spin.value() == 1
    user_click(widget, qtbot, B)
    assert widget.object_spin.value() == 2
    assert len(widget.session.objects[1].slices[()].clicks) == 3  # B's click did not join A


# -- 3. stale status, blocking commit, plurals, nothing to undo --------------------------------
def test_commit_before_the_preview_arrives(risnet_widget, qtbot, graphcut_factory) -> None:
    release = threading.Event()

    slow_factory = held_factory(graphcut_factory, lambda: release.wait(10))
    viewer, widget = risnet_widget(two_discs())
    widget.segmenter_factory = slow_factory
    widget._on_settings_changed()
    widget.add_click_at(A)
    widget.add_click_at(B, positive=False)
    assert "predicting" in widget.status_label.text()
    tic = time.perf_counter()
    press_key(widget, "c")  # the preview has not arrived: the window must not wait for it
    assert time.perf_counter() - tic < 5  # the prediction is held for 10 s: waiting shows
    assert "committing" in widget.status_label.text()
    widget.add_click_at(B)  # given while committing: the next object, not part of this one
    press_key(widget, "c")
    release.set()
    wait(widget, qtbot)
    qtbot.waitUntil(lambda: not widget.busy and not widget._deferred, timeout=10000)
    wait(widget, qtbot)
    labels = widget.annotation.labels.data
    assert iou(labels == 1, disc_mask(SHAPE, A, 10)) > 0.85
    assert iou(labels == 2, disc_mask(SHAPE, B, 10)) > 0.85
    text = widget.status_label.text()
    assert "predicting" not in text and "loading" not in text and "committing" not in text
    assert "object 2 committed" in text and "2 objects" in text


def test_plurals_and_nothing_to_undo(risnet_widget, qtbot) -> None:
    viewer, widget = risnet_widget(two_discs())
    n = len(notification_manager.records)
    press_key(widget, "u")
    press_key(widget, "Shift-U")
    said = messages_since(n)
    assert any("nothing to undo" in m for m in said)
    assert any("nothing to redo" in m for m in said)
    commit_a(widget, qtbot)
    text = widget.status_label.text()
    assert "1 object " in text and "0 clicks" in text and "1 objects" not in text


# -- 5. silent no-ops ----------------------------------------------------------------------------
def test_clicks_and_keys_with_a_shapes_layer_active_say_what_to_do(risnet_widget, qtbot
                                                                   ) -> None:
    viewer, widget = risnet_widget(two_discs())
    shapes = viewer.add_shapes(name="my shapes")
    viewer.layers.selection.active = shapes
    shapes.mode = "pan_zoom"
    n = len(notification_manager.records)
    canvas_click(viewer, A)
    wait(widget, qtbot)
    said = messages_since(n)
    assert any("my shapes" in m and "img RIS-Net clicks" in m for m in said), said
    assert widget.session.n_current_clicks == 0
    n = len(notification_manager.records)
    canvas_key(viewer, "c")
    assert any("the c key" in m and "img RIS-Net clicks" in m for m in messages_since(n))
    # drawing on the shapes layer is the user's business: no hint
    shapes.mode = "add_rectangle"
    n = len(notification_manager.records)
    canvas_click(viewer, A)
    assert not any("RIS-Net" in m for m in messages_since(n))
    # with our clicks layer active the same click and key work
    viewer.layers.selection.active = widget.annotation.points
    canvas_click(viewer, A)
    wait(widget, qtbot)
    assert widget.session.n_current_clicks == 1
    canvas_key(viewer, "c")
    wait(widget, qtbot)
    assert widget.session.objects
    # and with the image active, keys it has no binding for still answer
    viewer.layers.selection.active = viewer.layers["img"]
    canvas_key(viewer, "u")
    wait(widget, qtbot)
    assert not widget.session.objects


# -- 6. stacks -----------------------------------------------------------------------------------
def make_stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    stack = rng.normal(30, 8, (12, 64, 64))
    for z in range(1, 11):
        stack[z][disc_mask((64, 64), (32, 30), 12)] += 170
    return np.clip(stack, 0, 255).astype(np.uint8)


def test_propagation_shows_progress_and_cancels_in_the_widget(risnet_widget, qtbot,
                                                              graphcut_factory) -> None:
    gate = threading.Semaphore(0)

    gated_factory = held_factory(graphcut_factory, lambda: gate.acquire(timeout=10))
    viewer, widget = risnet_widget(make_stack())
    widget.segmenter_factory = gated_factory
    widget._on_settings_changed()
    gate.release()
    user_click(widget, qtbot, (5, 32, 30))
    gate.release()  # the commit's
    press_key(widget, "c")
    press_key(widget, "p")
    assert not widget.progress_bar.isHidden() and widget.stop_button.isEnabled()
    assert "propagating object 1" in widget.progress_label.text()
    for _ in range(2):
        gate.release()
    qtbot.waitUntil(lambda: "/" in widget.progress_label.text(), timeout=10000)
    widget.stop_button.click()  # Cancel, in the widget
    assert "cancelling" in widget.progress_label.text()
    for _ in range(20):
        gate.release()
    wait(widget, qtbot)
    assert widget.progress_bar.isHidden() and not widget.stop_button.isEnabled()
    filled = np.flatnonzero((widget.annotation.labels.data == 1).any(axis=(1, 2)))
    assert 1 < len(filled) < 10  # stopped early, the slices done are kept
    assert "cancelled" in widget.status_label.text()


def test_propagation_redraws_a_bounded_number_of_times(risnet_widget, qtbot,
                                                       monkeypatch) -> None:
    """Each redraw of a widget composes the window in OpenGL: while propagating, the progress
    display changes at the first report, then at most every PROGRESS_INTERVAL_S, and at the
    end; the labels and the preview are redrawn once, after the job, not per slice."""
    viewer, widget = risnet_widget(make_stack())
    user_click(widget, qtbot, (5, 32, 30))
    press_key(widget, "c")
    wait(widget, qtbot)
    monkeypatch.setattr(type(widget), "PROGRESS_INTERVAL_S", 1e9)
    reports, shown = [], []
    widget._relay.progressed.connect(lambda *a: reports.append(a))
    set_value = widget.progress_bar.setValue
    monkeypatch.setattr(widget.progress_bar, "setValue",
                        lambda v: (shown.append(v), set_value(v)))
    refreshes = {"labels": 0, "preview": 0}
    for name in refreshes:
        layer = getattr(widget.annotation, name)
        inner = layer.refresh

        def counted(*args, name=name, inner=inner, **kwargs):
            refreshes[name] += 1
            return inner(*args, **kwargs)
        monkeypatch.setattr(layer, "refresh", counted)
    press_key(widget, "p")
    wait(widget, qtbot)
    qtbot.waitUntil(lambda: "propagated" in widget.status_label.text(), timeout=10000)
    filled = np.flatnonzero((widget.annotation.labels.data == 1).any(axis=(1, 2)))
    assert len(filled) >= 8  # it did propagate
    assert len(reports) >= 8
    total = reports[-1][1]
    assert shown[0] == reports[0][0] and set(shown[1:]) == {total}  # first, then complete
    assert len(shown) <= 3 < len(reports)
    assert refreshes == {"labels": 1, "preview": 1}


def test_only_long_jobs_are_listed_as_napari_tasks(risnet_widget, qtbot) -> None:
    """napari keeps every task it lists for good (closing asks while one runs): clicks and
    commits run unlisted, a propagation is listed."""
    viewer, widget = risnet_widget(make_stack())
    tasks = viewer.window._task_status_manager._tasks
    user_click(widget, qtbot, (5, 32, 30))
    user_click(widget, qtbot, (5, 30, 28))
    press_key(widget, "c")
    wait(widget, qtbot)
    assert len(tasks) == 0
    press_key(widget, "p")
    wait(widget, qtbot)
    assert len(tasks) == 1


def test_freed_memory_goes_back_once_per_interval(risnet_widget, qtbot, monkeypatch) -> None:
    """Results shown in a burst lead to one malloc_trim a moment later, not one each."""
    import napari_risnet._napari.widget_display as display

    trims = []
    monkeypatch.setattr(display, "trim_freed_memory", lambda: trims.append(1) or True)
    viewer, widget = risnet_widget(two_discs())
    monkeypatch.setattr(type(widget), "TRIM_INTERVAL_MS", 200)
    user_click(widget, qtbot, A)
    qtbot.waitUntil(lambda: bool(trims) and not widget._trim_timer.isActive(), timeout=5000)
    before = len(trims)
    for _ in range(3):  # three results shown within one interval
        widget._refresh()
    qtbot.waitUntil(lambda: len(trims) > before, timeout=5000)
    qtbot.wait(500)
    assert len(trims) == before + 1


def test_derived_clicks_look_different_and_erase_says_what_it_removed(risnet_widget, qtbot
                                                                       ) -> None:
    from napari_risnet._napari.layers import DERIVED_FACE

    viewer, widget = risnet_widget(make_stack())
    viewer.dims.set_current_step(0, 5)
    user_click(widget, qtbot, (5, 32, 30))
    press_key(widget, "c")
    press_key(widget, "p")
    wait(widget, qtbot)
    points = widget.annotation.points
    derived = np.asarray(points.features["derived"], bool)
    assert derived.any() and not derived.all()
    np.testing.assert_allclose(points.face_color[derived], [DERIVED_FACE] * derived.sum())
    assert (points.size[derived] < points.size[~derived].min()).all()
    assert (points.face_color[~derived][:, 3] > 0).all()
    # e on slice 3: slices 2 and 1 were propagated through it and go too, and it says so
    user_click(widget, qtbot, (5, 32, 30))  # pick object 1 for correction
    viewer.dims.set_current_step(0, 3)
    n = len(notification_manager.records)
    press_key(widget, "e")
    said = " ".join(messages_since(n))
    assert "2 more slices propagated through it" in said, said
    labels = widget.annotation.labels.data
    assert not (labels[1:4] == 1).any() and (labels[4] == 1).any()


# -- 8. view -------------------------------------------------------------------------------------
def test_image_fits_the_canvas_after_docking(make_napari_viewer, qtbot, graphcut_factory
                                             ) -> None:
    from napari_risnet._napari.widget import RISNetWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(900, 600)
    viewer.add_image(np.zeros((256, 256), np.uint8), name="img")
    qtbot.wait(50)
    widget = RISNetWidget(viewer, segmenter_factory=graphcut_factory)
    viewer.window.add_dock_widget(widget, name="RIS-Net", area="right")
    sizes = [tuple(viewer.canvas.size)]

    def settled() -> bool:  # the canvas keeps its size for a while
        qtbot.wait(100)
        sizes.append(tuple(viewer.canvas.size))
        return len(sizes) > 4 and len(set(sizes[-4:])) == 1

    qtbot.waitUntil(settled, timeout=5000)
    qtbot.wait(50)
    zoom = viewer.camera.zoom
    viewer.reset_view()  # what Home does
    assert viewer.camera.zoom == pytest.approx(zoom, rel=0.02)


# -- 4. fine-tune acceptance ---------------------------------------------------------------------
def _finetune_returning(monkeypatch, **result_fields):
    import sys
    import types
    from pathlib import Path

    def finetune(images, labels, out="ft.pt", progress=None, should_stop=None, **kwargs):
        fields = dict(noc_before=1.0, noc_after=3.0, n_train=6, n_val=1)
        fields.update(result_fields)
        return FinetuneResult(Path(out), **fields)

    module = types.ModuleType("napari_risnet.training.finetune")
    module.finetune = finetune
    monkeypatch.setitem(sys.modules, "napari_risnet.training.finetune", module)


def _run_finetune(viewer, qtbot, tmp_path):
    from napari_risnet._napari.finetune_widget import FinetuneWidget

    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft, name="Fine-tune")
    ft.labels_combo.setCurrentText("img RIS-Net labels")
    ft.out_edit.setText(str(tmp_path / "ft.pt"))
    ft.run_button.click()
    qtbot.waitUntil(lambda: not ft.busy, timeout=20000)
    return ft


def test_a_worse_finetune_is_offered_not_switched_in(risnet_widget, qtbot, monkeypatch,
                                                     tmp_path) -> None:
    """The issue's run: held-out NoC 1.00 -> 3.00 on 1 object of 7."""
    _finetune_returning(monkeypatch)
    viewer, widget = risnet_widget(two_discs())
    commit_a(widget, qtbot)
    ft = _run_finetune(viewer, qtbot, tmp_path)
    text = ft.result_label.text()
    assert widget._settings()["checkpoint"] == "default"  # not switched
    assert "MORE clicks" in text and "1.00" in text and "3.00" in text
    assert "on 1 held-out object:" in text and "rough estimate" in text
    assert not ft.use_button.isHidden() and not ft.keep_button.isHidden()
    ft.keep_button.click()
    assert widget._settings()["checkpoint"] == "default" and ft.use_button.isHidden()
    assert "kept the current model" in ft.result_label.text()
    ft.run_button.click()
    qtbot.waitUntil(lambda: not ft.busy, timeout=20000)
    ft.use_button.click()  # the user's explicit choice
    assert widget._settings()["checkpoint"] == str(tmp_path / "ft.pt")


def test_a_better_finetune_switches_in_and_a_cancelled_one_says_not_measured(
        risnet_widget, qtbot, monkeypatch, tmp_path) -> None:
    _finetune_returning(monkeypatch, noc_before=3.0, noc_after=2.0, n_val=8)
    viewer, widget = risnet_widget(two_discs())
    commit_a(widget, qtbot)
    ft = _run_finetune(viewer, qtbot, tmp_path)
    assert widget._settings()["checkpoint"] == str(tmp_path / "ft.pt")
    assert "rough" not in ft.result_label.text() and ft.use_button.isHidden()
    assert "8 held-out objects" in ft.result_label.text()

    widget.set_checkpoint("default")
    widget.model_combo.setCurrentIndex(0)
    _finetune_returning(monkeypatch, noc_before=3.0, noc_after=float("nan"), n_val=8,
                        cancelled=True, steps=4)
    ft.run_button.click()
    qtbot.waitUntil(lambda: not ft.busy, timeout=20000)
    text = ft.result_label.text()
    assert "inf" not in text and "nan" not in text and "not measured" in text
    assert widget._settings()["checkpoint"] == "default"
    assert not ft.use_button.isHidden()


# -- 7. command line -----------------------------------------------------------------------------
@pytest.fixture
def image_file(tmp_path):
    import tifffile

    path = tmp_path / "img.tif"
    tifffile.imwrite(path, make_disc_image(SHAPE, A, 10))
    return path


@pytest.fixture
def no_model(monkeypatch):
    """Checks must happen before the model is built (i.e. before predicting)."""
    import napari_risnet.cli.commands as cli

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the input was checked")

    monkeypatch.setattr(cli, "build_method", refuse)


@pytest.mark.parametrize("args, message", [
    (["--click", "30,30,-", "-o", "{tmp}/m.tif"], "at least one positive click"),
    (["--click", "30,30,+", "-o", "{tmp}/m.jpg"], "not a lossless mask format"),
    (["--click", "30,30,+", "-o", "{tmp}/nope/m.tif"], "does not exist"),
])
def test_segment_refuses_bad_input_before_predicting(image_file, tmp_path, capsys, no_model,
                                                     args, message) -> None:
    from napari_risnet.cli import main

    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["segment", str(image_file), *args]) != 0
    assert message in capsys.readouterr().err


def test_segment_says_a_folder_is_not_an_image(tmp_path, capsys, no_model) -> None:
    from napari_risnet.cli import main

    assert main(["segment", str(tmp_path), "--click", "3,3,+", "-o",
                 str(tmp_path / "m.tif")]) != 0
    assert "is a folder, not an image file" in capsys.readouterr().err


def test_every_model_command_takes_threads_and_demo_takes_napari_sample_names() -> None:
    from napari_risnet.cli import build_parser

    parser = build_parser()
    for argv in (["evaluate", "ds"], ["evaluate-stack", "ds"],
                 ["segment", "i.tif", "--click", "1,1,+"], ["replay", "p", "-o", "l.tif"],
                 ["train", "--config", "c.toml"],
                 ["finetune", "--images", "i", "--labels", "l", "--out", "o.pt"], ["demo"]):
        assert parser.parse_args([*argv, "--threads", "2"]).threads == 2
    assert parser.parse_args(["demo", "--sample", "nuclei_stack"]).sample == "nuclei_stack"
    assert parser.parse_args(["demo", "--sample", "stack"]).sample == "stack"  # old name
    with pytest.raises(SystemExit):
        parser.parse_args(["segment", "i.tif", "--click", "1,1,+", "--threads", "0"])


def test_run_demo_opens_the_napari_sample_name(make_napari_viewer, monkeypatch,
                                               graphcut_factory) -> None:
    import napari

    from napari_risnet._napari.demo import run_demo

    monkeypatch.setattr(napari, "Viewer", lambda **kw: make_napari_viewer(**kw))
    viewer = run_demo("nuclei_stack", block=False, segmenter_factory=graphcut_factory,
                      threads=2)
    assert viewer.layers[0].data.shape == (20, 128, 128)
