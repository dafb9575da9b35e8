"""BatchNorm folded into the convolutions (``fold_batchnorm``): the same network, less work."""
import numpy as np
import torch
from torch import nn

from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import Predictor
from napari_risnet.inference.settings import PRESETS, PredictorSettings
from napari_risnet.model import RISNet
from napari_risnet.model.batchnorm_folding import fold_batchnorm

from conftest import disc_image, tiny_config


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _trained_looking(model: nn.Module) -> nn.Module:
    """BatchNorms whose statistics and affine terms are far from the identity, as training
    leaves them: a fresh BatchNorm folds into almost nothing, which would test little."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval()


def test_every_batchnorm_is_folded_and_the_model_given_is_left_alone():
    torch.manual_seed(0)
    model = _trained_looking(RISNet(tiny_config(prev_mask=True)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, n = fold_batchnorm(model)
    assert n == _batchnorms(model) > 20  # the backbone's timm BatchNormAct2d and the heads'
    assert _batchnorms(folded) == 0
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_a_folded_predictor_answers_as_the_unfolded_one():
    """Probabilities within float rounding, the same masks, click after click; the setting
    decides which network a predictor runs."""
    torch.manual_seed(0)
    model = _trained_looking(RISNet(tiny_config(prev_mask=True)))
    image, _ = disc_image(rgb=True)
    clicks = [Click(48, 60), Click(48, 30, positive=False), Click(40, 70)]
    answers = []
    for fold in (False, True):
        p = Predictor(model, PredictorSettings(fold_batchnorm=fold, input_size=64),
                      device="cpu")
        assert (_batchnorms(p.model) == 0) == fold
        p.set_image(image)
        mask, steps = None, []
        for k in range(1, len(clicks) + 1):
            out = p.predict(clicks[:k], prev_mask=mask)
            mask = out.mask
            steps.append(out)
        answers.append(steps)
    spread = max(float(np.ptp(out.probabilities)) for out in answers[0])
    assert spread > 0.2  # answers that say something, not a constant
    for unfolded, folded in zip(*answers):
        np.testing.assert_allclose(folded.probabilities, unfolded.probabilities, atol=1e-4)
        np.testing.assert_array_equal(folded.mask, unfolded.mask)


def test_releases_before_the_folding_replay_unfolded():
    assert PredictorSettings().fold_batchnorm
    assert not PRESETS["0.26.0"].fold_batchnorm and not PRESETS["0.7.0"].fold_batchnorm
    record = PRESETS["0.26.0"].to_record()
    record.pop("fold_batchnorm")  # as 0.26.0 wrote it: the setting did not exist
    record["release"] = "0.26.0"
    assert not PredictorSettings.from_record(record).fold_batchnorm
    assert PredictorSettings().with_values(["fold_batchnorm=false"]).fold_batchnorm is False
