"""Policy B minus policy A on the same scenes, from two results.json files.

Every condition the two evaluations share is paired scene by scene (the scene
seeds must agree) and reported with a 95% bootstrap interval over scenes
(`lnn_nav.metrics.paired_difference`), with how many scenes only one of the
two finished. `--first N` restricts to the first N scenes, e.g. to compare a
200-scene evaluation with a 100-scene one.

    .venv/bin/python scripts/paired_difference.py \\
        runs/default/eval200/results.json runs/aux/eval200/results.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lnn_nav.metrics import paired_difference
from lnn_nav.report import load_results


def _successes(condition: dict, first: int | None) -> tuple[list[int], np.ndarray]:
    episodes = condition["episodes"][:first]
    return [e["seed"] for e in episodes], np.array([e["termination"] == "success" for e in episodes])


def paired_rows(a: dict, b: dict, first: int | None = None) -> list[dict]:
    """One row per condition name found in both results, in A's order."""
    by_name = {c["condition"]["name"]: c for c in b["conditions"]}
    rows = []
    for ca in a["conditions"]:
        name = ca["condition"]["name"]
        if name not in by_name:
            continue
        seeds_a, sa = _successes(ca, first)
        seeds_b, sb = _successes(by_name[name], first)
        if seeds_a != seeds_b:
            raise ValueError(f"{name}: scenes {seeds_b[:3]}... (n={len(seeds_b)}) in B, expected "
                             f"{seeds_a[:3]}... (n={len(seeds_a)}) as in A")
        rows.append({"condition": name, "episodes": len(seeds_a), "a": float(sa.mean()),
                     "b": float(sb.mean()), "difference": paired_difference(sa, sb),
                     "only_a": int((sa & ~sb).sum()), "only_b": int((sb & ~sa).sum())})
    if not rows:
        raise ValueError("the two results share no condition")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="results.json of the reference policy A")
    p.add_argument("b", type=Path, help="results.json of policy B")
    p.add_argument("--first", type=int, default=None, help="only the first N scenes of each condition")
    args = p.parse_args(argv)
    if args.first is not None and args.first < 1:
        p.error(f"--first {args.first}: expected a positive number of scenes")
    try:
        rows = paired_rows(load_results(args.a), load_results(args.b), args.first)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| condition | scenes | A | B | B minus A, points [95% CI] | only A | only B |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        d = r["difference"]
        print(f"| {r['condition']} | {r['episodes']} | {100 * r['a']:.1f}% | {100 * r['b']:.1f}% | "
              f"{100 * d.value:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] | {r['only_a']} | {r['only_b']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
