"""The quadrotor model: Crazyflie figures, forces and torques from RPM, motor lag, drag."""

import math

import numpy as np
import pybullet as p
import pytest

from lnn_nav.sim.quadsim import QuadSim, QuadSimConfig
from lnn_nav.sim.vehicle import (
    GRAVITY_MPS2,
    ROTOR_SPIN,
    Quadrotor,
    QuadrotorParams,
)

DT = 1.0 / 240.0


@pytest.fixture()
def world():
    """A bare DIRECT client with gravity, no ground: free flight only."""
    c = p.connect(p.DIRECT)
    p.setGravity(0, 0, -GRAVITY_MPS2, physicsClientId=c)
    p.setPhysicsEngineParameter(fixedTimeStep=DT, physicsClientId=c)
    yield c
    p.disconnect(physicsClientId=c)


def fly_open_loop(quad: Quadrotor, client: int, rpm_cmd, n: int, wind_w=None):
    """Hold a fixed motor command for n physics steps; return the states."""
    states = []
    for _ in range(n):
        s = quad.read_state()
        quad.apply_motor_command(np.asarray(rpm_cmd, dtype=float), s, DT, wind_w)
        p.stepSimulation(physicsClientId=client)
        states.append(quad.read_state())
    return states


def test_crazyflie_figures_from_the_issue():
    prm = QuadrotorParams()
    # hover RPM = sqrt(m g / (4 kf)), RPM in rev/min, kf in N/(rev/min)^2
    expected = math.sqrt(0.027 * GRAVITY_MPS2 / (4 * 3.16e-10))
    assert prm.hover_rpm == pytest.approx(expected, rel=1e-12)
    # the issue quotes ~14,468 (computed with g = 9.8); ours uses g = 9.81
    assert prm.hover_rpm == pytest.approx(14468, rel=1e-3)
    assert 4 * prm.kf * prm.hover_rpm**2 == pytest.approx(prm.weight_n, rel=1e-12)
    assert prm.thrust_to_weight == pytest.approx(2.25, rel=1e-9)
    assert prm.max_rpm == pytest.approx(1.5 * prm.hover_rpm, rel=1e-9)  # sqrt(2.25)
    assert prm.inertia_kgm2 == (1.4e-5, 1.4e-5, 2.17e-5)
    assert (prm.arm_m, prm.km) == (0.0397, 7.94e-12)


def test_params_round_trip_and_validation():
    prm = QuadrotorParams().perturbed(mass_scale=1.1, weak_motor=2, weak_motor_efficiency=0.7)
    assert QuadrotorParams.from_dict(prm.to_dict()) == prm
    with pytest.raises(ValueError, match="mass_kg"):
        QuadrotorParams(mass_kg=-1.0)
    with pytest.raises(ValueError, match="motor_efficiency"):
        QuadrotorParams(motor_efficiency=(1.0, 1.2, 1.0, 1.0))
    with pytest.raises(ValueError, match="inertia_kgm2"):
        QuadrotorParams(inertia_kgm2=(1e-5, 1e-5))
    with pytest.raises(ValueError, match="thrust-to-weight"):
        QuadrotorParams(mass_kg=0.1)
    with pytest.raises(ValueError, match="unknown QuadrotorParams keys"):
        QuadrotorParams.from_dict({"mass": 0.03})


def test_perturbation_helper():
    base = QuadrotorParams()
    prm = base.perturbed(
        mass_scale=1.2,
        kf_scale=0.9,
        motor_time_constant_s=0.05,
        weak_motor=1,
        weak_motor_efficiency=0.75,
    )
    assert prm.mass_kg == pytest.approx(1.2 * base.mass_kg)
    assert (prm.kf, prm.km) == (pytest.approx(0.9 * base.kf), pytest.approx(0.9 * base.km))
    assert prm.motor_time_constant_s == 0.05
    assert prm.motor_efficiency == (1.0, 0.75, 1.0, 1.0)
    assert prm.thrust_to_weight == pytest.approx(2.25 * 0.9 * 3.75 / 4 / 1.2)
    assert prm.same_geometry(base)
    with pytest.raises(ValueError, match="weak_motor=4"):
        base.perturbed(weak_motor=4)
    with pytest.raises(ValueError, match="weak_motor_efficiency"):
        base.perturbed(weak_motor=0, weak_motor_efficiency=0.0)
    with pytest.raises(ValueError, match="mass_scale"):
        base.perturbed(mass_scale=float("nan"))


def test_body_mass_inertia_and_no_builtin_damping(world):
    quad = Quadrotor(world)
    info = p.getDynamicsInfo(quad.body_id, -1, physicsClientId=world)
    assert info[0] == pytest.approx(0.027)
    np.testing.assert_allclose(info[2], (1.4e-5, 1.4e-5, 2.17e-5), rtol=1e-6)
    heavy = quad.params.perturbed(mass_scale=1.2)
    body = quad.body_id
    quad.reset((0, 0, 1), params=heavy)
    assert quad.body_id == body  # same geometry: the body is reused
    assert p.getDynamicsInfo(quad.body_id, -1, physicsClientId=world)[0] == pytest.approx(0.0324)
    # Coasting without motors or drag: PyBullet's default damping would slow it.
    quad.reset((0, 0, 1), vel_w=(1.0, 0.0, 0.0), params=QuadrotorParams(drag_coeff_body=(0, 0, 0)))
    p.setGravity(0, 0, 0, physicsClientId=world)
    states = fly_open_loop(quad, world, np.zeros(4), 48)
    assert states[-1].vel_w[0] == pytest.approx(1.0, abs=1e-9)


def test_hover_rpm_balances_weight_and_thrust_scales_with_rpm_squared(world):
    quad = Quadrotor(world)
    quad.reset((0, 0, 1))
    hover = quad.params.hover_rpm
    states = fly_open_loop(quad, world, np.full(4, hover), 24)
    assert abs(states[-1].vel_w[2]) < 1e-9
    assert np.abs(states[-1].ang_vel_body).max() < 1e-9
    # At 1.2x hover speed the thrust is 1.44 m g: vertical acceleration 0.44 g
    # once the motors have spun up (lag decays as exp(-t/tau)).
    quad.reset((0, 0, 1))
    states = fly_open_loop(quad, world, np.full(4, 1.2 * hover), 96)  # 0.4 s = 20 tau
    acc = (states[-1].vel_w[2] - states[-2].vel_w[2]) / DT
    drag = quad.params.drag_coeff_body[2] * states[-1].vel_w[2] / quad.params.mass_kg
    assert acc == pytest.approx(0.44 * GRAVITY_MPS2 - drag, rel=1e-3)


def test_motor_lag_is_first_order(world):
    tau = 0.05
    quad = Quadrotor(world, QuadrotorParams(motor_time_constant_s=tau))
    quad.reset((0, 0, 5))
    hover = quad.params.hover_rpm
    target = np.full(4, 1.3 * hover)
    n = round(tau / DT)  # 12 steps = one time constant exactly
    states = fly_open_loop(quad, world, target, n)
    frac = (states[-1].motor_rpm - hover) / (target - hover)
    np.testing.assert_allclose(frac, 1 - math.exp(-n * DT / tau), rtol=1e-9)
    # commands beyond the motor's range are clipped
    states = fly_open_loop(quad, world, np.full(4, 1e6), 200)
    np.testing.assert_allclose(states[-1].motor_rpm, quad.params.max_rpm, rtol=1e-6)


def test_torques_have_the_documented_signs_and_sizes(world):
    quad = Quadrotor(world)
    prm = quad.params
    hover = prm.hover_rpm
    # Faster clockwise rotors (spin -1) push the body counter-clockwise: +yaw.
    quad.reset((0, 0, 5))
    cmd = np.full(4, hover)
    cmd[ROTOR_SPIN < 0] *= 1.05
    quad._motor_rpm = cmd.copy()  # no lag: look at the torque alone
    states = fly_open_loop(quad, world, cmd, 1)
    expected_yaw_acc = -(ROTOR_SPIN * prm.km * cmd**2).sum() / prm.inertia_kgm2[2]
    assert expected_yaw_acc > 0
    assert states[0].ang_vel_body[2] / DT == pytest.approx(expected_yaw_acc, rel=1e-3)
    # Faster left rotors (y > 0: 2, 3) roll the left side up: +roll rate.
    quad.reset((0, 0, 5))
    cmd = np.full(4, hover)
    cmd[[2, 3]] *= 1.05
    quad._motor_rpm = cmd.copy()
    states = fly_open_loop(quad, world, cmd, 1)
    y = prm.rotor_positions_body()[:, 1]
    expected_roll_acc = (y * prm.kf * cmd**2).sum() / prm.inertia_kgm2[0]
    assert states[0].ang_vel_body[0] / DT == pytest.approx(expected_roll_acc, rel=1e-3)


def test_weak_motor_rolls_towards_it(world):
    quad = Quadrotor(world, QuadrotorParams().perturbed(weak_motor=0, weak_motor_efficiency=0.8))
    quad.reset((0, 0, 5))
    states = fly_open_loop(quad, world, np.full(4, quad.params.hover_rpm), 12)
    # motor 0 is front-right: the front-right corner drops. In FLU a positive
    # rotation about x lifts the left side (right side down), and a positive
    # rotation about y lowers the nose.
    assert states[-1].ang_vel_body[0] > 0 and states[-1].ang_vel_body[1] > 0


def test_linear_drag_against_the_air(world):
    quad = Quadrotor(world)
    quad.reset((0, 0, 5))
    wind = np.array([3.0, 0.0, 0.0])
    states = fly_open_loop(quad, world, np.full(4, quad.params.hover_rpm), 1, wind_w=wind)
    acc = states[0].vel_w / DT
    assert acc[0] == pytest.approx(
        quad.params.drag_coeff_body[0] * 3.0 / quad.params.mass_kg, rel=1e-6
    )
    assert abs(acc[1]) < 1e-9


def test_state_conventions(world):
    quad = Quadrotor(world)
    quad.reset((1.0, 2.0, 3.0), yaw_rad=0.8)
    s = quad.read_state()
    np.testing.assert_allclose(s.pos_w, (1, 2, 3))
    assert s.yaw == pytest.approx(0.8)
    np.testing.assert_allclose(s.rpy, (0, 0, 0.8), atol=1e-12)
    w, x, y, z = s.quat_wxyz
    assert (w, z) == (pytest.approx(math.cos(0.4)), pytest.approx(math.sin(0.4)))
    # body x axis (first column) points along the heading
    np.testing.assert_allclose(s.R_wb[:, 0], (math.cos(0.8), math.sin(0.8), 0), atol=1e-12)
    with pytest.raises(ValueError, match="pos_w"):
        quad.reset((0, 0))
    with pytest.raises(ValueError, match="yaw_rad"):
        quad.reset((0, 0, 1), yaw_rad=float("inf"))


def test_geometry_change_rebuilds_body():
    with QuadSim(QuadSimConfig(drone_visual=False)) as sim:
        big = QuadrotorParams(arm_m=0.06, prop_radius_m=0.03, mass_kg=0.03)
        sim.reset((0, 0, 1), 0.0, big)
        shape = p.getCollisionShapeData(sim.quad.body_id, -1, physicsClientId=sim.client)[0]
        assert shape[3][1] == pytest.approx(0.09)  # cylinder radius = arm + prop
        assert sim.quad.params == big
