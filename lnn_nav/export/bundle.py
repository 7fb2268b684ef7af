"""The export bundle on disk: atomic writes, SHA-256s, metadata and verification.

A bundle directory holds the files listed in `metadata.json` under "files",
each with its SHA-256 and size. `verify_bundle(dir)` recomputes every hash
(a changed, missing or unlisted file is a problem), then rebuilds the C head
with the host compiler and replays the golden vectors, and replays the ONNX
golden frames in onnxruntime when it is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

METADATA_NAME = "metadata.json"
METADATA_SCHEMA = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same directory and
    `os.replace`, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_table(bundle_dir: str | Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """{name: {"sha256": hex, "bytes": size}} for the named files of a bundle."""
    d = Path(bundle_dir)
    table = {}
    for name in sorted(names):
        p = d / name
        if not p.is_file():
            raise FileNotFoundError(f"bundle file {str(p)!r} does not exist")
        table[name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return table


def write_metadata(bundle_dir: str | Path, metadata: dict[str, Any], files: list[str]) -> Path:
    """Write metadata.json with the hash table of `files` (which must exist)."""
    if METADATA_NAME in files:
        raise ValueError(f"{METADATA_NAME} cannot list its own hash")
    meta = dict(metadata)
    meta["schema"] = METADATA_SCHEMA
    meta["files"] = file_table(bundle_dir, files)
    path = Path(bundle_dir) / METADATA_NAME
    atomic_write_text(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def read_metadata(bundle_dir: str | Path) -> dict[str, Any]:
    path = Path(bundle_dir) / METADATA_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: not an lnn-nav export bundle")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise ValueError(f"{path}: expected an object with a 'files' table")
    if meta.get("schema") != METADATA_SCHEMA:
        raise ValueError(f"{path}: schema {meta.get('schema')!r}, expected {METADATA_SCHEMA}")
    return meta


class VerifyReport(NamedTuple):
    ok: bool
    problems: list[str]
    """one sentence per problem found (empty when ok)"""
    checks: list[str]
    """one sentence per check that passed or was skipped"""


def verify_bundle(
    bundle_dir: str | Path, run_golden: bool = True, compiler: str | None = None
) -> VerifyReport:
    """Check every hash in metadata.json, then rerun the golden vectors.

    A file whose SHA-256 or size differs, a listed file that is missing and a
    file in the directory that metadata does not list are all problems. With
    run_golden, the C head is rebuilt with the strict flags and replayed on
    golden.bin (skipped, and said so, when no C compiler is found), and the
    ONNX golden frames are replayed in onnxruntime (skipped when absent).
    """
    d = Path(bundle_dir)
    meta = read_metadata(d)
    problems: list[str] = []
    checks: list[str] = []
    listed = meta["files"]
    for name, entry in sorted(listed.items()):
        p = d / name
        if not p.is_file():
            problems.append(f"{name}: listed in {METADATA_NAME} but missing")
            continue
        digest = sha256_file(p)
        if digest != entry.get("sha256"):
            problems.append(
                f"{name}: SHA-256 {digest[:16]}... does not match {METADATA_NAME} "
                f"({str(entry.get('sha256'))[:16]}...): the file was modified"
            )
        elif p.stat().st_size != entry.get("bytes"):
            problems.append(f"{name}: {p.stat().st_size} bytes, metadata says {entry.get('bytes')}")
    for p in sorted(d.iterdir()):
        if p.name != METADATA_NAME and p.name not in listed and not p.name.startswith("."):
            problems.append(f"{p.name}: in the bundle but not listed in {METADATA_NAME}")
    if not problems:
        checks.append(f"SHA-256 of {len(listed)} files match {METADATA_NAME}")
    if run_golden and not problems:
        problems_g, checks_g = _rerun_golden(d, meta, compiler)
        problems += problems_g
        checks += checks_g
    return VerifyReport(not problems, problems, checks)


def _rerun_golden(
    d: Path, meta: dict[str, Any], compiler: str | None
) -> tuple[list[str], list[str]]:
    from lnn_nav.export import c_codegen

    problems: list[str] = []
    checks: list[str] = []
    c_meta = meta.get("c_head")
    if c_meta:
        prefix = c_meta.get("prefix", "ltc_head")
        tol = float(c_meta.get("tolerance", 1e-5))
        cc = compiler or c_codegen.find_c_compiler()
        if cc is None:
            checks.append("C golden vectors: skipped, no C compiler found (set CC)")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    binary = c_codegen.build_harness(d, Path(tmp) / "harness", prefix, cc)
                    r = c_codegen.run_harness(binary, d / c_meta["golden"], tol)
                except ValueError as exc:
                    problems.append(f"C head: {exc}")
                else:
                    line = (
                        f"C golden vectors ({c_meta.get('golden_steps')} steps): max abs error "
                        f"outputs {r.max_abs_err_outputs:.2e}, state {r.max_abs_err_state:.2e} "
                        f"(tolerance {tol:g})"
                    )
                    (checks if r.passed else problems).append(line)
    onnx_meta = meta.get("onnx")
    if onnx_meta and onnx_meta.get("golden"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            checks.append("ONNX golden frames: skipped, onnxruntime is not installed")
        else:
            from lnn_nav.export.onnx_export import check_onnx_golden

            err = check_onnx_golden(d / onnx_meta["file"], d / onnx_meta["golden"])
            tol = float(onnx_meta.get("tolerance", 1e-5))
            line = f"ONNX golden frames: max abs error {err:.2e} (tolerance {tol:g})"
            (checks if err <= tol else problems).append(line)
    return problems, checks


# --------------------------------------------------------------------------- README


def bundle_readme(meta: dict[str, Any]) -> str:
    """The README.md that ships inside a bundle, filled from its metadata."""
    img = meta["image"]
    h, w = img["height"], img["width"]
    c = meta.get("c_head") or {}
    prefix = c.get("prefix", "ltc_head")
    P = prefix.upper()
    act = meta["action"]
    lim = act["limits"]
    ctrl = meta["control"]
    state_size = meta["state_size"]
    c_section = ""
    if c:
        c_section = f"""
## The head in C (flight controller MCU)

`{prefix}.c` / `{prefix}.h`: dependency-free C99 (only `<math.h>` and
`<stdint.h>`), sparse synapses only ({c['synapses']} recurrent +
{c['sensory_synapses']} sensory), weights in `static const` arrays
({c['constant_bytes']} bytes, flash), no malloc. The caller keeps the state:
{c['state_size']} floats ({c['state_bytes']} bytes).

```c
#include "{prefix}.h"

static float state[{P}_STATE_SIZE];
float features[{P}_NUM_INPUTS];   /* from the encoder, every frame */
float out[{P}_NUM_OUTPUTS];

{prefix}_init_state(state);       /* at take-off / episode start */
/* each frame, dt_s = seconds since the previous frame (measured) */
if ({prefix}_step(features, state, dt_s, out) != 0) {{ /* dt_s not finite and > 0 */ }}
```

The step takes the encoder's output features ({c['num_inputs']} floats,
input stage inside: {c['input_stage']}) and returns {c['num_outputs']} head
outputs: {c['outputs']}.

Check it on your machine (host compiler):

```sh
gcc -O2 -std=c99 -Wall -Wextra -Werror {prefix}.c {prefix}_harness.c -o harness -lm
./harness {c['golden']}          # replays {c['golden_steps']} golden steps, prints PASS/FAIL
./harness {c['golden']} 1e-5 --bench 100000   # also times the step
```

For a Cortex-M4F: `arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard
-mfpu=fpv4-sp-d16 -O2 -std=c99 -c {prefix}.c`.
"""
    return f"""# lnn-nav export bundle: {meta['policy']['name']}

Everything needed to fly this policy off the simulator. Generated by
`lnn-nav export`; `lnn-nav export --verify DIR` checks every file's SHA-256
against `metadata.json` and replays the golden vectors.

## What runs where

- **Companion computer or camera deck**: the CNN encoder, or the whole step,
  from `policy.onnx` (onnxruntime). It takes the camera frame.
- **Flight controller MCU**: the recurrent LTC head in C (`{prefix}.c`), fed
  with the encoder's features, or nothing if the companion runs the whole
  step and sends velocity set-points (e.g. `lnn-nav fly-mavlink`).
- **Flight controller**: tracks the velocity set-point (its own attitude and
  rate loops).

## Frames and units

- Image: {h}x{w}x3 uint8, channel order {img['channel_order']}, HWC, no
  normalisation by the caller ({img['normalisation']} happens inside the graph).
- dt: seconds since the previous frame, measured, per sample; nominal
  {ctrl['dt_s']:.6f} s ({ctrl['rate_hz']:g} Hz). The network integrates over
  the real elapsed time, so another rate works if the true dt is passed.
- Command: {act['names']} in {act['units']}, frame {act['frame']}
  (x forward, y left, z up; yaw rate positive counter-clockwise seen from
  above). Limits: |forward|, |left| <= {lim['max_horizontal']} m/s,
  |up| <= {lim['max_vertical']} m/s, |yaw_rate| <= {lim['max_yaw_rate']} rad/s.
  MAVLink wants FRD: negate left, up and yaw rate.
- State: {state_size} float32, zeros at the start of an episode.

## The whole step from Python (onnxruntime)

`policy.onnx`: inputs `image` (B, {h}, {w}, 3) uint8, `state` (B, {state_size})
float32, `dt` (B, 1) float32 s; outputs `command` (B, 4) float32 and
`state_next` (B, {state_size}) float32.

```python
import numpy as np, onnxruntime as ort
sess = ort.InferenceSession("policy.onnx", providers=["CPUExecutionProvider"])
state = np.zeros((1, {state_size}), np.float32)
# each frame: image uint8 (1, {h}, {w}, 3) RGB, dt seconds since the last frame
command, state = sess.run(["command", "state_next"],
                          {{"image": image, "state": state, "dt": np.array([[dt]], np.float32)}})
forward, left, up, yaw_rate = command[0]
```

Clip the command to the limits above and rate-limit it before flying it
(lnn-nav's `PolicyController` does both, and hovers when the output is not
finite or frames stop).
{c_section}
## Files

See `metadata.json` ("files") for each file's SHA-256 and size;
`policy_sha256` there is the hash of the checkpoint this bundle came from.
"""
