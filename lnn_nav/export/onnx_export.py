"""The whole policy step as one ONNX graph, and a runner for it.

Graph: inputs `image` (B, H, W, 3) uint8 RGB, `state` (B, S) float32,
`dt` (B, 1) float32 seconds; outputs `command` (B, 4) float32 body FLU
(forward, left, up m/s; yaw rate rad/s) and `state_next` (B, S) float32.
Normalisation of the image is inside the graph. The batch axis is dynamic.

One step per call, the state fed back by the caller: a traced sequence graph
would silently fix its length to the traced one, a single step cannot.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lnn_nav.atomic import atomic_path

INPUT_NAMES = ("image", "state", "dt")
OUTPUT_NAMES = ("command", "state_next")
OPSET = 17


class _StepGraph(nn.Module):
    """policy.step as a module with positional tensor inputs, for tracing."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy

    def forward(
        self, image: torch.Tensor, state: torch.Tensor, dt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy.step(image, state, dt)


def export_onnx(
    policy: Any, path: str | Path, image_shape: tuple[int, int, int], opset: int = OPSET
) -> Path:
    """Write `policy.step` as ONNX to `path` (atomically) and return the path.

    policy: a `StepPolicy` (e.g. `NavPolicy`); traced in eval mode on CPU.
    image_shape: (H, W, 3) of the frames the policy takes.
    """
    if len(image_shape) != 3 or image_shape[2] != 3:
        raise ValueError(f"image_shape={image_shape!r}: expected (H, W, 3)")
    path = Path(path)
    was_training = getattr(policy, "training", False)
    if isinstance(policy, nn.Module):
        policy.eval()
    graph = _StepGraph(policy)
    image = torch.zeros((1, *image_shape), dtype=torch.uint8)
    state = policy.init_state(1)
    dt = torch.full((1, 1), 1.0 / 30.0)
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is deprecated upstream, but the dynamo one
            # needs onnxscript, which this stack does not carry
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                graph,
                (image, state, dt),
                str(tmp),
                dynamo=False,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamic_axes={n: {0: "batch"} for n in (*INPUT_NAMES, *OUTPUT_NAMES)},
                do_constant_folding=True,
            )
    finally:
        if was_training and isinstance(policy, nn.Module):
            policy.train()
    return path


class OnnxStep:
    """Runs an exported step graph in onnxruntime with numpy arrays (no torch).

    step(image (B, H, W, 3) uint8, state (B, S) float32, dt (B, 1) float32 s)
    -> (command (B, 4) float32 body FLU, state_next (B, S) float32).
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError("running ONNX needs onnxruntime: pip install onnxruntime") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        names = tuple(i.name for i in self.session.get_inputs())
        if names != INPUT_NAMES:
            raise ValueError(f"{path}: graph inputs {names}, expected {INPUT_NAMES}")
        self.state_size = int(self.session.get_inputs()[1].shape[1])
        self.image_shape = tuple(int(v) for v in self.session.get_inputs()[0].shape[1:])

    def init_state(self, batch: int) -> np.ndarray:
        return np.zeros((batch, self.state_size), np.float32)

    def step(
        self, image: np.ndarray, state: np.ndarray, dt: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cmd, nxt = self.session.run(
            list(OUTPUT_NAMES),
            {
                "image": np.ascontiguousarray(image, dtype=np.uint8),
                "state": np.ascontiguousarray(state, dtype=np.float32),
                "dt": np.ascontiguousarray(dt, dtype=np.float32).reshape(-1, 1),
            },
        )
        return cmd, nxt


def write_onnx_golden(
    path: str | Path,
    images: np.ndarray,
    dt: np.ndarray,
    commands: np.ndarray,
    states: np.ndarray,
) -> None:
    """Save a short golden run for the ONNX graph (npz, atomically).

    images (T, H, W, 3) uint8; dt (T,) s; commands (T, 4); states (T, S) after
    each step, from the initial state.
    """
    import io

    from lnn_nav.atomic import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        images=np.asarray(images, np.uint8),
        dt=np.asarray(dt, np.float32),
        commands=np.asarray(commands, np.float32),
        states=np.asarray(states, np.float32),
    )
    atomic_write_bytes(path, buf.getvalue())


def check_onnx_golden(onnx_path: str | Path, golden_path: str | Path) -> float:
    """Replay a golden run through the ONNX graph; the max abs error over
    commands and states (float('inf') if anything is non-finite)."""
    runner = OnnxStep(onnx_path)
    with np.load(golden_path) as g:
        images, dt, commands, states = g["images"], g["dt"], g["commands"], g["states"]
    state = runner.init_state(1)
    err = 0.0
    for t in range(images.shape[0]):
        cmd, state = runner.step(images[t : t + 1], state, dt[t : t + 1].reshape(1, 1))
        e = max(
            float(np.max(np.abs(cmd[0] - commands[t]))),
            float(np.max(np.abs(state[0] - states[t]))),
        )
        if not np.isfinite(e):
            return float("inf")
        err = max(err, e)
    return err
