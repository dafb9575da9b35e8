"""Paired per-object differences and the test a rule must pass to stay (evaluation.paired)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_risnet.evaluation.paired import (Difference, beyond_noise, difference,
                                             STACK_JUDGED, format_difference, gains, gate_verdict,
                                             image_of, iou_after, load_object_scores,
                                             load_stack_scores, losses, paired_rows, stack_rows,
                                             retire_together, retirement_order, rule_earns_place)
from napari_risnet.metrics import clicks_to_reach


def _scores(folder_nocs: dict[str, list[tuple[int, int]]]) -> dict:
    return {(folder, f"o{i}"): {"folder": folder, "name": f"o{i}", "noc85": n85, "noc90": n90,
                                "ious": [0.5, 0.9]}
            for folder, nocs in folder_nocs.items() for i, (n85, n90) in enumerate(nocs)}


def test_paired_rows_are_per_object_differences_with_their_standard_error():
    a = _scores({"coco": [(2, 3), (4, 6), (5, 5)], "em": [(1, 1), (2, 2)]})
    b = _scores({"coco": [(3, 3), (6, 6), (5, 8)], "em": [(1, 1), (2, 2)]})
    rows = {folder: (n, out) for folder, n, out in paired_rows(a, b)}
    assert list(rows) == ["coco", "em", "all"]
    n, out = rows["coco"]
    d = np.array([1, 2, 0], float)
    assert n == 3 and out["noc85"].mean == pytest.approx(1.0)
    assert out["noc85"].se == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    assert out["noc90"].mean == pytest.approx(1.0)
    assert rows["em"][1]["noc85"][:2] == (0.0, 0.0)
    assert rows["all"][0] == 5 and rows["all"][1]["noc85"].mean == pytest.approx(3 / 5)


def test_only_shared_objects_are_paired_and_none_shared_is_an_error():
    a = _scores({"coco": [(2, 3), (4, 6)]})
    b = {k: v for k, v in _scores({"coco": [(9, 9), (4, 6)]}).items() if k[1] == "o1"}
    (_, n, out), _ = paired_rows(a, b)
    assert n == 1 and out["noc85"].mean == 0
    with pytest.raises(ValueError, match="share no objects"):
        paired_rows(a, _scores({"other": [(1, 1)]}))


def test_iou_after_a_click_keeps_the_last_when_the_robot_stopped():
    obj = {"ious": [0.3, 0.8, 0.95]}
    assert iou_after(obj, 1) == 0.3 and iou_after(obj, None) == 0.95
    assert iou_after(obj, 10) == 0.95


def test_a_rule_stays_only_where_switching_it_off_loses_by_the_shipping_rule():
    def rows(all85, all90, folder85=(0.0, 0.1), folder90=(0.0, 0.1), all_iou=(0.0, 0.001),
             folder_iou=(0.0, 0.001)):
        def d(mean_se):
            return Difference(*mean_se, se_by_image=1.0, images=30)  # clustered SE not used
        return [("coco", 40, {"noc85": d(folder85), "noc90": d(folder90),
                              "iou_last": d(folder_iou)}),
                ("all", 200, {"noc85": d(all85), "noc90": d(all90), "iou_last": d(all_iou)})]

    assert rule_earns_place(rows((0.15, 0.07), (0.1, 0.1)))  # over all at NoC@85
    assert rule_earns_place(rows((0.0, 0.1), (0.5, 0.2)))  # over all at NoC@90
    assert not rule_earns_place(rows((0.34, 0.17), (0.2, 0.2)))  # exactly two SE: noise
    assert not rule_earns_place(rows((-0.6, 0.2), (-0.6, 0.25)))  # off is better: retire
    # one folder at either threshold, as the shipping rule counts a loss
    assert rule_earns_place(rows((0.1, 0.1), (0.1, 0.1), (0.73, 0.35), (0.53, 0.43)))
    assert rule_earns_place(rows((0.1, 0.1), (0.1, 0.1), (0.1, 0.1), (1.42, 0.66)))
    assert not rule_earns_place(rows((0.1, 0.1), (0.1, 0.1), (0.69, 0.35), (0.53, 0.43)))
    # the IoU after the last click over all objects: lower without the rule keeps it (0.24.0's
    # late merge on held-out objects: -0.00084 +- 0.00038), higher or within noise does not
    level = ((0.0, 0.05), (0.0, 0.05))
    assert rule_earns_place(rows(*level, all_iou=(-0.00084, 0.00038)))
    assert not rule_earns_place(rows(*level, all_iou=(-0.0007, 0.00038)))
    assert not rule_earns_place(rows(*level, all_iou=(+0.003, 0.001)))
    # ... and in one folder (the blend's late merge: COCO -0.005 +- 0.002, all -0.0002 +- 0.0003;
    # retired, it cost GrabCut's IoU after 20 clicks); a higher IoU there does not keep it
    assert rule_earns_place(rows(*level, folder_iou=(-0.005, 0.002), all_iou=(-0.0002, 0.0003)))
    assert not rule_earns_place(rows(*level, folder_iou=(+0.005, 0.002)))
    # the verdict is the shipping rule's: a rule stays exactly where switching it off would lose
    for case in (rows((0.15, 0.07), (0.1, 0.1)), rows(*level, folder_iou=(-0.012, 0.004)),
                 rows((-0.6, 0.2), (-0.6, 0.25))):
        assert rule_earns_place(case) == bool(losses(case))


def _all_rows(noc85: tuple[float, float], noc90: tuple[float, float]) -> list:
    return [("all", 225, {"noc85": Difference(*noc85, 1.0, 30),
                          "noc90": Difference(*noc90, 1.0, 30),
                          "iou_last": Difference(0.0, 0.001, 1.0, 30)})]


def test_rules_that_fail_alone_are_tried_the_costliest_to_keep_first():
    alone = {"flip": _all_rows((0.24, 0.1), (0.9, 0.2)),  # earns its place: never retired
             "prior": _all_rows((-0.13, 0.13), (-0.39, 0.19)),
             "merge": _all_rows((-0.03, 0.04), (0.04, 0.05)),
             "threshold": _all_rows((0.06, 0.15), (0.04, 0.21)),
             "focus": _all_rows((0.04, 0.04), (0.12, 0.08))}
    # NoC@90 first; a tie (0.04) goes to the lower NoC@85
    assert retirement_order(alone) == ["prior", "merge", "threshold", "focus"]


def test_a_rule_whose_retirement_makes_the_set_cost_clicks_stays():
    """Effects within noise one by one add up: the set is judged as a whole after each rule,
    and a rule that tips it over stays while the later ones are still tried."""
    def earns(retired):  # two pairs stand in for each other: either one off alone is noise
        return {"threshold", "focus"} <= set(retired) or {"prior", "merge"} <= set(retired)

    retired, tried = retire_together(["prior", "wider", "threshold", "merge", "focus", "spill"],
                                     earns)
    assert retired == ("prior", "wider", "threshold", "spill")
    assert [verdict for _, verdict in tried] == [False, False, False, True, True, False]
    assert tried[3][0] == ("prior", "wider", "threshold", "merge")
    assert retire_together([], earns) == ((), [])
    assert retire_together(["a", "b"], lambda s: False)[0] == ("a", "b")


def test_beyond_noise_needs_a_standard_error_and_bold_marks_it():
    assert beyond_noise(-0.5, 0.2) and not beyond_noise(0.5, 0.0)
    assert not beyond_noise(0.3, float("nan"))
    assert format_difference(Difference(-1.85, 0.5, 0.9, 8)) == "**-1.85 ± 0.50**"
    assert format_difference(Difference(0.02, 0.0231, 0.05, 3), digits=3) == "+0.020 ± 0.023"
    assert (format_difference(Difference(1.23, 0.27, 0.66, 17), by_image=True)
            == "**+1.23 ± 0.27** (± 0.66 by 17 images)")
    assert format_difference(Difference(-2.08, 0.46, float("nan"), 1), by_image=True).endswith(
        "(one image)")


def test_load_object_scores_names_a_file_that_is_not_one(tmp_path):
    good = tmp_path / "a.json"
    good.write_text(json.dumps({"label": "x", "objects": [
        {"folder": "coco", "name": "o1", "noc85": 2, "noc90": 3, "ious": [0.9]}]}))
    assert load_object_scores(good)[("coco", "o1")]["noc90"] == 3
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"summary": {}}))
    with pytest.raises(ValueError, match="b.json is not a per-object result file"):
        load_object_scores(bad)


def test_evaluation_split_files_are_read_with_noc_from_their_iou_curves(tmp_path):
    """napari-risnet evaluate --out files hold IoU curves only; NoC follows the robot's rule."""
    path = tmp_path / "emps.json"
    path.write_text(json.dumps({"dataset": "../data/emps_particles/test/", "max_clicks": 5,
                                "objects": [{"name": "fig1:l3", "ious": [0.5, 0.86, 0.91]},
                                            {"name": "fig1:l4", "ious": [0.2, 0.4, 0.6]}]}))
    scores = load_object_scores(path)
    assert scores[("emps_particles/test", "fig1:l3")]["noc85"] == 2
    assert scores[("emps_particles/test", "fig1:l3")]["noc90"] == 3
    assert scores[("emps_particles/test", "fig1:l4")]["noc85"] == 5  # never: max_clicks
    assert clicks_to_reach([0.9], 0.85, 20) == 1 and clicks_to_reach([], 0.85, 20) == 20


def test_objects_of_one_image_count_as_one_draw_in_the_clustered_error():
    """Ten objects of one image moving together are one observation, not ten."""
    assert image_of("slice005:l101") == "slice005" and image_of("apple03_0001") == "apple03_0001"
    d = np.array([2.0] * 10 + [0.0] * 10 + [1.0] * 10)
    one_each = difference(d, [f"im{i}" for i in range(30)])
    clustered = difference(d, ["a"] * 10 + ["b"] * 10 + ["c"] * 10)
    assert one_each.se == clustered.se == pytest.approx(d.std(ddof=1) / np.sqrt(30))
    assert one_each.se_by_image == pytest.approx(one_each.se, rel=0.05)
    assert clustered.images == 3 and clustered.se_by_image > 3 * clustered.se
    assert np.isnan(difference(d, ["a"] * 30).se_by_image)


def test_the_shipping_rule_names_every_loss_beyond_noise_and_nothing_else():
    # coco: 20 objects each a click worse at NoC@90 but level at NoC@85; em: better everywhere;
    # nuclei: worse by a click on one object of 20 (within noise)
    a = _scores({"coco": [(3, 4)] * 20, "em": [(5, 6)] * 20, "nuclei": [(2, 3)] * 20})
    b = _scores({"coco": [(3, 5)] * 10 + [(3, 6)] * 10, "em": [(4, 5)] * 20,
                 "nuclei": [(3, 3)] + [(2, 3)] * 19})
    lost = losses(paired_rows(a, b))
    assert [(folder, measure) for folder, measure, _ in lost] == [("coco", "noc90")]
    assert lost[0][2].mean == pytest.approx(1.5)
    # the mirror image: a click lost on every em object (no spread: still a loss), and over all
    # at NoC@85
    assert {(f, m) for f, m, _ in losses(paired_rows(b, a))} == {
        ("em", "noc85"), ("em", "noc90"), ("all", "noc85")}
    assert losses(paired_rows(a, a)) == []


def test_gains_are_the_mirror_of_losses_but_need_a_spread():
    """em is a click better on every object (no spread: a loss would count, a gain does not);
    coco a click or two better at NoC@90 (a gain); nuclei one object better (noise)."""
    a = _scores({"coco": [(3, 6)] * 20, "em": [(5, 6)] * 20, "nuclei": [(3, 3)] * 20})
    b = _scores({"coco": [(3, 5)] * 10 + [(3, 4)] * 10, "em": [(4, 5)] * 20,
                 "nuclei": [(2, 3)] + [(3, 3)] * 19})
    rows = paired_rows(a, b)
    assert {(f, m) for f, m, _ in gains(rows)} == {("coco", "noc90"), ("all", "noc85"),
                                                  ("all", "noc90")}
    assert losses(rows) == []
    assert gains(paired_rows(b, a)) == [] and gains(paired_rows(a, a)) == []
    # the same coco gain, but all of it on the objects of one image of two: one draw, no finding
    a2, b2 = ({("coco", f"im{i // 10}:o{i}"): {**o, "name": f"im{i // 10}:o{i}"}
               for i, o in enumerate(x.values()) if o["folder"] == "coco"} for x in (a, b))
    for i, key in enumerate(sorted(b2, key=lambda k: int(k[1].split(":o")[1]))):
        b2[key]["noc90"] = 4 if i < 10 else 6
    (_, n, out), _ = paired_rows(a2, b2)
    assert n == 20 and beyond_noise(out["noc90"].mean, out["noc90"].se)
    assert gains(paired_rows(a2, b2)) == []


def test_the_shipping_rule_counts_a_lower_iou_after_the_last_click():
    """Level clicks, but every object of one folder ends lower (0.24.0's GrabCut IoU@20): a
    loss; ending higher is none."""
    a = _scores({"coco": [(3, 4)] * 20, "em": [(5, 6)] * 20})
    b = {k: {**o, "ious": [0.5, 0.88 - 0.002 * (i % 5)]}
         for i, (k, o) in enumerate(a.items()) if k[0] == "coco"}
    b.update({k: o for k, o in a.items() if k[0] == "em"})
    lost = losses(paired_rows(a, b))
    assert [(f, m) for f, m, _ in lost] == [("coco", "iou_last"), ("all", "iou_last")]
    assert lost[0][2].mean == pytest.approx(-0.024)
    assert "coco IoU after the last click -0.024" in gate_verdict(lost)
    assert losses(paired_rows(b, a)) == []


def test_the_gate_exits_1_naming_the_losses_and_0_without_one(tmp_path):
    def write(name, nocs):
        objects = [{"folder": "coco", "name": f"o{i}", "noc85": n85, "noc90": n90,
                    "ious": [0.5, 0.9]} for i, (n85, n90) in enumerate(nocs)]
        (tmp_path / name).write_text(json.dumps({"label": name, "objects": objects}))
        return str(tmp_path / name)

    shipped = write("shipped.json", [(3, 4)] * 20)
    worse = write("worse.json", [(3, 5)] * 10 + [(3, 6)] * 10)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "paired.py"
    run = [sys.executable, str(script)]
    failed = subprocess.run(run + [shipped, worse, "--gate"], capture_output=True, text=True)
    assert failed.returncode == 1, failed.stderr
    assert "gate: failed" in failed.stdout and "coco NoC@90 +1.50" in failed.stdout
    passed = subprocess.run(run + [worse, shipped, "--gate"], capture_output=True, text=True)
    assert passed.returncode == 0 and "gate: passed" in passed.stdout
    plain = subprocess.run(run + [shipped, worse], capture_output=True, text=True)
    assert plain.returncode == 0 and "gate:" not in plain.stdout


def test_stack_files_pair_dice_and_clicks_per_object(tmp_path):
    """evaluate-stack files: 3D Dice after round 0 and the last round, and clicks; a lower Dice
    or more clicks is the loss; a file of another kind is named."""
    def write(name, dice_last, clicks):
        objects = [{"name": f"v{i}:l1", "dice": [0.7, 0.8, d], "clicks": c}
                   for i, (d, c) in enumerate(zip(dice_last, clicks))]
        path = tmp_path / name
        path.write_text(json.dumps({"dataset": "data/cells3d_nuclei_stack", "objects": objects}))
        return load_stack_scores(path)

    a = write("a.json", [0.9] * 10, [5] * 10)
    b = write("b.json", [0.88, 0.87] * 5, [5] * 10)
    (folder, n, out), _ = stack_rows(a, b)
    assert (folder, n) == ("cells3d_nuclei_stack", 10)
    assert out["dice_first"].mean == 0 and out["dice_last"].mean == pytest.approx(-0.025)
    assert [(f, m) for f, m, _ in losses(stack_rows(a, b), STACK_JUDGED)] == [
        ("cells3d_nuclei_stack", "dice_last"), ("all", "dice_last")]
    (tmp_path / "split.json").write_text(json.dumps({"objects": [{"name": "x", "ious": [1]}]}))
    with pytest.raises(ValueError, match="split.json is not a stack result file"):
        load_stack_scores(tmp_path / "split.json")
