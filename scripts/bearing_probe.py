"""Does a trained policy's recurrent state know where the target is? (a
diagnostic, not a test)

The policy runs open-loop over recorded episodes (default: the forest val
demonstrations that `lnn-nav train` collects), step by step from the zero
state. A ridge regression from the head's state to the target's body-frame
bearing (sin, cos; `lnn_nav.aux_targets`) is fitted on the frames of half of
the episodes, from the first frame in which the target was inside the field
of view, and scored on the other half by its median error in the bearing's
angle (degrees), split into frames with the target inside the field of view
and frames after it left; beside it, the error of the best constant (the
fitting half's mean direction of that split), what a head without any
memory of the target would score. The second number is the memory a search needs: where the target went
once it is out of the picture. A policy trained with the auxiliary bearing
loss (`bc.aux_bearing_weight`) also has its own bearing outputs scored.

    .venv/bin/python scripts/bearing_probe.py policies/ltc-ncp-forest/policy.pt \\
        policies/gru-forest/policy.pt [--data data/forest-val-n20-noise0]

The last line is one JSON object: per policy, the median errors (degrees).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lnn_nav.aux_targets import target_bearing
from lnn_nav.data import load_dataset
from lnn_nav.models.policy import COMMAND_SIZE, NavPolicy
from lnn_nav.sim.camera import CameraConfig

RIDGE = 1e-2


def run_states(policy: NavPolicy, ep) -> tuple[np.ndarray, np.ndarray]:
    """Head states (T, S) after each frame, and the raw auxiliary outputs (T, A)."""
    with torch.no_grad():
        frames = torch.from_numpy(ep.frames)
        feats = torch.cat([policy.encoder(frames[i:i + 256]) for i in range(0, len(frames), 256)])
        state = policy.init_state(1)
        states, aux = [], []
        for t in range(len(ep)):
            raw, state = policy.head.step(feats[t:t + 1], state, float(ep.dt[t]))
            states.append(state[0].numpy().copy())
            aux.append(raw[0, COMMAND_SIZE:].numpy().copy())
    return np.stack(states), np.stack(aux)


def angle_error_deg(pred: np.ndarray, truth: np.ndarray) -> float:
    """Median |angle(pred) - angle(truth)| in degrees of (sin, cos) rows; nan for
    fewer than 10 frames."""
    if len(truth) < 10:
        return float("nan")
    diff = np.arctan2(pred[:, 0], pred[:, 1]) - np.arctan2(truth[:, 0], truth[:, 1])
    return float(np.degrees(np.median(np.abs(np.angle(np.exp(1j * diff))))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policies", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=Path("data/forest-val-n20-noise0"),
                        help="a folder of recorded episodes (default: the val demonstrations)")
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such folder (run `lnn-nav train` or `lnn-nav collect` first)")
    episodes = load_dataset([args.data])
    if len(episodes) < 4:
        parser.error(f"--data {args.data}: {len(episodes)} episodes, expected at least 4")
    torch.set_num_threads(1)
    hfov = CameraConfig().hfov_rad
    half = len(episodes) // 2
    summary = {}
    for path in args.policies:
        policy = NavPolicy.load(path).eval()
        parts: dict[str, list[np.ndarray]] = {"state": [], "aux": [], "label": [], "view": [], "fit": []}
        for k, ep in enumerate(episodes):
            states, aux = run_states(policy, ep)
            labels, mask = target_bearing(ep, hfov)
            keep = mask > 0
            view = labels[:, 1] >= np.cos(0.5 * hfov)
            for name, arr in (("state", states), ("aux", aux), ("label", labels), ("view", view)):
                parts[name].append(arr[keep])
            parts["fit"].append(np.full(int(keep.sum()), k < half))
        x, aux, y, view, fit = (np.concatenate(parts[n]) for n in ("state", "aux", "label", "view", "fit"))
        xa = np.hstack([x, np.ones((len(x), 1))])
        w = np.linalg.solve(xa[fit].T @ xa[fit] + RIDGE * np.eye(xa.shape[1]), xa[fit].T @ y[fit])
        pred = xa @ w
        test = ~fit
        row: dict[str, float | int] = {}
        for split, sel in (("in_view", view), ("out_of_view", ~view)):
            constant = y[fit & sel].mean(0, keepdims=True) if (fit & sel).any() else np.zeros((1, 2))
            row[f"frames_{split}"] = int((test & sel).sum())
            row[f"probe_deg_{split}"] = angle_error_deg(pred[test & sel], y[test & sel])
            row[f"constant_deg_{split}"] = angle_error_deg(
                np.repeat(constant, int((test & sel).sum()), 0), y[test & sel])
            if aux.shape[1]:
                row[f"own_outputs_deg_{split}"] = angle_error_deg(aux[test & sel], y[test & sel])
        summary[str(path)] = {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}
        own = (f"; its own bearing outputs {row['own_outputs_deg_in_view']:.1f} / "
               f"{row['own_outputs_deg_out_of_view']:.1f}" if aux.shape[1] else "")
        print(f"{path}: state of {x.shape[1]}; median bearing error of a linear probe "
              f"{row['probe_deg_in_view']:.1f} deg in view ({row['frames_in_view']} frames; constant "
              f"{row['constant_deg_in_view']:.1f}), {row['probe_deg_out_of_view']:.1f} deg out of view "
              f"({row['frames_out_of_view']} frames; constant {row['constant_deg_out_of_view']:.1f}){own}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
