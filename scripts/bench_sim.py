"""Benchmark of the simulated environments (not a test).

Measures, for `lnn_nav/FlyToTarget-v0` on the `forest` family with the 64x64
camera rendered at every control step and uniformly random actions:

- env steps/s in one process (episode resets included, as in data collection),
- reset time: warm (pooled bodies moved and recoloured) and cold (first scene
  in a fresh world, every body created), against a full rebuild,
- steps/s with 2 worker processes (gymnasium AsyncVectorEnv; total env steps),
- the cost split per env step: physics (PyBullet stepSimulation), flight
  controller, vehicle model (state read + motor forces), render, and the rest
  (environment Python: scene bookkeeping, info, action mapping).

Ends with one JSON line. Usage: `python scripts/bench_sim.py [--steps N]`.
The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pybullet as p

import lnn_nav.sim  # noqa: F401  (registers the ids)
from lnn_nav.sim import flight_controller, quadsim, vehicle
from lnn_nav.sim.envs import FlyToTargetEnv
from lnn_nav.sim.scenes import generate_scene
from lnn_nav.sim.world import SceneWorld


class Timers:
    """Accumulated CPU time of this process per named call site (CPU, not wall, time:
    the machine is shared; wrapping adds ~0.5 us a call)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        orig = getattr(owner, attr)
        total, calls = self.total, self.calls

        def timed(*a: Any, **k: Any) -> Any:
            t = time.process_time()
            try:
                return orig(*a, **k)
            finally:
                total[name] += time.process_time() - t
                calls[name] += 1

        setattr(owner, attr, timed)
        self._undo.append(lambda: setattr(owner, attr, orig))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def run_steps(env: FlyToTargetEnv, n: int, rng: np.random.Generator) -> tuple[float, int, float]:
    """Step `n` times with random actions, resetting at episode ends.
    Returns (wall seconds, resets, CPU seconds of this process)."""
    resets = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        if term or trunc:
            env.reset()
            resets += 1
    return time.perf_counter() - t0, resets, time.process_time() - c0


def bench_single(steps: int) -> dict[str, float]:
    env = FlyToTargetEnv("forest", "train")
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    run_steps(env, 300, rng)  # warm-up: fills the body pools
    seconds, resets, cpu = run_steps(env, steps, rng)
    # CPU time says what one free core would do when the machine is shared
    out = {"steps_per_s": steps / seconds, "steps_per_cpu_s": steps / cpu, "episodes": resets}

    # cost split on a second run with timers around each part
    timers = Timers()
    timers.wrap(quadsim.p, "stepSimulation", "physics")
    timers.wrap(flight_controller.FlightController, "update", "controller")
    timers.wrap(vehicle.Quadrotor, "read_state", "vehicle")
    timers.wrap(vehicle.Quadrotor, "apply_motor_command", "vehicle")
    timers.wrap(quadsim.QuadSim, "render", "render")
    timers.wrap(FlyToTargetEnv, "reset", "reset")
    renders: list[float] = []
    orig_render = quadsim.QuadSim.render

    def render_logged(self: quadsim.QuadSim) -> np.ndarray:
        t = time.process_time()
        img = orig_render(self)
        renders.append(time.process_time() - t)
        return img

    quadsim.QuadSim.render = render_logged  # type: ignore[method-assign]
    try:
        seconds, _, cpu = run_steps(env, steps, rng)
    finally:
        quadsim.QuadSim.render = orig_render  # type: ignore[method-assign]
        timers.restore()
    per_step = {k: 1e3 * v / steps for k, v in timers.total.items()}
    stepping = cpu / steps * 1e3 - per_step.get("reset", 0.0)
    out.update({
        "step_cpu_ms_with_timers": cpu / steps * 1e3,
        "physics_ms": per_step.get("physics", 0.0),
        "controller_ms": per_step.get("controller", 0.0),
        "vehicle_ms": per_step.get("vehicle", 0.0),
        "render_ms": float(np.median(renders)) * 1e3,
        "render_mean_ms": float(np.mean(renders)) * 1e3,
        "reset_share_ms": per_step.get("reset", 0.0),
    })
    out["python_ms"] = stepping - sum(per_step.get(k, 0.0) for k in ("physics", "controller", "vehicle")) \
        - float(np.sum(renders)) * 1e3 / steps

    # reset: warm (pools filled) over many scenes
    times = []
    c0 = time.process_time()
    for k in range(50):
        t = time.perf_counter()
        env.reset(seed=1000 + k)
        times.append(time.perf_counter() - t)
    out["reset_ms"] = float(np.median(times)) * 1e3
    out["reset_cpu_ms"] = (time.process_time() - c0) / 50 * 1e3
    t = time.process_time()
    for k in range(20):
        generate_scene("forest", "train", 12345 + k)
    out["scene_generation_ms"] = (time.process_time() - t) / 20 * 1e3
    env.close()

    # cold: first scene in a fresh world (every body created) = what a rebuild costs
    env = FlyToTargetEnv("forest", "train")
    t = time.process_time()
    env.reset(seed=99)
    out["reset_cold_ms"] = (time.process_time() - t) * 1e3
    env.close()
    client = p.connect(p.DIRECT)
    sc = generate_scene("forest", "train", 99)
    t = time.process_time()
    SceneWorld(client).apply(sc)
    out["rebuild_ms"] = (time.process_time() - t) * 1e3
    p.disconnect(client)
    return out


def bench_vector(steps: int, workers: int = 2) -> float:
    fns = [lambda: gym.make("lnn_nav/FlyToTarget-v0", family="forest", split="train",
                            disable_env_checker=True)] * workers
    venv = gym.vector.AsyncVectorEnv(fns)
    rng = np.random.default_rng(0)
    try:
        venv.reset(seed=list(range(workers)))
        for _ in range(100):  # warm-up
            venv.step(rng.uniform(-1, 1, (workers, 4)).astype(np.float32))
        n = steps // workers
        t = time.perf_counter()
        for _ in range(n):
            venv.step(rng.uniform(-1, 1, (workers, 4)).astype(np.float32))
        return n * workers / (time.perf_counter() - t)
    finally:
        venv.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000, help="env steps per measurement")
    args = ap.parse_args(argv)
    res = bench_single(args.steps)
    res["steps_per_s_2workers"] = bench_vector(args.steps, 2)
    res["load_avg_1min"] = os.getloadavg()[0]
    res["cpus"] = os.cpu_count()
    print(f"single process: {res['steps_per_s']:.0f} env steps/s wall, {res['steps_per_cpu_s']:.0f} per CPU "
          f"second (64x64 camera every step, random actions, {res['episodes']} resets included)")
    print(f"2 workers:      {res['steps_per_s_2workers']:.0f} env steps/s in total")
    print(f"reset: {res['reset_ms']:.2f} ms warm wall, {res['reset_cpu_ms']:.2f} ms CPU (scene generation "
          f"{res['scene_generation_ms']:.2f} ms CPU); cold (every body created) {res['reset_cold_ms']:.1f} ms CPU; "
          f"creating the scene's bodies from scratch {res['rebuild_ms']:.1f} ms CPU")
    print(f"per step [ms CPU]: physics {res['physics_ms']:.3f}  controller {res['controller_ms']:.3f}  "
          f"vehicle {res['vehicle_ms']:.3f}  render {res['render_mean_ms']:.3f} "
          f"(median {res['render_ms']:.3f})  python {res['python_ms']:.3f}  "
          f"resets {res['reset_share_ms']:.3f}")
    print(f"load average {res['load_avg_1min']:.1f} on {res['cpus']} CPUs")
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}))
    return res


if __name__ == "__main__":
    main()
