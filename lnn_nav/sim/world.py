"""Put a `Scene` into a PyBullet client: one static body per obstacle, made afresh
for every scene, in scene order.

Bodies are not reused from one scene to the next. An earlier version kept pools
of bodies per shape and size and moved them into place, which saved ~7 ms per
reset, but made frames depend on the scenes shown before: PyBullet's
TinyRenderer draws bodies in the order they were added, and where two surfaces
tie in depth the one drawn last shows (checked with two coincident boxes). With
pools, which body drew which obstacle, and so the draw order, depended on the
episode history. Closed loop one pixel is enough: the shipped policy on scene
30 of forest/unseen collided at step 853 after scene 23 and timed out in a fresh
environment, so an evaluation's results depended on how its workers happened
to share out the episodes. `apply` now removes the previous scene's bodies and
adds the new scene's in scene order (obstacles, then the target). Bodies that
stay (ground, vehicle) keep their place before them, so a scene is drawn in the
same order whatever came before. (PyBullet reuses the ids of removed bodies, so
ids do not show the draw order; the order of addition does.)

Collision and visual shapes are still cached per (shape, size): scene sizes are
multiples of `scenes.SIZE_STEP_M`, so there are few distinct keys. Bodies use
maximal coordinates (a plain rigid body; PyBullet's default multibody costs
~0.5 us per physics step even when static, 4x more).

Rendering cost, measured (64x64, forest, random flight): the TinyRenderer scans
the screen bounding box of every triangle, so long slanted triangles are what
costs. An earlier version used one 12 m trunk per radius sunk into the ground
to the wanted height: the hidden underground part still covered the lower half
of the image and a frame cost 5.4 ms; bodies of the exact height cost 2.0 ms.
Scene heights are therefore quantised (`scenes.LENGTH_STEP_M`).

Visual shapes are low-polygon meshes (6-sided prisms of the cylinder's
cross-section area, within 10% of its radius; once-subdivided icosahedra within 4% of the
sphere) because the renderer's cost grows with triangle count; collision shapes
are the exact cylinders, spheres and boxes the `Scene` describes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pybullet as p

from lnn_nav.sim.camera import Lighting
from lnn_nav.sim.scenes import ROLE_NAMES, SIZE_STEP_M, Scene

_HIDDEN_RGBA = [0.0, 0.0, 0.0, 0.0]
_PRISM_SIDES = 6


def _prism_mesh(radius: float, length: float) -> tuple[list[list[float]], list[int], list[list[float]]]:
    """A closed prism circumscribing a cylinder (axis z, centred); vertices, indices, normals.

    Side and cap vertices are separate so that the flat-shaded normals are right."""
    n = _PRISM_SIDES
    rr = radius / math.cos(math.pi / n)
    verts: list[list[float]] = []
    normals: list[list[float]] = []
    idx: list[int] = []
    for i in range(n):  # side strips, each with its own vertices and face normal
        a0, a1 = 2 * math.pi * i / n, 2 * math.pi * (i + 1) / n
        am = (a0 + a1) / 2
        nrm = [math.cos(am), math.sin(am), 0.0]
        b = len(verts)
        h = length / 2
        for a, z in ((a0, -h), (a1, -h), (a1, h), (a0, h)):
            verts.append([rr * math.cos(a), rr * math.sin(a), z])
            normals.append(nrm)
        idx += [b, b + 1, b + 2, b, b + 2, b + 3]
    for z, sgn in ((h, 1.0), (-h, -1.0)):  # caps
        c = len(verts)
        for i in range(n):
            a = 2 * math.pi * i / n
            verts.append([rr * math.cos(a), rr * math.sin(a), z])
            normals.append([0.0, 0.0, sgn])
        for i in range(1, n - 1):
            idx += [c, c + i, c + i + 1] if sgn > 0 else [c, c + i + 1, c + i]
    return verts, idx, normals


def _icosphere_mesh(radius: float) -> tuple[list[list[float]], list[int], list[list[float]]]:
    """An icosahedron subdivided once (42 vertices, 80 faces), scaled so that its faces
    lie no more than ~4% inside the sphere and its vertices ~4% outside."""
    t = (1 + math.sqrt(5)) / 2
    v = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t],
         [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
             (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
             (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [list(np.array(x, float) / np.linalg.norm(x)) for x in v]
    mid: dict[tuple[int, int], int] = {}

    def midpoint(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in mid:
            m = (np.array(verts[a]) + np.array(verts[b])) / 2
            verts.append(list(m / np.linalg.norm(m)))
            mid[key] = len(verts) - 1
        return mid[key]

    idx: list[int] = []
    for a, b, c in faces:
        ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
        for tri in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)):
            idx += list(tri)
    scale = radius * 1.04
    return [[x * scale for x in u] for u in verts], idx, [list(u) for u in verts]


@dataclass(frozen=True)
class _Key:
    shape: str  # "cyl", "sph", "box"
    dims: tuple[float, ...]  # cyl: (r, length); sph: (r,); box: (hx, hy, hz)


def _rounded(x: float) -> float:
    return round(x / SIZE_STEP_M * 2) * SIZE_STEP_M / 2


class SceneWorld:
    """The bodies of the current scene in a PyBullet client.

    `body_role` maps each visible obstacle body id to its role name (trunk,
    canopy, ...), for telling what the vehicle hit; `target_id` is the target body.
    """

    def __init__(self, client: int, ground_id: int | None = None) -> None:
        self.client = client
        self.ground_id = ground_id
        self._shapes: dict[_Key, tuple[int, int]] = {}
        self._in_use: list[int] = []
        self.body_role: dict[int, str] = {}
        self.target_id: int | None = None
        self.scene: Scene | None = None
        self._centres = np.zeros((0, 3))
        self._radii = np.zeros(0)
        self._rgba = np.zeros((0, 4))
        self._shown = np.zeros(0, bool)

    # ---- shapes and bodies ----------------------------------------------------------------
    def _shape(self, key: _Key) -> tuple[int, int]:
        if key not in self._shapes:
            c = self.client
            if key.shape == "cyl":
                r, length = key.dims
                col = p.createCollisionShape(p.GEOM_CYLINDER, radius=r, height=length, physicsClientId=c)
                v, i, n = _prism_mesh(r, length)
            elif key.shape == "sph":
                (r,) = key.dims
                col = p.createCollisionShape(p.GEOM_SPHERE, radius=r, physicsClientId=c)
                v, i, n = _icosphere_mesh(r)
            else:
                col = p.createCollisionShape(p.GEOM_BOX, halfExtents=list(key.dims), physicsClientId=c)
                vis = p.createVisualShape(p.GEOM_BOX, halfExtents=list(key.dims), physicsClientId=c)
                self._shapes[key] = (col, vis)
                return col, vis
            vis = p.createVisualShape(p.GEOM_MESH, vertices=v, indices=i, normals=n, physicsClientId=c)
            self._shapes[key] = (col, vis)
        return self._shapes[key]

    def _add(self, key: _Key, pos: list[float] | np.ndarray, yaw: float, rgba: np.ndarray) -> int:
        """A new static body of shape `key` at `pos` (m) turned by `yaw` (rad), coloured `rgba`."""
        col, vis = self._shape(key)
        q = p.getQuaternionFromEuler([0.0, 0.0, yaw])
        body = p.createMultiBody(0.0, col, vis, [float(v) for v in pos], q, useMaximalCoordinates=True,
                                 physicsClientId=self.client)
        p.changeVisualShape(body, -1, rgbaColor=[float(x) for x in rgba], physicsClientId=self.client)
        return body

    # ---- public ---------------------------------------------------------------
    def apply(self, scene: Scene) -> None:
        """Make the client show `scene`: obstacles, target, ground colour. Light and sky
        are render settings, see `lighting_for`. Removes the previous scene's bodies
        first and adds this scene's in scene order, so the draw order depends on
        this scene only."""
        for body in self._in_use + ([] if self.target_id is None else [self.target_id]):
            p.removeBody(body, physicsClientId=self.client)
        self._in_use, self.target_id = [], None
        placed: list[int] = []
        roles: dict[int, str] = {}
        for (x, y, r, z0, z1), rgba, role in zip(scene.cylinders, scene.cylinder_rgba, scene.cylinder_role):
            key = _Key("cyl", (_rounded(r), _rounded(z1 - z0)))
            zc = (z0 + z1) / 2
            body = self._add(key, [x, y, zc], 0.0, rgba)
            placed.append(body)
            roles[body] = ROLE_NAMES[role]
        for (x, y, z, r), rgba, role in zip(scene.spheres, scene.sphere_rgba, scene.sphere_role):
            body = self._add(_Key("sph", (_rounded(r),)), [x, y, z], 0.0, rgba)
            placed.append(body)
            roles[body] = ROLE_NAMES[role]
        for (x, y, z, hx, hy, hz, yaw), rgba, role in zip(scene.boxes, scene.box_rgba, scene.box_role):
            body = self._add(_Key("box", (_rounded(hx), _rounded(hy), _rounded(hz))), [x, y, z],
                             float(yaw), rgba)
            placed.append(body)
            roles[body] = ROLE_NAMES[role]
        # the target last (it moves in FollowTarget: `move_target`)
        h = scene.target_size_m / 2
        tkey = {"sphere": _Key("sph", (_rounded(h),)), "cylinder": _Key("cyl", (_rounded(h), _rounded(2 * h))),
                "box": _Key("box", (_rounded(h),) * 3)}[scene.target_kind]
        self.target_id = self._add(tkey, scene.target_pos_w, 0.0, scene.target_rgba)
        self._in_use = placed
        self.body_role = roles
        # bounding spheres of the placed bodies (placement order), for `cull_to_view`;
        # the radii cover the low-poly visuals (prism corners 1.10 r, icosphere 1.04 r)
        cyl, sph, box = scene.cylinders, scene.spheres, scene.boxes
        self._centres = np.vstack([
            np.column_stack([cyl[:, 0], cyl[:, 1], (cyl[:, 3] + cyl[:, 4]) / 2]).reshape(-1, 3),
            sph[:, :3].reshape(-1, 3), box[:, :3].reshape(-1, 3)])
        self._radii = np.concatenate([np.hypot(1.15 * cyl[:, 2], (cyl[:, 4] - cyl[:, 3]) / 2),
                                      1.1 * sph[:, 3], 1.05 * np.linalg.norm(box[:, 3:6], axis=1)])
        self._rgba = np.vstack([scene.cylinder_rgba.reshape(-1, 4), scene.sphere_rgba.reshape(-1, 4),
                                scene.box_rgba.reshape(-1, 4)])
        self._shown = np.ones(len(placed), bool)
        if self.ground_id is not None:
            p.changeVisualShape(self.ground_id, -1, rgbaColor=[*map(float, scene.ground_rgb), 1.0],
                                physicsClientId=self.client)
        self.scene = scene

    def cull_to_view(self, eye_w: np.ndarray, axis_w: np.ndarray, half_angle_rad: float) -> int:
        """Make transparent the obstacle bodies that cannot appear in a camera's view and
        restore the others; returns how many are shown.

        eye_w: (3,) m camera centre, world ENU; axis_w: (3,) unit optical axis;
        half_angle_rad: half-angle of a cone containing the view frustum (its
        corner ray). A body is kept if its bounding sphere meets that cone, so
        the image is unchanged; the renderer then skips the rest (each body
        outside the view still costs it ~10 us). Positions are those of `apply`
        (the moving target is not culled).
        """
        if not len(self._in_use):
            return 0
        d = self._centres - np.asarray(eye_w, float)
        dist = np.sqrt((d * d).sum(axis=1))
        inside = dist <= self._radii
        safe = np.where(inside, 1.0, dist)
        cos_to_axis = (d @ np.asarray(axis_w, float)) / safe
        limit = np.minimum(half_angle_rad + np.arcsin(np.clip(self._radii / safe, 0.0, 1.0)), math.pi)
        show = inside | (cos_to_axis >= np.cos(limit))
        for i in np.nonzero(show != self._shown)[0]:
            rgba = self._rgba[i] if show[i] else _HIDDEN_RGBA
            p.changeVisualShape(self._in_use[i], -1, rgbaColor=[float(x) for x in rgba],
                                physicsClientId=self.client)
        self._shown = show
        return int(show.sum())

    def move_target(self, pos_w: np.ndarray) -> None:
        """Move the target body to `pos_w` (3,) m world ENU (kinematic: FollowTarget)."""
        if self.target_id is None:
            raise RuntimeError("move_target before apply: no target body yet")
        p.resetBasePositionAndOrientation(self.target_id, [float(v) for v in pos_w], [0, 0, 0, 1],
                                          physicsClientId=self.client)

    def role_of(self, body: int) -> str:
        """Role name of a body id: an obstacle role, 'target', 'ground' or 'other'."""
        if body == self.target_id:
            return "target"
        if body == self.ground_id:
            return "ground"
        return self.body_role.get(body, "other")


def lighting_for(scene: Scene) -> tuple[Lighting, tuple[int, int, int]]:
    """The renderer light and the sky colour (uint8 RGB) of a scene."""
    light = Lighting(direction_w=tuple(float(v) for v in scene.light_direction_w),
                     color_rgb=tuple(float(v) for v in scene.light_rgb),
                     ambient=float(scene.light_ambient), diffuse=float(scene.light_diffuse),
                     specular=0.05)
    sky = tuple(int(round(255 * float(v))) for v in scene.sky_rgb)
    return light, sky
