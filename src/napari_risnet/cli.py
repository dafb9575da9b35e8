"""`napari-risnet` command line: evaluate, segment, replay, train, finetune, average, pack,
demo.

Thin over the library; imports what a subcommand needs only when it runs, so `--help` is
instant and the headless commands never touch napari or Qt.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

# keep in step with napari_risnet.evaluation.baselines.BASELINES (not imported here: --help stays instant)
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
                 graphcut: bool = True, focus: bool = True, settings: dict | None = None):
    """A method by name: the RIS-Net predictor (bundled model by default; ``focus=False``: no
    focus pass; ``settings``: a project's recorded predictor settings, rebuilt with
    ``PredictorSettings.from_record``) or a baseline."""
    if name == "risnet":
        import dataclasses

        from napari_risnet.inference.predictor import Predictor
        from napari_risnet.inference.settings import PredictorSettings

        chosen = PredictorSettings.from_record(settings) if settings else PredictorSettings()
        chosen = dataclasses.replace(chosen, use_graphcut=graphcut,
                                     focus_from=chosen.focus_from if focus else 0)
        return Predictor(checkpoint or "default", chosen, device=device)
    if checkpoint:
        raise ValueError(f"--checkpoint only applies to --method risnet, not {name}")
    from napari_risnet.evaluation.baselines import BASELINES

    return BASELINES[name]()


#: Masks are written losslessly: a JPEG mask holds dozens of grey levels, not two.
MASK_SUFFIXES = (".tif", ".tiff", ".png")


def _set_threads(n: int | None) -> None:
    """On a small CPU shared with other work, fewer torch threads avoid OpenMP stalls."""
    from napari_risnet.threads import check_threads

    n = check_threads(n)
    if n:
        import torch

        torch.set_num_threads(n)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"threads must be a whole number, got {text!r}"
                                         ) from exc
    if n < 1:
        raise argparse.ArgumentTypeError(f"threads must be at least 1, got {n}")
    return n


def _check_image_path(path: str | Path) -> None:
    """Before loading a model: the image must be a file."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a folder, not an image file (give one image, e.g. "
                         f"{p / 'image.tif'})")
    if not p.exists():
        raise FileNotFoundError(f"no such image file: {p}")


def _check_mask_output(path: str | Path) -> None:
    """Before predicting: a lossless format in an existing folder."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"-o {out} is a folder: give a mask file name, e.g. {out / 'mask.tif'}")
    if out.suffix.lower() not in MASK_SUFFIXES:
        raise ValueError(f"-o {out}: {out.suffix or 'no suffix'} is not a lossless mask format "
                         f"(a JPEG mask holds many grey levels); use .tif or .png")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"-o {out}: the folder {out.parent} does not exist (create it "
                                f"first)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    _set_threads(args.threads)

    from napari_risnet.annotation.project import predictor_record
    from napari_risnet.data import iter_objects, list_objects, spread
    from napari_risnet.evaluation.images import evaluate, format_table, plot_curves, save_json

    method = build_method(args.method, args.checkpoint, args.device, not args.no_graphcut,
                          not args.no_focus)
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
                         graphcut=not args.no_graphcut, focus=not args.no_focus,
                         limit=args.limit, predictor=predictor_record(method))
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


def cmd_evaluate_stack(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    _set_threads(args.threads)

    from napari_risnet.annotation.project import predictor_record
    from napari_risnet.data import spread
    from napari_risnet.evaluation.stacks import (evaluate_stack, format_stack_table,
                                                iter_stack_objects, list_stack_objects,
                                                plot_stack_curves, save_stack_json)

    method = build_method(args.method, args.checkpoint, args.device, not args.no_graphcut,
                          not args.no_focus)
    refs, skipped = list_stack_objects(args.dataset, args.min_voxels)
    refs = spread(refs, args.limit)
    bar = tqdm(total=len(refs), desc=f"{args.method} on {Path(args.dataset).name}", unit="obj")

    def progress(r):
        bar.update(1)
        bar.set_postfix(dice0=f"{r.dice[0]:.2f}", dice=f"{r.dice[-1]:.2f}")

    summary, results = evaluate_stack(method, iter_stack_objects(refs), args.max_clicks,
                                      args.rounds, args.stop_iou, progress=progress)
    bar.close()
    summary.extra.update(method=args.method, dataset=str(args.dataset), skipped_small=skipped,
                         min_voxels=args.min_voxels, checkpoint=args.checkpoint,
                         graphcut=not args.no_graphcut, focus=not args.no_focus,
                         limit=args.limit, stop_iou=args.stop_iou,
                         predictor=predictor_record(method))
    print(format_stack_table({args.method: summary}))
    if skipped:
        print(f"({skipped} objects under {args.min_voxels} voxels skipped)")
    if args.out:
        save_stack_json(summary, args.out, results)
        print(f"wrote {args.out}")
    if args.plot:
        plot_stack_curves({args.method: summary}, args.plot,
                          "/".join(Path(args.dataset).resolve().parts[-2:]))
        print(f"wrote {args.plot}")
    return 0


def _write_mask(path: str | Path, mask) -> None:
    import numpy as np
    import tifffile

    out = Path(path)
    mask = np.asarray(mask).astype(np.uint8) * 255
    if out.suffix.lower() in (".tif", ".tiff"):
        tifffile.imwrite(out, mask)
    else:
        from PIL import Image

        Image.fromarray(mask).save(out)


def _model_record(method: str, checkpoint: str | None, device: str, graphcut: bool) -> dict:
    """How a project records the method, so ``replay`` can build the same one."""
    if checkpoint and checkpoint != "default":
        checkpoint = str(Path(checkpoint).resolve())
    return {"method": method, "checkpoint": checkpoint or "default", "device": device,
            "use_graphcut": bool(graphcut)}


def cmd_segment(args: argparse.Namespace) -> int:
    from napari_risnet.data import open_image
    from napari_risnet.threads import default_threads

    if not args.output and not args.project:
        raise ValueError("give -o/--output (a mask file), --project DIR, or both")
    if not any(c.positive for c in args.click):
        raise ValueError("every click is negative (ROW,COL,-): give at least one positive "
                         "click on the object (ROW,COL,+)")
    if not args.click[0].positive:
        raise ValueError(f"the first click must be positive (ROW,COL,+) on the object; got "
                         f"{args.click[0].row:g},{args.click[0].col:g},-")
    _check_image_path(args.image)
    if args.output:
        _check_mask_output(args.output)
    if args.slice and not args.project:
        raise ValueError("--slice only applies with --project (a plain segment reads a 2D "
                         "image)")
    _set_threads(args.threads if args.threads is not None else default_threads())
    image = open_image(args.image)  # a large TIFF stays on disk: only the slice is read
    method = build_method(args.method, args.checkpoint, args.device, not args.no_graphcut)
    if args.project:
        return _segment_into_project(args, image, method)
    if args.slice:
        raise ValueError("--slice only applies with --project (a plain segment reads a 2D "
                         "image)")
    method.set_image(image, args.channels)
    pred = method.predict(args.click)
    _write_mask(args.output, pred.mask)
    print(f"wrote {args.output}: {int(pred.mask.sum())} object pixels in "
          f"{pred.timings.get('total', 0):.3f} s")
    return 0


def _segment_into_project(args: argparse.Namespace, image, method) -> int:
    """Click one object and commit it into a project, as the widget does: the next free id,
    never over another object; the project is saved atomically."""
    import numpy as np

    from napari_risnet.annotation.project import ImageInfo, open_session, predictor_record

    session, project, state = open_session(args.project, image, method,
                                           image_path=args.image, channels=args.channels)
    key = tuple(args.slice or ())
    for click in args.click:
        session.add_click(click, key)
    object_id = session.commit(overwrite=False)
    model = _model_record(args.method, args.checkpoint, args.device, not args.no_graphcut)
    predictor = predictor_record(method)
    if predictor:
        model["predictor"] = predictor
    project.save(session, ImageInfo.of(image, session.rgb, args.channels, args.image), model,
                 settings={"overlaps": "keep existing"},
                 overwrite_ids=state.overwrite_ids if state else ())
    # the object's slices only: the label volume may be far larger than memory
    n_pixels = sum(int(np.count_nonzero(session.labels[k] == object_id))
                   for k in session.objects[object_id].slices)
    if args.output:
        _write_mask(args.output, session.labels[key] == object_id)
    print(f"object {object_id} ({n_pixels} pixels) committed into {project.folder}; "
          f"{_plural(len(session.objects), 'object')} in the project")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from napari_risnet.annotation.project import Project, export_tiff

    state = Project(args.project).load(writable=False)
    out = export_tiff(state.labels, args.output)
    print(f"wrote {out}: labels of shape {tuple(state.labels.shape)} "
          f"({len(state.object_ids)} objects)")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile

    from napari_risnet.annotation.project import Project, replay
    from napari_risnet.data import read_array

    project = Project(args.project)
    state = project.load()
    image_path = args.image or state.image.path
    if not image_path:
        raise ValueError(f"the project {project.folder} does not name its image file: give "
                         f"--image")
    _check_image_path(image_path)
    _set_threads(args.threads)
    image = read_array(image_path)
    project.check_image(state, image)
    model = state.model
    method_name = args.method or model.get("method", "risnet")
    if method_name not in METHODS:
        raise ValueError(f"the project was made with the method {method_name!r}, which the "
                         f"command line does not know: give --method ({', '.join(METHODS)})")
    checkpoint = args.checkpoint or model.get("checkpoint")
    if method_name != "risnet" or checkpoint == "default":
        checkpoint = None
    graphcut = model.get("use_graphcut", True) if args.graphcut is None else args.graphcut
    recorded = model.get("predictor") if method_name == "risnet" else None
    if method_name == "risnet" and not recorded:
        print("note: this project predates recorded predictor settings; replayed with this "
              "release's defaults")
    method = build_method(method_name, checkpoint, args.device or model.get("device", "auto"),
                          graphcut, settings=recorded)
    labels = replay(state, image, method)
    tifffile.imwrite(args.output, labels, compression="zlib")
    differ = int(np.count_nonzero(labels != np.asarray(state.labels)))
    same = "identical to the saved labels" if differ == 0 else \
        f"differs from the saved labels in {differ} pixels (another model, device or settings?)"
    print(f"wrote {args.output}: {_plural(len(state.object_ids), 'object')} replayed from their "
          f"clicks; "
          f"{same}")
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
    if args.threads is not None:
        config.threads = args.threads
    train(config, resume=args.resume)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from napari_risnet.training.finetune import finetune_folders

    result = finetune_folders(args.images, masks=args.masks, labels=args.labels, base=args.base,
                              out=args.out, epochs=args.epochs, val_fraction=args.val_fraction,
                              device=args.device, steps_per_epoch=args.steps_per_epoch,
                              threads=args.threads)
    if result.n_val and result.measured:
        held = "objects of the training images" if result.split == "objects" else "images"
        print(f"validation {result.metric}: before {result.noc_before:.2f} -> after "
              f"{result.noc_after:.2f} clicks ({result.n_val} held-out "
              f"object{'s' if result.n_val != 1 else ''}; held out: {held})")
        if result.n_val < 5:
            print(f"note: only {result.n_val} held-out object{'s' if result.n_val != 1 else ''}"
                  f": a rough estimate (annotate more objects for a reliable one)")
        if not result.improved:
            print("note: the fine-tuned model does not need fewer clicks than the base model "
                  "on the held-out objects: keep using the base model unless you have reasons")
    elif result.n_val:
        print(f"validation {result.metric}: after not measured (cancelled before the first "
              f"validation)")
    else:
        print(f"validation {result.metric}: not measured (annotate at least two objects so "
              f"one can be held out)")
    print(f"wrote {result.checkpoint}")
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from napari_risnet.model.averaging import write_average

    out = write_average(args.checkpoints, args.out, half=args.half)
    print(f"wrote {out}: the mean of {len(args.checkpoints)} checkpoints")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from napari_risnet.training.config import load_config
    from napari_risnet.training.pack import MIB, write_pack

    config = load_config(args.config)
    packed = write_pack(config, args.out, max_side=args.max_side, budget_mb=args.budget_mb,
                        val_objects=args.val_objects, jpeg_quality=args.jpeg_quality)
    for p in packed:
        print(f"{p.name}: {p.train_images} training images ({p.train_objects} objects), "
              f"{p.val_objects} validation objects, {p.bytes / MIB:.1f} MiB")
    total = sum(p.bytes for p in packed)
    print(f"wrote {args.out}: {total / MIB:.1f} MiB of {args.budget_mb:g} MiB")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from napari_risnet._napari.demo import run_demo
    from napari_risnet._napari.sample_data import SAMPLE_ALIASES

    if args.sample in SAMPLE_ALIASES:
        print(f"note: --sample {args.sample} is now called {SAMPLE_ALIASES[args.sample]} (as "
              f"in napari's File > Open Sample)", file=sys.stderr)
    run_demo(sample=args.sample, block=True, threads=args.threads)
    return 0


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
    e.add_argument("--threads", type=_threads,
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
    es.add_argument("--threads", type=_threads,
                    help="torch CPU threads (default: torch's, one per core)")
    es.add_argument("--out", help="write the results as JSON")
    es.add_argument("--plot", help="write a PNG of mean 3D Dice against correction rounds")
    es.set_defaults(func=cmd_evaluate_stack)

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
    s.add_argument("-o", "--output", help="mask file (.tif or .png; lossy formats such as "
                                          ".jpg are refused)")
    s.add_argument("--threads", type=_threads,
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
    r.add_argument("--threads", type=_threads,
                   help="torch CPU threads (default: torch's, one per core)")
    r.set_defaults(func=cmd_replay)

    x = sub.add_parser("export", help="write a project's labels as one TIFF (BigTIFF above "
                                      "2 GiB; OME-TIFF for a .ome.tif name), slice by slice")
    x.add_argument("project", help="annotation project folder")
    x.add_argument("-o", "--output", required=True, help="labels file to write (.tif)")
    x.set_defaults(func=cmd_export)

    t = sub.add_parser("train", help="train RIS-Net from a recipe (TOML)")
    t.add_argument("--config", required=True, help="training/<recipe>.toml")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    t.add_argument("--device", help="override the recipe's device")
    t.add_argument("--epochs", type=int, help="override the recipe's epochs")
    t.add_argument("--out", help="override the recipe's output folder")
    t.add_argument("--threads", type=_threads, help="override the recipe's torch CPU threads")
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
    f.add_argument("--threads", type=_threads,
                   help="torch CPU threads (default: torch's, one per core)")
    f.set_defaults(func=cmd_finetune)

    a = sub.add_parser("average", help="average the weights of checkpoints of one model")
    a.add_argument("checkpoints", nargs="+", help="two or more checkpoints (.pt) of one "
                                                  "architecture, e.g. epochs of one run")
    a.add_argument("--out", required=True, help="output checkpoint (.pt)")
    a.add_argument("--half", action="store_true", help="store fp16 weights (bundled model)")
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
    d.add_argument("--threads", type=_threads,
                   help="torch CPU threads (default: one on a machine with at most four "
                        "cores, else half the cores, at most four; see the README)")
    d.set_defaults(func=cmd_demo)
    return p


def _join_click_values(argv: Sequence[str]) -> list[str]:
    """``--click -5,10,+`` -> ``--click=-5,10,+``: argparse would take a value starting with
    '-' for an option (only plain negative numbers are exempt), so negative coordinates would
    need the '=' form."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--click":
            value = next(it, None)
            if value is not None and value.startswith("-") and "," in value:
                out.append(f"--click={value}")
                continue
            out.append(arg)
            if value is not None:
                out.append(value)
            continue
        out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors end with a one-line message and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(_join_click_values(argv))
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError) as exc:  # OSError: unreadable / unwritable files
        print(f"napari-risnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
