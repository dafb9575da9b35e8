"""Training samples from folders: objects -> zoom-in crops like the predictor's, augmented.

Images are normalised once with the predictor's own ``ImageNormalizer`` (so training sees what
inference sees) and kept in memory as uint8 RGB, downscaled to ``max_side``. Each sample is an
object-centric crop made with the predictor's ``CropTransform``, padded to a square canvas
(padding is ignored by the loss), flipped and colour-jittered.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from napari_risnet.clicks import DISTANCE_TRUNCATION, Click, pad_rois, propose_rois
from napari_risnet.data import list_objects, load_object
from napari_risnet.inference.preprocess import CropTransform, ImageNormalizer
from napari_risnet.training.augment import AugmentConfig, augment_crop
from napari_risnet.training.focus_samples import coarse_view, focus_transform

log = logging.getLogger(__name__)


@dataclass
class StoredImage:
    """An image in memory: uint8 RGB in [0, 255] and its object masks' instance map."""

    rgb: np.ndarray  # (H, W, 3) uint8
    instances: np.ndarray  # (H, W) int32, one id per object
    ignore: np.ndarray  # (H, W) bool
    name: str


@dataclass
class Sample:
    """One training crop: network-sized RGB, object, ignore and the other objects."""

    rgb: np.ndarray  # (S, S, 3) float32 in [0, 1]
    gt: np.ndarray  # (S, S) bool
    ignore: np.ndarray  # (S, S) bool (padding + ignore band)
    others: np.ndarray  # (S, S) bool
    prev: np.ndarray | None = None  # (S, S) bool previous mask given with the crop (focus crops)
    source: int = 0  # index of the training folder it came from (the recipe's [[data]] order)


def _resize(arr: np.ndarray, shape: tuple[int, int], nearest: bool) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(arr))
    t = t[None, None].float() if t.ndim == 2 else t.permute(2, 0, 1)[None].float()
    out = F.interpolate(t, size=shape, mode="nearest" if nearest else "bilinear",
                        **({} if nearest else {"align_corners": False}))[0]
    out = out[0] if arr.ndim == 2 else out.permute(1, 2, 0)
    return out.numpy().astype(arr.dtype)


class ObjectPool:
    """Training objects in memory, grouped by source, each source with a sampling weight.

    Build with :meth:`from_folders` (the ../shared/data layout) or :meth:`from_arrays`.
    """

    def __init__(self, groups: list[list[StoredImage]], weights: list[float],
                 skipped: int = 0) -> None:
        self.images: list[StoredImage] = []
        self.objects: list[list[tuple[int, int]]] = []  # per source: (image index, object id)
        for group in groups:
            entries = []
            for stored in group:
                self.images.append(stored)
                idx = len(self.images) - 1
                entries += [(idx, j) for j in np.unique(stored.instances) if j > 0]
            if not entries:
                raise ValueError("a training source has no usable objects (all empty, constant "
                                 "or too small)")
            self.objects.append(entries)
        w = np.array(weights, float)
        if len(w) != len(self.objects) or (w <= 0).any():
            raise ValueError(f"need one positive weight per source, got {weights}")
        self.probs = w / w.sum()
        self.skipped = skipped

    @classmethod
    def from_folders(cls, sources: list[tuple[str, float, str, int]], max_side: int = 640,
                     exclude: set[str] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> "ObjectPool":
        """sources: (folder, weight, objects, min_area); ``exclude``: image keys ("stem" or
        "stem:zN") held out for validation."""
        groups, weights, skipped = [], [], 0
        exclude = exclude or set()
        for folder, weight, objects, min_area in sources:
            refs, n_small = list_objects(folder, objects, min_area)
            skipped += n_small
            by_key: dict[str, list] = {}
            for ref in refs:
                if image_key(ref) not in exclude:
                    by_key.setdefault(image_key(ref), []).append(ref)
            group, cache = [], {}
            for i, refs_of_image in enumerate(by_key.values()):
                stored = _store_refs(refs_of_image, cache, max_side)
                if stored is None:
                    skipped += len(refs_of_image)
                else:
                    group.append(stored)
                if progress is not None:
                    progress(i + 1, len(by_key))
            if not group:
                raise ValueError(f"{folder}: no usable training objects")
            groups.append(group)
            weights.append(weight)
        return cls(groups, weights, skipped)

    @classmethod
    def from_arrays(cls, images: list[np.ndarray], labels: list[np.ndarray], max_side: int = 640,
                    min_area: int = 16, ignores: list[np.ndarray] | None = None
                    ) -> "ObjectPool":
        """In-memory images (2D / RGB / (Z, Y, X)) with instance label maps of the same shape;
        ``ignores``: optional bool masks of the labels' shape whose pixels training ignores."""
        if ignores is None:
            ignores = [np.zeros(np.shape(lab), bool) for lab in labels]
        if len(ignores) != len(labels):
            raise ValueError(f"{len(labels)} label maps but {len(ignores)} ignore masks")
        group, skipped = [], 0
        for k, (img, lab, ign) in enumerate(zip(images, labels, ignores)):
            for (name, im2, lab2), (_, _, ign2) in zip(
                    iter_planes(img, lab, f"image{k}"),
                    iter_planes(img, np.asarray(ign, bool), f"ignore mask {k}")):
                lab2 = remove_small(lab2, min_area)
                if not lab2.any():
                    continue
                stored = make_stored(im2, lab2.astype(np.int32), np.asarray(ign2, bool),
                                     name, max_side)
                if stored is None:
                    skipped += 1
                else:
                    group.append(stored)
        if not group:
            raise ValueError("no usable training objects in the given images and labels")
        return cls([group], [1.0], skipped)

    def __len__(self) -> int:
        return sum(len(o) for o in self.objects)

    def sample(self, rng: np.random.Generator, crop_size: int, full_image_prob: float = 0.2,
               augment: bool = True, focus_prob: float = 0.0,
               augmentations: AugmentConfig | None = None) -> Sample:
        """A random object, cropped like the predictor would see it, augmented; with
        probability ``focus_prob`` (where the object is large enough) as the predictor's focus
        pass sees it, with a coarse previous mask (:mod:`.focus_samples`). ``augmentations``:
        the recipe's ``[augment]`` transforms, after the flips and colour jitter (only with
        ``augment``; None = none)."""
        src = int(rng.choice(len(self.objects), p=self.probs))
        img_idx, obj_id = self.objects[src][int(rng.integers(len(self.objects[src])))]
        stored = self.images[img_idx]
        gt_full = stored.instances == obj_id
        rows, cols = np.nonzero(gt_full)
        box = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], float)
        shape = gt_full.shape
        focus = focus_transform(gt_full, box, crop_size, rng) if (
            focus_prob > 0 and rng.random() < focus_prob) else None
        if focus is not None:
            t = focus[0]
            t = CropTransform(t.r0, t.c0, t.r1, t.c1, _fit_in(t.crop_shape, crop_size))
        elif rng.random() < full_image_prob:
            t = CropTransform(0, 0, shape[0], shape[1],
                              _fit_in(shape, crop_size))
        else:
            side = max(box[2] - box[0], box[3] - box[1])
            jitter = (rng.random(2) - 0.5) * 0.4 * side
            box = box + np.r_[jitter, jitter]
            t = CropTransform.around(box, shape, crop_size, expand=float(rng.uniform(1.3, 2.5)),
                                     min_side=max(16, crop_size // 4))
            t = CropTransform(t.r0, t.c0, t.r1, t.c1, _fit_in(t.crop_shape, crop_size))
        rgb = t.image(stored.rgb[t.r0:t.r1, t.c0:t.c1].astype(np.float32) / 255.0)
        inst = _resize(stored.instances[t.r0:t.r1, t.c0:t.c1], t.out_shape, nearest=True)
        ign = _resize(stored.ignore[t.r0:t.r1, t.c0:t.c1].astype(np.uint8), t.out_shape,
                      nearest=True).astype(bool)
        gt, others = inst == obj_id, (inst > 0) & (inst != obj_id)
        masks = (gt, ign, others) if focus is None else (gt, ign, others,
                                                          coarse_view(gt, focus[1], rng))
        if augment:
            rgb, *masks = _augment(rng, rgb, *masks)
            if augmentations is not None:
                rgb, masks = augment_crop(rng, augmentations, rgb, tuple(masks), crop_size)
        sample = _pad(rgb, *masks, size=crop_size)
        sample.source = src
        return sample


def _fit_in(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """Long side = size (keeping aspect), each side >= 16."""
    s = size / max(shape)
    return max(16, min(size, round(shape[0] * s))), max(16, min(size, round(shape[1] * s)))


def _augment(rng: np.random.Generator, rgb: np.ndarray, *masks: np.ndarray) -> tuple:
    if rng.random() < 0.5:
        rgb, masks = rgb[:, ::-1], tuple(m[:, ::-1] for m in masks)
    if rng.random() < 0.3:
        rgb, masks = rgb[::-1], tuple(m[::-1] for m in masks)
    gain = rng.uniform(0.75, 1.25)
    bias = rng.uniform(-0.1, 0.1)
    rgb = rgb * gain + bias
    if rng.random() < 0.3:  # colour jitter per channel
        rgb = rgb * rng.uniform(0.85, 1.15, size=3)
    if rng.random() < 0.15:  # grey, as microscopy and MRI are
        rgb = np.repeat(rgb.mean(-1, keepdims=True), 3, axis=-1)
    if rng.random() < 0.1:  # inverted contrast (brightfield vs fluorescence)
        rgb = 1.0 - rgb
    return (np.ascontiguousarray(np.clip(rgb, 0, 1), dtype=np.float32),
            *(np.ascontiguousarray(m) for m in masks))


def _pad(rgb: np.ndarray, gt: np.ndarray, ignore: np.ndarray, others: np.ndarray,
         prev: np.ndarray | None = None, *, size: int) -> Sample:
    h, w = gt.shape
    out_rgb = np.zeros((size, size, 3), np.float32)
    out_gt = np.zeros((size, size), bool)
    out_ign = np.ones((size, size), bool)
    out_oth = np.zeros((size, size), bool)
    out_rgb[:h, :w], out_gt[:h, :w], out_ign[:h, :w], out_oth[:h, :w] = rgb, gt, ignore, others
    out_prev = None
    if prev is not None:
        out_prev = np.zeros((size, size), bool)
        out_prev[:h, :w] = prev
    return Sample(out_rgb, out_gt, out_ign, out_oth, out_prev)


def click_distance_maps(shape: tuple[int, int], clicks: list[list[Click]],
                        device: torch.device | str | None = None,
                        truncation: float = DISTANCE_TRUNCATION) -> torch.Tensor:
    """(B, 2, H, W) float32 distances to the nearest positive / negative click of each sample,
    truncated — the values of ``clicks.distance_maps`` (the EDT of the click pixels), computed
    directly from the few clicks, batched and on ``device`` (a GPU step never waits for the
    CPU's distance transforms)."""
    h, w = shape
    out = torch.full((len(clicks), 2, h * w), float(truncation) ** 2, device=device)
    rows = torch.arange(h, device=device, dtype=torch.float32).repeat_interleave(w)
    cols = torch.arange(w, device=device, dtype=torch.float32).repeat(h)
    for k in range(max((len(c) for c in clicks), default=0)):
        have = [(b, int(not cl[k].positive), min(max(round(cl[k].row), 0), h - 1),
                 min(max(round(cl[k].col), 0), w - 1))  # the rounding of distance_maps
                for b, cl in enumerate(clicks) if len(cl) > k]
        idx = torch.tensor(have, device=device, dtype=torch.long)
        d2 = (rows - idx[:, 2:3]) ** 2 + (cols - idx[:, 3:4]) ** 2  # (N, H*W), exact integers
        out[idx[:, 0], idx[:, 1]] = torch.minimum(out[idx[:, 0], idx[:, 1]], d2)
    return out.sqrt_().view(len(clicks), 2, h, w)


def make_batch(samples: list[Sample], clicks: list[list[Click]], n_roi: int,
               mean: tuple[float, ...], std: tuple[float, ...],
               prev_masks: list[np.ndarray | None] | None = None,
               device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Network tensors for a batch: x (B, 5, S, S) — (B, 6, S, S) with ``prev_masks`` (one
    bool (S, S) mask or None = empty per sample) —, gt / valid (B, 1, S, S), boxes
    (B*n_roi, 4), roi_batch (B*n_roi,). Every image gets exactly n_roi ROIs (repeated when
    fewer). Built on ``device`` (default CPU): normalisation and click maps run there."""
    shape = samples[0].gt.shape
    m = torch.tensor(mean, device=device)[:, None, None]
    s = torch.tensor(std, device=device)[:, None, None]
    rgb = torch.from_numpy(np.stack([sample.rgb for sample in samples])).to(device)
    parts = [(rgb.permute(0, 3, 1, 2) - m) / s,
             click_distance_maps(shape, clicks, device) / 255.0]
    if prev_masks is not None:
        prev = np.zeros((len(samples), 1, *shape), np.float32)
        for k, p in enumerate(prev_masks):
            if p is not None:
                prev[k, 0] = p
        parts.append(torch.from_numpy(prev).to(device))
    gt = torch.from_numpy(np.stack([sample.gt for sample in samples]))[:, None]
    valid = ~torch.from_numpy(np.stack([sample.ignore for sample in samples]))[:, None]
    boxes = np.concatenate([pad_rois(propose_rois(cl, shape, n_roi), n_roi) for cl in clicks])
    return {"x": torch.cat(parts, 1).float(), "gt": gt.to(device).float(),
            "valid": valid.to(device).float(),
            "boxes": torch.from_numpy(boxes).float().to(device),
            "roi_batch": torch.arange(len(samples), device=device).repeat_interleave(n_roi)}


def image_key(ref) -> str:
    """Key of the 2D image an object lives on: "stem" or "stem:zN"."""
    return ref.entry.stem + ("" if ref.slice_index is None else f":z{ref.slice_index}")


def iter_planes(image: np.ndarray, labels: np.ndarray, name: str):
    """(name, 2D image, 2D labels) for a 2D / RGB image or each slice of a (Z, Y, X) stack."""
    image, labels = np.asarray(image), np.asarray(labels)
    if labels.ndim == 2:
        if image.shape[:2] != labels.shape:
            raise ValueError(f"{name}: image {image.shape} and labels {labels.shape} differ")
        yield name, image, labels
    elif labels.ndim == 3 and image.shape[:3] == labels.shape:
        for z in range(labels.shape[0]):
            yield f"{name}:z{z}", image[z], labels[z]
    else:
        raise ValueError(f"{name}: labels {labels.shape} do not fit image {image.shape} "
                         f"(expected (H, W) or (Z, H, W) matching the image)")


def remove_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Labels with objects under ``min_area`` pixels set to background."""
    ids, counts = np.unique(labels, return_counts=True)
    small = ids[(counts < min_area) & (ids != 0)]
    return np.where(np.isin(labels, small), 0, labels) if len(small) else labels


def make_stored(image: np.ndarray, instances: np.ndarray, ignore: np.ndarray, name: str,
                max_side: int) -> StoredImage | None:
    """Normalise like the predictor and downscale; None for an unusable (constant) image."""
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    try:
        rgb = ImageNormalizer(image).window()
    except ValueError as exc:
        log.debug("skip %s: %s", name, exc)
        return None
    h, w = instances.shape
    scale = min(1.0, max_side / max(h, w))
    rgb8 = (rgb * 255).round().astype(np.uint8)
    if scale < 1:
        shape = (max(8, round(h * scale)), max(8, round(w * scale)))
        rgb8 = _resize(rgb8, shape, nearest=False)
        instances = _resize(instances, shape, nearest=True)
        ignore = _resize(ignore.astype(np.uint8), shape, nearest=True).astype(bool)
    return StoredImage(rgb8, instances, ignore, name)


def _store_refs(group: list, cache: dict, max_side: int) -> StoredImage | None:
    """One image of a folder dataset with all its listed objects as an instance map."""
    first = load_object(group[0], cache)
    if first.instance_labels is not None:  # one object per listed label id
        lab = first.instance_labels.astype(np.int64)
        lut = np.zeros(int(lab.max()) + 1, np.int32)
        lut[[ref.label for ref in group]] = np.arange(1, len(group) + 1)
        instances = lut[lab]
    else:
        instances = first.gt.astype(np.int32)
    return make_stored(first.image, instances, first.ignore.copy(), first.name, max_side)
