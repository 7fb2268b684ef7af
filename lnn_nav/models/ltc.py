"""Liquid time-constant (LTC) network on a sparse NCP wiring, with the fused solver.

The ODE (Hasani et al., AAAI 2021) for neuron potentials v (B, N), driven by the
mapped input u (B, I):

    cm_j dv_j/dt = gleak_j (vleak_j - v_j)
                 + sum_{e: i->j} w_e  sig(sigma_e (v_i - mu_e)) (erev_e - v_j)      recurrent
                 + sum_{e: i->j} sw_e sig(ssigma_e (u_i - smu_e)) (serev_e - v_j)   sensory

One step of elapsed time dt (seconds) is K = ``ode_unfolds`` fused semi-implicit
Euler sub-steps of dt/K each. With cmt_j = cm_j / (dt / K), every sub-step is

    a_e  = w_e  sig(sigma_e (v_src(e) - mu_e))          (recurrent, depends on v)
    sa_e = sw_e sig(ssigma_e (u_src(e) - smu_e))        (sensory, once per step)
    num_j = cmt_j v_j + gleak_j vleak_j + (sum_{e->j} a_e erev_e + sum_{e->j} sa_e serev_e)
    den_j = cmt_j + gleak_j + (sum_{e->j} a_e + sum_{e->j} sa_e)
    v_j  <- num_j / (den_j + epsilon)

Inputs are mapped affinely, u = x * input_w + input_b; the outputs are the motor
neurons (the first O), mapped as y = v[:, :O] * output_w + output_b.

w, sensory_w, cm and gleak are stored raw and passed through softplus (ncps's
"implicit" constraints), so they are positive by construction and the
denominator never reaches zero whatever the optimiser does.

Unlike ncps, which keeps dense (N, N) and (I, N) parameter matrices and masks
them (81% of its counted parameters never learn), only real synapses are
parameters here: one entry per edge of the wiring. ``param_count()`` reports
both counts.

Two backends compute the same thing:

- ``"kernel"``: a small C++ kernel (``_ltc_kernel``) compiled with the system
  compiler at first use. One call runs the whole sequence; a hand-written
  backward recomputes the synapse activations from a trace of the sub-step
  potentials instead of storing them. Used on CPU for float32/float64 when it
  builds; without autograd (``torch.no_grad()`` or frozen parameters) it skips
  the trace and reuses the softplus'd parameters between calls, which is what
  makes ``step`` cheap in a control loop.
- ``"torch"``: plain PyTorch ops under autograd. Always available (any device),
  the reference the kernel is tested against, and what ONNX export and
  tracing see.

``backend="auto"`` (default) takes the kernel when it applies, else torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lnn_nav.models.wiring import NEURON_TYPES, Wiring

Range = tuple[float, float]
BACKENDS = ("auto", "kernel", "torch")


@dataclass(frozen=True)
class LTCInit:
    """Initial value ranges of the LTC parameters; each raw entry is drawn
    uniformly from its (low, high) range. Defaults are ncps 1.0.1's.

    Raw values of w, sensory_w, cm and gleak go through softplus at run time,
    so e.g. cm=(0.4, 0.6) gives effective capacitances softplus(0.4..0.6) =
    0.91..1.04. With K unfolds and step dt, a neuron's leak time constant is
    about cm / gleak seconds: ncps's defaults suit dt = 1 s; a head running at
    30 Hz may want a smaller cm (raw, e.g. (-4, -3)) or a larger gleak.
    """

    gleak: Range = (0.001, 1.0)
    """raw leak conductance (softplus -> positive), per neuron."""
    vleak: Range = (-0.2, 0.2)
    """leak reversal potential, per neuron."""
    cm: Range = (0.4, 0.6)
    """raw membrane capacitance (softplus -> positive), per neuron."""
    w: Range = (0.001, 1.0)
    """raw recurrent synapse weight (softplus -> positive), per edge."""
    sigma: Range = (3.0, 8.0)
    """recurrent sigmoid slope, per edge."""
    mu: Range = (0.3, 0.8)
    """recurrent sigmoid centre (potential units), per edge."""
    sensory_w: Range = (0.001, 1.0)
    """raw sensory synapse weight (softplus -> positive), per edge."""
    sensory_sigma: Range = (3.0, 8.0)
    """sensory sigmoid slope, per edge."""
    sensory_mu: Range = (0.3, 0.8)
    """sensory sigmoid centre (mapped-input units), per edge."""
    erev_scale: float = 1.0
    """reversal potentials start at erev_scale * polarity (+-1) of each edge."""
    input_w: float = 1.0
    """initial input scale (every input)."""
    input_b: float = 0.0
    """initial input offset."""
    output_w: float = 1.0
    """initial output scale (every motor neuron)."""
    output_b: float = 0.0
    """initial output offset."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "Range" or isinstance(value, (tuple, list)):
                try:
                    low, high = (float(v) for v in value)
                except (TypeError, ValueError) as exc:
                    raise ValueError(
                        f"LTCInit.{f.name}={value!r} must be a (low, high) pair"
                    ) from exc
                if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                    raise ValueError(
                        f"LTCInit.{f.name}=({low}, {high}) must be finite with low <= high"
                    )
                object.__setattr__(self, f.name, (low, high))
            else:
                is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
                if not is_number or not math.isfinite(value):
                    raise ValueError(f"LTCInit.{f.name}={value!r} must be a finite number")
                object.__setattr__(self, f.name, float(value))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LTCInit:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"LTCInit has no fields {unknown}; allowed: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class LTC(nn.Module):
    """LTC network on a sparse wiring; batch-first sequences, real elapsed time.

    Args:
        wiring: the circuit; its edges become the only synapse parameters.
        ode_unfolds: K, fused solver sub-steps per step (>= 1; default 6).
        epsilon: added to the solver's denominator (ncps: 1e-8).
        init: initial parameter ranges (`LTCInit`; default ncps's).
        seed: seed of the initial draws; None draws from torch's global
            generator (seeded by the entry point).
        backend: "auto" (C++ kernel on CPU when it builds, else torch),
            "kernel" (error if it cannot be used) or "torch".

    Attributes:
        input_size (I), state_size (N = wiring.units), output_size (O = motor neurons).

    Parameters (raw; softplus marks the positive ones):
        gleak*, vleak, cm*: (N,); w*, erev, mu, sigma: (E,) recurrent edges;
        sensory_w*, sensory_erev, sensory_mu, sensory_sigma: (E_s,) sensory edges;
        input_w, input_b: (I,); output_w, output_b: (O,).
    Buffers (run-time tensors, no wiring object is kept): src, tgt (E,) int64,
    sensory_src, sensory_tgt (E_s,) int64, polarity (E,), sensory_polarity (E_s,)
    and neuron_type (N,) int8 (index into ("inter", "command", "motor")).
    """

    def __init__(
        self,
        wiring: Wiring,
        ode_unfolds: int = 6,
        *,
        epsilon: float = 1e-8,
        init: LTCInit | None = None,
        seed: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(wiring, Wiring):
            raise ValueError(f"wiring must be a lnn_nav Wiring, got {type(wiring).__name__}")
        if isinstance(ode_unfolds, bool) or not isinstance(ode_unfolds, int) or ode_unfolds < 1:
            raise ValueError(f"ode_unfolds={ode_unfolds!r} must be an integer >= 1")
        if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon >= 0):
            raise ValueError(f"epsilon={epsilon!r} must be a finite number >= 0")
        init = init if init is not None else LTCInit()
        self.input_size = wiring.input_size
        self.state_size = wiring.units
        self.output_size = wiring.output_size
        self.ode_unfolds = int(ode_unfolds)
        self.epsilon = float(epsilon)
        self.init = init
        self.backend = backend  # validated by the property setter

        edges = torch.as_tensor(wiring.edges(), dtype=torch.int64).reshape(-1, 3)
        sedges = torch.as_tensor(wiring.sensory_edges(), dtype=torch.int64).reshape(-1, 3)
        self.register_buffer("src", edges[:, 0].contiguous())
        self.register_buffer("tgt", edges[:, 1].contiguous())
        self.register_buffer("polarity", edges[:, 2].to(torch.int8).contiguous())
        self.register_buffer("sensory_src", sedges[:, 0].contiguous())
        self.register_buffer("sensory_tgt", sedges[:, 1].contiguous())
        self.register_buffer("sensory_polarity", sedges[:, 2].to(torch.int8).contiguous())
        types = [NEURON_TYPES.index(t) for t in wiring.neuron_types]
        self.register_buffer("neuron_type", torch.tensor(types, dtype=torch.int8))
        n = self.state_size
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        n_e, n_s, n_i, n_o = edges.shape[0], sedges.shape[0], self.input_size, self.output_size

        def uniform(count: int, rng: Range) -> nn.Parameter:
            low, high = rng
            return nn.Parameter(torch.rand(count, generator=gen) * (high - low) + low)

        self.gleak = uniform(n, init.gleak)
        self.vleak = uniform(n, init.vleak)
        self.cm = uniform(n, init.cm)
        self.w = uniform(n_e, init.w)
        self.sigma = uniform(n_e, init.sigma)
        self.mu = uniform(n_e, init.mu)
        self.erev = nn.Parameter(edges[:, 2].float() * init.erev_scale)
        self.sensory_w = uniform(n_s, init.sensory_w)
        self.sensory_sigma = uniform(n_s, init.sensory_sigma)
        self.sensory_mu = uniform(n_s, init.sensory_mu)
        self.sensory_erev = nn.Parameter(sedges[:, 2].float() * init.erev_scale)
        self.input_w = nn.Parameter(torch.full((n_i,), init.input_w))
        self.input_b = nn.Parameter(torch.full((n_i,), init.input_b))
        self.output_w = nn.Parameter(torch.full((n_o,), init.output_w))
        self.output_b = nn.Parameter(torch.full((n_o,), init.output_b))

    def __getstate__(self) -> dict[str, Any]:
        # The inference cache holds raw pointers (ctypes), which cannot be pickled or
        # deep-copied and would be stale in the copy anyway; it is rebuilt on demand.
        state = dict(self.__dict__)
        state.pop("_infer_cache", None)
        return state

    # ------------------------------------------------------------ properties
    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        if name not in BACKENDS:
            raise ValueError(f"backend={name!r}, expected one of {BACKENDS}")
        if name == "kernel":
            from lnn_nav.models import _ltc_kernel

            _ltc_kernel.load()  # raises with the compiler's message if it cannot build
        self._backend = name

    @property
    def num_synapses(self) -> int:
        return int(self.src.numel())

    @property
    def num_sensory_synapses(self) -> int:
        return int(self.sensory_src.numel())

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, state_size={self.state_size}, "
            f"output_size={self.output_size}, synapses={self.num_synapses}, "
            f"sensory_synapses={self.num_sensory_synapses}, ode_unfolds={self.ode_unfolds}, "
            f"backend={self.backend!r}"
        )

    def wiring(self) -> Wiring:
        """Rebuild the `Wiring` from the module's buffers."""
        rec = zip(self.src.tolist(), self.tgt.tolist(), self.polarity.tolist())
        sens = zip(self.sensory_src.tolist(), self.sensory_tgt.tolist(),
                   self.sensory_polarity.tolist())
        return Wiring(
            input_size=self.input_size, units=self.state_size, output_size=self.output_size,
            sensory_synapses=tuple(sens), synapses=tuple(rec),
            neuron_types=tuple(NEURON_TYPES[t] for t in self.neuron_type.tolist()),
        )

    def to_dict(self) -> dict[str, Any]:
        """Architecture (not weights): wiring, ode_unfolds, epsilon, init. `from_dict` rebuilds
        an untrained module with the same structure; weights travel in ``state_dict()``."""
        return {
            "wiring": self.wiring().to_dict(),
            "ode_unfolds": self.ode_unfolds,
            "epsilon": self.epsilon,
            "init": self.init.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, seed: int | None = None, backend: str = "auto") -> LTC:
        missing = [k for k in ("wiring", "ode_unfolds", "epsilon", "init") if k not in d]
        if missing:
            raise ValueError(f"LTC dict lacks keys {missing}; it has {sorted(d)}")
        return cls(
            Wiring.from_dict(d["wiring"]),
            ode_unfolds=d["ode_unfolds"],
            epsilon=d["epsilon"],
            init=LTCInit.from_dict(d["init"]),
            seed=seed,
            backend=backend,
        )

    def param_count(self) -> dict[str, int]:
        """Trainable entries counted two ways.

        effective: the parameters this module holds (one per real synapse).
        dense: what ncps's LTC counts for the same wiring (full (N, N) and (I, N)
        matrices for w, erev, mu, sigma and their sensory twins, masks excluded):
        3N + 4N^2 + 4IN + 2I + 2O. The paper's 34-neuron, 128-input head: 22,398.
        """
        n, i, o = self.state_size, self.input_size, self.output_size
        effective = sum(p.numel() for p in self.parameters() if p.requires_grad)
        dense = 3 * n + 4 * n * n + 4 * i * n + 2 * i + 2 * o
        return {"effective": int(effective), "dense": int(dense)}

    # ------------------------------------------------------------------ state
    def init_state(self, batch: int) -> torch.Tensor:
        """Zero potentials, (batch, N), on the module's device and dtype."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch={batch!r} must be an integer >= 1")
        return self.gleak.new_zeros(batch, self.state_size)

    def positive_params(self) -> dict[str, torch.Tensor]:
        """Effective (softplus-constrained) w, sensory_w, cm, gleak, under autograd."""
        return {
            "w": F.softplus(self.w),
            "sensory_w": F.softplus(self.sensory_w),
            "cm": F.softplus(self.cm),
            "gleak": F.softplus(self.gleak),
        }

    # --------------------------------------------------------------- forward
    def forward(
        self,
        x: torch.Tensor,
        state: torch.Tensor | None = None,
        dt: float | torch.Tensor = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a sequence.

        Args:
            x: (B, T, I) input features.
            state: (B, N) potentials at the start, or None for zeros.
            dt: elapsed time per step in seconds, > 0: a number, or a tensor of
                shape (), (B,), (B, 1) or (B, T) (per sample, per step).
        Returns:
            y: (B, T, O) mapped motor outputs, and state_T: (B, N) final potentials.
        """
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(
                f"x has shape {tuple(x.shape)}, expected (B, T, {self.input_size})"
            )
        b, t = x.shape[0], x.shape[1]
        if t < 1 or b < 1:
            raise ValueError(f"x has shape {tuple(x.shape)}; B and T must be >= 1")
        state = self._check_state(state, b, x)
        return self._run(x, state, self._dt_arg(dt, b, t, x))

    def step(
        self,
        x: torch.Tensor,
        state: torch.Tensor,
        dt: float | torch.Tensor = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance one step.

        Args:
            x: (B, I) input features; state: (B, N) potentials;
            dt: seconds, > 0: a number, or a tensor (), (B,) or (B, 1).
        Returns:
            y: (B, O) mapped motor outputs, and the next state (B, N).
        Equal to `forward` on a length-1 sequence (same arithmetic).
        """
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"x has shape {tuple(x.shape)}, expected (B, {self.input_size})")
        b = x.shape[0]
        state = self._check_state(state, b, x)
        y, h = self._run(x.unsqueeze(1), state, self._dt_arg(dt, b, 1, x))
        return y[:, 0], h

    # -------------------------------------------------------------- internals
    def _check_state(self, state: torch.Tensor | None, b: int, x: torch.Tensor) -> torch.Tensor:
        if state is None:
            return x.new_zeros(b, self.state_size)
        if state.shape != (b, self.state_size):
            raise ValueError(
                f"state has shape {tuple(state.shape)}, expected ({b}, {self.state_size})"
            )
        return state

    def _dt_arg(
        self, dt: float | torch.Tensor, b: int, t: int, x: torch.Tensor
    ) -> float | torch.Tensor:
        """dt as a validated float, or as a (B, T) tensor of x's dtype and device (possibly an
        expanded view); rejects dt <= 0 and non-finite dt."""
        if not isinstance(dt, torch.Tensor):
            if isinstance(dt, bool) or not isinstance(dt, (int, float)):
                raise ValueError(f"dt must be a number or a tensor, got {type(dt).__name__}")
            if not (math.isfinite(dt) and dt > 0):
                raise ValueError(f"dt={dt} s must be finite and > 0")
            return float(dt)
        d = dt.to(dtype=x.dtype, device=x.device)
        if d.dim() == 0:
            d = d.expand(b, t)
        elif d.dim() == 1 and d.shape[0] == b:
            d = d.unsqueeze(1).expand(b, t)
        elif d.dim() == 2 and d.shape[0] == b and d.shape[1] in (1, t):
            d = d.expand(b, t)
        else:
            raise ValueError(
                f"dt has shape {tuple(dt.shape)}, expected (), ({b},), ({b}, 1) or ({b}, {t})"
            )
        # A data-dependent check cannot be traced; exported graphs trust their caller.
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        if not tracing and not bool((torch.isfinite(d) & (d > 0)).all()):
            bad = d[~(torch.isfinite(d) & (d > 0))][0].item()
            raise ValueError(f"dt contains {bad} s; every entry must be finite and > 0")
        return d

    def _use_kernel(self, x: torch.Tensor) -> bool:
        if self._backend == "torch":
            return False
        # tracers and exporters must see plain torch ops
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return False
        if torch.compiler.is_compiling():
            return False
        applicable = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
        applicable = applicable and x.dtype == self.w.dtype
        if self._backend == "kernel":
            if not applicable:
                raise ValueError(
                    f"backend='kernel' runs on CPU float32/float64, got {x.device.type} {x.dtype}"
                )
            return True
        from lnn_nav.models import _ltc_kernel

        return applicable and _ltc_kernel.available()

    def _raw_params(self) -> tuple[nn.Parameter, ...]:
        """The 15 parameters in the kernel's order (``_ltc_kernel.PARAM_NAMES``)."""
        return (
            self.cm, self.gleak, self.vleak,
            self.sensory_w, self.sensory_erev, self.sensory_mu, self.sensory_sigma,
            self.w, self.erev, self.mu, self.sigma,
            self.input_w, self.input_b, self.output_w, self.output_b,
        )

    def _effective(self) -> list[torch.Tensor]:
        """Kernel-order parameters with softplus applied to cm, gleak, sensory_w, w."""
        raw = self._raw_params()
        soft = {0, 1, 3, 7}
        return [F.softplus(p) if j in soft else p for j, p in enumerate(raw)]

    def _inference_plan(self, dtype: torch.dtype) -> tuple[list[torch.Tensor], Any, Any]:
        """(effective params, kernel Structure, C pointer table) for no-grad kernel calls,
        reused while no parameter or buffer changes.

        A control loop calling ``step`` then skips four softplus ops, the casts and
        the table set-up. Any in-place update (optimizer step, load_state_dict,
        ``.to()``) bumps a version counter or replaces a tensor, which changes the key."""
        params = self._parameters
        buffers = self._buffers
        key = (
            dtype,
            tuple(map(id, params.values())),
            tuple(p._version for p in params.values()),  # type: ignore[union-attr]
            tuple(map(id, buffers.values())),
            tuple(b._version for b in buffers.values()),  # type: ignore[union-attr]
        )
        cache = self.__dict__.get("_infer_cache")
        if cache is not None and cache[0] == key:
            return cache[1]
        from lnn_nav.models import _ltc_kernel

        with torch.no_grad():
            eff = [p.detach().to(dtype).contiguous() for p in self._effective()]
        structure = self._structure()
        plan = (eff, structure, _ltc_kernel.param_table(eff, structure))
        self.__dict__["_infer_cache"] = (key, plan)
        return plan

    def _structure(self):  # -> _ltc_kernel.Structure
        from lnn_nav.models._ltc_kernel import Structure

        return Structure(self.sensory_src.contiguous(), self.sensory_tgt.contiguous(),
                         self.src.contiguous(), self.tgt.contiguous(),
                         self.ode_unfolds, self.epsilon, self.output_size)

    def _run(
        self, x: torch.Tensor, h0: torch.Tensor, dt: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, I); h0: (B, N); dt: s, float or (B, T) -> (y (B, T, O), h_T (B, N))."""
        b, t = x.shape[0], x.shape[1]
        if self._use_kernel(x):
            from lnn_nav.models import _ltc_kernel

            needs_grad = torch.is_grad_enabled() and (
                x.requires_grad or h0.requires_grad
                or (isinstance(dt, torch.Tensor) and dt.requires_grad)
                or any(p.requires_grad for p in self._raw_params())
            )
            if not needs_grad:
                return _ltc_kernel.infer(x, h0, dt, *self._inference_plan(x.dtype))
            dt_bt = dt if isinstance(dt, torch.Tensor) else x.new_full((b, t), dt)
            return _ltc_kernel.ltc_sequence(x, h0, dt_bt, self._effective(), self._structure())
        dt_bt = dt if isinstance(dt, torch.Tensor) else x.new_full((b, t), dt)
        u = x * self.input_w + self.input_b
        states = self._states_torch(u, h0, dt_bt, self.positive_params())
        y = states[:, :, : self.output_size] * self.output_w + self.output_b
        return y, states[:, -1]

    def _states_torch(
        self, u: torch.Tensor, h0: torch.Tensor, dt: torch.Tensor, pos: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Reference solver in plain PyTorch ops. u: (B, T, I) mapped inputs -> (B, T, N)."""
        n, k = self.state_size, self.ode_unfolds
        # Sensory drive does not depend on v: compute it for the whole sequence at once.
        us = u.index_select(2, self.sensory_src)  # (B, T, E_s)
        sa = pos["sensory_w"] * torch.sigmoid(self.sensory_sigma * (us - self.sensory_mu))
        # Edge terms are summed per target neuron by a matmul with one-hot target maps
        # (E, N), built once per call: matmul exports to ONNX everywhere, unlike
        # scatter-add, and costs one op per sub-step.
        onehot_s = F.one_hot(self.sensory_tgt, n).to(u.dtype)
        # (E_s, 2N): first N columns sum sa * erev per target, last N sum sa.
        smap = torch.cat([onehot_s * self.sensory_erev.unsqueeze(1), onehot_s], dim=1)
        sens = sa @ smap  # (B, T, 2N)
        onehot = F.one_hot(self.tgt, n).to(u.dtype)
        rmap = torch.cat([onehot * self.erev.unsqueeze(1), onehot], dim=1)  # (E, 2N)
        gleak, w = pos["gleak"], pos["w"]
        gv = gleak * self.vleak
        # cm / (dt / K), computed as ncps does so the two agree to rounding.
        cmt_all = pos["cm"] / (dt / k).unsqueeze(2)  # (B, T, N)
        v = h0
        out = []
        for t in range(u.shape[1]):
            cmt = cmt_all[:, t]
            s_num, s_den = sens[:, t, :n], sens[:, t, n:]
            for _ in range(k):
                a = w * torch.sigmoid(self.sigma * (v.index_select(1, self.src) - self.mu))
                r = a @ rmap  # (B, 2N)
                num = cmt * v + gv + (r[:, :n] + s_num)
                den = cmt + gleak + (r[:, n:] + s_den)
                v = num / (den + self.epsilon)
            out.append(v)
        return torch.stack(out, dim=1)

    # ----------------------------------------------------------------- export
    @torch.no_grad()
    def export_arrays(self) -> dict[str, np.ndarray]:
        """Effective parameters and structure as numpy arrays, for code generators.

        Keys and shapes (float32 unless noted; E recurrent edges, E_s sensory
        edges, all sorted by (target, source)):

        - ``src``, ``tgt`` (E,) int32, ``polarity`` (E,) int8;
          ``w`` (E,) = softplus(raw w) > 0, ``erev``, ``mu``, ``sigma`` (E,).
        - ``sensory_src``, ``sensory_tgt`` (E_s,) int32, ``sensory_polarity`` (E_s,) int8;
          ``sensory_w`` (E_s,) = softplus(raw) > 0, ``sensory_erev``, ``sensory_mu``,
          ``sensory_sigma`` (E_s,).
        - ``cm`` (N,) = softplus(raw) > 0, ``gleak`` (N,) = softplus(raw) > 0, ``vleak`` (N,).
        - ``input_w``, ``input_b`` (I,); ``output_w``, ``output_b`` (O,).
        - ``ode_unfolds`` () int32 (K), ``epsilon`` () float32,
          ``sizes`` (3,) int32 = (I, N, O).

        One step with elapsed time dt (s), input x (I,), state v (N,):
        u = x * input_w + input_b; sensory sums over edges e (src -> tgt):
        S_num[tgt] += sensory_w sigmoid(sensory_sigma (u[src] - sensory_mu)) sensory_erev,
        S_den[tgt] += sensory_w sigmoid(...); cmt = cm / (dt / K); then K times:
        R_num, R_den likewise from v over the recurrent edges, and
        v = (cmt v + gleak vleak + (R_num + S_num)) / (cmt + gleak + (R_den + S_den) + epsilon).
        Output y = v[:O] * output_w + output_b.
        """
        pos = self.positive_params()

        def f32(t: torch.Tensor) -> np.ndarray:
            return t.detach().to("cpu", torch.float32).numpy().copy()

        def i32(t: torch.Tensor) -> np.ndarray:
            return t.detach().to("cpu", torch.int32).numpy().copy()

        return {
            "src": i32(self.src), "tgt": i32(self.tgt),
            "polarity": self.polarity.cpu().numpy().copy(),
            "w": f32(pos["w"]), "erev": f32(self.erev),
            "mu": f32(self.mu), "sigma": f32(self.sigma),
            "sensory_src": i32(self.sensory_src), "sensory_tgt": i32(self.sensory_tgt),
            "sensory_polarity": self.sensory_polarity.cpu().numpy().copy(),
            "sensory_w": f32(pos["sensory_w"]), "sensory_erev": f32(self.sensory_erev),
            "sensory_mu": f32(self.sensory_mu), "sensory_sigma": f32(self.sensory_sigma),
            "cm": f32(pos["cm"]), "gleak": f32(pos["gleak"]), "vleak": f32(self.vleak),
            "input_w": f32(self.input_w), "input_b": f32(self.input_b),
            "output_w": f32(self.output_w), "output_b": f32(self.output_b),
            "ode_unfolds": np.array(self.ode_unfolds, dtype=np.int32),
            "epsilon": np.array(self.epsilon, dtype=np.float32),
            "sizes": np.array([self.input_size, self.state_size, self.output_size], dtype=np.int32),
        }

    # ------------------------------------------------------------------ ncps
    @classmethod
    def from_ncps(cls, model: Any, *, backend: str = "auto") -> LTC:
        """Equivalent LTC from an ``ncps.torch.LTC`` built with its defaults
        (implicit softplus constraints, affine input and output maps, no mixed
        memory). Copies the raw parameters at the wiring's edges; the masked
        dense entries ncps also stores have no effect and are dropped.

        Note ncps's default step is dt = 1 s (``timespans=None``)."""
        cell = getattr(model, "rnn_cell", None)
        if cell is None or not hasattr(cell, "_params"):
            raise ValueError(f"expected an ncps.torch.LTC, got {type(model).__name__}")
        if getattr(model, "use_mixed", False):
            raise ValueError("ncps LTC with mixed_memory=True has an LSTM cell; not supported")
        if not cell._implicit_param_constraints:
            raise ValueError(
                "ncps LTC with implicit_param_constraints=False clips instead of softplus; "
                "only the default (True) converts exactly"
            )
        for name in ("_input_mapping", "_output_mapping"):
            if getattr(cell, name) != "affine":
                raise ValueError(
                    f"ncps LTC {name[1:]}={getattr(cell, name)!r}; only 'affine' converts"
                )
        wiring = Wiring.from_ncps(cell._wiring)
        ltc = cls(wiring, ode_unfolds=int(cell._ode_unfolds), epsilon=float(cell._epsilon),
                  backend=backend)
        p = {k: v.detach().cpu().float() for k, v in cell._params.items()}
        with torch.no_grad():
            src, tgt = ltc.src, ltc.tgt
            ssrc, stgt = ltc.sensory_src, ltc.sensory_tgt
            for name in ("gleak", "vleak", "cm", "input_w", "input_b", "output_w", "output_b"):
                getattr(ltc, name).copy_(p[name])
            for name in ("w", "erev", "mu", "sigma"):
                getattr(ltc, name).copy_(p[name][src, tgt])
                getattr(ltc, "sensory_" + name).copy_(p["sensory_" + name][ssrc, stgt])
        return ltc
