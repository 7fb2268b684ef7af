import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env, data_equivalence

import lnn_nav.sim  # noqa: F401  (registers the ids)
from lnn_nav.command import CommandLimits
from lnn_nav.sim.envs import (
    FlyToTargetConfig,
    FlyToTargetEnv,
    FollowTargetConfig,
    FollowTargetEnv,
    stress_image,
)
from lnn_nav.sim.quadsim import QuadSimConfig
from lnn_nav.sim.scenes import generate_scene


@pytest.fixture(scope="module")
def fly():
    env = FlyToTargetEnv("forest", "train")
    yield env
    env.close()


def _rollout(env, seed, n, action_seed=0):
    rng = np.random.default_rng(action_seed)
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for _ in range(n):
        obs, rew, term, trunc, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        out.append((obs, rew, term, trunc, info))
        if term or trunc:
            obs, info = env.reset()
            out.append((obs, info))
    return out


@pytest.mark.parametrize("env_id", ["lnn_nav/FlyToTarget-v0", "lnn_nav/FollowTarget-v0"])
def test_check_env_passes(env_id):
    env = gym.make(env_id, family="forest", split="train")
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_make_with_config_dict_and_user_family(tmp_path):
    env = gym.make("lnn_nav/FlyToTarget-v0", family="forest-autumn", split="val",
                   config={"time_limit_s": 5.0, "success_radius_m": 0.8})
    try:
        assert env.unwrapped.config.time_limit_s == 5.0
        obs, info = env.reset(seed=1)
        assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
        assert obs["dt"].dtype == np.float32 and obs["dt"][0] == pytest.approx(1 / 30)
        assert info["family"] == "forest-autumn" and info["split"] == "val"
    finally:
        env.close()


def test_same_seed_same_episode_images_included():
    a = FlyToTargetEnv("forest", "train")
    b = FlyToTargetEnv("forest", "train")
    try:
        ra, rb = _rollout(a, 7, 200), _rollout(b, 7, 200)
        assert len(ra) == len(rb)
        for x, y in zip(ra, rb):
            assert data_equivalence(x, y)
        # and the same env object replays the same episode after other episodes
        rc = _rollout(a, 7, 50)
        for x, y in zip(rc, ra):
            assert data_equivalence(x, y)
    finally:
        a.close()
        b.close()


def test_same_seed_same_episode_with_sensor_faults_and_moving_target():
    a = FollowTargetEnv("forest-faults", "train")
    b = FollowTargetEnv("forest-faults", "train")
    try:
        ra, rb = _rollout(a, 3, 200), _rollout(b, 3, 200)
        for x, y in zip(ra, rb):
            assert data_equivalence(x, y)
        dts = {float(step[0]["dt"][0]) for step in ra}
        assert len(dts) > 1  # lost frames lengthen dt
    finally:
        a.close()
        b.close()


def test_different_splits_give_different_scenes():
    envs = {s: FlyToTargetEnv("forest", s) for s in ("train", "val", "unseen")}
    try:
        seeds, images = {}, {}
        for split, env in envs.items():
            obs, info = env.reset(seed=0)
            seeds[split] = info["scene_seed"]
            images[split] = obs["image"].tobytes()
            lo, hi = env.family.splits[split]
            assert lo <= info["scene_seed"] < hi
        assert len(set(seeds.values())) == 3
        assert len(set(images.values())) == 3
    finally:
        for env in envs.values():
            env.close()


def test_scene_index_option_and_info_geometry(fly):
    obs, info = fly.reset(seed=0, options={"scene_index": 12})
    sc = generate_scene("forest", "train", 12)
    assert info["scene_index"] == 12
    np.testing.assert_array_equal(info["cylinders"], sc.cylinders)
    np.testing.assert_array_equal(info["spheres"], sc.spheres)
    np.testing.assert_allclose(info["pos_w"], sc.start_pos_w, atol=1e-6)
    np.testing.assert_allclose(info["target_pos_w"], sc.target_pos_w)
    assert info["yaw"] == pytest.approx(sc.start_yaw, abs=1e-6)
    assert info["termination"] is None
    np.testing.assert_array_equal(info["bounds"], [-7, -7, 7, 7])


@pytest.mark.parametrize("bad", [
    np.array([0.0, np.nan, 0.0, 0.0]),
    np.array([np.inf, 0.0, 0.0, 0.0]),
    np.zeros(3),
    np.zeros((2, 4)),
    "fast",
])
def test_bad_action_raises_value_error_naming_it(fly, bad):
    fly.reset(seed=0)
    with pytest.raises(ValueError, match="action=") as err:
        fly.step(bad)
    msg = str(err.value)
    if isinstance(bad, np.ndarray) and bad.shape == (4,):
        assert "nan" in msg or "inf" in msg
    elif isinstance(bad, np.ndarray):
        assert str(bad.shape) in msg


def test_action_maps_linearly_onto_the_limits():
    cfg = FlyToTargetConfig(sim=QuadSimConfig(limits=CommandLimits(1.0, 0.5, 1.5)))
    env = FlyToTargetEnv("forest", "train", config=cfg)
    try:
        env.reset(seed=0)
        _, _, _, _, info = env.step(np.array([0.5, -1.0, 0.2, 2.0], np.float32))
        np.testing.assert_allclose(info["command"], [0.5, -1.0, 0.1, 1.5], atol=1e-6)
    finally:
        env.close()


def test_collision_and_out_of_bounds_terminate(fly):
    # full speed forward: ends by a physical event (or the time limit) with a named reason
    obs, info = fly.reset(seed=0, options={"scene_index": 3})
    for _ in range(2000):
        obs, r, term, trunc, info = fly.step(np.array([1.0, 0.0, 0.0, 0.0], np.float32))
        if term or trunc:
            break
    assert info["termination"] in ("collision", "out_of_bounds")
    if info["termination"] == "collision":
        assert info["collided_with"] in ("trunk", "canopy", "pole", "box", "wall", "ground", "target")
    # flying straight up leaves through the ceiling
    fly.reset(seed=0, options={"scene_index": 3})
    for _ in range(600):
        _, _, term, trunc, info = fly.step(np.array([0.0, 0.0, 1.0, 0.0], np.float32))
        if term or trunc:
            break
    assert info["termination"] in ("out_of_bounds", "collision")


def test_timeout_is_truncation():
    env = FlyToTargetEnv("forest", "train", config=FlyToTargetConfig(time_limit_s=0.5))
    try:
        env.reset(seed=0)
        for k in range(100):
            _, _, term, trunc, info = env.step(np.zeros(4, np.float32))
            if term or trunc:
                break
        assert trunc and not term and info["termination"] == "timeout"
        assert k + 1 == 15  # 0.5 s at 30 Hz
    finally:
        env.close()


def test_success_when_hovering_in_front_of_the_target(fly):
    """Put the drone at the stand-off point facing the target: hovering there succeeds
    after the hold time and not before."""
    obs, info = fly.reset(seed=0, options={"scene_index": 5})
    tgt = info["target_pos_w"]
    away = np.array([1.0, 0.0]) if abs(tgt[0]) < 5 else np.array([-np.sign(tgt[0]), 0.0])
    pos = np.array([tgt[0] + 0.8 * away[0], tgt[1] + 0.8 * away[1], tgt[2]])
    yaw = float(np.arctan2(-away[1], -away[0]))
    fly.sim.reset(pos, yaw)
    steps = 0
    for steps in range(1, 60):
        _, r, term, trunc, info = fly.step(np.zeros(4, np.float32))
        if term or trunc:
            break
    assert info["termination"] == "success"
    assert steps == fly._hold_steps
    assert info["target_in_view"]


def test_follow_target_moves_and_is_scored():
    env = FollowTargetEnv("forest", "val", config=FollowTargetConfig(time_limit_s=3.0))
    try:
        obs, info = env.reset(seed=2)
        p0 = info["target_pos_w"].copy()
        assert info["distance_m"] == pytest.approx(2.0, abs=0.05)
        assert info["target_in_view"]
        for _ in range(200):
            obs, r, term, trunc, info = env.step(np.zeros(4, np.float32))
            if term or trunc:
                break
        assert np.linalg.norm(info["target_pos_w"] - p0) > 0.5
        assert np.linalg.norm(info["target_vel_w"]) > 0.1
        assert trunc and info["termination"] in ("success", "timeout")
        assert 0.0 <= info["tracked_fraction"] <= 1.0
    finally:
        env.close()


def test_stress_image_changes_pixels_deterministically():
    sc = generate_scene("forest-stress", "train", 0)
    img = np.full((8, 8, 3), 100, np.uint8)
    a = stress_image(img, sc, np.random.default_rng(0))
    b = stress_image(img, sc, np.random.default_rng(0))
    assert a.dtype == np.uint8 and a.shape == img.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, img)


def test_configs_round_trip():
    for cfg in (FlyToTargetConfig(time_limit_s=12.0, success_hold_s=0.3),
                FollowTargetConfig(follow_distance_m=1.5)):
        assert type(cfg).from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="success_radius_m=-1"):
        FlyToTargetConfig(success_radius_m=-1)
    with pytest.raises(ValueError, match="bogus"):
        FlyToTargetConfig.from_dict({"bogus": 1})


def test_bad_split_and_render_mode_are_named():
    with pytest.raises(ValueError, match="split='test'"):
        FlyToTargetEnv("forest", "test")
    with pytest.raises(ValueError, match="render_mode='human'"):
        FlyToTargetEnv("forest", "train", render_mode="human")


def test_async_vector_env_two_workers_matches_single_process():
    fns = [lambda: gym.make("lnn_nav/FlyToTarget-v0", family="forest", split="train")] * 2
    venv = gym.vector.AsyncVectorEnv(fns)
    single = FlyToTargetEnv("forest", "train")
    try:
        obs, infos = venv.reset(seed=[11, 12])
        assert obs["image"].shape == (2, 64, 64, 3) and obs["dt"].shape == (2, 1)
        ref, _ = single.reset(seed=12)
        np.testing.assert_array_equal(obs["image"][1], ref["image"])
        actions = np.tile(np.array([[0.3, 0.0, 0.1, 0.2]], np.float32), (2, 1))
        for _ in range(10):
            obs, rew, term, trunc, infos = venv.step(actions)
            ref, _, _, _, _ = single.step(actions[1])
        np.testing.assert_array_equal(obs["image"][1], ref["image"])
        assert not np.array_equal(obs["image"][0], obs["image"][1])
    finally:
        venv.close()
        single.close()


def test_view_culling_leaves_the_images_unchanged():
    """Obstacles outside the view cone are made transparent before each render (speed);
    the frames must be bit-identical to rendering everything."""
    frames = {}
    for cull in (False, True):
        env = FlyToTargetEnv("forest-dense", "train")
        env._cull = cull
        try:
            out = _rollout(env, 4, 150)
            frames[cull] = [step[0]["image"] for step in out]
        finally:
            env.close()
    assert len(frames[False]) == len(frames[True])
    for a, b in zip(frames[False], frames[True]):
        np.testing.assert_array_equal(a, b)


def test_dynamics_family_perturbs_the_vehicle_and_blows_wind():
    env = FlyToTargetEnv("forest-dynamics", "unseen")
    try:
        spec = env.family
        for index in range(20):
            sc = generate_scene(spec, "unseen", index)
            if sc.weak_motor >= 0 and len(sc.gusts):
                break
        obs, info = env.reset(seed=0, options={"scene_index": index})
        params = env.sim.quad.params
        nominal = env.config.sim.vehicle
        assert params.mass_kg == pytest.approx(nominal.mass_kg * sc.mass_scale)
        assert min(params.motor_efficiency) == pytest.approx(sc.weak_motor_efficiency)
        t_gust = sc.gusts[0, 0] + sc.gusts[0, 1] / 2
        np.testing.assert_allclose(sc.wind_at(t_gust), sc.wind_steady_w + sc.gusts[0, 2:5], atol=1e-9)
        for _ in range(30):  # the controller keeps it flying despite the weak motor
            obs, r, term, trunc, info = env.step(np.zeros(4, np.float32))
        assert not term and abs(info["pos_w"][2] - sc.start_pos_w[2]) < 0.3
    finally:
        env.close()


def test_control_rate_shift_changes_dt():
    cfg = FlyToTargetConfig(sim=QuadSimConfig(control_hz=15))
    env = FlyToTargetEnv("forest", "train", config=cfg)
    try:
        obs, info = env.reset(seed=0)
        assert obs["dt"][0] == pytest.approx(1 / 15)
        obs, _, _, _, info = env.step(np.zeros(4, np.float32))
        assert obs["dt"][0] == pytest.approx(1 / 15) and info["time_s"] == pytest.approx(1 / 15)
        assert env.metadata["render_fps"] == 15
    finally:
        env.close()
