"""Closed-loop behaviour of the flight controller in QuadSim (30 Hz commands, 240 Hz physics)."""

import math

import numpy as np
import pybullet as p
import pytest

from lnn_nav.command import CommandLimits, VelocityCommand
from lnn_nav.sim.flight_controller import FlightController, FlightControllerGains, wrap_angle
from lnn_nav.sim.quadsim import QuadSim, QuadSimConfig

HZ = 30


@pytest.fixture(scope="module")
def sim():
    s = QuadSim(QuadSimConfig(drone_visual=False))
    yield s
    s.close()


def fly(sim, cmd, seconds, wind_w=(0.0, 0.0, 0.0)):
    """Hold `cmd` for `seconds`; return the state after every control step."""
    out = []
    for _ in range(round(seconds * HZ)):
        sim.step(cmd, wind_w)
        out.append(sim.state)
    return out


def heading_velocity(state):
    """(forward, left, up) m/s: velocity in the level heading frame."""
    c, s = math.cos(state.yaw), math.sin(state.yaw)
    v = state.vel_w
    return np.array([c * v[0] + s * v[1], -s * v[0] + c * v[1], v[2]])


def test_hover_holds_altitude_within_2cm_for_10s(sim):
    sim.reset((0.0, 0.0, 1.5), 0.4)
    states = fly(sim, VelocityCommand.hover(), 10.0)
    z = np.array([s.pos_w[2] for s in states])
    assert np.abs(z - 1.5).max() < 0.02
    xy = np.array([s.pos_w[:2] for s in states])
    assert np.abs(xy).max() < 0.02
    assert abs(wrap_angle(states[-1].yaw - 0.4)) < 0.01


@pytest.mark.parametrize("yaw0", [0.0, 2.3])
def test_forward_step_settles_within_1s(sim, yaw0):
    sim.reset((0.0, 0.0, 1.5), yaw0)
    states = fly(sim, VelocityCommand(1.0, 0.0, 0.0, 0.0), 3.0)
    v = np.array([heading_velocity(s) for s in states])
    settled = v[HZ:]  # from t = 1 s on
    assert np.abs(settled[:, 0] - 1.0).max() < 0.05, "forward speed not within 0.05 m/s after 1 s"
    assert abs(v[-HZ:, 0].mean() - 1.0) < 0.05, "steady-state error"
    assert np.abs(settled[:, 1]).max() < 0.05  # no sideways drift
    assert abs(states[-1].pos_w[2] - 1.5) < 0.05  # altitude held while tilting
    assert abs(wrap_angle(states[-1].yaw - yaw0)) < 0.02  # heading held


def test_left_step_is_tracked(sim):
    sim.reset((0.0, 0.0, 1.5), -1.0)
    states = fly(sim, VelocityCommand(0.0, -0.8, 0.0, 0.0), 2.0)
    v = heading_velocity(states[-1])
    assert v[1] == pytest.approx(-0.8, abs=0.04) and abs(v[0]) < 0.04


def test_yaw_rate_step_is_tracked(sim):
    sim.reset((0.0, 0.0, 1.5), 0.0)
    states = fly(sim, VelocityCommand(0.0, 0.0, 0.0, 1.0), 3.0)
    rate = np.array([s.ang_vel_body[2] for s in states])
    assert np.abs(rate[HZ:] - 1.0).max() < 0.05  # within 0.05 rad/s after 1 s
    yaws = np.unwrap([s.yaw for s in states])
    t = np.arange(1, len(states) + 1) / HZ
    assert np.abs(yaws - t).max() < 0.1  # heading follows the integrated rate
    assert abs(states[-1].pos_w[2] - 1.5) < 0.02


def test_climb_and_turn_keeps_altitude_and_heading_errors_bounded(sim):
    sim.reset((0.0, 0.0, 1.0), 0.5)
    cmd = VelocityCommand(1.0, 0.0, 0.5, -0.8)
    states = fly(sim, cmd, 4.0)
    t = np.arange(1, len(states) + 1) / HZ
    z_err = np.array([s.pos_w[2] for s in states]) - (1.0 + 0.5 * t)
    yaw_err = np.unwrap([s.yaw for s in states]) - (0.5 - 0.8 * t)
    # The ramp's start costs a constant lag; after that the error stays bounded.
    assert np.abs(z_err).max() < 0.1
    assert np.abs(yaw_err).max() < 0.15
    assert np.ptp(z_err[HZ:]) < 0.03 and np.ptp(yaw_err[HZ:]) < 0.03
    # flying a circle at the commanded speed: radius = v / omega = 1.25 m
    speeds = [np.linalg.norm(heading_velocity(s)[:2]) for s in states[HZ:]]
    assert np.abs(np.array(speeds) - 1.0).max() < 0.05


def test_commands_are_clipped_to_the_limits(sim):
    sim.reset((0.0, 0.0, 2.0), 0.0)
    states = fly(sim, VelocityCommand(5.0, 0.0, -3.0, 9.0), 0.1)
    assert sim.controller.command == (2.0, 0.0, -1.0, 2.0)
    states = fly(sim, VelocityCommand(5.0, 0.0, 0.0, 0.0), 3.0)
    assert heading_velocity(states[-1])[0] == pytest.approx(2.0, abs=0.05)
    limits = CommandLimits(max_horizontal=0.5)
    ctrl = FlightController(limits=limits)
    ctrl.set_command(VelocityCommand(-3.0, 1.0, 0.2, 0.0))
    assert ctrl.command == (-0.5, 0.5, 0.2, 0.0)


def test_non_finite_command_or_wind_raises(sim):
    sim.reset((0.0, 0.0, 1.0), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        sim.step(VelocityCommand(float("nan"), 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="wind_w"):
        sim.step(VelocityCommand.hover(), wind_w=(0.0, float("inf"), 0.0))
    with pytest.raises(ValueError, match="wind_w"):
        sim.step(VelocityCommand.hover(), wind_w=(1.0, 0.0))


@pytest.mark.parametrize(
    "perturbation",
    [
        dict(mass_scale=1.2),
        dict(mass_scale=0.8),
        dict(weak_motor=3, weak_motor_efficiency=0.8),
        dict(kf_scale=0.85, motor_time_constant_s=0.04),
    ],
)
def test_dynamics_family_stays_controllable(sim, perturbation):
    """The controller keeps its nominal model; the observer and integrators absorb the change."""
    sim.reset((0.0, 0.0, 1.5), 0.0, sim.config.vehicle.perturbed(**perturbation))
    states = fly(sim, VelocityCommand.hover(), 3.0)
    z = np.array([s.pos_w[2] for s in states])
    assert np.abs(z - 1.5).max() < 0.05
    assert abs(z[-1] - 1.5) < 0.03
    tilt = [math.acos(min(1.0, s.R_wb[2, 2])) for s in states[HZ:]]
    assert max(tilt) < 0.05
    states = fly(sim, VelocityCommand(1.0, 0.0, 0.0, 0.0), 2.0)
    assert heading_velocity(states[-1])[0] == pytest.approx(1.0, abs=0.05)


def test_steady_wind_is_rejected(sim):
    sim.reset((0.0, 0.0, 1.5), 0.0)
    states = fly(sim, VelocityCommand.hover(), 4.0, wind_w=(0.0, 4.0, 0.0))
    v = states[-1].vel_w
    assert np.abs(v).max() < 0.03
    assert abs(states[-1].pos_w[2] - 1.5) < 0.02


def test_reset_clears_controller_state(sim):
    def episode():
        sim.reset((0.0, 0.0, 1.0), 0.3)
        return fly(sim, VelocityCommand(0.7, -0.3, 0.2, 0.5), 1.0)

    first = episode()
    # wind up the integrators and the heading set-point with something else
    sim.reset((3.0, 3.0, 2.0), -2.0, sim.config.vehicle.perturbed(mass_scale=1.15))
    fly(sim, VelocityCommand(2.0, 2.0, -1.0, 2.0), 1.0, wind_w=(2.0, -1.0, 0.0))
    second = episode()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.pos_w, b.pos_w)
        np.testing.assert_array_equal(a.quat_wxyz, b.quat_wxyz)


def test_episode_with_contacts_repeats_after_reset():
    """Resetting after a crash leaves no trace: the same episode, ground
    contact included, replays bit for bit."""

    def episode(s):
        s.reset((0.0, 0.0, 0.3), 0.0)
        states = fly(s, VelocityCommand(0.5, 0.0, -0.6, 0.4), 1.5)
        assert s.ground_id in s.contact_bodies()
        return np.array([np.concatenate([st.pos_w, st.quat_wxyz, st.vel_w]) for st in states])

    with QuadSim(QuadSimConfig(drone_visual=False)) as s:
        first = episode(s)
        s.reset((1.0, 1.0, 0.5), 1.0, s.config.vehicle.perturbed(mass_scale=1.2))
        fly(s, VelocityCommand(2.0, -1.0, -1.0, 2.0), 1.0)  # crash elsewhere
        second = episode(s)
    np.testing.assert_array_equal(first, second)


def test_gains_round_trip_and_validation():
    g = FlightControllerGains(vel_p_xy=4.0, max_tilt_rad=0.5)
    assert FlightControllerGains.from_dict(g.to_dict()) == g
    with pytest.raises(ValueError, match="max_tilt_rad"):
        FlightControllerGains(max_tilt_rad=2.0)
    with pytest.raises(ValueError, match="rate_p_rp"):
        FlightControllerGains(rate_p_rp=-1.0)
    with pytest.raises(ValueError, match="unknown FlightControllerGains keys"):
        FlightControllerGains.from_dict({"kp": 1.0})
    with pytest.raises(ValueError, match="dt_s"):
        FlightController(dt_s=0.0)


def test_quadsim_config_round_trip_and_rates():
    cfg = QuadSimConfig(physics_hz=480, control_hz=60, gains=FlightControllerGains(vel_p_xy=4.0))
    assert QuadSimConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.substeps == 8
    with pytest.raises(ValueError, match="control_hz=7 must divide physics_hz=240"):
        QuadSimConfig(control_hz=7)
    with pytest.raises(ValueError, match="unknown QuadSimConfig keys"):
        QuadSimConfig.from_dict({"physics_rate": 100})


@pytest.mark.parametrize("physics_hz", [120, 480])
def test_other_physics_rates_track(physics_hz):
    """The gains are tuned at 240 Hz but do not depend on it."""
    with QuadSim(QuadSimConfig(physics_hz=physics_hz, drone_visual=False)) as s:
        s.reset((0.0, 0.0, 1.0), 0.0)
        v = []
        for _ in range(60):
            s.step(VelocityCommand(1.0, 0.0, 0.0, 0.0))
            v.append(heading_velocity(s.state)[0])
        assert np.abs(np.array(v[HZ:]) - 1.0).max() < 0.05
        assert abs(s.state.pos_w[2] - 1.0) < 0.02


def test_other_control_rate_still_tracks():
    with QuadSim(QuadSimConfig(control_hz=60, drone_visual=False)) as s:
        s.reset((0.0, 0.0, 1.0), 0.0)
        for _ in range(120):
            s.step(VelocityCommand(1.0, 0.0, 0.0, 0.0))
        assert s.steps == 120 and s.time_s == pytest.approx(2.0)
        assert heading_velocity(s.state)[0] == pytest.approx(1.0, abs=0.05)


def test_step_is_deterministic_and_reset_does_not_rebuild():
    cmds = [VelocityCommand(*np.sin([0.1 * i, 0.2 * i, 0.05 * i, 0.3 * i])) for i in range(60)]
    runs = []
    for _ in range(2):
        with QuadSim() as s:
            n_bodies = p.getNumBodies(physicsClientId=s.client)
            body = s.quad.body_id
            s.reset((1.0, -1.0, 2.0), 0.2)
            for c in cmds:
                s.step(c, wind_w=(0.5, 0.0, 0.0))
            assert p.getNumBodies(physicsClientId=s.client) == n_bodies
            assert s.quad.body_id == body
            st = s.state
            runs.append(
                np.concatenate([st.pos_w, st.quat_wxyz, st.vel_w, st.ang_vel_body, st.motor_rpm])
            )
    np.testing.assert_array_equal(runs[0], runs[1])


def test_contact_bodies_report_ground_and_obstacles():
    with QuadSim(QuadSimConfig(drone_visual=False)) as s:
        c = s.client
        wall_col = p.createCollisionShape(
            p.GEOM_BOX, halfExtents=[0.1, 2.0, 2.0], physicsClientId=c
        )
        wall = p.createMultiBody(0.0, wall_col, -1, [1.0, 0.0, 2.0], physicsClientId=c)
        s.reset((0.0, 0.0, 1.0), 0.0)
        s.step(VelocityCommand.hover())
        assert s.contact_bodies() == frozenset()
        hit = set()
        for _ in range(60):
            s.step(VelocityCommand(2.0, 0.0, 0.0, 0.0))
            hit |= s.contact_bodies()
        assert wall in hit
        s.reset((-3.0, 0.0, 0.5), 0.0)
        assert s.contact_bodies() == frozenset()
        landed = set()
        for _ in range(60):
            s.step(VelocityCommand(0.0, 0.0, -1.0, 0.0))
            landed |= s.contact_bodies()
        assert s.ground_id in landed and wall not in landed


def test_random_and_extreme_commands_stay_upright(sim):
    """A policy may send anything within the limits at 30 Hz, even full-scale
    reversals every frame: the vehicle stays upright (under 1 rad of tilt;
    the controller asks for at most max_tilt_rad = 0.6, reversals overshoot)
    and finite, and settles afterwards."""
    rng = np.random.default_rng(0)
    limits = sim.config.limits
    sim.reset((0.0, 0.0, 30.0), 0.0)
    tilts = []
    for i in range(300):
        if i < 150:
            cmd = limits.from_normalized(rng.uniform(-1.0, 1.0, 4))
        else:  # bang-bang at the corners of the command box
            cmd = limits.from_normalized(np.sign(rng.uniform(-1.0, 1.0, 4)))
        sim.step(cmd)
        st = sim.state
        assert np.all(np.isfinite(st.pos_w)) and np.all(np.isfinite(st.motor_rpm))
        tilts.append(math.acos(min(1.0, st.R_wb[2, 2])))
    assert max(tilts[:150]) < sim.config.gains.max_tilt_rad + 0.1  # random commands
    assert max(tilts) < 1.0
    # and it comes back to a steady hover
    states = fly(sim, VelocityCommand.hover(), 2.0)
    assert np.abs(states[-1].vel_w).max() < 0.05
    assert np.abs(states[-1].ang_vel_body).max() < 0.05


def test_take_off_after_landing(sim):
    """Sitting on the ground (the observer sees the ground's push as a
    disturbance, bounded) does not stop a clean take-off."""
    sim.reset((0.0, 0.0, 0.3), 0.0)
    fly(sim, VelocityCommand(0.0, 0.0, -1.0, 0.0), 1.0)
    assert sim.ground_id in sim.contact_bodies()
    lim = sim.config.gains.accel_observer_limit_mps2
    assert np.abs(sim.controller.disturbance_accel_w).max() <= lim
    states = fly(sim, VelocityCommand(0.0, 0.0, 0.5, 0.0), 2.0)
    vz = np.array([s.vel_w[2] for s in states])
    assert np.abs(vz[HZ:] - 0.5).max() < 0.025
    assert np.abs(states[-1].pos_w[:2]).max() < 0.02
