"""From a policy to what the C generator needs: the head's `CHeadSpec`, and
golden vectors computed by torch from camera frames.

The C step covers the recurrent head only (features in, head outputs out);
the encoder runs where the camera is (companion computer or camera deck).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from lnn_nav.export.c_codegen import CHeadSpec, Golden


def _core_ltc(policy_or_head: Any) -> Any:
    from lnn_nav.models.ltc import LTC

    head = getattr(policy_or_head, "head", policy_or_head)
    core = head if isinstance(head, LTC) else getattr(head, "ltc", None)
    if not isinstance(core, LTC):
        kind = getattr(head, "kind", type(head).__name__)
        raise ValueError(
            f"head kind {kind!r}: only LTC heads export to C (the ONNX graph covers every head)"
        )
    return core


def head_spec(policy_or_head: Any, name: str = "ltc head", extra: dict[str, str] | None = None
              ) -> CHeadSpec:
    """The C spec of a policy's (or a head's) LTC.

    LTCHead feeds its features straight into the LTC's affine input map (the
    encoder ends with its own LayerNorm), so there is no input stage to add.
    """
    core = _core_ltc(policy_or_head)
    arrays = core.export_arrays()
    outputs = _flown_outputs(policy_or_head, core)
    if outputs < core.output_size:
        # Auxiliary motor neurons stay in the state (they are neurons of the
        # circuit) but their outputs, read only in training, are not exported.
        i, n, _ = (int(v) for v in np.asarray(arrays["sizes"]).reshape(3))
        arrays = {**arrays, "sizes": np.asarray([i, n, outputs], np.asarray(arrays["sizes"]).dtype),
                  "output_w": arrays["output_w"][:outputs], "output_b": arrays["output_b"][:outputs]}
    return CHeadSpec(
        arrays, (), name=name, extra=dict(extra or {}),
        output_scale=_command_scale(policy_or_head),
    )


def _flown_outputs(policy_or_head: Any, core: Any) -> int:
    """Outputs the C step returns: a policy's commands (not its auxiliary
    outputs), or every output of a bare head."""
    config = getattr(policy_or_head, "config", None)
    aux = int(getattr(config, "aux_outputs", 0) or 0)
    return int(core.output_size) - aux


def _command_scale(policy: Any) -> np.ndarray | None:
    """(O,) float32: a NavPolicy's command is tanh(head output) * command_scale
    (its limits per axis); None for a bare head."""
    scale = getattr(policy, "command_scale", None)
    if scale is None:
        return None
    return torch.as_tensor(scale).detach().float().numpy().copy()


@contextmanager
def reference_backend(module: torch.nn.Module) -> Iterator[None]:
    """Run every LTC inside `module` on its plain-PyTorch reference solver for
    the duration (the path ONNX export traces); restores the backends after."""
    from lnn_nav.models.ltc import LTC

    saved = [(m, m.backend) for m in module.modules() if isinstance(m, LTC)]
    try:
        for m, _ in saved:
            m.backend = "torch"
        yield
    finally:
        for m, b in saved:
            m.backend = b


@torch.no_grad()
def encode_frames(policy: Any, frames: np.ndarray | torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Encoder features of frames (T, H, W, 3) uint8 -> (T, I) float32, in chunks."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(
            f"frames of shape {tuple(x.shape)} dtype {x.dtype}: expected (T, H, W, 3) uint8"
        )
    feats = [policy.encoder(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    return torch.cat(feats, dim=0).float()


@torch.no_grad()
def golden_from_features(
    policy: Any, frames: np.ndarray | torch.Tensor, dt: np.ndarray | torch.Tensor
) -> Golden:
    """Golden vectors for the C head: the encoder's features of `frames`
    (T, H, W, 3) uint8, elapsed times `dt` (T,) s, and torch's head outputs
    and final state, stepping from the initial state.

    The head runs on the LTC's plain-PyTorch backend, the reference solver
    (the one ONNX export traces and the C++ kernel is tested against): the
    kernel's polynomial exp differs from libm's expf by about an ulp, which a
    calibrated head amplifies to ~1e-5 over hundreds of steps, while the C
    step and the reference agree to ~2e-6 (measured).
    """
    was_training = policy.training
    policy.eval()
    core = _core_ltc(policy)
    backend = core.backend
    core.backend = "torch"
    try:
        feats = encode_frames(policy, frames)
        dts = torch.as_tensor(dt, dtype=torch.float32).reshape(-1)
        if dts.shape[0] != feats.shape[0]:
            raise ValueError(f"{dts.shape[0]} dt values for {feats.shape[0]} frames: expected one each")
        if feats.shape[1] != core.input_size:
            raise ValueError(
                f"encoder gives {feats.shape[1]} features, the head takes {core.input_size}"
            )
        scale = _command_scale(policy)
        scale_t = None if scale is None else torch.from_numpy(scale)
        state = core.init_state(1)
        outputs = _flown_outputs(policy, core)
        outs = []
        for t in range(feats.shape[0]):
            y, state = core.step(feats[t : t + 1], state, dts[t : t + 1])
            y = y[0, :outputs]
            # the C step returns what the spec says: the command, or the raw output
            outs.append(y if scale_t is None else torch.tanh(y) * scale_t)
        return Golden(
            dts.numpy().astype(np.float32),
            feats.numpy().astype(np.float32),
            torch.stack(outs).numpy().astype(np.float32),
            state[0].numpy().astype(np.float32),
        )
    finally:
        core.backend = backend
        if was_training:
            policy.train()
