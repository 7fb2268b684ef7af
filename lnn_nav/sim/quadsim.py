"""`QuadSim`: one PyBullet world with a ground plane, the quadrotor, its flight
controller and its camera, stepped one control period at a time.

The scene code adds its bodies to `QuadSim.client` and moves or recolours
them between episodes; `reset` only moves the vehicle and clears the
controller, so the world is never rebuilt.

Per control period (`1/control_hz` s) `step` runs `physics_hz/control_hz`
physics steps; in each, the flight controller reads the state, computes motor
commands, the vehicle applies thrust, torque and drag, and PyBullet integrates.
The camera renders on demand (`render`), normally once per control period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pybullet as p

from lnn_nav.command import CommandLimits, VelocityCommand
from lnn_nav.sim.camera import Camera, CameraConfig, Lighting
from lnn_nav.sim.flight_controller import FlightController, FlightControllerGains
from lnn_nav.sim.vehicle import GRAVITY_MPS2, Quadrotor, QuadrotorParams, QuadState

_NESTED = {
    "vehicle": QuadrotorParams,
    "gains": FlightControllerGains,
    "limits": CommandLimits,
    "camera": CameraConfig,
}


@dataclass(frozen=True)
class QuadSimConfig:
    """Everything that fixes the simulator (not the scene)."""

    physics_hz: int = 240
    """Hz, physics (and flight-controller) rate."""
    control_hz: int = 30
    """Hz, rate of `step` calls, i.e. of velocity commands and camera frames;
    must divide `physics_hz`."""
    solver_iterations: int = 10
    """PyBullet constraint-solver iterations per physics step (contacts only;
    free flight does not use the solver)."""
    ground_half_size_m: float = 100.0
    """m, half the side of the visible ground square centred on the origin
    (the collision plane is infinite)."""
    ground_rgba: tuple[float, float, float, float] = (0.35, 0.45, 0.3, 1.0)
    """ground colour, RGBA in [0, 1] (scenes may recolour the ground body)."""
    drone_visual: bool = True
    """give the vehicle a visual shape (seen by other cameras, never by its own)."""
    vehicle: QuadrotorParams = field(default_factory=QuadrotorParams)
    """nominal vehicle; the flight controller is tuned for it."""
    gains: FlightControllerGains = field(default_factory=FlightControllerGains)
    """flight-controller gains."""
    limits: CommandLimits = field(default_factory=CommandLimits)
    """command limits the flight controller clips to."""
    camera: CameraConfig = field(default_factory=CameraConfig)
    """onboard camera."""

    def __post_init__(self) -> None:
        for name in ("physics_hz", "control_hz", "solver_iterations"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"QuadSimConfig.{name}={v!r}: expected an integer >= 1")
        if self.physics_hz % self.control_hz != 0:
            raise ValueError(
                f"QuadSimConfig: control_hz={self.control_hz} "
                f"must divide physics_hz={self.physics_hz}"
            )
        g = self.ground_half_size_m
        if not (isinstance(g, (int, float)) and math.isfinite(g) and g > 0):
            raise ValueError(
                f"QuadSimConfig.ground_half_size_m={g!r}: expected a finite number > 0"
            )
        rgba = self.ground_rgba
        if not (
            isinstance(rgba, tuple)
            and len(rgba) == 4
            and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in rgba)
        ):
            raise ValueError(f"QuadSimConfig.ground_rgba={rgba!r}: expected 4 numbers in [0, 1]")
        if not isinstance(self.drone_visual, bool):
            raise ValueError(
                f"QuadSimConfig.drone_visual={self.drone_visual!r}: expected true or false"
            )
        for name, cls in _NESTED.items():
            if not isinstance(getattr(self, name), cls):
                raise ValueError(
                    f"QuadSimConfig.{name}={getattr(self, name)!r}: expected a {cls.__name__}"
                )
        if self.drone_visual:
            # The vehicle must lie nearer than the camera's near clipping plane
            # (or behind it) so it never sees itself: bound the body by its
            # collision cylinder and take its largest depth along the axis.
            cam, veh = self.camera, self.vehicle
            ct, st = math.cos(cam.tilt_up_rad), math.sin(cam.tilt_up_rad)
            ox, _, oz = cam.offset_body_m
            reach = veh.radius_m * ct + 0.5 * veh.body_height_m * abs(st) - (ox * ct + oz * st)
            if reach >= cam.near_m:
                raise ValueError(
                    f"QuadSimConfig.camera.offset_body_m={cam.offset_body_m!r} "
                    f"(tilt_up_rad={cam.tilt_up_rad}) puts the vehicle (radius "
                    f"{veh.radius_m:.3f} m) in its own view; move the camera forward or "
                    "set drone_visual=False"
                )

    @property
    def substeps(self) -> int:
        """physics steps per control period."""
        return self.physics_hz // self.control_hz

    @property
    def physics_dt_s(self) -> float:
        return 1.0 / self.physics_hz

    @property
    def control_dt_s(self) -> float:
        return 1.0 / self.control_hz

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _NESTED:
                d[f.name] = v.to_dict()
            elif isinstance(v, tuple):
                d[f.name] = list(v)
            else:
                d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuadSimConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"unknown QuadSimConfig keys {sorted(unknown)}; expected some of {sorted(names)}"
            )
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k in _NESTED:
                if not isinstance(v, dict):
                    raise ValueError(f"QuadSimConfig.{k}={v!r}: expected a mapping")
                kw[k] = _NESTED[k].from_dict(v)
            elif isinstance(v, list):
                kw[k] = tuple(v)
            else:
                kw[k] = v
        return cls(**kw)


class QuadSim:
    """A PyBullet DIRECT world with ground, quadrotor, flight controller and camera.

    Attributes: `client` (PyBullet client id, for adding scene bodies),
    `ground_id`, `quad` (`Quadrotor`; `quad.body_id` is the vehicle body),
    `controller` (`FlightController`), `camera` (`Camera`), `lighting` and
    `background_rgb` (used by `render`; scenes may set them).
    """

    def __init__(self, config: QuadSimConfig | None = None) -> None:
        self.config = config if config is not None else QuadSimConfig()
        cfg = self.config
        self.client = p.connect(p.DIRECT)
        c = self.client
        p.setGravity(0.0, 0.0, -GRAVITY_MPS2, physicsClientId=c)
        p.setPhysicsEngineParameter(
            fixedTimeStep=cfg.physics_dt_s,
            numSubSteps=0,
            numSolverIterations=cfg.solver_iterations,
            deterministicOverlappingPairs=1,
            physicsClientId=c,
        )
        self.ground_id = self._build_ground()
        self.quad = Quadrotor(c, cfg.vehicle, visual=cfg.drone_visual)
        self.controller = FlightController(
            cfg.vehicle, cfg.gains, cfg.limits, dt_s=cfg.physics_dt_s
        )
        self.camera = Camera(cfg.camera)
        self.lighting: Lighting | None = None
        self.background_rgb: tuple[int, int, int] | None = None
        self._substeps = cfg.substeps
        self._dt = cfg.physics_dt_s
        self._contacts: set[int] = set()
        self._steps = 0  # control periods since the last reset
        self._closed = False
        self.reset((0.0, 0.0, 1.0), 0.0)

    def _build_ground(self) -> int:
        c = self.client
        col = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
        h = float(self.config.ground_half_size_m)
        # A thin box whose top face is the plane z = 0: the renderer draws it
        # with ordinary lighting, and scenes can recolour or texture it.
        vis = p.createVisualShape(
            p.GEOM_BOX,
            halfExtents=[h, h, 0.005],
            visualFramePosition=[0, 0, -0.005],
            rgbaColor=list(self.config.ground_rgba),
            physicsClientId=c,
        )
        return p.createMultiBody(0.0, col, vis, [0, 0, 0], physicsClientId=c)

    # ---- episode control ------------------------------------------------------
    def reset(
        self,
        pos_w: np.ndarray | tuple[float, float, float],
        yaw: float = 0.0,
        params: QuadrotorParams | None = None,
        *,
        vel_w: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> QuadState:
        """Put the vehicle level at `pos_w` (3,) m world ENU, heading `yaw` rad,
        moving at `vel_w` (3,) m/s, with motors at hover speed; clear the
        controller (it commands hover until the next `step`). `params` are this
        episode's physical parameters (None: the nominal `config.vehicle`);
        the controller keeps the nominal ones. Returns the new state."""
        self._check_open()
        self.quad.reset(
            pos_w, yaw, vel_w=vel_w, params=params if params is not None else self.config.vehicle
        )
        state = self.quad.read_state()
        self.controller.reset(state)
        self._contacts = set()
        self._steps = 0
        return state

    def step(
        self,
        cmd: VelocityCommand,
        wind_w: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        """Track `cmd` (body FLU, see `FlightController`) for one control period
        in wind `wind_w` (3,) m/s world ENU (the air velocity, held over the
        period). Raises ValueError for a non-finite command or wind."""
        self._check_open()
        wind = np.asarray(wind_w, dtype=np.float64).reshape(-1)
        if wind.shape != (3,) or not np.all(np.isfinite(wind)):
            raise ValueError(f"wind_w={wind_w!r}: expected 3 finite numbers (m/s, world ENU)")
        self.controller.set_command(cmd)
        if not wind.any():
            wind = None
        c = self.client
        quad, ctrl, dt, body = self.quad, self.controller, self._dt, self.quad.body_id
        contacts: set[int] = set()
        for _ in range(self._substeps):
            state = quad.read_state()
            quad.apply_motor_command(ctrl.update(state), state, dt, wind)
            p.stepSimulation(physicsClientId=c)
            # Collect contacts after every physics step: a brief touch inside
            # the period still counts as a collision.
            for pt in p.getContactPoints(bodyA=body, physicsClientId=c):
                contacts.add(pt[2])
        self._contacts = contacts
        self._steps += 1

    # ---- observation ----------------------------------------------------------
    @property
    def state(self) -> QuadState:
        """The vehicle state now."""
        self._check_open()
        return self.quad.read_state()

    @property
    def time_s(self) -> float:
        """s, simulated time since the last reset (control periods x period)."""
        return self._steps * self.config.control_dt_s

    @property
    def steps(self) -> int:
        """control periods stepped since the last reset."""
        return self._steps

    def render(self) -> np.ndarray:
        """uint8 (H, W, 3) RGB onboard camera image for the current pose."""
        self._check_open()
        pos, q = p.getBasePositionAndOrientation(self.quad.body_id, physicsClientId=self.client)
        R = np.array(p.getMatrixFromQuaternion(q)).reshape(3, 3)
        return self.camera.render(
            self.client,
            np.array(pos),
            R,
            lighting=self.lighting,
            background_rgb=self.background_rgb,
        )

    def contact_bodies(self) -> frozenset[int]:
        """Ids of the bodies the vehicle touched during the last `step` (the
        ground included: compare with `ground_id`)."""
        return frozenset(self._contacts)

    # ---- lifetime -------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("QuadSim is closed")

    def close(self) -> None:
        """Disconnect the PyBullet client (idempotent)."""
        if not self._closed:
            p.disconnect(physicsClientId=self.client)
            self._closed = True

    def __enter__(self) -> QuadSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A half-constructed object has no _closed; at interpreter shutdown
        # pybullet may already be torn down. Neither is worth an error here.
        if getattr(self, "_closed", True):
            return
        try:
            self.close()
        except (p.error, AttributeError, TypeError):
            pass
