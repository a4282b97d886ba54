"""The joint search space: per layer an operation, an output width and a structured prune ratio.

A search space is data (YAML), turned into a fixed sequence of categorical decisions. A `Design`
is the canonical record of one point in it: decisions that cannot matter (the width or prune
ratio of a weightless op) are normalised away, so equivalent encodings compare and hash equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from nasprune.config import ConfigError

# Operations a layer may take. A weighted op sets the layer's output width and can be pruned;
# a weightless op passes its input channels through.
WEIGHTED_OPS: tuple[str, ...] = ("conv3x3", "conv5x5", "sepconv3x3")
WEIGHTLESS_OPS: tuple[str, ...] = ("maxpool3x3", "identity")
KNOWN_OPS: tuple[str, ...] = WEIGHTED_OPS + WEIGHTLESS_OPS


def is_weighted(op: str) -> bool:
    return op in WEIGHTED_OPS


@dataclass(frozen=True)
class LayerDesign:
    """One layer. `width` is output channels before pruning; `prune_ratio` the share removed."""

    op: str
    width: int | None = None
    prune_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not is_weighted(self.op):
            object.__setattr__(self, "width", None)
            object.__setattr__(self, "prune_ratio", 0.0)
        else:
            object.__setattr__(self, "prune_ratio", float(self.prune_ratio))

    @property
    def pruned_width(self) -> int | None:
        """Output channels left after structured pruning (torch-pruning keeps int(w·(1−r)))."""
        if self.width is None:
            return None
        return int(self.width * (1.0 - self.prune_ratio))

    def __str__(self) -> str:
        if self.width is None:
            return self.op
        return f"{self.op}:{self.width}@{self.prune_ratio:g}"


@dataclass(frozen=True)
class Design:
    """An immutable, hashable, JSON-serialisable and canonical child network design."""

    layers: tuple[LayerDesign, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [asdict(layer) for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Design:
        return cls(tuple(LayerDesign(**layer) for layer in data["layers"]))

    def to_json(self) -> str:
        """Canonical JSON: equal designs give byte-identical strings (a cache/history key)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Design:
        return cls.from_dict(json.loads(text))

    def __str__(self) -> str:
        return " | ".join(str(layer) for layer in self.layers)


@dataclass(frozen=True)
class Decision:
    """One categorical choice the controller makes: which layer, which field, which values."""

    layer: int
    field: str
    choices: tuple[Any, ...]


@dataclass(frozen=True)
class SearchSpace:
    """Layers × (op, width, prune ratio), read from YAML and validated with clear errors."""

    num_layers: int = 3
    ops: tuple[str, ...] = KNOWN_OPS
    widths: tuple[int, ...] = (8, 16, 32)
    prune_ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    stem_width: int = 16
    decisions: tuple[Decision, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "prune_ratios", tuple(float(r) for r in self.prune_ratios))
        self._validate()
        decisions = []
        for layer in range(self.num_layers):
            decisions += [
                Decision(layer, "op", self.ops),
                Decision(layer, "width", self.widths),
                Decision(layer, "prune_ratio", self.prune_ratios),
            ]
        object.__setattr__(self, "decisions", tuple(decisions))

    def _validate(self) -> None:
        if not isinstance(self.num_layers, int) or isinstance(self.num_layers, bool) or self.num_layers < 1:
            raise ConfigError("num_layers", f"must be a positive integer, got {self.num_layers!r}")
        for key in ("ops", "widths", "prune_ratios"):
            values = getattr(self, key)
            if not values:
                raise ConfigError(key, "the choice list is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ConfigError(key, f"has duplicate values {list(values)}")
        for op in self.ops:
            if op not in KNOWN_OPS:
                raise ConfigError("ops", f"unknown op {op!r}; allowed: {', '.join(KNOWN_OPS)}")
        for key, widths in (("widths", self.widths), ("stem_width", (self.stem_width,))):
            for width in widths:
                if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
                    raise ConfigError(key, f"widths must be positive integers, got {width!r}")
        for ratio in self.prune_ratios:
            if not 0.0 <= ratio < 1.0:
                raise ConfigError("prune_ratios", f"ratio {ratio!r} is outside [0, 1)")
        if any(int(w * (1.0 - r)) < 1 for w in self.widths for r in self.prune_ratios):
            raise ConfigError(
                "prune_ratios", f"some width × ratio pair would prune a layer to 0 channels (widths {list(self.widths)})"
            )

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | SearchSpace | None) -> SearchSpace:
        if isinstance(config, SearchSpace):
            return config
        config = dict(config or {})
        allowed = {"num_layers", "ops", "widths", "prune_ratios", "stem_width"}
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ConfigError(unknown[0], f"unknown search-space key; allowed: {', '.join(sorted(allowed))}")
        for key in ("ops", "widths", "prune_ratios"):
            if key in config and (isinstance(config[key], (str, bytes)) or not isinstance(config[key], Sequence)):
                raise ConfigError(key, f"must be a list, got {config[key]!r}")
        return cls(**config)

    @property
    def max_choices(self) -> int:
        return max(len(d.choices) for d in self.decisions)

    def valid_choices(self, step: int, previous_actions: Sequence[int]) -> int:
        """How many leading choices are valid at `step`: one only where the value cannot matter."""
        decision = self.decisions[step]
        if decision.field != "op":
            op = self.ops[previous_actions[3 * decision.layer]]
            if not is_weighted(op):
                return 1
        return len(decision.choices)

    def design_from_actions(self, actions: Sequence[int]) -> Design:
        if len(actions) != len(self.decisions):
            raise ValueError(f"expected {len(self.decisions)} actions, got {len(actions)}")
        layers = []
        for layer in range(self.num_layers):
            op_index, width_index, ratio_index = actions[3 * layer : 3 * layer + 3]
            layers.append(LayerDesign(self.ops[op_index], self.widths[width_index], self.prune_ratios[ratio_index]))
        return Design(tuple(layers))

    def largest_designs(self) -> list[Design]:
        """One design per weighted op, every layer at the widest width, unpruned: the cost ceiling."""
        width = max(self.widths)
        return [Design(tuple(LayerDesign(op, width) for _ in range(self.num_layers))) for op in self.ops if is_weighted(op)]
