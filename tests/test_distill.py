"""Hinton distillation loss and unstructured (AGP) sparsity on hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nasprune.child import agp_sparsity, apply_sparsity, count_zeros, distillation_loss


def test_distillation_loss_on_hand_computed_numbers() -> None:
    student = torch.tensor([[math.log(1.0), math.log(3.0)]])  # softmax at T = 1: (0.25, 0.75)
    teacher = torch.tensor([[0.0, 0.0]])  # (0.5, 0.5) at any temperature
    target = torch.tensor([1])
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # KL(teacher ‖ student) = 0.143841
    ce = -math.log(0.75)
    assert distillation_loss(student, teacher, target, alpha=0.5, temperature=1.0).item() == pytest.approx(0.5 * kl + 0.5 * ce)
    assert distillation_loss(student, teacher, target, alpha=0.0, temperature=7.0).item() == pytest.approx(ce)
    # at T = 2 the student's soft targets are softmax((0, ln 3)/2) = (1, √3)/(1 + √3); the KL term is scaled by T² = 4
    p = 1 / (1 + math.sqrt(3))
    kl_t2 = 0.5 * math.log(0.5 / p) + 0.5 * math.log(0.5 / (1 - p))
    assert distillation_loss(student, teacher, target, alpha=1.0, temperature=2.0).item() == pytest.approx(4 * kl_t2)


def test_distillation_gradient_pulls_the_student_towards_the_teacher() -> None:
    student = torch.zeros(1, 3, requires_grad=True)
    teacher = torch.tensor([[2.0, 0.0, 0.0]])
    distillation_loss(student, teacher, torch.tensor([2]), alpha=1.0, temperature=4.0).backward()
    assert student.grad[0, 0] < 0  # raising logit 0 lowers the loss: the teacher prefers class 0
    expected = 4.0 * (F.softmax(student / 4, 1) - F.softmax(teacher / 4, 1))  # T²·(p_s − p_t)/T
    assert torch.allclose(student.grad, expected.detach())


def test_agp_schedule_on_hand_computed_numbers() -> None:
    # s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ with s_i = 0, s_f = 0.8, t0 = 10, n = 4, Δt = 5
    assert agp_sparsity(10, 0.8, 0.0, start=10, n_updates=4, frequency=5) == 0.0
    assert agp_sparsity(15, 0.8, 0.0, start=10, n_updates=4, frequency=5) == pytest.approx(0.8 - 0.8 * 0.75**3)  # 0.4625
    assert agp_sparsity(20, 0.8, 0.0, start=10, n_updates=4, frequency=5) == pytest.approx(0.7)
    assert agp_sparsity(30, 0.8, 0.0, start=10, n_updates=4, frequency=5) == pytest.approx(0.8)
    assert agp_sparsity(99, 0.8, 0.0, start=10, n_updates=4, frequency=5) == pytest.approx(0.8)
    assert agp_sparsity(0, 0.8, 0.2, start=10, n_updates=4, frequency=5) == pytest.approx(0.2)


def test_apply_sparsity_zeroes_the_smallest_weights_and_masks_only_grow() -> None:
    layer = nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1, 101, dtype=torch.float32).view(10, 10))
    apply_sparsity(layer, 0.3)
    assert count_zeros(layer) == (30, 100)
    assert torch.equal(layer.weight.flatten()[:30], torch.zeros(30))
    with torch.no_grad():  # a pruned weight stays pruned even if the original grows back
        layer.weight_orig[0, 0] = 1000.0
    apply_sparsity(layer, 0.5, current=0.3)
    assert count_zeros(layer) == (50, 100)
    assert layer.weight[0, 0] == 0 and torch.equal(layer.weight.flatten()[:50], torch.zeros(50))
