"""scripts/command_fit.py: the per-axis figures on known commands, and a run over
episodes on disk."""

import json

import numpy as np
import pytest

from conftest import load_script, spinning_episode
from lnn_nav.data import save_episode, write_manifest
from lnn_nav.train import make_policy


def test_a_shrunk_copy_has_that_gain_and_agrees_in_sign():
    mod = load_script("command_fit")
    label = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 0.1])
    f = mod.fit(0.3 * label, label, large=0.3)
    assert f["gain"] == pytest.approx(0.3)
    assert f["large_frames"] == 4
    assert f["large_magnitude_ratio"] == pytest.approx(0.3)
    assert f["large_sign_agreement"] == 1.0
    # explained: 1 - mean((0.7 label)^2) / var(label)
    assert f["explained"] == pytest.approx(1 - np.mean((0.7 * label) ** 2) / np.var(label))
    exact = mod.fit(label, label, large=0.3)
    assert exact["gain"] == pytest.approx(1.0) and exact["explained"] == pytest.approx(1.0)
    flipped = mod.fit(-label, label, large=0.3)
    assert flipped["large_sign_agreement"] == 0.0 and flipped["gain"] == pytest.approx(-1.0)


def test_between_modes_is_a_creep_with_half_a_turn_either_way():
    mod = load_script("command_fit")
    commands = np.array([
        [0.0, 0.0, 0.0, 1.2],    # search: turning on the spot
        [1.5, 0.0, 0.0, 0.1],    # flight
        [0.3, 0.0, 0.0, 0.6],    # between
        [0.3, 0.1, 0.0, -0.6],   # between, turning the other way
        [0.3, 0.0, 0.0, 1.2],    # a full-rate turn while creeping: not half a turn
    ])
    assert mod.between_modes(commands) == pytest.approx(2 / 5)
    assert np.isnan(mod.between_modes(np.zeros((0, 4))))


def test_without_large_labels_the_large_figures_are_nan():
    f = load_script("command_fit").fit(np.zeros(5), np.full(5, 0.1), large=0.3)
    assert f["large_frames"] == 0 and np.isnan(f["large_sign_agreement"])


def test_runs_over_episodes_on_disk(tmp_path, capsys):
    mod = load_script("command_fit")
    (tmp_path / "eps").mkdir()
    for seed in range(2):
        save_episode(tmp_path / "eps", spinning_episode(10, seed=seed))
    write_manifest(tmp_path / "eps", {"test": "spinning episodes"})
    policy = make_policy("ltc", 0)
    path = policy.save(tmp_path / "p.pt")
    assert mod.main([str(path), "--data", str(tmp_path / "eps")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report[str(path)]) == {"forward", "left", "up", "yaw_rate", "between_modes"}
    # a spin on the spot is a mode, not between modes
    assert report["expert"]["between_modes"] == 0.0
    # the label turns at 1.2 rad/s on every frame: all 20 are large on that axis
    assert report[str(path)]["yaw_rate"]["large_frames"] == 20


def test_refuses_a_missing_directory(tmp_path):
    with pytest.raises(SystemExit, match="not a directory"):
        load_script("command_fit").main(["p.pt", "--data", str(tmp_path / "none")])
