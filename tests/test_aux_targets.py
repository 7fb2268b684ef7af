"""The auxiliary target-bearing loss: labels from the privileged state, the
policy's extra outputs, the loss they add, and that flight and export see
the commands alone (onnxruntime and gcc against torch)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from lnn_nav.aux_targets import BEARING_OUTPUTS, target_bearing
from lnn_nav.models.policy import (
    NavPolicy,
    PolicyConfig,
    baseline_policy_config,
    default_policy_config,
    random_frames,
)
from lnn_nav.train import BCConfig, WindowSampler, make_policy, sequence_loss

HFOV = math.radians(60.0)


def test_bearing_labels_and_mask_on_a_turn_on_the_spot(spinning_episode):
    ep = spinning_episode()
    labels, mask = target_bearing(ep, HFOV)
    off = math.pi / 2 - ep.yaw.astype(np.float64)  # + = left of the camera axis
    np.testing.assert_allclose(labels[:, 0], np.sin(off), atol=1e-6)
    np.testing.assert_allclose(labels[:, 1], np.cos(off), atol=1e-6)
    # inside +-30 deg from yaw = pi/2 - 30 deg: frame ceil(10.47) = 11; it leaves
    # the view again at yaw > pi/2 + 30 deg (frame 21), and the mask stays on
    first = int(np.argmax(np.abs(off) <= HFOV / 2 + 1e-9))
    assert first == 11
    assert mask[:first].sum() == 0 and mask[first:].min() == 1
    assert labels.dtype == np.float32 and labels.shape == (len(ep), BEARING_OUTPUTS)


@pytest.mark.parametrize("hfov", [0.0, -1.0, 7.0, float("nan")])
def test_bad_field_of_view_is_named(hfov, spinning_episode):
    with pytest.raises(ValueError, match="hfov_rad="):
        target_bearing(spinning_episode(), hfov)


def test_aux_outputs_must_match_the_head():
    cfg = default_policy_config(0, aux_outputs=2)
    assert cfg.head.output_size == 6 and cfg.head.units == 36
    sizes = {kind: len(ids) for kind, ids in cfg.head.wiring().layers}
    assert sizes == {"inter": 18, "command": 12, "motor": 6}
    with pytest.raises(ValueError, match=r"head.output_size=6: expected 4"):
        PolicyConfig(encoder=cfg.encoder, head=cfg.head)
    with pytest.raises(ValueError, match="aux_outputs=-1"):
        PolicyConfig(encoder=cfg.encoder, head=cfg.head, aux_outputs=-1)
    # a file written before aux_outputs existed has no such key
    old = default_policy_config(0).to_dict()
    del old["aux_outputs"]
    assert PolicyConfig.from_dict(old).aux_outputs == 0


@pytest.mark.parametrize("kind", ["ltc", "gru"])
def test_flight_sees_the_commands_alone(kind, tmp_path):
    torch.manual_seed(0)
    policy = NavPolicy(baseline_policy_config(kind, 0, aux_outputs=2)).eval()
    frames = random_frames(2, 6, policy.config.encoder, seed=3)
    with torch.no_grad():
        commands, aux, state_t = policy.forward_with_aux(frames)
        commands2, state2 = policy(frames)
        state = policy.init_state(2)
        steps = []
        for t in range(frames.shape[1]):
            cmd, state = policy.step(frames[:, t], state)
            steps.append(cmd)
    assert commands.shape == (2, 6, 4) and aux.shape == (2, 6, 2)
    torch.testing.assert_close(commands, commands2)
    torch.testing.assert_close(state_t, state2)
    torch.testing.assert_close(torch.stack(steps, 1), commands, atol=1e-5, rtol=0)
    loaded = NavPolicy.load(policy.save(tmp_path / "p.pt"))
    assert loaded.config.aux_outputs == 2


def test_loss_adds_the_masked_bearing_error(spinning_episode):
    policy = make_policy("ltc", 0, aux_outputs=2)
    cfg = BCConfig(batch_size=3, window=8, burn_in=4, aux_bearing_weight=0.5)
    sampler = WindowSampler([spinning_episode(16, s) for s in range(3)], cfg, policy.limits.scale())
    batch = sampler.draw(np.random.default_rng(0), 3, augment=False)
    assert batch.aux_mask.sum() > 0 and batch.aux_mask.sum() < batch.aux_mask.numel()

    torch.manual_seed(1)
    commands_only = sequence_loss(policy, batch)
    total = sequence_loss(policy, batch, aux_weight=0.5)
    # the same computation by hand, window by window
    aux_err, aux_n = 0.0, 0.0
    with torch.no_grad():
        for b in range(3):
            k = int(batch.no_grad_steps[b])
            state = None
            if k:
                _, state = policy(batch.frames[b : b + 1, :k], None, batch.dt[b : b + 1, :k])
            _, aux, _ = policy.forward_with_aux(batch.frames[b : b + 1, k:], state, batch.dt[b : b + 1, k:])
            m = (batch.weight[b, k:] * batch.aux_mask[b, k:]).unsqueeze(-1)
            aux_err += float(((aux[0] - batch.aux[b, k:]) ** 2 * m).sum())
            aux_n += float(m.sum()) * 2
    expected = float(commands_only.detach()) + 0.5 * aux_err / aux_n
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)

    policy.zero_grad()
    (total - commands_only).backward()
    out_w = policy.head.ltc.output_w.grad
    assert out_w[4:].abs().sum() > 0, "the aux loss trains the aux motor neurons"
    assert out_w[:4].abs().sum() == 0, "and not the command outputs' map"


def test_sampler_labels_follow_the_episode(spinning_episode):
    ep = spinning_episode(40)
    cfg = BCConfig(batch_size=4, window=8, burn_in=4, aux_bearing_weight=1.0)
    batch = WindowSampler([ep], cfg, np.ones(4, np.float32)).draw(np.random.default_rng(2), 4, False)
    labels, mask = target_bearing(ep, HFOV)
    frames = ep.frames.reshape(len(ep), -1)
    for b in range(4):
        # find where the window starts by its first frame
        begin = int(np.flatnonzero((frames == batch.frames[b, 0].numpy().reshape(-1)).all(1))[0])
        n = 0  # frames after the window's real ones are padding (the last one repeated)
        while n < min(len(ep) - begin, batch.frames.shape[1]) and np.array_equal(
                batch.frames[b, n].numpy(), ep.frames[begin + n]):
            n += 1
        np.testing.assert_array_equal(batch.aux[b, :n].numpy(), labels[begin : begin + n])
        np.testing.assert_array_equal(batch.aux_mask[b, :n].numpy(), mask[begin : begin + n])
    off = WindowSampler([ep], BCConfig(batch_size=4, window=8, burn_in=4), np.ones(4, np.float32))
    assert off.draw(np.random.default_rng(2), 4, False).aux.abs().sum() == 0


@pytest.mark.parametrize("weight", [-0.1, float("inf"), True])
def test_bad_aux_weight_is_named(weight):
    with pytest.raises(ValueError, match="aux_bearing_weight="):
        BCConfig(aux_bearing_weight=weight)


def test_onnx_export_of_an_aux_policy_gives_commands(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from lnn_nav.controller import PolicyController
    from lnn_nav.export.onnx_export import OnnxStep, export_onnx

    policy = make_policy("ltc", 0, aux_outputs=2).eval()
    runner = OnnxStep(export_onnx(policy, tmp_path / "p.onnx", PolicyController(policy).image_shape))
    image = random_frames(1, 1, policy.config.encoder, seed=5)[:, 0]
    state = policy.init_state(1)
    cmd_o, state_o = runner.step(image.numpy(), state.numpy(), np.array([[1 / 30]], np.float32))
    with torch.no_grad():
        cmd_t, state_t = policy.step(image, state, 1 / 30)
    assert cmd_o.shape == (1, 4)
    np.testing.assert_allclose(cmd_o, cmd_t.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(state_o, state_t.numpy(), atol=1e-5, rtol=0)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_c_export_of_an_aux_policy_returns_the_commands(tmp_path):
    from lnn_nav.export.c_codegen import (
        build_harness,
        generate_c,
        harness_source,
        run_harness,
        write_golden,
    )
    from lnn_nav.export.head_spec import golden_from_features, head_spec

    policy = make_policy("ltc", 0, aux_outputs=2).eval()
    spec = head_spec(policy)
    assert spec.sizes == (120, 36, 4)
    frames = random_frames(1, 60, policy.config.encoder, seed=7)[0]
    golden = golden_from_features(policy, frames, np.full(60, 1 / 30, np.float32))
    with torch.no_grad():
        state, cmds = policy.init_state(1), []
        for t in range(60):
            cmd, state = policy.step(frames[t : t + 1], state, 1 / 30)
            cmds.append(cmd[0])
    np.testing.assert_allclose(golden.outputs, torch.stack(cmds).numpy(), atol=1e-4, rtol=0)
    src = generate_c(spec)
    (tmp_path / "ltc_head.h").write_text(src.header)
    (tmp_path / "ltc_head.c").write_text(src.source)
    (tmp_path / "ltc_head_harness.c").write_text(harness_source())
    write_golden(tmp_path / "golden.bin", golden)
    result = run_harness(build_harness(tmp_path, tmp_path / "h"), tmp_path / "golden.bin")
    assert result.passed, result.output
