import math

import numpy as np
import pytest

from lnn_nav.metrics import (
    EpisodeRecord,
    Interval,
    command_smoothness,
    difference_interval,
    paired_difference,
    path_efficiency,
    summarize,
    wilson_interval,
)


@pytest.mark.parametrize(
    "k,n,low,high",
    [
        # reference values from the closed-form Wilson interval, z = 1.96
        (81, 263, 0.2553, 0.3662),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
    ],
)
def test_wilson_interval_known_values(k, n, low, high):
    iv = wilson_interval(k, n)
    assert iv.value == pytest.approx(k / n)
    assert iv.low == pytest.approx(low, abs=1e-4)
    assert iv.high == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize("k,n", [(3, 0), (-1, 5), (6, 5)])
def test_wilson_interval_rejects_bad_counts(k, n):
    with pytest.raises(ValueError, match="trials|successes"):
        wilson_interval(k, n)


def test_difference_interval_contains_difference_and_is_symmetric():
    a, b = wilson_interval(90, 100), wilson_interval(70, 100)
    d = difference_interval(a, b)
    assert d.value == pytest.approx(0.2)
    assert d.low < 0.2 < d.high
    flipped = difference_interval(b, a)
    assert flipped.low == pytest.approx(-d.high)
    assert flipped.high == pytest.approx(-d.low)


def test_path_efficiency_straight_and_detour():
    straight = np.array([[0, 0, 1], [1, 0, 1], [2, 0, 1]], float)
    assert path_efficiency(straight, straight[-1]) == pytest.approx(1.0)
    # a right-angle detour: flown 2 m for a straight-line 1.414 m
    detour = np.array([[0, 0, 1], [1, 0, 1], [1, 1, 1]], float)
    assert path_efficiency(detour, detour[-1]) == pytest.approx(math.sqrt(2) / 2)


def test_command_smoothness_constant_is_zero_and_step_is_known():
    dt = np.full(4, 0.1)
    assert command_smoothness(np.ones((4, 4)), dt) == 0.0
    cmds = np.zeros((4, 4))
    cmds[2:, 0] = 1.0  # one 1 m/s jump over 0.1 s among 3 differences
    assert command_smoothness(cmds, dt) == pytest.approx(math.sqrt((10.0**2) / 3))


def _episode(termination, end, steps=10):
    pos = np.linspace([0, 0, 1], end, steps + 1)
    return EpisodeRecord(pos, np.zeros((steps, 4)), np.full(steps, 0.1), np.array([5.0, 0, 1]), termination)


def test_summarize_rates_and_success_only_averages():
    eps = [_episode("success", [4.5, 0, 1])] * 3 + [_episode("collision", [2, 0, 1])]
    s = summarize(eps)
    assert s["episodes"] == 4
    assert s["success"]["value"] == pytest.approx(0.75)
    assert s["collision"]["value"] == pytest.approx(0.25)
    assert s["timeout"]["value"] == 0.0
    assert s["time_to_target_s"] == pytest.approx(1.0)
    assert s["path_efficiency"] == pytest.approx(1.0)
    assert s["final_distance_m"] == pytest.approx((0.5 * 3 + 3.0) / 4)


def test_episode_record_validates():
    with pytest.raises(ValueError, match="termination"):
        _episode("crashed", [1, 0, 1])
    with pytest.raises(ValueError, match="commands"):
        EpisodeRecord(np.zeros((3, 3)), np.zeros((3, 4)), np.zeros(2), np.zeros(3), "timeout")


def test_paired_difference_known_answers() -> None:
    same = np.array([True] * 150 + [False] * 50)
    assert paired_difference(same, same) == Interval(0.0, 0.0, 0.0)
    assert paired_difference(np.zeros(10, bool), np.ones(10, bool)) == Interval(1.0, 1.0, 1.0)
    # B finishes 20 scenes A does not: the bootstrap interval of a mean of 20
    # ones in 200 is close to the normal one, 0.1 +- 1.96 sqrt(0.1 * 0.9 / 200).
    a = np.zeros(200, bool)
    b = a.copy()
    b[:20] = True
    d = paired_difference(a, b)
    half = 1.959963984540054 * math.sqrt(0.1 * 0.9 / 200)
    assert d.value == pytest.approx(0.1)
    assert d.low == pytest.approx(0.1 - half, abs=0.01) and d.high == pytest.approx(0.1 + half, abs=0.01)
    assert paired_difference(b, a).value == pytest.approx(-0.1)
    assert paired_difference(a, b, seed=3) == paired_difference(a, b, seed=3)


def test_paired_difference_is_narrower_than_the_unpaired_interval_on_shared_difficulty() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(200) < 0.85
    b = a.copy()
    b[np.flatnonzero(~a)[:6]] = True
    paired = paired_difference(a, b)
    unpaired = difference_interval(wilson_interval(int(b.sum()), 200), wilson_interval(int(a.sum()), 200))
    assert paired.value == pytest.approx(unpaired.value)
    assert paired.high - paired.low < 0.5 * (unpaired.high - unpaired.low)


@pytest.mark.parametrize(("a", "b", "resamples", "match"), [
    (np.ones(3, bool), np.ones(4, bool), 1000, "expected two equal"),
    (np.ones(0, bool), np.ones(0, bool), 1000, "non-empty"),
    (np.ones(3, bool), np.ones(3, bool), 10, "resamples=10"),
])
def test_paired_difference_rejects_bad_input(a, b, resamples, match) -> None:
    with pytest.raises(ValueError, match=match):
        paired_difference(a, b, resamples=resamples)
