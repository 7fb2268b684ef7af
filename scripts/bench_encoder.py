"""Encoder training throughput: images/s for forward + backward + Adam step of the CNN encoder
alone and of the whole default NavPolicy (encoder + LTC head) on 64x64 uint8 frames.

    .venv/bin/python scripts/bench_encoder.py               # 1 and 2 threads
    .venv/bin/python scripts/bench_encoder.py --threads 1 --repeats 20

Median of `--repeats` timed iterations after warm-up. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lnn_nav.models.encoder import CNNEncoder
from lnn_nav.models.policy import NavPolicy, default_policy_config, random_frames


def time_encoder(batch: int, repeats: int) -> float:
    """Median seconds of one training iteration of the encoder on `batch` frames."""
    enc = CNNEncoder()
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    frames = random_frames(batch, 1, enc.config, seed=0)[:, 0]
    target = torch.randn(batch, enc.feature_size, generator=torch.Generator().manual_seed(0))
    times = []
    for i in range(repeats + 3):
        t0 = time.perf_counter()
        loss = torch.mean((enc(frames) - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:  # warm-up iterations are not timed
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_policy(batch: int, steps: int, repeats: int) -> float:
    """Median seconds of one BC-style iteration of the default policy on (batch, steps) frames."""
    policy = NavPolicy(default_policy_config())
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    frames = random_frames(batch, steps, policy.config.encoder, seed=1)
    dt = torch.full((batch, steps), 1 / 30)
    target = torch.zeros(batch, steps, 4)
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        cmds, _ = policy(frames, None, dt)
        loss = torch.mean((cmds - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=256, help="frames per encoder iteration")
    p.add_argument("--seq-batch", type=int, default=16, help="sequences per policy iteration")
    p.add_argument("--seq-len", type=int, default=16, help="frames per sequence (policy)")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    out: dict[str, float] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        enc_s = time_encoder(args.batch, args.repeats)
        pol_s = time_policy(args.seq_batch, args.seq_len, args.repeats)
        n_pol = args.seq_batch * args.seq_len
        out[f"encoder_train_images_per_s_{threads}t"] = round(args.batch / enc_s, 1)
        out[f"policy_train_images_per_s_{threads}t"] = round(n_pol / pol_s, 1)
        print(f"{threads} thread(s): encoder {args.batch / enc_s:8.1f} images/s "
              f"({enc_s * 1e3:.1f} ms per {args.batch}); policy {n_pol / pol_s:8.1f} images/s "
              f"({pol_s * 1e3:.1f} ms per {args.seq_batch}x{args.seq_len})")
    out["encoder_params"] = CNNEncoder().param_count()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
