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
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from lnn_nav.atomic import atomic_write_text

METADATA_NAME = "metadata.json"
METADATA_SCHEMA = 1


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

The step takes the encoder's output features ({c['num_inputs']} floats, as
the encoder in `policy.onnx` computes them; input stage inside the C step:
{c['input_stage']}) and returns {c['num_outputs']} values: {c['outputs']}.

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

- Image: {h}x{w}x3 uint8, channel order {img['channel_order']}, HWC, passed
  as is: normalisation is part of the model ({img['normalisation']}).
- dt: seconds since the previous frame, measured, per sample; nominal
  {ctrl['dt_s']:.6f} s ({ctrl['rate_hz']:g} Hz). The network integrates over
  the real elapsed time, so another rate works if the true dt is passed.
- Command: {", ".join(act['names'])} in {", ".join(act['units'])}, frame {act['frame']}
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
"policy" / "sha256" there is the hash of the checkpoint this bundle came from.
"""


# --------------------------------------------------------------------------- export

ONNX_NAME = "policy.onnx"
ONNX_GOLDEN_NAME = "onnx_golden.npz"
C_PREFIX = "ltc_head"
C_GOLDEN_NAME = "golden.bin"
README_NAME = "README.md"
ONNX_GOLDEN_STEPS = 16
TOLERANCE = 1e-5


def record_sim_frames(
    policy: Any, steps: int, family: str = "forest", split: str = "train", seed: int = 0
) -> tuple[Any, Any]:
    """Fly `policy` closed-loop in the simulator through `PolicyController` and
    return the frames it saw, (T, H, W, 3) uint8, and their dt, (T,) s.
    An episode that ends before `steps` frames continues with the next seed."""
    import numpy as np

    from lnn_nav.controller import PolicyController
    from lnn_nav.rollout import make_env, policy_camera

    if steps < 1:
        raise ValueError(f"steps={steps}: expected >= 1")
    import torch

    env = make_env("fly", family, split, camera=policy_camera(policy))
    threads = torch.get_num_threads()
    # one frame per step: a second intra-op thread only adds contention
    # (measured 10x slower per frame on a busy 2-core machine)
    torch.set_num_threads(1)
    try:
        limits = env.unwrapped.limits
        ctrl = PolicyController(policy)
        obs, _ = env.reset(seed=seed)
        frames, dts = [], []
        while len(frames) < steps:
            dt = float(obs["dt"][0])
            frames.append(obs["image"].copy())
            dts.append(dt)
            cmd = ctrl.step(obs["image"], dt)
            obs, _, terminated, truncated, _ = env.step(limits.to_normalized(cmd))
            if terminated or truncated:
                seed += 1
                obs, _ = env.reset(seed=seed)
                ctrl.reset()
        return np.stack(frames), np.asarray(dts, np.float32)
    finally:
        torch.set_num_threads(threads)
        env.close()


def record_video_frames(path: str | Path, image_shape: tuple[int, int, int], steps: int
                        ) -> tuple[Any, Any]:
    """Frames (T, H, W, 3) uint8 and dt (T,) s from a video file (looped if short)."""
    import numpy as np

    from lnn_nav.bridges.camera_source import OpenCVSource

    src = OpenCVSource(path, image_shape[:2], loop=True)
    try:
        frames, stamps = [], []
        while len(frames) < steps + 1:
            f = src.read()
            if f is None:
                raise ValueError(f"video {path} has no readable frames")
            frames.append(f.image)
            stamps.append(f.stamp_s)
    finally:
        src.close()
    dt = np.diff(np.asarray(stamps, np.float64)).astype(np.float32)
    return np.stack(frames[1:]), dt


def _package_versions() -> dict[str, str]:
    import platform
    from importlib import metadata as md

    out = {"python": platform.python_version()}
    for name in ("lnn-nav", "torch", "numpy", "onnx", "onnxruntime"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def export_bundle(
    policy: Any,
    out_dir: str | Path,
    frames: Any,
    dt: Any,
    policy_name: str = "policy",
    policy_sha256: str | None = None,
    force: bool = False,
) -> Path:
    """Write the whole bundle for `policy` into `out_dir`, then verify it.

    frames (T, H, W, 3) uint8 and dt (T,) s feed the golden vectors: the C
    head's (encoder features, dt, head outputs, final state) over all T steps,
    and the ONNX graph's (the first 16 frames, commands, states).
    Raises ValueError if the bundle does not verify (hashes, C parity with
    the host compiler, ONNX parity in onnxruntime).
    """
    import numpy as np
    import torch

    from lnn_nav.controller import _policy_image_shape
    from lnn_nav.export import c_codegen, head_spec, onnx_export
    from lnn_nav.models.heads import DEFAULT_DT_S

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not (out / METADATA_NAME).is_file() and not force:
            raise ValueError(
                f"out={str(out)!r} is a non-empty directory that is not a bundle: "
                "expected an empty or missing directory, an earlier bundle, or --force"
            )
        if (out / METADATA_NAME).is_file():
            # replace an earlier bundle's files, never a user's other files
            old = read_metadata(out)
            for name in old["files"]:
                (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    image_shape = _policy_image_shape(policy)
    if image_shape is None:
        raise ValueError("the policy declares no image size; cannot export")
    frames = np.asarray(frames, np.uint8)
    dt = np.asarray(dt, np.float32).reshape(-1)
    if frames.ndim != 4 or frames.shape[1:] != image_shape or frames.shape[0] != dt.shape[0]:
        raise ValueError(
            f"frames {frames.shape} and dt {dt.shape}: expected (T, {image_shape[0]}, "
            f"{image_shape[1]}, 3) and (T,)"
        )
    policy.eval()

    # 1. ONNX: the whole step, and a short golden run of it from torch
    onnx_export.export_onnx(policy, out / ONNX_NAME, image_shape)
    n_onnx = min(ONNX_GOLDEN_STEPS, frames.shape[0])
    state = policy.init_state(1)
    cmds, states = [], []
    # the graph is a trace of the reference solver: its golden run uses the same
    with torch.no_grad(), head_spec.reference_backend(policy):
        for t in range(n_onnx):
            cmd, state = policy.step(
                torch.from_numpy(frames[t : t + 1]), state, torch.tensor([[float(dt[t])]])
            )
            cmds.append(cmd[0].numpy())
            states.append(state[0].numpy())
    onnx_export.write_onnx_golden(
        out / ONNX_GOLDEN_NAME, frames[:n_onnx], dt[:n_onnx], np.stack(cmds), np.stack(states)
    )
    files = [ONNX_NAME, ONNX_GOLDEN_NAME, README_NAME]

    # 2. C head (LTC heads only), golden vectors and harness
    c_meta: dict[str, Any] | None = None
    kind = getattr(policy.head, "kind", type(policy.head).__name__)
    try:
        spec = head_spec.head_spec(
            policy, name=policy_name,
            extra={"policy SHA-256": policy_sha256} if policy_sha256 else None,
        )
    except ValueError:
        spec = None  # a non-LTC head ships ONNX only; metadata says so
    if spec is not None:
        src = c_codegen.generate_c(spec, C_PREFIX)
        atomic_write_text(out / f"{C_PREFIX}.h", src.header)
        atomic_write_text(out / f"{C_PREFIX}.c", src.source)
        atomic_write_text(out / f"{C_PREFIX}_harness.c", c_codegen.harness_source(C_PREFIX))
        golden = head_spec.golden_from_features(policy, frames, dt)
        c_codegen.write_golden(out / C_GOLDEN_NAME, golden)
        i_n, n, o = spec.sizes
        c_meta = {
            "prefix": C_PREFIX,
            "files": [f"{C_PREFIX}.h", f"{C_PREFIX}.c", f"{C_PREFIX}_harness.c"],
            "golden": C_GOLDEN_NAME,
            "golden_steps": int(dt.shape[0]),
            "tolerance": TOLERANCE,
            "num_inputs": i_n,
            "state_size": n,
            "num_outputs": o,
            "ode_unfolds": int(spec.ltc["ode_unfolds"]),
            "synapses": int(spec.ltc["src"].size),
            "sensory_synapses": int(spec.ltc["sensory_src"].size),
            "constant_bytes": src.constant_bytes,
            "state_bytes": src.state_bytes,
            "input_stage": ", ".join(op.kind for op in spec.input_ops) or "none",
            "outputs": _head_output_doc(policy),
            "compile": "gcc " + " ".join(c_codegen.GCC_FLAGS) + f" {C_PREFIX}.c ... -lm",
        }
        files += [*c_meta["files"], C_GOLDEN_NAME]

    # 3. metadata and README
    limits = policy.limits
    config = getattr(policy, "config", None)
    meta: dict[str, Any] = {
        "policy": {
            "name": policy_name,
            "sha256": policy_sha256,
            "head_kind": kind,
            "param_count_head": policy.head.param_count(),
            "config": config.to_dict() if hasattr(config, "to_dict") else repr(config),
        },
        "image": {
            "height": image_shape[0],
            "width": image_shape[1],
            "channels": 3,
            "channel_order": "RGB",
            "layout": "HWC",
            "dtype": "uint8",
            # the pixels a policy was trained on cover this much of the world: a
            # camera with another field of view must be cropped or resized to it
            "vfov_rad": float(policy.config.encoder.vfov_rad),
            "hfov_rad": float(policy.config.encoder.hfov_rad),
            "normalisation": _normalisation_doc(policy.encoder),
        },
        "control": {"dt_s": DEFAULT_DT_S, "rate_hz": 1.0 / DEFAULT_DT_S,
                    "dt_input": "measured seconds since the previous frame, per sample (B, 1)"},
        "action": {
            "names": ["forward", "left", "up", "yaw_rate"],
            "units": ["m/s", "m/s", "m/s", "rad/s"],
            "frame": "body FLU",
            "limits": limits.to_dict(),
        },
        "state_size": int(policy.init_state(1).shape[1]),
        "onnx": {
            "file": ONNX_NAME,
            "inputs": {"image": "(B, H, W, 3) uint8", "state": "(B, S) float32",
                       "dt": "(B, 1) float32 s"},
            "outputs": {"command": "(B, 4) float32 body FLU", "state_next": "(B, S) float32"},
            "opset": onnx_export.OPSET,
            "golden": ONNX_GOLDEN_NAME,
            "golden_steps": n_onnx,
            "tolerance": TOLERANCE,
        },
        "c_head": c_meta,
        "versions": _package_versions(),
    }
    atomic_write_text(out / README_NAME, bundle_readme(meta))
    write_metadata(out, meta, files)
    report = verify_bundle(out)
    if not report.ok:
        raise ValueError(f"bundle {out} does not verify: " + "; ".join(report.problems))
    return out


def _normalisation_doc(encoder: Any) -> str:
    """What the graph does to the raw pixels (the caller passes uint8 RGB as is)."""
    if type(encoder).__name__ == "CNNEncoder":
        # lnn_nav.models.encoder.CNNEncoder.forward
        return "(pixel / 255 - 0.5) * 4 inside the graph; LayerNorm on the features"
    return f"inside the graph ({type(encoder).__name__})"


def _head_output_doc(policy: Any) -> str:
    if getattr(policy, "command_scale", None) is not None:
        return ("the command: forward, left, up [m/s], yaw_rate [rad/s], body FLU "
                "(tanh of the motor outputs times the limits, as the policy computes it)")
    return "the head's raw outputs (before the policy's command scaling)"


def export_policy_file(
    policy_path: str | Path,
    out_dir: str | Path,
    frames: str = "sim",
    family: str = "forest",
    split: str = "train",
    seed: int = 0,
    golden_steps: int = 500,
    force: bool = False,
) -> Path:
    """`lnn-nav export`: load a checkpoint, record golden frames (a closed-loop
    simulator episode, or a video file), write and verify the bundle."""
    from lnn_nav.controller import _policy_image_shape
    from lnn_nav.models.policy import NavPolicy

    if golden_steps < 1:
        raise ValueError(f"golden_steps={golden_steps}: expected >= 1")
    path = Path(policy_path)
    policy = NavPolicy.load(path)
    policy.eval()
    if frames == "sim":
        imgs, dt = record_sim_frames(policy, golden_steps, family, split, seed)
    else:
        shape = _policy_image_shape(policy)
        if shape is None:
            raise ValueError("the policy declares no image size")
        imgs, dt = record_video_frames(frames, shape, golden_steps)
    return export_bundle(
        policy, out_dir, imgs, dt, policy_name=path.name, policy_sha256=sha256_file(path),
        force=force,
    )
