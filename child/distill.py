"""Knowledge distillation (Hinton et al. 2015): the pruned child learns from the unpruned one too."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """α·T²·KL(softmax(teacher/T) ‖ softmax(student/T)) + (1 − α)·CE(student, targets).

    The T² keeps the soft term's gradients on the scale of the hard term's as T changes
    (the soft targets' gradients shrink as 1/T²). KL is averaged over the batch.
    """
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    hard = F.cross_entropy(student_logits, targets)
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard
