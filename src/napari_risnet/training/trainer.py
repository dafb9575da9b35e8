"""The training loop: sampled + iterative clicks, click-discount loss, validation by the robot
user, atomic checkpoints, ``resume`` after a kill, DDP under torchrun, bf16 autocast on CUDA.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from napari_risnet.clicks import Click
from napari_risnet.data import ObjectSample, list_objects, load_object, spread
from napari_risnet.evaluation.images import evaluate
from napari_risnet.inference.graphcut import graphcut_available
from napari_risnet.inference.predictor import Predictor, default_checkpoint, resolve_device
from napari_risnet.inference.settings import PredictorSettings
from napari_risnet.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from napari_risnet.model.grow import grow_model
from napari_risnet.model.risnet import RISNet, RISNetConfig
from napari_risnet.training.config import TrainConfig, save_config
from napari_risnet.training.datasets import ObjectPool, Sample, image_key, make_batch
from napari_risnet.training.split import is_validation
from napari_risnet.training.fast_depthwise import speed_up_dilated_depthwise
from napari_risnet.training.frozen_bf16 import run_frozen_in_bf16
from napari_risnet.training.loss import click_discount_loss, near_clicks
from napari_risnet.training.pack import is_pack, pool_from_packs
from napari_risnet.training.rollouts import (add_focus_clicks, add_iterative_clicks,
                                             cpu_has_native_bf16, rollout_autocast)
from napari_risnet.training.sampling import sample_clicks
from napari_risnet.training.teacher import build_teacher, distill_term

log = logging.getLogger(__name__)


def build_model(config: TrainConfig, device: torch.device) -> tuple[RISNet, dict]:
    """A fresh model (ImageNet backbone) or the ``init_checkpoint`` to fine-tune, grown by
    ``config.grow`` (new parts initialised so the starting model answers as before)."""
    if config.init_checkpoint:
        path = default_checkpoint() if config.init_checkpoint == "default" \
            else Path(config.init_checkpoint)
        model, meta = load_checkpoint(path, map_location=device)
        if config.grow:
            model = grow_model(model, **config.grow)
        return model, meta
    if config.grow:
        raise ValueError("`grow` needs an init_checkpoint to grow; for a fresh model put "
                         "prev_mask / decoder_channels in [model]")
    return RISNet(RISNetConfig.from_dict(config.model)).to(device), {}


def make_optimizer(config: TrainConfig, model: torch.nn.Module
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.lr_step_epochs,
                                            gamma=config.lr_gamma)
    return opt, sched


def freeze_early_stages(model: RISNet, n_blocks: int) -> list[str]:
    """Stop training the stem and the first ``n_blocks`` EfficientNet stages (high resolution,
    generic edges: a large part of a CPU step's backward, little to gain from a short
    schedule). The previous mask joins after stage 2, so it keeps its gradient. Returns the
    frozen parameter names."""
    if n_blocks <= 0:
        return []
    body = getattr(model.backbone, "body", None)
    if body is None:
        raise ValueError(f"freeze_stages needs the efficientnet_lite0 backbone, not "
                         f"{model.config.backbone}")
    frozen = []
    for prefix, module in _frozen_named(body, n_blocks):
        for name, p in module.named_parameters():
            p.requires_grad_(False)
            frozen.append(f"{prefix}.{name}")
    return frozen


def _frozen_named(body: torch.nn.Module, n_blocks: int) -> list[tuple[str, torch.nn.Module]]:
    return [("conv_stem", body.conv_stem), ("bn1", body.bn1)] + \
        [(f"blocks.{i}", body.blocks[i]) for i in range(min(n_blocks, len(body.blocks)))]


def frozen_modules(model: RISNet, n_blocks: int) -> list[torch.nn.Module]:
    """The modules :func:`freeze_early_stages` freezes (none for ``n_blocks <= 0``)."""
    body = getattr(model.backbone, "body", None)
    if body is None or n_blocks <= 0:
        return []
    return [module for _, module in _frozen_named(body, n_blocks)]


def _frozen_bn_eval(model: RISNet, n_blocks: int, all_statistics: bool = False) -> None:
    """Frozen stages keep their BatchNorm statistics (eval mode) while the rest trains; with
    ``all_statistics`` every BatchNorm does (its scale and shift still train)."""
    for module in frozen_modules(model, n_blocks):
        module.eval()
    if all_statistics:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


@dataclass
class ValidationSet:
    samples: list[ObjectSample]
    use_graphcut: bool = True  # without PyMaxflow (a bare GPU node) the network's mask alone

    def noc85(self, model: RISNet, device: torch.device, max_clicks: int) -> float:
        """Mean NoC@85 of the robot user (graph cut on, as users get it, where available)."""
        if not self.samples:
            return float("nan")
        was_training = model.training
        settings = PredictorSettings(use_graphcut=self.use_graphcut and graphcut_available())
        predictor = Predictor(model, settings, device=device)
        summary, _ = evaluate(predictor, self.samples, max_clicks=max_clicks, stop_iou=0.85)
        model.train(was_training)
        return summary.noc85


def held_out_objects(config: TrainConfig, per_source: int
                     ) -> tuple[list[tuple[str, list[ObjectSample]]], set[str]]:
    """Per training folder (in recipe order): ``per_source`` objects spread over its held-out
    images; and the keys of all held-out images, which training must exclude."""
    by_source, exclude = [], set()
    for src in config.data:
        refs, _ = list_objects(src.path, src.objects, src.min_area)
        val_refs = [r for r in refs if is_validation(image_key(r), config.val_fraction)]
        exclude |= {image_key(r) for r in val_refs}
        cache: dict = {}
        by_source.append((src.path, [load_object(r, cache) for r in spread(val_refs, per_source)]))
    return by_source, exclude


def validation_from_folders(config: TrainConfig) -> tuple[ValidationSet, set[str]]:
    """Held-out objects of every training folder, and the image keys to exclude from training."""
    per_source = max(1, config.val_objects // max(1, len(config.data)))
    by_source, exclude = held_out_objects(config, per_source)
    return ValidationSet([s for _, samples in by_source for s in samples]), exclude


class Trainer:
    """Owns model, optimizer, data and the loop; ``run`` trains and validates every epoch."""

    def __init__(self, config: TrainConfig, pool: ObjectPool, val: ValidationSet,
                 resume: bool = False,
                 progress: Callable[[int, int, str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 batches: Iterator[tuple[list[Sample], list[list[Click]]]] | None = None,
                 clock_start: float | None = None) -> None:
        """``batches``: (samples, clicks) made elsewhere (DataLoader workers) instead of in
        ``train_step``; ``clock_start``: when ``time_budget_s`` started (default: now)."""
        self.config = config
        cuda = torch.cuda.is_available() and config.device != "cpu"
        self.rank, self.world = _init_distributed(cuda)
        self.device = resolve_device(config.device) if self.world == 1 else \
            torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if cuda \
            else torch.device("cpu")
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)  # the same start on every rank (and its weight average)
        self.pool, self.val = pool, val
        self.out = Path(config.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.model, self.base_meta = build_model(config, self.device)
        # the starting model (before resume replaces the weights) unless another is named
        self.teacher = build_teacher(self.model, config.distill_checkpoint, self.device) \
            if config.distill_weight > 0 else None
        self.distilled_sources = [d.distill for d in config.data]
        torch.manual_seed(config.seed + self.rank)  # ...but each rank its own random draws
        self.frozen = freeze_early_stages(self.model, config.freeze_stages)
        self.model.train()
        _frozen_bn_eval(self.model, config.freeze_stages, config.freeze_bn_statistics)
        self.model.to(memory_format=torch.channels_last)  # ~1.6x faster depthwise convs on CPU
        if self.device.type == "cpu":  # oneDNN's dilated depthwise input gradient is slow
            speed_up_dilated_depthwise(self.model)
            if config.cpu_bf16_frozen and cpu_has_native_bf16():
                run_frozen_in_bf16(frozen_modules(self.model, config.freeze_stages))
        self.opt, self.sched = make_optimizer(config, self.model)
        self.ema = _weight_average(self.model, config.ema_decay)
        self.rng = np.random.default_rng(config.seed + 1000 * self.rank)
        self.epoch, self.step, self.best = 0, 0, float("inf")
        self.history: list[dict] = []
        self.progress, self.should_stop = progress, should_stop
        self.batches = batches
        self.robot_pool = None
        if config.robot_workers > 0:  # forkserver: safe after CUDA initialisation
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.robot_pool = ProcessPoolExecutor(
                config.robot_workers, mp_context=multiprocessing.get_context("forkserver"))
            for _ in range(config.robot_workers):  # start them now, beside the first validation
                self.robot_pool.submit(int)
        self.deadline = (clock_start or time.time()) + config.time_budget_s \
            if config.time_budget_s > 0 else None
        self._last_save, self._save_s, self._val_s, self._step_s = time.time(), 0.0, 0.0, 0.0
        if resume and (self.out / "last.pt").is_file():
            self._resume(self.out / "last.pt")
        self.ddp = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _resume(self, path: Path) -> None:
        payload = read_checkpoint(path, map_location=self.device)
        state = {k: v.float() if v.is_floating_point() else v
                 for k, v in payload["state_dict"].items()}
        self.model.load_state_dict(state, strict=True)
        ts = payload["train_state"]
        self.opt.load_state_dict(ts["optimizer"])
        self.sched.load_state_dict(ts["scheduler"])
        self.epoch, self.step, self.best = ts["epoch"], ts["step"], ts["best"]
        if self.ema is not None and "ema" in ts:
            self.ema.load_state_dict(ts["ema"])
        self.history = json.loads(ts["history"])
        self.rng.bit_generator.state = json.loads(ts["rng"])
        log.info("resumed from %s at epoch %d step %d", path, self.epoch, self.step)

    def _save_last(self) -> None:
        if self.rank != 0:
            return
        tic = time.time()
        ts = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
              "epoch": self.epoch, "step": self.step, "best": self.best,
              "history": json.dumps(self.history),
              "rng": json.dumps(self.rng.bit_generator.state)}
        if self.ema is not None:
            ts["ema"] = self.ema.state_dict()
        save_checkpoint(self.out / "last.pt", self.model, self._meta(), extra={"train_state": ts})
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))
        self._last_save, self._save_s = time.time(), time.time() - tic

    @property
    def evaluated_model(self) -> RISNet:
        """What validation scores and best.pt keeps: the weight average when there is one."""
        return self.model if self.ema is None else self.ema.module

    def _out_of_time(self) -> bool:
        """True when one more step, a validation and a save would overrun the time budget."""
        if self.deadline is None:
            return False
        late = time.time() + self._step_s + 1.5 * self._val_s + self._save_s + 1.0 \
            >= self.deadline
        if self.world > 1:  # every rank stops at the same step, or the others wait forever
            import torch.distributed as dist

            flag = torch.tensor([float(late)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            late = bool(flag.item() > 0)
        return late

    def _meta(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "best_val_noc85": self.best,
                "config": json.dumps(self.config.to_dict())}

    def train_step(self) -> dict[str, float]:
        cfg = self.config
        if self.batches is not None:
            samples, clicks = next(self.batches)
        else:
            samples = [self.pool.sample(self.rng, cfg.crop_size, cfg.full_image_prob,
                                        focus_prob=cfg.focus_prob,
                                        augmentations=cfg.augment)
                       for _ in range(cfg.batch_size)]
            clicks = [sample_clicks(s.gt, s.ignore, s.others, self.rng, cfg.max_positive,
                                    cfg.max_negative) for s in samples]
        prev: list[np.ndarray | None] = [None] * len(samples)
        if cfg.iterative_prob > 0:
            clicks, prev = add_iterative_clicks(self.model, samples, clicks, cfg, self.rng,
                                                self.device, self.robot_pool)
        clicks, prev = add_focus_clicks(samples, clicks, prev, self.robot_pool)
        # the rollouts end with model.train(), every module: the frozen stages' BatchNorm would
        # then normalise with the batch's statistics and overwrite the running ones
        _frozen_bn_eval(self.model, cfg.freeze_stages, cfg.freeze_bn_statistics)
        keep = [i for i, c in enumerate(clicks) if c]
        batch = make_batch([samples[i] for i in keep], [clicks[i] for i in keep], cfg.n_roi,
                           self.model.image_mean, self.model.image_std,
                           [prev[i] for i in keep] if self.model.config.prev_mask else None,
                           self.device)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        net = self.ddp or self.model
        use_amp = cfg.amp and self.device.type == "cuda"
        x = batch["x"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = net(x, batch["boxes"], batch["roi_batch"], out_scale=1 / cfg.loss_stride)
        gt, valid = batch["gt"], batch["valid"]
        near = near_clicks(batch["x"][:, 3:5] * 255.0, cfg.click_radius) \
            if cfg.click_weight > 0 else None
        if cfg.loss_stride > 1:  # soft targets; a pixel counts when all it covers is valid
            gt = F.avg_pool2d(gt, cfg.loss_stride)
            valid = (F.avg_pool2d(valid, cfg.loss_stride) > 0.999).float()
            near = None if near is None else (F.avg_pool2d(near, cfg.loss_stride) > 0).float()
        out.global_logits = out.global_logits.float()
        if out.pasted_logits is not None:
            out.pasted_logits = out.pasted_logits.float()
        if out.refined_logits is not None:
            out.refined_logits = out.refined_logits.float()
        terms = click_discount_loss(out, gt, valid, cfg.n_roi, cfg.gamma,
                                    cfg.local_aux_weight, cfg.refine_weight, cfg.iou_weight,
                                    near, cfg.click_weight)
        distill = None
        if self.teacher is not None:
            held = [self._distilled(samples[i].source) for i in keep]
            distill = distill_term(self.teacher, out, x, batch, valid, held, 1 / cfg.loss_stride,
                                   rollout_autocast(cfg, self.device))
            terms.total = terms.total + cfg.distill_weight * distill
        self.opt.zero_grad(set_to_none=True)
        terms.total.backward()
        self.opt.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        result = {"loss": terms.total.item(), "global": terms.global_loss.item(),
                  "local": terms.local_term.item(), "fused": terms.fused_loss.item()}
        if terms.refined_loss is not None:
            result["refined"] = terms.refined_loss.item()
        if terms.iou_loss is not None:
            result["iou"] = terms.iou_loss.item()
        if terms.click_loss is not None:
            result["click"] = terms.click_loss.item()
        if distill is not None:
            result["distill"] = distill.item()
        return result

    def _distilled(self, source: int) -> bool:
        """Whether the teacher holds this folder's answers (a pool built in memory has one
        source and no [[data]] list: held)."""
        return self.distilled_sources[source] if source < len(self.distilled_sources) else True

    def run(self) -> dict:
        """Train to ``config.epochs``; returns the summary (also in out_dir/summary.json)."""
        cfg = self.config
        if self.rank == 0:
            save_config(cfg, self.out / "config.toml")
        total = cfg.epochs * cfg.steps_per_epoch
        bar = tqdm(total=total, initial=self.step, desc="train", unit="step",
                   disable=self.rank != 0 or self.progress is not None)
        if cfg.validate_at_start and self.step == 0 and self.rank == 0 and not self.history:
            self._say(total, "measuring the starting model")
            self.history.append({"epoch": 0, "val_noc85": self._validate()})
        t0, steps0 = time.time(), self.step
        stopped = out_of_time = False
        running: dict[str, float] = {}
        while self.epoch < cfg.epochs and not stopped and not out_of_time:
            running = {}
            while self.step < (self.epoch + 1) * cfg.steps_per_epoch:
                if self.should_stop is not None and self.should_stop():
                    stopped = True
                    break
                if self._out_of_time():
                    out_of_time = True
                    break
                tic = time.time()
                terms = self.train_step()
                self._step_s = time.time() - tic
                self.step += 1
                for k, v in terms.items():
                    running[k] = 0.9 * running.get(k, v) + 0.1 * v
                rate = (self.step - steps0) * cfg.batch_size * self.world / (time.time() - t0)
                bar.update(1)
                bar.set_postfix(loss=f"{running['loss']:.3f}", sps=f"{rate:.1f}")
                if self.progress is not None:
                    self.progress(self.step, total, f"loss {running['loss']:.3f}")
                if self.step % cfg.checkpoint_every == 0 or (
                        cfg.checkpoint_every_s and
                        time.time() - self._last_save >= cfg.checkpoint_every_s):
                    self._save_last()
            if stopped:
                break
            if out_of_time:  # a part-epoch: validate it (best.pt), keep the epoch to resume
                if self.rank == 0 and self.step > steps0 and (
                        not self.history or self.history[-1].get("step") != self.step):
                    self._record(running, t0, steps0, partial=True)
                self._save_last()
                break
            self.epoch += 1
            self.sched.step()
            if self.rank == 0:
                self._say(total, f"epoch {self.epoch}: validating")
                self._record(running, t0, steps0)
            self._save_last()
        bar.close()
        if self.robot_pool is not None:
            self.robot_pool.shutdown(wait=False, cancel_futures=True)
        if self.rank == 0 and not (self.out / "best.pt").is_file():
            save_checkpoint(self.out / "best.pt", self.evaluated_model, self._meta())
        return {"history": self.history, "best_val_noc85": self.best, "stopped": stopped,
                "out_of_time": out_of_time, "steps": self.step,
                "best": str(self.out / "best.pt")}

    def _say(self, total: int, what: str) -> None:
        """Progress for the slow moments between steps (validation by the robot user)."""
        if self.progress is not None and self.val.samples:
            self.progress(self.step, total, f"{what} on {len(self.val.samples)} held-out "
                                            f"objects…")

    def _record(self, running: dict[str, float], t0: float, steps0: int,
                partial: bool = False) -> None:
        """Validate, append to the history, keep best.pt, write history.json."""
        cfg = self.config
        rate = (self.step - steps0) * cfg.batch_size * self.world / (time.time() - t0)
        noc = self._validate()
        self.history.append({"epoch": self.epoch, "step": self.step, "val_noc85": noc,
                             "samples_per_s": round(rate, 2),
                             **({"partial_epoch": True} if partial else {}),
                             **{k: round(v, 4) for k, v in running.items()}})
        log.info("epoch %d: %s", self.epoch, self.history[-1])
        if noc <= self.best:
            self.best = noc
            save_checkpoint(self.out / "best.pt", self.evaluated_model, self._meta())
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))

    def _validate(self) -> float:
        tic = time.time()
        noc = self.val.noc85(self.evaluated_model, self.device, self.config.val_max_clicks)
        self._val_s = time.time() - tic
        return noc


def _weight_average(model: RISNet, decay: float) -> "torch.optim.swa_utils.AveragedModel | None":
    """An exponential moving average of ``model``'s weights and BN statistics (None when
    ``decay`` is 0). Late in a CPU schedule the raw weights swing by more than a click of
    validation NoC from one epoch to the next; their average does not."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _init_distributed(cuda: bool) -> tuple[int, int]:
    """(rank, world size) under torchrun (its environment variables); NCCL on GPUs, gloo on
    CPUs (``device = "cpu"`` in the recipe trains on the CPU even where CUDA exists)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def train(config: TrainConfig, resume: bool = False, clock_start: float | None = None) -> dict:
    """Train from the recipe's folders or packs (the `napari-risnet train` command);
    ``clock_start``: when the recipe's ``time_budget_s`` began (default: when training does)."""
    if not config.data:
        raise ValueError("the training config lists no [[data]] folders")
    packed = [is_pack(d.path) for d in config.data]
    if any(packed):
        if not all(packed):
            raise ValueError("a recipe reads either packed folders or original ones, not both: "
                             "pack all its [[data]] folders with `napari-risnet pack`")
        pool, val_samples = pool_from_packs(config)
        print(f"{len(pool)} training objects in {len(pool.images)} packed images, "
              f"{len(val_samples)} validation objects")
        return _run(config, pool, ValidationSet(val_samples), resume, clock_start)
    val, exclude = validation_from_folders(config)
    bar = tqdm(desc="loading images", unit="img", mininterval=2.0)

    def progress(done: int, total: int) -> None:
        if done == 1:
            bar.reset(total=total)
        bar.update(1)

    pool = ObjectPool.from_folders([(d.path, d.weight, d.objects, d.min_area)
                                    for d in config.data], config.max_side, exclude, progress)
    bar.close()
    print(f"{len(pool)} training objects in {len(pool.images)} images "
          f"({pool.skipped} skipped), {len(val.samples)} validation objects")
    return _run(config, pool, val, resume, clock_start)


def _run(config: TrainConfig, pool: ObjectPool, val: ValidationSet, resume: bool,
         clock_start: float | None) -> dict:
    """Start the loader workers (before the model reaches the GPU), then train."""
    val.use_graphcut = config.val_graphcut
    batches = None
    if config.workers > 0:
        from napari_risnet.training.loader import sample_batches

        rank = int(os.environ.get("RANK", "0"))  # each DDP rank its own batches
        batches = sample_batches(pool, config, config.seed + 7919 + 1000 * rank)
    summary = Trainer(config, pool, val, resume=resume, batches=batches,
                      clock_start=clock_start).run()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 writes best.pt last
        dist.destroy_process_group()
    return summary
