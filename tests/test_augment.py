"""The [augment] transforms of a training recipe: each does what it says, off changes nothing."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from napari_risnet.training.augment import AugmentConfig, augment_crop, rescale
from napari_risnet.training.config import TrainConfig, load_config, save_config
from napari_risnet.training.datasets import ObjectPool
from napari_risnet.training.loader import CropClickStream

from conftest import disc_image

RECIPES = Path(__file__).resolve().parents[1] / "training"


def fields_differing(a: TrainConfig, b: TrainConfig) -> set[str]:
    """The recipe fields whose values differ: what one stage changes against another."""
    return {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}


ALL_ON = dict(grey_prob=0.5, invert_prob=0.5, gamma_prob=0.5, contrast_prob=0.5, blur_prob=0.5,
              noise_prob=0.5, scale_prob=0.5)


def _crop(seed=0, shape=(48, 64)):
    rng = np.random.default_rng(seed)
    rgb = rng.uniform(0.2, 0.8, (*shape, 3)).astype(np.float32)
    gt = np.zeros(shape, bool)
    gt[10:30, 20:44] = True
    return rgb, (gt, np.zeros(shape, bool), ~gt)


def _only(name, lo_hi=None, **kw):
    """A config with one transform always on (its range pinned to one value when given)."""
    d = {f"{name}_prob": 1.0, **kw}
    if lo_hi is not None:
        key = {"gamma": "gamma_range", "contrast": "contrast_range", "blur": "blur_sigma",
               "noise": "noise_std", "scale": "scale_range"}[name]
        d[key] = (lo_hi, lo_hi)
    return AugmentConfig(**d)


def _pool(rgb=False):
    img, gt = disc_image(shape=(120, 160), rgb=rgb)
    labels = gt.astype(np.int32)
    labels[5:25, 5:25] = 2
    img[5:25, 5:25] = 190  # bright like the disc
    return ObjectPool.from_arrays([img], [labels])


def test_off_is_the_identity_and_draws_nothing():
    rgb, masks = _crop()
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    out, out_masks = augment_crop(rng, AugmentConfig(), rgb, masks, 64)
    assert out is rgb and all(a is b for a, b in zip(out_masks, masks))
    assert rng.bit_generator.state == state
    assert AugmentConfig().is_off and not AugmentConfig(noise_prob=0.1).is_off


@pytest.mark.parametrize("focus_prob", [0.0, 1.0])
def test_off_samples_the_same_crops_bit_for_bit(focus_prob):
    """A recipe without [augment] trains on exactly the crops it trained on before."""
    pool = _pool(rgb=True)
    runs = []
    for aug in (None, AugmentConfig(), TrainConfig().augment):
        rng = np.random.default_rng(7)
        kw = {} if aug is None else {"augmentations": aug}
        runs.append([pool.sample(rng, 64, focus_prob=focus_prob, **kw) for _ in range(6)])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a.rgb, b.rgb) and a.rgb.dtype == b.rgb.dtype
            assert np.array_equal(a.gt, b.gt) and np.array_equal(a.ignore, b.ignore)
            assert np.array_equal(a.others, b.others)
            assert (a.prev is None) == (b.prev is None)


def test_inversion_flips_intensities():
    rgb, masks = _crop()
    out, out_masks = augment_crop(np.random.default_rng(0), _only("invert"), rgb, masks, 64)
    np.testing.assert_allclose(out, 1.0 - rgb, atol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(out_masks, masks))


def test_grey_makes_the_channels_equal_and_keeps_the_mean():
    rgb, masks = _crop()
    out, _ = augment_crop(np.random.default_rng(0), _only("grey"), rgb, masks, 64)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[..., 0], rgb.mean(-1), atol=1e-6)


def test_gamma_and_contrast():
    rgb, masks = _crop()
    out, _ = augment_crop(np.random.default_rng(0), _only("gamma", 2.0), rgb, masks, 64)
    np.testing.assert_allclose(out, rgb ** 2, rtol=1e-5)
    flat = np.full_like(rgb, 0.5)
    flat[::2] += 0.1
    out, _ = augment_crop(np.random.default_rng(0), _only("contrast", 2.0), flat, masks, 64)
    assert out.std() == pytest.approx(2 * flat.std(), rel=1e-4)
    assert out.mean() == pytest.approx(flat.mean(), abs=1e-5)


def test_blur_smooths_and_noise_adds_the_given_spread_to_every_channel_alike():
    rgb, masks = _crop()
    out, _ = augment_crop(np.random.default_rng(0), _only("blur", 1.5), rgb, masks, 64)
    assert np.abs(np.diff(out, axis=1)).mean() < 0.5 * np.abs(np.diff(rgb, axis=1)).mean()
    assert out.mean() == pytest.approx(rgb.mean(), abs=0.01)
    grey = np.full((64, 64, 3), 0.5, np.float32)
    out, _ = augment_crop(np.random.default_rng(0), _only("noise", 0.05), grey, masks, 64)
    assert np.array_equal(out[..., 0], out[..., 2])  # grey stays grey
    assert (out - grey).std() == pytest.approx(0.05, rel=0.1)


@pytest.mark.parametrize("factor", [0.55, 0.8, 1.3, 2.2])
def test_scale_keeps_image_and_masks_aligned(factor):
    """Each mask drawn into one channel of the image: after the zoom every channel, thresholded,
    is its mask again (the two resamplings share one grid)."""
    shape = (60, 80)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    gt = (yy - 30) ** 2 + (xx - 50) ** 2 < 15 ** 2
    others = np.zeros(shape, bool)
    others[5:20, 5:25] = True
    ignore = np.zeros(shape, bool)
    ignore[40:, :30] = True
    rgb = np.stack([gt, others, ignore], -1).astype(np.float32)
    out, (g, i, o) = rescale(rgb, (gt, ignore, others), factor, 64, np.random.default_rng(1))
    assert out.shape[:2] == g.shape == o.shape == i.shape
    assert max(g.shape) <= 64 and min(g.shape) >= 16
    if factor < 1:
        assert g.shape == (round(60 * factor), round(80 * factor))
        assert g.sum() == pytest.approx(gt.sum() * factor ** 2, rel=0.15)
    for channel, mask in ((0, g), (1, o), (2, i)):
        if not mask.any():
            continue
        thresholded = out[..., channel] > 0.5
        iou = (thresholded & mask).sum() / (thresholded | mask).sum()
        assert iou > 0.9, (channel, iou)
        rows = np.nonzero(mask.any(1))[0]
        t_rows = np.nonzero(thresholded.any(1))[0]
        assert abs(rows.min() - t_rows.min()) <= 1 and abs(rows.max() - t_rows.max()) <= 1
    assert g.any()  # zooming in keeps the object's centre in view


def test_scale_in_a_training_sample_keeps_the_mask_on_the_object():
    pool = _pool()
    rng = np.random.default_rng(0)
    cfg = AugmentConfig(scale_prob=1.0, scale_range=(0.5, 2.0))
    shapes = set()
    for _ in range(20):
        s = pool.sample(rng, 64, full_image_prob=0.0, augmentations=cfg)
        assert s.rgb.shape == (64, 64, 3) and s.gt.shape == (64, 64)
        assert s.gt.any() and not (s.gt & s.ignore).all()
        shapes.add(int((~s.ignore).sum()))
        grey = s.rgb.mean(-1)  # bright disc (or dark where inverted) under the object mask
        inside, outside = grey[s.gt & ~s.ignore].mean(), grey[~s.gt & ~s.ignore & ~s.others]
        if outside.size > 20:
            assert abs(inside - outside.mean()) > 0.1
    assert len(shapes) > 3  # zoom-outs leave padding of many sizes


def test_same_seed_same_crops_with_everything_on():
    pool = _pool(rgb=True)
    cfg = AugmentConfig(**{k: 1.0 for k in ALL_ON})
    a = [pool.sample(np.random.default_rng(5), 64, augmentations=cfg) for _ in range(3)]
    b = [pool.sample(np.random.default_rng(5), 64, augmentations=cfg) for _ in range(3)]
    for x, y in zip(a, b):
        assert np.array_equal(x.rgb, y.rgb) and np.array_equal(x.gt, y.gt)
    assert all(np.all((0 <= x.rgb) & (x.rgb <= 1)) and x.rgb.dtype == np.float32 for x in a)


def test_the_loader_workers_apply_the_recipes_augmentations():
    """The GPU run's crops come from CropClickStream: the same [augment] reaches them."""
    pool = _pool(rgb=True)
    cfg = TrainConfig(batch_size=4, crop_size=64, augment={"grey_prob": 1.0})
    batch = next(iter(CropClickStream(pool, cfg, seed=0)))
    rgb = batch["rgb"].numpy()
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    colour = next(iter(CropClickStream(pool, TrainConfig(batch_size=4, crop_size=64), seed=0)))
    assert not np.array_equal(colour["rgb"][..., 0], colour["rgb"][..., 2])


def test_config_round_trip(tmp_path):
    cfg = TrainConfig(augment={"grey_prob": 0.3, "invert_prob": 0.2, "scale_prob": 0.4,
                               "scale_range": [0.8, 1.25], "noise_std": [0.0, 0.05]})
    path = save_config(cfg, tmp_path / "config.toml")
    back = load_config(path) if path.suffix == ".toml" else None
    if back is not None:
        assert back.augment == cfg.augment
        assert back.augment.scale_range == (0.8, 1.25)
    (tmp_path / "r.toml").write_text("[augment]\nblur_prob = 0.25\nblur_sigma = [0.3, 1.0]\n")
    read = load_config(tmp_path / "r.toml")
    assert read.augment.blur_prob == 0.25 and read.augment.blur_sigma == (0.3, 1.0)
    assert read.augment.noise_prob == 0.0


@pytest.mark.parametrize("bad, match", [
    ({"grey_pro": 0.1}, "grey_pro"),
    ({"invert_prob": 1.5}, "invert_prob"),
    ({"gamma_range": [1.5, 0.5]}, "gamma_range"),
    ({"scale_range": [0.0, 1.0]}, "scale_range"),
    ({"noise_std": 0.1}, "noise_std"),
])
def test_bad_augment_values_are_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(augment=bad)


@pytest.mark.parametrize("stage", [1, 2, 3, 4, 5])
def test_the_bundled_models_recipes_keep_augmentation_off(stage):
    assert load_config(RECIPES / f"stage{stage}.toml").augment.is_off


def test_stage6_adds_the_chloroplasts_and_turns_augmentation_on():
    cfg = load_config(RECIPES / "stage6.toml")
    assert not cfg.augment.is_off
    paths = [Path(d.path) for d in cfg.data]
    assert any("wsu_leaf_chloroplasts" in str(p) and p.name == "train" for p in paths)
    assert not any("emps_particles" in str(p) or p.name == "test" for p in paths)
    assert cfg.init_checkpoint == "default" and cfg.threads == 1


def test_the_gpu_stage6_recipe_reads_the_pack_of_the_cpu_recipe():
    """training/gpu/stage6.toml = training/stage6.toml's folders (as packed) and augmentations."""
    from napari_risnet.training.pack import folder_name

    cpu = load_config(RECIPES / "stage6.toml")
    gpu = load_config(RECIPES / "gpu" / "stage6.toml")
    assert gpu.augment == cpu.augment
    assert [Path(d.path).name for d in gpu.data] == [folder_name(d.path) for d in cpu.data]
    assert [d.weight for d in gpu.data] == [d.weight for d in cpu.data]
    assert (gpu.click_weight, gpu.click_radius) == (cpu.click_weight, cpu.click_radius)


def test_stage8_is_stage7_at_full_resolution_and_later_clicks():
    """The recipe changes what its header says and nothing else: stage 7's average as start,
    the bundled model as teacher, the loss at full resolution, rollouts to 8 clicks."""
    s7, s8 = load_config(RECIPES / "stage7.toml"), load_config(RECIPES / "stage8.toml")
    assert Path(s8.init_checkpoint).name == "average.pt" and "stage7" in s8.init_checkpoint
    assert s8.distill_checkpoint == "default" and s7.distill_checkpoint == ""
    assert (s7.loss_stride, s8.loss_stride) == (2, 1)
    assert (s7.iterative_clicks, s8.iterative_clicks) == (5, 8)
    changed = {"init_checkpoint", "distill_checkpoint", "loss_stride", "iterative_clicks",
               "out_dir", "time_budget_s", "seed"}
    assert fields_differing(s7, s8) <= changed


def test_stage9_is_stage8_with_the_loss_at_half_resolution():
    """Stage 9 separates stage 8's two changes: everything as stage 8 but the loss at stage 7's
    half resolution, so only the rollouts to 8 clicks differ from stage 7."""
    s7, s8, s9 = (load_config(RECIPES / f"stage{n}.toml") for n in (7, 8, 9))
    assert s9.loss_stride == s7.loss_stride == 2 and s8.loss_stride == 1
    assert s9.iterative_clicks == s8.iterative_clicks == 8
    assert Path(s9.out_dir).name == "stage9"
    assert fields_differing(s8, s9) <= {"loss_stride", "out_dir", "time_budget_s", "seed"}


def test_stage10_is_stage9_without_augmentations():
    """Stage 10 asks one question of stage 9: the same run with every augmentation off."""
    s9, s10 = load_config(RECIPES / "stage9.toml"), load_config(RECIPES / "stage10.toml")
    assert s9.augment != AugmentConfig() and s10.augment == AugmentConfig()
    assert fields_differing(s9, s10) <= {"augment", "out_dir", "time_budget_s", "seed"}


def test_stage11_is_stage10_continued_with_the_hippocampus_past_the_teacher():
    """Stage 11 continues stage 10 and changes only the hippocampus folder: a larger share of the
    samples and no teacher there (as the chloroplasts), so a held-out difference is that."""
    s10, s11 = load_config(RECIPES / "stage10.toml"), load_config(RECIPES / "stage11.toml")
    assert Path(s11.init_checkpoint).parent.name == "stage10"
    hippo10, hippo11 = ([d for d in s.data if "msd_hippocampus" in d.path][0] for s in (s10, s11))
    assert hippo10.distill and not hippo11.distill and hippo11.weight > hippo10.weight
    others = [(d.path, d.weight, d.distill) for d in s10.data if d is not hippo10]
    assert others == [(d.path, d.weight, d.distill) for d in s11.data if d is not hippo11]
    assert fields_differing(s10, s11) <= {"data", "init_checkpoint", "out_dir", "time_budget_s",
                                          "seed"}


def test_stage12_is_stage11_with_stage5s_click_regime():
    """Stage 12 runs beside stage 11 from the same start and differs only in the click regime:
    no click-neighbourhood loss and stage 5's short rollouts."""
    s5, s11, s12 = (load_config(RECIPES / f"stage{n}.toml") for n in (5, 11, 12))
    assert s12.click_weight == s5.click_weight == 0 < s11.click_weight
    assert (s12.iterative_clicks, s12.iterative_prob) == (s5.iterative_clicks, s5.iterative_prob)
    assert s12.init_checkpoint == s11.init_checkpoint and s12.data == s11.data
    assert fields_differing(s11, s12) <= {"click_weight", "iterative_clicks", "iterative_prob",
                                          "out_dir", "seed"}


def test_the_gpu_stage12_recipe_is_stage12s_choices_on_stage6s_pack():
    """training/gpu/stage12.toml reads the pack training/gpu/stage6.toml reads, and makes stage
    12's choices (teacher, held statistics, no augmentations, no click term, short rollouts, the
    hippocampus and chloroplasts past the teacher) at the GPU recipe's scale."""
    cpu = load_config(RECIPES / "stage12.toml")
    gpu6, gpu = (load_config(RECIPES / "gpu" / f"stage{n}.toml") for n in (6, 12))
    assert [d.path for d in gpu.data] == [d.path for d in gpu6.data]
    assert [(d.weight, d.distill) for d in gpu.data] == [(d.weight, d.distill) for d in cpu.data]
    assert gpu.augment == AugmentConfig() == cpu.augment
    for name in ("distill_weight", "freeze_bn_statistics", "freeze_stages", "click_weight",
                 "iterative_clicks", "iterative_prob", "distill_checkpoint"):
        assert getattr(gpu, name) == getattr(cpu, name), name
    for name in ("batch_size", "crop_size", "lr", "amp", "workers", "robot_workers"):
        assert getattr(gpu, name) == getattr(gpu6, name), name
    assert gpu.init_checkpoint == "default"


def test_stage13_is_stage12_with_the_click_term_back():
    """Stage 13 separates stage 12's two changes: the click-neighbourhood loss comes back, the
    short rollouts stay."""
    s11, s12, s13 = (load_config(RECIPES / f"stage{n}.toml") for n in (11, 12, 13))
    assert (s13.click_weight, s13.click_radius) == (s11.click_weight, s11.click_radius)
    assert s13.click_weight > 0 == s12.click_weight
    assert fields_differing(s12, s13) <= {"click_weight", "out_dir", "time_budget_s", "seed"}
