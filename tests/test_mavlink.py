"""MAVLink bridge against a pymavlink peer on loopback, and the camera sources."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lnn_nav.bridges.camera_source import OpenCVSource, open_camera, to_policy_image
from lnn_nav.bridges.mavlink import (
    MAV_FRAME_BODY_NED,
    TYPE_MASK_VELOCITY_YAW_RATE,
    BridgeConfig,
    flu_to_frd,
    fly_mavlink,
)
from lnn_nav.command import CommandLimits, VelocityCommand
from lnn_nav.controller import PolicyController, SlewLimits

mavutil = pytest.importorskip("pymavlink.mavutil")
mavlink = mavutil.mavlink

IMG = (32, 32)
COMMAND_FLU = (0.8, 0.3, -0.2, 0.4)  # forward, left, up m/s; yaw rate rad/s (left turn)


class ConstantPolicy(torch.nn.Module):
    """Always commands COMMAND_FLU, so the peer knows what it must receive."""

    limits = CommandLimits()

    def init_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 2)

    def step(self, image, state, dt):
        cmd = torch.tensor([COMMAND_FLU], dtype=torch.float32).expand(image.shape[0], 4)
        return cmd, state + dt


def write_video(path: Path, n: int, fps: float = 30.0, size=(48, 64)) -> list[np.ndarray]:
    """An MJPG .avi of n frames (h, w) = size whose colour changes each frame; returns BGR frames."""
    import cv2

    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "OpenCV could not open an MJPG writer"
    frames = []
    for i in range(n):
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[..., 2] = 200  # red in BGR order
        bgr[..., 1] = (i * 7) % 256
        writer.write(bgr)
        frames.append(bgr)
    writer.release()
    return frames


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mavlink_constants_match_pymavlink():
    assert MAV_FRAME_BODY_NED == mavlink.MAV_FRAME_BODY_NED
    expected = (
        mavlink.POSITION_TARGET_TYPEMASK_X_IGNORE
        | mavlink.POSITION_TARGET_TYPEMASK_Y_IGNORE
        | mavlink.POSITION_TARGET_TYPEMASK_Z_IGNORE
        | mavlink.POSITION_TARGET_TYPEMASK_AX_IGNORE
        | mavlink.POSITION_TARGET_TYPEMASK_AY_IGNORE
        | mavlink.POSITION_TARGET_TYPEMASK_AZ_IGNORE
        | mavlink.POSITION_TARGET_TYPEMASK_YAW_IGNORE
    )
    assert TYPE_MASK_VELOCITY_YAW_RATE == expected
    # velocity and yaw rate are used
    for bit in ("VX", "VY", "VZ", "YAW_RATE"):
        assert not TYPE_MASK_VELOCITY_YAW_RATE & getattr(
            mavlink, f"POSITION_TARGET_TYPEMASK_{bit}_IGNORE"
        )


def test_flu_to_frd():
    # forward stays; left 0.3 is right -0.3; up 0.5 is down -0.5; a left
    # (counter-clockwise from above) turn is a negative rate about down
    assert flu_to_frd(VelocityCommand(1.0, 0.3, 0.5, 0.2)) == (1.0, -0.3, -0.5, -0.2)
    assert flu_to_frd(VelocityCommand.hover()) == (0.0, -0.0, -0.0, -0.0)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"rate_hz": 10.0}, "rate_hz=10.0"),
        ({"heartbeat_timeout_s": 0.0}, "heartbeat_timeout_s"),
        ({"source_system": 0}, "source_system=0"),
        ({"duration_s": -1.0}, "duration_s"),
    ],
)
def test_bridge_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        BridgeConfig(**kw)


def test_opencv_video_source(tmp_path):
    path = tmp_path / "clip.avi"
    bgr = write_video(path, 10)
    src = OpenCVSource(path, IMG, loop=True)
    assert src.fps == pytest.approx(30.0)
    frames = [src.read() for _ in range(25)]
    src.close()
    assert all(f is not None for f in frames)
    first = frames[0].image
    assert first.shape == (*IMG, 3) and first.dtype == np.uint8
    # RGB order: the red channel carries the 200 written into BGR's third plane
    expected = to_policy_image(bgr[0], IMG)
    assert expected[..., 0].mean() > 150 and expected[..., 2].mean() < 30
    assert np.abs(first.astype(int) - expected.astype(int)).mean() < 8  # JPEG loss
    stamps = np.array([f.stamp_s for f in frames])
    # media time, one frame period apart, still increasing across the loop
    np.testing.assert_allclose(np.diff(stamps), 1.0 / 30.0, atol=1e-3)


def test_open_camera_rejects_bad_spec(tmp_path):
    with pytest.raises(ValueError, match="expected 'sim', an OpenCV device index"):
        open_camera(str(tmp_path / "missing.mp4"), IMG)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OpenCVSource(tmp_path / "missing.avi", IMG)
    with pytest.raises(ValueError, match="image_size"):
        OpenCVSource(tmp_path / "missing.avi", (0, 32))


def test_bridge_loopback_with_pymavlink_peer(tmp_path):
    """Frame, type mask, values, >= 20 Hz, and the stop on heartbeat loss
    (and the resume when heartbeats return), seen from the autopilot's side."""
    video = tmp_path / "clip.avi"
    write_video(video, 30)
    port = free_udp_port()
    peer = mavutil.mavlink_connection(
        f"udpin:127.0.0.1:{port}", source_system=1, source_component=1
    )
    ctrl = PolicyController(
        ConstantPolicy(), slew=SlewLimits(1e3, 1e3, 1e3), image_shape=(*IMG, 3)
    )
    camera = OpenCVSource(video, IMG, loop=True)
    stop = threading.Event()
    said: list[str] = []
    result: dict[str, object] = {}

    def bridge() -> None:
        try:
            result["report"] = fly_mavlink(
                ctrl,
                camera,
                f"udpout:127.0.0.1:{port}",
                BridgeConfig(rate_hz=30.0, heartbeat_timeout_s=1.0, connect_timeout_s=10.0),
                stop=stop,
                log=said.append,
            )
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the main thread below
            result["error"] = exc

    thread = threading.Thread(target=bridge, daemon=True)
    thread.start()
    received: list[tuple[float, object]] = []
    first_setpoint: list[float] = []

    def pump(seconds: float, heartbeats: bool) -> None:
        end = time.monotonic() + seconds
        last_hb = 0.0
        while time.monotonic() < end:
            now = time.monotonic()
            if heartbeats and now - last_hb >= 0.2:
                peer.mav.heartbeat_send(
                    mavlink.MAV_TYPE_QUADROTOR, mavlink.MAV_AUTOPILOT_PX4, 0, 0, 0
                )
                last_hb = now
            msg = peer.recv_match(type="SET_POSITION_TARGET_LOCAL_NED", blocking=True, timeout=0.02)
            if msg is not None:
                received.append((time.monotonic(), msg))
                if not first_setpoint:
                    first_setpoint.append(time.monotonic())

    try:
        # until the bridge streams (it sends its heartbeat first so udpin learns its address)
        deadline = time.monotonic() + 10.0
        while not first_setpoint and time.monotonic() < deadline and "error" not in result:
            pump(0.1, heartbeats=True)
        assert first_setpoint, f"no set-point arrived; bridge said {said}, result {result}"
        pump(1.5, heartbeats=True)
        n_live = len(received)
        t_silence = time.monotonic()
        pump(2.2, heartbeats=False)
        n_after_silence = len(received)
        pump(1.0, heartbeats=True)
    finally:
        stop.set()
        thread.join(timeout=10.0)
        peer.close()
    assert "error" not in result, result.get("error")
    report = result["report"]

    live = [m for _, m in received[:n_live]]
    assert len(live) >= 20
    for m in (m for _, m in received):
        assert m.coordinate_frame == mavlink.MAV_FRAME_BODY_NED
        assert m.type_mask == TYPE_MASK_VELOCITY_YAW_RATE
        assert (m.target_system, m.target_component) == (1, 1)
    f, lft, up, yr = COMMAND_FLU
    for m in live:
        np.testing.assert_allclose([m.vx, m.vy, m.vz, m.yaw_rate], [f, -lft, -up, -yr], atol=1e-6)
    # rate from the bridge's own time stamps: median period at most 50 ms (20 Hz)
    periods_ms = np.diff([m.time_boot_ms for m in live])
    assert statistics.median(periods_ms) <= 50, periods_ms

    # after the heartbeats stop, set-points end within the 1 s timeout (+ slack for scheduling)
    silent = [t for t, _ in received[n_live:n_after_silence]]
    assert all(t <= t_silence + 1.0 + 0.5 for t in silent), [t - t_silence for t in silent]
    assert any("heartbeat lost" in s and "stopped commanding" in s for s in said), said
    # and they come back with the heartbeats
    assert len(received) > n_after_silence
    assert any("heartbeat back" in s for s in said), said
    assert report.link_losses == 1
    assert report.setpoints_sent >= len(received)


def test_cli_fly_mavlink_streams_a_saved_policy(tmp_path):
    """`lnn-nav fly-mavlink --policy P --connect udpout:... --camera VIDEO` with a
    fresh default policy: set-points arrive, within the policy's limits."""
    policy_mod = pytest.importorskip("lnn_nav.models.policy")
    from lnn_nav.cli import main as cli_main

    torch.manual_seed(0)
    policy = policy_mod.NavPolicy(policy_mod.default_policy_config())
    ckpt = policy.save(tmp_path / "policy.pt")
    video = tmp_path / "clip.avi"
    write_video(video, 30, size=(64, 64))
    port = free_udp_port()
    peer = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}", source_system=1, source_component=1)
    rc: list[int] = []
    argv = ["fly-mavlink", "--policy", str(ckpt), "--connect", f"udpout:127.0.0.1:{port}",
            "--camera", str(video), "--loop", "--duration-s", "2.0", "--connect-timeout-s", "20"]
    thread = threading.Thread(target=lambda: rc.append(cli_main(argv)), daemon=True)
    thread.start()
    got = []
    deadline = time.monotonic() + 30.0
    last_hb = 0.0
    try:
        while thread.is_alive() and time.monotonic() < deadline:
            if time.monotonic() - last_hb > 0.2:
                peer.mav.heartbeat_send(mavlink.MAV_TYPE_QUADROTOR, mavlink.MAV_AUTOPILOT_PX4, 0, 0, 0)
                last_hb = time.monotonic()
            msg = peer.recv_match(type="SET_POSITION_TARGET_LOCAL_NED", blocking=True, timeout=0.05)
            if msg is not None:
                got.append(msg)
        thread.join(timeout=10.0)
    finally:
        peer.close()
    assert rc == [0]
    assert len(got) >= 20
    lim = policy.limits
    for m in got:
        assert m.coordinate_frame == mavlink.MAV_FRAME_BODY_NED
        assert abs(m.vx) <= lim.max_horizontal + 1e-6 and abs(m.vy) <= lim.max_horizontal + 1e-6
        assert abs(m.vz) <= lim.max_vertical + 1e-6 and abs(m.yaw_rate) <= lim.max_yaw_rate + 1e-6
    assert any(abs(m.vx) > 0 or abs(m.yaw_rate) > 0 for m in got)
