"""PredictorSettings: presets per release, records that replay, typed variants, the rules."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from napari_risnet.inference.graphcut import GraphCutParams
from napari_risnet.inference.predictor import Predictor
from napari_risnet.inference.settings import PRESETS, RULES, PredictorSettings, release_of

RESULTS = Path(__file__).resolve().parent.parent / "training" / "results"


def test_the_newest_preset_is_this_release_and_a_record_round_trips():
    assert PredictorSettings.for_release("0.29.0") == PredictorSettings()
    assert PredictorSettings.for_release("0.28.0") == PredictorSettings()
    # 0.29.0 and 0.28.0 changed no setting; 0.27.0 folds the BatchNorms (no rule changed); 0.26.0 changed
    # nothing against 0.25.0
    assert PredictorSettings.for_release("0.27.0") == PredictorSettings()
    unfolded = dataclasses.replace(PredictorSettings(), fold_batchnorm=False)
    assert PredictorSettings.for_release("0.26.0") == unfolded
    assert PredictorSettings.for_release("0.25.0") == unfolded
    # 0.24.0 retired three rules, 0.25.0 brought the late merge back; the releases before 0.24.0
    # replay with all nine
    retired = ("guarded_merge", "spill_limit")
    assert PredictorSettings().rules == tuple(r for r in RULES if r not in retired)
    assert PredictorSettings.for_release("0.24.0").rules == tuple(
        r for r in RULES if r not in retired + ("late_merge",))
    assert PredictorSettings.for_release("0.23.0").rules == RULES
    for minor in range(13, 23):  # 0.13.0 re-measured the rules; none changed until 0.24.0
        assert PredictorSettings.for_release(f"0.{minor}.0") == PRESETS["0.23.0"]
    assert PredictorSettings.for_release("v0.12.0") == PRESETS["0.12.0"]
    with pytest.raises(ValueError, match="no predictor preset for release '0.3.0'"):
        PredictorSettings.for_release("0.3.0")
    custom = PredictorSettings(focus_from=3, rules_off=("spill_limit",),
                               graphcut_params=GraphCutParams(pairwise_weight=0.7))
    record = json.loads(json.dumps(custom.to_record()))  # as a project stores it
    assert record["release"] and record["min_window"] == 64 and record["refine_expand"] == 2.5
    assert PredictorSettings.from_record(record) == custom.resolved()
    for version, preset in PRESETS.items():
        again = PredictorSettings.from_record({**preset.to_record(), "release": version})
        assert again == preset.resolved()


@pytest.mark.parametrize("version", ["0.7.0", "0.8.0", "0.9.0", "0.10.0", "0.11.0"])
def test_result_files_of_earlier_releases_give_their_presets(version):
    """The evaluation runs each release recorded (no release named, only the settings it knew)
    are inferred to be that release and rebuild its preset."""
    for path in RESULTS.glob(f"risnet_v{version}_*.json"):
        record = json.loads(path.read_text())["predictor"]
        assert "release" not in record and release_of(record) == version
        settings = PredictorSettings.from_record(record)
        assert settings == PredictorSettings.for_release(version).resolved(), path.name


def test_a_setting_newer_than_the_record_replays_as_before_it_existed():
    """A record without a setting was made before it existed: the release inferred from its
    keys gives the value; a setting split off another had the other's value; a record that
    has the setting keeps its own value."""
    old = PredictorSettings.from_record({"magnified_bias": 0.5})  # 0.7.0
    assert old.small_object_from == 1.0 and old.click_threshold == 0.0
    assert old.magnified_bias_from == 1.0
    v080 = PredictorSettings.from_record({"magnified_bias": 0.5, "small_object_from": 3.0,
                                          "click_threshold": 0.05})
    assert v080.small_object_from == 3.0 and v080.click_threshold == 0.05
    assert v080.magnified_bias_from == 3.0  # the bias's floor was small_object_from
    new = PredictorSettings.from_record({"magnified_bias_from": 1.0, "small_object_from": 2.0})
    assert new.magnified_bias_from == 1.0 and new.small_object_from == 2.0
    assert PredictorSettings.from_record({"expand": 1.8}).refine_expand == 1.8  # before 0.10.0
    assert PredictorSettings.from_record({"expand": 1.6, "refine_expand": 2.5}).refine_expand == 2.5
    assert PredictorSettings.from_record({"expand": 1.6}).spill_ratio == 0.0  # before 0.11.0
    assert PredictorSettings.from_record({"spill_ratio": 20.0}).spill_ratio == 20.0
    assert PredictorSettings.from_record({"spill_ratio": 20.0}).merge_always_from == 0
    assert PredictorSettings.from_record({"merge_always_from": 7}).merge_always_from == 7
    # the bias floor under its first name (before the click threshold existed): 0.7.0 otherwise
    early = PredictorSettings.from_record({"magnified_bias_from": 2.0})
    assert early.magnified_bias_from == 2.0 and early.click_threshold == 0.0


def test_unknown_recorded_settings_are_dropped_with_a_warning():
    with pytest.warns(UserWarning, match="future_knob, graphcut_params.new_term"):
        settings = PredictorSettings.from_record(
            {"focus_from": 3, "future_knob": 1,
             "graphcut_params": {"pairwise_weight": 0.7, "new_term": 2}})
    assert settings == dataclasses.replace(PRESETS["0.7.0"], focus_from=3,
                                           graphcut_params=GraphCutParams(pairwise_weight=0.7))
    with pytest.warns(UserWarning, match="future_knob"):  # a newer release: its newest preset
        newer = PredictorSettings.from_record({"release": "9.0.0", "future_knob": 1})
    assert newer == PredictorSettings()


def test_with_values_converts_text_to_each_settings_type():
    s = PredictorSettings().with_values([
        "focus_from=0", "spill_ratio=12.5", "use_graphcut=false", "flip_average=all",
        "refine_expand=none", "gc.pairwise_weight=1.0", "rules_off=late_merge,spill_limit"])
    assert (s.focus_from, s.spill_ratio, s.use_graphcut, s.flip_average) == (0, 12.5, False, "all")
    assert s.refine_expand is None and s.zoom_expand == s.expand
    assert s.graphcut_params.pairwise_weight == 1.0 and s.rules_off == ("late_merge", "spill_limit")
    for bad, match in (("focus_from=two", "focus_from takes a int"), ("nope=1", "unknown setting"),
                       ("focus_from", "NAME=VALUE"), ("use_graphcut=maybe", "true or false"),
                       ("rules_off=everything", "unknown rules")):
        with pytest.raises(ValueError, match=match):
            PredictorSettings().with_values([bad])
    with pytest.raises(dataclasses.FrozenInstanceError):
        PredictorSettings().focus_from = 3


def test_each_rule_can_be_switched_off_alone(tiny_model):
    """Every rule is named, in pipeline order; ``rules_off`` (or its setting at 0) removes
    exactly that step."""
    every = dataclasses.replace(PredictorSettings.for_release("0.22.0"), flip_average="all")
    full = Predictor(tiny_model, every, device="cpu")
    assert full.rules == RULES
    steps = [r.name for r in full.pass_rules + full.click_rules]
    assert steps == [r for r in RULES if r != "wider_zoom_in"] + ["first_zoom_in"]
    for rule in RULES:
        p = Predictor(tiny_model, dataclasses.replace(every, rules_off=(rule,)), device="cpu")
        assert p.rules == tuple(r for r in RULES if r != rule)
        names = [r.name for r in p.pass_rules + p.click_rules]
        if rule == "wider_zoom_in":  # the zoom-in stays, at the tight window
            assert p.click_rules[-1].expand == p.settings.expand
        else:
            assert rule not in names
    off = PredictorSettings(focus_from=0, merge_from=0, spill_ratio=0, magnified_bias=0,
                            flip_average="none", click_threshold=0, click_threshold_small=0,
                            click_sigma=0, click_sigma_magnified=0, refine_expand=None)
    assert off.rules == ()


def test_predictor_takes_a_model_or_a_checkpoint_and_one_settings_object(tiny_model, tmp_path):
    import inspect

    from napari_risnet.model.checkpoint import save_checkpoint

    assert len(inspect.signature(Predictor.__init__).parameters) <= 8
    ckpt = save_checkpoint(tmp_path / "tiny.pt", tiny_model)
    for p in (Predictor(ckpt, device="cpu"), Predictor(checkpoint=ckpt, device="cpu")):
        assert p.checkpoint == Path(ckpt) and p.settings == PredictorSettings()
    with pytest.raises(TypeError, match="PredictorSettings"):
        Predictor(tiny_model, {"focus_from": 0}, device="cpu")
    with pytest.raises(TypeError):
        Predictor(tiny_model, device="cpu", focus_from=0)
