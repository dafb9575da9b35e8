"""Speed and scale of napari-risnet on this machine; prints tables (not part of the tests).

    python benchmarks/speed.py [--checkpoint default] [--threads 2] [--skip-sam] [--skip-huge] \
        [--set NAME=VALUE ...]   # a predictor setting for section 1, e.g. fold_batchnorm=false

Sections (all in one run, so ratios compare like with like):
  1. one click end to end (predict + graph cut), median over a robot-user run, per stage,
     and its ratio to a bare backbone forward of the same network input and of the full image;
  2. cost against image size (480x640 ... a 20000^2 memory-mapped TIFF), time and peak memory
     (each size in a fresh subprocess, peak RSS from the OS);
  3. propagating one object through 60 slices of 256x256;
  4. segment-anything ViT-B (random weights: cost only) on the same CPU, if installed;
  5. training throughput (samples/s at 320x320, batch 8).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_image(shape: tuple[int, int], dtype: str = "uint8", rgb: bool = True,
                    seed: int = 0, large: bool = False, small: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Textured background with a few smooth blobs; returns the image and one blob's mask
    (``large``: a blob filling most of the image, so late clicks take the focus pass; ``small``:
    a nucleus-sized blob, seen magnified, where the predictor averages over the mirror image)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    h, w = shape
    noise = ndimage.gaussian_filter(rng.random((h, w)), 3)
    yy, xx = np.mgrid[:h, :w]
    ry, rx = (0.4, 0.4) if large else (0.03, 0.025) if small else (0.2, 0.15)
    gt = ((yy - h * 0.45) / (h * ry)) ** 2 + ((xx - w * 0.5) / (w * rx)) ** 2 < 1
    other = ((yy - h * 0.2) / (h * 0.1)) ** 2 + ((xx - w * 0.2) / (w * 0.1)) ** 2 < 1
    base = 0.3 + 0.4 * gt + 0.25 * other + 0.3 * (noise - noise.mean()) / (noise.std() + 1e-6) * 0.1
    base = np.clip(base, 0, 1)
    if dtype == "uint16":
        img = (base * 40000 + 1000).astype(np.uint16)
    else:
        img = (base * 255).astype(np.uint8)
    if rgb:
        img = np.stack([img, (img * 0.8).astype(img.dtype), img // 2], axis=-1)
    return img, gt


def robot_clicks_timings(predictor, image, gt, n_clicks: int = 20) -> list[dict]:
    from napari_risnet.evaluation.robot import RobotUser

    predictor.set_image(image)
    robot = RobotUser(gt)
    clicks = [robot.first_click()]
    prev, out = None, []
    while len(out) < n_clicks:
        tic = time.perf_counter()
        pred = predictor.predict(clicks, prev_mask=prev)
        t = dict(pred.timings)
        t["wall"] = time.perf_counter() - tic
        out.append(t)
        prev = pred.mask
        nxt = robot.next_click(pred.mask)
        if nxt is None:  # perfect: keep clicking the same object to get enough samples
            robot = RobotUser(gt)
            clicks = [robot.first_click()]
            prev = None
            continue
        clicks.append(nxt)
    return out


def bare_backbone_ms(model, shape: tuple[int, int], repeats: int = 10) -> float:
    import torch

    x = torch.randn(1, model.config.in_channels, *shape).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model.backbone(x)
        times = []
        for _ in range(repeats):
            tic = time.perf_counter()
            model.backbone(x)
            times.append(time.perf_counter() - tic)
    return 1000 * statistics.median(times)


def section_click(predictor) -> None:
    print("\n## 1. One click end to end (median over a 20-click robot-user run)\n")
    stages = ["preprocess", "backbone", "local", "fusion", "graphcut", "assemble"]
    print(f"| image | {' | '.join(stages)} | total ms | bare backbone (net input) ms | "
          f"ratio | bare backbone (full image) ms |")
    print("|" + "---|" * (len(stages) + 5))
    for name, shape, dtype, rgb, size in (
            ("480x640 RGB uint8", (480, 640), "uint8", True, ""),
            ("480x640 RGB uint8, large object (focus pass)", (480, 640), "uint8", True, "large"),
            ("512x512 uint16", (512, 512), "uint16", False, ""),
            ("512x512 uint16, small object (magnified: flip averaging)", (512, 512), "uint16",
             False, "small")):
        img, gt = synthetic_image(shape, dtype, rgb, large=size == "large", small=size == "small")
        timings = robot_clicks_timings(predictor, img, gt)
        med = {k: 1000 * statistics.median(t.get(k, 0.0) for t in timings)
               for k in stages + ["wall"]}
        from napari_risnet.inference.preprocess import fit_shape

        net = fit_shape(shape, predictor.settings.input_size)
        bb_net = bare_backbone_ms(predictor.model, net)
        bb_full = bare_backbone_ms(predictor.model, (shape[0] // 16 * 16, shape[1] // 16 * 16))
        print(f"| {name} | " + " | ".join(f"{med[s]:.1f}" for s in stages)
              + f" | {med['wall']:.1f} | {bb_net:.1f} ({net[0]}x{net[1]}) | "
                f"{med['wall'] / bb_net:.2f} | {bb_full:.1f} |")


SIZE_CHILD = r"""
import json, resource, sys, time, numpy as np, tifffile, torch
torch.set_num_threads(int(sys.argv[3]))
from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import Predictor
size, path = int(sys.argv[1]), sys.argv[2]
p = Predictor(checkpoint=sys.argv[4], device="cpu")
img = tifffile.memmap(path, mode="r")
t0 = time.perf_counter(); p.set_image(img); t_set = time.perf_counter() - t0
c = size // 2
clicks = [Click(c, c)]
t0 = time.perf_counter(); pred = p.predict(clicks); t1 = time.perf_counter() - t0
clicks.append(Click(c + size // 40 + 8, c, False))
t0 = time.perf_counter(); pred = p.predict(clicks, prev_mask=pred); t2 = time.perf_counter() - t0
print(json.dumps({"set_image": t_set, "first": t1, "second": t2,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def section_sizes(checkpoint: str, threads: int, skip_huge: bool) -> None:
    import tifffile

    print("\n## 2. Cost against image size (uint16, memory-mapped TIFF, fresh process each)\n")
    print("| image | set_image s | first click s | second click s | peak RSS MB |")
    print("|---|---|---|---|---|")
    sizes = [480, 2048, 4096] + ([] if skip_huge else [20000])
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = Path(tmp) / f"img{size}.tif"
            mm = tifffile.memmap(path, shape=(size, size), dtype=np.uint16)
            rng = np.random.default_rng(0)
            step = 2048
            yy, xx = np.mgrid[:step, :step]
            for r in range(0, size, step):  # write in tiles: never hold the image in memory
                for c in range(0, size, step):
                    h, w = min(step, size - r), min(step, size - c)
                    tile = (1000 + 200 * rng.random((h, w))).astype(np.uint16)
                    cy, cx = size // 2 - r, size // 2 - c
                    blob = ((yy[:h, :w] - cy) ** 2 + (xx[:h, :w] - cx) ** 2) < (size / 40 + 8) ** 2
                    tile[blob] += 20000
                    mm[r:r + h, c:c + w] = tile
            mm.flush()
            del mm
            out = subprocess.run([sys.executable, "-c", SIZE_CHILD, str(size), str(path),
                                  str(threads), checkpoint], capture_output=True, text=True)
            if out.returncode:
                print(f"| {size}x{size} | failed: {out.stderr.strip().splitlines()[-1]} |")
                continue
            d = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {size}x{size} | {d['set_image']:.2f} | {d['first']:.3f} | "
                  f"{d['second']:.3f} | {d['peak_mb']:.0f} |")
            path.unlink()


def section_propagation(predictor) -> None:
    from napari_risnet.annotation import AnnotationSession

    print("\n## 3. Propagating one object through 60 slices of 256x256\n")
    z = 60
    stack = np.zeros((z, 256, 256), np.uint16)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    for k in range(z):
        r = 40 + 10 * np.sin(k / 10)
        disc = (yy - 128 - k * 0.3) ** 2 + (xx - 128) ** 2 < r ** 2
        stack[k] = (1000 + 300 * rng.random((256, 256)) + 8000 * disc).astype(np.uint16)
    session = AnnotationSession(stack, segmenter=predictor)
    _drive_propagation(session)


def _drive_propagation(session) -> None:
    """Click the middle slice, commit, propagate both ways; then one correction round (a click
    on slice 45 and the re-propagation of the neighbours it affects). Prints times."""
    mid = 30
    session.add_click(Click(128, 128, True), slice_key=(mid,))
    obj = session.commit()
    tic = time.perf_counter()
    result = session.propagate(obj)
    dt = time.perf_counter() - tic
    filled = int((session.labels == obj).any(axis=(1, 2)).sum())
    print(f"| slices filled | seconds | s / slice | stopped |\n|---|---|---|---|\n"
          f"| {filled} / 60 | {dt:.2f} | {dt / max(filled - 1, 1):.3f} | "
          f"{'; '.join(f'{d:+d}: {r}' for d, r in result.stopped.items())} |")
    print("\n| correction round on slice 45 | click s | re-propagation s | slices re-run | "
          "round s |\n|---|---|---|---|---|")
    for name, converged in (("neighbours until they come out as before", 0.95),
                            ("worst case: every slice it may rewrite", 1.01)):
        session.converged_iou = converged
        rows, cols = np.nonzero(session.labels[45] == obj)
        tic = time.perf_counter()
        session.correct(obj, Click(float(rows.max()) + 2, float(cols.mean()), True), (45,))
        t_click = time.perf_counter() - tic
        tic = time.perf_counter()
        again = session.propagate(obj, from_slice=(45,))
        t_prop = time.perf_counter() - tic
        print(f"| {name} | {t_click:.2f} | {t_prop:.2f} | {len(again.slices)} | "
              f"{t_click + t_prop:.2f} |")
        session.undo()
        session.undo()


def section_sam(threads: int) -> None:
    print("\n## 4. Peer: segment-anything ViT-B, random weights (cost only)\n")
    try:
        import torch
        from segment_anything import SamPredictor, sam_model_registry
    except ImportError:
        print("segment-anything is not installed (pip install segment-anything): skipped")
        return
    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"](checkpoint=None).eval()
    pred = SamPredictor(sam)
    img, _ = synthetic_image((480, 640))
    tic = time.perf_counter()
    pred.set_image(img)
    t_embed = time.perf_counter() - tic
    tic = time.perf_counter()
    pred.predict(point_coords=np.array([[320, 216]]), point_labels=np.array([1]))
    t_dec = time.perf_counter() - tic
    times = []
    for k in range(5):
        tic = time.perf_counter()
        pred.predict(point_coords=np.array([[320, 216], [100 + k, 100]]),
                     point_labels=np.array([1, 0]))
        times.append(time.perf_counter() - tic)
    print("| SAM ViT-B at 480x640 | image embedding s | first prompt (embed + decode) s | "
          "later prompt ms |\n|---|---|---|---|")
    print(f"| | {t_embed:.2f} | {t_embed + t_dec:.2f} | {1000 * statistics.median(times):.0f} |")


def section_training(threads: int) -> None:
    import torch

    from napari_risnet.training.config import TrainConfig
    from napari_risnet.training.datasets import ObjectPool
    from napari_risnet.training.trainer import Trainer
    from napari_risnet.training.validation import ValidationSet

    print("\n## 5. Training throughput (batch 8, default recipe settings)\n")
    images, labels = [], []
    for k in range(8):
        img, gt = synthetic_image((400, 500), seed=k)
        images.append(img)
        labels.append(gt.astype(np.int32))
    pool = ObjectPool.from_arrays(images, labels)
    print("| crop | threads | samples/s (iterative clicks on, 0.3) | samples/s (off) |")
    print("|---|---|---|---|")
    for crop in (256, 320):
        rates = []
        for it in (0.3, 0.0):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = TrainConfig(out_dir=tmp, crop_size=crop, batch_size=8, threads=threads,
                                  iterative_prob=it, device="cpu", optimizer="adamw",
                                  model={"backbone_kwargs": {"pretrained": False,
                                                             "output_stride": 16}})
                trainer = Trainer(cfg, pool, ValidationSet([]))
                trainer.train_step()
                tic = time.perf_counter()
                n = 4
                for _ in range(n):
                    trainer.train_step()
                rates.append(8 * n / (time.perf_counter() - tic))
        print(f"| {crop}x{crop} | {torch.get_num_threads()} | {rates[0]:.2f} | {rates[1]:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="default")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-sam", action="store_true")
    p.add_argument("--skip-huge", action="store_true")
    p.add_argument("--sections", default="1,2,3,4,5")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a predictor setting of section 1's clicks (repeatable)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from napari_risnet.inference.predictor import Predictor, PredictorSettings

    try:
        settings = PredictorSettings().with_values(args.set)
    except ValueError as exc:
        raise SystemExit(f"--set: {exc}") from None
    predictor = Predictor(checkpoint=args.checkpoint, settings=settings, device="cpu")
    print(f"# napari-risnet speed — {os.uname().machine}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {args.threads} threads, checkpoint {args.checkpoint}")
    sections = set(args.sections.split(","))
    if "1" in sections:
        section_click(predictor)
    if "2" in sections:
        section_sizes(args.checkpoint, args.threads, args.skip_huge)
    if "3" in sections:
        section_propagation(predictor)
    if "4" in sections and not args.skip_sam:
        section_sam(args.threads)
    if "5" in sections:
        section_training(args.threads)
    print(f"\n(peak RSS of this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


from napari_risnet.clicks import Click  # noqa: E402  (used by _drive_propagation)

if __name__ == "__main__":
    main()
