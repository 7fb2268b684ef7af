"""Neural Circuit Policy (NCP) wiring: which neuron talks to which, and with what sign.

A `Wiring` is a plain, immutable description of a sparse recurrent circuit:

- ``input_size`` sensory inputs (features fed to the network, not neurons),
- ``units`` neurons, of which the first ``output_size`` are motor neurons
  (the network's outputs),
- sensory synapses ``input -> neuron`` and recurrent synapses
  ``neuron -> neuron``, each with a polarity of +1 (excitatory) or -1
  (inhibitory), stored as sparse edge lists.

Neuron numbering follows ncps so that models can be exchanged with it:
motor neurons ``[0, motor)``, then command neurons, then inter neurons.
The signal flows sensory -> inter -> command (recurrent) -> motor.

`NCP` and `AutoNCP` build the wirings of Lechner et al. (Nature Machine
Intelligence 2020). They draw their random choices from
``numpy.random.RandomState(seed)`` in the same order as ``ncps.wirings``, so the
same arguments and seed give exactly the same adjacency matrices as ncps 1.0.1
(tested against ncps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

# Neuron types in signal-flow order (sensory inputs come before all of them).
NEURON_TYPES = ("inter", "command", "motor")


class Synapse(NamedTuple):
    """One directed synapse. ``source`` is an input index for sensory synapses,
    a neuron index for recurrent ones; ``target`` is always a neuron index."""

    source: int
    target: int
    polarity: int  # +1 excitatory, -1 inhibitory


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Return ``value`` as int if it is an integer in [low, high], else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name}={value} is outside the allowed range {allowed}")
    return value


def _as_synapses(name: str, edges: Any) -> tuple[Synapse, ...]:
    try:
        return tuple(Synapse(int(s), int(t), int(p)) for s, t, p in edges)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be a sequence of (source, target, polarity) triples"
        ) from exc


@dataclass(frozen=True)
class Wiring:
    """Immutable sparse wiring of a recurrent neural circuit.

    Attributes:
        input_size: number of sensory inputs I (>= 1).
        units: number of neurons N (>= 1); the recurrent state size.
        output_size: number of motor neurons O (1 <= O <= N); they are neurons
            ``0 .. O-1`` and their potentials are the network's outputs.
        sensory_synapses: edges ``(input i, neuron j, polarity)``, sorted by
            (target, source); no duplicate (source, target) pair.
        synapses: recurrent edges ``(neuron i, neuron j, polarity)``, sorted by
            (target, source); no duplicate pair; self-loops allowed.
        neuron_types: length-N tuple naming each neuron's layer, one of
            ``"inter"``, ``"command"``, ``"motor"``; neurons ``0 .. O-1`` are
            ``"motor"`` and no other neuron is.
        origin: human-readable record of how the wiring was made
            (e.g. ``"AutoNCP(input_size=32, units=48, outputs=4, ...)"``).
    """

    input_size: int
    units: int
    output_size: int
    sensory_synapses: tuple[Synapse, ...]
    synapses: tuple[Synapse, ...]
    neuron_types: tuple[str, ...]
    origin: str = ""

    def __post_init__(self) -> None:
        # Normalise containers first so the object is hashable and truly immutable.
        set_ = object.__setattr__
        set_(self, "input_size", _check_int("input_size", self.input_size, 1))
        set_(self, "units", _check_int("units", self.units, 1))
        set_(self, "output_size", _check_int("output_size", self.output_size, 1, self.units))
        sensory = _as_synapses("sensory_synapses", self.sensory_synapses)
        recurrent = _as_synapses("synapses", self.synapses)
        set_(self, "neuron_types", tuple(str(t) for t in self.neuron_types))
        set_(self, "origin", str(self.origin))

        if len(self.neuron_types) != self.units:
            raise ValueError(
                f"neuron_types has {len(self.neuron_types)} entries, expected units={self.units}"
            )
        for j, kind in enumerate(self.neuron_types):
            if kind not in NEURON_TYPES:
                raise ValueError(f"neuron_types[{j}]={kind!r}, expected one of {NEURON_TYPES}")
            if (kind == "motor") != (j < self.output_size):
                raise ValueError(
                    f"neuron {j} has type {kind!r}: neurons 0..{self.output_size - 1} must be "
                    f"'motor' (output_size={self.output_size}) and no other neuron may be"
                )
        for name, edges, n_src in (
            ("sensory_synapses", sensory, self.input_size),
            ("synapses", recurrent, self.units),
        ):
            seen: set[tuple[int, int]] = set()
            for s, t, p in edges:
                if not 0 <= s < n_src:
                    raise ValueError(f"{name}: source {s} outside [0, {n_src - 1}]")
                if not 0 <= t < self.units:
                    raise ValueError(f"{name}: target {t} outside [0, {self.units - 1}]")
                if p not in (-1, 1):
                    raise ValueError(f"{name}: polarity {p} of ({s}->{t}) must be -1 or +1")
                if (s, t) in seen:
                    raise ValueError(f"{name}: duplicate synapse {s}->{t}")
                seen.add((s, t))
        # Canonical order (by target, then source): equal wirings compare equal, and
        # kernels that accumulate per target neuron read contiguous runs.
        set_(self, "sensory_synapses", tuple(sorted(sensory, key=lambda e: (e.target, e.source))))
        set_(self, "synapses", tuple(sorted(recurrent, key=lambda e: (e.target, e.source))))

    # ------------------------------------------------------------------ views
    @property
    def num_sensory_synapses(self) -> int:
        return len(self.sensory_synapses)

    @property
    def num_synapses(self) -> int:
        return len(self.synapses)

    def sensory_edges(self) -> np.ndarray:
        """Sensory edges as an int64 array (E_s, 3): columns source, target, polarity."""
        return np.array(self.sensory_synapses, dtype=np.int64).reshape(-1, 3)

    def edges(self) -> np.ndarray:
        """Recurrent edges as an int64 array (E, 3): columns source, target, polarity."""
        return np.array(self.synapses, dtype=np.int64).reshape(-1, 3)

    def sensory_adjacency(self) -> np.ndarray:
        """(input_size, units) int32 matrix, entry [i, j] = polarity of i -> j, else 0.

        Same layout as ncps's ``sensory_adjacency_matrix``."""
        m = np.zeros((self.input_size, self.units), dtype=np.int32)
        for s, t, p in self.sensory_synapses:
            m[s, t] = p
        return m

    def adjacency(self) -> np.ndarray:
        """(units, units) int32 matrix, entry [i, j] = polarity of neuron i -> j, else 0.

        Same layout as ncps's ``adjacency_matrix``."""
        m = np.zeros((self.units, self.units), dtype=np.int32)
        for s, t, p in self.synapses:
            m[s, t] = p
        return m

    def neurons_of_type(self, kind: str) -> tuple[int, ...]:
        """Indices of the neurons of one layer (``"inter"``, ``"command"`` or ``"motor"``)."""
        if kind not in NEURON_TYPES:
            raise ValueError(f"kind={kind!r}, expected one of {NEURON_TYPES}")
        return tuple(j for j, t in enumerate(self.neuron_types) if t == kind)

    @property
    def layers(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Non-empty layers in signal-flow order:
        ``(("inter", ids), ("command", ids), ("motor", ids))``."""
        out = []
        for kind in NEURON_TYPES:
            ids = self.neurons_of_type(kind)
            if ids:
                out.append((kind, ids))
        return tuple(out)

    # ------------------------------------------------------------ round trip
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable dict; `from_dict` inverts it exactly."""
        return {
            "input_size": self.input_size,
            "units": self.units,
            "output_size": self.output_size,
            "sensory_synapses": [list(e) for e in self.sensory_synapses],
            "synapses": [list(e) for e in self.synapses],
            "neuron_types": list(self.neuron_types),
            "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Wiring:
        required = ("input_size", "units", "output_size", "sensory_synapses", "synapses",
                    "neuron_types")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"wiring dict lacks keys {missing}; it has {sorted(d)}")
        unknown = sorted(set(d) - set(required) - {"origin"})
        if unknown:
            raise ValueError(f"wiring dict has unknown keys {unknown}")
        return cls(
            input_size=d["input_size"],
            units=d["units"],
            output_size=d["output_size"],
            sensory_synapses=d["sensory_synapses"],
            synapses=d["synapses"],
            neuron_types=d["neuron_types"],
            origin=d.get("origin", ""),
        )

    @classmethod
    def from_adjacency(
        cls,
        sensory_adjacency: np.ndarray,
        adjacency: np.ndarray,
        output_size: int,
        neuron_types: tuple[str, ...] | None = None,
        origin: str = "",
    ) -> Wiring:
        """Build a wiring from dense polarity matrices (I, N) and (N, N).

        ``neuron_types`` defaults to motor for the first ``output_size`` neurons
        and inter for the rest (ncps's convention for wirings without layers)."""
        sa = np.asarray(sensory_adjacency)
        a = np.asarray(adjacency)
        if sa.ndim != 2 or a.ndim != 2 or a.shape[0] != a.shape[1] or sa.shape[1] != a.shape[0]:
            raise ValueError(
                f"expected sensory_adjacency (I, N) and adjacency (N, N), "
                f"got {sa.shape} and {a.shape}"
            )
        units = a.shape[0]
        if neuron_types is None:
            neuron_types = tuple("motor" if j < output_size else "inter" for j in range(units))
        sens = [(int(s), int(t), int(sa[s, t])) for s, t in zip(*np.nonzero(sa))]
        rec = [(int(s), int(t), int(a[s, t])) for s, t in zip(*np.nonzero(a))]
        return cls(sa.shape[0], units, output_size, sens, rec, tuple(neuron_types), origin)

    @classmethod
    def from_ncps(cls, wiring: Any) -> Wiring:
        """Convert a built ``ncps.wirings.Wiring`` (any subclass) into a `Wiring`."""
        if getattr(wiring, "input_dim", None) is None:
            raise ValueError(
                "the ncps wiring is not built (input_dim is None); call build(I) first"
            )
        units = int(wiring.units)
        types = tuple(str(wiring.get_type_of_neuron(j)) for j in range(units))
        return cls.from_adjacency(
            wiring.sensory_adjacency_matrix,
            wiring.adjacency_matrix,
            int(wiring.output_dim),
            types,
            origin=f"ncps.{type(wiring).__name__}",
        )


# ---------------------------------------------------------------- generators
def NCP(
    input_size: int,
    inter: int,
    command: int,
    motor: int,
    sensory_fanout: int,
    inter_fanout: int,
    recurrent_command_synapses: int,
    motor_fanin: int,
    seed: int = 22222,
) -> Wiring:
    """Neural Circuit Policy wiring: sensory -> inter -> command (recurrent) -> motor.

    Args:
        input_size: sensory inputs (>= 1).
        inter, command, motor: neurons per layer (each >= 1); N = their sum.
        sensory_fanout: inter neurons each input feeds, in [1, inter].
        inter_fanout: command neurons each inter neuron feeds, in [1, command].
        recurrent_command_synapses: random command -> command draws (>= 0);
            repeated draws of one pair keep the last polarity, as in ncps.
        motor_fanin: command neurons feeding each motor neuron, in [1, command].
        seed: seed of the ``numpy.random.RandomState`` all choices come from.

    Neurons that no random draw reached are connected afterwards (inter and
    command neurons to a mean fan-in of sources; command neurons to motor
    neurons), exactly as ncps does. Equal to ``ncps.wirings.NCP`` built with
    ``build(input_size)``, adjacency for adjacency.
    """
    input_size = _check_int("input_size", input_size, 1)
    inter = _check_int("inter", inter, 1)
    command = _check_int("command", command, 1)
    motor = _check_int("motor", motor, 1)
    sensory_fanout = _check_int("sensory_fanout", sensory_fanout, 1, inter)
    inter_fanout = _check_int("inter_fanout", inter_fanout, 1, command)
    recurrent_command_synapses = _check_int(
        "recurrent_command_synapses", recurrent_command_synapses, 0
    )
    motor_fanin = _check_int("motor_fanin", motor_fanin, 1, command)
    seed = _check_int("seed", seed, 0, 2**32 - 1)

    units = inter + command + motor
    motor_ids = np.arange(0, motor)
    command_ids = np.arange(motor, motor + command)
    inter_ids = np.arange(motor + command, units)
    sensory_ids = np.arange(input_size)
    rng = np.random.RandomState(seed)  # legacy generator: needed for ncps-identical draws
    # Dicts keyed by (source, target): a later draw of the same pair overwrites the
    # polarity, which is what writing into ncps's dense matrix does.
    sensory: dict[tuple[int, int], int] = {}
    recurrent: dict[tuple[int, int], int] = {}

    def sign() -> int:
        return int(rng.choice([-1, 1]))

    # Every draw below happens in ncps's order; reordering would change the wiring.
    # 1. each input feeds `sensory_fanout` distinct inter neurons
    reached: set[int] = set()
    for src in sensory_ids:
        for dst in rng.choice(inter_ids, size=sensory_fanout, replace=False):
            reached.add(int(dst))
            sensory[(int(src), int(dst))] = sign()
    fanin = int(np.clip(int(input_size * sensory_fanout / inter), 1, input_size))
    for dst in (int(j) for j in inter_ids if int(j) not in reached):
        for src in rng.choice(sensory_ids, size=fanin, replace=False):
            sensory[(int(src), dst)] = sign()

    # 2. each inter neuron feeds `inter_fanout` distinct command neurons
    reached = set()
    for src in inter_ids:
        for dst in rng.choice(command_ids, size=inter_fanout, replace=False):
            reached.add(int(dst))
            recurrent[(int(src), int(dst))] = sign()
    fanin = int(np.clip(int(inter * inter_fanout / command), 1, command))
    for dst in (int(j) for j in command_ids if int(j) not in reached):
        for src in rng.choice(inter_ids, size=fanin, replace=False):
            recurrent[(int(src), dst)] = sign()

    # 3. recurrent command -> command synapses
    for _ in range(recurrent_command_synapses):
        src = int(rng.choice(command_ids))
        dst = int(rng.choice(command_ids))
        recurrent[(src, dst)] = sign()

    # 4. each motor neuron listens to `motor_fanin` distinct command neurons
    unreached = [int(j) for j in command_ids]
    for dst in motor_ids:
        for src in rng.choice(command_ids, size=motor_fanin, replace=False):
            if int(src) in unreached:
                unreached.remove(int(src))
            recurrent[(int(src), int(dst))] = sign()
    fanout = int(np.clip(int(motor * motor_fanin / command), 1, motor))
    for src in unreached:
        for dst in rng.choice(motor_ids, size=fanout, replace=False):
            recurrent[(src, int(dst))] = sign()

    types = ("motor",) * motor + ("command",) * command + ("inter",) * inter
    origin = (
        f"NCP(input_size={input_size}, inter={inter}, command={command}, motor={motor}, "
        f"sensory_fanout={sensory_fanout}, inter_fanout={inter_fanout}, "
        f"recurrent_command_synapses={recurrent_command_synapses}, "
        f"motor_fanin={motor_fanin}, seed={seed})"
    )
    return Wiring(
        input_size=input_size,
        units=units,
        output_size=motor,
        sensory_synapses=tuple((s, t, p) for (s, t), p in sensory.items()),
        synapses=tuple((s, t, p) for (s, t), p in recurrent.items()),
        neuron_types=types,
        origin=origin,
    )


def AutoNCP(
    input_size: int,
    units: int,
    outputs: int,
    sparsity_level: float = 0.5,
    seed: int = 22222,
) -> Wiring:
    """NCP wiring sized from the neuron count alone (ncps's ``AutoNCP`` rule).

    Args:
        input_size: sensory inputs (>= 1).
        units: total neurons N; must exceed ``outputs + 2``.
        outputs: motor neurons O (>= 1).
        sparsity_level: fraction of possible synapses left out, in [0.1, 0.9].
        seed: seed of the wiring's random draws.

    Layer sizes: command = max(int(0.4 (N - O)), 1), inter = N - O - command;
    with density d = 1 - sparsity_level: sensory_fanout = max(int(inter d), 1),
    inter_fanout = motor_fanin = max(int(command d), 1),
    recurrent_command_synapses = max(int(2 command d), 1).
    """
    input_size = _check_int("input_size", input_size, 1)
    outputs = _check_int("outputs", outputs, 1)
    units = _check_int("units", units, outputs + 3)
    is_number = isinstance(sparsity_level, (int, float, np.floating))
    if isinstance(sparsity_level, bool) or not is_number:
        raise ValueError(f"sparsity_level must be a number, got {sparsity_level!r}")
    if not 0.1 <= float(sparsity_level) <= 0.9:
        raise ValueError(f"sparsity_level={sparsity_level} is outside the allowed range [0.1, 0.9]")
    density = 1.0 - float(sparsity_level)
    command = max(int(0.4 * (units - outputs)), 1)
    inter = units - outputs - command
    wiring = NCP(
        input_size=input_size,
        inter=inter,
        command=command,
        motor=outputs,
        sensory_fanout=max(int(inter * density), 1),
        inter_fanout=max(int(command * density), 1),
        recurrent_command_synapses=max(int(command * density * 2), 1),
        motor_fanin=max(int(command * density), 1),
        seed=seed,
    )
    origin = (
        f"AutoNCP(input_size={input_size}, units={units}, outputs={outputs}, "
        f"sparsity_level={float(sparsity_level)}, seed={seed}) = {wiring.origin}"
    )
    return Wiring(
        wiring.input_size, wiring.units, wiring.output_size, wiring.sensory_synapses,
        wiring.synapses, wiring.neuron_types, origin,
    )
