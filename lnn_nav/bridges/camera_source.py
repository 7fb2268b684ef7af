"""Camera sources: where a bridge gets its frames.

A source hands out `Frame`s (uint8 RGB (H, W, 3) at the policy's image size,
with a capture time stamp in seconds on the source's own clock). The bridge
computes dt from consecutive stamps, so a video file replays with its own
timing and a live camera with the real elapsed time.

- `OpenCVSource`: a video file or an OpenCV device index (opencv-python-headless).
- `SimulatorSource`: the PyBullet simulator's onboard camera; the commanded
  velocity is flown in the simulator (`apply`), so the frames follow the
  commands (software in the loop).

`open_camera(spec, ...)` picks one from a CLI string: "sim", a device index
("0") or a file path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from lnn_nav.command import VelocityCommand


class Frame(NamedTuple):
    """One camera frame."""

    image: np.ndarray
    """(H, W, 3) uint8 RGB, at the size the policy expects."""
    stamp_s: float
    """s, capture time on the source's clock (monotonic, media or sim time)."""


class CameraSource(Protocol):
    """What a bridge reads frames from."""

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        ...

    def apply(self, cmd: VelocityCommand) -> None:
        """Told the command that was sent (body FLU); a simulated camera flies it."""
        ...

    def close(self) -> None: ...


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0 for v in image_size
    ):
        raise ValueError(f"image_size={image_size!r}: expected (H, W) with positive integers")
    return int(image_size[0]), int(image_size[1])


def to_policy_image(bgr: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """An OpenCV BGR frame (h, w, 3) uint8 -> RGB (H, W, 3) uint8 at image_size.

    Area interpolation when shrinking, because it averages the pixels a
    small policy image stands for instead of aliasing them.
    """
    import cv2

    h, w = image_size
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    if bgr.shape[:2] != (h, w):
        shrinking = bgr.shape[0] >= h and bgr.shape[1] >= w
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        bgr = cv2.resize(bgr, (w, h), interpolation=interp)
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


class OpenCVSource:
    """Frames from a video file or a camera device, through `cv2.VideoCapture`.

    Stamps: media time (CAP_PROP_POS_MSEC / 1000) for files, so a replay has
    the recorded timing; the monotonic clock at capture for devices. With
    `loop=True` a file restarts at its end and its stamps keep increasing.
    """

    def __init__(
        self,
        source: str | Path | int,
        image_size: tuple[int, int],
        loop: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            import cv2
        except ImportError as exc:  # pragma: no cover - cv2 is a runtime dependency
            raise ImportError(
                "OpenCVSource needs opencv-python-headless: pip install opencv-python-headless"
            ) from exc
        self.image_size = _check_image_size(image_size)
        self.is_device = isinstance(source, int)
        if not self.is_device:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"video file {str(path)!r} does not exist")
            self._cap = cv2.VideoCapture(str(path))
        else:
            self._cap = cv2.VideoCapture(int(source))
        if not self._cap.isOpened():
            kind = "camera device" if self.is_device else "video file"
            raise ValueError(f"{kind} {source!r} could not be opened by OpenCV")
        self.source = source
        self.loop = loop
        self._clock = clock
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps: float | None = fps if math.isfinite(fps) and fps > 0 else None
        self._offset_s = 0.0  # s of media played in earlier passes of a looped file
        self._pass_frames = 0  # frames read in the current pass
        self._last_media_s = 0.0

    def read(self) -> Frame | None:
        import cv2

        ok, bgr = self._cap.read()
        if not ok and not self.is_device and self.loop and self._pass_frames > 0:
            # rewind; the next stamp continues one frame period after the last one
            self._offset_s += self._pass_media_length()
            self._pass_frames = 0
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok:
            return None
        if self.is_device:
            stamp = self._clock()
        elif self.fps:
            # frame index over the container's rate: exact, where backends
            # disagree on whether POS_MSEC names this frame or the next
            stamp = self._offset_s + self._pass_frames / self.fps
        else:
            self._last_media_s = float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
            stamp = self._offset_s + self._last_media_s
        self._pass_frames += 1
        return Frame(to_policy_image(bgr, self.image_size), stamp)

    def _pass_media_length(self) -> float:
        """s of media in the pass just finished (including its last frame's period)."""
        if self.fps:
            return self._pass_frames / self.fps
        # no rate known: assume the last frame lasted as long as the average one
        return self._last_media_s * self._pass_frames / max(self._pass_frames - 1, 1)

    def apply(self, cmd: VelocityCommand) -> None:
        """A real camera does not move with the command."""

    def close(self) -> None:
        self._cap.release()


class SimulatorSource:
    """Frames from the simulator's onboard camera, with the commands flown in it.

    The environment is made with `gymnasium.make(env_id, **env_kwargs)` after
    `import lnn_nav.sim`, lazily, so that importing this module does not need
    the simulator (a vehicle has none). Stamps are simulated time: the
    environment's control period times the step count. An episode that ends
    is reset with the next seed.
    """

    def __init__(
        self,
        image_size: tuple[int, int],
        env_id: str = "lnn_nav/FlyToTarget-v0",
        seed: int = 0,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import gymnasium as gym

        import lnn_nav.sim  # noqa: F401  (registers the environments)

        self.image_size = _check_image_size(image_size)
        self._env = gym.make(env_id, **(env_kwargs or {}))
        self._seed = int(seed)
        self._pending_cmd = VelocityCommand.hover()
        self._obs, info = self._env.reset(seed=self._seed)
        self._limits = _env_limits(self._env)
        self._control_dt = _env_control_dt(self._env, info)
        self._t = 0.0
        self._first = True
        self.episodes = 1

    def read(self) -> Frame | None:
        if not self._first:
            action = self._limits.to_normalized(self._pending_cmd)
            self._obs, _, terminated, truncated, _ = self._env.step(action)
            self._t += _obs_dt(self._obs, self._control_dt)
            if terminated or truncated:
                self._seed += 1
                self.episodes += 1
                self._obs, _ = self._env.reset(seed=self._seed)
        self._first = False
        image = _obs_image(self._obs)
        if image.shape[:2] != self.image_size:
            import cv2

            image = cv2.resize(
                image, (self.image_size[1], self.image_size[0]), interpolation=cv2.INTER_AREA
            )
        return Frame(np.ascontiguousarray(image), self._t)

    def apply(self, cmd: VelocityCommand) -> None:
        self._pending_cmd = cmd

    def close(self) -> None:
        self._env.close()


def _obs_image(obs: Any) -> np.ndarray:
    """The camera image in an observation: the array itself, or obs['image']."""
    if isinstance(obs, dict):
        if "image" not in obs:
            raise ValueError(f"observation keys {sorted(obs)}: expected an 'image' entry")
        obs = obs["image"]
    return np.asarray(obs)


def _obs_dt(obs: Any, default: float) -> float:
    """The elapsed time the observation reports (obs['dt']), else the control period."""
    if isinstance(obs, dict) and "dt" in obs:
        return float(np.asarray(obs["dt"]).reshape(-1)[0])
    return default


def _env_limits(env: Any) -> Any:
    from lnn_nav.command import CommandLimits

    limits = getattr(env.unwrapped, "limits", None)
    if not isinstance(limits, CommandLimits):
        raise ValueError(
            f"environment {env.spec.id if env.spec else env!r} has limits={limits!r}: "
            "expected a CommandLimits to normalise commands with"
        )
    return limits


def _env_control_dt(env: Any, info: dict[str, Any]) -> float:
    u = env.unwrapped
    for value in (getattr(u, "control_dt_s", None), info.get("dt"), getattr(u, "dt", None)):
        if value is not None:
            return float(value)
    rate = env.unwrapped.metadata.get("render_fps") or 30
    return 1.0 / float(rate)


def open_camera(
    spec: str,
    image_size: tuple[int, int],
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    loop: bool = False,
) -> CameraSource:
    """A camera source from a CLI string: "sim", a device index ("0") or a video path."""
    if spec == "sim":
        return SimulatorSource(image_size, seed=seed, env_kwargs=env_kwargs)
    if spec.isdigit():
        return OpenCVSource(int(spec), image_size)
    path = Path(spec)
    if not path.exists():
        raise ValueError(
            f"--camera {spec!r}: expected 'sim', an OpenCV device index such as 0, "
            "or the path of an existing video file"
        )
    return OpenCVSource(path, image_size, loop=loop)
