"""ONNX export of the whole step (parity with torch over a closed-loop
simulator episode, dynamic batch) and the export bundle (metadata, hashes,
--verify catching a modified, missing or unlisted file)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lnn_nav.cli import main as cli_main
from lnn_nav.command import CommandLimits
from lnn_nav.controller import PolicyController
from lnn_nav.export.bundle import (
    METADATA_NAME,
    export_bundle,
    read_metadata,
    record_sim_frames,
    sha256_file,
    verify_bundle,
)
from lnn_nav.export.head_spec import reference_backend
from lnn_nav.export.onnx_export import INPUT_NAMES, OUTPUT_NAMES, OnnxStep, export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def default_policy():
    policy_mod = pytest.importorskip("lnn_nav.models.policy")
    torch.manual_seed(0)
    return policy_mod.NavPolicy(policy_mod.default_policy_config()).eval()


@pytest.fixture(scope="module")
def policy():
    return default_policy()


@pytest.fixture(scope="module")
def onnx_path(policy, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "policy.onnx"
    shape = PolicyController(policy).image_shape
    return export_onnx(policy, path, shape)


def test_graph_has_named_inputs_and_outputs(onnx_path, policy):
    import onnx

    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    assert tuple(i.name for i in model.graph.input) == INPUT_NAMES
    assert tuple(o.name for o in model.graph.output) == OUTPUT_NAMES
    runner = OnnxStep(onnx_path)
    assert runner.state_size == policy.init_state(1).shape[1]
    assert runner.image_shape == PolicyController(policy).image_shape


def test_onnx_batch_with_mixed_dt_matches_torch(onnx_path, policy):
    runner = OnnxStep(onnx_path)
    h, w, _ = runner.image_shape
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    state = policy.init_state(3).numpy() + rng.normal(0, 0.1, (3, runner.state_size)).astype(
        np.float32
    )
    dt = np.array([[0.02], [1 / 30], [0.1]], np.float32)
    cmd_o, state_o = runner.step(image, state, dt)
    with torch.no_grad():
        cmd_t, state_t = policy.step(
            torch.from_numpy(image), torch.from_numpy(state), torch.from_numpy(dt)
        )
    np.testing.assert_allclose(cmd_o, cmd_t.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(state_o, state_t.numpy(), atol=1e-5, rtol=0)
    # dt matters (the graph did not freeze the traced dt)
    assert np.abs(state_o[0] - state_o[2]).max() > 1e-4 or np.abs(cmd_o[0] - cmd_o[2]).max() > 1e-4


@pytest.mark.slow
def test_onnx_matches_torch_over_500_step_closed_loop_episode(onnx_path, policy):
    """The policy flies the simulator through PolicyController (torch); at every
    frame the ONNX graph, fed its own state, must give the same command and
    state within 1e-5.

    Torch runs the LTC's reference solver, the path the graph is a trace of;
    the optional C++ kernel (a polynomial exp, ~1 ulp) drifts from it by about
    1e-5 over 500 steps, which the LTC's own tests bound, not this one."""
    import gymnasium as gym

    import lnn_nav.sim  # noqa: F401

    env = gym.make("lnn_nav/FlyToTarget-v0", family="forest", split="train")
    runner = OnnxStep(onnx_path)
    ctrl = PolicyController(policy)
    limits: CommandLimits = env.unwrapped.limits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one frame at a time: a second thread only contends
    try:
        with reference_backend(policy):
            errs = _fly(env, runner, ctrl, limits)
    finally:
        torch.set_num_threads(threads)
        env.close()
    max_err, moved = errs
    assert moved > 0.0  # the policy commanded something
    assert max_err <= 1e-5, max_err


def _fly(env, runner, ctrl, limits) -> tuple[float, float]:
    seed = 0
    obs, _ = env.reset(seed=seed)
    state_o = runner.init_state(1)
    max_err = 0.0
    moved = 0.0
    for _ in range(500):
        dt = float(obs["dt"][0])
        cmd = ctrl.step(obs["image"], dt)
        cmd_o, state_o = runner.step(obs["image"][None], state_o, np.array([[dt]], np.float32))
        max_err = max(
            max_err,
            float(np.abs(cmd_o[0] - ctrl.raw_command).max()),
            float(np.abs(state_o[0] - ctrl.state[0].numpy()).max()),
        )
        moved = max(moved, float(np.abs(ctrl.raw_command).max()))
        obs, _, terminated, truncated, _ = env.step(limits.to_normalized(cmd))
        if terminated or truncated:
            seed += 1
            obs, _ = env.reset(seed=seed)
            ctrl.reset()
            state_o = runner.init_state(1)
    return max_err, moved


@pytest.fixture(scope="module")
def bundle(policy, tmp_path_factory):
    frames, dt = record_sim_frames(policy, steps=60, seed=3)
    out = tmp_path_factory.mktemp("bundle") / "b"
    return export_bundle(policy, out, frames, dt, policy_name="fresh-default")


def test_bundle_contents_and_metadata(bundle, policy):
    meta = read_metadata(bundle)
    names = set(meta["files"])
    assert {"policy.onnx", "onnx_golden.npz", "README.md"} <= names
    assert {"ltc_head.c", "ltc_head.h", "ltc_head_harness.c", "golden.bin"} <= names
    for name, entry in meta["files"].items():
        assert entry["sha256"] == sha256_file(bundle / name)
    shape = PolicyController(policy).image_shape
    assert (meta["image"]["height"], meta["image"]["width"]) == shape[:2]
    assert meta["image"]["channel_order"] == "RGB"
    assert meta["action"]["frame"] == "body FLU"
    assert meta["action"]["limits"] == policy.limits.to_dict()
    assert meta["state_size"] == policy.init_state(1).shape[1]
    assert meta["c_head"]["golden_steps"] == 60
    from importlib.metadata import version

    assert meta["versions"]["torch"] == version("torch")
    readme = (bundle / "README.md").read_text()
    for needle in ("ltc_head_step", "onnxruntime", "body FLU", "flight controller"):
        assert needle in readme


def test_verify_passes_and_catches_tampering(bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    report = verify_bundle(copy)
    assert report.ok, report.problems
    assert any("C golden vectors" in c for c in report.checks)
    assert any("ONNX golden frames" in c for c in report.checks)
    assert cli_main(["export", "--verify", str(copy)]) == 0

    # one changed constant in the C source
    c_file = copy / "ltc_head.c"
    text = c_file.read_text()
    c_file.write_text(text.replace("f,", "1f,", 1))
    report = verify_bundle(copy)
    assert not report.ok
    assert any("ltc_head.c: SHA-256" in p and "modified" in p for p in report.problems)
    assert cli_main(["export", "--verify", str(copy)]) == 1
    c_file.write_text(text)
    assert verify_bundle(copy).ok

    (copy / "extra.bin").write_bytes(b"x")
    assert any("extra.bin: in the bundle but not listed" in p for p in verify_bundle(copy).problems)
    (copy / "extra.bin").unlink()
    (copy / "golden.bin").unlink()
    assert any("golden.bin: listed" in p for p in verify_bundle(copy).problems)


def test_verify_reruns_golden_vectors_against_metadata_consistent_tampering(bundle, tmp_path):
    """A golden file altered *and* re-hashed passes the hash check, so only the
    replay can catch it."""
    import shutil

    from lnn_nav.export.bundle import write_metadata
    from lnn_nav.export.c_codegen import read_golden, write_golden

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    g = read_golden(copy / "golden.bin")
    outputs = g.outputs.copy()
    outputs[10, 0] += 0.01
    write_golden(copy / "golden.bin", g._replace(outputs=outputs))
    meta = json.loads((copy / METADATA_NAME).read_text())
    files = list(meta.pop("files"))
    meta.pop("schema")
    write_metadata(copy, meta, files)
    report = verify_bundle(copy)
    assert not report.ok
    assert any("C golden vectors" in p for p in report.problems)


def test_export_refuses_a_foreign_directory(policy, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    frames = np.zeros((2, *PolicyController(policy).image_shape), np.uint8)
    with pytest.raises(ValueError, match="not a bundle"):
        export_bundle(policy, tmp_path, frames, np.full(2, 1 / 30, np.float32))
    with pytest.raises(ValueError, match="frames"):
        export_bundle(policy, tmp_path / "new", frames[:, :5], np.full(2, 1 / 30, np.float32))


@pytest.mark.slow
def test_cli_export_then_verify(policy, tmp_path, capsys):
    """`lnn-nav export --policy P --out DIR` on a saved checkpoint (golden frames
    from a closed-loop simulator episode), then `lnn-nav export --verify DIR`."""
    ckpt = policy.save(tmp_path / "policy.pt")
    out = tmp_path / "bundle"
    rc = cli_main(["export", "--policy", str(ckpt), "--out", str(out), "--golden-steps", "40"])
    assert rc == 0
    meta = read_metadata(out)
    assert meta["policy"]["sha256"] == sha256_file(ckpt)
    assert meta["c_head"]["golden_steps"] == 40
    assert cli_main(["export", "--verify", str(out)]) == 0
    assert "verified" in capsys.readouterr().out
    # exporting again over the same bundle replaces it
    assert cli_main(["export", "--policy", str(ckpt), "--out", str(out), "--golden-steps", "20"]) == 0
    assert read_metadata(out)["c_head"]["golden_steps"] == 20
    assert cli_main(["export", "--policy", str(ckpt)]) == 2  # --out missing: a ValueError
