"""A Crazyflie 2.x-class quadrotor as a PyBullet rigid body driven by four motors.

PyBullet integrates the rigid body (and its contacts); this module supplies the
forces it does not know about: per-propeller thrust and drag torque from the
motor speeds, a first-order lag between commanded and actual motor speed, and
linear aerodynamic drag against the air (which moves with the wind).

Frames and units: world ENU (z up), body FLU (x forward, y left, z up); SI units,
except motor speeds, which are in rev/min (RPM) because the published Crazyflie
coefficients `kf` and `km` are per RPM squared.

Rotor layout (X configuration, body FLU, looking from above)::

        front (+x)
      3 (CW)   0 (CCW)
           \\ /
           / \\
      2 (CCW)  1 (CW)

Rotor i sits at `arm_m` from the centre along the diagonal given by
`ROTOR_DIRECTIONS_BODY[i]`. A propeller spinning counter-clockwise (seen from
above) pushes the body clockwise, so its drag torque on the body is
`-km * rpm^2` about body +z; `ROTOR_SPIN[i]` is +1 for CCW rotors, -1 for CW.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple

import numpy as np
import pybullet as p

GRAVITY_MPS2 = 9.81
"""m/s^2, magnitude of gravity (world -z); the simulator and the controller share it."""

_S = math.sqrt(0.5)
ROTOR_DIRECTIONS_BODY = np.array([[_S, -_S], [-_S, -_S], [-_S, _S], [_S, _S]])
"""(4, 2) unit vectors in the body x-y plane from the centre to each rotor:
front-right, back-right, back-left, front-left."""
ROTOR_SPIN = np.array([1.0, -1.0, 1.0, -1.0])
"""(4,) +1 for a counter-clockwise propeller (seen from above), -1 for clockwise."""

# Crazyflie 2.x motor limit: the published thrust-to-weight ratio of 2.25 at the
# nominal 27 g fixes the top speed; it is stored as a motor property (max_rpm) so
# that a heavier vehicle in the dynamics family really has less thrust margin.
_CF2X_MASS_KG = 0.027
_CF2X_KF = 3.16e-10
_CF2X_THRUST_TO_WEIGHT = 2.25
CF2X_MAX_RPM = math.sqrt(_CF2X_THRUST_TO_WEIGHT * _CF2X_MASS_KG * GRAVITY_MPS2 / (4.0 * _CF2X_KF))
"""rev/min, top motor speed of the Crazyflie 2.x model (about 21,714)."""


def _finite_positive(owner: str, name: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{owner}.{name}={value!r}: expected a finite number > 0")


@dataclass(frozen=True)
class QuadrotorParams:
    """Physical parameters of the quadrotor. Defaults: Crazyflie 2.x.

    The geometry fields (`arm_m`, `prop_radius_m`, `body_height_m`) fix the
    collision shape; the others may change between episodes (see `perturbed`).
    """

    mass_kg: float = _CF2X_MASS_KG
    """kg, total mass (the centre of mass is the body origin)."""
    arm_m: float = 0.0397
    """m, distance from the centre of mass to each rotor axis."""
    kf: float = _CF2X_KF
    """N/(rev/min)^2, thrust of one propeller = kf * rpm^2."""
    km: float = 7.94e-12
    """N m/(rev/min)^2, drag torque of one propeller on the body = km * rpm^2."""
    inertia_kgm2: tuple[float, float, float] = (1.4e-5, 1.4e-5, 2.17e-5)
    """kg m^2, principal moments of inertia about body x, y, z."""
    max_rpm: float = CF2X_MAX_RPM
    """rev/min, top motor speed (commands are clipped to [0, max_rpm])."""
    motor_time_constant_s: float = 0.02
    """s, time constant of the first-order lag from commanded to actual motor speed."""
    motor_efficiency: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    """fraction in (0, 1] of nominal thrust and drag torque each motor delivers
    at a given speed (a weak motor has < 1)."""
    drag_coeff_body: tuple[float, float, float] = (0.0056, 0.0056, 0.0062)
    """N/(m/s), linear drag along body x, y, z against the air-relative velocity.
    Values: the Crazyflie rotor-drag coefficients (about 9.2e-7 and 1.0e-6 N s/m
    per rad/s of summed rotor speed, Foerster 2015) evaluated at hover speed."""
    prop_radius_m: float = 0.0231
    """m, propeller radius (sets the collision footprint)."""
    body_height_m: float = 0.03
    """m, height of the collision cylinder."""

    def __post_init__(self) -> None:
        owner = "QuadrotorParams"
        for name in (
            "mass_kg",
            "arm_m",
            "kf",
            "km",
            "max_rpm",
            "motor_time_constant_s",
            "prop_radius_m",
            "body_height_m",
        ):
            _finite_positive(owner, name, getattr(self, name))
        for name, n, allow_zero in (
            ("inertia_kgm2", 3, False),
            ("drag_coeff_body", 3, True),
            ("motor_efficiency", 4, False),
        ):
            value = getattr(self, name)
            if not (isinstance(value, tuple) and len(value) == n):
                raise ValueError(f"{owner}.{name}={value!r}: expected a tuple of {n} numbers")
            for v in value:
                ok = (
                    isinstance(v, (int, float))
                    and math.isfinite(v)
                    and (v >= 0 if allow_zero else v > 0)
                )
                if not ok:
                    bound = ">= 0" if allow_zero else "> 0"
                    raise ValueError(
                        f"{owner}.{name}={value!r}: every entry must be finite and {bound}"
                    )
        if max(self.motor_efficiency) > 1.0:
            raise ValueError(
                f"{owner}.motor_efficiency={self.motor_efficiency!r}: entries must be in (0, 1]"
            )
        if self.thrust_to_weight <= 1.0:
            raise ValueError(
                f"{owner}: thrust-to-weight {self.thrust_to_weight:.3f} (mass_kg={self.mass_kg}, "
                f"kf={self.kf}, max_rpm={self.max_rpm}): expected > 1 so the vehicle can hover"
            )

    # ---- derived values -------------------------------------------------
    @property
    def weight_n(self) -> float:
        """N, m * g."""
        return self.mass_kg * GRAVITY_MPS2

    @property
    def hover_rpm(self) -> float:
        """rev/min, the speed at which four nominal motors carry the weight:
        sqrt(m g / (4 kf))."""
        return math.sqrt(self.weight_n / (4.0 * self.kf))

    @property
    def max_thrust_per_motor_n(self) -> float:
        """N, thrust of one nominal motor at `max_rpm`."""
        return self.kf * self.max_rpm**2

    @property
    def thrust_to_weight(self) -> float:
        """Ratio of the summed thrust of all motors at `max_rpm` (with their
        efficiencies) to the weight."""
        return self.kf * self.max_rpm**2 * sum(self.motor_efficiency) / self.weight_n

    @property
    def radius_m(self) -> float:
        """m, horizontal radius of the vehicle: arm plus propeller."""
        return self.arm_m + self.prop_radius_m

    @property
    def diameter_m(self) -> float:
        """m, overall horizontal size (propeller tip to propeller tip across)."""
        return 2.0 * self.radius_m

    def rotor_positions_body(self) -> np.ndarray:
        """(4, 3) m, rotor hub positions in body FLU (z = 0)."""
        xy = ROTOR_DIRECTIONS_BODY * self.arm_m
        return np.column_stack([xy, np.zeros(4)])

    def same_geometry(self, other: QuadrotorParams) -> bool:
        """True if `other` has the same collision shape (so the body can be reused)."""
        return (self.arm_m, self.prop_radius_m, self.body_height_m) == (
            other.arm_m,
            other.prop_radius_m,
            other.body_height_m,
        )

    # ---- dynamics family --------------------------------------------------
    def perturbed(
        self,
        *,
        mass_scale: float = 1.0,
        kf_scale: float = 1.0,
        motor_time_constant_s: float | None = None,
        weak_motor: int | None = None,
        weak_motor_efficiency: float = 1.0,
    ) -> QuadrotorParams:
        """A copy with the dynamics changed, for the dynamics scene family.

        mass_scale: factor on `mass_kg` (a payload at the centre of mass; the
            inertia is kept). kf_scale: factor on `kf` and `km` (propeller wear
            or air density). motor_time_constant_s: new motor lag, s (None keeps
            it). weak_motor: index 0-3 of a motor whose thrust and torque are
            multiplied by `weak_motor_efficiency` in (0, 1] (None: no weak motor).
        """
        for name, value in (("mass_scale", mass_scale), ("kf_scale", kf_scale)):
            _finite_positive("perturbed", name, value)
        if weak_motor is not None and weak_motor not in (0, 1, 2, 3):
            raise ValueError(f"weak_motor={weak_motor!r}: expected None or a motor index 0-3")
        if not (math.isfinite(weak_motor_efficiency) and 0 < weak_motor_efficiency <= 1):
            raise ValueError(
                f"weak_motor_efficiency={weak_motor_efficiency!r}: expected a number in (0, 1]"
            )
        eff = list(self.motor_efficiency)
        if weak_motor is not None:
            eff[weak_motor] *= weak_motor_efficiency
        return replace(
            self,
            mass_kg=self.mass_kg * mass_scale,
            kf=self.kf * kf_scale,
            km=self.km * kf_scale,
            motor_time_constant_s=(
                self.motor_time_constant_s
                if motor_time_constant_s is None
                else motor_time_constant_s
            ),
            motor_efficiency=tuple(float(e) for e in eff),
        )

    # ---- serialisation ----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuadrotorParams:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"unknown QuadrotorParams keys {sorted(unknown)}; expected some of {sorted(names)}"
            )
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, (list, tuple)):
                kw[k] = tuple(float(x) for x in v)
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"QuadrotorParams.{k}={v!r}: expected a number")
            else:
                kw[k] = float(v)
        return cls(**kw)


class QuadState(NamedTuple):
    """Kinematic state of the quadrotor at one instant."""

    pos_w: np.ndarray
    """(3,) m, centre of mass in world ENU."""
    quat_wxyz: np.ndarray
    """(4,) unit quaternion (w, x, y, z) rotating body FLU into world ENU."""
    R_wb: np.ndarray
    """(3, 3) rotation matrix body FLU -> world ENU (columns: body axes in world)."""
    vel_w: np.ndarray
    """(3,) m/s, velocity of the centre of mass in world ENU."""
    ang_vel_body: np.ndarray
    """(3,) rad/s, angular velocity in body FLU (roll, pitch, yaw rates)."""
    motor_rpm: np.ndarray
    """(4,) rev/min, actual motor speeds (after the motor lag)."""

    @property
    def yaw(self) -> float:
        """rad in (-pi, pi], heading of body x projected on the world x-y plane (0 = east)."""
        return math.atan2(self.R_wb[1, 0], self.R_wb[0, 0])

    @property
    def rpy(self) -> np.ndarray:
        """(3,) rad, roll, pitch, yaw (Z-Y-X intrinsic Euler angles of R_wb)."""
        R = self.R_wb
        pitch = math.asin(max(-1.0, min(1.0, -R[2, 0])))
        return np.array([math.atan2(R[2, 1], R[2, 2]), pitch, math.atan2(R[1, 0], R[0, 0])])

    @property
    def vel_body(self) -> np.ndarray:
        """(3,) m/s, velocity expressed in body FLU."""
        return self.R_wb.T @ self.vel_w


def yaw_to_quat_xyzw(yaw_rad: float) -> tuple[float, float, float, float]:
    """PyBullet quaternion (x, y, z, w) of a level attitude with heading `yaw_rad`."""
    return (0.0, 0.0, math.sin(0.5 * yaw_rad), math.cos(0.5 * yaw_rad))


class Quadrotor:
    """The vehicle body in a PyBullet client, with motors and drag.

    Per physics step the owner calls, in order: `read_state()`, then
    `apply_motor_command(rpm_cmd, state, dt_s, wind_w)`, then
    `pybullet.stepSimulation`. PyBullet clears external forces after every
    step, which is why they are applied each time.

    The body is built programmatically (a cylinder for collisions; a cross of
    arms and four rotor discs for looks when `visual` is True). Its mass and
    inertia are set explicitly, and PyBullet's default velocity damping is
    switched off because drag is modelled here.
    """

    def __init__(
        self, client: int, params: QuadrotorParams | None = None, *, visual: bool = True
    ) -> None:
        self.client = int(client)
        self.visual = bool(visual)
        self._params = params if params is not None else QuadrotorParams()
        self.body_id = self._build_body(self._params)
        self._set_dynamics(self._params)
        self._motor_rpm = np.full(4, self._params.hover_rpm)
        self._cache_params(self._params)

    # ---- construction -----------------------------------------------------
    def _build_body(self, prm: QuadrotorParams) -> int:
        c = self.client
        col = p.createCollisionShape(
            p.GEOM_CYLINDER, radius=prm.radius_m, height=prm.body_height_m, physicsClientId=c
        )
        vis = -1
        if self.visual:
            # Centre plate, two diagonal arms and four thin rotor discs.
            arm_len = 2.0 * prm.arm_m
            yaw_diag = (math.pi / 4.0, -math.pi / 4.0)
            shapes = [p.GEOM_BOX] + [p.GEOM_BOX] * 2 + [p.GEOM_CYLINDER] * 4
            half = [[0.015, 0.015, 0.006]] + [[arm_len / 2, 0.003, 0.003]] * 2 + [[0, 0, 0]] * 4
            radii = [0.0, 0.0, 0.0] + [prm.prop_radius_m] * 4
            lengths = [0.0, 0.0, 0.0] + [0.002] * 4
            pos = [[0, 0, 0], [0, 0, 0], [0, 0, 0]] + [
                [float(x), float(y), 0.008] for x, y, _ in prm.rotor_positions_body()
            ]
            orn = (
                [[0, 0, 0, 1]] + [list(yaw_to_quat_xyzw(a)) for a in yaw_diag] + [[0, 0, 0, 1]] * 4
            )
            colours = [[0.15, 0.15, 0.15, 1]] * 3 + [
                [0.8, 0.1, 0.1, 1],
                [0.2, 0.2, 0.2, 1],
                [0.2, 0.2, 0.2, 1],
                [0.8, 0.1, 0.1, 1],
            ]
            vis = p.createVisualShapeArray(
                shapeTypes=shapes,
                halfExtents=half,
                radii=radii,
                lengths=lengths,
                visualFramePositions=pos,
                visualFrameOrientations=orn,
                rgbaColors=colours,
                physicsClientId=c,
            )
        return p.createMultiBody(
            baseMass=prm.mass_kg,
            baseCollisionShapeIndex=col,
            baseVisualShapeIndex=vis,
            basePosition=[0, 0, 1],
            physicsClientId=c,
        )

    def _set_dynamics(self, prm: QuadrotorParams) -> None:
        p.changeDynamics(
            self.body_id,
            -1,
            mass=prm.mass_kg,
            localInertiaDiagonal=list(prm.inertia_kgm2),
            linearDamping=0.0,
            angularDamping=0.0,
            physicsClientId=self.client,
        )

    def _cache_params(self, prm: QuadrotorParams) -> None:
        # Per-step constants as Python floats: the hot path handles 3- and
        # 4-vectors, for which plain float arithmetic beats numpy calls.
        eff = prm.motor_efficiency
        self._thrust_gain = [prm.kf * e for e in eff]  # (4,) N/rpm^2
        xy = prm.rotor_positions_body()[:, :2].tolist()
        # body torque = rows @ (rpm^2): roll = sum(y_i f_i), pitch = -sum(x_i f_i),
        # yaw = -sum(spin_i km eff_i rpm_i^2)
        self._torque_rows = [
            [y * kt for (x, y), kt in zip(xy, self._thrust_gain)],
            [-x * kt for (x, y), kt in zip(xy, self._thrust_gain)],
            [-s * prm.km * e for s, e in zip(ROTOR_SPIN.tolist(), eff)],
        ]
        self._drag = prm.drag_coeff_body
        self._tau = prm.motor_time_constant_s
        self._max_rpm = prm.max_rpm
        self._lag_dt = -1.0  # dt for which _lag_alpha was computed
        self._lag_alpha = 0.0

    # ---- public API ---------------------------------------------------------
    @property
    def params(self) -> QuadrotorParams:
        return self._params

    @property
    def motor_rpm(self) -> np.ndarray:
        """(4,) rev/min, actual motor speeds (a copy)."""
        return self._motor_rpm.copy()

    def reset(
        self,
        pos_w: np.ndarray | tuple[float, float, float],
        yaw_rad: float = 0.0,
        *,
        vel_w: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0),
        params: QuadrotorParams | None = None,
    ) -> None:
        """Place the vehicle level at `pos_w` (3,) m world ENU with heading
        `yaw_rad`, velocity `vel_w` (3,) m/s world, no rotation, and motors at
        hover speed. `params`, if given, replaces the physical parameters; the
        body is rebuilt only if its geometry changed (then `body_id` changes)."""
        pos = np.asarray(pos_w, dtype=np.float64).reshape(-1)
        vel = np.asarray(vel_w, dtype=np.float64).reshape(-1)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise ValueError(f"pos_w={pos_w!r}: expected 3 finite numbers (m, world ENU)")
        if vel.shape != (3,) or not np.all(np.isfinite(vel)):
            raise ValueError(f"vel_w={vel_w!r}: expected 3 finite numbers (m/s, world ENU)")
        if not math.isfinite(yaw_rad):
            raise ValueError(f"yaw_rad={yaw_rad!r}: expected a finite angle in rad")
        if params is not None and params != self._params:
            if not params.same_geometry(self._params):
                p.removeBody(self.body_id, physicsClientId=self.client)
                self.body_id = self._build_body(params)
            self._set_dynamics(params)
            self._params = params
            self._cache_params(params)
        p.resetBasePositionAndOrientation(
            self.body_id, pos.tolist(), yaw_to_quat_xyzw(yaw_rad), physicsClientId=self.client
        )
        p.resetBaseVelocity(
            self.body_id, vel.tolist(), [0.0, 0.0, 0.0], physicsClientId=self.client
        )
        self._motor_rpm = np.full(4, self._params.hover_rpm)

    def read_state(self) -> QuadState:
        """The current state, read from PyBullet."""
        c = self.client
        pos, q = p.getBasePositionAndOrientation(self.body_id, physicsClientId=c)
        vel, ang_w = p.getBaseVelocity(self.body_id, physicsClientId=c)
        R = np.array(p.getMatrixFromQuaternion(q)).reshape(3, 3)
        return QuadState(
            pos_w=np.array(pos),
            quat_wxyz=np.array((q[3], q[0], q[1], q[2])),
            R_wb=R,
            vel_w=np.array(vel),
            ang_vel_body=R.T @ np.array(ang_w),
            motor_rpm=self._motor_rpm.copy(),
        )

    def apply_motor_command(
        self,
        rpm_cmd: np.ndarray | list[float],
        state: QuadState,
        dt_s: float,
        wind_w: np.ndarray | None = None,
    ) -> None:
        """Advance the motors by `dt_s` s towards `rpm_cmd` (4,) rev/min and apply
        the resulting thrust, torque and drag for the coming physics step.

        The lag is integrated exactly for a command held over the step
        (rpm += (cmd - rpm) * (1 - exp(-dt/tau))), so it is stable for any dt.
        `state` must be this step's `read_state()`; `wind_w` (3,) m/s world ENU
        is the air velocity that drag acts against (None: still air).
        """
        if dt_s != self._lag_dt:
            self._lag_dt = dt_s
            self._lag_alpha = 1.0 - math.exp(-dt_s / self._tau)
        alpha, top = self._lag_alpha, self._max_rpm
        cmd = rpm_cmd.tolist() if isinstance(rpm_cmd, np.ndarray) else [float(x) for x in rpm_cmd]
        rpm = [
            r + alpha * (min(max(c, 0.0), top) - r) for r, c in zip(self._motor_rpm.tolist(), cmd)
        ]
        self._motor_rpm = np.array(rpm)
        rpm_sq = [r * r for r in rpm]
        (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = state.R_wb.tolist()
        vx, vy, vz = state.vel_w.tolist()
        if wind_w is not None:
            wx, wy, wz = (float(x) for x in wind_w)
            vx, vy, vz = vx - wx, vy - wy, vz - wz
        cx, cy, cz = self._drag
        # drag in body axes from the air-relative velocity (R^T v)
        fbx = -cx * (r00 * vx + r10 * vy + r20 * vz)
        fby = -cy * (r01 * vx + r11 * vy + r21 * vz)
        fbz = -cz * (r02 * vx + r12 * vy + r22 * vz)
        fbz += sum(k * w for k, w in zip(self._thrust_gain, rpm_sq))
        tb = [sum(k * w for k, w in zip(row, rpm_sq)) for row in self._torque_rows]
        force_w = [
            r00 * fbx + r01 * fby + r02 * fbz,
            r10 * fbx + r11 * fby + r12 * fbz,
            r20 * fbx + r21 * fby + r22 * fbz,
        ]
        torque_w = [
            r00 * tb[0] + r01 * tb[1] + r02 * tb[2],
            r10 * tb[0] + r11 * tb[1] + r12 * tb[2],
            r20 * tb[0] + r21 * tb[1] + r22 * tb[2],
        ]
        c = self.client
        # World-frame force at the centre of mass and world-frame torque: this
        # sidesteps PyBullet's LINK_FRAME torque handling for the base.
        p.applyExternalForce(
            self.body_id, -1, force_w, state.pos_w.tolist(), p.WORLD_FRAME, physicsClientId=c
        )
        p.applyExternalTorque(self.body_id, -1, torque_w, p.WORLD_FRAME, physicsClientId=c)
