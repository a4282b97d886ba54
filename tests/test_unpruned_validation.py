"""The unpruned child is validated inside its training fit: the same accuracy as a separate validate, timed apart."""

from __future__ import annotations

import pytest
import torch

from nasprune.child import ChildTraining, DigitsDataModule, SearchSpace, build_model, evaluate_design
from nasprune.child.pipeline import _fit, _fit_and_validate, _module, _validate, quiet_lightning

SPACE = SearchSpace.from_config({"num_layers": 2, "ops": ["conv3x3"], "widths": [8], "prune_ratios": [0.5], "stem_width": 8})
DESIGN = SPACE.design_from_actions([0] * len(SPACE.decisions))
TRAINING = ChildTraining(epochs=2, finetune_epochs=1)


def test_validation_inside_the_fit_equals_a_separate_validate() -> None:
    datamodule = DigitsDataModule()
    datamodule.setup("fit")
    accuracies = []
    with quiet_lightning():
        for inside in (False, True):
            torch.manual_seed(3)
            module = _module(build_model(DESIGN, 1, 10, 8), datamodule, TRAINING, TRAINING.lr)
            if inside:
                _, accuracy, seconds = _fit_and_validate(module, datamodule, TRAINING, TRAINING.epochs)
                assert seconds > 0
            else:
                _fit(module, datamodule, TRAINING, TRAINING.epochs)
                accuracy = _validate(module, datamodule, TRAINING)
            accuracies.append(accuracy)
    assert accuracies[0] == accuracies[1]
    assert 0.0 < accuracies[0] <= 1.0


@pytest.mark.parametrize("epochs", [0, 2])  # no fit at all: a separate validate, timed the same way
def test_evaluate_design_reports_the_validation_as_its_own_stage(epochs: int) -> None:
    training = ChildTraining(epochs=epochs, finetune_epochs=1)
    result = evaluate_design(DESIGN, DigitsDataModule(), training, stem_width=8, seed=0)
    assert result.seconds["validate"] > 0 and result.seconds["train"] >= 0
    assert result.metrics()["seconds/validate"] == result.seconds["validate"]
    assert 0.0 < result.accuracy_unpruned <= 1.0
