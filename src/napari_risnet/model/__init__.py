"""The RIS-Net model: backbones, the network and its checkpoints (torch only, no UI)."""
from napari_risnet.model.backbones import BACKBONES, create_backbone
from napari_risnet.model.checkpoint import (CheckpointError, load_checkpoint, read_checkpoint,
                                            save_checkpoint)
from napari_risnet.model.grow import grow_model
from napari_risnet.model.risnet import RISNet, RISNetConfig, RISNetOutput, fuse, paste_rois

__all__ = ["BACKBONES", "CheckpointError", "grow_model", "RISNet", "RISNetConfig", "RISNetOutput",
           "create_backbone", "fuse", "load_checkpoint", "paste_rois", "read_checkpoint",
           "save_checkpoint"]
