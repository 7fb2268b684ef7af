"""`lnn-nav train`: demonstrations, behaviour cloning and DAgger in one resumable run."""

from __future__ import annotations

import argparse
import dataclasses

from lnn_nav.train import TrainConfig, run_training


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    overrides = {k: getattr(args, k) for k in ("head", "seed", "out", "workers") if getattr(args, k) is not None}
    if args.no_dagger:
        overrides["dagger"] = dataclasses.replace(cfg.dagger, rounds=0)
    if overrides:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), **overrides}, source="command line")
    path = run_training(cfg, resume=args.resume)
    print(f"policy written to {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="collect demonstrations, behaviour-clone, DAgger (resumable)")
    p.add_argument("--config", help="YAML file of TrainConfig keys (default: the built-in defaults)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out after an interruption")
    p.add_argument("--head", choices=("ltc", "cfc", "lstm", "gru", "mlp"), help="recurrent head kind")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--out", help="run directory")
    p.add_argument("--workers", type=int, help="processes for collection and rollouts")
    p.add_argument("--no-dagger", action="store_true", help="behaviour cloning only (dagger.rounds = 0)")
    p.set_defaults(func=run)
