"""rewardlab: design dense rewards for reinforcement-learning agents from plain language.

Public entry points: :func:`rewardlab.tasks.get_task`, :class:`rewardlab.reward.RewardProgram`,
:func:`rewardlab.wrappers.make_env`, :func:`rewardlab.reward.check.check_program`,
:func:`rewardlab.generators.loop.generate_reward`, :func:`rewardlab.training.train`, and the
``rewardlab`` command (:mod:`rewardlab.cli`).
"""

__version__ = "0.1.0"
