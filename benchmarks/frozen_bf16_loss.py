"""Does training with the frozen stages' forward in bf16 follow the fp32 run? Same weights,
seed and (synthetic) data; prints the loss trajectory of one setting. Run both and compare:

    python benchmarks/frozen_bf16_loss.py bf16 80 & python benchmarks/frozen_bf16_loss.py fp32 80
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import synthetic_pool  # noqa: E402

from napari_risnet.training.config import TrainConfig  # noqa: E402
from napari_risnet.training.trainer import Trainer  # noqa: E402
from napari_risnet.training.validation import ValidationSet  # noqa: E402


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("bf16", "fp32"):
        raise SystemExit(__doc__)
    torch.set_num_threads(1)
    cfg = TrainConfig(out_dir=tempfile.mkdtemp(), crop_size=256, batch_size=8, threads=1,
                      iterative_prob=0.7, device="cpu", optimizer="adamw", lr=1e-4,
                      freeze_stages=2, cpu_bf16_frozen=sys.argv[1] == "bf16",
                      init_checkpoint="default", seed=3)
    trainer = Trainer(cfg, synthetic_pool(16), ValidationSet([]))
    losses = [trainer.train_step()["loss"] for _ in range(int(sys.argv[2]))]
    print(f"{sys.argv[1]}: mean loss of the first 10 steps {np.mean(losses[:10]):.4f}, of the "
          f"last 20 {np.mean(losses[-20:]):.4f}; every 10th: {np.round(losses[::10], 4).tolist()}")


if __name__ == "__main__":
    main()
