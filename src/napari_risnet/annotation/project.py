"""Annotation projects: a folder that holds everything an annotation session made, so nothing
is lost and everything can be rebuilt.

    <folder>/labels.zarr/   the label volume: Zarr v3, one slice per chunk cut in tiles of at
                            most 512 x 512, zstd; all-background chunks are not stored
    <folder>/project.json   the record (JSON below); its ``generation`` counts saved commits
    <folder>/journal/       only while a commit is being saved (see ``label_store``)

The record: the image (path, shape, dtype, channels, a fingerprint), the model and settings, the
clicks of every committed object with their slice (and, for propagated slices, the slice they
were carried from), and which objects were committed over others. A commit writes only the
chunks its object touches, through an undo journal, then the record (temporary file +
``os.replace``): a process killed at any moment leaves labels and record that agree; at most
the object being clicked is lost (``label_store`` has the protocol).

Projects of the previous layout (``labels.tif`` whose ImageDescription holds the record, plus
``project.json``) open as they are and are converted to ``labels.zarr`` at their first save
(the TIFF is deleted once the new record is in place). ``export_tiff`` writes the labels as one
(Big/OME-)TIFF, slice by slice.

``replay`` rebuilds the labels from the saved clicks alone (``AnnotationSession.recompute``):
with the same model and settings the result is identical to the saved labels.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from napari_risnet.clicks import Click
from napari_risnet.annotation.label_store import (MIRROR_BYTES, ChunkedLabels, create_array,
                                                  fsync_path, nonempty_slices, open_array,
                                                  recover, umask_mode)
from napari_risnet.annotation.records import ClickRecord
from napari_risnet.annotation.session import AnnotationSession

if TYPE_CHECKING:
    from napari_risnet.inference.predictor import InteractiveSegmenter

FORMAT = "napari-risnet-project"
VERSION = 2
SUFFIX = ".risnet"
STORE_DIR = "labels.zarr"
#: the previous layout's labels (read, converted at the first save)
LABELS_FILE = "labels.tif"
RECORD_FILE = "project.json"
#: Above this size an exported TIFF is written as BigTIFF (classic TIFF stops at 4 GiB).
BIGTIFF_BYTES = 2 * 2 ** 30
#: First line of the previous layout's labels.tif ImageDescription (a bare JSON object would be taken by tifffile
#: for its own "shaped" metadata).
DESCRIPTION_HEADER = "napari-risnet project record"
#: Where projects of images without a file (samples, arrays from a script) go by default.
PROJECTS_ENV = "NAPARI_RISNET_PROJECTS"


@dataclass
class ImageInfo:
    """What identifies the annotated image (to find it again and to refuse a wrong one)."""

    shape: tuple[int, ...]
    dtype: str
    rgb: bool = False
    channels: list[int] | None = None
    path: str | None = None
    fingerprint: str = ""

    @classmethod
    def of(cls, image: Any, rgb: bool = False, channels: Sequence[int] | None = None,
           path: str | Path | None = None) -> "ImageInfo":
        return cls(tuple(int(s) for s in image.shape), str(np.dtype(image.dtype)), bool(rgb),
                   None if channels is None else [int(c) for c in channels],
                   None if path is None else str(Path(path).resolve()), fingerprint(image))


@dataclass
class ProjectState:
    """A loaded project: labels, the committed objects' clicks and how they were made."""

    folder: Path
    #: ``ChunkedLabels`` (lazy) for a project in chunks; numpy for the previous layout
    labels: Any
    records: list[ClickRecord]
    image: ImageInfo
    model: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    overwrite_ids: set[int] = field(default_factory=set)

    @property
    def object_ids(self) -> list[int]:
        return sorted({r.object_id for r in self.records})


def fingerprint(image: Any) -> str:
    """A cheap identity of an image's pixels: shape, dtype and a CRC of ~64k values on a
    strided grid (numpy, dask and zarr arrays alike, without reading a large image whole)."""
    shape = tuple(int(s) for s in image.shape)
    per_axis = max(1, int(np.ceil(65536 ** (1 / max(1, len(shape))))))
    grid = tuple(slice(None, None, max(1, s // per_axis)) for s in shape)
    sample = np.ascontiguousarray(np.asarray(image[grid]))
    crc = zlib.crc32(sample.tobytes())
    return f"{'x'.join(map(str, shape))}-{np.dtype(image.dtype).str}-{crc:08x}"


def default_folder(image_path: str | Path | None, name: str) -> Path:
    """Beside the image file (``<stem>.risnet``), else ``~/napari-risnet-projects/<name>.risnet``
    (the root can be moved with the NAPARI_RISNET_PROJECTS environment variable). The suffix
    lets napari's reader recognise the folder."""
    if image_path:
        path = Path(image_path)
        return path.with_name(f"{path.stem}{SUFFIX}")
    root = Path(os.environ.get(PROJECTS_ENV) or Path.home() / "napari-risnet-projects")
    safe = "".join(ch if ch.isalnum() or ch in "-_.() " else "_" for ch in name).strip() or "image"
    return root / f"{safe}{SUFFIX}"


def is_project(folder: str | Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and ((folder / LABELS_FILE).is_file() or (
        (folder / RECORD_FILE).is_file() and any(folder.glob("labels*.zarr"))))


def _records_to_json(records: Iterable[ClickRecord]) -> list[dict[str, Any]]:
    return [{"object_id": int(r.object_id), "slice": [int(i) for i in r.slice],
             "row": float(r.click.row), "col": float(r.click.col),
             "positive": bool(r.click.positive),
             "source": None if r.source is None else [int(i) for i in r.source],
             "derived": bool(r.is_derived)}
            for r in records]


def _records_from_json(rows: Iterable[dict[str, Any]]) -> list[ClickRecord]:
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(ClickRecord(int(row["object_id"]), tuple(int(v) for v in row["slice"]),
                                   Click(float(row["row"]), float(row["col"]),
                                         bool(row["positive"])),
                                   None if row.get("source") is None
                                   else tuple(int(v) for v in row["source"]),
                                   None if row.get("derived") is None
                                   else bool(row["derived"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"click {i} of the project is malformed ({row!r}): {exc}") from exc
    return out


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, fsync, then os.replace (the file
    gets the mode the umask gives, not mkstemp's 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)  # make the rename itself durable (POSIX)


class Project:
    """One annotation project folder (see the module doc). Cheap to create; nothing is written
    before ``save``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()

    @property
    def labels_path(self) -> Path:
        """The previous layout's labels file."""
        return self.folder / LABELS_FILE

    @property
    def record_path(self) -> Path:
        return self.folder / RECORD_FILE

    def exists(self) -> bool:
        return is_project(self.folder)

    def _read_record(self) -> dict[str, Any] | None:
        if not self.record_path.is_file():
            return None
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read {self.record_path}: {exc}") from exc
        return record if isinstance(record, dict) else None

    @staticmethod
    def _is_chunked(record: dict[str, Any] | None) -> bool:
        return bool(record) and int(record.get("version", 0)) >= 2 \
            and bool(record.get("labels", {}).get("store"))

    # -- writing ---------------------------------------------------------------------------------
    def save(self, session: AnnotationSession, image: ImageInfo,
             model: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
             overwrite_ids: Iterable[int] = ()) -> None:
        """Save the session's committed objects (labels + clicks) so that a kill at any moment
        leaves labels and record that agree.

        When the session works on this project's ``ChunkedLabels`` only the chunks changed
        since the last save are made durable, then the record is written. Otherwise (a new
        project, a previous-layout project, another folder) the labels are written into a new
        store slice by slice, the record then points to it, and the session continues on it.
        The current (uncommitted) object is not saved: it becomes part of the project when it
        is committed.
        """
        # call on the thread that commits (the widget's GUI thread, the CLI); the session's lock
        # keeps label writes (a worker's propagation) out until labels and record agree
        with session._lock:
            self._save_locked(session, image, model, settings, overwrite_ids)

    def _save_locked(self, session: AnnotationSession, image: ImageInfo,
                     model: dict[str, Any] | None, settings: dict[str, Any] | None,
                     overwrite_ids: Iterable[int]) -> None:
        records = [r for r in session.click_records() if r.object_id != 0]
        ids = {r.object_id for r in records}
        body = {
            "format": FORMAT, "version": VERSION,
            "image": {"path": image.path, "shape": list(image.shape), "dtype": image.dtype,
                      "rgb": image.rgb, "channels": image.channels,
                      "fingerprint": image.fingerprint},
            "model": dict(model or {}), "settings": dict(settings or {}),
            "overwrite_ids": sorted(int(i) for i in overwrite_ids if int(i) in ids),
            "objects": sorted(ids),
            "clicks": _records_to_json(records),
        }

        def write_record(store: ChunkedLabels, generation: int) -> None:
            record = dict(body, generation=int(generation))
            record["labels"] = {"store": store.root.name, "shape": list(store.shape),
                                "dtype": str(store.dtype), "chunks": list(store.chunks),
                                "chunk_max": dict(sorted(store.chunk_max.items()))}
            text = json.dumps(record, indent=1)
            _atomic_write(self.record_path, lambda p: p.write_text(text, encoding="utf-8"))

        self.folder.mkdir(parents=True, exist_ok=True)
        labels = session.labels
        if getattr(labels, "is_chunked", False) and \
                labels.folder.resolve() == self.folder.resolve():
            labels.commit(lambda generation: write_record(labels, generation))
        else:
            store = self._write_store(session)
            write_record(store, store.generation)
            session.attach_labels(store)
        self._drop_stale(keep=session.labels.root.name)

    def _write_store(self, session: AnnotationSession) -> ChunkedLabels:
        """The session's labels copied, slice by slice, into a store the record does not
        name yet (so a kill meanwhile leaves the saved project as it was)."""
        record = self._read_record()
        current = record.get("labels", {}).get("store") if self._is_chunked(record) else None
        name = STORE_DIR if current != STORE_DIR else "labels.1.zarr"
        labels = session.labels
        array = create_array(self.folder / name, labels.shape, labels.dtype)
        if getattr(labels, "is_chunked", False) or labels.nbytes <= MIRROR_BYTES:
            keys = nonempty_slices(labels, session.leading_shape)
        else:  # a large array in memory: the slices the objects are on (no scan of the volume)
            keys = sorted({k for obj in session.objects.values() for k in obj.slices})
        for key in keys:
            array[key] = np.asarray(labels[key])
        for path in (self.folder / name).rglob("*"):
            fsync_path(path)
        generation = int(record.get("generation", 0)) + 1 if record else 1
        mirror = labels if isinstance(labels, np.ndarray) and labels.nbytes <= MIRROR_BYTES \
            else getattr(labels, "mirror", None)
        return ChunkedLabels(self.folder, array, generation, None, mirror)

    def _drop_stale(self, keep: str) -> None:
        """Remove what the record no longer names: other stores, the previous labels.tif."""
        for path in self.folder.glob("labels*.zarr"):
            if path.name != keep and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
        self.labels_path.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------------
    def load(self, writable: bool = True) -> ProjectState:
        """Read the record and open the labels lazily (``ChunkedLabels``); a project of the
        previous layout is read from labels.tif. ``writable``: finish or roll back a commit a
        crash interrupted first (a read-only look skips that)."""
        record = self._read_record()
        if self._is_chunked(record):
            self._check_record(record)
            meta = record["labels"]
            store = self.folder / str(meta["store"])
            if not store.is_dir():
                raise ValueError(f"{self.folder}: its labels store {store.name} is missing")
            generation = int(record.get("generation", 0))
            if writable:
                recover(self.folder, store, generation)
            try:
                array = open_array(store, writable)
            except Exception as exc:  # zarr raises several kinds for a broken store
                raise ValueError(f"cannot open {store}: {exc}") from exc
            small = int(np.prod(array.shape)) * array.dtype.itemsize <= MIRROR_BYTES
            labels: Any = ChunkedLabels(self.folder, array, generation, meta.get("chunk_max"),
                                        np.asarray(array[...]) if writable and small else None)
        else:
            labels, record = self._load_tiff(record)  # checks the record it reads
        img = record.get("image", {})
        info = ImageInfo(tuple(int(s) for s in img.get("shape", labels.shape)),
                         str(img.get("dtype", "")), bool(img.get("rgb", False)),
                         img.get("channels"), img.get("path"), str(img.get("fingerprint", "")))
        return ProjectState(self.folder, labels, _records_from_json(record.get("clicks", [])),
                            info, dict(record.get("model", {})), dict(record.get("settings", {})),
                            {int(i) for i in record.get("overwrite_ids", [])})

    def _check_record(self, record: Any) -> None:
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            found = record.get("format") if isinstance(record, dict) else None
            raise ValueError(f"{self.folder} is not a napari-risnet project (format {found!r})")
        if int(record.get("version", 0)) > VERSION:
            raise ValueError(f"{self.folder} was written by a newer napari-risnet (project "
                             f"version {record['version']}; this one reads {VERSION})")

    def _load_tiff(self, fallback: dict[str, Any] | None) -> tuple[np.ndarray, dict[str, Any]]:
        """The previous layout: labels.tif, whose ImageDescription holds the record (newer than
        project.json, which was written after it)."""
        import tifffile

        if not self.labels_path.is_file():
            raise FileNotFoundError(f"{self.folder} is not a napari-risnet project: it has no "
                                    f"{STORE_DIR} or {LABELS_FILE}")
        try:
            with tifffile.TiffFile(self.labels_path) as tif:
                labels = tif.asarray()
                description = tif.pages[0].description or ""
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {self.labels_path}: {exc}") from exc
        try:
            if not description.startswith(DESCRIPTION_HEADER):
                raise json.JSONDecodeError("no header", description, 0)
            record = json.loads(description[len(DESCRIPTION_HEADER):])
        except json.JSONDecodeError:
            if fallback is None:
                raise ValueError(f"{self.labels_path} holds no project record and "
                                 f"{RECORD_FILE} is missing") from None
            record = fallback
        self._check_record(record)
        shape = tuple(int(v) for v in record.get("labels", {}).get("shape", labels.shape))
        if labels.shape != shape and labels.size == int(np.prod(shape)):
            labels = labels.reshape(shape)  # e.g. (T, Z, Y, X) stored as T*Z pages
        return labels, record

    def check_image(self, state: ProjectState, image: Any) -> None:
        """Raise ValueError when ``image`` is not the project's image (shape or pixels)."""
        shape = tuple(int(s) for s in image.shape)
        if shape != tuple(state.image.shape):
            raise ValueError(f"the project {self.folder} belongs to an image of shape "
                             f"{tuple(state.image.shape)}, not {shape}")
        if state.image.fingerprint and fingerprint(image) != state.image.fingerprint:
            raise ValueError(f"the project {self.folder} belongs to another image of the same "
                             f"shape (its pixels differ)")

    def restore(self, session: AnnotationSession, state: ProjectState | None = None,
                check: bool = True) -> ProjectState:
        """Put the saved labels, objects and clicks into ``session`` (no prediction); the
        annotation continues from there (the undo history starts fresh). A chunked project's
        labels become the session's label array (nothing is copied)."""
        state = state or self.load()
        if check:
            self.check_image(state, session.image)
        labels = state.labels
        if not getattr(labels, "is_chunked", False):
            labels = labels.astype(session.labels.dtype, copy=False)
        session.restore(labels, state.records)
        return state


def export_tiff(labels: Any, path: str | Path, leading_axes: str | None = None) -> Path:
    """Write a label volume as one TIFF, slice by slice (never the whole volume in memory):
    BigTIFF above 2 GiB, OME-TIFF when ``path`` ends in .ome.tif(f), zlib-compressed."""
    import tifffile

    path = Path(path)
    shape = tuple(int(s) for s in labels.shape)
    dtype = np.dtype(labels.dtype)
    lead = shape[:-2]
    big = int(np.prod(shape)) * dtype.itemsize > BIGTIFF_BYTES
    ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    if leading_axes is None:
        leading_axes = "TZ"[-len(lead):] if 0 < len(lead) <= 2 else "Q" * len(lead)
    axes = leading_axes + "YX"
    ome = ome and "Q" not in axes

    def planes():
        for key in np.ndindex(*lead):
            yield np.asarray(labels[key], dtype=dtype)

    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=big, ome=ome) as tif:
        tif.write(planes(), shape=shape, dtype=dtype, compression="zlib",
                  metadata={"axes": axes} if ome else None)
    return path


def open_session(folder: str | Path, image: Any, segmenter: "InteractiveSegmenter",
                 image_path: str | Path | None = None, rgb: bool | None = None,
                 channels: Sequence[int] | None = None
                 ) -> tuple[AnnotationSession, Project, ProjectState | None]:
    """A session on ``image`` with the project's saved work in it (None when the folder holds
    no project yet)."""
    project = Project(folder)
    session = AnnotationSession(image, segmenter, rgb=rgb, channels=channels)
    state = project.restore(session) if project.exists() else None
    return session, project, state


def predictor_record(segmenter: Any) -> dict[str, Any] | None:
    """The settings ``segmenter`` reports through ``recorded_settings()`` (the Predictor's:
    ``PredictorSettings.to_record()``, its settings and the release that wrote them): what a
    project or a result file records so that ``PredictorSettings.from_record`` rebuilds the same
    predictor after the defaults change; None for a segmenter without any (a baseline, or a lazy
    one not built yet)."""
    record = getattr(segmenter, "recorded_settings", None)
    return record() if callable(record) else None


def replay(state: ProjectState, image: Any, segmenter: "InteractiveSegmenter",
           progress: Callable[[int, int, str], None] | None = None) -> np.ndarray:
    """Rebuild the labels from the saved clicks alone (a fresh session, same order, same
    overwrite choices). Identical to ``state.labels`` with the same model and settings."""
    session = AnnotationSession(image, segmenter, rgb=state.image.rgb,
                                channels=state.image.channels)
    if session.labels_shape != tuple(state.labels.shape):
        raise ValueError(f"the image gives labels of shape {session.labels_shape}, the project "
                         f"holds {state.labels.shape}")
    session.recompute(state.records, progress=progress, overwrite_ids=state.overwrite_ids)
    return session.labels


__all__ = ["FORMAT", "ImageInfo", "STORE_DIR", "export_tiff", "PROJECTS_ENV", "Project", "ProjectState", "default_folder",
           "fingerprint", "is_project", "open_session", "predictor_record", "replay"]
