"""Folder datasets in the ../shared/data layout -> one object per sample.

    images/<stem>.<jpg|png|tif>   2D image, RGB, or a (Z, Y, X) TIFF stack
    masks/<stem>.png|tif          0 = background, 255 = object, 128 = ignore (GrabCut band)
    labels/<stem>.tif|png         instance label map (one object per label), optional

With ``labels/`` every label is an object; stacks give one object per (slice, label). Objects
smaller than ``min_area`` pixels are skipped (and counted), because a robot user cannot click
inside a one-pixel sliver in any meaningful way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
IGNORE_VALUE = 128


def read_array(path: str | Path) -> np.ndarray:
    """Read an image file as an array (tifffile for TIFF, Pillow otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            return np.asarray(im)
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError, TiffFileError, ...
        raise ValueError(f"cannot read {path} as an image (TIFF, PNG, JPEG, ...): {exc}"
                         ) from exc


#: TIFF files above this size are opened lazily by ``open_image``.
LAZY_BYTES = 64 * 2 ** 20


def open_image(path: str | Path) -> Any:
    """Like ``read_array``, but a TIFF above 64 MiB stays on disk: a read-only memmap when its
    pixels are stored uncompressed and contiguous, else a Zarr view of its pages (tifffile's
    ``aszarr``); both read only the slices / tiles that are indexed."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file() \
            and path.stat().st_size > LAZY_BYTES:
        import tifffile

        try:
            return tifffile.memmap(path, mode="r")
        except (ValueError, OSError):
            pass
        try:
            import zarr

            node = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
            return node if hasattr(node, "shape") else node["0"]
        except Exception:  # an exotic layout: read it whole as before
            pass
    return read_array(path)


def _index(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}


@dataclass(frozen=True)
class DatasetEntry:
    """One image with its annotation files."""

    stem: str
    image: Path
    mask: Path | None
    labels: Path | None


def list_dataset(root: str | Path) -> list[DatasetEntry]:
    """Pair images with masks / labels by file stem.

    Raises:
        ValueError: the folder has no images/, no masks/ or labels/, or images lack annotations.
    """
    root = Path(root)
    images = _index(root / "images")
    if not images:
        raise ValueError(f"{root}: no images found in {root / 'images'} (expected images/ with "
                         f"masks/ or labels/ beside it)")
    masks, labels = _index(root / "masks"), _index(root / "labels")
    if not masks and not labels:
        raise ValueError(f"{root}: neither masks/ nor labels/ holds annotations")
    missing = [s for s in images if s not in masks and s not in labels]
    if missing:
        raise ValueError(f"{root}: {len(missing)} image(s) have no mask or label file, e.g. "
                         f"{missing[:3]}")
    return [DatasetEntry(s, p, masks.get(s), labels.get(s)) for s, p in images.items()]


def mask_to_object(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 0/255 (128 = ignore) or 0/1 mask -> (object bool, ignore bool)."""
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        mask = mask[..., 0]
    if mask.max(initial=0) <= 1:
        return mask > 0, np.zeros(mask.shape, bool)
    return mask > IGNORE_VALUE, mask == IGNORE_VALUE


@dataclass
class ObjectSample:
    """One object to segment: a 2D image (grey / RGB), its mask and the ignore band."""

    name: str
    image: np.ndarray
    gt: np.ndarray
    ignore: np.ndarray
    instance_labels: np.ndarray | None = None  # the other objects (training's negative clicks)


@dataclass(frozen=True)
class ObjectRef:
    """Where an object lives, cheap to list: entry, slice (or None), label id (None = mask)."""

    entry: DatasetEntry
    slice_index: int | None
    label: int | None

    @property
    def name(self) -> str:
        parts = [self.entry.stem]
        if self.slice_index is not None:
            parts.append(f"z{self.slice_index}")
        if self.label is not None:
            parts.append(f"l{self.label}")
        return ":".join(parts)


def _annotation(entry: DatasetEntry, objects: str) -> tuple[np.ndarray, bool]:
    use_labels = objects == "labels" or (objects == "auto" and entry.labels is not None)
    if use_labels:
        if entry.labels is None:
            raise ValueError(f"{entry.stem}: --objects labels but no labels/ file")
        return read_array(entry.labels), True
    if entry.mask is None:
        raise ValueError(f"{entry.stem}: --objects masks but no masks/ file")
    return read_array(entry.mask), False


def label_ids(labels: np.ndarray, min_size: int) -> tuple[list[int], int]:
    """The object ids of a label array (2D or 3D) with at least ``min_size`` pixels / voxels,
    and how many smaller objects were left out."""
    ids, counts = np.unique(labels, return_counts=True)
    objects = (ids != 0)
    keep = objects & (counts >= min_size)
    return [int(i) for i in ids[keep]], int((objects & ~keep).sum())


def list_objects(root: str | Path, objects: str = "auto", min_area: int = 16
                 ) -> tuple[list[ObjectRef], int]:
    """All objects of a dataset and the number skipped for being smaller than ``min_area``."""
    if objects not in ("auto", "labels", "masks"):
        raise ValueError(f"objects must be auto, labels or masks, got {objects!r}")
    refs: list[ObjectRef] = []
    skipped = 0
    for entry in list_dataset(root):
        ann, is_labels = _annotation(entry, objects)
        if ann.ndim == 3 and ann.shape[-1] in (3, 4):  # an RGB(A)-saved mask
            ann = ann[..., 0]
        planes = [(None, ann)] if ann.ndim == 2 else [(z, ann[z]) for z in range(ann.shape[0])]
        for z, plane in planes:
            if is_labels:
                ids, small = label_ids(plane, min_area)
                skipped += small
                refs += [ObjectRef(entry, z, i) for i in ids]
            else:
                obj, _ = mask_to_object(plane)
                n = int(obj.sum())
                if n == 0:
                    continue
                if n < min_area:
                    skipped += 1
                else:
                    refs.append(ObjectRef(entry, z, None))
    return refs, skipped


def load_object(ref: ObjectRef, cache: dict | None = None) -> ObjectSample:
    """Read the image and the object's mask (``cache`` keeps the last file pair in memory)."""
    key = ref.entry.stem
    if cache is not None and cache.get("stem") == key:
        image, ann = cache["image"], cache["ann"]
    else:
        image = read_array(ref.entry.image)
        ann = read_array(ref.entry.labels if ref.label is not None else ref.entry.mask)
        if cache is not None:
            cache.update(stem=key, image=image, ann=ann)
    if ann.ndim == 3 and ann.shape[-1] in (3, 4):
        ann = ann[..., 0]
    if ref.slice_index is not None:
        image, ann = image[ref.slice_index], ann[ref.slice_index]
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.shape[:2] != ann.shape[:2]:
        raise ValueError(f"{ref.entry.stem}: image {image.shape[:2]} and annotation "
                         f"{ann.shape[:2]} differ in size")
    if ref.label is not None:
        gt, ignore = ann == ref.label, np.zeros(ann.shape, bool)
        labels = ann
    else:
        gt, ignore = mask_to_object(ann)
        labels = None
    return ObjectSample(ref.name, image, gt, ignore, labels)


def spread(refs: list[ObjectRef], limit: int | None) -> list[ObjectRef]:
    """At most ``limit`` objects spread evenly over the list (deterministic)."""
    if limit is None or limit >= len(refs):
        return refs
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    idx = np.linspace(0, len(refs) - 1, limit).round().astype(int)
    return [refs[i] for i in idx]


def iter_objects(root: str | Path, objects: str = "auto", min_area: int = 16,
                 limit: int | None = None) -> Iterator[ObjectSample]:
    """Load the objects of a dataset one by one."""
    refs, _ = list_objects(root, objects, min_area)
    cache: dict = {}
    for ref in spread(refs, limit):
        yield load_object(ref, cache)
