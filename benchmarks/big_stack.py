"""Annotating a real-size stack: time and memory of commits, clicks, propagation and reopening.

Writes a synthetic uint8 stack (default (300, 2048, 2048), 1.2 GB) to a work folder, then:

- CLI: ``napari-risnet segment big.tif --slice N --click r,c,+ --project P`` into a project that
  already holds an object (model load included): wall time and peak RSS of the process;
- Python API (model loaded, its own process): reopening the project, a click on a slice of the
  stack vs the same slice as a 2D image, one ``AnnotationSession`` commit + save (time, and peak
  RSS above the steady state before it), propagation of one object through 50 slices, and
  100 commits (anonymous memory after the 10th and the last: no growth beyond touched chunks).

    python benchmarks/big_stack.py --workdir /tmp/risnet-big [--shape 300,2048,2048]

Peak memory: ``resource.getrusage`` of the child for the CLI; for the API the process's VmHWM
(reset through /proc/self/clear_refs before each measured step) and RssAnon (memory that is not
the memory-mapped image file) from /proc/self/status. The work folder is deleted at the end
unless ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SPACING = 256  # discs on a grid: one object per (slice, disc)
RADIUS = 40


def disc_centres(shape) -> list[tuple[int, int]]:
    h, w = shape[-2:]
    return [(r, c) for r in range(SPACING // 2, h, SPACING) for c in range(SPACING // 2, w,
                                                                              SPACING)]


def write_stack(path: Path, shape: tuple[int, int, int]) -> None:
    """Noise plus bright discs whose radius changes slowly along Z (columns of objects),
    written slice by slice as an uncompressed TIFF (BigTIFF above 4 GiB)."""
    import tifffile

    rng = np.random.default_rng(0)
    h, w = shape[1:]
    noise = rng.normal(40, 10, (h, w)).astype(np.float32)
    rr, cc = np.mgrid[:h, :w]
    centres = disc_centres(shape)
    near = np.full((h, w), np.inf, np.float32)
    for r, c in centres:
        near = np.minimum(near, np.hypot(rr - r, cc - c).astype(np.float32))

    def planes():
        for z in range(shape[0]):
            radius = RADIUS * (0.8 + 0.2 * np.sin(z / 15))
            plane = noise + np.where(near <= radius, 150, 0)
            yield np.clip(np.roll(plane, z % 7, axis=1), 0, 255).astype(np.uint8)

    big = int(np.prod(shape)) > 2 ** 32 - 2 ** 25
    with tifffile.TiffWriter(path, bigtiff=big) as tif:
        tif.write(planes(), shape=shape, dtype=np.uint8)


def status() -> dict[str, float]:
    """VmRSS, VmHWM and RssAnon of this process in MiB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                out[key] = int(value.split()[0]) / 1024
    return out


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux)
    except OSError:
        pass


def run_cli(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of one command, measured by a fresh parent."""
    probe = ("import resource, subprocess, sys, time\n"
             "t = time.time(); r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(r.stdout + r.stderr, file=sys.stderr)\n"
             "print(time.time() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
             " r.returncode)")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True)
    wall, rss, rc = done.stdout.split()
    if int(rc) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr}")
    return float(wall), float(rss) / 1024, done.stderr.strip()


class BrightComponent:
    """A fast stand-in segmenter: the bright connected component under a positive click."""

    def set_image(self, image, channels=None) -> None:
        self.image = np.asarray(image)

    def predict(self, clicks, prev_mask=None):
        from types import SimpleNamespace

        from scipy import ndimage

        c = clicks[0]
        r0, c0 = max(0, int(c.row) - 128), max(0, int(c.col) - 128)
        window = self.image[r0:r0 + 256, c0:c0 + 256] > 120
        comps, _ = ndimage.label(window)
        mask = np.zeros(self.image.shape, bool)
        k = comps[int(c.row) - r0, int(c.col) - c0]
        if k:
            mask[r0:r0 + 256, c0:c0 + 256] = comps == k
        return SimpleNamespace(mask=mask)


def api_part(args) -> dict:
    """The Python API measurements (a process of its own, so its memory is its own)."""
    import torch

    from napari_risnet.annotation import AnnotationSession
    from napari_risnet.annotation.project import ImageInfo, open_session
    from napari_risnet.clicks import Click
    from napari_risnet.data import open_image
    from napari_risnet.inference.predictor import Predictor

    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    image_path = work / "big.tif"
    predictor = Predictor(checkpoint="default", device=args.device)
    image = open_image(image_path)
    shape = image.shape
    centres = disc_centres(shape)
    res: dict = {}

    tic = time.perf_counter()
    session, project, state = open_session(work / "big.risnet", image, predictor,
                                           image_path=image_path)
    res["reopen_s"] = time.perf_counter() - tic
    res["reopen_objects"] = len(state.object_ids) if state else 0
    info = ImageInfo.of(image, False, None, image_path)

    # a click on a stack slice vs the same slice as a 2D image (set_image included: a new slice)
    zs = [shape[0] // 4, shape[0] // 2, 3 * shape[0] // 4]  # stack and 2D alternate
    r, c = centres[len(centres) // 2]
    stack_s, flat_s = [], []
    for z in zs:
        tic = time.perf_counter()
        session.add_click(Click(r, c), (z,))
        stack_s.append(time.perf_counter() - tic)
        session.clear()
        flat = AnnotationSession(np.array(image[z]), predictor)
        tic = time.perf_counter()
        flat.add_click(Click(r, c))
        flat_s.append(time.perf_counter() - tic)
    # the fastest of three: on a shared CPU the load of others only ever adds time
    res["click_stack_s"], res["click_2d_s"] = min(stack_s), min(flat_s)

    # one commit + save, memory above the steady state
    z = shape[0] // 2 + 3
    session.add_click(Click(*centres[1]), (z,))
    steady = status()
    reset_peak()
    tic = time.perf_counter()
    oid = session.commit()
    project.save(session, info)
    res["commit_s"] = time.perf_counter() - tic
    res["commit_peak_above_mib"] = status()["VmHWM"] - steady["VmRSS"]

    # propagation of one object through 50 slices (25 each way)
    tic = time.perf_counter()
    prop = session.propagate(oid, max_slices=25)
    project.save(session, info)
    res["propagate_s"] = time.perf_counter() - tic
    res["propagate_slices"] = len(prop.slices)

    print(json.dumps(res), file=sys.stderr, flush=True)  # partial results, in case
    # many commits: anonymous memory after the 10th and the last. The clicks of this part are
    # segmented by a threshold (--commit-model keeps the network): it measures the storage
    if not args.commit_model:
        session.segmenter = BrightComponent()
    times, anon = [], []
    k = 0
    for i in range(args.commits):
        z = (7 * i) % shape[0]
        rc = centres[(i + 2) % len(centres)]
        session.add_click(Click(*rc), (z,))
        tic = time.perf_counter()
        try:
            session.commit()
        except ValueError:  # under an object committed before: next one
            session.clear()
            continue
        project.save(session, info)
        times.append(time.perf_counter() - tic)
        anon.append(status()["RssAnon"])
        k += 1
    res["commits"] = k
    res["commit_median_s"] = float(np.median(times))
    res["anon_after_10_mib"] = anon[min(9, len(anon) - 1)]
    res["anon_after_last_mib"] = anon[-1]
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["store_mib"] = sum(p.stat().st_size for p in (work / "big.risnet").rglob("*")
                           if p.is_file()) / 2 ** 20
    tic = time.perf_counter()
    open_session(work / "big.risnet", image, predictor, image_path=image_path)
    res["reopen_full_s"] = time.perf_counter() - tic
    res["reopen_full_objects"] = len(session.objects)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default="/tmp/risnet-big")
    p.add_argument("--shape", default="300,2048,2048")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--commits", type=int, default=100)
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--commit-model", action="store_true",
                   help="the many-commits part clicks with the network, not a threshold")
    p.add_argument("--part", choices=("all", "api"), default="all", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.part == "api":
        print(json.dumps(api_part(args)))
        return 0
    shape = tuple(int(v) for v in args.shape.split(","))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    image = work / "big.tif"
    try:
        tic = time.time()
        if not image.is_file():
            write_stack(image, shape)
        print(f"stack {shape} uint8 ({image.stat().st_size / 2 ** 30:.2f} GiB) ready in "
              f"{time.time() - tic:.0f} s", flush=True)
        project = work / "big.risnet"
        shutil.rmtree(project, ignore_errors=True)
        centres = disc_centres(shape)
        cli = [sys.executable, "-m", "napari_risnet", "segment", str(image), "--device",
               args.device, "--project", str(project)]
        z = shape[0] // 2
        first = run_cli(cli + ["--slice", str(z), "--click", "{},{},+".format(*centres[0])])
        second = run_cli(cli + ["--slice", str(z + 1), "--click",
                                "{},{},+".format(*centres[0])])
        print(f"CLI: first object {first[0]:.1f} s / {first[1]:.0f} MiB, into the existing "
              f"project {second[0]:.1f} s / {second[1]:.0f} MiB", flush=True)
        export = run_cli([sys.executable, "-m", "napari_risnet", "export", str(project), "-o",
                          str(work / "labels.tif")])
        done = subprocess.run([sys.executable, __file__, "--part", "api", "--workdir", str(work),
                               "--device", args.device, "--threads", str(args.threads),
                               "--commits", str(args.commits)]
                              + (["--commit-model"] if args.commit_model else []),
                              capture_output=True, text=True)
        print(done.stderr.strip()[-2000:], flush=True)
        if done.returncode != 0:
            raise RuntimeError("the API part failed")
        api = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("`segment --project --slice` commit into an existing project (model load incl.)",
         f"{second[0]:.1f} s", f"{second[1] / 1024:.2f} GiB peak", "≤ 15 s, ≤ 2.5 GB"),
        ("reopen the project (record, chunk listing, image fingerprint), "
         f"{api['reopen_objects']} objects", f"{api['reopen_s']:.2f} s", "", "≤ 3 s"),
        (f"reopen after {api['reopen_full_objects']} objects", f"{api['reopen_full_s']:.2f} s",
         "", "≤ 3 s"),
        ("click on a stack slice (new slice: set_image + predict; best of 3 slices)",
         f"{api['click_stack_s']:.2f} s", "", "≤ 1.5x 2D"),
        ("the same slice as a 2D image", f"{api['click_2d_s']:.2f} s",
         f"ratio {api['click_stack_s'] / api['click_2d_s']:.2f}", ""),
        ("`AnnotationSession` commit + save (model loaded)", f"{api['commit_s']:.3f} s",
         f"+{api['commit_peak_above_mib']:.0f} MiB peak", "≤ 0.5 s, ≤ 200 MB"),
        (f"{api['commits']} commits + saves (threshold clicks): median per commit"
         if not args.commit_model else f"{api['commits']} commits + saves: median per commit",
         f"{api['commit_median_s']:.3f} s",
         f"anon. memory {api['anon_after_10_mib']:.0f} -> {api['anon_after_last_mib']:.0f} MiB "
         f"(10th -> last)", "no growth"),
        (f"propagate one object ({api['propagate_slices']} slices)",
         f"{api['propagate_s']:.1f} s", "", ""),
        ("export to one TIFF", f"{export[0]:.1f} s", f"{export[1] / 1024:.2f} GiB peak", ""),
        ("project on disk at the end", "", f"{api['store_mib']:.1f} MiB", ""),
    ]
    print(f"\n(shape {shape}, uint8, device {args.device}, {os.cpu_count()} CPUs, "
          f"{args.threads} torch threads)\n")
    print("| step | time | memory | target |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
