"""scripts/failure_anatomy.py: the geometry and pixel counts it reports."""

import math

import numpy as np
import pytest
from conftest import load_script

fa = load_script("failure_anatomy")


def test_gaps_to_each_obstacle_kind_match_hand_geometry():
    pos = np.array([0.0, 0.0, 1.0])
    cylinders = np.array([[2.0, 0.0, 0.5, 0.0, 3.0],    # side: 2 - 0.5
                          [0.0, 3.0, 0.5, 2.0, 4.0]])   # below its bottom: rim 2.5 across, 1 down
    spheres = np.array([[0.0, -2.0, 1.0, 0.5]])         # 2 - 0.5
    boxes = np.array([[0.0, 0.0, 4.0, 1.0, 1.0, 1.0, 0.3],  # straight above: 4 - 1 - 1
                      [3.0, 3.0, 1.0, 1.0, 0.5, 1.0, math.pi / 4]])
    gaps, points = fa.obstacle_gaps(pos, cylinders, spheres, boxes)
    # the yawed box: its corner region seen from the origin, in its own frame
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    lx, ly = c * -3 + s * -3, -s * -3 + c * -3
    box2 = math.hypot(max(abs(lx) - 1.0, 0), max(abs(ly) - 0.5, 0))
    np.testing.assert_allclose(gaps, [1.5, math.hypot(2.5, 1.0), 1.5, 2.0, box2], atol=1e-12)
    np.testing.assert_allclose(points[0], [2.0, 0.0])
    assert fa.obstacle_gaps(pos, np.zeros((0, 5)), np.zeros((0, 4)), np.zeros((0, 7)))[0].size == 0


@pytest.mark.parametrize(("point", "yaw", "expected"), [
    ((1.0, 0.0), 0.0, 0.0), ((0.0, 1.0), 0.0, 90.0), ((0.0, -1.0), 0.0, -90.0),
    ((1.0, 0.0), math.pi / 2, -90.0), ((-1.0, 0.001), 0.0, 179.94),
])
def test_bearing_is_body_flu_degrees_left_positive(point, yaw, expected):
    assert fa.bearing_deg(np.zeros(3), yaw, np.array(point)) == pytest.approx(expected, abs=0.01)


def test_target_pixels_survive_shading_and_ignore_other_colours():
    red = np.array([0.9, 0.1, 0.1])
    img = np.full((64, 64, 3), (90, 110, 60), np.uint8)      # ground-like green
    img[10, 10] = (230, 26, 26)                                # lit target
    img[20, 20] = (120, 13, 13)                                # the same red in shade
    img[30, 30] = (92, 66, 43)                                 # a brown trunk
    img[40, 40] = (12, 1, 1)                                   # too dark to tell
    assert fa.target_pixel_count(img, red) == 2


def test_summary_counts_failure_kinds():
    rows = [
        {"termination": "collision", "hit": "trunk", "in_view": False, "bearing_deg": 57.0,
         "expert_searching": True},
        {"termination": "collision", "hit": "canopy", "in_view": True, "bearing_deg": 10.0,
         "expert_searching": False},
        {"termination": "collision", "hit": "ground"},
        {"termination": "timeout", "max_target_pixels": 2, "frames_with_target": 5},
        {"termination": "timeout", "max_target_pixels": 9, "frames_with_target": 40},
    ]
    s = fa.summarize(rows)
    assert s["collisions"] == 3 and s["collisions_out_of_view"] == 1
    assert s["collisions_expert_searching"] == 1
    assert s["hit"] == {"trunk": 1, "canopy": 1, "ground": 1}
    assert s["timeouts"] == 2 and s["timeouts_target_at_most_3_pixels"] == 1
    assert s["timeouts_max_target_pixels_median"] == 5.5
