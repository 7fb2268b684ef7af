"""Benchmark of the generated C99 LTC head (a benchmark, not a test).

Builds the default policy's head (or --policy P's), generates its C step,
checks it against torch on 500 golden steps, then reports:

- microseconds per step on this machine (gcc -O2 -std=c99, median of
  --repeats runs of --bench-steps steps each); target: <= 15 us;
- constant bytes (weights and indices, flash), state bytes, stack scratch;
- where arm-none-eabi-gcc is installed: a Cortex-M4F build (-O2, hard float),
  with flash (.text + .rodata + .data) and RAM (.data + .bss + the step's
  stack from -fstack-usage), for the object alone and linked into a minimal
  image with newlib's libm (expf, tanhf, sqrtf); skipped, and said so, where
  it is absent.

Ends with one JSON line.

    .venv/bin/python scripts/bench_c_head.py [--policy P] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from lnn_nav.export.c_codegen import (
    GCC_FLAGS,
    build_harness,
    find_c_compiler,
    generate_c,
    harness_source,
    run_harness,
    write_golden,
)
from lnn_nav.export.head_spec import golden_from_features, head_spec

M4_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
TARGET_US = 15.0


def _size(tool: str, path: Path) -> dict[str, int]:
    """Section sizes (bytes) from `size -A`."""
    out = subprocess.run([tool, "-A", str(path)], capture_output=True, text=True, check=True).stdout
    sizes: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)", line)
        if m:
            sizes[m.group(1)] = sizes.get(m.group(1), 0) + int(m.group(2))
    return sizes


def cortex_m4f(c_dir: Path, prefix: str) -> dict[str, object] | None:
    """Flash and RAM of the head on a Cortex-M4F, or None without the toolchain."""
    gcc = shutil.which("arm-none-eabi-gcc")
    size_tool = shutil.which("arm-none-eabi-size")
    if gcc is None or size_tool is None:
        return None
    obj = c_dir / "m4.o"
    subprocess.run(
        [gcc, *M4_FLAGS, *GCC_FLAGS, "-fstack-usage", "-c", str(c_dir / f"{prefix}.c"),
         "-o", str(obj)],
        check=True, capture_output=True, cwd=c_dir,
    )
    su = (c_dir / "m4.su").read_text()
    m = re.search(rf"{prefix}_step\s+(\d+)", su)
    stack = int(m.group(1)) if m else -1
    s = _size(size_tool, obj)
    result: dict[str, object] = {
        "object_flash_bytes": s.get(".text", 0) + s.get(".rodata", 0) + s.get(".data", 0),
        "object_text_bytes": s.get(".text", 0),
        "object_rodata_bytes": s.get(".rodata", 0),
        "step_stack_bytes": stack,
        "ram_bytes": s.get(".data", 0) + s.get(".bss", 0) + stack,
    }
    # A minimal image: the step and its state, so libm's functions are counted.
    (c_dir / "m4_main.c").write_text(
        f'#include "{prefix}.h"\n'
        f"float state[{prefix.upper()}_STATE_SIZE];\n"
        f"volatile float features[{prefix.upper()}_NUM_INPUTS];\n"
        f"volatile float out_v[{prefix.upper()}_NUM_OUTPUTS];\n"
        "int main(void) {\n"
        f"    float x[{prefix.upper()}_NUM_INPUTS], out[{prefix.upper()}_NUM_OUTPUTS];\n"
        "    int i;\n"
        f"    for (i = 0; i < {prefix.upper()}_NUM_INPUTS; ++i) x[i] = features[i];\n"
        f"    {prefix}_init_state(state);\n"
        f"    {prefix}_step(x, state, 0.0333f, out);\n"
        f"    for (i = 0; i < {prefix.upper()}_NUM_OUTPUTS; ++i) out_v[i] = out[i];\n"
        "    return 0;\n}\n"
    )
    elf = c_dir / "m4.elf"
    link = subprocess.run(
        [gcc, *M4_FLAGS, *GCC_FLAGS, "--specs=nosys.specs", "-Wl,--gc-sections",
         "-ffunction-sections", "-fdata-sections", "-I", str(c_dir),
         str(c_dir / f"{prefix}.c"), str(c_dir / "m4_main.c"), "-o", str(elf), "-lm"],
        capture_output=True, text=True, check=False,
    )
    if link.returncode == 0:
        si = _size(size_tool, elf)
        result["image_flash_bytes"] = sum(
            v for k, v in si.items() if k in (".text", ".rodata", ".data", ".init", ".fini",
                                             ".ARM.exidx", ".init_array", ".fini_array")
        )
        result["image_note"] = (
            "linked with newlib (nosys.specs) and libm; includes C start-up code"
        )
    else:
        result["image_note"] = f"link failed: {link.stderr.strip()[:200]}"
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", help="policy checkpoint; default: a fresh default policy")
    ap.add_argument("--bench-steps", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    cc = find_c_compiler()
    if cc is None:
        print("no C compiler found (install gcc or set CC)", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    if args.policy:
        from lnn_nav.models.policy import NavPolicy

        policy = NavPolicy.load(args.policy)
    else:
        from lnn_nav.models.policy import NavPolicy, default_policy_config

        policy = NavPolicy(default_policy_config())
    policy.eval()
    spec = head_spec(policy)
    i_n, n, o = spec.sizes
    gen = torch.Generator().manual_seed(args.seed)
    # encoder features of random frames: the C step's timing does not depend
    # on pixel content, its parity is checked on these same vectors
    frames = torch.randint(0, 256, (500, *policy_image_hw(policy), 3), dtype=torch.uint8,
                           generator=gen)
    dt = (1.0 / 30.0) * (0.75 + 0.75 * torch.rand(500, generator=gen))
    golden = golden_from_features(policy, frames, dt)
    src = generate_c(spec)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "ltc_head.h").write_text(src.header)
        (d / "ltc_head.c").write_text(src.source)
        (d / "ltc_head_harness.c").write_text(harness_source())
        write_golden(d / "golden.bin", golden)
        binary = build_harness(d, d / "harness", compiler=cc)
        parity = run_harness(binary, d / "golden.bin")
        times = []
        for _ in range(args.repeats):
            r = run_harness(binary, d / "golden.bin", bench_steps=args.bench_steps)
            times.append(r.us_per_step)
        m4 = cortex_m4f(d, "ltc_head")
    us = statistics.median(times)
    e_rec = int(spec.ltc["src"].size)
    e_sens = int(spec.ltc["sensory_src"].size)
    print(f"head: {i_n} inputs, {n} neurons, {o} outputs, {e_sens} sensory + {e_rec} recurrent "
          f"synapses, {int(spec.ltc['ode_unfolds'])} unfolds; input stage: "
          f"{', '.join(op.kind for op in spec.input_ops) or 'none'}")
    print(f"parity over 500 steps: outputs {parity.max_abs_err_outputs:.2e}, "
          f"state {parity.max_abs_err_state:.2e} ({'PASS' if parity.passed else 'FAIL'})")
    print(f"C step ({cc} {' '.join(GCC_FLAGS)}): {us:.2f} us median of {args.repeats} x "
          f"{args.bench_steps} steps (runs: {', '.join(f'{t:.2f}' for t in times)}); "
          f"target <= {TARGET_US:g} us: {'met' if us <= TARGET_US else 'NOT met'}")
    print(f"constants {src.constant_bytes} B, state {src.state_bytes} B, "
          f"stack scratch ~{src.stack_bytes} B")
    if m4 is None:
        print("Cortex-M4F: skipped (arm-none-eabi-gcc not installed; Debian: gcc-arm-none-eabi)")
    else:
        print(f"Cortex-M4F (-O2, hard float): object flash {m4['object_flash_bytes']} B "
              f"(text {m4['object_text_bytes']}, rodata {m4['object_rodata_bytes']}), "
              f"RAM {m4['ram_bytes']} B (step stack {m4['step_stack_bytes']} B); "
              f"minimal image flash {m4.get('image_flash_bytes', 'n/a')} B "
              f"({m4['image_note']})")
    print(json.dumps({
        "us_per_step_median": round(us, 3),
        "us_per_step_runs": [round(t, 3) for t in times],
        "target_us": TARGET_US,
        "parity_max_abs_err_outputs": parity.max_abs_err_outputs,
        "parity_max_abs_err_state": parity.max_abs_err_state,
        "constant_bytes": src.constant_bytes,
        "state_bytes": src.state_bytes,
        "stack_bytes": src.stack_bytes,
        "inputs": i_n, "neurons": n, "outputs": o,
        "sensory_synapses": e_sens, "synapses": e_rec,
        "cortex_m4f": m4,
    }))
    return 0 if parity.passed else 1


def policy_image_hw(policy: object) -> tuple[int, int]:
    from lnn_nav.controller import _policy_image_shape

    shape = _policy_image_shape(policy)
    if shape is None:
        raise ValueError("the policy declares no image size")
    return shape[0], shape[1]


if __name__ == "__main__":
    raise SystemExit(main())
