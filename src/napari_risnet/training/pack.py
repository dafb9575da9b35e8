"""Pack a recipe's training folders into one small folder that travels with the code.

A GPU node may have no access to ../shared and a small upload limit, so ``write_pack`` stores
each training folder of a recipe — images normalised and resized exactly as the trainer keeps
them in memory (long side <= ``max_side``), their instance maps and ignore bands — as

    OUT/index.json                   the packed folders, the settings, the sizes
    OUT/<group>-<name>/pack.json     per image: name, split (train | val), codec, val object ids
    OUT/<group>-<name>/data.npz      encoded images (JPEG for colour, PNG for grey), label maps

A packed folder is a recipe data source like any other (``[[data]] path = ".../OUT/<folder>"``,
recognised by its ``pack.json``). The trainer's held-out images (``is_validation``) never enter
the training part; ``val_objects`` of them per folder are packed as the validation part, so a
run validates without the original data.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from napari_risnet.data import ObjectSample, list_objects, load_object, spread
from napari_risnet.training.config import TrainConfig
from napari_risnet.training.datasets import (ObjectPool, StoredImage, _store_refs, image_key,
                                             make_stored)
from napari_risnet.training.split import is_validation

PACK_FORMAT = "napari-risnet-pack/1"
SOURCE_INDEX = "pack.json"
ROOT_INDEX = "index.json"
MIB = 1024 * 1024


def is_pack(path: str | Path) -> bool:
    """A packed training folder (has ``pack.json``)."""
    return (Path(path) / SOURCE_INDEX).is_file()


@dataclass
class PackedFolder:
    """What one training folder became: names, counts and bytes on disk."""

    name: str
    source: str
    train_images: int
    train_objects: int
    val_objects: int
    bytes: int


def folder_name(path: str | Path) -> str:
    """``.../microscopy/dsb2018_nuclei/train`` -> ``dsb2018_nuclei-train`` (unique enough for
    the shared data layout, readable in a recipe)."""
    p = Path(path).resolve()
    return f"{p.parent.name}-{p.name}" if p.parent.name else p.name


def _encode_rgb(rgb: np.ndarray, jpeg_quality: int) -> tuple[bytes, str]:
    """Grey images (all channels equal) as one-channel PNG; colour as JPEG (or PNG if
    ``jpeg_quality`` is 0)."""
    from PIL import Image

    if rgb.ndim == 3 and (rgb == rgb[..., :1]).all():
        rgb = rgb[..., 0]
    buf = io.BytesIO()
    if rgb.ndim == 3 and jpeg_quality > 0:
        Image.fromarray(rgb).save(buf, format="JPEG", quality=jpeg_quality)
        return buf.getvalue(), "jpeg"
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue(), "png"


def _decode_rgb(data: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from the stored bytes (grey replicated, as the trainer keeps it)."""
    from PIL import Image

    with Image.open(io.BytesIO(data.tobytes())) as im:
        arr = np.asarray(im.convert("L") if im.mode not in ("RGB", "L") else im)
    return np.repeat(arr[..., None], 3, axis=-1) if arr.ndim == 2 else arr


def _small_int(labels: np.ndarray) -> np.ndarray:
    top = int(labels.max(initial=0))
    return labels.astype(np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32)


class _FolderWriter:
    """Collects one folder's images (deduplicated pixels) and writes them as one npz."""

    def __init__(self, jpeg_quality: int) -> None:
        self.jpeg_quality = jpeg_quality
        self.arrays: dict[str, np.ndarray] = {}
        self.entries: list[dict] = []
        self._by_hash: dict[str, tuple[str, str]] = {}

    def add(self, stored: StoredImage, split: str, val_ids: list[int] | None = None,
            labels: bool = True) -> None:
        i = len(self.entries)
        digest = hashlib.sha1(np.ascontiguousarray(stored.rgb).tobytes()).hexdigest()
        if digest not in self._by_hash:  # COCO-MVal repeats a photo once per object
            data, codec = _encode_rgb(stored.rgb, self.jpeg_quality)
            key = f"rgb_{i}"
            self.arrays[key] = np.frombuffer(data, np.uint8)
            self._by_hash[digest] = (key, codec)
        rgb_key, codec = self._by_hash[digest]
        entry = {"name": stored.name, "split": split, "rgb": rgb_key, "codec": codec,
                 "labels": labels}
        self.arrays[f"inst_{i}"] = _small_int(stored.instances)
        if stored.ignore.any():
            self.arrays[f"ign_{i}"] = stored.ignore
            entry["ignore"] = True
        if val_ids is not None:
            entry["val_ids"] = [int(v) for v in val_ids]
        self.entries.append(entry)

    def write(self, folder: Path, meta: dict) -> int:
        folder.mkdir(parents=True)
        np.savez_compressed(folder / "data.npz", **self.arrays)
        (folder / SOURCE_INDEX).write_text(json.dumps({**meta, "images": self.entries},
                                                      indent=0))
        return sum(f.stat().st_size for f in folder.iterdir())


def _pack_folder(config: TrainConfig, src, max_side: int, per_source: int, jpeg_quality: int,
                 progress: Callable[[str, int, int], None] | None) -> tuple[_FolderWriter, dict]:

    refs, n_small = list_objects(src.path, src.objects, src.min_area)
    val_refs = [r for r in refs if is_validation(image_key(r), config.val_fraction)]
    held_out = {image_key(r) for r in val_refs}
    writer = _FolderWriter(jpeg_quality)
    by_key: dict[str, list] = {}
    for ref in refs:
        if image_key(ref) not in held_out:
            by_key.setdefault(image_key(ref), []).append(ref)
    cache: dict = {}
    n_train = n_skipped = 0
    name = folder_name(src.path)
    for k, group in enumerate(by_key.values()):
        stored = _store_refs(group, cache, max_side)
        if stored is None or not stored.instances.any():
            n_skipped += len(group)
        else:
            stored.name = image_key(group[0])
            writer.add(stored, "train")
            n_train += len(group)
        if progress is not None:
            progress(name, k + 1, len(by_key))
    chosen: dict[str, list] = {}
    for ref in spread(val_refs, per_source):
        chosen.setdefault(image_key(ref), []).append(ref)
    n_val = 0
    for group in chosen.values():
        sample = load_object(group[0], cache)
        if sample.instance_labels is not None:  # keep the other objects (negative context)
            instances, ids = sample.instance_labels.astype(np.int32), [r.label for r in group]
        else:
            instances, ids = sample.gt.astype(np.int32), [1]
        stored = make_stored(sample.image, instances, sample.ignore.copy(), image_key(group[0]),
                             max_side)
        ids = [i for i in ids if stored is not None and (stored.instances == i).any()]
        if ids:
            writer.add(stored, "val", ids, labels=sample.instance_labels is not None)
            n_val += len(ids)
    meta = {"format": PACK_FORMAT, "source": str(src.path), "objects": src.objects,
            "min_area": src.min_area, "max_side": max_side, "val_fraction": config.val_fraction,
            "train_images": sum(e["split"] == "train" for e in writer.entries),
            "train_objects": n_train, "val_objects": n_val, "skipped": n_small + n_skipped}
    return writer, meta


def write_pack(config: TrainConfig, out: str | Path, max_side: int = 320,
               budget_mb: float = 40.0, val_objects: int | None = None, jpeg_quality: int = 90,
               progress: Callable[[str, int, int], None] | None = None) -> list[PackedFolder]:
    """Pack every ``[[data]]`` folder of ``config`` into ``out`` (replaced if it is a pack).

    Args:
        max_side: long side of every stored image (the trainer's in-memory ``max_side``).
        budget_mb: the whole pack must stay under this many MiB, else nothing is kept.
        val_objects: validation objects per folder (default: the recipe's share, as the
            trainer's ``validation_from_folders``).
        jpeg_quality: JPEG quality of colour images; 0 stores them as lossless PNG.
    Raises:
        ValueError: bad arguments, a source that is itself a pack, an ``out`` that is a
            non-empty folder but no pack, or a pack over budget.
    """
    if max_side < 16:
        raise ValueError(f"max_side must be >= 16, got {max_side}")
    if budget_mb <= 0:
        raise ValueError(f"budget_mb must be > 0, got {budget_mb}")
    if not 0 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 0..100 (0 = PNG), got {jpeg_quality}")
    if not config.data:
        raise ValueError("the recipe lists no [[data]] folders to pack")
    for src in config.data:
        if is_pack(src.path):
            raise ValueError(f"{src.path} is already a pack; pack the recipe that reads the "
                             f"original folders")
    names = [folder_name(s.path) for s in config.data]
    if len(set(names)) != len(names):
        raise ValueError(f"two training folders would share a packed name: {names}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / ROOT_INDEX).is_file():
        raise ValueError(f"{out} is a non-empty folder that is not a pack; choose a new folder")
    per_source = val_objects if val_objects is not None \
        else max(1, config.val_objects // max(1, len(config.data)))
    if per_source < 1:
        raise ValueError(f"val_objects must be >= 1, got {per_source}")
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    packed = []
    try:
        for src, name in zip(config.data, names):
            writer, meta = _pack_folder(config, src, max_side, per_source, jpeg_quality, progress)
            size = writer.write(tmp / name, meta)
            packed.append(PackedFolder(name, str(src.path), meta["train_images"],
                                       meta["train_objects"], meta["val_objects"], size))
        total = sum(p.bytes for p in packed)
        if total > budget_mb * MIB:
            raise ValueError(f"the pack takes {total / MIB:.1f} MiB, over the budget of "
                             f"{budget_mb:g} MiB: lower --max-side or the JPEG quality")
        (tmp / ROOT_INDEX).write_text(json.dumps(
            {"format": PACK_FORMAT, "max_side": max_side, "jpeg_quality": jpeg_quality,
             "total_bytes": total, "folders": [p.__dict__ for p in packed]}, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return packed


def read_pack(path: str | Path) -> tuple[list[StoredImage], list[ObjectSample], dict]:
    """A packed folder's training images, validation objects and its ``pack.json`` settings."""
    path = Path(path)
    if not is_pack(path):
        raise ValueError(f"{path} is not a packed training folder (no {SOURCE_INDEX})")
    meta = json.loads((path / SOURCE_INDEX).read_text())
    if meta.get("format") != PACK_FORMAT:
        raise ValueError(f"{path}: pack format {meta.get('format')!r}, this version reads "
                         f"{PACK_FORMAT!r}; pack the folders again")
    train, val = [], []
    rgb_cache: dict[str, np.ndarray] = {}
    with np.load(path / "data.npz") as arrays:
        for i, e in enumerate(meta["images"]):
            if e["rgb"] not in rgb_cache:
                rgb_cache[e["rgb"]] = _decode_rgb(arrays[e["rgb"]])
            rgb = rgb_cache[e["rgb"]]
            inst = arrays[f"inst_{i}"].astype(np.int32)
            ign = arrays[f"ign_{i}"] if e.get("ignore") else np.zeros(inst.shape, bool)
            if e["split"] == "train":
                train.append(StoredImage(rgb, inst, ign, e["name"]))
                continue
            for obj in e["val_ids"]:
                val.append(ObjectSample(f"{e['name']}:l{obj}", rgb, inst == obj, ign,
                                        inst if e["labels"] else None))
    return train, val, meta


def pool_from_packs(config: TrainConfig) -> tuple[ObjectPool, list[ObjectSample]]:
    """The training pool and validation objects of a recipe whose ``[[data]]`` are all packs
    (the pack decides max_side and the held-out images; the recipe gives the weights and, up
    to what was packed, the number of validation objects: ``val_objects`` over the folders)."""
    groups, weights, val = [], [], []
    per_source = max(1, config.val_objects // len(config.data))
    for src in config.data:
        train, val_samples, _ = read_pack(src.path)
        if not train:
            raise ValueError(f"{src.path}: the pack holds no training images")
        groups.append(train)
        weights.append(src.weight)
        if len(val_samples) > per_source:  # spread evenly, as the trainer's own selection
            keep = np.linspace(0, len(val_samples) - 1, per_source).round().astype(int)
            val_samples = [val_samples[i] for i in keep]
        val += val_samples
    return ObjectPool(groups, weights), val
