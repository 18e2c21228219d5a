"""Tests for rewardlab.shaping: tabular envs, exact MDP tools, EXPRD/ExpAdaRD LPs, ExploRS and
the learners' update rules (tiny MDPs with hand-computed answers)."""

from __future__ import annotations

import random

import gymnasium as gym
import numpy as np
import pytest

from rewardlab.shaping import (
    ENV_IDS,
    Episode,
    ExploRSConfig,
    ReinforceConfig,
    TabularMDP,
    adaptive_design,
    adaptive_teacher,
    chain_mdp,
    critic_update,
    design_problem,
    discounted_returns,
    expected_return,
    exploration_bonus,
    fast_model,
    goal_states,
    greedy_exprd,
    informativeness,
    intrinsic_update,
    invariance_only,
    learner_aware_coefficients,
    learner_aware_informativeness,
    line_mdp,
    linek_mdp,
    optimal_action_mask,
    optimal_values,
    pbrs_optimal,
    policy_values,
    q_update,
    reinforce_gradient,
    reinforce_update,
    room_mdp,
    room_region_features,
    run_q_learning,
    softmax,
    solve_exprd,
    state_occupancy,
    train_explors,
    train_reinforce_with_teacher,
)
from rewardlab.shaping.exprd import MARGIN_SLACK, DesignProblem
from rewardlab.shaping.tabular_envs import ROOM_SIZE, room_blocked

GAMMA = 0.9


@pytest.fixture(scope="module")
def room() -> TabularMDP:
    return room_mdp()


@pytest.fixture(scope="module")
def room_problem(room: TabularMDP) -> DesignProblem:
    return design_problem(room)


def assert_invariance(problem: DesignProblem, reward: np.ndarray) -> None:
    """The designed reward keeps the teacher's optimal set and margins (checked through an
    independent policy evaluation, not through the LP's matrices)."""
    mdp = problem.mdp
    Q, _ = policy_values(mdp, problem.policy, reward)
    S = mdp.n_states
    q_pi = Q[np.arange(S), problem.policy][:, None]
    gaps = q_pi - Q
    sub = problem.suboptimal
    need = problem.delta[:, None] * (1 - 2 * MARGIN_SLACK) - 1e-7
    assert np.all(gaps[sub] >= np.broadcast_to(need, sub.shape)[sub])
    assert np.all(np.abs(gaps[~sub]) <= 1e-7)
    # the optimal policies under the designed reward are exactly the teacher's
    Q_star, _ = optimal_values(mdp, reward)
    assert np.array_equal(optimal_action_mask(Q_star), problem.optimal)


# ----------------------------------------------------------------------------- MDP tools


def test_line_values_by_hand() -> None:
    mdp = line_mdp(GAMMA)
    Q, V = optimal_values(mdp)
    assert np.allclose(V, [0.81, 0.9, 1.0, 0.0])
    assert np.allclose(Q[0], [0.729, 0.81]) and np.allclose(Q[1], [0.81, 0.9])
    _, V2 = policy_values(mdp, np.array([1, 1, 0, 0]), horizon=2)
    assert np.allclose(V2, [0.0, 0.9, 1.0, 0.0])
    mu = state_occupancy(mdp, np.array([1, 1, 0, 0]))
    assert np.allclose(mu, np.array([1, 0.9, 0.81, 0]) / 2.71)


def test_pbrs_pays_the_optimal_advantage(room: TabularMDP) -> None:
    Q, V = optimal_values(room)
    R = pbrs_optimal(room)
    nt = room.nonterminal()
    assert np.allclose(R[nt], (Q - V[:, None])[nt])
    assert np.array_equal(optimal_action_mask(optimal_values(room, R)[0]), optimal_action_mask(Q))


# ----------------------------------------------------------------------------- envs


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_env_model_matches_step(env_id: str) -> None:
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    base = env.unwrapped
    mdp: TabularMDP = base.mdp  # type: ignore[attr-defined]
    S, A = mdp.n_states, mdp.n_actions
    assert base.P.shape == (S, A, S) and base.R.shape == (S, A)  # type: ignore[attr-defined]
    assert np.allclose(mdp.P.sum(axis=2), 1.0)
    assert mdp.start[int(obs)] > 0
    assert env.spec is not None and env.spec.max_episode_steps == mdp.horizon
    for t in mdp.terminal:
        assert np.all(mdp.P[t, :, t] == 1.0) and np.all(mdp.R[t] == 0.0)
    rng = np.random.default_rng(1)
    n = 300
    states = mdp.nonterminal()
    if len(states) > 30:
        states = rng.choice(states, size=30, replace=False)
    for s in states:
        for a in range(A):
            counts = np.zeros(S)
            for _ in range(n):
                base.reset(options={"state": int(s)})
                s2, r, terminated, truncated, _ = base.step(a)
                counts[int(s2)] += 1
                assert r == mdp.R[s, a]
                assert terminated == (int(s2) in mdp.terminal) and not truncated
            p = mdp.P[s, a]
            tol = 5 * np.sqrt(p * (1 - p) / n) + 1.5 / n
            assert np.all(np.abs(counts / n - p) <= tol), (env_id, s, a, counts / n, p)


def test_room_layout() -> None:
    mdp = room_mdp()
    assert mdp.n_states == 50 and mdp.n_actions == 4 and mdp.gamma == 0.95
    # walls between columns 3|4 and rows 3|4, four gates
    openings = sum(not room_blocked(3, y, 1, 0) for y in range(ROOM_SIZE))
    openings += sum(not room_blocked(x, 3, 0, 1) for x in range(ROOM_SIZE))
    assert openings == 4
    # the teacher's optimal action is unique outside goal/terminal
    Q, _ = optimal_values(mdp)
    assert np.all(optimal_action_mask(Q)[:48].sum(axis=1) == 1)


def test_linek_and_chain_layouts() -> None:
    lk = linek_mdp()
    assert lk.n_states == 41 and lk.n_actions == 3
    Q, V = optimal_values(lk)
    pi = np.argmax(Q, axis=1)
    assert pi[2] == 2 or pi[3] == 2  # pick the key in the key region
    assert np.all(pi[20:40] == 1)  # with the key: go right
    ch = chain_mdp()
    assert ch.n_states == 62 and ch.R[25, 0] == pytest.approx(0.01) and ch.R[60, 1] == 1.0
    assert np.all(np.argmax(optimal_values(ch)[0][:61], axis=1) == 1)


# ----------------------------------------------------------------------------- EXPRD


def test_exprd_hand_computed_line() -> None:
    problem = design_problem(line_mdp(GAMMA), horizons=(1,))
    assert problem.delta[:2] == pytest.approx([0.081, 0.09])
    # Z = {goal}: state 0 cannot see any reward within 1 step, state 1 can
    d = solve_exprd(problem, support=[2])
    assert d.informativeness == pytest.approx(-0.081 / 4)
    assert informativeness(problem, problem.mdp.R) == pytest.approx(-0.081 / 4)
    result = greedy_exprd(problem, budget=1)
    assert result.support == [2, 0]
    # the tie-break stage may give up 1e-7 of the optimum
    assert result.design.informativeness == pytest.approx(0.0, abs=1e-6)
    assert_invariance(problem, result.design.reward)


def test_gap_matrices_are_h_step_q_differences(room: TabularMDP) -> None:
    problem = design_problem(room, horizons=(1, 4))
    R = np.random.default_rng(0).normal(size=room.R.shape)
    S = room.n_states
    for h, A_h in zip(problem.horizons, problem.gap_h, strict=True):
        Q, _ = policy_values(room, problem.policy, R, horizon=h + 1)
        gap = Q[np.arange(S), problem.policy][:, None] - Q
        assert np.allclose(A_h @ R.ravel(), gap.ravel())


def test_exprd_lp_constraints_room(room_problem: DesignProblem) -> None:
    mdp = room_problem.mdp
    Z = [48, 15, 9, 37]
    d = solve_exprd(room_problem, support=Z)
    assert set(d.support) <= set(Z)
    assert np.all(d.reward[[s for s in range(mdp.n_states) if s not in Z]] == 0.0)
    assert np.abs(d.reward).max() <= room_problem.rmax + 1e-9
    assert_invariance(room_problem, d.reward)
    # more support can only help, and the original reward is feasible for Z = {goal}
    d_goal = solve_exprd(room_problem, support=[48])
    assert d.informativeness >= d_goal.informativeness - 1e-6
    assert d_goal.informativeness >= informativeness(room_problem, mdp.R) - 1e-6
    assert d.objective == pytest.approx(d.informativeness, abs=1e-6)


def test_exprd_greedy_budget_linek() -> None:
    mdp = linek_mdp()
    problem = design_problem(mdp)
    B = 3
    result = greedy_exprd(problem, budget=B)
    goals = goal_states(mdp)
    assert result.support[: len(goals)] == goals
    assert len(result.support) == len(goals) + B == len(set(result.support))
    assert set(result.design.support) <= set(result.support)
    assert len(result.design.support) <= len(goals) + B
    assert np.abs(result.design.reward).max() <= problem.rmax + 1e-9
    assert all(b >= a - 1e-9 for a, b in zip(result.history, result.history[1:], strict=False))
    assert_invariance(problem, result.design.reward)


def test_pbrs_is_maximally_informative(room_problem: DesignProblem) -> None:
    R = pbrs_optimal(room_problem.mdp)
    assert informativeness(room_problem, R) == pytest.approx(0.0, abs=1e-9)
    assert informativeness(room_problem, room_problem.mdp.R) < -0.05


def test_invariance_only(room_problem: DesignProblem) -> None:
    d = invariance_only(room_problem)
    assert np.abs(d.reward).max() <= room_problem.rmax + 1e-9
    assert_invariance(room_problem, d.reward)


# ----------------------------------------------------------------------------- ExpAdaRD


def bandit() -> TabularMDP:
    """One state, two actions, both end the episode; action 0 pays 1."""
    P = np.zeros((2, 2, 2))
    P[:, :, 1] = 1.0
    R = np.array([[1.0, 0.0], [0.0, 0.0]])
    return TabularMDP(P, R, GAMMA, np.array([1.0, 0.0]), (1,), horizon=1)


def test_adaptive_lp_hand_computed_bandit() -> None:
    mdp = bandit()
    Phi = np.eye(4)[:, :2]  # free rewards for state 0
    teacher = adaptive_teacher(mdp, Phi)
    assert teacher.advantage[0] == pytest.approx([0.0, -1.0])
    assert teacher.occupancy == pytest.approx([1.0, 0.0])
    pi = np.full((2, 2), 0.5)
    c = learner_aware_coefficients(teacher.advantage, teacher.occupancy, pi, np.array([1.0, 0]))
    assert c[0] == pytest.approx([0.125, -0.125])
    d = adaptive_design(mdp, teacher, pi)
    # maximise (R0 - R1) / 8 subject to R0 - R1 >= 1 and |R| <= 10
    assert d.reward[0] == pytest.approx([10.0, -10.0])
    assert d.objective == pytest.approx(2.5)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_learner_aware_coefficients_vanish_for_a_saturated_learner(p: float) -> None:
    """On the bandit, c(s0) = 2 p^2 (1 - p)^2 (1, -1) for pi_L(s0) = (p, 1 - p) (by hand): the
    objective cannot push a learner that is already deterministic, right (p = 1) or wrong
    (p = 0). Why a large REINFORCE step size defeats the adaptive teacher (README)."""
    teacher = adaptive_teacher(bandit(), np.eye(4)[:, :2])
    pi = np.array([[p, 1 - p], [0.5, 0.5]])
    c = learner_aware_coefficients(teacher.advantage, teacher.occupancy, pi, np.array([1.0, 0.0]))
    assert c[0] == pytest.approx(2 * p**2 * (1 - p) ** 2 * np.array([1.0, -1.0]), abs=1e-15)


def test_reinforce_defaults_are_the_thesis_schedule() -> None:
    cfg = ReinforceConfig()
    assert (cfg.lr, cfg.every, cfg.recent, cfg.redesign_every) == (0.01, 2, 5, 5)


@pytest.mark.slow
def test_adaptive_design_outlearns_the_original_reward_at_the_thesis_step_size(
    room: TabularMDP,
) -> None:
    """Regression for the unreproduced ExpAdaRD result: with the thesis's step size 0.01 the
    adaptive learner leaves the original reward behind within 5000 episodes (seed 0)."""
    cfg = ReinforceConfig(episodes=5000, eval_every=5000)
    teacher = adaptive_teacher(room, room_region_features(room))
    adaptive, _ = train_reinforce_with_teacher(room, cfg, seed=0, teacher=teacher)
    original, _ = train_reinforce_with_teacher(room, cfg, seed=0, reward=room.R)
    assert adaptive.returns[-1] > 2 * original.returns[-1] + 0.05, (
        adaptive.returns,
        original.returns,
    )


def test_adaptive_design_room(room: TabularMDP) -> None:
    Phi = room_region_features(room)
    assert Phi.shape == (200, 40) and np.linalg.matrix_rank(Phi) == 40
    cells = Phi[::4, ::4][:49]  # action-0 rows and columns: the state features
    assert np.all(cells[:48, :9].sum(axis=1) >= 1)  # every cell in some square
    for j in range(9):  # no square straddles a wall
        xs = {s % 7 for s in np.flatnonzero(cells[:, j])}
        ys = {s // 7 for s in np.flatnonzero(cells[:, j])}
        assert len(xs) == len(ys) == 3 and not ({3, 4} <= xs) and not ({3, 4} <= ys)
    teacher = adaptive_teacher(room, Phi)
    rng = np.random.default_rng(0)
    pi = softmax(rng.normal(size=room.R.shape))
    mu = state_occupancy(room, pi)
    c = learner_aware_coefficients(teacher.advantage, teacher.occupancy, pi, mu)
    for _ in range(3):
        R = rng.normal(size=room.R.shape)
        direct = learner_aware_informativeness(teacher.advantage, teacher.occupancy, pi, mu, R)
        assert (c * R).sum() == pytest.approx(direct)
    d = adaptive_design(room, teacher, pi)
    assert_invariance(teacher.problem, d.reward)
    assert np.abs(d.reward).max() <= 10 + 1e-9
    exprd = solve_exprd(design_problem(room), features=Phi)
    assert (c * d.reward).sum() >= (c * exprd.reward).sum() - 1e-9
    assert (c * d.reward).sum() >= (c * room.R).sum() - 1e-9


def test_adaptive_training_loop_smoke(room: TabularMDP) -> None:
    teacher = adaptive_teacher(room, room_region_features(room))
    cfg = ReinforceConfig(episodes=20, redesign_every=5, eval_every=10)
    curve, solves = train_reinforce_with_teacher(room, cfg, seed=0, teacher=teacher)
    assert solves == 4 and curve.episodes.tolist() == [0, 10, 20]
    assert np.all((curve.returns >= 0) & (curve.returns <= 10))


# ----------------------------------------------------------------------------- ExploRS


def test_exploration_bonus() -> None:
    assert exploration_bonus(0.0) == 1.0
    assert exploration_bonus(3.0) == pytest.approx(0.5)
    assert exploration_bonus(5.0, lam=2.0, b_max=1.0) == pytest.approx(2 / 3)


def test_intrinsic_and_critic_updates_by_hand() -> None:
    ep = Episode(
        states=[0, 1],
        actions=[0, 1],
        rewards=[0.0, 0.0],
        rewards_bar=[0.0, 1.0],
        next_states=[1, 2],
        probs=[np.array([0.5, 0.5]), np.array([0.25, 0.75])],
    )
    phi, V = np.zeros((3, 2)), np.array([0.1, 0.0, 0.0])
    # Gbar = [0.5 * 1, 1]; state 0: w = 0.5 (0.5 - 0.1) = 0.2, step 0.2 * (0.5, -0.5)
    # state 1: w = 0.75 (1 - 0) = 0.75, step 0.75 * (-0.25, 0.25)
    new = intrinsic_update(phi, V, [ep], gamma=0.5, eta=0.1)
    assert new[0] == pytest.approx([0.01, -0.01])
    assert new[1] == pytest.approx([-0.01875, 0.01875])
    assert np.all(phi == 0)  # pure: input untouched
    V2 = critic_update(V, [ep], gamma=0.5, eta=0.1)
    assert np.allclose(V2, [0.1 + 0.1 * 0.4 / 2, 0.1 * 1.0 / 2, 0.0])


def test_explors_training_smoke() -> None:
    mdp = chain_mdp(horizon=10)
    cfg = ExploRSConfig(episodes=10, eval_every=5, use_shaping=False)
    res = train_explors(mdp, cfg, seed=0)
    assert np.all(res.phi == 0) and res.counts.sum() == 10 * 10
    # on the chain no extrinsic reward is seen in 10 episodes: nothing to redesign phi from;
    # on the line it is, and only the shaping arm redesigns phi
    from rewardlab.shaping.mdp import line_mdp

    shaped = train_explors(line_mdp(), ExploRSConfig(episodes=10, eval_every=5), seed=0)
    assert np.any(shaped.phi != 0), "phi is redesigned from the extrinsic returns"
    unshaped = train_explors(
        line_mdp(), ExploRSConfig(episodes=10, eval_every=5, use_shaping=False), seed=0
    )
    assert np.all(unshaped.phi == 0)


# ----------------------------------------------------------------------------- learners


def test_update_rules_by_hand() -> None:
    assert q_update(0.0, 1.0, 2.0, alpha=0.5, gamma=0.9) == pytest.approx(1.4)
    assert discounted_returns([1.0, 0.0, 2.0], 0.5).tolist() == [1.5, 1.0, 2.0]
    ep = Episode(
        states=[0, 0],
        actions=[0, 1],
        rewards=[0.0, 1.0],
        rewards_bar=[0.0, 1.0],
        next_states=[0, 1],
        probs=[np.array([0.5, 0.5])] * 2,
    )
    theta = np.zeros((2, 2))
    # G = [0.5, 1]: 0.5 (0.5, -0.5) + 1 (-0.5, 0.5) = (-0.25, 0.25), averaged over 2 steps
    grad = reinforce_gradient([ep], softmax(theta), gamma=0.5)
    assert grad[0] == pytest.approx([-0.125, 0.125]) and np.all(grad[1] == 0)
    assert reinforce_update(theta, [ep], lr=2.0, gamma=0.5)[0] == pytest.approx([-0.25, 0.25])


def test_fast_model_samples_like_p(room: TabularMDP) -> None:
    fm = fast_model(room)
    rng = random.Random(0)
    n = 4000
    counts = np.zeros(room.n_states)
    for _ in range(n):
        counts[fm.sample_next(8, 3, rng.random())] += 1
    p = room.P[8, 3]
    assert np.all(np.abs(counts / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-3)


def test_q_learning_solves_line() -> None:
    mdp = line_mdp(GAMMA)
    curve = run_q_learning(mdp, mdp.R, episodes=50, eval_every=10, seed=0)
    best = expected_return(mdp, np.array([1, 1, 0, 0]), horizon=mdp.horizon)
    assert curve.returns[0] < best and curve.returns[-1] == pytest.approx(best)
