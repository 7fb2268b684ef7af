"""The CNN encoder: one camera frame (uint8 RGB, H x W x 3) to F standardised features.

    image (B, H, W, 3) uint8
      -> float in [0, 1], minus 0.5, times 4      normalisation lives in the model,
                                                  so exported graphs carry it
      -> conv 5x5 /2, ReLU -> conv 3x3 /2, ReLU -> conv 3x3, ReLU   (channels configurable)
      -> 1x1 conv to K keypoint maps
      -> pooling: "spatial_softmax" (expected x, y of each map, in [-1, 1]: F = 2K)
                  or "avg" (global average of each map: F = K)
         optionally with each map's presence (its softmax's peak probability,
         in (0, 1]: F grows by K) and spread (the spatial standard deviation
         of its softmax: F grows by K; spatial softmax only)
      -> LayerNorm                                 features ~zero mean, unit std per frame,
                                                  what the heads' initialisation expects

Spatial softmax (Levine et al., 2016) turns each map into where its feature is
in the image, which is what steering towards a target or around an obstacle
needs, at no parameter cost. It does not say whether the feature is there at
all: a map with nothing on it still has an expected position. Presence adds
that, as the largest probability of each map's softmax: near 1/(h w) when the
map is flat, near 1 when one cell stands out -- a target of two pixels
half-hidden by a trunk is such a cell, and its expected position alone moves
too little to tell it from nothing. Spread is how far each map's softmax
reaches across the image: a trunk a metre ahead covers a third of the frame,
the same trunk at five metres a few columns, and their expected positions can
be the same. There is no batch normalisation: statistics that
depend on the batch behave differently in training, closed loop and export.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

POOLINGS = ("spatial_softmax", "avg")


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of the CNN encoder."""

    image_size: tuple[int, int] = (64, 64)
    """(H, W) pixels of the frames it takes."""
    vfov_rad: float = math.radians(60.0)
    """rad, vertical field of view of the camera whose frames it takes (square
    pixels, so the horizontal one follows from the aspect ratio). The pixels alone
    do not say how wide the world they show is; a policy flown behind another
    field of view than it was trained on sees obstacles at the wrong bearings.
    Files written before this field existed were all trained at 60 deg."""
    supersample: int = 1
    """rendered samples per pixel side of the camera whose frames it takes
    (`CameraConfig.supersample`); the encoder itself never reads it. Files
    written before this field existed were all trained at 1."""
    channels: tuple[int, int, int] = (16, 32, 48)
    """output channels of the three conv layers (strides 2, 2, 1)."""
    keypoints: int = 56
    """K, maps produced by the final 1x1 conv."""
    pooling: str = "spatial_softmax"
    """'spatial_softmax' (F = 2K) or 'avg' (F = K)."""
    presence: bool = False
    """Also output each map's presence (peak softmax probability): F grows by K."""
    spread: bool = False
    """Also output each map's spread (the standard deviation of its softmax over
    the image, in the same [-1, 1] units as the positions): F grows by K.
    Spatial softmax only. Files written before this field existed have none.
    Measured with 32 keypoints (128 features, as many as the default's 120):
    82.5% on 200 forest/unseen scenes against 87.0%, collisions not fewer
    (10.5%), so it is off by default."""
    seed: int = 0
    """seed of the initial weights."""

    def __post_init__(self) -> None:
        size = tuple(self.image_size)
        if len(size) != 2 or not all(isinstance(v, int) and v >= 16 for v in size):
            raise ValueError(f"image_size={self.image_size!r}: expected (H, W), each an integer >= 16")
        object.__setattr__(self, "image_size", size)
        v = self.vfov_rad
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < math.pi:
            raise ValueError(f"vfov_rad={v!r}: expected an angle in (0, pi) rad")
        object.__setattr__(self, "vfov_rad", float(v))
        ss = self.supersample
        if isinstance(ss, bool) or not isinstance(ss, int) or not 1 <= ss <= 8:
            raise ValueError(f"supersample={ss!r}: expected an integer in [1, 8]")
        chans = tuple(self.channels)
        if len(chans) != 3 or not all(isinstance(c, int) and c >= 1 for c in chans):
            raise ValueError(f"channels={self.channels!r}: expected 3 integers >= 1")
        object.__setattr__(self, "channels", chans)
        if isinstance(self.keypoints, bool) or not isinstance(self.keypoints, int) or self.keypoints < 1:
            raise ValueError(f"keypoints={self.keypoints!r}: expected an integer >= 1")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r}: expected one of {POOLINGS}")
        if not isinstance(self.presence, bool):
            raise ValueError(f"presence={self.presence!r}: expected True or False")
        if not isinstance(self.spread, bool):
            raise ValueError(f"spread={self.spread!r}: expected True or False")
        if self.spread and self.pooling != "spatial_softmax":
            raise ValueError(f"spread=True with pooling={self.pooling!r}: spread needs 'spatial_softmax'")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed={self.seed!r}: expected an integer in [0, 2**32)")

    @property
    def hfov_rad(self) -> float:
        """rad, horizontal field of view of its frames: 2 atan((W/H) tan(vfov/2))."""
        h, w = self.image_size
        return 2.0 * math.atan(w / h * math.tan(0.5 * self.vfov_rad))

    @property
    def feature_size(self) -> int:
        """F, features per frame."""
        per_map = (2 if self.pooling == "spatial_softmax" else 1) + int(self.presence) + int(self.spread)
        return per_map * self.keypoints

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"EncoderConfig has no fields {unknown}; allowed: {sorted(known)}")
        d = dict(d)
        for key in ("image_size", "channels"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


class SpatialSoftmax(nn.Module):
    """(B, K, h, w) maps -> (B, 2K) expected (x, y) per map, in [-1, 1], then with
    `presence` (B, K) more: each map's peak softmax probability, in (0, 1], then
    with `spread` (B, K) more: sqrt(var x + var y) of each map's softmax.

    A learned temperature (log-parameterised, starts at 1) sets how peaked the
    softmax is. x grows to the image's right, y downwards (image axes).
    """

    def __init__(self, height: int, width: int, presence: bool = False, spread: bool = False) -> None:
        super().__init__()
        self.presence = presence
        self.spread = spread
        ys, xs = torch.meshgrid(
            torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij"
        )
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, maps: Tensor) -> Tensor:
        b, k = maps.shape[0], maps.shape[1]
        attn = torch.softmax(maps.reshape(b, k, -1) / torch.exp(self.log_temperature), dim=-1)
        mean = attn @ self.grid  # (B, K, 2)
        parts = [mean.reshape(b, 2 * k)]  # x0, y0, x1, y1, ...
        if self.presence:
            parts.append(attn.amax(dim=-1))
        if self.spread:
            var = (attn @ self.grid.square()).sum(-1) - mean.square().sum(-1)
            # the floor keeps sqrt's gradient finite on a one-cell map
            parts.append(var.clamp_min(1e-6).sqrt())
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class CNNEncoder(nn.Module):
    """Frames (B, H, W, 3) uint8 -> features (B, F) float32, standardised per frame."""

    def __init__(self, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        h, w = config.image_size
        self.conv = nn.Sequential(
            nn.Conv2d(3, c1, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c2, c3, 3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(c3, config.keypoints, 1),
        )
        map_h, map_w = math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2)
        self.pool: nn.Module = (
            SpatialSoftmax(map_h, map_w, config.presence, config.spread) if config.pooling == "spatial_softmax"
            else nn.Identity()
        )
        self.norm = nn.LayerNorm(config.feature_size)
        self.conv_autocast: torch.dtype | None = None
        """Training-time option, never saved: run the conv stack under CPU autocast
        to this dtype (torch.bfloat16: 2-3x faster convolutions where the CPU has
        native bf16). Keypoints and normalisation stay in float32; None (the
        default, and what evaluation and export use) is plain float32."""
        gen = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            for layer in self.conv:
                if isinstance(layer, nn.Conv2d):
                    # He-uniform for ReLU layers, drawn from the encoder's own generator.
                    fan_in = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
                    bound = math.sqrt(6.0 / fan_in)
                    layer.weight.uniform_(-bound, bound, generator=gen)
                    layer.bias.zero_()

    @property
    def feature_size(self) -> int:
        return self.config.feature_size

    def forward(self, images: Tensor) -> Tensor:
        """images: (B, H, W, 3) uint8 RGB -> (B, F) float32."""
        h, w = self.config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (h, w, 3):
            raise ValueError(f"images of shape {tuple(images.shape)}: expected (B, {h}, {w}, 3) uint8 RGB")
        if images.dtype != torch.uint8:
            raise ValueError(f"images of dtype {images.dtype}: expected torch.uint8 RGB")
        dtype = self.norm.weight.dtype
        # [0, 255] -> [-2, 2]: roughly zero-mean, unit-range input for the first conv.
        x = (images.permute(0, 3, 1, 2).to(dtype) / 255.0 - 0.5) * 4.0
        if self.conv_autocast is None:
            maps = self.conv(x)
        else:
            with torch.autocast("cpu", dtype=self.conv_autocast):
                maps = self.conv(x)
            maps = maps.to(dtype)
        if self.config.pooling == "spatial_softmax":
            feats = self.pool(maps)
        else:
            feats = maps.mean(dim=(2, 3))
            if self.config.presence:
                peak = torch.softmax(maps.flatten(2), dim=-1).amax(dim=-1)
                feats = torch.cat([feats, peak], dim=1)
        return self.norm(feats)

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
