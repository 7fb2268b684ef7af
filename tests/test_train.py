"""Behaviour cloning: config validation, window sampling, and resume after kill -9
ends with the same weights as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lnn_nav.data import Episode
from lnn_nav.expert import ExpertConfig
from lnn_nav.models.heads import LTCTrainability
from lnn_nav.train import (
    BCConfig,
    DaggerConfig,
    MixedSampler,
    TrainConfig,
    WeightAverage,
    WindowSampler,
    _demo_dir,
    check_resumable,
    conv_autocast_dtype,
    label_balance_weights,
    lr_at,
    make_policy,
    run_training,
    sequence_loss,
    train_bc,
)

TINY = dict(steps=12, batch_size=2, window=6, burn_in=2, val_every=6, checkpoint_every=3,
            val_windows=2, warmup_steps=2)


def synthetic_episodes(n=3, t=20, seed=0):
    """Episodes whose label is a function of the frame (its mean brightness),
    so a policy can learn them; frames are 64x64 like the camera's."""
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n):
        level = rng.uniform(0, 1, t)
        frames = (level[:, None, None, None] * 255 * np.ones((t, 64, 64, 3))).astype(np.uint8)
        expert = np.stack([level, -level, 0.5 * level, level - 0.5], axis=1).astype(np.float32)
        eps.append(Episode(frames, np.full(t, 1 / 30, np.float32), expert, expert,
                           np.zeros((t, 3), np.float32), np.zeros(t, np.float32),
                           np.zeros((t, 3), np.float32), "success", i, "synthetic", "train"))
    return eps


def test_config_errors_name_key_and_value(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("head: transformer\n")
    with pytest.raises(ValueError, match="head='transformer'"):
        TrainConfig.from_yaml(bad)
    bad.write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_yaml(bad)
    bad.write_text("dagger: {rounds: 2, beta: 0.3}\n")
    with pytest.raises(ValueError, match="dagger.*beta"):
        TrainConfig.from_yaml(bad)
    with pytest.raises(ValueError, match="window=0"):
        BCConfig(window=0)


def test_conv_precision_is_checked_and_resolved():
    with pytest.raises(ValueError, match="conv_precision='fp16'"):
        BCConfig(conv_precision="fp16")
    assert conv_autocast_dtype("float32") is None
    assert conv_autocast_dtype("bfloat16") is torch.bfloat16
    assert conv_autocast_dtype("auto") in (None, torch.bfloat16)


def test_bfloat16_convolutions_train_and_leave_a_float32_policy(tmp_path):
    """The bf16 training path gives the float32 features to within bf16 rounding,
    learns, and hands back a policy whose encoder runs in float32 again."""
    policy = make_policy("ltc", 0)
    frames = torch.randint(0, 256, (6, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact = policy.encoder(frames)
        policy.encoder.conv_autocast = torch.bfloat16
        rounded = policy.encoder(frames)
        policy.encoder.conv_autocast = None
    assert rounded.dtype == torch.float32
    assert 0 < float((rounded - exact).abs().max()) < 0.15  # features are standardised (unit std)

    eps = synthetic_episodes()
    cfg = BCConfig(**{**TINY, "steps": 30, "val_every": 30}, conv_precision="bfloat16")
    val_batch = WindowSampler(eps[:1], cfg, policy.limits.scale()).draw(
        np.random.default_rng(0 + 1_000_003), cfg.val_windows, augment=False)  # train_bc's own
    with torch.no_grad():
        before = float(sequence_loss(policy, val_batch))
    result = train_bc(policy, eps, eps[:1], cfg, tmp_path, "bc", seed=0, base_lr=3e-3, progress=False)
    assert result["conv_precision"] == "bfloat16"
    assert result["val_loss"] < before
    assert policy.encoder.conv_autocast is None


def test_config_round_trip():
    cfg = TrainConfig(head="gru", seed=3, bc=BCConfig(steps=7))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    ltc = TrainConfig(ltc={"potential_scale": 15.0, "gain_range": [0.15, 0.25]})
    assert TrainConfig.from_dict(ltc.to_dict()) == ltc


def test_ltc_initialisation_is_configurable_and_reaches_the_policy(tmp_path):
    cfg_path = tmp_path / "ltc.yaml"
    cfg_path.write_text("ltc: {potential_scale: 15.0, output_gain: 1.0}\n")
    cfg = TrainConfig.from_yaml(cfg_path)
    assert cfg.ltc.potential_scale == 15.0 and cfg.ltc.tau_range_s == LTCTrainability().tau_range_s
    policy = make_policy("ltc", 0, cfg.ltc)
    assert policy.config.head.ltc == cfg.ltc
    assert policy.head.trainability == cfg.ltc
    # another initialisation gives other weights from the same seed
    default = make_policy("ltc", 0)
    assert not torch.equal(policy.head.ltc.erev, default.head.ltc.erev)
    cfg_path.write_text("ltc: {potential_scal: 15.0}\n")
    with pytest.raises(ValueError, match="potential_scal"):
        TrainConfig.from_yaml(cfg_path)
    with pytest.raises(ValueError, match="head='gru'"):
        TrainConfig(head="gru", ltc={"potential_scale": 15.0})
    with pytest.raises(ValueError, match="head='lstm'"):
        make_policy("lstm", 0, LTCTrainability())


def test_ncp_sparsity_rewires_the_ltc_head_at_the_same_dense_count(tmp_path):
    cfg_path = tmp_path / "sparse.yaml"
    cfg_path.write_text("ncp_sparsity: 0.2\n")
    cfg = TrainConfig.from_yaml(cfg_path)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    denser = make_policy("ltc", 0, sparsity=cfg.ncp_sparsity)
    default = make_policy("ltc", 0)
    assert denser.config.head.sparsity_level == 0.2
    assert default.config == make_policy("ltc", 0, sparsity=0.5).config
    dense, sparse = denser.head.param_count(), default.head.param_count()
    assert dense["dense"] == sparse["dense"] and dense["effective"] > sparse["effective"]
    wd, ws = denser.config.head.wiring(), default.config.head.wiring()
    assert wd.num_sensory_synapses > ws.num_sensory_synapses and wd.num_synapses > ws.num_synapses
    for bad in (0.05, 0.95, True, "dense"):
        with pytest.raises(ValueError, match="ncp_sparsity"):
            TrainConfig(ncp_sparsity=bad)
    with pytest.raises(ValueError, match="head='gru'"):
        TrainConfig(head="gru", ncp_sparsity=0.2)
    with pytest.raises(ValueError, match="head='cfc'"):
        make_policy("cfc", 0, sparsity=0.2)


def test_expert_is_configurable_and_flies_every_collection(tmp_path, monkeypatch):
    import lnn_nav.collect

    cfg_path = tmp_path / "expert.yaml"
    cfg_path.write_text(f"expert: {{margin: 0.4}}\ndata_dir: {tmp_path / 'data'}\n"
                        f"out: {tmp_path / 'run'}\n")
    cfg = TrainConfig.from_yaml(cfg_path)
    assert cfg.expert.margin == 0.4 and cfg.expert.lookahead == ExpertConfig().lookahead
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # a non-default expert gets data directories of its own, the same every time
    default = TrainConfig(data_dir=cfg.data_dir)
    assert _demo_dir(cfg, "train", 700, 0.3) != _demo_dir(default, "train", 700, 0.3)
    assert _demo_dir(cfg, "train", 700, 0.3) == _demo_dir(TrainConfig.from_yaml(cfg_path), "train", 700, 0.3)
    assert _demo_dir(default, "train", 700, 0.3).name == "forest-train-n700-noise0.3"
    fenceless = TrainConfig(data_dir=default.data_dir, demo_barrier=False)
    assert _demo_dir(fenceless, "train", 700, 0.3).name == "forest-train-n700-noise0.3-nobarrier"
    assert _demo_dir(fenceless, "val", 20, 0.0).name == "forest-val-n20-noise0"  # no noise, no barrier
    with pytest.raises(ValueError, match="demo_barrier"):
        TrainConfig(demo_barrier="no")

    seen = []

    def fake_collect(family, split, episodes, out_dir, **kw):
        seen.append((split, kw["expert_config"]))
        if len(seen) == 2:
            raise KeyboardInterrupt  # both collections seen; stop before training

    monkeypatch.setattr(lnn_nav.collect, "collect", fake_collect)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, progress=False)
    assert seen == [("train", cfg.expert), ("val", cfg.expert)]

    cfg_path.write_text("expert: {margn: 0.4}\n")
    with pytest.raises(ValueError, match="margn"):
        TrainConfig.from_yaml(cfg_path)
    with pytest.raises(ValueError, match="margin"):
        TrainConfig(expert={"margin": -1.0})


def test_sampler_windows_carry_loss_only_on_real_steps():
    eps = synthetic_episodes(n=2, t=5)
    cfg = BCConfig(**{**TINY, "window": 4, "burn_in": 3})
    s = WindowSampler(eps, cfg, np.ones(4))
    batch = s.draw(np.random.default_rng(0), 32, augment=False)
    assert batch.frames.shape == (32, 7, 64, 64, 3)
    assert batch.weight.sum(1).max() <= 4
    # an episode of 5 steps can never carry loss on more than 5 steps of a window
    assert (batch.weight.sum(1) >= 1).all()


def test_mixed_sampler_draws_its_share_from_the_second_pool():
    demos, rollouts = synthetic_episodes(n=2, t=30, seed=0), synthetic_episodes(n=1, t=8, seed=1)
    for ep in rollouts:
        ep.expert[:] = 0.75  # marks the rollout windows: no demo label is constant
    cfg = BCConfig(**{**TINY, "window": 4, "burn_in": 0})
    s = MixedSampler(WindowSampler(demos, cfg, np.ones(4)), WindowSampler(rollouts, cfg, np.ones(4)), 0.5)
    batch = s.draw(np.random.default_rng(0), 12, augment=False)
    from_rollouts = (batch.target[:, 0] == 0.75).all(dim=1)
    assert batch.frames.shape[0] == 12 and int(from_rollouts.sum()) == 6
    with pytest.raises(ValueError, match="extra_fraction=1.0"):
        MixedSampler(s.base, s.extra, 1.0)
    with pytest.raises(ValueError, match="on_policy_fraction=1.5"):
        DaggerConfig(on_policy_fraction=1.5)


@pytest.mark.slow
def test_tiny_end_to_end_run_collects_trains_and_runs_a_dagger_round(tmp_path):
    """collect 2 demonstrations, behaviour-clone a few steps, one DAgger round of one
    learner rollout, retrain: the whole `lnn-nav train` pipeline on real episodes."""
    from lnn_nav.data import load_dataset
    from lnn_nav.models.policy import NavPolicy

    tiny = {**TINY, "steps": 4, "checkpoint_every": 2, "val_every": 2}
    cfg = TrainConfig(demo_episodes=2, val_episodes=1, workers=1, data_dir=str(tmp_path / "data"),
                      out=str(tmp_path / "run"), bc=BCConfig(**tiny),
                      dagger=DaggerConfig(rounds=1, episodes_per_round=1, steps_per_round=3,
                                          warmup_steps=1))
    final = run_training(cfg, progress=False)
    policy = NavPolicy.load(final)
    assert policy.encoder.conv_autocast is None
    run = tmp_path / "run"
    [rollout] = load_dataset([run / "rollouts_dagger1"])
    assert rollout.seed == 2  # the round flies scenes after the demonstrations'
    # the learner flew some of its steps: the flown commands are not the expert's
    assert not np.allclose(rollout.executed, rollout.expert)
    import json

    history = json.loads((run / "history.json").read_text())
    assert [h["phase"] for h in history] == ["bc", "dagger1"]
    assert history[1]["train_episodes"] == 3
    phases = [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert phases == ["bc"] * 4 + ["dagger1"] * 3
    # the retrained policy differs from the behaviour-cloned one
    before = NavPolicy.load(run / "policy_after_bc.pt").state_dict()
    after = policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("head", ["ltc", "gru"])
def test_burn_in_without_gradient_gives_the_full_forward_loss(head):
    torch.manual_seed(0)
    eps = synthetic_episodes(n=2, t=30)
    cfg = BCConfig(**{**TINY, "window": 6, "burn_in": 5})
    batch = WindowSampler(eps, cfg, np.ones(4)).draw(np.random.default_rng(1), 16, augment=False)
    steps = set(batch.no_grad_steps.tolist())
    assert steps == {0, 5}, "the batch should hold windows from episode starts and mid-episode"
    # mid-episode windows carry no loss on their burn-in; start windows begin at step 0
    mid = batch.no_grad_steps == 5
    assert (batch.weight[mid][:, :5] == 0).all() and (batch.weight[mid][:, 5:].sum(1) > 0).all()
    policy = make_policy(head, 0)
    loss = sequence_loss(policy, batch)
    commands, _ = policy(batch.frames, None, batch.dt)
    scale = torch.as_tensor(policy.limits.scale(), dtype=commands.dtype)
    w = batch.weight.unsqueeze(-1)
    reference = ((commands / scale - batch.target) ** 2 * w).sum() / (w.sum() * 4)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-7)
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in policy.parameters())


def test_resume_refuses_another_configuration_but_accepts_an_older_file(tmp_path):
    import json

    out = tmp_path / "run"
    out.mkdir()
    cfg = TrainConfig(out=str(out), data_dir=str(tmp_path / "data"))
    stored = cfg.to_dict()
    # a run written before `command_weights` existed holds no such key
    del stored["bc"]["command_weights"]
    (out / "train_config.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="already holds a run"):
        run_training(cfg, resume=False, progress=False)
    check_resumable(cfg, resume=True)  # the missing key holds its default
    other = TrainConfig.from_dict({**cfg.to_dict(), "demo_episodes": 5})
    with pytest.raises(ValueError, match="another configuration"):
        run_training(other, resume=True, progress=False)
    weighted = TrainConfig.from_dict({**cfg.to_dict(), "bc": {**cfg.bc.to_dict(),
                                                               "command_weights": [1, 3, 1, 1]}})
    with pytest.raises(ValueError, match="another configuration"):
        run_training(weighted, resume=True, progress=False)


def _gru_on_a_batch():
    """A fresh GRU policy, a 4-window batch, the policy's commands in limit
    units minus the targets, and the (B, T, 1) loss weights."""
    torch.manual_seed(0)
    eps = synthetic_episodes(n=2, t=30)
    cfg = BCConfig(**{**TINY, "window": 6, "burn_in": 0})
    batch = WindowSampler(eps, cfg, np.ones(4)).draw(np.random.default_rng(1), 4, augment=False)
    policy = make_policy("gru", 0)
    with torch.no_grad():
        commands, _ = policy(batch.frames, None, batch.dt)
        scale = torch.as_tensor(policy.limits.scale(), dtype=commands.dtype)
    return policy, batch, commands / scale - batch.target, batch.weight.unsqueeze(-1)


def test_command_weights_scale_each_command_and_keep_the_mean():
    policy, batch, diff, w = _gru_on_a_batch()
    with torch.no_grad():
        per_command = (diff**2 * w).sum((0, 1)) / w.sum()
        # (1, 3, 1, 1) normalised to mean 1: (2/3, 2, 2/3, 2/3)
        expected = (per_command * torch.tensor([2 / 3, 2.0, 2 / 3, 2 / 3])).mean()
        torch.testing.assert_close(sequence_loss(policy, batch, (1, 3, 1, 1)), expected,
                                   rtol=1e-5, atol=1e-7)
        # equal weights of any size are the plain mean
        torch.testing.assert_close(sequence_loss(policy, batch, (5, 5, 5, 5)),
                                   sequence_loss(policy, batch), rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match=r"command_weights=\(1, -1, 1, 1\)"):
        BCConfig(command_weights=(1, -1, 1, 1))
    with pytest.raises(ValueError, match="command_weights=\\[1, 2\\]"):
        BCConfig(command_weights=[1, 2])


def test_l1_loss_is_the_mean_absolute_error():
    policy, batch, diff, w = _gru_on_a_batch()
    with torch.no_grad():
        expected = (diff.abs() * w).sum() / (w.sum() * 4)
        torch.testing.assert_close(sequence_loss(policy, batch, loss="l1"), expected, rtol=1e-5, atol=1e-7)
        # one loss per command: l1 on forward, squared error on the rest
        mixed = torch.cat([diff[..., :1].abs(), diff[..., 1:] ** 2], dim=-1)
        torch.testing.assert_close(sequence_loss(policy, batch, loss=("l1", "mse", "mse", "mse")),
                                   (mixed * w).sum() / (w.sum() * 4), rtol=1e-5, atol=1e-7)
    cfg = BCConfig(loss=["l1", "l1", "l1", "mse"])
    assert cfg.loss == ("l1", "l1", "l1", "mse")
    assert BCConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="loss='huber'"):
        BCConfig(loss="huber")
    with pytest.raises(ValueError, match=r"loss=\['l1', 'mse'\]"):
        BCConfig(loss=["l1", "mse"])


def test_label_balance_weights_favour_rare_commands():
    # 90 frames of one command, 10 of another: at exponent 1 each group gets
    # half the total weight, at 0.5 the rare one weighs sqrt(9) = 3x as much
    labels = [np.tile([[0.9, 0, 0, 0]], (60, 1)), np.concatenate(
        [np.tile([[0.9, 0, 0, 0]], (30, 1)), np.tile([[0.1, 0.5, 0, -0.8]], (10, 1))])]
    w = np.concatenate(label_balance_weights(labels, 1.0, cap=100.0))
    assert w.mean() == pytest.approx(1.0)
    assert w[:90].sum() == pytest.approx(w[90:].sum())
    w = np.concatenate(label_balance_weights(labels, 0.5, cap=100.0))
    assert w[90] / w[0] == pytest.approx(3.0)
    # the cap bounds the largest weight relative to the mean before renormalising
    w = np.concatenate(label_balance_weights(labels, 1.0, cap=2.0))
    assert w[90] / w[0] == pytest.approx(2.0 / (10 / 18))
    assert w.mean() == pytest.approx(1.0)
    # exponent 0 weighs every frame the same
    assert np.allclose(np.concatenate(label_balance_weights(labels, 0.0, cap=10.0)), 1.0)


def test_sampler_carries_label_balance_weights_in_training_but_not_validation():
    eps = synthetic_episodes(n=2, t=30)
    cfg = BCConfig(**{**TINY, "window": 6, "burn_in": 0, "label_balance": 0.5})
    rng = np.random.default_rng(2)
    train = WindowSampler(eps, cfg, np.ones(4)).draw(rng, 8, augment=False)
    val = WindowSampler(eps, cfg, np.ones(4), balance=False).draw(np.random.default_rng(2), 8, augment=False)
    carried = train.weight[train.weight > 0]
    assert not torch.allclose(carried, torch.ones_like(carried))
    assert set(val.weight.unique().tolist()) <= {0.0, 1.0}
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="label_balance="):
            BCConfig(label_balance=bad)
    with pytest.raises(ValueError, match="label_balance_cap=0.5"):
        BCConfig(label_balance_cap=0.5)


def test_weight_average_follows_its_recurrence():
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    avg = WeightAverage(lin, decay=0.5)
    expected = 0.0
    for n, w in enumerate([1.0, 2.0, 4.0, 8.0]):
        with torch.no_grad():
            lin.weight.fill_(w)
        avg.update(lin)
        d = min(0.5, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * w
        assert float(avg.average["weight"]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="ema_decay=1.0"):
        BCConfig(ema_decay=1.0)


def test_phase_with_weight_average_ends_with_the_average(tmp_path):
    policy = make_policy("ltc", 0)
    eps = synthetic_episodes()
    cfg = BCConfig(**TINY, ema_decay=0.9)
    train_bc(policy, eps, eps[:1], cfg, tmp_path, "bc", seed=0, base_lr=3e-3, progress=False)
    ck = torch.load(tmp_path / "checkpoint_bc.pt", weights_only=False)
    assert ck["ema"]["updates"] == TINY["steps"]
    final = policy.state_dict()
    for k, v in ck["ema"]["average"].items():
        torch.testing.assert_close(final[k], v, rtol=0, atol=0)
    assert any(not torch.equal(ck["model"][k], v) for k, v in ck["ema"]["average"].items())


def test_schedule_warms_up_then_decays():
    cfg = BCConfig(**TINY)
    lrs = [lr_at(s, cfg) for s in range(cfg.steps)]
    assert lrs[0] < lrs[1] <= 1.0 and lrs[-1] < lrs[3]
    assert min(lrs[2:]) >= cfg.lr_min_fraction


_CHILD = r"""
import sys, torch, numpy as np
sys.path.insert(0, {tests!r})
from test_train import synthetic_episodes, TINY
from lnn_nav.train import BCConfig, train_bc, make_policy
torch.set_num_threads(1)
policy = make_policy("ltc", 0)
eps = synthetic_episodes()
train_bc(policy, eps, eps[:1], BCConfig(**TINY, **{extra!r}), {run!r}, "bc", seed=5, base_lr=3e-3,
         resume=True, progress=False)
torch.save(policy.state_dict(), {run!r} + "/final.pt")
"""


def _run_child(run_dir: Path, extra: dict) -> subprocess.Popen:
    code = _CHILD.format(tests=str(Path(__file__).parent), run=str(run_dir), extra=extra)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.9}], ids=["plain", "weight-average"])
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, extra):
    straight = tmp_path / "straight"
    p = _run_child(straight, extra)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()

    killed = tmp_path / "killed"
    p = _run_child(killed, extra)
    ckpt = killed / "checkpoint_bc.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert ckpt.exists(), "the child wrote no checkpoint"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    step_at_kill = torch.load(ckpt, weights_only=False)["step"]
    print("killed at step", step_at_kill)
    assert not (killed / "final.pt").exists() or step_at_kill == TINY["steps"]

    p = _run_child(killed, extra)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    a = torch.load(straight / "final.pt")
    b = torch.load(killed / "final.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after resume")
    # the metrics log has each step once, even though some steps ran twice
    steps = [line.split(",")[1] for line in (killed / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, TINY["steps"] + 1)]


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "policies").glob("*/*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_training_configs_load(path):
    """The configs the README tells users to train with still match TrainConfig."""
    from lnn_nav.sim.scenes import ENVS_DIR

    cfg = TrainConfig.from_yaml(path)
    assert (ENVS_DIR / f"{cfg.family}.yaml").is_file(), cfg.family


def test_encoder_changes_reach_the_policy_and_its_camera(tmp_path, monkeypatch):
    import lnn_nav.collect
    from lnn_nav.sim.camera import CameraConfig

    cfg = TrainConfig(encoder={"image_size": [48, 80], "vfov_rad": 1.0}, data_dir=str(tmp_path / "d"),
                      out=str(tmp_path / "run"))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    enc = cfg.encoder_config()
    assert enc.image_size == (48, 80) and enc.vfov_rad == 1.0 and enc.seed == cfg.seed
    policy = make_policy(cfg.head, cfg.seed, encoder=enc)
    assert policy.config.encoder == enc
    assert make_policy("gru", 0, encoder=enc).config.encoder.image_size == (48, 80)
    # another camera collects into directories of its own
    default = TrainConfig(data_dir=cfg.data_dir)
    assert _demo_dir(cfg, "train", 700, 0.3).name == "forest-train-n700-noise0.3-cam48x80v57.3"

    cameras = []

    def fake_collect(family, split, episodes, out_dir, **kw):
        cameras.append(kw["camera"])
        if len(cameras) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(lnn_nav.collect, "collect", fake_collect)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, progress=False)
    assert cameras == [CameraConfig(width=80, height=48, vfov_rad=1.0)] * 2
    assert _demo_dir(default, "train", 700, 0.3) != _demo_dir(cfg, "train", 700, 0.3)
    ss = TrainConfig(encoder={"supersample": 2}, data_dir=cfg.data_dir)
    assert _demo_dir(ss, "train", 700, 0.3).name == "forest-train-n700-noise0.3-cam64x64v60.0s2"

    with pytest.raises(ValueError, match="image_sise"):
        TrainConfig(encoder={"image_sise": [48, 80]})
    with pytest.raises(ValueError, match="vfov_rad"):
        TrainConfig(encoder={"vfov_rad": 4.0})
    with pytest.raises(ValueError, match="seed"):
        TrainConfig(encoder={"seed": 3})
