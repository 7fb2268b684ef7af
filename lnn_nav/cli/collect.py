"""`lnn-nav collect`: expert demonstrations on disk (see `lnn_nav.collect`)."""

from __future__ import annotations

import argparse

from lnn_nav.collect import collect
from lnn_nav.expert import TASKS


def run(args: argparse.Namespace) -> int:
    camera = None
    if args.camera_of is not None:
        from lnn_nav.models.policy import NavPolicy, PolicyConfig
        from lnn_nav.rollout import policy_camera

        camera = policy_camera(PolicyConfig.from_dict(NavPolicy.file_info(args.camera_of)["config"]))
    summary = collect(
        args.family, args.split, args.episodes, args.out,
        noise=args.noise, workers=args.workers, task=args.task, camera=camera,
        progress=not args.quiet,
    )
    terms = ", ".join(f"{k} {v}" for k, v in sorted(summary.terminations.items())) or "none"
    print(
        f"{summary.out_dir}: {summary.collected} episodes collected ({summary.steps} frames; {terms}), "
        f"{summary.skipped} already on disk, {summary.removed_partial} partial files removed"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect", help="fly the privileged expert and write demonstrations (resumable)",
        description="Fly the privileged expert on scenes 0..N-1 of a split and write one episode "
        "file per scene plus manifest.json. Run it again to resume a killed collection.",
    )
    p.add_argument("--family", required=True, help="scene family name (envs/NAME.yaml) or a path to a family file")
    p.add_argument("--split", required=True, help="split of the family (train, val, unseen, ...)")
    p.add_argument("--episodes", type=int, required=True, help="number of scenes (indices 0..N-1)")
    p.add_argument("--out", required=True, help="dataset directory")
    p.add_argument("--noise", type=float, default=0.0,
                   help="DART noise std on the flown command, fraction of the command limits (default 0)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--task", choices=TASKS, default="fly", help="fly (FlyToTarget) or follow (FollowTarget)")
    p.add_argument("--camera-of", metavar="POLICY", default=None,
                   help="fly behind the camera (image size, field of view) this policy file takes "
                   "frames from (default: the environment's default camera)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
