"""Closed-loop evaluation: artifacts, determinism, suite definitions, errors.

Metric arithmetic is tested in test_metrics.py; these tests fly a freshly
initialised policy (no trained policy needed) for a few seconds of simulated time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import load_script
from lnn_nav.augment import AugmentConfig
from lnn_nav.evaluate import (
    CONTROL_RATES_HZ,
    FRAME_DROP_PROBS,
    IMAGE_STRESS_LEVELS,
    Condition,
    EvalConfig,
    ImageStress,
    evaluate,
    single_condition,
    suite_conditions,
)
from lnn_nav.metrics import OUTCOMES
from lnn_nav.report import load_results, markdown_table
from lnn_nav.sim.scenes import generate_scene, shipped_families

TIME_LIMIT_S = 1.5  # short episodes: an untrained policy would otherwise fly to the 30 s limit


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lnn_nav.models.policy import NavPolicy, default_policy_config

    path = tmp_path_factory.mktemp("policy") / "policy.pt"
    NavPolicy(default_policy_config(seed=3)).save(path)
    return path


@pytest.fixture(scope="module")
def two_episode_run(policy_file: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("eval")
    cfg = EvalConfig(episodes=2, time_limit_s=TIME_LIMIT_S, video_episodes=1, progress=False)
    run, paths = evaluate(policy_file, [single_condition("forest", "unseen")], cfg, out)
    return run, paths, out


def test_two_episode_eval_writes_every_artifact(two_episode_run) -> None:
    run, paths, out = two_episode_run
    for key, name in (("results", "results.json"), ("table", "results.md"),
                      ("plot", "trajectories.png"), ("video", "episodes.mp4"), ("run_info", "run.json")):
        assert paths[key] == out / name
        assert paths[key].stat().st_size > 0, name
    # no temporaries left behind by the atomic writers
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    results = load_results(paths["results"])
    (cond,) = results["conditions"]
    m = cond["metrics"]
    assert m["episodes"] == 2 and [e["seed"] for e in cond["episodes"]] == [0, 1]
    assert sum(m["counts"].values()) == 2
    assert set(m["counts"]) == set(OUTCOMES)
    for k in ("success", "collision", "timeout"):
        assert 0.0 <= m[k]["low"] <= m[k]["value"] <= m[k]["high"] <= 1.0
    # the time limit was applied: no episode flew longer than it (plus one period)
    for e in cond["episodes"]:
        assert e["flight_time_s"] <= TIME_LIMIT_S + 1 / 30 + 1e-6
        assert e["termination"] in OUTCOMES
    # results.json is strict JSON (no NaN), and the table is built from it
    json.loads(paths["results"].read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    table = paths["table"].read_text()
    assert table == markdown_table(results)
    assert "| forest/unseen | fly | 2 |" in table

    img = cv2.imread(str(paths["plot"]))
    assert img is not None and img.ndim == 3 and min(img.shape[:2]) > 100

    # the video holds every frame of the recorded episode plus one second on its outcome
    ep = run.results[0].episodes[0]
    cap = cv2.VideoCapture(str(paths["video"]))
    assert cap.isOpened()
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if n == 0:
            assert frame.shape == (320, 640, 3)
        n += 1
    cap.release()
    assert n == len(ep.dt) + 30


def test_episode_keeps_the_final_state(two_episode_run) -> None:
    run, _, _ = two_episode_run
    for e in run.results[0].episodes:
        assert e.pos_w.shape == (len(e.dt) + 1, 3)
        assert e.target_pos_w.shape == (len(e.dt) + 1, 3)
        # the last command moved the drone: the final position is a new state
        assert not np.array_equal(e.pos_w[-1], e.pos_w[-2])
    # different scenes give different flights
    a, b = run.results[0].episodes
    assert a.trajectory_sha256() != b.trajectory_sha256()
    # only the requested episode kept its frames
    assert a.frames is not None and a.frames.shape[0] == len(a.dt) and b.frames is None


@pytest.mark.slow
def test_same_seeds_same_results_whatever_the_workers(
    policy_file: Path, two_episode_run, tmp_path: Path
) -> None:
    _, paths, _ = two_episode_run
    cfg = EvalConfig(episodes=2, time_limit_s=TIME_LIMIT_S, video_episodes=0, workers=2,
                     progress=False)
    _, paths2 = evaluate(policy_file, [single_condition("forest", "unseen")], cfg, tmp_path)
    assert paths2["results"].read_bytes() == paths["results"].read_bytes()
    assert "video" not in paths2


def test_same_seeds_same_results_in_process(policy_file: Path, tmp_path: Path) -> None:
    cond = [c for c in suite_conditions() if c.name == "drops-30%"]
    cfg = EvalConfig(episodes=1, first_seed=5, time_limit_s=1.0, video_episodes=0, progress=False)
    _, p1 = evaluate(policy_file, cond, cfg, tmp_path / "a")
    _, p2 = evaluate(policy_file, cond, cfg, tmp_path / "b")
    assert p1["results"].read_bytes() == p2["results"].read_bytes()
    (ep,) = load_results(p1["results"])["conditions"][0]["episodes"]
    assert ep["seed"] == 5


def test_controller_faults_are_counted_per_episode(tmp_path: Path) -> None:
    import torch

    from lnn_nav.models.policy import NavPolicy, default_policy_config

    policy = NavPolicy(default_policy_config())
    with torch.no_grad():
        for p in policy.head.parameters():
            p.fill_(float("nan"))
    path = policy.save(tmp_path / "nan.pt")
    cfg = EvalConfig(episodes=2, time_limit_s=0.5, video_episodes=0, progress=False)
    run, _ = evaluate(path, [single_condition("forest", "unseen")], cfg)
    for e in run.results[0].episodes:
        # the watchdog flies hover on a non-finite output: one fault per episode,
        # not a count that grows with the episodes a worker happened to fly before
        assert e.summary()["controller_faults"] == {"non_finite_output": 1}
        assert np.all(e.commands == 0.0)
        assert e.termination == "timeout"


def test_suite_image_stress_is_stronger_than_training_augmentation() -> None:
    aug = AugmentConfig()
    stressed = [c for c in suite_conditions() if c.group == "image_stress"]
    assert {c.name for c in stressed} == set(IMAGE_STRESS_LEVELS)
    for c in stressed:
        s = c.image_stress
        assert s is not None
        changed = 0
        for magnitude, limit in ((abs(s.brightness), aug.brightness),
                                 (abs(s.contrast - 1), aug.contrast),
                                 (abs(s.saturation - 1), aug.saturation),
                                 (s.noise_std / 255.0, aug.noise_std)):
            if magnitude > 0:
                changed += 1
                assert magnitude > limit, c.name
        assert changed >= 1
    # several strengths of the combined stress, ordered mild -> strong on every factor
    mild, medium, strong = (IMAGE_STRESS_LEVELS[k] for k in ("stress-mild", "stress-medium", "stress-strong"))
    assert abs(mild.brightness) < abs(medium.brightness) < abs(strong.brightness)
    assert mild.noise_std < medium.noise_std < strong.noise_std
    assert mild.contrast > medium.contrast > strong.contrast


def test_weak_stress_is_refused() -> None:
    with pytest.raises(ValueError, match="brightness.*within the training augmentation"):
        ImageStress(brightness=0.1).check_stronger_than(AugmentConfig())
    with pytest.raises(ValueError, match="noise_std"):
        ImageStress(noise_std=4.0).check_stronger_than(AugmentConfig())
    # a suite built against a stronger training augmentation is refused, not silently weak
    with pytest.raises(ValueError, match="stronger than training"):
        suite_conditions(augment=AugmentConfig(brightness=0.5))
    with pytest.raises(ValueError, match="changes nothing"):
        ImageStress()


def test_suite_covers_families_rates_drops_and_follow() -> None:
    conds = suite_conditions("forest", "unseen")
    names = [c.name for c in conds]
    assert len(names) == len(set(names))
    assert conds[0].name == "forest/unseen" and conds[0].group == "in_distribution"
    assert {c.family for c in conds if c.group in ("in_distribution", "ood_family")} == set(shipped_families())
    assert sorted(c.control_hz for c in conds if c.group == "control_rate") == sorted(CONTROL_RATES_HZ)
    assert sorted(c.frame_drop_prob for c in conds if c.group == "frame_drops") == sorted(FRAME_DROP_PROBS)
    assert [c.task for c in conds if c.group == "follow"] == ["follow"]
    for c in conds:
        if c.baseline is not None:
            assert c.baseline in names and c.split == "unseen"
        assert Condition.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_changed_conditions_fly_the_baseline_scenes() -> None:
    conds = {c.name: c for c in suite_conditions()}
    base = generate_scene(conds["forest/unseen"].family_spec(), "unseen", 4)
    for name in ("stress-mild", "drops-30%"):
        sc = generate_scene(conds[name].family_spec(), "unseen", 4)
        for key in ("cylinders", "spheres", "boxes", "start_pos_w", "target_pos_w", "ground_rgb"):
            np.testing.assert_array_equal(getattr(sc, key), getattr(base, key), err_msg=f"{name} {key}")
    mild = IMAGE_STRESS_LEVELS["stress-mild"]
    sc = generate_scene(conds["stress-mild"].family_spec(), "unseen", 4)
    assert (sc.brightness, sc.contrast, sc.saturation, sc.pixel_noise_std) == (
        mild.brightness, mild.contrast, mild.saturation, mild.noise_std)
    assert generate_scene(conds["drops-30%"].family_spec(), "unseen", 4).frame_drop_prob == 0.3


def test_condition_environments_apply_the_change() -> None:
    conds = {c.name: c for c in suite_conditions()}
    env = conds["rate-15Hz"].make_env(time_limit_s=1.0)
    try:
        obs, _ = env.reset(seed=0, options={"scene_index": 0})
        assert math.isclose(float(obs["dt"][0]), 1 / 15, rel_tol=1e-6)
    finally:
        env.close()
    env = conds["drops-30%"].make_env(time_limit_s=3.0)
    try:
        env.reset(seed=1, options={"scene_index": 1})
        dts = []
        for _ in range(40):
            obs, _, term, trunc, _ = env.step(np.zeros(4, np.float32))
            dts.append(float(obs["dt"][0]))
            if term or trunc:
                break
        periods = np.round(np.array(dts) * 30).astype(int)
        # lost frames lengthen dt by whole periods, never beyond 1 + max_consecutive_drops
        assert periods.max() > 1 and periods.min() >= 1 and periods.max() <= 4
    finally:
        env.close()
    plain, dark = conds["forest/unseen"].make_env(1.0), conds["stress-darker"].make_env(1.0)
    try:
        a = plain.reset(seed=2, options={"scene_index": 2})[0]["image"].astype(float)
        b = dark.reset(seed=2, options={"scene_index": 2})[0]["image"].astype(float)
        assert b.mean() < a.mean() - 0.2 * 255 * 0.9
    finally:
        plain.close()
        dark.close()


def test_bad_arguments_raise_clear_errors(policy_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="family='no-such-family'"):
        single_condition("no-such-family", "unseen")
    with pytest.raises(ValueError, match="split='nope'"):
        Condition(name="x", split="nope")
    with pytest.raises(ValueError, match=r"EvalConfig.episodes=0"):
        EvalConfig(episodes=0)
    with pytest.raises(ValueError, match=r"EvalConfig.episodes=-3"):
        EvalConfig(episodes=-3)
    with pytest.raises(ValueError, match=r"EvalConfig.workers=0"):
        EvalConfig(workers=0)
    with pytest.raises(ValueError, match=r"control_hz=7"):
        Condition(name="x", control_hz=7)
    with pytest.raises(ValueError, match=r"task='hover'"):
        Condition(name="x", task="hover")
    with pytest.raises(ValueError, match="more than once"):
        evaluate(policy_file, [single_condition("forest", "unseen")] * 2, EvalConfig(episodes=1))
    with pytest.raises(ValueError, match="own baseline"):
        Condition(name="x", baseline="x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(tmp_path / "none.pt", [single_condition("forest", "unseen")], EvalConfig(episodes=1))
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="format='something-else'"):
        load_results(bad)


def test_cli_eval_and_demo(policy_file: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    from lnn_nav.cli import evaluate as cli_eval
    from lnn_nav.cli import main

    rc = main(["eval", "--policy", str(policy_file), "--episodes", "1", "--time-limit", "0.5",
               "--workers", "1", "--video-episodes", "0", "--out", str(tmp_path / "e"), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "| forest/unseen | fly | 1 |" in text and str(tmp_path / "e" / "trajectories.png") in text
    assert (tmp_path / "e" / "results.json").is_file()

    assert main(["eval", "--policy", str(policy_file), "--episodes", "0", "--quiet"]) == 2
    assert "EvalConfig.episodes=0" in capsys.readouterr().err
    assert main(["eval", "--policy", str(policy_file), "--family", "mars", "--quiet"]) == 2
    assert "family='mars'" in capsys.readouterr().err

    monkeypatch.setattr(cli_eval, "SHIPPED_POLICY", tmp_path / "policies" / "missing.pt")
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "shipped policy" in err and "missing" in err and "--policy" in err
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------ head comparison
def _results(rows: list[tuple[str, str, int, int]]) -> dict:
    """A results.json-shaped dict: (condition name, group, successes, episodes) per row."""
    return {
        "config": {"episodes": rows[0][3], "first_seed": 0, "time_limit_s": None},
        "conditions": [
            {"condition": {"name": name, "group": group},
             "metrics": {"episodes": n, "counts": {"success": wins}}}
            for name, group, wins, n in rows
        ],
    }


def test_head_comparison_pools_seeds_and_computes_the_headline(tmp_path: Path) -> None:
    from lnn_nav.metrics import difference_interval, wilson_interval
    from lnn_nav.report import (
        comparison_markdown,
        head_comparison,
        head_difference,
        plot_comparison,
    )

    def run(in_dist: int, autumn: int, dense: int) -> dict:
        return _results([("forest/unseen", "in_distribution", in_dist, 10),
                         ("forest-autumn/unseen", "ood_family", autumn, 10),
                         ("forest-dense/unseen", "ood_family", dense, 10)])

    comp = head_comparison({"ltc": [run(9, 8, 6), run(10, 7, 7)], "lstm": [run(10, 3, 2), run(9, 5, 2)]})
    ltc = comp["heads"]["ltc"]["groups"]["ood_family"]
    assert (ltc["successes"], ltc["episodes"]) == (28, 40)
    assert ltc["per_seed"] == [0.7, 0.7]
    d = head_difference(comp, "ltc", "lstm", "ood_family")
    expected = difference_interval(wilson_interval(28, 40), wilson_interval(12, 40))
    assert d == expected and math.isclose(d.value, 0.4)
    text = comparison_markdown(comp)
    assert text.startswith("LTC-NCP minus LSTM on out-of-distribution families: +40.0 points [")
    assert "| LTC-NCP | 2 |" in text and "| forest-dense/unseen |" in text
    # a head that was never evaluated gives no headline, not a made-up number
    assert head_difference(head_comparison({"ltc": [run(9, 8, 6)]})) is None
    png = plot_comparison(comp, tmp_path / "cmp.png")
    assert cv2.imread(str(png)) is not None
    with pytest.raises(ValueError, match="expected the same conditions"):
        head_comparison({"ltc": [run(9, 8, 6)],
                         "lstm": [_results([("forest/unseen", "in_distribution", 5, 10)])]})


def test_compare_heads_script_arguments(tmp_path: Path, capsys) -> None:
    mod = load_script("compare_heads")
    assert mod.main(["--heads", "ltc,transformer", "--out", str(tmp_path)]) == 2
    assert "transformer" in capsys.readouterr().err
    assert mod.main(["--seeds", "0,x", "--out", str(tmp_path)]) == 2
    assert mod.main(["--conditions", "forest/unseen,nowhere", "--out", str(tmp_path)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert mod.main(["--report-only", "--out", str(tmp_path)]) == 0
    assert "no finished evaluations" in capsys.readouterr().out


def test_an_episode_does_not_depend_on_the_scenes_flown_before() -> None:
    """Scene 30 of forest/unseen, flown by the shipped policy, once in a fresh
    environment and once after scene 23: the same trajectory, bit for bit. With
    bodies pooled across scenes the draw order depended on scene 23, a frame
    differed at step 283 and the episode ended in a collision instead of a timeout."""
    import hashlib

    from lnn_nav.models.policy import NavPolicy
    from lnn_nav.rollout import SimTimeController, expert_for_env, make_env, run_episode

    policy = NavPolicy.load(Path(__file__).parents[1] / "policies" / "ltc-ncp-forest" / "policy.pt")
    outcomes = []
    for order in ([30], [23, 30]):
        env = make_env("fly", "forest", "unseen")
        try:
            expert, learner = expert_for_env(env), SimTimeController(policy)
            for seed in order:
                ep = run_episode(env, seed, expert, learner=learner, beta=0.0)
        finally:
            env.close()
        outcomes.append((ep.termination, len(ep),
                         hashlib.sha256(np.ascontiguousarray(ep.pos_w).tobytes()).hexdigest()))
    assert outcomes[0] == outcomes[1]


def test_a_policy_is_flown_behind_the_camera_it_was_trained_behind(tmp_path: Path) -> None:
    from lnn_nav.models.encoder import EncoderConfig
    from lnn_nav.models.policy import NavPolicy, default_policy_config

    enc = EncoderConfig(image_size=(32, 48), vfov_rad=0.9, keypoints=8)
    path = NavPolicy(default_policy_config(0, encoder=enc)).save(tmp_path / "wide.pt")
    cfg = EvalConfig(episodes=1, time_limit_s=0.5, video_episodes=1, progress=False)
    run, _ = evaluate(path, [single_condition("forest", "unseen")], cfg, tmp_path / "out")
    (result,) = run.results
    assert len(result.episodes) == 1 and result.episodes[0].frames.shape[1:] == (32, 48, 3)
