"""scripts/bearing_probe.py: the bearing error metric and the states it probes."""


import numpy as np
import pytest
import torch

from conftest import load_script
from lnn_nav.train import make_policy



def test_angle_error_wraps_and_ignores_the_vector_length():
    mod = load_script("bearing_probe")
    truth = np.array([[np.sin(a), np.cos(a)] for a in np.radians([170.0] * 10)])
    pred = 3.0 * np.array([[np.sin(a), np.cos(a)] for a in np.radians([-170.0] * 10)])
    assert mod.angle_error_deg(pred, truth) == pytest.approx(20.0)
    assert np.isnan(mod.angle_error_deg(pred[:5], truth[:5]))


@pytest.mark.parametrize("aux", [0, 2])
def test_states_are_the_heads_step_by_step(aux, spinning_episode):
    mod = load_script("bearing_probe")
    policy = make_policy("ltc", 0, aux_outputs=aux).eval()
    ep = spinning_episode(12)
    states, own = mod.run_states(policy, ep)
    assert states.shape == (12, policy.state_size) and own.shape == (12, aux)
    with torch.no_grad():
        _, aux_seq, state_t = policy.forward_with_aux(torch.from_numpy(ep.frames[None]), None,
                                                      torch.from_numpy(ep.dt[None]))
    np.testing.assert_allclose(states[-1], state_t[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(own, aux_seq[0].numpy(), atol=1e-5)
