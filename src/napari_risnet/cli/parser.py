"""The `napari-risnet` argument parser: one subparser per command of ``commands``."""
from __future__ import annotations

import argparse

from napari_risnet.cli.checks import parse_click, threads_arg
from napari_risnet.cli.commands import (METHODS, cmd_average, cmd_demo, cmd_evaluate,
                                        cmd_evaluate_stack, cmd_export, cmd_finetune, cmd_pack,
                                        cmd_replay, cmd_segment, cmd_train)


def _add_predictor_settings(parser: argparse.ArgumentParser) -> None:
    """--preset and --set: the predictor settings a benchmark runs RIS-Net with."""
    parser.add_argument("--preset", metavar="RELEASE",
                        help="RIS-Net with the predictor settings and the bundled model release "
                             "RELEASE used by default (e.g. 0.15.0), to reproduce its results; "
                             "default: this release's")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="change one predictor setting (a field of PredictorSettings, e.g. "
                             "magnified_bias=0 or rules_off=flip_averaging); repeat")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="napari-risnet",
                                description="RIS-Net click-based interactive segmentation.")
    from napari_risnet import __version__  # the package root is already imported: no cost
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    e.add_argument("--no-focus", action="store_true",
                   help="RIS-Net without the focus pass (the second, sharper look around a late "
                        "click on a large object)")
    _add_predictor_settings(e)
    e.add_argument("--threads", type=threads_arg,
                   help="torch CPU threads (default: torch's, one per core)")
    e.add_argument("--out", help="write the results as JSON")
    e.add_argument("--plot", help="write a PNG of mean IoU against clicks")
    e.set_defaults(func=cmd_evaluate)

    es = sub.add_parser("evaluate-stack",
                        help="3D robot-user benchmark: click, propagate, correct (3D Dice)")
    es.add_argument("dataset", help="folder with images/ and labels/ holding (Z, Y, X) stacks")
    es.add_argument("--method", choices=("risnet", "graphcut"), default="risnet")
    es.add_argument("--checkpoint", help="RIS-Net checkpoint (default: the bundled model)")
    es.add_argument("--max-clicks", type=int, default=5, help="clicks per slice and round")
    es.add_argument("--rounds", type=int, default=3, help="correction rounds after propagation")
    es.add_argument("--stop-iou", type=float, default=0.85,
                    help="the robot stops clicking on a slice at this IoU")
    es.add_argument("--limit", type=int, help="evaluate N objects spread over the dataset")
    es.add_argument("--min-voxels", type=int, default=64, help="skip smaller objects")
    es.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    es.add_argument("--no-graphcut", action="store_true", help="RIS-Net without the graph cut")
    es.add_argument("--no-focus", action="store_true",
                    help="RIS-Net without the focus pass around late clicks")
    _add_predictor_settings(es)
    es.add_argument("--threads", type=threads_arg,
                    help="torch CPU threads (default: torch's, one per core)")
    es.add_argument("--out", help="write the results as JSON")
    es.add_argument("--plot", help="write a PNG of mean 3D Dice against correction rounds")
    es.set_defaults(func=cmd_evaluate_stack)

    s = sub.add_parser("segment", help="segment one image from clicks, headless")
    s.add_argument("image")
    s.add_argument("--click", type=parse_click, action="append", required=True,
                   help="ROW,COL,+ (object) or ROW,COL,- (background); repeat")
    s.add_argument("--method", choices=METHODS, default="risnet")
    s.add_argument("--checkpoint")
    s.add_argument("--channels", type=lambda t: [int(c) for c in t.split(",")],
                   help="channels of a multichannel image to use, e.g. 0 or 0,1,2")
    s.add_argument("--device", default="auto")
    s.add_argument("--no-graphcut", action="store_true")
    s.add_argument("-o", "--output", help="mask file (.tif or .png; lossy formats such as "
                                          ".jpg are refused)")
    s.add_argument("--threads", type=threads_arg,
                   help="torch CPU threads (default: one on a machine with at most four "
                        "cores, else half the cores, at most four; see the README)")
    s.add_argument("--project", help="commit the object into this annotation project folder "
                                     "(created if needed; next free id, never over another "
                                     "object)")
    s.add_argument("--slice", type=lambda t: [int(v) for v in t.split(",")],
                   help="with --project on a stack: the slice index, e.g. 12 or 3,12")
    s.set_defaults(func=cmd_segment)

    r = sub.add_parser("replay", help="rebuild a project's labels from its saved clicks")
    r.add_argument("project", help="annotation project folder")
    r.add_argument("-o", "--output", required=True, help="labels file to write (.tif)")
    r.add_argument("--image", help="the image file (default: the path saved in the project)")
    r.add_argument("--method", choices=METHODS, help="override the saved method")
    r.add_argument("--checkpoint", help="override the saved checkpoint")
    r.add_argument("--device", help="override the saved device")
    r.add_argument("--graphcut", action=argparse.BooleanOptionalAction, default=None,
                   help="override the saved graph cut setting")
    r.add_argument("--threads", type=threads_arg,
                   help="torch CPU threads (default: torch's, one per core)")
    r.set_defaults(func=cmd_replay)

    x = sub.add_parser("export", help="write a project's labels as one TIFF (BigTIFF above "
                                      "2 GiB; OME-TIFF for a .ome.tif name), slice by slice")
    x.add_argument("project", help="annotation project folder")
    x.add_argument("-o", "--output", required=True, help="labels file to write (.tif)")
    x.set_defaults(func=cmd_export)

    t = sub.add_parser("train", help="train RIS-Net from a recipe (TOML)")
    t.add_argument("--config", required=True,
                   help='training/<recipe>.toml (one may build on another: extends = "stage15.toml")')
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    t.add_argument("--device", help="override the recipe's device")
    t.add_argument("--epochs", type=int, help="override the recipe's epochs")
    t.add_argument("--out", help="override the recipe's output folder")
    t.add_argument("--threads", type=threads_arg, help="override the recipe's torch CPU threads")
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
    f.add_argument("--threads", type=threads_arg,
                   help="torch CPU threads (default: torch's, one per core)")
    f.set_defaults(func=cmd_finetune)

    a = sub.add_parser("average", help="average the weights of checkpoints of one model")
    a.add_argument("checkpoints", nargs="+", help="two or more checkpoints (.pt) of one "
                                                  "architecture, e.g. epochs of one run; one "
                                                  "with --ema")
    a.add_argument("--out", required=True, help="output checkpoint (.pt)")
    a.add_argument("--half", action="store_true", help="store fp16 weights (bundled model)")
    a.add_argument("--weights", type=float, nargs="+", metavar="W",
                   help="one positive weight per checkpoint for a weighted mean, e.g. "
                        "`--weights 0.7 0.3` to keep a fine-tuned model nearer its start "
                        "(default: the plain mean)")
    a.add_argument("--ema", action="store_true",
                   help="take each checkpoint's training weight average (a run's last.pt with "
                        "ema_decay) instead of its last weights; one checkpoint: export its "
                        "average")
    a.set_defaults(func=cmd_average)

    k = sub.add_parser("pack", help="pack a recipe's training folders, resized, into one "
                                     "folder (for a GPU node without the data)")
    k.add_argument("--config", required=True, help="the recipe whose [[data]] folders to pack")
    k.add_argument("--out", required=True, help="output folder (replaced if it is a pack)")
    k.add_argument("--max-side", type=int, default=320, help="long side of every image")
    k.add_argument("--budget-mb", type=float, default=40.0,
                   help="fail (and keep nothing) if the pack is larger (MiB)")
    k.add_argument("--val-objects", type=int,
                   help="validation objects per folder (default: the recipe's share)")
    k.add_argument("--jpeg-quality", type=int, default=90,
                   help="JPEG quality of colour images; 0 = lossless PNG")
    k.set_defaults(func=cmd_pack)

    d = sub.add_parser("demo", help="open napari with a sample image and the widget docked")
    d.add_argument("--sample", choices=("nuclei", "nuclei_stack", "stack"), default="nuclei",
                   help="nuclei (2D) or nuclei_stack (3D), the names of napari's File > Open "
                        "Sample menu ('stack' is the old name of nuclei_stack)")
    d.add_argument("--threads", type=threads_arg,
                   help="torch CPU threads (default: one on a machine with at most four "
                        "cores, else half the cores, at most four; see the README)")
    d.set_defaults(func=cmd_demo)
    return p


__all__ = ["build_parser"]
