"""`lnn-nav fly-mavlink`: fly a policy on a MAVLink vehicle (PX4, ArduPilot)."""

from __future__ import annotations

import argparse
import sys

from lnn_nav.bridges.mavlink import BridgeConfig


def run(args: argparse.Namespace) -> int:
    from lnn_nav.bridges.camera_source import open_camera
    from lnn_nav.bridges.mavlink import fly_mavlink
    from lnn_nav.controller import PolicyController
    from lnn_nav.models.policy import NavPolicy
    from lnn_nav.rollout import policy_camera
    from lnn_nav.sim.envs import FlyToTargetConfig
    from lnn_nav.sim.quadsim import QuadSimConfig

    config = BridgeConfig(
        rate_hz=args.rate_hz,
        heartbeat_timeout_s=args.heartbeat_timeout_s,
        connect_timeout_s=args.connect_timeout_s,
        source_system=args.source_system,
        duration_s=args.duration_s,
    )
    import torch

    # an entry point may set global state: one frame per step runs fastest on
    # one intra-op thread (a second only contends on a small onboard CPU)
    torch.set_num_threads(args.threads)
    policy = NavPolicy.load(args.policy)
    controller = PolicyController(policy, stale_timeout_s=args.stale_timeout_s)
    if controller.image_shape is None:
        raise ValueError(f"policy {args.policy} declares no image size")
    h, w, _ = controller.image_shape
    # the simulated camera is the one the policy was trained behind
    env_kwargs = {"family": args.family, "split": args.split,
                  "config": FlyToTargetConfig(sim=QuadSimConfig(camera=policy_camera(policy)))}
    camera = open_camera(args.camera, (h, w), seed=args.seed, env_kwargs=env_kwargs, loop=args.loop)
    try:
        report = fly_mavlink(controller, camera, args.connect, config)
    except TimeoutError as exc:
        print(f"lnn-nav fly-mavlink: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lnn-nav fly-mavlink: interrupted; set-points stopped", file=sys.stderr)
        return 130
    return 0 if report.steps > 0 else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fly-mavlink",
        help="stream a policy's velocity set-points to a MAVLink autopilot",
        description=(
            "Waits for an autopilot heartbeat, then streams SET_POSITION_TARGET_LOCAL_NED "
            "(velocity and yaw rate, MAV_FRAME_BODY_NED) computed by the policy from camera "
            "frames. Stops commanding when the autopilot's heartbeat is lost for more than "
            "--heartbeat-timeout-s. Arming and the offboard/guided mode switch stay with the pilot."
        ),
    )
    p.add_argument("--policy", required=True, help="policy checkpoint (NavPolicy.save)")
    p.add_argument(
        "--connect",
        default="udpout:127.0.0.1:14540",
        help="pymavlink connection string (default: %(default)s, PX4 SITL's offboard port)",
    )
    p.add_argument(
        "--camera",
        default="sim",
        help="'sim' (simulator onboard camera, default), an OpenCV device index, or a video file",
    )
    p.add_argument("--loop", action="store_true", help="restart a video file at its end")
    p.add_argument("--rate-hz", type=float, default=30.0, help="set-point rate, >= 20 (default 30)")
    p.add_argument("--heartbeat-timeout-s", type=float, default=1.0)
    p.add_argument("--connect-timeout-s", type=float, default=30.0)
    p.add_argument("--stale-timeout-s", type=float, default=0.3,
                   help="controller watchdog: hover when the last frame is older (s)")
    p.add_argument("--duration-s", type=float, default=None, help="stop after this long (s)")
    p.add_argument("--source-system", type=int, default=1, help="our MAVLink system id")
    p.add_argument("--family", default="forest", help="scene family of the simulated camera")
    p.add_argument("--split", default="unseen", help="split of the simulated camera's scenes")
    p.add_argument("--seed", type=int, default=0, help="first scene seed of the simulated camera")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.set_defaults(func=run)
