import json

import numpy as np
import pytest

from lnn_nav import data
from lnn_nav.atomic import atomic_write


def _episode(seed=3, t=5):
    rng = np.random.default_rng(seed)
    return data.Episode(
        frames=rng.integers(0, 256, (t, 8, 8, 3), dtype=np.uint8),
        dt=np.full(t, 1 / 30, np.float32),
        expert=rng.normal(size=(t, 4)).astype(np.float32),
        executed=rng.normal(size=(t, 4)).astype(np.float32),
        pos_w=rng.normal(size=(t, 3)).astype(np.float32),
        yaw=rng.normal(size=t).astype(np.float32),
        target_pos_w=rng.normal(size=(t, 3)).astype(np.float32),
        termination="success",
        seed=seed,
        family="forest",
        split="train",
    )


def test_episode_round_trip_is_exact(tmp_path):
    ep = _episode()
    path = data.save_episode(tmp_path, ep)
    back = data.load_episode(path)
    for name in ("frames", "dt", "expert", "executed", "pos_w", "yaw", "target_pos_w"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ep, name))
    assert (back.termination, back.seed, back.family, back.split) == ("success", 3, "forest", "train")


def test_episode_file_is_plain_numpy(tmp_path):
    path = data.save_episode(tmp_path, _episode())
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == set(data.EPISODE_KEYS)
        assert z["frames"].dtype == np.uint8


def test_manifest_lists_complete_episodes_only(tmp_path):
    data.save_episode(tmp_path, _episode(seed=1))
    data.save_episode(tmp_path, _episode(seed=2))
    (tmp_path / ".ep_train_0000003.npz.abc.tmp").write_bytes(b"half a file")
    assert data.remove_partial_files(tmp_path) == 1
    manifest = data.write_manifest(tmp_path, {"command": "test"})
    assert manifest["episodes"] == ["ep_train_0000001.npz", "ep_train_0000002.npz"]
    assert json.loads((tmp_path / "manifest.json").read_text())["schema_version"] == data.SCHEMA_VERSION
    assert [e.seed for e in data.load_dataset([tmp_path])] == [1, 2]


def test_failed_write_leaves_nothing(tmp_path):
    def explode(f):
        f.write(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x.npz", explode)
    assert list(tmp_path.iterdir()) == []


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "x.bin", lambda f: f.write(b"1"))
    finally:
        os.umask(umask)
    assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o644


def test_truncated_episode_names_the_file(tmp_path):
    path = data.save_episode(tmp_path, _episode())
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=path.name):
        data.load_episode(path)


def test_episode_validates_shapes():
    ep = _episode()
    with pytest.raises(ValueError, match="expert"):
        data.Episode(**{**ep.__dict__, "expert": np.zeros((2, 4), np.float32)})
    with pytest.raises(ValueError, match="frames"):
        data.Episode(**{**ep.__dict__, "frames": ep.frames.astype(np.float32)})


def test_wrong_schema_version_is_refused(tmp_path):
    data.write_manifest(tmp_path, {})
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["schema_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="schema_version=99"):
        data.read_manifest(tmp_path)
