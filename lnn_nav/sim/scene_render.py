"""Pictures of a scene: a top-down map and a strip of onboard-camera frames (PNG).

`show_scene(family, split, seed, out_dir)` writes both; `lnn-nav scene show`
calls it. The map is drawn with matplotlib from the scene's geometry (world
ENU, x east to the right, y north up); the strip is rendered by the same
PyBullet camera the environments use, from the start position, turning in
place in equal steps from the start heading (so it shows where the target is
relative to the first view).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lnn_nav.sim.scenes import (
    ROLE_BOX,
    ROLE_CANOPY,
    ROLE_DISTRACTOR,
    ROLE_POLE,
    ROLE_TRUNK,
    ROLE_WALL,
    FamilySpec,
    Scene,
    generate_scene,
)


def draw_top_down(scene: Scene, path: str | Path, *, hfov_rad: float | None = None,
                  size_in: float = 4.0, dpi: int = 80) -> Path:
    """Write a top-down map of `scene` to `path` (PNG, size_in*dpi pixels square)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Polygon, Rectangle, Wedge

    path = Path(path)
    fig, ax = plt.subplots(figsize=(size_in, size_in), dpi=dpi)
    h = scene.arena_size_m / 2
    ax.add_patch(Rectangle((-h, -h), 2 * h, 2 * h, facecolor=tuple(scene.ground_rgb), edgecolor="k", lw=1))
    # canopies first (translucent), then what stands on the ground
    for (x, y, z, r), rgba, role in zip(scene.spheres, scene.sphere_rgba, scene.sphere_role):
        if role == ROLE_CANOPY:
            ax.add_patch(Circle((x, y), r, facecolor=tuple(rgba[:3]), alpha=0.45, lw=0))
    for (x, y, r, z0, z1), rgba, role in zip(scene.cylinders, scene.cylinder_rgba, scene.cylinder_role):
        if role == ROLE_CANOPY:
            ax.add_patch(Circle((x, y), r, facecolor=tuple(rgba[:3]), alpha=0.45, lw=0))
    for (x, y, r, z0, z1), rgba, role in zip(scene.cylinders, scene.cylinder_rgba, scene.cylinder_role):
        if role in (ROLE_TRUNK, ROLE_POLE):
            ax.add_patch(Circle((x, y), r, facecolor=tuple(rgba[:3]), edgecolor="k", lw=0.3))
        elif role == ROLE_DISTRACTOR:
            ax.add_patch(Circle((x, y), r, facecolor=tuple(rgba[:3]), edgecolor="k", lw=0.5))
    for (x, y, z, hx, hy, hz, yaw), rgba, role in zip(scene.boxes, scene.box_rgba, scene.box_role):
        c, s = math.cos(yaw), math.sin(yaw)
        corners = [(x + c * u - s * v, y + s * u + c * v) for u, v in ((hx, hy), (-hx, hy), (-hx, -hy), (hx, -hy))]
        ax.add_patch(Polygon(corners, closed=True, facecolor=tuple(rgba[:3]), edgecolor="k",
                             lw=0.5 if role in (ROLE_BOX, ROLE_WALL) else 0.8))
    for (x, y, z, r), rgba, role in zip(scene.spheres, scene.sphere_rgba, scene.sphere_role):
        if role == ROLE_DISTRACTOR:
            ax.add_patch(Circle((x, y), r, facecolor=tuple(rgba[:3]), edgecolor="k", lw=0.5))
    sx, sy, sz = scene.start_pos_w
    tx, ty, tz = scene.target_pos_w
    if scene.target_path_w is not None:
        ax.plot(scene.target_path_w[:, 0], scene.target_path_w[:, 1], color="k", lw=0.8, ls=":")
    ax.plot([sx, tx], [sy, ty], color="r" if scene.line_blocked else "k", lw=0.8, ls="--")
    if hfov_rad is not None:
        deg = math.degrees
        ax.add_patch(Wedge((sx, sy), 2.0, deg(scene.start_yaw - hfov_rad / 2), deg(scene.start_yaw + hfov_rad / 2),
                           facecolor="yellow", alpha=0.35, lw=0))
    ax.add_patch(Circle((tx, ty), max(scene.target_size_m / 2, 0.12), facecolor=tuple(scene.target_rgba[:3]),
                        edgecolor="k", lw=1.0))
    ax.annotate("", xy=(sx + 0.8 * math.cos(scene.start_yaw), sy + 0.8 * math.sin(scene.start_yaw)),
                xytext=(sx, sy), arrowprops={"arrowstyle": "->", "color": "k", "lw": 1.5})
    ax.plot([sx], [sy], "o", color="k", ms=4)
    ax.set_xlim(-h - 0.5, h + 0.5)
    ax.set_ylim(-h - 0.5, h + 0.5)
    ax.set_aspect("equal")
    ax.set_title(f"{scene.family} {scene.split} #{scene.index}  start z={sz:.1f} m, target z={tz:.1f} m",
                 fontsize=7)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def onboard_frames(scene: Scene, n: int = 8, camera: object = None,
                   sensor_faults: bool = True) -> list[np.ndarray]:
    """`n` uint8 (H, W, 3) onboard frames from the start position, turning in place
    by 2 pi / n from the start heading. With `sensor_faults`, the family's image
    stress (brightness, contrast, saturation, noise) is applied, seeded by the scene."""
    from lnn_nav.sim.camera import CameraConfig
    from lnn_nav.sim.envs import stress_image
    from lnn_nav.sim.quadsim import QuadSim, QuadSimConfig
    from lnn_nav.sim.world import SceneWorld, lighting_for

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: expected an integer number of frames >= 1")
    cam = camera if camera is not None else CameraConfig()
    sim = QuadSim(QuadSimConfig(camera=cam))
    try:
        world = SceneWorld(sim.client, sim.ground_id)
        world.apply(scene)
        sim.lighting, sim.background_rgb = lighting_for(scene)
        rng = np.random.default_rng(scene.scene_seed)
        frames = []
        for k in range(n):
            sim.reset(scene.start_pos_w, scene.start_yaw + 2 * math.pi * k / n)
            img = sim.render()
            if sensor_faults:
                img = stress_image(img, scene, rng)
            frames.append(img)
        return frames
    finally:
        sim.close()


def write_strip(frames: list[np.ndarray], path: str | Path, scale: int = 2) -> Path:
    """Write frames side by side (upscaled `scale` times, 2-pixel white gaps) as a PNG."""
    import cv2

    path = Path(path)
    tiles = [np.repeat(np.repeat(f, scale, axis=0), scale, axis=1) for f in frames]
    gap = np.full((tiles[0].shape[0], 2, 3), 255, np.uint8)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.hstack(row), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def show_scene(family: str | Path | FamilySpec, split: str, seed: int, out_dir: str | Path,
               n_frames: int = 8) -> tuple[Path, Path]:
    """Write `<family>_<split>_<seed>_top.png` and `..._strip.png` into `out_dir`;
    returns their paths."""
    from lnn_nav.sim.camera import CameraConfig

    scene = generate_scene(family, split, seed)
    out = Path(out_dir)
    stem = f"{scene.family}_{split}_{seed}"
    cam = CameraConfig()
    top = draw_top_down(scene, out / f"{stem}_top.png", hfov_rad=cam.hfov_rad)
    strip = write_strip(onboard_frames(scene, n_frames, cam), out / f"{stem}_strip.png")
    return top, strip
