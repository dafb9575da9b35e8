"""The `napari-risnet` subcommands, thin over the library. Each imports what it needs only when
it runs, so `--help` is instant and the headless commands never touch napari or Qt."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_risnet.cli.checks import (check_image_path, check_mask_output, set_threads,
                                      write_mask)
from napari_risnet.wording import plural


# keep in step with napari_risnet.evaluation.baselines.BASELINES (not imported here: --help
# stays instant)
METHODS = ("risnet", "graphcut", "random_walker", "geodesic_matting", "esc", "gsc", "growcut")


def build_method(name: str, checkpoint: str | None = None, device: str = "auto",
                 graphcut: bool = True, focus: bool = True, settings: dict | None = None,
                 preset: str | None = None, assignments: list[str] | None = None):
    """A method by name: the RIS-Net predictor (bundled model by default; ``focus=False``: no
    focus pass; ``settings``: a project's recorded predictor settings, rebuilt with
    ``PredictorSettings.from_record``; ``preset``: a release's default settings and bundled
    model instead of today's; ``assignments``: ``NAME=VALUE`` changes on top) or a baseline."""
    if name == "risnet":
        import dataclasses

        from napari_risnet.inference.predictor import Predictor
        from napari_risnet.inference.settings import PredictorSettings

        if settings:
            chosen = PredictorSettings.from_record(settings)
        elif preset:
            chosen = PredictorSettings.for_release(preset)
        else:
            chosen = PredictorSettings()
        chosen = chosen.with_values(assignments or [])
        chosen = dataclasses.replace(chosen, use_graphcut=graphcut,
                                     focus_from=chosen.focus_from if focus else 0)
        if not checkpoint and preset:  # a release's settings go with the model it bundled
            from napari_risnet.inference.bundled import bundled_weights
            checkpoint = str(bundled_weights(preset))
        return Predictor(checkpoint or "default", chosen, device=device)
    if checkpoint or preset or assignments:
        raise ValueError(f"--checkpoint, --preset and --set only apply to --method risnet, "
                         f"not {name}")
    from napari_risnet.evaluation.baselines import BASELINES

    return BASELINES[name]()


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    set_threads(args.threads)

    from napari_risnet.annotation.project import predictor_record
    from napari_risnet.data import iter_objects, list_objects, spread
    from napari_risnet.evaluation.images import evaluate, format_table, plot_curves, save_json

    method = build_method(args.method, args.checkpoint, args.device, not args.no_graphcut,
                          not args.no_focus, preset=args.preset, assignments=args.set)
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

    set_threads(args.threads)

    from napari_risnet.annotation.project import predictor_record
    from napari_risnet.data import spread
    from napari_risnet.evaluation.stacks import (evaluate_stack, format_stack_table,
                                                iter_stack_objects, list_stack_objects,
                                                plot_stack_curves, save_stack_json)

    method = build_method(args.method, args.checkpoint, args.device, not args.no_graphcut,
                          not args.no_focus, preset=args.preset, assignments=args.set)
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


def _model_record(method: str, checkpoint: str | None, device: str, graphcut: bool) -> dict:
    """How a project records the method, so ``replay`` can build the same one."""
    from napari_risnet.inference.bundled import checkpoint_record

    return {"method": method, **checkpoint_record(checkpoint), "device": device,
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
    check_image_path(args.image)
    if args.output:
        check_mask_output(args.output)
    if args.slice and not args.project:
        raise ValueError("--slice only applies with --project (a plain segment reads a 2D "
                         "image)")
    set_threads(args.threads if args.threads is not None else default_threads())
    image = open_image(args.image)  # a large TIFF stays on disk: only the slice is read
    method = build_method(args.method, args.checkpoint, args.device, not args.no_graphcut)
    if args.project:
        return _segment_into_project(args, image, method)
    if args.slice:
        raise ValueError("--slice only applies with --project (a plain segment reads a 2D "
                         "image)")
    method.set_image(image, args.channels)
    pred = method.predict(args.click)
    write_mask(args.output, pred.mask)
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
        write_mask(args.output, session.labels[key] == object_id)
    print(f"object {object_id} ({n_pixels} pixels) committed into {project.folder}; "
          f"{plural(len(session.objects), 'object')} in the project")
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
    check_image_path(image_path)
    set_threads(args.threads)
    image = read_array(image_path)
    project.check_image(state, image)
    model = state.model
    method_name = args.method or model.get("method", "risnet")
    if method_name not in METHODS:
        raise ValueError(f"the project was made with the method {method_name!r}, which the "
                         f"command line does not know: give --method ({', '.join(METHODS)})")
    checkpoint = args.checkpoint or model.get("checkpoint")
    if method_name != "risnet":
        checkpoint = None
    elif checkpoint in (None, "default"):  # the bundled model of the release that made it
        from napari_risnet.inference.bundled import recorded_weights

        checkpoint = str(recorded_weights(model))
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
    print(f"wrote {args.output}: {plural(len(state.object_ids), 'object')} replayed from their "
          f"clicks; {same}")
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
        held_out = plural(result.n_val, "held-out object")
        print(f"validation {result.metric}: before {result.noc_before:.2f} -> after "
              f"{result.noc_after:.2f} clicks ({held_out}; held out: {held})")
        if result.n_val < 5:
            print(f"note: only {held_out}: a rough estimate (annotate more objects for a "
                  f"reliable one)")
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

    out = write_average(args.checkpoints, args.out, half=args.half, weights=args.weights,
                        ema=args.ema)
    if len(args.checkpoints) == 1:
        print(f"wrote {out}: the weight average of {args.checkpoints[0]}")
    else:
        kind = "the mean" if args.weights is None else "the weighted mean"
        what = "the weight averages of " if args.ema else ""
        print(f"wrote {out}: {kind} of {what}{len(args.checkpoints)} checkpoints")
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


__all__ = ["METHODS", "build_method", "cmd_average", "cmd_demo", "cmd_evaluate",
           "cmd_evaluate_stack", "cmd_export", "cmd_finetune", "cmd_pack", "cmd_replay",
           "cmd_segment", "cmd_train"]
