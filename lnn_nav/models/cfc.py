"""NCP-wired closed-form continuous-time (CfC) head.

Hasani et al., "Closed-form continuous-time neural networks" (Nature Machine
Intelligence 2022), wired as a Neural Circuit Policy the way ncps's
`WiredCfCCell` does it: one CfC layer per NCP layer (inter, command, motor),
each layer reading the previous layer's new state (the sensory inputs for the
first layer) together with its own previous state. For layer l with state h_l
and input u_l, z = [u_l, h_l]:

    f1 = tanh((W1 * M) z + b1)          W1 masked by the wiring (M)
    f2 = tanh((W2 * M) z + b2)          W2 masked by the wiring
    g  = sigmoid((Wa z + ba) * ts + (Wb z + bb))   time gate, ts = dt / time_unit_s
    h_l' = f1 * (1 - g) + g * f2

M keeps the wiring's synapses from the layer's sources and every synapse within
the layer (as ncps does); the time-gate maps are dense, as in ncps. The motor
layer's state, through a per-output affine map (scale 1, offset 0 at
initialisation), is the head's output.

State layout: the layers' states concatenated in signal-flow order
[inter, command, motor], (B, N) -- the same layout as ncps, so `from_ncps`
can copy a trained ncps model.

Time: `ts = dt / time_unit_s`. With the default unit of 1/30 s a frame at the
nominal rate has ts = 1, which is ncps's untimed regime; other frame periods
scale the gate's time term accordingly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lnn_nav.models.heads import (
    DEFAULT_DT_S,
    check_sequence_input,
    check_state,
    check_step_input,
    dt_sequence,
    dt_step,
    single_param_group,
)
from lnn_nav.models.wiring import Wiring


class CfCHead(nn.Module):
    """NCP-wired CfC head (see the module docstring). Build it from a `Wiring`."""

    kind = "cfc"

    def __init__(self, wiring: Wiring, seed: int = 0, time_unit_s: float = DEFAULT_DT_S) -> None:
        super().__init__()
        if not isinstance(wiring, Wiring):
            raise ValueError(f"wiring of type {type(wiring).__name__}: expected a lnn_nav Wiring")
        if not (isinstance(time_unit_s, (int, float)) and 0 < time_unit_s < float("inf")):
            raise ValueError(f"time_unit_s={time_unit_s!r}: expected a finite number of seconds > 0")
        self.input_size = wiring.input_size
        self.output_size = wiring.output_size
        self.state_size = wiring.units
        self.time_unit_s = float(time_unit_s)
        layers = wiring.layers
        if layers[-1][0] != "motor":
            raise ValueError(f"wiring {wiring.origin!r} has no motor layer; a CfC head needs one")
        self.layer_sizes = tuple(len(ids) for _, ids in layers)
        sensory_adj = np.abs(wiring.sensory_adjacency())
        adj = np.abs(wiring.adjacency())
        gen = torch.Generator().manual_seed(int(seed))
        in_features = wiring.input_size
        prev_ids: tuple[int, ...] = ()
        for idx, (_, ids) in enumerate(layers):
            n = len(ids)
            src = sensory_adj[:, list(ids)] if idx == 0 else adj[np.ix_(prev_ids, ids)]
            # (in + n, n): synapses from the sources, then all synapses within the layer.
            mask = np.concatenate([src, np.ones((n, n))], axis=0).T.astype(np.float32)
            fan = in_features + n
            # Xavier-uniform weights (as ncps) for the four maps, stacked as
            # [f1, f2, time_a, time_b] so one matmul per layer and step does all four.
            bound_w = (6.0 / (fan + n)) ** 0.5
            weight = (torch.rand(4 * n, fan, generator=gen) * 2 - 1) * bound_w
            bias = (torch.rand(4 * n, generator=gen) * 2 - 1) * fan**-0.5
            self.register_parameter(f"weight_{idx}", nn.Parameter(weight))
            self.register_parameter(f"bias_{idx}", nn.Parameter(bias))
            # Full-size mask for the stacked matrix: the time-gate rows are all ones.
            full_mask = torch.ones(4 * n, fan)
            full_mask[: 2 * n] = torch.from_numpy(np.concatenate([mask, mask], axis=0))
            self.register_buffer(f"mask_{idx}", full_mask)
            in_features = n
            prev_ids = ids
        self.output_w = nn.Parameter(torch.ones(self.output_size))
        self.output_b = nn.Parameter(torch.zeros(self.output_size))

    # ---------------------------------------------------------------- protocol
    def init_state(self, batch: int) -> Tensor:
        """(B, N) float32 zeros."""
        return torch.zeros(batch, self.state_size, device=self.output_w.device)

    def _cell(self, x: Tensor, state: Tensor, ts: Tensor) -> Tensor:
        """One update. x: (B, I); state: (B, N); ts: (B, 1) time units -> state' (B, N)."""
        hs = torch.split(state, self.layer_sizes, dim=1)
        inp = x
        new = []
        for idx, n in enumerate(self.layer_sizes):
            w = getattr(self, f"weight_{idx}") * getattr(self, f"mask_{idx}")
            z = F.linear(torch.cat([inp, hs[idx]], dim=1), w, getattr(self, f"bias_{idx}"))
            f1, f2, ta, tb = torch.split(z, n, dim=1)
            gate = torch.sigmoid(ta * ts + tb)
            h = torch.tanh(f1) * (1.0 - gate) + gate * torch.tanh(f2)
            new.append(h)
            inp = h
        return torch.cat(new, dim=1)

    def _readout(self, state: Tensor) -> Tensor:
        motor = state[..., self.state_size - self.output_size :]
        return motor * self.output_w + self.output_b

    def forward(
        self, x: Tensor, state: Tensor | None = None, dt: float | Tensor = DEFAULT_DT_S
    ) -> tuple[Tensor, Tensor]:
        """x: (B, T, I); state: (B, N) or None; dt: seconds -> (y (B, T, O), state_T (B, N))."""
        check_sequence_input(x, self.input_size)
        batch, steps = x.shape[0], x.shape[1]
        if state is None:
            state = self.init_state(batch).to(x.dtype)
        check_state(state, batch, self.state_size)
        ts = dt_sequence(dt, batch, steps, x) / self.time_unit_s
        states = []
        for t in range(steps):
            state = self._cell(x[:, t], state, ts[:, t : t + 1])
            states.append(state)
        return self._readout(torch.stack(states, dim=1)), state

    def step(self, x: Tensor, state: Tensor, dt: float | Tensor = DEFAULT_DT_S) -> tuple[Tensor, Tensor]:
        """x: (B, I); state: (B, N); dt: float, (B,) or (B, 1) s -> (y (B, O), state')."""
        check_step_input(x, self.input_size)
        check_state(state, x.shape[0], self.state_size)
        ts = dt_step(dt, x.shape[0], x) / self.time_unit_s
        new_state = self._cell(x, state, ts)
        return self._readout(new_state), new_state

    def param_count(self) -> dict[str, int]:
        """effective: unmasked entries; dense: every entry, as ncps counts them."""
        dense = sum(p.numel() for p in self.parameters() if p.requires_grad)
        masked_out = sum(
            int((getattr(self, f"mask_{i}") == 0).sum()) for i in range(len(self.layer_sizes))
        )
        return {"effective": dense - masked_out, "dense": dense}

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """One group at `base_lr`: the closed form has no stiff parameters to treat apart."""
        return single_param_group(self, base_lr)

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, layers={self.layer_sizes}, "
            f"output_size={self.output_size}, time_unit_s={self.time_unit_s:.5g}"
        )

    # ------------------------------------------------------------------- ncps
    @classmethod
    def from_ncps(cls, model: Any, time_unit_s: float = 1.0) -> CfCHead:
        """Copy a wired `ncps.torch.CfC(I, wiring)` (mode "default", no projection).

        With `time_unit_s=1` and dt in ncps's timespans units the copy computes
        what the ncps model computes.
        """
        cell = getattr(model, "rnn_cell", None)
        if cell is None or not hasattr(cell, "_wiring") or not hasattr(cell, "_layers"):
            raise ValueError(f"{type(model).__name__} is not a wired ncps CfC")
        if cell._layers[0].mode != "default":
            raise ValueError(f"ncps CfC mode {cell._layers[0].mode!r}: only 'default' is supported")
        if not isinstance(model.fc, nn.Identity):
            raise ValueError("ncps CfC with proj_size: only models without a projection are supported")
        head = cls(Wiring.from_ncps(cell._wiring), seed=0, time_unit_s=time_unit_s)
        with torch.no_grad():
            for idx, layer in enumerate(cell._layers):
                ws = [layer.ff1.weight, layer.ff2.weight, layer.time_a.weight, layer.time_b.weight]
                bs = [layer.ff1.bias, layer.ff2.bias, layer.time_a.bias, layer.time_b.bias]
                getattr(head, f"weight_{idx}").copy_(torch.cat(ws, dim=0))
                getattr(head, f"bias_{idx}").copy_(torch.cat(bs, dim=0))
                if layer.sparsity_mask is not None:
                    n = layer.hidden_size
                    expected = torch.cat([layer.sparsity_mask, layer.sparsity_mask], dim=0)
                    if not torch.equal(getattr(head, f"mask_{idx}")[: 2 * n], expected):
                        raise ValueError(f"ncps CfC layer {idx}: sparsity mask differs from its wiring")
        return head
