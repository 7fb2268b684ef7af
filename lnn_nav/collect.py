"""Expert demonstrations on disk (`lnn-nav collect`).

`collect(family, split, episodes, out_dir, ...)` flies the privileged expert on
the given scenes of a split, optionally with DART noise on the executed command,
in parallel worker processes (each with its own environment), and writes one
episode file per scene plus a manifest, in the format of `lnn_nav.data`.

Resuming: episode files are written atomically (temporary file, then rename),
so after a kill the directory holds complete episodes and, at worst, hidden
temporaries. Running the same collection again removes the temporaries, skips
the scenes whose episode file exists, flies the rest, and rewrites the manifest
from the files present: no duplicates, no partial files. A directory collected
with other settings (family, split, task, noise, expert and its version, scene
generator and family spec, camera) is refused, so one dataset never mixes two kinds of
data.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lnn_nav.data import (
    MANIFEST,
    episode_filename,
    episodes_on_disk,
    read_manifest,
    remove_partial_files,
    save_episode,
    write_manifest,
)
from lnn_nav.expert import BEHAVIOUR_VERSION, TASKS, ExpertConfig, Task
from lnn_nav.rollout import (
    NoiseConfig,
    SimTimeController,
    expert_for_env,
    make_env,
    policy_camera,
    run_episode,
)
from lnn_nav.sim.camera import CameraConfig

# the camera of every collection whose manifest does not name one
_LEGACY_CAMERA = {"width": 64, "height": 64, "vfov_rad": math.radians(60.0), "supersample": 1}


def _camera_identity(camera: CameraConfig) -> dict[str, Any]:
    """What of the camera decides the frames a policy learns from (JSON-comparable)."""
    return {"width": camera.width, "height": camera.height, "vfov_rad": float(camera.vfov_rad),
            "supersample": camera.supersample}


@dataclass(frozen=True)
class CollectSummary:
    """What a `collect` call did."""

    out_dir: Path
    requested: int
    """scenes asked for."""
    skipped: int
    """scenes already on disk (resumed)."""
    collected: int
    """scenes flown by this call."""
    removed_partial: int
    """temporary files of a killed earlier run, removed."""
    terminations: dict[str, int] = field(default_factory=dict)
    """termination counts of the episodes flown by this call."""
    steps: int = 0
    """frames recorded by this call."""


def _episode_seeds(episodes: int | Sequence[int]) -> list[int]:
    if isinstance(episodes, bool):
        raise ValueError(f"episodes={episodes!r}: expected a count > 0 or a list of scene indices")
    if isinstance(episodes, int):
        if episodes <= 0:
            raise ValueError(f"episodes={episodes}: expected a count > 0")
        return list(range(episodes))
    seeds = list(episodes)
    if not seeds:
        raise ValueError("episodes=[]: expected at least one scene index")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"scene index {s!r} in episodes: expected integers >= 0")
    if len(set(seeds)) != len(seeds):
        dup = sorted(s for s, n in Counter(seeds).items() if n > 1)
        raise ValueError(f"episodes lists scene indices more than once: {dup}")
    return seeds


# Worker processes keep one environment and one expert each, made once.
_WORKER: dict[str, Any] = {}


def _worker_init(task: Task, family: str, split: str, expert_cfg: dict[str, Any],
                 camera: dict[str, Any], learner_policy: str | None = None) -> None:
    from lnn_nav.sim.camera import CameraConfig

    # one BLAS/torch thread per worker: the workers themselves are the parallelism
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    env = make_env(task, family, split, camera=CameraConfig(**camera))
    _WORKER["env"] = env
    _WORKER["expert"] = expert_for_env(env, ExpertConfig.from_dict(expert_cfg))
    _WORKER["learner"] = None
    if learner_policy is not None:
        import torch

        from lnn_nav.models.policy import NavPolicy

        torch.set_num_threads(1)
        _WORKER["learner"] = SimTimeController(NavPolicy.load(learner_policy))


def _worker_run(job: tuple[int, dict[str, Any], str, float, int]) -> tuple[int, str, int]:
    seed, noise_dict, out_dir, beta, rng_stream = job
    noise = NoiseConfig.from_dict(noise_dict)
    ep = run_episode(_WORKER["env"], seed, _WORKER["expert"], noise=noise,
                     learner=_WORKER["learner"], beta=beta, rng_stream=rng_stream)
    save_episode(Path(out_dir), ep)
    return seed, ep.termination, len(ep)


def _worker_close() -> None:
    env = _WORKER.pop("env", None)
    if env is not None:
        env.close()
    _WORKER.clear()


def _scene_identity(family: str) -> dict[str, Any]:
    """What decides the scenes drawn: the generator's version and the family's full spec."""
    import hashlib
    import json

    from lnn_nav.sim.scenes import GENERATOR_VERSION, load_family

    spec = json.dumps(load_family(family).to_dict(), sort_keys=True).encode()
    return {"generator": GENERATOR_VERSION, "spec_sha256": hashlib.sha256(spec).hexdigest()}


def _check_same_settings(out_dir: Path, produced_by: dict[str, Any]) -> None:
    if not (out_dir / MANIFEST).is_file():
        return
    old = read_manifest(out_dir).get("produced_by", {})
    if not isinstance(old, dict):
        return
    keys = ("task", "family", "split", "noise", "expert", "learner")
    # read through the config classes, so a manifest from before a field existed
    # compares equal when the new field holds its default (the old behaviour)
    for key, config in (("noise", NoiseConfig), ("expert", ExpertConfig)):
        if isinstance(old.get(key), dict):
            try:
                old[key] = config.from_dict(old[key]).to_dict()
            except (TypeError, ValueError):
                pass  # settings this code no longer knows: the comparison below refuses them
    diff = [k for k in keys if k in old and old[k] != produced_by[k]]
    # a field of the camera that a manifest does not record (all of them, before the
    # camera was recorded) held the legacy camera's value
    old_camera = old.get("camera", {})
    old["camera"] = {**_LEGACY_CAMERA, **old_camera} if isinstance(old_camera, dict) else old_camera
    if old["camera"] != produced_by["camera"]:
        diff.append("camera")
    # a manifest from before these keys existed came from an older generator / expert
    diff += [k for k in ("scenes", "expert_version") if old.get(k) != produced_by[k]]
    if diff:
        detail = "; ".join(f"{k}: on disk {old[k]!r}, now {produced_by[k]!r}" for k in diff)
        raise ValueError(
            f"{out_dir} holds a collection with other settings ({detail}); "
            "use another --out directory"
        )


def collect(
    family: str,
    split: str,
    episodes: int | Sequence[int],
    out_dir: str | Path,
    *,
    noise: float | NoiseConfig = 0.0,
    workers: int = 1,
    task: Task = "fly",
    expert_config: ExpertConfig | None = None,
    learner_policy: str | Path | None = None,
    beta: float = 1.0,
    rng_stream: int = 0,
    camera: CameraConfig | None = None,
    progress: bool = True,
) -> CollectSummary:
    """Fly the expert on scenes of (family, split) and write the episodes to out_dir.

    episodes: a count n (scene indices 0..n-1 of the split) or a list of indices.
    noise: DART noise std as a fraction of the command limits, or a NoiseConfig.
    workers: processes, each with its own environment (1 = in this process).
    task: "fly" (FlyToTarget) or "follow" (FollowTarget).
    learner_policy: a saved NavPolicy flown (through PolicyController) with
        probability 1 - beta per step, while the expert labels every frame:
        the rollouts of a DAgger round. rng_stream separates their draws.
    camera: the onboard camera, None for the learner's (`policy_camera`) when a
        learner flies, else the environment's default. A learner must be given
        frames from the camera it was trained behind.
    Returns a summary; the manifest is rewritten even when interrupted.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r}: expected one of {TASKS}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}: expected an integer >= 1")
    noise_cfg = noise if isinstance(noise, NoiseConfig) else NoiseConfig(std=float(noise))
    expert_cfg = expert_config or ExpertConfig()
    seeds = _episode_seeds(episodes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    produced_by = {
        "tool": "lnn-nav collect",
        "task": task,
        "family": str(family),
        "split": str(split),
        "noise": noise_cfg.to_dict(),
        "expert": expert_cfg.to_dict(),
        "learner": None,
        "scenes": _scene_identity(family),
        "expert_version": BEHAVIOUR_VERSION,
    }
    learner_camera = None
    if learner_policy is not None:
        from lnn_nav.models.policy import NavPolicy, PolicyConfig

        info = NavPolicy.file_info(learner_policy)
        learner_camera = policy_camera(PolicyConfig.from_dict(info["config"]))
        if camera is not None and _camera_identity(camera) != _camera_identity(learner_camera):
            raise ValueError(
                f"camera={_camera_identity(camera)} but the learner {learner_policy} takes frames "
                f"of {_camera_identity(learner_camera)}: expected the learner's camera (or None)")
        produced_by["learner"] = {"policy": str(learner_policy), "beta": float(beta),
                                  "rng_stream": int(rng_stream),
                                  "weights_sha256": info.get("weights_sha256")}
    elif beta != 1.0:
        raise ValueError(f"beta={beta}: without a learner_policy the expert must fly (beta=1)")
    produced_by["camera"] = _camera_identity(camera or learner_camera or CameraConfig())
    _check_same_settings(out, produced_by)
    removed = remove_partial_files(out)
    present = {p.name for p in episodes_on_disk(out)}
    todo = [s for s in seeds if episode_filename(split, s) not in present]
    terminations: Counter[str] = Counter()
    steps = 0
    done = 0
    try:
        for seed, termination, n in _run_jobs(task, family, split, todo, noise_cfg, expert_cfg,
                                              produced_by["camera"], out, workers, progress,
                                              learner_policy, beta, rng_stream):
            terminations[termination] += 1
            steps += n
            done += 1
    finally:
        write_manifest(out, produced_by)
    return CollectSummary(out, len(seeds), len(seeds) - len(todo), done, removed,
                          dict(terminations), steps)


def _run_jobs(task: Task, family: str, split: str, seeds: list[int], noise: NoiseConfig,
              expert_cfg: ExpertConfig, camera: dict[str, Any], out: Path, workers: int,
              progress: bool, learner_policy: str | Path | None = None, beta: float = 1.0,
              rng_stream: int = 0) -> Iterator[tuple[int, str, int]]:
    from tqdm import tqdm

    learner = None if learner_policy is None else str(learner_policy)
    jobs = [(s, noise.to_dict(), str(out), float(beta), int(rng_stream)) for s in seeds]
    bar = tqdm(total=len(jobs), desc=f"collect {family}/{split}", unit="ep", disable=not progress)
    counts: Counter[str] = Counter()
    try:
        if not jobs:
            return
        if workers == 1:
            _worker_init(task, str(family), split, expert_cfg.to_dict(), camera, learner)
            try:
                for job in jobs:
                    result = _worker_run(job)
                    counts[result[1]] += 1
                    bar.set_postfix(counts, refresh=False)
                    bar.update()
                    yield result
            finally:
                _worker_close()
            return
        # spawn, not fork: PyBullet and torch state must not be copied into children
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(workers, len(jobs)), initializer=_worker_init,
                      initargs=(task, str(family), split, expert_cfg.to_dict(), camera, learner)) as pool:
            for result in pool.imap_unordered(_worker_run, jobs):
                counts[result[1]] += 1
                bar.set_postfix(counts, refresh=False)
                bar.update()
                yield result
    finally:
        bar.close()
