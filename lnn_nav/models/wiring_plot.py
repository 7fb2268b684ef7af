"""Wiring diagram: neurons in columns by layer, synapses coloured by polarity.

matplotlib is imported only when a diagram is drawn, and without pyplot (no
GUI backend, safe on servers and in threads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lnn_nav.models.wiring import Wiring

EXCITATORY = "tab:green"
INHIBITORY = "tab:red"
LAYER_COLOURS = {"sensory": "tab:olive", "inter": "tab:blue", "command": "tab:purple",
                 "motor": "tab:orange"}


def _column(count: int) -> np.ndarray:
    """y positions of `count` nodes spread over [0, 1], centred."""
    if count == 1:
        return np.array([0.5])
    return np.linspace(0.0, 1.0, count)


def node_positions(wiring: Wiring) -> tuple[np.ndarray, np.ndarray]:
    """(input_size, 2) sensory and (units, 2) neuron positions: x = column
    (0 sensory, 1 inter, 2 command, 3 motor), y in [0, 1]."""
    sensory = np.stack([np.zeros(wiring.input_size), _column(wiring.input_size)], axis=1)
    neurons = np.zeros((wiring.units, 2))
    for kind, ids in wiring.layers:
        col = {"inter": 1.0, "command": 2.0, "motor": 3.0}[kind]
        neurons[list(ids)] = np.stack([np.full(len(ids), col), _column(len(ids))], axis=1)
    return sensory, neurons


def draw_wiring(wiring: Wiring, path: str | Path, title: str | None = None, dpi: int = 150) -> Path:
    """Draw `wiring` to an image file (format from the suffix, e.g. .png, .svg, .pdf).

    Columns left to right: sensory inputs, inter, command, motor neurons.
    Synapses are green (excitatory, +1) or red (inhibitory, -1); recurrent
    synapses within a layer are drawn as arcs. Returns the written path.
    """
    if not isinstance(wiring, Wiring):
        raise ValueError(f"wiring must be a lnn_nav Wiring, got {type(wiring).__name__}")
    try:
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import FancyArrowPatch
    except ImportError as exc:  # pragma: no cover - matplotlib is a runtime dependency
        raise ImportError("wiring diagrams need matplotlib: pip install matplotlib") from exc

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sensory_xy, neuron_xy = node_positions(wiring)
    fig = Figure(figsize=(8.0, 6.0))
    ax = fig.add_subplot(1, 1, 1)

    def colour(p: int) -> str:
        return EXCITATORY if p > 0 else INHIBITORY

    # Sensory fan-out is dense: thin, translucent straight lines in one collection.
    seg = [(sensory_xy[s], neuron_xy[t]) for s, t, _ in wiring.sensory_synapses]
    ax.add_collection(LineCollection(
        seg, colors=[colour(p) for *_, p in wiring.sensory_synapses],
        linewidths=0.4, alpha=0.25, zorder=1))
    straight, straight_c = [], []
    for s, t, p in wiring.synapses:
        a, b = neuron_xy[s], neuron_xy[t]
        if a[0] == b[0]:  # same layer (recurrent command synapses, self-loops): arc
            if s == t:
                b = b + np.array([0.0, 0.02])
            ax.add_patch(FancyArrowPatch(
                tuple(a), tuple(b), connectionstyle="arc3,rad=0.6", arrowstyle="-|>",
                mutation_scale=6, color=colour(p), linewidth=0.8, alpha=0.7, zorder=2))
        else:
            straight.append((a, b))
            straight_c.append(colour(p))
    ax.add_collection(LineCollection(straight, colors=straight_c, linewidths=0.7, alpha=0.6,
                                     zorder=2))
    ax.scatter(sensory_xy[:, 0], sensory_xy[:, 1], s=8, c=LAYER_COLOURS["sensory"], zorder=3,
               label=f"sensory inputs ({wiring.input_size})")
    for kind, ids in wiring.layers:
        xy = neuron_xy[list(ids)]
        ax.scatter(xy[:, 0], xy[:, 1], s=40, c=LAYER_COLOURS[kind], edgecolors="black",
                   linewidths=0.5, zorder=4, label=f"{kind} neurons ({len(ids)})")
    for o in range(wiring.output_size):
        ax.annotate(f"out {o}", neuron_xy[o], xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=7)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color=EXCITATORY, label="excitatory (+1)"),
                Line2D([], [], color=INHIBITORY, label="inhibitory (-1)")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=3,
              fontsize=7, frameon=False)
    ax.set_xlim(-0.3, 3.5)
    ax.set_ylim(-0.08, 1.08)
    ax.set_xticks([0, 1, 2, 3], ["sensory", "inter", "command", "motor"])
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or (
        f"NCP wiring: {wiring.units} neurons, {wiring.num_synapses} synapses, "
        f"{wiring.num_sensory_synapses} sensory synapses"), fontsize=9)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # keeps the legend below the axes
    return path


def default_wiring() -> Any:
    """The default policy's wiring if the policy module defines one, else the paper's
    head: AutoNCP(128 inputs, 34 neurons, 4 motor)."""
    try:
        from lnn_nav.models.policy import default_wiring as policy_default
    except ImportError:
        policy_default = None
    if policy_default is not None:
        return policy_default()
    from lnn_nav.models.wiring import AutoNCP

    return AutoNCP(128, 34, 4)
