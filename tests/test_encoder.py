"""CNN encoder: shapes, budget, normalisation inside, validation, config round trip."""

from __future__ import annotations

import pytest
import torch

from lnn_nav.models.encoder import CNNEncoder, EncoderConfig
from lnn_nav.models.policy import random_frames


def test_default_encoder_within_budget_and_standardised():
    enc = CNNEncoder()
    assert enc.param_count() <= 30_000
    frames = random_frames(6, 1, enc.config, seed=1)[:, 0]
    feats = enc(frames)
    assert feats.shape == (6, enc.feature_size) == (6, 112)
    assert feats.dtype == torch.float32
    # LayerNorm at the end: each frame's features have ~zero mean and ~unit std
    torch.testing.assert_close(feats.mean(1), torch.zeros(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.std(1, unbiased=False), torch.ones(6), atol=1e-2, rtol=0)


def test_spatial_softmax_locates_a_bright_spot():
    """Before the final LayerNorm, each keypoint is an (x, y) expectation in [-1, 1] that
    moves with the image content: a bright spot moved right moves x to the right."""
    enc = CNNEncoder(EncoderConfig(seed=3))
    img = torch.zeros(2, 64, 64, 3, dtype=torch.uint8)
    img[0, 28:36, 4:12] = 255   # spot on the left
    img[1, 28:36, 52:60] = 255  # spot on the right
    with torch.no_grad():
        x = (img.permute(0, 3, 1, 2).float() / 255.0 - 0.5) * 4.0
        kp = enc.pool(enc.conv(x)).reshape(2, -1, 2)
    assert kp.abs().max() <= 1.0
    # averaged over keypoints, the expected x follows the spot
    assert kp[1, :, 0].mean() > kp[0, :, 0].mean()


def test_avg_pooling_variant():
    cfg = EncoderConfig(pooling="avg", keypoints=32)
    enc = CNNEncoder(cfg)
    assert enc.feature_size == 32
    assert enc(random_frames(2, 1, cfg)[:, 0]).shape == (2, 32)


def test_bad_images_raise():
    enc = CNNEncoder()
    with pytest.raises(ValueError, match="uint8"):
        enc(torch.zeros(1, 64, 64, 3))
    with pytest.raises(ValueError, match=r"\(B, 64, 64, 3\)"):
        enc(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_config_round_trip_and_validation():
    cfg = EncoderConfig(image_size=(48, 64), channels=(8, 16, 24), keypoints=10, seed=4)
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="pooling='max'"):
        EncoderConfig(pooling="max")
    with pytest.raises(ValueError, match="keypoints=0"):
        EncoderConfig(keypoints=0)
    enc = CNNEncoder(cfg)
    assert enc(torch.zeros(3, 48, 64, 3, dtype=torch.uint8)).shape == (3, 20)


def test_field_of_view_is_checked_and_old_files_read_as_60_degrees():
    import math

    cfg = EncoderConfig(image_size=(64, 96), vfov_rad=2 * math.atan(2 / 3))
    assert math.degrees(cfg.hfov_rad) == pytest.approx(90.0)
    old = cfg.to_dict()
    del old["vfov_rad"]
    assert EncoderConfig.from_dict(old).vfov_rad == pytest.approx(math.radians(60.0))
    for bad in (0.0, math.pi, -1.0, True, "wide"):
        with pytest.raises(ValueError, match="vfov_rad"):
            EncoderConfig(vfov_rad=bad)


def test_supersampling_is_checked_and_old_files_read_as_one():
    cfg = EncoderConfig(supersample=2)
    old = cfg.to_dict()
    del old["supersample"]
    assert EncoderConfig.from_dict(old).supersample == 1
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match=f"supersample={bad!r}: expected an integer in"):
            EncoderConfig(supersample=bad)


def test_same_seed_same_weights():
    a, b = CNNEncoder(EncoderConfig(seed=7)), CNNEncoder(EncoderConfig(seed=7))
    c = CNNEncoder(EncoderConfig(seed=8))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.conv[0].weight, c.conv[0].weight)


def test_presence_tells_a_small_blob_from_a_flat_map():
    """Presence is each map's peak softmax probability: 1/(h w) on a flat map, high
    where one cell stands out -- the spatial-softmax position alone cannot say
    whether anything is there."""
    from lnn_nav.models.encoder import SpatialSoftmax

    pool = SpatialSoftmax(4, 4, presence=True)
    flat = torch.zeros(1, 1, 4, 4)
    blob = flat.clone()
    blob[0, 0, 1, 2] = 8.0
    out_flat, out_blob = pool(flat), pool(blob)
    assert out_flat.shape == (1, 3)
    torch.testing.assert_close(out_flat[0, 2], torch.tensor(1 / 16))
    assert out_blob[0, 2] > 0.9
    enc = CNNEncoder(EncoderConfig(keypoints=10, presence=True))
    assert enc.feature_size == 30
    assert enc(torch.zeros(2, 64, 64, 3, dtype=torch.uint8)).shape == (2, 30)
    avg = CNNEncoder(EncoderConfig(keypoints=10, pooling="avg", presence=True))
    assert avg(torch.zeros(2, 64, 64, 3, dtype=torch.uint8)).shape == (2, 20)
    with pytest.raises(ValueError, match="presence=1"):
        EncoderConfig(presence=1)


def test_spread_tells_a_wide_blob_from_a_narrow_one_at_the_same_place():
    """Spread is the standard deviation of each map's softmax: a wide object (a
    near trunk) and a narrow one (a far trunk) centred on the same column have
    the same expected position and different spreads."""
    from lnn_nav.models.encoder import SpatialSoftmax

    pool = SpatialSoftmax(8, 8, presence=True, spread=True)
    narrow = torch.full((1, 1, 8, 8), -20.0)
    narrow[0, 0, :, 3:5] = 0.0
    wide = torch.full((1, 1, 8, 8), -20.0)
    wide[0, 0, :, 1:7] = 0.0
    a, b = pool(narrow), pool(wide)
    assert a.shape == (1, 4)
    torch.testing.assert_close(a[0, :2], b[0, :2])
    # columns at +-1/7 (narrow) and +-1/7, +-3/7, +-5/7 (wide) of [-1, 1]; rows
    # uniform over 8 positions in both
    var_y = float(torch.linspace(-1, 1, 8).square().mean())
    torch.testing.assert_close(a[0, 3], torch.tensor((1 / 49 + var_y) ** 0.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(b[0, 3], torch.tensor((35 / 147 + var_y) ** 0.5), atol=1e-4, rtol=0)
    # a one-cell map has no spread, and a finite gradient there
    point = torch.full((1, 1, 8, 8), -50.0, requires_grad=True)
    with torch.no_grad():
        point[0, 0, 2, 2] = 50.0
    out = pool(point)
    assert float(out[0, 3]) < 1e-2
    out[0, 3].backward()
    assert torch.isfinite(point.grad).all()
    enc = CNNEncoder(EncoderConfig(keypoints=10, presence=True, spread=True))
    assert enc.feature_size == 40
    assert enc(torch.zeros(2, 64, 64, 3, dtype=torch.uint8)).shape == (2, 40)
    with pytest.raises(ValueError, match="spread=True with pooling='avg'"):
        EncoderConfig(pooling="avg", spread=True)
    with pytest.raises(ValueError, match="spread=1"):
        EncoderConfig(spread=1)
