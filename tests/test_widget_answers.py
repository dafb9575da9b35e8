"""Every action answers (issue 10, item 4): clicks with another of our layers active, the add
tool, the first prediction's "loading the model", overlapping objects, a failed prediction."""
from __future__ import annotations

import threading

import numpy as np

from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.notifications import notification_manager

from napari_risnet.metrics import iou

from test_widget import (CENTER, RADIUS, SHAPE, FakeMouseEvent, disc_mask, make_disc_image,
                         press_key, user_click, wait)


def click_on(layer, widget, qtbot, position, button=1) -> None:
    """Press and release with ``layer`` active, through napari's callback dispatch."""
    press = FakeMouseEvent(position, "mouse_press", button)
    release = FakeMouseEvent(position, "mouse_release", button)
    mouse_press_callbacks(layer, ReadOnlyWrapper(press, exceptions=("handled",)))
    mouse_release_callbacks(layer, ReadOnlyWrapper(release, exceptions=("handled",)))
    wait(widget, qtbot)


def messages_since(n: int) -> list[str]:
    return [str(r.message) for r in notification_manager.records[n:]]


def test_click_with_the_image_or_labels_layer_active_works(risnet_widget, qtbot) -> None:
    viewer, widget = risnet_widget(make_disc_image(SHAPE, CENTER, RADIUS))
    image = viewer.layers["img"]
    viewer.layers.selection.active = image
    click_on(image, widget, qtbot, CENTER)
    assert widget.session.n_current_clicks == 1
    assert viewer.layers.selection.active is widget.annotation.points  # keys answer again
    assert iou(widget.annotation.preview.data > 0, disc_mask(SHAPE, CENTER, RADIUS)) > 0.9
    labels = widget.annotation.labels
    viewer.layers.selection.active = labels
    labels.mode = "paint"  # painting is the user's: no click
    click_on(labels, widget, qtbot, (10, 10))
    assert widget.session.n_current_clicks == 1
    labels.mode = "pan_zoom"
    click_on(labels, widget, qtbot, (5, 5), button=2)
    assert widget.session.n_current_clicks == 2


def test_add_mode_on_the_clicks_layer_is_turned_back_with_a_hint(risnet_widget, qtbot) -> None:
    viewer, widget = risnet_widget(make_disc_image(SHAPE, CENTER, RADIUS))
    n = len(notification_manager.records)
    widget.annotation.points.mode = "add"
    assert widget.annotation.points.mode == "pan_zoom"
    assert any("pan/zoom mode" in m and "right click" in m for m in messages_since(n))
    user_click(widget, qtbot, CENTER)
    assert widget.session.n_current_clicks == 1


def test_first_prediction_says_loading_the_model(risnet_widget, qtbot, graphcut_factory
                                                 ) -> None:
    release = threading.Event()

    def slow_factory(**settings):
        release.wait(10)  # loading weights takes seconds
        return graphcut_factory(**settings)

    viewer, widget = risnet_widget(make_disc_image(SHAPE, CENTER, RADIUS))
    widget.segmenter_factory = slow_factory
    widget._on_settings_changed()
    widget.add_click_at(CENTER)
    assert "loading the model" in widget.status_label.text()
    release.set()
    wait(widget, qtbot)
    assert "loading" not in widget.status_label.text()
    widget.add_click_at((10, 10), positive=False)
    assert "predicting" in widget.status_label.text()
    wait(widget, qtbot)


def test_overlapping_object_keep_or_replace(risnet_widget, qtbot, monkeypatch) -> None:
    from napari_risnet._napari.widget_layout import KEEP_EXISTING, REPLACE_EXISTING

    a, b = (30, 30), (66, 66)
    img = np.maximum(make_disc_image(SHAPE, a, 12), make_disc_image(SHAPE, b, 12, seed=1))
    viewer, widget = risnet_widget(img)
    user_click(widget, qtbot, a)
    user_click(widget, qtbot, b, button=2)
    press_key(widget, "c")  # object 1: disc a
    assert widget.overlap_combo.currentText() == KEEP_EXISTING

    def new_object_over_a() -> None:
        user_click(widget, qtbot, b)  # a new object (b is free) that also takes disc a
        user_click(widget, qtbot, a)

    new_object_over_a()
    press_key(widget, "c")
    labels = widget.annotation.labels.data
    assert iou(labels == 1, disc_mask(SHAPE, a, 12)) > 0.9  # kept
    assert iou(labels == 2, disc_mask(SHAPE, b, 12)) > 0.9
    widget.undo()
    widget.overlap_combo.setCurrentText(REPLACE_EXISTING)
    widget.object_spin.setValue(0)
    new_object_over_a()
    press_key(widget, "c")
    labels = widget.annotation.labels.data
    assert not (labels == 1).any() and (labels[a] == 2) and (labels[b] == 2)
    assert 2 in widget.annotation.overwrite_ids  # the project remembers it for replay

    # an object entirely under others: the message names the GUI choice, not overwrite=True
    def refuse(overwrite=False):
        raise ValueError("the object lies entirely under other objects (overwrite replaces "
                         "them)")

    widget.overlap_combo.setCurrentText(KEEP_EXISTING)
    user_click(widget, qtbot, (5, 5))
    monkeypatch.setattr(widget.session, "commit", refuse)
    n = len(notification_manager.records)
    press_key(widget, "c")
    said = " ".join(messages_since(n))
    assert REPLACE_EXISTING in said and "overwrite" not in said


def test_failed_prediction_keeps_the_clicks(risnet_widget, qtbot, graphcut_factory) -> None:
    def broken_factory(**settings):
        raise FileNotFoundError("checkpoint /nope.pt not found")

    viewer, widget = risnet_widget(make_disc_image(SHAPE, CENTER, RADIUS))
    widget.segmenter_factory = broken_factory
    widget._on_settings_changed()
    n = len(notification_manager.records)
    user_click(widget, qtbot, CENTER)
    assert any("clicks are kept" in m for m in messages_since(n))
    assert widget.session.n_current_clicks == 1 and len(widget.annotation.points.data) == 1
    press_key(widget, "c")  # commit fails the same way (in a worker), still nothing lost
    wait(widget, qtbot)
    assert widget.session.n_current_clicks == 1 and not widget.session.objects
    widget.segmenter_factory = graphcut_factory  # the user fixes the model: predicted again
    widget._on_settings_changed()
    wait(widget, qtbot)
    assert iou(widget.annotation.preview.data > 0, disc_mask(SHAPE, CENTER, RADIUS)) > 0.9
    press_key(widget, "c")
    assert widget.session.objects


def test_manifest_docked_widget_answers_clicks_on_the_real_layers(make_napari_viewer, qtbot,
                                                                  graphcut_factory) -> None:
    """Docked through the manifest the widget sees napari's proxies of the viewer and layers,
    while mouse callbacks receive the real layers: clicks must still be recognised."""
    viewer = make_napari_viewer()
    viewer.add_image(make_disc_image(SHAPE, CENTER, RADIUS), name="img")
    _, widget = viewer.window.add_plugin_dock_widget("napari-risnet",
                                                     "RIS-Net interactive segmentation")
    widget.segmenter_factory = graphcut_factory
    widget._on_settings_changed()
    n_layers = len(viewer.layers)
    click_on(viewer.layers["img RIS-Net clicks"], widget, qtbot, CENTER)  # the real layer
    assert widget.session.n_current_clicks == 1
    click_on(viewer.layers["img"], widget, qtbot, (5, 5), button=2)
    assert widget.session.n_current_clicks == 2
    widget.set_image_layer(viewer.layers["img"])  # again: the same annotation, no new layers
    assert len(viewer.layers) == n_layers and widget.session.n_current_clicks == 2
