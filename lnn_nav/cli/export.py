"""`lnn-nav export`: write an onboard bundle (ONNX, C99 head, golden vectors,
metadata, README), or `--verify` one."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from lnn_nav.export.bundle import export_policy_file, verify_bundle

    if args.verify:
        report = verify_bundle(args.verify, run_golden=not args.no_golden)
        for line in report.checks:
            print(f"ok: {line}")
        for line in report.problems:
            print(f"FAIL: {line}", file=sys.stderr)
        print(f"{args.verify}: {'verified' if report.ok else 'NOT verified'}")
        return 0 if report.ok else 1
    if not args.policy or not args.out:
        raise ValueError("export needs --policy P and --out DIR (or --verify DIR)")
    out = export_policy_file(
        args.policy,
        args.out,
        frames=args.frames,
        family=args.family,
        split=args.split,
        seed=args.seed,
        golden_steps=args.golden_steps,
        force=args.force,
    )
    print(f"bundle written to {out} (verified: hashes and golden vectors)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a policy for onboard use (ONNX, C99 head, metadata), or verify a bundle",
    )
    p.add_argument("--policy", help="policy checkpoint (NavPolicy.save)")
    p.add_argument("--out", help="bundle directory to write")
    p.add_argument("--verify", metavar="DIR", help="check a bundle's hashes and golden vectors")
    p.add_argument("--no-golden", action="store_true", help="with --verify: hashes only")
    p.add_argument(
        "--frames",
        default="sim",
        help="frames for the golden vectors: 'sim' (a closed-loop episode, default) or a video file",
    )
    p.add_argument("--family", default="forest", help="scene family for --frames sim")
    p.add_argument("--split", default="train", help="split for --frames sim")
    p.add_argument("--seed", type=int, default=0, help="episode seed for --frames sim")
    p.add_argument("--golden-steps", type=int, default=500, help="steps of golden vectors")
    p.add_argument("--force", action="store_true", help="replace a non-bundle directory's files")
    p.set_defaults(func=run)
