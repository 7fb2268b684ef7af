"""NCP wiring: exact parity with ncps, immutability, round trip, validation, drawing."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from lnn_nav.models.wiring import NCP, AutoNCP, Synapse, Wiring

ncps_wirings = pytest.importorskip("ncps.wirings")

AUTO_CASES = [
    # (input_size, units, outputs, sparsity, seed)
    (32, 48, 4, 0.5, 22222),  # the benchmark wiring
    (128, 34, 4, 0.5, 22222),  # the paper's head
    (5, 10, 2, 0.1, 1),
    (7, 20, 3, 0.9, 5),
    (200, 19, 1, 0.3, 3),
    (1, 6, 3, 0.5, 0),  # smallest legal AutoNCP with a single input
]


@pytest.mark.parametrize("input_size,units,outputs,sparsity,seed", AUTO_CASES)
def test_autoncp_matches_ncps(input_size, units, outputs, sparsity, seed):
    ref = ncps_wirings.AutoNCP(units, outputs, sparsity_level=sparsity, seed=seed)
    ref.build(input_size)
    w = AutoNCP(input_size, units, outputs, sparsity_level=sparsity, seed=seed)
    np.testing.assert_array_equal(w.adjacency(), ref.adjacency_matrix)
    np.testing.assert_array_equal(w.sensory_adjacency(), ref.sensory_adjacency_matrix)
    assert w.units == ref.units and w.output_size == ref.output_dim
    assert w.neuron_types == tuple(ref.get_type_of_neuron(j) for j in range(units))
    # edge lists and the dense views describe the same synapses
    assert w.num_synapses == int(np.abs(ref.adjacency_matrix).sum())
    assert w.num_sensory_synapses == int(np.abs(ref.sensory_adjacency_matrix).sum())


@pytest.mark.parametrize(
    "args",
    [
        (16, 10, 8, 4, 5, 4, 6, 3, 22222),
        (3, 4, 3, 2, 4, 3, 0, 3, 7),  # no recurrent command synapses
        (9, 6, 5, 3, 1, 1, 20, 1, 123),  # many repeated command->command draws
    ],
)
def test_ncp_matches_ncps(args):
    input_size, *layer_args, seed = args
    ref = ncps_wirings.NCP(*layer_args, seed=seed)
    ref.build(input_size)
    w = NCP(input_size, *layer_args, seed=seed)
    np.testing.assert_array_equal(w.adjacency(), ref.adjacency_matrix)
    np.testing.assert_array_equal(w.sensory_adjacency(), ref.sensory_adjacency_matrix)
    assert w.layers == tuple(
        (kind, tuple(ref.get_neurons_of_layer(i)))
        for i, kind in enumerate(("inter", "command", "motor"))
    )


def test_seed_changes_wiring_and_same_seed_repeats():
    a = AutoNCP(32, 48, 4, seed=1)
    assert a == AutoNCP(32, 48, 4, seed=1)
    assert not np.array_equal(a.adjacency(), AutoNCP(32, 48, 4, seed=2).adjacency())


def test_layer_structure_follows_signal_flow():
    w = AutoNCP(32, 48, 4)
    motor, command, inter = (set(w.neurons_of_type(k)) for k in ("motor", "command", "inter"))
    assert motor == set(range(4))
    # sensory inputs feed only inter neurons
    assert {t for _, t, _ in w.sensory_synapses} <= inter
    for s, t, _ in w.synapses:
        assert (s in inter and t in command) or (s in command and t in command | motor)
    # every inter, command and motor neuron is reachable
    assert {t for _, t, _ in w.sensory_synapses} == inter
    assert {t for _, t, _ in w.synapses} >= command | motor


def test_round_trip_and_json():
    w = AutoNCP(32, 48, 4, sparsity_level=0.6, seed=9)
    d = json.loads(json.dumps(w.to_dict()))
    w2 = Wiring.from_dict(d)
    assert w2 == w and hash(w2) == hash(w)
    np.testing.assert_array_equal(w2.adjacency(), w.adjacency())
    np.testing.assert_array_equal(w2.sensory_edges(), w.sensory_edges())


def test_from_ncps_and_from_adjacency_agree():
    ref = ncps_wirings.AutoNCP(20, 5, seed=4)
    ref.build(11)
    w = Wiring.from_ncps(ref)
    mine = AutoNCP(11, 20, 5, seed=4)
    assert (w.sensory_synapses, w.synapses, w.neuron_types) == (
        mine.sensory_synapses, mine.synapses, mine.neuron_types)
    fc = ncps_wirings.FullyConnected(6, 2)
    fc.build(3)
    w_fc = Wiring.from_ncps(fc)
    assert w_fc.num_synapses == 36 and w_fc.num_sensory_synapses == 18
    assert w_fc.neuron_types == ("motor", "motor") + ("inter",) * 4


def test_immutable():
    w = AutoNCP(8, 12, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.units = 3  # type: ignore[misc]
    assert isinstance(w.synapses, tuple) and isinstance(w.synapses[0], Synapse)
    # adjacency views are fresh copies; editing one does not touch the wiring
    a = w.adjacency()
    a[:] = 0
    assert np.abs(w.adjacency()).sum() == w.num_synapses


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"input_size": 0, "units": 10, "outputs": 2}, "input_size=0"),
        ({"input_size": 4, "units": 4, "outputs": 2}, "units=4"),
        ({"input_size": 4, "units": 10, "outputs": 0}, "outputs=0"),
        ({"input_size": 4, "units": 10, "outputs": 2, "sparsity_level": 0.05},
         "sparsity_level=0.05"),
        ({"input_size": 4, "units": 10, "outputs": 2, "sparsity_level": 0.95}, "[0.1, 0.9]"),
        ({"input_size": 4.5, "units": 10, "outputs": 2}, "input_size"),
    ],
)
def test_autoncp_rejects_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError) as err:
        AutoNCP(**kwargs)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "override,needle",
    [
        ({"sensory_fanout": 6}, "sensory_fanout=6"),
        ({"inter_fanout": 5}, "inter_fanout=5"),
        ({"motor_fanin": 5}, "motor_fanin=5"),
        ({"sensory_fanout": 0}, "sensory_fanout=0"),
        ({"command": 0}, "command=0"),
        ({"recurrent_command_synapses": -1}, "recurrent_command_synapses=-1"),
    ],
)
def test_ncp_rejects_bad_arguments(override, needle):
    args = {"input_size": 4, "inter": 5, "command": 4, "motor": 2, "sensory_fanout": 2,
            "inter_fanout": 2, "recurrent_command_synapses": 3, "motor_fanin": 2}
    args.update(override)
    with pytest.raises(ValueError) as err:
        NCP(**args)
    assert needle in str(err.value)


def test_wiring_rejects_inconsistent_edges():
    good = AutoNCP(4, 8, 2).to_dict()
    for key, value, needle in [
        ("synapses", [[0, 8, 1]], "target 8"),
        ("synapses", [[0, 1, 0]], "polarity 0"),
        ("synapses", [[0, 1, 1], [0, 1, -1]], "duplicate"),
        ("sensory_synapses", [[4, 0, 1]], "source 4"),
        ("neuron_types", ["inter"] * 8, "must be 'motor'"),
        ("neuron_types", ["motor"] * 2 + ["glia"] * 6, "glia"),
        ("output_size", 9, "output_size=9"),
    ]:
        bad = dict(good, **{key: value})
        with pytest.raises(ValueError, match=needle):
            Wiring.from_dict(bad)
    with pytest.raises(ValueError, match="lacks keys"):
        Wiring.from_dict({"units": 3})


def test_draw_wiring_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from lnn_nav.models.wiring_plot import draw_wiring, node_positions

    w = AutoNCP(16, 12, 3, seed=1)
    out = draw_wiring(w, tmp_path / "sub" / "wiring.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    sensory, neurons = node_positions(w)
    assert (sensory[:, 0] == 0).all()
    col = {"inter": 1, "command": 2, "motor": 3}
    assert all(neurons[j, 0] == col[t] for j, t in enumerate(w.neuron_types))
    with pytest.raises(ValueError, match="lnn_nav Wiring"):
        draw_wiring(w.to_dict(), tmp_path / "bad.png")


def test_info_cli_draws_the_default_wiring(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from lnn_nav.cli import main

    out = tmp_path / "wiring.png"
    assert main(["info", "--wiring", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert str(out) in capsys.readouterr().out
