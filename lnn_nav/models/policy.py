"""NavPolicy: CNN encoder + recurrent head + output scaling to velocity commands.

    frames (B, T, H, W, 3) uint8 RGB  --encoder-->  features (B, T, F)
      --head (state (B, S), dt (B, T) s)-->  raw (B, T, 4)
      --tanh * CommandLimits.scale()-->  commands (B, T, 4), body FLU:
            forward, left, up [m/s], yaw_rate [rad/s], each within its limit

The policy file (`save` / `load`) is a torch zip holding the config dict,
package versions, the weights and a SHA-256 of the weights; `load` checks the
format, the digest and the architecture and raises `PolicyFileError` (a
ValueError) naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import platform
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lnn_nav.atomic import atomic_write
from lnn_nav.command import CommandLimits
from lnn_nav.models.encoder import CNNEncoder, EncoderConfig
from lnn_nav.models.heads import (
    DEFAULT_DT_S,
    HEAD_KINDS,
    HeadConfig,
    dt_sequence,
    dt_step,
    ltc_dense_count,
    make_head,
    size_head,
)

POLICY_FORMAT = "lnn_nav.policy"
POLICY_FORMAT_VERSION = 1

COMMAND_SIZE = 4
"""Commands per step: forward, left, up (m/s), yaw rate (rad/s), body FLU."""

DEFAULT_UNITS = 34
"""Neurons of the default LTC head: the paper's circuit, 18 inter, 12 command, 4 motor."""


class PolicyFileError(ValueError):
    """A policy file that cannot be loaded: missing, truncated, tampered or incompatible."""


@dataclass(frozen=True)
class PolicyConfig:
    """Architecture of a NavPolicy (weights travel separately)."""

    encoder: EncoderConfig = field(default_factory=lambda: default_encoder_config())
    """the CNN encoder; its feature_size must equal head.input_size."""
    head: HeadConfig = field(
        default_factory=lambda: HeadConfig(kind="ltc", input_size=default_encoder_config().feature_size,
                                           output_size=4, units=DEFAULT_UNITS)
    )
    """the recurrent head; output_size 4 (forward, left, up, yaw_rate)."""
    limits: CommandLimits = field(default_factory=CommandLimits)
    """bounds of the commands; outputs are tanh(raw) * limits.scale()."""
    aux_outputs: int = 0
    """head outputs after the 4 commands that only training reads (auxiliary
    targets such as the target's bearing, `lnn_nav.aux_targets`); 0 for none.
    Flight, export and the controller see the commands alone."""

    def __post_init__(self) -> None:
        for name, cls in (("encoder", EncoderConfig), ("head", HeadConfig), ("limits", CommandLimits)):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                raise ValueError(f"{name}={value!r}: expected a {cls.__name__} or its dict")
        if self.head.input_size != self.encoder.feature_size:
            raise ValueError(
                f"head.input_size={self.head.input_size} and encoder.feature_size="
                f"{self.encoder.feature_size}: they must be equal"
            )
        if isinstance(self.aux_outputs, bool) or not isinstance(self.aux_outputs, int) or self.aux_outputs < 0:
            raise ValueError(f"aux_outputs={self.aux_outputs!r}: expected an int >= 0")
        if self.head.output_size != COMMAND_SIZE + self.aux_outputs:
            raise ValueError(
                f"head.output_size={self.head.output_size}: expected {COMMAND_SIZE + self.aux_outputs} "
                f"(forward, left, up, yaw_rate, then aux_outputs={self.aux_outputs})"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder.to_dict(),
            "head": self.head.to_dict(),
            "limits": self.limits.to_dict(),
            "aux_outputs": self.aux_outputs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"PolicyConfig has no fields {unknown}; allowed: {sorted(known)}")
        return cls(**d)


def default_encoder_config(seed: int = 0) -> EncoderConfig:
    """The default encoder: 40 spatial-softmax keypoints with presence, 120 features.

    Presence (see `lnn_nav.models.encoder`) is there for targets of a few pixels
    half-hidden behind a trunk; 40 keypoints instead of 56 keep the LTC head near
    20k parameters with the extra K features."""
    return EncoderConfig(keypoints=40, presence=True, seed=seed)


def default_wiring(input_size: int | None = None, seed: int = 22222) -> Any:
    """The default head's NCP wiring: AutoNCP(F, 34 neurons, 4 motor, sparsity 0.5)."""
    from lnn_nav.models.wiring import AutoNCP

    feature_size = default_encoder_config().feature_size if input_size is None else input_size
    return AutoNCP(feature_size, DEFAULT_UNITS, 4, sparsity_level=0.5, seed=seed)


def default_policy_config(seed: int = 0, aux_outputs: int = 0,
                          encoder: EncoderConfig | None = None) -> PolicyConfig:
    """The default policy: spatial-softmax CNN with presence (120 features) +
    34-neuron NCP LTC head.

    LTC dense count 3N + 4N^2 + 4FN + 2F + 2O = 21,294 with N=34, F=120, O=4
    (the paper's head: 22,398 on 128 features). `aux_outputs` adds that many
    motor neurons (so the inter and command layers keep 18 and 12) whose
    outputs only training reads. `encoder` replaces the default encoder (the head's
    input size follows it).
    """
    enc = encoder or default_encoder_config(seed)
    return PolicyConfig(
        encoder=enc,
        head=HeadConfig(kind="ltc", input_size=enc.feature_size, output_size=COMMAND_SIZE + aux_outputs,
                        units=DEFAULT_UNITS + aux_outputs, seed=seed),
        aux_outputs=aux_outputs,
    )


def baseline_policy_config(kind: str, seed: int = 0, budget: int | None = None,
                           aux_outputs: int = 0, encoder: EncoderConfig | None = None) -> PolicyConfig:
    """A policy with the default encoder (or `encoder`) and a `kind` head sized to
    the LTC's dense count on that encoder (or `budget`), the way baselines are compared."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {HEAD_KINDS}")
    enc = encoder or default_encoder_config(seed)
    if kind == "ltc" and budget is None:
        return default_policy_config(seed, aux_outputs, enc)
    outputs = COMMAND_SIZE + aux_outputs
    target = budget if budget is not None else ltc_dense_count(
        enc.feature_size, DEFAULT_UNITS + aux_outputs, outputs)
    return PolicyConfig(encoder=enc, head=size_head(kind, enc.feature_size, outputs, target, seed),
                        aux_outputs=aux_outputs)


def package_versions() -> dict[str, str]:
    """Versions recorded in a policy file."""
    out = {"python": platform.python_version()}
    for name in ("lnn-nav", "torch", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def weights_sha256(state_dict: dict[str, Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


class NavPolicy(nn.Module):
    """Encoder + head + command scaling (see the module docstring).

    Attributes: encoder (CNNEncoder), head (a head of `lnn_nav.models.heads`),
    limits (CommandLimits), config (PolicyConfig), state_size (S).
    """

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else default_policy_config()
        if not isinstance(self.config, PolicyConfig):
            raise ValueError(f"config of type {type(self.config).__name__}: expected a PolicyConfig")
        self.encoder = CNNEncoder(self.config.encoder)
        self.head = make_head(self.config.head)
        self.limits = self.config.limits
        # A buffer, not a Python constant, so exported graphs and saved files carry it.
        self.register_buffer(
            "command_scale", torch.tensor(self.limits.scale(), dtype=torch.float32), persistent=False
        )

    @property
    def state_size(self) -> int:
        return int(self.head.state_size)

    def init_state(self, batch: int) -> Tensor:
        """(B, S) float32 zeros: the head's state before the first frame."""
        return self.head.init_state(batch)

    def _to_command(self, raw: Tensor) -> Tensor:
        return torch.tanh(raw) * self.command_scale

    def forward(
        self, frames: Tensor, state: Tensor | None = None, dt: float | Tensor = DEFAULT_DT_S
    ) -> tuple[Tensor, Tensor]:
        """frames: (B, T, H, W, 3) uint8; state: (B, S) or None; dt: (B, T), (B,) or float s.

        Returns commands (B, T, 4) body FLU [m/s, m/s, m/s, rad/s] and state_T (B, S).
        """
        commands, _, state_t = self.forward_with_aux(frames, state, dt)
        return commands, state_t

    def forward_with_aux(
        self, frames: Tensor, state: Tensor | None = None, dt: float | Tensor = DEFAULT_DT_S
    ) -> tuple[Tensor, Tensor, Tensor]:
        """As `forward`, plus the raw auxiliary outputs (B, T, aux_outputs) in the middle."""
        if not isinstance(frames, Tensor) or frames.dim() != 5:
            shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ValueError(f"frames of shape {shape}: expected (B, T, H, W, 3) uint8")
        b, t = frames.shape[0], frames.shape[1]
        feats = self.encoder(frames.reshape(b * t, *frames.shape[2:])).reshape(b, t, -1)
        raw, state_t = self.head(feats, state, dt_sequence(dt, b, t, feats))
        return self._to_command(raw[..., :COMMAND_SIZE]), raw[..., COMMAND_SIZE:], state_t

    def step(self, image: Tensor, state: Tensor, dt: float | Tensor = DEFAULT_DT_S) -> tuple[Tensor, Tensor]:
        """image: (B, H, W, 3) uint8; state: (B, S); dt: (B,), (B, 1) or float s.

        Returns command (B, 4) body FLU [m/s, m/s, m/s, rad/s] and the next state (B, S).
        Traceable: no data-dependent Python control flow.
        """
        feats = self.encoder(image)
        raw, new_state = self.head.step(feats, state, dt_step(dt, feats.shape[0], feats))
        if self.config.aux_outputs:
            raw = raw[..., :COMMAND_SIZE]
        return self._to_command(raw), new_state

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups: the encoder at `base_lr`, then the head's own groups
        (the LTC head scales its rates per parameter, see `LTCTrainability.lr_scale`)."""
        enc = [p for p in self.encoder.parameters() if p.requires_grad]
        return [{"params": enc, "lr": base_lr, "name": "encoder"}, *self.head.param_groups(base_lr)]

    def param_count(self) -> dict[str, Any]:
        """{"encoder": int, "head": {"effective", "dense"}, "total_effective", "total_dense"}."""
        enc = self.encoder.param_count()
        head = self.head.param_count()
        return {"encoder": enc, "head": head,
                "total_effective": enc + head["effective"], "total_dense": enc + head["dense"]}

    def describe(self) -> str:
        """A few lines on the architecture and its parameter counts."""
        counts = self.param_count()
        enc, head = self.config.encoder, self.config.head
        lines = [
            (
                f"encoder: CNN {enc.image_size[0]}x{enc.image_size[1]} RGB uint8 "
                f"({math.degrees(enc.hfov_rad):.0f} x {math.degrees(enc.vfov_rad):.0f} deg field of view), channels "
                f"{list(enc.channels)}, {enc.keypoints} keypoints, {enc.pooling}"
                f"{' + presence' if enc.presence else ''}{' + spread' if enc.spread else ''} -> "
                f"{enc.feature_size} features, {counts['encoder']:,} parameters"
            ),
        ]
        if head.kind in ("ltc", "cfc"):
            wiring = head.wiring()
            sizes = {kind: len(ids) for kind, ids in wiring.layers}
            lines.append(
                f"head: {head.kind.upper()}-NCP, {head.units} neurons (inter {sizes.get('inter', 0)}, "
                f"command {sizes.get('command', 0)}, motor {sizes.get('motor', 0)}), "
                f"{wiring.num_sensory_synapses} sensory + {wiring.num_synapses} recurrent synapses"
                + (f", {head.ode_unfolds} ODE unfolds" if head.kind == "ltc" else "")
            )
        else:
            lines.append(f"head: {head.kind.upper()}, {head.units} hidden units")
        lines.append(
            f"head parameters: {counts['head']['dense']:,} dense (as ncps counts), "
            f"{counts['head']['effective']:,} effective (trainable, unmasked)"
        )
        lim = self.limits
        lines.append(
            f"output: tanh x limits -> forward/left +-{lim.max_horizontal} m/s, up "
            f"+-{lim.max_vertical} m/s, yaw rate +-{lim.max_yaw_rate} rad/s (body FLU)"
        )
        return "\n".join(lines)

    # ----------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the policy to `path` atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}
        payload = {
            "format": POLICY_FORMAT,
            "format_version": POLICY_FORMAT_VERSION,
            "config": self.config.to_dict(),
            "versions": package_versions(),
            "weights_sha256": weights_sha256(state),
            "state_dict": state,
        }
        atomic_write(path, lambda fh: torch.save(payload, fh))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NavPolicy:
        """Read a policy written by `save`; raise PolicyFileError naming `path` and the fault."""
        path = Path(path)
        if not path.is_file():
            raise PolicyFileError(f"{path}: no such policy file")
        data = path.read_bytes()
        try:
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a damaged zip/pickle
            raise PolicyFileError(
                f"{path}: truncated or corrupt policy file ({len(data)} bytes): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(payload, dict) or payload.get("format") != POLICY_FORMAT:
            raise PolicyFileError(f"{path}: not an lnn_nav policy file (format field missing)")
        if payload.get("format_version") != POLICY_FORMAT_VERSION:
            raise PolicyFileError(
                f"{path}: policy format version {payload.get('format_version')!r}, "
                f"this lnn_nav reads {POLICY_FORMAT_VERSION}"
            )
        missing = [k for k in ("config", "weights_sha256", "state_dict") if k not in payload]
        if missing:
            raise PolicyFileError(f"{path}: policy file lacks {missing}")
        state = payload["state_dict"]
        digest = weights_sha256(state)
        if digest != payload["weights_sha256"]:
            raise PolicyFileError(
                f"{path}: weights SHA-256 mismatch (stored {payload['weights_sha256'][:16]}..., "
                f"computed {digest[:16]}...): the file was modified or damaged"
            )
        try:
            config = PolicyConfig.from_dict(payload["config"])
        except (ValueError, TypeError) as exc:
            raise PolicyFileError(f"{path}: invalid policy config: {exc}") from exc
        policy = cls(config)
        try:
            policy.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise PolicyFileError(f"{path}: weights do not fit the stored config: {exc}") from exc
        policy.eval()
        return policy

    @staticmethod
    def file_info(path: str | os.PathLike[str]) -> dict[str, Any]:
        """The config, versions and digest stored in a policy file (weights verified)."""
        policy_path = Path(path)
        payload = torch.load(io.BytesIO(policy_path.read_bytes()), map_location="cpu", weights_only=True)
        return {k: payload[k] for k in ("config", "versions", "weights_sha256") if k in payload}


def random_frames(batch: int, steps: int, config: EncoderConfig, seed: int = 0) -> Tensor:
    """(B, T, H, W, 3) uint8 noise frames from a seeded generator (for shape checks and benches)."""
    rng = np.random.default_rng(seed)
    h, w = config.image_size
    return torch.from_numpy(rng.integers(0, 256, size=(batch, steps, h, w, 3), dtype=np.uint8))
