"""Generated C99 LTC head: parity with torch over 500 golden steps (gcc, strict
flags), dt rejection, what the code may and may not contain, golden files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lnn_nav.export.c_codegen import (
    GCC_FLAGS,
    CHeadSpec,
    Golden,
    InputOp,
    build_harness,
    generate_c,
    harness_source,
    read_golden,
    run_harness,
    write_golden,
)
from lnn_nav.models.ltc import LTC
from lnn_nav.models.wiring import AutoNCP

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed")
STEPS = 500


def make_ltc(inputs: int = 24, units: int = 40, outputs: int = 4, seed: int = 5,
             sparsity: float = 0.5) -> LTC:
    ltc = LTC(AutoNCP(inputs, units, outputs, sparsity_level=sparsity, seed=seed), seed=seed,
              backend="torch")
    with torch.no_grad():
        # non-trivial affine maps, so the test sees them used
        g = torch.Generator().manual_seed(seed)
        ltc.input_w.mul_(torch.rand(ltc.input_w.shape, generator=g) + 0.5)
        ltc.input_b.add_(0.1 * torch.randn(ltc.input_b.shape, generator=g))
        ltc.output_w.mul_(torch.rand(ltc.output_w.shape, generator=g) + 0.5)
        ltc.output_b.add_(0.1 * torch.randn(ltc.output_b.shape, generator=g))
    return ltc.eval()


def input_stage(kind: str, n: int) -> tuple[tuple[InputOp, ...], callable]:
    """The input ops for C and the same transform in torch."""
    g = torch.Generator().manual_seed(11)
    w = torch.rand(n, generator=g) + 0.5
    b = 0.2 * torch.randn(n, generator=g)
    if kind == "none":
        return (), lambda x: x
    if kind == "layernorm_tanh":
        ops = (InputOp("layernorm", w.numpy(), b.numpy(), eps=1e-5), InputOp("tanh"))
        return ops, lambda x: torch.tanh(F.layer_norm(x, (n,), w, b, 1e-5))
    if kind == "affine":
        return (InputOp("affine", w.numpy(), b.numpy()),), lambda x: x * w + b
    raise AssertionError(kind)


def torch_golden(ltc: LTC, pre, seed: int = 0) -> Golden:
    """500 steps of irregular dt (0.75x..1.5x of 1/30 s) and features like a
    CNN's (scaled, offset) from the initial state, run through torch."""
    g = torch.Generator().manual_seed(seed)
    x = 1.5 * torch.randn(STEPS, ltc.input_size, generator=g) + 0.3
    dt = (1.0 / 30.0) * (0.75 + 0.75 * torch.rand(STEPS, generator=g))
    state = ltc.init_state(1)
    outs = []
    with torch.no_grad():
        for t in range(STEPS):
            y, state = ltc.step(pre(x[t : t + 1]), state, dt[t : t + 1])
            outs.append(y[0])
    return Golden(dt.numpy(), x.numpy(), torch.stack(outs).numpy(), state[0].numpy())


def write_c(tmp: Path, spec: CHeadSpec, golden: Golden | None = None) -> Path:
    src = generate_c(spec)
    (tmp / "ltc_head.h").write_text(src.header)
    (tmp / "ltc_head.c").write_text(src.source)
    (tmp / "ltc_head_harness.c").write_text(harness_source())
    if golden is not None:
        write_golden(tmp / "golden.bin", golden)
    return tmp


@needs_gcc
@pytest.mark.parametrize("stage", ["none", "layernorm_tanh", "affine"])
def test_c_step_matches_torch_over_500_steps(tmp_path, stage):
    ltc = make_ltc()
    ops, pre = input_stage(stage, ltc.input_size)
    golden = torch_golden(ltc, pre)
    assert np.abs(golden.outputs).max() > 0.05  # the head is doing something
    write_c(tmp_path, CHeadSpec(ltc.export_arrays(), ops), golden)
    binary = build_harness(tmp_path, tmp_path / "harness")  # -O2 -std=c99 -Wall -Wextra -Werror
    result = run_harness(binary, tmp_path / "golden.bin", tol=1e-5)
    assert result.passed, result.output
    assert result.max_abs_err_outputs <= 1e-5
    assert result.max_abs_err_state <= 1e-5


@needs_gcc
def test_c_step_matches_torch_with_a_denser_wiring(tmp_path):
    # `ncp_sparsity` trains other masks than the default; the generated code
    # must follow whichever synapses the wiring keeps
    ltc = make_ltc(sparsity=0.2)
    assert len(ltc.export_arrays()["sensory_src"]) > len(make_ltc().export_arrays()["sensory_src"])
    golden = torch_golden(ltc, lambda x: x)
    write_c(tmp_path, CHeadSpec(ltc.export_arrays(), ()), golden)
    result = run_harness(build_harness(tmp_path, tmp_path / "harness"), tmp_path / "golden.bin", tol=1e-5)
    assert result.passed, result.output


@needs_gcc
def test_harness_fails_on_a_wrong_golden(tmp_path):
    ltc = make_ltc()
    golden = torch_golden(ltc, lambda x: x)
    outputs = golden.outputs.copy()
    outputs[250, 2] += 1e-3
    write_c(tmp_path, CHeadSpec(ltc.export_arrays()), golden._replace(outputs=outputs))
    result = run_harness(build_harness(tmp_path, tmp_path / "h"), tmp_path / "golden.bin")
    assert not result.passed
    assert result.max_abs_err_outputs == pytest.approx(1e-3, rel=1e-2)


@needs_gcc
def test_c_step_rejects_bad_dt_and_leaves_state(tmp_path):
    ltc = make_ltc(inputs=8, units=12, outputs=2)
    write_c(tmp_path, CHeadSpec(ltc.export_arrays()))
    (tmp_path / "dt_check.c").write_text(
        """#include "ltc_head.h"
#include <math.h>
#include <stdio.h>
int main(void) {
    float x[LTC_HEAD_NUM_INPUTS] = {0}, s[LTC_HEAD_STATE_SIZE], out[LTC_HEAD_NUM_OUTPUTS];
    const float bad[4] = {0.0f, -0.01f, NAN, INFINITY};
    int i, j;
    ltc_head_init_state(s);
    s[0] = 0.25f;
    for (i = 0; i < 4; ++i) {
        if (ltc_head_step(x, s, bad[i], out) != -1) return 10 + i;
        for (j = 0; j < LTC_HEAD_STATE_SIZE; ++j)
            if (s[j] != (j == 0 ? 0.25f : 0.0f)) return 20 + i;
    }
    if (ltc_head_step(x, s, 0.033f, out) != 0) return 30;
    printf("ok\\n");
    return 0;
}
"""
    )
    exe = tmp_path / "dt_check"
    subprocess.run(
        [GCC, *GCC_FLAGS, "-I", str(tmp_path), str(tmp_path / "ltc_head.c"),
         str(tmp_path / "dt_check.c"), "-o", str(exe), "-lm"],
        check=True, capture_output=True,
    )
    proc = subprocess.run([str(exe)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.returncode


def test_generated_code_is_sparse_static_and_dependency_free():
    ltc = make_ltc()
    arrays = ltc.export_arrays()
    src = generate_c(CHeadSpec(arrays))
    code = src.header + src.source
    assert "malloc" not in code and "free(" not in code
    includes = set(re.findall(r"#include\s*[<\"]([^>\"]+)[>\"]", code))
    assert includes <= {"ltc_head.h", "math.h", "stdint.h"}
    # every array at file scope is static const (weights in flash, nothing mutable)
    file_scope_arrays = re.findall(r"^(.*)\w+\[\d+\] = \{", src.source, flags=re.MULTILINE)
    assert file_scope_arrays and all(p.startswith("static const ") for p in file_scope_arrays)
    # sparse: one entry per real synapse, not I*N + N*N
    assert f"ltc_head_rec_w[{arrays['src'].size}]" in src.source
    assert f"ltc_head_sens_w[{arrays['sensory_src'].size}]" in src.source
    assert arrays["src"].size < ltc.state_size**2
    assert src.state_bytes == 4 * ltc.state_size
    # sizes: 4 float arrays per edge + indices + per-neuron and map arrays
    i, n, o = ltc.input_size, ltc.state_size, ltc.output_size
    e, es = arrays["src"].size, arrays["sensory_src"].size
    expected = 4 * (4 * (e + es) + 2 * i + 3 * n + 2 * o) + (e + es) + 2 * 2 * (n + 1)
    assert src.constant_bytes == expected


def test_constants_round_trip_exactly_as_float32():
    ltc = make_ltc(inputs=6, units=10, outputs=2)
    arrays = ltc.export_arrays()
    src = generate_c(CHeadSpec(arrays)).source
    body = re.search(r"ltc_head_rec_sigma\[\d+\] = \{(.*?)\};", src, flags=re.DOTALL).group(1)
    values = np.array([float(v.rstrip("f")) for v in body.replace("\n", " ").split(",") if v.strip()],
                      dtype=np.float32)
    order = np.argsort(arrays["tgt"], kind="stable")
    np.testing.assert_array_equal(values, arrays["sigma"][order])


def test_golden_file_round_trip_and_corruption(tmp_path):
    g = Golden(
        np.full(3, 0.03, np.float32),
        np.arange(6, dtype=np.float32).reshape(3, 2),
        np.arange(3, dtype=np.float32).reshape(3, 1),
        np.ones(4, np.float32),
    )
    write_golden(tmp_path / "g.bin", g)
    back = read_golden(tmp_path / "g.bin")
    for a, b in zip(g, back):
        np.testing.assert_array_equal(a, b)
    data = (tmp_path / "g.bin").read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-4])
    with pytest.raises(ValueError, match="short.bin: .* bytes, expected"):
        read_golden(tmp_path / "short.bin")
    (tmp_path / "junk.bin").write_bytes(b"NOPE" + data[4:])
    with pytest.raises(ValueError, match="not a golden-vector file"):
        read_golden(tmp_path / "junk.bin")


def test_spec_validation():
    arrays = make_ltc(inputs=6, units=10, outputs=2).export_arrays()
    with pytest.raises(ValueError, match="lack keys"):
        CHeadSpec({k: v for k, v in arrays.items() if k != "mu"})
    with pytest.raises(ValueError, match=r"weight of shape \(5,\): expected \(6,\)"):
        CHeadSpec(arrays, (InputOp("affine", np.ones(5), np.zeros(5)),))
    with pytest.raises(ValueError, match="kind='relu'"):
        InputOp("relu")
    bad = dict(arrays, w=np.full_like(arrays["w"], np.nan))
    with pytest.raises(ValueError, match="'w' has non-finite"):
        CHeadSpec(bad)
    with pytest.raises(ValueError, match="prefix="):
        generate_c(CHeadSpec(arrays), prefix="Bad-Name")


ARM_GCC = shutil.which("arm-none-eabi-gcc")


@pytest.mark.skipif(ARM_GCC is None, reason="arm-none-eabi-gcc not installed (gcc-arm-none-eabi)")
def test_cross_compiles_for_cortex_m4f(tmp_path):
    write_c(tmp_path, CHeadSpec(make_ltc().export_arrays()))
    obj = tmp_path / "ltc_head.o"
    subprocess.run(
        [ARM_GCC, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
         *GCC_FLAGS, "-c", str(tmp_path / "ltc_head.c"), "-o", str(obj)],
        check=True, capture_output=True,
    )
    assert obj.stat().st_size > 0


@needs_gcc
def test_double_build_follows_the_float64_reference(tmp_path):
    """-DLTC_HEAD_DOUBLE: the same float32 weights, stepped in double, agree
    with torch in float64 far inside the float32 tolerance."""
    ltc = make_ltc()
    arrays = ltc.export_arrays()  # float32 weights, as shipped
    ref = LTC.from_dict(ltc.to_dict(), backend="torch")
    ref.load_state_dict(ltc.state_dict())
    ref = ref.double().eval()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(STEPS, ltc.input_size, generator=g, dtype=torch.float64)
    x = x.float().double()  # features are float32 in the golden file
    dt = ((1.0 / 30.0) * (0.75 + 0.75 * torch.rand(STEPS, generator=g))).double()
    dt = dt.float().double()
    state = ref.init_state(1)
    outs = []
    with torch.no_grad():
        for t in range(STEPS):
            y, state = ref.step(x[t : t + 1], state, dt[t : t + 1])
            outs.append(y[0])
    golden = Golden(dt.float().numpy(), x.float().numpy(), torch.stack(outs).float().numpy(),
                    state[0].float().numpy())
    write_c(tmp_path, CHeadSpec(arrays), golden)
    binary = build_harness(tmp_path, tmp_path / "hd", double=True)
    result = run_harness(binary, tmp_path / "golden.bin", tol=1e-6)
    assert result.passed, result.output


@needs_gcc
def test_command_output_stage_matches_torch(tmp_path):
    """With output_scale the step returns scale * tanh(y), a policy's command."""
    ltc = make_ltc()
    scale = np.array([2.0, 2.0, 1.0, 2.0], np.float32)
    raw = torch_golden(ltc, lambda x: x)
    # torch's float32 tanh, as NavPolicy computes it
    golden = raw._replace(
        outputs=(torch.tanh(torch.from_numpy(raw.outputs)) * torch.from_numpy(scale)).numpy()
    )
    write_c(tmp_path, CHeadSpec(ltc.export_arrays(), output_scale=scale), golden)
    result = run_harness(build_harness(tmp_path, tmp_path / "h"), tmp_path / "golden.bin")
    assert result.passed, result.output
    with pytest.raises(ValueError, match=r"output_scale of shape \(3,\)"):
        CHeadSpec(ltc.export_arrays(), output_scale=scale[:3])
