"""Every answer rule switched off alone, on a training recipe's held-out objects: issue 25's table.

    python benchmarks/ablation.py training/stage6.toml CHECKPOINT --out DIR \\
        [--per-source 60] [--threads 1] [--set NAME=VALUE ...] [--rules a,b] [--only FOLDER]

Scores the checkpoint with its settings (the defaults, changed by ``--set``; e.g. ``--set
rules_off=magnified_bias`` to start from a smaller set) and then once per rule in that set with
the rule switched off, 20 clicks each; writes ``DIR/base.json`` and ``DIR/off_<rule>.json``
(``benchmarks/validation.py --objects-out`` files, so ``benchmarks/paired.py`` reads them too)
and prints the table: paired differences rule off − all on per folder, mean ± standard error
(positive: the rule saves clicks; bold: beyond two standard errors), and whether the rule earns
its place (``napari_risnet.evaluation.paired.rule_earns_place``). Then the rules that do not
are retired together only as far as the set passes the same test (``retire_together``: in the
order of what each costs to keep, a rule whose retirement makes the set earn its place stays),
one ``DIR/together_<rules>.json`` per set tried, and a second table says which retire. A file
already in DIR for the same checkpoint and settings is reused, so an interrupted ablation
continues where it stopped; one written for anything else stops the run instead of being mixed
in. The rules kept are best measured again where they stay: ``--set rules_off=<the retired>``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from validation import held_out_sets, score  # a sibling script in benchmarks/

from napari_risnet.evaluation.paired import (PairedRow, format_difference, load_object_scores,
                                             paired_rows, retire_together, retirement_order,
                                             rule_earns_place)
from napari_risnet.inference.predictor import Predictor, PredictorSettings, default_checkpoint


def weights_digest(checkpoint: str) -> str:
    """The first 12 hex digits of the weights file's SHA-256: a checkpoint retrained under the
    same name is another model."""
    path = default_checkpoint() if checkpoint == "default" else Path(checkpoint).expanduser()
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise SystemExit(f"cannot read the checkpoint {checkpoint}: {exc}") from None


def variant_label(model: str, settings: PredictorSettings, scope: str) -> str:
    """What a result file was made with (``model``: checkpoint and weights digest, the objects,
    the settings); a file with another label is not reused."""
    record = {k: v for k, v in settings.to_record().items() if k != "release"}
    off = ",".join(settings.rules_off) or "none"
    return f"{model} (rules_off={off}; {scope}; {json.dumps(record, sort_keys=True)})"


def run_variant(path: Path, label: str, checkpoint: str, settings: PredictorSettings,
                sets: list, max_clicks: int) -> None:
    """Score one variant into ``path`` unless a file of the same label is there."""
    if path.is_file():
        found = json.loads(path.read_text()).get("label")
        if found == label:
            print(f"reusing {path}", flush=True)
            return
        raise SystemExit(f"{path} was written for another checkpoint or settings:\n  {found}\n"
                         f"expected\n  {label}\nchoose another --out folder")
    _, objects = score(Predictor(checkpoint, settings, device="cpu"), sets, max_clicks)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"label": label, "objects": objects}))
    tmp.replace(path)
    print(f"wrote {path}", flush=True)


def table(variants: dict[str, list[PairedRow]], heading: str = "rule switched off alone",
          verdicts: tuple[str, str] = ("yes", "no: retire")) -> list[str]:
    """The ablation table's lines from each variant's ``paired_rows`` against the base: one row
    per variant (a rule, or a set of rules named ``a+b``), its folders, all objects, the verdict
    of ``rule_earns_place``."""
    lines: list[str] = []
    for name, rows in variants.items():
        if not lines:
            folders = [folder for folder, _, _ in rows if folder != "all"]
            lines += [f"| {heading} | " + " | ".join(
                f"{f} NoC@85 / 90" for f in folders) + " | all NoC@85 / 90 / IoU@last (objects)"
                " | earns its place |", "|---" * (len(folders) + 3) + "|"]
        cells = []
        for folder, n, out in rows:
            cell = f"{format_difference(out['noc85'])} / {format_difference(out['noc90'])}"
            if folder == "all":
                cell += f" / {format_difference(out['iou_last'], digits=3)} ({n})"
            cells.append(cell)
        verdict = verdicts[0] if rule_earns_place(rows) else verdicts[1]
        label = ", ".join(f"`{r}`" for r in name.split("+"))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipe", help="training recipe (TOML) whose held-out objects to use")
    p.add_argument("checkpoint", help="'default' or a checkpoint file")
    p.add_argument("--out", required=True, help="folder for the per-variant result files")
    p.add_argument("--per-source", type=int, default=60, help="objects per data folder")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default=None, help="score only the folder with this name")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a Predictor setting of the base (repeatable), as in validation.py")
    p.add_argument("--rules", default=None,
                   help="comma-separated rules to switch off (default: every rule in the base)")
    args = p.parse_args()
    if args.per_source < 1 or args.max_clicks < 1:
        p.error("--per-source and --max-clicks must be at least 1")
    try:
        base = PredictorSettings().with_values(args.set)
    except ValueError as exc:
        raise SystemExit(f"--set: {exc}") from None
    rules = base.rules if args.rules is None else tuple(
        r.strip() for r in args.rules.split(",") if r.strip())
    try:  # uses() names the rules when one is unknown
        idle = [r for r in rules if not base.uses(r)]
    except ValueError as exc:
        p.error(f"--rules: {exc}")
    if idle:
        p.error(f"--rules: {', '.join(idle)} not in the base settings: nothing to switch off")
    if not rules:
        p.error("the base settings use no rule: nothing to ablate")
    variants = {"base": base} | {
        rule: base.with_values([f"rules_off={','.join(base.rules_off + (rule,))}"])
        for rule in rules}
    model = f"{args.checkpoint} [sha256 {weights_digest(args.checkpoint)}]"
    scope = f"per_source {args.per_source}, {args.only or 'all folders'}, {args.max_clicks} clicks"
    out = Path(args.out)
    files = {name: out / ("base.json" if name == "base" else f"off_{name}.json")
             for name in variants}
    torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    sets = held_out_sets(args.recipe, args.per_source, args.only)
    for name, settings in variants.items():
        run_variant(files[name], variant_label(model, settings, scope), args.checkpoint,
                    settings, sets, args.max_clicks)
    base_scores = load_object_scores(files["base"])
    alone = {r: paired_rows(base_scores, load_object_scores(files[r])) for r in rules}
    print("\nrule off − all on, mean ± standard error (positive: the rule saves clicks)\n")
    print("\n".join(table(alone)))

    together: dict[str, list[PairedRow]] = {}

    def earns_together(retired: tuple[str, ...]) -> bool:
        if len(retired) == 1:  # measured alone already
            rows = alone[retired[0]]
        else:
            settings = base.with_values([f"rules_off={','.join(base.rules_off + retired)}"])
            path = out / f"together_{'+'.join(retired)}.json"
            run_variant(path, variant_label(model, settings, scope), args.checkpoint, settings,
                        sets, args.max_clicks)
            rows = paired_rows(base_scores, load_object_scores(path))
        together["+".join(retired)] = rows
        return rule_earns_place(rows)

    retired, tried = retire_together(retirement_order(alone), earns_together)
    if len(tried) > 1:
        print("\nthe rules that fail alone, switched off together (cumulative; a rule whose set "
              "earns its place stays)\n")
        print("\n".join(table(together, heading="rules switched off together",
                               verdicts=("yes: the last one stays", "no"))))
    kept = [r for r in rules if r not in retired]
    print(f"\nretire: {', '.join(retired) or 'none'}; keep: {', '.join(kept) or 'none'}")
    if retired and kept:
        off = ",".join(base.rules_off + retired)
        print(f"the kept rules where they stay: --set rules_off={off}")


if __name__ == "__main__":
    main()
