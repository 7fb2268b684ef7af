"""How closely does a policy reproduce the expert's commands, axis by axis? (a
diagnostic, not a test)

The policy runs open-loop over recorded episodes (default: the forest val
demonstrations that `lnn-nav train` collects) from the zero state, with each
episode's real dt, and its commands are set beside the expert's labels. Per
command axis (forward, left, up, yaw rate):

- explained: 1 - mean squared error / variance of the label (R^2);
- gain: least-squares slope of the policy's command on the label, through the
  origin (1 = the right size on average; below 1 = commands shrunk toward zero);
- and on the frames where the label is large (|label| > --large, in the axis's
  unit), the policy's mean magnitude over the label's, and how often the two
  have the same sign.

A gain well below 1 with signs that agree says the policy knows which way to go
but not how far: what regression to the mean does to a label the frames only
partly predict.

Across axes, "between modes" is the share of frames whose command is neither
a search (turning on the spot) nor flight (forward with small turns): forward
0.15-0.6 m/s while turning at 0.3-0.9 rad/s, a creep with half a turn. The
expert passes through it only while its rate limits carry it from one mode to
the other; a policy that answers an ambiguous frame with the mean of the two
modes sits in it. It is printed for the labels and for each policy.

    .venv/bin/python scripts/command_fit.py policies/ltc-ncp-forest/policy.pt \\
        policies/gru-forest/policy.pt [--data data/forest-val-n20-noise0]

The last line is one JSON object: per policy and axis, the four figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lnn_nav.data import load_dataset
from lnn_nav.models.policy import NavPolicy

AXES = ("forward", "left", "up", "yaw_rate")


def open_loop_commands(policy: NavPolicy, frames: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """(T, 4) commands of the policy over one episode's frames, from the zero state."""
    with torch.no_grad():
        cmd, _ = policy(torch.from_numpy(frames)[None], None,
                        torch.from_numpy(dt.astype(np.float32))[None])
    return cmd[0].numpy().astype(np.float64)


BETWEEN_FORWARD = (0.15, 0.6)
"""m/s, forward speeds of a command between the search and flight modes."""
BETWEEN_YAW_RATE = (0.3, 0.9)
"""rad/s, turn rates (either way) of such a command."""


def between_modes(commands: np.ndarray) -> float:
    """Share of commands (N, 4) between the search and flight modes."""
    f, y = commands[:, 0], np.abs(commands[:, 3])
    inside = ((f > BETWEEN_FORWARD[0]) & (f < BETWEEN_FORWARD[1])
              & (y > BETWEEN_YAW_RATE[0]) & (y < BETWEEN_YAW_RATE[1]))
    return float(inside.mean()) if len(commands) else float("nan")


def fit(pred: np.ndarray, label: np.ndarray, large: float) -> dict[str, float]:
    """The figures of one axis: pred and label (N,)."""
    big = np.abs(label) > large
    out = {
        "explained": float(1.0 - np.mean((pred - label) ** 2) / max(float(np.var(label)), 1e-12)),
        "gain": float(pred @ label / max(float(label @ label), 1e-12)),
        "large_frames": int(big.sum()),
        "large_magnitude_ratio": float("nan"),
        "large_sign_agreement": float("nan"),
    }
    if big.any():
        out["large_magnitude_ratio"] = float(np.abs(pred[big]).mean() / np.abs(label[big]).mean())
        out["large_sign_agreement"] = float((np.sign(pred[big]) == np.sign(label[big])).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("policies", nargs="+", help="policy files (.pt)")
    ap.add_argument("--data", default="data/forest-val-n20-noise0",
                    help="directory of recorded episodes (default: %(default)s)")
    ap.add_argument("--large", type=float, default=0.3,
                    help="|label| above which a frame counts as large (default: %(default)s)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"--data {data}: not a directory of recorded episodes "
                         "(`lnn-nav collect ... --out DIR` writes one)")
    if not args.large > 0:
        raise SystemExit(f"--large {args.large}: expected a number > 0")
    episodes = load_dataset([data])
    if not episodes:
        raise SystemExit(f"--data {data}: no episodes in it")
    torch.set_num_threads(1)
    labels = np.concatenate([ep.expert for ep in episodes])
    print(f"{len(episodes)} episodes, {len(labels)} frames from {data}; "
          f"expert labels between modes: {between_modes(labels):.3f}")
    print(f"{'policy':40s} {'axis':9s} {'explained':>9s} {'gain':>6s} {'large n':>8s} "
          f"{'|pred|/|label|':>14s} {'same sign':>9s}")
    report: dict[str, dict[str, object]] = {"expert": {"between_modes": between_modes(labels)}}
    for path in args.policies:
        policy = NavPolicy.load(path).eval()
        h, w = policy.config.encoder.image_size
        if episodes[0].frames.shape[1:3] != (h, w):
            raise SystemExit(f"{path} takes {h}x{w} frames; {data} holds "
                             f"{episodes[0].frames.shape[1]}x{episodes[0].frames.shape[2]}")
        pred = np.concatenate([open_loop_commands(policy, ep.frames, ep.dt) for ep in episodes])
        report[path] = {"between_modes": between_modes(pred)}
        for k, axis in enumerate(AXES):
            f = fit(pred[:, k], labels[:, k], args.large)
            report[path][axis] = f
            print(f"{path:40s} {axis:9s} {f['explained']:9.2f} {f['gain']:6.2f} {f['large_frames']:8d} "
                  f"{f['large_magnitude_ratio']:14.2f} {f['large_sign_agreement']:9.2f}")
        print(f"{path:40s} between modes: {report[path]['between_modes']:.3f}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
