"""Eureka-style candidate search over reward programs, made cheaper.

``rewardlab search task=... search.candidates=K search.iterations=N`` samples K programs per
iteration, gates them (:mod:`rewardlab.gate`), trains the survivors with successive
halving on the task's own success metric (:mod:`rewardlab.search.halving`), keeps the best,
and writes the next prompt from *reward reflection* (:mod:`rewardlab.search.reflection`).
Trainings fan out through a Hydra launcher (:mod:`rewardlab.search.launch`: inline, joblib,
or submitit for SLURM). Results are summarised with IQM and stratified bootstrap confidence
intervals and the normalized score (:mod:`rewardlab.stats`); runs whose generated
return rises while success stays flat raise a reward-hacking alarm
(:mod:`rewardlab.search.alarm`). The loop itself is :mod:`rewardlab.search.runner`.
"""
