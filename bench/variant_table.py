"""Write a NAS-Bench-201-style CSV that no setting was tuned on, for `search_efficiency.py --table`.

The same cells, with two changes: the search signal `valid_acc_12ep` is replaced by the table's
`test_acc_12ep` (another 12-epoch measurement, on other images), and the five operations are
relabelled by a fixed permutation, so a strategy or prior that favours an op by its position in
the action list meets a different op there. `test_acc_200ep` (reported, never rewarded) follows
its cell.

    python bench/variant_table.py /tmp/nb201_variant.csv
    python bench/search_efficiency.py --table /tmp/nb201_variant.csv --strategies controller random local_search
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from nasprune.envs.nasbench201_env import OPS, actions_to_arch, arch_to_actions

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nasbench201" / "nb201_cifar10.csv"
PERMUTATION = (3, 0, 4, 1, 2)  # op i is written as op PERMUTATION[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--table", type=Path, default=TABLE)
    args = parser.parse_args()
    assert sorted(PERMUTATION) == list(range(len(OPS)))
    with args.table.open(newline="") as source, args.out.open("w", newline="") as target:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(target, fieldnames=list(reader.fieldnames or ()))
        writer.writeheader()
        for row in reader:
            row["arch"] = actions_to_arch([PERMUTATION[a] for a in arch_to_actions(row["arch"])])
            row["valid_acc_12ep"] = row["test_acc_12ep"]
            writer.writerow(row)


if __name__ == "__main__":
    main()
