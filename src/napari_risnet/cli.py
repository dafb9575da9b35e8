"""`napari-risnet` command line: evaluate, segment, train, finetune, demo.

Thin over the library; imports what a subcommand needs only when it runs, so `--help` is
instant and the headless commands never touch napari or Qt.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

# keep in step with napari_risnet.baselines.BASELINES (not imported here: --help stays instant)
METHODS = ("risnet", "graphcut", "random_walker", "geodesic_matting", "esc", "gsc", "growcut")


def _parse_click(text: str):
    from napari_risnet.clicks import Click

    parts = text.split(",")
    if len(parts) != 3 or parts[2] not in ("+", "-"):
        raise argparse.ArgumentTypeError(f"click must be ROW,COL,+ or ROW,COL,- (got {text!r})")
    try:
        return Click(float(parts[0]), float(parts[1]), parts[2] == "+")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"click {text!r}: row and col must be numbers") from exc


def build_method(name: str, checkpoint: str | None = None, device: str = "auto",
                 graphcut: bool = True):
    """A method by name: the RIS-Net predictor (bundled model by default) or a baseline."""
    if name == "risnet":
        from napari_risnet.inference.predictor import Predictor

        return Predictor(checkpoint=checkpoint or "default", device=device, use_graphcut=graphcut)
    if checkpoint:
        raise ValueError(f"--checkpoint only applies to --method risnet, not {name}")
    from napari_risnet.baselines import BASELINES

    return BASELINES[name]()


def _set_threads(n: int | None) -> None:
    """On a small CPU shared with other work, fewer torch threads avoid OpenMP stalls."""
    if n:
        import torch

        torch.set_num_threads(n)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    _set_threads(args.threads)

    from napari_risnet.data import iter_objects, list_objects, spread
    from napari_risnet.evaluation import evaluate, format_table, plot_curves, save_json

    method = build_method(args.method, args.checkpoint, args.device, not args.no_graphcut)
    refs, skipped = list_objects(args.dataset, args.objects, args.min_area)
    n = len(spread(refs, args.limit))
    bar = tqdm(total=n, desc=f"{args.method} on {Path(args.dataset).name}", unit="obj")

    def progress(r):
        bar.update(1)
        bar.set_postfix(iou1=f"{r.ious[0]:.2f}", noc90=r.noc(0.9, args.max_clicks))

    summary, results = evaluate(method, iter_objects(args.dataset, args.objects, args.min_area,
                                                     args.limit),
                                args.max_clicks, args.stop_iou, progress)
    bar.close()
    summary.extra.update(method=args.method, dataset=str(args.dataset), skipped_small=skipped,
                         min_area=args.min_area, checkpoint=args.checkpoint,
                         graphcut=not args.no_graphcut, limit=args.limit)
    print(format_table({args.method: summary}))
    if skipped:
        print(f"({skipped} objects under {args.min_area} pixels skipped)")
    if args.out:
        save_json(summary, args.out, results)
        print(f"wrote {args.out}")
    if args.plot:
        plot_curves({args.method: summary}, args.plot, Path(args.dataset).name)
        print(f"wrote {args.plot}")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile

    from napari_risnet.data import read_array

    image = read_array(args.image)
    method = build_method(args.method, args.checkpoint, args.device, not args.no_graphcut)
    method.set_image(image, args.channels)
    pred = method.predict(args.click)
    out = Path(args.output)
    mask = pred.mask.astype(np.uint8) * 255
    if out.suffix.lower() in (".tif", ".tiff"):
        tifffile.imwrite(out, mask)
    else:
        from PIL import Image

        Image.fromarray(mask).save(out)
    print(f"wrote {out}: {int(pred.mask.sum())} object pixels in "
          f"{pred.timings.get('total', 0):.3f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from napari_risnet.training.config import load_config
    from napari_risnet.training.trainer import train

    config = load_config(args.config)
    if args.device:
        config.device = args.device
    if args.out:
        config.out_dir = args.out
    if args.epochs is not None:
        config.epochs = args.epochs
    train(config, resume=args.resume)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from napari_risnet.training.finetune import finetune_folders

    result = finetune_folders(args.images, masks=args.masks, labels=args.labels, base=args.base,
                              out=args.out, epochs=args.epochs, val_fraction=args.val_fraction,
                              device=args.device, steps_per_epoch=args.steps_per_epoch)
    print(f"validation NoC@85: before {result.noc_before:.2f} -> after {result.noc_after:.2f} "
          f"clicks ({result.n_val} objects)")
    print(f"wrote {result.checkpoint}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from napari_risnet._demo import run_demo

    run_demo(sample=args.sample, block=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="napari-risnet",
                                description="RIS-Net click-based interactive segmentation.")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("evaluate", help="robot-user benchmark (NoC@85/90) on a dataset folder")
    e.add_argument("dataset", help="folder with images/ and masks/ or labels/")
    e.add_argument("--method", choices=METHODS, default="risnet")
    e.add_argument("--checkpoint", help="RIS-Net checkpoint (default: the bundled model)")
    e.add_argument("--max-clicks", type=int, default=20)
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    e.add_argument("--limit", type=int, help="evaluate N objects spread over the dataset")
    e.add_argument("--objects", choices=("auto", "labels", "masks"), default="auto",
                   help="one object per label (labels/), or the mask; auto prefers labels")
    e.add_argument("--min-area", type=int, default=16, help="skip smaller objects (pixels)")
    e.add_argument("--stop-iou", type=float, help="stop an object once this IoU is reached")
    e.add_argument("--no-graphcut", action="store_true", help="RIS-Net without the graph cut")
    e.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    e.add_argument("--out", help="write the results as JSON")
    e.add_argument("--plot", help="write a PNG of mean IoU against clicks")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("segment", help="segment one image from clicks, headless")
    s.add_argument("image")
    s.add_argument("--click", type=_parse_click, action="append", required=True,
                   help="ROW,COL,+ (object) or ROW,COL,- (background); repeat")
    s.add_argument("--method", choices=METHODS, default="risnet")
    s.add_argument("--checkpoint")
    s.add_argument("--channels", type=lambda t: [int(c) for c in t.split(",")],
                   help="channels of a multichannel image to use, e.g. 0 or 0,1,2")
    s.add_argument("--device", default="auto")
    s.add_argument("--no-graphcut", action="store_true")
    s.add_argument("-o", "--output", required=True, help="mask file (.tif or .png)")
    s.set_defaults(func=cmd_segment)

    t = sub.add_parser("train", help="train RIS-Net from a recipe (TOML)")
    t.add_argument("--config", required=True, help="training/<recipe>.toml")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    t.add_argument("--device", help="override the recipe's device")
    t.add_argument("--epochs", type=int, help="override the recipe's epochs")
    t.add_argument("--out", help="override the recipe's output folder")
    t.set_defaults(func=cmd_train)

    f = sub.add_parser("finetune", help="fine-tune a model on your own annotated images")
    f.add_argument("--images", required=True, help="folder of images (2D or (Z, Y, X) TIFF)")
    g = f.add_mutually_exclusive_group(required=True)
    g.add_argument("--masks", help="folder of masks (same stems)")
    g.add_argument("--labels", help="folder of instance label maps (same stems)")
    f.add_argument("--base", default="default", help="'default' (bundled) or a checkpoint")
    f.add_argument("--out", required=True, help="output checkpoint (.pt)")
    f.add_argument("--epochs", type=int, default=5)
    f.add_argument("--steps-per-epoch", type=int, default=None)
    f.add_argument("--val-fraction", type=float, default=0.2)
    f.add_argument("--device", default="auto")
    f.set_defaults(func=cmd_finetune)

    d = sub.add_parser("demo", help="open napari with a sample image and the widget docked")
    d.add_argument("--sample", choices=("nuclei", "stack"), default="nuclei")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors end with a one-line message and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"napari-risnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
