"""Baseline heads: LSTM, GRU and a feedforward MLP (no memory).

All three implement the head protocol of `lnn_nav.models.heads`. LSTM and GRU
receive the elapsed time as one extra input feature, `dt / time_unit_s`
(about 1 at the nominal frame rate), so they can learn what an irregular frame
period means; the MLP has no state and ignores dt.

Each head ends in a linear readout from its hidden units to `output_size`
unbounded outputs; bounding them to command units is the policy's job.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lnn_nav.models.heads import (
    DEFAULT_DT_S,
    check_sequence_input,
    check_state,
    check_step_input,
    dt_sequence,
    dt_step,
    single_param_group,
    trainable_count,
)


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")


def _check_time_unit(time_unit_s: float) -> None:
    if not (isinstance(time_unit_s, (int, float)) and 0 < time_unit_s < float("inf")):
        raise ValueError(f"time_unit_s={time_unit_s!r}: expected a finite number of seconds > 0")


class _GatedRNNHead(nn.Module):
    """Shared body of the LSTM and GRU heads: an `nn.LSTM`/`nn.GRU` on [x, dt/unit]."""

    kind = ""
    _gates = 0

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_size: int,
        seed: int = 0,
        time_unit_s: float = DEFAULT_DT_S,
    ) -> None:
        super().__init__()
        _check_sizes(input_size=input_size, output_size=output_size, hidden_size=hidden_size)
        _check_time_unit(time_unit_s)
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size = hidden_size
        self.time_unit_s = float(time_unit_s)
        # Parameters are drawn from a private generator: building a head never
        # touches (or depends on) the global RNG.
        gen = torch.Generator().manual_seed(int(seed))
        rnn_cls = nn.LSTM if self.kind == "lstm" else nn.GRU
        self.rnn = rnn_cls(input_size + 1, hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, output_size)
        bound = hidden_size**-0.5
        with torch.no_grad():
            for p in self.rnn.parameters():
                p.uniform_(-bound, bound, generator=gen)
            if self.kind == "lstm":
                # Forget-gate bias 1: the usual fix that lets an LSTM keep its
                # memory from the first update (gate order i, f, g, o).
                self.rnn.bias_ih_l0[hidden_size : 2 * hidden_size].fill_(1.0)
                self.rnn.bias_hh_l0[hidden_size : 2 * hidden_size].zero_()
            self.readout.weight.uniform_(-bound, bound, generator=gen)
            self.readout.bias.zero_()

    @property
    def state_size(self) -> int:
        return self.hidden_size * (2 if self.kind == "lstm" else 1)

    def init_state(self, batch: int) -> Tensor:
        """(B, state_size) float32 zeros."""
        return torch.zeros(batch, self.state_size, device=self.readout.weight.device)

    def _unpack(self, state: Tensor) -> Any:
        h = state[:, : self.hidden_size].unsqueeze(0).contiguous()
        if self.kind == "lstm":
            return (h, state[:, self.hidden_size :].unsqueeze(0).contiguous())
        return h

    def _pack(self, hidden: Any) -> Tensor:
        if self.kind == "lstm":
            return torch.cat([hidden[0][0], hidden[1][0]], dim=1)
        return hidden[0]

    def forward(
        self, x: Tensor, state: Tensor | None = None, dt: float | Tensor = DEFAULT_DT_S
    ) -> tuple[Tensor, Tensor]:
        """x: (B, T, I) features; state: (B, S) or None (zeros); dt: seconds.

        Returns y: (B, T, O) unbounded outputs and the state after the last step.
        """
        check_sequence_input(x, self.input_size)
        batch, steps = x.shape[0], x.shape[1]
        if state is None:
            state = self.init_state(batch).to(x.dtype)
        check_state(state, batch, self.state_size)
        dts = dt_sequence(dt, batch, steps, x) / self.time_unit_s
        out, hidden = self.rnn(torch.cat([x, dts.unsqueeze(-1)], dim=-1), self._unpack(state))
        return self.readout(out), self._pack(hidden)

    def step(self, x: Tensor, state: Tensor, dt: float | Tensor = DEFAULT_DT_S) -> tuple[Tensor, Tensor]:
        """x: (B, I); state: (B, S); dt: float, (B,) or (B, 1) s -> (y (B, O), state')."""
        check_step_input(x, self.input_size)
        dts = dt_step(dt, x.shape[0], x)
        y, new_state = self.forward(x.unsqueeze(1), state, dts)
        return y[:, 0], new_state

    def param_count(self) -> dict[str, int]:
        n = trainable_count(self)
        return {"effective": n, "dense": n}

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """One group at `base_lr`: gated RNNs train well with a single Adam rate."""
        return single_param_group(self, base_lr)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden={self.hidden_size}, output_size={self.output_size}"


class LSTMHead(_GatedRNNHead):
    """LSTM head; state packs [h, c] into (B, 2H)."""

    kind = "lstm"

    @staticmethod
    def count_for(input_size: int, output_size: int, hidden_size: int) -> int:
        """Trainable parameters of an LSTMHead of this size (no module built)."""
        i, h, o = input_size + 1, hidden_size, output_size
        return 4 * (h * i + h * h + 2 * h) + h * o + o


class GRUHead(_GatedRNNHead):
    """GRU head; state is h, (B, H)."""

    kind = "gru"

    @staticmethod
    def count_for(input_size: int, output_size: int, hidden_size: int) -> int:
        """Trainable parameters of a GRUHead of this size (no module built)."""
        i, h, o = input_size + 1, hidden_size, output_size
        return 3 * (h * i + h * h + 2 * h) + h * o + o


class MLPHead(nn.Module):
    """Feedforward head with no memory: Linear-tanh-Linear-tanh-Linear per time step.

    state_size is 0: its state is an empty (B, 0) tensor, passed through
    unchanged, so callers handle it like any other head. dt is ignored.
    """

    kind = "mlp"
    state_size = 0

    def __init__(self, input_size: int, output_size: int, hidden_size: int, seed: int = 0) -> None:
        super().__init__()
        _check_sizes(input_size=input_size, output_size=output_size, hidden_size=hidden_size)
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size = hidden_size
        gen = torch.Generator().manual_seed(int(seed))
        self.net = nn.Sequential(
            nn.Linear(input_size, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, output_size),
        )
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    bound = layer.in_features**-0.5
                    layer.weight.uniform_(-bound, bound, generator=gen)
                    layer.bias.zero_()

    @staticmethod
    def count_for(input_size: int, output_size: int, hidden_size: int) -> int:
        """Trainable parameters of an MLPHead of this size (no module built)."""
        i, h, o = input_size, hidden_size, output_size
        return (i * h + h) + (h * h + h) + (h * o + o)

    def init_state(self, batch: int) -> Tensor:
        """(B, 0): the empty state of a memoryless head."""
        return torch.zeros(batch, 0, device=self.net[0].weight.device)

    def forward(
        self, x: Tensor, state: Tensor | None = None, dt: float | Tensor = DEFAULT_DT_S
    ) -> tuple[Tensor, Tensor]:
        """x: (B, T, I) -> (y (B, T, O), the unchanged (B, 0) state). dt is ignored."""
        check_sequence_input(x, self.input_size)
        dt_sequence(dt, x.shape[0], x.shape[1], x)  # validated like every head's, then unused
        if state is None:
            state = self.init_state(x.shape[0]).to(x.dtype)
        check_state(state, x.shape[0], 0)
        return self.net(x), state

    def step(self, x: Tensor, state: Tensor, dt: float | Tensor = DEFAULT_DT_S) -> tuple[Tensor, Tensor]:
        """x: (B, I) -> (y (B, O), the unchanged (B, 0) state). dt is ignored."""
        check_step_input(x, self.input_size)
        dt_step(dt, x.shape[0], x)  # validated like every head's, then unused
        check_state(state, x.shape[0], 0)
        return self.net(x), state

    def param_count(self) -> dict[str, int]:
        n = trainable_count(self)
        return {"effective": n, "dense": n}

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        return single_param_group(self, base_lr)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden={self.hidden_size}, output_size={self.output_size}"
