"""How long a trained policy's recurrent head remembers, and how it answers a
brief sighting of the target (a diagnostic, not a test).

Two measurements per policy, both on frames of the forest's val split:

1. Time constants. The head is held on the features of one frame until its
   state settles; the Jacobian of one 1/30 s step with respect to the state then
   has eigenvalues lambda, and each mode forgets with time constant
   -dt / ln|lambda| s. Printed: the slowest modes and the median, over a few
   frames. A head whose slowest mode is well under a second cannot carry
   "the target was just there" through a trunk passing in front of it.
2. Sighting. The drone spins on the spot (yaw command 1.2 rad/s, as the
   expert's search does) where the target is out of the picture; a blob of the
   target's colour, `--blob` pixels square, is painted at the image centre for
   n frames, and the change of the policy's forward and yaw-rate commands over
   the next second is printed against the unpainted run. The expert, seeing the
   target, stops turning and flies to it.

    .venv/bin/python scripts/head_memory.py policies/ltc-ncp-forest/policy.pt \\
        policies/gru-forest/policy.pt [--scene 3] [--blob 2]

The last line is one JSON object: per policy, the slowest time constant (s),
the median one, and the forward-command change after a 4-frame sighting.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lnn_nav.expert import ExpertConfig
from lnn_nav.models.heads import DEFAULT_DT_S
from lnn_nav.models.policy import NavPolicy
from lnn_nav.rollout import expert_for_env, make_env, policy_camera, run_episode

DT = DEFAULT_DT_S
SPIN_RATE = ExpertConfig().search_yaw_rate  # rad/s, the turn of the expert's search
SIGHTING_FRAMES = (1, 2, 4, 8)


def near_colour(frames: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """bool (..., H, W): pixels within 60 (of 255, per channel) of colour `rgb` in [0, 1]."""
    ref = (np.asarray(rgb, float) * 255.0).astype(np.int16)
    return np.abs(frames.astype(np.int16) - ref).max(axis=-1) < 60


def target_pixels(frames: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """(T,) count of pixels near the target's colour `rgb` in [0, 1]."""
    return near_colour(frames, rgb).sum(axis=(1, 2))


def spin_frames(scene: int, camera: Any, steps: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """Frames of the drone spinning on the spot on forest/val scene `scene` behind
    `camera` (a CameraConfig), and the target's rendered colour (uint8 RGB, from an
    expert flight to it)."""
    env = make_env("fly", "forest", "val", camera=camera)
    try:
        episode = run_episode(env, scene, expert_for_env(env))
        colour_rgb = np.asarray(env.unwrapped.scene.target_rgba[:3])
        counts = target_pixels(episode.frames, colour_rgb)
        nearest = episode.frames[int(np.argmax(counts))]
        rendered = nearest[near_colour(nearest, colour_rgb)].mean(axis=0).astype(np.uint8)
        obs, _ = env.reset(seed=scene)
        scale = env.unwrapped.limits.scale()
        action = np.array([0.0, 0.0, 0.0, SPIN_RATE / scale[3]], np.float32)
        frames = []
        for _ in range(steps):
            obs, *_ = env.step(action)
            frames.append(obs["image"])
        frames = np.stack(frames)
    finally:
        env.close()
    return frames, rendered


def time_constants(policy: NavPolicy, features: torch.Tensor) -> np.ndarray:
    """(N,) time constants (s) of the head's modes, slowest first, linearised at
    the state it settles to under `features` (1, F) held constant."""
    head = policy.head
    state = head.init_state(1)
    with torch.no_grad():
        for _ in range(300):
            _, state = head.step(features, state, DT)
    jac = torch.autograd.functional.jacobian(lambda s: head.step(features, s, DT)[1], state)
    n = state.numel()
    lam = np.abs(np.linalg.eigvals(jac.reshape(n, n).numpy()))
    return np.sort(-DT / np.log(np.clip(lam, 1e-12, 1.0 - 1e-9)))[::-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policies", nargs="+", type=Path)
    parser.add_argument("--scene", type=int, default=3, help="forest/val scene (default 3)")
    parser.add_argument("--blob", type=int, default=2, help="sighting blob size in pixels (default 2)")
    args = parser.parse_args()
    if args.scene < 0:
        parser.error(f"--scene {args.scene}: expected a scene index >= 0")
    if not 1 <= args.blob <= 16:
        parser.error(f"--blob {args.blob}: expected a size of 1 to 16 pixels")
    torch.set_num_threads(1)
    policies = {path: NavPolicy.load(path) for path in args.policies}
    cameras = {path: policy_camera(p) for path, p in policies.items()}
    if len(set(cameras.values())) > 1:
        parser.error(f"the policies were trained behind different cameras {cameras}: "
                     "expected one camera, so that they see the same frames")
    frames, colour = spin_frames(args.scene, next(iter(cameras.values())))
    hidden = np.nonzero(target_pixels(frames, colour / 255.0) == 0)[0]
    # a stretch of 60 frames without the target, after the spin has settled
    start = next((int(t) for t in hidden if t >= 30 and np.all(np.isin(np.arange(t, t + 60), hidden))), None)
    if start is None:
        raise SystemExit(f"forest/val scene {args.scene}: the target never leaves the picture for "
                         "2 s of spinning; choose another --scene")
    clip = frames[start:start + 60]
    onset = 20
    summary = {}
    for path, policy in policies.items():
        policy.eval()
        with torch.no_grad():
            feats = policy.encoder(torch.from_numpy(frames[::30]))
        taus = np.stack([time_constants(policy, feats[i:i + 1]) for i in range(len(feats))])
        slowest, median = float(np.median(taus[:, 0])), float(np.median(taus))
        print(f"{path}: state of {taus.shape[1]}; slowest time constants (s) "
              f"{[round(float(v), 2) for v in np.median(taus, axis=0)[:5]]}, median {median:.3f} s")
        dt = torch.full((1, len(clip)), DT)
        scale = policy.limits.scale()
        with torch.no_grad():
            base, _ = policy(torch.from_numpy(clip[None]), None, dt)
        forward_after = {}
        h, w = clip.shape[1:3]
        r0, c0 = (h - args.blob) // 2, (w - args.blob) // 2
        for n in SIGHTING_FRAMES:
            painted = clip.copy()
            painted[onset:onset + n, r0:r0 + args.blob, c0:c0 + args.blob] = colour
            with torch.no_grad():
                cmd, _ = policy(torch.from_numpy(painted[None]), None, dt)
            change = ((cmd - base)[0, onset:onset + 30] / torch.as_tensor(scale)).numpy()
            forward_after[n] = float(change[:, 0].max())
            print(f"  target seen {n} frame(s): forward +{change[:, 0].max():.2f}, yaw rate "
                  f"{change[:, 3].min():+.2f} of their limits (largest change within 1 s); "
                  f"forward still {change[-1, 0]:+.2f} after 1 s")
        summary[str(path)] = {"slowest_tau_s": round(slowest, 3), "median_tau_s": round(median, 3),
                              "forward_after_4_frames": round(forward_after[4], 3)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
