"""FLOPs and parameters a design implies, worked out from its shapes by hand (independently of the builder).

FLOPs follow FlopCounterMode's convention: 2×MACs of convolutions and the classifier; BatchNorm,
pooling, additions and ReLU count nothing. Parameters include BatchNorm's scale and shift.
"""

from __future__ import annotations

from nasprune.child import Design


def analytic_costs(design: Design, input_shape: tuple[int, int, int], classes: int, stem: int, pruned: bool) -> tuple[int, int]:
    in_channels, height, width = input_shape
    flops = 2 * height * width * in_channels * stem * 9
    params = in_channels * stem * 9 + 2 * stem
    channels, sizes = [stem], [(height, width)]
    for layer in design.layers:
        c, (h, w) = channels[-1], sizes[-1]
        if layer.downsample == "stride":
            h_op, w_op = -(-h // 2), -(-w // 2)
            final = (h_op, w_op)
        else:
            h_op, w_op = h, w
            final = (h // 2, w // 2) if layer.downsample in ("maxpool", "avgpool") else (h, w)
        pixels = h_op * w_op
        k2 = (layer.kernel_size or 0) ** 2
        out = c
        if layer.width is not None:
            out = layer.pruned_width if pruned else layer.width
        if layer.family == "conv":
            flops += 2 * pixels * c * out * k2
            params += c * out * k2 + 2 * out
        elif layer.family == "sepconv":  # depthwise k×k on c channels, then pointwise c → out
            flops += 2 * pixels * c * k2 + 2 * pixels * c * out
            params += c * k2 + c * out + 2 * out
        if layer.skip is not None:
            skip_channels = channels[layer.skip]
            if layer.skip_mode == "add":  # 1×1 projection + BN on the output grid
                flops += 2 * final[0] * final[1] * skip_channels * out
                params += skip_channels * out + 2 * out
            else:
                out += skip_channels
        channels.append(out)
        sizes.append(final)
    flops += 2 * channels[-1] * classes
    params += channels[-1] * classes + classes
    return flops, params
