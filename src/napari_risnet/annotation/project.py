"""Annotation projects: a folder that holds everything an annotation session made, so nothing
is lost and everything can be rebuilt.

    <folder>/labels.tif     the label image; its ImageDescription holds the project record
                            (JSON below), so pixels and clicks are replaced in ONE atomic step
    <folder>/project.json   the same record, for people and tools (written after labels.tif)

The record: the image (path, shape, dtype, channels, a fingerprint), the model and settings, the
clicks of every committed object with their slice (and, for propagated slices, the slice they
were carried from), and which objects were committed over others. Files are written to a
temporary name and moved into place with ``os.replace``, so a process killed at any moment
leaves the previous or the new state, never a torn file: at most the object being clicked is
lost. Labels above 2 GiB are written as BigTIFF (one file of any size).

``replay`` rebuilds the labels from the saved clicks alone (``AnnotationSession.recompute``):
with the same model and settings the result is identical to the saved labels.
"""
from __future__ import annotations

import json
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from napari_risnet.clicks import Click
from napari_risnet.annotation.records import ClickRecord
from napari_risnet.annotation.session import AnnotationSession

if TYPE_CHECKING:
    from napari_risnet.inference.predictor import InteractiveSegmenter

FORMAT = "napari-risnet-project"
VERSION = 1
SUFFIX = ".risnet"
LABELS_FILE = "labels.tif"
RECORD_FILE = "project.json"
#: Above this size labels.tif is written as BigTIFF (classic TIFF stops at 4 GiB).
BIGTIFF_BYTES = 2 * 2 ** 30
#: Labels up to this size are zlib-compressed (mostly zeros: small files, fast enough).
COMPRESS_BYTES = 256 * 2 ** 20
#: First line of labels.tif's ImageDescription (a bare JSON object would be taken by tifffile
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
    labels: np.ndarray
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
    return folder.is_dir() and (folder / LABELS_FILE).is_file()


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
    """Write through a temporary file in the same folder, fsync, then os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable (POSIX; not possible on Windows)
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


class Project:
    """One annotation project folder (see the module doc). Cheap to create; nothing is written
    before ``save``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()

    @property
    def labels_path(self) -> Path:
        return self.folder / LABELS_FILE

    @property
    def record_path(self) -> Path:
        return self.folder / RECORD_FILE

    def exists(self) -> bool:
        return is_project(self.folder)

    # -- writing ---------------------------------------------------------------------------------
    def save(self, session: AnnotationSession, image: ImageInfo,
             model: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
             overwrite_ids: Iterable[int] = ()) -> None:
        """Write the session's committed objects (labels + clicks) atomically.

        The current (uncommitted) object is not saved: it becomes part of the project when it is
        committed.
        """
        import tifffile

        # call on the thread that commits (the widget's GUI thread, the CLI): labels and clicks
        # then describe the same objects
        labels = np.array(session.labels, copy=True)
        records = [r for r in session.click_records() if r.object_id != 0]
        ids = {r.object_id for r in records}
        record = {
            "format": FORMAT, "version": VERSION,
            "image": {"path": image.path, "shape": list(image.shape), "dtype": image.dtype,
                      "rgb": image.rgb, "channels": image.channels,
                      "fingerprint": image.fingerprint},
            "labels": {"file": LABELS_FILE, "shape": list(labels.shape),
                       "dtype": str(labels.dtype)},
            "model": dict(model or {}), "settings": dict(settings or {}),
            "overwrite_ids": sorted(int(i) for i in overwrite_ids if int(i) in ids),
            "objects": sorted(ids),
            "clicks": _records_to_json(records),
        }
        text = json.dumps(record, indent=1)
        self.folder.mkdir(parents=True, exist_ok=True)
        big = labels.nbytes > BIGTIFF_BYTES
        compress = labels.nbytes <= COMPRESS_BYTES  # zlib on GiBs would stall every commit
        _atomic_write(self.labels_path, lambda p: tifffile.imwrite(
            p, labels, description=f"{DESCRIPTION_HEADER}\n{text}", metadata=None, bigtiff=big,
            compression="zlib" if compress else None))
        _atomic_write(self.record_path, lambda p: p.write_text(text, encoding="utf-8"))

    # -- reading ---------------------------------------------------------------------------------
    def load(self) -> ProjectState:
        """Read labels.tif and the record inside it (project.json only if that is missing)."""
        import tifffile

        if not self.labels_path.is_file():
            raise FileNotFoundError(f"{self.folder} is not a napari-risnet project: it has no "
                                    f"{LABELS_FILE}")
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
            if not self.record_path.is_file():
                raise ValueError(f"{self.labels_path} holds no project record and "
                                 f"{RECORD_FILE} is missing") from None
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            found = record.get("format") if isinstance(record, dict) else None
            raise ValueError(f"{self.folder} is not a napari-risnet project (format {found!r})")
        if int(record.get("version", 0)) > VERSION:
            raise ValueError(f"{self.folder} was written by a newer napari-risnet (project "
                             f"version {record['version']}; this one reads {VERSION})")
        shape = tuple(int(v) for v in record.get("labels", {}).get("shape", labels.shape))
        if labels.shape != shape and labels.size == int(np.prod(shape)):
            labels = labels.reshape(shape)  # e.g. (T, Z, Y, X) stored as T*Z pages
        img = record.get("image", {})
        info = ImageInfo(tuple(int(s) for s in img.get("shape", labels.shape)),
                         str(img.get("dtype", "")), bool(img.get("rgb", False)),
                         img.get("channels"), img.get("path"), str(img.get("fingerprint", "")))
        return ProjectState(self.folder, labels, _records_from_json(record.get("clicks", [])),
                            info, dict(record.get("model", {})), dict(record.get("settings", {})),
                            {int(i) for i in record.get("overwrite_ids", [])})

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
        annotation continues from there (the undo history starts fresh)."""
        state = state or self.load()
        if check:
            self.check_image(state, session.image)
        session.restore(state.labels.astype(session.labels.dtype, copy=False), state.records)
        return state


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
    if session.labels_shape != state.labels.shape:
        raise ValueError(f"the image gives labels of shape {session.labels_shape}, the project "
                         f"holds {state.labels.shape}")
    session.recompute(state.records, progress=progress, overwrite_ids=state.overwrite_ids)
    return session.labels


__all__ = ["FORMAT", "ImageInfo", "PROJECTS_ENV", "Project", "ProjectState", "default_folder",
           "fingerprint", "is_project", "open_session", "predictor_record", "replay"]
