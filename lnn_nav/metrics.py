"""Closed-loop evaluation metrics, computed from flown trajectories.

Pure numpy: nothing here knows about the simulator or the policy, so the same
functions score simulated flights, logged real flights and hand-made tests.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

OUTCOMES = ("success", "collision", "out_of_bounds", "timeout")


@dataclass(frozen=True)
class Interval:
    """A proportion with its 95% confidence interval, all in [0, 1]."""

    value: float
    low: float
    high: float

    def as_percent(self) -> str:
        return f"{100 * self.value:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}]"


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> Interval:
    """Wilson score interval for a binomial proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is honest at
    0% and 100%, which is where policy success rates tend to sit.
    """
    if trials <= 0:
        raise ValueError(f"trials={trials}: expected a positive number of episodes")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes={successes}: expected an integer in [0, trials={trials}]")
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    # Clamp only the rounding noise at the ends; the formula is already in [0, 1].
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def difference_interval(a: Interval, b: Interval) -> Interval:
    """Difference a - b of two independent proportions with a 95% interval
    (Newcombe's method 10: combines the two Wilson intervals)."""
    d = a.value - b.value
    low = d - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    high = d + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Interval(d, low, high)


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = 10_000,
                      seed: int = 0) -> Interval:
    """Success rate of `b` minus that of `a` on the same scenes, with a 95%
    percentile-bootstrap interval over scenes.

    a, b: (N,) booleans, element i being scene i flown by each policy. Pairing
    removes the scene-to-scene difficulty both share, so the interval is
    narrower than `difference_interval`'s for independent samples. Seeded, so
    the same inputs give the same interval.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"shapes {a.shape} and {b.shape}: expected two equal, non-empty 1-D arrays")
    if resamples < 100:
        raise ValueError(f"resamples={resamples}: expected at least 100")
    diff = b.astype(np.float64) - a
    idx = np.random.default_rng(seed).integers(0, diff.size, (resamples, diff.size))
    means = diff[idx].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return Interval(float(diff.mean()), float(low), float(high))


@dataclass(frozen=True)
class EpisodeRecord:
    """What one closed-loop episode leaves behind for scoring.

    pos_w: (T+1, 3) m, world ENU, the start position first.
    commands: (T, 4) body FLU, forward/left/up m/s and yaw rate rad/s.
    dt: (T,) s, the elapsed time before each command.
    target_pos_w: (3,) m, world ENU, where the target is at the end.
    termination: one of OUTCOMES.
    """

    pos_w: np.ndarray
    commands: np.ndarray
    dt: np.ndarray
    target_pos_w: np.ndarray
    termination: str

    def __post_init__(self) -> None:
        if self.termination not in OUTCOMES:
            raise ValueError(f"termination={self.termination!r}: expected one of {OUTCOMES}")
        pos = np.asarray(self.pos_w)
        if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) < 1:
            raise ValueError(f"pos_w has shape {pos.shape}: expected (T+1, 3) with T >= 0")
        cmds = np.asarray(self.commands)
        if cmds.shape != (len(pos) - 1, 4):
            raise ValueError(
                f"commands has shape {cmds.shape}: expected ({len(pos) - 1}, 4) to match pos_w"
            )
        if np.asarray(self.dt).shape != (len(pos) - 1,):
            raise ValueError(f"dt has shape {np.shape(self.dt)}: expected ({len(pos) - 1},)")


def path_length(pos_w: np.ndarray) -> float:
    """m, summed length of the polyline through the positions."""
    return float(np.linalg.norm(np.diff(pos_w, axis=0), axis=1).sum())


def path_efficiency(pos_w: np.ndarray, goal_w: np.ndarray) -> float:
    """Straight-line distance from start to the final position's goal point
    over the length flown, in [0, 1]. `goal_w` is where the drone had to end
    (for fly-to-target: its final position if it succeeded)."""
    flown = path_length(pos_w)
    straight = float(np.linalg.norm(np.asarray(goal_w) - pos_w[0]))
    if flown <= 1e-9:
        return 1.0 if straight <= 1e-9 else 0.0
    return min(1.0, straight / flown)


def command_smoothness(commands: np.ndarray, dt: np.ndarray) -> float:
    """Root-mean-square rate of change of the command vector, in command units
    per second (m/s^2 and rad/s^2 mixed); lower is smoother. 0 for < 2 commands."""
    if len(commands) < 2:
        return 0.0
    rate = np.diff(commands, axis=0) / np.asarray(dt)[1:, None]
    return float(np.sqrt(np.mean(np.sum(rate**2, axis=1))))


def summarize(episodes: list[EpisodeRecord]) -> dict[str, object]:
    """Per-split metrics of DESIGN.md's evaluation protocol.

    Rates come with Wilson 95% intervals; time to target and path efficiency
    are averaged over successful episodes only (they are undefined otherwise).
    """
    n = len(episodes)
    if n == 0:
        raise ValueError("summarize() got no episodes: expected at least one EpisodeRecord")
    counts = {k: sum(e.termination == k for e in episodes) for k in OUTCOMES}
    wins = [e for e in episodes if e.termination == "success"]
    final_dist = [float(np.linalg.norm(e.pos_w[-1] - e.target_pos_w)) for e in episodes]

    def mean_or_nan(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {
        "episodes": n,
        "success": asdict(wilson_interval(counts["success"], n)),
        "collision": asdict(wilson_interval(counts["collision"], n)),
        "timeout": asdict(wilson_interval(counts["timeout"], n)),
        "out_of_bounds": asdict(wilson_interval(counts["out_of_bounds"], n)),
        "time_to_target_s": mean_or_nan([float(np.sum(e.dt)) for e in wins]),
        "path_efficiency": mean_or_nan([path_efficiency(e.pos_w, e.pos_w[-1]) for e in wins]),
        "final_distance_m": float(np.mean(final_dist)),
        "command_smoothness": float(
            np.mean([command_smoothness(e.commands, e.dt) for e in episodes])
        ),
    }
