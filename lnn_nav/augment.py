"""Image augmentation for imitation training, on uint8 frames.

One appearance draw (brightness, contrast, saturation, shift) per training
window, so a window looks like one consistent camera; pixel noise per frame.
The evaluation's image-stress conditions are kept strictly stronger than the
largest values here (checked in `lnn_nav.evaluate`), so stress tests measure
generalisation rather than training coverage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    brightness: float = 0.15
    """Max additive brightness shift, as a fraction of full scale (255)."""
    contrast: float = 0.15
    """Max relative contrast change: factor drawn in [1 - c, 1 + c]."""
    saturation: float = 0.15
    """Max relative saturation change: factor drawn in [1 - s, 1 + s]."""
    noise_std: float = 0.02
    """Max std of Gaussian pixel noise, as a fraction of full scale."""
    max_shift_px: int = 2
    """Max translation in pixels along each image axis (edge pixels repeat)."""
    probability: float = 0.8
    """Chance that a window is augmented at all."""

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation", "noise_std"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"AugmentConfig.{name}={v}: expected a value in [0, 1)")
        if not (isinstance(self.max_shift_px, int) and 0 <= self.max_shift_px <= 8):
            raise ValueError(f"AugmentConfig.max_shift_px={self.max_shift_px}: expected an int in [0, 8]")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"AugmentConfig.probability={self.probability}: expected a value in [0, 1]")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> AugmentConfig:
        return cls(**d)


def adjust_appearance(
    frames: np.ndarray, brightness: float, contrast: float, saturation: float
) -> np.ndarray:
    """Photometric change of uint8 frames (..., H, W, 3) -> float32 in [0, 255].

    brightness: additive, fraction of full scale; contrast and saturation:
    multiplicative factors about the per-frame mean grey and the per-pixel grey.
    """
    x = frames.astype(np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = grey[..., None] + saturation * (x - grey[..., None])
    mean = grey.mean(axis=(-2, -1), keepdims=True)[..., None]
    x = mean + contrast * (x - mean) + 255.0 * brightness
    return np.clip(x, 0.0, 255.0)


def augment_window(frames: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """frames: (T, H, W, 3) uint8 -> augmented (T, H, W, 3) uint8."""
    if cfg.probability <= 0 or rng.random() >= cfg.probability:
        return frames
    x = adjust_appearance(
        frames,
        brightness=rng.uniform(-cfg.brightness, cfg.brightness),
        contrast=rng.uniform(1 - cfg.contrast, 1 + cfg.contrast),
        saturation=rng.uniform(1 - cfg.saturation, 1 + cfg.saturation),
    )
    if cfg.noise_std > 0:
        std = 255.0 * rng.uniform(0, cfg.noise_std)
        x = x + rng.normal(0.0, std, size=x.shape).astype(np.float32)
    if cfg.max_shift_px > 0:
        dy, dx = rng.integers(-cfg.max_shift_px, cfg.max_shift_px + 1, size=2)
        x = shift_image(x, int(dy), int(dx))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def shift_image(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate (..., H, W, C) by (dy, dx) pixels, repeating edge pixels."""
    h, w = x.shape[-3], x.shape[-2]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return x[..., rows, :, :][..., :, cols, :]
