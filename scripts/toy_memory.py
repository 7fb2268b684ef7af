"""Trainability benchmark: every head on a toy task (irregular dt), same budget, same
number of Adam steps, several seeds. Prints a table, the LTC/GRU ratio per seed and one
JSON line.

    .venv/bin/python scripts/toy_memory.py                       # ltc, cfc, lstm, gru, mlp; 5 seeds
    .venv/bin/python scripts/toy_memory.py --kinds ltc gru --steps 300
    .venv/bin/python scripts/toy_memory.py --kinds ltc gru --lr-grid 3e-3 1e-2 3e-2
                                                                 # each kind at its best base lr
    .venv/bin/python scripts/toy_memory.py --task sighting --kinds ltc gru --ltc-init default
    .venv/bin/python scripts/toy_memory.py --task sighting --kinds ltc --ltc-init \
        '{"sensory_offset": 2, "sensory_gain_range": [2, 4], "sensory_offset_fraction": 0.5}'

--task memory (leaky integrals, `MemoryTaskConfig`) or sighting (latch a 1-4 frame
sighting for 0.5-3 s, `SightingTaskConfig`); --ltc-init toy (`TOY_LTC`, the default),
default (`LTCTrainability()`, what the flying policies use) or a JSON object of
`LTCTrainability` fields over the defaults.

Target (issue 2, section 4): LTC validation loss within 1.5x of the GRU's in 5 of 5 seeds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from lnn_nav.models.heads import HEAD_KINDS, LTCTrainability, ltc_dense_count
from lnn_nav.models.toy_tasks import (
    DEFAULT_LR,
    TOY_LTC,
    MemoryTaskConfig,
    SightingTaskConfig,
    compare_heads,
)


def parse_ltc_init(text: str, parser: argparse.ArgumentParser) -> LTCTrainability:
    """--ltc-init: "toy", "default" or a JSON object of LTCTrainability fields."""
    if text == "toy":
        return TOY_LTC
    if text == "default":
        return LTCTrainability()
    try:
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError(f"expected a JSON object, got {type(fields).__name__}")
        return LTCTrainability.from_dict(fields)
    except (TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        parser.error(f"--ltc-init {text!r}: {exc} (expected toy, default or a JSON object of "
                     "LTCTrainability fields)")
        raise  # parser.error exits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", default=list(HEAD_KINDS), choices=HEAD_KINDS)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr-grid", nargs="+", type=float, default=None,
                   help="base learning rates to try per kind; each kind is reported at the one "
                        "with the lowest median validation loss (default: DEFAULT_LR only)")
    p.add_argument("--sources", nargs=4, default=None,
                   help='what the 4 targets low-pass, e.g. u0 u1 u2 "u0*u1" (default: u0 u1 u2 u3)')
    p.add_argument("--task", choices=("memory", "sighting"), default="memory")
    p.add_argument("--ltc-init", default="toy",
                   help="LTC initialisation: toy (TOY_LTC), default (LTCTrainability()) or a JSON "
                        "object of LTCTrainability fields (default: toy)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.task == "sighting":
        if args.sources is not None:
            p.error("--sources applies to --task memory only")
        task = SightingTaskConfig()
    else:
        task = MemoryTaskConfig() if args.sources is None else MemoryTaskConfig(sources=tuple(args.sources))
    ltc_init = parse_ltc_init(args.ltc_init, p)
    budget = ltc_dense_count(task.input_size, 34, task.output_size)
    seeds = tuple(range(args.seeds))
    kinds = tuple(args.kinds)
    t0 = time.perf_counter()
    grid = args.lr_grid or [None]
    by_lr: dict[str, dict[float, list[float]]] = {k: {} for k in kinds}
    for lr in grid:
        lrs = None if lr is None else {k: lr for k in kinds}
        res = compare_heads(kinds, seeds, task, args.steps, budget, lrs, ltc=ltc_init)
        for k in kinds:
            by_lr[k][DEFAULT_LR[k] if lr is None else lr] = res[k]
    best_lr = {k: min(by_lr[k], key=lambda lr, k=k: float(np.median(by_lr[k][lr]))) for k in kinds}
    results = {k: by_lr[k][best_lr[k]] for k in kinds}
    print(f"toy {args.task} task {task.to_dict()}, LTC init {args.ltc_init}")
    print(f"budget {budget} parameters, {args.steps} steps, seeds {list(seeds)}")
    for kind in kinds:
        for lr, losses in sorted(by_lr[kind].items()):
            mark = " *" if lr == best_lr[kind] and len(by_lr[kind]) > 1 else ""
            print(f"{kind:5s} lr {lr:.0e}  val MSE " + " ".join(f"{v:.4f}" for v in losses)
                  + f"   median {np.median(losses):.4f}{mark}")
    summary: dict[str, object] = {"steps": args.steps, "budget": budget, "seeds": list(seeds),
                                  "lr": best_lr, "val_loss": results}
    if len(grid) > 1:
        summary["val_loss_by_lr"] = {k: {f"{lr:g}": v for lr, v in d.items()} for k, d in by_lr.items()}
    if "ltc" in results and "gru" in results:
        ratios = [a / b for a, b in zip(results["ltc"], results["gru"])]
        print("LTC / GRU per seed: " + " ".join(f"{r:.2f}" for r in ratios)
              + f"   within 1.5x: {sum(r <= 1.5 for r in ratios)} of {len(ratios)}")
        summary["ltc_over_gru"] = [round(r, 3) for r in ratios]
        summary["seeds_within_1p5x"] = sum(r <= 1.5 for r in ratios)
    if "mlp" in results:
        summary["mlp_median"] = float(np.median(results["mlp"]))
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
