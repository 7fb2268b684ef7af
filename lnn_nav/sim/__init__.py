"""Simulation: PyBullet quadrotor, flight controller, camera, scene families and
the gymnasium environments, registered on import as `lnn_nav/FlyToTarget-v0`
and `lnn_nav/FollowTarget-v0` (see `lnn_nav.sim.envs`)."""


def _register_envs() -> None:
    # String entry points: registering costs nothing; PyBullet loads on `make`.
    import gymnasium

    for env_id, entry in (("lnn_nav/FlyToTarget-v0", "lnn_nav.sim.envs:FlyToTargetEnv"),
                          ("lnn_nav/FollowTarget-v0", "lnn_nav.sim.envs:FollowTargetEnv")):
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry)


_register_envs()
