"""Benchmark of the privileged expert (a benchmark, not a test).

Flies the expert closed-loop (no noise) on N episodes (default 200: scene
indices 0..N-1) of every shipped family and split, in worker processes, and
prints a table of success / collision / out-of-bounds / timeout rates with the
Wilson 95% interval of the success rate, mean episode length and the expert's
own compute time per step (CPU ms, reset excluded), then the failing scenes, and last one JSON line of
success rates keyed `family/split`.

    .venv/bin/python scripts/bench_expert.py [--episodes 200] [--workers 2]
        [--task fly|follow] [--families forest forest-autumn ...]
        [--expert '{"plan_view_range": 6.0}']   (ExpertConfig fields)

Target (issue 4): success >= 97% on each family/split.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from collections import Counter, defaultdict
from typing import Any

from lnn_nav.expert import TASKS, ExpertConfig
from lnn_nav.metrics import wilson_interval
from lnn_nav.rollout import expert_for_env, make_env, run_episode
from lnn_nav.sim.scenes import load_family, shipped_families

_ENVS: dict[tuple[str, str, str], Any] = {}


class _TimedExpert:
    """The expert with a stopwatch around `act_from_info` (s, summed). It counts
    the thread's CPU time, not wall time, so that other processes sharing the
    cores do not inflate the figure."""

    def __init__(self, expert: Any) -> None:
        self.expert = expert
        self.limits = expert.limits
        self.seconds = 0.0
        self.calls = 0

    def reset_from_info(self, info: dict[str, Any], task: str) -> None:
        self.expert.reset_from_info(info, task)

    def act_from_info(self, info: dict[str, Any], dt: float) -> Any:
        t0 = time.thread_time()
        cmd = self.expert.act_from_info(info, dt)
        self.seconds += time.thread_time() - t0
        self.calls += 1
        return cmd


def _init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _job(job: tuple[str, str, str, int, ExpertConfig]) -> tuple[str, str, int, str, int, float, int]:
    task, family, split, seed, expert_config = job
    key = (task, family, split)
    if key not in _ENVS:
        # cells run one after another: keep one environment per worker
        for old in list(_ENVS):
            _ENVS.pop(old).close()
        _ENVS[key] = make_env(task, family, split)
    env = _ENVS[key]
    expert = _TimedExpert(expert_for_env(env, expert_config))
    ep = run_episode(env, seed, expert, record_frames=False)  # type: ignore[arg-type]
    return family, split, seed, ep.termination, len(ep), expert.seconds, expert.calls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--task", choices=TASKS, default="fly")
    ap.add_argument("--families", nargs="*", default=None, help="default: every shipped family")
    ap.add_argument("--splits", nargs="*", default=None, help="default: every split of each family")
    ap.add_argument("--log", default=None, help="append one JSON line per episode to this file")
    ap.add_argument("--expert", default="{}", metavar="JSON",
                    help="ExpertConfig fields to change, as a JSON object (default: none)")
    args = ap.parse_args(argv)
    try:
        expert_fields = json.loads(args.expert)
        if not isinstance(expert_fields, dict):
            raise ValueError(f"got {type(expert_fields).__name__}")
        expert_config = ExpertConfig.from_dict(expert_fields)
    except ValueError as e:
        raise SystemExit(f"--expert {args.expert!r}: expected a JSON object of ExpertConfig fields ({e})")
    if args.episodes < 1 or args.workers < 1:
        raise SystemExit("--episodes and --workers must be >= 1")
    families = args.families or shipped_families()
    cells: list[tuple[str, str]] = []
    for fam in families:
        for split in load_family(fam).splits:
            if args.splits is None or split in args.splits:
                cells.append((fam, split))
    print(f"expert benchmark: task {args.task}, {len(cells)} family/split cells x "
          f"{args.episodes} episodes, {args.workers} workers", flush=True)

    results: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    steps: dict[tuple[str, str], int] = defaultdict(int)
    expert_s: dict[tuple[str, str], float] = defaultdict(float)
    expert_calls: dict[tuple[str, str], int] = defaultdict(int)
    failures: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    rates: dict[str, float] = {}
    header = (f"{'family/split':28s} {'n':>4s} {'success':>8s} {'95% CI':>15s} {'collision':>9s} "
              f"{'out':>6s} {'timeout':>8s} {'steps':>6s} {'expert ms':>9s}")  # CPU ms per step
    print(header)
    print("-" * len(header), flush=True)
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    from tqdm import tqdm

    log = open(args.log, "a") if args.log else None
    with ctx.Pool(args.workers, initializer=_init) as pool:
        # one cell after another, so that each row is printed as soon as it is known
        for key in cells:
            jobs = [(args.task, key[0], key[1], i, expert_config) for i in range(args.episodes)]
            for fam, split, seed, term, n, sec, calls in tqdm(
                pool.imap_unordered(_job, jobs, chunksize=2), total=len(jobs), unit="ep",
                desc=f"{key[0]}/{key[1]}", file=sys.stderr, leave=False,
            ):
                results[key][term] += 1
                steps[key] += n
                expert_s[key] += sec
                expert_calls[key] += calls
                if term != "success":
                    failures[key].append((seed, term))
                if log:
                    log.write(json.dumps({"family": fam, "split": split, "seed": seed,
                                          "termination": term, "steps": n}) + "\n")
                    log.flush()
            c = results[key]
            n = sum(c.values())
            ci = wilson_interval(c["success"], n)
            rates[f"{key[0]}/{key[1]}"] = round(c["success"] / n, 4)
            print(f"{key[0] + '/' + key[1]:28s} {n:4d} {c['success'] / n:8.1%} "
                  f"{f'[{ci.low:.1%}, {ci.high:.1%}]':>15s} {c['collision'] / n:9.1%} "
                  f"{c['out_of_bounds'] / n:6.1%} {c['timeout'] / n:8.1%} {steps[key] / n:6.0f} "
                  f"{1e3 * expert_s[key] / max(expert_calls[key], 1):9.3f}", flush=True)
            if failures[key]:
                listed = ", ".join(f"{s}:{t}" for s, t in sorted(failures[key]))
                print(f"    failures (scene index:termination): {listed}", flush=True)
    if log:
        log.close()
    wall = time.perf_counter() - t0
    print(f"wall time {wall:.0f} s, {sum(steps.values()) / wall:.0f} env steps/s over {args.workers} workers")
    print(json.dumps(rates, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
