"""LTC: parity with ncps, both backends, mixed dt, step/sequence agreement, ONNX,
positivity under aggressive training, parameter counts, export arrays, validation."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from lnn_nav.models import _ltc_kernel
from lnn_nav.models.ltc import LTC, LTCInit
from lnn_nav.models.wiring import NCP, AutoNCP

ncps_torch = pytest.importorskip("ncps.torch")
ncps_wirings = pytest.importorskip("ncps.wirings")

KERNEL = _ltc_kernel.available()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run each test on one intra-op thread. The results do not depend on it (tested
    below), but on a busy 2-core machine an OpenMP barrier waiting for a descheduled
    second thread made each tiny op crawl: one 8-sub-step training step of the torch
    path took 1.1 s at 2 threads against 5 ms at 1 (measured while other jobs ran)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
BACKENDS = ["torch", pytest.param("kernel", marks=pytest.mark.skipif(
    not KERNEL, reason="C++ compiler unavailable"))]


def ncps_pair(seed: int, inputs: int = 32, units: int = 48, outputs: int = 4, backend="torch"):
    torch.manual_seed(seed)  # ncps draws its initial values from the global generator
    ref = ncps_torch.LTC(inputs, ncps_wirings.AutoNCP(units, outputs))
    return ref, LTC.from_ncps(ref, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_parity_with_ncps_outputs_and_gradients(backend):
    ref, ltc = ncps_pair(0, backend=backend)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 50, 32, generator=gen)
    h0 = 0.3 * torch.randn(4, 48, generator=gen)
    x_ref = x.clone().requires_grad_(True)
    x_new = x.clone().requires_grad_(True)
    y_ref, h_ref = ref(x_ref, h0)
    y_new, h_new = ltc(x_new, h0, 1.0)  # ncps's implicit step is 1 s
    torch.testing.assert_close(y_new, y_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(h_new, h_ref, atol=1e-5, rtol=0)
    # a loss touching every output and the final state
    w_out = torch.randn(4, 50, 4, generator=gen)
    loss_ref = (y_ref * w_out).sum() + h_ref.square().sum()
    loss_new = (y_new * w_out).sum() + h_new.square().sum()
    (g_ref,) = torch.autograd.grad(loss_ref, x_ref)
    (g_new,) = torch.autograd.grad(loss_new, x_new)
    rel = (g_new - g_ref).abs().max() / g_ref.abs().max()
    assert rel < 1e-4, f"input gradient relative error {rel:.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameter_gradients_match_ncps_on_edges(backend):
    ref, ltc = ncps_pair(3, inputs=6, units=12, outputs=2, backend=backend)
    x = torch.randn(3, 7, 6, generator=torch.Generator().manual_seed(2))
    y_ref, _ = ref(x)
    y_new, _ = ltc(x)
    y_ref.square().sum().backward()
    y_new.square().sum().backward()
    p = ref.rnn_cell._params
    src, tgt, ssrc, stgt = ltc.src, ltc.tgt, ltc.sensory_src, ltc.sensory_tgt
    for name in ("w", "erev", "mu", "sigma"):
        torch.testing.assert_close(getattr(ltc, name).grad, p[name].grad[src, tgt],
                                   rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(getattr(ltc, "sensory_" + name).grad,
                                   p["sensory_" + name].grad[ssrc, stgt], rtol=1e-4, atol=1e-6)
    for name in ("gleak", "vleak", "cm", "input_w", "input_b", "output_w", "output_b"):
        torch.testing.assert_close(getattr(ltc, name).grad, p[name].grad, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not KERNEL, reason="C++ compiler unavailable")
def test_kernel_matches_torch_backend_in_float64_including_dt_and_state_grads():
    torch.manual_seed(0)
    ltc = LTC(NCP(5, 4, 3, 2, 2, 2, 3, 2, seed=3), ode_unfolds=3, seed=4).double()
    twin = LTC.from_dict(ltc.to_dict(), backend="torch").double()
    twin.load_state_dict(ltc.state_dict())
    ltc.backend = "kernel"
    gen = torch.Generator().manual_seed(5)
    # B = 19 spans two 8-lane chunks with padding; dt per sample and step
    x = torch.randn(19, 6, 5, generator=gen, dtype=torch.float64)
    h0 = torch.randn(19, 9, generator=gen, dtype=torch.float64)
    dt = 0.02 + 0.2 * torch.rand(19, 6, generator=gen, dtype=torch.float64)
    results = []
    for model in (ltc, twin):
        xs, hs, ds = (t.clone().requires_grad_(True) for t in (x, h0, dt))
        y, h = model(xs, hs, ds)
        loss = (y * torch.linspace(-1, 1, 6 * 2, dtype=torch.float64).reshape(6, 2)).sum() \
            + (h * h).sum()
        grads = torch.autograd.grad(loss, [xs, hs, ds, *model.parameters()])
        results.append((y, h, grads))
    (y1, h1, g1), (y2, h2, g2) = results
    torch.testing.assert_close(y1, y2, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(h1, h2, atol=1e-12, rtol=1e-10)
    names = ["x", "h0", "dt"] + [n for n, _ in ltc.named_parameters()]
    for name, a, b in zip(names, g1, g2):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8, msg=f"gradient of {name}")


@pytest.mark.skipif(not KERNEL, reason="C++ compiler unavailable")
def test_kernel_results_do_not_depend_on_thread_count():
    ltc = LTC(AutoNCP(6, 12, 2), seed=1, backend="kernel")
    x = torch.randn(40, 9, 6, generator=torch.Generator().manual_seed(0))  # 3 chunks of 16
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            ltc.zero_grad()
            y, h = ltc(x.clone().requires_grad_(True), None, 0.05)
            (y.square().sum() + h.sum()).backward()
            results.append((y.detach(), [p.grad.clone() for p in ltc.parameters()]))
    finally:
        torch.set_num_threads(before)
    (y1, g1), (y3, g3) = results
    assert torch.equal(y1, y3)
    assert all(torch.equal(a, b) for a, b in zip(g1, g3))


@pytest.mark.skipif(not KERNEL, reason="C++ compiler unavailable")
def test_kernel_gradcheck():
    ltc = LTC(NCP(3, 3, 2, 2, 2, 2, 2, 1, seed=1), ode_unfolds=2, seed=2,
              backend="kernel").double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    dt = (0.1 + torch.rand(2, 3, generator=gen, dtype=torch.float64)).requires_grad_(True)
    # the kernel's own inputs: effective (positive where required) parameters
    eff = [p.detach().clone().requires_grad_(True) for p in ltc._effective()]
    structure = ltc._structure()

    def fn(x, h0, dt, *ps):
        return _ltc_kernel.ltc_sequence(x, h0, dt, ps, structure)

    assert torch.autograd.gradcheck(fn, (x, h0, dt, *eff), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_dt_batch_equals_each_sample_alone(backend):
    ltc = LTC(AutoNCP(8, 16, 3), seed=0, backend=backend)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 12, 8, generator=gen)
    h0 = torch.randn(5, 16, generator=gen) * 0.2
    dt = torch.tensor([1 / 30, 1 / 10, 0.5, 1.0, 0.002])  # (B,): per sample
    dt_bt = dt[:, None] * (0.5 + torch.rand(5, 12, generator=gen))  # (B, T): irregular
    for d in (dt, dt_bt):
        with torch.no_grad():
            y, h = ltc(x, h0, d)
            for b in range(5):
                yb, hb = ltc(x[b:b + 1], h0[b:b + 1], d[b:b + 1])
                if backend == "kernel":
                    # lanes are computed independently: bit-for-bit the same
                    assert torch.equal(yb[0], y[b]) and torch.equal(hb[0], h[b])
                else:
                    # BLAS may block a (1, E) and a (5, E) matmul differently
                    torch.testing.assert_close(yb[0], y[b], atol=1e-6, rtol=0)
                    torch.testing.assert_close(hb[0], h[b], atol=1e-6, rtol=0)
    # and the dt actually matters
    with torch.no_grad():
        assert not torch.allclose(ltc(x, h0, 0.01)[0], ltc(x, h0, 1.0)[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sequence_and_step_agree(backend):
    ltc = LTC(AutoNCP(6, 12, 2), seed=3, backend=backend)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 20, 6, generator=gen)
    dt = 0.01 + 0.1 * torch.rand(3, 20, generator=gen)
    with torch.no_grad():
        y_seq, h_seq = ltc(x, None, dt)
        h = ltc.init_state(3)
        ys = []
        for t in range(20):
            y_t, h = ltc.step(x[:, t], h, dt[:, t:t + 1])
            ys.append(y_t)
    y_steps = torch.stack(ys, 1)
    if backend == "kernel":
        assert torch.equal(y_steps, y_seq) and torch.equal(h, h_seq)
    else:
        torch.testing.assert_close(y_steps, y_seq, atol=1e-6, rtol=0)
        torch.testing.assert_close(h, h_seq, atol=1e-6, rtol=0)
    # the grad path (autograd function) gives the same numbers as the no-grad path
    y_g, _ = ltc(x.requires_grad_(True), None, dt)
    torch.testing.assert_close(y_g.detach(), y_seq, atol=1e-6, rtol=0)


def test_onnx_step_export_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    ltc = LTC(AutoNCP(10, 14, 3), seed=5).eval()

    class Step(torch.nn.Module):
        def __init__(self, ltc):
            super().__init__()
            self.ltc = ltc

        def forward(self, x, h, dt):
            return self.ltc.step(x, h, dt)

    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 10, generator=gen)
    h = torch.randn(2, 14, generator=gen) * 0.3
    dt = torch.tensor([[1 / 30], [1 / 15]])
    buf = io.BytesIO()
    torch.onnx.export(Step(ltc), (x, h, dt), buf, dynamo=False, input_names=["x", "h", "dt"],
                      output_names=["y", "h_next"], opset_version=17,
                      dynamic_axes={"x": {0: "B"}, "h": {0: "B"}, "dt": {0: "B"}})
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for b in (2, 5):
        xb = torch.randn(b, 10, generator=gen)
        hb = torch.randn(b, 14, generator=gen) * 0.3
        db = 0.01 + torch.rand(b, 1, generator=gen) * 0.1
        y_o, h_o = sess.run(None, {"x": xb.numpy(), "h": hb.numpy(), "dt": db.numpy()})
        with torch.no_grad():
            y_t, h_t = ltc.step(xb, hb, db)
        np.testing.assert_allclose(y_o, y_t.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(h_o, h_t.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend,steps,unfolds", [
    # the autograd-graph path is slower: fewer time steps and unfolds, same 500 updates
    pytest.param("torch", 4, 2),
    pytest.param("kernel", 10, 6, marks=pytest.mark.skipif(
        not KERNEL, reason="C++ compiler unavailable")),
])
def test_500_steps_at_lr_0_05_stay_finite(backend, steps, unfolds):
    torch.manual_seed(0)
    ltc = LTC(AutoNCP(4, 10, 2), ode_unfolds=unfolds, seed=0, backend=backend)
    opt = torch.optim.Adam(ltc.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, steps, 4, generator=gen) * 3.0
    target = torch.cumsum(x[..., :2], dim=1) * 0.3  # needs memory
    losses = []
    for _ in range(500):
        y, _ = ltc(x, None, 0.05)
        loss = (y - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert all(torch.isfinite(p).all() for p in ltc.parameters())
    pos = ltc.positive_params()
    assert all((v > 0).all() for v in pos.values())
    assert min(losses[-20:]) < 0.7 * losses[0]  # it did train


def test_param_counts_match_ncps_and_the_paper():
    torch.manual_seed(0)
    ref = ncps_torch.LTC(128, ncps_wirings.AutoNCP(34, 4))
    ltc = LTC.from_ncps(ref)
    counts = ltc.param_count()
    assert counts["dense"] == sum(p.numel() for p in ref.parameters() if p.requires_grad) == 22398
    e, es = ltc.num_synapses, ltc.num_sensory_synapses
    assert counts["effective"] == 3 * 34 + 4 * (e + es) + 2 * 128 + 2 * 4
    assert counts["effective"] == sum(p.numel() for p in ltc.parameters())
    assert counts["effective"] < counts["dense"] / 3


def _numpy_step(a: dict, x: np.ndarray, v: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """The step documented in LTC.export_arrays, written from the docstring in float64."""

    def sig(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    u = x * a["input_w"] + a["input_b"]
    n = v.shape[0]
    s_act = a["sensory_w"] * sig(a["sensory_sigma"] * (u[a["sensory_src"]] - a["sensory_mu"]))
    s_num = np.bincount(a["sensory_tgt"], s_act * a["sensory_erev"], minlength=n)
    s_den = np.bincount(a["sensory_tgt"], s_act, minlength=n)
    k = int(a["ode_unfolds"])
    cmt = a["cm"] / (dt / k)
    for _ in range(k):
        act = a["w"] * sig(a["sigma"] * (v[a["src"]] - a["mu"]))
        r_num = np.bincount(a["tgt"], act * a["erev"], minlength=n)
        r_den = np.bincount(a["tgt"], act, minlength=n)
        v = (cmt * v + a["gleak"] * a["vleak"] + (r_num + s_num)) / (
            cmt + a["gleak"] + (r_den + s_den) + float(a["epsilon"]))
    o = int(a["sizes"][2])
    return v[:o] * a["output_w"] + a["output_b"], v


def test_export_arrays_describe_the_step():
    ltc = LTC(AutoNCP(7, 15, 3), seed=8)
    a = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v)
         for k, v in ltc.export_arrays().items()}
    assert (a["w"] > 0).all() and (a["sensory_w"] > 0).all()
    assert (a["cm"] > 0).all() and (a["gleak"] > 0).all()
    assert a["src"].dtype == np.int32 and a["sensory_src"].shape == (ltc.num_sensory_synapses,)
    np.testing.assert_array_equal(a["sizes"], [7, 15, 3])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, generator=gen)
    h = torch.randn(15, generator=gen) * 0.2
    with torch.no_grad():
        y_t, h_t = ltc.step(x[None], h[None], 0.05)
    y_n, h_n = _numpy_step(a, x.double().numpy(), h.double().numpy(), 0.05)
    np.testing.assert_allclose(y_n, y_t[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(h_n, h_t[0].numpy(), atol=1e-5)


def test_round_trip_of_architecture_and_weights():
    init = LTCInit(cm=(-3.0, -2.0), gleak=(0.5, 1.0), input_w=0.5)
    ltc = LTC(AutoNCP(5, 11, 2, seed=4), ode_unfolds=4, init=init, seed=1)
    assert LTCInit.from_dict(init.to_dict()) == init
    twin = LTC.from_dict(ltc.to_dict(), seed=99)
    assert twin.to_dict() == ltc.to_dict()
    assert twin.wiring() == ltc.wiring().__class__.from_dict(ltc.to_dict()["wiring"])
    twin.load_state_dict(ltc.state_dict())
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        assert torch.equal(twin(x, None, 0.1)[0], ltc(x, None, 0.1)[0])
    # ranges are honoured (raw values, before softplus)
    assert ((ltc.cm >= -3.0) & (ltc.cm <= -2.0)).all()
    assert torch.all(ltc.input_w == 0.5)


@pytest.mark.skipif(not KERNEL, reason="C++ compiler unavailable")
def test_inference_cache_follows_parameter_updates():
    ltc = LTC(AutoNCP(4, 9, 2), seed=2)
    x, h = torch.randn(1, 4), torch.zeros(1, 9)
    with torch.no_grad():
        y0, _ = ltc.step(x, h, 0.1)
    opt = torch.optim.SGD(ltc.parameters(), lr=0.5)
    y, _ = ltc(x[:, None], None, 0.1)
    y.sum().backward()
    opt.step()
    with torch.no_grad():
        y1, _ = ltc.step(x, h, 0.1)
        ltc.backend = "torch"
        y_ref, _ = ltc.step(x, h, 0.1)
    assert not torch.equal(y0, y1)
    torch.testing.assert_close(y1, y_ref, atol=1e-6, rtol=0)


@pytest.mark.skipif(not KERNEL, reason="C++ compiler unavailable")
def test_kernel_saves_far_less_for_backward_than_ncps():
    ref, ltc = ncps_pair(0, inputs=8, units=16, outputs=2, backend="kernel")
    x = torch.randn(4, 16, 8)

    def saved_bytes(model) -> int:
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return total

    assert saved_bytes(ltc) * 5 < saved_bytes(ref)


def test_deepcopy_and_pickle_after_inference():
    import copy
    import pickle

    ltc = LTC(AutoNCP(4, 9, 2), seed=0)
    x, h = torch.randn(1, 4), torch.zeros(1, 9)
    with torch.no_grad():
        y, _ = ltc.step(x, h, 0.1)  # fills the inference cache
        for twin in (copy.deepcopy(ltc), pickle.loads(pickle.dumps(ltc))):
            assert torch.equal(twin.step(x, h, 0.1)[0], y)
            twin.output_b.add_(1.0)  # the copy owns its parameters
            assert torch.equal(ltc.step(x, h, 0.1)[0], y)


def test_init_state_and_shapes():
    ltc = LTC(AutoNCP(3, 8, 2), seed=0)
    assert (ltc.input_size, ltc.state_size, ltc.output_size) == (3, 8, 2)
    h = ltc.init_state(4)
    assert h.shape == (4, 8) and not h.any()
    y, h_t = ltc(torch.randn(4, 5, 3), h, 0.1)
    assert y.shape == (4, 5, 2) and h_t.shape == (4, 8)


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda m: m(torch.randn(2, 3, 4), None, 0.1), "expected (B, T, 3)"),
        (lambda m: m(torch.randn(2, 3, 3), torch.zeros(2, 7), 0.1), "expected (2, 8)"),
        (lambda m: m(torch.randn(2, 3, 3), None, 0.0), "dt=0.0"),
        (lambda m: m(torch.randn(2, 3, 3), None, -1.0), "dt=-1.0"),
        (lambda m: m(torch.randn(2, 3, 3), None, float("nan")), "dt=nan"),
        (lambda m: m(torch.randn(2, 3, 3), None, torch.tensor([0.1, -0.2])), "dt contains -0.2"),
        (lambda m: m(torch.randn(2, 3, 3), None, torch.ones(3)), "dt has shape (3,)"),
        (lambda m: m.step(torch.randn(2, 3), torch.zeros(2, 8), torch.ones(2, 2)), "dt has shape"),
        (lambda m: m.init_state(0), "batch=0"),
    ],
)
def test_bad_calls_raise_value_error(call, needle):
    ltc = LTC(AutoNCP(3, 8, 2), seed=0)
    with pytest.raises(ValueError) as err:
        call(ltc)
    assert needle in str(err.value)


def test_bad_construction_raises_value_error():
    w = AutoNCP(3, 8, 2)
    with pytest.raises(ValueError, match="ode_unfolds=0"):
        LTC(w, ode_unfolds=0)
    with pytest.raises(ValueError, match="backend='gpu'"):
        LTC(w, backend="gpu")
    with pytest.raises(ValueError, match=r"LTCInit.cm=\(1.0, 0.0\)"):
        LTCInit(cm=(1.0, 0.0))
    with pytest.raises(ValueError, match="no fields"):
        LTCInit.from_dict({"tau": 1.0})
    with pytest.raises(ValueError, match="mixed_memory"):
        LTC.from_ncps(ncps_torch.LTC(3, ncps_wirings.AutoNCP(8, 2), mixed_memory=True))
    with pytest.raises(ValueError, match="implicit_param_constraints"):
        LTC.from_ncps(ncps_torch.LTC(3, ncps_wirings.AutoNCP(8, 2),
                                     implicit_param_constraints=False))


def test_kernel_disabled_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(_ltc_kernel, "_lib", None)
    monkeypatch.setattr(_ltc_kernel, "_error", None)
    monkeypatch.setenv("LNN_NAV_LTC_KERNEL", "0")
    ltc = LTC(AutoNCP(3, 8, 2), seed=0)  # backend "auto"
    x = torch.randn(2, 4, 3)
    assert not ltc._use_kernel(x)
    y, _ = ltc(x, None, 0.1)
    assert y.shape == (2, 4, 2) and torch.isfinite(y).all()
    with pytest.raises(RuntimeError, match="LNN_NAV_LTC_KERNEL=0"):
        LTC(AutoNCP(3, 8, 2), backend="kernel")
