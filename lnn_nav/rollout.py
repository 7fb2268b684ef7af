"""One closed-loop episode: the runner used by collection, DAgger and evaluation.

`run_episode(env, seed, expert, ...)` resets the environment on scene `seed`,
then at every frame
  1. asks the privileged expert for its command (the label),
  2. steps the learner (if any) on the camera frame through `PolicyController`
     -- on every frame, whoever flies, so that its recurrent state has seen the
     whole stream, exactly as it would on the vehicle,
  3. chooses who flies: the expert with probability `beta`, else the learner,
  4. optionally perturbs the expert's command with DART-style noise (the
     perturbed command is flown, the clean one is recorded as the label); the
     perturbed command goes through the expert's obstacle barrier filter
     (`Expert.make_safe`), so noise moves the drone off the expert's path but
     does not fly it into trees -- crashes would end the episode early and
     waste the demonstration (`NoiseConfig.barrier=False` lets it, to record
     the expert's way out of states near obstacles),
  5. sends the executed command to the environment (normalised by the limits),
and returns an `lnn_nav.data.Episode` (frames, dt, expert labels, executed
commands, pose, target, termination, seed).

Mixing (`mixing`): "step" draws the expert-or-learner choice afresh at every
step (DAgger's beta-mixture policy, per step); "episode" draws it once per
episode (the whole episode is flown by one of them).

Determinism: every random draw of this module (the mixing choice and the noise)
comes from `numpy.random.default_rng([seed, rng_stream])`, and the environment is
reset with `seed`, so the same arguments give the same episode bit for bit.

Frames and units: images uint8 RGB (H, W, 3); commands body FLU, m/s and rad/s;
positions world ENU, m; dt in s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np

from lnn_nav.command import CommandLimits, VelocityCommand
from lnn_nav.data import Episode
from lnn_nav.expert import Expert, ExpertConfig, Task, state_from_info

Mixing = Literal["step", "episode"]
MIXINGS = ("step", "episode")

ENV_IDS = {"fly": "lnn_nav/FlyToTarget-v0", "follow": "lnn_nav/FollowTarget-v0"}
"""The gymnasium id of each task."""


class Learner(Protocol):
    """What the runner needs from a learner (`lnn_nav.controller.PolicyController`)."""

    def reset(self) -> None: ...

    def step(self, image: np.ndarray, dt: float) -> VelocityCommand: ...


class SimTimeController:
    """A `PolicyController` whose watchdog clock is the simulation's time.

    The controller's stale-frame watchdog measures the gap between frames; in
    simulation that gap must be simulated seconds, not wall-clock seconds, or a
    busy machine would trip the watchdog and results would depend on load.
    """

    def __init__(self, policy: Any, **controller_kwargs: Any) -> None:
        from lnn_nav.controller import PolicyController

        self.time_s = 0.0
        self.controller = PolicyController(policy, clock=lambda: self.time_s, **controller_kwargs)

    def reset(self) -> None:
        self.time_s = 0.0
        self.controller.reset()

    def step(self, image: np.ndarray, dt: float) -> VelocityCommand:
        self.time_s += dt
        return self.controller.step(image, dt)


@dataclass(frozen=True)
class NoiseConfig:
    """DART-style noise on the executed expert command: a per-axis Ornstein-Uhlenbeck
    process (temporally correlated, so that it actually pushes the drone off the
    expert's path; white noise at 30 Hz is filtered away by the vehicle)."""

    std: float = 0.0
    """stationary standard deviation as a fraction of each axis' command limit
    (0 = no noise; 0.3 = 0.6 m/s on forward/left at the default 2 m/s limit)."""
    correlation_s: float = 0.5
    """s, correlation time of the noise."""
    axes: tuple[float, float, float, float] = (1.0, 1.0, 0.5, 1.0)
    """per-axis factor on `std` (forward, left, up, yaw_rate); up is halved so the
    altitude, which the camera sees poorly, wanders less."""
    fade_start_m: float = 2.5
    """m, FlyToTarget only: closer than this (horizontally) to the target the noise
    fades out linearly ..."""
    fade_end_m: float = 1.0
    """m, ... to nothing at this distance, so that the drone can settle in front of
    the target (success needs it slow for a while) instead of being shaken into it."""
    barrier: bool = True
    """Pass the perturbed command through the expert's barrier filter
    (`Expert.make_safe`), so the noise never closes in on an obstacle. False lets it:
    the demonstrations then hold states near obstacles, with the expert's labels
    for getting out of them (and some end in a collision)."""

    def __post_init__(self) -> None:
        for name in ("std", "correlation_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"NoiseConfig.{name}={v!r}: expected a finite number")
        if self.std < 0:
            raise ValueError(f"NoiseConfig.std={self.std!r}: expected a number >= 0")
        if self.correlation_s <= 0:
            raise ValueError(f"NoiseConfig.correlation_s={self.correlation_s!r}: expected > 0 s")
        for name in ("fade_start_m", "fade_end_m"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                math.isfinite(v) and v >= 0
            ):
                raise ValueError(f"NoiseConfig.{name}={v!r}: expected a finite distance >= 0 m")
        if self.fade_end_m > self.fade_start_m:
            raise ValueError(
                f"NoiseConfig.fade_end_m={self.fade_end_m!r} must not exceed "
                f"fade_start_m={self.fade_start_m!r} (m)"
            )
        axes = tuple(self.axes)
        if len(axes) != 4 or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and a >= 0
            for a in axes
        ):
            raise ValueError(f"NoiseConfig.axes={self.axes!r}: expected 4 finite numbers >= 0")
        object.__setattr__(self, "axes", tuple(float(a) for a in axes))
        if not isinstance(self.barrier, bool):
            raise ValueError(f"NoiseConfig.barrier={self.barrier!r}: expected True or False")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["axes"] = list(self.axes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NoiseConfig:
        known = {"std", "correlation_s", "axes", "fade_start_m", "fade_end_m", "barrier"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown NoiseConfig keys {sorted(unknown)}; known: {sorted(known)}")
        kw = dict(d)
        if "axes" in kw:
            kw["axes"] = tuple(kw["axes"])
        return cls(**kw)


class CommandNoise:
    """The noise process of one episode; `sample(dt)` -> (4,) body-FLU offsets."""

    def __init__(self, config: NoiseConfig, limits: CommandLimits, rng: np.random.Generator):
        self.config = config
        self._sigma = config.std * limits.scale() * np.asarray(config.axes)
        self._rng = rng
        # start from the stationary distribution, so the first steps are as noisy as the rest
        self._x = self._sigma * rng.standard_normal(4)

    def sample(self, dt: float, target_distance_m: float = math.inf) -> np.ndarray:
        """(4,) offsets for a step of dt s; `target_distance_m` fades them (see
        `NoiseConfig.fade_start_m`); pass inf for no fading."""
        a = math.exp(-dt / self.config.correlation_s)
        self._x = a * self._x + math.sqrt(1.0 - a * a) * self._sigma * self._rng.standard_normal(4)
        c = self.config
        span = c.fade_start_m - c.fade_end_m
        if span <= 0:
            fade = 1.0 if target_distance_m > c.fade_end_m else 0.0
        else:
            fade = min(max((target_distance_m - c.fade_end_m) / span, 0.0), 1.0)
        return fade * self._x


def make_env(task: Task, family: str, split: str, camera: Any = None, **kwargs: Any) -> Any:
    """The gymnasium environment of a task ("fly" or "follow") on a family and split.

    camera: a `CameraConfig` replacing the one of the task config (passed as
    `config=` or the task's default), e.g. `policy_camera(policy)`; None keeps it."""
    import dataclasses

    import gymnasium as gym

    import lnn_nav.sim  # noqa: F401  (registers the ids)
    from lnn_nav.sim.envs import FlyToTargetConfig, FollowTargetConfig

    if task not in ENV_IDS:
        raise ValueError(f"task={task!r}: expected one of {sorted(ENV_IDS)}")
    if camera is not None:
        cls = FlyToTargetConfig if task == "fly" else FollowTargetConfig
        config = kwargs.get("config")
        if config is None:
            config = cls()
        elif isinstance(config, dict):
            config = cls.from_dict(config)
        kwargs["config"] = dataclasses.replace(
            config, sim=dataclasses.replace(config.sim, camera=camera))
    return gym.make(ENV_IDS[task], family=family, split=split, **kwargs)


def policy_camera(policy: Any) -> Any:
    """The `CameraConfig` whose frames `policy` (a NavPolicy, or its PolicyConfig
    or EncoderConfig) takes: its image size and field of view on the default
    mounting, rendered with its supersampling."""
    from lnn_nav.sim.camera import CameraConfig

    enc = getattr(policy, "config", policy)
    enc = getattr(enc, "encoder", enc)
    h, w = enc.image_size
    return CameraConfig(width=w, height=h, vfov_rad=enc.vfov_rad, supersample=enc.supersample)


def env_task(env: Any) -> Task:
    """"fly" or "follow", from the environment's class."""
    name = type(env.unwrapped).__name__
    if "Follow" in name:
        return "follow"
    if "Fly" in name:
        return "fly"
    raise ValueError(f"environment {name}: expected a FlyToTarget or FollowTarget environment")


def expert_for_env(env: Any, config: ExpertConfig | None = None) -> Expert:
    """An expert matched to the environment: its command limits, the camera's field
    of view, the hold distance inside the success radius, the follow distance."""
    base = env.unwrapped
    cfg = config or ExpertConfig()
    changes: dict[str, float] = {}
    cam = getattr(getattr(getattr(base, "config", None), "sim", None), "camera", None)
    if cam is not None:
        changes["fov_half"] = float(cam.hfov_rad) / 2.0
        changes["view_margin"] = min(cfg.view_margin, 0.5 * changes["fov_half"])
    task_cfg = getattr(base, "config", None)
    radius = getattr(task_cfg, "success_radius_m", None)
    if radius is not None:
        # hold well inside the success radius, so small drift does not leave it
        changes["standoff"] = min(cfg.standoff, 0.7 * float(radius))
    follow = getattr(task_cfg, "follow_distance_m", None)
    if follow is not None:
        changes["follow_distance"] = float(follow)
    limits = getattr(base, "limits", None) or CommandLimits()
    d = cfg.to_dict()
    d.update(changes)
    d["cruise_speed"] = min(d["cruise_speed"], limits.max_horizontal)
    return Expert(ExpertConfig.from_dict(d), limits)


def run_episode(
    env: Any,
    seed: int,
    expert: Expert,
    *,
    learner: Learner | None = None,
    beta: float = 1.0,
    mixing: Mixing = "step",
    noise: NoiseConfig | None = None,
    rng_stream: int = 0,
    record_frames: bool = True,
) -> Episode:
    """Fly one episode on scene `seed` of the environment's split; see the module doc.

    env: a FlyToTarget or FollowTarget environment (gymnasium).
    seed: scene index in [0, split size); also seeds the environment and this
        episode's random draws.
    expert: labels every step (and flies with probability `beta`).
    learner: optional; stepped on every frame; flies with probability 1 - beta.
    beta: in [0, 1]; must be 1 without a learner.
    mixing: "step" or "episode" (how often the expert-or-learner choice is drawn).
    noise: DART noise added to the expert's command when the expert flies.
    rng_stream: picks another independent stream of noise/mixing draws for the
        same scene (e.g. the DAgger round), reproducibly.
    record_frames: False keeps frames of shape (T, 0, 0, 3) to save memory when
        only the outcome is wanted.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a scene index >= 0")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta={beta!r}: expected a number in [0, 1]")
    if learner is None and beta != 1.0:
        raise ValueError(f"beta={beta}: without a learner the expert must fly (beta=1)")
    if mixing not in MIXINGS:
        raise ValueError(f"mixing={mixing!r}: expected one of {MIXINGS}")
    seed = int(seed)
    base = env.unwrapped
    limits: CommandLimits = getattr(base, "limits", None) or expert.limits
    rng = np.random.default_rng([seed, int(rng_stream)])
    noise_proc = CommandNoise(noise, limits, rng) if noise is not None and noise.std > 0 else None

    obs, info = env.reset(seed=seed, options={"scene_index": seed})
    task = env_task(env)
    expert.reset_from_info(info, task)
    if learner is not None:
        learner.reset()
    expert_flies_episode = bool(rng.random() < beta)
    period = float(getattr(base, "control_dt_s", 1.0 / 30.0))

    frames, dts, labels, executed, pos, yaws, targets = [], [], [], [], [], [], []
    termination = "timeout"
    while True:
        image = obs["image"]
        dt = float(obs["dt"][0])
        # the first frame of an episode reports the control period; guard a 0 anyway
        step_dt = dt if dt > 0 else period
        label = expert.act_from_info(info, step_dt)
        learner_cmd = learner.step(image, step_dt) if learner is not None else None
        if mixing == "step":
            expert_flies = bool(rng.random() < beta)
        else:
            expert_flies = expert_flies_episode
        if expert_flies or learner_cmd is None:
            cmd = label.as_array()
            flown = limits.clip(VelocityCommand.from_array(cmd))
            if noise_proc is not None:
                d = (float(np.hypot(*(info["target_pos_w"][:2] - info["pos_w"][:2])))
                     if task == "fly" else math.inf)
                offset = noise_proc.sample(step_dt, d)
                perturbed = limits.clip(VelocityCommand.from_array(cmd + offset))
                flown = (limits.clip(expert.make_safe(perturbed, state_from_info(info)))
                         if noise_proc.config.barrier else perturbed)
        else:
            flown = limits.clip(learner_cmd)
        action = limits.to_normalized(flown)
        flown = limits.from_normalized(action)  # exactly what the environment flies
        frames.append(image if record_frames else image[:0, :0])
        dts.append(dt)
        labels.append(label.as_array())
        executed.append(flown.as_array())
        pos.append(info["pos_w"])
        yaws.append(info["yaw"])
        targets.append(info["target_pos_w"])
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            termination = info.get("termination") or ("timeout" if truncated else "collision")
            break

    return Episode(
        frames=np.stack(frames).astype(np.uint8, copy=False),
        dt=np.asarray(dts, np.float32),
        expert=np.asarray(labels, np.float32),
        executed=np.asarray(executed, np.float32),
        pos_w=np.asarray(pos, np.float32),
        yaw=np.asarray(yaws, np.float32),
        target_pos_w=np.asarray(targets, np.float32),
        termination=str(termination),
        seed=seed,
        family=str(info.get("family", getattr(getattr(base, "family", None), "name", ""))),
        split=str(info.get("split", getattr(base, "split", ""))),
    )
