"""The closed-loop controller: one camera frame and the elapsed time in, one
velocity command out, with the recurrent state carried between calls.

`PolicyController` is the only object that drives a policy closed-loop:
evaluation, the MAVLink bridge and any onboard loop all call `step`. It never
imports the simulator, because it runs on a vehicle too.

What it adds around the policy's own `step`:

- input validation (image shape and dtype, dt) with errors that name the value;
- command limits (clipping) and slew-rate limits (bounded change per second);
- a watchdog: a non-finite policy output, or no new frame within
  `stale_timeout_s` of the injectable clock, gives the safe hover command and
  raises a fault flag (`fault`, `fault_message`) that the caller can read.

Frames and units: images uint8 RGB (H, W, 3); dt in seconds; commands body FLU,
m/s and rad/s (`VelocityCommand`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from lnn_nav.command import CommandLimits, VelocityCommand


class StepPolicy(Protocol):
    """What the controller needs from a policy (`lnn_nav.models.policy.NavPolicy`
    satisfies it; so can any module with the same three members)."""

    limits: CommandLimits

    def init_state(self, batch: int) -> torch.Tensor:
        """(batch, S) float32: the recurrent state before the first frame."""
        ...

    def step(
        self, image: torch.Tensor, state: torch.Tensor, dt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, H, W, 3) uint8, state (B, S), dt (B, 1) s ->
        (command (B, 4) body FLU m/s and rad/s, next state (B, S))."""
        ...


@dataclass(frozen=True)
class SlewLimits:
    """Bounds on how fast the command may change, per second of elapsed time."""

    max_horizontal_accel: float = 4.0
    """m/s^2, bound on the change rate of forward and of left (each axis)."""
    max_vertical_accel: float = 2.0
    """m/s^2, bound on the change rate of up."""
    max_yaw_accel: float = 8.0
    """rad/s^2, bound on the change rate of yaw_rate."""

    def __post_init__(self) -> None:
        for name in ("max_horizontal_accel", "max_vertical_accel", "max_yaw_accel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, (int, float)) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"SlewLimits.{name}={value!r}: expected a finite number > 0")

    def rate(self) -> np.ndarray:
        """(4,) float64: the bound on d(command)/dt of each axis, in command order."""
        return np.array(
            [
                self.max_horizontal_accel,
                self.max_horizontal_accel,
                self.max_vertical_accel,
                self.max_yaw_accel,
            ]
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> SlewLimits:
        known = {"max_horizontal_accel", "max_vertical_accel", "max_yaw_accel"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SlewLimits keys {sorted(unknown)}; expected {sorted(known)}")
        return cls(**{k: float(v) for k, v in d.items()})


class Fault(str, Enum):
    """Why the controller is not flying the policy's command right now."""

    NONE = "none"
    NO_FRAME = "no_frame"
    """No frame has been stepped since construction or `reset()`."""
    STALE_FRAME = "stale_frame"
    """The last frame is older than `stale_timeout_s`."""
    NON_FINITE_OUTPUT = "non_finite_output"
    """The policy produced a NaN or infinite command or state."""


class ControllerStatus(NamedTuple):
    """A snapshot of the watchdog, for logs and telemetry."""

    fault: Fault
    message: str
    steps: int
    """frames stepped since the last reset"""
    frame_age_s: float | None
    """s since the last `step` by the controller's clock; None before the first"""
    fault_counts: dict[str, int]
    """how often each fault was raised since construction"""


def _policy_image_shape(policy: Any) -> tuple[int, int, int] | None:
    """The (H, W, 3) image shape a policy declares, if it declares one."""
    shape = getattr(policy, "image_shape", None)
    if shape is not None:
        return tuple(int(v) for v in shape)  # type: ignore[return-value]
    config = getattr(policy, "config", None)
    encoder_cfg = getattr(config, "encoder", None)
    for cfg in (encoder_cfg, config):
        if cfg is None:
            continue
        size = getattr(cfg, "image_size", None)
        if size is None:
            continue
        if isinstance(size, int):
            return (size, size, 3)
        h, w = (int(v) for v in size)
        return (h, w, 3)
    return None


def _policy_slew_limits(policy: Any) -> SlewLimits | None:
    """Slew limits the policy's config carries (`config.slew_limits`), if any."""
    config = getattr(policy, "config", None)
    slew = getattr(config, "slew_limits", None)
    if slew is None or isinstance(slew, SlewLimits):
        return slew
    if isinstance(slew, dict):
        return SlewLimits.from_dict(slew)
    return SlewLimits(
        **{k: float(getattr(slew, k)) for k in SlewLimits.__dataclass_fields__}  # type: ignore[arg-type]
    )


class PolicyController:
    """Drives a policy one frame at a time, with validation, limits and a watchdog.

    Use:
        ctrl = PolicyController(policy)
        ctrl.reset()
        cmd = ctrl.step(image, dt)   # image (H, W, 3) uint8 RGB, dt seconds since last frame
        if ctrl.fault is not Fault.NONE: log(ctrl.fault_message)

    A loop that sends commands faster than frames arrive calls `command()` at
    its own rate: it returns the last command while the frame is fresh and
    hover (with `Fault.STALE_FRAME`) once no `step` came within
    `stale_timeout_s`.

    Not thread-safe: call it from one thread.
    """

    def __init__(
        self,
        policy: StepPolicy,
        limits: CommandLimits | None = None,
        slew: SlewLimits | None = None,
        stale_timeout_s: float = 0.3,
        image_shape: tuple[int, int, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        policy: a `StepPolicy` (e.g. `NavPolicy`); put in eval mode here.
        limits: command bounds; default: the policy's own `limits`.
        slew: change-rate bounds; default: the policy config's `slew_limits`
            if it has them, else `SlewLimits()`.
        stale_timeout_s: s; a frame older than this is stale (watchdog).
        image_shape: (H, W, 3) expected from the camera; default: the policy's.
        clock: monotonic seconds; injectable so tests control time.
        """
        if isinstance(stale_timeout_s, bool) or not (
            isinstance(stale_timeout_s, (int, float))
            and math.isfinite(stale_timeout_s)
            and stale_timeout_s > 0
        ):
            raise ValueError(f"stale_timeout_s={stale_timeout_s!r}: expected a finite number > 0 s")
        self.policy = policy
        if isinstance(policy, torch.nn.Module):
            policy.eval()
        policy_limits = getattr(policy, "limits", None)
        if limits is None:
            if not isinstance(policy_limits, CommandLimits):
                raise ValueError(
                    f"policy.limits={policy_limits!r}: expected a CommandLimits, or pass limits="
                )
            limits = policy_limits
        self.limits: CommandLimits = limits
        self.slew: SlewLimits = slew or _policy_slew_limits(policy) or SlewLimits()
        self.stale_timeout_s = float(stale_timeout_s)
        shape = image_shape if image_shape is not None else _policy_image_shape(policy)
        if shape is not None and (len(shape) != 3 or shape[2] != 3 or min(shape) <= 0):
            raise ValueError(f"image_shape={shape!r}: expected (H, W, 3) with H, W > 0")
        self.image_shape: tuple[int, int, int] | None = (
            tuple(int(v) for v in shape) if shape is not None else None  # type: ignore[assignment]
        )
        self._clock = clock
        self._scale_list: list[float] = self.limits.scale().tolist()
        self._rate_list: list[float] = self.slew.rate().tolist()
        self._fault_counts: dict[str, int] = {f.value: 0 for f in Fault if f is not Fault.NONE}
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Start a new episode: initial recurrent state, hover, no frame yet."""
        with torch.inference_mode():
            self._state = self.policy.init_state(1)
        self._last_cmd = np.zeros(4)
        self._last_raw = np.zeros(4)
        self._last_step_time: float | None = None
        self._steps = 0
        self._fault = Fault.NO_FRAME
        self._fault_message = "no frame stepped since reset"

    @property
    def state(self) -> torch.Tensor:
        """(1, S) float32: the recurrent state after the last step (read-only copy)."""
        return self._state.clone()

    @property
    def raw_command(self) -> np.ndarray:
        """(4,) float64: the policy's output at the last step, before limits,
        slew limiting and the watchdog (body FLU, m/s and rad/s); for logs."""
        return self._last_raw.copy()

    @property
    def fault(self) -> Fault:
        """The watchdog flag as of the last `step` or `command` call."""
        return self._fault

    @property
    def fault_message(self) -> str:
        """A readable sentence for the current fault ('' when none)."""
        return self._fault_message

    def status(self) -> ControllerStatus:
        now = self._clock()
        age = None if self._last_step_time is None else now - self._last_step_time
        return ControllerStatus(
            self._fault, self._fault_message, self._steps, age, dict(self._fault_counts)
        )

    def _raise_fault(self, fault: Fault, message: str) -> None:
        if self._fault is not fault:
            # count transitions into a fault, not every call spent in it
            self._fault_counts[fault.value] += 1
        self._fault = fault
        self._fault_message = message

    # --------------------------------------------------------------- checking
    def _check_image(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray):
            raise ValueError(
                f"image of type {type(image).__name__}: expected a numpy uint8 array (H, W, 3) RGB"
            )
        if image.dtype.kind in "fc":
            bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
            if bad:
                raise ValueError(
                    f"image has {bad} non-finite pixels (dtype {image.dtype}): "
                    "expected finite uint8 RGB pixels"
                )
        if image.dtype != np.uint8:
            raise ValueError(f"image dtype {image.dtype}: expected uint8 RGB (H, W, 3)")
        expected = self.image_shape
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image shape {image.shape}: expected (H, W, 3) RGB")
        if expected is not None and image.shape != expected:
            raise ValueError(f"image shape {image.shape}: expected {expected} (H, W, 3) RGB")
        return image

    @staticmethod
    def _check_dt(dt: float) -> float:
        if isinstance(dt, bool) or not isinstance(dt, (int, float, np.integer, np.floating)):
            raise ValueError(f"dt={dt!r}: expected a finite number of seconds > 0")
        value = float(dt)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"dt={value!r}: expected a finite number of seconds > 0")
        return value

    # ---------------------------------------------------------------- running
    def step(self, image: np.ndarray, dt: float) -> VelocityCommand:
        """One control step.

        image: (H, W, 3) uint8 RGB, the newest camera frame.
        dt: s, real elapsed time since the previous frame (any value > 0 on
            the first frame; the policy integrates over it).
        Returns the command to fly now, body FLU, clipped to the limits and
        slew-limited; hover if the policy output is not finite (then `fault`
        is `Fault.NON_FINITE_OUTPUT` and the recurrent state is re-initialised,
        because a non-finite state would poison every later step).
        """
        image = self._check_image(image)
        dt_s = self._check_dt(dt)
        now = self._clock()
        if self._last_step_time is not None and now - self._last_step_time > self.stale_timeout_s:
            # The gap was an outage even if no `command()` call saw it: count it,
            # and slew up from hover, which is what the vehicle should have flown.
            self._fault_counts[Fault.STALE_FRAME.value] += int(self._fault is not Fault.STALE_FRAME)
            self._last_cmd = np.zeros(4)
        if not image.flags.c_contiguous:
            image = np.ascontiguousarray(image)
        with torch.inference_mode():
            img_t = torch.from_numpy(image).unsqueeze(0)
            dt_t = torch.full((1, 1), dt_s, dtype=torch.float32)
            cmd_t, next_state = self.policy.step(img_t, self._state, dt_t)
            raw = cmd_t.reshape(-1).double().numpy()
            finite_state = bool(torch.isfinite(next_state).all())
        if raw.shape != (4,):
            raise ValueError(
                f"policy returned a command of shape {tuple(cmd_t.shape)}: expected (1, 4)"
            )
        self._last_step_time = now
        self._steps += 1
        self._last_raw = raw.copy()
        if not (np.isfinite(raw).all() and finite_state):
            self._raise_fault(
                Fault.NON_FINITE_OUTPUT,
                f"policy output not finite at step {self._steps} (command {raw.tolist()}, "
                f"state finite: {finite_state}); flying hover and re-initialising the state",
            )
            with torch.inference_mode():
                self._state = self.policy.init_state(1)
            self._last_cmd = np.zeros(4)
            return VelocityCommand.hover()
        self._state = next_state
        # four axes: plain Python arithmetic is several times cheaper than numpy here
        out = []
        for r, prev, bound, rate in zip(
            raw.tolist(), self._last_cmd.tolist(), self._scale_list, self._rate_list
        ):
            target = min(max(r, -bound), bound)
            step = rate * dt_s
            out.append(prev + min(max(target - prev, -step), step))
        self._last_cmd = np.array(out)
        self._fault = Fault.NONE
        self._fault_message = ""
        return VelocityCommand(*out)

    def command(self) -> VelocityCommand:
        """The command to fly now, for a loop that sends faster than frames come.

        The last step's command while the frame is fresh; hover, with
        `Fault.STALE_FRAME` (or `Fault.NO_FRAME` before the first step), once
        the last `step` is older than `stale_timeout_s` by the clock.
        """
        if self._last_step_time is None:
            self._raise_fault(Fault.NO_FRAME, "no frame stepped since reset; flying hover")
            return VelocityCommand.hover()
        age = self._clock() - self._last_step_time
        if age > self.stale_timeout_s:
            self._raise_fault(
                Fault.STALE_FRAME,
                f"last frame is {age:.3f} s old (timeout {self.stale_timeout_s:.3f} s); "
                "flying hover",
            )
            # resume from hover, not from the old command, when frames return
            self._last_cmd = np.zeros(4)
            return VelocityCommand.hover()
        if self._fault is Fault.NON_FINITE_OUTPUT:
            return VelocityCommand.hover()
        c = self._last_cmd
        return VelocityCommand(float(c[0]), float(c[1]), float(c[2]), float(c[3]))
