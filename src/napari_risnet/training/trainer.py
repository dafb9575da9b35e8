"""The training loop: sampled + iterative clicks, click-discount loss, validation by the robot
user, atomic checkpoints, ``resume`` after a kill, DDP under torchrun, bf16 autocast on CUDA.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import resolve_device
from napari_risnet.model.checkpoint import read_checkpoint, save_checkpoint
from napari_risnet.model.risnet import RISNet
from napari_risnet.training.anchor import WeightAnchor
from napari_risnet.training.config import TrainConfig, save_config
from napari_risnet.training.datasets import ObjectPool, Sample, click_distance_maps, make_batch
from napari_risnet.training.fast_depthwise import speed_up_dilated_depthwise
from napari_risnet.training.frozen_bf16 import run_frozen_in_bf16
from napari_risnet.training.loss import click_discount_loss, near_clicks
from napari_risnet.training.model_setup import (build_model, freeze_early_stages, frozen_bn_eval,
                                                frozen_modules, make_optimizer)
from napari_risnet.training.pack import is_pack, pool_from_packs
from napari_risnet.training.rollouts import (add_focus_clicks, add_iterative_clicks,
                                             cpu_has_native_bf16, rollout_autocast)
from napari_risnet.training.sampling import sample_clicks
from napari_risnet.training.teacher import build_teacher, distill_term
from napari_risnet.training.validation import ValidationSet, validation_from_folders

log = logging.getLogger(__name__)


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
        frozen_bn_eval(self.model, config.freeze_stages, config.freeze_bn_statistics)
        self.model.to(memory_format=torch.channels_last)  # ~1.6x faster depthwise convs on CPU
        if self.device.type == "cpu":  # oneDNN's dilated depthwise input gradient is slow
            speed_up_dilated_depthwise(self.model)
            if config.cpu_bf16_frozen and cpu_has_native_bf16():
                run_frozen_in_bf16(frozen_modules(self.model, config.freeze_stages))
        self.opt, self.sched = make_optimizer(config, self.model)
        # before a resume replaces the weights: the anchor is where the run started
        self.anchor = WeightAnchor(self.model, config.anchor_decay) \
            if config.anchor_decay > 0 else None
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
        sampled = [len(c) for c in clicks]  # clicks beyond these are the robot's corrections
        if cfg.iterative_prob > 0:
            clicks, prev = add_iterative_clicks(self.model, samples, clicks, cfg, self.rng,
                                                self.device, self.robot_pool)
        clicks, prev = add_focus_clicks(samples, clicks, prev, self.robot_pool)
        # the rollouts end with model.train(), every module: the frozen stages' BatchNorm would
        # then normalise with the batch's statistics and overwrite the running ones
        frozen_bn_eval(self.model, cfg.freeze_stages, cfg.freeze_bn_statistics)
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
        near = self._click_neighbourhood(batch, [clicks[i] for i in keep],
                                         [len(clicks[i]) > sampled[i] for i in keep])
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
                                    near, cfg.click_weight, cfg.nfl_weight, cfg.nfl_gamma)
        distill = None
        if self.teacher is not None:
            held = [self._distilled(samples[i].source) for i in keep]
            distill = distill_term(self.teacher, out, x, batch, valid, held, 1 / cfg.loss_stride,
                                   rollout_autocast(cfg, self.device))
            terms.total = terms.total + cfg.distill_weight * distill
        self.opt.zero_grad(set_to_none=True)
        terms.total.backward()
        self.opt.step()
        if self.anchor is not None:
            self.anchor.pull(self.opt.param_groups[0]["lr"])
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
        if terms.nfl_loss is not None:
            result["nfl"] = terms.nfl_loss.item()
        if distill is not None:
            result["distill"] = distill.item()
        if self.anchor is not None:
            result["anchor_rms"] = self.anchor.distance()
        return result

    def _click_neighbourhood(self, batch: dict[str, torch.Tensor], clicks: list[list[Click]],
                             corrected: list[bool]) -> torch.Tensor | None:
        """The pixels the click term scores (None when it is off): near every click, or
        (``click_scope = "last"``) near the corrective click of the samples that have one."""
        cfg = self.config
        if cfg.click_weight <= 0:
            return None
        if cfg.click_scope == "all":
            return near_clicks(batch["x"][:, 3:5] * 255.0, cfg.click_radius)
        last = [[c[-1]] if fixed else [] for c, fixed in zip(clicks, corrected)]
        # untruncated: a sample without a corrective click marks no pixel, whatever the radius
        distances = click_distance_maps(tuple(batch["gt"].shape[-2:]), last, batch["gt"].device,
                                        truncation=math.inf)
        return near_clicks(distances, cfg.click_radius)

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
