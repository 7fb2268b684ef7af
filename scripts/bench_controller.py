"""Latency of one closed-loop control step (a benchmark, not a test).

Times `PolicyController.step` on one frame (encoder + head + limits and
watchdog), the encoder alone and the head alone, with torch on --threads
threads (default 1: an onboard computer gives the policy one core). Median
and 90th percentile over --steps steps after --warmup. Target: median step
<= 1 ms on this machine.

Frames: camera frames from the simulator when it is available (`--frames
sim`, the default), else seeded random pixels (`--frames random`); latency
does not depend on pixel content.

Ends with one JSON line that includes `step_us_median`.

    .venv/bin/python scripts/bench_controller.py [--policy P] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from lnn_nav.controller import PolicyController

TARGET_US = 1000.0


def _frames(kind: str, n: int, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, str]:
    if kind == "sim":
        try:
            from lnn_nav.bridges.camera_source import SimulatorSource
            from lnn_nav.command import VelocityCommand

            src = SimulatorSource(shape[:2], seed=seed,
                                  env_kwargs={"family": "forest", "split": "train"})
        except Exception as exc:  # noqa: BLE001 -- any simulator failure: fall back, say so
            print(f"simulator frames unavailable ({exc}); using random frames")
        else:
            out = []
            for _ in range(n):
                out.append(src.read().image)
                src.apply(VelocityCommand(1.0, 0.0, 0.0, 0.3))
            src.close()
            return np.stack(out), "simulator (forest/train)"
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), "random pixels"


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    us = np.array(samples_s) * 1e6
    return float(np.median(us)), float(np.percentile(us, 90))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", help="policy checkpoint; default: a fresh default policy")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--frames", choices=("sim", "random"), default="sim")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from lnn_nav.models.policy import NavPolicy, default_policy_config

    policy = NavPolicy.load(args.policy) if args.policy else NavPolicy(default_policy_config())
    policy.eval()
    ctrl = PolicyController(policy)
    if ctrl.image_shape is None:
        raise ValueError("the policy declares no image size")
    n_frames = 200
    frames, frames_kind = _frames(args.frames, n_frames, ctrl.image_shape, args.seed)
    dt = 1.0 / 30.0

    ctrl.reset()
    for i in range(args.warmup):
        ctrl.step(frames[i % n_frames], dt)
    step_s = []
    for i in range(args.steps):
        img = frames[i % n_frames]
        t0 = time.perf_counter()
        ctrl.step(img, dt)
        step_s.append(time.perf_counter() - t0)

    # parts, the way the policy runs them on one frame
    enc_s, head_s = [], []
    state = policy.init_state(1)
    dt_t = torch.full((1, 1), dt)
    with torch.inference_mode():
        for i in range(args.warmup + args.steps):
            img = torch.from_numpy(frames[i % n_frames]).unsqueeze(0)
            t0 = time.perf_counter()
            feats = policy.encoder(img)
            t1 = time.perf_counter()
            _, state = policy.head.step(feats, state, dt_t)
            t2 = time.perf_counter()
            if i >= args.warmup:
                enc_s.append(t1 - t0)
                head_s.append(t2 - t1)

    step_med, step_p90 = _percentiles(step_s)
    enc_med, _ = _percentiles(enc_s)
    head_med, _ = _percentiles(head_s)
    counts = policy.head.param_count()
    print(f"policy: {args.policy or 'fresh default'}; head {getattr(policy.head, 'kind', '?')} "
          f"({counts}); image {ctrl.image_shape}; frames: {frames_kind}; "
          f"torch {torch.__version__}, {args.threads} thread(s)")
    print(f"controller step (encoder + head + limits + watchdog): median {step_med:.1f} us, "
          f"p90 {step_p90:.1f} us over {args.steps} steps; target <= {TARGET_US:.0f} us: "
          f"{'met' if step_med <= TARGET_US else 'NOT met'}")
    print(f"  encoder alone: median {enc_med:.1f} us; head alone: median {head_med:.1f} us")
    print(json.dumps({
        "step_us_median": round(step_med, 1),
        "step_us_p90": round(step_p90, 1),
        "encoder_us_median": round(enc_med, 1),
        "head_us_median": round(head_med, 1),
        "threads": args.threads,
        "steps": args.steps,
        "frames": frames_kind,
        "target_us": TARGET_US,
        "target_met": step_med <= TARGET_US,
        "median_of_runs_note": f"median of {len(step_s)} single-frame steps",
        "stdev_us": round(statistics.pstdev(np.array(step_s) * 1e6), 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
