import numpy as np
import pytest

from lnn_nav.command import CommandLimits, VelocityCommand


def test_normalised_round_trip_and_clipping():
    limits = CommandLimits(max_horizontal=2.0, max_vertical=1.0, max_yaw_rate=2.0)
    cmd = VelocityCommand(1.0, -0.5, 0.25, 1.5)
    a = limits.to_normalized(cmd)
    np.testing.assert_allclose(a, [0.5, -0.25, 0.25, 0.75])
    assert limits.from_normalized(a) == pytest.approx(cmd)
    assert limits.clip(VelocityCommand(5, -5, 3, -9)) == (2.0, -2.0, 1.0, -2.0)


def test_limits_dict_round_trip():
    limits = CommandLimits(1.5, 0.5, 1.0)
    assert CommandLimits.from_dict(limits.to_dict()) == limits


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_limits_name_the_field(bad):
    with pytest.raises(ValueError, match="max_vertical"):
        CommandLimits(max_vertical=bad)


def test_bad_action_shape():
    with pytest.raises(ValueError, match="shape"):
        CommandLimits().from_normalized(np.zeros(3))
