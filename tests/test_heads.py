"""Heads behind one interface: protocol, dt handling, budgets, config round trip, CfC parity."""

from __future__ import annotations

import pytest
import torch

from lnn_nav.models.heads import (
    BUDGET_TOLERANCE,
    HEAD_KINDS,
    Head,
    HeadConfig,
    LTCTrainability,
    budget_count,
    build_head,
    ltc_dense_count,
    make_head,
    size_head,
)

I, O = 12, 4


@pytest.fixture(scope="module")
def heads() -> dict[str, torch.nn.Module]:
    return {kind: build_head(kind, I, O, budget=3000, seed=1) for kind in HEAD_KINDS}


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_protocol_shapes_and_zero_state(heads, kind):
    head = heads[kind]
    assert isinstance(head, Head)
    state = head.init_state(3)
    assert state.shape == (3, head.state_size) and state.dtype == torch.float32
    assert torch.count_nonzero(state) == 0
    x = torch.randn(3, 7, I)
    y, s_t = head(x, None, 1 / 30)
    assert y.shape == (3, 7, O) and s_t.shape == (3, head.state_size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_step_loop_equals_forward(heads, kind):
    head = heads[kind]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 9, I, generator=gen)
    dt = 1 / 30 * (0.5 + torch.rand(3, 9, generator=gen))
    y_seq, s_seq = head(x, None, dt)
    state = head.init_state(3)
    ys = []
    for t in range(9):
        y, state = head.step(x[:, t], state, dt[:, t : t + 1])
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), y_seq, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, s_seq, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_mixed_dt_batch_equals_each_sample_alone(heads, kind):
    head = heads[kind]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, I, generator=gen)
    dt = torch.tensor([1 / 60, 1 / 30, 1 / 10])  # one dt per sample, (B,)
    y_batch, _ = head(x, None, dt)
    for b in range(3):
        y_one, _ = head(x[b : b + 1], None, float(dt[b]))
        torch.testing.assert_close(y_batch[b : b + 1], y_one, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_dt_matters_exactly_for_heads_with_memory(heads, kind):
    head = heads[kind]
    x = torch.randn(2, 8, I, generator=torch.Generator().manual_seed(2))
    y_fast, _ = head(x, None, 1 / 60)
    y_slow, _ = head(x, None, 1 / 15)
    if kind == "mlp":  # memoryless: nothing to integrate over time
        torch.testing.assert_close(y_fast, y_slow)
    else:
        assert (y_fast - y_slow).abs().max() > 1e-4


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_bad_inputs_raise_value_error(heads, kind):
    head = heads[kind]
    with pytest.raises(ValueError, match=r"\(B, T, 12\)"):
        head(torch.randn(2, 3, I + 1), None, 1 / 30)
    with pytest.raises(ValueError, match="dt"):
        head(torch.randn(2, 3, I), None, torch.ones(5))
    with pytest.raises(ValueError, match="dt"):
        head(torch.randn(2, 3, I), None, -1.0)
    if head.state_size:
        with pytest.raises(ValueError, match="state"):
            head(torch.randn(2, 3, I), torch.zeros(2, head.state_size + 1), 1 / 30)


@pytest.mark.parametrize("input_size", [8, 64, 128])
@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_budget_helper_within_tolerance_of_ltc_dense_count(kind, input_size):
    target = ltc_dense_count(input_size, 34, O)  # the default budget
    config = size_head(kind, input_size, O, seed=0)
    head = make_head(config)
    counts = head.param_count()
    # LTC is the reference, counted densely; every other head by its effective count.
    measured = counts["dense"] if kind == "ltc" else counts["effective"]
    assert measured == budget_count(config)
    assert abs(measured - target) <= BUDGET_TOLERANCE * target, (kind, measured, target)
    assert counts["effective"] <= counts["dense"]
    trainable = sum(p.numel() for p in head.parameters() if p.requires_grad)
    assert counts["dense"] == trainable or kind in ("ltc", "cfc")


def test_budget_too_small_raises():
    with pytest.raises(ValueError, match="budget=50"):
        size_head("cfc", 64, 4, budget=50)
    with pytest.raises(ValueError, match="budget"):
        size_head("gru", 64, 4, budget=0)


def test_head_config_round_trip_and_validation():
    cfg = HeadConfig(kind="cfc", input_size=16, units=20, seed=3,
                     ltc=LTCTrainability(tau_range_s=(0.02, 0.5), lr_scale=(("output", 3.0),)))
    assert HeadConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="kind='tcn'"):
        HeadConfig(kind="tcn")
    with pytest.raises(ValueError, match="units=5"):
        HeadConfig(kind="ltc", units=5, output_size=4)
    with pytest.raises(ValueError, match="tau_range_s"):
        LTCTrainability(tau_range_s=(0.5, 0.1))
    with pytest.raises(ValueError, match="potential_scale=0"):
        LTCTrainability(potential_scale=0)
    with pytest.raises(ValueError, match="unknown_key"):
        HeadConfig.from_dict({"unknown_key": 1})


def test_same_config_same_head():
    cfg = size_head("ltc", I, O, budget=3000, seed=5)
    a, b = make_head(cfg), make_head(cfg)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_ltc_param_groups_apply_lr_scale():
    cfg = HeadConfig(kind="ltc", input_size=I, units=16,
                     ltc=LTCTrainability(lr_scale=(("output", 10.0),)))
    head = make_head(cfg)
    groups = head.param_groups(1e-3)
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["ltc.output_w"] == pytest.approx(1e-2) and lrs["ltc.cm"] == pytest.approx(1e-3)
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == head.param_count()["effective"]


def test_ltc_centring_is_an_exact_change_of_variables():
    """centre_state shifts the potentials so the zero initial state is the calibrated mean
    state m: the centred head from 0 behaves exactly like the uncentred one from m."""
    cfg = HeadConfig(kind="ltc", input_size=8, units=34, seed=1)
    centred = make_head(cfg)
    plain = make_head(HeadConfig.from_dict({**cfg.to_dict(), "ltc": {**cfg.ltc.to_dict(), "centre_state": False}}))
    m = (plain.ltc.vleak - centred.ltc.vleak).detach()
    assert m.abs().mean() > 0.1  # the calibrated mean state is far from 0: centring matters
    x = torch.randn(3, 20, 8, generator=torch.Generator().manual_seed(4))
    dt = torch.full((3, 20), 1 / 30) * torch.linspace(0.5, 2.0, 20)
    with torch.no_grad():
        y_c, h_c = centred(x, None, dt)
        y_p, h_p = plain(x, m.expand(3, -1).contiguous(), dt)
    torch.testing.assert_close(y_c, y_p, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(h_c + m, h_p, rtol=1e-4, atol=1e-4)
    # and the centred head starts at its operating point: outputs near their mean from step 0
    with torch.no_grad():
        y_u, _ = plain(x, None, dt)
    assert (y_c[:, 0] - y_c[:, -5:].mean(1)).abs().mean() < (y_u[:, 0] - y_u[:, -5:].mean(1)).abs().mean()
    with pytest.raises(ValueError, match="centre_state"):
        LTCTrainability(centre_state=1)


def test_ltc_sensory_switches_start_closed_and_relays_half_open():
    """sensory_offset moves the chosen share of sensory sigmoids above the input's
    range (steep, nearly closed on ordinary input, open on an excursion); the rest
    stay centred; with no offset the head is the default one, draw for draw."""
    trait = LTCTrainability(sensory_offset=2.0, sensory_gain_range=(2.0, 4.0), sensory_offset_fraction=0.5)
    cfg = HeadConfig(kind="ltc", input_size=8, units=34, seed=2, ltc=trait)
    ltc = make_head(cfg).ltc
    switch = ltc.sensory_mu > 1.0
    assert 0.3 < float(switch.float().mean()) < 0.7
    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0))
    u = (x * ltc.input_w + ltc.input_b)[:, ltc.sensory_src].detach()
    opening = torch.sigmoid(ltc.sensory_sigma * (u - ltc.sensory_mu)).detach()
    assert float(opening[:, switch].mean()) < 0.1
    assert 0.3 < float(opening[:, ~switch].mean()) < 0.7
    assert float(ltc.sensory_sigma[switch].min()) >= 2.0 > float(ltc.sensory_sigma[~switch].max())
    # a 3-std excursion opens a switch
    assert float(torch.sigmoid(ltc.sensory_sigma * (3.0 - ltc.sensory_mu))[switch].mean()) > 0.6
    assert LTCTrainability.from_dict(trait.to_dict()) == trait
    plain = make_head(HeadConfig(kind="ltc", input_size=8, units=34, seed=2))
    unmoved = make_head(HeadConfig(kind="ltc", input_size=8, units=34, seed=2,
                                   ltc=LTCTrainability(sensory_offset_fraction=0.5)))
    for (name, a), b in zip(plain.state_dict().items(), unmoved.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="sensory_offset_fraction=1.5"):
        LTCTrainability(sensory_offset_fraction=1.5)


def test_ltc_calibration_keeps_signal_alive_through_layers():
    """ncps's init at 30 Hz leaves motor neurons nearly deaf to the input; the head's does not."""
    from lnn_nav.models.ltc import LTC

    cfg = HeadConfig(kind="ltc", input_size=8, units=34, seed=0)
    head = make_head(cfg)
    naive = LTC(cfg.wiring(), seed=0)
    x = torch.randn(64, 40, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        y_head, _ = head(x, None, 1 / 30)
        y_naive, _ = naive(x, None, 1 / 30)
    # std across the batch at the last step: the input-dependent part of the output
    spread_head = y_head[:, -1].std(0) / head.ltc.output_w.abs()
    spread_naive = y_naive[:, -1].std(0)
    assert spread_head.mean() > 5 * spread_naive.mean()


def test_cfc_matches_ncps():
    ncps_torch = pytest.importorskip("ncps.torch")
    ncps_wirings = pytest.importorskip("ncps.wirings")
    from lnn_nav.models.cfc import CfCHead

    torch.manual_seed(0)
    ref = ncps_torch.CfC(8, ncps_wirings.AutoNCP(20, 3), batch_first=True)
    head = CfCHead.from_ncps(ref, time_unit_s=1.0)
    x = torch.randn(4, 30, 8, requires_grad=True)
    y_ref, s_ref = ref(x)
    y, s = head(x, None, 1.0)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s, s_ref, rtol=1e-5, atol=1e-6)
    g_ref = torch.autograd.grad(y_ref.sum(), x)[0]
    g = torch.autograd.grad(y.sum(), x)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)
    # irregular timespans: ncps mishandles batch > 1, so compare one sample at a time
    ts = 0.5 + torch.rand(1, 30)
    y_ref, _ = ref(x[:1], timespans=ts)
    y, _ = head(x[:1], None, ts)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)


def test_lag_sensitivity_shows_memory(heads):
    from lnn_nav.models.heads import gradient_norms, lag_sensitivity

    x = torch.randn(4, 12, I, generator=torch.Generator().manual_seed(3))
    mlp = lag_sensitivity(heads["mlp"], x)
    assert mlp.shape == (12,) and mlp[0] > 0 and torch.count_nonzero(mlp[1:]) == 0
    for kind in ("ltc", "cfc", "lstm", "gru"):
        prof = lag_sensitivity(heads[kind], x)
        assert prof[1:6].sum() > 1e-3 * prof.sum(), kind  # the past reaches the output
    y, _ = heads["gru"](x, None, 1 / 30)
    norms = gradient_norms(heads["gru"], (y**2).mean())
    assert set(norms) == {n for n, _ in heads["gru"].named_parameters()}
    assert all(v > 0 for v in norms.values())


def test_calibrated_ltc_hears_its_input_sooner_than_naive_ltc():
    """ncps's init at 30 Hz: the last output barely depends on the current input."""
    from lnn_nav.models.heads import lag_sensitivity
    from lnn_nav.models.ltc import LTC

    cfg = HeadConfig(kind="ltc", input_size=8, units=34, seed=0)
    x = torch.randn(32, 40, 8, generator=torch.Generator().manual_seed(4))
    head = make_head(cfg)
    naive = LTC(cfg.wiring(), seed=0)
    recent_head = lag_sensitivity(head, x)[:5].sum() / head.ltc.output_w.abs().mean()
    recent_naive = lag_sensitivity(naive, x)[:5].sum()
    assert recent_head > 10 * recent_naive
