"""The untrained baseline: the backbone with the step marker and a fresh 2-class head, seeded as `prm train` seeds
it, so it is the trained model's starting point. `prm run`, the ablation and bench/testbed_training.py score it
beside the trained model.

    from prm.train.baseline import save_untrained
    save_untrained(load_section(TrainConfig, "train", "configs/quickstart.yaml", []), "runs/x/untrained")
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prm.train.config import TrainConfig


def save_untrained(train: TrainConfig, out: str) -> None:
    """Write the baseline to the folder `out` (replaced whole, so a killed write leaves no half folder)."""
    import torch

    from prm.prm_model import build_prm

    torch.manual_seed(train.seed)
    model, tokenizer = build_prm(train.model, head=train.head)
    tmp = Path(f"{out}.tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)  # a folder cannot be renamed over a non-empty one
    os.replace(tmp, out)
