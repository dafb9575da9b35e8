"""The trainer's DistributedDataParallel path: two CPU processes on the gloo backend train two
steps on a tiny synthetic folder and end with identical weights; torchrun runs the CLI."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from test_training import _tiny_recipe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_rank(rank: int, world: int, port: int, recipe: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch.distributed as dist

    from napari_risnet.training.config import load_config
    from napari_risnet.training.datasets import ObjectPool
    from napari_risnet.training.trainer import Trainer
    from napari_risnet.training.validation import validation_from_folders

    torch.set_num_threads(1)
    cfg = load_config(recipe)
    val, exclude = validation_from_folders(cfg)
    pool = ObjectPool.from_folders([(d.path, d.weight, d.objects, d.min_area)
                                    for d in cfg.data], cfg.max_side, exclude)
    trainer = Trainer(cfg, pool, val)
    assert trainer.world == world and trainer.ddp is not None
    trainer.run()
    torch.save({k: v.detach().clone() for k, v in trainer.model.named_parameters()},
               os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_gloo_processes_end_with_identical_weights(tmp_path) -> None:
    cfg = _tiny_recipe(tmp_path, device="cpu", iterative_prob=0.0, threads=1)
    start = {k: v.clone() for k, v in _initial_weights(cfg).items()}
    mp.spawn(_train_rank, args=(2, _free_port(), str(tmp_path / "r.toml"), str(tmp_path)),
             nprocs=2, join=True)
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for name in w0:
        torch.testing.assert_close(w0[name], w1[name], rtol=0, atol=0, msg=name)
    trained = [n for n in w0 if n in start and not torch.equal(w0[n], start[n])]
    assert trained  # the two steps moved the weights
    assert (tmp_path / "run" / "last.pt").is_file()  # rank 0 saved


def _initial_weights(cfg) -> dict[str, torch.Tensor]:
    """Rank 0's starting weights (the trainer seeds the model with ``seed``)."""
    from napari_risnet.training.model_setup import build_model

    torch.manual_seed(cfg.seed)
    model, _ = build_model(cfg, torch.device("cpu"))
    return dict(model.named_parameters())


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's rendezvous: POSIX only here")
def test_torchrun_runs_the_train_command(tmp_path) -> None:
    _tiny_recipe(tmp_path, device="cpu", iterative_prob=0.0, threads=1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "napari_risnet", "train",
                           "--config", str(tmp_path / "r.toml")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "best.pt").is_file()
