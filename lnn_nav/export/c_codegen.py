"""Dependency-free C99 for the LTC head: generator, golden vectors, harness.

`generate_c(spec)` writes a header and a source that compute one head step

    int <prefix>_step(const float features[I], float state[S], float dt_s, float out[O]);

exactly as `LTC.step` does (see `LTC.export_arrays`), after the head's input
stage (`InputOp`s such as LayerNorm or tanh, if the head has them), so the
caller passes the encoder's features. Design choices, each for the MCU:

- sparse synapses only: edge lists grouped by target neuron (CSR), so the
  work is proportional to the ~1k real synapses, not to N^2 + I*N;
- every weight is a `static const` array (it lands in flash), no malloc, no
  globals that change: the caller owns the state (S floats) and the only
  scratch is a few N-sized arrays on the stack;
- only <math.h> (expf, sqrtf, tanhf, isfinite) and <stdint.h>;
- float32 throughout, in the same operation order as the torch reference,
  so 500 steps agree within 1e-5.

Golden vectors (`write_golden`/`read_golden`) are a little-endian binary file:
magic "LTCG", uint32 version, steps, I, S, O, then per step float32
dt, features[I], outputs[O], then the final state[S]. The harness
(`harness_source`) replays them and reports the largest error; with
`--bench N` it also times N steps.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

GOLDEN_MAGIC = b"LTCG"
GOLDEN_VERSION = 1
GCC_FLAGS = ("-O2", "-std=c99", "-Wall", "-Wextra", "-Werror")

_LTC_KEYS = (
    "src", "tgt", "w", "erev", "mu", "sigma",
    "sensory_src", "sensory_tgt", "sensory_w", "sensory_erev", "sensory_mu", "sensory_sigma",
    "cm", "gleak", "vleak", "input_w", "input_b", "output_w", "output_b",
    "ode_unfolds", "epsilon", "sizes",
)


@dataclass(frozen=True)
class InputOp:
    """One element of the head's input stage, applied to the features (I,)
    before the LTC's own affine input map.

    kind: "layernorm" (over the I features, biased variance, then
    `weight`/`bias` if given), "tanh", or "affine" (x * weight + bias,
    elementwise).
    """

    kind: str
    weight: np.ndarray | None = None
    """(I,) float32 or None"""
    bias: np.ndarray | None = None
    """(I,) float32 or None"""
    eps: float = 1e-5
    """layernorm only: added to the variance"""

    def __post_init__(self) -> None:
        if self.kind not in ("layernorm", "tanh", "affine"):
            raise ValueError(
                f"InputOp kind={self.kind!r}: expected 'layernorm', 'tanh' or 'affine'"
            )
        if self.kind == "affine" and (self.weight is None or self.bias is None):
            raise ValueError("InputOp kind='affine' needs both weight and bias")
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"InputOp eps={self.eps!r}: expected a finite number >= 0")


@dataclass(frozen=True)
class CHeadSpec:
    """What the C step computes: an input stage, then the LTC.

    ltc: `LTC.export_arrays()` (effective parameters, edges, sizes).
    input_ops: applied in order to the features before the LTC.
    name: shown in the generated files' banner.
    """

    ltc: dict[str, np.ndarray]
    input_ops: tuple[InputOp, ...] = ()
    name: str = "ltc head"
    extra: dict[str, str] = field(default_factory=dict)
    """free-form lines for the banner (e.g. the policy's SHA-256)."""
    output_scale: np.ndarray | None = None
    """(O,) float32 or None: if given, the step returns output_scale * tanh(y)
    (a policy's command in its units) instead of the head's raw outputs y."""

    def __post_init__(self) -> None:
        missing = [k for k in _LTC_KEYS if k not in self.ltc]
        if missing:
            raise ValueError(f"LTC arrays lack keys {missing}: expected LTC.export_arrays()")
        i, n, o = self.sizes
        for op in self.input_ops:
            for arr_name in ("weight", "bias"):
                arr = getattr(op, arr_name)
                if arr is not None and np.shape(arr) != (i,):
                    raise ValueError(
                        f"InputOp {op.kind} {arr_name} of shape {np.shape(arr)}: expected ({i},)"
                    )
        for key in _LTC_KEYS:
            arr = np.asarray(self.ltc[key])
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError(f"LTC array {key!r} has non-finite values: cannot export")
        if self.output_scale is not None and np.shape(self.output_scale) != (o,):
            raise ValueError(
                f"output_scale of shape {np.shape(self.output_scale)}: expected ({o},)"
            )
        if n > 65535 or i > 65535:
            raise ValueError(f"sizes (I, N)=({i}, {n}): expected at most 65535 each")

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(I inputs, S state = N neurons, O outputs)."""
        i, n, o = (int(v) for v in np.asarray(self.ltc["sizes"]).reshape(3))
        return i, n, o


# --------------------------------------------------------------------------- numbers


def _c_float(x: float) -> str:
    """A float32 literal that reads back to exactly the same float32."""
    v = float(np.float32(x))
    if not math.isfinite(v):
        raise ValueError(f"cannot write non-finite constant {v!r} into C")
    text = f"{v:.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def _c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 6) -> str:
    vals = np.asarray(values).reshape(-1)
    if vals.size == 0:
        # C99 has no zero-length arrays; one unused element keeps it valid
        vals = np.zeros(1, dtype=vals.dtype)
    if ctype == "float":
        items = [_c_float(v) for v in vals]
    else:
        items = [str(int(v)) for v in vals]
    lines = [
        "    " + ", ".join(items[k : k + per_line]) + ","
        for k in range(0, len(items), per_line)
    ]
    return f"static const {ctype} {name}[{len(items)}] = {{\n" + "\n".join(lines) + "\n};\n"


def _index_type(limit: int) -> str:
    return "uint8_t" if limit <= 0xFF else "uint16_t"


def _csr(tgt: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A stable order grouping edges by target, and the (n + 1,) row starts."""
    order = np.argsort(tgt, kind="stable")
    counts = np.bincount(tgt, minlength=n)
    start = np.concatenate([[0], np.cumsum(counts)])
    return order, start


class CSources(NamedTuple):
    header: str
    source: str
    constant_bytes: int
    """bytes of static const data (weights, indices) the step needs"""
    state_bytes: int
    """bytes of state the caller keeps between steps"""
    stack_bytes: int
    """bytes of scratch arrays on the stack during a step"""


def _check_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
        raise ValueError(f"prefix={prefix!r}: expected a lower-case C identifier")
    return prefix


def generate_c(spec: CHeadSpec, prefix: str = "ltc_head") -> CSources:
    """The header and source of the C step for `spec`."""
    p = _check_prefix(prefix)
    P = p.upper()
    a = {k: np.asarray(v) for k, v in spec.ltc.items()}
    i_n, n, o = spec.sizes
    k_unfolds = int(a["ode_unfolds"])
    eps = float(a["epsilon"])
    const_bytes = 0
    arrays: list[str] = []

    def emit(ctype: str, name: str, values: np.ndarray) -> None:
        nonlocal const_bytes
        size = {"float": 4, "uint8_t": 1, "uint16_t": 2}[ctype]
        const_bytes += size * max(int(np.asarray(values).size), 1)
        arrays.append(_c_array(ctype, f"{p}_{name}", values))

    # input stage
    stage_code: list[str] = []
    for idx, op in enumerate(spec.input_ops):
        if op.kind == "layernorm":
            stage_code.append(
                "    {\n"
                "        /* LayerNorm over the features (biased variance, as torch) */\n"
                f"        {p}_real mean = 0, var = 0;\n"
                f"        for (i = 0; i < {P}_NUM_INPUTS; ++i) mean += x[i];\n"
                f"        mean /= ({p}_real){P}_NUM_INPUTS;\n"
                f"        for (i = 0; i < {P}_NUM_INPUTS; ++i) {{ const {p}_real d = x[i] - mean; var += d * d; }}\n"
                f"        var /= ({p}_real){P}_NUM_INPUTS;\n"
                "        {\n"
                f"            const {p}_real inv = 1 / {P}_SQRT(var + ({p}_real){_c_float(op.eps)});\n"
                f"            for (i = 0; i < {P}_NUM_INPUTS; ++i) x[i] = (x[i] - mean) * inv;\n"
                "        }\n"
                "    }\n"
            )
            if op.weight is not None:
                emit("float", f"in{idx}_weight", op.weight)
                stage_code.append(
                    f"    for (i = 0; i < {P}_NUM_INPUTS; ++i) x[i] = x[i] * {p}_in{idx}_weight[i];\n"
                )
            if op.bias is not None:
                emit("float", f"in{idx}_bias", op.bias)
                stage_code.append(
                    f"    for (i = 0; i < {P}_NUM_INPUTS; ++i) x[i] = x[i] + {p}_in{idx}_bias[i];\n"
                )
        elif op.kind == "tanh":
            stage_code.append(f"    for (i = 0; i < {P}_NUM_INPUTS; ++i) x[i] = {P}_TANH(x[i]);\n")
        else:  # affine
            emit("float", f"in{idx}_weight", op.weight)  # type: ignore[arg-type]
            emit("float", f"in{idx}_bias", op.bias)  # type: ignore[arg-type]
            stage_code.append(
                f"    for (i = 0; i < {P}_NUM_INPUTS; ++i) "
                f"x[i] = x[i] * {p}_in{idx}_weight[i] + {p}_in{idx}_bias[i];\n"
            )

    emit("float", "input_w", a["input_w"])
    emit("float", "input_b", a["input_b"])

    s_order, s_start = _csr(a["sensory_tgt"].astype(np.int64), n)
    r_order, r_start = _csr(a["tgt"].astype(np.int64), n)
    e_s, e_r = int(a["sensory_src"].size), int(a["src"].size)
    start_t = _index_type(max(e_s, e_r))
    emit(start_t, "sens_start", s_start)
    emit(_index_type(i_n - 1), "sens_src", a["sensory_src"][s_order])
    for name in ("w", "erev", "mu", "sigma"):
        emit("float", f"sens_{name}", a[f"sensory_{name}"][s_order])
    emit(start_t, "rec_start", r_start)
    emit(_index_type(n - 1), "rec_src", a["src"][r_order])
    for name in ("w", "erev", "mu", "sigma"):
        emit("float", f"rec_{name}", a[name][r_order])
    emit("float", "cm", a["cm"])
    emit("float", "gleak", a["gleak"])
    # gleak * vleak in float32, as the torch reference forms it once per step
    emit("float", "gleak_vleak", (a["gleak"].astype(np.float32) * a["vleak"].astype(np.float32)))
    emit("float", "output_w", a["output_w"])
    emit("float", "output_b", a["output_b"])
    if spec.output_scale is not None:
        emit("float", "output_scale", spec.output_scale)
        out_expr = f"{p}_output_scale[i] * {P}_TANH(v[i] * {p}_output_w[i] + {p}_output_b[i])"
        out_doc = "scale * tanh(y): the policy's command, y = motor potentials mapped affinely"
    else:
        out_expr = f"v[i] * {p}_output_w[i] + {p}_output_b[i]"
        out_doc = "y: the motor potentials, mapped affinely (the head's raw outputs)"

    banner_lines = [
        f"Generated by lnn-nav export from {spec.name}. Do not edit: re-export instead.",
        (
            f"LTC head: {i_n} inputs, {n} neurons (state), {o} outputs, "
            f"{e_s} sensory + {e_r} recurrent synapses, {k_unfolds} ODE unfolds per step."
        ),
        *(f"{k}: {v}" for k, v in spec.extra.items()),
    ]
    banner = "/*\n" + "".join(f" * {line}\n" for line in banner_lines) + " */\n"
    stage_desc = ", ".join(op.kind for op in spec.input_ops) or "none"

    header = (
        banner
        + f"#ifndef {P}_H\n#define {P}_H\n\n"
        + "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
        + f"#define {P}_NUM_INPUTS {i_n}   /* features from the encoder */\n"
        + f"#define {P}_STATE_SIZE {n}   /* neuron potentials the caller keeps */\n"
        + f"#define {P}_NUM_OUTPUTS {o}   /* "
        + ("commands: scale * tanh(motor outputs)" if spec.output_scale is not None
           else "head outputs (motor neurons, mapped)")
        + " */\n"
        + f"#define {P}_ODE_UNFOLDS {k_unfolds}\n\n"
        + "/* Set the state to the start of an episode (all potentials zero). */\n"
        + f"void {p}_init_state(float state[{P}_STATE_SIZE]);\n\n"
        + "/*\n"
        + " * One control step. features: encoder output (input stage: "
        + stage_desc
        + ");\n"
        + " * state: read and updated in place; dt_s: seconds since the previous frame;\n"
        + " * out: head outputs. Returns 0, or -1 (nothing changed) when dt_s is not\n"
        + " * finite and > 0. Re-entrant: no globals change; weights are static const.\n"
        + " */\n"
        + f"int {p}_step(const float features[{P}_NUM_INPUTS], float state[{P}_STATE_SIZE],\n"
        + f"             float dt_s, float out[{P}_NUM_OUTPUTS]);\n\n"
        + "#ifdef __cplusplus\n}\n#endif\n\n"
        + f"#endif /* {P}_H */\n"
    )

    # scratch: x (I) and v, s_num, s_den, cmt, v_next (N) in the working precision
    stack_bytes = 4 * (i_n + 5 * n)
    R = f"{p}_real"
    source = (
        banner
        + f'#include "{p}.h"\n\n#include <math.h>\n#include <stdint.h>\n\n'
        + "/* Working precision. float (default) is what an FPU-less or single-precision\n"
        + f" * MCU wants; -D{P}_DOUBLE computes each step in double (the weights stay\n"
        + " * float32, the state between steps too), which follows the float64 reference\n"
        + " * of the same weights to ~1e-7 instead of float32's ~1e-5. */\n"
        + f"#ifdef {P}_DOUBLE\ntypedef double {R};\n#define {P}_EXP exp\n"
        + f"#define {P}_SQRT sqrt\n#define {P}_TANH tanh\n#else\ntypedef float {R};\n"
        + f"#define {P}_EXP expf\n#define {P}_SQRT sqrtf\n#define {P}_TANH tanhf\n#endif\n\n"
        + "/* Sensory and recurrent synapses are grouped by target neuron j: the edges\n"
        + " * of j are [start[j], start[j + 1]). Positive weights are already softplus'd. */\n"
        + "".join(arrays)
        + "\n"
        + f"void {p}_init_state(float state[{P}_STATE_SIZE])\n{{\n"
        + f"    int j;\n    for (j = 0; j < {P}_STATE_SIZE; ++j) state[j] = 0.0f;\n}}\n\n"
        + f"static {R} {p}_sigmoid({R} z) {{ return 1 / (1 + {P}_EXP(-z)); }}\n\n"
        + f"int {p}_step(const float features[{P}_NUM_INPUTS], float state[{P}_STATE_SIZE],\n"
        + f"             float dt_s, float out[{P}_NUM_OUTPUTS])\n{{\n"
        + f"    {R} x[{P}_NUM_INPUTS], v[{P}_STATE_SIZE];\n"
        + f"    {R} s_num[{P}_STATE_SIZE], s_den[{P}_STATE_SIZE];\n"
        + f"    {R} cmt[{P}_STATE_SIZE], v_next[{P}_STATE_SIZE];\n"
        + f"    {R} h;\n"
        + "    int i, j, e, k;\n"
        + "    if (!(dt_s > 0.0f) || !isfinite(dt_s)) return -1;\n"
        + f"    h = ({R})dt_s / ({R}){P}_ODE_UNFOLDS; /* sub-step, s */\n"
        + f"    for (i = 0; i < {P}_NUM_INPUTS; ++i) x[i] = features[i];\n"
        + f"    for (j = 0; j < {P}_STATE_SIZE; ++j) v[j] = state[j];\n"
        + "".join(stage_code)
        + "    /* affine input map */\n"
        + f"    for (i = 0; i < {P}_NUM_INPUTS; ++i) x[i] = x[i] * {p}_input_w[i] + {p}_input_b[i];\n"
        + "    /* sensory drive: independent of the potentials, once per step */\n"
        + f"    for (j = 0; j < {P}_STATE_SIZE; ++j) {{\n"
        + f"        {R} num = 0, den = 0;\n"
        + f"        for (e = {p}_sens_start[j]; e < {p}_sens_start[j + 1]; ++e) {{\n"
        + f"            const {R} a = {p}_sens_w[e] * {p}_sigmoid({p}_sens_sigma[e] * (x[{p}_sens_src[e]] - {p}_sens_mu[e]));\n"
        + f"            num += a * {p}_sens_erev[e];\n"
        + "            den += a;\n"
        + "        }\n"
        + "        s_num[j] = num;\n        s_den[j] = den;\n"
        + f"        cmt[j] = {p}_cm[j] / h;\n"
        + "    }\n"
        + "    /* fused semi-implicit Euler, K sub-steps of dt / K */\n"
        + f"    for (k = 0; k < {P}_ODE_UNFOLDS; ++k) {{\n"
        + f"        for (j = 0; j < {P}_STATE_SIZE; ++j) {{\n"
        + f"            {R} num = 0, den = 0;\n"
        + f"            for (e = {p}_rec_start[j]; e < {p}_rec_start[j + 1]; ++e) {{\n"
        + f"                const {R} a = {p}_rec_w[e] * {p}_sigmoid({p}_rec_sigma[e] * (v[{p}_rec_src[e]] - {p}_rec_mu[e]));\n"
        + f"                num += a * {p}_rec_erev[e];\n"
        + "                den += a;\n"
        + "            }\n"
        + "            {\n"
        + f"                const {R} top = cmt[j] * v[j] + {p}_gleak_vleak[j] + (num + s_num[j]);\n"
        + f"                const {R} bottom = cmt[j] + {p}_gleak[j] + (den + s_den[j]);\n"
        + f"                v_next[j] = top / (bottom + ({R}){_c_float(eps)});\n"
        + "            }\n"
        + "        }\n"
        + f"        for (j = 0; j < {P}_STATE_SIZE; ++j) v[j] = v_next[j];\n"
        + "    }\n"
        + f"    for (j = 0; j < {P}_STATE_SIZE; ++j) state[j] = (float)v[j];\n"
        + f"    /* outputs, from the first O neurons (motor): {out_doc} */\n"
        + f"    for (i = 0; i < {P}_NUM_OUTPUTS; ++i) out[i] = (float)({out_expr});\n"
        + "    return 0;\n}\n"
    )
    return CSources(header, source, const_bytes, 4 * n, stack_bytes)


# --------------------------------------------------------------------------- golden


class Golden(NamedTuple):
    """Golden vectors of one head run from the initial state."""

    dt: np.ndarray
    """(T,) float32, s"""
    features: np.ndarray
    """(T, I) float32"""
    outputs: np.ndarray
    """(T, O) float32"""
    final_state: np.ndarray
    """(S,) float32"""


def write_golden(path: str | Path, golden: Golden) -> None:
    """Write golden vectors in the harness's binary format (atomically)."""
    from lnn_nav.atomic import atomic_write_bytes

    dt = np.asarray(golden.dt, np.float32).reshape(-1)
    feats = np.asarray(golden.features, np.float32)
    outs = np.asarray(golden.outputs, np.float32)
    state = np.asarray(golden.final_state, np.float32).reshape(-1)
    t = dt.shape[0]
    if feats.ndim != 2 or feats.shape[0] != t or outs.ndim != 2 or outs.shape[0] != t:
        raise ValueError(
            f"golden shapes dt {dt.shape}, features {feats.shape}, outputs {outs.shape}: "
            "expected (T,), (T, I), (T, O)"
        )
    head = GOLDEN_MAGIC + struct.pack(
        "<5I", GOLDEN_VERSION, t, feats.shape[1], state.shape[0], outs.shape[1]
    )
    body = np.concatenate([dt[:, None], feats, outs], axis=1).astype("<f4").tobytes()
    atomic_write_bytes(Path(path), head + body + state.astype("<f4").tobytes())


def read_golden(path: str | Path) -> Golden:
    """Read golden vectors; ValueError naming the file if it is not one."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 24 or data[:4] != GOLDEN_MAGIC:
        raise ValueError(f"{path}: not a golden-vector file (expected magic {GOLDEN_MAGIC!r})")
    version, t, i, s, o = struct.unpack("<5I", data[4:24])
    if version != GOLDEN_VERSION:
        raise ValueError(f"{path}: golden version {version}, expected {GOLDEN_VERSION}")
    expected = 24 + 4 * (t * (1 + i + o) + s)
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, expected {expected} for T={t} I={i} S={s} O={o}")
    rec = np.frombuffer(data, "<f4", count=t * (1 + i + o), offset=24).reshape(t, 1 + i + o)
    state = np.frombuffer(data, "<f4", count=s, offset=24 + 4 * t * (1 + i + o))
    return Golden(
        rec[:, 0].astype(np.float32),
        rec[:, 1 : 1 + i].astype(np.float32),
        rec[:, 1 + i :].astype(np.float32),
        state.astype(np.float32),
    )


def harness_source(prefix: str = "ltc_head") -> str:
    """A host program that replays golden vectors through the C step.

    Usage: harness GOLDEN.bin [TOL] [--bench STEPS]
    Prints one line `steps=... max_abs_err_outputs=... max_abs_err_state=...
    PASS|FAIL`, then with --bench `us_per_step=...`; exits 0 on PASS.
    """
    p = _check_prefix(prefix)
    P = p.upper()
    return f"""/* Golden-vector harness for {p}_step; host only (uses stdio and clock()). */
#include "{p}.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int read_u32(FILE *f, uint32_t *v)
{{
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4) return -1;
    *v = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
    return 0;
}}

static int read_f32(FILE *f, float *v)
{{
    uint32_t u;
    if (read_u32(f, &u) != 0) return -1;
    memcpy(v, &u, sizeof *v); /* golden files are little-endian IEEE-754 */
    return 0;
}}

int main(int argc, char **argv)
{{
    FILE *f;
    char magic[4];
    uint32_t version, steps, n_in, n_state, n_out, t;
    float *dt, *feat, *want, final_state[{P}_STATE_SIZE];
    float state[{P}_STATE_SIZE], out[{P}_NUM_OUTPUTS];
    double tol = 1e-5, err_out = 0.0, err_state = 0.0;
    long bench_steps = 0;
    int a, i;
    if (argc < 2) {{
        fprintf(stderr, "usage: %s GOLDEN.bin [TOL] [--bench STEPS]\\n", argv[0]);
        return 2;
    }}
    for (a = 2; a < argc; ++a) {{
        if (strcmp(argv[a], "--bench") == 0 && a + 1 < argc) bench_steps = atol(argv[++a]);
        else tol = atof(argv[a]);
    }}
    f = fopen(argv[1], "rb");
    if (!f) {{ fprintf(stderr, "cannot open %s\\n", argv[1]); return 2; }}
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "LTCG", 4) != 0 || read_u32(f, &version) ||
        read_u32(f, &steps) || read_u32(f, &n_in) || read_u32(f, &n_state) || read_u32(f, &n_out)) {{
        fprintf(stderr, "%s: not a golden-vector file\\n", argv[1]);
        return 2;
    }}
    if (version != 1u || n_in != {P}_NUM_INPUTS || n_state != {P}_STATE_SIZE || n_out != {P}_NUM_OUTPUTS) {{
        fprintf(stderr, "%s: version %u sizes (%u, %u, %u), expected 1 (%d, %d, %d)\\n", argv[1],
                (unsigned)version, (unsigned)n_in, (unsigned)n_state, (unsigned)n_out,
                {P}_NUM_INPUTS, {P}_STATE_SIZE, {P}_NUM_OUTPUTS);
        return 2;
    }}
    dt = (float *)malloc(sizeof(float) * steps);
    feat = (float *)malloc(sizeof(float) * steps * n_in);
    want = (float *)malloc(sizeof(float) * steps * n_out);
    if (!dt || !feat || !want) {{ fprintf(stderr, "out of memory\\n"); return 2; }}
    for (t = 0; t < steps; ++t) {{
        int bad = read_f32(f, &dt[t]);
        for (i = 0; i < (int)n_in; ++i) bad |= read_f32(f, &feat[t * n_in + i]);
        for (i = 0; i < (int)n_out; ++i) bad |= read_f32(f, &want[t * n_out + i]);
        if (bad) {{ fprintf(stderr, "%s: truncated at step %u\\n", argv[1], (unsigned)t); return 2; }}
    }}
    for (i = 0; i < {P}_STATE_SIZE; ++i) {{
        if (read_f32(f, &final_state[i])) {{ fprintf(stderr, "%s: truncated state\\n", argv[1]); return 2; }}
    }}
    fclose(f);

    {p}_init_state(state);
    for (t = 0; t < steps; ++t) {{
        if ({p}_step(&feat[t * n_in], state, dt[t], out) != 0) {{
            fprintf(stderr, "step %u rejected dt=%g\\n", (unsigned)t, (double)dt[t]);
            return 1;
        }}
        for (i = 0; i < {P}_NUM_OUTPUTS; ++i) {{
            const double d = fabs((double)out[i] - (double)want[t * n_out + i]);
            if (!(d <= err_out)) err_out = d; /* also catches NaN */
        }}
    }}
    for (i = 0; i < {P}_STATE_SIZE; ++i) {{
        const double d = fabs((double)state[i] - (double)final_state[i]);
        if (!(d <= err_state)) err_state = d;
    }}
    printf("steps=%u max_abs_err_outputs=%.3e max_abs_err_state=%.3e tol=%.1e %s\\n",
           (unsigned)steps, err_out, err_state, tol,
           (err_out <= tol && err_state <= tol) ? "PASS" : "FAIL");

    if (bench_steps > 0) {{
        long s;
        volatile float sink = 0.0f;
        clock_t c0, c1;
        {p}_init_state(state);
        c0 = clock();
        for (s = 0; s < bench_steps; ++s) {{
            t = (uint32_t)(s % (long)steps);
            {p}_step(&feat[t * n_in], state, dt[t], out);
            sink += out[0];
            if (s % (long)steps == (long)steps - 1) {p}_init_state(state);
        }}
        c1 = clock();
        printf("us_per_step=%.3f bench_steps=%ld\\n",
               1e6 * (double)(c1 - c0) / CLOCKS_PER_SEC / (double)bench_steps, bench_steps);
        (void)sink;
    }}
    free(dt);
    free(feat);
    free(want);
    return (err_out <= tol && err_state <= tol) ? 0 : 1;
}}
"""


# --------------------------------------------------------------------------- compile


class HarnessResult(NamedTuple):
    passed: bool
    max_abs_err_outputs: float
    max_abs_err_state: float
    us_per_step: float | None
    output: str


def find_c_compiler() -> str | None:
    """The host C compiler ($CC, else gcc, else cc), or None."""
    import os
    import shutil

    for name in (os.environ.get("CC"), "gcc", "cc"):
        if name and shutil.which(name):
            return name
    return None


def build_harness(
    c_dir: str | Path,
    out_binary: str | Path,
    prefix: str = "ltc_head",
    compiler: str | None = None,
    double: bool = False,
) -> Path:
    """Compile `<prefix>.c` and `<prefix>_harness.c` in c_dir with the strict
    flags; `double` builds the step in double precision (-D<PREFIX>_DOUBLE)."""
    import subprocess

    cc = compiler or find_c_compiler()
    if cc is None:
        raise FileNotFoundError("no C compiler found (set CC, or install gcc)")
    c_dir = Path(c_dir)
    out_binary = Path(out_binary)
    cmd = [
        cc, *GCC_FLAGS, *([f"-D{prefix.upper()}_DOUBLE"] if double else []), "-I", str(c_dir),
        str(c_dir / f"{prefix}.c"), str(c_dir / f"{prefix}_harness.c"),
        "-o", str(out_binary), "-lm",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ValueError(f"C build failed ({' '.join(cmd)}):\n{proc.stderr}")
    return out_binary


def run_harness(
    binary: str | Path, golden: str | Path, tol: float = 1e-5, bench_steps: int = 0
) -> HarnessResult:
    """Run a built harness on a golden file and parse what it prints."""
    import subprocess

    cmd = [str(binary), str(golden), repr(float(tol))]
    if bench_steps:
        cmd += ["--bench", str(int(bench_steps))]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = proc.stdout + proc.stderr
    m = re.search(r"max_abs_err_outputs=(\S+) max_abs_err_state=(\S+)", text)
    if m is None:
        raise ValueError(f"harness {binary} printed no result (exit {proc.returncode}):\n{text}")
    us = re.search(r"us_per_step=(\S+)", text)
    return HarnessResult(
        proc.returncode == 0 and "PASS" in text,
        float(m.group(1)),
        float(m.group(2)),
        float(us.group(1)) if us else None,
        text,
    )
