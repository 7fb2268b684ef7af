"""Closed-loop evaluation of a trained policy (`lnn-nav eval`).

`evaluate(policy_path, conditions, config, out_dir)` flies the policy on scenes
`first_seed .. first_seed + episodes - 1` of every condition, scores each
condition with `lnn_nav.metrics.summarize` and writes the report
(`lnn_nav.report`: results.json, a Markdown table, top-down trajectory plots,
an mp4 of a few episodes).

The policy is always flown by `lnn_nav.rollout.run_episode`, the one
closed-loop runner, through a `PolicyController` (the object an onboard loop
uses) whose watchdog clock is the simulated time (`SimTimeController`), so a
busy machine cannot change a result. The expert only labels; it never flies.

A condition (`Condition`) is a family and split plus optional changes that
the environment already knows how to make:

- image stress: the family's `sensor` section is replaced by fixed brightness,
  contrast, saturation and pixel-noise values (`ImageStress`), always stronger
  than the training augmentation (`lnn_nav.augment.AugmentConfig`), so a
  stress test measures generalisation, not training coverage;
- control-rate shift: the simulator's `control_hz` (frames and commands per
  second); the policy gets the true elapsed time per frame;
- frame drops: the family's `sensor.frame_drop_prob`: a lost frame means the
  last command is held and the next frame arrives with a longer dt;
- FollowTarget instead of FlyToTarget.

Sensor changes keep the family's name, so the scene generator draws exactly
the same layouts as the unchanged family (sensor values are drawn after the
layout): a stressed condition flies the same scenes as its `baseline`.

Determinism: an episode depends only on (condition, scene seed, policy); each
worker process runs torch on one thread, and the controller's clock is the
simulation's, so the same seeds give the same results whatever `workers` is.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing as mp
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lnn_nav.augment import AugmentConfig
from lnn_nav.metrics import OUTCOMES, EpisodeRecord, command_smoothness, path_length, summarize

TASKS = ("fly", "follow")
"""FlyToTarget, FollowTarget."""

GROUPS = ("in_distribution", "ood_family", "image_stress", "control_rate", "frame_drops", "follow")
"""What a condition tests. `ood_family`: a shipped out-of-distribution family
(appearance, clutter, range, dynamics, stress, faults) -- the pool behind the
head comparison's headline difference."""

PHYSICS_HZ = 240
"""Hz, the simulator's physics rate (`QuadSimConfig.physics_hz`); a control rate must divide it."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.%/+-]*$")


@dataclass(frozen=True)
class ImageStress:
    """Fixed photometric stress applied by the environment to every frame
    (`lnn_nav.sim.envs.stress_image`), in the order saturation, contrast,
    brightness, noise."""

    brightness: float = 0.0
    """additive brightness shift, fraction of full scale (255), in [-1, 1]."""
    contrast: float = 1.0
    """contrast factor about mid-grey (1 = unchanged), in [0, 5]."""
    saturation: float = 1.0
    """saturation factor (0 = grey, 1 = unchanged), in [0, 5]."""
    noise_std: float = 0.0
    """std of Gaussian pixel noise, 0-255 units, drawn afresh for every frame, in [0, 128]."""

    def __post_init__(self) -> None:
        for name, lo, hi in (("brightness", -1.0, 1.0), ("contrast", 0.0, 5.0),
                             ("saturation", 0.0, 5.0), ("noise_std", 0.0, 128.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                math.isfinite(v) and lo <= v <= hi
            ):
                raise ValueError(f"ImageStress.{name}={v!r}: expected a finite number in [{lo}, {hi}]")
            object.__setattr__(self, name, float(v))
        if self.is_identity:
            raise ValueError(
                "ImageStress() changes nothing: expected at least one of brightness != 0, "
                "contrast != 1, saturation != 1, noise_std > 0"
            )

    @property
    def is_identity(self) -> bool:
        return (self.brightness == 0.0 and self.contrast == 1.0 and self.saturation == 1.0
                and self.noise_std == 0.0)

    def check_stronger_than(self, augment: AugmentConfig) -> None:
        """ValueError unless every factor this stress changes lies beyond the largest
        change the training augmentation can make (so the test is out of distribution)."""
        checks = (
            ("brightness", abs(self.brightness), self.brightness != 0.0, augment.brightness,
             "|brightness|", "AugmentConfig.brightness"),
            ("contrast", abs(self.contrast - 1.0), self.contrast != 1.0, augment.contrast,
             "|contrast - 1|", "AugmentConfig.contrast"),
            ("saturation", abs(self.saturation - 1.0), self.saturation != 1.0, augment.saturation,
             "|saturation - 1|", "AugmentConfig.saturation"),
            ("noise_std", self.noise_std / 255.0, self.noise_std > 0.0, augment.noise_std,
             "noise_std / 255", "AugmentConfig.noise_std"),
        )
        for name, magnitude, active, train_max, what, aug_name in checks:
            if active and not magnitude > train_max:
                raise ValueError(
                    f"ImageStress.{name}={getattr(self, name)!r}: {what} = {magnitude:.4g} is within "
                    f"the training augmentation ({aug_name} = {train_max}); expected a stress "
                    "stronger than training"
                )

    def sensor_overrides(self) -> dict[str, list[float]]:
        """The family `sensor` keys that produce this stress (degenerate ranges: fixed values)."""
        return {
            "brightness": [self.brightness, self.brightness],
            "contrast": [self.contrast, self.contrast],
            "saturation": [self.saturation, self.saturation],
            "pixel_noise_std": [self.noise_std, self.noise_std],
        }

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageStress:
        known = {"brightness", "contrast", "saturation", "noise_std"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ImageStress keys {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class Condition:
    """One row of the evaluation table: where and how the policy is flown."""

    name: str
    """row label, unique within a run (letters, digits and `_ . % / + -`)."""
    family: str = "forest"
    """shipped family name (envs/NAME.yaml) or a path to a family file."""
    split: str = "unseen"
    """split of the family whose scenes are flown."""
    task: str = "fly"
    """"fly" (FlyToTarget) or "follow" (FollowTarget)."""
    group: str = "in_distribution"
    """what the condition tests, one of GROUPS."""
    control_hz: int = 30
    """Hz, frames and commands per second; must divide PHYSICS_HZ (240)."""
    image_stress: ImageStress | None = None
    """fixed image stress replacing the family's own, or None."""
    frame_drop_prob: float | None = None
    """probability that a frame is lost (command held, next dt longer), or None: the family's."""
    baseline: str | None = None
    """name of the condition flying the same scenes without this change (for the
    'vs baseline' column when both are in one run), or None."""
    description: str = ""
    """one line for the table's notes."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(
                f"Condition.name={self.name!r}: expected a non-empty label of letters, digits "
                "and _ . % / + -"
            )
        if self.task not in TASKS:
            raise ValueError(f"Condition.task={self.task!r}: expected one of {TASKS}")
        if self.group not in GROUPS:
            raise ValueError(f"Condition.group={self.group!r}: expected one of {GROUPS}")
        hz = self.control_hz
        if isinstance(hz, bool) or not isinstance(hz, int) or hz < 1 or PHYSICS_HZ % hz:
            raise ValueError(
                f"Condition.control_hz={hz!r}: expected an integer that divides the physics "
                f"rate {PHYSICS_HZ} Hz (e.g. 15, 30, 60)"
            )
        if self.image_stress is not None and not isinstance(self.image_stress, ImageStress):
            raise ValueError(f"Condition.image_stress={self.image_stress!r}: expected an ImageStress or None")
        p = self.frame_drop_prob
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float))
                              or not 0.0 <= p <= 0.9):
            raise ValueError(f"Condition.frame_drop_prob={p!r}: expected None or a number in [0, 0.9]")
        if self.baseline is not None and self.baseline == self.name:
            raise ValueError(f"Condition.baseline={self.baseline!r}: a condition cannot be its own baseline")
        # Fail at definition time, not in a worker an hour later: the family must load
        # and have the split.
        spec = self.family_spec()
        if self.split not in spec.splits:
            raise ValueError(
                f"Condition.split={self.split!r}: expected one of {sorted(spec.splits)} "
                f"(family {spec.name})"
            )

    def family_spec(self) -> Any:
        """The `FamilySpec` the environment is built with: the family, with its
        `sensor` section changed by `image_stress` and `frame_drop_prob` (same name,
        so the same scene layouts)."""
        from lnn_nav.sim.scenes import FamilySpec, load_family

        spec = load_family(self.family)
        if self.image_stress is None and self.frame_drop_prob is None:
            return spec
        d = spec.to_dict()
        if self.image_stress is not None:
            d["sensor"].update(self.image_stress.sensor_overrides())
        if self.frame_drop_prob is not None:
            d["sensor"]["frame_drop_prob"] = float(self.frame_drop_prob)
        return FamilySpec.from_dict(d, source=f"condition {self.name}")

    def env_config(self, time_limit_s: float | None, camera: Any = None) -> Any:
        """The task config: the simulator at `control_hz` behind `camera` (a
        CameraConfig, None for the default); `time_limit_s` None = the family's."""
        from lnn_nav.sim.camera import CameraConfig
        from lnn_nav.sim.envs import FlyToTargetConfig, FollowTargetConfig
        from lnn_nav.sim.quadsim import QuadSimConfig

        cls = FlyToTargetConfig if self.task == "fly" else FollowTargetConfig
        sim = QuadSimConfig(physics_hz=PHYSICS_HZ, control_hz=self.control_hz,
                            camera=camera or CameraConfig())
        return cls(sim=sim, time_limit_s=time_limit_s)

    def make_env(self, time_limit_s: float | None = None, camera: Any = None) -> Any:
        """A gymnasium environment for this condition (via `lnn_nav.rollout.make_env`),
        behind `camera` (None: the default camera)."""
        from lnn_nav.rollout import make_env

        return make_env(self.task, self.family_spec(), self.split,
                        config=self.env_config(time_limit_s, camera))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_stress"] = None if self.image_stress is None else self.image_stress.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Condition:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown Condition keys {sorted(unknown)}; expected some of {sorted(known)}")
        kw = dict(d)
        if kw.get("image_stress") is not None:
            kw["image_stress"] = ImageStress.from_dict(kw["image_stress"])
        return cls(**kw)


IMAGE_STRESS_LEVELS: dict[str, ImageStress] = {
    # Combined stress, mildest first. Each factor of the mildest already lies just
    # beyond the training augmentation (brightness 0.15, contrast and saturation
    # +-15%, noise 0.02 x 255 = 5.1); `suite_conditions` checks this.
    "stress-mild": ImageStress(brightness=-0.20, contrast=0.80, saturation=0.80, noise_std=8.0),
    "stress-medium": ImageStress(brightness=-0.30, contrast=0.65, saturation=0.60, noise_std=15.0),
    "stress-strong": ImageStress(brightness=-0.40, contrast=0.50, saturation=0.35, noise_std=25.0),
    # One factor at a time, at the medium strength: which change hurts.
    "stress-brighter": ImageStress(brightness=0.30),
    "stress-darker": ImageStress(brightness=-0.30),
    "stress-low-contrast": ImageStress(contrast=0.60),
    "stress-desaturated": ImageStress(saturation=0.40),
    "stress-noise": ImageStress(noise_std=15.0),
}
"""The suite's image-stress conditions (flown on the base family's scenes)."""

CONTROL_RATES_HZ = (15, 60)
"""The suite's control-rate shifts (training runs at 30 Hz)."""

FRAME_DROP_PROBS = (0.10, 0.30)
"""The suite's frame-drop probabilities."""


def suite_conditions(family: str = "forest", split: str = "unseen",
                     augment: AugmentConfig | None = None) -> list[Condition]:
    """Every condition of `--suite`, the training family's split first:

    1. `family/split` (in distribution, held-out scenes);
    2. every other shipped family on the same split (out of distribution);
    3. image stress (IMAGE_STRESS_LEVELS), 4. control rate 15 and 60 Hz,
    5. frame drops 10% and 30% -- all on the scenes of (1);
    6. FollowTarget on `family/split`.

    Raises ValueError if an image stress is not stronger than `augment` (default:
    the training default `AugmentConfig()`).
    """
    from lnn_nav.sim.scenes import shipped_families

    augment = augment if augment is not None else AugmentConfig()
    base = Condition(name=f"{family}/{split}", family=family, split=split,
                     description="training family, held-out scenes")
    conds = [base]
    for fam in shipped_families():
        if fam == Path(str(family)).stem:
            continue
        conds.append(Condition(name=f"{fam}/{split}", family=fam, split=split, group="ood_family",
                               description=f"shipped family {fam}"))
    for name, stress in IMAGE_STRESS_LEVELS.items():
        stress.check_stronger_than(augment)
        parts = []
        if stress.brightness:
            parts.append(f"brightness {stress.brightness:+.2f}")
        if stress.contrast != 1.0:
            parts.append(f"contrast x{stress.contrast:g}")
        if stress.saturation != 1.0:
            parts.append(f"saturation x{stress.saturation:g}")
        if stress.noise_std:
            parts.append(f"noise std {stress.noise_std:g}/255")
        conds.append(Condition(name=name, family=family, split=split, group="image_stress",
                               image_stress=stress, baseline=base.name,
                               description=", ".join(parts)))
    for hz in CONTROL_RATES_HZ:
        conds.append(Condition(name=f"rate-{hz}Hz", family=family, split=split,
                               group="control_rate", control_hz=hz, baseline=base.name,
                               description=f"policy run at {hz} Hz with the true dt"))
    for p in FRAME_DROP_PROBS:
        conds.append(Condition(name=f"drops-{round(100 * p)}%", family=family, split=split,
                               group="frame_drops", frame_drop_prob=p, baseline=base.name,
                               description=f"{round(100 * p)}% of frames lost (command held, dt grows)"))
    conds.append(Condition(name=f"follow/{family}/{split}", family=family, split=split,
                           task="follow", group="follow", description="FollowTarget, moving target"))
    return conds


@dataclass(frozen=True)
class EvalConfig:
    """How many episodes, where, and with what resources."""

    episodes: int = 100
    """episodes per condition (scene seeds first_seed .. first_seed + episodes - 1)."""
    first_seed: int = 0
    """first scene index of the split."""
    workers: int = 1
    """worker processes (1 = in this process); does not change any result."""
    time_limit_s: float | None = None
    """s, episode time limit; None: each family's own (FlyToTarget 30 s, FollowTarget 20 s)."""
    video_episodes: int = 3
    """episodes of the first condition recorded to the mp4 (0: no video)."""
    progress: bool = True
    """show a progress bar."""

    def __post_init__(self) -> None:
        for name, lo in (("episodes", 1), ("first_seed", 0), ("workers", 1), ("video_episodes", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"EvalConfig.{name}={v!r}: expected an integer >= {lo}")
        t = self.time_limit_s
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))
                              or not (math.isfinite(t) and t > 0)):
            raise ValueError(f"EvalConfig.time_limit_s={t!r}: expected None or a finite number of seconds > 0")
        if not isinstance(self.progress, bool):
            raise ValueError(f"EvalConfig.progress={self.progress!r}: expected true or false")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.episodes))


@dataclass(frozen=True)
class SceneOutline:
    """Top-down geometry of one scene, world ENU, m (for plots and video).

    circles: (N, 4) x, y, radius, kind (0 ground-standing: trunk/pole, 1 overhead:
        canopy or floating object); boxes: (K, 5) x, y, hx, hy, yaw (rad).
    """

    arena_half_m: float
    circles: np.ndarray
    boxes: np.ndarray
    start_pos_w: np.ndarray
    target_start_w: np.ndarray
    """(3,) m, the target where the episode began (it moves in FollowTarget)."""

    @classmethod
    def from_scene(cls, scene: Any) -> SceneOutline:
        from lnn_nav.sim.scenes import ROLE_POLE, ROLE_TRUNK

        cyl = np.asarray(scene.cylinders, float).reshape(-1, 5)
        ground = np.isin(np.asarray(scene.cylinder_role), (ROLE_TRUNK, ROLE_POLE))
        circles = [np.column_stack([cyl[:, 0], cyl[:, 1], cyl[:, 2], (~ground).astype(float)])]
        sph = np.asarray(scene.spheres, float).reshape(-1, 4)
        circles.append(np.column_stack([sph[:, 0], sph[:, 1], sph[:, 3], np.ones(len(sph))]))
        box = np.asarray(scene.boxes, float).reshape(-1, 7)
        path = getattr(scene, "target_path_w", None)
        target0 = np.asarray(path[0] if path is not None else scene.target_pos_w, float)
        return cls(
            arena_half_m=float(scene.arena_size_m) / 2.0,
            circles=np.concatenate(circles, axis=0),
            boxes=box[:, [0, 1, 3, 4, 6]].copy(),
            start_pos_w=np.asarray(scene.start_pos_w, float).copy(),
            target_start_w=target0.copy(),
        )


@dataclass(frozen=True)
class EpisodeResult:
    """One evaluated episode.

    pos_w: (T+1, 3) m world ENU, at each frame and after the last command.
    yaw: (T+1,) rad heading, same instants.
    commands: (T, 4) flown commands, body FLU, m/s and rad/s.
    dt: (T,) s, elapsed time before each command (what the policy was given).
    target_pos_w: (T+1, 3) m, the target at the same instants.
    frames: (T, H, W, 3) uint8 onboard frames if recorded, else None.
    """

    condition: str
    seed: int
    termination: str
    pos_w: np.ndarray
    yaw: np.ndarray
    commands: np.ndarray
    dt: np.ndarray
    target_pos_w: np.ndarray
    outline: SceneOutline
    controller_faults: dict[str, int] = field(default_factory=dict)
    frames: np.ndarray | None = None

    def record(self) -> EpisodeRecord:
        """The metrics view (`lnn_nav.metrics.EpisodeRecord`)."""
        return EpisodeRecord(pos_w=self.pos_w.astype(np.float64),
                             commands=self.commands.astype(np.float64),
                             dt=self.dt.astype(np.float64),
                             target_pos_w=self.target_pos_w[-1].astype(np.float64),
                             termination=self.termination)

    def trajectory_sha256(self) -> str:
        """Digest of positions, commands and dt: equal digests, equal flights."""
        h = hashlib.sha256()
        for a in (self.pos_w, self.commands, self.dt):
            h.update(np.ascontiguousarray(a, np.float32).tobytes())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        """Per-episode numbers for results.json (no arrays)."""
        rec = self.record()
        flown = path_length(rec.pos_w)
        straight = float(np.linalg.norm(rec.pos_w[-1] - rec.pos_w[0]))
        return {
            "seed": self.seed,
            "termination": self.termination,
            "steps": len(self.dt),
            "flight_time_s": round(float(np.sum(self.dt)), 6),
            "final_distance_m": round(float(np.linalg.norm(rec.pos_w[-1] - rec.target_pos_w)), 6),
            "path_length_m": round(flown, 6),
            "path_efficiency": (round(min(1.0, straight / flown), 6)
                                if self.termination == "success" and flown > 1e-9 else None),
            "command_smoothness": round(command_smoothness(rec.commands, rec.dt), 6),
            "controller_faults": {k: int(v) for k, v in sorted(self.controller_faults.items()) if v},
            "trajectory_sha256": self.trajectory_sha256(),
        }


@dataclass
class ConditionResult:
    """The episodes of one condition, in seed order."""

    condition: Condition
    episodes: list[EpisodeResult]

    def summary(self) -> dict[str, Any]:
        """`lnn_nav.metrics.summarize` of the episodes, plus outcome counts."""
        s = summarize([e.record() for e in self.episodes])
        s["counts"] = {k: sum(e.termination == k for e in self.episodes) for k in OUTCOMES}
        return s


@dataclass
class EvalRun:
    """Everything an evaluation produced (the report is written from this)."""

    policy_path: str
    policy_sha256: str
    config: EvalConfig
    results: list[ConditionResult]
    wall_time_s: float = 0.0


# ------------------------------------------------------------------ running
@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class _EpisodeRunner:
    """Holds the policy and one environment (rebuilt when the condition changes)."""

    def __init__(self, policy_path: str, time_limit_s: float | None) -> None:
        from lnn_nav.models.policy import NavPolicy
        from lnn_nav.rollout import SimTimeController, policy_camera

        policy = NavPolicy.load(policy_path)
        self.learner = SimTimeController(policy)
        self.camera = policy_camera(policy)
        self.time_limit_s = time_limit_s
        self._cond: Condition | None = None
        self._env: Any = None
        self._expert: Any = None

    def _env_for(self, cond: Condition) -> tuple[Any, Any]:
        from lnn_nav.rollout import expert_for_env

        if cond != self._cond:
            self.close()
            self._env = cond.make_env(self.time_limit_s, self.camera)
            self._expert = expert_for_env(self._env)
            self._cond = cond
        return self._env, self._expert

    def run(self, cond: Condition, seed: int, record_frames: bool) -> EpisodeResult:
        from lnn_nav.rollout import run_episode

        env, expert = self._env_for(cond)
        # the controller counts faults since construction: keep this episode's share
        before = dict(self.learner.controller.status().fault_counts)
        ep = run_episode(env, seed, expert, learner=self.learner, beta=0.0,
                         record_frames=record_frames)
        base = env.unwrapped
        # run_episode records the state before each command; the state after the
        # last one (where the drone ended) is the simulator's current state.
        state = base.sim.state
        scene = base.scene
        if cond.task == "follow":
            # the environment's own clock (s since reset) places the moving target
            target_end, _ = scene.target_at(base._t)
        else:
            target_end = scene.target_pos_w
        after = self.learner.controller.status().fault_counts
        counts = {k: v - before.get(k, 0) for k, v in after.items()}
        return EpisodeResult(
            condition=cond.name,
            seed=int(seed),
            termination=ep.termination,
            pos_w=np.vstack([ep.pos_w, np.asarray(state.pos_w, np.float32)[None]]),
            yaw=np.append(ep.yaw, np.float32(state.yaw)),
            commands=ep.executed,
            dt=ep.dt,
            target_pos_w=np.vstack([ep.target_pos_w, np.asarray(target_end, np.float32)[None]]),
            outline=SceneOutline.from_scene(scene),
            controller_faults=dict(counts),
            frames=ep.frames if record_frames else None,
        )

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env = self._expert = self._cond = None


_WORKER: dict[str, _EpisodeRunner] = {}


def _worker_init(policy_path: str, time_limit_s: float | None) -> None:
    import torch

    # one torch thread per process: the processes are the parallelism, and the
    # in-process path uses one thread too, so results do not depend on `workers`
    torch.set_num_threads(1)
    _WORKER["runner"] = _EpisodeRunner(policy_path, time_limit_s)


def _worker_run(job: tuple[int, Condition, int, bool]) -> tuple[int, EpisodeResult]:
    return _run_one(_WORKER["runner"], job)


def _check_conditions(conditions: Sequence[Condition]) -> list[Condition]:
    conds = list(conditions)
    if not conds:
        raise ValueError("conditions is empty: expected at least one Condition")
    for c in conds:
        if not isinstance(c, Condition):
            raise ValueError(f"conditions contains {c!r}: expected Condition objects")
    names = [c.name for c in conds]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"condition names {dup} appear more than once: expected unique names")
    # A baseline outside the run is allowed (a subset of the suite): that row then
    # simply has no 'vs baseline' entry.
    return conds


def run_conditions(policy_path: str | Path, conditions: Sequence[Condition],
                   config: EvalConfig | None = None) -> list[ConditionResult]:
    """Fly the policy file on every condition; episodes in seed order per condition.

    The first `config.video_episodes` episodes of the first condition keep their
    frames (for the video); all others keep only their trajectories.
    """
    from tqdm import tqdm

    config = config or EvalConfig()
    conds = _check_conditions(conditions)
    path = Path(policy_path)
    if not path.is_file():
        raise FileNotFoundError(f"policy file {path} does not exist")
    jobs: list[tuple[int, Condition, int, bool]] = []
    for ci, cond in enumerate(conds):
        for k, seed in enumerate(config.seeds):
            jobs.append((len(jobs), cond, seed, ci == 0 and k < config.video_episodes))
    slots: list[EpisodeResult | None] = [None] * len(jobs)
    desc = conds[0].name if len(conds) == 1 else f"{len(conds)} conditions"
    bar = tqdm(total=len(jobs), desc=f"eval {desc}", unit="ep", disable=not config.progress)
    counts = {k: 0 for k in OUTCOMES}

    def done(index: int, res: EpisodeResult) -> None:
        slots[index] = res
        counts[res.termination] += 1
        bar.set_postfix(counts, refresh=False)
        bar.update(1)

    try:
        workers = min(config.workers, len(jobs))
        if workers == 1:
            with _torch_threads(1):
                runner = _EpisodeRunner(str(path), config.time_limit_s)
                try:
                    for job in jobs:
                        done(*_run_one(runner, job))
                finally:
                    runner.close()
        else:
            # spawn, not fork: PyBullet and torch state must not be copied into children
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                     initargs=(str(path), config.time_limit_s)) as pool:
                # jobs are ordered by condition, so each worker mostly keeps its environment
                for index, res in pool.map(_worker_run, jobs, chunksize=1):
                    done(index, res)
    finally:
        bar.close()
    out: list[ConditionResult] = []
    per = len(config.seeds)
    for ci, cond in enumerate(conds):
        eps = slots[ci * per:(ci + 1) * per]
        out.append(ConditionResult(cond, [e for e in eps if e is not None]))
    return out


def _run_one(runner: _EpisodeRunner, job: tuple[int, Condition, int, bool]) -> tuple[int, EpisodeResult]:
    index, cond, seed, record = job
    return index, runner.run(cond, seed, record)


def evaluate(policy_path: str | Path, conditions: Sequence[Condition],
             config: EvalConfig | None = None, out_dir: str | Path | None = None) -> tuple[EvalRun, dict[str, Path]]:
    """Run `run_conditions` and, if `out_dir` is given, write the report there.

    Returns the run and the paths written (keys: results, table, plot, run_info,
    video if recorded, and `plots/<condition name>` for every condition; see
    `lnn_nav.report.write_report`).
    """
    import time

    from lnn_nav.models.policy import NavPolicy

    config = config or EvalConfig()
    conds = _check_conditions(conditions)
    path = Path(policy_path)
    if not path.is_file():
        raise FileNotFoundError(f"policy file {path} does not exist")
    # verifies the file (format, digest) before any worker starts
    info = NavPolicy.file_info(path)
    NavPolicy.load(path)
    t0 = time.perf_counter()
    results = run_conditions(path, conds, config)
    run = EvalRun(policy_path=str(policy_path), policy_sha256=str(info.get("weights_sha256", "")),
                  config=config, results=results, wall_time_s=time.perf_counter() - t0)
    written: dict[str, Path] = {}
    if out_dir is not None:
        from lnn_nav.report import write_report

        written = write_report(run, Path(out_dir))
    return run, written


def single_condition(family: str, split: str, task: str = "fly") -> Condition:
    """The one condition of a plain `lnn-nav eval` (group from whether the family
    is the training family `forest`)."""
    fam = Path(str(family)).stem
    if task == "follow":
        g = "follow"
    elif fam == "forest":
        g = "in_distribution"
    else:
        g = "ood_family"
    return Condition(name=f"{fam}/{split}" if task == "fly" else f"follow/{fam}/{split}",
                     family=family, split=split, task=task, group=g)


__all__ = [
    "CONTROL_RATES_HZ",
    "FRAME_DROP_PROBS",
    "GROUPS",
    "IMAGE_STRESS_LEVELS",
    "TASKS",
    "Condition",
    "ConditionResult",
    "EpisodeResult",
    "EvalConfig",
    "EvalRun",
    "ImageStress",
    "SceneOutline",
    "evaluate",
    "run_conditions",
    "single_condition",
    "suite_conditions",
]
