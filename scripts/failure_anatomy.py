"""Why a policy's failed episodes failed (a diagnostic, not a test).

Replays the failures listed in an evaluation's `results.json` (or given scenes)
closed loop, exactly as `lnn-nav eval` flew them, and reads the privileged
state at every frame:

- Collisions: what was hit, where it was at impact (bearing in the body frame,
  degrees, + = left; inside the camera's horizontal field of view or not). A
  contact at 50-70 deg
  means the drone flew past an obstacle that had already left the picture.
- Timeouts: how much of the target the camera showed: frames with any target
  pixel and the most target pixels in one frame. A target shown as one or two
  pixels for a few frames per turn is a limit of the 64x64 camera, not of the
  head's memory.
- For every episode replayed: the closest approach (gap between the drone's
  disc and any obstacle surface, m), to compare with the expert's margins.
- What the expert would have done: the expert rides along on the policy's
  flight (as it labels a DAgger rollout; it commands nothing) and, for a
  collision, the row gives the policy's and the expert's mean command over the
  last second (forward, left, up, yaw rate) and whether the expert was
  searching at impact. A collision while the expert searches is a drift into
  an obstacle while turning on the spot; one in flight with the expert turning
  hard and the policy flying straight is an avoidance the policy never began.

    .venv/bin/python scripts/failure_anatomy.py policies/ltc-ncp-forest/policy.pt \\
        --results policies/ltc-ncp-forest/eval-forest-unseen-200/results.json

The last line is one JSON object with the per-failure rows and a summary.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from lnn_nav.command import VelocityCommand
from lnn_nav.models.policy import NavPolicy
from lnn_nav.rollout import SimTimeController, expert_for_env, make_env, policy_camera

LAST_SECOND_STEPS = 30  # control steps averaged before an impact (1 s at 30 Hz)


def obstacle_gaps(pos_w: np.ndarray, cylinders: np.ndarray, spheres: np.ndarray,
                  boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Surface gaps (m, from the drone's centre, drone radius not subtracted) and
    the (x, y) world point of each obstacle nearest to `pos_w` (3,) m ENU.

    cylinders (N, 5) x, y, r, zmin, zmax: horizontal distance to the side when the
    drone is within their height, else to the nearer end's rim; spheres (M, 4)
    x, y, z, r: 3D; boxes (K, 7) x, y, z, hx, hy, hz, yaw: to the (yawed) box.
    Returns gaps (N + M + K,) and nearest points (N + M + K, 2)."""
    p = np.asarray(pos_w, float)
    gaps, points = [], []
    for x, y, r, z0, z1 in np.asarray(cylinders, float).reshape(-1, 5):
        d_xy = math.hypot(p[0] - x, p[1] - y)
        dz = max(z0 - p[2], 0.0, p[2] - z1)
        gaps.append(math.hypot(max(d_xy - r, 0.0), dz))
        points.append((x, y))
    for x, y, z, r in np.asarray(spheres, float).reshape(-1, 4):
        gaps.append(math.dist((x, y, z), p) - r)
        points.append((x, y))
    for x, y, z, hx, hy, hz, yaw in np.asarray(boxes, float).reshape(-1, 7):
        c, s = math.cos(yaw), math.sin(yaw)
        dx, dy = p[0] - x, p[1] - y
        lx, ly = c * dx + s * dy, -s * dx + c * dy  # into the box frame
        out = (max(abs(lx) - hx, 0.0), max(abs(ly) - hy, 0.0), max(abs(p[2] - z) - hz, 0.0))
        gaps.append(math.hypot(*out))
        points.append((x, y))
    return np.asarray(gaps), np.asarray(points).reshape(-1, 2)


def bearing_deg(pos_w: np.ndarray, yaw: float, point_xy: np.ndarray) -> float:
    """Bearing of a world point from the body x axis, degrees, + = left (FLU)."""
    a = math.atan2(point_xy[1] - pos_w[1], point_xy[0] - pos_w[0]) - yaw
    return math.degrees(math.remainder(a, 2 * math.pi))


def target_pixel_count(image: np.ndarray, target_rgb: np.ndarray) -> int:
    """Pixels whose chromaticity (r, g, b) / (r + g + b) lies within 0.12 of the
    target colour's and that are not dark: shading scales a colour, it does not
    move its chromaticity, so this holds under the scene's lighting."""
    img = image.astype(np.float32)
    total = img.sum(axis=-1, keepdims=True)
    chroma = img / np.maximum(total, 1.0)
    ref = np.asarray(target_rgb, np.float32) / max(float(np.sum(target_rgb)), 1e-6)
    close = np.abs(chroma - ref).max(axis=-1) < 0.12
    return int((close & (total[..., 0] > 60)).sum())


def replay(policy: NavPolicy, family: str, split: str, seed: int) -> dict:
    """Fly scene `seed` as `lnn-nav eval` does and describe the episode."""
    env = make_env("fly", family, split, camera=policy_camera(policy))
    try:
        base = env.unwrapped
        # the environment's own vehicle and camera, so a changed config is read right
        drone_radius_m = base.config.sim.vehicle.radius_m
        half_fov_deg = math.degrees(base.config.sim.camera.hfov_rad) / 2
        target_rgb = np.asarray(base.family.target.color_rgb, float)
        ctl = SimTimeController(policy)
        obs, info = env.reset(seed=seed, options={"scene_index": seed})
        ctl.reset()
        expert = expert_for_env(env)
        expert.reset_from_info(info, "fly")
        flown, labels = [], []
        geometry = [np.asarray(info[k]) for k in ("cylinders", "spheres", "boxes")]
        min_gaps, pixels, steps = [], [], 0
        while True:
            pixels.append(target_pixel_count(obs["image"], target_rgb))
            dt = float(obs["dt"][0]) or base.control_dt_s
            cmd: VelocityCommand = ctl.step(obs["image"], dt)
            labels.append(expert.act_from_info(info, dt).as_array())
            flown.append(cmd.as_array())
            obs, _, terminated, truncated, info = env.step(base.limits.to_normalized(base.limits.clip(cmd)))
            steps += 1
            gaps, points = obstacle_gaps(info["pos_w"], *geometry)
            min_gaps.append(float(gaps.min()) - drone_radius_m if len(gaps) else math.inf)
            if terminated or truncated:
                break
        row: dict = {"seed": seed, "termination": info["termination"], "steps": steps,
                     "closest_gap_m": round(min(min_gaps), 3)}
        if info["termination"] == "collision":
            k = int(np.argmin(gaps)) if len(gaps) else None
            row["hit"] = info.get("collided_with")
            if k is not None and row["hit"] not in ("ground", "target"):
                b = bearing_deg(info["pos_w"], float(info["yaw"]), points[k])
                row["bearing_deg"] = round(b, 1)
                row["in_view"] = bool(abs(b) <= half_fov_deg)
            row["expert_searching"] = expert.searching
            row["policy_last_s"] = np.round(np.mean(flown[-LAST_SECOND_STEPS:], axis=0), 2).tolist()
            row["expert_last_s"] = np.round(np.mean(labels[-LAST_SECOND_STEPS:], axis=0), 2).tolist()
        if info["termination"] == "timeout":
            px = np.asarray(pixels)
            row["frames_with_target"] = int((px > 0).sum())
            row["max_target_pixels"] = int(px.max())
        return row
    finally:
        env.close()


def summarize(rows: list[dict]) -> dict:
    """Counts over the failure rows of `replay`."""
    coll = [r for r in rows if r["termination"] == "collision"]
    touts = [r for r in rows if r["termination"] == "timeout"]
    side = [r for r in coll if "in_view" in r]
    return {
        "collisions": len(coll),
        "hit": dict(Counter(r.get("hit") for r in coll)),
        "collisions_out_of_view": sum(not r["in_view"] for r in side),
        "collisions_expert_searching": sum(bool(r.get("expert_searching")) for r in coll),
        "timeouts": len(touts),
        "timeouts_max_target_pixels_median": (
            float(np.median([r["max_target_pixels"] for r in touts])) if touts else None),
        "timeouts_target_at_most_3_pixels": sum(r["max_target_pixels"] <= 3 for r in touts),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policy", type=Path)
    ap.add_argument("--results", type=Path, help="results.json of `lnn-nav eval`: replay its failures")
    ap.add_argument("--family", default="forest")
    ap.add_argument("--split", default="unseen")
    ap.add_argument("--seeds", type=int, nargs="*", help="scenes to replay (instead of --results)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    family, split, seeds = args.family, args.split, args.seeds or []
    if args.results is not None:
        cond = json.loads(args.results.read_text())["conditions"][0]
        family, split = cond["condition"]["family"], cond["condition"]["split"]
        seeds = [e["seed"] for e in cond["episodes"] if e["termination"] != "success"]
    if not seeds:
        ap.error("nothing to replay: give --results with failures, or --seeds")
    policy = NavPolicy.load(args.policy)
    rows = []
    for seed in seeds:
        row = replay(policy, family, split, seed)
        rows.append(row)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    summary = summarize(rows)
    print(f"{family}/{split}: {summary}")
    print(json.dumps({"family": family, "split": split, "failures": rows, "summary": summary}))


if __name__ == "__main__":
    main()
