"""The onboard camera: matrices, image geometry, the drone kept out of its own view."""

import math

import numpy as np
import pybullet as p
import pytest

from lnn_nav.sim.camera import Camera, CameraConfig, Lighting, camera_pose, render, view_matrix
from lnn_nav.sim.quadsim import QuadSim, QuadSimConfig

RED = [1.0, 0.0, 0.0, 1.0]


def add_box(client, half_extents, pos, rgba=RED):
    vis = p.createVisualShape(
        p.GEOM_BOX, halfExtents=list(half_extents), rgbaColor=rgba, physicsClientId=client
    )
    return p.createMultiBody(0.0, -1, vis, list(pos), physicsClientId=client)


def red_mask(img):
    return (img[:, :, 0] > 150) & (img[:, :, 1] < 80) & (img[:, :, 2] < 80)


def rpy_matrix(roll, pitch, yaw):
    return np.array(
        p.getMatrixFromQuaternion(p.getQuaternionFromEuler([roll, pitch, yaw]))
    ).reshape(3, 3)


def test_matrices_match_pybullet_helpers():
    cfg = CameraConfig(width=96, height=48, vfov_rad=math.radians(50.0), near_m=0.05, far_m=40.0)
    ref = p.computeProjectionMatrixFOV(50.0, 2.0, 0.05, 40.0)
    np.testing.assert_allclose(cfg.projection_matrix(), ref, rtol=1e-6)
    # level camera: our view matrix equals a look-at along the heading
    eye, R_wc = camera_pose(cfg, np.array([1.0, 2.0, 3.0]), rpy_matrix(0, 0, 0.7))
    target = eye + np.array([math.cos(0.7), math.sin(0.7), 0.0])
    ref = p.computeViewMatrix(eye.tolist(), target.tolist(), [0, 0, 1])
    np.testing.assert_allclose(view_matrix(eye, R_wc), ref, atol=1e-6)
    np.testing.assert_allclose(eye, [1 + 0.07 * math.cos(0.7), 2 + 0.07 * math.sin(0.7), 3.0])


def test_tilt_and_mounting():
    cfg = CameraConfig(tilt_up_rad=-0.3, offset_body_m=(0.1, 0.0, 0.02))
    eye, R_wc = camera_pose(cfg, np.zeros(3), np.eye(3))
    np.testing.assert_allclose(
        R_wc[:, 0], [math.cos(0.3), 0, -math.sin(0.3)], atol=1e-12
    )  # looks down
    np.testing.assert_allclose(eye, [0.1, 0.0, 0.02])
    assert np.allclose(R_wc.T @ R_wc, np.eye(3))


@pytest.mark.parametrize("size", [(64, 64), (96, 48), (40, 80)])
def test_image_shape_dtype_and_orientation(size):
    w, h = size
    with QuadSim(QuadSimConfig(camera=CameraConfig(width=w, height=h))) as sim:
        sim.reset((0.0, 0.0, 1.0), 0.0)
        img = sim.render()
        assert img.shape == (h, w, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
        # level camera at 1 m: sky (white background) above, ground below
        assert (img[0] == 255).all()
        ground = np.array(sim.config.ground_rgba[:3]) * 255
        assert np.abs(img[-1].astype(float) - ground).max(axis=-1).mean() < 60


def test_aspect_ratio_and_focal_length():
    """A 1 m square face-on at a known distance: square in pixels, pinhole-sized."""
    cfg = CameraConfig(width=128, height=48, vfov_rad=math.radians(50.0))
    with QuadSim(QuadSimConfig(camera=cfg, drone_visual=False)) as sim:
        dist = 4.0
        add_box(sim.client, (0.05, 0.5, 0.5), (0.07 + dist + 0.05, 0.0, 2.0))
        # a second square off to the left must appear in the left half
        add_box(sim.client, (0.05, 0.2, 0.2), (0.07 + dist + 0.05, 2.2, 2.0))
        sim.reset((0.0, 0.0, 2.0), 0.0)
        mask = red_mask(sim.render())
        centre = mask[:, 40:88]
        ys, xs = np.nonzero(centre)
        width_px, height_px = np.ptp(xs) + 1, np.ptp(ys) + 1
        expected = cfg.focal_px * 1.0 / dist
        assert width_px == pytest.approx(expected, abs=1.5)
        assert height_px == pytest.approx(expected, abs=1.5)
        assert abs(width_px - height_px) <= 1
        # left object: image x of a point at lateral offset y is cx - f y / d
        ys, xs = np.nonzero(mask[:, :40])
        assert xs.mean() == pytest.approx(64 - cfg.focal_px * 2.2 / dist - 0.5, abs=1.5)
        assert not mask[:, 88:].any()


def test_camera_follows_heading_and_attitude():
    with QuadSim(QuadSimConfig(drone_visual=False)) as sim:
        add_box(sim.client, (0.3, 0.3, 0.3), (0.0, 4.0, 1.0))  # north of the drone
        sim.reset((0.0, 0.0, 1.0), 0.0)
        assert not red_mask(sim.render()).any()  # facing east: out of view
        sim.reset((0.0, 0.0, 1.0), math.pi / 2)
        mask = red_mask(sim.render())
        ys, xs = np.nonzero(mask)
        assert abs(xs.mean() - 31.5) < 1 and abs(ys.mean() - 31.5) < 1
        # pitched nose-down (positive pitch in FLU), the box moves up the image
        cam = sim.camera
        R = rpy_matrix(0.0, 0.3, math.pi / 2)
        ys2, _ = np.nonzero(red_mask(cam.render(sim.client, np.array([0.0, 0.0, 1.0]), R)))
        assert ys2.mean() < ys.mean() - 5


@pytest.mark.parametrize("tilt", [0.0, -0.6, 0.5])
def test_own_body_never_in_view(tilt):
    """Rendering with the drone's visual body present equals rendering without it."""
    cam = CameraConfig(tilt_up_rad=tilt, width=80, height=60)
    poses = [
        ((0.0, 0.0, 1.0), (0.0, 0.0, 0.0)),
        ((0.5, -0.5, 0.3), (0.4, -0.5, 1.0)),
        ((0.0, 0.0, 2.0), (-0.6, 0.6, -2.0)),
    ]
    images = {}
    for visual in (True, False):
        with QuadSim(QuadSimConfig(camera=cam, drone_visual=visual)) as sim:
            add_box(sim.client, (0.2, 0.2, 1.0), (3.0, 0.5, 1.0))
            imgs = []
            for pos, rpy in poses:
                p.resetBasePositionAndOrientation(
                    sim.quad.body_id, pos, p.getQuaternionFromEuler(rpy), physicsClientId=sim.client
                )
                imgs.append(sim.render())
            images[visual] = imgs
    for with_body, without in zip(images[True], images[False], strict=True):
        np.testing.assert_array_equal(with_body, without)


def test_body_would_be_visible_from_behind():
    """The check above has teeth: a camera behind and above the drone sees it,
    and QuadSim refuses such a mounting for its onboard camera."""
    cam = CameraConfig(offset_body_m=(-0.2, 0.0, 0.08), tilt_up_rad=-0.4)
    imgs = []
    for visual in (True, False):
        with QuadSim(QuadSimConfig(drone_visual=visual)) as sim:
            sim.reset((0.0, 0.0, 1.0), 0.0)
            st = sim.state
            imgs.append(Camera(cam).render(sim.client, st.pos_w, st.R_wb))
    assert (imgs[0] != imgs[1]).any(axis=-1).sum() > 50
    with pytest.raises(ValueError, match="in its own view"):
        QuadSimConfig(camera=cam)
    with pytest.raises(ValueError, match="in its own view"):
        QuadSimConfig(camera=CameraConfig(offset_body_m=(0.05, 0.0, 0.0)))
    QuadSimConfig(camera=cam, drone_visual=False)  # no body to see: allowed


def test_render_is_deterministic():
    outs = []
    for _ in range(2):
        with QuadSim() as sim:
            add_box(sim.client, (0.2, 0.2, 1.0), (3.0, 0.3, 1.0), rgba=[0.2, 0.6, 0.9, 1])
            sim.reset((0.0, 0.0, 1.2), 0.1)
            frames = []
            for _ in range(10):
                sim.step(sim.controller.command._replace(forward=1.0, yaw_rate=0.3))
                frames.append(sim.render())
            frames.append(sim.render())  # same pose twice
            outs.append(np.stack(frames))
    assert outs[0].tobytes() == outs[1].tobytes()
    np.testing.assert_array_equal(outs[0][-1], outs[0][-2])


def test_background_and_lighting():
    with QuadSim(QuadSimConfig(drone_visual=False)) as sim:
        sim.reset((0.0, 0.0, 1.0), 0.0)
        plain = sim.render()
        sim.background_rgb = (90, 140, 220)
        sky = sim.render()
        assert (sky[0] == (90, 140, 220)).all()
        np.testing.assert_array_equal(sky[-10:], plain[-10:])  # ground untouched
        sim.lighting = Lighting(color_rgb=(1.0, 0.3, 0.3))
        reddish = sim.render()
        g = reddish[-10:].astype(int)
        assert (g[..., 0] - g[..., 1]).mean() > (
            plain[-10:, :, 0].astype(int) - plain[-10:, :, 1]
        ).mean()


def test_function_and_class_agree():
    with QuadSim(QuadSimConfig(drone_visual=False)) as sim:
        add_box(sim.client, (0.2, 0.2, 1.0), (2.0, 0.0, 1.0))
        cfg = CameraConfig(width=48, height=32)
        R = rpy_matrix(0.1, -0.1, 0.2)
        pos = np.array([0.0, 0.0, 1.0])
        np.testing.assert_array_equal(
            render(sim.client, cfg, pos, R), Camera(cfg).render(sim.client, pos, R)
        )


def test_supersampled_pixel_is_the_mean_of_its_samples():
    """supersample=s equals the s x s block means of the same view rendered at s times the size."""
    with QuadSim(QuadSimConfig(drone_visual=False)) as sim:
        add_box(sim.client, (0.2, 0.2, 1.0), (3.0, 0.4, 1.0))
        add_box(sim.client, (0.1, 0.5, 0.3), (5.0, -1.0, 1.5), rgba=[0.2, 0.6, 0.9, 1])
        pos, R = np.array([0.0, 0.0, 1.2]), rpy_matrix(0.05, -0.1, 0.1)
        for s in (2, 3):
            fine = render(sim.client, CameraConfig(width=48 * s, height=32 * s), pos, R,
                          background_rgb=(90, 140, 220))
            coarse = render(sim.client, CameraConfig(width=48, height=32, supersample=s), pos, R,
                            background_rgb=(90, 140, 220))
            assert coarse.shape == (32, 48, 3) and coarse.dtype == np.uint8
            means = fine.reshape(32, s, 48, s, 3).astype(float).mean(axis=(1, 3))
            np.testing.assert_array_equal(coarse, np.floor(means + 0.5).astype(np.uint8))


def test_supersampling_keeps_a_subpixel_target_in_every_frame():
    """A red box 10 m ahead, 0.73 px square, drifting sideways by +-0.44 px: one sample
    per pixel misses it in some frames; 3 x 3 samples catch some of it in every frame,
    and about as much each time."""
    f = CameraConfig().focal_px
    half = 0.363 / f * 10.0
    with QuadSim(QuadSimConfig(drone_visual=False)) as sim:
        # a quarter pixel above the optical axis, so that one row of samples crosses it
        add_box(sim.client, (0.01, half, half), (10.07, 0.0, 1.0 + 0.25 / f * 10.07))
        R = rpy_matrix(0.0, 0.0, 0.0)
        redness = {1: [], 3: []}
        for y in np.linspace(-0.08, 0.08, 12):
            pos = np.array([0.0, y, 1.0])
            for s in redness:
                img = render(sim.client, CameraConfig(supersample=s), pos, R).astype(int)
                redness[s].append(int((img[..., 0] - img[..., 1]).clip(min=0).sum()))
        assert min(redness[1]) == 0 < max(redness[1])
        assert min(redness[3]) > 0
        assert max(redness[3]) < 2 * min(redness[3])


def test_config_round_trip_and_validation():
    cfg = CameraConfig(
        width=96, height=48, vfov_rad=0.8, tilt_up_rad=-0.2, offset_body_m=(0.08, 0.0, 0.01)
    )
    assert CameraConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.hfov_rad == pytest.approx(2 * math.atan(2 * math.tan(0.4)))
    light = Lighting(direction_w=(0.0, 1.0, 1.0), ambient=0.4)
    assert Lighting.from_dict(light.to_dict()) == light
    with pytest.raises(ValueError, match="width=0"):
        CameraConfig(width=0)
    with pytest.raises(ValueError, match="vfov_rad"):
        CameraConfig(vfov_rad=60.0)  # degrees by mistake
    with pytest.raises(ValueError, match="far_m"):
        CameraConfig(near_m=1.0, far_m=0.5)
    with pytest.raises(ValueError, match="offset_body_m"):
        CameraConfig(offset_body_m=(0.1, 0.0))
    for bad in (0, 9, 1.5, True):
        with pytest.raises(ValueError, match=f"supersample={bad!r}: expected an integer in"):
            CameraConfig(supersample=bad)
    with pytest.raises(ValueError, match="unknown CameraConfig keys"):
        CameraConfig.from_dict({"fov_deg": 60})
    with pytest.raises(ValueError, match="color_rgb"):
        Lighting(color_rgb=(2.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="direction_w"):
        Lighting(direction_w=(0.0, 0.0, 0.0))


def test_light_direction_points_towards_the_light():
    """`Lighting.direction_w` points from the scene to the light: the ground
    (normal +z) is bright under a light overhead and dark under one below."""
    with QuadSim(QuadSimConfig(drone_visual=False)) as sim:
        sim.reset((0.0, 0.0, 1.0), 0.0)
        means = []
        for d in ((0.0, 0.0, 1.0), (0.0, 0.0, -1.0)):
            sim.lighting = Lighting(direction_w=d, ambient=0.3, diffuse=0.7, specular=0.0)
            means.append(sim.render()[-8:].mean())
        assert means[0] > 2 * means[1]
