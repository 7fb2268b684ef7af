"""scripts/paired_difference.py on the shipped evaluations."""

from pathlib import Path

import pytest
from conftest import load_script

from lnn_nav.report import load_results

POLICIES = Path(__file__).resolve().parents[1] / "policies"
LTC_200 = POLICIES / "ltc-ncp-forest" / "eval-forest-unseen-200" / "results.json"
GRU_200 = POLICIES / "gru-forest" / "eval-forest-unseen-200" / "results.json"
LTC_100 = POLICIES / "ltc-ncp-forest" / "eval-forest-unseen" / "results.json"


def test_rows_agree_with_the_success_counts() -> None:
    mod = load_script("paired_difference")
    a, b = load_results(GRU_200), load_results(LTC_200)
    (row,) = mod.paired_rows(a, b)
    n = row["episodes"]
    assert n == 200
    counts = [int(r["conditions"][0]["metrics"]["counts"]["success"]) for r in (a, b)]
    assert row["a"] == counts[0] / n and row["b"] == counts[1] / n
    assert row["difference"].value == pytest.approx((row["only_b"] - row["only_a"]) / n)
    assert row["difference"].low <= row["difference"].value <= row["difference"].high


def test_scenes_must_agree_unless_cut_to_the_same_first_ones(capsys) -> None:
    mod = load_script("paired_difference")
    assert mod.main([str(LTC_100), str(GRU_200)]) == 2
    assert "expected" in capsys.readouterr().err
    assert mod.main([str(LTC_100), str(GRU_200), "--first", "100"]) == 0
    assert "| forest/unseen | 100 |" in capsys.readouterr().out
    assert mod.main([str(LTC_100), str(LTC_100) + ".missing"]) == 2
    assert "does not exist" in capsys.readouterr().err
