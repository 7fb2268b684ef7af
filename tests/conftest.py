"""Suite-wide settings.

One torch thread per test process: the suite is full of small tensor ops, for
which a second thread buys nothing and, on a busy 2-core machine, thread
contention made them up to hundreds of times slower. Tests that measure thread
behaviour set their own count.
"""

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from lnn_nav.data import Episode

torch.set_num_threads(1)


def spinning_episode(steps: int = 40, seed: int = 0) -> Episode:
    """Hovering at the origin, turning left at 0.1 rad per frame from yaw 0,
    with the target 5 m north (bearing +90 deg at the start)."""
    rng = np.random.default_rng(seed)
    yaw = 0.1 * np.arange(steps)
    return Episode(
        frames=rng.integers(0, 256, (steps, 64, 64, 3), dtype=np.uint8),
        dt=np.full(steps, 1 / 30, np.float32),
        expert=np.tile(np.array([0.0, 0.0, 0.0, 1.2], np.float32), (steps, 1)),
        executed=np.tile(np.array([0.0, 0.0, 0.0, 1.2], np.float32), (steps, 1)),
        pos_w=np.zeros((steps, 3), np.float32),
        yaw=yaw.astype(np.float32),
        target_pos_w=np.tile(np.array([0.0, 5.0, 1.0], np.float32), (steps, 1)),
        termination="timeout", seed=seed, family="forest", split="train",
    )


@pytest.fixture(name="spinning_episode")
def spinning_episode_factory():
    """`spinning_episode(steps=40, seed=0)`: see the function of that name."""
    return spinning_episode



def load_script(name: str) -> ModuleType:
    """Import `scripts/<name>.py`, which is not a package, as a module."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
