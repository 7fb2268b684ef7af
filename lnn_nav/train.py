"""Sequence behaviour cloning with truncated back-propagation through time.

The learner sees windows of `burn_in + window` consecutive frames: the first
`burn_in` steps only warm the recurrent state (no loss, and no gradient: they
run under `torch.no_grad`, so a long burn-in costs a forward pass, not a
backward one), the loss is the mean-squared error of the next `window`
commands, normalised by the command limits so every axis weighs the same.
Windows that begin near the start of an episode start from the true zero state
and carry the gradient from their first frame. The real dt of every frame is
fed to the head.

Each step's batch (windows and augmentation) is drawn from a generator seeded
by (seed, phase, step), on a thread one step ahead of the optimiser. A run
directory holds `checkpoint.pt` (model, optimiser, step and torch RNG state,
written atomically every `checkpoint_every` steps), `metrics.csv`,
TensorBoard events when tensorboard is installed, and `policy.pt` at the end.
`resume=True` continues from the checkpoint and ends with the same weights as
an uninterrupted run of the same seed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from lnn_nav.atomic import atomic_write, atomic_write_json
from lnn_nav.augment import AugmentConfig, augment_window
from lnn_nav.aux_targets import BEARING_OUTPUTS, target_bearing
from lnn_nav.data import Episode
from lnn_nav.expert import ExpertConfig
from lnn_nav.models.encoder import EncoderConfig
from lnn_nav.models.heads import LTCTrainability
from lnn_nav.rollout import NoiseConfig, policy_camera
from lnn_nav.sim.camera import CameraConfig

CONV_PRECISIONS = ("auto", "float32", "bfloat16")


def conv_autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype for BCConfig.conv_precision, None meaning plain float32."""
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if precision == "auto":
        native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return torch.bfloat16 if native else None
    raise ValueError(f"conv precision {precision!r}: expected one of {CONV_PRECISIONS}")


COMMAND_LOSSES = ("mse", "l1")


def per_command_losses(loss: str | Sequence[str]) -> tuple[str, ...]:
    """`BCConfig.loss` as one loss name per command."""
    return (loss,) * 4 if isinstance(loss, str) else tuple(loss)


@dataclass(frozen=True)
class BCConfig:
    """Knobs of one behaviour-cloning phase."""

    steps: int = 2800
    """Optimiser steps."""
    batch_size: int = 12
    """Windows per batch."""
    window: int = 32
    """Steps per window that carry a loss (truncated BPTT length)."""
    burn_in: int = 48
    """Steps before each window that only warm up the recurrent state (without
    gradient). The closed loop needs seconds of context: a policy trained with
    8 steps (0.27 s) stopped its search turns after 1-4 s and crept forward."""
    lr: float | None = None
    """Base learning rate; None takes the head's default."""
    lr_min_fraction: float = 0.05
    """The cosine schedule decays the learning rate to this fraction of the base."""
    warmup_steps: int = 50
    """Linear learning-rate warm-up at the start of the phase."""
    grad_clip: float = 1.0
    """Max global gradient norm."""
    val_every: int = 250
    """Steps between validation passes."""
    val_windows: int = 64
    """Windows per validation pass (a fixed set drawn once)."""
    checkpoint_every: int = 100
    """Steps between atomic checkpoints."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Image augmentation, drawn per window."""
    command_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    """Training-loss weight of each command (forward, left, up, yaw rate) in limit
    units, normalised to mean 1. Equal by default: weighting the sideways
    velocity 3x (its variance in the demonstrations is a tenth of the forward
    velocity's, and the policy explains only about 30% of it on held-out
    episodes) left that 30% unchanged, cost the other commands accuracy, and
    flew worse (81.0% against 87.0% on 200 forest/unseen scenes). Validation
    stays the plain mean, so validation losses compare across weightings."""
    ema_decay: float = 0.0
    """Decay of an exponential moving average of the weights, updated after every
    optimiser step (0 = off). When on, the phase ends with the averaged weights
    (they are what is validated at the end, saved, flown in the next DAgger round
    and trained on in the next phase); the checkpoint keeps both."""
    aux_bearing_weight: float = 0.0
    """Weight of an auxiliary loss (0 = off): two extra head outputs (motor
    neurons, for the LTC-NCP) learn the target's body-frame bearing from the
    privileged state, on every frame after the target first entered the
    field of view (`lnn_nav.aux_targets`), so the head's state has to hold a
    sighting and follow the turns made since. The mean-squared error of the
    (sin, cos) pair is added to the command loss times this weight.
    Validation stays the command loss alone. The policy is built with the two
    outputs when this is > 0; flight and export read the commands only."""
    loss: str | tuple[str, str, str, str] = "mse"
    """Training loss of the commands, one for all or one per command (forward,
    left, up, yaw rate): "mse" (squared error: the mean of what the expert does
    in states that look alike) or "l1" (absolute error: the median).
    Where the labels of similar-looking states split into two modes (spin on the
    spot to search, or fly on; turn left or right round a trunk) the mean is a
    command neither mode gives, a slow creep with half a turn, and the median is
    the larger mode. Validation stays the squared error, so validation losses
    compare across losses. Measured (200 forest/unseen scenes, seed 0; the
    defaults 87.0%, 6.5% collision, 6.5% timeout): "l1" 76.5% with 4.0%
    collisions and 19.5% timeouts (the median ignores a brief sighting and the
    search spins past the target), [l1, l1, l1, mse] 76.5% (18.5% timeouts),
    [mse, mse, mse, l1] 85.0% with 4.0% collisions and 11.0% timeouts (seed 1:
    88.0%, 5.5% and 6.5%; seed 2: 82.0%, 7.5% and 10.5%: the defaults' spread)."""
    label_balance: float = 0.0
    """Exponent of the label-density weighting of each frame's loss (0 = off,
    every frame weighs the same). Each frame weighs density**-label_balance,
    where density is the share of the training frames whose expert command
    falls in the same cell of a 4-D histogram (`LABEL_BINS` bins per command
    over the limits), normalised to mean 1 over the frames and capped at
    `label_balance_cap` times that mean. Spinning searches and cruising make
    most of the demonstrations; braking and side-stepping near a trunk are rare,
    so an unweighted loss spends most of its effort on the common commands
    (inverse-frequency weighting of imbalanced regression; 0.5 is the inverse
    square root). Validation stays unweighted. Measured (200 forest/unseen
    scenes, seed 0): 0.5 flew 85.0% with 2.5% timeouts and 12.5% collisions
    (the searches it downweights turned into creeping half-searches), 0.25
    86.5%; the defaults 87.0%. Off by default."""
    label_balance_cap: float = 10.0
    """Largest label-density weight, as a multiple of the mean weight."""
    conv_precision: str = "auto"
    """Precision of the encoder's convolutions in training steps: "float32",
    "bfloat16" (CPU autocast; the weights, keypoints, normalisation, head and
    validation stay float32), or "auto": bfloat16 where the CPU computes it
    natively (oneDNN reports bf16 support), else float32. The convolutions are
    most of a step's time, and bfloat16 makes them 2-3x faster on such a CPU."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "window", "val_every", "val_windows", "checkpoint_every"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"BCConfig.{name}={v!r}: expected an integer > 0")
        for name in ("burn_in", "warmup_steps"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 0):
                raise ValueError(f"BCConfig.{name}={v!r}: expected an integer >= 0")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"BCConfig.lr={self.lr!r}: expected None or a finite value > 0")
        if not 0 < self.lr_min_fraction <= 1:
            raise ValueError(f"BCConfig.lr_min_fraction={self.lr_min_fraction}: expected (0, 1]")
        if not (isinstance(self.ema_decay, (int, float)) and 0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"BCConfig.ema_decay={self.ema_decay!r}: expected a value in [0, 1)")
        a = self.aux_bearing_weight
        if isinstance(a, bool) or not (isinstance(a, (int, float)) and math.isfinite(a) and a >= 0):
            raise ValueError(f"BCConfig.aux_bearing_weight={a!r}: expected a finite weight >= 0")
        b = self.label_balance
        if isinstance(b, bool) or not (isinstance(b, (int, float)) and math.isfinite(b) and 0 <= b <= 1):
            raise ValueError(f"BCConfig.label_balance={b!r}: expected an exponent in [0, 1]")
        c = self.label_balance_cap
        if isinstance(c, bool) or not (isinstance(c, (int, float)) and math.isfinite(c) and c >= 1):
            raise ValueError(f"BCConfig.label_balance_cap={c!r}: expected a finite value >= 1")
        losses = per_command_losses(self.loss) if isinstance(self.loss, (str, tuple, list)) else ()
        if len(losses) != 4 or any(x not in COMMAND_LOSSES for x in losses):
            raise ValueError(f"BCConfig.loss={self.loss!r}: expected one of {COMMAND_LOSSES}, "
                             "or a list of 4 of them (forward, left, up, yaw rate)")
        if not isinstance(self.loss, str):
            object.__setattr__(self, "loss", losses)
        if not self.grad_clip > 0:
            raise ValueError(f"BCConfig.grad_clip={self.grad_clip}: expected a value > 0")
        w = self.command_weights
        if not (isinstance(w, (tuple, list)) and len(w) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                        and math.isfinite(v) and v >= 0 for v in w) and sum(w) > 0):
            raise ValueError(f"BCConfig.command_weights={w!r}: expected 4 finite weights >= 0, "
                             "not all 0 (forward, left, up, yaw rate)")
        object.__setattr__(self, "command_weights", tuple(float(v) for v in w))
        if self.conv_precision not in CONV_PRECISIONS:
            raise ValueError(f"BCConfig.conv_precision={self.conv_precision!r}: expected one of {CONV_PRECISIONS}")

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        d["command_weights"] = list(self.command_weights)
        if isinstance(self.loss, tuple):
            d["loss"] = list(self.loss)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> BCConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown BC keys {sorted(unknown)}; expected some of {sorted(known)}")
        d = dict(d)
        if "augment" in d:
            d["augment"] = AugmentConfig.from_dict(d["augment"])  # type: ignore[arg-type]
        return cls(**d)  # type: ignore[arg-type]


LABEL_BINS = 8
"""Bins per command axis of the label-density histogram (`BCConfig.label_balance`)."""


def label_balance_weights(labels: list[np.ndarray], exponent: float, cap: float) -> list[np.ndarray]:
    """Per-frame loss weights, one array per episode, from the episodes' labels
    ((T, 4) commands in limit units): density**-exponent of each frame's cell in
    a joint histogram of the labels, normalised to mean 1 over all frames and
    capped at `cap` (then normalised again)."""
    if not labels:
        return []
    flat = np.clip(np.concatenate(labels), -1.0, 1.0)
    cells = np.minimum(((flat + 1.0) * 0.5 * LABEL_BINS).astype(np.int64), LABEL_BINS - 1)
    key = np.ravel_multi_index(cells.T, (LABEL_BINS,) * flat.shape[1])
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    w = (counts[inverse] / len(key)) ** -exponent
    w /= w.mean()
    w = np.minimum(w, cap)
    w /= w.mean()
    return np.split(w.astype(np.float32), np.cumsum([len(x) for x in labels])[:-1])


class Batch(NamedTuple):
    """frames: (B, T, H, W, 3) uint8; dt: (B, T) s; target: (B, T, 4) commands in
    limit units (-1..1); weight: (B, T) > 0 where the step carries loss (1, or
    its label-density weight), else 0."""

    frames: torch.Tensor
    dt: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor
    no_grad_steps: torch.Tensor
    """(B,) int: leading steps that only warm the state (the burn-in, or 0 for
    a window that starts at the start of its episode)."""
    aux: torch.Tensor
    """(B, T, 2) the target's bearing (sin, cos), zeros unless
    `BCConfig.aux_bearing_weight` > 0."""
    aux_mask: torch.Tensor
    """(B, T) 1 where the bearing is a target (the target has been in view)."""


class WindowSampler:
    """Draws training windows from in-memory episodes.

    Every window spans `burn_in + window` steps; windows that start near the
    beginning of an episode start from the true initial state (zero burn-in
    needed), so the start of flight, where the search happens, is covered.
    """

    def __init__(self, episodes: list[Episode], cfg: BCConfig, command_scale: np.ndarray,
                 hfov_rad: float = CameraConfig().hfov_rad, balance: bool = True):
        if not episodes:
            raise ValueError("no episodes to train on: expected at least one demonstration")
        self.episodes = episodes
        self.cfg = cfg
        self.span = cfg.burn_in + cfg.window
        self.scale = np.asarray(command_scale, np.float32)
        self.bearings = None
        if cfg.aux_bearing_weight > 0:
            self.bearings = [target_bearing(e, hfov_rad) for e in episodes]
        self.frame_weights = None
        if balance and cfg.label_balance > 0:
            self.frame_weights = label_balance_weights(
                [e.expert / self.scale for e in episodes], cfg.label_balance, cfg.label_balance_cap)
        lengths = np.array([len(e) for e in episodes])
        # Each valid start position of each episode is equally likely.
        self.starts_per_episode = np.maximum(lengths - cfg.window, 1)
        self.cum = np.cumsum(self.starts_per_episode)

    def draw(self, rng: np.random.Generator, batch_size: int, augment: bool) -> Batch:
        span, burn = self.span, self.cfg.burn_in
        h, w = self.episodes[0].frames.shape[1:3]
        frames = np.zeros((batch_size, span, h, w, 3), np.uint8)
        dt = np.full((batch_size, span), 1.0 / 30.0, np.float32)
        target = np.zeros((batch_size, span, 4), np.float32)
        weight = np.zeros((batch_size, span), np.float32)
        no_grad = np.zeros(batch_size, np.int64)
        aux = np.zeros((batch_size, span, BEARING_OUTPUTS), np.float32)
        aux_mask = np.zeros((batch_size, span), np.float32)
        for b in range(batch_size):
            k = int(rng.integers(self.cum[-1]))
            i = int(np.searchsorted(self.cum, k, side="right"))
            ep = self.episodes[i]
            loss_start = k - (self.cum[i - 1] if i else 0)
            begin = max(0, loss_start - burn)
            end = min(len(ep), loss_start + self.cfg.window)
            n = end - begin
            # Left-aligned: a window that starts at the episode start begins
            # from the true zero state; padding after the end carries no loss.
            clip = ep.frames[begin:end]
            frames[b, :n] = augment_window(clip, self.cfg.augment, rng) if augment else clip
            frames[b, n:] = frames[b, n - 1]
            dt[b, :n] = ep.dt[begin:end]
            target[b, :n] = ep.expert[begin:end] / self.scale
            weight[b, loss_start - begin : n] = (
                1.0 if self.frame_weights is None else self.frame_weights[i][loss_start:end])
            no_grad[b] = burn if loss_start - begin == burn else 0
            if self.bearings is not None:
                labels, mask = self.bearings[i]
                aux[b, :n] = labels[begin:end]
                aux_mask[b, :n] = mask[begin:end]
        return Batch(
            torch.from_numpy(frames), torch.from_numpy(dt),
            torch.from_numpy(np.clip(target, -1, 1)), torch.from_numpy(weight),
            torch.from_numpy(no_grad), torch.from_numpy(aux), torch.from_numpy(aux_mask),
        )


class MixedSampler:
    """Draws a fixed share of each batch from a second pool of episodes (the
    learner's own rollouts in DAgger) and the rest from the first."""

    def __init__(self, base: WindowSampler, extra: WindowSampler, extra_fraction: float):
        if not 0.0 < extra_fraction < 1.0:
            raise ValueError(f"extra_fraction={extra_fraction!r}: expected a value in (0, 1)")
        self.base, self.extra, self.extra_fraction = base, extra, extra_fraction

    def draw(self, rng: np.random.Generator, batch_size: int, augment: bool) -> Batch:
        n_extra = min(batch_size - 1, max(1, round(self.extra_fraction * batch_size)))
        a = self.base.draw(rng, batch_size - n_extra, augment)
        b = self.extra.draw(rng, n_extra, augment)
        return Batch(*(torch.cat([x, y]) for x, y in zip(a, b)))


def sequence_loss(policy: torch.nn.Module, batch: Batch,
                  command_weights: Sequence[float] | None = None,
                  aux_weight: float = 0.0, loss: str | Sequence[str] = "mse") -> torch.Tensor:
    """Weighted mean squared (loss "mse") or absolute ("l1") error of the
    policy's commands in limit units, from a zero state
    (burn-in and padding steps have weight 0). Windows with a burn-in warm their
    state without gradient; the others run with gradient from their first step.
    command_weights: (4,) weight of each command, normalised to mean 1 (None:
    the plain mean over commands). aux_weight > 0 adds that times the MSE of
    the policy's auxiliary outputs against `batch.aux` where `batch.aux_mask`
    (and the loss weight) is 1."""
    scale = torch.as_tensor(policy.limits.scale(), dtype=torch.float32)
    l1 = torch.as_tensor([x == "l1" for x in per_command_losses(loss)])
    cw = torch.ones(4) if command_weights is None else torch.as_tensor(command_weights, dtype=torch.float32)
    cw = cw * (4.0 / cw.sum())
    total = torch.zeros(())
    weight_sum = torch.zeros(())
    aux_total = torch.zeros(())
    aux_sum = torch.zeros(())
    for k in torch.unique(batch.no_grad_steps).tolist():
        rows = batch.no_grad_steps == k
        frames, dt = batch.frames[rows], batch.dt[rows]
        state = None
        if k > 0:
            with torch.no_grad():
                _, state = policy(frames[:, :k], None, dt[:, :k])
        w = batch.weight[rows][:, k:].unsqueeze(-1)
        if aux_weight > 0:
            commands, aux, _ = policy.forward_with_aux(frames[:, k:], state, dt[:, k:])
            aux_w = w * batch.aux_mask[rows][:, k:].unsqueeze(-1)
            aux_total = aux_total + ((aux - batch.aux[rows][:, k:]) ** 2 * aux_w).sum()
            aux_sum = aux_sum + aux_w.sum() * aux.shape[-1]
        else:
            commands, _ = policy(frames[:, k:], state, dt[:, k:])
        diff = commands / scale - batch.target[rows][:, k:]
        err = torch.where(l1, diff.abs(), diff**2) * cw
        total = total + (err * w).sum()
        weight_sum = weight_sum + w.sum()
    loss = total / (weight_sum * 4).clamp_min(1.0)
    if aux_weight > 0:
        loss = loss + aux_weight * aux_total / aux_sum.clamp_min(1.0)
    return loss


def lr_at(step: int, cfg: BCConfig) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr_min_fraction + (1 - cfg.lr_min_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


class WeightAverage:
    """Exponential moving average of a module's floating-point state, with the usual
    warm-up (the decay of update n is min(decay, (1 + n) / (10 + n))), so the first
    updates do not drag the average back toward the initial weights."""

    def __init__(self, module: torch.nn.Module, decay: float, updates: int = 0,
                 average: dict[str, torch.Tensor] | None = None):
        self.decay, self.updates = decay, updates
        current = module.state_dict()
        self.average = ({k: v.detach().clone() for k, v in current.items()} if average is None
                        else {k: v.clone() for k, v in average.items()})

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                self.average[k].lerp_(v.detach(), 1.0 - d)
            else:
                self.average[k].copy_(v)
        self.updates += 1

    def state(self) -> dict[str, object]:
        return {"updates": self.updates, "average": self.average}


def _save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


class MetricsLog:
    """metrics.csv (rows past a resumed step are dropped) plus TensorBoard if available."""

    COLUMNS = ("phase", "step", "loss", "val_loss", "lr", "grad_norm", "windows_per_s")

    def __init__(self, run_dir: Path, resume_phase: str | None, resume_step: int):
        self.path = run_dir / "metrics.csv"
        rows = []
        if self.path.exists() and resume_phase is not None:
            with self.path.open() as f:
                for row in csv.DictReader(f):
                    if row["phase"] == resume_phase and int(row["step"]) > resume_step:
                        continue
                    rows.append(row)
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            pass

    def write(self, **row: object) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.COLUMNS).writerow(row)
        if self.tb is not None:
            gstep = int(row["step"])  # type: ignore[arg-type]
            for k in ("loss", "val_loss", "lr", "grad_norm", "windows_per_s"):
                v = row.get(k)
                if v not in (None, ""):
                    self.tb.add_scalar(f"{row['phase']}/{k}", float(v), gstep)  # type: ignore[arg-type]
            self.tb.flush()


def train_bc(
    policy: torch.nn.Module,
    train_episodes: list[Episode],
    val_episodes: list[Episode],
    cfg: BCConfig,
    run_dir: Path,
    phase: str,
    seed: int,
    base_lr: float,
    resume: bool = False,
    progress: bool = True,
    on_policy_episodes: list[Episode] | None = None,
    on_policy_fraction: float = 0.0,
) -> dict[str, float | str]:
    """Train `policy` in place for one phase; returns the final train and validation
    loss and the convolutions' training precision.

    `phase` names the phase in checkpoints and metrics (e.g. "bc", "dagger1"),
    so a resumed multi-phase run knows which phases are finished.
    `on_policy_episodes` (the learner's DAgger rollouts) are pooled with
    `train_episodes`, or, with `on_policy_fraction` in (0, 1), drawn for that
    share of every batch.
    """
    from tqdm import tqdm

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / f"checkpoint_{phase}.pt"
    scale = policy.limits.scale()
    hfov = policy.config.encoder.hfov_rad
    on_policy = list(on_policy_episodes or [])
    sampler: WindowSampler | MixedSampler
    if on_policy and on_policy_fraction > 0:
        sampler = MixedSampler(WindowSampler(train_episodes, cfg, scale, hfov),
                               WindowSampler(on_policy, cfg, scale, hfov), on_policy_fraction)
    else:
        sampler = WindowSampler(train_episodes + on_policy, cfg, scale, hfov)
    val_sampler = WindowSampler(val_episodes or train_episodes, cfg, scale, hfov, balance=False)
    val_batch = val_sampler.draw(np.random.default_rng(seed + 1_000_003), cfg.val_windows, augment=False)

    if cfg.lr is not None:
        base_lr = cfg.lr
    optimizer = torch.optim.Adam(policy.param_groups(base_lr))
    group_lrs = [g["lr"] for g in optimizer.param_groups]
    phase_key = sum(map(ord, phase))

    def draw(step: int) -> Batch:
        # Each step's batch is a function of (seed, phase, step) alone, so it can
        # be drawn ahead on another thread and a resumed run draws the same ones.
        return sampler.draw(np.random.default_rng([seed, phase_key, step]), cfg.batch_size, augment=True)

    gen_state = None
    start = 0
    ema_state = None
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        policy.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        gen_state = ck["torch_rng"]
        start = ck["step"]
        ema_state = ck.get("ema")
    ema = None
    if cfg.ema_decay > 0:
        ema = (WeightAverage(policy, cfg.ema_decay) if ema_state is None else
               WeightAverage(policy, cfg.ema_decay, ema_state["updates"], ema_state["average"]))
    if gen_state is not None:
        torch.set_rng_state(gen_state)
    log = MetricsLog(run_dir, phase if resume else None, start)

    train_conv_dtype = conv_autocast_dtype(cfg.conv_precision)

    def validate() -> float:
        # In the precision closed-loop flight uses.
        policy.eval()
        precision, policy.encoder.conv_autocast = policy.encoder.conv_autocast, None
        with torch.no_grad():
            v = float(sequence_loss(policy, val_batch))
        policy.encoder.conv_autocast = precision
        policy.train()
        return v

    val_loss = float("nan")
    loss_value = float("nan")
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=phase, disable=not progress)
    policy.train()
    t_last = time.perf_counter()
    # Drawing and augmenting a batch is numpy work that mostly releases the GIL;
    # drawing the next batch on a thread while this one trains overlaps the two.
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="draw-batch")
    pending = prefetch.submit(draw, start) if start < cfg.steps else None
    policy.encoder.conv_autocast = train_conv_dtype
    try:
        for step in bar:
            batch = pending.result()
            if step + 1 < cfg.steps:
                pending = prefetch.submit(draw, step + 1)
            for g, lr0 in zip(optimizer.param_groups, group_lrs):
                g["lr"] = lr0 * lr_at(step, cfg)
            loss = sequence_loss(policy, batch, cfg.command_weights, cfg.aux_bearing_weight, cfg.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip))
            optimizer.step()
            if ema is not None:
                ema.update(policy)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"{phase} step {step}: loss became {loss_value}")
            done = step + 1
            row: dict[str, object] = {"phase": phase, "step": done, "loss": f"{loss_value:.6f}",
                                      "lr": f"{optimizer.param_groups[0]['lr']:.3e}",
                                      "grad_norm": f"{grad_norm:.4f}", "val_loss": "", "windows_per_s": ""}
            if done % cfg.val_every == 0 or done == cfg.steps:
                val_loss = validate()
                row["val_loss"] = f"{val_loss:.6f}"
            if done % 20 == 0:
                now = time.perf_counter()
                row["windows_per_s"] = f"{20 * cfg.batch_size / (now - t_last):.1f}"
                t_last = now
            log.write(**row)
            bar.set_postfix(loss=f"{loss_value:.4f}", val=f"{val_loss:.4f}")
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                _save_checkpoint(ckpt_path, {
                    "step": done, "model": policy.state_dict(), "optimizer": optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    **({"ema": ema.state()} if ema is not None else {}),
                })
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
        policy.encoder.conv_autocast = None
    if ema is not None:
        policy.load_state_dict(ema.average)
    if start >= cfg.steps or ema is not None:
        val_loss = validate()
    precision = "float32" if train_conv_dtype is None else "bfloat16"
    return {"loss": loss_value, "val_loss": val_loss, "conv_precision": precision}


# ----------------------------------------------------------------------------- the full run

DEFAULT_LR = {"ltc": 3e-3, "cfc": 3e-3, "lstm": 3e-3, "gru": 3e-3, "mlp": 3e-3}
"""Base Adam learning rate per head kind (the LTC head scales some of its own
parameter groups relative to it, see `LTCHead.param_groups`)."""


@dataclass(frozen=True)
class DaggerConfig:
    """DAgger: fly the learner, label what it sees with the expert, aggregate, retrain."""

    rounds: int = 3
    """Rounds after the behaviour-cloning phase (0 = behaviour cloning only)."""
    episodes_per_round: int = 60
    """Learner rollouts per round."""
    beta0: float = 0.3
    """Probability that the expert flies a step in round 1."""
    beta_decay: float = 0.5
    """beta of round r is beta0 * beta_decay ** (r - 1)."""
    steps_per_round: int = 300
    """Optimiser steps of retraining after each round (warm-started)."""
    lr_scale: float = 0.3
    """Retraining learning rate as a fraction of the behaviour-cloning one. The
    rounds fine-tune a trained policy: at the full rate the validation loss rose
    after every round (0.016 to 0.029 in the LTC run of session 1)."""
    warmup_steps: int = 20
    """Linear learning-rate warm-up of each round (its Adam moments start afresh)."""
    on_policy_fraction: float = 0.0
    """Share of each retraining batch drawn from the learner's rollouts (all rounds
    so far), the rest from the demonstrations; 0 (the default) pools them and draws
    in proportion to frames (the rollouts then make about a tenth of a batch). A
    half measured worse: 81% against 90% on forest/unseen with the same
    behaviour-cloning phase (README, "what training reaches")."""

    def __post_init__(self) -> None:
        for name in ("rounds",):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 0):
                raise ValueError(f"DaggerConfig.{name}={v!r}: expected an integer >= 0")
        for name in ("episodes_per_round", "steps_per_round"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"DaggerConfig.{name}={v!r}: expected an integer > 0")
        for name in ("beta0", "beta_decay"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"DaggerConfig.{name}={v!r}: expected a value in [0, 1]")
        if not (isinstance(self.lr_scale, (int, float)) and 0.0 < self.lr_scale <= 1.0):
            raise ValueError(f"DaggerConfig.lr_scale={self.lr_scale!r}: expected a value in (0, 1]")
        if not (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0):
            raise ValueError(f"DaggerConfig.warmup_steps={self.warmup_steps!r}: expected an integer >= 0")
        if not (isinstance(self.on_policy_fraction, (int, float)) and 0.0 <= self.on_policy_fraction < 1.0):
            raise ValueError(f"DaggerConfig.on_policy_fraction={self.on_policy_fraction!r}: expected a value in [0, 1)")

    def beta(self, round_index: int) -> float:
        """round_index counts from 1."""
        return self.beta0 * self.beta_decay ** (round_index - 1)


@dataclass(frozen=True)
class TrainConfig:
    """Everything `lnn-nav train` needs; loaded from YAML, every key optional."""

    head: str = "ltc"
    """Head kind: ltc, cfc, lstm, gru or mlp (baselines sized to the LTC's dense count)."""
    seed: int = 0
    """Seeds the model initialisation, batch sampling, augmentation and rollouts."""
    family: str = "forest"
    """Scene family flown for demonstrations and DAgger (name or YAML path)."""
    demo_episodes: int = 700
    """Expert demonstrations from the `train` split (scene indices 0..n-1)."""
    demo_noise: float = 0.3
    """DART noise std on the executed command, as a fraction of the limits."""
    demo_barrier: bool = True
    """Keep the DART noise off obstacles with the expert's barrier filter
    (`NoiseConfig.barrier`); False collects into directories of their own
    (`...-nobarrier`). Measured with False: 83.5% and 85.0% on two seeds, within
    the defaults' spread, collisions unchanged (`runs/nobar` in the README)."""
    val_episodes: int = 20
    """Expert episodes from the `val` split for the validation loss."""
    data_dir: str = "data"
    """Where demonstrations are collected; shared between runs with the same settings."""
    out: str = "runs/ltc-ncp"
    """Run directory: checkpoints, metrics, rollouts of the learner, final policy.pt."""
    workers: int = 2
    """Processes for collection and rollouts."""
    threads: int = 1
    """torch threads for training. One: the next batch is drawn on a second
    thread meanwhile, and on this 2-core machine two torch threads beside it
    were slower (0.335 s against 0.309 s per step, measured)."""
    bc: BCConfig = field(default_factory=BCConfig)
    """The behaviour-cloning phase."""
    dagger: DaggerConfig = field(default_factory=DaggerConfig)
    """The DAgger rounds that follow."""
    ltc: LTCTrainability = field(default_factory=LTCTrainability)
    """Initialisation and per-group learning rates of the LTC head (ltc only); a
    YAML mapping overrides single fields, e.g. `ltc: {potential_scale: 15}`."""
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    """The expert that flies the demonstrations and labels the DAgger rollouts; a
    YAML mapping overrides single fields, e.g. `expert: {margin: 0.4}`. A
    non-default expert collects into its own data directories."""
    ncp_sparsity: float = 0.5
    """AutoNCP sparsity level of the ltc head's wiring, in [0.1, 0.9]: the share of
    possible synapses left out. The dense parameter count (as ncps counts it)
    does not change; the trainable synapses do (0.5: 5,262, 0.2: 7,934).
    Measured at 0.2 over seeds 0-2: 89%, 86%, 88% on 100 forest/unseen scenes
    against the defaults' 88%, 84%, 85%, within noise, so it stays 0.5 (ncps's
    default)."""
    encoder: dict[str, Any] = field(default_factory=dict)
    """Changes to the default encoder (`EncoderConfig` fields but seed), e.g.
    `encoder: {image_size: [64, 96], vfov_rad: 1.176}`. Its image size and field of
    view are the camera every collection and rollout of the run is flown behind;
    another camera than the default collects into its own data directories."""

    def __post_init__(self) -> None:
        from lnn_nav.models.heads import HEAD_KINDS

        if self.head not in HEAD_KINDS:
            raise ValueError(f"TrainConfig.head={self.head!r}: expected one of {HEAD_KINDS}")
        for name in ("demo_episodes", "val_episodes", "workers", "threads"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"TrainConfig.{name}={v!r}: expected an integer > 0")
        if not 0.0 <= self.demo_noise < 1.0:
            raise ValueError(f"TrainConfig.demo_noise={self.demo_noise}: expected [0, 1)")
        if not isinstance(self.demo_barrier, bool):
            raise ValueError(f"TrainConfig.demo_barrier={self.demo_barrier!r}: expected true or false")
        if isinstance(self.bc, dict):
            object.__setattr__(self, "bc", BCConfig.from_dict(self.bc))
        if isinstance(self.dagger, dict):
            object.__setattr__(self, "dagger", DaggerConfig(**self.dagger))
        if isinstance(self.ltc, dict):
            object.__setattr__(self, "ltc", LTCTrainability.from_dict(self.ltc))
        if isinstance(self.expert, dict):
            object.__setattr__(self, "expert", ExpertConfig.from_dict(self.expert))
        if not isinstance(self.expert, ExpertConfig):
            raise ValueError(f"TrainConfig.expert={self.expert!r}: expected a mapping of ExpertConfig fields")
        if not isinstance(self.ltc, LTCTrainability):
            raise ValueError(f"TrainConfig.ltc={self.ltc!r}: expected a mapping of LTCTrainability fields")
        if self.head != "ltc" and self.ltc != LTCTrainability():
            raise ValueError(f"TrainConfig.ltc is set but head={self.head!r}: it applies to the ltc head only")
        sp = self.ncp_sparsity
        if isinstance(sp, bool) or not isinstance(sp, (int, float)) or not 0.1 <= sp <= 0.9:
            raise ValueError(f"TrainConfig.ncp_sparsity={sp!r}: expected a number in [0.1, 0.9]")
        if self.head != "ltc" and sp != 0.5:
            raise ValueError(f"TrainConfig.ncp_sparsity={sp} but head={self.head!r}: it applies to "
                             "the ltc head only")
        if not isinstance(self.encoder, dict) or "seed" in self.encoder:
            raise ValueError(f"TrainConfig.encoder={self.encoder!r}: expected a mapping of EncoderConfig "
                             "fields other than seed (the run's seed sets it)")
        self.encoder_config()  # fails now, with the bad key or value named, not after collection

    def encoder_config(self) -> EncoderConfig:
        """The run's encoder: the default one with `encoder`'s changes."""
        from lnn_nav.models.policy import default_encoder_config

        base = default_encoder_config(self.seed).to_dict()
        return EncoderConfig.from_dict({**base, **self.encoder})

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["bc"] = self.bc.to_dict()
        d["ltc"] = self.ltc.to_dict()
        d["expert"] = self.expert.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object], source: str = "config") -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown keys {unknown}; expected some of {sorted(known)}")
        if isinstance(d.get("dagger"), dict):
            dk = {f.name for f in fields(DaggerConfig)}
            bad = sorted(set(d["dagger"]) - dk)  # type: ignore[arg-type]
            if bad:
                raise ValueError(f"{source}: unknown keys dagger.{bad}; expected some of {sorted(dk)}")
        try:
            return cls(**d)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such training config")
        d = yaml.safe_load(path.read_text()) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping of TrainConfig keys, got {type(d).__name__}")
        return cls.from_dict(d, source=str(path))


def make_policy(head: str, seed: int, ltc: LTCTrainability | None = None, aux_outputs: int = 0,
                encoder: EncoderConfig | None = None, sparsity: float = 0.5):
    """A fresh policy: the default LTC-NCP (with `ltc` as its head's initialisation,
    None for the defaults, and `sparsity` as its wiring's AutoNCP sparsity level),
    or a baseline head at the same budget; with `aux_outputs` extra head outputs
    for auxiliary targets; `encoder` None for the default encoder."""
    from dataclasses import replace

    from lnn_nav.models.policy import NavPolicy, baseline_policy_config, default_policy_config

    if head == "ltc":
        cfg = default_policy_config(seed, aux_outputs, encoder)
        if ltc is not None:
            cfg = replace(cfg, head=replace(cfg.head, ltc=ltc))
        cfg = replace(cfg, head=replace(cfg.head, sparsity_level=sparsity))
    elif ltc is not None or sparsity != 0.5:
        raise ValueError(f"ltc initialisation or sparsity given for head={head!r}: they apply to "
                         "the ltc head only")
    else:
        cfg = baseline_policy_config(head, seed, aux_outputs=aux_outputs, encoder=encoder)
    torch.manual_seed(seed)
    return NavPolicy(cfg)


def _demo_dir(cfg: TrainConfig, split: str, episodes: int, noise: float) -> Path:
    fam = Path(cfg.family).stem
    name = f"{fam}-{split}-n{episodes}-noise{noise:g}"
    if noise > 0 and not cfg.demo_barrier:
        name += "-nobarrier"
    if cfg.expert != ExpertConfig():
        # collect refuses a directory of another expert's episodes, so each gets its own
        digest = hashlib.sha256(json.dumps(cfg.expert.to_dict(), sort_keys=True).encode()).hexdigest()
        name += f"-expert{digest[:8]}"
    camera = policy_camera(cfg.encoder_config())
    if camera != CameraConfig():
        name += f"-cam{camera.height}x{camera.width}v{math.degrees(camera.vfov_rad):.1f}"
        if camera.supersample > 1:
            name += f"s{camera.supersample}"
    return Path(cfg.data_dir) / name


def check_resumable(cfg: TrainConfig, resume: bool) -> None:
    """Raise ValueError unless `cfg.out` is new, or holds a run of `cfg` and
    `resume` is set."""
    cfg_path = Path(cfg.out) / "train_config.json"
    if not cfg_path.exists():
        return
    if not resume:
        raise ValueError(f"{cfg.out} already holds a run; pass resume=True (--resume) or another --out")
    # read back through the dataclasses, so a run written before a key existed
    # compares equal when the new key holds its default
    if TrainConfig.from_dict(json.loads(cfg_path.read_text())).to_dict() != cfg.to_dict():
        raise ValueError(f"{cfg_path}: the run on disk used another configuration; use another --out")


def run_training(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Collect demonstrations, behaviour-clone, then DAgger rounds; returns the
    path of the final policy. Every stage is resumable: collections skip
    episodes on disk, finished phases are skipped, an interrupted phase
    continues from its last checkpoint."""
    from lnn_nav.collect import collect
    from lnn_nav.data import load_dataset

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "train_config.json"
    check_resumable(cfg, resume)
    t0 = time.perf_counter()
    timings = _read_json(out / "timings.json")

    demo = _demo_dir(cfg, "train", cfg.demo_episodes, cfg.demo_noise)
    val = _demo_dir(cfg, "val", cfg.val_episodes, 0.0)
    encoder = cfg.encoder_config()
    camera = policy_camera(encoder)
    collect(cfg.family, "train", cfg.demo_episodes, demo,
            noise=NoiseConfig(std=cfg.demo_noise, barrier=cfg.demo_barrier),
            workers=cfg.workers, expert_config=cfg.expert, camera=camera, progress=progress)
    collect(cfg.family, "val", cfg.val_episodes, val, noise=0.0, workers=cfg.workers,
            expert_config=cfg.expert, camera=camera, progress=progress)
    timings["collect_s"] = timings.get("collect_s", 0.0) + time.perf_counter() - t0
    # written once the data is there: a collection refused for its settings leaves
    # no run behind that would need --resume
    atomic_write_json(cfg_path, cfg.to_dict())

    policy = make_policy(cfg.head, cfg.seed, cfg.ltc if cfg.head == "ltc" else None,
                         BEARING_OUTPUTS if cfg.bc.aux_bearing_weight > 0 else 0, encoder,
                         sparsity=cfg.ncp_sparsity)
    train_eps = load_dataset([demo])
    val_eps = load_dataset([val])
    phases = [("bc", cfg.bc)] + [
        (f"dagger{r}", BCConfig.from_dict({
            **cfg.bc.to_dict(), "steps": cfg.dagger.steps_per_round,
            "warmup_steps": cfg.dagger.warmup_steps,
            "lr": (cfg.bc.lr or DEFAULT_LR[cfg.head]) * cfg.dagger.lr_scale}))
        for r in range(1, cfg.dagger.rounds + 1)
    ]
    history = []
    rollout_eps: list[Episode] = []
    for i, (phase, bc_cfg) in enumerate(phases):
        if i > 0:
            # Learner rollouts with the policy as it stands, labelled by the expert.
            r = i
            learner_path = out / f"policy_after_{phases[i - 1][0]}.pt"
            if not learner_path.exists():
                policy.save(learner_path)
            t1 = time.perf_counter()
            roll_dir = out / f"rollouts_{phase}"
            first = cfg.demo_episodes + (r - 1) * cfg.dagger.episodes_per_round
            collect(cfg.family, "train", list(range(first, first + cfg.dagger.episodes_per_round)),
                    roll_dir, workers=cfg.workers, expert_config=cfg.expert, camera=camera,
                    progress=progress,
                    learner_policy=learner_path, beta=cfg.dagger.beta(r), rng_stream=r)
            timings[f"rollouts_{phase}_s"] = time.perf_counter() - t1
            rollout_eps = rollout_eps + load_dataset([roll_dir])
        t1 = time.perf_counter()
        ck = out / f"checkpoint_{phase}.pt"
        if i > 0 and not ck.exists():
            prev = torch.load(out / f"checkpoint_{phases[i - 1][0]}.pt", weights_only=False)
            # a phase with a weight average ended with (and saved, and flew) the average
            policy.load_state_dict(prev["ema"]["average"] if "ema" in prev else prev["model"])
        result = train_bc(policy, train_eps, val_eps, bc_cfg, out, phase,
                          seed=cfg.seed + 7919 * i, base_lr=DEFAULT_LR[cfg.head], resume=True,
                          progress=progress, on_policy_episodes=rollout_eps,
                          on_policy_fraction=cfg.dagger.on_policy_fraction)
        timings[f"train_{phase}_s"] = timings.get(f"train_{phase}_s", 0.0) + time.perf_counter() - t1
        history.append({"phase": phase, **result, "train_episodes": len(train_eps) + len(rollout_eps)})
        policy.save(out / f"policy_after_{phase}.pt")
        atomic_write_json(out / "timings.json", timings)
    final = policy.save(out / "policy.pt")
    timings["total_s"] = sum(v for k, v in timings.items() if k != "total_s")
    atomic_write_json(out / "timings.json", timings)
    atomic_write_json(out / "history.json", history)
    return final


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}
