"""Auxiliary training targets from an episode's privileged state.

The target's bearing in the body frame, as (sin, cos) of its angle from the
camera axis (+ = left), for every frame from the first one in which the
target lay inside the camera's horizontal field of view. Before that frame a
camera-only policy cannot know where the target is, so those frames carry no
auxiliary loss. After it, knowing the bearing while the target is out of view
means remembering a sighting and integrating the turns made since: the state
a search needs, and which the behaviour-cloning loss alone only rewards on
the rare frames where a brief sighting changes the command.

Occlusion is ignored (a trunk can hide a target that is inside the field of
view): the mask marks when the target *could* first have been seen.
"""

from __future__ import annotations

import math

import numpy as np

from lnn_nav.data import Episode

BEARING_OUTPUTS = 2
"""(sin, cos) of the target's angle from the camera axis."""


def target_bearing(ep: Episode, hfov_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """(labels (T, 2) float32 sin/cos of the target's body-frame bearing,
    mask (T,) float32: 1 from the first frame with the target inside +-hfov/2)."""
    if not (math.isfinite(hfov_rad) and 0.0 < hfov_rad < 2.0 * math.pi):
        raise ValueError(f"hfov_rad={hfov_rad!r}: expected a field of view in (0, 2 pi) rad")
    to_target = np.asarray(ep.target_pos_w, np.float64)[:, :2] - np.asarray(ep.pos_w, np.float64)[:, :2]
    off = np.arctan2(to_target[:, 1], to_target[:, 0]) - np.asarray(ep.yaw, np.float64)
    labels = np.stack([np.sin(off), np.cos(off)], axis=1).astype(np.float32)
    in_view = np.cos(off) >= math.cos(0.5 * hfov_rad)
    mask = np.maximum.accumulate(in_view).astype(np.float32)
    return labels, mask
