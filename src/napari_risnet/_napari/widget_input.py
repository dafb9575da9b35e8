"""The dock widget's input side: mouse clicks and keys on the annotation's layers -> clicks and
commands. A press and release without a drag is a click (left = positive, right or Control /
Command = negative, ``n`` flips the left button's sign); a drag pans as usual. The keys are bound
on the clicks layer only, so they do not shadow napari's own shortcuts elsewhere.

Mixed into ``RISNetWidget`` (``_widget.py``), whose attributes it uses: ``viewer``,
``annotation``, ``_annotations``, ``negative_mode``, ``negative_check``, ``_propagating``,
``set_image_layer``, ``_correction_target`` / ``_correct`` (``_widget_stack.py``),
``_refresh_points``, ``_schedule_prediction``, ``_update_status`` and the commands in ``KEYS``.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Generator

import numpy as np
from napari.utils.notifications import show_info, show_warning

from napari_risnet._napari.layers import unwrap_proxy, world_to_click
from napari_risnet.clicks import Click

if TYPE_CHECKING:
    from napari_risnet._napari.image_annotation import ImageAnnotation

#: Canvas pixels the mouse may move between press and release and still count as a click.
CLICK_TOLERANCE_PX = 4.0
KEYS = {"commit": ("c", "Enter"), "undo": ("u",), "redo": ("Shift-U",),
        "clear": ("Escape",), "toggle_sign": ("n",), "propagate": ("p",),
        "erase_slice": ("e",)}



def _follow_drag(event: Any) -> Generator[None, None, bool]:
    """Follow a mouse press to its release (napari's drag-callback protocol: one ``yield`` per
    event); True when the mouse moved more than ``CLICK_TOLERANCE_PX``, i.e. a drag, not a
    click."""
    press_pos = np.array(getattr(event, "pos", (0, 0)), dtype=float)
    dragged = False
    yield
    while event.type == "mouse_move":
        pos = getattr(event, "pos", None)
        if pos is not None and np.hypot(*(np.asarray(pos, float) - press_pos)) \
                > CLICK_TOLERANCE_PX:
            dragged = True
        yield
    return dragged

class ClickInput:
    """Mouse and key input for the RIS-Net dock widget (see the module doc)."""

    def _bind_input(self, image: Any, labels: Any, preview: Any, points: Any) -> None:
        """Clicks work with any of the annotation's layers active (in pan / zoom mode); the
        clicks layer then becomes active again, so the keys answer."""
        for target in (image, labels, preview, points):
            target.mouse_drag_callbacks.append(self._on_mouse_drag)
        points.events.mode.connect(self._on_points_mode)
        for action, keys in KEYS.items():
            for key in keys:
                points.bind_key(key, self._key_handler(action), overwrite=True)

    def _key_handler(self, action: str) -> Callable[[Any], None]:
        ref = weakref.ref(self)

        def handler(layer: Any) -> None:
            widget = ref()
            if widget is not None:
                widget._when_ready(widget._key_action(action))
        handler.__name__ = f"risnet_{action}"
        handler.__doc__ = f"RIS-Net: {action.replace('_', ' ')}"
        return handler

    def _key_action(self, action: str) -> Callable[[], Any]:
        return {"commit": self.commit, "undo": self.undo, "redo": self.redo,
                "clear": self.clear, "toggle_sign": self.toggle_sign,
                "propagate": self.propagate, "erase_slice": self.erase_slice}[action]

    def _bind_viewer_hints(self) -> None:
        """With another layer active (a Shapes layer, an image not being annotated) our clicks
        and keys cannot answer: say what to do instead of doing nothing. The keys are bound on
        the viewer, which napari asks only when the active layer has no binding of its own."""
        viewer = unwrap_proxy(self.viewer)
        ref = weakref.ref(self)

        def hint_on_click(viewer: Any, event: Any):  # holds the widget weakly
            widget = ref()
            if widget is not None:
                yield from widget._hint_on_click(viewer, event)

        viewer.mouse_drag_callbacks.append(hint_on_click)
        for action, keys in KEYS.items():
            for key in keys:
                def hint(viewer: Any, key: str = key, action: str = action) -> None:
                    widget = ref()
                    if widget is not None and not widget._hint(f"the {key} key"):
                        # another of our layers is active (the image, the labels): the key
                        # reached the viewer because that layer has no binding of its own
                        widget._when_ready(widget._key_action(action))
                hint.__doc__ = f"RIS-Net: {action.replace('_', ' ')} (hint)"
                try:
                    viewer.bind_key(key, hint, overwrite=True)
                except (TypeError, ValueError, AttributeError):
                    pass  # a viewer without its own keymap: the layer bindings still work

    def _hint(self, what: str) -> bool:
        """Tell the user why ``what`` did nothing; False when one of our layers is active."""
        try:
            active = unwrap_proxy(self.viewer.layers.selection.active)
        except RuntimeError:  # the viewer closed
            return False
        if active is not None and self._annotation_of(active) is not None:
            return False
        ann = self.annotation
        if ann is None:
            show_info(f"RIS-Net: {what} does nothing yet: add an image layer and pick it in "
                      f"the RIS-Net widget's image box")
            return True
        if active is None:
            where = "no layer is selected"
        else:
            where = f"the selected layer is {active.name!r} ({type(active).__name__})"
        show_info(f"RIS-Net: {what} did nothing because {where}. Select "
                  f"{ann.points.name!r} (or {ann.image.name!r}) in the layer list to click "
                  f"objects and use the keys; or pick another image in the widget's image box")
        return True

    def _hint_on_click(self, viewer: Any, event: Any):
        """A viewer mouse callback: a click (no drag) in pan / zoom mode with another layer
        active gets a hint (a click that draws on that layer is the user's own business)."""
        if event.type != "mouse_press" or event.button not in (1, 2):
            return
        try:
            active = self.viewer.layers.selection.active
        except RuntimeError:  # the widget or viewer is closing
            return
        if active is not None and (self._annotation_of(active) is not None
                                   or getattr(active, "mode", "pan_zoom") != "pan_zoom"):
            return
        dragged = yield from _follow_drag(event)
        if not dragged:
            self._hint("the click")

    def _annotation_of(self, layer: Any) -> "ImageAnnotation | None":
        layer = unwrap_proxy(layer)
        for ann in self._annotations.values():
            if layer is ann.image or layer is ann.points or layer is ann.labels \
                    or layer is ann.preview:
                return ann
        return None

    def _on_points_mode(self, event: Any) -> None:
        """The clicks layer stays in pan / zoom mode: napari's add / select tools would make
        points that are not clicks (a white point that never predicts)."""
        layer = event.source
        if layer.mode == "pan_zoom":
            return
        mode = layer.mode
        layer.mode = "pan_zoom"
        show_info(f"RIS-Net: the clicks layer stays in pan/zoom mode ({mode} mode is not "
                  f"needed): left click = positive, right click or Ctrl-click = negative, "
                  f"u = undo a click")

    def _on_mouse_drag(self, layer: Any, event: Any):
        """Click (press and release without a drag) -> a click; a drag pans as usual."""
        if event.type != "mouse_press" or layer.mode != "pan_zoom":
            return  # e.g. painting on our labels layer, or moving the image
        if self._annotation_of(layer) is None:
            return
        button = event.button
        modifiers = tuple(event.modifiers or ())  # vispy Keys compare equal to their names
        position = tuple(event.position)
        dragged = yield from _follow_drag(event)
        if dragged or button not in (1, 2):
            return
        if self.viewer.dims.ndisplay != 2:
            show_warning("RIS-Net: click in the 2D view (clicks are made on one slice)")
            return
        modified = "Control" in modifiers or "Meta" in modifiers
        negative = button == 2 or (modified != self.negative_mode)
        ann = self._annotation_of(layer)
        if ann is None:
            return  # the layer was removed meanwhile
        if ann is not self.annotation:
            self.set_image_layer(ann.image)  # a click on another annotated image: switch to it
        elif unwrap_proxy(layer) is not ann.points:
            self.viewer.layers.selection.active = ann.points  # so c / u / Esc answer
        self.add_click_at(position, positive=not negative)

    def add_click_at(self, world_position: Any, positive: bool = True) -> None:
        """Add a click at a world position (what the mouse callback calls)."""
        ann = self.annotation
        if ann is None:
            show_warning("RIS-Net: pick an image layer first")
            return
        if self._committing:  # after the commit: never part of the object being committed
            self._deferred.append(lambda: self.add_click_at(world_position, positive))
            return
        if self._propagating:
            show_warning("RIS-Net: wait for the propagation to finish (or stop it)")
            return
        try:
            key, row, col = world_to_click(ann.image, world_position,
                                           len(ann.session.leading_shape))
            target = self._correction_target(key, row, col, positive)
            if target is None:
                return  # refused, with a message
            if target:
                self._correct(target, Click(row, col, positive), key)
                return
            ann.session.add_click(Click(row, col, positive), key, predict=False)
        except (ValueError, TypeError) as exc:
            show_warning(f"RIS-Net: {exc}")
            return
        self._schedule_prediction()  # first: the worker starts while the click is drawn
        self._refresh_points()

    def toggle_sign(self) -> None:
        self.negative_check.setChecked(not self.negative_mode)

    def _set_negative_mode(self, checked: bool) -> None:
        self.negative_mode = bool(checked)
        self._update_status()


__all__ = ["CLICK_TOLERANCE_PX", "KEYS", "ClickInput"]
