"""NavPolicy: commands within limits, step == forward, save/load round trip, corruption, ONNX step."""

from __future__ import annotations

import zipfile

import pytest
import torch

from lnn_nav.command import CommandLimits
from lnn_nav.models.heads import HEAD_KINDS, ltc_dense_count
from lnn_nav.models.policy import (
    NavPolicy,
    PolicyConfig,
    PolicyFileError,
    baseline_policy_config,
    default_policy_config,
    default_wiring,
    random_frames,
)


@pytest.fixture(scope="module")
def policy() -> NavPolicy:
    return NavPolicy(default_policy_config(seed=0)).eval()


def test_default_policy_counts(policy):
    counts = policy.param_count()
    assert counts["head"]["dense"] == ltc_dense_count(120, 34, 4) == 21_294
    assert counts["head"]["effective"] < counts["head"]["dense"]
    assert counts["encoder"] <= 30_000
    wiring = default_wiring()
    assert [len(ids) for _, ids in wiring.layers] == [18, 12, 4]
    assert "21,294 dense" in policy.describe()
    assert "+ presence -> 120 features" in policy.describe()


def test_commands_bounded_and_step_equals_forward(policy):
    frames = random_frames(2, 6, policy.config.encoder, seed=2)
    dt = torch.tensor([[1 / 30] * 6, [1 / 15] * 6])
    with torch.no_grad():
        cmds, state_t = policy(frames, None, dt)
        state = policy.init_state(2)
        for t in range(6):
            cmd, state = policy.step(frames[:, t], state, dt[:, t])
    assert cmds.shape == (2, 6, 4)
    scale = torch.tensor(CommandLimits().scale(), dtype=torch.float32)
    assert (cmds.abs() <= scale).all()
    torch.testing.assert_close(cmd, cmds[:, -1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, state_t, rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_mismatch():
    cfg = baseline_policy_config("gru", seed=1)
    assert PolicyConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="head.input_size=64 and encoder.feature_size=120"):
        PolicyConfig(head={**cfg.head.to_dict(), "input_size": 64})


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_save_load_round_trip(tmp_path, kind):
    policy = NavPolicy(baseline_policy_config(kind, seed=3))
    path = policy.save(tmp_path / f"{kind}.pt")
    loaded = NavPolicy.load(path)
    assert loaded.config == policy.config
    frames = random_frames(1, 4, policy.config.encoder, seed=4)
    with torch.no_grad():
        a, sa = policy(frames, None, 1 / 30)
        b, sb = loaded(frames, None, 1 / 30)
    assert torch.equal(a, b) and torch.equal(sa, sb)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file


def test_truncated_file_names_file_and_fault(tmp_path, policy):
    path = policy.save(tmp_path / "p.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PolicyFileError, match=r"p\.pt: truncated or corrupt"):
        NavPolicy.load(path)


def test_tampered_weights_detected(tmp_path, policy):
    path = policy.save(tmp_path / "p.pt")
    # Rewrite one weight inside the zip (a valid file, so only the digest can tell).
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["encoder.conv.0.weight"][0, 0, 0, 0] += 0.5
    torch.save(payload, path)
    with pytest.raises(PolicyFileError, match=r"p\.pt: weights SHA-256 mismatch"):
        NavPolicy.load(path)


def test_flipped_byte_detected(tmp_path, policy):
    path = policy.save(tmp_path / "p.pt")
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)  # the largest tensor record
    data = bytearray(path.read_bytes())
    offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 100
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PolicyFileError, match=r"p\.pt: (weights SHA-256 mismatch|truncated or corrupt)"):
        NavPolicy.load(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(PolicyFileError, match="no such policy file"):
        NavPolicy.load(tmp_path / "absent.pt")
    other = tmp_path / "other.pt"
    torch.save({"hello": torch.zeros(1)}, other)
    with pytest.raises(PolicyFileError, match="not an lnn_nav policy file"):
        NavPolicy.load(other)


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_step_exports_to_onnx(tmp_path, kind):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    policy = NavPolicy(baseline_policy_config(kind, seed=5)).eval()
    frames = random_frames(1, 3, policy.config.encoder, seed=6)
    state = policy.init_state(1)
    dt = torch.full((1, 1), 1 / 30)
    path = tmp_path / "step.onnx"
    torch.onnx.export(
        _Step(policy), (frames[:, 0], state, dt), str(path), dynamo=False,
        input_names=["image", "state", "dt"], output_names=["command", "state_out"], opset_version=17)
    sess = ort.InferenceSession(str(path))
    s_torch, s_onnx = state, state.numpy()
    for t in range(3):
        with torch.no_grad():
            c_torch, s_torch = policy.step(frames[:, t], s_torch, dt)
        # the memoryless head keeps an empty (1, 0) state input but ignores dt, which the
        # exporter then drops from the graph: feed each graph the inputs it declares
        feed = {"image": frames[:, t].numpy(), "state": s_onnx, "dt": dt.numpy()}
        c_onnx, s_onnx = sess.run(None, {i.name: feed[i.name] for i in sess.get_inputs()})
        torch.testing.assert_close(torch.from_numpy(c_onnx), c_torch, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(s_onnx), s_torch, rtol=1e-4, atol=1e-5)


class _Step(torch.nn.Module):
    def __init__(self, policy: NavPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, image, state, dt):
        return self.policy.step(image, state, dt)


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_param_groups_cover_every_parameter_once(kind):
    policy = NavPolicy(baseline_policy_config(kind, seed=0))
    groups = policy.param_groups(1e-3)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in policy.parameters() if p.requires_grad}
    torch.optim.Adam(groups, lr=1e-3)  # accepted as given
