"""A candidate against the shipped model on held-out objects: the gate before the evaluation splits.

    python benchmarks/gate.py CHECKPOINT --out DIR [--jobs 2] [--threads 1]

Scores the candidate, with the default settings and 20 clicks, on two sets of objects no
evaluation split holds, and pairs each object by object (``napari_risnet.evaluation.paired``)
with the shipped model's scores, committed in ``training/candidates/heldout/``:

- ``check400``: the ablation's 625 objects (``benchmarks/ablation.py``'s ``base.json``): 60
  held-out objects of each folder of ``training/stage6.toml`` and 400 of the EM particles' *train*
  split, never trained on. About 17 minutes on one core.
- ``hippocampus291``: every held-out object of the hippocampus folder (291 in 8 volumes). Since
  stage 17 the MSD test split's late clicks are where CPU-trained candidates lose, and the 60 of
  the first set did not see it where all 291 did (docs/experiments.md, "Stage 18"). About 8
  minutes.
- ``stack80``: the README's stack benchmark (``napari-risnet evaluate-stack``, 5 clicks per slice
  and round, 3 correction rounds) on 80 objects spread over the hippocampus's *train* volumes:
  propagation from slice to slice, which no 2D object exercises. Judged for losses only (3D
  Dice after round 0 and the last round, clicks): the volumes' slices were trained on, so a gain
  there shows nothing, but a loss on data the model has seen is one. The weight soup and the
  blend of stage 26b both passed the two 2D sets and lost the hippocampus test stack; on these
  80 both lose the same way, and stage 17, level on the test stack, is level here too
  (docs/experiments.md, "The gate reads a stack check"). About 5 minutes.

Prints the three tables and one verdict; the exit status is the decision:
0 the candidate loses nowhere and gains somewhere (``gains``: beyond two standard errors per
object and by image; read the evaluation splits next: ``benchmarks/evaluation_splits.py``);
1 it loses somewhere (the shipping rule, ``losses``); 3 it loses nowhere and gains nowhere
(level: a test split would have nothing to confirm). ``DIR/check400.json`` and
``DIR/hippocampus291.json`` are ``benchmarks/validation.py --objects-out`` files and
``DIR/stack80.json`` an ``evaluate-stack --out`` file; one already there for the same weights and
settings is reused, one made for anything else stops the run. ``--jobs N`` scores N of the
three sets at once, one process each.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from ablation import (held_out_scope, reusable, variant_label,  # sibling scripts in benchmarks/
                      weights_digest, write_scores)
from evaluation_splits import STACK_HEADER, Stack, judge, scored_alike
from paired import print_paired_table
from validation import held_out_sets, score

from napari_risnet.evaluation.paired import (MEASURE_NAMES, Difference, gains, gate_verdict,
                                             load_object_scores, losses, paired_rows)
from napari_risnet.inference.predictor import Predictor, PredictorSettings

REPO = Path(__file__).resolve().parents[1]
HELDOUT = REPO / "training" / "candidates" / "heldout"
#: the recipe whose held-out split the gate reads (the ablation's since 0.16.0)
RECIPE = REPO / "training" / "stage6.toml"
#: the never-trained-on folder the first set adds (the ablation's ``--check``)
PARTICLES_TRAIN = (REPO.parent / "shared" / "data" / "electron_microscopy" / "emps_particles"
                   / "train")
#: the shipped model's scores on each set (made with the same commands from the bundled weights)
SHIPPED = {"check400": HELDOUT / "bundled_v0.27.0_check400.json",
           "hippocampus291": HELDOUT / "bundled_v0.27.0_hippocampus291.json"}
#: the stack check's volumes (a training folder's: never an evaluation split) and objects
STACK_FOLDER = REPO.parent / "shared" / "data" / "medical" / "msd_hippocampus" / "train"
STACK_LIMIT = 80
#: the shipped model's stack check (``napari-risnet evaluate-stack STACK_FOLDER --limit 80``)
SHIPPED_STACK = HELDOUT / "bundled_v0.27.0_stack80.json"
#: exit statuses besides 0 (passed, gains somewhere)
LOSES, LEVEL = 1, 3


@dataclass(frozen=True)
class GateSet:
    """One set of held-out objects: ``validation.held_out_sets``'s arguments."""
    name: str
    per_source: int
    only: str | None = None
    checks: tuple[str, ...] = ()
    check_limit: int = 400

    def scope(self, max_clicks: int) -> str:
        return f"{self.name}: " + held_out_scope(self.per_source, self.only, self.checks,
                                                 self.check_limit, max_clicks)


def gate_sets(check: str, wide: str) -> list[GateSet]:
    """The two sets: the ablation's objects with ``check`` added, and every held-out object of the
    folder named ``wide`` (300 per folder: more than the hippocampus's 291)."""
    return [GateSet("check400", 60, checks=(check,), check_limit=400),
            GateSet("hippocampus291", 300, only=wide)]


def score_set(recipe: str, gate_set: GateSet, checkpoint: str, label: str, path: Path,
              threads: int, max_clicks: int) -> Path:
    """Scores one set into ``path`` (written whole or not at all); runs in a worker process."""
    torch.set_num_threads(threads)
    sets = held_out_sets(recipe, gate_set.per_source, gate_set.only, 1.0, list(gate_set.checks),
                         gate_set.check_limit)
    _, objects = score(Predictor(checkpoint, PredictorSettings(), device="cpu"), sets,
                       max_clicks)
    write_scores(path, label, objects)
    return path


def stack_reusable(path: Path, checkpoint: str, folder: Path, limit: int) -> bool:
    """Whether ``path`` holds the stack check of these weights (by content) with the default
    settings on these objects; a file made for anything else stops the run."""
    if not path.exists():
        return False
    try:
        record = json.loads(path.read_text())
        same = (record.get("weights_sha256") == weights_digest(checkpoint)
                and scored_alike(record, PredictorSettings(), folder, limit))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path} exists and is no stack check ({exc}); move it away") from None
    if not same:
        raise SystemExit(f"{path} was written for another checkpoint, settings or objects: move "
                         "it away or choose another --out")
    return True


def score_stack(folder: Path, checkpoint: str, limit: int, path: Path, threads: int) -> Path:
    """The stack check into ``path`` (written whole or not at all), by the README's command in a
    process of its own, with the weights' digest added so a rerun knows them."""
    partial = path.with_name(path.stem + ".partial.json")
    done = subprocess.run(
        [sys.executable, "-m", "napari_risnet", "evaluate-stack", str(folder), "--checkpoint",
         checkpoint, "--limit", str(limit), "--threads", str(threads), "--out", str(partial)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode != 0:
        raise SystemExit(f"evaluate-stack failed on {folder}:\n{done.stderr[-3000:]}")
    record = json.loads(partial.read_text())
    record["weights_sha256"] = weights_digest(checkpoint)
    partial.write_text(json.dumps(record))
    partial.replace(path)
    return path


def stack_losses(shipped: Path, candidate: Path, folder: Path
                 ) -> list[tuple[str, str, Difference]]:
    """Prints the stack check paired object by object (``evaluation_splits.judge``, as the test
    stacks are) and returns its losses; its gains are not counted: the volumes were trained on."""
    row, lost, _ = judge(Stack("stack80", str(folder), shipped.name), shipped, candidate)
    print(f"\n## stack80 (losses only)\n{candidate} − {shipped}, paired per object\n")
    print(STACK_HEADER + "\n" + "|---" * 7 + "|\n" + row)
    return [(f"{key} all", measure, d) for key, measure, d in lost]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="the candidate: a checkpoint file, or 'default'")
    p.add_argument("--out", required=True, help="folder for the candidate's two result files")
    p.add_argument("--jobs", type=int, default=1, help="sets scored at once (1 or 2)")
    p.add_argument("--threads", type=int, default=1, help="threads per job (default 1)")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--recipe", default=str(RECIPE),
                   help="the recipe whose held-out split to read (default training/stage6.toml)")
    p.add_argument("--check", default=str(PARTICLES_TRAIN),
                   help="the never-trained-on folder of the first set (default: the EM "
                        "particles' train split)")
    p.add_argument("--wide", default="msd_hippocampus",
                   help="the folder whose held-out objects are all read (default msd_hippocampus)")
    p.add_argument("--stack-folder", default=str(STACK_FOLDER),
                   help="the (Z, Y, X) training volumes of the stack check (default: the "
                        "hippocampus's train split)")
    p.add_argument("--stack-limit", type=int, default=STACK_LIMIT,
                   help=f"objects of the stack check (default {STACK_LIMIT})")
    for name, path in {**SHIPPED, "stack80": SHIPPED_STACK}.items():
        p.add_argument(f"--shipped-{name}", default=str(path), metavar="FILE",
                       help=f"the shipped model's scores on {name} (default {path.name})")
    args = p.parse_args()
    if min(args.jobs, args.threads, args.max_clicks, args.stack_limit) < 1:
        p.error("--jobs, --threads, --max-clicks and --stack-limit must be at least 1")
    shipped = {name: Path(getattr(args, f"shipped_{name}")) for name in SHIPPED}
    shipped_stack, stack_folder = Path(args.shipped_stack80), Path(args.stack_folder)
    missing = [str(f) for f in [*shipped.values(), shipped_stack] if not f.is_file()]
    missing += [] if stack_folder.is_dir() else [str(stack_folder)]
    if missing:
        p.error(f"missing: {', '.join(missing)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = f"{args.checkpoint} [sha256 {weights_digest(args.checkpoint)}]"
    todo: list[tuple] = []  # (function, its arguments)
    for gate_set in gate_sets(args.check, args.wide):
        label = variant_label(model, PredictorSettings(), gate_set.scope(args.max_clicks))
        path = out / f"{gate_set.name}.json"
        if not reusable(path, label):
            todo.append((score_set, args.recipe, gate_set, args.checkpoint, label, path,
                         args.threads, args.max_clicks))
    stack_out = out / "stack80.json"
    if not stack_reusable(stack_out, args.checkpoint, stack_folder, args.stack_limit):
        todo.append((score_stack, stack_folder, args.checkpoint, args.stack_limit, stack_out,
                     args.threads))
    else:
        print(f"reusing {stack_out}")
    if args.jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(min(args.jobs, len(todo))) as pool:
            for job in [pool.submit(*task) for task in todo]:
                job.result()
    else:
        for function, *task in todo:
            function(*task)
    lost, gained = [], []
    for name, file in shipped.items():
        rows = paired_rows(load_object_scores(file), load_object_scores(out / f"{name}.json"))
        print(f"\n## {name}")
        print_paired_table(str(file), str(out / f"{name}.json"), rows)
        lost += [(f"{name} {folder}", m, d) for folder, m, d in losses(rows)]
        gained += [f"{name} {folder} {MEASURE_NAMES[m]}" for folder, m, _ in gains(rows)]
    lost += stack_losses(shipped_stack, stack_out, stack_folder)
    print("\n" + gate_verdict(lost, "the candidate"))
    if lost:
        sys.exit(LOSES)
    if not gained:
        print("nothing gained beyond two standard errors: level with the shipped model")
        sys.exit(LEVEL)
    print(f"gained beyond two standard errors: {'; '.join(gained)}")


if __name__ == "__main__":
    main()
