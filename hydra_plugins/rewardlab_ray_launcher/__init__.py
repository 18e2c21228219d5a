"""rewardlab's Hydra launcher for Ray (``hydra/launcher=rewardlab_ray``): see
:mod:`hydra_plugins.rewardlab_ray_launcher.ray_launcher`."""
