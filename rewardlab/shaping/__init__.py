"""Reward design on tabular MDPs: the thesis's three designers, faithfully.

- :mod:`~rewardlab.shaping.tabular_envs`: ROOM, LINEK, CHAIN with their model exposed and
  registered as gymnasium envs (``rewardlab/Room-v0``, ``rewardlab/LineK-v0``,
  ``rewardlab/Chain-v0``).
- :mod:`~rewardlab.shaping.mdp`: exact values, optimal policies, occupancies, PBRS.
- :mod:`~rewardlab.shaping.exprd`: EXPRD, the explicable reward-design LP (invariance margin,
  bounds, sparsity set, h-step informativeness) and its greedy budget-B state selection.
- :mod:`~rewardlab.shaping.expadard`: ExpAdaRD, the learner-aware LP re-solved from the
  learner's current policy.
- :mod:`~rewardlab.shaping.explors`: ExploRS, count bonus plus an intrinsic reward updated
  online from the extrinsic return.
- :mod:`~rewardlab.shaping.learners`: tabular Q-learning and REINFORCE.
- :mod:`~rewardlab.shaping.baselines`: original reward, PBRS with ``V*``, invariance-only.

Example:
    >>> from rewardlab.shaping import design_problem, greedy_exprd, room_mdp
    >>> result = greedy_exprd(design_problem(room_mdp()), budget=1)
    >>> len(result.support)                         # the goal plus one chosen state
    2
"""

from rewardlab.shaping.baselines import invariance_only, original_reward, pbrs_optimal
from rewardlab.shaping.expadard import (
    AdaptiveTeacher,
    ReinforceConfig,
    adaptive_design,
    adaptive_teacher,
    learner_aware_coefficients,
    learner_aware_informativeness,
    room_region_features,
    train_reinforce_with_teacher,
)
from rewardlab.shaping.explors import (
    ExploRSConfig,
    ExploRSResult,
    critic_update,
    exploration_bonus,
    intrinsic_update,
    train_explors,
)
from rewardlab.shaping.exprd import (
    Design,
    DesignProblem,
    GreedyResult,
    design_problem,
    goal_states,
    greedy_exprd,
    informativeness,
    solve_exprd,
    solve_linear_design,
)
from rewardlab.shaping.learners import (
    Curve,
    Episode,
    discounted_returns,
    fast_model,
    q_update,
    reinforce_gradient,
    reinforce_update,
    run_q_learning,
    softmax,
)
from rewardlab.shaping.mdp import (
    TabularMDP,
    expected_return,
    line_mdp,
    optimal_action_mask,
    optimal_policy,
    optimal_values,
    policy_values,
    potential_shaping,
    state_occupancy,
)
from rewardlab.shaping.tabular_envs import (
    ENV_IDS,
    ChainEnv,
    LineKEnv,
    RoomEnv,
    chain_mdp,
    linek_mdp,
    register_envs,
    room_mdp,
)

__all__ = [
    "ENV_IDS",
    "AdaptiveTeacher",
    "ChainEnv",
    "Curve",
    "Design",
    "DesignProblem",
    "Episode",
    "ExploRSConfig",
    "ExploRSResult",
    "GreedyResult",
    "LineKEnv",
    "ReinforceConfig",
    "RoomEnv",
    "TabularMDP",
    "adaptive_design",
    "adaptive_teacher",
    "chain_mdp",
    "critic_update",
    "design_problem",
    "discounted_returns",
    "expected_return",
    "exploration_bonus",
    "fast_model",
    "goal_states",
    "greedy_exprd",
    "informativeness",
    "intrinsic_update",
    "invariance_only",
    "learner_aware_coefficients",
    "learner_aware_informativeness",
    "line_mdp",
    "linek_mdp",
    "optimal_action_mask",
    "optimal_policy",
    "optimal_values",
    "original_reward",
    "pbrs_optimal",
    "policy_values",
    "potential_shaping",
    "q_update",
    "register_envs",
    "reinforce_gradient",
    "reinforce_update",
    "room_mdp",
    "room_region_features",
    "run_q_learning",
    "softmax",
    "solve_exprd",
    "solve_linear_design",
    "state_occupancy",
    "train_explors",
    "train_reinforce_with_teacher",
]
