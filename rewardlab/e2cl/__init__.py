"""E2CL for reward design: exploration-based error correction of generated rewards.

After E2CL (Exploration-based Error Correction Learning, EMNLP Findings 2024), with the
reward-design loop as the agent whose errors are explored (``rewardlab refine run=<dir>
feedback=auto``):

* :mod:`rewardlab.e2cl.explore` - teacher-free (the learner, perturbed; random actions) and
  teacher-guided exploration (expert demonstrations, and the learner taking over from the
  expert's states), recording rewards, components, program errors, success, progress, probes;
* :mod:`rewardlab.e2cl.detect` - error detectors, each a typed finding with evidence;
* :mod:`rewardlab.e2cl.findings` - the :class:`~rewardlab.e2cl.findings.Finding` type;
* :mod:`rewardlab.e2cl.feedback` - findings as feedback lines (and an LLM summary);
* :mod:`rewardlab.e2cl.memory` - (finding, feedback, correction, outcome) records across runs;
* :mod:`rewardlab.e2cl.loop` - rounds of explore, feed back, correct, verify.
"""
