"""The joint search space: per layer an operation, a width, a prune ratio, a bit-width, a downsampling, a skip.

A search space is data (YAML), turned into a fixed sequence of categorical decisions. A `Design`
is the canonical record of one point in it: decisions that cannot matter (the width or prune
ratio of a weightless op, the mode of an absent skip) are normalised away, so equivalent
encodings compare and hash equal.

Feature maps are numbered as the anchor points of Zoph & Le (2017): `h0` is the stem's output and
`h(i+1)` the output of layer `i`. Layer `i` reads `h(i)`; with a skip from `hj` (j ≤ i) its output
is also combined with `hj`, added (through a 1×1 projection) or concatenated.

Invalid combinations are **masked out** by `SearchSpace.action_mask`, which the env turns into the
observation's `action_mask`: a 1×1 feature map is never downsampled (so the spatial size cannot
collapse below 1), an identity cannot stride, a weightless op takes no width, ratio, bit-width or skip. A
`Design` built by hand is checked by `Design.feature_sizes` before any training (a clear `ValueError`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast, get_args

from nasprune.config import MAX_BITS, MIN_BITS, BitWidth, ConfigError, PositiveInt, UnitRatio

# An op is a family and, for all but identity, an odd square kernel: conv3x3, sepconv5x5, maxpool3x3, …
WEIGHTED_FAMILIES: tuple[str, ...] = ("conv", "sepconv")
OP_PATTERN = re.compile(r"^(conv|sepconv|maxpool|avgpool)(\d+)x(\d+)$")
DEFAULT_OPS: tuple[str, ...] = ("conv3x3", "conv5x5", "sepconv3x3", "maxpool3x3", "identity")
# How a layer may halve its feature map: not at all, by striding its op, or by a 2×2 pool after it.
Downsample = Literal["none", "stride", "maxpool", "avgpool"]
SkipMode = Literal["add", "concat"]
DOWNSAMPLES: tuple[Downsample, ...] = get_args(Downsample)
SKIP_MODES: tuple[SkipMode, ...] = get_args(SkipMode)


def parse_op(op: str) -> tuple[str, int | None]:
    """`'conv5x5'` → `('conv', 5)`, `'identity'` → `('identity', None)`; ValueError otherwise."""
    if op == "identity":
        return "identity", None
    match = OP_PATTERN.match(op)
    if not match or match.group(2) != match.group(3):
        raise ValueError(f"unknown op {op!r}; allowed: identity or conv/sepconv/maxpool/avgpool + KxK (odd K), e.g. conv3x3")
    kernel = int(match.group(2))
    if kernel % 2 == 0 or kernel < 1:
        raise ValueError(f"op {op!r}: the kernel size must be odd (padding K//2 keeps the size)")
    return match.group(1), kernel


def is_weighted(op: str) -> bool:
    return parse_op(op)[0] in WEIGHTED_FAMILIES


def downsampled_size(size: int, downsample: str) -> int:
    """Spatial size after a layer: a strided op (odd K, padding K//2) gives ⌈n/2⌉, a 2×2 pool ⌊n/2⌋."""
    if downsample == "none":
        return size
    return (size + 1) // 2 if downsample == "stride" else size // 2


@dataclass(frozen=True)
class LayerDesign:
    """One layer. `width` is output channels before pruning; `prune_ratio` the share removed.

    `downsample` halves the feature map (`stride`: the op strides; `maxpool`/`avgpool`: a 2×2 pool
    follows it). `skip` is the index of the earlier feature map combined with the layer's output
    (`None`: no skip), `skip_mode` how (`add` or `concat`). `bits` is the bit-width of the layer's
    weights (`None`: float; see `nasprune.child.quantize`).
    """

    op: str
    width: int | None = None
    prune_ratio: float = 0.0
    downsample: str = "none"
    skip: int | None = None
    skip_mode: str = "add"
    bits: BitWidth | None = None

    def __post_init__(self) -> None:
        parse_op(self.op)
        if self.downsample not in DOWNSAMPLES:
            raise ValueError(f"unknown downsample {self.downsample!r}; allowed: {', '.join(DOWNSAMPLES)}")
        if self.skip_mode not in SKIP_MODES:
            raise ValueError(f"unknown skip mode {self.skip_mode!r}; allowed: {', '.join(SKIP_MODES)}")
        if self.op == "identity" and self.downsample == "stride":
            raise ValueError("an identity op cannot stride; use downsample 'maxpool' or 'avgpool'")
        if self.bits is not None and (not isinstance(self.bits, int) or not MIN_BITS <= self.bits <= MAX_BITS):
            raise ValueError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS} or null (float), got {self.bits!r}")
        if is_weighted(self.op) and self.width is None:
            raise ValueError(f"op {self.op!r} needs a width (its output channels)")
        if not is_weighted(self.op):
            object.__setattr__(self, "width", None)
            object.__setattr__(self, "prune_ratio", 0.0)
            object.__setattr__(self, "skip", None)
            object.__setattr__(self, "bits", None)
        else:
            object.__setattr__(self, "prune_ratio", float(self.prune_ratio))
        if self.skip is None:
            object.__setattr__(self, "skip_mode", "add")

    @property
    def family(self) -> str:
        return parse_op(self.op)[0]

    @property
    def kernel_size(self) -> int | None:
        return parse_op(self.op)[1]

    @property
    def pruned_width(self) -> int | None:
        """Output channels of the op left after structured pruning (torch-pruning keeps int(w·(1−r)))."""
        if self.width is None:
            return None
        return int(self.width * (1.0 - self.prune_ratio))

    def to_dict(self) -> dict[str, Any]:
        """Fields at their defaults are left out, so designs without the newer decisions keep their JSON."""
        data = asdict(self)
        if self.downsample == "none":
            del data["downsample"]
        if self.skip is None:
            del data["skip"], data["skip_mode"]
        if self.bits is None:
            del data["bits"]
        return data

    def __str__(self) -> str:
        text = self.op if self.width is None else f"{self.op}:{self.width}@{self.prune_ratio:g}"
        if self.bits is not None:
            text += f"w{self.bits}"
        if self.downsample != "none":
            text += "/2" if self.downsample == "stride" else f"/{self.downsample}"
        if self.skip is not None:
            text += f"{'+' if self.skip_mode == 'add' else '&'}h{self.skip}"
        return text


@dataclass(frozen=True)
class Design:
    """An immutable, hashable, JSON-serialisable and canonical child network design.

    `head_grid` is the classifier's view of the last feature map: average-pooled to a
    `head_grid`×`head_grid` grid and flattened (1: global average pooling; 4: a LeNet-style head
    that keeps where a stroke is, what small networks need most).
    """

    layers: tuple[LayerDesign, ...]
    head_grid: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not isinstance(self.head_grid, int) or self.head_grid < 1:
            raise ValueError(f"head_grid must be a positive integer, got {self.head_grid!r}")
        for index, layer in enumerate(self.layers):
            if layer.skip is not None and not 0 <= layer.skip <= index:
                raise ValueError(f"layer {index}: skip from h{layer.skip}, but only h0..h{index} exist before it")

    def to_dict(self) -> dict[str, Any]:
        """A global-pooling head (the default) is left out, so designs without the head keep their JSON."""
        data: dict[str, Any] = {"layers": [layer.to_dict() for layer in self.layers]}
        if self.head_grid != 1:
            data["head_grid"] = self.head_grid
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Design:
        return cls(tuple(LayerDesign(**layer) for layer in data["layers"]), data.get("head_grid", 1))

    def to_json(self) -> str:
        """Canonical JSON: equal designs give byte-identical strings (a cache/history key)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Design:
        return cls.from_dict(json.loads(text))

    def feature_sizes(self, input_size: tuple[int, int]) -> list[tuple[int, int]]:
        """Spatial sizes of h0, h1, …; ValueError naming the layer if one would downsample a 1×1 map."""
        sizes = [cast(tuple[int, int], tuple(input_size))]
        for index, layer in enumerate(self.layers):
            height, width = sizes[-1]
            if layer.downsample != "none" and min(height, width) < 2:
                raise ValueError(
                    f"layer {index} ({layer}) downsamples a {height}×{width} feature map; "
                    "the spatial size would collapse (at most log2(input size) downsampling layers)"
                )
            sizes.append((downsampled_size(height, layer.downsample), downsampled_size(width, layer.downsample)))
        return sizes

    def pruned(self) -> Design:
        """The same network as structured pruning leaves it: each weighted layer at its pruned width, ratio 0.

        Its FLOPs and parameters are those of the pruned child, counted without training or pruning
        (what a FLOPs budget is checked against before an evaluation)."""
        return replace(self, layers=tuple(replace(layer, width=layer.pruned_width, prune_ratio=0.0) for layer in self.layers))

    def __str__(self) -> str:
        text = " | ".join(str(layer) for layer in self.layers)
        return text if self.head_grid == 1 else f"{text} | head{self.head_grid}x{self.head_grid}"


WHOLE_DESIGN = -1  # the `layer` of a decision about the whole design (`prune_switch`)


@dataclass(frozen=True)
class Decision:
    """One categorical choice the controller makes: which layer (`WHOLE_DESIGN`: none), which field, which values."""

    layer: int
    field: str
    choices: tuple[Any, ...]


@dataclass(frozen=True)
class SearchSpace:
    """Layers × (op, width, prune ratio[, bits][, downsampling][, skip, skip mode]), from YAML, validated.

    The per-layer decisions are op, width and prune ratio, then the weights' bit-width when `bits`
    lists any (e.g. `[8, 4]`; empty: float, no decision), then `downsample` when more than one
    downsampling is offered, then `skip` (none or one of h0..h(i)) and `skip_mode` when `skips` is on.

    With a fixed `architecture` (a list of layers: op, width, downsample, skip, skip_mode) only the
    prune ratio (and, with `bits`, the bit-width) of each weighted layer is searched, as in AMC;
    `num_layers`, `ops`, `widths`, `downsample` and `skips` are then taken from it.

    `head_grid` is every design's classifier head (`Design.head_grid`): 1 pools the last map
    globally, k > 1 pools it to k×k and flattens it, as LeNet-style networks do.

    `prune_switch` adds one decision before all others, whether the design is pruned at all; off,
    every prune ratio is masked to 0. Sampled layer by layer, an unpruned design is rare (one in 4^k
    with four ratios over k weighted layers), though at a tight budget or a short training it is
    often the best; the switch gives it half of an untrained policy's mass, and one decision to learn.
    """

    num_layers: PositiveInt = 3
    ops: tuple[str, ...] = DEFAULT_OPS
    widths: tuple[PositiveInt, ...] = (8, 16, 32)
    prune_ratios: tuple[UnitRatio, ...] = (0.0, 0.25, 0.5, 0.75)
    bits: tuple[BitWidth, ...] = ()
    stem_width: PositiveInt = 16
    downsample: tuple[Downsample, ...] = ("none",)
    skips: bool = False
    skip_modes: tuple[SkipMode, ...] = SKIP_MODES
    architecture: tuple[LayerDesign, ...] | None = None
    head_grid: PositiveInt = 1
    prune_switch: bool = False
    decisions: tuple[Decision, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "prune_ratios", tuple(float(r) for r in self.prune_ratios))
        object.__setattr__(self, "bits", tuple(self.bits))
        object.__setattr__(self, "downsample", tuple(self.downsample))
        object.__setattr__(self, "skip_modes", tuple(self.skip_modes))
        if self.architecture is not None:
            self._adopt_architecture()
        self._validate()
        decisions = [Decision(WHOLE_DESIGN, "prune", (False, True))] if self.prune_switch else []
        if self.architecture is not None:
            for index, fixed in enumerate(self.architecture):
                if fixed.width is not None:
                    decisions.append(Decision(index, "prune_ratio", self.prune_ratios))
                    if self.bits:
                        decisions.append(Decision(index, "bits", self.bits))
            object.__setattr__(self, "decisions", tuple(decisions))
            return
        for layer in range(self.num_layers):
            decisions += [
                Decision(layer, "op", self.ops),
                Decision(layer, "width", self.widths),
                Decision(layer, "prune_ratio", self.prune_ratios),
            ]
            if self.bits:
                decisions.append(Decision(layer, "bits", self.bits))
            if len(self.downsample) > 1:
                decisions.append(Decision(layer, "downsample", self.downsample))
            if self.skips:
                decisions.append(Decision(layer, "skip", (None, *range(layer + 1))))
                if len(self.skip_modes) > 1:
                    decisions.append(Decision(layer, "skip_mode", self.skip_modes))
        object.__setattr__(self, "decisions", tuple(decisions))

    def _adopt_architecture(self) -> None:
        architecture = self.architecture
        if isinstance(architecture, (str, bytes)) or not isinstance(architecture, Sequence) or not architecture:
            raise ConfigError("architecture", f"must be a non-empty list of layers, got {architecture!r}")
        try:
            layers = tuple(layer if isinstance(layer, LayerDesign) else LayerDesign(**layer) for layer in architecture)
        except (TypeError, ValueError) as err:
            raise ConfigError("architecture", str(err).replace("\n", " ")) from None
        if not any(layer.width is not None for layer in layers):
            raise ConfigError("architecture", "has no weighted layer (conv/sepconv) whose ratio could be searched")
        object.__setattr__(self, "architecture", layers)
        object.__setattr__(self, "num_layers", len(layers))
        object.__setattr__(self, "ops", tuple(dict.fromkeys(layer.op for layer in layers)))
        object.__setattr__(self, "widths", tuple(dict.fromkeys(layer.width for layer in layers if layer.width is not None)))
        object.__setattr__(self, "downsample", ("none", *dict.fromkeys(l.downsample for l in layers if l.downsample != "none")))
        object.__setattr__(self, "skips", any(layer.skip is not None for layer in layers))

    def _validate(self) -> None:
        """What the field types cannot say (the CLI checks those): non-empty choice lists without
        duplicates, op names, prunable width × ratio pairs, `none` first among the downsamplings."""
        for key in ("ops", "widths", "prune_ratios", "downsample", "skip_modes"):
            values = getattr(self, key)
            if not values:
                raise ConfigError(key, "the choice list is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ConfigError(key, f"has duplicate values {list(values)}")
        for op in self.ops:
            try:
                parse_op(op)
            except ValueError as err:
                raise ConfigError("ops", str(err)) from None
        if any(int(w * (1.0 - r)) < 1 for w in self.widths for r in self.prune_ratios):
            raise ConfigError(
                "prune_ratios", f"some width × ratio pair would prune a layer to 0 channels (widths {list(self.widths)})"
            )
        if self.downsample[0] != "none":
            raise ConfigError("downsample", f"must start with 'none' (the choice left when a map is 1×1), got {list(self.downsample)}")
        if len(set(self.bits)) != len(self.bits):
            raise ConfigError("bits", f"has duplicate values {list(self.bits)}")
        if self.prune_switch and (len(self.prune_ratios) < 2 or self.prune_ratios[0] != 0.0):
            raise ConfigError("prune_switch", f"needs prune_ratios starting with 0 and offering more, got {list(self.prune_ratios)}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | SearchSpace | None) -> SearchSpace:
        return config if isinstance(config, SearchSpace) else cls(**(config or {}))

    @property
    def max_choices(self) -> int:
        return max(len(d.choices) for d in self.decisions)

    def _partial_layers(self, actions: Sequence[int]) -> list[dict[str, Any]]:
        """The fields chosen so far, layer by layer."""
        layers: list[dict[str, Any]] = []
        for decision, action in zip(self.decisions, actions):
            if decision.layer == WHOLE_DESIGN:
                continue
            if decision.layer == len(layers):
                layers.append({})
            layers[decision.layer][decision.field] = decision.choices[action]
        return layers

    def action_mask(self, step: int, previous_actions: Sequence[int], input_size: tuple[int, int] | None = None) -> list[bool]:
        """Which choices of decision `step` are valid after `previous_actions`.

        A choice that cannot matter leaves only the first; a downsampling of a 1×1 map (known from
        `input_size`, the data's height and width) and a strided identity are invalid.
        """
        decision = self.decisions[step]
        only_first = [True] + [False] * (len(decision.choices) - 1)
        if decision.field == "prune_ratio" and self.prune_switch and not self.decisions[0].choices[previous_actions[0]]:
            return only_first
        if self.architecture is not None or decision.layer == WHOLE_DESIGN:
            return [True] * len(decision.choices)
        chosen = self._partial_layers(previous_actions[:step])
        current = chosen[decision.layer] if decision.layer < len(chosen) else {}
        if decision.field == "op":
            return [True] * len(decision.choices)
        weighted = is_weighted(current["op"])
        if decision.field in ("width", "prune_ratio", "bits", "skip") and not weighted:
            return only_first
        if decision.field == "skip_mode" and current.get("skip") is None:
            return only_first
        if decision.field == "downsample":
            mask = [not (mode == "stride" and current["op"] == "identity") for mode in decision.choices]
            if input_size is not None:
                size = min(input_size)
                for layer in chosen[: decision.layer]:
                    size = downsampled_size(size, layer.get("downsample", "none"))
                if size < 2:
                    return only_first
            return mask
        return [True] * len(decision.choices)

    def _cheapest_choice(self, step: int, previous_actions: Sequence[int], input_size: tuple[int, int] | None) -> int:
        """Among the valid choices of decision `step`, the one that leaves the fewest FLOPs.

        Each rule holds whatever the other decisions are, so the completion it builds is the cheapest
        one field by field: a weightless op (no convolution) before the weighted op with the cheapest
        kernel at the narrowest pruned width, the narrowest width, the largest prune ratio, a strided
        op (a halving that also cuts the op's own cost) before a pool after it, no skip."""
        decision = self.decisions[step]
        valid = [i for i, ok in enumerate(self.action_mask(step, previous_actions, input_size)) if ok]
        narrowest = min(int(w * (1.0 - r)) for w in self.widths for r in self.prune_ratios)

        def cost(choice: Any) -> float:
            if decision.field == "op":
                family, kernel = parse_op(choice)
                if family not in WEIGHTED_FAMILIES:
                    return 0.0
                assert kernel is not None  # a weighted op has a kernel
                return kernel * kernel + narrowest if family == "sepconv" else kernel * kernel * narrowest
            if decision.field == "width":
                return float(choice)
            if decision.field == "prune_ratio":
                return -float(choice)
            if decision.field == "prune":
                return -1.0 if choice else 0.0
            if decision.field == "downsample":
                return {"stride": 0.0, "maxpool": 1.0, "avgpool": 1.0}.get(choice, 2.0)
            if decision.field == "skip":
                return 0.0 if choice is None else 1.0
            return 0.0  # bits and skip mode leave the FLOPs as they are

        return min(valid, key=lambda i: cost(decision.choices[i]))

    def cheapest_completion(self, actions: Sequence[int], input_size: tuple[int, int] | None = None) -> Design:
        """The design that `actions` (the first decisions) complete with the cheapest valid choice
        at every later decision (see `_cheapest_choice`), what a FLOPs budget is checked against.

        The completion of `actions + [its own next choice]` is the same design, so a choice whose
        cheapest completion fits a budget always leaves a next choice that fits it too. The rules
        are per field: a weightless op that keeps more channels than a narrow conv would leave can
        make another completion cheaper still, so a budget may rarely mask a choice that would fit."""
        completed = list(actions)
        for step in range(len(completed), len(self.decisions)):
            completed.append(self._cheapest_choice(step, completed, input_size))
        return self.design_from_actions(completed)

    def design_from_actions(self, actions: Sequence[int]) -> Design:
        if len(actions) != len(self.decisions):
            raise ValueError(f"expected {len(self.decisions)} actions, got {len(actions)}")
        if self.architecture is not None:
            chosen: dict[int, dict[str, Any]] = {}  # weighted layers only: not one entry per layer
            for decision, action in zip(self.decisions, actions):
                if decision.layer != WHOLE_DESIGN:
                    chosen.setdefault(decision.layer, {})[decision.field] = decision.choices[action]
            return Design(tuple(replace(layer, **chosen.get(i, {})) for i, layer in enumerate(self.architecture)), self.head_grid)
        return Design(tuple(LayerDesign(**fields) for fields in self._partial_layers(actions)), self.head_grid)

    def largest_designs(self) -> list[Design]:
        """Candidates for the cost ceiling: per weighted op, every layer at the widest width, unpruned,
        without downsampling, at the largest bit-width, and (when skips are on) each skip mode from the
        layer's own input; for a fixed architecture, itself unpruned at the largest bit-width."""
        bits = max(self.bits, default=None)
        if self.architecture is not None:
            return [Design(tuple(replace(layer, prune_ratio=0.0, bits=bits) for layer in self.architecture), self.head_grid)]
        width = max(self.widths)
        skip_variants: list[tuple[int | None, str]] = [(None, "add")]
        if self.skips:
            skip_variants += [(0, mode) for mode in self.skip_modes]
        designs = []
        for op in self.ops:
            if not is_weighted(op):
                continue
            for skip, mode in skip_variants:
                designs.append(
                    Design(
                        tuple(LayerDesign(op, width, skip=None if skip is None else i, skip_mode=mode, bits=bits) for i in range(self.num_layers)),
                        self.head_grid,
                    )
                )
        return designs
