"""The dock widgets, driven like a user (mouse callbacks, bound keys, buttons) under Xvfb,
with the GraphCutBaseline injected so no weights are needed."""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks
from napari.utils.key_bindings import KeyBinding
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.notifications import NotificationSeverity, notification_manager
from vispy.util.keys import CONTROL

from napari_risnet.metrics import iou

SHAPE, CENTER, RADIUS = (96, 96), (48, 40), 16
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshot.png"


def make_disc_image(shape=(96, 96), center=(48, 40), radius=16, seed=0) -> np.ndarray:
    """A bright disc on a dark, noisy background (uint8)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(30, 8, shape)
    img[disc_mask(shape, center, radius)] += 170
    return np.clip(img, 0, 255).astype(np.uint8)


def disc_mask(shape, center, radius) -> np.ndarray:
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    return (rr - center[0]) ** 2 + (cc - center[1]) ** 2 <= radius ** 2


class FakeMouseEvent:
    """The attributes napari's mouse events carry that the widget reads."""

    def __init__(self, position, type="mouse_press", button=1, modifiers=(), pos=(100, 100)):
        self.position = tuple(float(p) for p in position)
        self.type = type
        self.button = button
        self.modifiers = tuple(modifiers)
        self.pos = np.array(pos, float)
        self.handled = False
        self.is_dragging = False


def user_click(widget, qtbot, world_position, button=1, modifiers=()) -> None:
    """Press and release on the clicks layer through napari's own callback dispatch."""
    layer = widget.annotation.points
    press = FakeMouseEvent(world_position, "mouse_press", button, modifiers)
    release = FakeMouseEvent(world_position, "mouse_release", button, modifiers)
    mouse_press_callbacks(layer, ReadOnlyWrapper(press, exceptions=("handled",)))
    mouse_release_callbacks(layer, ReadOnlyWrapper(release, exceptions=("handled",)))
    wait(widget, qtbot)


def press_key(widget, key: str) -> None:
    """Run what the key is bound to on our clicks layer."""
    layer = widget.annotation.points
    layer.keymap[KeyBinding.from_str(key)](layer)


def wait(widget, qtbot) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=20000)


def errors_since(n: int) -> list[str]:
    return [str(r.message) for r in notification_manager.records[n:]
            if r.severity >= NotificationSeverity.WARNING]


def world(layer, data_coords):
    """Data -> world coordinates of a layer (what event.position holds)."""
    return tuple(layer.data_to_world(np.asarray(data_coords, float)))


def test_positive_click_fills_the_disc_with_scale_and_translate(risnet_widget, qtbot) -> None:
    viewer, widget = risnet_widget(make_disc_image(SHAPE, CENTER, RADIUS),
                                   scale=(0.5, 2.0), translate=(10, -5))
    image = viewer.layers["img"]
    user_click(widget, qtbot, world(image, CENTER))
    preview = widget.annotation.preview.data.astype(bool)
    assert iou(preview, disc_mask(SHAPE, CENTER, RADIUS)) > 0.9
    points = widget.annotation.points
    np.testing.assert_allclose(points.data, [CENTER], atol=1e-6)
    assert list(points.features["sign"]) == [1]
    assert "1 click on" in widget.status_label.text()  # not "1 clicks"
    assert widget.last_latency is not None
    np.testing.assert_allclose(widget.annotation.labels.scale, image.scale)


def test_bundled_risnet_model_segments_the_disc(make_napari_viewer, qtbot) -> None:
    """The same user click with the real default: the bundled RIS-Net weights, graph cut on."""
    from napari_risnet._napari.widget import RISNetWidget

    viewer = make_napari_viewer()
    viewer.add_image(make_disc_image(SHAPE, CENTER, RADIUS), name="img")
    widget = RISNetWidget(viewer)
    viewer.window.add_dock_widget(widget, name="RIS-Net")
    user_click(widget, qtbot, CENTER)
    preview = widget.annotation.preview.data.astype(bool)
    assert iou(preview, disc_mask(SHAPE, CENTER, RADIUS)) > 0.9
    press_key(widget, "c")
    wait(widget, qtbot)
    assert iou(widget.annotation.labels.data == 1, disc_mask(SHAPE, CENTER, RADIUS)) > 0.9
    # the project names the bundled model, so replay finds it after new weights ship
    from napari_risnet.annotation.project import Project
    from napari_risnet.inference.bundled import CURRENT

    model = Project(widget.annotation.project.folder).load().model
    assert model["checkpoint"] == "default" and model["bundled"] == CURRENT


def test_negative_click_removes_a_region(risnet_widget, qtbot) -> None:
    img = np.maximum(make_disc_image(SHAPE, (30, 30), 12),
                     make_disc_image(SHAPE, (66, 66), 12, seed=1))
    viewer, widget = risnet_widget(img)
    user_click(widget, qtbot, (30, 30))
    assert widget.annotation.preview.data[66, 66]  # same brightness: both discs at first
    user_click(widget, qtbot, (66, 66), button=2)  # right click = negative
    preview = widget.annotation.preview.data.astype(bool)
    assert not preview[66, 66] and preview[30, 30]
    assert iou(preview, disc_mask(SHAPE, (30, 30), 12)) > 0.9
    assert list(widget.annotation.points.features["sign"]) == [1, -1]
    press_key(widget, "u")  # undo the negative click
    assert widget.annotation.preview.data[66, 66]
    press_key(widget, "Shift-U")
    assert not widget.annotation.preview.data[66, 66]
    # Control-click is negative too; "n" makes plain left clicks negative
    press_key(widget, "n")
    assert widget.negative_mode


def test_commit_next_object_and_undo(risnet_widget, qtbot) -> None:
    img = np.maximum(make_disc_image(SHAPE, (30, 30), 12),
                     make_disc_image(SHAPE, (66, 66), 12, seed=1))
    viewer, widget = risnet_widget(img)
    labels = widget.annotation.labels
    empty = labels.data.copy()
    user_click(widget, qtbot, (30, 30))
    user_click(widget, qtbot, (66, 66), button=1, modifiers=(CONTROL,))  # as vispy sends it
    press_key(widget, "c")
    assert iou(labels.data == 1, disc_mask(SHAPE, (30, 30), 12)) > 0.9
    first = labels.data.copy()
    assert not widget.annotation.preview.data.any()
    assert list(widget.annotation.points.features["object_id"]) == [1, 1]
    user_click(widget, qtbot, (66, 66))
    press_key(widget, "Enter")
    assert iou(labels.data == 2, disc_mask(SHAPE, (66, 66), 12)) > 0.9
    np.testing.assert_array_equal(labels.data == 1, first == 1)  # object 1 untouched
    assert "2 objects" in widget.status_label.text()
    widget.undo_button.click()
    np.testing.assert_array_equal(labels.data, first)
    widget.undo_button.click()  # the click on the second object
    widget.undo_button.click()  # the first commit
    np.testing.assert_array_equal(labels.data, first * 0)
    widget.undo_button.click()
    widget.undo_button.click()
    np.testing.assert_array_equal(labels.data, empty)
    assert len(widget.annotation.points.data) == 0
    press_key(widget, "Shift-U")
    press_key(widget, "Escape")  # clear the current object
    assert widget.session.n_current_clicks == 0


def test_propagation_fills_the_neighbouring_slices(risnet_widget, qtbot) -> None:
    rng = np.random.default_rng(0)
    stack = rng.normal(30, 8, (12, 64, 64))
    for z in range(2, 10):
        stack[z][disc_mask((64, 64), (32, 30), 12)] += 170
    stack = np.clip(stack, 0, 255).astype(np.uint8)
    viewer, widget = risnet_widget(stack)
    viewer.dims.set_current_step(0, 5)
    user_click(widget, qtbot, (5, 32, 30))
    widget.propagate_button.click()
    wait(widget, qtbot)
    labels = widget.annotation.labels.data
    filled = sorted(np.flatnonzero((labels == 1).any(axis=(1, 2))))
    assert filled == list(range(2, 10))
    for z in filled:
        assert iou(labels[z] == 1, disc_mask((64, 64), (32, 30), 12)) > 0.9
    assert not widget.stop_button.isEnabled() and widget.propagate_button.isEnabled()
    widget.undo_button.click()
    assert sorted(np.flatnonzero((labels == 1).any(axis=(1, 2)))) == [5]


def test_corrections_on_a_stack_slice(risnet_widget, qtbot) -> None:
    rng = np.random.default_rng(0)
    stack = rng.normal(30, 8, (12, 64, 64))
    for z in range(2, 10):
        stack[z][disc_mask((64, 64), (32, 30), 12)] += 170
    stack = np.clip(stack, 0, 255).astype(np.uint8)
    viewer, widget = risnet_widget(stack)
    user_click(widget, qtbot, (5, 32, 30))
    press_key(widget, "c")
    press_key(widget, "p")
    wait(widget, qtbot)
    labels = widget.annotation.labels.data
    session = widget.session
    assert sorted(np.flatnonzero((labels == 1).any(axis=(1, 2)))) == list(range(2, 10))
    assert not session.objects[1].slices[(7,)].fixed
    # a click on the committed object corrects it on that slice and selects it
    user_click(widget, qtbot, (7, 30, 30))
    assert widget.object_spin.value() == 1 and session.n_current_clicks == 0
    assert session.objects[1].slices[(7,)].fixed
    calls = []
    original = session.propagate
    session.propagate = lambda *a, **k: calls.append(k["from_slice"]) or original(*a, **k)
    press_key(widget, "p")  # carries the correction from slice 7
    wait(widget, qtbot)
    assert calls == [(7,)]
    # e: the object does not reach the slice shown; p keeps it so
    viewer.dims.set_current_step(0, 9)
    press_key(widget, "e")
    assert not (labels[9] == 1).any() and session.objects[1].slices[(9,)].erased
    press_key(widget, "p")
    wait(widget, qtbot)
    assert calls[-1] is None and not (labels[9] == 1).any() and (labels[8] == 1).any()
    # Escape stops editing: the next click on the background starts a new object
    press_key(widget, "Escape")
    assert widget.object_spin.value() == 0
    user_click(widget, qtbot, (5, 5, 5))
    assert session.n_current_clicks == 1


@pytest.mark.parametrize("image, message", [
    (np.zeros((1, 1), np.float32), "too small"),
    (np.full((32, 32), np.nan, np.float32), "NaN"),
])
def test_malformed_images_notify_instead_of_crashing(risnet_widget, qtbot, image, message
                                                     ) -> None:
    viewer, widget = risnet_widget(image)
    n = len(notification_manager.records)
    user_click(widget, qtbot, (0, 0))
    assert any(message in m for m in errors_since(n))
    assert widget.session.n_current_clicks == 1  # the click is kept (issue 10): u undoes it
    user_click(widget, qtbot, (500, 500))  # outside the image: a warning, no crash
    assert any("outside" in m for m in errors_since(n))


def test_missing_model_is_a_notification(make_napari_viewer, qtbot) -> None:
    from napari_risnet._napari.widget import RISNetWidget

    def factory(**settings):
        raise FileNotFoundError("no bundled default model")

    viewer = make_napari_viewer()
    viewer.add_image(make_disc_image(SHAPE, CENTER, RADIUS), name="img")
    widget = RISNetWidget(viewer, segmenter_factory=factory)
    n = len(notification_manager.records)
    user_click(widget, qtbot, CENTER)
    assert any("no bundled default model" in m for m in errors_since(n))


def test_rgb_uint16_and_float_images(risnet_widget, qtbot) -> None:
    grey = make_disc_image(SHAPE, CENTER, RADIUS)
    rgb = np.stack([grey, grey // 2, grey], axis=-1)
    viewer, widget = risnet_widget(rgb, rgb=True)
    assert widget.session.rgb and widget.annotation.labels.data.shape == SHAPE
    user_click(widget, qtbot, CENTER)
    assert iou(widget.annotation.preview.data.astype(bool),
               disc_mask(SHAPE, CENTER, RADIUS)) > 0.9
    for data in (grey.astype(np.uint16) * 200, grey.astype(np.float32) / 7.0):
        layer = viewer.add_image(data, name=f"img {data.dtype}")
        widget.set_image_layer(layer)
        user_click(widget, qtbot, CENTER)
        assert iou(widget.annotation.preview.data.astype(bool),
                   disc_mask(SHAPE, CENTER, RADIUS)) > 0.9


def test_points_csv_round_trip_recomputes_the_labels(risnet_widget, qtbot, tmp_path) -> None:
    img = np.maximum(make_disc_image(SHAPE, (30, 30), 12),
                     make_disc_image(SHAPE, (66, 66), 12, seed=1))
    viewer, widget = risnet_widget(img)
    user_click(widget, qtbot, (30, 30))
    user_click(widget, qtbot, (66, 66), button=2)
    widget.commit_button.click()
    user_click(widget, qtbot, (66, 66))
    widget.commit_button.click()
    expected = widget.annotation.labels.data.copy()
    path = widget.annotation.points.save(str(tmp_path / "clicks.csv"))
    assert path
    widget.annotation.labels.data[:] = 0
    loaded = viewer.open(str(tmp_path / "clicks.csv"), layer_type="points", plugin="napari")[0]
    assert set(loaded.features.columns) >= {"object_id", "slice", "sign"}
    widget.recompute_from_points(loaded)
    wait(widget, qtbot)
    np.testing.assert_array_equal(widget.annotation.labels.data, expected)


def test_screenshot_shows_the_labels(risnet_widget, qtbot, tmp_path) -> None:
    from skimage.io import imsave

    viewer, widget = risnet_widget(make_disc_image(SHAPE, CENTER, RADIUS), show=True)
    user_click(widget, qtbot, CENTER)
    widget.commit_button.click()
    labels = widget.annotation.labels
    labels.opacity = 1.0
    widget.annotation.points.visible = False
    shot = viewer.screenshot(canvas_only=True, flash=False)
    imsave(tmp_path / "screenshot.png", shot, check_contrast=False)
    window = viewer.screenshot(canvas_only=False, flash=False)  # canvas + docked widget
    assert window.shape[1] > shot.shape[1]
    if os.environ.get("RISNET_SAVE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        imsave(SCREENSHOT, shot, check_contrast=False)
        imsave(SCREENSHOT.with_name("screenshot_window.png"), window, check_contrast=False)
    color = np.round(np.asarray(labels.get_color(1))[:3] * 255)
    close = np.abs(shot[..., :3].astype(int) - color).max(axis=-1) <= 12
    assert close.mean() > 0.01, f"label colour {color} not found in the screenshot"


def _fake_finetune_module(monkeypatch, calls: list, wait_for_stop: bool = False):
    from dataclasses import dataclass

    @dataclass
    class FinetuneResult:
        checkpoint: Path
        noc_before: float
        noc_after: float
        cancelled: bool = False

    def finetune(images, labels, base="default", out="finetuned.pt", epochs=5,
                 val_fraction=0.2, device="auto", progress=None, should_stop=None, **kwargs):
        import time
        calls.append({"images": images, "labels": labels, "epochs": epochs, "out": out,
                      **kwargs})
        cancelled = False
        for epoch in range(epochs):
            if progress is not None:
                progress(epoch + 1, epochs, f"epoch {epoch + 1}")
            if should_stop is not None and should_stop():
                cancelled = True
                break
            if wait_for_stop:
                deadline = time.time() + 10
                while not should_stop() and time.time() < deadline:
                    time.sleep(0.01)
        return FinetuneResult(Path(out), 6.5, 3.25, cancelled)

    training = types.ModuleType("napari_risnet.training")
    training.__path__ = []
    module = types.ModuleType("napari_risnet.training.finetune")
    module.finetune = finetune
    module.FinetuneResult = FinetuneResult
    monkeypatch.setitem(sys.modules, "napari_risnet.training", training)
    monkeypatch.setitem(sys.modules, "napari_risnet.training.finetune", module)


def test_finetune_widget_switches_the_predictor(risnet_widget, qtbot, monkeypatch,
                                                tmp_path) -> None:
    from napari_risnet._napari.finetune_widget import FinetuneWidget

    calls: list = []
    _fake_finetune_module(monkeypatch, calls)
    viewer, widget = risnet_widget(make_disc_image(SHAPE, CENTER, RADIUS))
    user_click(widget, qtbot, CENTER)
    widget.commit_button.click()
    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft, name="Fine-tune")
    assert ft.labels_combo.currentText() == "img RIS-Net labels"
    ft.epochs_spin.setValue(3)
    ft.out_edit.setText(str(tmp_path / "ft.pt"))
    ft.run_button.click()
    qtbot.waitUntil(lambda: not ft.busy, timeout=20000)
    assert calls and calls[0]["epochs"] == 3 and calls[0]["labels"][0].max() == 1
    assert "6.50" in ft.result_label.text() and "3.25" in ft.result_label.text()
    assert "NoC@85" in ft.result_label.text() and "NoC@90" not in ft.result_label.text()
    assert widget.checkpoint_edit.text() == str(tmp_path / "ft.pt")
    assert widget._settings()["checkpoint"] == str(tmp_path / "ft.pt")


def test_finetune_widget_switches_a_manifest_docked_widget(make_napari_viewer, qtbot,
                                                           monkeypatch, tmp_path) -> None:
    """Both widgets docked as napari docks them (each gets its own viewer proxy): the
    fine-tuned checkpoint still reaches the main widget at once; progress shows from the start;
    the labels list does not offer our preview layer."""
    from napari_risnet._napari.widget_layout import CHECKPOINT_MODEL

    calls: list = []
    _fake_finetune_module(monkeypatch, calls)
    viewer = make_napari_viewer()
    viewer.add_image(make_disc_image(SHAPE, CENTER, RADIUS), name="img")
    _, main = viewer.window.add_plugin_dock_widget("napari-risnet",
                                                   "RIS-Net interactive segmentation")
    _, ft = viewer.window.add_plugin_dock_widget("napari-risnet", "Fine-tune RIS-Net")
    assert main.viewer is not ft.viewer  # two proxies: they cannot find each other through it
    labels_choices = [ft.labels_combo.itemText(i) for i in range(ft.labels_combo.count())]
    assert "img RIS-Net labels" in labels_choices
    assert "img RIS-Net object" not in labels_choices
    main.annotation.labels.data[40:50, 30:40] = 1
    ft.out_edit.setText(str(tmp_path / "m.pt"))
    ft.run_button.click()
    assert not ft.progress_bar.isHidden() and ft.status_label.text()  # before any step
    qtbot.waitUntil(lambda: not ft.busy, timeout=20000)
    assert calls
    assert main.model_combo.currentText() == CHECKPOINT_MODEL
    assert main._settings()["checkpoint"] == str(tmp_path / "m.pt")
    assert "now used" in ft.result_label.text()


def test_finetune_can_be_cancelled_and_reports_bad_input(make_napari_viewer, qtbot,
                                                         monkeypatch) -> None:
    from napari_risnet._napari.finetune_widget import FinetuneWidget
    from napari_risnet._napari.plugin_state import pending_checkpoint
    from napari_risnet._napari.widget import RISNetWidget

    calls: list = []
    _fake_finetune_module(monkeypatch, calls, wait_for_stop=True)
    viewer = make_napari_viewer()
    ft = FinetuneWidget(viewer)
    n = len(notification_manager.records)
    ft.run_button.click()  # no layers at all
    assert any("pick an image" in m for m in errors_since(n))
    viewer.add_image(make_disc_image(SHAPE, CENTER, RADIUS), name="img")
    viewer.add_labels(disc_mask(SHAPE, CENTER, RADIUS).astype(np.int32), name="gt")
    ft.labels_combo.setCurrentText("gt")
    ft.run_button.click()
    qtbot.waitUntil(lambda: bool(calls), timeout=5000)
    ft.cancel_button.click()
    qtbot.waitUntil(lambda: not ft.busy, timeout=20000)
    assert ft.result.cancelled and "cancelled" in ft.result_label.text()
    assert "inf" not in ft.result_label.text()
    # a cancelled model is never switched in unasked: the user chooses
    assert pending_checkpoint(viewer) is None and not ft.use_button.isHidden()
    ft.use_button.click()
    # no RIS-Net widget docked: the checkpoint waits for the next one, which takes it
    waiting = pending_checkpoint(viewer)
    assert waiting is not None
    widget = RISNetWidget(viewer)
    assert widget._settings()["checkpoint"] == str(waiting)
    assert pending_checkpoint(viewer) is None


def test_run_demo_docks_the_widget(make_napari_viewer, monkeypatch, graphcut_factory) -> None:
    import napari

    from napari_risnet._napari.demo import run_demo
    from napari_risnet._napari.widget import RISNetWidget

    monkeypatch.setattr(napari, "Viewer", lambda **kw: make_napari_viewer(**kw))
    viewer = run_demo("stack", block=False, segmenter_factory=graphcut_factory)
    assert viewer.layers[0].data.shape == (20, 128, 128)
    assert any(isinstance(w, RISNetWidget) for w in viewer.window.dock_widgets.values())
    with pytest.raises(ValueError, match="unknown sample"):
        run_demo("nope", block=False)
