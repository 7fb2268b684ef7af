"""`lnn-nav eval` (closed-loop evaluation, optionally the whole suite) and
`lnn-nav demo` (the shipped policy on unseen forest scenes, in a few minutes).
Both call `lnn_nav.evaluate.evaluate`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_POLICY_IN_REPO = Path("policies") / "ltc-ncp-forest" / "policy.pt"
"""Where the default trained LTC-NCP policy lies, relative to the repository root."""
SHIPPED_POLICY = REPO_ROOT / SHIPPED_POLICY_IN_REPO

DEMO_EPISODES = 10
"""Episodes of the demo: with 2 workers about a minute for a trained policy, and
under 3 minutes even if every episode runs to the 30 s time limit."""


def default_workers() -> int:
    """Worker processes by default: the CPU count, at most 2 (this project's machines)."""
    return max(1, min(2, os.cpu_count() or 1))


def _policy_label(policy: Path) -> str:
    return policy.parent.name if policy.stem == "policy" and policy.parent.name else policy.stem


def _print_report(paths: dict[str, Path], wall_time_s: float, episodes: int) -> None:
    print(paths["table"].read_text())
    print(f"{episodes} episodes in {wall_time_s:.0f} s")
    print(f"results: {paths['results']}")
    print(f"table:   {paths['table']}")
    print(f"plot:    {paths['plot']}")
    extra = [p for k, p in paths.items() if k.startswith("plots/") and p != paths["plot"]]
    if extra:
        print(f"         (+{len(extra)} more trajectories_*.png beside it)")
    if "video" in paths:
        print(f"video:   {paths['video']}")


def run_eval(args: argparse.Namespace) -> int:
    from lnn_nav.evaluate import EvalConfig, evaluate, single_condition, suite_conditions

    policy = Path(args.policy)
    if args.suite:
        conditions = suite_conditions(args.family, args.split)
    else:
        conditions = [single_condition(args.family, args.split, args.task)]
    config = EvalConfig(episodes=args.episodes, first_seed=args.first_seed, workers=args.workers,
                        time_limit_s=args.time_limit, video_episodes=args.video_episodes,
                        progress=not args.quiet)
    out = Path(args.out) if args.out else (
        Path("out") / "eval" / f"{_policy_label(policy)}_{'suite' if args.suite else Path(args.family).stem}"
        f"_{args.split}")
    run, paths = evaluate(policy, conditions, config, out)
    _print_report(paths, run.wall_time_s, sum(len(r.episodes) for r in run.results))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from lnn_nav.evaluate import EvalConfig, evaluate, single_condition

    policy = Path(args.policy) if args.policy else SHIPPED_POLICY
    if not policy.is_file():
        print(
            f"lnn-nav demo: the shipped policy {policy} is missing.\n"
            "It is produced by training (issue 'imitation': lnn_nav.train) and committed to "
            "policies/ltc-ncp-forest/. Until it exists, pass a policy file of your own: "
            "lnn-nav demo --policy PATH",
            file=sys.stderr,
        )
        return 2
    config = EvalConfig(episodes=args.episodes, workers=args.workers,
                        video_episodes=min(args.video_episodes, args.episodes), progress=not args.quiet)
    print(f"lnn-nav demo: flying {policy} closed-loop on {args.episodes} unseen forest scenes "
          f"({config.workers} worker{'s' if config.workers > 1 else ''}) ...")
    run, paths = evaluate(policy, [single_condition("forest", "unseen")], config, Path(args.out))
    _print_report(paths, run.wall_time_s, sum(len(r.episodes) for r in run.results))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from lnn_nav.evaluate import TASKS

    p = sub.add_parser(
        "eval", help="fly a policy closed-loop on unseen scenes and write a report",
        description="Fly a policy closed-loop (through PolicyController) on scenes "
        "FIRST_SEED..FIRST_SEED+EPISODES-1 of a family's split and write results.json, "
        "results.md, trajectory plots and an mp4. --suite adds every shipped family, "
        "image stress, 15/60 Hz control, 10%/30% frame drops and FollowTarget.",
    )
    p.add_argument("--policy", required=True, help="policy file (NavPolicy.save)")
    p.add_argument("--family", default="forest", help="scene family name or YAML path (default forest)")
    p.add_argument("--split", default="unseen", help="split of the family (default unseen)")
    p.add_argument("--task", choices=TASKS, default="fly",
                   help="fly (FlyToTarget) or follow (FollowTarget); ignored with --suite")
    p.add_argument("--episodes", type=int, default=100, help="episodes per condition (default 100)")
    p.add_argument("--first-seed", type=int, default=0, help="first scene index (default 0)")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help=f"worker processes (default {default_workers()}); results do not depend on it")
    p.add_argument("--out", default=None,
                   help="report directory (default out/eval/<policy>_<family or suite>_<split>)")
    p.add_argument("--suite", action="store_true",
                   help="evaluate every condition of the suite, one table row each")
    p.add_argument("--video-episodes", type=int, default=3,
                   help="episodes of the first condition in the mp4 (default 3, 0 = none)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="episode time limit in s (default: the family's, 30 s fly / 20 s follow)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)

    d = sub.add_parser(
        "demo", help="fly the shipped policy on unseen forest scenes; print the table, write video and plot",
        description=f"Fly the shipped LTC-NCP policy ({SHIPPED_POLICY_IN_REPO}) "
        f"closed-loop on unseen forest scenes; prints the result table and where the video and "
        f"the trajectory plot are. About {DEMO_EPISODES} episodes fit in under 3 minutes on 2 cores.",
    )
    d.add_argument("--episodes", type=int, default=DEMO_EPISODES,
                   help=f"episodes (default {DEMO_EPISODES})")
    d.add_argument("--out", default=str(Path("out") / "demo"), help="report directory (default out/demo)")
    d.add_argument("--policy", default=None, help="another policy file instead of the shipped one")
    d.add_argument("--workers", type=int, default=default_workers(),
                   help=f"worker processes (default {default_workers()})")
    d.add_argument("--video-episodes", type=int, default=2, help="episodes in the mp4 (default 2)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=run_demo)
