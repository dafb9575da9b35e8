"""Every answer rule switched off alone, on a training recipe's held-out objects: issue 25's table.

    python benchmarks/ablation.py training/stage6.toml CHECKPOINT --out DIR \\
        [--per-source 60] [--threads 1] [--jobs 1] [--set NAME=VALUE ...] [--rules a,b] \\
        [--only FOLDER] [--check FOLDER [--check-limit 400]] [--reuse EARLIER_DIR ...]

Scores the checkpoint with its settings (the defaults, changed by ``--set``; e.g. ``--set
rules_off=magnified_bias`` to start from a smaller set) and then once per rule in that set with
the rule switched off, 20 clicks each; writes ``DIR/base.json`` and ``DIR/off_<rule>.json``
(``benchmarks/validation.py --objects-out`` files, so ``benchmarks/paired.py`` reads them too)
and prints the table: paired differences rule off − all on per folder, mean ± standard error
(positive: the rule saves clicks; a negative IoU: the rule holds the last click's IoU; bold:
beyond two standard errors), and whether the rule earns its place
(``napari_risnet.evaluation.paired.rule_earns_place``: switching it off is a loss by the
shipping rule's own test — NoC@85, NoC@90 or the IoU after the last click, in a folder or over all
objects — since 0.29.0; from 0.25.0 the IoU counted over all objects only, before that clicks
only). Then the rules that do not
are retired together only as far as the set passes the same test (``retire_together``: in the
order of what each costs to keep, a rule whose retirement makes the set earn its place stays),
one ``DIR/together_<rules>.json`` per set tried, and a second table says which retire. A file
already in DIR for the same checkpoint and settings is reused, so an interrupted ablation
continues where it stopped; one written for anything else stops the run instead of being mixed
in. The rules kept are best measured again where they stay: ``--set rules_off=<the retired>``.
``--jobs N`` scores N variants at once in N processes (``VariantRuns``), the cumulative sets
ahead of their turn: on N idle cores about N times faster, with the same files.

``--check FOLDER`` adds an evaluation-only folder that is no test split as one more folder of the
table (``validation.check_sets``): since 0.20.0 the ablation reads the EM particles' *train*
split, never trained on, so a rule the out-of-domain data needs is seen before the test splits
are (0.19.0 retired small-object rules on the training folders alone and lost the particles'
test split). Since 0.23.0 it reads 400 of its objects by default (``--check-limit``): on 100,
the rules made for small objects were each within noise three candidates in a row and lost the
particles' test split together; on 400 the same retired set costs +0.23 ± 0.08 clicks at NoC@85
(docs/experiments.md, 0.23.0). Ablations made before 0.23.0 resume with ``--check-limit 100``.

``--reuse EARLIER_DIR`` takes each object already scored in an earlier ablation of the same
checkpoint that read another ``--check-limit`` (from its file of the same settings, whatever its
name) instead of scoring it again: on the CPU the robot user gives an object the same scores
whichever other objects a run reads (stage 15's ablations with 100 and 400 particles agree on all
247 objects they share), so moving to more check objects scores only the new ones (0.24.0: 247
of 625 objects per variant taken, 18 instead of about 25 minutes per pair of variants).
A gated candidate's gate folder (``benchmarks/gate.py --out``) is such a folder too: its
``check400`` file holds the ablation's base objects, so ``--reuse runs/X/gate`` skips the base.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import torch
from validation import held_out_sets, score  # a sibling script in benchmarks/

from napari_risnet.evaluation.paired import (ObjectScores, PairedRow, format_difference,
                                             format_measure, load_object_scores, paired_rows,
                                             retire_together, retirement_order, rule_earns_place)
from napari_risnet.inference.predictor import Predictor, PredictorSettings, default_checkpoint
from napari_risnet.training.validation import data_set_name


def weights_digest(checkpoint: str) -> str:
    """The first 12 hex digits of the weights file's SHA-256: a checkpoint retrained under the
    same name is another model."""
    path = default_checkpoint() if checkpoint == "default" else Path(checkpoint).expanduser()
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise SystemExit(f"cannot read the checkpoint {checkpoint}: {exc}") from None


def held_out_scope(per_source: int, only: str | None, checks: Sequence[str], check_limit: int,
                   max_clicks: int) -> str:
    """Which objects a result file scored, as its label says it (``variant_label``'s scope); the
    gate prefixes its set's name, which ``reuse_key`` takes out again."""
    listed = "".join(f", check {c} ({check_limit})" for c in checks)
    return f"per_source {per_source}, {only or 'all folders'}{listed}, {max_clicks} clicks"


def variant_label(model: str, settings: PredictorSettings, scope: str) -> str:
    """What a result file was made with (``model``: checkpoint and weights digest, the objects,
    the settings); a file with another label is not reused."""
    record = {k: v for k, v in settings.to_record().items() if k != "release"}
    off = ",".join(settings.rules_off) or "none"
    return f"{model} (rules_off={off}; {scope}; {json.dumps(record, sort_keys=True)})"


#: an object of a result file: (folder, name)
ObjectKey = tuple[str, str]

#: the held-out objects of this process (loaded once per worker by ``_load_objects``)
_OBJECTS: list = []


def reuse_key(label: str) -> str:
    """``label`` (``variant_label``) without the number of objects read from each check folder,
    with each check folder's path resolved (the gate writes it absolute) and without a gate
    set's name (``gate.GateSet.scope``, e.g. ``check400: ``): what two runs must share for their
    common objects to be scored alike, so that a gated candidate's ablation takes its base
    objects from the gate's folder (``--reuse``)."""
    label = re.sub(r"(\(rules_off=[^;]*; )\w+: (per_source )", r"\1\2", label)
    return re.sub(r", check ([^,;]+) \(\d+\)",
                  lambda m: f", check {os.path.realpath(m.group(1))}", label)


def earlier_scores(folders: list[Path]) -> dict[str, dict[ObjectKey, dict]]:
    """The per-object scores that earlier ablation folders (``--reuse``) hold, by what each file
    was made for (``reuse_key`` of its label: the check limits and a gate set's name taken
    out), from any of their result files (a set of rules may have been retired in another order
    there), keyed by (folder, name); a name found twice in a file is not used. Read once per
    run."""
    found: dict[str, dict[ObjectKey, dict]] = {}
    for path in sorted(p for folder in folders for p in folder.glob("*.json")):
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or "label" not in record or "objects" not in record:
            continue  # not a held-out scores file (a gate folder's stack check, for one)
        keys = [(o["folder"], o["name"]) for o in record["objects"]]
        counts = Counter(keys)
        found.setdefault(reuse_key(str(record["label"])), {}).update(
            {k: o for k, o in zip(keys, record["objects"]) if counts[k] == 1})
    return found


def _load_objects(held_out_args: tuple, threads: int) -> None:
    global _OBJECTS
    torch.set_num_threads(threads)
    _OBJECTS = held_out_sets(*held_out_args)


def _score_into(path: Path, label: str, checkpoint: str, settings: PredictorSettings,
                max_clicks: int, earlier: dict[ObjectKey, dict] | None = None) -> None:
    """Scores this process's objects into ``path``, taking those in ``earlier`` from there."""
    keyed = [(folder, [((data_set_name(folder), s.name), s) for s in samples])
             for folder, samples in _OBJECTS]
    keys = [key for _, pairs in keyed for key, _ in pairs]
    counts = Counter(keys)
    earlier = {k: v for k, v in (earlier or {}).items() if counts[k] == 1}
    todo = [(folder, [s for key, s in pairs if key not in earlier]) for folder, pairs in keyed]
    _, fresh = score(Predictor(checkpoint, settings, device="cpu"),
                     [(folder, samples) for folder, samples in todo if samples], max_clicks)
    scored = iter(fresh)
    objects = [earlier[k] if k in earlier else next(scored) for k in keys]
    if earlier:
        print(f"{path.name}: {len(keys) - len(fresh)} of {len(keys)} objects reused", flush=True)
    write_scores(path, label, objects)


def write_scores(path: Path, label: str, objects: list[dict]) -> None:
    """A result file (``validation.py --objects-out`` form), written whole or not at all."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"label": label, "objects": objects}))
    tmp.replace(path)
    print(f"wrote {path}", flush=True)


def reusable(path: Path, label: str) -> bool:
    """Whether ``path`` already holds this label's scores (reused); SystemExit when it holds
    another's, which is never mixed in."""
    if not path.is_file():
        return False
    found = json.loads(path.read_text()).get("label")
    if found != label:
        raise SystemExit(f"{path} was written for another checkpoint or settings:\n"
                         f"  {found}\nexpected\n  {label}\nchoose another --out folder")
    print(f"reusing {path}", flush=True)
    return True


class VariantRuns:
    """Scores variants (settings) into result files, each at most once: in this process
    (``jobs`` 1) or in ``jobs`` worker processes that each load the objects once and run one
    variant at a time. The ablation's variants are independent, and the cumulative sets can be
    scored ahead of their turn, so on a machine with N cores ``--jobs N`` takes about 1/N of the
    time; a file already there for the same label is reused, one for another label stops the
    run (SystemExit) instead of being mixed in."""

    def __init__(self, jobs: int, held_out_args: tuple, threads: int, checkpoint: str,
                 model: str, scope: str, max_clicks: int, reuse: list[Path] | None = None
                 ) -> None:
        self.checkpoint, self.model, self.scope, self.max_clicks = (
            checkpoint, model, scope, max_clicks)
        self.earlier = earlier_scores(reuse or [])
        self.pending: dict[Path, Future | tuple[str, PredictorSettings] | None] = {}
        self.pool = None
        self.jobs = jobs
        self._load = (held_out_args, threads)
        if jobs > 1:
            self.pool = ProcessPoolExecutor(jobs, initializer=_load_objects,
                                            initargs=self._load)

    def submit(self, path: Path, settings: PredictorSettings) -> None:
        """Start scoring ``settings`` into ``path`` (in one process: when its scores are asked)."""
        if path in self.pending:
            return
        label = variant_label(self.model, settings, self.scope)
        if reusable(path, label):
            self.pending[path] = None
        elif self.pool is not None:
            self.pending[path] = self.pool.submit(
                _score_into, path, label, self.checkpoint, settings, self.max_clicks,
                self.earlier.get(reuse_key(label)))
        else:
            self.pending[path] = (label, settings)

    def cancel(self, path: Path) -> None:
        """Drop a variant submitted ahead of its turn that is no longer needed (if not started)."""
        job = self.pending.get(path)
        if isinstance(job, Future) and job.cancel():
            del self.pending[path]

    def scores(self, path: Path, settings: PredictorSettings) -> ObjectScores:
        """The per-object scores of ``settings``, scored first where needed."""
        self.submit(path, settings)
        job = self.pending[path]
        if isinstance(job, Future):
            job.result()
        elif job is not None:
            if not _OBJECTS:
                _load_objects(*self._load)
            _score_into(path, job[0], self.checkpoint, job[1], self.max_clicks,
                        self.earlier.get(reuse_key(job[0])))
        self.pending[path] = None
        return load_object_scores(path)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def table(variants: dict[str, list[PairedRow]], heading: str = "rule switched off alone",
          verdicts: tuple[str, str] = ("yes", "no: retire")) -> list[str]:
    """The ablation table's lines from each variant's ``paired_rows`` against the base: one row
    per variant (a rule, or a set of rules named ``a+b``), its folders and all objects at NoC@85,
    NoC@90 and the IoU after the last click (each can keep a rule), the verdict of
    ``rule_earns_place``."""
    lines: list[str] = []
    for name, rows in variants.items():
        if not lines:
            folders = [folder for folder, _, _ in rows if folder != "all"]
            lines += [f"| {heading} | " + " | ".join(
                f"{f} NoC@85 / 90 / IoU@last" for f in folders) +
                " | all NoC@85 / 90 / IoU@last (objects) | earns its place |",
                "|---" * (len(folders) + 3) + "|"]
        cells = []
        for folder, n, out in rows:  # every measure the verdict reads, in every folder
            cell = (f"{format_difference(out['noc85'])} / {format_difference(out['noc90'])}"
                    f" / {format_measure(out['iou_last'], 'iou_last')}")
            cells.append(cell + (f" ({n})" if folder == "all" else ""))
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
    p.add_argument("--threads", type=int, default=1, help="threads per job (default 1)")
    p.add_argument("--jobs", type=int, default=1,
                   help="variants scored at once, one process each (default 1; on N idle cores "
                        "N jobs of 1 thread)")
    p.add_argument("--only", default=None, help="score only the folder with this name")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a Predictor setting of the base (repeatable), as in validation.py")
    p.add_argument("--check", action="append", default=[], metavar="FOLDER",
                   help="an evaluation-only folder that is no test split, scored as one more "
                        "folder (repeatable), as in validation.py")
    p.add_argument("--check-limit", type=int, default=400,
                   help="objects spread over each --check folder (default 400; ablations made "
                        "before 0.23.0 read 100)")
    p.add_argument("--reuse", action="append", default=[], metavar="EARLIER_DIR",
                   help="an earlier ablation folder of the same checkpoint and settings with "
                        "another --check-limit, or the candidate's gate folder (benchmarks/"
                        "gate.py --out): its objects are taken, not scored again (repeatable)")
    p.add_argument("--rules", default=None,
                   help="comma-separated rules to switch off (default: every rule in the base)")
    args = p.parse_args()
    if min(args.per_source, args.max_clicks, args.check_limit, args.jobs, args.threads) < 1:
        p.error("--per-source, --max-clicks, --check-limit, --jobs and --threads must be at "
                "least 1")
    missing = [d for d in args.reuse if not Path(d).is_dir()]
    if missing:
        p.error(f"--reuse: no such folder: {', '.join(missing)}")
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
    scope = held_out_scope(args.per_source, args.only, args.check, args.check_limit,
                           args.max_clicks)
    out = Path(args.out)
    files = {name: out / ("base.json" if name == "base" else f"off_{name}.json")
             for name in variants}
    out.mkdir(parents=True, exist_ok=True)
    runs = VariantRuns(args.jobs, (args.recipe, args.per_source, args.only, 1.0, args.check,
                                   args.check_limit), args.threads, args.checkpoint, model, scope,
                       args.max_clicks, [Path(d) for d in args.reuse])
    try:
        retired, kept = ablate(runs, base, rules, variants, files, out)
    finally:
        runs.close()
    print(f"\nretire: {', '.join(retired) or 'none'}; keep: {', '.join(kept) or 'none'}")
    if retired and kept:
        off = ",".join(base.rules_off + retired)
        print(f"the kept rules where they stay: --set rules_off={off}")


def ablate(runs: VariantRuns, base: PredictorSettings, rules: tuple[str, ...],
           variants: dict[str, PredictorSettings], files: dict[str, Path], out: Path
           ) -> tuple[tuple[str, ...], list[str]]:
    """The two tables (printed): each rule off alone, then the cumulative sets; returns the
    retired rules and the kept ones."""
    for name, settings in variants.items():
        runs.submit(files[name], settings)
    base_scores = runs.scores(files["base"], base)
    alone = {r: paired_rows(base_scores, runs.scores(files[r], variants[r])) for r in rules}
    print("\nrule off − all on, mean ± standard error (positive NoC: the rule saves clicks; "
          "negative IoU: it holds the last click's IoU)\n")
    print("\n".join(table(alone)))

    together: dict[str, list[PairedRow]] = {}
    order = retirement_order(alone)
    runs_ahead = runs.jobs - 1  # one set is scored now, the other jobs score the next ones

    def set_run(retired: tuple[str, ...]) -> tuple[Path, PredictorSettings]:
        return (out / f"together_{'+'.join(retired)}.json",
                base.with_values([f"rules_off={','.join(base.rules_off + retired)}"]))

    def earns_together(retired: tuple[str, ...]) -> bool:
        # the sets after this one if it and the next rules retire too, scored ahead of their turn
        at = order.index(retired[-1]) + 1
        ahead = [retired + tuple(order[at:at + k]) for k in range(1, runs_ahead + 1)]
        for later in ahead:
            if len(later) > len(retired):  # past the last rule there is no later set
                runs.submit(*set_run(later))
        if len(retired) == 1:  # measured alone already
            rows = alone[retired[0]]
        else:
            rows = paired_rows(base_scores, runs.scores(*set_run(retired)))
        together["+".join(retired)] = rows
        earns = rule_earns_place(rows)
        if earns:  # the last rule stays: the sets that retired it are not needed
            for later in ahead:
                runs.cancel(set_run(later)[0])
        return earns

    retired, tried = retire_together(order, earns_together)
    if len(tried) > 1:
        print("\nthe rules that fail alone, switched off together (cumulative; a rule whose set "
              "earns its place stays)\n")
        print("\n".join(table(together, heading="rules switched off together",
                               verdicts=("yes: the last one stays", "no"))))
    return retired, [r for r in rules if r not in retired]


if __name__ == "__main__":
    main()
