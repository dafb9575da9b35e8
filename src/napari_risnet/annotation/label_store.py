"""Chunked label volumes on disk: a Zarr array whose writes go through a per-commit journal.

A project's labels live in ``labels.zarr`` (Zarr v3, chunks of one slice cut in tiles of at most
512 x 512, zstd-compressed; chunks that are all background are not stored). ``ChunkedLabels``
writes through to the chunks, so a commit costs the chunks its object touches, never the volume;
it keeps each stored chunk's highest id (saved in the record), so the next free id needs no
read of the volume either.

Crash safety (an undo journal, one transaction per saved record):

1. before a chunk is first changed after the last saved record, its old file (or "absent") is
   copied to ``journal/<chunk>`` (temporary name, fsync, rename); ``journal/base`` holds the
   generation of the record those old chunks belong to and is written before any entry;
2. the chunks are written (Zarr writes each file to a temporary name and renames it);
3. ``commit`` fsyncs the touched chunks, writes the record with generation + 1 (atomically),
   then deletes the entries and ``base`` last.

``recover`` on reopening: a journal whose ``base`` equals the record's generation belongs to a
transaction the record never saw -> the old chunks are put back (roll back: at most the object
being committed is lost); a ``base`` older than the record -> the record was written, only the
clean-up was cut short -> the journal is deleted; no ``base`` -> no chunk was changed yet.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

JOURNAL_DIR = "journal"
BASE_FILE = "base"
#: Largest tile of a chunk along the two image axes.
TILE = 512
#: Label volumes up to this size also keep a copy in memory (``ChunkedLabels.mirror``).
MIRROR_BYTES = 64 * 2 ** 20
_ABSENT = b"0"
_PRESENT = b"1"


def chunk_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """One slice per chunk along the leading axes, tiles of at most TILE x TILE."""
    shape = tuple(int(s) for s in shape)
    return (1,) * (len(shape) - 2) + tuple(max(1, min(TILE, s)) for s in shape[-2:])


def create_array(path: Path, shape: Sequence[int], dtype: Any) -> Any:
    """A new, empty (all background) chunked label array at ``path`` (replacing any)."""
    import zarr
    from zarr.storage import LocalStore

    if Path(path).exists():
        shutil.rmtree(path)
    return zarr.create_array(store=LocalStore(str(path)), shape=tuple(int(s) for s in shape),
                             chunks=chunk_shape(shape), dtype=np.dtype(dtype), fill_value=0,
                             overwrite=True)


def open_array(path: Path, writable: bool = True) -> Any:
    import zarr
    from zarr.storage import LocalStore

    return zarr.open_array(LocalStore(str(path), read_only=not writable),
                           mode="r+" if writable else "r")


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (folders: POSIX only; skipped where the OS refuses)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def umask_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file (0666 less the umask)."""
    try:  # Linux: read it without changing it (os.umask would race with other threads)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _normalise(index: Any, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Per axis the [start, stop) an integer / slice / Ellipsis index covers (basic indexing
    with step 1 only: what the session writes)."""
    if not isinstance(index, tuple):
        index = (index,)
    if any(i is Ellipsis for i in index):
        at = next(k for k, i in enumerate(index) if i is Ellipsis)
        fill = len(shape) - (len(index) - 1)
        index = index[:at] + (slice(None),) * fill + index[at + 1:]
    index = index + (slice(None),) * (len(shape) - len(index))
    if len(index) != len(shape):
        raise IndexError(f"index {index!r} does not fit labels of shape {shape}")
    spans = []
    for i, n in zip(index, shape):
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step != 1:
                raise IndexError("chunked labels are written with step-1 slices only")
            spans.append((start, max(start, stop)))
        else:
            k = int(i)
            k = k + n if k < 0 else k
            if not 0 <= k < n:
                raise IndexError(f"index {i} is outside an axis of length {n}")
            spans.append((k, k + 1))
    return spans


class ChunkedLabels:
    """A label volume in a Zarr array, written through an undo journal (see the module doc).

    Behaves like the numpy label array the session writes into: ``labels[index]`` reads (a numpy
    array), ``labels[index] = values`` writes (basic indexing), ``np.asarray(labels)`` reads it
    all (only for small volumes and tests). ``array`` is the Zarr array itself (for napari).
    """

    is_chunked = True

    def __init__(self, folder: Path, array: Any, generation: int = 0,
                 chunk_max: dict[str, int] | None = None,
                 mirror: np.ndarray | None = None) -> None:
        self.folder = Path(folder)
        self.array = array
        self.root = Path(str(array.store.root))
        self.shape: tuple[int, ...] = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunks: tuple[int, ...] = tuple(int(c) for c in array.chunks)
        self.generation = int(generation)
        #: a small volume's copy in memory (reads come from it, writes go to both): what napari
        #: shows, so samples behave exactly as a numpy label array
        self.mirror = mirror
        self._journaled: set[str] = set()
        #: the highest id of every stored chunk (saved in the record): the next free id
        #: without reading the volume
        self.chunk_max: dict[str, int] = {}
        if chunk_max is None:  # a record without it: read the stored chunks once
            for coords in self.stored_chunks():
                self._update_max(self.array.metadata.encode_chunk_key(coords))
        else:
            self.chunk_max = {str(k): int(v) for k, v in chunk_max.items()}

    @property
    def max_id(self) -> int:
        """The highest id in the volume."""
        return max(self.chunk_max.values(), default=0)

    def _update_max(self, key: str) -> None:
        coords = [int(v) for v in key.split("/")[1:]]
        region = tuple(slice(i * c, min((i + 1) * c, n))
                       for i, c, n in zip(coords, self.chunks, self.shape))
        block = self.mirror[region] if self.mirror is not None else self.array[region]
        top = int(np.max(block)) if np.size(block) else 0
        if top:
            self.chunk_max[key] = top
        else:
            self.chunk_max.pop(key, None)

    # -- array protocol ------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def journal(self) -> Path:
        return self.folder / JOURNAL_DIR

    def __getitem__(self, index: Any) -> np.ndarray:
        if self.mirror is not None:
            return self.mirror[index]
        return np.asarray(self.array[index])

    def __setitem__(self, index: Any, value: Any) -> None:
        spans = _normalise(index, self.shape)
        keys = self._chunk_keys(spans)
        self._journal(keys)
        value = np.asarray(value)
        region = tuple(slice(a, b) for a, b in spans)
        self.array[region] = np.broadcast_to(value, tuple(b - a for a, b in spans))
        if self.mirror is not None:
            self.mirror[region] = value
        for key in keys:
            self._update_max(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.mirror if self.mirror is not None else np.asarray(self.array[...])
        return out if dtype is None else out.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ChunkedLabels({self.root}, shape={self.shape}, dtype={self.dtype})"

    # -- chunks --------------------------------------------------------------------------------
    def _chunk_keys(self, spans: list[tuple[int, int]]) -> set[str]:
        ranges = [range(a // c, (b - 1) // c + 1) if b > a else range(0)
                  for (a, b), c in zip(spans, self.chunks)]
        keys: set[str] = set()
        for coords in np.ndindex(*(len(r) for r in ranges)):
            keys.add(self.array.metadata.encode_chunk_key(
                tuple(r[i] for r, i in zip(ranges, coords))))
        return keys

    def stored_chunks(self) -> list[tuple[int, ...]]:
        """Chunk coordinates that hold labels (all-background chunks are not stored)."""
        base = self.root / "c"
        out = []
        if not base.is_dir():
            return out
        for dirpath, _, files in os.walk(base):
            rel = Path(dirpath).relative_to(base).parts
            for name in files:
                if name.isdigit() and all(p.isdigit() for p in rel):
                    out.append(tuple(int(p) for p in rel) + (int(name),))
        return sorted(out)

    def nonempty_slices(self) -> list[tuple[int, ...]]:
        """Leading-axis indices of the slices that hold any label (from the chunk listing)."""
        lead = self.ndim - 2
        return sorted({c[:lead] for c in self.stored_chunks()})

    # -- transactions --------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """Whether chunks changed since the last saved record."""
        return bool(self._journaled) or (self.journal / BASE_FILE).exists()

    def _journal(self, keys: Iterable[str]) -> None:
        new = sorted(set(keys) - self._journaled)
        if not new:
            return
        journal = self.journal
        if not self._journaled:
            journal.mkdir(exist_ok=True)
            if not (journal / BASE_FILE).exists():
                write_durably(journal / BASE_FILE, str(self.generation).encode())
                fsync_path(journal)
        for key in new:
            src = self.root / key
            try:
                data = _PRESENT + src.read_bytes()
            except FileNotFoundError:
                data = _ABSENT
            write_durably(journal / _entry_name(key), data)
        fsync_path(journal)
        self._journaled.update(new)

    def commit(self, write_record: Callable[[int], None]) -> None:
        """End the open transaction: fsync the changed chunks, ``write_record(generation + 1)``
        (must replace the record atomically), then drop the journal."""
        dirs = set()
        for key in self._journaled:
            path = self.root / key
            if path.exists():
                fsync_path(path)
            dirs.add(path.parent)
        for d in dirs:
            fsync_path(d)
        write_record(self.generation + 1)
        self.generation += 1
        drop_journal(self.folder)
        self._journaled.clear()


def _entry_name(key: str) -> str:
    return key.replace("/", ".")


def _entry_key(name: str) -> str:
    return name.replace(".", "/")


def drop_journal(folder: Path) -> None:
    """Delete the journal: entries first, ``base`` last (see the module doc)."""
    journal = Path(folder) / JOURNAL_DIR
    if not journal.is_dir():
        return
    for entry in journal.iterdir():
        if entry.name != BASE_FILE:
            entry.unlink(missing_ok=True)
    fsync_path(journal)
    (journal / BASE_FILE).unlink(missing_ok=True)
    try:
        journal.rmdir()
    except OSError:
        pass
    fsync_path(Path(folder))


def recover(folder: Path, store: Path, generation: int) -> str | None:
    """Bring the chunks back in line with the record of ``generation`` (see the module doc).

    Returns "rolled back", "completed" or None (no journal)."""
    journal = Path(folder) / JOURNAL_DIR
    if not journal.is_dir():
        return None
    base = journal / BASE_FILE
    action = "completed"
    if base.is_file() and int(base.read_text().strip() or -1) == int(generation):
        for entry in journal.iterdir():
            if entry.name == BASE_FILE or entry.name.startswith("."):
                continue  # a temporary entry: its chunk was never changed
            data = entry.read_bytes()
            target = Path(store) / _entry_key(entry.name)
            if data[:1] == _PRESENT:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_durably(target, data[1:])
            else:
                target.unlink(missing_ok=True)
        action = "rolled back"
    for tmp in Path(store).rglob("*.partial"):  # Zarr's temporary chunk files
        tmp.unlink(missing_ok=True)
    drop_journal(folder)
    return action


def nonempty_slices(labels: Any, leading_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Leading indices of the slices of ``labels`` that hold any label: a chunk listing for
    ``ChunkedLabels``, a scan slice by slice for a numpy array."""
    if getattr(labels, "is_chunked", False):
        return labels.nonempty_slices()
    return [key for key in np.ndindex(*leading_shape) if np.any(labels[key])]


def label_bound(labels: Any) -> int:
    """The highest id in ``labels``: a numpy array's maximum; for ``ChunkedLabels`` the
    maximum of its per-chunk maxima (no read of the volume)."""
    if getattr(labels, "is_chunked", False):
        return int(labels.max_id)
    return int(labels.max()) if labels.size else 0


__all__ = ["MIRROR_BYTES", "ChunkedLabels", "chunk_shape", "create_array", "drop_journal", "label_bound",
           "nonempty_slices", "open_array", "recover", "umask_mode", "write_durably"]
