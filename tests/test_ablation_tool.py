"""benchmarks/ablation.py, benchmarks/gate.py and the check folders of benchmarks/validation.py:
the scripts that choose which answer rules stay and which candidate goes on to the evaluation
splits (issue 25), run on a tiny random model and synthetic folders."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_risnet.model import RISNet, save_checkpoint

from conftest import disc_image, stack_folder, tiny_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from validation import check_sets, held_out_sets  # noqa: E402  (a script beside the package)


def _folder(root: Path, n: int, seed: int = 0) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(n):
        img, gt = disc_image(shape=(48, 56), centre=(22 + k % 5, 26), radius=9 + k % 4,
                             seed=seed + k, rgb=True)
        Image.fromarray(img).save(root / "images" / f"im{k}.png")
        Image.fromarray(np.where(gt, 255, 0).astype(np.uint8)).save(root / "masks" / f"im{k}.png")
    return root


def test_check_folders_load_spread_objects_and_refuse_evaluation_splits(tmp_path):
    train = _folder(tmp_path / "particles" / "train", 5)
    (folder, objects), = check_sets([str(train)], 3, trained=[])
    assert folder == str(train)
    assert [o.name for o in objects] == ["im0", "im2", "im4"]  # spread like evaluate --limit
    test = _folder(tmp_path / "particles" / "test", 1)
    grabcut = _folder(tmp_path / "grabcut", 1)
    for bad, message in [(test, "for evaluation only"), (grabcut, "for evaluation only"),
                         (train, "the recipe trains on it"),
                         (tmp_path / "missing" / "train", "no such folder")]:
        with pytest.raises(SystemExit, match=message):
            check_sets([str(bad)], 3, trained=[str(train)])


@pytest.fixture
def ablation_setup(tmp_path):
    """A recipe whose one folder is all held out, a check folder, a random tiny checkpoint."""
    data = _folder(tmp_path / "d", 3)
    check = _folder(tmp_path / "other" / "train", 2, seed=10)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'out_dir = "{tmp_path / "run"}"\nval_fraction = 1.0\n[model]\n'
                      'backbone = "efficientnet_lite0"\n[[data]]\n'
                      f'path = "{data}"\n')
    ckpt = save_checkpoint(tmp_path / "rand.pt", RISNet(tiny_config()))
    return recipe, check, ckpt


def test_only_loads_its_own_folder_and_still_refuses_a_bad_check(ablation_setup, tmp_path,
                                                                  monkeypatch):
    """One folder per process (``--only``): the objects are those of the full run's folder, the
    other folders are not decoded, and a check folder that is a test split is refused anyway."""
    import napari_risnet.training.validation as held_out

    recipe, check, _ = ablation_setup
    full = {path: [o.name for o in objects]
            for path, objects in held_out_sets(str(recipe), 3, checks=[str(check)],
                                               check_limit=2)}
    assert len(full) == 2
    decoded = []
    real_load = held_out.load_object
    monkeypatch.setattr(held_out, "load_object",
                        lambda ref, cache: decoded.append(ref) or real_load(ref, cache))
    (path, objects), = held_out_sets(str(recipe), 3, "other", checks=[str(check)], check_limit=2)
    assert path == str(check) and [o.name for o in objects] == full[str(check)]
    assert decoded == []  # the recipe's own folder was listed, not loaded
    (path, objects), = held_out_sets(str(recipe), 3, "d", checks=[str(check)], check_limit=2)
    assert [o.name for o in objects] == full[path] and len(decoded) == 3
    with pytest.raises(SystemExit, match="no such folder"):
        held_out_sets(str(recipe), 3, "nowhere", checks=[str(check)], check_limit=2)
    test_split = _folder(tmp_path / "other2" / "test", 1)
    with pytest.raises(SystemExit, match="for evaluation only"):
        held_out_sets(str(recipe), 3, "d", checks=[str(test_split)], check_limit=2)


def _ablation(recipe, check, ckpt, out, *extra):
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "ablation.py"), str(recipe), str(ckpt), "--out",
         str(out), "--max-clicks", "3", "--check", str(check), "--check-limit", "2", "--rules",
         "flip_averaging,focus_pass", *extra],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_parallel_jobs_score_what_one_job_scores(ablation_setup, tmp_path):
    recipe, check, ckpt = ablation_setup
    one = _ablation(recipe, check, ckpt, tmp_path / "one")
    two = _ablation(recipe, check, ckpt, tmp_path / "two", "--jobs", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    for name in ("base", "off_flip_averaging", "off_focus_pass"):
        a = json.loads((tmp_path / "one" / f"{name}.json").read_text())
        b = json.loads((tmp_path / "two" / f"{name}.json").read_text())
        assert a == b
    folders = {o["folder"] for o in a["objects"]}
    assert folders == {"d", "other"}  # the check folder is one more folder of the table
    assert "| other NoC@85 / 90 / IoU@last |" in one.stdout
    retire = [line for line in one.stdout.splitlines() if line.startswith("retire:")]
    assert retire == [line for line in two.stdout.splitlines() if line.startswith("retire:")]
    assert len(retire) == 1


def test_a_result_file_of_other_settings_stops_the_run(ablation_setup, tmp_path):
    recipe, check, ckpt = ablation_setup
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "base.json").write_text(json.dumps({"label": "another model",
                                                          "objects": []}))
    run = _ablation(recipe, check, ckpt, tmp_path / "o", "--jobs", "2")
    assert run.returncode != 0
    assert "was written for another checkpoint or settings" in run.stderr


def test_reuse_takes_the_objects_an_earlier_ablation_scored(ablation_setup, tmp_path):
    """A move to more check objects scores only the new ones: the file equals a fresh run's,
    except for an object marked in the earlier file (under another name), which proves it was
    taken, not rescored; another model's file is passed over."""
    recipe, check, ckpt = ablation_setup
    rules = ("--rules", "focus_pass")
    fresh = _ablation(recipe, check, ckpt, tmp_path / "fresh", *rules)
    early = _ablation(recipe, check, ckpt, tmp_path / "early", *rules, "--check-limit", "1")
    assert fresh.returncode == 0 and early.returncode == 0, fresh.stderr + early.stderr
    earlier = json.loads((tmp_path / "early" / "base.json").read_text())
    marked = earlier["objects"][0]
    marked["ious"] = [0.123] * len(marked["ious"])
    (tmp_path / "early" / "base.json").unlink()
    (tmp_path / "early" / "together_renamed.json").write_text(json.dumps(earlier))
    (tmp_path / "elsewhere").mkdir()  # a folder of another model's files is passed over
    (tmp_path / "elsewhere" / "off_focus_pass.json").write_text(json.dumps(
        {"label": "another model", "objects": [{"folder": "d", "name": "im0", "ious": [0.5],
                                                "noc85": 20, "noc90": 20}]}))
    run = _ablation(recipe, check, ckpt, tmp_path / "again", *rules, "--reuse",
                    str(tmp_path / "early"), "--reuse", str(tmp_path / "elsewhere"))
    assert run.returncode == 0, run.stderr
    assert "base.json: 4 of 5 objects reused" in run.stdout  # 3 held out + 1 of 2 check objects
    assert "off_focus_pass.json: 4 of 5 objects reused" in run.stdout
    for name in ("base", "off_focus_pass"):
        got = json.loads((tmp_path / "again" / f"{name}.json").read_text())
        want = json.loads((tmp_path / "fresh" / f"{name}.json").read_text())
        assert got["label"] == want["label"]
        if name == "base":
            assert got["objects"][0] == marked
            got["objects"][0] = want["objects"][0]
        assert got["objects"] == want["objects"]
    missing = _ablation(recipe, check, ckpt, tmp_path / "x", "--reuse", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "--reuse: no such folder" in missing.stderr


def _gate(recipe, check, ckpt, out, shipped, stacks):
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "gate.py"), str(ckpt), "--out", str(out), "--jobs", "2",
         "--max-clicks", "3", "--recipe", str(recipe), "--check", str(check), "--wide", "d",
         "--stack-folder", str(stacks), "--stack-limit", "2"]
        + [a for name, f in shipped.items() for a in (f"--shipped-{name}", str(f))],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_the_gate_reads_all_three_sets_and_its_exit_status_is_the_decision(ablation_setup,
                                                                             tmp_path):
    """The same weights as the shipped model are level (3); shipped scores made worse are a gain
    (0), better a loss (1); a stack check the shipped model did better is a loss, one it did
    worse no gain (its volumes were trained on); later runs reuse the candidate's files; a file
    of other weights stops the run."""
    from gate import gate_sets, score_set, score_stack  # noqa: E402  (a script beside the package)

    recipe, check, ckpt = ablation_setup
    stacks = stack_folder(tmp_path / "stacks", 2)
    shipped = {}
    for gate_set in gate_sets(str(check), "d"):
        shipped[gate_set.name] = tmp_path / f"shipped_{gate_set.name}.json"
        score_set(str(recipe), gate_set, str(ckpt), "shipped", shipped[gate_set.name], 1, 3)
    shipped["stack80"] = score_stack(stacks, str(ckpt), 2, tmp_path / "shipped_stack80.json", 1)
    wide = json.loads(shipped["hippocampus291"].read_text())["objects"]
    assert {o["folder"] for o in wide} == {"d"} and len(wide) == 3  # every held-out object of d
    level = _gate(recipe, check, ckpt, tmp_path / "cand", shipped, stacks)
    assert level.returncode == 3, level.stderr
    assert "## check400" in level.stdout and "## hippocampus291" in level.stdout
    assert "## stack80 (losses only)" in level.stdout
    assert "gate: passed" in level.stdout and "level with the shipped model" in level.stdout
    assert len(json.loads((tmp_path / "cand" / "stack80.json").read_text())["objects"]) == 2

    original = shipped["stack80"].read_text()

    def shift_stack(by: float) -> None:
        record = json.loads(original)
        for obj in record["objects"]:
            obj["dice"] = [d + by * (k + 1) for k, d in enumerate(obj["dice"])]
        shipped["stack80"].write_text(json.dumps(record))

    shift_stack(-0.05)  # the shipped model propagated worse: no gain counted, still level
    better_stack = _gate(recipe, check, ckpt, tmp_path / "cand", shipped, stacks)
    assert better_stack.returncode == 3, better_stack.stdout + better_stack.stderr
    assert "reusing" in better_stack.stdout and "stack80" not in better_stack.stdout.split(
        "gate:")[1]
    shift_stack(+0.05)  # it propagated better: the candidate loses the stack check
    worse_stack = _gate(recipe, check, ckpt, tmp_path / "cand", shipped, stacks)
    assert worse_stack.returncode == 1 and "gate: failed" in worse_stack.stdout
    assert "stack80 all 3D Dice after round 0" in worse_stack.stdout
    shipped["stack80"].write_text(original)  # level again
    after = _ablation(recipe, check, ckpt, tmp_path / "abl", "--reuse", str(tmp_path / "cand"))
    assert after.returncode == 0, after.stderr  # the ablation's base is the gate's check400
    assert "base.json: 5 of 5 objects reused" in after.stdout
    assert "off_focus_pass.json: " not in after.stdout  # other settings: scored, not reused

    def shift(by: list[int]) -> None:
        record = json.loads(shipped["check400"].read_text())
        for obj, k in zip(record["objects"], by * len(record["objects"])):
            obj["noc85"] += k
        shipped["check400"].write_text(json.dumps(record))

    shift([4, 5])  # the shipped model needed more clicks: the candidate gains
    gain = _gate(recipe, check, ckpt, tmp_path / "cand", shipped, stacks)
    assert gain.returncode == 0, gain.stderr
    assert "reusing" in gain.stdout and "gained beyond two standard errors: check400" in gain.stdout
    shift([-8, -10])  # now the shipped model needed fewer: the candidate loses
    loss = _gate(recipe, check, ckpt, tmp_path / "cand", shipped, stacks)
    assert loss.returncode == 1 and "gate: failed" in loss.stdout
    other = save_checkpoint(tmp_path / "other.pt", RISNet(tiny_config()))
    refused = _gate(recipe, check, other, tmp_path / "cand", shipped, stacks)
    assert refused.returncode != 0 and "written for another checkpoint" in refused.stderr
