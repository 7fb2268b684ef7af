"""Scene families as data: the YAML spec of a family, and the scenes drawn from it.

A *family* (`envs/<name>.yaml`, or any YAML path a user passes instead of a
name) describes a distribution of scenes: arena, obstacles, target, start
pose, appearance, light, wind, vehicle dynamics, sensor faults and the seed
range of each split. `generate_scene(family, split, index)` draws one scene;
(family, split, index) fixes it completely, bit for bit.

Frames and units: world ENU (z up), metres, radians, seconds; colours are RGB
in [0, 1]. The arena is the square [-size/2, size/2]^2 centred on the origin;
the ground is the plane z = 0.

Obstacle geometry is kept as compact arrays (see `Scene`):

- cylinders (N, 5): x, y, radius, zmin, zmax  -- vertical, m
- spheres   (M, 4): x, y, z, radius           -- m
- boxes     (K, 7): x, y, z (centre), hx, hy, hz (half extents), yaw  -- m, rad

Sizes are multiples of `SIZE_STEP_M` (canopy radii of `CANOPY_STEP_M`, heights
of ground-standing objects of `LENGTH_STEP_M`) so that the world builder can reuse a small set of PyBullet shapes
instead of building meshes for every scene (PyBullet cannot resize a shape).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ENVS_DIR = Path(__file__).resolve().parents[2] / "envs"
"""The shipped scene families (`envs/*.yaml`)."""

SIZE_STEP_M = 0.02
"""m, every obstacle dimension is a multiple of this (lets shapes be reused)."""

CANOPY_STEP_M = 0.1
"""m, canopy radii are multiples of this (coarser: they vary over a wide range)."""

LENGTH_STEP_M = 0.2
"""m, heights of ground-standing obstacles (trunks, poles, boxes, walls) and box and
wall footprints are multiples of this: the world builder keeps one shape per size."""

TRUNK_STEP_M = 0.5
"""m, trunk tops under spherical canopies and pole heights are multiples of this."""

SPLITS = ("train", "val", "unseen")
"""Split names every family must define (a family may add more)."""

SHAPES = ("sphere", "box", "cylinder")
"""Shapes a target or distractor can take."""

# Obstacle roles, stored per object so that pictures and metrics can tell a
# trunk from a canopy or a distractor.
GENERATOR_VERSION = 2
"""Bumped whenever the same (family spec, split, seed) draws another scene, so that
data collected from older scenes is recognised (2: the target is in sight from the start)."""

ROLE_TRUNK, ROLE_CANOPY, ROLE_POLE, ROLE_BOX, ROLE_WALL, ROLE_DISTRACTOR = range(6)
ROLE_NAMES = ("trunk", "canopy", "pole", "box", "wall", "distractor")

Range = tuple[float, float]
RGB = tuple[float, float, float]


# --------------------------------------------------------------------------
# validation helpers: every message names the key, the value and what was expected
# --------------------------------------------------------------------------
def _show(v: Any) -> str:
    """A value as the YAML user wrote it (lists, not tuples)."""
    return repr(_to_plain(v))


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_num(key: str, v: Any, lo: float = -math.inf, hi: float = math.inf,
               lo_open: bool = False) -> None:
    ok = _num(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        lb = "(" if lo_open else "["
        raise ValueError(f"{key}={v!r}: expected a finite number in {lb}{lo}, {hi}]")


def _check_range(key: str, v: Any, lo: float = -math.inf, hi: float = math.inf,
                 lo_open: bool = False) -> None:
    if not (isinstance(v, tuple) and len(v) == 2 and all(_num(x) for x in v)):
        raise ValueError(f"{key}={_show(v)}: expected a range [low, high] of two finite numbers")
    for x in v:
        _check_num(key, x, lo, hi, lo_open)
    if v[0] > v[1]:
        raise ValueError(f"{key}={list(v)!r}: expected low <= high")


def _check_rgb(key: str, v: Any) -> None:
    if not (isinstance(v, tuple) and len(v) == 3 and all(_num(x) and 0 <= x <= 1 for x in v)):
        raise ValueError(f"{key}={_show(v)}: expected an RGB triple of numbers in [0, 1]")


def _check_palette(key: str, v: Any, allow_empty: bool = False) -> None:
    if not isinstance(v, tuple) or (not v and not allow_empty):
        raise ValueError(f"{key}={_show(v)}: expected a non-empty list of RGB triples")
    for i, c in enumerate(v):
        _check_rgb(f"{key}[{i}]", c)


def _check_count(key: str, v: Any, hi: int = 500) -> None:
    if not (isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) and not
                                                          isinstance(x, bool) for x in v)
            and 0 <= v[0] <= v[1] <= hi):
        raise ValueError(f"{key}={_show(v)}: expected a range [low, high] of integers, "
                         f"0 <= low <= high <= {hi}")


# --------------------------------------------------------------------------
# the family spec
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ArenaSpec:
    size_m: float = 14.0
    """m, side of the square arena centred on the origin; beyond it the drone is out of bounds."""
    ceiling_m: float = 4.5
    """m, height above the ground beyond which the drone is out of bounds."""
    margin_m: float = 1.0
    """m, start and target keep at least this far inside the arena edge."""

    def __post_init__(self) -> None:
        _check_num("size_m", self.size_m, 4.0, 200.0)
        _check_num("ceiling_m", self.ceiling_m, 1.0, 50.0)
        _check_num("margin_m", self.margin_m, 0.0, self.size_m / 4)


@dataclass(frozen=True)
class ClearanceSpec:
    drone_diameter_m: float = 0.126
    """m, tip-to-tip size of the vehicle incl. propellers (2 x (arm 0.0397 + prop 0.0231))."""
    start_m: float = 0.8
    """m, no obstacle surface within this 3-D distance of the start position."""
    target_m: float = 1.2
    """m, no obstacle surface within this 3-D distance of the target centre (room to stop in front of it)."""
    corridor_m: float = 0.5
    """m, width of the collision-free corridor from start to target that every scene keeps."""

    def __post_init__(self) -> None:
        _check_num("drone_diameter_m", self.drone_diameter_m, 0.01, 2.0, lo_open=True)
        _check_num("start_m", self.start_m, 0.0, 10.0)
        _check_num("target_m", self.target_m, 0.0, 10.0)
        _check_num("corridor_m", self.corridor_m, self.drone_diameter_m, 10.0)


@dataclass(frozen=True)
class StartSpec:
    height_m: Range = (0.6, 2.5)
    """m, start altitude above the ground, uniform."""
    facing_target_prob: float = 0.5
    """probability that the drone starts roughly facing the target."""
    facing_jitter_rad: float = 0.35
    """rad, when facing: heading = bearing to target + uniform(-jitter, jitter)."""
    yaw_offset_rad: Range = (0.9, math.pi)
    """rad, otherwise: |heading - bearing to target| uniform in this range, random sign."""

    def __post_init__(self) -> None:
        _check_range("height_m", self.height_m, 0.2, 50.0)
        _check_num("facing_target_prob", self.facing_target_prob, 0.0, 1.0)
        _check_num("facing_jitter_rad", self.facing_jitter_rad, 0.0, math.pi)
        _check_range("yaw_offset_rad", self.yaw_offset_rad, 0.0, math.pi)


@dataclass(frozen=True)
class TargetSpec:
    kind: str = "sphere"
    """shape of the target: sphere, box or cylinder."""
    size_m: float = 0.3
    """m, diameter (sphere, cylinder; the cylinder is as tall as it is wide) or edge (box)."""
    color_rgb: RGB = (0.9, 0.1, 0.1)
    """RGB in [0, 1], colour of the target."""
    height_m: Range = (0.6, 2.2)
    """m, altitude of the target centre, uniform."""
    distance_m: Range = (4.0, 8.0)
    """m, horizontal distance from start to target, uniform."""
    line_blocker_prob: float = 0.45
    """probability of planting a tree across the straight start-target line (forces a detour)."""
    min_visible_fraction: float = 0.3
    """fraction, 0-1, of the target's outline that must be in line of sight from the start
    (from some heading: it may still start behind the drone). A target hidden from the start
    leaves a camera-only policy nothing to steer by, so its first moves cannot be learned."""

    def __post_init__(self) -> None:
        if self.kind not in SHAPES:
            raise ValueError(f"kind={self.kind!r}: expected one of {list(SHAPES)}")
        _check_num("size_m", self.size_m, 0.05, 2.0)
        _check_rgb("color_rgb", self.color_rgb)
        _check_range("height_m", self.height_m, 0.2, 50.0)
        _check_range("distance_m", self.distance_m, 0.5, 200.0)
        _check_num("line_blocker_prob", self.line_blocker_prob, 0.0, 1.0)
        _check_num("min_visible_fraction", self.min_visible_fraction, 0.0, 1.0)


@dataclass(frozen=True)
class TreeSpec:
    count: tuple[int, int] = (30, 45)
    """number of trees, uniform integer in [low, high]."""
    trunk_radius_m: Range = (0.06, 0.2)
    """m, trunk radius, uniform (rounded to SIZE_STEP_M)."""
    canopy_kind: str = "sphere"
    """canopy shape: sphere or cylinder (a flat disc of foliage)."""
    canopy_radius_m: Range = (0.5, 1.1)
    """m, canopy radius, uniform."""
    canopy_base_m: Range = (1.2, 3.2)
    """m, height of the canopy's lowest point above the ground, uniform."""
    canopy_depth_m: Range = (0.6, 1.2)
    """m, vertical thickness of a cylinder canopy (ignored for spheres)."""
    min_gap_m: float = 0.38
    """m, smallest surface-to-surface gap between two trunks (or poles): about 3 drone diameters."""
    cluster_prob: float = 0.35
    """probability that a tree grows next to an existing one, at a gap in [min_gap, 2.5 min_gap]."""

    def __post_init__(self) -> None:
        _check_count("count", self.count)
        _check_range("trunk_radius_m", self.trunk_radius_m, SIZE_STEP_M, 2.0)
        if self.canopy_kind not in ("sphere", "cylinder"):
            raise ValueError(f"canopy_kind={self.canopy_kind!r}: expected 'sphere' or 'cylinder'")
        _check_range("canopy_radius_m", self.canopy_radius_m, SIZE_STEP_M, 5.0)
        _check_range("canopy_base_m", self.canopy_base_m, 0.3, 20.0)
        _check_range("canopy_depth_m", self.canopy_depth_m, SIZE_STEP_M, 10.0)
        _check_num("min_gap_m", self.min_gap_m, 0.0, 10.0)
        _check_num("cluster_prob", self.cluster_prob, 0.0, 1.0)


@dataclass(frozen=True)
class PoleSpec:
    count: tuple[int, int] = (0, 4)
    """number of poles (thin bare cylinders), uniform integer."""
    radius_m: Range = (0.04, 0.08)
    """m, pole radius."""
    height_m: Range = (2.5, 6.0)
    """m, pole height."""

    def __post_init__(self) -> None:
        _check_count("count", self.count)
        _check_range("radius_m", self.radius_m, SIZE_STEP_M, 2.0)
        _check_range("height_m", self.height_m, 0.1, 30.0)


@dataclass(frozen=True)
class BoxSpec:
    count: tuple[int, int] = (0, 3)
    """number of boxes (rocks, crates, buildings), uniform integer."""
    size_m: Range = (0.4, 1.2)
    """m, side of the (square) footprint."""
    height_m: Range = (0.3, 1.5)
    """m, height above the ground."""

    def __post_init__(self) -> None:
        _check_count("count", self.count)
        _check_range("size_m", self.size_m, 2 * SIZE_STEP_M, 20.0)
        _check_range("height_m", self.height_m, 2 * SIZE_STEP_M, 30.0)


@dataclass(frozen=True)
class WallSpec:
    count: tuple[int, int] = (0, 1)
    """number of walls, uniform integer."""
    length_m: Range = (1.0, 3.0)
    """m, wall length."""
    thickness_m: float = 0.16
    """m, wall thickness."""
    height_m: Range = (1.0, 3.0)
    """m, wall height above the ground."""

    def __post_init__(self) -> None:
        _check_count("count", self.count)
        _check_range("length_m", self.length_m, 2 * SIZE_STEP_M, 50.0)
        _check_num("thickness_m", self.thickness_m, 2 * SIZE_STEP_M, 5.0)
        _check_range("height_m", self.height_m, 2 * SIZE_STEP_M, 30.0)


@dataclass(frozen=True)
class DistractorSpec:
    same_shape_count: tuple[int, int] = (0, 0)
    """number of objects of the target's shape and size in other colours."""
    same_shape_colors_rgb: tuple[RGB, ...] = ()
    """RGB in [0, 1], colours drawn for same-shape distractors (required if their count > 0)."""
    same_color_count: tuple[int, int] = (0, 0)
    """number of objects of the target's colour in other shapes."""
    same_color_kinds: tuple[str, ...] = ("box", "cylinder")
    """shapes drawn for same-colour distractors (each different from the target's)."""
    min_target_distance_m: float = 2.0
    """m, distractors keep at least this far from the target."""

    def __post_init__(self) -> None:
        _check_count("same_shape_count", self.same_shape_count, 50)
        _check_palette("same_shape_colors_rgb", self.same_shape_colors_rgb, allow_empty=True)
        if self.same_shape_count[1] > 0 and not self.same_shape_colors_rgb:
            raise ValueError(
                f"same_shape_colors_rgb=[]: expected at least one colour when "
                f"same_shape_count={list(self.same_shape_count)}")
        _check_count("same_color_count", self.same_color_count, 50)
        if not self.same_color_kinds or any(k not in SHAPES for k in self.same_color_kinds):
            raise ValueError(f"same_color_kinds={list(self.same_color_kinds)!r}: "
                             f"expected a non-empty list drawn from {list(SHAPES)}")
        _check_num("min_target_distance_m", self.min_target_distance_m, 0.0, 50.0)


@dataclass(frozen=True)
class AppearanceSpec:
    ground_rgb: tuple[RGB, ...] = ((0.33, 0.42, 0.22), (0.38, 0.40, 0.25))
    """palette of ground colours; one is drawn per scene."""
    sky_rgb: tuple[RGB, ...] = ((0.62, 0.75, 0.90),)
    """palette of sky (backdrop) colours; one is drawn per scene."""
    trunk_rgb: tuple[RGB, ...] = ((0.36, 0.26, 0.17), (0.30, 0.24, 0.18))
    """palette of trunk colours; one per tree."""
    canopy_rgb: tuple[RGB, ...] = ((0.16, 0.40, 0.14), (0.22, 0.46, 0.18), (0.12, 0.32, 0.12))
    """palette of canopy colours; one per tree."""
    object_rgb: tuple[RGB, ...] = ((0.55, 0.55, 0.52), (0.45, 0.42, 0.38))
    """palette for poles, boxes and walls."""
    color_jitter: float = 0.08
    """per-object brightness factor uniform in [1 - jitter, 1 + jitter] (target excluded)."""
    random_palette_prob: float = 0.0
    """chance that a scene replaces the palettes above (and the light's tint) with
    random colours -- domain randomisation for training families. The target keeps
    its colour, and no random colour comes close to it (see `random_palette`). The
    draw has its own random stream, so the layout does not depend on this value."""

    def __post_init__(self) -> None:
        for name in ("ground_rgb", "sky_rgb", "trunk_rgb", "canopy_rgb", "object_rgb"):
            _check_palette(name, getattr(self, name))
        _check_num("color_jitter", self.color_jitter, 0.0, 0.5)
        _check_num("random_palette_prob", self.random_palette_prob, 0.0, 1.0)


@dataclass(frozen=True)
class LightSpec:
    azimuth_rad: Range = (0.0, 2 * math.pi)
    """rad, direction the light comes from, counter-clockwise from world +x (east), uniform."""
    elevation_rad: Range = (0.6, 1.3)
    """rad, angle of the light above the horizon, uniform."""
    color_rgb: RGB = (1.0, 1.0, 1.0)
    """RGB in [0, 1], colour of the light."""
    ambient: Range = (0.5, 0.7)
    """ambient coefficient of the renderer's light, uniform."""
    diffuse: Range = (0.4, 0.6)
    """diffuse coefficient of the renderer's light, uniform."""

    def __post_init__(self) -> None:
        _check_range("azimuth_rad", self.azimuth_rad, -2 * math.pi, 4 * math.pi)
        _check_range("elevation_rad", self.elevation_rad, 0.0, math.pi / 2)
        _check_rgb("color_rgb", self.color_rgb)
        _check_range("ambient", self.ambient, 0.0, 1.0)
        _check_range("diffuse", self.diffuse, 0.0, 1.0)


@dataclass(frozen=True)
class WindSpec:
    steady_mps: Range = (0.0, 0.0)
    """m/s, speed of the steady horizontal wind (direction uniform), uniform."""
    gust_mps: Range = (0.0, 0.0)
    """m/s, peak speed of a gust (horizontal, direction uniform), uniform per gust."""
    gust_rate_hz: float = 0.0
    """1/s, mean number of gusts per second (Poisson)."""
    gust_duration_s: Range = (0.5, 1.5)
    """s, duration of one gust (a raised-cosine pulse), uniform."""

    def __post_init__(self) -> None:
        _check_range("steady_mps", self.steady_mps, 0.0, 20.0)
        _check_range("gust_mps", self.gust_mps, 0.0, 30.0)
        _check_num("gust_rate_hz", self.gust_rate_hz, 0.0, 10.0)
        _check_range("gust_duration_s", self.gust_duration_s, 0.05, 30.0)


@dataclass(frozen=True)
class DynamicsSpec:
    mass_scale: Range = (1.0, 1.0)
    """factor on the vehicle mass, uniform."""
    kf_scale: Range = (1.0, 1.0)
    """factor on the propeller thrust and drag coefficients, uniform."""
    weak_motor_prob: float = 0.0
    """probability that one motor (uniformly chosen) is weak."""
    weak_motor_efficiency: Range = (0.7, 0.85)
    """thrust factor of the weak motor, uniform, in (0, 1]."""

    def __post_init__(self) -> None:
        _check_range("mass_scale", self.mass_scale, 0.1, 5.0)
        _check_range("kf_scale", self.kf_scale, 0.1, 5.0)
        _check_num("weak_motor_prob", self.weak_motor_prob, 0.0, 1.0)
        _check_range("weak_motor_efficiency", self.weak_motor_efficiency, 0.0, 1.0, lo_open=True)


@dataclass(frozen=True)
class SensorSpec:
    pixel_noise_std: Range = (0.0, 0.0)
    """std of additive Gaussian pixel noise in 0-255 units, drawn per episode (noise per frame)."""
    frame_drop_prob: float = 0.0
    """probability that a frame is lost; the command is held and the next frame's dt grows."""
    max_consecutive_drops: int = 3
    """at most this many frames in a row are lost."""
    delay_frames: tuple[int, int] = (0, 0)
    """frames of image latency (the policy sees a frame this many control steps old), per episode."""
    brightness: Range = (0.0, 0.0)
    """additive brightness shift, fraction of full scale, per episode."""
    contrast: Range = (1.0, 1.0)
    """contrast factor about mid-grey, per episode."""
    saturation: Range = (1.0, 1.0)
    """saturation factor (0 = grey), per episode."""

    def __post_init__(self) -> None:
        _check_range("pixel_noise_std", self.pixel_noise_std, 0.0, 128.0)
        _check_num("frame_drop_prob", self.frame_drop_prob, 0.0, 0.9)
        if not (isinstance(self.max_consecutive_drops, int) and 1 <= self.max_consecutive_drops <= 30):
            raise ValueError(f"max_consecutive_drops={self.max_consecutive_drops!r}: "
                             f"expected an integer in [1, 30]")
        _check_count("delay_frames", self.delay_frames, 30)
        _check_range("brightness", self.brightness, -1.0, 1.0)
        _check_range("contrast", self.contrast, 0.0, 5.0)
        _check_range("saturation", self.saturation, 0.0, 5.0)

    @property
    def active(self) -> bool:
        """True if any image stress or sensor fault can occur."""
        return self != SensorSpec(max_consecutive_drops=self.max_consecutive_drops)


@dataclass(frozen=True)
class MovingTargetSpec:
    speed_mps: Range = (0.3, 0.8)
    """m/s, speed of the target along its path (FollowTarget), uniform per episode."""
    turn_rate_rad_s: float = 0.6
    """rad/s, largest turn rate of the target's path (it is smooth: a random, bounded heading rate)."""
    height_m: Range = (0.8, 2.0)
    """m, altitude band the moving target stays in."""

    def __post_init__(self) -> None:
        _check_range("speed_mps", self.speed_mps, 0.0, 10.0)
        _check_num("turn_rate_rad_s", self.turn_rate_rad_s, 0.0, 5.0)
        _check_range("height_m", self.height_m, 0.2, 50.0)


@dataclass(frozen=True)
class EpisodeSpec:
    time_limit_s: float = 30.0
    """s, FlyToTarget time limit (truncation) for this family: time to search and fly."""
    follow_time_s: float = 20.0
    """s, FollowTarget episode length."""

    def __post_init__(self) -> None:
        _check_num("time_limit_s", self.time_limit_s, 0.1, 3600.0)
        _check_num("follow_time_s", self.follow_time_s, 0.1, 3600.0)


@dataclass(frozen=True)
class FamilySpec:
    """A scene family: the distribution every scene of `envs/<name>.yaml` is drawn from.

    Built with `load_family` (which names the file in every error) or directly.
    `splits` maps a split name to its half-open range [start, stop) of scene seeds.
    """

    name: str
    description: str = ""
    arena: ArenaSpec = field(default_factory=ArenaSpec)
    clearance: ClearanceSpec = field(default_factory=ClearanceSpec)
    start: StartSpec = field(default_factory=StartSpec)
    target: TargetSpec = field(default_factory=TargetSpec)
    trees: TreeSpec = field(default_factory=TreeSpec)
    poles: PoleSpec = field(default_factory=PoleSpec)
    boxes: BoxSpec = field(default_factory=BoxSpec)
    walls: WallSpec = field(default_factory=WallSpec)
    distractors: DistractorSpec = field(default_factory=DistractorSpec)
    appearance: AppearanceSpec = field(default_factory=AppearanceSpec)
    light: LightSpec = field(default_factory=LightSpec)
    wind: WindSpec = field(default_factory=WindSpec)
    dynamics: DynamicsSpec = field(default_factory=DynamicsSpec)
    sensor: SensorSpec = field(default_factory=SensorSpec)
    moving_target: MovingTargetSpec = field(default_factory=MovingTargetSpec)
    episode: EpisodeSpec = field(default_factory=EpisodeSpec)
    splits: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        "train": (0, 1_000_000), "val": (1_000_000, 1_010_000), "unseen": (1_010_000, 1_020_000)})
    """split name -> [start, stop) range of scene seeds; ranges are disjoint."""

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name):
            raise ValueError(f"name={self.name!r}: expected a non-empty string")
        if not isinstance(self.splits, dict):
            raise ValueError(f"splits={self.splits!r}: expected a mapping name -> [start, stop)")
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"splits={sorted(self.splits)}: expected at least {list(SPLITS)} "
                             f"(missing {missing})")
        for name, rng in self.splits.items():
            if not (isinstance(rng, tuple) and len(rng) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in rng)
                    and 0 <= rng[0] < rng[1] <= 2**62):
                raise ValueError(f"splits.{name}={rng!r}: expected [start, stop) integers, "
                                 f"0 <= start < stop")
        items = sorted(self.splits.items(), key=lambda kv: kv[1][0])
        for (a, ra), (b, rb) in zip(items, items[1:]):
            if rb[0] < ra[1]:
                raise ValueError(f"splits.{b}={list(rb)} overlaps splits.{a}={list(ra)}: "
                                 f"expected disjoint seed ranges")
        half_span = self.arena.size_m - 2 * self.arena.margin_m
        if self.target.distance_m[1] > half_span:
            raise ValueError(
                f"target.distance_m={list(self.target.distance_m)}: expected high <= "
                f"arena.size_m - 2 arena.margin_m = {half_span:g} so that start and target fit")
        for key, rng in (("start.height_m", self.start.height_m),
                         ("target.height_m", self.target.height_m),
                         ("moving_target.height_m", self.moving_target.height_m)):
            if rng[1] >= self.arena.ceiling_m:
                raise ValueError(f"{key}={list(rng)}: expected high < arena.ceiling_m "
                                 f"= {self.arena.ceiling_m:g}")

    @property
    def drone_diameter_m(self) -> float:
        return self.clearance.drone_diameter_m

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples); `from_dict` inverts it."""
        return _to_plain(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> FamilySpec:
        """Build from a nested dict; errors name `source`, the key path, the value and what was expected."""
        return _build(cls, d, source, "")


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [_to_plain(v) for v in obj]
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML value to the annotated field type (lists -> tuples, ints -> floats)."""
    origin = typing.get_origin(tp)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}={value!r}: expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}={value!r}: expected an integer")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}={value!r}: expected a string")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}={value!r}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{where}={value!r}: expected a list of {len(args)} values")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ValueError(f"{where}={value!r}: expected a mapping")
        return {str(k): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported field type {tp!r} at {where}")


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "<top level>"
    if not isinstance(data, dict):
        raise ValueError(f"{source}: {where}={data!r}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown key {prefix}{unknown[0]} (value {data[unknown[0]]!r}); "
                         f"expected one of {names}")
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in data:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name], source, f"{prefix}{name}.")
        else:
            try:
                kwargs[name] = _coerce(tp, data[name], f"{prefix}{name}")
            except ValueError as exc:
                raise ValueError(f"{source}: {exc}") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"{source}: {where}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{source}: {prefix}{exc}") from None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "splits":
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def family_path(name_or_path: str | Path) -> Path:
    """The YAML file of a shipped family name, or the given path to a user's own file."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or "/" in s or "\\" in s:
        path = Path(s)
    else:
        path = ENVS_DIR / f"{s}.yaml"
        if not path.is_file():
            shipped = sorted(p.stem for p in ENVS_DIR.glob("*.yaml"))
            raise ValueError(f"family={s!r}: expected a shipped family {shipped} or a path to a YAML file")
    if not path.is_file():
        raise FileNotFoundError(f"family file {path} does not exist")
    return path


def _load_raw(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    import yaml

    if path in chain:
        raise ValueError(f"{path}: extends cycle {' -> '.join(str(p) for p in chain + (path,))}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: <top level>={data!r}: expected a mapping of keys")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ValueError(f"{path}: extends={parent!r}: expected a family name or a YAML path")
    ppath = Path(parent)
    if not ppath.is_absolute() and (parent.endswith((".yaml", ".yml")) or "/" in parent):
        ppath = path.parent / parent
    else:
        ppath = family_path(parent) if not ppath.is_absolute() else ppath
    base = _load_raw(ppath, chain + (path,))
    base.pop("splits", None)  # a child must choose its own seeds (disjoint from the parent's)
    return _deep_merge(base, data)


_FAMILY_CACHE: dict[tuple[str, float], FamilySpec] = {}


def load_family(name_or_path: str | Path | FamilySpec) -> FamilySpec:
    """Load a family by shipped name (`forest`) or by a path to a user's YAML file.

    A file may start with `extends: <family or path>` and override only some keys
    (mappings merge key by key; lists and `splits` are replaced; `splits` must be given).
    Errors name the file, the key path, the value and what was expected.
    """
    if isinstance(name_or_path, FamilySpec):
        return name_or_path
    path = family_path(name_or_path).resolve()
    key = (str(path), path.stat().st_mtime)
    cached = _FAMILY_CACHE.get(key)
    if cached is None:
        raw = _load_raw(path, ())
        if "splits" not in raw:
            raise ValueError(f"{path}: missing key splits: expected split name -> [start, stop) "
                             f"seed ranges for at least {list(SPLITS)}")
        cached = _build(FamilySpec, raw, str(path), "")
        _FAMILY_CACHE[key] = cached
    return cached


def shipped_families() -> list[str]:
    """Names of the families in `envs/`."""
    return sorted(p.stem for p in ENVS_DIR.glob("*.yaml"))


# --------------------------------------------------------------------------
# a scene
# --------------------------------------------------------------------------
class Scene:
    """One scene drawn from a family. Immutable: its arrays are read-only.

    Geometry (world ENU, m, rad):
      cylinders (N, 5) float64: x, y, radius, zmin, zmax (vertical)
      spheres   (M, 4) float64: x, y, z, radius
      boxes     (K, 7) float64: x, y, z (centre), hx, hy, hz (half extents), yaw
      *_rgba    (., 4) float64: colour in [0, 1]
      *_role    (.,) int8: ROLE_* code (trunk, canopy, pole, box, wall, distractor)
    """

    def __init__(self, **kw: Any) -> None:
        for k, v in kw.items():
            if isinstance(v, np.ndarray):
                v.setflags(write=False)
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Scene is immutable")

    # declared for type checkers and readers
    family: str
    """name of the family it was drawn from."""
    split: str
    index: int
    """index within the split; scene_seed = split start + index."""
    scene_seed: int
    arena_size_m: float
    ceiling_m: float
    start_pos_w: np.ndarray
    """(3,) m, start position."""
    start_yaw: float
    """rad, start heading (0 = east, counter-clockwise)."""
    target_pos_w: np.ndarray
    """(3,) m, target centre."""
    target_kind: str
    target_size_m: float
    target_rgba: np.ndarray
    cylinders: np.ndarray
    cylinder_rgba: np.ndarray
    cylinder_role: np.ndarray
    spheres: np.ndarray
    sphere_rgba: np.ndarray
    sphere_role: np.ndarray
    boxes: np.ndarray
    box_rgba: np.ndarray
    box_role: np.ndarray
    ground_rgb: np.ndarray
    sky_rgb: np.ndarray
    light_direction_w: np.ndarray
    """(3,) unit vector pointing from the scene towards the light."""
    light_rgb: np.ndarray
    light_ambient: float
    light_diffuse: float
    wind_steady_w: np.ndarray
    """(3,) m/s, steady wind in world ENU."""
    gusts: np.ndarray
    """(G, 5): start time s, duration s, peak wind vx, vy, vz m/s (world ENU)."""
    mass_scale: float
    kf_scale: float
    weak_motor: int
    """index 0-3 of the weak motor, or -1."""
    weak_motor_efficiency: float
    pixel_noise_std: float
    frame_drop_prob: float
    max_consecutive_drops: int
    delay_frames: int
    brightness: float
    contrast: float
    saturation: float
    target_path_w: np.ndarray | None
    """(P, 3) m, positions of the moving target at `target_path_dt_s` intervals (FollowTarget), or None."""
    target_path_dt_s: float
    line_blocked: bool
    """the straight segment start -> target centre passes through an obstacle."""

    def wind_at(self, t_s: float) -> np.ndarray:
        """(3,) m/s, world ENU wind at time t_s: steady + raised-cosine gusts."""
        w = self.wind_steady_w.copy()
        if len(self.gusts):
            g = self.gusts
            u = (t_s - g[:, 0]) / g[:, 1]
            on = (u >= 0) & (u <= 1)
            if on.any():
                amp = 0.5 * (1 - np.cos(2 * np.pi * u[on]))
                w += (amp[:, None] * g[on, 2:5]).sum(axis=0)
        return w

    def target_at(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Target centre (3,) m and velocity (3,) m/s (world ENU) at time t_s."""
        if self.target_path_w is None:
            return self.target_pos_w.copy(), np.zeros(3)
        path, dt = self.target_path_w, self.target_path_dt_s
        k = t_s / dt
        if k >= len(path) - 1:  # past the end of the path: the target stops there
            return path[-1].copy(), np.zeros(3)
        i = int(max(math.floor(k), 0))
        a = min(max(k - i, 0.0), 1.0)
        pos = path[i] * (1 - a) + path[i + 1] * a
        return pos, (path[i + 1] - path[i]) / dt

    @property
    def obstacle_count(self) -> int:
        return len(self.cylinders) + len(self.spheres) + len(self.boxes)

    def geometry(self) -> dict[str, np.ndarray]:
        """Obstacle arrays for `info` (read-only views, no copy)."""
        return {"cylinders": self.cylinders, "spheres": self.spheres, "boxes": self.boxes}


# --------------------------------------------------------------------------
# geometry: segment tests and distances, vectorised over obstacles
# --------------------------------------------------------------------------
def _segment_hits_cylinders(p0: np.ndarray, p1: np.ndarray, cyl: np.ndarray) -> np.ndarray:
    """(N,) bool: does segment p0->p1 pass through each vertical cylinder (x, y, r, zmin, zmax)?"""
    if len(cyl) == 0:
        return np.zeros(0, bool)
    d = p1[:2] - p0[:2]
    f = p0[:2] - cyl[:, :2]
    a = float(d @ d)
    r = cyl[:, 2]
    dz = p1[2] - p0[2]
    if a < 1e-12:  # vertical segment
        inside = (f * f).sum(1) <= r * r
        zlo, zhi = min(p0[2], p1[2]), max(p0[2], p1[2])
        return inside & (zhi >= cyl[:, 3]) & (zlo <= cyl[:, 4])
    b = 2 * (f @ d)
    c = (f * f).sum(1) - r * r
    disc = b * b - 4 * a * c
    ok = disc >= 0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    t0 = np.clip((-b - sq) / (2 * a), 0.0, 1.0)
    t1 = np.clip((-b + sq) / (2 * a), 0.0, 1.0)
    ok &= t1 > t0
    z0 = p0[2] + dz * t0
    z1 = p0[2] + dz * t1
    return ok & (np.maximum(z0, z1) >= cyl[:, 3]) & (np.minimum(z0, z1) <= cyl[:, 4])


def _segment_hits_spheres(p0: np.ndarray, p1: np.ndarray, sph: np.ndarray) -> np.ndarray:
    if len(sph) == 0:
        return np.zeros(0, bool)
    d = p1 - p0
    a = float(d @ d)
    rel = sph[:, :3] - p0
    t = np.clip(rel @ d / a, 0.0, 1.0) if a > 1e-12 else np.zeros(len(sph))
    closest = p0 + t[:, None] * d
    return ((sph[:, :3] - closest) ** 2).sum(1) <= sph[:, 3] ** 2


def _segment_hits_boxes(p0: np.ndarray, p1: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Slab test in each box's own frame (yaw about z)."""
    if len(box) == 0:
        return np.zeros(0, bool)
    c, s = np.cos(box[:, 6]), np.sin(box[:, 6])
    rel0 = p0 - box[:, :3]
    d = p1 - p0
    # rotate into the box frame (by -yaw)
    o = np.stack([c * rel0[:, 0] + s * rel0[:, 1], -s * rel0[:, 0] + c * rel0[:, 1], rel0[:, 2]], 1)
    dv = np.stack([c * d[0] + s * d[1], -s * d[0] + c * d[1], np.full(len(box), d[2])], 1)
    h = box[:, 3:6]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dv
        ta = (-h - o) * inv
        tb = (h - o) * inv
    tmin = np.where(np.isnan(ta), -np.inf, np.minimum(ta, tb))
    tmax = np.where(np.isnan(ta), np.inf, np.maximum(ta, tb))
    # a zero direction component: inside the slab or never
    par = dv == 0
    outside = par & (np.abs(o) > h)
    tmin = np.where(par, -np.inf, tmin)
    tmax = np.where(par, np.inf, tmax)
    enter = np.maximum(tmin.max(1), 0.0)
    leave = np.minimum(tmax.min(1), 1.0)
    return (enter <= leave) & ~outside.any(1)


def segment_hits(p0_w: np.ndarray, p1_w: np.ndarray, cylinders: np.ndarray,
                 spheres: np.ndarray, boxes: np.ndarray) -> bool:
    """True if the segment p0_w -> p1_w ((3,) m, world ENU) passes through any of the
    cylinders (N, 5), spheres (M, 4) or boxes (K, 7), in the `Scene` array formats."""
    p0 = np.asarray(p0_w, float)
    p1 = np.asarray(p1_w, float)
    return bool(_segment_hits_cylinders(p0, p1, np.asarray(cylinders, float).reshape(-1, 5)).any()
                or _segment_hits_spheres(p0, p1, np.asarray(spheres, float).reshape(-1, 4)).any()
                or _segment_hits_boxes(p0, p1, np.asarray(boxes, float).reshape(-1, 7)).any())


def segment_blocked(scene: Scene, p0_w: np.ndarray, p1_w: np.ndarray,
                    ignore_roles: tuple[int, ...] = ()) -> bool:
    """True if the segment p0_w -> p1_w ((3,) m, world ENU) passes through any obstacle."""
    def kept(arr: np.ndarray, role: np.ndarray) -> np.ndarray:
        return arr[~np.isin(role, ignore_roles)] if ignore_roles else arr

    return segment_hits(p0_w, p1_w, kept(scene.cylinders, scene.cylinder_role),
                        kept(scene.spheres, scene.sphere_role), kept(scene.boxes, scene.box_role))


def _dist_point_cylinders(p: np.ndarray, cyl: np.ndarray) -> np.ndarray:
    """(N,) m, distance from point p to each cylinder's surface (0 inside)."""
    if len(cyl) == 0:
        return np.zeros(0)
    radial = np.maximum(np.hypot(p[0] - cyl[:, 0], p[1] - cyl[:, 1]) - cyl[:, 2], 0.0)
    vertical = np.maximum(np.maximum(cyl[:, 3] - p[2], p[2] - cyl[:, 4]), 0.0)
    return np.hypot(radial, vertical)


def _dist_point_spheres(p: np.ndarray, sph: np.ndarray) -> np.ndarray:
    if len(sph) == 0:
        return np.zeros(0)
    return np.maximum(np.linalg.norm(sph[:, :3] - p, axis=1) - sph[:, 3], 0.0)


def _dist_point_boxes(p: np.ndarray, box: np.ndarray) -> np.ndarray:
    if len(box) == 0:
        return np.zeros(0)
    c, s = np.cos(box[:, 6]), np.sin(box[:, 6])
    rel = p - box[:, :3]
    local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], 1)
    q = np.maximum(np.abs(local) - box[:, 3:6], 0.0)
    return np.linalg.norm(q, axis=1)


def obstacle_distance(scene: Scene, p_w: np.ndarray) -> float:
    """m, distance from point p_w ((3,), world ENU) to the nearest obstacle surface (inf if none)."""
    p = np.asarray(p_w, float)
    d = np.concatenate([_dist_point_cylinders(p, scene.cylinders),
                        _dist_point_spheres(p, scene.spheres),
                        _dist_point_boxes(p, scene.boxes)])
    return float(d.min()) if len(d) else math.inf


# --------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------
def _q(x: float, step: float = SIZE_STEP_M) -> float:
    """Round a size to the shape grid (at least one step)."""
    return max(round(x / step), 1) * step


class _Builder:
    """Accumulates obstacles while keeping clearances; used only inside generate_scene."""

    def __init__(self, spec: FamilySpec, rng: np.random.Generator, start: np.ndarray,
                 target: np.ndarray, keep_out: np.ndarray | None) -> None:
        self.spec, self.rng = spec, rng
        self.start, self.target = start, target
        self.keep_out = keep_out  # (P, 3) points (moving-target path) to keep clear
        self.cyl: list[list[float]] = []
        self.cyl_rgba: list[list[float]] = []
        self.cyl_role: list[int] = []
        self.sph: list[list[float]] = []
        self.sph_rgba: list[list[float]] = []
        self.sph_role: list[int] = []
        self.box: list[list[float]] = []
        self.box_rgba: list[list[float]] = []
        self.box_role: list[int] = []
        self.footprints: list[tuple[float, float, float]] = []  # ground-standing x, y, r (gap rule)

    def colour(self, palette: tuple[RGB, ...], jitter: bool = True) -> list[float]:
        c = np.array(palette[int(self.rng.integers(len(palette)))], float)
        if jitter:
            j = self.spec.appearance.color_jitter
            c = np.clip(c * self.rng.uniform(1 - j, 1 + j), 0.0, 1.0)
        return [*c.tolist(), 1.0]

    def _clear(self, cyl: list[list[float]], sph: list[list[float]], box: list[list[float]],
               extra_target_m: float = 0.0) -> bool:
        """True if these new parts keep the start, target and moving path clearances."""
        cl = self.spec.clearance
        c, s, b = np.array(cyl).reshape(-1, 5), np.array(sph).reshape(-1, 4), np.array(box).reshape(-1, 7)

        def dist(p: np.ndarray) -> float:
            d = np.concatenate([_dist_point_cylinders(p, c), _dist_point_spheres(p, s),
                                _dist_point_boxes(p, b)])
            return float(d.min()) if len(d) else math.inf

        if dist(self.start) < cl.start_m or dist(self.target) < cl.target_m + extra_target_m:
            return False
        if self.keep_out is not None:
            for p in self.keep_out:
                if dist(p) < cl.corridor_m:
                    return False
        return True

    def _gap_ok(self, x: float, y: float, r: float) -> bool:
        gap = self.spec.trees.min_gap_m
        for fx, fy, fr in self.footprints:
            if math.hypot(x - fx, y - fy) - r - fr < gap:
                return False
        return True

    def _inside(self, x: float, y: float, r: float = 0.0) -> bool:
        h = self.spec.arena.size_m / 2
        return abs(x) <= h - r and abs(y) <= h - r

    def tree(self, x: float, y: float) -> bool:
        t, rng = self.spec.trees, self.rng
        r = _q(rng.uniform(*t.trunk_radius_m))
        if not self._inside(x, y, r) or not self._gap_ok(x, y, r):
            return False
        rc = _q(rng.uniform(*t.canopy_radius_m), CANOPY_STEP_M)
        base = _q(rng.uniform(*t.canopy_base_m))
        if t.canopy_kind == "sphere":
            # the trunk ends inside the canopy, on a coarse grid (few distinct heights):
            # base < top <= base + 0.65 m < base + 2 rc
            top = math.ceil((base + 0.15) / TRUNK_STEP_M) * TRUNK_STEP_M
            crown_c: list[list[float]] = []
            crown_s = [[x, y, base + rc, rc]]
        else:
            depth = _q(rng.uniform(*t.canopy_depth_m), LENGTH_STEP_M)
            # the trunk ends inside the disc, on the height grid
            top = max(math.floor((base + depth - 0.05) / LENGTH_STEP_M) * LENGTH_STEP_M, base + 0.5 * depth)
            crown_c = [[x, y, rc, base, base + depth]]
            crown_s = []
        trunk = [x, y, r, 0.0, top]
        if not self._clear([trunk, *crown_c], crown_s, []):
            return False
        ap = self.spec.appearance
        self.cyl.append(trunk)
        self.cyl_rgba.append(self.colour(ap.trunk_rgb))
        self.cyl_role.append(ROLE_TRUNK)
        crown_rgba = self.colour(ap.canopy_rgb)
        for cc in crown_c:
            self.cyl.append(cc)
            self.cyl_rgba.append(crown_rgba)
            self.cyl_role.append(ROLE_CANOPY)
        for ss in crown_s:
            self.sph.append(ss)
            self.sph_rgba.append(crown_rgba)
            self.sph_role.append(ROLE_CANOPY)
        self.footprints.append((x, y, r))
        return True

    def pole(self, x: float, y: float) -> bool:
        ps = self.spec.poles
        r = _q(self.rng.uniform(*ps.radius_m))
        h = _q(self.rng.uniform(*ps.height_m), TRUNK_STEP_M)
        part = [x, y, r, 0.0, h]
        if not self._inside(x, y, r) or not self._gap_ok(x, y, r) or not self._clear([part], [], []):
            return False
        self.cyl.append(part)
        self.cyl_rgba.append(self.colour(self.spec.appearance.object_rgb))
        self.cyl_role.append(ROLE_POLE)
        self.footprints.append((x, y, r))
        return True

    def ground_box(self, x: float, y: float, hx: float, hy: float, h: float, role: int) -> bool:
        yaw = float(self.rng.uniform(-math.pi, math.pi))
        part = [x, y, h / 2, hx, hy, h / 2, yaw]
        bound = math.hypot(hx, hy)
        if not self._inside(x, y, bound) or not self._gap_ok(x, y, bound) or not self._clear([], [], [part]):
            return False
        self.box.append(part)
        self.box_rgba.append(self.colour(self.spec.appearance.object_rgb))
        self.box_role.append(role)
        self.footprints.append((x, y, bound))
        return True

    def floating(self, kind: str, x: float, y: float, z: float, size: float,
                 rgba: list[float]) -> bool:
        """A distractor (floating object the size of the target)."""
        h = size / 2
        c: list[list[float]] = []
        s: list[list[float]] = []
        b: list[list[float]] = []
        if kind == "sphere":
            s = [[x, y, z, h]]
        elif kind == "cylinder":
            c = [[x, y, h, z - h, z + h]]
        else:
            b = [[x, y, z, h, h, h, float(self.rng.uniform(-math.pi, math.pi))]]
        far = math.dist((x, y, z), self.target) >= self.spec.distractors.min_target_distance_m
        if not (self._inside(x, y, size) and far and self._clear(c, s, b)):
            return False
        for arr, rgb, role, new in ((self.cyl, self.cyl_rgba, self.cyl_role, c),
                                    (self.sph, self.sph_rgba, self.sph_role, s),
                                    (self.box, self.box_rgba, self.box_role, b)):
            for part in new:
                arr.append(part)
                rgb.append(rgba)
                role.append(ROLE_DISTRACTOR)
        return True


def _draw_start_target(spec: FamilySpec, rng: np.random.Generator
                       ) -> tuple[np.ndarray, float, np.ndarray]:
    a = spec.arena
    lim = a.size_m / 2 - a.margin_m
    for _ in range(1000):
        s_xy = rng.uniform(-lim, lim, 2)
        dist = rng.uniform(*spec.target.distance_m)
        bearing = rng.uniform(-math.pi, math.pi)
        t_xy = s_xy + dist * np.array([math.cos(bearing), math.sin(bearing)])
        if np.all(np.abs(t_xy) <= lim):
            break
    else:  # the spec check (distance <= size - 2 margin) makes this practically unreachable
        raise RuntimeError(f"family {spec.name}: could not place start and target in the arena")
    start = np.array([s_xy[0], s_xy[1], rng.uniform(*spec.start.height_m)])
    target = np.array([t_xy[0], t_xy[1], rng.uniform(*spec.target.height_m)])
    st = spec.start
    if rng.random() < st.facing_target_prob:
        offset = rng.uniform(-st.facing_jitter_rad, st.facing_jitter_rad)
    else:
        offset = rng.uniform(*st.yaw_offset_rad) * (1 if rng.random() < 0.5 else -1)
    yaw = math.remainder(bearing + offset, 2 * math.pi)
    return start, yaw, target


def _moving_path(spec: FamilySpec, rng: np.random.Generator, start: np.ndarray, yaw: float,
                 follow_distance_m: float, duration_s: float, dt_s: float) -> np.ndarray:
    """(P, 3) smooth path of the moving target: starts ahead of the drone, bounded turn rate,
    heading rate is a smoothed random signal; it turns back towards the centre near the edges."""
    mt = spec.moving_target
    n = int(math.ceil(duration_s / dt_s)) + 2
    speed = rng.uniform(*mt.speed_mps)
    lim = spec.arena.size_m / 2 - spec.arena.margin_m
    # smooth random heading rate: sum of a few low-frequency sinusoids, scaled to the bound
    t = np.arange(n) * dt_s
    freqs = rng.uniform(0.03, 0.15, 3)
    phases = rng.uniform(0, 2 * math.pi, 3)
    amps = rng.uniform(-1, 1, 3)
    rate = (amps[:, None] * np.sin(2 * math.pi * freqs[:, None] * t + phases[:, None])).sum(0)
    rate *= mt.turn_rate_rad_s / max(np.abs(amps).sum(), 1e-9)
    zs = mt.height_m
    z0 = float(np.clip(start[2], *zs))
    zf = rng.uniform(0.02, 0.08)
    zph = rng.uniform(0, 2 * math.pi)
    za = (zs[1] - zs[0]) / 2
    zc = (zs[0] + zs[1]) / 2
    pos = np.empty((n, 3))
    p = start[:2] + follow_distance_m * np.array([math.cos(yaw), math.sin(yaw)])
    p = np.clip(p, -lim, lim)
    heading = yaw
    for i in range(n):
        pos[i, :2] = p
        zt = zc + za * math.sin(2 * math.pi * zf * t[i] + zph)
        blend = min(t[i] / 5.0, 1.0)  # ease from the start altitude into the band
        pos[i, 2] = (1 - blend) * z0 + blend * zt
        # steer back inside when heading towards an edge
        ahead = p + 2.0 * np.array([math.cos(heading), math.sin(heading)])
        if np.any(np.abs(ahead) > lim):
            to_c = math.atan2(-p[1], -p[0])
            err = math.remainder(to_c - heading, 2 * math.pi)
            r = float(np.clip(3 * err, -mt.turn_rate_rad_s, mt.turn_rate_rad_s))
        else:
            r = rate[i]
        heading += r * dt_s
        p = np.clip(p + speed * dt_s * np.array([math.cos(heading), math.sin(heading)]), -lim, lim)
    return pos


def _visible_fraction(b: _Builder, eye: np.ndarray, target: np.ndarray, size_m: float) -> float:
    """Fraction of 9 points of the target's outline (its centre and 8 points just inside
    the rim of its silhouette seen from `eye`) that no obstacle hides from `eye`."""
    d = target - eye
    d = d / max(float(np.linalg.norm(d)), 1e-9)
    side = np.cross(d, [0.0, 0.0, 1.0])
    side = side / max(float(np.linalg.norm(side)), 1e-9)
    up = np.cross(side, d)
    r = 0.45 * size_m
    angles = np.linspace(0.0, 2.0 * math.pi, 8, endpoint=False)
    points = [target] + [target + r * (math.cos(a) * side + math.sin(a) * up) for a in angles]
    seen = sum(not segment_hits(eye, p, b.cyl, b.sph, b.box) for p in points)
    return seen / len(points)


def _free_corridor(spec: FamilySpec, b: _Builder, start: np.ndarray,
                   goals: np.ndarray) -> bool:
    """True if a 2-D path of width `clearance.corridor_m` joins start to every goal point,
    treating as solid every obstacle cross-section within the altitude band they span."""
    import cv2

    cell = 0.05
    size = spec.arena.size_m
    n = int(math.ceil(size / cell))
    grid = np.zeros((n, n), np.uint8)
    pts = np.vstack([start[None], goals])
    zlo = pts[:, 2].min() - 0.3
    zhi = pts[:, 2].max() + 0.3
    infl = spec.clearance.corridor_m / 2

    def to_px(x: float, y: float) -> tuple[int, int]:
        return (int(round((x + size / 2) / cell)), int(round((y + size / 2) / cell)))

    for x, y, r, z0, z1 in b.cyl:
        if z0 < zhi and z1 > zlo:
            cv2.circle(grid, to_px(x, y), int(math.ceil((r + infl) / cell)), 1, -1)
    for x, y, z, r in b.sph:
        dz = max(zlo - z, z - zhi, 0.0)
        if dz < r:
            rr = math.sqrt(r * r - dz * dz)
            cv2.circle(grid, to_px(x, y), int(math.ceil((rr + infl) / cell)), 1, -1)
    for x, y, z, hx, hy, hz, yaw in b.box:
        if z - hz < zhi and z + hz > zlo:
            c, s = math.cos(yaw), math.sin(yaw)
            ex, ey = hx + infl, hy + infl
            corners = [(x + c * u - s * v, y + s * u + c * v)
                       for u, v in ((ex, ey), (-ex, ey), (-ex, -ey), (ex, -ey))]
            cv2.fillConvexPoly(grid, np.array([to_px(*q) for q in corners], np.int32), 1)
            # rounded inflation at the corners is approximated by the square corners (conservative)
    free = (grid == 0).astype(np.uint8)
    _, labels = cv2.connectedComponents(free, connectivity=4)
    sx, sy = to_px(start[0], start[1])
    lab = labels[min(max(sy, 0), n - 1), min(max(sx, 0), n - 1)]
    if lab == 0 or free[min(max(sy, 0), n - 1), min(max(sx, 0), n - 1)] == 0:
        return False
    for g in goals:
        gx, gy = to_px(g[0], g[1])
        if labels[min(max(gy, 0), n - 1), min(max(gx, 0), n - 1)] != lab:
            return False
    return True


def _place_obstacles(spec: FamilySpec, b: _Builder, start: np.ndarray,
                     target: np.ndarray, block_line: bool) -> None:
    rng = b.rng
    h = spec.arena.size_m / 2
    if block_line:
        # a tree across the start-target line, far enough from both ends to keep their clearance
        seg = target[:2] - start[:2]
        length = float(np.linalg.norm(seg))
        for _ in range(40):
            u = rng.uniform(0.3, 0.7)
            lateral = rng.uniform(-0.05, 0.05)
            normal = np.array([-seg[1], seg[0]]) / max(length, 1e-9)
            x, y = start[:2] + u * seg + lateral * normal
            if b.tree(float(x), float(y)):
                break
    n_trees = int(rng.integers(spec.trees.count[0], spec.trees.count[1] + 1))
    placed = 0
    for _ in range(30 * max(n_trees, 1)):
        if placed >= n_trees:
            break
        if b.footprints and rng.random() < spec.trees.cluster_prob:
            fx, fy, fr = b.footprints[int(rng.integers(len(b.footprints)))]
            gap = rng.uniform(spec.trees.min_gap_m, 2.5 * spec.trees.min_gap_m)
            ang = rng.uniform(-math.pi, math.pi)
            # the new trunk's radius is drawn inside tree(); aim at its mean radius
            dist = fr + gap + float(np.mean(spec.trees.trunk_radius_m)) + SIZE_STEP_M
            x, y = fx + dist * math.cos(ang), fy + dist * math.sin(ang)
        else:
            x, y = rng.uniform(-h, h, 2)
        placed += b.tree(float(x), float(y))

    def rock(x: float, y: float) -> bool:
        side = _q(rng.uniform(*spec.boxes.size_m), LENGTH_STEP_M)  # square footprint
        return b.ground_box(x, y, side / 2, side / 2,
                            _q(rng.uniform(*spec.boxes.height_m), LENGTH_STEP_M), ROLE_BOX)

    def wall(x: float, y: float) -> bool:
        return b.ground_box(x, y, _q(rng.uniform(*spec.walls.length_m), LENGTH_STEP_M) / 2,
                            _q(spec.walls.thickness_m) / 2,
                            _q(rng.uniform(*spec.walls.height_m), LENGTH_STEP_M), ROLE_WALL)

    for count, make in ((spec.poles.count, b.pole), (spec.boxes.count, rock),
                        (spec.walls.count, wall)):
        n = int(rng.integers(count[0], count[1] + 1))
        done = 0
        for _ in range(30 * max(n, 1)):
            if done >= n:
                break
            x, y = rng.uniform(-h, h, 2)
            done += make(float(x), float(y))
    d, tg = spec.distractors, spec.target
    size = tg.size_m
    for count, kinds, colours in (
        (d.same_shape_count, (tg.kind,), d.same_shape_colors_rgb),
        (d.same_color_count, tuple(k for k in d.same_color_kinds if k != tg.kind) or ("box",),
         (tg.color_rgb,)),
    ):
        n = int(rng.integers(count[0], count[1] + 1))
        done = 0
        for _ in range(30 * max(n, 1)):
            if done >= n:
                break
            x, y = rng.uniform(-h + 0.5, h - 0.5, 2)
            z = rng.uniform(*tg.height_m)
            kind = kinds[int(rng.integers(len(kinds)))]
            rgba = [*colours[int(rng.integers(len(colours)))], 1.0]
            done += b.floating(kind, float(x), float(y), float(z), _q(size), rgba)


class RandomPalette(NamedTuple):
    """One scene's random colours (RGB in [0, 1])."""

    ground: np.ndarray
    sky: np.ndarray
    light: np.ndarray
    """tint of the light."""
    by_role: dict[int, np.ndarray]
    """ROLE_* -> (n, 3) colours the parts of that role draw from."""

    def part_rgba(self, rng: np.random.Generator, role: int, jitter: float) -> list[float]:
        colours = self.by_role[role]
        c = colours[int(rng.integers(len(colours)))] * rng.uniform(1 - jitter, 1 + jitter)
        return [*np.clip(c, 0.0, 1.0).tolist(), 1.0]


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * h) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _hue(rgb: np.ndarray) -> tuple[float, float]:
    """(hue in [0, 1), saturation) of an RGB colour."""
    mx, mn = float(rgb.max()), float(rgb.min())
    if mx - mn < 1e-9:
        return 0.0, 0.0
    r, g, b = rgb
    if mx == r:
        h = ((g - b) / (mx - mn)) % 6.0
    elif mx == g:
        h = (b - r) / (mx - mn) + 2.0
    else:
        h = (r - g) / (mx - mn) + 4.0
    return h / 6.0, (mx - mn) / mx


TARGET_HUE_EXCLUSION = 0.06
"""Random colours with saturation above 0.4 keep at least this hue distance (a
fraction of the colour circle, 0.06 = 22 deg) from the target's hue, so that the
target stays the only object of its colour."""


def random_palette(rng: np.random.Generator, target_rgb: np.ndarray) -> RandomPalette:
    """Draw random ground, sky, light tint and per-role palettes (trunks 2 colours,
    canopies 3, poles/boxes/walls 2): hue uniform, saturation in [0, 0.9], value in
    [0.12, 0.95]; redrawn when too close to the target's colour."""
    t_hue, _ = _hue(np.asarray(target_rgb, float))

    def colour(value: tuple[float, float] = (0.12, 0.95)) -> np.ndarray:
        while True:
            h, sat, v = rng.random(), rng.uniform(0.0, 0.9), rng.uniform(*value)
            d = abs(h - t_hue)
            if sat <= 0.4 or min(d, 1.0 - d) >= TARGET_HUE_EXCLUSION:
                return _hsv_to_rgb(h, sat, v)

    ground, sky = colour(), colour((0.5, 0.98))
    light = 1.0 - rng.uniform(0.0, 0.25, 3)
    by_role = {ROLE_TRUNK: np.array([colour() for _ in range(2)]),
               ROLE_CANOPY: np.array([colour() for _ in range(3)])}
    objects = np.array([colour() for _ in range(2)])
    for role in (ROLE_POLE, ROLE_BOX, ROLE_WALL):
        by_role[role] = objects
    return RandomPalette(ground, sky, light, by_role)


def _seed_for(spec: FamilySpec, split: str, index: int) -> int:
    if split not in spec.splits:
        raise ValueError(f"split={split!r}: expected one of {sorted(spec.splits)} "
                         f"(family {spec.name})")
    lo, hi = spec.splits[split]
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < hi - lo:
        raise ValueError(f"seed={index!r}: expected an integer in [0, {hi - lo}) for split "
                         f"{split!r} of family {spec.name}")
    return lo + int(index)


def generate_scene(family: str | Path | FamilySpec, split: str, seed: int, *,
                   moving_target: bool = False, follow_distance_m: float = 2.0,
                   path_dt_s: float = 0.1, path_duration_s: float | None = None) -> Scene:
    """Draw scene `seed` (an index in [0, split size)) of a split of a family.

    The scene seed is `splits[split][0] + seed`, so splits never share a scene.
    Everything -- layout, colours, light, wind gusts, dynamics and sensor-fault
    levels -- follows from (family, split, seed). With `moving_target`, a smooth
    path for the target is drawn too (FollowTarget), starting `follow_distance_m`
    ahead of the drone and lasting `path_duration_s` (None: the family's
    `episode.follow_time_s`), and obstacles keep clear of it.
    """
    spec = load_family(family)
    scene_seed = _seed_for(spec, split, seed)
    # The family name enters the stream so that two families never share a layout
    # even if a user gives them overlapping seed ranges.
    rng = np.random.default_rng([scene_seed, zlib.crc32(spec.name.encode()), int(moving_target)])
    start, yaw, target = _draw_start_target(spec, rng)
    path = None
    if moving_target:
        duration = spec.episode.follow_time_s if path_duration_s is None else path_duration_s
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"path_duration_s={path_duration_s!r}: expected a duration > 0 s")
        path = _moving_path(spec, rng, start, yaw, follow_distance_m, duration, path_dt_s)
        target = path[0].copy()
    block = rng.random() < spec.target.line_blocker_prob
    goals = path[:: max(1, int(round(1.0 / path_dt_s)))] if path is not None else target[None]
    def acceptable(b: _Builder) -> bool:
        return (_free_corridor(spec, b, start, goals)
                and _visible_fraction(b, start, target, spec.target.size_m)
                >= spec.target.min_visible_fraction)

    for attempt in range(20):
        b = _Builder(spec, rng, start, target, path)
        _place_obstacles(spec, b, start, target, block)
        if acceptable(b):
            break
    else:
        # keep removing the last-placed obstacles until the scene is acceptable
        # (always ends: with no obstacles the corridor is open and the target in sight)
        while not acceptable(b):
            for arr in (b.box, b.sph, b.cyl):
                if arr:
                    arr.pop()
            b.box_rgba, b.box_role = b.box_rgba[:len(b.box)], b.box_role[:len(b.box)]
            b.sph_rgba, b.sph_role = b.sph_rgba[:len(b.sph)], b.sph_role[:len(b.sph)]
            b.cyl_rgba, b.cyl_role = b.cyl_rgba[:len(b.cyl)], b.cyl_role[:len(b.cyl)]

    ap, li, wi, dy, se = spec.appearance, spec.light, spec.wind, spec.dynamics, spec.sensor
    ground = np.array(ap.ground_rgb[int(rng.integers(len(ap.ground_rgb)))])
    sky = np.array(ap.sky_rgb[int(rng.integers(len(ap.sky_rgb)))])
    az, el = rng.uniform(*li.azimuth_rad), rng.uniform(*li.elevation_rad)
    light_dir = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    ambient, diffuse = rng.uniform(*li.ambient), rng.uniform(*li.diffuse)
    steady_speed, steady_dir = rng.uniform(*wi.steady_mps), rng.uniform(-math.pi, math.pi)
    steady = steady_speed * np.array([math.cos(steady_dir), math.sin(steady_dir), 0.0])
    horizon = max(spec.episode.time_limit_s, spec.episode.follow_time_s)
    n_gusts = int(rng.poisson(wi.gust_rate_hz * horizon)) if wi.gust_rate_hz > 0 else 0
    gusts = np.zeros((n_gusts, 5))
    if n_gusts:
        gusts[:, 0] = np.sort(rng.uniform(0, horizon, n_gusts))
        gusts[:, 1] = rng.uniform(*wi.gust_duration_s, n_gusts)
        gdir = rng.uniform(-math.pi, math.pi, n_gusts)
        gmag = rng.uniform(*wi.gust_mps, n_gusts)
        gusts[:, 2] = gmag * np.cos(gdir)
        gusts[:, 3] = gmag * np.sin(gdir)
    mass_scale, kf_scale = rng.uniform(*dy.mass_scale), rng.uniform(*dy.kf_scale)
    weak = int(rng.integers(4)) if rng.random() < dy.weak_motor_prob else -1
    weak_eff = rng.uniform(*dy.weak_motor_efficiency) if weak >= 0 else 1.0

    def arr(rows: list[list[float]], width: int) -> np.ndarray:
        return np.array(rows, float).reshape(-1, width)

    light_rgb = np.array(li.color_rgb, float)
    if ap.random_palette_prob > 0:
        prng = np.random.default_rng([scene_seed, zlib.crc32(spec.name.encode()), 0x9A1E77E])
        if prng.random() < ap.random_palette_prob:
            pal = random_palette(prng, np.array(spec.target.color_rgb, float))
            ground, sky, light_rgb = pal.ground, pal.sky, pal.light
            for rgba, roles in ((b.cyl_rgba, b.cyl_role), (b.sph_rgba, b.sph_role),
                                (b.box_rgba, b.box_role)):
                for i, role in enumerate(roles):
                    if role != ROLE_DISTRACTOR:
                        rgba[i] = pal.part_rgba(prng, role, ap.color_jitter)

    scene = Scene(
        family=spec.name, split=split, index=int(seed), scene_seed=scene_seed,
        arena_size_m=spec.arena.size_m, ceiling_m=spec.arena.ceiling_m,
        start_pos_w=start, start_yaw=float(yaw), target_pos_w=target,
        target_kind=spec.target.kind, target_size_m=_q(spec.target.size_m),
        target_rgba=np.array([*spec.target.color_rgb, 1.0]),
        cylinders=arr(b.cyl, 5), cylinder_rgba=arr(b.cyl_rgba, 4),
        cylinder_role=np.array(b.cyl_role, np.int8),
        spheres=arr(b.sph, 4), sphere_rgba=arr(b.sph_rgba, 4),
        sphere_role=np.array(b.sph_role, np.int8),
        boxes=arr(b.box, 7), box_rgba=arr(b.box_rgba, 4), box_role=np.array(b.box_role, np.int8),
        ground_rgb=ground, sky_rgb=sky, light_direction_w=light_dir,
        light_rgb=light_rgb, light_ambient=float(ambient),
        light_diffuse=float(diffuse), wind_steady_w=steady, gusts=gusts,
        mass_scale=float(mass_scale), kf_scale=float(kf_scale), weak_motor=weak,
        weak_motor_efficiency=float(weak_eff),
        pixel_noise_std=float(rng.uniform(*se.pixel_noise_std)),
        frame_drop_prob=float(se.frame_drop_prob),
        max_consecutive_drops=int(se.max_consecutive_drops),
        delay_frames=int(rng.integers(se.delay_frames[0], se.delay_frames[1] + 1)),
        brightness=float(rng.uniform(*se.brightness)), contrast=float(rng.uniform(*se.contrast)),
        saturation=float(rng.uniform(*se.saturation)),
        target_path_w=path, target_path_dt_s=float(path_dt_s), line_blocked=False,
    )
    object.__setattr__(scene, "line_blocked",
                       segment_blocked(scene, start, target))
    return scene


# --------------------------------------------------------------------------
# statistics of a split
# --------------------------------------------------------------------------
def in_camera_fov(cam_pos_w: np.ndarray, R_wc: np.ndarray, point_w: np.ndarray,
                  hfov_rad: float, vfov_rad: float) -> bool:
    """True if point_w lies inside the camera's view cone.

    cam_pos_w: (3,) m world ENU; R_wc: (3, 3) camera FLU axes (x along the optical axis) in world.
    """
    rel = R_wc.T @ (np.asarray(point_w, float) - cam_pos_w)
    if rel[0] <= 1e-6:
        return False
    return (abs(math.atan2(rel[1], rel[0])) <= hfov_rad / 2
            and abs(math.atan2(rel[2], rel[0])) <= vfov_rad / 2)


def yaw_matrix(yaw: float) -> np.ndarray:
    """(3, 3) rotation body FLU -> world ENU of a level body with heading `yaw` rad."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class SplitStats:
    """Fractions and ranges over `n` scenes of a split (see `split_stats`)."""

    family: str
    split: str
    n: int
    line_blocked: float
    """fraction of scenes whose straight start-target segment passes through an obstacle."""
    target_out_of_view: float
    """fraction where the target centre is outside the camera's field of view at the start."""
    target_hidden: float
    """fraction where it is out of view or occluded by an obstacle at the start."""
    min_trunk_gap_d: float
    """smallest trunk/pole surface gap over all scenes, in drone diameters."""
    median_min_gap_d: float
    """median over scenes of each scene's smallest trunk gap, in drone diameters."""
    narrow_gap: float
    """fraction of scenes with a trunk gap below 4 drone diameters."""
    canopy_at_flight_height: float
    """fraction of scenes with an overhanging obstacle (canopy, floating object) in the
    altitude band between start and target (+-0.3 m)."""
    start_height_m: tuple[float, float]
    """m, lowest and highest start altitude seen."""
    target_distance_m: tuple[float, float]
    """m, shortest and longest horizontal start-target distance seen."""
    obstacles_mean: float
    """mean number of obstacle parts per scene."""

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitStats:
        return _build(cls, d, "<SplitStats>", "")


def scene_min_trunk_gap_m(scene: Scene) -> float:
    """m, smallest surface-to-surface gap between two ground-standing cylinders (trunks, poles)."""
    sel = np.isin(scene.cylinder_role, (ROLE_TRUNK, ROLE_POLE))
    c = scene.cylinders[sel]
    if len(c) < 2:
        return math.inf
    d = np.hypot(c[:, None, 0] - c[None, :, 0], c[:, None, 1] - c[None, :, 1])
    gap = d - c[:, None, 2] - c[None, :, 2]
    np.fill_diagonal(gap, np.inf)
    return float(gap.min())


def split_stats(family: str | Path | FamilySpec, split: str, n: int = 200,
                camera: Any = None) -> SplitStats:
    """Statistics over scenes 0..n-1 of a split, seen by `camera`
    (a `lnn_nav.sim.camera.CameraConfig`; None: the default onboard camera)."""
    from lnn_nav.sim.camera import CameraConfig, camera_pose

    spec = load_family(family)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: expected an integer >= 1")
    cam = camera if camera is not None else CameraConfig()
    blocked = out = hidden = narrow = canopy = 0
    gaps: list[float] = []
    zs: list[float] = []
    dists: list[float] = []
    parts = 0
    overhang = (ROLE_CANOPY, ROLE_DISTRACTOR)
    for i in range(n):
        sc = generate_scene(spec, split, i)
        blocked += sc.line_blocked
        eye, R_wc = camera_pose(cam, sc.start_pos_w, yaw_matrix(sc.start_yaw))
        vis = in_camera_fov(eye, R_wc, sc.target_pos_w, cam.hfov_rad, cam.vfov_rad)
        out += not vis
        hidden += (not vis) or segment_blocked(sc, eye, sc.target_pos_w)
        g = scene_min_trunk_gap_m(sc)
        gaps.append(g)
        narrow += g < 4 * spec.drone_diameter_m
        zlo = min(sc.start_pos_w[2], sc.target_pos_w[2]) - 0.3
        zhi = max(sc.start_pos_w[2], sc.target_pos_w[2]) + 0.3
        over = False
        s = sc.spheres[np.isin(sc.sphere_role, overhang)]
        if len(s):
            over |= bool(np.any((s[:, 2] - s[:, 3] < zhi) & (s[:, 2] + s[:, 3] > zlo)))
        c = sc.cylinders[np.isin(sc.cylinder_role, overhang)]
        if len(c):
            over |= bool(np.any((c[:, 3] < zhi) & (c[:, 4] > zlo)))
        canopy += over
        zs.append(float(sc.start_pos_w[2]))
        dists.append(float(np.linalg.norm(sc.target_pos_w[:2] - sc.start_pos_w[:2])))
        parts += sc.obstacle_count
    finite = [g for g in gaps if math.isfinite(g)]
    dd = spec.drone_diameter_m
    return SplitStats(
        family=spec.name, split=split, n=n, line_blocked=blocked / n,
        target_out_of_view=out / n, target_hidden=hidden / n,
        min_trunk_gap_d=(min(finite) / dd) if finite else math.inf,
        median_min_gap_d=(float(np.median(finite)) / dd) if finite else math.inf,
        narrow_gap=narrow / n, canopy_at_flight_height=canopy / n,
        start_height_m=(min(zs), max(zs)), target_distance_m=(min(dists), max(dists)),
        obstacles_mean=parts / n,
    )
