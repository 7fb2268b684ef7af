"""MAVLink bridge: fly a policy on a PX4 or ArduPilot vehicle from a companion
computer.

The bridge waits for the autopilot's heartbeat, then at `rate_hz` (>= 20 Hz)
reads a camera frame, steps the `PolicyController` with the real elapsed time
and streams the command as SET_POSITION_TARGET_LOCAL_NED: velocity and yaw
rate in MAV_FRAME_BODY_NED, position, acceleration and yaw ignored by the type
mask. When the autopilot's heartbeats stop for more than
`heartbeat_timeout_s`, it stops commanding, says so, and resumes (with a fresh
controller state) when they return; the autopilot's own offboard-loss
failsafe takes over meanwhile.

Frames: the policy speaks body FLU (x forward, y left, z up, yaw rate positive
to the left); MAVLink's body frame is FRD (x forward, y right, z down, yaw
rate positive to the right). `flu_to_frd` is the one place that converts.

The bridge does not arm the vehicle or switch it to offboard/guided mode: the
pilot does, after the stream has started (PX4 needs setpoints before it
accepts offboard mode).

pymavlink is imported lazily; install it with `pip install pymavlink`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lnn_nav.bridges.camera_source import CameraSource
from lnn_nav.command import VelocityCommand
from lnn_nav.controller import Fault, PolicyController

# MAVLink enum values, spelled out so that this module imports without pymavlink;
# tests check them against pymavlink's constants.
MAV_FRAME_BODY_NED = 8
POSITION_TARGET_TYPEMASK_X_IGNORE = 1
POSITION_TARGET_TYPEMASK_Y_IGNORE = 2
POSITION_TARGET_TYPEMASK_Z_IGNORE = 4
POSITION_TARGET_TYPEMASK_AX_IGNORE = 64
POSITION_TARGET_TYPEMASK_AY_IGNORE = 128
POSITION_TARGET_TYPEMASK_AZ_IGNORE = 256
POSITION_TARGET_TYPEMASK_YAW_IGNORE = 1024

TYPE_MASK_VELOCITY_YAW_RATE = (
    POSITION_TARGET_TYPEMASK_X_IGNORE
    | POSITION_TARGET_TYPEMASK_Y_IGNORE
    | POSITION_TARGET_TYPEMASK_Z_IGNORE
    | POSITION_TARGET_TYPEMASK_AX_IGNORE
    | POSITION_TARGET_TYPEMASK_AY_IGNORE
    | POSITION_TARGET_TYPEMASK_AZ_IGNORE
    | POSITION_TARGET_TYPEMASK_YAW_IGNORE
)
"""Use vx, vy, vz and yaw_rate only (= 1479)."""

MAV_TYPE_GCS = 6
MAV_TYPE_ONBOARD_CONTROLLER = 18
MAV_AUTOPILOT_INVALID = 8
MAV_COMP_ID_ONBOARD_COMPUTER = 191


def flu_to_frd(cmd: VelocityCommand) -> tuple[float, float, float, float]:
    """Body FLU command -> MAVLink body FRD set-point.

    Returns (vx forward m/s, vy right m/s, vz down m/s, yaw_rate rad/s positive
    clockwise seen from above). Left becomes -right, up becomes -down, and a
    left (counter-clockwise) turn becomes a negative yaw rate about down.
    """
    return (cmd.forward, -cmd.left, -cmd.up, -cmd.yaw_rate)


@dataclass(frozen=True)
class BridgeConfig:
    """Knobs of the MAVLink bridge."""

    rate_hz: float = 30.0
    """Hz, set-point stream and control rate; at least 20 (PX4 drops offboard below 2)."""
    heartbeat_timeout_s: float = 1.0
    """s without an autopilot heartbeat after which commanding stops."""
    connect_timeout_s: float = 30.0
    """s to wait for the first autopilot heartbeat before giving up."""
    source_system: int = 1
    """our MAVLink system id (a companion computer shares the vehicle's)."""
    source_component: int = MAV_COMP_ID_ONBOARD_COMPUTER
    """our MAVLink component id."""
    duration_s: float | None = None
    """s to run after the link is up; None runs until stopped or the camera ends."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_hz) and self.rate_hz >= 20.0):
            raise ValueError(f"rate_hz={self.rate_hz!r}: expected a finite rate >= 20 Hz")
        for name in ("heartbeat_timeout_s", "connect_timeout_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name}={v!r}: expected a finite number of seconds > 0")
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise ValueError(f"duration_s={self.duration_s!r}: expected None or seconds > 0")
        for name in ("source_system", "source_component"):
            v = getattr(self, name)
            if not (isinstance(v, int) and 1 <= v <= 255):
                raise ValueError(f"{name}={v!r}: expected an integer in [1, 255]")


@dataclass
class BridgeReport:
    """What happened during a bridge run."""

    target_system: int = 0
    target_component: int = 0
    steps: int = 0
    """controller steps (frames used)"""
    setpoints_sent: int = 0
    link_losses: int = 0
    """times the autopilot's heartbeat stopped for longer than the timeout"""
    end_reason: str = ""
    events: list[str] = field(default_factory=list)
    """the sentences the bridge said, in order"""


def _import_mavutil() -> Any:
    try:
        from pymavlink import mavutil
    except ImportError as exc:
        raise ImportError(
            "the MAVLink bridge needs pymavlink: pip install pymavlink "
            "(or install lnn-nav with its test extras)"
        ) from exc
    return mavutil


class MavlinkBridge:
    """Streams a `PolicyController`'s commands to an autopilot over MAVLink."""

    def __init__(
        self,
        controller: PolicyController,
        camera: CameraSource,
        connect: str,
        config: BridgeConfig | None = None,
        log: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        controller: drives the policy (validation, limits, watchdog).
        camera: where frames come from; told every command sent (`apply`).
        connect: a pymavlink connection string, e.g. "udpout:127.0.0.1:14540",
            "udpin:0.0.0.0:14550", "/dev/ttyACM0,921600" (serial,baud).
        """
        self.controller = controller
        self.camera = camera
        self.config = config or BridgeConfig()
        self.connect = connect
        self._log = log
        self._clock = clock
        self.report = BridgeReport()
        self._conn: Any = None
        self._t0 = clock()
        self._last_own_heartbeat = -math.inf

    # ---------------------------------------------------------------- helpers
    def _say(self, text: str) -> None:
        self.report.events.append(text)
        self._log(f"fly-mavlink: {text}")

    def _time_boot_ms(self) -> int:
        return int((self._clock() - self._t0) * 1000.0) & 0xFFFFFFFF

    def _send_own_heartbeat(self, now: float, period_s: float) -> None:
        # a companion computer announces itself; over udpout this first packet
        # is also what tells the autopilot where to send its stream
        if now - self._last_own_heartbeat >= period_s:
            self._conn.mav.heartbeat_send(MAV_TYPE_ONBOARD_CONTROLLER, MAV_AUTOPILOT_INVALID, 0, 0, 0)
            self._last_own_heartbeat = now

    def _is_autopilot_heartbeat(self, msg: Any) -> bool:
        if msg.get_type() != "HEARTBEAT":
            return False
        if msg.type in (MAV_TYPE_GCS, MAV_TYPE_ONBOARD_CONTROLLER):
            return False
        return not (
            msg.get_srcSystem() == self.config.source_system
            and msg.get_srcComponent() == self.config.source_component
        )

    def send_command(self, cmd: VelocityCommand) -> None:
        """One SET_POSITION_TARGET_LOCAL_NED: velocity and yaw rate, body frame."""
        vx, vy, vz, yaw_rate = flu_to_frd(cmd)
        self._conn.mav.set_position_target_local_ned_send(
            self._time_boot_ms(),
            self.report.target_system,
            self.report.target_component,
            MAV_FRAME_BODY_NED,
            TYPE_MASK_VELOCITY_YAW_RATE,
            0.0, 0.0, 0.0,  # position: ignored
            vx, vy, vz,
            0.0, 0.0, 0.0,  # acceleration: ignored
            0.0,  # yaw: ignored
            yaw_rate,
        )
        self.report.setpoints_sent += 1

    # ------------------------------------------------------------------- run
    def _wait_for_autopilot(self, stop: threading.Event) -> bool:
        deadline = self._clock() + self.config.connect_timeout_s
        self._say(f"waiting for an autopilot heartbeat on {self.connect}")
        while not stop.is_set():
            now = self._clock()
            if now > deadline:
                raise TimeoutError(
                    f"no autopilot heartbeat on {self.connect} within "
                    f"{self.config.connect_timeout_s:.1f} s"
                )
            self._send_own_heartbeat(now, 0.5)
            msg = self._conn.recv_match(type="HEARTBEAT", blocking=True, timeout=0.1)
            if msg is not None and self._is_autopilot_heartbeat(msg):
                self.report.target_system = msg.get_srcSystem()
                self.report.target_component = msg.get_srcComponent()
                self._say(
                    f"autopilot heartbeat from system {self.report.target_system} "
                    f"component {self.report.target_component}; streaming set-points "
                    f"at {self.config.rate_hz:g} Hz"
                )
                return True
        return False

    def _drain(self) -> float | None:
        """Read everything waiting; the time of the newest autopilot heartbeat, if any."""
        seen = None
        while True:
            msg = self._conn.recv_match(blocking=False)
            if msg is None:
                return seen
            if (
                self._is_autopilot_heartbeat(msg)
                and msg.get_srcSystem() == self.report.target_system
            ):
                seen = self._clock()

    def run(self, stop: threading.Event | None = None) -> BridgeReport:
        """Connect, wait for the autopilot, stream until stopped; returns the report.

        stop: set it (from another thread) to end the run cleanly.
        Raises TimeoutError when no autopilot heartbeat arrives in time.
        """
        stop = stop or threading.Event()
        mavutil = _import_mavutil()
        cfg = self.config
        self._conn = mavutil.mavlink_connection(
            self.connect,
            source_system=cfg.source_system,
            source_component=cfg.source_component,
        )
        try:
            if not self._wait_for_autopilot(stop):
                self.report.end_reason = "stopped before the autopilot answered"
                return self.report
            self._stream(stop)
        finally:
            self._conn.close()
        return self.report

    def _stream(self, stop: threading.Event) -> None:
        cfg = self.config
        period = 1.0 / cfg.rate_hz
        ctrl = self.controller
        ctrl.reset()
        start = self._clock()
        last_hb = start
        commanding = True
        prev_stamp: float | None = None
        last_fault = Fault.NONE
        next_tick = start
        while not stop.is_set():
            now = self._clock()
            if cfg.duration_s is not None and now - start >= cfg.duration_s:
                self.report.end_reason = f"ran for {cfg.duration_s:g} s"
                break
            hb = self._drain()
            if hb is not None:
                last_hb = hb
            silent = now - last_hb
            if commanding and silent > cfg.heartbeat_timeout_s:
                commanding = False
                self.report.link_losses += 1
                self._say(
                    f"autopilot heartbeat lost for {silent:.2f} s "
                    f"(> {cfg.heartbeat_timeout_s:g} s): stopped commanding"
                )
            elif not commanding and silent <= cfg.heartbeat_timeout_s:
                commanding = True
                ctrl.reset()  # the state integrated an outage nobody flew
                prev_stamp = None
                self._say("autopilot heartbeat back: resuming set-points from a fresh state")
            self._send_own_heartbeat(now, 1.0)

            frame = self.camera.read()
            if frame is None:
                self.report.end_reason = "camera stream ended"
                break
            if prev_stamp is None:
                dt = period  # first frame: no previous one to measure from
            else:
                dt = frame.stamp_s - prev_stamp
            if dt > 0:
                cmd = ctrl.step(frame.image, dt)
                self.report.steps += 1
                prev_stamp = frame.stamp_s
            else:
                # the source handed the same frame again: do not step the
                # policy twice on it; the watchdog ages it instead
                cmd = ctrl.command()
            if ctrl.fault is not last_fault:
                if ctrl.fault is not Fault.NONE:
                    self._say(f"controller fault {ctrl.fault.value}: {ctrl.fault_message}")
                else:
                    self._say("controller fault cleared")
                last_fault = ctrl.fault
            if commanding:
                self.send_command(cmd)
                self.camera.apply(cmd)
            else:
                self.camera.apply(VelocityCommand.hover())

            next_tick += period
            delay = next_tick - self._clock()
            if delay > 0:
                stop.wait(delay)
            elif delay < -period:
                next_tick = self._clock()  # fell behind: do not burst to catch up
        if not self.report.end_reason:
            self.report.end_reason = "stopped"
        self._say(
            f"{self.report.end_reason}: {self.report.steps} steps, "
            f"{self.report.setpoints_sent} set-points, {self.report.link_losses} link losses"
        )


def fly_mavlink(
    controller: PolicyController,
    camera: CameraSource,
    connect: str,
    config: BridgeConfig | None = None,
    stop: threading.Event | None = None,
    log: Callable[[str], None] = print,
) -> BridgeReport:
    """Run the bridge until stopped, the camera ends or `config.duration_s`; the
    camera is closed at the end."""
    try:
        return MavlinkBridge(controller, camera, connect, config, log).run(stop)
    finally:
        camera.close()
