"""Training and fine-tuning of RIS-Net (headless: never imports napari or Qt)."""
from napari_risnet.training.config import TrainConfig, load_config, save_config

__all__ = ["TrainConfig", "load_config", "save_config"]
