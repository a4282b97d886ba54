"""Children trained on several devices with DDP, in processes of their own, from inside a running search.

Lightning's `ddp` strategy starts the other ranks by re-running `sys.argv`: inside a search that
would start the whole search again. So a child with `training.devices > 1` is trained by
`torchrun` (`torch.distributed.run`), which starts `devices` processes of
`python -m nasprune.child.ddp_train SPEC OUT`. Each runs the same evaluation; Lightning sees the
launcher's environment (TorchElasticEnvironment) and joins its process group instead of
launching; gradients are all-reduced (gloo on CPU, NCCL on GPUs). Every rank reports itself, rank
0 writes the result, and the env's process reads it back.

The ranks inherit the caller's `CUDA_VISIBLE_DEVICES` (a Ray actor's GPUs, or an async worker's
slice), so `devices: 2` trains on the two GPUs that worker was given.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasprune.child.data import ChildDataModule
from nasprune.child.pipeline import ChildTraining, EvalResult
from nasprune.child.search_space import Design


def needs_own_processes(training: ChildTraining) -> bool:
    """A multi-device child not already running under a launcher (a rank itself runs in-process)."""
    return training.devices > 1 and "LOCAL_RANK" not in os.environ


@dataclass(frozen=True)
class DistributedRun:
    """The result rank 0 wrote, and what every rank reported (rank, world size, backend, weights checksum)."""

    result: EvalResult
    ranks: list[dict[str, Any]]


def train_distributed(
    design: Design, datamodule: ChildDataModule, training: ChildTraining, stem_width: int, seed: int
) -> DistributedRun:
    """Evaluate `design` in `training.devices` processes started by torchrun; raise if one fails."""
    portable = copy.copy(datamodule)
    portable.trainer = None  # the last Trainer that used it stays here
    threads = max(1, torch.get_num_threads() // training.devices)
    with tempfile.TemporaryDirectory(prefix="nasprune-ddp-") as folder:
        spec, out = Path(folder) / "spec.pt", Path(folder) / "out"
        out.mkdir()
        spec_content = dict(design=design, datamodule=portable, training=training, stem_width=stem_width, seed=seed)
        torch.save(spec_content, spec)
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={training.devices}",
            "-m", "nasprune.child.ddp_train", str(spec), str(out),
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        if completed.returncode != 0:
            tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"DDP child training exited with {completed.returncode}:\n{tail}")
        ranks = [json.loads(path.read_text()) for path in sorted(out.glob("rank*.json"))]
        result = torch.load(out / "result.pt", weights_only=False)
    if sorted(r["rank"] for r in ranks) != list(range(training.devices)) or any(r["world_size"] != training.devices for r in ranks):
        raise RuntimeError(f"DDP child training expected {training.devices} ranks, got {ranks}")
    return DistributedRun(result, ranks)


def evaluate_in_processes(
    design: Design, datamodule: ChildDataModule, training: ChildTraining, stem_width: int, seed: int
) -> EvalResult:
    return train_distributed(design, datamodule, training, stem_width, seed).result
