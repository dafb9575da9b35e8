"""Stack work of the RIS-Net dock widget: corrections of committed objects on any slice,
propagation through the stack and rebuilding objects from saved clicks — the controller's
long-running jobs, kept apart from its click / commit handling (``_widget.py``).

A mixin of :class:`napari_risnet._napari.widget.RISNetWidget`: it uses the controller's session,
layers, worker starter and status helpers, and owns no state of its own beyond what it sets on
the widget.
"""
from __future__ import annotations

import time

from napari.layers import Points
from napari.utils.notifications import show_error, show_info, show_warning

from napari_risnet._napari.layers import records_from_points, world_to_click
from napari_risnet.annotation import PropagationResult
from napari_risnet.clicks import Click
from napari_risnet.wording import plural


class StackControls:
    """Corrections, propagation and recompute of the dock widget (see the module docstring)."""

    #: The progress display changes at most this often (and at the first and last slice):
    #: with napari's GL canvas in the window, every repaint of a widget composes the whole
    #: window in OpenGL (in software on a machine without a GPU: ~15 ms of CPU per update
    #: taken from the propagation, 0.3 s of a 20-slice one).
    PROGRESS_INTERVAL_S = 0.5

    # -- corrections of committed objects --------------------------------------------------------
    def _correction_target(self, key: tuple, row: float, col: float, positive: bool = True
                           ) -> int | None:
        """The committed object a click corrects; 0 = the click is for a new object; None =
        the click is refused (a message says why).

        Editing a committed object is always visible ("correcting object N" in the status, the
        object drawn in the correction colour) and chosen: by a click on it with no object in
        progress, or in the "object" box. While correcting, a click far from the object (outside
        a margin around its box) never joins it: a positive one ends the correction and starts
        a new object, a negative one is refused; a positive click on another committed object
        switches to correcting that one.
        """
        session = self.session
        chosen = self.object_spin.value()
        editing = chosen if chosen and chosen in session.objects else 0
        under = session.object_at(key, row, col)
        if editing:
            if positive and under and under != editing:
                self.object_spin.setValue(under)  # the status and the colour say so
                self._note = f"object {editing} done; correcting object {under} now"
                return under
            if under == editing or session.is_near_object(editing, key, row, col):
                return editing
            if not positive:
                show_warning(f"RIS-Net: that negative click is far from object {editing}, so "
                             f"it does not correct it. Click on or near object {editing} to "
                             f"correct it, or press c / Esc to stop correcting")
                return None
            self._stop_correcting()
            show_info(f"RIS-Net: that click is far from object {editing}, so it starts a new "
                      f"object (correcting object {editing} ended; click on it to correct it "
                      f"again)")
            return 0
        if session.n_current_clicks == 0 and under:
            return under
        return 0

    def _stop_correcting(self) -> None:
        self.object_spin.setValue(0)
        self._corrected = None

    def _correct(self, object_id: int, click: Click, key: tuple) -> None:
        """Correct a committed object on one slice in a worker (the object becomes the edited
        one: the next clicks near it correct it too, until c, Escape or a click far away)."""
        session = self.session
        self.object_spin.setValue(object_id)
        self._corrected = (object_id, key)
        self._generation += 1
        self._note = f"correcting object {object_id}…"
        self._update_status()

        def job() -> float:
            tic = time.perf_counter()
            session.correct(object_id, click, key)
            return time.perf_counter() - tic

        self._start_worker(job, returned=self._on_corrected,
                           errored=lambda exc: (show_warning(f"RIS-Net: {exc}"),
                                                self._clear_note(), self._refresh()))

    def _on_corrected(self, elapsed: float) -> None:
        self.last_latency = elapsed
        if self._note.startswith("correcting object"):
            self._clear_note()
        self._refresh()
        self._autosave()  # a corrected object is a changed committed object

    def erase_slice(self) -> None:
        """Take the edited object (the "object" box) off the slice shown: it ends there."""
        session = self._guard()
        if session is None or not session.leading_shape:
            return
        object_id = self.object_spin.value()
        if object_id not in session.objects:
            show_warning("RIS-Net: click on a committed object first (or pick it in the "
                         "object box), then press e on a slice it should not reach")
            return
        key, _, _ = world_to_click(self.annotation.image, self.viewer.dims.point,
                                   len(session.leading_shape))
        try:
            here = bool((session.labels[key] == object_id).any())
            lost = session.erase_slice(object_id, key)
        except ValueError as exc:
            show_warning(f"RIS-Net: {exc}")
            return
        self._corrected = None
        through = lost - int(here)
        where = ",".join(map(str, key))
        message = f"object {object_id} removed from slice {where}"
        if through > 0:
            message += (f" and from {plural(through, 'more slice')} propagated through it "
                        f"(u undoes)")
            show_info(f"RIS-Net: {message}")
        self._note = message
        self._refresh()
        self._autosave()

    # -- propagation -----------------------------------------------------------------------------
    def propagate(self, object_id: int | None = None) -> None:
        """Carry an object (default: the spin box, else the current or last committed one)
        through the stack in a worker, with a progress bar."""
        session = self._guard()
        if session is None:
            return
        if not session.leading_shape:
            show_warning("RIS-Net: propagation needs a stack (an image with a Z or T axis)")
            return
        if object_id is None:
            object_id = self.object_spin.value() or None
        if object_id is None:
            if session.n_current_clicks:  # commit first (maybe in a worker), then propagate
                self.commit(then=lambda committed: self.propagate(committed))
                return
            elif session.objects:
                object_id = max(session.objects)
            else:
                show_warning("RIS-Net: click on an object first, then propagate it")
                return
        if object_id not in session.objects:
            show_warning(f"RIS-Net: object {object_id} is not committed")
            return
        # after a correction: carry it to the neighbours (clicked slices stay as they are)
        from_slice = None
        if self._corrected is not None and self._corrected[0] == object_id \
                and self._corrected[1] in session.objects[object_id].slices:
            from_slice = self._corrected[1]
        self._corrected = None
        self._propagating = True
        self._stop_requested = False
        self.stop_button.setEnabled(True)
        self.propagate_button.setEnabled(False)
        self._show_progress(f"propagating object {object_id}…")
        relay = self._relay

        def job() -> PropagationResult:
            return session.propagate(object_id, from_slice=from_slice,
                                     progress=lambda d, t, m: relay.progressed.emit(d, t, m),
                                     should_stop=lambda: self._stop_requested)

        self._start_worker(job, returned=self._on_propagated, errored=self._on_long_job_error,
                           long_job=True)

    def request_stop(self) -> None:
        self._stop_requested = True
        if self._propagating:
            self.progress_label.setText("cancelling after the slice being predicted…")

    def _show_progress(self, text: str) -> None:
        """The long job's progress in the widget itself (napari's activity panel is folded
        away by default, and a second progress display there cost a busy laptop's CPU ~20 %
        of a propagation), with the Cancel button next to it."""
        self._job_running = True
        self._progress_shown_at: float | None = None
        self.progress_bar.setRange(0, 0)  # busy until the first slice reports a total
        self.progress_bar.setVisible(True)
        self.progress_label.setText(text)
        self.progress_label.setVisible(True)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        if not self._job_running:
            return  # a late signal after the job ended
        now = time.monotonic()
        if self._progress_shown_at is not None and not (total and done >= total) \
                and now - self._progress_shown_at < self.PROGRESS_INTERVAL_S:
            return
        self._progress_shown_at = now
        self.progress_bar.setRange(0, max(0, total))
        if total:
            self.progress_bar.setValue(min(done, total))
        if not self._stop_requested:
            step = f"{done}/{total} · " if total else ""
            self.progress_label.setText(f"{step}{message}")

    def _end_long_job(self) -> None:
        self._propagating = False
        self.stop_button.setEnabled(False)
        self.propagate_button.setEnabled(True)
        self.recompute_button.setEnabled(True)
        self.progress_bar.setVisible(False)
        self.progress_label.setVisible(False)
        self._job_running = False

    def _on_propagated(self, result: PropagationResult) -> None:
        self._end_long_job()
        self._refresh()
        self._autosave()
        reasons = "; ".join(f"{'up' if d > 0 else 'down'}: {r}" for d, r in result.stopped.items())
        done = (f"object {result.object_id} propagated to {plural(len(result.slices), 'slice')}"
                f"{' (cancelled)' if result.cancelled else ''}")
        self._note = done
        self._update_status()
        show_info(f"RIS-Net: {done}. {reasons}")

    def _on_long_job_error(self, exc: Exception) -> None:
        self._end_long_job()
        show_error(f"RIS-Net: {exc}")
        self._refresh()

    # -- reproducibility -------------------------------------------------------------------------
    def recompute_from_points(self, points_layer: Points | None = None) -> None:
        """Rebuild the labels from saved clicks (a Points layer with object_id / sign features,
        e.g. read back from the CSV napari writes for our clicks layer), in a worker."""
        session = self._guard()
        if session is None:
            return
        if points_layer is None:
            active = self.viewer.layers.selection.active
            points_layer = active if isinstance(active, Points) else self.annotation.points
        try:
            records = records_from_points(points_layer.data, points_layer.features,
                                          len(session.leading_shape))
        except (ValueError, TypeError) as exc:
            show_error(f"RIS-Net cannot read clicks from {points_layer.name!r}: {exc}")
            return
        self._propagating = True
        self.recompute_button.setEnabled(False)
        self._show_progress("recomputing from the clicks…")
        overwrite_ids = set(self.annotation.overwrite_ids)
        relay = self._relay

        def job() -> list[int]:
            return session.recompute(records,
                                     progress=lambda d, t, m: relay.progressed.emit(d, t, m),
                                     should_stop=lambda: self._stop_requested,
                                     overwrite_ids=overwrite_ids)

        self._stop_requested = False
        self.stop_button.setEnabled(True)
        self._start_worker(job, returned=self._on_recomputed, errored=self._on_long_job_error,
                           long_job=True)

    def _on_recomputed(self, ids: list[int]) -> None:
        self._end_long_job()
        self._generation += 1
        self._refresh()
        self._autosave()
        if self.session is not None and self.session.has_pending:
            self._schedule_prediction()
        show_info(f"RIS-Net: recomputed {plural(len(ids), 'object')} from the clicks")
