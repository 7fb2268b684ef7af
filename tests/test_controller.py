"""PolicyController: validation, limits, slew limits, watchdog, state carry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lnn_nav.command import CommandLimits, VelocityCommand
from lnn_nav.controller import Fault, PolicyController, SlewLimits

H, W = 16, 16


class FakeClock:
    """A monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class IntegratorPolicy(torch.nn.Module):
    """A known policy: the state integrates the mean brightness over dt, and
    the command is (state, -state, 0.5 * state, brightness) -- so a test can
    predict every output and see that state is carried between calls."""

    def __init__(self, limits: CommandLimits | None = None) -> None:
        super().__init__()
        self.limits = limits or CommandLimits()
        self.poison = False

    def init_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 1)

    def step(self, image, state, dt):
        b = image.float().mean(dim=(1, 2, 3)).unsqueeze(1) / 255.0  # (B, 1)
        nxt = state + b * dt
        cmd = torch.cat([nxt, -nxt, 0.5 * nxt, b], dim=1)
        if self.poison:
            cmd = cmd * float("nan")
        return cmd, nxt


def frame(value: int) -> np.ndarray:
    return np.full((H, W, 3), value, dtype=np.uint8)


def make(policy=None, **kw) -> tuple[PolicyController, FakeClock]:
    clock = FakeClock()
    kw.setdefault("slew", SlewLimits(1e6, 1e6, 1e6))
    ctrl = PolicyController(policy or IntegratorPolicy(), image_shape=(H, W, 3), clock=clock, **kw)
    return ctrl, clock


def test_state_is_carried_and_reset():
    ctrl, clock = make()
    outs = []
    for _ in range(3):
        clock.t += 0.1
        outs.append(ctrl.step(frame(255), 0.1))
    assert [round(o.forward, 6) for o in outs] == [0.1, 0.2, 0.3]
    assert outs[-1] == VelocityCommand(
        pytest.approx(0.3), pytest.approx(-0.3), pytest.approx(0.15), pytest.approx(1.0)
    )
    assert ctrl.fault is Fault.NONE and ctrl.fault_message == ""
    ctrl.reset()
    assert ctrl.fault is Fault.NO_FRAME
    clock.t += 0.1
    assert ctrl.step(frame(255), 0.1).forward == pytest.approx(0.1)


def test_dt_is_passed_in_seconds():
    ctrl, clock = make()
    clock.t += 0.05
    assert ctrl.step(frame(255), 0.25).forward == pytest.approx(0.25)


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((H, W, 3), np.float32), "dtype float32"),
        (np.full((H, W, 3), np.nan, np.float32), "non-finite"),
        (np.zeros((H, W), np.uint8), r"shape \(16, 16\)"),
        (np.zeros((H, W, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((H + 1, W, 3), np.uint8), r"expected \(16, 16, 3\)"),
        ([[0, 0, 0]], "list"),
    ],
)
def test_bad_image_raises_value_error(image, match):
    ctrl, _ = make()
    with pytest.raises(ValueError, match=match):
        ctrl.step(image, 0.1)


@pytest.mark.parametrize("dt", [0.0, -0.1, math.nan, math.inf, True, "0.1", None])
def test_bad_dt_raises_value_error(dt):
    ctrl, _ = make()
    with pytest.raises(ValueError, match="dt="):
        ctrl.step(frame(10), dt)


def test_non_contiguous_image_is_accepted():
    ctrl, clock = make()
    big = np.full((H, W * 2, 3), 255, np.uint8)[:, ::2]
    assert not big.flags.c_contiguous
    clock.t += 0.1
    assert ctrl.step(big, 0.1).forward == pytest.approx(0.1)


def test_command_limits_clip_each_axis():
    limits = CommandLimits(max_horizontal=0.2, max_vertical=0.05, max_yaw_rate=0.5)
    ctrl, clock = make(IntegratorPolicy(limits))
    clock.t += 1.0
    cmd = ctrl.step(frame(255), 1.0)  # raw (1, -1, 0.5, 1)
    assert cmd == VelocityCommand(0.2, -0.2, 0.05, 0.5)


def test_explicit_limits_override_the_policy():
    ctrl, clock = make(limits=CommandLimits(max_horizontal=0.1))
    clock.t += 1.0
    assert ctrl.step(frame(255), 1.0).forward == pytest.approx(0.1)


def test_slew_rate_bounds_change_per_second():
    slew = SlewLimits(max_horizontal_accel=0.5, max_vertical_accel=0.1, max_yaw_accel=2.0)
    ctrl, clock = make(slew=slew)
    clock.t += 0.1
    cmd = ctrl.step(frame(255), 0.1)  # raw (0.1, -0.1, 0.05, 1.0); allowed change per 0.1 s
    assert cmd.forward == pytest.approx(0.05)
    assert cmd.left == pytest.approx(-0.05)
    assert cmd.up == pytest.approx(0.01)
    assert cmd.yaw_rate == pytest.approx(0.2)
    clock.t += 0.1
    cmd2 = ctrl.step(frame(255), 0.1)  # raw forward 0.2 -> at most +0.05 from 0.05
    assert cmd2.forward == pytest.approx(0.10)
    assert cmd2.yaw_rate == pytest.approx(0.4)


def test_non_finite_output_gives_hover_fault_and_fresh_state():
    policy = IntegratorPolicy()
    ctrl, clock = make(policy)
    clock.t += 0.1
    ctrl.step(frame(255), 0.1)
    policy.poison = True
    clock.t += 0.1
    cmd = ctrl.step(frame(255), 0.1)
    assert cmd == VelocityCommand.hover()
    assert ctrl.fault is Fault.NON_FINITE_OUTPUT
    assert "not finite" in ctrl.fault_message
    assert ctrl.command() == VelocityCommand.hover()
    assert ctrl.status().fault_counts["non_finite_output"] == 1
    policy.poison = False
    clock.t += 0.1
    # the state was re-initialised: the integrator restarts from zero
    assert ctrl.step(frame(255), 0.1).forward == pytest.approx(0.1)
    assert ctrl.fault is Fault.NONE


def test_stale_frame_watchdog_with_injected_clock():
    ctrl, clock = make(stale_timeout_s=0.25)
    assert ctrl.command() == VelocityCommand.hover()
    assert ctrl.fault is Fault.NO_FRAME
    clock.t += 0.1
    cmd = ctrl.step(frame(255), 0.1)
    clock.t += 0.2  # still fresh
    assert ctrl.command() == cmd and ctrl.fault is Fault.NONE
    clock.t += 0.1  # 0.3 s since the last frame
    assert ctrl.command() == VelocityCommand.hover()
    assert ctrl.fault is Fault.STALE_FRAME
    assert "0.300 s old" in ctrl.fault_message
    assert ctrl.status().frame_age_s == pytest.approx(0.3)
    # a fresh frame clears the flag; the outage stays counted
    ctrl.step(frame(255), 0.3)
    assert ctrl.fault is Fault.NONE
    assert ctrl.status().fault_counts["stale_frame"] == 1


def test_gap_counted_and_slew_restarts_from_hover_without_command_calls():
    ctrl, clock = make(stale_timeout_s=0.25, slew=SlewLimits(1.0, 1.0, 100.0))
    for _ in range(20):
        clock.t += 0.1
        ctrl.step(frame(255), 0.1)
    clock.t += 1.0  # outage nobody polled
    cmd = ctrl.step(frame(255), 0.1)
    assert ctrl.status().fault_counts["stale_frame"] == 1
    # from hover, at most 1 m/s^2 * 0.1 s
    assert cmd.forward == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"stale_timeout_s": 0.0}, "stale_timeout_s"),
        ({"stale_timeout_s": math.nan}, "stale_timeout_s"),
        ({"image_shape": (16, 16, 4)}, "image_shape"),
    ],
)
def test_bad_construction_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        PolicyController(IntegratorPolicy(), **kw)


def test_slew_limits_validate_and_round_trip():
    s = SlewLimits(1.0, 2.0, 3.0)
    assert SlewLimits.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="max_vertical_accel=-1"):
        SlewLimits(max_vertical_accel=-1)
    with pytest.raises(ValueError, match="unknown SlewLimits keys"):
        SlewLimits.from_dict({"jerk": 1.0})


def test_policy_without_limits_needs_explicit_limits():
    policy = IntegratorPolicy()
    policy.limits = None
    with pytest.raises(ValueError, match="policy.limits=None"):
        PolicyController(policy)
    ctrl = PolicyController(policy, limits=CommandLimits(), image_shape=(H, W, 3))
    assert ctrl.limits == CommandLimits()


def test_raw_command_is_the_policy_output_before_limits():
    ctrl, clock = make(limits=CommandLimits(max_horizontal=0.1))
    clock.t += 1.0
    cmd = ctrl.step(frame(255), 1.0)
    np.testing.assert_allclose(ctrl.raw_command, [1.0, -1.0, 0.5, 1.0], atol=1e-6)
    assert cmd.forward == pytest.approx(0.1)
