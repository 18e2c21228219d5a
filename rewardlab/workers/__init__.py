"""Generated reward code, run only in confined worker processes.

Every execution of a reward program outside tests goes through here: the trusted process
sends actions and reads plain numbers back; the program runs in a worker that built its
simulator first and then put up the OS wall (:mod:`rewardlab.reward.confine`).

* :class:`ConfinedVecEnv` -- training on gymnasium environments (the copies shared out over
  workers that step them in parallel);
* :class:`ConfinedCoreVecEnv` -- training on the batched rollout core (built in one worker);
* :func:`program_env` / :class:`ConfinedReward` -- evaluation, exploration, demonstrations: a
  trusted environment here, the program's reward from a worker's replaying copy.

See :mod:`rewardlab.workers.confined` (parent side, watchdog; import from there),
:mod:`rewardlab.workers.worker` (inside a worker) and :mod:`rewardlab.workers.zygote` (the fork
server). This package module imports nothing, so that the fork server starts light.
"""
