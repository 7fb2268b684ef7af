"""The onboard camera: a pinhole camera rigidly mounted on the vehicle, rendered
with PyBullet's software TinyRenderer (works in DIRECT mode, no GPU or display).

The camera sits `offset_body_m` ahead of the centre of mass, beyond the
propeller tips, looking along body +x tilted up by `tilt_up_rad`. Everything of
the vehicle is then behind the image plane, so the drone never sees itself and
no per-frame hiding is needed.

The view and projection matrices are built here with numpy (OpenGL
conventions, column-major as PyBullet expects) rather than by PyBullet's
helpers, so the camera pose follows the full body attitude and the pixel
aspect ratio is right for any resolution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pybullet as p


def _check_vector(
    owner: str, name: str, value: Any, n: int, lo: float | None = None, hi: float | None = None
) -> None:
    ok = (
        isinstance(value, tuple)
        and len(value) == n
        and all(
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and (lo is None or v >= lo)
            and (hi is None or v <= hi)
            for v in value
        )
    )
    if not ok:
        rng = "" if lo is None else f" in [{lo}, {hi}]"
        raise ValueError(f"{owner}.{name}={value!r}: expected a tuple of {n} finite numbers{rng}")


@dataclass(frozen=True)
class CameraConfig:
    """Intrinsics and mounting of the onboard camera."""

    width: int = 64
    """pixels, image width."""
    height: int = 64
    """pixels, image height."""
    vfov_rad: float = math.radians(60.0)
    """rad, vertical field of view (the horizontal one follows from the aspect ratio)."""
    tilt_up_rad: float = 0.0
    """rad, angle of the optical axis above the body x-y plane (negative looks down)."""
    offset_body_m: tuple[float, float, float] = (0.07, 0.0, 0.0)
    """m, camera centre in body FLU; the default is just ahead of the propeller
    tips of the Crazyflie model (0.063 m), so the vehicle stays out of view."""
    near_m: float = 0.01
    """m, near clipping distance."""
    far_m: float = 100.0
    """m, far clipping distance (beyond it: background)."""
    shadows: bool = False
    """render shadows (slower)."""
    supersample: int = 1
    """each pixel is the mean of supersample x supersample rendered samples. A
    sensor pixel integrates the light falling on it; the renderer samples one
    point per pixel, so a target smaller than a pixel shows in some frames and
    vanishes in the next (aliasing). Averaged samples show it as a steady faint
    blend. Rendering costs grow about with supersample**2."""

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096):
                raise ValueError(
                    f"CameraConfig.{name}={v!r}: expected an integer number of pixels in [1, 4096]"
                )
        if not (isinstance(self.vfov_rad, (int, float)) and 0 < self.vfov_rad < math.pi):
            raise ValueError(
                f"CameraConfig.vfov_rad={self.vfov_rad!r}: expected an angle in (0, pi) rad"
            )
        if not (isinstance(self.tilt_up_rad, (int, float)) and abs(self.tilt_up_rad) < math.pi / 2):
            raise ValueError(
                f"CameraConfig.tilt_up_rad={self.tilt_up_rad!r}: "
                "expected an angle in (-pi/2, pi/2) rad"
            )
        _check_vector("CameraConfig", "offset_body_m", self.offset_body_m, 3)
        if not (
            isinstance(self.near_m, (int, float)) and math.isfinite(self.near_m) and self.near_m > 0
        ):
            raise ValueError(f"CameraConfig.near_m={self.near_m!r}: expected a distance > 0 m")
        if not (
            isinstance(self.far_m, (int, float))
            and math.isfinite(self.far_m)
            and self.far_m > self.near_m
        ):
            raise ValueError(
                f"CameraConfig.far_m={self.far_m!r}: expected a distance > near_m={self.near_m} m"
            )
        if not isinstance(self.shadows, bool):
            raise ValueError(f"CameraConfig.shadows={self.shadows!r}: expected true or false")
        ss = self.supersample
        if isinstance(ss, bool) or not isinstance(ss, int) or not 1 <= ss <= 8:
            raise ValueError(f"CameraConfig.supersample={ss!r}: expected an integer in [1, 8]")

    @property
    def aspect(self) -> float:
        """width / height."""
        return self.width / self.height

    @property
    def hfov_rad(self) -> float:
        """rad, horizontal field of view: 2 atan(aspect tan(vfov/2))."""
        return 2.0 * math.atan(self.aspect * math.tan(0.5 * self.vfov_rad))

    @property
    def focal_px(self) -> float:
        """pixels, focal length (square pixels): (height/2) / tan(vfov/2)."""
        return 0.5 * self.height / math.tan(0.5 * self.vfov_rad)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, 3), the image shape."""
        return (self.height, self.width, 3)

    def projection_matrix(self) -> list[float]:
        """16 floats, column-major OpenGL perspective projection."""
        f = 1.0 / math.tan(0.5 * self.vfov_rad)
        n, fa = self.near_m, self.far_m
        P = np.array(
            [
                [f / self.aspect, 0.0, 0.0, 0.0],
                [0.0, f, 0.0, 0.0],
                [0.0, 0.0, (fa + n) / (n - fa), 2.0 * fa * n / (n - fa)],
                [0.0, 0.0, -1.0, 0.0],
            ]
        )
        return P.T.reshape(-1).tolist()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["offset_body_m"] = list(self.offset_body_m)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CameraConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"unknown CameraConfig keys {sorted(unknown)}; expected some of {sorted(names)}"
            )
        kw = dict(d)
        if "offset_body_m" in kw and isinstance(kw["offset_body_m"], list):
            kw["offset_body_m"] = tuple(kw["offset_body_m"])
        return cls(**kw)


@dataclass(frozen=True)
class Lighting:
    """Directional light for the TinyRenderer (a property of the scene, not the camera)."""

    direction_w: tuple[float, float, float] = (0.4, -0.3, 1.0)
    """world ENU, direction from the scene towards the light (need not be unit length)."""
    color_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """light colour, each channel in [0, 1]."""
    ambient: float = 0.6
    """ambient coefficient in [0, 1]."""
    diffuse: float = 0.35
    """diffuse coefficient in [0, 1]."""
    specular: float = 0.05
    """specular coefficient in [0, 1]."""

    def __post_init__(self) -> None:
        _check_vector("Lighting", "direction_w", self.direction_w, 3)
        if math.hypot(*self.direction_w) == 0.0:
            raise ValueError(
                f"Lighting.direction_w={self.direction_w!r}: expected a non-zero vector"
            )
        _check_vector("Lighting", "color_rgb", self.color_rgb, 3, 0.0, 1.0)
        for name in ("ambient", "diffuse", "specular"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"Lighting.{name}={v!r}: expected a number in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lighting:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"unknown Lighting keys {sorted(unknown)}; expected some of {sorted(names)}"
            )
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def camera_pose(
    config: CameraConfig, pos_w: np.ndarray, R_wb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (3,) m world ENU and camera-to-world rotation (3, 3) with
    columns (optical axis, image left, image up) in world ENU."""
    t = config.tilt_up_rad
    ct, st = math.cos(t), math.sin(t)
    # Camera frame in body FLU: optical axis x tilted up about body y.
    R_bc = np.array([[ct, 0.0, -st], [0.0, 1.0, 0.0], [st, 0.0, ct]])
    R_wc = R_wb @ R_bc
    eye = np.asarray(pos_w, dtype=np.float64) + R_wb @ np.asarray(config.offset_body_m)
    return eye, R_wc


def view_matrix(eye_w: np.ndarray, R_wc: np.ndarray) -> list[float]:
    """16 floats, column-major OpenGL view matrix for a camera at `eye_w` (3,) m
    with axes `R_wc` (3, 3) = (forward, left, up) columns in world ENU."""
    fwd, left, up = R_wc[:, 0], R_wc[:, 1], R_wc[:, 2]
    # OpenGL eye coordinates: x right, y up, z backwards.
    rot = np.vstack([-left, up, -fwd])
    V = np.eye(4)
    V[:3, :3] = rot
    V[:3, 3] = -rot @ eye_w
    return V.T.reshape(-1).tolist()


def render(
    client: int,
    config: CameraConfig,
    pos_w: np.ndarray,
    R_wb: np.ndarray,
    *,
    lighting: Lighting | None = None,
    background_rgb: tuple[int, int, int] | None = None,
    _projection: list[float] | None = None,
) -> np.ndarray:
    """Render the onboard view of a vehicle at `pos_w` (3,) m world ENU with
    attitude `R_wb` (3, 3) body FLU -> world.

    lighting: the scene light (None: `Lighting()` defaults). background_rgb:
    uint8 colour for pixels where nothing was drawn (the sky); None keeps the
    renderer's white. Returns uint8 (height, width, 3) RGB, row 0 at the top.
    """
    eye, R_wc = camera_pose(config, pos_w, R_wb)
    light = lighting if lighting is not None else _DEFAULT_LIGHTING
    ss = config.supersample
    h, w = config.height * ss, config.width * ss
    out = p.getCameraImage(
        w,
        h,
        viewMatrix=view_matrix(eye, R_wc),
        projectionMatrix=_projection if _projection is not None else config.projection_matrix(),
        lightDirection=list(light.direction_w),
        lightColor=list(light.color_rgb),
        lightAmbientCoeff=light.ambient,
        lightDiffuseCoeff=light.diffuse,
        lightSpecularCoeff=light.specular,
        shadow=int(config.shadows),
        renderer=p.ER_TINY_RENDERER,
        flags=p.ER_NO_SEGMENTATION_MASK,
        physicsClientId=client,
    )
    rgba = np.asarray(out[2], dtype=np.uint8).reshape(h, w, 4)
    rgb = np.ascontiguousarray(rgba[:, :, :3])
    if background_rgb is not None:
        # The depth buffer is 1.0 exactly where no triangle was drawn.
        depth = np.asarray(out[3]).reshape(h, w)
        rgb[depth >= 1.0] = background_rgb
    if ss > 1:
        blocks = rgb.reshape(config.height, ss, config.width, ss, 3).sum(axis=(1, 3), dtype=np.uint32)
        rgb = ((blocks + ss * ss // 2) // (ss * ss)).astype(np.uint8)
    return rgb


_DEFAULT_LIGHTING = Lighting()


class Camera:
    """A `CameraConfig` with its projection matrix computed once."""

    def __init__(self, config: CameraConfig | None = None) -> None:
        self.config = config if config is not None else CameraConfig()
        self._projection = self.config.projection_matrix()

    def render(
        self,
        client: int,
        pos_w: np.ndarray,
        R_wb: np.ndarray,
        *,
        lighting: Lighting | None = None,
        background_rgb: tuple[int, int, int] | None = None,
    ) -> np.ndarray:
        """uint8 (height, width, 3): see `render`."""
        return render(
            client,
            self.config,
            pos_w,
            R_wb,
            lighting=lighting,
            background_rgb=background_rgb,
            _projection=self._projection,
        )
