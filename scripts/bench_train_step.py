"""Behaviour-cloning step time: the encoder's convolutions in float32 against
bfloat16 autocast (`BCConfig.conv_precision`), timed interleaved in one process.

One step is what `train_bc` runs: `batch_size` windows of `burn_in` steps
without gradient and `window` steps with it, through the default LTC-NCP
policy, then backward and an Adam step. Rounds alternate the two precisions so
that a machine that slows down mid-run slows both alike; the figure is the
ratio of medians. It also prints how far the bfloat16 loss is from the float32
loss on the same batch and weights.

    .venv/bin/python scripts/bench_train_step.py
    .venv/bin/python scripts/bench_train_step.py --rounds 5 --repeats 8

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lnn_nav.models.policy import random_frames
from lnn_nav.train import Batch, BCConfig, conv_autocast_dtype, make_policy, sequence_loss


def make_batch(cfg: BCConfig, policy: torch.nn.Module) -> Batch:
    """A batch shaped like train_bc's: burn-in steps carry no loss."""
    span = cfg.burn_in + cfg.window
    frames = random_frames(cfg.batch_size, span, policy.config.encoder, seed=0)
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(cfg.batch_size, span, 4, generator=gen) * 2 - 1
    weight = torch.ones(cfg.batch_size, span)
    weight[:, : cfg.burn_in] = 0
    return Batch(frames, torch.full((cfg.batch_size, span), 1 / 30), target, weight,
                 torch.full((cfg.batch_size,), cfg.burn_in, dtype=torch.int64),
                 torch.zeros(cfg.batch_size, span, 2), torch.zeros(cfg.batch_size, span))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=4, help="alternations of the two precisions")
    p.add_argument("--repeats", type=int, default=6, help="timed steps per precision per round")
    p.add_argument("--threads", type=int, default=1, help="torch threads (training uses 1)")
    args = p.parse_args()
    if args.rounds < 1 or args.repeats < 1:
        p.error(f"--rounds {args.rounds} --repeats {args.repeats}: expected integers >= 1")
    torch.set_num_threads(args.threads)
    if conv_autocast_dtype("auto") is None:
        print("note: this CPU has no native bfloat16; the bfloat16 figure is emulated and slow")

    cfg = BCConfig()
    policy = make_policy("ltc", 0)
    batch = make_batch(cfg, policy)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-4)

    def step() -> float:
        t0 = time.perf_counter()
        loss = sequence_loss(policy, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0

    with torch.no_grad():
        exact = float(sequence_loss(policy, batch))
        policy.encoder.conv_autocast = torch.bfloat16
        rounded = float(sequence_loss(policy, batch))
        policy.encoder.conv_autocast = None

    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(args.rounds):
        for precision in times:
            policy.encoder.conv_autocast = conv_autocast_dtype(precision)
            step()  # warm-up: oneDNN picks its kernels on the first call
            times[precision].extend(step() for _ in range(args.repeats))
    policy.encoder.conv_autocast = None

    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "step_s_float32": round(med["float32"], 4),
        "step_s_bfloat16": round(med["bfloat16"], 4),
        "speedup": round(med["float32"] / med["bfloat16"], 3),
        "loss_float32": exact,
        "loss_rel_diff_bfloat16": abs(rounded - exact) / exact,
        "windows_per_step": cfg.batch_size,
        "frames_per_window": cfg.burn_in + cfg.window,
        "threads": args.threads,
    }
    print(f"one step of {cfg.batch_size} windows x {cfg.burn_in}+{cfg.window} frames, "
          f"{args.threads} thread(s), medians of {args.rounds * args.repeats}:")
    print(f"  float32   {med['float32'] * 1e3:7.1f} ms")
    print(f"  bfloat16  {med['bfloat16'] * 1e3:7.1f} ms   ({out['speedup']:.2f}x)")
    print(f"  loss on the same batch: {exact:.6f} (float32), relative difference "
          f"{out['loss_rel_diff_bfloat16']:.1e} in bfloat16")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
