"""Toy memory task with irregular dt: every recurrent head learns it, the feedforward head
cannot, and the LTC head's initialisation is what makes the LTC learn at all."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from lnn_nav.models.heads import HEAD_KINDS, ltc_dense_count, make_head, size_head
from lnn_nav.models.toy_tasks import (
    DEFAULT_LR,
    TOY_LTC,
    MemoryTaskConfig,
    SightingTaskConfig,
    TrainConfig,
    compare_heads,
    make_memory_batch,
    train_head,
)

TASK = MemoryTaskConfig()


def test_targets_follow_the_ode_with_the_real_dt():
    """The target is the exact solution of tau dy/dt = -y + s over each irregular interval."""
    batch = make_memory_batch(TASK, 4, np.random.default_rng(0))
    x, dt, y = batch.x.double(), batch.dt.double(), batch.y.double()
    tau = TASK.time_constants_s[0]
    a = 1 - np.exp(-TASK.dt_nominal_s / tau)
    scale = 1 / np.sqrt(a / (2 - a))
    ref = torch.zeros(4, dtype=torch.float64)
    for t in range(TASK.steps):
        decay = torch.exp(-dt[:, t] / tau)
        ref = ref * decay + x[:, t, 0] * (1 - decay)
        torch.testing.assert_close(y[:, t, 0], ref * scale, rtol=1e-5, atol=1e-5)
    ratio = batch.dt / TASK.dt_nominal_s
    assert ratio.min() >= 1 / TASK.dt_ratio - 1e-6 and ratio.max() <= TASK.dt_ratio + 1e-6
    assert ratio.std() > 0.2  # irregular sampling, not a constant period


def test_same_seed_same_batch_and_config_round_trip():
    a = make_memory_batch(TASK, 3, np.random.default_rng(5))
    b = make_memory_batch(TASK, 3, np.random.default_rng(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert MemoryTaskConfig.from_dict(TASK.to_dict()) == TASK
    with pytest.raises(ValueError, match="dt_ratio=0.5"):
        MemoryTaskConfig(dt_ratio=0.5)


@pytest.mark.slow
def test_every_recurrent_head_learns_and_feedforward_is_worse():
    losses = compare_heads(HEAD_KINDS, seeds=(0,), task=TASK, steps=150)
    mlp = losses["mlp"][0]
    assert mlp > 0.8  # a memoryless head explains little of a low-passed signal
    for kind in ("ltc", "cfc", "lstm", "gru"):
        assert losses[kind][0] < 0.6 * mlp, (kind, losses)


@pytest.mark.slow
def test_calibrated_ltc_head_trains_where_the_naive_ltc_does_not():
    from lnn_nav.models.ltc import LTC

    config = size_head("ltc", TASK.input_size, 4, seed=0, ltc=TOY_LTC)
    assert config.units == 34
    train = TrainConfig(steps=150, lr=DEFAULT_LR["ltc"], seed=0)
    head = train_head(make_head(config), TASK, train).val_loss
    naive = train_head(LTC(config.wiring(), seed=0), TASK, train).val_loss  # ncps's init
    assert naive > 0.8
    assert head < 0.6 * naive, (head, naive)
    assert ltc_dense_count(TASK.input_size, 34, 4) == 5838


GRU_RATIO_TARGET = 1.5
"""Issue 2, section 4: LTC validation loss within this factor of the GRU's, every seed."""


@pytest.mark.slow
def test_ltc_within_1p5x_of_gru_at_same_budget_and_steps():
    """The issue's bar, on the script's 5 seeds: same budget, same 300 steps, each kind at
    its DEFAULT_LR (measured 0.98-1.18x)."""
    losses = compare_heads(("ltc", "gru"), seeds=(0, 1, 2, 3, 4), task=TASK, steps=300)
    ratios = [a / b for a, b in zip(losses["ltc"], losses["gru"])]
    assert all(r <= GRU_RATIO_TARGET for r in ratios), (ratios, losses)


@pytest.mark.slow
def test_ltc_trainability_defaults_close_most_of_the_gap_to_gru():
    """Regression guard for the LTC head's defaults: the calibration alone left the LTC at
    12-23x the GRU's loss at 300 steps; with per-group learning rates and centred
    potentials it must stay within 4x (measured 1.2x on this seed), and each of the two
    must matter: the same head without it does clearly worse."""
    losses = compare_heads(("ltc", "gru"), seeds=(0,), task=TASK, steps=300)
    ltc, gru = losses["ltc"][0], losses["gru"][0]
    assert ltc < 4 * gru, losses
    train = TrainConfig(steps=300, lr=DEFAULT_LR["ltc"], seed=0)
    for ablation in ({"lr_scale": ()}, {"centre_state": False}):
        cfg = size_head("ltc", TASK.input_size, 4, seed=0, ltc=replace(TOY_LTC, **ablation))
        worse = train_head(make_head(cfg), TASK, train).val_loss
        assert ltc < 0.7 * worse, (ablation, ltc, worse)


def test_product_sources_and_bad_sources():
    task = MemoryTaskConfig(sources=("u0", "u1", "u2", "u0*u1"))
    assert task.source_channels()[3] == (0, 1)
    assert MemoryTaskConfig.from_dict(task.to_dict()) == task
    with pytest.raises(ValueError, match="'u9'"):
        MemoryTaskConfig(sources=("u0", "u1", "u2", "u9"))
    with pytest.raises(ValueError, match="'x1'"):
        MemoryTaskConfig(sources=("u0", "u1", "u2", "x1"))


SIGHT = SightingTaskConfig()


def test_sighting_targets_hold_the_last_side_for_each_hold_time():
    """Re-derive every target from the inputs: a sighting is a frame where channel 0 or
    1 rose by the pulse amplitude; target k holds its side until hold_s[k] seconds after
    the sighting's last frame."""
    cfg = replace(SIGHT, input_size=3, pulse_amplitude=1000.0, sightings_per_s=2.0)
    batch = cfg.make_batch(6, np.random.default_rng(2))
    x, dt, y = batch.x.numpy(), batch.dt.numpy().astype(np.float64), batch.y.numpy()
    for b in range(x.shape[0]):
        side, since = 0, np.inf
        for t in range(cfg.steps):
            on0, on1 = x[b, t, 0] > 500, x[b, t, 1] > 500
            assert not (on0 and on1)
            if on0 or on1:
                side, since = (1 if on0 else -1), 0.0
            else:
                since += dt[b, t]
            for k, hold in enumerate(cfg.hold_s):
                want = side if since <= hold else 0
                assert np.sign(y[b, t, k]) == want, (b, t, k)
    assert (np.abs(y) > 0).any(axis=(0, 1)).all()  # every target is non-zero somewhere


def test_sighting_task_is_seeded_checked_and_round_trips():
    a = SIGHT.make_batch(3, np.random.default_rng(5))
    b = SIGHT.make_batch(3, np.random.default_rng(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert SightingTaskConfig.from_dict(SIGHT.to_dict()) == SIGHT
    with pytest.raises(ValueError, match="hold_s"):
        SightingTaskConfig(hold_s=(1.0, 2.0))
    with pytest.raises(ValueError, match="unknown SightingTaskConfig keys"):
        SightingTaskConfig.from_dict({"holds": [1, 2, 3, 4]})
    # targets are scaled to about unit mean square: predicting zero costs about 1
    big = SIGHT.make_batch(256, np.random.default_rng(0))
    ms = (big.y ** 2).mean(dim=(0, 1))
    assert ((ms > 0.6) & (ms < 1.2)).all(), ms


@pytest.mark.slow
def test_sighting_task_needs_memory():
    """A memoryless head cannot hold a sighting; a GRU learns to."""
    losses = compare_heads(("mlp", "gru"), seeds=(0,), task=SIGHT, steps=150)
    assert losses["mlp"][0] > 0.7
    assert losses["gru"][0] < 0.8 * losses["mlp"][0], losses
