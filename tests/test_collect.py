"""The episode runner and `lnn-nav collect`: determinism, noise and mixing,
resume after a kill, the on-disk result."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from lnn_nav import data
from lnn_nav.cli import main as cli_main
from lnn_nav.collect import collect
from lnn_nav.command import CommandLimits
from lnn_nav.rollout import (
    CommandNoise,
    NoiseConfig,
    SimTimeController,
    expert_for_env,
    make_env,
    run_episode,
)

ARRAYS = ("frames", "dt", "expert", "executed", "pos_w", "yaw", "target_pos_w")


@pytest.fixture(scope="module")
def env():
    e = make_env("fly", "forest", "train")
    yield e
    e.close()


def _same(a: data.Episode, b: data.Episode) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.termination, a.seed, a.family, a.split) == (b.termination, b.seed, b.family, b.split)


class ImageTurnPolicy(torch.nn.Module):
    """A learner for the mixing tests: yaw rate from the image's mean red level,
    slowly forward; its state counts frames. It reads the camera, so executed
    learner commands depend on what the drone sees."""

    def __init__(self) -> None:
        super().__init__()
        self.limits = CommandLimits()

    def init_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 1)

    def step(self, image, state, dt):
        red = image[..., 0].float().mean(dim=(1, 2)) / 255.0
        cmd = torch.stack([torch.full_like(red, 0.3), torch.zeros_like(red),
                           torch.zeros_like(red), 1.0 - 2.0 * red], dim=-1)
        return cmd, state + 1


# ------------------------------------------------------------------- noise
def test_noise_config_round_trip_and_validation():
    cfg = NoiseConfig(std=0.3, correlation_s=0.4, axes=(1, 1, 0, 1))
    assert NoiseConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="std"):
        NoiseConfig(std=-0.1)
    with pytest.raises(ValueError, match="axes"):
        NoiseConfig(axes=(1, 1, 1))
    with pytest.raises(ValueError, match="fade_end_m"):
        NoiseConfig(fade_start_m=1.0, fade_end_m=2.0)
    with pytest.raises(ValueError, match="unknown"):
        NoiseConfig.from_dict({"sigma": 1.0})
    with pytest.raises(ValueError, match="barrier"):
        NoiseConfig(barrier="no")
    # a dict from before the barrier field existed reads as the barrier on
    old = {k: v for k, v in NoiseConfig(std=0.3).to_dict().items() if k != "barrier"}
    assert NoiseConfig.from_dict(old) == NoiseConfig(std=0.3, barrier=True)


def test_noise_has_the_configured_spread_and_correlation():
    limits = CommandLimits()
    cfg = NoiseConfig(std=0.25, correlation_s=0.5)
    proc = CommandNoise(cfg, limits, np.random.default_rng(0))
    x = np.array([proc.sample(1 / 30) for _ in range(60000)])
    expected = 0.25 * limits.scale() * np.array(cfg.axes)
    np.testing.assert_allclose(x.std(axis=0), expected, rtol=0.1)
    # lag-one autocorrelation of an OU process sampled every dt: exp(-dt / tau)
    r = np.corrcoef(x[:-1, 0], x[1:, 0])[0, 1]
    assert r == pytest.approx(np.exp(-(1 / 30) / 0.5), abs=0.01)
    # fading: full beyond fade_start, none inside fade_end
    assert np.all(proc.sample(1 / 30, 0.5) == 0)
    assert np.any(proc.sample(1 / 30, 10.0) != 0)


# ----------------------------------------------------------------- runner
def test_same_seed_same_episode_bit_for_bit(env):
    expert = expert_for_env(env)
    noise = NoiseConfig(std=0.3)
    a = run_episode(env, 2, expert, noise=noise)
    b = run_episode(env, 2, expert, noise=noise)
    _same(a, b)
    other_env = make_env("fly", "forest", "train")
    try:
        _same(a, run_episode(other_env, 2, expert_for_env(other_env), noise=noise))
    finally:
        other_env.close()
    assert a.frames.dtype == np.uint8 and a.frames.ndim == 4 and len(a) > 10
    # the label is the clean expert; what flew was perturbed
    assert not np.array_equal(a.expert, a.executed)
    c = run_episode(env, 2, expert, noise=noise, rng_stream=1)
    np.testing.assert_array_equal(a.frames[0], c.frames[0])  # same scene
    assert not np.array_equal(a.executed[:20], c.executed[:20])  # other noise draws


def _same_but_render_ties(a: data.Episode, b: data.Episode) -> None:
    """Everything equal, frames up to rare +-1 levels: the environment's pooled
    scene bodies can render a scene after another scene with a handful of pixels
    one level off (a renderer tie; positions and commands are unaffected)."""
    for name in ARRAYS[1:]:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    diff = np.abs(a.frames.astype(np.int16) - b.frames.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


def test_noise_without_the_barrier_flies_the_perturbed_command(env):
    """With the barrier the noise is bent away from obstacles near the path; without
    it the executed command is the label plus the noise, exactly."""
    expert = expert_for_env(env)
    free = run_episode(env, 4, expert, noise=NoiseConfig(std=0.3, barrier=False))
    fenced = run_episode(env, 4, expert, noise=NoiseConfig(std=0.3))
    # the same noise draws: equal until the barrier first bends a command, then not
    np.testing.assert_allclose(free.executed[0], fenced.executed[0], atol=1e-6)
    assert not np.array_equal(free.executed, fenced.executed)


def test_without_noise_the_expert_flies_its_label(env):
    ep = run_episode(env, 1, expert_for_env(env))
    np.testing.assert_allclose(ep.executed, ep.expert, atol=1e-6)
    assert ep.termination == "success"
    assert ep.seed == 1 and ep.family == "forest" and ep.split == "train"
    np.testing.assert_allclose(ep.dt, env.unwrapped.control_dt_s, rtol=1e-6)


def test_learner_flies_when_beta_is_zero(env):
    expert = expert_for_env(env)
    policy = ImageTurnPolicy()
    ep = run_episode(env, 3, expert, learner=SimTimeController(policy, limits=env.unwrapped.limits),
                     beta=0.0)
    # the same controller, replayed on the recorded frames, gives the flown commands
    # (its watchdog runs on simulated time, so machine load cannot trip it)
    replay = SimTimeController(policy, limits=env.unwrapped.limits)
    cmds = np.array([replay.step(f, float(dt)).as_array() for f, dt in zip(ep.frames, ep.dt)])
    np.testing.assert_allclose(ep.executed, cmds, atol=1e-6)
    assert not np.allclose(ep.executed, ep.expert, atol=1e-3)


def test_per_episode_mixing_uses_one_pilot(env):
    expert = expert_for_env(env)
    pilots = set()
    for seed in range(4):
        ctrl = SimTimeController(ImageTurnPolicy(), limits=env.unwrapped.limits)
        ep = run_episode(env, seed, expert, learner=ctrl, beta=0.5, mixing="episode")
        by_expert = np.all(np.abs(ep.executed - ep.expert) < 1e-5, axis=1)
        assert by_expert.all() or not by_expert[5:].any(), f"seed {seed}: mixed pilots"
        pilots.add(bool(by_expert.all()))
    assert pilots == {True, False}  # both pilots occur over these seeds


def test_runner_rejects_bad_arguments(env):
    expert = expert_for_env(env)
    with pytest.raises(ValueError, match="beta"):
        run_episode(env, 0, expert, beta=0.5)
    with pytest.raises(ValueError, match="mixing"):
        ctrl = SimTimeController(ImageTurnPolicy(), limits=env.unwrapped.limits)
        run_episode(env, 0, expert, learner=ctrl, beta=0.5, mixing="sometimes")
    with pytest.raises(ValueError, match="seed"):
        run_episode(env, -1, expert)


# ---------------------------------------------------------------- collect
def test_collect_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="episodes"):
        collect("forest", "train", 0, tmp_path)
    with pytest.raises(ValueError, match="more than once"):
        collect("forest", "train", [1, 1], tmp_path)
    with pytest.raises(ValueError, match="workers"):
        collect("forest", "train", 1, tmp_path, workers=0)


def test_collect_refuses_a_directory_with_other_settings(tmp_path):
    collect("forest", "train", [0], tmp_path, progress=False)
    with pytest.raises(ValueError, match="noise"):
        collect("forest", "train", [0], tmp_path, noise=0.2, progress=False)


def test_a_manifest_from_before_an_expert_field_existed_is_the_same_collection(tmp_path):
    collect("forest", "train", [0], tmp_path, progress=False)
    manifest = data.read_manifest(tmp_path)
    del manifest["produced_by"]["expert"]["plan_view_range"]
    data.write_manifest(tmp_path, manifest["produced_by"])
    collect("forest", "train", [0, 1], tmp_path, progress=False)
    assert len(data.read_manifest(tmp_path)["episodes"]) == 2
    manifest = data.read_manifest(tmp_path)
    manifest["produced_by"]["expert"]["margin"] = 0.4
    data.write_manifest(tmp_path, manifest["produced_by"])
    with pytest.raises(ValueError, match="expert"):
        collect("forest", "train", [0, 1, 2], tmp_path, progress=False)


def test_collect_refuses_episodes_of_an_older_scene_generator(tmp_path):
    collect("forest", "train", [0], tmp_path, progress=False)
    manifest = data.read_manifest(tmp_path)
    manifest["produced_by"]["scenes"]["generator"] -= 1
    data.write_manifest(tmp_path, manifest["produced_by"])
    with pytest.raises(ValueError, match="scenes"):
        collect("forest", "train", [0, 1], tmp_path, progress=False)


@pytest.mark.slow
def test_collection_killed_midway_resumes_without_duplicates_or_partials(tmp_path):
    out = tmp_path / "ds"
    script = textwrap.dedent(f"""
        from lnn_nav.collect import collect
        collect("forest", "train", 5, {str(out)!r}, noise=0.3, workers=1, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while len(data.episodes_on_disk(out)) < 2:
            assert proc.poll() is None, "collection ended before it could be killed"
            assert time.monotonic() < deadline, "collection too slow to reach 2 episodes"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in data.episodes_on_disk(out)}
    assert 2 <= len(before) < 5
    # what a kill during a write leaves behind (the kill above may or may not have)
    (out / ".ep_train_0000004.npz.abcd.tmp").write_bytes(b"PK\x03\x04 half an episode")

    summary = collect("forest", "train", 5, out, noise=0.3, workers=1, progress=False)

    assert summary.skipped == len(before)
    assert summary.collected == 5 - len(before)
    assert summary.removed_partial >= 1
    assert not list(out.glob(".*"))
    files = data.episodes_on_disk(out)
    assert [p.name for p in files] == [data.episode_filename("train", s) for s in range(5)]
    for name, mtime in before.items():  # not flown again
        assert (out / name).stat().st_mtime_ns == mtime
    manifest = data.read_manifest(out)
    assert manifest["episodes"] == [p.name for p in files]
    assert manifest["produced_by"]["noise"]["std"] == 0.3
    episodes = data.load_dataset([out])
    assert sorted(ep.seed for ep in episodes) == list(range(5))


@pytest.mark.slow
def test_parallel_collection_equals_the_in_process_episode(tmp_path, env):
    summary = collect("forest", "train", [0, 3], tmp_path, noise=0.3, workers=2, progress=False)
    assert summary.collected == 2
    expert = expert_for_env(env)
    for seed in (0, 3):
        here = run_episode(env, seed, expert, noise=NoiseConfig(std=0.3))
        _same_but_render_ties(data.load_episode(tmp_path / data.episode_filename("train", seed)), here)


def test_cli_collect(tmp_path, capsys):
    rc = cli_main(["collect", "--family", "forest", "--split", "train", "--episodes", "1",
                   "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    assert "1 episodes collected" in capsys.readouterr().out
    ep = data.load_episode(tmp_path / data.episode_filename("train", 0))
    assert ep.termination == "success"
    # again: nothing to do
    assert cli_main(["collect", "--family", "forest", "--split", "train", "--episodes", "1",
                     "--out", str(tmp_path), "--quiet"]) == 0
    assert "0 episodes collected" in capsys.readouterr().out and len(data.episodes_on_disk(tmp_path)) == 1


def test_cli_collect_reports_a_bad_split(tmp_path, capsys):
    rc = cli_main(["collect", "--family", "forest", "--split", "nope", "--episodes", "1",
                   "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    assert "nope" in capsys.readouterr().err



def test_collection_records_its_camera_and_refuses_another(tmp_path):
    from lnn_nav.sim.camera import CameraConfig

    wide = CameraConfig(width=48, height=32, vfov_rad=1.0)
    collect("forest", "train", [0], tmp_path, camera=wide, progress=False)
    (ep,) = data.load_dataset([tmp_path])
    assert ep.frames.shape[1:] == (32, 48, 3)
    assert data.read_manifest(tmp_path)["produced_by"]["camera"] == {
        "width": 48, "height": 32, "vfov_rad": 1.0, "supersample": 1}
    with pytest.raises(ValueError, match="camera"):
        collect("forest", "train", [0, 1], tmp_path, progress=False)  # the default camera
    with pytest.raises(ValueError, match="supersample"):
        collect("forest", "train", [0, 1], tmp_path, camera=CameraConfig(
            width=48, height=32, vfov_rad=1.0, supersample=2), progress=False)


def test_a_camera_recorded_before_supersampling_counts_as_one_sample(tmp_path):
    from lnn_nav.sim.camera import CameraConfig

    cam = CameraConfig(width=32, height=32)
    collect("forest", "train", [0], tmp_path, camera=cam, progress=False)
    manifest = data.read_manifest(tmp_path)
    del manifest["produced_by"]["camera"]["supersample"]
    data.write_manifest(tmp_path, manifest["produced_by"])
    collect("forest", "train", [0, 1], tmp_path, camera=cam, progress=False)
    assert len(data.load_dataset([tmp_path])) == 2


def test_collection_without_a_recorded_camera_counts_as_the_old_default(tmp_path):
    import math

    from lnn_nav.sim.camera import CameraConfig

    collect("forest", "train", [0], tmp_path, progress=False)
    manifest = data.read_manifest(tmp_path)
    del manifest["produced_by"]["camera"]
    data.write_manifest(tmp_path, manifest["produced_by"])
    old = CameraConfig(width=64, height=64, vfov_rad=math.radians(60.0))
    collect("forest", "train", [0, 1], tmp_path, camera=old, progress=False)
    with pytest.raises(ValueError, match="camera"):
        collect("forest", "train", [0, 1], tmp_path, camera=CameraConfig(width=32, height=32),
                progress=False)


def test_a_learner_flies_behind_its_own_camera(tmp_path):
    from lnn_nav.models.encoder import EncoderConfig
    from lnn_nav.models.policy import NavPolicy, default_policy_config
    from lnn_nav.sim.camera import CameraConfig

    enc = EncoderConfig(image_size=(32, 48), vfov_rad=0.9, keypoints=8)
    path = NavPolicy(default_policy_config(0, encoder=enc)).save(tmp_path / "p.pt")
    out = tmp_path / "roll"
    collect("forest", "train", [0], out, learner_policy=path, beta=0.0, progress=False)
    assert data.load_dataset([out])[0].frames.shape[1:] == (32, 48, 3)
    assert data.read_manifest(out)["produced_by"]["camera"]["vfov_rad"] == 0.9
    with pytest.raises(ValueError, match="learner"):
        collect("forest", "train", [1], tmp_path / "other", learner_policy=path, beta=0.0,
                camera=CameraConfig(), progress=False)
    # the CLI takes the camera from a policy file
    assert cli_main(["collect", "--family", "forest", "--split", "train", "--episodes", "1",
                     "--out", str(tmp_path / "cli"), "--camera-of", str(path), "--quiet"]) == 0
    assert data.load_dataset([tmp_path / "cli"])[0].frames.shape[1:] == (32, 48, 3)
