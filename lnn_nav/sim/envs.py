"""Gymnasium environments: fly to a target, follow a moving target.

Both wrap one `QuadSim` (PyBullet world, quadrotor, flight controller, camera)
and one `SceneWorld` (the obstacle bodies). A reset draws a scene of the
chosen family and split, replaces the previous scene's bodies with the new
scene's (shapes are cached; the client, ground and vehicle stay) and puts the
vehicle at the scene's start. Registered ids (on `import lnn_nav.sim`):
`lnn_nav/FlyToTarget-v0` and `lnn_nav/FollowTarget-v0`, e.g.::

    import gymnasium, lnn_nav.sim
    env = gymnasium.make("lnn_nav/FlyToTarget-v0", family="forest", split="train")

Keyword arguments: `family` (a shipped name or a path to a YAML file), `split`
(`train`, `val`, `unseen`, ...), `config` (a `FlyToTargetConfig` /
`FollowTargetConfig` or its dict), `render_mode` (None or "rgb_array").

Frames and units: world ENU (z up), body FLU; m, s, rad, m/s, rad/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lnn_nav.command import VelocityCommand
from lnn_nav.sim.camera import camera_pose
from lnn_nav.sim.quadsim import QuadSim, QuadSimConfig
from lnn_nav.sim.scenes import (
    FamilySpec,
    Scene,
    generate_scene,
    in_camera_fov,
    load_family,
    segment_blocked,
)
from lnn_nav.sim.world import SceneWorld, lighting_for

TERMINATIONS = ("success", "collision", "out_of_bounds", "timeout")
"""Values of info["termination"] on the last step of an episode (None before)."""

MAX_DT_S = 2.0
"""s, upper bound of the observation's dt (frame drops lengthen it)."""


class Geometry:
    """A read-only (N, k) float64 obstacle array as carried in `info`.

    Not an ndarray on purpose: gymnasium's vector envs stack ndarray infos into
    one (num_envs, ...) array, which fails when scenes have different obstacle
    counts; any other object is kept whole per env. `np.asarray(info["cylinders"])`
    gives the array (no copy); indexing, `len` and `shape` work as on it.
    """

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if dtype is not None and np.dtype(dtype) != self.array.dtype:
            return self.array.astype(dtype)
        return self.array.copy() if copy else self.array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: Any) -> Any:
        return self.array[index]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Geometry) and np.array_equal(self.array, other.array)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Geometry({self.array!r})"


def _check(owner: str, name: str, value: Any, lo: float, hi: float = math.inf,
           lo_open: bool = True) -> None:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (value > lo if lo_open else value >= lo) and value <= hi)
    if not ok:
        b = "(" if lo_open else "["
        raise ValueError(f"{owner}.{name}={value!r}: expected a finite number in {b}{lo}, {hi}]")


def _config_from_dict(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}; expected some of {sorted(names)}")
    kw = dict(d)
    if "sim" in kw and isinstance(kw["sim"], dict):
        kw["sim"] = QuadSimConfig.from_dict(kw["sim"])
    return cls(**kw)


@dataclass(frozen=True)
class FlyToTargetConfig:
    """Task settings of `FlyToTargetEnv` (the scene comes from the family)."""

    sim: QuadSimConfig = field(default_factory=QuadSimConfig)
    """simulator: physics and control rates, camera, command limits, nominal vehicle."""
    time_limit_s: float | None = None
    """s, truncation time; None: the family's `episode.time_limit_s`."""
    success_radius_m: float = 1.0
    """m, success needs the horizontal distance drone-target centre within this."""
    success_max_dz_m: float = 0.5
    """m, ... and the altitude difference within this."""
    success_yaw_tol_rad: float = 0.35
    """rad, ... and the bearing of the target within this of the heading (facing it)."""
    success_max_speed_mps: float = 0.3
    """m/s, ... and the speed below this (stopped)."""
    success_hold_s: float = 0.5
    """s, ... all held for this long without a break."""
    out_of_bounds_margin_m: float = 0.5
    """m, the episode ends when the drone is this far outside the arena square (or above the ceiling)."""
    sensor_faults: bool = True
    """apply the family's `sensor` section (image stress, noise, frame drops, delay)."""
    progress_reward: float = 1.0
    """reward per metre of progress toward the target."""
    terminal_reward: float = 10.0
    """reward on success (and minus it on collision or leaving the arena)."""

    def __post_init__(self) -> None:
        o = "FlyToTargetConfig"
        if not isinstance(self.sim, QuadSimConfig):
            raise ValueError(f"{o}.sim={self.sim!r}: expected a QuadSimConfig")
        if self.time_limit_s is not None:
            _check(o, "time_limit_s", self.time_limit_s, 0.0)
        _check(o, "success_radius_m", self.success_radius_m, 0.0)
        _check(o, "success_max_dz_m", self.success_max_dz_m, 0.0)
        _check(o, "success_yaw_tol_rad", self.success_yaw_tol_rad, 0.0, math.pi)
        _check(o, "success_max_speed_mps", self.success_max_speed_mps, 0.0)
        _check(o, "success_hold_s", self.success_hold_s, 0.0, lo_open=False)
        _check(o, "out_of_bounds_margin_m", self.out_of_bounds_margin_m, 0.0, lo_open=False)
        if not isinstance(self.sensor_faults, bool):
            raise ValueError(f"{o}.sensor_faults={self.sensor_faults!r}: expected true or false")
        _check(o, "progress_reward", self.progress_reward, 0.0, lo_open=False)
        _check(o, "terminal_reward", self.terminal_reward, 0.0, lo_open=False)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["sim"] = self.sim.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlyToTargetConfig:
        return _config_from_dict(cls, d)


@dataclass(frozen=True)
class FollowTargetConfig:
    """Task settings of `FollowTargetEnv`."""

    sim: QuadSimConfig = field(default_factory=QuadSimConfig)
    """simulator: physics and control rates, camera, command limits, nominal vehicle."""
    time_limit_s: float | None = None
    """s, episode length; None: the family's `episode.follow_time_s`."""
    follow_distance_m: float = 2.0
    """m, horizontal distance to keep from the target (it starts this far ahead of the drone)."""
    distance_tol_m: float = 0.75
    """m, a step is *tracked* when the horizontal distance is within follow_distance +- this ..."""
    grace_s: float = 2.0
    """s, ... steps before this time are not scored (the drone gets going) ..."""
    min_tracked_fraction: float = 0.8
    """... and the episode is a success if at least this fraction of scored steps were tracked."""
    out_of_bounds_margin_m: float = 0.5
    """m, the episode ends when the drone is this far outside the arena square (or above the ceiling)."""
    sensor_faults: bool = True
    """apply the family's `sensor` section (image stress, noise, frame drops, delay)."""
    terminal_reward: float = 10.0
    """reward lost on collision or leaving the arena (a tracked step earns 1 / steps per second)."""

    def __post_init__(self) -> None:
        o = "FollowTargetConfig"
        if not isinstance(self.sim, QuadSimConfig):
            raise ValueError(f"{o}.sim={self.sim!r}: expected a QuadSimConfig")
        if self.time_limit_s is not None:
            _check(o, "time_limit_s", self.time_limit_s, 0.0)
        _check(o, "follow_distance_m", self.follow_distance_m, 0.0)
        _check(o, "distance_tol_m", self.distance_tol_m, 0.0)
        _check(o, "grace_s", self.grace_s, 0.0, lo_open=False)
        _check(o, "min_tracked_fraction", self.min_tracked_fraction, 0.0, 1.0, lo_open=False)
        _check(o, "out_of_bounds_margin_m", self.out_of_bounds_margin_m, 0.0, lo_open=False)
        if not isinstance(self.sensor_faults, bool):
            raise ValueError(f"{o}.sensor_faults={self.sensor_faults!r}: expected true or false")
        _check(o, "terminal_reward", self.terminal_reward, 0.0, lo_open=False)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["sim"] = self.sim.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FollowTargetConfig:
        return _config_from_dict(cls, d)


def validate_action(action: Any) -> np.ndarray:
    """(4,) float64 normalised action, or ValueError naming the values."""
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"action={action!r}: expected 4 numbers in [-1, 1]") from None
    if a.shape != (4,):
        raise ValueError(f"action={action!r} has shape {a.shape}: expected shape (4,) "
                         f"(forward, left, up, yaw_rate in [-1, 1])")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action={a.tolist()!r} contains NaN or inf: expected 4 finite numbers in [-1, 1]")
    return a


def stress_image(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Apply a scene's image stress to a uint8 (H, W, 3) frame: brightness shift,
    contrast and saturation factors, then Gaussian pixel noise (std in 0-255 units)."""
    x = img.astype(np.float32)
    if scene.saturation != 1.0:
        grey = x.mean(axis=2, keepdims=True)
        x = grey + scene.saturation * (x - grey)
    if scene.contrast != 1.0:
        x = 127.5 + scene.contrast * (x - 127.5)
    if scene.brightness != 0.0:
        x = x + 255.0 * scene.brightness
    if scene.pixel_noise_std > 0.0:
        x = x + rng.normal(0.0, scene.pixel_noise_std, size=x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class _QuadEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Shared machinery of the two tasks (see the subclasses for the spaces tables)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    _moving_target = False

    def __init__(self, family: str | FamilySpec = "forest", split: str = "train",
                 config: Any = None, render_mode: str | None = None) -> None:
        self.family: FamilySpec = load_family(family)
        if split not in self.family.splits:
            raise ValueError(f"split={split!r}: expected one of {sorted(self.family.splits)} "
                             f"(family {self.family.name})")
        self.split = split
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: expected None or 'rgb_array'")
        self.render_mode = render_mode
        cfg = self.config
        cam = cfg.sim.camera
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (cam.height, cam.width, 3), np.uint8),
            "dt": spaces.Box(0.0, MAX_DT_S, (1,), np.float32),
        })
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.metadata = {**self.metadata, "render_fps": cfg.sim.control_hz}
        self.limits = cfg.sim.limits
        self.sim = QuadSim(cfg.sim)
        self.world = SceneWorld(self.sim.client, self.sim.ground_id)
        self.scene: Scene | None = None
        self._period = cfg.sim.control_dt_s
        lo, hi = self.family.splits[split]
        self._split_size = hi - lo
        self._frame: np.ndarray | None = None
        self._frames: list[np.ndarray] = []
        self._cull = True
        self._cull_half_angle = math.atan(math.hypot(math.tan(cam.hfov_rad / 2), math.tan(cam.vfov_rad / 2)))

    # ---- helpers used by both tasks ------------------------------------------
    @property
    def control_dt_s(self) -> float:
        return self._period

    def _time_limit(self) -> float:
        raise NotImplementedError

    def _draw_scene(self, options: dict[str, Any] | None) -> Scene:
        index = None if not options else options.get("scene_index")
        if index is None:
            index = int(self.np_random.integers(self._split_size))
        return generate_scene(self.family, self.split, int(index), moving_target=self._moving_target,
                              **self._scene_kwargs())

    def _scene_kwargs(self) -> dict[str, Any]:
        return {}

    def _reset_world(self, options: dict[str, Any] | None) -> None:
        sc = self._draw_scene(options)
        self.scene = sc
        self._geometry = {k: Geometry(v) for k, v in sc.geometry().items()}
        self.world.apply(sc)
        self.sim.lighting, self.sim.background_rgb = lighting_for(sc)
        params = None
        if sc.mass_scale != 1.0 or sc.kf_scale != 1.0 or sc.weak_motor >= 0:
            params = self.config.sim.vehicle.perturbed(
                mass_scale=sc.mass_scale, kf_scale=sc.kf_scale,
                weak_motor=sc.weak_motor if sc.weak_motor >= 0 else None,
                weak_motor_efficiency=sc.weak_motor_efficiency)
        self.sim.reset(sc.start_pos_w, sc.start_yaw, params)
        self._t = 0.0
        self._steps = 0
        self._faults = self.config.sensor_faults and self.family.sensor.active
        self._frames = []
        self._frame = self._capture()

    def _capture(self) -> np.ndarray:
        """The frame the policy gets now: rendered, stressed, delayed."""
        if self._cull:
            # hide obstacles outside the view cone: same image, cheaper render
            st = self.sim.state
            eye, R_wc = camera_pose(self.config.sim.camera, st.pos_w, st.R_wb)
            self.world.cull_to_view(eye, R_wc[:, 0], self._cull_half_angle)
        img = self.sim.render()
        if not self._faults:
            return img
        sc = self.scene
        img = stress_image(img, sc, self.np_random)
        if sc.delay_frames > 0:
            self._frames.append(img)
            if len(self._frames) > sc.delay_frames + 1:
                self._frames.pop(0)
            return self._frames[0]
        return img

    def _advance(self, cmd: VelocityCommand) -> tuple[float, frozenset[int]]:
        """Hold `cmd` until the next frame arrives (frame drops lengthen the wait).
        Returns the elapsed time s and the bodies touched."""
        sc = self.scene
        periods = 1
        if self._faults and sc.frame_drop_prob > 0:
            while periods <= sc.max_consecutive_drops and self.np_random.random() < sc.frame_drop_prob:
                periods += 1
        touched: set[int] = set()
        elapsed = 0.0
        for _ in range(periods):
            self._before_period()
            self.sim.step(cmd, sc.wind_at(self._t) if (sc.gusts.size or sc.wind_steady_w.any())
                          else (0.0, 0.0, 0.0))
            self._t += self._period
            elapsed += self._period
            touched |= self.sim.contact_bodies()
            if touched or self._t >= self._time_limit() - 1e-9:
                break
        return elapsed, frozenset(touched)

    def _before_period(self) -> None:
        """Hook run before each control period (the moving target moves here)."""

    def _out_of_bounds(self, pos: np.ndarray) -> bool:
        h = self.scene.arena_size_m / 2 + self.config.out_of_bounds_margin_m
        return bool(abs(pos[0]) > h or abs(pos[1]) > h or pos[2] > self.scene.ceiling_m)

    def _target_in_view(self, pos: np.ndarray, R_wb: np.ndarray, target: np.ndarray) -> bool:
        cam = self.config.sim.camera
        eye, R_wc = camera_pose(cam, pos, R_wb)
        if not in_camera_fov(eye, R_wc, target, cam.hfov_rad, cam.vfov_rad):
            return False
        return not segment_blocked(self.scene, eye, target)

    def _obs(self, dt: float) -> dict[str, np.ndarray]:
        # a delayed frame can be returned twice: observations must not share arrays
        img = self._frame if not self._frames else self._frame.copy()
        return {"image": img, "dt": np.array([dt], np.float32)}

    def _info(self, target_pos: np.ndarray, target_vel: np.ndarray) -> dict[str, Any]:
        st = self.sim.state
        sc = self.scene
        h = sc.arena_size_m / 2
        return {
            "pos_w": st.pos_w.copy(), "vel_w": st.vel_w.copy(), "yaw": float(st.yaw),
            "rpy": st.rpy, "ang_vel_body": st.ang_vel_body.copy(),
            "target_pos_w": np.asarray(target_pos, float).copy(),
            "target_vel_w": np.asarray(target_vel, float).copy(),
            "target_size_m": sc.target_size_m, "target_kind": sc.target_kind,
            # read-only wrappers, made once per episode (see `Geometry`)
            **self._geometry,
            "bounds": np.array([-h, -h, h, h]), "ceiling_m": sc.ceiling_m,
            "target_in_view": self._target_in_view(st.pos_w, st.R_wb, target_pos),
            "time_s": self._t, "wind_w": sc.wind_at(self._t),
            "family": sc.family, "split": sc.split, "scene_index": sc.index,
            "scene_seed": sc.scene_seed, "termination": None, "collided_with": None,
        }

    def render(self) -> np.ndarray | None:
        """rgb_array: the last onboard frame as the policy saw it, uint8 (H, W, 3)."""
        if self.render_mode != "rgb_array" or self._frame is None:
            return None
        return self._frame.copy()

    def close(self) -> None:
        self.sim.close()


class FlyToTargetEnv(_QuadEnv):
    """Fly to a target among obstacles and stop in front of it, facing it.

    ## Action Space

    `Box(-1, 1, (4,), float32)`, mapped linearly onto `config.sim.limits`
    (a `CommandLimits`) and sent to the flight controller as a
    `VelocityCommand` in the body FLU frame. NaN/inf or a shape other than (4,)
    raises ValueError; finite values outside [-1, 1] are clipped.

    | Num | Action    | Unit  | Frame    | -1 / +1 maps to          |
    |-----|-----------|-------|----------|--------------------------|
    | 0   | forward   | m/s   | body x   | -/+ max_horizontal (2)   |
    | 1   | left      | m/s   | body y   | -/+ max_horizontal (2)   |
    | 2   | up        | m/s   | world z  | -/+ max_vertical (1)     |
    | 3   | yaw_rate  | rad/s | about z  | -/+ max_yaw_rate (2), + turns left |

    ## Observation Space

    `Dict(image=Box(0, 255, (H, W, 3), uint8), dt=Box(0, 2, (1,), float32))`

    | Key   | Quantity                                   | Unit | Shape     | Bounds   |
    |-------|--------------------------------------------|------|-----------|----------|
    | image | onboard forward camera, RGB, row 0 on top  | -    | (H, W, 3) | 0 - 255  |
    | dt    | time since the previous frame              | s    | (1,)      | 0 - 2    |

    H x W is `config.sim.camera` (64 x 64 by default). dt is one control
    period (1/30 s by default), longer after lost frames (family `sensor`).
    After `reset`, dt is one control period.

    ## Info (privileged; for the expert and for metrics, never for the policy)

    | Key            | Quantity                                         | Unit, frame        |
    |----------------|--------------------------------------------------|--------------------|
    | pos_w          | (3,) vehicle position                            | m, world ENU       |
    | vel_w          | (3,) vehicle velocity                            | m/s, world ENU     |
    | yaw, rpy       | heading; (3,) roll, pitch, yaw                   | rad                |
    | ang_vel_body   | (3,) body rates                                  | rad/s, body FLU    |
    | target_pos_w   | (3,) target centre                               | m, world ENU       |
    | target_vel_w   | (3,) target velocity (zero here)                 | m/s, world ENU     |
    | cylinders      | (N, 5) x, y, radius, zmin, zmax (a `Geometry`)   | m, world ENU       |
    | spheres        | (M, 4) x, y, z, radius (a `Geometry`)            | m, world ENU       |
    | boxes          | (K, 7) x, y, z, hx, hy, hz, yaw (a `Geometry`)   | m, rad, world ENU  |
    | bounds         | (4,) xmin, ymin, xmax, ymax of the arena         | m                  |
    | target_in_view | target centre in the field of view, not occluded | bool               |
    | distance_m     | horizontal distance to the target centre         | m                  |
    | command        | (4,) the command applied (after clipping)        | m/s, rad/s, body FLU |
    | termination    | None, or on the last step one of success, collision, out_of_bounds, timeout | |
    | collided_with  | role of the body hit (trunk, canopy, ground, target, ...) or None | |

    ## Episode End

    - Termination, `success`: horizontal distance to the target centre <=
      `success_radius_m` (1.0), |altitude difference| <= `success_max_dz_m`
      (0.5), target bearing within `success_yaw_tol_rad` (0.35) of the heading,
      speed <= `success_max_speed_mps` (0.3), all held for `success_hold_s`
      (0.5 s).
    - Termination, `collision`: any contact (obstacle, ground, target).
    - Termination, `out_of_bounds`: more than `out_of_bounds_margin_m` outside
      the arena square, or above its ceiling.
    - Truncation, `timeout`: `time_limit_s` (family default: 30 s) elapsed.

    ## Rewards

    `progress_reward` x (metres of progress toward the target) per step;
    +`terminal_reward` on success, -`terminal_reward` on collision or leaving.
    """

    def __init__(self, family: str | FamilySpec = "forest", split: str = "train",
                 config: FlyToTargetConfig | dict[str, Any] | None = None,
                 render_mode: str | None = None) -> None:
        if isinstance(config, dict):
            config = FlyToTargetConfig.from_dict(config)
        self.config = config if config is not None else FlyToTargetConfig()
        if not isinstance(self.config, FlyToTargetConfig):
            raise ValueError(f"config={config!r}: expected a FlyToTargetConfig or its dict")
        super().__init__(family, split, self.config, render_mode)
        self._hold_steps = max(1, math.ceil(self.config.success_hold_s / self._period - 1e-9))

    def _time_limit(self) -> float:
        t = self.config.time_limit_s
        return t if t is not None else self.family.episode.time_limit_s

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Options: `scene_index` (int in [0, split size)) picks the scene; otherwise it is
        drawn from the env's generator (seeded by `seed`)."""
        super().reset(seed=seed)
        self._reset_world(options)
        self._held = 0
        info = self._fly_info(VelocityCommand.hover())
        self._dist = info["distance_m"]
        return self._obs(self._period), info

    def _fly_info(self, cmd: VelocityCommand) -> dict[str, Any]:
        sc = self.scene
        info = self._info(sc.target_pos_w, np.zeros(3))
        rel = sc.target_pos_w - info["pos_w"]
        info["distance_m"] = float(math.hypot(rel[0], rel[1]))
        info["command"] = cmd.as_array()
        return info

    def _at_goal(self, info: dict[str, Any]) -> bool:
        cfg = self.config
        rel = self.scene.target_pos_w - info["pos_w"]
        bearing_err = math.remainder(math.atan2(rel[1], rel[0]) - info["yaw"], 2 * math.pi)
        return (info["distance_m"] <= cfg.success_radius_m
                and abs(rel[2]) <= cfg.success_max_dz_m
                and abs(bearing_err) <= cfg.success_yaw_tol_rad
                and float(np.linalg.norm(info["vel_w"])) <= cfg.success_max_speed_mps)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self.scene is None:
            raise RuntimeError("step before reset")
        cmd = self.limits.from_normalized(validate_action(action))
        dt, touched = self._advance(cmd)
        self._frame = self._capture()
        self._steps += 1
        info = self._fly_info(cmd)
        cfg = self.config
        reward = cfg.progress_reward * (self._dist - info["distance_m"])
        self._dist = info["distance_m"]
        terminated = truncated = False
        if touched:
            terminated = True
            info["termination"] = "collision"
            info["collided_with"] = min(self.world.role_of(b) for b in touched)  # by name: ids vary
            reward -= cfg.terminal_reward
        elif self._out_of_bounds(info["pos_w"]):
            terminated = True
            info["termination"] = "out_of_bounds"
            reward -= cfg.terminal_reward
        else:
            self._held = self._held + 1 if self._at_goal(info) else 0
            if self._held >= self._hold_steps:
                terminated = True
                info["termination"] = "success"
                reward += cfg.terminal_reward
            elif self._t >= self._time_limit() - 1e-9:
                truncated = True
                info["termination"] = "timeout"
        return self._obs(dt), float(reward), terminated, truncated, info


class FollowTargetEnv(_QuadEnv):
    """Keep a moving target in view at a set distance.

    The target (the family's target shape and colour) moves along a smooth
    random path: constant speed (family `moving_target.speed_mps`), heading rate
    a smooth random signal bounded by `moving_target.turn_rate_rad_s`, altitude
    wandering in `moving_target.height_m`; obstacles keep clear of the path. It
    starts `follow_distance_m` straight ahead of the drone.

    ## Action Space / Observation Space

    As `FlyToTargetEnv` (4 normalised body-FLU velocity commands; image + dt).

    ## Info

    As `FlyToTargetEnv` (target_vel_w is the target's velocity), plus
    `tracked` (this step is tracked, see below) and `tracked_fraction` (over
    the scored steps so far).

    ## Episode End

    - A step is *tracked* when the target is in view (in the field of view, not
      occluded) and the horizontal distance is within `follow_distance_m` (2.0)
      +- `distance_tol_m` (0.75). Steps before `grace_s` (2 s) are not scored.
    - Termination, `collision` or `out_of_bounds` as in `FlyToTargetEnv`.
    - Truncation at `time_limit_s` (family default: 20 s); info["termination"]
      is then `success` if at least `min_tracked_fraction` (0.8) of the scored
      steps were tracked, otherwise `timeout`.

    ## Rewards

    1/control_hz per tracked step (1 per tracked second); -`terminal_reward`
    on collision or leaving the arena.
    """

    _moving_target = True

    def __init__(self, family: str | FamilySpec = "forest", split: str = "train",
                 config: FollowTargetConfig | dict[str, Any] | None = None,
                 render_mode: str | None = None) -> None:
        if isinstance(config, dict):
            config = FollowTargetConfig.from_dict(config)
        self.config = config if config is not None else FollowTargetConfig()
        if not isinstance(self.config, FollowTargetConfig):
            raise ValueError(f"config={config!r}: expected a FollowTargetConfig or its dict")
        super().__init__(family, split, self.config, render_mode)

    def _time_limit(self) -> float:
        t = self.config.time_limit_s
        return t if t is not None else self.family.episode.follow_time_s

    def _scene_kwargs(self) -> dict[str, Any]:
        return {"follow_distance_m": self.config.follow_distance_m,
                "path_duration_s": self._time_limit() + 1.0}

    def _before_period(self) -> None:
        pos, _ = self.scene.target_at(self._t + self._period)
        self.world.move_target(pos)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Options: `scene_index` picks the scene (see `FlyToTargetEnv.reset`)."""
        super().reset(seed=seed)
        self._reset_world(options)
        self._scored = 0
        self._tracked = 0
        info = self._follow_info(VelocityCommand.hover())
        return self._obs(self._period), info

    def _follow_info(self, cmd: VelocityCommand) -> dict[str, Any]:
        pos, vel = self.scene.target_at(self._t)
        info = self._info(pos, vel)
        rel = pos - info["pos_w"]
        info["distance_m"] = float(math.hypot(rel[0], rel[1]))
        info["command"] = cmd.as_array()
        cfg = self.config
        info["tracked"] = bool(info["target_in_view"]
                               and abs(info["distance_m"] - cfg.follow_distance_m) <= cfg.distance_tol_m)
        return info

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self.scene is None:
            raise RuntimeError("step before reset")
        cmd = self.limits.from_normalized(validate_action(action))
        dt, touched = self._advance(cmd)
        self._frame = self._capture()
        self._steps += 1
        info = self._follow_info(cmd)
        cfg = self.config
        reward = 0.0
        if self._t >= cfg.grace_s - 1e-9:
            self._scored += 1
            self._tracked += info["tracked"]
            reward = self._period if info["tracked"] else 0.0
        info["tracked_fraction"] = self._tracked / self._scored if self._scored else 0.0
        terminated = truncated = False
        if touched:
            terminated = True
            info["termination"] = "collision"
            info["collided_with"] = min(self.world.role_of(b) for b in touched)  # by name: ids vary
            reward -= cfg.terminal_reward
        elif self._out_of_bounds(info["pos_w"]):
            terminated = True
            info["termination"] = "out_of_bounds"
            reward -= cfg.terminal_reward
        elif self._t >= self._time_limit() - 1e-9:
            truncated = True
            ok = self._scored > 0 and info["tracked_fraction"] >= cfg.min_tracked_fraction
            info["termination"] = "success" if ok else "timeout"
        return self._obs(dt), float(reward), terminated, truncated, info
