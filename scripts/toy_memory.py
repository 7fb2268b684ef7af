"""Trainability benchmark: every head on the toy memory task (irregular dt), same budget,
same number of Adam steps, several seeds. Prints a table and one JSON line.

    .venv/bin/python scripts/toy_memory.py                 # ltc, cfc, lstm, gru, mlp; 5 seeds
    .venv/bin/python scripts/toy_memory.py --kinds ltc gru --steps 300

Target (issue 2, section 4): LTC validation loss within 1.5x of the GRU's in 5 of 5 seeds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from lnn_nav.models.heads import HEAD_KINDS, ltc_dense_count
from lnn_nav.models.toy_tasks import DEFAULT_LR, MemoryTaskConfig, compare_heads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", default=list(HEAD_KINDS), choices=HEAD_KINDS)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr-sweep", action="store_true", help="also run every kind at lr 3e-3")
    p.add_argument("--sources", nargs=4, default=None,
                   help='what the 4 targets low-pass, e.g. u0 u1 u2 "u0*u1" (default: u0 u1 u2 u3)')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    task = MemoryTaskConfig() if args.sources is None else MemoryTaskConfig(sources=tuple(args.sources))
    budget = ltc_dense_count(task.input_size, 34, task.output_size)
    seeds = tuple(range(args.seeds))
    t0 = time.perf_counter()
    results = compare_heads(tuple(args.kinds), seeds, task, args.steps, budget)
    print(f"toy memory task {task.to_dict()}")
    print(f"budget {budget} parameters, {args.steps} steps, seeds {list(seeds)}")
    for kind, losses in results.items():
        print(f"{kind:5s} lr {DEFAULT_LR[kind]:.0e}  val MSE " + " ".join(f"{v:.4f}" for v in losses)
              + f"   median {np.median(losses):.4f}")
    summary: dict[str, object] = {"steps": args.steps, "budget": budget,
                                  "val_loss": results, "seconds": round(time.perf_counter() - t0, 1)}
    if "ltc" in results and "gru" in results:
        ratios = [a / b for a, b in zip(results["ltc"], results["gru"])]
        summary["ltc_over_gru"] = [round(r, 3) for r in ratios]
        summary["seeds_within_1p5x"] = sum(r <= 1.5 for r in ratios)
    if "mlp" in results:
        summary["mlp_median"] = float(np.median(results["mlp"]))
    if args.lr_sweep:
        summary["val_loss_lr3e-3"] = compare_heads(
            tuple(args.kinds), seeds, task, args.steps, budget, {k: 3e-3 for k in args.kinds})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
