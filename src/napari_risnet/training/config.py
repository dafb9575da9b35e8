"""Training recipe as a dataclass <-> TOML file; unknown keys are an error, not a silent no-op."""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from napari_risnet.training.augment import AugmentConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class DataSource:
    """One training folder (../shared/data layout) and its share of the samples."""

    path: str
    weight: float = 1.0
    objects: str = "auto"  # auto | labels | masks
    min_area: int = 16
    # with distill_weight > 0: hold this folder's answers near the teacher's (false for a new
    # domain the teacher does not know, whose answers the run is meant to change)
    distill: bool = True


@dataclass
class TrainConfig:
    """Everything a training run needs; written next to its checkpoints."""

    data: list[DataSource] = field(default_factory=list)
    out_dir: str = "runs/default"
    model: dict[str, Any] = field(default_factory=dict)  # RISNetConfig fields
    init_checkpoint: str = ""  # fine-tune from this checkpoint ("default" = bundled)
    # grow the init_checkpoint's model: {prev_mask = true, decoder_channels = 32} (new parts
    # start so that the grown model answers exactly as the old one)
    grow: dict[str, Any] = field(default_factory=dict)
    freeze_stages: int = 0  # stem + this many EfficientNet stages not trained (CPU speed)
    # every BatchNorm keeps the starting model's running statistics (their scale and shift still
    # train): fine-tuning on 8 augmented crops of several domains otherwise moves the statistics
    # every layer normalises with, for every domain at once
    freeze_bn_statistics: bool = False
    refine_weight: float = 1.0  # loss weight of the decoder's refined fusion
    iou_weight: float = 0.0  # loss weight of 1 - soft IoU of the final answer (0 = off)
    # loss weight of the final answer's normalised focal loss (0 = off; RITM's answer loss): the
    # pixels still wrong carry the loss however few they are, as late clicks need
    nfl_weight: float = 0.0
    nfl_gamma: float = 2.0
    # loss weight of the final answer's BCE within click_radius px of the clicks (0 = off): a
    # click must flip its own neighbourhood, firmly (what click_threshold / click_prior patch)
    click_weight: float = 0.0
    click_radius: float = 5.0
    # which clicks' neighbourhoods that term covers: "all" of a sample's clicks, or "last": only
    # the corrective click a rollout (or focus crop) ended with, on those samples only. A first
    # click's neighbourhood is then left to the main loss: what a sample's first answer must
    # be does not change, only that a correction is obeyed where it was made
    click_scope: str = "all"
    # loss weight of the final answer's KL divergence from a frozen teacher's answer on the same
    # input (0 = off; "learning without forgetting"): fine-tuning on a new domain pulls the
    # weights away from what the bundled model does well; the teacher holds the folders marked
    # `distill = true` near it while the ground truth keeps teaching. distill_checkpoint: the
    # teacher ("" = the starting model, the init_checkpoint as grown; "default" = bundled)
    distill_weight: float = 0.0
    distill_checkpoint: str = ""
    # pull of the trained weights back toward the starting model's, decoupled from the loss as
    # AdamW's weight decay is (L2-SP, Li et al. 2018; 0 = off): after every step each weight
    # moves lr * anchor_decay of the way back to where it started. The teacher holds answers on
    # the folders it is asked to; the anchor holds the weights every folder shares, so a new
    # domain cannot move them far for free (what drifted natural photos' late clicks).
    anchor_decay: float = 0.0
    # exponential moving average of the weights (0 = off): validation, best.pt and the final
    # model use the average, which does not swing from epoch to epoch as the raw weights do
    ema_decay: float = 0.0
    crop_size: int = 320
    loss_stride: int = 2  # loss on logits at 1/loss_stride of the crop (speed)
    batch_size: int = 8
    epochs: int = 10
    steps_per_epoch: int = 250
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_step_epochs: int = 5
    lr_gamma: float = 0.1
    gamma: float = 0.8  # click-discount factor of the seed's loss
    n_roi: int = 5
    local_aux_weight: float = 0.5
    max_positive: int = 5
    max_negative: int = 10
    iterative_prob: float = 0.5
    iterative_clicks: int = 2
    full_image_prob: float = 0.2
    # [augment]: grey, inversion, gamma, contrast, blur, noise, scale on the crops (all off
    # by default: the recipes without the table sample exactly what they sampled before)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # share of samples cut as the predictor's focus pass sees a large object (a window at image
    # resolution around its boundary, a coarse previous mask, a robot click on its error)
    focus_prob: float = 0.0
    max_side: int = 640
    val_fraction: float = 0.05
    val_objects: int = 40
    val_max_clicks: int = 10
    validate_at_start: bool = False  # NoC of the starting model (fine-tuning reports it)
    checkpoint_every: int = 100
    device: str = "auto"
    threads: int = 0
    amp: bool = True  # bf16 autocast on CUDA (training steps and rollouts)
    # the no-grad robot rollouts under bf16 autocast on a CPU with native bf16 (avx512_bf16 /
    # AMX): their forward runs 2x faster there, while fp32 training steps gain nothing from it
    cpu_bf16_rollouts: bool = True
    # the frozen early stages' forward (no gradient flows there) in bf16 on such a CPU
    cpu_bf16_frozen: bool = True
    seed: int = 0
    # --- wall-time budget, data-loader workers, validation without PyMaxflow (the GPU run) ---
    time_budget_s: float = 0.0  # stop training (then validate and save) by this wall time; 0 = off
    checkpoint_every_s: float = 0.0  # also write last.pt + history.json this often; 0 = off
    workers: int = 0  # DataLoader worker processes sampling crops + clicks; 0 = main process
    robot_workers: int = 0  # processes placing the iterative robot clicks; 0 = main process
    val_graphcut: bool = True  # validate with the graph cut (off, or no PyMaxflow: network mask)

    def __post_init__(self) -> None:
        self.data = [d if isinstance(d, DataSource) else _build(DataSource, d, "data")
                     for d in self.data]
        if not isinstance(self.augment, AugmentConfig):
            self.augment = _build(AugmentConfig, self.augment, "augment")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        for name in ("refine_weight", "iou_weight", "local_aux_weight", "click_weight",
                     "distill_weight", "anchor_decay", "nfl_weight", "nfl_gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("iterative_prob", "full_image_prob", "focus_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.distill_weight > 0 and not (self.init_checkpoint or self.distill_checkpoint):
            raise ValueError("distill_weight > 0 needs a teacher: set init_checkpoint (the "
                             "starting model is the teacher) or distill_checkpoint")
        if self.anchor_decay * self.lr > 1.0:
            raise ValueError(f"anchor_decay * lr must be <= 1 (a step pulls at most all the way "
                             f"back to the start), got {self.anchor_decay} * {self.lr}")
        if self.click_scope not in ("all", "last"):
            raise ValueError(f"click_scope must be 'all' or 'last', got {self.click_scope!r}")
        if self.click_radius < 1:
            raise ValueError(f"click_radius must be >= 1 pixel, got {self.click_radius}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        unknown = set(self.grow) - {"prev_mask", "decoder_channels"}
        if unknown:
            raise ValueError(f"unknown key(s) in grow: {sorted(unknown)}; known: "
                             f"['decoder_channels', 'prev_mask']")
        if self.crop_size % 16:
            raise ValueError(f"crop_size must be a multiple of 16, got {self.crop_size}")
        for name in ("time_budget_s", "checkpoint_every_s", "workers", "robot_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "epochs", "steps_per_epoch", "n_roi"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls: type, d: dict[str, Any], where: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"[{where}] must be a table, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in [{where}]: {unknown}; known: {sorted(known)}")
    return cls(**d)


#: the top-level key naming the recipe a recipe builds on (a path relative to the recipe)
EXTENDS = "extends"
#: the array of tables that changes keys of the base's ``[[data]]`` entries, each named by its
#: path, instead of writing the whole list again to change one key
DATA_UPDATE = "data_update"


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} does not exist")
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from exc


def _resolve_paths(raw: dict[str, Any], here: Path) -> None:
    """Make the recipe's relative paths (data, out_dir, init_checkpoint, distill_checkpoint)
    absolute against its own folder, in place: each file of an ``extends`` chain names paths
    from where it lies."""
    def resolve(p: Any) -> Any:
        return p if not isinstance(p, str) or Path(p).is_absolute() else str((here / p).resolve())

    for key in ("data", DATA_UPDATE):
        entries = raw.get(key)
        for d in entries if isinstance(entries, list) else []:
            if isinstance(d, dict) and "path" in d:
                d["path"] = resolve(d["path"])
    if "out_dir" in raw:
        raw["out_dir"] = resolve(raw["out_dir"])
    for key in ("init_checkpoint", "distill_checkpoint"):
        if raw.get(key) and raw[key] != "default":
            raw[key] = resolve(raw[key])


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s keys on top; tables merge key by key (``[model]``, its
    ``backbone_kwargs``), anything else (a number, the ``[[data]]`` list) is replaced whole."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _updated_data(path: Path, data: Any, updates: Any) -> list[dict[str, Any]]:
    """The base's ``[[data]]`` entries with each ``[[data_update]]`` entry's keys on top of the
    entry of the same path; an update naming no entry of the list is an error, not a no-op."""
    if not isinstance(updates, list) or not all(isinstance(u, dict) for u in updates):
        raise ValueError(f"{path}: {DATA_UPDATE} must be an array of tables ([[{DATA_UPDATE}]])")
    out = [dict(d) for d in data] if isinstance(data, list) else []
    for update in updates:
        if "path" not in update:
            raise ValueError(f"{path}: every [[{DATA_UPDATE}]] names the path of the data "
                             f"folder it changes")
        match = [d for d in out if d.get("path") == update["path"]]
        if not match:
            known = ", ".join(str(d.get("path")) for d in out) or "none"
            raise ValueError(f"{path}: [[{DATA_UPDATE}]] {update['path']} is not a data folder "
                             f"of the recipe it extends (its folders: {known})")
        match[0].update(update)
    return out


def _load_raw(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The recipe's keys with those of the recipes it ``extends`` beneath them, paths resolved."""
    path = path.resolve()
    if path in chain:
        raise ValueError("training configs extend each other in a circle: "
                         + " -> ".join(str(p) for p in (*chain, path)))
    raw = _read_toml(path)
    _resolve_paths(raw, path.parent)
    parent = raw.pop(EXTENDS, None)
    updates = raw.pop(DATA_UPDATE, None)
    if parent is None:
        if updates is not None:
            raise ValueError(f"{path}: [[{DATA_UPDATE}]] changes the data of the recipe it "
                             f"extends, and this recipe extends none: edit its [[data]]")
        return raw
    if not isinstance(parent, str) or not parent:
        raise ValueError(f"{path}: {EXTENDS} must name a recipe file, got {parent!r}")
    base = _load_raw(path.parent / parent, (*chain, path))
    if "out_dir" in base and "out_dir" not in raw:
        raise ValueError(f"{path} extends {parent} but sets no out_dir: set one, so that its "
                         f"run does not write into (or resume) {base['out_dir']}")
    merged = _merged(base, raw)
    if updates is not None:
        merged["data"] = _updated_data(path, merged.get("data"), updates)
    return merged


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML recipe; relative paths (data, out_dir, init_checkpoint, distill_checkpoint)
    are resolved against the recipe's folder, so a recipe runs the same from any working
    directory. ``extends = "other.toml"`` builds on another recipe: only what differs is
    written (tables merge key by key, the ``[[data]]`` list is replaced whole, and
    ``[[data_update]]`` entries change keys of the entry of the same ``path``; ``out_dir``
    must be set again, so two recipes never share a run folder)."""
    return _build(TrainConfig, _load_raw(Path(path)), "top level")


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the recipe as TOML; as JSON beside it (``.json``) where tomli-w is not installed
    (a bare GPU node), so a run never fails for want of a writer. Returns the file written."""
    d = config.to_dict()
    try:
        import tomli_w
    except ImportError:
        import json

        path = Path(path).with_suffix(".json")
        path.write_text(json.dumps(d, indent=1))
        return path
    Path(path).write_text(tomli_w.dumps(d))
    return Path(path)
