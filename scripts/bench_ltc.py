"""Benchmark: lnn_nav's LTC against ncps's LTC (and nn.LSTM), timed in the same run.

Setup (issue 2): wiring AutoNCP(48 neurons, 4 motor), 32 inputs, 6 ODE unfolds,
batch 16 x 64 steps, dt = 1 s (ncps's implicit step), weights copied from the
ncps model with ``LTC.from_ncps`` so both compute the same function.

Measured:
- training step (forward + backward of a mean-square loss on the outputs),
  median of ``--repeats`` runs after ``--warmup`` runs, at 1 and 2 threads;
- single-step latency, B = 1, inference (``torch.no_grad()``): lnn_nav's
  ``LTC.step`` against ncps's ``LTCCell`` call (its cheapest single step);
- bytes of tensors saved by autograd in one training forward
  (``torch.autograd.graph.saved_tensors_hooks``);
- ``nn.LSTM(32, 48)`` (same state size) training step at 1 thread.

Targets: train_speedup >= 10, step_speedup >= 5, saved_bytes_ratio <= 0.2
(lnn_nav / ncps), stretch lstm_ratio_1t <= 3 (lnn_nav / LSTM).

Run: ``.venv/bin/python scripts/bench_ltc.py`` (about a minute). The last line
printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from lnn_nav.models.ltc import LTC

INPUTS, UNITS, MOTOR, BATCH, STEPS = 32, 48, 4, 16, 64


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
    """Median wall time of fn() in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def saved_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of all tensors autograd packs for backward while fn() runs."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def train_step(model: torch.nn.Module, x: torch.Tensor, call: Callable) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        y = call(model, x)
        y.square().mean().backward()

    return run


def run_benchmark(repeats: int = 15, warmup: int = 3, seed: int = 0,
                  with_torch_backend: bool = False) -> dict[str, Any]:
    from ncps.torch import LTC as NcpsLTC
    from ncps.wirings import AutoNCP as NcpsAutoNCP

    torch.manual_seed(seed)  # ncps initialises from the global generator
    ref = NcpsLTC(INPUTS, NcpsAutoNCP(UNITS, MOTOR))
    ltc = LTC.from_ncps(ref)  # backend "auto": the C++ kernel when it builds
    lstm = torch.nn.LSTM(INPUTS, UNITS, batch_first=True)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(BATCH, STEPS, INPUTS, generator=gen)

    def call_ncps(m, xx):
        return m(xx)[0]

    def call_ltc(m, xx):
        return m(xx, None, 1.0)[0]

    def call_lstm(m, xx):
        return m(xx)[0]

    out: dict[str, Any] = {"backend": "kernel" if ltc._use_kernel(x) else "torch"}
    with torch.no_grad():
        out["max_abs_diff"] = float((call_ltc(ltc, x) - call_ncps(ref, x)).abs().max())

    threads_before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            t_ncps = median_ms(train_step(ref, x, call_ncps), repeats, warmup)
            t_ltc = median_ms(train_step(ltc, x, call_ltc), repeats, warmup)
            out[f"train_ms_ncps_{threads}t"] = t_ncps
            out[f"train_ms_lnn_{threads}t"] = t_ltc
            out[f"train_speedup_{threads}t"] = t_ncps / t_ltc
            if threads == 1:
                t_lstm = median_ms(train_step(lstm, x, call_lstm), repeats, warmup)
                out["train_ms_lstm_1t"] = t_lstm
                out["lstm_ratio_1t"] = t_ltc / t_lstm
                if with_torch_backend:
                    ltc.backend = "torch"
                    out["train_ms_lnn_torch_backend_1t"] = median_ms(
                        train_step(ltc, x, call_ltc), max(3, repeats // 3), 1)
                    ltc.backend = "auto"

        torch.set_num_threads(1)
        x1 = torch.randn(1, INPUTS, generator=gen)
        h1 = torch.zeros(1, UNITS)
        cell = ref.rnn_cell
        with torch.no_grad():
            n_calls = 300
            # each sample is the mean of n_calls calls; median over repeats samples
            us_ncps = median_ms(lambda: [cell(x1, h1, 1.0) for _ in range(n_calls)],
                                repeats, warmup) * 1e3 / n_calls
            us_ltc = median_ms(lambda: [ltc.step(x1, h1, 1.0) for _ in range(n_calls)],
                               repeats, warmup) * 1e3 / n_calls
        out["step_us_ncps"] = us_ncps
        out["step_us_lnn"] = us_ltc
        out["step_speedup"] = us_ncps / us_ltc

        b_ncps = saved_bytes(lambda: call_ncps(ref, x))
        b_ltc = saved_bytes(lambda: call_ltc(ltc, x))
        b_lstm = saved_bytes(lambda: call_lstm(lstm, x))
        out["saved_mb_ncps"] = b_ncps / 2**20
        out["saved_mb_lnn"] = b_ltc / 2**20
        out["saved_mb_lstm"] = b_lstm / 2**20
        out["saved_bytes_ratio"] = b_ltc / b_ncps
    finally:
        torch.set_num_threads(threads_before)
    out["params"] = ltc.param_count()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per figure (>= 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-backend", action="store_true",
                        help="also time the pure-PyTorch fallback solver (slow)")
    args = parser.parse_args(argv)
    if args.repeats < 10:
        parser.error(f"--repeats={args.repeats}; the protocol asks for at least 10")
    res = run_benchmark(args.repeats, args.warmup, args.seed, args.torch_backend)
    for key, value in res.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{key:32s} {shown}")
    keys = ("train_speedup_1t", "train_speedup_2t", "step_speedup", "saved_bytes_ratio",
            "lstm_ratio_1t", "max_abs_diff")
    def sig(v: Any) -> Any:  # 5 significant digits; keeps tiny values such as max_abs_diff
        return float(f"{v:.5g}") if isinstance(v, float) else v

    summary = {k: sig(res[k]) for k in keys}
    summary.update({k: sig(v) for k, v in res.items() if k not in keys})
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
