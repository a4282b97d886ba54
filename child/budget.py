"""Masking the choices after which no design can land in a cost window (a search at a fixed budget).

A search for the best design at a size budget spends most episodes outside the budget when the
controller samples freely: a random design of a space with pools and 16–64-channel convolutions
spans two orders of magnitude in size. `BudgetMask` knows, before any training, the cost of every
design the space can produce and leaves only the choices from which some design within
`[low, high]` can still be reached, so every episode ends inside the window.

Only costs that do not depend on the feature-map sizes are masked (`params`, `size_bits`): a layer's
share of them is set by its input channels, its op, its width after pruning and its bits, so the space
is enumerated over those alone (downsampling and the prune ratio's split into width × ratio collapse).
Both costs are sums over the net's parts (stem, layers, classifier), so each distinct part is built
once, on the meta device (no memory, no initialisation), and costed by the functions that cost a
trained child; a design's cost is the sum of its parts'. A pruned child has the cost of the same
design built at its pruned widths (torch-pruning removes a layer's output channels and the next
layer's matching inputs; a test holds the two equal).

FLOPs do depend on the feature-map sizes, so a FLOPs budget is masked by `FlopsCeiling` instead: a
choice stays while the cheapest design that completes it (`SearchSpace.cheapest_completion`,
counted pruned on a freshly built net) is within the ceiling, as MnasNet's and APQ's hard
constraints do. Only the upper edge is masked; a FLOPs window's lower edge is left to the reward.

`budget_mask` picks the mask from the reward: a `TargetWindowReward`'s window, or a
`HardBudgetReward`'s `[0, budget]`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from nasprune.child.metrics import count_flops, count_params
from nasprune.child.model import ChildLayer, build_model, conv_bn_relu
from nasprune.child.quantize import EDGE_BITS, FLOAT_BITS, bits_of, layer_weight_bits
from nasprune.child.rewards import HardBudgetReward, Reward, TargetWindowReward
from nasprune.child.search_space import Decision, Design, LayerDesign, SearchSpace
from nasprune.config import ConfigError

COSTS = ("flops", "params", "size_bits")  # what `budget_mask` masks; `BudgetMask` the last two
MAX_DESIGNS = 1_000_000  # cost-distinct designs summed at most (about 30,000 a second here: 9,261 for mnist_bits in 0.3 s)


class BudgetMask:
    """Which choices of a decision still allow a design with `low ≤ cost ≤ high` (see the module doc)."""

    def __init__(self, space: SearchSpace, in_channels: int, num_classes: int, cost: str, low: float, high: float) -> None:
        if cost not in COSTS[1:]:
            raise ConfigError("mask_budget", f"masks a window of {' or '.join(COSTS[1:])} exactly; the reward's cost is {cost}")
        if space.skips:
            raise ConfigError("mask_budget", "needs a search space without skips (a skip's cost depends on the layer it comes from)")
        if space.prune_switch:
            raise ConfigError("mask_budget", f"masks a {cost} window only in a search space without prune_switch (a FLOPs budget takes both)")
        self.space = space
        self.low, self.high = float(low), float(high)
        self._layer_decisions = [[d for d in space.decisions if d.layer == i] for i in range(space.num_layers)]
        options = [sorted(self._signatures(i, {}, decisions), key=str) for i, decisions in enumerate(self._layer_decisions)]
        count = math.prod(len(layer_options) for layer_options in options)
        if count > MAX_DESIGNS:
            raise ConfigError("mask_budget", f"the space has {count:,} designs of distinct cost, more than the {MAX_DESIGNS:,} the mask enumerates")
        self.cost = cost
        self.in_channels, self.num_classes = in_channels, num_classes
        self._parts: dict[tuple[Any, ...], tuple[int, int]] = {}  # (part, its input channels, quantized) → (cost, output channels)
        self.prefixes: set[tuple[LayerDesign, ...]] = set()  # every leading part of a design within the window
        with torch.device("meta"):
            for layers in itertools.product(*options):
                if self.low <= self._design_cost(layers) <= self.high:
                    self.prefixes.update(layers[:k] for k in range(len(layers) + 1))
        if not self.prefixes:
            raise ConfigError("mask_budget", f"no design of the search space has {cost} within [{self.low:,.0f}, {self.high:,.0f}]")

    def _design_cost(self, layers: tuple[LayerDesign, ...]) -> int:
        quantized = any(layer.bits is not None for layer in layers)
        total, channels = self._part("stem", self.in_channels, quantized)
        for layer in layers:
            cost, channels = self._part(layer, channels, quantized)
            total += cost
        return total + self._part("classifier", channels, quantized)[0]

    def _part(self, part: LayerDesign | str, in_channels: int, quantized: bool) -> tuple[int, int]:
        """Cost and output channels of one part of `ChildNet`, built as it builds it, cached."""
        key = (part, in_channels, quantized)
        if key not in self._parts:
            edge_bits = EDGE_BITS if quantized else FLOAT_BITS
            module: nn.Module
            bits: dict[nn.Conv2d | nn.Linear, int]
            if part == "stem":
                module, out = conv_bn_relu(in_channels, self.space.stem_width, 3), self.space.stem_width
                bits = {conv: edge_bits for conv in module.modules() if isinstance(conv, nn.Conv2d)}
            elif part == "classifier":
                module, out = nn.Linear(in_channels, self.num_classes), self.num_classes
                bits = {module: edge_bits}
            else:
                assert isinstance(part, LayerDesign)  # the only other part
                module = ChildLayer(part, in_channels, None, [])
                out, bits = module.out_channels, layer_weight_bits(module)
            self._parts[key] = (count_params(module) if self.cost == "params" else bits_of(module, bits), out)
        return self._parts[key]

    def _layer(self, index: int, fields: dict[str, Any]) -> LayerDesign:
        base = self.space.architecture[index] if self.space.architecture is not None else None
        return replace(base, **fields) if base is not None else LayerDesign(**fields)

    def _signatures(self, index: int, fields: dict[str, Any], decisions: Sequence[Decision]) -> set[LayerDesign]:
        """The cost-equivalent forms of layer `index` with `fields` chosen and `decisions` still open."""
        names = [d.field for d in decisions]
        forms = set()
        for values in itertools.product(*(d.choices for d in decisions)):
            layer = self._layer(index, {**fields, **dict(zip(names, values))})
            forms.add(replace(layer, width=layer.pruned_width, prune_ratio=0.0, downsample="none"))
        return forms

    def __call__(self, step: int, previous_actions: Sequence[int]) -> list[bool]:
        decision = self.space.decisions[step]
        done: list[dict[str, Any]] = [{} for _ in range(decision.layer + 1)]
        for past, action in zip(self.space.decisions[:step], previous_actions):
            done[past.layer][past.field] = past.choices[action]
        earlier = tuple(next(iter(self._signatures(i, fields, []))) for i, fields in enumerate(done[: decision.layer]))
        later = [d for d in self.space.decisions[step + 1 :] if d.layer == decision.layer]
        return [
            any(earlier + (form,) in self.prefixes for form in self._signatures(decision.layer, {**done[decision.layer], decision.field: choice}, later))
            for choice in decision.choices
        ]


class FlopsCeiling:
    """Which choices of a decision leave a design of at most `high` FLOPs once pruned (see the module doc)."""

    def __init__(self, space: SearchSpace, input_shape: tuple[int, int, int], num_classes: int, high: float) -> None:
        self.space, self.input_shape, self.num_classes, self.high = space, input_shape, num_classes, float(high)
        self._flops: dict[str, int] = {}
        fewest = self.pruned_flops(space.cheapest_completion([], input_shape[1:]))
        if fewest > self.high:
            raise ConfigError("mask_budget", f"a FLOPs budget of {self.high:,.0f} is out of reach: the cheapest design of the search space has {fewest:,}")

    def pruned_flops(self, design: Design) -> int:
        """FLOPs of `design` once pruned (`Design.pruned`), counted on a freshly built network, cached."""
        key = design.to_json()
        if key not in self._flops:
            net = build_model(design.pruned(), self.input_shape[0], self.num_classes, self.space.stem_width)
            self._flops[key] = count_flops(net, self.input_shape)
        return self._flops[key]

    def __call__(self, step: int, previous_actions: Sequence[int]) -> list[bool]:
        valid = self.space.action_mask(step, previous_actions, self.input_shape[1:])
        return [
            ok and self.pruned_flops(self.space.cheapest_completion([*previous_actions, choice], self.input_shape[1:])) <= self.high
            for choice, ok in enumerate(valid)
        ]


def budget_mask(space: SearchSpace, input_shape: tuple[int, int, int], num_classes: int, reward: Reward) -> BudgetMask | FlopsCeiling:
    """The mask of the budget `reward` sets: a `TargetWindowReward`'s window or a `HardBudgetReward`'s ceiling."""
    if isinstance(reward, TargetWindowReward):
        cost, (low, high) = reward.cost, reward.window
    elif isinstance(reward, HardBudgetReward):
        cost, low, high = reward.cost, 0.0, reward.budget
    else:
        raise ConfigError("mask_budget", f"needs a TargetWindowReward or HardBudgetReward (its budget is masked), got {type(reward).__name__}")
    if cost == "flops":
        return FlopsCeiling(space, input_shape, num_classes, high)
    return BudgetMask(space, input_shape[0], num_classes, cost, low, high)
