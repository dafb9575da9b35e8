"""One command for a time-boxed training run on a single GPU, from a packed copy of the data.

    PYTHONPATH=src python -m napari_risnet.training.gpu_run \\
        --config training/gpu/gpu.toml --out OUT/run

Runs from a plain checkout (no install, no entry points, no network, no PyMaxflow): the
recipe's ``time_budget_s`` counts from the start of this process, ``last.pt`` and
``history.json`` are written every ``checkpoint_every_s``, ``best.pt`` whenever validation
improves. The same command runs on the CPU (a test does, with a tiny budget).
"""
from __future__ import annotations

import time

_STARTED = time.time()  # the budget includes importing torch and reading the pack

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

if sys.version_info >= (3, 11):  # noqa: E402
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import torch  # noqa: E402

from napari_risnet.training.config import TrainConfig, load_config  # noqa: E402
from napari_risnet.training.trainer import train  # noqa: E402


def _override(config: TrainConfig, item: str) -> None:
    """``KEY=VALUE`` with a TOML value (``batch_size=2``, ``amp=false``, ``device="cpu"``)."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or key not in TrainConfig.__dataclass_fields__ or key in ("data", "model"):
        raise ValueError(f"--set takes KEY=VALUE with a top-level recipe key, got {item!r}")
    try:
        parsed: Any = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word: a string
    setattr(config, key, parsed)
    config.__post_init__()  # the recipe's own checks


def _use_pack(config: TrainConfig, pack: str) -> None:
    """Read every [[data]] folder from ``pack`` (same folder names as the recipe's)."""
    root = Path(pack).resolve()
    for d in config.data:
        d.path = str(root / Path(d.path).name)
        if not Path(d.path).is_dir():
            raise ValueError(f"--pack {pack}: no folder {Path(d.path).name} in it (pack the "
                             f"recipe's folders with `napari-risnet pack`)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m napari_risnet.training.gpu_run",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="training/gpu/gpu.toml", help="the recipe (TOML)")
    p.add_argument("--out", required=True, help="output folder: last.pt, best.pt, history.json")
    p.add_argument("--pack", help="read the recipe's folders from this pack instead")
    p.add_argument("--device", help="override the recipe's device (auto, cuda, cpu)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value (TOML syntax); repeat")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = load_config(args.config)
    for item in args.set:
        _override(config, item)
    if args.pack:
        _use_pack(config, args.pack)
    if args.device:
        config.device = args.device
    config.out_dir = str(Path(args.out).resolve())
    torch.backends.cuda.matmul.allow_tf32 = True  # Ampere+: fp32 leftovers (validation) on TF32
    torch.backends.cudnn.allow_tf32 = True
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(f"python {platform.python_version()}, torch {torch.__version__}, GPU {gpu}; "
          f"budget {config.time_budget_s:g} s, batch {config.batch_size}, crop "
          f"{config.crop_size}, {config.workers} loader workers", flush=True)
    summary = train(config, resume=args.resume, clock_start=_STARTED)
    elapsed = time.time() - _STARTED
    out = Path(config.out_dir)
    (out / "summary.json").write_text(json.dumps(
        {"elapsed_s": round(elapsed, 1), "best_val_noc85": summary["best_val_noc85"],
         "out_of_time": summary["out_of_time"], "steps": summary["steps"],
         "samples": summary["steps"] * config.batch_size, "torch": torch.__version__,
         "gpu": gpu}, indent=1))
    print(f"done in {elapsed:.0f} s: best validation NoC@85 {summary['best_val_noc85']:.2f}; "
          f"wrote {out / 'last.pt'}, {out / 'best.pt'}, {out / 'history.json'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
