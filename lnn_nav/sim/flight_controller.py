"""The onboard flight controller: velocity command -> motor speeds.

A cascade, every loop run at the physics rate (240 Hz by default):

1. velocity (P, world frame, plus a disturbance observer that cancels
   unexplained acceleration: wind, drag, mass or thrust error; optional I)
   -> desired acceleration, tilt-limited;
2. acceleration + gravity -> desired thrust vector: its projection on the
   current body z axis is the collective thrust, its direction the desired
   body z axis;
3. attitude (P): tilt error (body z onto the desired thrust direction) and
   heading error -> desired body rates;
4. body rates (PI) -> body torques (through the nominal inertia);
5. motor mixing: collective thrust and torques -> per-motor thrust -> RPM, with
   yaw torque given up first when motors saturate.

Command frame. `VelocityCommand(forward, left, up, yaw_rate)` is body FLU, but
tracked as a pilot would fly it: `forward` and `left` are horizontal velocities
in the heading frame (the body frame yawed with the vehicle but kept level, so
tilting to accelerate does not change what "forward" means), `up` is the world
vertical velocity, and `yaw_rate` is the rate of change of heading about world
z (rad/s, positive turns left). Commands are clipped to `CommandLimits`.

The controller uses the *nominal* vehicle parameters it was built with; when the
simulated vehicle is perturbed (heavier, weak motor) the disturbance observer
and the rate integrators absorb the difference, as they would on a real
vehicle. Integrators stop integrating while their output is cut by a limit
(tilt, thrust, motor saturation), so commands at the limits leave no bias.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from lnn_nav.command import CommandLimits, VelocityCommand
from lnn_nav.sim.vehicle import (
    GRAVITY_MPS2,
    ROTOR_DIRECTIONS_BODY,
    ROTOR_SPIN,
    QuadrotorParams,
    QuadState,
)


@dataclass(frozen=True)
class FlightControllerGains:
    """Gains and limits of the cascade. Defaults are tuned for the Crazyflie 2.x
    model at a 240 Hz loop with a 20 ms motor lag."""

    vel_p_xy: float = 6.0
    """1/s, horizontal velocity error -> horizontal acceleration."""
    vel_i_xy: float = 0.0
    """1/s^2, integral of horizontal velocity error -> acceleration. 0 by
    default: the disturbance observer already removes steady-state error, and
    an integrator on top only adds overshoot to velocity steps."""
    vel_p_z: float = 8.0
    """1/s, vertical velocity error -> vertical acceleration."""
    vel_i_z: float = 0.0
    """1/s^2, integral of vertical velocity error -> acceleration (0 by
    default, as `vel_i_xy`; a positive value also wins back the few cm a
    sudden mass change costs, at the price of overshoot)."""
    accel_observer_time_constant_s: float = 0.05
    """s, time constant of the disturbance observer, which compares the
    measured acceleration with the one the last thrust command should give
    along the current body z axis (nominal mass) and cancels the difference:
    wind, drag, a heavier or weaker vehicle are rejected without waiting for
    the integrators. 0 disables it."""
    accel_observer_limit_mps2: float = 5.0
    """m/s^2, bound on each axis of the observer's estimate, so a contact
    impulse (a bump, a landing) cannot produce a wild correction."""
    vel_i_limit_mps2: float = 3.0
    """m/s^2, bound on each axis of the integral term (anti-windup)."""
    max_tilt_rad: float = 0.6
    """rad, largest tilt of the thrust vector from vertical the velocity loop asks for."""
    att_p_tilt: float = 14.0
    """1/s, tilt error (rad) -> roll/pitch rate set-point."""
    att_p_yaw: float = 3.0
    """1/s, heading error (rad) -> yaw rate correction."""
    max_heading_error_rad: float = 0.5
    """rad, the heading set-point may lead the vehicle by at most this much
    (it is dragged along, so a saturated yaw does not wind up)."""
    max_rate_rp_radps: float = 10.0
    """rad/s, bound on the roll/pitch rate set-point."""
    rate_p_rp: float = 40.0
    """1/s, roll/pitch rate error -> angular acceleration (rad/s^2 per rad/s)."""
    rate_i_rp: float = 80.0
    """1/s^2, integral of roll/pitch rate error -> angular acceleration."""
    rate_p_yaw: float = 30.0
    """1/s, yaw rate error -> angular acceleration."""
    rate_i_yaw: float = 20.0
    """1/s^2, integral of yaw rate error -> angular acceleration."""
    rate_i_limit_radps2: float = 200.0
    """rad/s^2, bound on each axis of the rate integral term (anti-windup)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (
                isinstance(v, (int, float))
                and not isinstance(v, bool)
                and math.isfinite(v)
                and v >= 0
            ):
                raise ValueError(
                    f"FlightControllerGains.{f.name}={v!r}: expected a finite number >= 0"
                )
        if not 0 < self.max_tilt_rad < math.pi / 2:
            raise ValueError(
                f"FlightControllerGains.max_tilt_rad={self.max_tilt_rad!r}: "
                "expected a number in (0, pi/2)"
            )
        for name in (
            "vel_p_xy",
            "vel_p_z",
            "att_p_tilt",
            "att_p_yaw",
            "rate_p_rp",
            "rate_p_yaw",
            "max_heading_error_rad",
            "max_rate_rp_radps",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"FlightControllerGains.{name}={getattr(self, name)!r}: expected > 0"
                )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlightControllerGains:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"unknown FlightControllerGains keys {sorted(unknown)}; "
                f"expected some of {sorted(names)}"
            )
        return cls(**{k: float(v) for k, v in d.items()})


def wrap_angle(a: float) -> float:
    """rad, `a` wrapped into [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


class FlightController:
    """Tracks a `VelocityCommand` by computing motor speed commands.

    Usage: `reset(state)` at the start of an episode, `set_command(cmd)` once
    per control period, `update(state)` once per physics step (returns the
    (4,) RPM command for `Quadrotor.apply_motor_command`).
    """

    def __init__(
        self,
        params: QuadrotorParams | None = None,
        gains: FlightControllerGains | None = None,
        limits: CommandLimits | None = None,
        *,
        dt_s: float = 1.0 / 240.0,
    ) -> None:
        if not (math.isfinite(dt_s) and dt_s > 0):
            raise ValueError(f"dt_s={dt_s!r}: expected the loop period in s, a finite number > 0")
        self.params = params if params is not None else QuadrotorParams()
        self.gains = gains if gains is not None else FlightControllerGains()
        self.limits = limits if limits is not None else CommandLimits()
        self.dt_s = float(dt_s)
        prm = self.params
        g = self.gains
        # The loop below runs at the physics rate, so it works on Python floats:
        # for 3- and 4-vectors that is several times faster than numpy calls.
        self._mass = prm.mass_kg
        self._jx, self._jy, self._jz = prm.inertia_kgm2
        self._kf = prm.kf
        self._f_max = prm.max_thrust_per_motor_n
        # Allocation: [T, tau_x, tau_y, tau_z] = A @ f, f = per-motor thrust (N).
        xy = ROTOR_DIRECTIONS_BODY * prm.arm_m
        alloc = np.vstack([np.ones(4), xy[:, 1], -xy[:, 0], -ROTOR_SPIN * prm.km / prm.kf])
        self._mix: list[list[float]] = np.linalg.inv(alloc).tolist()  # rows: motors
        self._tan_tilt = math.tan(g.max_tilt_rad)
        # m/s^2, the largest vertical thrust acceleration the nominal motors give
        self._fz_max = 4.0 * self._f_max / self._mass
        self._k_obs = (
            dt_s / (g.accel_observer_time_constant_s + dt_s)
            if g.accel_observer_time_constant_s > 0
            else 0.0
        )
        self._command = VelocityCommand.hover()
        self._vel_i = [0.0, 0.0, 0.0]  # m/s^2 world, velocity integral term
        self._rate_i = [0.0, 0.0, 0.0]  # rad/s^2 body, rate integral term
        self._yaw_sp = 0.0  # rad, heading set-point
        self._dist = [0.0, 0.0, 0.0]  # m/s^2 world, estimated acceleration disturbance
        self._prev_vel = [0.0, 0.0, 0.0]  # m/s world, velocity at the previous update
        self._pred_acc = [0.0, 0.0, 0.0]  # m/s^2 world, what the last command should give

    @property
    def command(self) -> VelocityCommand:
        """The command being tracked, after clipping to the limits."""
        return self._command

    @property
    def heading_setpoint_rad(self) -> float:
        """rad, the heading the controller is steering to (integrated yaw rate)."""
        return self._yaw_sp

    @property
    def disturbance_accel_w(self) -> np.ndarray:
        """(3,) m/s^2 world ENU, the observer's estimate of the acceleration
        not explained by the commanded thrust (wind, drag, model error)."""
        return np.array(self._dist)

    def reset(self, state: QuadState) -> None:
        """Clear the integrators and the observer, hold the current heading,
        command hover."""
        self._vel_i = [0.0, 0.0, 0.0]
        self._rate_i = [0.0, 0.0, 0.0]
        self._yaw_sp = state.yaw
        self._dist = [0.0, 0.0, 0.0]
        self._prev_vel = [float(v) for v in state.vel_w]
        self._pred_acc = [0.0, 0.0, 0.0]
        self._command = VelocityCommand.hover()

    def set_command(self, cmd: VelocityCommand) -> None:
        """Set the command to track until the next call (clipped to the limits).
        Raises ValueError for a non-finite command."""
        if not isinstance(cmd, VelocityCommand):
            cmd = VelocityCommand.from_array(cmd)
        if not cmd.is_finite():
            raise ValueError(
                f"command {cmd!r} has a non-finite value; expected finite m/s and rad/s"
            )
        self._command = self.limits.clip(cmd)

    def update(self, state: QuadState) -> np.ndarray:
        """One control step: (4,) rev/min motor speed commands for `state`."""
        g = self.gains
        dt = self.dt_s
        fwd, left, up, yaw_rate = self._command
        (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = state.R_wb.tolist()
        vx, vy, vz = state.vel_w.tolist()
        wx, wy, wz = state.ang_vel_body.tolist()

        # Heading frame: body x projected on the horizontal plane.
        yaw = math.atan2(r10, r00)
        cy, sy = math.cos(yaw), math.sin(yaw)
        sp_x, sp_y, sp_z = cy * fwd - sy * left, sy * fwd + cy * left, up

        # Disturbance observer: low-pass of (measured - predicted) acceleration.
        # The prediction uses the actual attitude, so attitude lag is not
        # mistaken for a disturbance; onboard, the accelerometer measures it.
        dist, pv, pa, k = self._dist, self._prev_vel, self._pred_acc, self._k_obs
        if k > 0.0:
            dlim = g.accel_observer_limit_mps2
            dist[0] = min(max(dist[0] + k * ((vx - pv[0]) / dt - pa[0] - dist[0]), -dlim), dlim)
            dist[1] = min(max(dist[1] + k * ((vy - pv[1]) / dt - pa[1] - dist[1]), -dlim), dlim)
            dist[2] = min(max(dist[2] + k * ((vz - pv[2]) / dt - pa[2] - dist[2]), -dlim), dlim)
        self._prev_vel = [vx, vy, vz]

        # 1. velocity PI -> acceleration (world)
        ex, ey, ez = sp_x - vx, sp_y - vy, sp_z - vz
        lim = g.vel_i_limit_mps2
        vi = self._vel_i
        vi_prev = vi[:]
        vi[0] = min(max(vi[0] + g.vel_i_xy * ex * dt, -lim), lim)
        vi[1] = min(max(vi[1] + g.vel_i_xy * ey * dt, -lim), lim)
        vi[2] = min(max(vi[2] + g.vel_i_z * ez * dt, -lim), lim)
        ax = g.vel_p_xy * ex + vi[0] - dist[0]
        ay = g.vel_p_xy * ey + vi[1] - dist[1]
        az = g.vel_p_z * ez + vi[2] - dist[2]
        # 2. thrust vector, tilt-limited: the horizontal part may not exceed
        # tan(max_tilt) times the vertical part.
        # Anti-windup by conditional integration: an axis whose demand is cut
        # by a limit keeps its previous integral, so bang-bang commands at the
        # limits do not leave a bias that takes seconds to bleed off.
        fz = az + GRAVITY_MPS2
        if fz < 0.2 * GRAVITY_MPS2 or fz > self._fz_max:
            fz = min(max(fz, 0.2 * GRAVITY_MPS2), self._fz_max)
            vi[2] = vi_prev[2]
        h = math.hypot(ax, ay)
        h_max = fz * self._tan_tilt
        if h > h_max:
            ax *= h_max / h
            ay *= h_max / h
            vi[0], vi[1] = vi_prev[0], vi_prev[1]
        m = self._mass
        tx, ty, tz = m * ax, m * ay, m * fz  # N world, desired thrust vector
        collective = max(tx * r02 + ty * r12 + tz * r22, 0.0)

        # 3. attitude: tilt the body z axis onto the thrust direction
        # (error axis e_z x d in body coordinates, d = desired z in body).
        n = math.sqrt(tx * tx + ty * ty + tz * tz)
        d0 = (r00 * tx + r10 * ty + r20 * tz) / n
        d1 = (r01 * tx + r11 * ty + r21 * tz) / n
        d2 = (r02 * tx + r12 * ty + r22 * tz) / n
        sin_tilt = math.hypot(d0, d1)
        scale = math.atan2(sin_tilt, d2) / sin_tilt if sin_tilt > 1e-9 else 1.0
        rmax = g.max_rate_rp_radps
        p_sp = min(max(-g.att_p_tilt * scale * d1, -rmax), rmax)
        q_sp = min(max(g.att_p_tilt * scale * d0, -rmax), rmax)
        # heading: integrate the commanded yaw rate, never leading by more than
        # max_heading_error_rad.
        self._yaw_sp = wrap_angle(self._yaw_sp + yaw_rate * dt)
        e_yaw = wrap_angle(self._yaw_sp - yaw)
        emax = g.max_heading_error_rad
        if abs(e_yaw) > emax:
            e_yaw = math.copysign(emax, e_yaw)
            self._yaw_sp = wrap_angle(yaw + e_yaw)
        r_sp = (yaw_rate + g.att_p_yaw * e_yaw) * r22

        # 4. body-rate PI -> torque through the nominal inertia (+ gyroscopic term)
        epx, epy, epz = p_sp - wx, q_sp - wy, r_sp - wz
        ilim = g.rate_i_limit_radps2
        ri = self._rate_i
        ri_prev = ri[:]
        ri[0] = min(max(ri[0] + g.rate_i_rp * epx * dt, -ilim), ilim)
        ri[1] = min(max(ri[1] + g.rate_i_rp * epy * dt, -ilim), ilim)
        ri[2] = min(max(ri[2] + g.rate_i_yaw * epz * dt, -ilim), ilim)
        jx, jy, jz = self._jx, self._jy, self._jz
        tau_x = jx * (g.rate_p_rp * epx + ri[0]) + (jz - jy) * wy * wz
        tau_y = jy * (g.rate_p_rp * epy + ri[1]) + (jx - jz) * wz * wx
        tau_z = jz * (g.rate_p_yaw * epz + ri[2]) + (jy - jx) * wx * wy

        # 5. mixing; if a motor leaves [0, f_max], scale the yaw torque down first.
        f_max = self._f_max
        f0 = [r[0] * collective + r[1] * tau_x + r[2] * tau_y for r in self._mix]
        fy = [r[3] * tau_z for r in self._mix]
        f = [a + b for a, b in zip(f0, fy)]
        if min(f) < 0.0 or max(f) > f_max:
            k_yaw = 1.0
            for a, b in zip(f0, fy):
                if b > 1e-15:
                    k_yaw = min(k_yaw, (f_max - a) / b)
                elif b < -1e-15:
                    k_yaw = min(k_yaw, -a / b)
            k_yaw = max(k_yaw, 0.0)
            f = [min(max(a + k_yaw * b, 0.0), f_max) for a, b in zip(f0, fy)]
            # saturated: keep the previous yaw integral, and the roll/pitch
            # ones too if even without yaw a motor is out of range
            ri[2] = ri_prev[2]
            if k_yaw == 0.0 and (min(f0) < 0.0 or max(f0) > f_max):
                ri[0], ri[1] = ri_prev[0], ri_prev[1]
        # What the nominal model predicts this thrust will do (for the observer).
        a_thr = sum(f) / m
        self._pred_acc = [a_thr * r02, a_thr * r12, a_thr * r22 - GRAVITY_MPS2]
        kf = self._kf
        return np.array([math.sqrt(x / kf) for x in f])
