"""Head comparison: LTC-NCP vs CfC-NCP, LSTM, GRU and feedforward heads.

Every head shares the CNN encoder, the parameter budget of the LTC head
(`lnn_nav.models.policy.baseline_policy_config`), the demonstrations (one
`data_dir` for all) and the DAgger schedule (`lnn_nav.train.run_training` with
the same TrainConfig apart from `head` and `seed`). Each (head, seed) policy is
evaluated on the evaluation suite (`lnn_nav.evaluate.suite_conditions`, the
same scenes for all), and one table with 95% intervals, a bar chart and the
headline "LTC-NCP minus LSTM on out-of-distribution families: X points [95% CI]"
are written.

    .venv/bin/python scripts/compare_heads.py                       # everything (days on 2 cores)
    .venv/bin/python scripts/compare_heads.py --heads ltc,lstm --seeds 0
    .venv/bin/python scripts/compare_heads.py --report-only         # table from what is on disk
    .venv/bin/python scripts/compare_heads.py --tiny --out /tmp/cmp # minutes: pipeline smoke test

Layout of --out (default runs/compare_heads):

    train/<head>-s<seed>/   run_training's run directory (policy.pt once finished)
    eval/<head>-s<seed>/    the suite's results.json, results.md, trajectory plots
    comparison.{json,md,png}

Resumable and divisible: a finished training (policy.pt present) is not rerun,
an interrupted one resumes from its checkpoints; an evaluation whose
results.json matches the requested conditions and episodes is not rerun. So
the comparison can be run one head or one seed at a time, in several sittings,
and `--report-only` rebuilds the table from whatever is finished.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from lnn_nav.evaluate import Condition, EvalConfig, evaluate, suite_conditions
from lnn_nav.models.heads import HEAD_KINDS
from lnn_nav.report import (
    comparison_markdown,
    head_comparison,
    headline_sentence,
    load_results,
    plot_comparison,
)
from lnn_nav.train import BCConfig, DaggerConfig, TrainConfig, run_training

TINY_CONDITIONS = ("forest/unseen", "forest-autumn/unseen", "stress-mild", "rate-15Hz")
"""The conditions of --tiny: one of each kind that matters for the headline."""


def parse_list(text: str, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ValueError(f"--{what}={text!r}: expected a comma-separated list")
    if allowed is not None:
        bad = [s for s in items if s not in allowed]
        if bad:
            raise ValueError(f"--{what}: {bad} not among {list(allowed)}")
    return items


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in parse_list(text, None, "seeds")]
    except ValueError as exc:
        raise ValueError(f"--seeds={text!r}: expected comma-separated integers >= 0 ({exc})") from None
    if any(s < 0 for s in seeds):
        raise ValueError(f"--seeds={text!r}: expected integers >= 0")
    return seeds


def tiny_train_config(out: Path) -> TrainConfig:
    """A training run of a few minutes: 2 demonstrations, a handful of steps, 1 DAgger round."""
    return TrainConfig(
        demo_episodes=2, val_episodes=1, data_dir=str(out / "data"), workers=1, threads=1,
        bc=BCConfig(steps=4, batch_size=2, window=4, burn_in=2, val_every=4, val_windows=2,
                    checkpoint_every=2, warmup_steps=1),
        dagger=DaggerConfig(rounds=1, episodes_per_round=1, steps_per_round=2),
    )


def select_conditions(names: list[str] | None, family: str, split: str) -> list[Condition]:
    suite = suite_conditions(family, split)
    if names is None:
        return suite
    by_name = {c.name: c for c in suite}
    bad = [n for n in names if n not in by_name]
    if bad:
        raise ValueError(f"--conditions: {bad} not in the suite {list(by_name)}")
    return [by_name[n] for n in names]


def train_one(base: TrainConfig, head: str, seed: int, out: Path, workers: int) -> tuple[Path, float]:
    """Train (or resume, or skip) one (head, seed); returns the policy path and seconds spent."""
    run_dir = out / "train" / f"{head}-s{seed}"
    policy = run_dir / "policy.pt"
    if policy.is_file() and (run_dir / "history.json").is_file():
        return policy, 0.0
    cfg = TrainConfig.from_dict({**base.to_dict(), "head": head, "seed": seed,
                                 "out": str(run_dir), "workers": workers}, source="compare_heads")
    t0 = time.perf_counter()
    path = run_training(cfg, resume=(run_dir / "train_config.json").is_file())
    return path, time.perf_counter() - t0


def evaluation_done(results_path: Path, conditions: list[Condition], config: EvalConfig) -> bool:
    if not results_path.is_file():
        return False
    try:
        res = load_results(results_path)
    except ValueError:
        return False
    want = {"episodes": config.episodes, "first_seed": config.first_seed,
            "time_limit_s": config.time_limit_s}
    return (res["config"] == want
            and [c["condition"] for c in res["conditions"]] == [c.to_dict() for c in conditions])


def evaluate_one(policy: Path, head: str, seed: int, out: Path, conditions: list[Condition],
                 config: EvalConfig) -> tuple[Path, float]:
    eval_dir = out / "eval" / f"{head}-s{seed}"
    results = eval_dir / "results.json"
    if evaluation_done(results, conditions, config):
        return results, 0.0
    t0 = time.perf_counter()
    _, paths = evaluate(policy, conditions, config, eval_dir)
    return paths["results"], time.perf_counter() - t0


def write_comparison(out: Path, heads: list[str]) -> dict | None:
    """Build the table from every finished evaluation of `heads` under `out/eval`."""
    from lnn_nav.atomic import atomic_write_json, atomic_write_text

    runs: dict[str, list[dict]] = {}
    for head in heads:
        files = sorted((out / "eval").glob(f"{head}-s*/results.json"))
        if files:
            runs[head] = [load_results(p) for p in files]
    if not runs:
        return None
    comp = head_comparison(runs)
    comp["headline"] = headline_sentence(comp)
    atomic_write_json(out / "comparison.json", comp)
    table = comparison_markdown(comp)
    atomic_write_text(out / "comparison.md", table)
    plot_comparison(comp, out / "comparison.png")
    return comp


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heads", default=",".join(HEAD_KINDS),
                   help=f"comma-separated head kinds (default {','.join(HEAD_KINDS)})")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--out", default="runs/compare_heads", help="output directory")
    p.add_argument("--train-config", default=None,
                   help="YAML of TrainConfig keys shared by every head (head, seed, out are set here)")
    p.add_argument("--family", default="forest", help="training family and suite base (default forest)")
    p.add_argument("--split", default="unseen", help="suite split (default unseen)")
    p.add_argument("--conditions", default=None,
                   help="comma-separated suite condition names (default: the whole suite)")
    p.add_argument("--episodes", type=int, default=100, help="episodes per condition (default 100)")
    p.add_argument("--time-limit", type=float, default=None, help="episode time limit s (default: per family)")
    p.add_argument("--workers", type=int, default=2, help="processes for collection, rollouts, evaluation")
    p.add_argument("--report-only", action="store_true", help="only rebuild the table from results on disk")
    p.add_argument("--tiny", action="store_true",
                   help="smoke test: tiny training, 1 episode of 4 conditions, 2 s time limit")
    args = p.parse_args(argv)
    try:
        heads = parse_list(args.heads, HEAD_KINDS, "heads")
        seeds = parse_seeds(args.seeds)
        out = Path(args.out)
        if args.tiny:
            base = tiny_train_config(out)
            names = list(TINY_CONDITIONS)
            config = EvalConfig(episodes=1, time_limit_s=2.0, workers=1, video_episodes=0)
        else:
            base = TrainConfig.from_yaml(args.train_config) if args.train_config else TrainConfig()
            base = replace(base, family=args.family)
            names = None if args.conditions is None else parse_list(args.conditions, None, "conditions")
            config = EvalConfig(episodes=args.episodes, time_limit_s=args.time_limit,
                                workers=args.workers, video_episodes=0)
        conditions = select_conditions(names, args.family, args.split)
        timings_path = out / "timings.json"
        timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
        if not args.report_only:
            from lnn_nav.atomic import atomic_write_json

            for head in heads:
                for seed in seeds:
                    key = f"{head}-s{seed}"
                    print(f"[compare_heads] {key}: training", flush=True)
                    policy, t_train = train_one(base, head, seed, out, config.workers)
                    print(f"[compare_heads] {key}: evaluating on {len(conditions)} conditions "
                          f"x {config.episodes} episodes", flush=True)
                    _, t_eval = evaluate_one(policy, head, seed, out, conditions, config)
                    entry = timings.get(key, {})
                    if t_train:
                        entry["train_s"] = round(t_train, 1)
                    if t_eval:
                        entry["eval_s"] = round(t_eval, 1)
                    timings[key] = entry
                    atomic_write_json(timings_path, timings)
        comp = write_comparison(out, list(HEAD_KINDS))
    except (ValueError, FileNotFoundError) as exc:
        print(f"compare_heads: error: {exc}", file=sys.stderr)
        return 2
    if comp is None:
        print(f"compare_heads: no finished evaluations under {out / 'eval'} yet")
        return 0
    print((out / "comparison.md").read_text())
    print(f"written: {out / 'comparison.md'}, {out / 'comparison.json'}, {out / 'comparison.png'}")
    if timings:
        print(f"wall time per (head, seed): {json.dumps(timings)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
