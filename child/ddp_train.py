"""`python -m nasprune.child.ddp_train SPEC OUT`: one rank of a child trained with DDP.

Started by torchrun from `nasprune.child.distributed`, never by hand: SPEC (torch.save of the
design, data module, training settings, stem width and seed) is evaluated by every rank; each
writes `OUT/rank{R}.json`, rank 0 also `OUT/result.pt` (the `EvalResult`, pruned model included).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from nasprune.child.pipeline import evaluate_design


def main(argv: Sequence[str]) -> None:
    spec, out = Path(argv[0]), Path(argv[1])
    result = evaluate_design(**torch.load(spec, weights_only=False))
    rank = int(os.environ["RANK"])
    assert result.model is not None  # evaluate_design keeps the trained model
    report = {
        "rank": rank,
        "world_size": int(os.environ["WORLD_SIZE"]),
        "backend": dist.get_backend() if dist.is_initialized() else None,
        "weights_sum": float(sum(p.detach().double().sum() for p in result.model.parameters())),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    if rank == 0:
        torch.save(result, out / "result.tmp")
        os.replace(out / "result.tmp", out / "result.pt")


if __name__ == "__main__":
    main(sys.argv[1:])
