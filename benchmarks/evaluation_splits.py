"""The shipping rule's last step as one command: a candidate on the five evaluation splits and the
README's two stack benchmarks, once, paired object by object against the shipped model's results.

    python benchmarks/evaluation_splits.py CHECKPOINT --name candidate_v0.25.0 \\
        [--set rules_off=a,b ...] [--jobs 2] [--threads 1] [--no-stacks] \\
        [--data ../shared/data] [--results training/results] [--stack-results benchmarks/results] \\
        [--logs runs/evaluation_splits] [--dry-run]

Runs ``napari-risnet evaluate`` on each split of ``SPLITS`` (GrabCut whole, the others on the
objects the shipped results used: ``--limit``) and ``napari-risnet evaluate-stack`` on each
stack of ``STACKS`` (every object, 5 clicks per slice and round, 3 correction rounds: the
README's commands), ``--jobs`` at a time with ``--threads`` torch threads each, writing
``RESULTS/NAME_<split>.json`` (logs under ``--logs``). A result already there for the same
checkpoint, settings and objects is reused, so an interrupted run continues; one made with
anything else stops the run: the splits are read once per candidate, and a second setting tried
on them would be chosen on them. Then it prints, per split, both models' NoC@85 / 90 and IoU
after the first and the last click, per stack their 3D Dice after round 0 and the last round and
clicks per object, each with the paired difference (± per object, and by image), and applies the
shipping rule (``napari_risnet.evaluation.paired.losses`` and ``gains``): exit status 1 naming
every split or stack where the candidate loses beyond two standard errors (NoC@85, NoC@90, the
IoU after the last click; a stack's Dice or clicks); 3 when it loses nowhere and gains nowhere
either (level: nothing to ship); 0 when it loses nowhere and gains somewhere. Which rules a
candidate keeps is chosen before, on held-out objects (``benchmarks/ablation.py``); GrabCut and
the test splits are never used to choose anything.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from napari_risnet.evaluation.paired import (JUDGED, MEASURE_NAMES, STACK_JUDGED, Difference,
                                             format_measure, gains, gate_verdict,
                                             load_object_scores, load_stack_scores, losses,
                                             paired_rows, stack_rows)
from napari_risnet.inference.settings import PredictorSettings

#: the exit status of a candidate that loses nowhere and gains nowhere (1: it loses somewhere)
LEVEL = 3


class Split(NamedTuple):
    """One evaluation split: its folder under the data root, how many objects the shipped
    results read (None: all) and the shipped model's result file."""
    key: str
    folder: str
    limit: int | None
    shipped: str


#: the bundled model's results on the five splits: RESULTS/<SHIPPED>_<split>.json (the files of
#: the read that shipped it)
SHIPPED = "risnet_v0.27.0"

#: the five splits of issue 25's targets, the longest first (two jobs finish together)
SPLITS: tuple[Split, ...] = (
    Split("hippo", "medical/msd_hippocampus/test", 150, f"{SHIPPED}_hippo.json"),
    Split("dsb", "microscopy/dsb2018_nuclei/test", 150, f"{SHIPPED}_dsb.json"),
    Split("grabcut", "natural/grabcut", None, f"{SHIPPED}_grabcut.json"),
    Split("chloro", "electron_microscopy/wsu_leaf_chloroplasts/test", 100,
          f"{SHIPPED}_chloro.json"),
    Split("emps", "electron_microscopy/emps_particles/test", 100, f"{SHIPPED}_emps.json"),
)


class Stack(NamedTuple):
    """One stack benchmark of the README (``napari-risnet evaluate-stack``, every object): its
    folder under the data root and the shipped model's result file under ``--stack-results``."""
    key: str
    folder: str
    shipped: str
    limit: None = None


#: the README's two stack benchmarks: a candidate that costs clicks or Dice there loses a
#: benchmark the README reports (0.27.0's stage 17: a click more per nucleus on cells3d)
STACKS: tuple[Stack, ...] = (
    Stack("stack_hippo", "medical/msd_hippocampus/test", "stack_hippocampus_test_risnet.json"),
    Stack("stack_cells3d", "microscopy/cells3d_nuclei_stack", "stack_cells3d_risnet.json"),
)


def evaluate_command(split: Split | Stack, checkpoint: str, sets: list[str], data: Path,
                     out: Path, threads: int) -> list[str]:
    """The ``napari-risnet evaluate`` (``evaluate-stack``) call that scores ``checkpoint`` on
    ``split``."""
    tool = "evaluate-stack" if isinstance(split, Stack) else "evaluate"
    cmd = [sys.executable, "-m", "napari_risnet", tool, str(data / split.folder),
           "--checkpoint", checkpoint, "--threads", str(threads), "--out", str(out)]
    if split.limit is not None:
        cmd += ["--limit", str(split.limit)]
    for assignment in sets:
        cmd += ["--set", assignment]
    return cmd


def scored_alike(record: dict, settings: PredictorSettings, dataset: Path,
                 limit: int | None) -> bool:
    """Whether an ``evaluate`` / ``evaluate-stack`` record was made with these settings on these
    objects (which weights made it, each caller checks its own way)."""
    return (PredictorSettings.from_record(record["predictor"]) == settings.resolved()
            and Path(record["dataset"]) == dataset and record.get("limit") == limit)


def made_by(out: Path, checkpoint: str, settings: PredictorSettings, dataset: Path,
            limit: int | None) -> bool:
    """Whether the result file ``out`` scored this checkpoint with these settings on these
    objects (reused); SystemExit when it scored anything else (never mixed in, never
    overwritten: a split is read once per candidate)."""
    if not out.exists():
        return False
    try:
        record = json.loads(out.read_text())
        same = (record["checkpoint"] == checkpoint
                and scored_alike(record, settings, dataset, limit))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{out} exists and is no evaluate result ({exc}); move it away") from None
    if not same:
        raise SystemExit(f"{out} exists for another checkpoint, settings or objects: the "
                         "evaluation splits are read once per candidate; choose another --name "
                         "only for another candidate")
    return True


def summary(path: Path) -> str:
    """NoC@85 / 90, IoU after the first and the last click of an evaluate result; 3D Dice after
    round 0 and the last round and clicks per object of an evaluate-stack result."""
    record = json.loads(path.read_text())
    if "dice3d" in record:
        dice = record["dice3d"]
        return f"{dice[0]:.3f} / {dice[-1]:.3f}, {record['clicks']:.1f}"
    miou = record["miou"]
    return f"{record['noc85']:.2f} / {record['noc90']:.2f}, {miou[0]:.3f}, {miou[-1]:.3f}"


SPLIT_HEADER = ("| split | shipped NoC@85 / 90, IoU@1, IoU@last | candidate | objects | NoC@85 | "
                "NoC@90 | IoU after the last click |")
STACK_HEADER = ("| stack | shipped 3D Dice after round 0 / the last, clicks | candidate | "
                "objects | Dice after round 0 | Dice after the last round | clicks per object |")


def judge(bench: Split | Stack, shipped: Path, out: Path
          ) -> tuple[str, list[tuple[str, str, Difference]], list[str]]:
    """One benchmark paired per object against the shipped file: its table row, its losses
    beyond two standard errors (key, measure, difference) and its gains (as words)."""
    stack = isinstance(bench, Stack)
    load, judged = (load_stack_scores, STACK_JUDGED) if stack else (load_object_scores, JUDGED)
    try:
        a, b = load(shipped), load(out)
        rows = stack_rows(a, b) if stack else paired_rows(a, b)
    except ValueError as exc:  # not a result file, or other objects than the shipped
        raise SystemExit(f"{bench.key}: {exc}") from None
    _, n, d = rows[-1]  # "all": one split per file
    cells = [format_measure(d[m], m, by_image=True) for m in judged]
    row = (f"| {bench.key} | {summary(shipped)} | {summary(out)} | {n} | "
           f"{' | '.join(cells)} |")
    lost = [(bench.key, measure, diff) for folder, measure, diff in losses(rows, judged)
            if folder == "all"]
    gained = [f"{bench.key} {MEASURE_NAMES[measure]}"
              for folder, measure, _ in gains(rows, judged) if folder == "all"]
    return row, lost, gained


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="the candidate's checkpoint file")
    p.add_argument("--name", required=True,
                   help="result files RESULTS/NAME_<split>.json, e.g. candidate_v0.25.0")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a Predictor setting of the candidate (repeatable), e.g. "
                        "--set rules_off=guarded_merge,late_merge")
    p.add_argument("--jobs", type=int, default=1, help="splits scored at once (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job (default 1)")
    p.add_argument("--data", default="../shared/data", help="the data sets' root folder")
    p.add_argument("--results", default="training/results",
                   help="where the shipped results are and the candidate's go")
    p.add_argument("--stack-results", default="benchmarks/results",
                   help="where the shipped stack results are (the README's evaluate-stack files)")
    p.add_argument("--no-stacks", action="store_true",
                   help="the five splits only, without the two stack benchmarks")
    p.add_argument("--logs", default="runs/evaluation_splits", help="each evaluate's output")
    p.add_argument("--dry-run", action="store_true",
                   help="print the evaluate commands, run nothing")
    args = p.parse_args(argv)
    if min(args.jobs, args.threads) < 1:
        p.error("--jobs and --threads must be at least 1")
    if not Path(args.checkpoint).is_file():
        p.error(f"no checkpoint file {args.checkpoint}")
    try:
        settings = PredictorSettings().with_values(args.set)
    except ValueError as exc:
        raise SystemExit(f"--set: {exc}") from None
    data, results, logs = Path(args.data), Path(args.results), Path(args.logs)
    benches: tuple[Split | Stack, ...] = SPLITS if args.no_stacks else SPLITS + STACKS
    shipped = {s.key: (Path(args.stack_results) if isinstance(s, Stack) else results) / s.shipped
               for s in benches}
    missing = [str(shipped[s.key]) for s in benches if not shipped[s.key].is_file()]
    missing += [str(data / s.folder) for s in benches if not (data / s.folder).is_dir()]
    if missing:
        raise SystemExit("missing: " + ", ".join(missing))

    outs = {s.key: results / f"{args.name}_{s.key}.json" for s in benches}
    todo = [s for s in benches if not made_by(outs[s.key], args.checkpoint, settings,
                                              data / s.folder, s.limit)]
    commands = {s.key: evaluate_command(s, args.checkpoint, args.set, data, outs[s.key],
                                        args.threads) for s in todo}
    for s in benches:
        print(f"{s.key}: " + ("reusing " + str(outs[s.key]) if s not in todo
                              else " ".join(commands[s.key])), flush=True)
    if args.dry_run:
        return
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

    def run(split: Split | Stack) -> tuple[str, int]:
        with open(logs / f"{args.name}_{split.key}.log", "w") as log:
            done = subprocess.run(commands[split.key], stdout=log, stderr=subprocess.STDOUT,
                                  env=env)
        return split.key, done.returncode

    with ThreadPoolExecutor(args.jobs) as pool:
        failed = [key for key, rc in pool.map(run, todo) if rc != 0]
    if failed:
        raise SystemExit(f"evaluate failed on {', '.join(failed)}: see {logs}/{args.name}_*.log")

    print(f"\n{args.checkpoint} {' '.join(args.set)} − shipped, paired per object "
          "(± per object, and by image)")
    lost, gained = [], []
    for kind, header in ((Split, SPLIT_HEADER), (Stack, STACK_HEADER)):
        members = [s for s in benches if isinstance(s, kind)]
        if members:
            print("\n" + header + "\n" + "|---" * 7 + "|")
        for s in members:
            row, split_lost, split_gained = judge(s, shipped[s.key], outs[s.key])
            print(row)
            lost += split_lost
            gained += split_gained
    print("\n" + gate_verdict(lost, "the candidate"))
    if lost:
        raise SystemExit(1)
    if not gained:
        print("nothing gained beyond two standard errors: level with the shipped model, "
              "nothing to ship")
        raise SystemExit(LEVEL)
    print(f"gained beyond two standard errors: {'; '.join(gained)}")


if __name__ == "__main__":
    main()
