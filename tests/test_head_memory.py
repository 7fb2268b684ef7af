"""scripts/head_memory.py: the linearised time constants of a recurrent head."""

import math

import pytest
import torch

from conftest import load_script
from lnn_nav.train import make_policy



@pytest.mark.parametrize("tau_s", [0.1, 2.0, 30.0])
def test_time_constants_of_a_gru_with_a_known_answer(tau_s):
    """With every weight zero, a GRU's state update is h' = (1 - z) n + z h with
    z = sigmoid(update bias): each mode keeps the fraction z per step, so its time
    constant is -dt / ln z."""
    mod = load_script("head_memory")
    policy = make_policy("gru", 0)
    rnn = policy.head.rnn
    hidden = rnn.hidden_size
    keep = math.exp(-mod.DT / tau_s)
    with torch.no_grad():
        for p in rnn.parameters():
            p.zero_()
        rnn.bias_ih_l0[hidden:2 * hidden] = math.log(keep / (1.0 - keep))
    taus = mod.time_constants(policy, torch.randn(1, policy.encoder.feature_size))
    assert taus.shape == (hidden,)
    assert taus == pytest.approx(tau_s, rel=1e-3)


def test_time_constants_of_an_ltc_head_are_positive_and_sorted():
    mod = load_script("head_memory")
    policy = make_policy("ltc", 0)
    taus = mod.time_constants(policy, torch.randn(1, policy.encoder.feature_size))
    assert taus.shape == (policy.head.state_size,)
    assert (taus > 0).all() and (taus[:-1] >= taus[1:]).all()
