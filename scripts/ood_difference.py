"""LTC-NCP minus LSTM on the out-of-distribution families, from results on disk.

For when the two policies were evaluated separately (the LTC-NCP on the whole
suite, the LSTM family by family) rather than by `compare_heads.py`. Each
OOD family row of the suite's results.json is matched with the LSTM's
`<lstm_dir>/<family>/results.json`; the episodes' scene seeds must agree.
Prints a Markdown table (Wilson intervals, Newcombe intervals for the
differences) and the pooled headline in `lnn_nav.report.headline_sentence`'s words.

    .venv/bin/python scripts/ood_difference.py \\
        policies/ltc-ncp-forest/suite-100/results.json policies/lstm-forest/ood-100
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lnn_nav.metrics import difference_interval, wilson_interval
from lnn_nav.report import headline_sentence


def _pct(successes: int, episodes: int) -> str:
    w = wilson_interval(successes, episodes)
    return f"{100 * successes / episodes:.1f}% [{100 * w.low:.1f}, {100 * w.high:.1f}]"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite_results", type=Path, help="results.json of the LTC-NCP's suite")
    p.add_argument("lstm_dir", type=Path, help="directory of <family>/results.json of the LSTM")
    args = p.parse_args()
    suite = json.loads(args.suite_results.read_text())
    rows = []
    for c in suite["conditions"]:
        if c["condition"]["group"] != "ood_family":
            continue
        fam = c["condition"]["family"]
        path = args.lstm_dir / fam / "results.json"
        if not path.is_file():
            sys.exit(f"{path}: missing; expected the LSTM evaluated on {fam}")
        b = json.loads(path.read_text())["conditions"][0]
        seeds_a = [e["seed"] for e in c["episodes"]]
        seeds_b = [e["seed"] for e in b["episodes"]]
        if b["condition"]["family"] != fam or seeds_a != seeds_b:
            sys.exit(f"{path}: scenes {seeds_b[:3]}... of {b['condition']['family']}, expected "
                     f"{seeds_a[:3]}... of {fam}")
        rows.append((fam, int(c["metrics"]["counts"]["success"]), len(seeds_a),
                     int(b["metrics"]["counts"]["success"]), len(seeds_b)))
    if not rows:
        sys.exit(f"{args.suite_results}: no out-of-distribution family rows")
    pooled = ("pooled", sum(r[1] for r in rows), sum(r[2] for r in rows),
              sum(r[3] for r in rows), sum(r[4] for r in rows))
    print("| family | LTC-NCP | LSTM | LTC-NCP minus LSTM, points [95% CI] |")
    print("|---|---|---|---|")
    for fam, a, n, b, m in [*rows, pooled]:
        d = difference_interval(wilson_interval(a, n), wilson_interval(b, m))
        print(f"| {fam} | {_pct(a, n)} | {_pct(b, m)} | {100 * d.value:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] |")
    _, a, n, b, m = pooled
    comparison = {"heads": {"ltc": {"groups": {"ood_family": {"successes": a, "episodes": n}}},
                            "lstm": {"groups": {"ood_family": {"successes": b, "episodes": m}}}}}
    print("\n" + headline_sentence(comparison))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
