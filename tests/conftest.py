from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def tiny_env_kwargs() -> dict:
    """A NasPrune env small enough to evaluate a child in well under a second."""
    return {
        "search_space": {
            "num_layers": 2,
            "ops": ["conv3x3", "sepconv3x3", "maxpool3x3", "identity"],
            "widths": [4, 8],
            "prune_ratios": [0.0, 0.5],
            "stem_width": 8,
        },
        "training": {"epochs": 1, "finetune_epochs": 1},
    }
