"""The privileged expert: reads the simulator's privileged state and outputs the
same `VelocityCommand` (body FLU, m/s and rad/s) that a learned policy outputs.

How it flies
------------
1. Plan (at reset, and again when the goal moved): a 2D cost-to-go field over a
   grid covering the drone, the goal and some padding. Obstacles are the 2D
   footprints of everything reaching into the band the drone flies in (start to
   target altitude, plus `vertical_margin`): cylinders and boxes whole, spheres
   by their widest cross-section in the band; they are inflated by the drone
   radius plus a margin, and cells close to them cost more, so paths keep their
   distance. The field is seeded at every free cell on the ring of "hold points"
   around the target (the stand-off distance), so the drone flies to the nearest
   reachable one. The field is computed by vectorised Bellman-Ford sweeps (numpy;
   no scipy). Without a reasonable path in the padded grid, the whole arena is
   planned, then a smaller margin.
2. Follow (every step, well under a millisecond): trace the steepest descent of
   the field from the drone for a few metres and steer at the farthest point of
   that path the drone can reach in a straight line (checked on the exact,
   un-gridded obstacle geometry). With a clear line to the hold point, steer
   straight at it. Speed follows a braking profile that stops at the hold point,
   and drops when the path turns away from the heading or when obstacles are
   close.
3. Heading: face along the path, but never further than the camera's half field
   of view (less a margin) from the target's bearing, so the target stays in the
   picture while flying; near the hold point, face the target.
4. Search: when the target is outside the camera's field of view, stop, hold
   altitude and turn on the spot in one direction until it is in view -- left
   when it has never been seen in this episode, otherwise toward the side where
   it was last seen (seen: in the field of view and in line of sight, as a
   camera would). A camera-only policy with memory can do the same; it could not imitate a turn
   straight toward a target it cannot see.
5. Smoothness: the output command is rate-limited per axis (bounded change per
   second, within the `PolicyController`'s default slew limits), so the expert's
   labels are reproducible by a controller that applies those limits.

Task `follow` (FollowTarget): the hold ring has the follow distance as radius and
moves with the target; the plan is refreshed when the target moved more than
`replan_distance` since the last plan, and the target's velocity is fed forward.

Frames and units: world ENU (z up), body FLU; m, s, rad; yaw counter-clockwise
from world +x.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, NamedTuple

import numpy as np

from lnn_nav.command import CommandLimits, VelocityCommand

BEHAVIOUR_VERSION = 4
"""Bumped whenever the same config and states give other commands, so that
demonstrations of an older expert are recognised (2: holds altitude while
searching, and a target counts as seen only in line of sight; 3: the target
no longer hides itself -- its own sphere blocked every sight line, so version
2 never saw it and always searched to the left -- and a target partly behind
an obstacle counts as seen; 4: searches turn left by default, `search_side`).
Task fly at version 4 with the defaults commands what version 2 commanded."""

Task = Literal["fly", "follow"]
TASKS = ("fly", "follow")
SEARCH_SIDES = ("left", "last_seen")
_WORD_FIELDS = ("search_side",)
"""ExpertConfig fields that are words, not numbers."""


def wrap_angle(a: float | np.ndarray) -> float | np.ndarray:
    """Angle (or array of angles) wrapped to [-pi, pi) rad."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


# --------------------------------------------------------------------- config
@dataclass(frozen=True)
class ExpertConfig:
    """Every knob of the expert; distances in m, speeds in m/s, angles in rad."""

    cruise_speed: float = 1.5
    """m/s, horizontal speed in the open (must not exceed the command limits)."""
    brake_accel: float = 1.2
    """m/s^2, deceleration of the braking profile toward the hold point."""
    drone_radius: float = 0.07
    """m, radius of a disc that contains the vehicle with its propellers."""
    margin: float = 0.25
    """m, clearance kept between that disc and any obstacle (hard, for planning;
    tight gaps fall back to less). Wide, so that a learner a few centimetres off
    the expert's path still misses the trunk the expert passed."""
    soft_clearance: float = 1.0
    """m, clearance below which grid cells cost more (paths prefer open space)."""
    soft_weight: float = 3.0
    """extra cost factor of a cell touching the inflated obstacle (0 = none)."""
    pass_side_bias: float = 0.0
    """extra cost factor of cells more than 0.4 m right of the line from the drone
    to the target (when planning), growing from 0 on the line (0 = none). With it
    the way round an obstacle in the way passes it on its left unless the right is
    shorter by more than that factor: a camera-only learner regressing the commands
    would average a left and a right detour it cannot tell apart into a straight
    line into the trunk, as it averaged searches before they all turned left."""
    plan_view_range: float = 0.0
    """m; 0 (the default): plan around every obstacle of the scene, once. > 0: plan
    only around what the camera has shown -- footprints that overlapped the field
    of view (`fov_half`) within this range at some step of the episode, and any
    within `plan_near_radius` of the drone -- and plan again every `replan_period`
    s. A path bent by trunks never in the picture is a detour a camera-only learner
    cannot predict: it averages it toward the straight line and under-commands the
    sideways step (README). Seen obstacles are kept, not forgotten when they leave
    the picture: a plan of only what is in view now changes with every turn of the
    camera, and the turn with the plan (the drone dithers on the spot). Measured
    at 6 m: a learner imitated it worse, not better (78% against 87%, `runs/view6`
    in the README), so it stays off."""
    plan_near_radius: float = 1.0
    """m, obstacles this close to the drone stay in a view-only plan, in the picture
    or not (those just passed, beside it)."""
    replan_period: float = 0.25
    """s, time between plans when planning from the view."""
    vertical_margin: float = 0.3
    """m, obstacles within this height of the flight band count as in the way."""
    grid_resolution: float = 0.2
    """m, cell size of the planning grid."""
    grid_padding: float = 3.0
    """m, padding of the planning grid around the drone and the goal."""
    lookahead: float = 2.5
    """m, how far along the planned path the follower looks for a straight shot."""
    standoff: float = 0.8
    """m, horizontal distance in front of the target at which the drone holds (task fly)."""
    follow_distance: float = 2.0
    """m, horizontal distance kept from the target (task follow)."""
    follow_band: float = 0.4
    """m, task follow: goal cells lie within this of the follow distance."""
    replan_distance: float = 0.4
    """m, target displacement that triggers a new plan (task follow)."""
    safety_margin: float = 0.05
    """m, the safety filter keeps the drone's disc at least this far off obstacles."""
    safety_rate: float = 1.5
    """1/s, how fast the safety filter lets the clearance shrink, per metre of excess."""
    position_gain: float = 1.2
    """1/s, speed per metre of distance to the hold point, near it."""
    altitude_gain: float = 1.5
    """1/s, climb rate per metre of altitude error."""
    min_altitude: float = 0.3
    """m, the drone never aims lower than this above the ground (z = 0)."""
    fov_half: float = math.radians(30.0)
    """rad, half the camera's horizontal field of view."""
    view_margin: float = math.radians(8.0)
    """rad, the heading keeps the target at least this far inside the field of view."""
    yaw_gain: float = 2.5
    """1/s, yaw rate per radian of heading error."""
    search_yaw_rate: float = 1.2
    """rad/s, turn rate while searching for the target."""
    search_side: str = "left"
    """Which way a search turns: "left" (always counter-clockwise) or "last_seen"
    (toward the side where the target was last seen; left if never seen).
    "last_seen" finds the target sooner, but a learner must remember the side for
    the whole search (up to 5 s), longer than the 2.7 s windows it trains on:
    its searches stopped after about 4 s (83% on forest/unseen against 90% with
    "left", README). "left" is the same at every moment, so a learner without
    that memory reproduces it."""
    max_accel: float = 3.0
    """m/s^2, bound on the change rate of forward and left commands."""
    max_vertical_accel: float = 2.0
    """m/s^2, bound on the change rate of the up command."""
    max_yaw_accel: float = 6.0
    """rad/s^2, bound on the change rate of the yaw-rate command."""

    def __post_init__(self) -> None:
        if self.search_side not in SEARCH_SIDES:
            raise ValueError(f"ExpertConfig.search_side={self.search_side!r}: expected one of {SEARCH_SIDES}")
        for f in fields(self):
            if f.name in _WORD_FIELDS:
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"ExpertConfig.{f.name}={value!r}: expected a number")
            if not math.isfinite(value):
                raise ValueError(f"ExpertConfig.{f.name}={value!r}: expected a finite number")
        nonneg = ("margin", "soft_weight", "vertical_margin", "grid_padding", "min_altitude",
                  "view_margin", "pass_side_bias", "plan_view_range")
        for f in fields(self):
            if f.name in _WORD_FIELDS:
                continue
            value = getattr(self, f.name)
            if f.name in nonneg:
                if value < 0:
                    raise ValueError(f"ExpertConfig.{f.name}={value!r}: expected a number >= 0")
            elif value <= 0:
                raise ValueError(f"ExpertConfig.{f.name}={value!r}: expected a number > 0")
        if self.view_margin >= self.fov_half:
            raise ValueError(
                f"ExpertConfig.view_margin={self.view_margin!r} must be smaller than "
                f"fov_half={self.fov_half!r} (rad)"
            )
        if self.grid_resolution > self.drone_radius + self.margin + 0.3:
            raise ValueError(
                f"ExpertConfig.grid_resolution={self.grid_resolution!r} m is too coarse for "
                f"drone_radius + margin = {self.drone_radius + self.margin!r} m"
            )

    @property
    def inflation(self) -> float:
        """m, obstacle inflation: drone radius plus margin."""
        return self.drone_radius + self.margin

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExpertConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ExpertConfig keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: v if k in _WORD_FIELDS else float(v) for k, v in d.items()})


# ---------------------------------------------------------------- geometry
class Footprints(NamedTuple):
    """2D obstacle footprints in one altitude band, world ENU (what the planner sees).

    circles: (N, 3) float64: x, y, radius [m].
    boxes: (K, 5) float64: cx, cy, half_x, half_y [m], yaw [rad] (the box's x
        axis turned by yaw from world x).
    """

    circles: np.ndarray
    boxes: np.ndarray

    @classmethod
    def empty(cls) -> Footprints:
        return cls(np.zeros((0, 3)), np.zeros((0, 5)))

    def near(self, xy: np.ndarray, radius: float) -> Footprints:
        """The footprints that may come within `radius` m of point `xy` (2,)."""
        c = self.circles
        dc = np.hypot(c[:, 0] - xy[0], c[:, 1] - xy[1]) - c[:, 2]
        b = self.boxes
        db = np.hypot(b[:, 0] - xy[0], b[:, 1] - xy[1]) - np.hypot(b[:, 2], b[:, 3])
        return Footprints(c[dc < radius], b[db < radius])

    def shown(self, xy: np.ndarray, yaw: float, half_fov: float, view_range: float) -> np.ndarray:
        """bool (N,): the circles a camera at `xy` (2,) looking along `yaw` (rad) with
        a horizontal half field of view `half_fov` (rad) could show within
        `view_range` m (occlusion ignored)."""
        c = self.circles
        centre = np.hypot(c[:, 0] - xy[0], c[:, 1] - xy[1])
        bearing = wrap_angle(np.arctan2(c[:, 1] - xy[1], c[:, 0] - xy[0]) - yaw)
        half_width = np.arcsin(np.clip(c[:, 2] / np.maximum(centre, 1e-9), 0.0, 1.0))
        return (centre - c[:, 2] < view_range) & (np.abs(bearing) - half_width < half_fov)

    def __len__(self) -> int:
        return len(self.circles) + len(self.boxes)

    def distances(self, pts: np.ndarray) -> np.ndarray:
        """pts (K, 2) m -> (K, N) m: signed distance from each point to each
        footprint (circles first, then boxes; negative inside)."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        parts = []
        c = self.circles
        if len(c):
            d = np.hypot(pts[:, None, 0] - c[None, :, 0], pts[:, None, 1] - c[None, :, 1])
            parts.append(d - c[None, :, 2])
        b = self.boxes
        if len(b):
            dx = pts[:, None, 0] - b[None, :, 0]
            dy = pts[:, None, 1] - b[None, :, 1]
            cos, sin = np.cos(b[None, :, 4]), np.sin(b[None, :, 4])
            qx = np.abs(cos * dx + sin * dy) - b[None, :, 2]
            qy = np.abs(-sin * dx + cos * dy) - b[None, :, 3]
            outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
            inside = np.minimum(np.maximum(qx, qy), 0.0)
            parts.append(outside + inside)
        if not parts:
            return np.zeros((len(pts), 0))
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def signed_distance(self, pts: np.ndarray) -> np.ndarray:
        """pts (K, 2) m -> (K,) m: distance from each point to the nearest footprint
        (negative inside one); +inf without obstacles."""
        d = self.distances(pts)
        if d.shape[1] == 0:
            return np.full(d.shape[0], np.inf)
        return d.min(axis=1)

    def segment_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """m, smallest signed distance from the segment a -> b ((2,) each) to any
        footprint: exact for circles, boxes sampled every 2.5 cm."""
        out = math.inf
        c = self.circles
        if len(c):
            ab = b - a
            L2 = float(ab @ ab)
            rel = c[:, :2] - a
            u = np.clip(rel @ ab / L2, 0.0, 1.0) if L2 > 1e-12 else np.zeros(len(c))
            closest = a + u[:, None] * ab
            out = float((np.hypot(*(c[:, :2] - closest).T) - c[:, 2]).min())
        if len(self.boxes):
            n = max(2, int(math.ceil(float(np.hypot(*(b - a))) / 0.025)) + 1)
            pts = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
            out = min(out, float(Footprints(np.zeros((0, 3)), self.boxes).signed_distance(pts).min()))
        return out


class Obstacles(NamedTuple):
    """3D obstacle geometry, world ENU, in the scene's format (`lnn_nav.sim.scenes.Scene`).

    cylinders: (N, 5) float64: x, y, radius, zmin, zmax [m] (vertical: trunks,
        poles, cylindrical canopies).
    spheres: (M, 4) float64: x, y, z, radius [m] (spherical canopies, distractors).
    boxes: (K, 7) float64: x, y, z (centre), hx, hy, hz (half extents) [m], yaw [rad].
    """

    cylinders: np.ndarray
    spheres: np.ndarray
    boxes: np.ndarray

    @classmethod
    def empty(cls) -> Obstacles:
        return cls(np.zeros((0, 5)), np.zeros((0, 4)), np.zeros((0, 7)))

    @classmethod
    def make(cls, cylinders: Any = None, spheres: Any = None, boxes: Any = None) -> Obstacles:
        """Validated constructor; `None` means none of that kind."""
        arrays = []
        for name, value, width in (("cylinders", cylinders, 5), ("spheres", spheres, 4),
                                   ("boxes", boxes, 7)):
            a = np.zeros((0, width)) if value is None else np.asarray(value, np.float64)
            if a.size == 0:
                a = np.zeros((0, width))
            if a.ndim != 2 or a.shape[1] != width:
                raise ValueError(f"{name}: got shape {a.shape}, expected (N, {width})")
            if not np.isfinite(a).all():
                raise ValueError(f"{name}: geometry contains non-finite values")
            arrays.append(a)
        c, s, b = arrays
        if (c[:, 2] < 0).any() or (s[:, 3] < 0).any() or (b[:, 3:6] < 0).any():
            raise ValueError("obstacle radius / half extents must be >= 0 m")
        return cls(c, s, b)

    def footprints(self, zlo: float, zhi: float) -> Footprints:
        """The 2D footprints of everything that reaches into the band [zlo, zhi] m:
        cylinders and boxes whole, spheres by their widest cross-section in the band."""
        c = self.cylinders[(self.cylinders[:, 3] <= zhi) & (self.cylinders[:, 4] >= zlo)]
        s = self.spheres
        dz = np.maximum.reduce([zlo - s[:, 2], s[:, 2] - zhi, np.zeros(len(s))])
        keep = dz < s[:, 3]
        rs = np.sqrt(np.maximum(s[keep, 3] ** 2 - dz[keep] ** 2, 0.0))
        circles = np.concatenate([c[:, :3], np.stack([s[keep, 0], s[keep, 1], rs], 1)])
        b = self.boxes
        b = b[(b[:, 2] - b[:, 5] <= zhi) & (b[:, 2] + b[:, 5] >= zlo)]
        return Footprints(circles.reshape(-1, 3), b[:, [0, 1, 3, 4, 6]].reshape(-1, 5))


class Bounds(NamedTuple):
    """Horizontal arena bounds, world ENU, m."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    def distance_inside(self, pts: np.ndarray) -> np.ndarray:
        """pts (K, 2) -> (K,) m to the nearest edge (negative outside)."""
        return np.minimum.reduce([
            pts[:, 0] - self.xmin, self.xmax - pts[:, 0], pts[:, 1] - self.ymin, self.ymax - pts[:, 1]
        ])


class PrivilegedState(NamedTuple):
    """What the expert reads at each step (world ENU, SI units)."""

    pos_w: np.ndarray
    """(3,) m, drone position."""
    vel_w: np.ndarray
    """(3,) m/s, drone velocity."""
    yaw: float
    """rad, drone heading (body x from world x, counter-clockwise)."""
    target_pos_w: np.ndarray
    """(3,) m, target position."""
    target_vel_w: np.ndarray
    """(3,) m/s, target velocity (zeros for a static target)."""


# ------------------------------------------------------------- the planner
# 8-connected neighbourhood: (row offset, col offset) and step length in cells
_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


class CostToGo:
    """A 2D grid cost-to-go field toward a set of goal cells.

    Row i covers y = y0 + i * res, column j covers x = x0 + j * res (cell centres).
    `dist` (H, W) float64 holds the weighted path length in m to the nearest goal
    cell (inf where unreachable or blocked); `clear` (H, W) the distance from
    each cell centre to the nearest obstacle footprint (m).
    """

    def __init__(self, obstacles: Footprints, lo: np.ndarray, hi: np.ndarray, res: float,
                 bounds: Bounds | None) -> None:
        self.res = float(res)
        self.x0, self.y0 = float(lo[0]), float(lo[1])
        self.w = int(math.ceil((hi[0] - lo[0]) / res)) + 1
        self.h = int(math.ceil((hi[1] - lo[1]) / res)) + 1
        xs = self.x0 + res * np.arange(self.w)
        ys = self.y0 + res * np.arange(self.h)
        self.xs, self.ys = xs, ys
        clear = np.full((self.h, self.w), np.inf)
        if bounds is not None:
            clear = np.minimum(clear, np.minimum.outer(
                np.minimum(ys - bounds.ymin, bounds.ymax - ys),
                np.minimum(xs - bounds.xmin, bounds.xmax - xs)))
        # Per obstacle, only the window it can influence: a Python loop over
        # obstacles with small numpy windows is far cheaper than (cells x obstacles).
        reach = 3.0  # m beyond the footprint; farther cells are "open" anyway
        for x, y, r in obstacles.circles:
            j0, j1, i0, i1 = self._window(x - r - reach, x + r + reach, y - r - reach, y + r + reach)
            if j0 >= j1 or i0 >= i1:
                continue
            d = np.hypot(xs[None, j0:j1] - x, ys[i0:i1, None] - y) - r
            np.minimum(clear[i0:i1, j0:j1], d, out=clear[i0:i1, j0:j1])
        for cx, cy, hx, hy, yaw in obstacles.boxes:
            e = math.hypot(hx, hy) + reach
            j0, j1, i0, i1 = self._window(cx - e, cx + e, cy - e, cy + e)
            if j0 >= j1 or i0 >= i1:
                continue
            dx = xs[None, j0:j1] - cx
            dy = ys[i0:i1, None] - cy
            c, s = math.cos(yaw), math.sin(yaw)
            qx = np.abs(c * dx + s * dy) - hx
            qy = np.abs(-s * dx + c * dy) - hy
            d = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
            np.minimum(clear[i0:i1, j0:j1], d, out=clear[i0:i1, j0:j1])
        self.clear = clear
        self.dist = np.full((self.h, self.w), np.inf)
        self._next: np.ndarray | None = None

    def _window(self, xa: float, xb: float, ya: float, yb: float) -> tuple[int, int, int, int]:
        j0 = max(0, int(math.floor((xa - self.x0) / self.res)))
        j1 = min(self.w, int(math.ceil((xb - self.x0) / self.res)) + 1)
        i0 = max(0, int(math.floor((ya - self.y0) / self.res)))
        i1 = min(self.h, int(math.ceil((yb - self.y0) / self.res)) + 1)
        return j0, j1, i0, i1

    def cell(self, xy: np.ndarray) -> tuple[int, int]:
        """Nearest cell (row, col) of a point, clipped into the grid."""
        j = int(round((xy[0] - self.x0) / self.res))
        i = int(round((xy[1] - self.y0) / self.res))
        return min(max(i, 0), self.h - 1), min(max(j, 0), self.w - 1)

    def centre(self, i: int, j: int) -> np.ndarray:
        return np.array([self.x0 + j * self.res, self.y0 + i * self.res])

    def solve(self, goal_mask: np.ndarray, inflation: float, soft_clearance: float,
              soft_weight: float, extra_cost: np.ndarray | float = 0.0) -> None:
        """Fill `dist` from the goal cells (bool (H, W)) through free cells.

        A cell is free when its clearance exceeds `inflation`; its traversal cost
        per metre is 1 + soft_weight * (how far inside the soft band it is)
        + extra_cost (scalar or (H, W))."""
        free = self.clear > inflation
        band = np.clip((soft_clearance + inflation - self.clear) / soft_clearance, 0.0, 1.0)
        cost = np.where(free, 1.0 + soft_weight * band + extra_cost, np.inf)
        h, w = self.h, self.w
        # padded by one cell of inf so that shifted views never wrap around
        d = np.full((h + 2, w + 2), np.inf)
        goals = goal_mask & free
        d[1:-1, 1:-1][goals] = 0.0
        c = np.full((h + 2, w + 2), np.inf)
        c[1:-1, 1:-1] = cost
        core = d[1:-1, 1:-1]
        ccore = c[1:-1, 1:-1]
        edge = []
        for di, dj in _NEIGHBOURS:
            length = self.res * math.hypot(di, dj)
            # edge cost: mean of the two cells' costs times the step length
            edge.append(((di, dj), 0.5 * length * (ccore + c[1 + di:h + 1 + di, 1 + dj:w + 1 + dj])))
        # Bellman-Ford sweeps until nothing improves; each sweep extends the
        # shortest paths by at least one edge, so the loop is bounded by the cell count.
        for _ in range(h * w):
            before = core.copy()
            for (di, dj), e in edge:
                np.minimum(core, d[1 + di:h + 1 + di, 1 + dj:w + 1 + dj] + e, out=core)
            if np.array_equal(before, core):
                break
        self.dist = core.copy()
        # next-cell pointers for fast descent: the neighbour minimising dist + edge
        best = np.full((h, w), np.inf)
        nxt = np.full((h, w, 2), -1, np.int64)
        rows, cols = np.mgrid[0:h, 0:w]
        for (di, dj), e in edge:
            cand = d[1 + di:h + 1 + di, 1 + dj:w + 1 + dj] + e
            better = cand < best
            best = np.where(better, cand, best)
            nxt[better] = np.stack([rows[better] + di, cols[better] + dj], axis=-1)
        self._next = nxt

    def descent(self, i: int, j: int, n: int) -> list[tuple[int, int]]:
        """Up to n cells of steepest descent from (i, j), excluding (i, j)."""
        assert self._next is not None, "solve() first"  # internal invariant, not input validation
        path = []
        for _ in range(n):
            if self.dist[i, j] == 0.0 or not math.isfinite(self.dist[i, j]):
                break
            ni, nj = self._next[i, j]
            if ni < 0 or self.dist[ni, nj] >= self.dist[i, j]:
                break
            i, j = int(ni), int(nj)
            path.append((i, j))
        return path


# ---------------------------------------------------------------- the expert
class Expert:
    """The privileged expert. Use:

        expert = Expert(ExpertConfig(), CommandLimits())
        expert.reset(obstacles, bounds, task="fly", state=first_state)
        cmd = expert.act(state, dt)    # VelocityCommand, body FLU

    or, with an environment's `info` dict, `reset_from_info(info)` and
    `act_from_info(info, dt)`.
    """

    def __init__(self, config: ExpertConfig | None = None, limits: CommandLimits | None = None):
        self.config = config or ExpertConfig()
        self.limits = limits or CommandLimits()
        if self.config.cruise_speed > self.limits.max_horizontal:
            raise ValueError(
                f"ExpertConfig.cruise_speed={self.config.cruise_speed} m/s exceeds "
                f"CommandLimits.max_horizontal={self.limits.max_horizontal} m/s"
            )
        self._rate = np.array([self.config.max_accel, self.config.max_accel,
                               self.config.max_vertical_accel, self.config.max_yaw_accel])
        self._obstacles = Footprints.empty()
        self._obstacles3d = Obstacles.empty()
        self._sight_obstacles = Obstacles.empty()
        self._target_radius = 0.0
        self._bounds: Bounds | None = None
        self._task: Task = "fly"
        self._field: CostToGo | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._cmd = np.zeros(4)
        self._seen_side = 0.0  # sign of the target's bearing when last in view; 0: never seen
        self._searching = False
        self._planned_target: np.ndarray | None = None
        self._planned_z = 0.0
        self._inflation = self.config.inflation  # m, obstacle inflation of the current plan
        self._approach: np.ndarray | None = None
        self._band: tuple[float, float] = (-math.inf, math.inf)
        self._since_plan = 0.0  # s since the last plan
        self._seen: set[tuple[float, float]] = set()  # footprint centres the camera has shown

    @property
    def searching(self) -> bool:
        """True while the expert turns on the spot to find the target (its last
        command was a search)."""
        return self._searching

    # ----------------------------------------------------------------- reset
    def reset(self, obstacles: Obstacles, bounds: Bounds | None, task: Task,
              state: PrivilegedState, target_radius: float = 0.0) -> None:
        """Start an episode in a new scene; `state` is the first privileged state.

        target_radius: m, radius of the target. Greater than 0 in task "fly", the
        target is an obstacle too (touching it is a collision), and sight lines go
        to points on its silhouette, not only its centre."""
        if task not in TASKS:
            raise ValueError(f"task={task!r}: expected one of {TASKS}")
        if not (math.isfinite(target_radius) and target_radius >= 0):
            raise ValueError(f"target_radius={target_radius!r}: expected a finite radius >= 0 m")
        self._task = task
        self._bounds = bounds
        self._reset_state()
        # sight lines end at the target: its own sphere must not block them
        self._sight_obstacles = obstacles
        self._target_radius = float(target_radius)
        if task == "fly" and target_radius > 0:
            t = np.asarray(state.target_pos_w, np.float64).reshape(3)
            sphere = np.array([[t[0], t[1], t[2], float(target_radius)]])
            obstacles = obstacles._replace(spheres=np.concatenate([obstacles.spheres, sphere]))
        self._obstacles3d = obstacles
        self._plan(state)

    def _goal_altitude(self, state: PrivilegedState) -> float:
        return max(float(state.target_pos_w[2]), self.config.min_altitude)

    def _ring_radius(self) -> float:
        return self.config.standoff if self._task == "fly" else self.config.follow_distance

    def _plan(self, state: PrivilegedState) -> None:
        cfg = self.config
        # the band between the drone's and the goal's altitude: the drone climbs or
        # descends between them on the way (re-sliced at every plan, since a
        # followed target changes altitude)
        zlo = min(state.pos_w[2], self._goal_altitude(state)) - cfg.vertical_margin
        zhi = max(state.pos_w[2], self._goal_altitude(state)) + cfg.vertical_margin
        self._band = (zlo, zhi)
        self._obstacles = self._obstacles3d.footprints(zlo, zhi)
        p = np.asarray(state.pos_w[:2], np.float64)
        self._plan_obstacles = self._obstacles
        if cfg.plan_view_range > 0:
            self._look(state)
            c = self._obstacles.circles
            seen = np.array([(x, y) in self._seen for x, y in c[:, :2].tolist()], bool)
            near = np.hypot(c[:, 0] - p[0], c[:, 1] - p[1]) - c[:, 2] < cfg.plan_near_radius
            self._plan_obstacles = Footprints(c[seen | near], self._obstacles.boxes)
        self._since_plan = 0.0
        t = np.asarray(state.target_pos_w[:2], np.float64)
        # Attempts, cheapest first: a grid around drone and goal with the full
        # margin; the whole arena (the way round may lead far out); then less
        # margin (a tight gap, or the drone already inside the margin). A path
        # with less margin is also taken when it is much shorter than the
        # full-margin detour, so the drone does not run out of time going round.
        attempts = [(cfg.grid_padding, cfg.inflation), (math.inf, cfg.inflation),
                    (math.inf, cfg.drone_radius + 0.5 * cfg.margin),
                    (math.inf, cfg.drone_radius + 0.02)]
        straight = float(np.hypot(*(t - p)))
        best: tuple[float, CostToGo] | None = None
        for k, (pad, inflation) in enumerate(attempts):
            if k == len(attempts) - 1 and best is not None and math.isfinite(best[0]):
                break  # the last resort (tighter than the safety filter) only without a path
            if math.isinf(pad) and self._bounds is None:
                pad = 3.0 * cfg.grid_padding
            field = self._solve_field(p, t, pad, inflation)
            i, j = field.cell(p)
            win = field.dist[max(0, i - 2):i + 3, max(0, j - 2):j + 3]
            length = float(np.min(win)) if np.isfinite(win).any() else math.inf
            if best is None or length < 0.75 * best[0]:
                best = (length, field)
                self._inflation = inflation
            if best[0] <= 1.6 * straight + 2.0:
                break  # a reasonable path: no need to look further
        assert best is not None  # internal invariant: attempts is not empty
        self._field = best[1]
        self._planned_target = t.copy()
        self._planned_z = float(state.target_pos_w[2])

    def _look(self, state: PrivilegedState) -> None:
        """Remember the obstacles the camera shows now (by footprint centre): a plan
        from the view keeps what it has seen, or each turn of the camera would
        change the plan, and the plan the turn."""
        cfg = self.config
        c = self._obstacles.circles
        shown = self._obstacles.shown(np.asarray(state.pos_w[:2], np.float64), float(state.yaw),
                                      cfg.fov_half, cfg.plan_view_range)
        self._seen.update(map(tuple, c[shown, :2].tolist()))

    def _solve_field(self, p: np.ndarray, t: np.ndarray, pad: float,
                     inflation: float) -> CostToGo:
        """A cost-to-go field toward the goal ring over the box around drone p and
        target t (2,) padded by `pad` m (clipped to the arena), with obstacles
        inflated by `inflation` m."""
        cfg = self.config
        ring = self._ring_radius()
        pad = pad + ring
        lo = np.minimum(p, t) - pad
        hi = np.maximum(p, t) + pad
        if self._bounds is not None:
            b = self._bounds
            lo = np.maximum(lo, [b.xmin, b.ymin])
            hi = np.minimum(hi, [b.xmax, b.ymax])
            hi = np.maximum(hi, lo + cfg.grid_resolution)
        field = CostToGo(self._plan_obstacles, lo, hi, cfg.grid_resolution, self._bounds)
        r = np.hypot(field.xs[None, :] - t[0], field.ys[:, None] - t[1])
        # the goal ring: every cell centre within half a cell (and a bit) of the ring
        goal = np.abs(r - ring) <= 0.75 * cfg.grid_resolution
        if self._task == "follow":
            # a wider band, and only where nothing stands between drone and
            # target: a followed target must stay visible, not just near
            goal = np.abs(r - ring) <= cfg.follow_band
            goal &= self._line_of_sight(field, goal, t)
        extra = 0.0
        if cfg.pass_side_bias > 0:
            u = (t - p) / max(float(np.hypot(*(t - p))), 1e-6)
            left = u[0] * (field.ys[:, None] - p[1]) - u[1] * (field.xs[None, :] - p[0])  # m, + = left
            extra = cfg.pass_side_bias * np.clip(-left / 0.4, 0.0, 1.0)
        field.solve(goal, inflation, cfg.soft_clearance, cfg.soft_weight, extra)
        return field

    def _line_of_sight(self, field: CostToGo, cells: np.ndarray, t: np.ndarray) -> np.ndarray:
        """bool (H, W): True at the `cells` whose straight line to the target point
        t (2,) passes no obstacle footprint (footprints in the current band)."""
        out = np.zeros_like(cells)
        ii, jj = np.nonzero(cells)
        if len(ii) == 0:
            return out
        starts = np.stack([field.xs[jj], field.ys[ii]], axis=1)
        reach = float(np.max(np.hypot(*(starts - t).T))) + 0.5
        near = self._obstacles.near(t, reach)
        if not (len(near.circles) or len(near.boxes)):
            out[ii, jj] = True
            return out
        u = np.linspace(0.0, 0.85, 12)  # stop short of the target itself
        pts = starts[:, None, :] + u[None, :, None] * (t[None, None, :] - starts[:, None, :])
        sd = near.signed_distance(pts.reshape(-1, 2)).reshape(len(starts), len(u))
        out[ii, jj] = (sd > 0.03).all(axis=1)
        return out

    # ------------------------------------------------------------------- act
    def act(self, state: PrivilegedState, dt: float) -> VelocityCommand:
        """The command for this step, body FLU, within the limits and rate-limited.

        dt: s since the previous step (> 0)."""
        if not (isinstance(dt, (int, float, np.floating)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt={dt!r}: expected a finite number of seconds > 0")
        cfg = self.config
        p = np.asarray(state.pos_w, np.float64)
        t = np.asarray(state.target_pos_w, np.float64)
        yaw = float(state.yaw)
        to_t = t[:2] - p[:2]
        dist_t = float(np.hypot(*to_t))
        bearing = math.atan2(to_t[1], to_t[0]) if dist_t > 1e-6 else yaw
        off = wrap_angle(bearing - yaw)  # target's angle in the image, + = left

        if self._task == "follow" and self._planned_target is not None:
            moved = max(float(np.hypot(*(t[:2] - self._planned_target))),
                        abs(float(t[2]) - self._planned_z))
            if moved > cfg.replan_distance or not self._inside_field(p[:2]):
                self._plan(state)
        elif not self._inside_field(p[:2]):
            self._plan(state)
        elif cfg.plan_view_range > 0:
            self._since_plan += float(dt)
            if self._since_plan >= cfg.replan_period:
                self._plan(state)  # looks as it plans
            else:
                self._look(state)

        # --- in view? (hysteresis: enter search when outside the FOV, leave when
        # well inside, so the mode does not chatter at the image border)
        if self._searching:
            if abs(off) < cfg.fov_half - cfg.view_margin:
                self._searching = False
        elif abs(off) > cfg.fov_half:
            self._searching = True
        # "seen" means what the camera could see: in the field of view and in line
        # of sight. A side remembered from a target hidden behind a trunk would send
        # a learner that never saw it on a search it cannot reproduce (in DAgger
        # rollouts this flipped search directions and undid the learned search).
        # (only a last-seen search uses the side; the sight test costs five segment checks)
        if cfg.search_side == "last_seen" and not self._searching and self._in_sight(p, t):
            self._seen_side = 1.0 if off >= 0 else -1.0

        up = cfg.altitude_gain * (self._goal_altitude(state) - p[2])
        if self._searching:
            # the target's altitude is not in the picture while searching: hold
            # altitude, so the label is one a camera-only policy can reproduce
            side = self._seen_side if cfg.search_side == "last_seen" else 0.0
            direction = side if side != 0 else 1.0
            v_w = np.zeros(2)
            up = 0.0
            yaw_rate = direction * cfg.search_yaw_rate
        else:
            v_w, heading = self._horizontal(p, t, state, dist_t, bearing)
            err = wrap_angle(heading - yaw)
            yaw_rate = cfg.yaw_gain * err
            # fly mostly forward: slow down while the heading is far from the
            # direction of travel (the camera does not see where it goes)
            speed = float(np.hypot(*v_w))
            if speed > 1e-6:
                travel = math.atan2(v_w[1], v_w[0])
                align = math.cos(min(abs(wrap_angle(travel - yaw)), math.pi / 2))
                v_w = v_w * max(0.5, align)
        c, s = math.cos(yaw), math.sin(yaw)
        desired = np.array([c * v_w[0] + s * v_w[1], -s * v_w[0] + c * v_w[1], up, yaw_rate])
        desired = np.clip(desired, -self.limits.scale(), self.limits.scale())
        step = self._rate * float(dt)
        self._cmd = self._cmd + np.clip(desired - self._cmd, -step, step)
        return VelocityCommand.from_array(self._cmd)

    def _in_sight(self, p: np.ndarray, t: np.ndarray) -> bool:
        """Some of the target is visible from the drone p (3,): no obstacle on the
        line to its centre t (3,), or to one of four points near the rim of its
        silhouette (a target half behind a trunk is still in the picture)."""
        from lnn_nav.sim.scenes import segment_hits

        o = self._sight_obstacles
        r = 0.8 * self._target_radius
        d = t[:2] - p[:2]
        side = np.array([-d[1], d[0], 0.0]) / max(float(np.hypot(*d)), 1e-9)
        up = np.array([0.0, 0.0, 1.0])
        points = (t,) if r == 0 else (t, t + r * side, t - r * side, t + r * up, t - r * up)
        return any(not segment_hits(p, q, o.cylinders, o.spheres, o.boxes) for q in points)

    def _inside_field(self, xy: np.ndarray) -> bool:
        f = self._field
        if f is None:
            return False
        return (f.x0 <= xy[0] <= f.x0 + (f.w - 1) * f.res
                and f.y0 <= xy[1] <= f.y0 + (f.h - 1) * f.res)

    def _clear_segment(self, a: np.ndarray, b: np.ndarray, inflation: float,
                       local: Footprints) -> bool:
        """True when a disc of radius `inflation` m moves from a to b (2,) without
        touching an obstacle footprint or leaving the arena. From a point already
        closer than that (corner cut, drift), a segment counts as clear if it does
        not go deeper, as long as it keeps the drone itself off the obstacle."""
        start = float(local.signed_distance(a[None, :])[0])
        seg = local.segment_distance(a, b)
        if self._bounds is not None:
            ends = np.array([a, b])  # the arena is convex: its edge is nearest at an end
            start = min(start, float(self._bounds.distance_inside(ends[:1])[0]))
            seg = min(seg, float(self._bounds.distance_inside(ends).min()))
        thr = min(inflation, max(start - 0.02, self.config.drone_radius + 0.02))
        return seg > thr

    def _horizontal(self, p: np.ndarray, t: np.ndarray, state: PrivilegedState, dist_t: float,
                    bearing: float) -> tuple[np.ndarray, float]:
        """Desired horizontal velocity (2,) m/s, world, and desired heading (rad)."""
        cfg = self.config
        ring = self._ring_radius()
        xy = p[:2]
        local = self._obstacles.near(xy, cfg.lookahead + cfg.inflation + 0.5)
        to_t = t[:2] - xy
        # the hold point: on the ring, on the drone's side of the target; frozen
        # once close so that it does not swing as the drone settles
        u = to_t / max(dist_t, 1e-6)
        if self._task == "fly":
            if self._approach is None or dist_t > ring + 1.0:
                self._approach = u
            u = self._approach
        hold = t[:2] - ring * u
        to_hold = hold - xy
        d_hold = float(np.hypot(*to_hold))

        if self._clear_segment(xy, hold, 0.8 * self._inflation, local) or d_hold < 0.3:
            aim, remaining = hold, d_hold
        else:
            aim, remaining = self._carrot(xy, local)
        to_aim = aim - xy
        d_aim = float(np.hypot(*to_aim))
        speed = min(cfg.cruise_speed,
                    math.sqrt(2.0 * cfg.brake_accel * max(remaining - 0.05, 0.0)),
                    cfg.position_gain * remaining)
        # slow down where the way is tight: speed scales with clearance
        if len(local.circles) or len(local.boxes):
            clr = float(local.signed_distance(xy[None, :])[0]) - cfg.drone_radius
            speed = min(speed, 0.4 + 2.0 * max(clr, 0.0))
        v = to_aim / max(d_aim, 1e-6) * speed if d_aim > 1e-3 else np.zeros(2)
        if self._task == "follow":
            v = v + np.asarray(state.target_vel_w[:2], np.float64)
        # never close in on an obstacle, whatever the path says
        if len(local.circles) or len(local.boxes):
            v = self._safety_filter(xy, v, local)

        # heading: along the travel direction, but keep the target in the picture
        if d_hold < 1.0 or remaining < 1.0:
            heading = bearing
        else:
            travel = math.atan2(to_aim[1], to_aim[0])
            lim = cfg.fov_half - cfg.view_margin
            heading = bearing + float(np.clip(wrap_angle(travel - bearing), -lim, lim))
        return v, heading

    def _carrot(self, xy: np.ndarray, local: Footprints) -> tuple[np.ndarray, float]:
        """The farthest point along the planned path reachable in a straight line,
        and the path length (m) from the drone to the goal ring."""
        cfg = self.config
        f = self._field
        assert f is not None  # internal invariant: reset() plans
        i, j = f.cell(xy)
        if not math.isfinite(f.dist[i, j]):
            # inside the margin or in a blocked cell: start from the best neighbour
            i0, j0 = max(0, i - 2), max(0, j - 2)
            win = f.dist[i0:i + 3, j0:j + 3]
            if np.isfinite(win).any():
                k = int(np.argmin(win))
                i, j = i0 + k // win.shape[1], j0 + k % win.shape[1]
        remaining = float(f.dist[i, j]) if math.isfinite(f.dist[i, j]) else 10.0
        n = int(cfg.lookahead / f.res) + 1
        path = f.descent(i, j, n)
        if not path:
            return f.centre(i, j), remaining
        # farthest first; every second cell is precise enough at 0.2 m
        for k in range(len(path) - 1, -1, -2):
            q = f.centre(*path[k])
            if self._clear_segment(xy, q, self._inflation, local):
                return q, max(remaining, 0.0)
        return f.centre(*path[0]), max(remaining, 0.0)

    def _safety_filter(self, xy: np.ndarray, v: np.ndarray, local: Footprints) -> np.ndarray:
        """Bend the desired velocity (2,) m/s so that the distance to each nearby
        footprint shrinks no faster than `safety_rate` times its excess over
        `drone_radius + safety_margin` (a control-barrier condition): the drone can
        slide past an obstacle but not close in on it, whatever the planner says."""
        cfg = self.config
        d_safe = cfg.drone_radius + cfg.safety_margin
        h = 1e-3
        sd = local.distances(np.array([xy, xy + [h, 0.0], xy + [0.0, h]]))  # (3, N)
        for k in np.nonzero(sd[0] <= cfg.inflation + 0.5)[0]:
            n = np.array([sd[1, k] - sd[0, k], sd[2, k] - sd[0, k]]) / h  # away from it
            norm = float(np.hypot(*n))
            if norm < 1e-9:
                continue
            n /= norm
            need = -cfg.safety_rate * (float(sd[0, k]) - d_safe)
            vn = float(v @ n)
            if vn < need:
                v = v + (need - vn) * n
        return v

    def make_safe(self, cmd: VelocityCommand, state: PrivilegedState) -> VelocityCommand:
        """`cmd` (body FLU) with its horizontal velocity passed through the same
        barrier filter as the expert's own commands: used on perturbed (DART)
        commands, so the noise pushes the drone off the expert's path without
        flying it into an obstacle it would never have hit."""
        cfg = self.config
        xy = np.asarray(state.pos_w[:2], np.float64)
        local = self._obstacles.near(xy, cfg.inflation + 1.0)
        if not (len(local.circles) or len(local.boxes)):
            return cmd
        c, s = math.cos(state.yaw), math.sin(state.yaw)
        v_w = np.array([c * cmd.forward - s * cmd.left, s * cmd.forward + c * cmd.left])
        v_w = self._safety_filter(xy, v_w, local)
        return VelocityCommand(c * v_w[0] + s * v_w[1], -s * v_w[0] + c * v_w[1], cmd.up,
                               cmd.yaw_rate)

    # -------------------------------------------------------------- from info
    def reset_from_info(self, info: dict[str, Any], task: Task) -> None:
        """`reset` from an environment's `info` dict (see `state_from_info`); the
        target's radius is half info["target_size_m"] (0 when absent)."""
        size = info.get("target_size_m")
        radius = 0.0 if size is None else 0.5 * float(size)
        self.reset(obstacles_from_info(info), bounds_from_info(info), task, state_from_info(info),
                   target_radius=radius)

    def act_from_info(self, info: dict[str, Any], dt: float) -> VelocityCommand:
        return self.act(state_from_info(info), dt)


# -------------------------------------------------------------- info adapters
def _vec(info: dict[str, Any], key: str, n: int, default: Any = None) -> np.ndarray:
    if key not in info:
        if default is not None:
            return np.asarray(default, np.float64)
        raise ValueError(f"info has no {key!r}; keys present: {sorted(info)}")
    v = np.asarray(info[key], np.float64).reshape(-1)
    if v.shape != (n,) or not np.isfinite(v).all():
        raise ValueError(f"info[{key!r}]={info[key]!r}: expected {n} finite numbers")
    return v


def state_from_info(info: dict[str, Any]) -> PrivilegedState:
    """The privileged state from an env's `info`: keys pos_w (3,), vel_w (3,), yaw
    (or rpy (3,)), target_pos_w (3,), target_vel_w (3,, optional)."""
    if "yaw" in info:
        yaw = float(np.asarray(info["yaw"]).reshape(-1)[0])
    else:
        yaw = float(_vec(info, "rpy", 3)[2])
    return PrivilegedState(
        pos_w=_vec(info, "pos_w", 3),
        vel_w=_vec(info, "vel_w", 3, default=np.zeros(3)),
        yaw=yaw,
        target_pos_w=_vec(info, "target_pos_w", 3),
        target_vel_w=_vec(info, "target_vel_w", 3, default=np.zeros(3)),
    )


def obstacles_from_info(info: dict[str, Any]) -> Obstacles:
    """Obstacle geometry from info["cylinders"] (N, 5), info["spheres"] (M, 4) and
    info["boxes"] (K, 7) (formats as in `Obstacles`); a missing key means none."""
    return Obstacles.make(info.get("cylinders"), info.get("spheres"), info.get("boxes"))


def bounds_from_info(info: dict[str, Any]) -> Bounds | None:
    """Arena bounds from info["bounds"] = (xmin, ymin, xmax, ymax) m, if present."""
    if info.get("bounds") is None:
        return None
    b = np.asarray(info["bounds"], np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all() or b[0] >= b[2] or b[1] >= b[3]:
        raise ValueError(f"info['bounds']={info['bounds']!r}: expected (xmin, ymin, xmax, ymax)")
    return Bounds(*(float(v) for v in b))
