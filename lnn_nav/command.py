"""The types that cross module boundaries: velocity commands and their limits.

`sim`, `expert`, `controller` and `export` all import this module; it imports
nothing from the package, so an onboard loop can use it without the simulator.

Frames and units: body FLU (x forward, y left, z up); m/s and rad/s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np


class VelocityCommand(NamedTuple):
    """A velocity set-point in the body FLU frame.

    forward: m/s along body x; left: m/s along body y; up: m/s along body z
    (world up, the controller keeps the body level on average); yaw_rate: rad/s,
    positive turns left (counter-clockwise seen from above).
    """

    forward: float
    left: float
    up: float
    yaw_rate: float

    @classmethod
    def hover(cls) -> VelocityCommand:
        return cls(0.0, 0.0, 0.0, 0.0)

    @classmethod
    def from_array(cls, values: np.ndarray | list[float] | tuple[float, ...]) -> VelocityCommand:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.shape != (4,):
            raise ValueError(
                f"a VelocityCommand needs 4 values (forward, left, up, yaw_rate), got shape {arr.shape}"
            )
        return cls(*(float(v) for v in arr))

    def as_array(self) -> np.ndarray:
        """(4,) float64: forward, left, up [m/s], yaw_rate [rad/s]."""
        return np.array(self, dtype=np.float64)

    def is_finite(self) -> bool:
        return all(math.isfinite(v) for v in self)


@dataclass(frozen=True)
class CommandLimits:
    """Symmetric bounds on a `VelocityCommand`; commands are clipped to them."""

    max_horizontal: float = 2.0
    """m/s, bound on |forward| and on |left| (each axis separately)."""
    max_vertical: float = 1.0
    """m/s, bound on |up|."""
    max_yaw_rate: float = 2.0
    """rad/s, bound on |yaw_rate|."""

    def __post_init__(self) -> None:
        for name in ("max_horizontal", "max_vertical", "max_yaw_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"CommandLimits.{name}={value!r}: expected a finite number > 0")

    def scale(self) -> np.ndarray:
        """(4,) float64: the bound of each command axis, in command order."""
        return np.array(
            [self.max_horizontal, self.max_horizontal, self.max_vertical, self.max_yaw_rate]
        )

    def clip(self, cmd: VelocityCommand) -> VelocityCommand:
        s = self.scale()
        return VelocityCommand.from_array(np.clip(cmd.as_array(), -s, s))

    def to_normalized(self, cmd: VelocityCommand) -> np.ndarray:
        """(4,) float32 in [-1, 1]: the command as a fraction of the limits (clipped)."""
        return np.clip(cmd.as_array() / self.scale(), -1.0, 1.0).astype(np.float32)

    def from_normalized(self, action: np.ndarray) -> VelocityCommand:
        """Map a normalised action in [-1, 1]^4 linearly onto the limits."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (4,):
            raise ValueError(f"a normalised action needs shape (4,), got {a.shape}")
        return VelocityCommand.from_array(np.clip(a, -1.0, 1.0) * self.scale())

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> CommandLimits:
        unknown = set(d) - {"max_horizontal", "max_vertical", "max_yaw_rate"}
        if unknown:
            raise ValueError(f"unknown CommandLimits keys {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in d.items()})
