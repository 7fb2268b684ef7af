import numpy as np
import pytest

from lnn_nav.augment import AugmentConfig, adjust_appearance, augment_window, shift_image


def test_identity_parameters_leave_frames_unchanged():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    out = adjust_appearance(frames, brightness=0.0, contrast=1.0, saturation=1.0)
    np.testing.assert_allclose(out, frames, atol=1e-3)


def test_zero_saturation_gives_grey_and_brightness_shifts_mean():
    frames = np.zeros((1, 4, 4, 3), np.uint8)
    frames[..., 0] = 200
    grey = adjust_appearance(frames, 0.0, 1.0, 0.0)
    np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-3)
    brighter = adjust_appearance(frames, 0.1, 1.0, 1.0)
    assert brighter.mean() == pytest.approx(frames.mean() + 25.5, abs=0.01)


def test_shift_moves_content_and_repeats_edges():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    s = shift_image(x, 1, 0)
    np.testing.assert_array_equal(s[0, 1:, :, 0], x[0, :-1, :, 0])
    np.testing.assert_array_equal(s[0, 0, :, 0], x[0, 0, :, 0])


def test_augment_is_seeded_and_keeps_dtype():
    frames = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    cfg = AugmentConfig(probability=1.0)
    a = augment_window(frames, cfg, np.random.default_rng(7))
    b = augment_window(frames, cfg, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == frames.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, frames)


@pytest.mark.parametrize("field,value", [("brightness", 1.5), ("max_shift_px", -1), ("probability", 2.0)])
def test_bad_config_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})
