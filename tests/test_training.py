import math

import numpy as np
import pytest
import tifffile
import torch

from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import Predictor, PredictorSettings
from napari_risnet.model import RISNet, RISNetOutput, load_checkpoint, save_checkpoint
from napari_risnet.model.risnet import OUTSIDE_LOGIT
from napari_risnet.training.config import TrainConfig, load_config
from napari_risnet.training.datasets import ObjectPool
from napari_risnet.training.finetune import finetune, finetune_folders
from napari_risnet.training.loss import (click_discount_loss, masked_bce, near_clicks,
                                         normalized_focal_loss)
from napari_risnet.training.sampling import sample_clicks

from conftest import disc_image, tiny_config


def _toy_output(n_roi=2):
    gt = torch.zeros(1, 1, 8, 8)
    gt[..., :4, :] = 1
    valid = torch.ones_like(gt)
    g = torch.zeros(1, 1, 8, 8)  # p = 0.5 everywhere
    pasted = torch.full((n_roi, 1, 8, 8), OUTSIDE_LOGIT)
    pasted[0, 0, :4, :] = 4.0  # fixes the top half: a big drop
    pasted[1, 0, :2, :] = 4.0  # fixes a quarter
    return RISNetOutput(g, None, pasted, torch.zeros(n_roi, dtype=torch.long)), gt, valid


def test_gamma_zero_is_the_global_loss_only():
    out, gt, valid = _toy_output()
    terms = click_discount_loss(out, gt, valid, 2, gamma=0.0, aux_weight=0.0)
    assert terms.total.item() == pytest.approx(masked_bce(out.global_logits, gt, valid).item())


def test_greedy_order_and_discount():
    out, gt, valid = _toy_output()
    terms = click_discount_loss(out, gt, valid, 2, gamma=0.8, aux_weight=0.0)
    lg = masked_bce(out.global_logits, gt, valid)
    best = torch.maximum(out.global_logits, out.pasted_logits[0:1])
    l1 = masked_bce(best, gt, valid)
    # ROI 0 fixes most: it comes first; ROI 1 adds nothing after it (dL = 0 -> exp(0) = 1)
    expected = lg + torch.exp(-(lg - l1)) + 0.8 * 1.0
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gamma_one_adds_all_rois_at_once():
    out, gt, valid = _toy_output()
    terms = click_discount_loss(out, gt, valid, 2, gamma=1.0, aux_weight=0.0)
    lg = masked_bce(out.global_logits, gt, valid)
    fused = torch.maximum(out.global_logits, out.pasted_logits.amax(0, keepdim=True))
    lf = masked_bce(fused, gt, valid)
    assert terms.total.item() == pytest.approx((lg + torch.exp(-(lg - lf))).item(), rel=1e-5)


def test_click_term_scores_only_the_clicks_neighbourhood():
    """The click term is the final answer's BCE on the pixels around the clicks: an error there
    (a click answered on the wrong side) costs, the same error far from every click does not."""
    gt = torch.zeros(1, 1, 32, 32)
    gt[..., 8:24, 8:24] = 1
    valid = torch.ones_like(gt)
    dist = torch.full((1, 2, 32, 32), 255.0)
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    dist[0, 0] = ((rows - 16) ** 2 + (cols - 16) ** 2).sqrt()  # one positive click at (16, 16)
    near = near_clicks(dist, 3.0)
    assert near.sum() == 29  # the pixels of a radius-3 disc
    right = (gt * 2 - 1) * 20

    def click_loss(logits):
        out = RISNetOutput(logits, None, None, None)
        return click_discount_loss(out, gt, valid, 1, gamma=0.0, aux_weight=0.0,
                                   near_clicks=near, click_weight=2.0)

    far_error = right.clone()
    far_error[..., 8:12, 8:12] = -20  # a missed corner, far from the click
    near_error = right.clone()
    near_error[..., 14:19, 14:19] = -20  # the click's own neighbourhood missed
    assert click_loss(right).click_loss.item() < 1e-6
    assert click_loss(far_error).click_loss.item() < 1e-6
    assert click_loss(near_error).click_loss.item() > 5.0
    terms = click_loss(near_error)
    plain = click_discount_loss(RISNetOutput(near_error, None, None, None), gt, valid, 1,
                                gamma=0.0, aux_weight=0.0)
    assert plain.click_loss is None
    assert terms.total.item() == pytest.approx(plain.total.item() + 2 * terms.click_loss.item(),
                                               rel=1e-5)
    with pytest.raises(ValueError, match="near_clicks"):
        click_discount_loss(RISNetOutput(right, None, None, None), gt, valid, 1, gamma=0.0,
                            aux_weight=0.0, click_weight=1.0)


def test_training_with_the_click_term_reports_it(tmp_path):
    cfg = _tiny_recipe(tmp_path, click_weight=1.0, click_radius=4.0)
    from napari_risnet.training.trainer import train

    last = train(cfg)["history"][-1]
    assert last["click"] > 0 and np.isfinite(last["loss"])
    with pytest.raises(ValueError, match="click_weight"):
        TrainConfig(click_weight=-1.0)
    with pytest.raises(ValueError, match="click_radius"):
        TrainConfig(click_radius=0.5)


def test_normalised_focal_loss_sits_on_the_pixels_still_wrong():
    def sliver_case(side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gt = torch.zeros(1, 1, side, side)
        gt[..., :4, :4] = 1
        logits = (gt * 2 - 1) * 10  # right and sure everywhere ...
        logits[..., 0, :4] = -1.0  # ... but for a sliver of the object's boundary, answered 0.27
        return logits, gt, torch.ones_like(gt)

    small, large = sliver_case(16), sliver_case(64)  # the same error, 16x the easy background
    assert normalized_focal_loss(*small).shape == (1,)
    # the mean BCE dilutes the sliver with the background; the focal loss does not
    assert masked_bce(*small).item() > 10 * masked_bce(*large).item()
    assert normalized_focal_loss(*large).item() == pytest.approx(
        normalized_focal_loss(*small).item(), rel=0.05)
    assert normalized_focal_loss(*large).item() > 0.5 * 0.5 * 1.3  # alpha * ~BCE of the sliver
    logits, gt, valid = small
    assert normalized_focal_loss((gt * 2 - 1) * 10, gt, valid).item() < 1e-3
    # pixels outside the valid ones do not count, and an empty valid mask costs nothing
    masked = valid.clone()
    masked[..., 0, :4] = 0
    assert normalized_focal_loss(logits, gt, masked).item() < 1e-3
    assert normalized_focal_loss(logits, gt, torch.zeros_like(gt)).item() == 0.0

    out = RISNetOutput(logits, None, None, None)
    plain = click_discount_loss(out, gt, valid, 1, gamma=0.0, aux_weight=0.0)
    with_nfl = click_discount_loss(out, gt, valid, 1, gamma=0.0, aux_weight=0.0, nfl_weight=2.0)
    assert plain.nfl_loss is None
    assert with_nfl.nfl_loss.item() == pytest.approx(normalized_focal_loss(*small).item())
    assert with_nfl.total.item() == pytest.approx(plain.total.item()
                                                  + 2 * with_nfl.nfl_loss.item(), rel=1e-5)


def test_training_with_the_focal_term_reports_it(tmp_path):
    cfg = _tiny_recipe(tmp_path, nfl_weight=1.0)
    from napari_risnet.training.trainer import train

    last = train(cfg)["history"][-1]
    assert last["nfl"] > 0 and np.isfinite(last["loss"])
    with pytest.raises(ValueError, match="nfl_weight"):
        TrainConfig(nfl_weight=-1.0)


def test_folder_names_drop_the_split_not_the_data_set():
    """Reports and ``--only`` name a folder by its data set: the split's own folder name
    (train / test) would make every data set "train"."""
    from napari_risnet.training.validation import data_set_name

    assert data_set_name("../shared/data/microscopy/dsb2018_nuclei/train") == "dsb2018_nuclei"
    assert data_set_name("/d/medical/msd_hippocampus/test") == "msd_hippocampus"
    assert data_set_name("../shared/data/natural/coco_mval") == "coco_mval"


def test_sampled_clicks_respect_the_object():
    _, gt = disc_image()
    rng = np.random.default_rng(0)
    for _ in range(20):
        clicks = sample_clicks(gt, np.zeros_like(gt), None, rng)
        assert clicks[0].positive
        for c in clicks:
            assert gt[int(c.row), int(c.col)] == c.positive


def test_unknown_config_key_is_an_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('epochs = 1\nlearning_rate = 0.1\n')
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(path)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")


def test_recipe_paths_are_relative_to_the_recipe(tmp_path):
    """A recipe runs the same from any working directory (stage 2 names stage 1's best.pt)."""
    (tmp_path / "training").mkdir()
    path = tmp_path / "training" / "r.toml"
    path.write_text('out_dir = "../runs/x"\ninit_checkpoint = "../runs/s1/best.pt"\n'
                    '[[data]]\npath = "data/a"\n')
    cfg = load_config(path)
    assert cfg.out_dir == str(tmp_path / "runs" / "x")
    assert cfg.init_checkpoint == str(tmp_path / "runs" / "s1" / "best.pt")
    assert cfg.data[0].path == str(tmp_path / "training" / "data" / "a")
    path.write_text('init_checkpoint = "default"\n')
    assert load_config(path).init_checkpoint == "default"


def test_a_recipe_extends_another_with_only_what_differs(tmp_path):
    """``extends``: the base's keys beneath, tables merged key by key, the data list replaced
    whole or one entry changed by ``[[data_update]]``, each file's paths relative to its own
    folder; a missing out_dir, a circle or an update of no folder is refused rather than run."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "b.toml").write_text(
        'out_dir = "runs/b"\nlr = 0.1\nseed = 3\ninit_checkpoint = "w/start.pt"\n'
        '[model]\nbackbone = "efficientnet_lite0"\n'
        'backbone_kwargs = { output_stride = 16, out_channels = 128 }\n'
        '[[data]]\npath = "d/one"\n[[data]]\npath = "d/two"\n')
    child = tmp_path / "c.toml"
    child.write_text('extends = "base/b.toml"\nout_dir = "runs/c"\nseed = 4\n'
                     '[model.backbone_kwargs]\nout_channels = 64\n')
    cfg = load_config(child)
    assert (cfg.lr, cfg.seed) == (0.1, 4)
    assert cfg.out_dir == str(tmp_path / "runs" / "c")
    assert cfg.init_checkpoint == str(tmp_path / "base" / "w" / "start.pt")
    assert cfg.model["backbone_kwargs"] == {"output_stride": 16, "out_channels": 64}
    assert cfg.model["backbone"] == "efficientnet_lite0"
    assert [d.path for d in cfg.data] == [str(tmp_path / "base" / "d" / n) for n in ("one", "two")]
    child.write_text('extends = "base/b.toml"\nout_dir = "runs/c"\n[[data]]\npath = "mine"\n')
    assert [d.path for d in load_config(child).data] == [str(tmp_path / "mine")]
    child.write_text('extends = "base/b.toml"\nout_dir = "runs/c"\n'
                     '[[data_update]]\npath = "base/d/two"\nweight = 0.3\ndistill = false\n')
    one, two = load_config(child).data
    assert (one.weight, one.distill) == (1.0, True)  # untouched
    assert (two.path, two.weight, two.distill) == (str(tmp_path / "base" / "d" / "two"), 0.3,
                                                   False)
    refused = [('extends = "base/b.toml"\nseed = 4\n', ValueError, "sets no out_dir"),
               ('extends = "base/b.toml"\nout_dir = "x"\n[[data_update]]\npath = "d/two"\n'
                'weight = 2\n', ValueError, "is not a data folder of the recipe it extends"),
               ('extends = "base/b.toml"\nout_dir = "x"\n[[data_update]]\nweight = 2\n',
                ValueError, "names the path"),
               ('out_dir = "x"\n[[data_update]]\npath = "base/d/two"\n', ValueError,
                "extends none"),
               ('extends = "c.toml"\nout_dir = "x"\n', ValueError, "circle"),
               ('extends = "nowhere.toml"\nout_dir = "x"\n', FileNotFoundError, "nowhere.toml"),
               ('extends = "base/b.toml"\nout_dir = "x"\nlearning_rate = 1\n', ValueError,
                "learning_rate")]
    for text, error, said in refused:
        child.write_text(text)
        with pytest.raises(error, match=said):
            load_config(child)


def test_a_held_out_stack_is_held_out_whole(tmp_path):
    """The held-out split is decided per stack, not per slice: a held-out slice whose neighbours
    trained would be an easy one (a hippocampus volume is ~35 slices of one head). Every stack
    is held out whole or trains whole, and training excludes every slice of a held-out one."""
    from napari_risnet.data import list_objects
    from napari_risnet.training.datasets import image_key
    from napari_risnet.training.validation import held_out_objects

    folder = tmp_path / "stacks"
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True)
    for v in range(16):
        labels = np.zeros((4, 32, 32), np.uint8)
        for z in range(4):
            labels[z, 8 + z:16 + z, 10:18] = 1
        image = (labels * 200 + 20).astype(np.uint8)
        tifffile.imwrite(folder / "images" / f"vol{v:02d}.tif", image)
        tifffile.imwrite(folder / "labels" / f"vol{v:02d}.tif", labels)
    cfg = TrainConfig(data=[{"path": str(folder)}], val_fraction=0.3)
    by_source, exclude = held_out_objects(cfg, per_source=100)
    held = {s.name.split(":")[0] for s in by_source[0][1]}
    assert 0 < len(held) < 16
    assert len(by_source[0][1]) == 4 * len(held)  # every slice of a held-out stack
    refs, _ = list_objects(folder)
    assert len(refs) == 64
    for ref in refs:
        assert (image_key(ref) in exclude) == (ref.entry.stem in held), image_key(ref)


def test_atomic_checkpoint_survives_a_failed_write(tmp_path, tiny_model, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model, {"v": 1})

    def boom(*a, **k):
        raise KeyboardInterrupt  # a kill in the middle of writing

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, tiny_model, {"v": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)[1]["v"] == 1
    assert list(tmp_path.iterdir()) == [path]


def _synthetic_set(n=4):
    images, labels = [], []
    for k in range(n):
        img, gt = disc_image(shape=(64, 64), centre=(30 + k, 32), radius=12, seed=k)
        img2, gt2 = disc_image(shape=(64, 64), centre=(12, 12), radius=6, seed=k + 10)
        img = np.maximum(img, img2)
        lab = gt.astype(np.int32)
        lab[gt2 & ~gt] = 2
        images.append(img)
        labels.append(lab)
    return images, labels


@pytest.fixture
def base_checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "base.pt", RISNet(tiny_config()))


def test_pool_skips_empty_and_tiny_objects():
    images, labels = _synthetic_set(2)
    labels[1][:] = 0
    labels[1][0, 0] = 3  # one-pixel object
    pool = ObjectPool.from_arrays(images, labels, min_area=4)
    assert len(pool) == 2  # two objects of the first image
    s = pool.sample(np.random.default_rng(0), 64)
    assert s.rgb.shape == (64, 64, 3) and s.gt.any()


def test_finetune_end_to_end(tmp_path, base_checkpoint):
    images, labels = _synthetic_set()
    steps = []
    result = finetune(images, labels, base=base_checkpoint, out=tmp_path / "ft.pt", epochs=1,
                      steps_per_epoch=2, batch_size=2, val_fraction=0.25, device="cpu",
                      progress=lambda s, t, m: steps.append(s), max_clicks=2)
    assert steps and steps[-1] == 2
    assert result.checkpoint.is_file() and result.n_val >= 1
    assert 1 <= result.noc_before <= 2 and 1 <= result.noc_after <= 2
    predictor = Predictor(result.checkpoint, PredictorSettings(input_size=64), device="cpu")
    predictor.set_image(images[0])
    assert predictor.predict([Click(30, 32)]).mask[30, 32]


def test_finetune_can_be_cancelled(tmp_path, base_checkpoint):
    images, labels = _synthetic_set()
    result = finetune(images, labels, base=base_checkpoint, out=tmp_path / "c.pt", epochs=3,
                      steps_per_epoch=50, batch_size=2, device="cpu", max_clicks=1,
                      should_stop=lambda: True)
    assert result.cancelled and result.checkpoint.is_file()


def test_finetune_bad_inputs(base_checkpoint):
    images, labels = _synthetic_set(1)
    with pytest.raises(ValueError, match="labels"):
        finetune(images, [np.zeros((10, 10), np.int32)], base=base_checkpoint)
    with pytest.raises(ValueError, match="no object"):
        finetune(images, [np.zeros_like(labels[0])], base=base_checkpoint)
    with pytest.raises(ValueError, match="1 images but 0"):
        finetune(images, [], base=base_checkpoint)


def test_finetune_folders_with_a_stack(tmp_path, base_checkpoint):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    images, labels = _synthetic_set(4)
    tifffile.imwrite(tmp_path / "images" / "vol.tif", np.stack(images))
    tifffile.imwrite(tmp_path / "labels" / "vol.tif", np.stack(labels).astype(np.uint8))
    result = finetune_folders(tmp_path / "images", labels=tmp_path / "labels",
                              base=base_checkpoint, out=tmp_path / "ft.pt", epochs=1,
                              steps_per_epoch=1, batch_size=2, device="cpu", max_clicks=1)
    assert result.n_train >= 2 and result.checkpoint.is_file()


def _tiny_recipe(tmp_path, **settings) -> "TrainConfig":
    """A folder of three synthetic images and a recipe of a tiny model training on it
    (``settings`` override / add top-level recipe keys)."""
    images, labels = _synthetic_set(3)
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "labels").mkdir()
    for k, (im, lab) in enumerate(zip(images, labels)):
        tifffile.imwrite(tmp_path / "d" / "images" / f"i{k}.tif", im)
        tifffile.imwrite(tmp_path / "d" / "labels" / f"i{k}.tif", lab.astype(np.uint8))
    top = {"crop_size": 64, "batch_size": 2, "epochs": 1, "steps_per_epoch": 2,
           "checkpoint_every": 1, "val_fraction": 0.0, "iterative_prob": 1.0, **settings}
    lines = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in top.items())
    (tmp_path / "r.toml").write_text(f'''
out_dir = "{tmp_path / 'run'}"
{lines}
[model]
backbone = "efficientnet_lite0"
backbone_kwargs = {{ pretrained = false, output_stride = 16, out_channels = 16 }}
local_channels = 8
context_channels = 4
roi_size = 7
[[data]]
path = "{tmp_path / 'd'}"
''')
    return load_config(tmp_path / "r.toml")


def test_train_resumes_after_a_kill(tmp_path):
    cfg = _tiny_recipe(tmp_path)
    from napari_risnet.training.trainer import train

    train(cfg)
    cfg.epochs = 2
    summary = train(cfg, resume=True)
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert payload["train_state"]["step"] == 4 and payload["train_state"]["epoch"] == 2
    assert len(summary["history"]) == 2


def test_finetune_cli_end_to_end(tmp_path, base_checkpoint, capsys):
    from napari_risnet.cli import main

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    images, labels = _synthetic_set(3)
    for k, (im, lab) in enumerate(zip(images, labels)):
        tifffile.imwrite(tmp_path / "images" / f"i{k}.tif", im)
        tifffile.imwrite(tmp_path / "masks" / f"i{k}.tif", np.where(lab > 0, 255, 0).astype(np.uint8))
    out = tmp_path / "ft.pt"
    assert main(["finetune", "--images", str(tmp_path / "images"), "--masks",
                 str(tmp_path / "masks"), "--base", str(base_checkpoint), "--out", str(out),
                 "--epochs", "1", "--steps-per-epoch", "1", "--device", "cpu"]) == 0
    assert "validation NoC@85: before" in capsys.readouterr().out
    predictor = Predictor(out, PredictorSettings(input_size=64), device="cpu")
    predictor.set_image(images[0])
    assert predictor.predict([Click(30, 32)]).mask.shape == (64, 64)


def test_split_objects_when_there_is_one_image():
    """A user's first fine-tune: one image -> objects (not images) are held out, and training
    ignores their pixels."""
    from napari_risnet.training.finetune import _planes, split_validation

    images, labels = _synthetic_set(1)
    split = split_validation(_planes(images, labels, 4), 0.2, 40)
    assert split.by == "objects" and len(split.val) == 1 and len(split.train) == 1
    _, _, train_lab, ignore = split.train[0]
    held = split.val[0].gt
    assert ignore[held].all() and not train_lab[held].any() and train_lab.any()
    one = [np.where(labels[0] == 1, 1, 0)]  # a single object: trained on, nothing held out
    split = split_validation(_planes(images, one, 4), 0.2, 40)
    assert not split.val and split.train[0][2].any()
    many, many_labels = _synthetic_set(6)  # enough images: whole images are held out
    split = split_validation(_planes(many, many_labels, 4), 0.2, 40)
    assert split.by == "images" and split.val and not any(t[3].any() for t in split.train)


def test_finetune_cli_with_a_single_image(tmp_path, base_checkpoint, capsys):
    """`finetune --images D --labels D` with one image in D (issue 10)."""
    from napari_risnet.cli import main

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    images, labels = _synthetic_set(1)
    tifffile.imwrite(tmp_path / "images" / "only.tif", images[0])
    tifffile.imwrite(tmp_path / "labels" / "only.tif", labels[0].astype(np.uint16))
    out = tmp_path / "m.pt"
    assert main(["finetune", "--images", str(tmp_path / "images"), "--labels",
                 str(tmp_path / "labels"), "--base", str(base_checkpoint), "--out", str(out),
                 "--epochs", "1", "--steps-per-epoch", "5", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "validation NoC@85: before" in text and "1 held-out object;" in text, text
    assert "rough estimate" in text  # one object is not much to go on
    assert out.is_file()


def test_weight_average_is_what_best_pt_keeps_and_resume_restores(tmp_path):
    """With ema_decay, validation and best.pt use the moving average of the weights (not the
    raw ones in last.pt), and a resumed run continues the same average."""
    cfg = _tiny_recipe(tmp_path, steps_per_epoch=3, iterative_prob=0.0, optimizer="adamw",
                       lr=1e-2, ema_decay=0.5)
    from napari_risnet.training.trainer import train

    train(cfg)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    ema = last["train_state"]["ema"]
    assert int(ema["n_averaged"]) == 3
    name = next(k for k, v in best["state_dict"].items()
                if v.is_floating_point() and not torch.equal(v, last["state_dict"][k]))
    assert torch.equal(best["state_dict"][name], ema["module." + name])
    # `average --ema` exports that average from last.pt (the next stage's start), and refuses a
    # checkpoint that has none
    from napari_risnet.cli import main

    out = tmp_path / "average.pt"
    assert main(["average", str(tmp_path / "run" / "last.pt"), "--ema", "--out", str(out)]) == 0
    exported = torch.load(out, weights_only=True)["state_dict"]
    assert torch.equal(exported[name], ema["module." + name])
    assert main(["average", str(tmp_path / "run" / "best.pt"), "--ema", "--out",
                 str(tmp_path / "none.pt")]) == 2
    assert not (tmp_path / "none.pt").exists()
    cfg.epochs = 2
    train(cfg, resume=True)
    resumed = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train_state"]["ema"]
    assert int(resumed["n_averaged"]) == 6  # continued, not restarted


def test_ema_decay_must_be_below_one():
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_distill_loss_is_zero_where_the_student_answers_as_the_teacher():
    from napari_risnet.training.loss import distill_loss

    logits = torch.linspace(-6, 6, 64).reshape(1, 1, 8, 8)
    valid = torch.ones_like(logits)
    assert distill_loss(logits, torch.sigmoid(logits), valid).item() == pytest.approx(0, abs=1e-5)
    flipped = -logits
    everywhere = distill_loss(flipped, torch.sigmoid(logits), valid).item()
    assert everywhere > 1.0
    unsure = torch.zeros_like(valid)
    unsure[..., 3:5, :] = 1  # only where the teacher is unsure (|logit| < 1.5) does it count
    assert distill_loss(flipped, torch.sigmoid(logits), unsure).item() < 0.5 * everywhere
    assert distill_loss(flipped, torch.sigmoid(logits), torch.zeros_like(valid)).item() == 0


def _distill_run(tmp_path, name: str, weight: float, held: bool = True) -> dict:
    """The tiny recipe fine-tuned from a saved start (a large lr) with distill_weight; the last
    epoch's record."""
    from napari_risnet.model.risnet import RISNetConfig
    from napari_risnet.training.trainer import train

    cfg = _tiny_recipe(tmp_path / name, optimizer="adamw", lr=0.01, steps_per_epoch=12,
                       iterative_prob=0.0)
    torch.manual_seed(0)
    start = tmp_path / "start.pt"
    if not start.is_file():
        save_checkpoint(start, RISNet(RISNetConfig.from_dict(cfg.model)), {})
    cfg.init_checkpoint, cfg.distill_weight = str(start), weight
    cfg.data[0].distill = held
    return train(cfg)["history"][-1]


def test_distillation_holds_the_answers_near_the_starting_model(tmp_path):
    """The distance of the answers from the starting model's (KL, what the term reports): with
    a negligible weight the lr carries the model away; with a real one it stays near."""
    measured = _distill_run(tmp_path, "measured", 1e-6)
    held = _distill_run(tmp_path, "held", 20.0)
    free = _distill_run(tmp_path, "free", 20.0, held=False)
    assert measured["distill"] > 0.01
    assert held["distill"] < 0.5 * measured["distill"]
    assert free["distill"] == 0  # a folder marked distill = false is not held
    assert free["loss"] == pytest.approx(_distill_run(tmp_path, "plain", 0.0)["loss"], rel=1e-4)


def test_distillation_needs_a_teacher_that_takes_the_same_input(tmp_path, tiny_model):
    from napari_risnet.model.checkpoint import CheckpointError
    from napari_risnet.training.teacher import build_teacher

    with pytest.raises(ValueError, match="distill_weight"):
        TrainConfig(distill_weight=-1.0)
    with pytest.raises(ValueError, match="teacher"):
        TrainConfig(distill_weight=1.0)
    save_checkpoint(tmp_path / "t.pt", tiny_model, {})
    student = RISNet(tiny_config(prev_mask=True))
    with pytest.raises(CheckpointError, match="previous-mask"):
        build_teacher(student, str(tmp_path / "t.pt"), torch.device("cpu"))
    teacher = build_teacher(tiny_model, str(tmp_path / "t.pt"), torch.device("cpu"))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_frozen_stages_keep_their_batchnorm_statistics_through_iterative_training(tmp_path):
    """The robot's rollouts switch the model to eval and back to train mode; the frozen stages'
    BatchNorm must stay in eval mode for the training forward, or its running statistics drift
    to the training crops' (augmented, other domains) while its weights are frozen."""
    from napari_risnet.model.risnet import RISNetConfig
    from napari_risnet.training.model_setup import frozen_modules
    from napari_risnet.training.trainer import train

    cfg = _tiny_recipe(tmp_path, iterative_prob=1.0, freeze_stages=2, steps_per_epoch=3)
    torch.manual_seed(0)
    start = RISNet(RISNetConfig.from_dict(cfg.model))
    save_checkpoint(tmp_path / "start.pt", start)
    cfg.init_checkpoint = str(tmp_path / "start.pt")
    train(cfg)
    trained, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    pairs = [(a, b) for m_a, m_b in zip(frozen_modules(start, 2), frozen_modules(trained, 2))
             for a, b in zip(m_a.modules(), m_b.modules()) if isinstance(a, torch.nn.BatchNorm2d)]
    assert pairs
    for a, b in pairs:
        torch.testing.assert_close(a.running_mean, b.running_mean)
        torch.testing.assert_close(a.running_var, b.running_var)
    moved = [a for a, b in zip(start.modules(), trained.modules())
             if isinstance(a, torch.nn.BatchNorm2d)
             and not torch.equal(a.running_mean, b.running_mean)]
    assert moved  # the stages that train do update theirs
    cfg.freeze_bn_statistics, cfg.out_dir = True, str(tmp_path / "run_bn")
    train(cfg)
    held, _ = load_checkpoint(tmp_path / "run_bn" / "last.pt")
    for a, b in zip(start.modules(), held.modules()):
        if isinstance(a, torch.nn.BatchNorm2d):  # no statistics moved; the weights did train
            torch.testing.assert_close(a.running_mean, b.running_mean)
            torch.testing.assert_close(a.running_var, b.running_var)
    assert not torch.equal(start.conv8_global.weight, held.conv8_global.weight)


def test_last_click_scope_scores_only_the_corrective_click():
    """click_scope "last": the term covers the corrective click's disc on the samples that have
    one; a sample without a correction adds nothing and does not dilute the others' term."""
    from napari_risnet.training.datasets import click_distance_maps

    # what the trainer scores: the corrective click's untruncated distances, no click = none
    distances = click_distance_maps((32, 32), [[Click(16.2, 15.8)], []], truncation=math.inf)
    near = near_clicks(distances, 3.0)
    assert near[0].sum() == 29 and near[1].sum() == 0  # the radius-3 disc around (16, 16)
    gt = torch.zeros(2, 1, 32, 32)
    gt[..., 8:24, 8:24] = 1
    valid = torch.ones_like(gt)
    wrong_at_click = (gt * 2 - 1) * 20
    wrong_at_click[0, :, 14:19, 14:19] = -20
    wrong_at_click[1] = -20  # all wrong, but no corrective click: not the term's business
    terms = click_discount_loss(RISNetOutput(wrong_at_click, None, None, None), gt, valid, 1,
                                gamma=0.0, aux_weight=0.0, near_clicks=near, click_weight=1.0)
    alone = click_discount_loss(RISNetOutput(wrong_at_click[:1], None, None, None), gt[:1],
                                valid[:1], 1, gamma=0.0, aux_weight=0.0,
                                near_clicks=near[:1], click_weight=1.0)
    assert terms.click_loss.item() == pytest.approx(alone.click_loss.item(), rel=1e-6)
    assert terms.click_loss.item() > 5.0
    none = click_discount_loss(RISNetOutput(wrong_at_click, None, None, None), gt, valid, 1,
                               gamma=0.0, aux_weight=0.0, near_clicks=torch.zeros_like(near),
                               click_weight=1.0)
    assert none.click_loss.item() == 0.0
    with pytest.raises(ValueError, match="click_scope"):
        TrainConfig(click_scope="first")


def test_training_with_the_last_click_scope_reports_it(tmp_path):
    cfg = _tiny_recipe(tmp_path, click_weight=1.0, click_radius=4.0, click_scope="last",
                       iterative_prob=1.0, iterative_clicks=2)
    from napari_risnet.training.trainer import train

    last = train(cfg)["history"][-1]
    assert last["click"] > 0 and np.isfinite(last["loss"])
