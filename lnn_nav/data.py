"""Demonstrations on disk: one compressed `.npz` file per episode plus a
`manifest.json`, readable with numpy alone.

Layout of a dataset directory::

    manifest.json            schema version, what produced the data, episode list
    ep_<split>_<seed>.npz    one episode (keys in EPISODE_KEYS)

Every file is written to a temporary name and renamed into place, so a killed
collection leaves either a complete episode or nothing; running it again skips
the episodes already on disk.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnn_nav.atomic import atomic_write, atomic_write_json

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"

EPISODE_KEYS = {
    "frames": "(T, H, W, 3) uint8 RGB, the onboard camera frame seen before each command",
    "dt": "(T,) float32 s, elapsed time since the previous frame",
    "expert": "(T, 4) float32, the expert's command (label): forward, left, up m/s, yaw_rate rad/s, body FLU",
    "executed": "(T, 4) float32, the command actually flown (expert plus injected noise, or the learner's)",
    "pos_w": "(T, 3) float32 m, drone position, world ENU, at each frame",
    "yaw": "(T,) float32 rad, drone heading at each frame",
    "target_pos_w": "(T, 3) float32 m, target position, world ENU, at each frame",
    "termination": "() str, one of success, collision, out_of_bounds, timeout",
    "seed": "() int64, the scene seed",
    "family": "() str, scene family name",
    "split": "() str, split name",
}


@dataclass(frozen=True)
class Episode:
    """One recorded episode; field meanings in EPISODE_KEYS."""

    frames: np.ndarray
    dt: np.ndarray
    expert: np.ndarray
    executed: np.ndarray
    pos_w: np.ndarray
    yaw: np.ndarray
    target_pos_w: np.ndarray
    termination: str
    seed: int
    family: str
    split: str

    def __post_init__(self) -> None:
        t = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"frames: got {self.frames.dtype} {self.frames.shape}, expected uint8 (T, H, W, 3)"
            )
        expected = {
            "dt": (t,), "expert": (t, 4), "executed": (t, 4),
            "pos_w": (t, 3), "yaw": (t,), "target_pos_w": (t, 3),
        }
        for name, shape in expected.items():
            got = np.shape(getattr(self, name))
            if got != shape:
                raise ValueError(f"{name}: got shape {got}, expected {shape} for T={t} frames")

    def __len__(self) -> int:
        return len(self.frames)


def episode_filename(split: str, seed: int) -> str:
    return f"ep_{split}_{seed:07d}.npz"


def save_episode(directory: Path, ep: Episode) -> Path:
    """Write one episode atomically; returns its path."""
    path = Path(directory) / episode_filename(ep.split, ep.seed)
    arrays = {
        "frames": ep.frames,
        "dt": np.asarray(ep.dt, np.float32),
        "expert": np.asarray(ep.expert, np.float32),
        "executed": np.asarray(ep.executed, np.float32),
        "pos_w": np.asarray(ep.pos_w, np.float32),
        "yaw": np.asarray(ep.yaw, np.float32),
        "target_pos_w": np.asarray(ep.target_pos_w, np.float32),
        "termination": np.array(ep.termination),
        "seed": np.array(ep.seed, np.int64),
        "family": np.array(ep.family),
        "split": np.array(ep.split),
    }
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def load_episode(path: Path) -> Episode:
    """Read an episode file; a damaged file raises ValueError naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = set(EPISODE_KEYS) - set(z.files)
            if missing:
                raise ValueError(f"{path}: missing keys {sorted(missing)}")
            return Episode(
                frames=z["frames"], dt=z["dt"], expert=z["expert"], executed=z["executed"],
                pos_w=z["pos_w"], yaw=z["yaw"], target_pos_w=z["target_pos_w"],
                termination=str(z["termination"]), seed=int(z["seed"]),
                family=str(z["family"]), split=str(z["split"]),
            )
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable episode file ({exc})") from exc
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path}: not a readable episode file ({exc})") from exc


def episodes_on_disk(directory: Path) -> list[Path]:
    """Complete episode files in `directory`, sorted by name (temporaries excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("ep_*.npz") if not p.name.startswith("."))


def remove_partial_files(directory: Path) -> int:
    """Delete temporaries left by a killed writer; returns how many."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    stale = list(directory.glob(".*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def write_manifest(directory: Path, produced_by: dict[str, object]) -> dict[str, object]:
    """(Re)write manifest.json from the episode files present; returns it."""
    files = episodes_on_disk(directory)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "produced_by": produced_by,
        "keys": EPISODE_KEYS,
        "episodes": [p.name for p in files],
    }
    atomic_write_json(Path(directory) / MANIFEST, manifest)
    return manifest


def read_manifest(directory: Path) -> dict[str, object]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; is {directory} a dataset directory?")
    manifest = json.loads(path.read_text())
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version={version!r}, this lnn-nav reads version {SCHEMA_VERSION}"
        )
    return manifest


def load_dataset(directories: Iterable[Path]) -> list[Episode]:
    """All episodes listed by the manifests of `directories`, in manifest order."""
    episodes = []
    for d in directories:
        for name in read_manifest(d)["episodes"]:
            episodes.append(load_episode(Path(d) / name))
    return episodes
