"""The mixture-of-experts layer and its routers on hand-made inputs with known answers."""

from __future__ import annotations

import pytest
import torch

from rewardlab.moe import ROUTERS, MoEConfig, MoELayer
from rewardlab.moe.routers import (
    DenseToSparseRouter,
    ExpertChoiceRouter,
    PrototypeRouter,
    SigmoidRouter,
    TopKRouter,
    TsallisRouter,
    tsallis_entropy,
)


def _set_gate(router: torch.nn.Module, weight: list[list[float]]) -> None:
    with torch.no_grad():
        router.gate.weight.copy_(torch.tensor(weight).T)


def _one_hot_tokens(choices: list[int], d: int) -> torch.Tensor:
    """Tokens that are one-hot in ``d`` features; with an identity gate scaled by 5, token i
    prefers expert ``choices[i]``."""
    return torch.nn.functional.one_hot(torch.tensor(choices), d).float()


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("expert", ["mlp", "lora"])
def test_shapes_and_gradients(router: str, expert: str) -> None:
    torch.manual_seed(0)
    cfg = MoEConfig(router=router, experts=4, k=2, shared=1, expert=expert, anneal_steps=3)
    layer = MoELayer(5, 3, cfg)
    layer.train()
    x = torch.randn(2, 6, 5)
    if expert == "lora":  # B starts at zero: give the adapters something to route
        torch.nn.init.normal_(layer.experts.b)
    y = layer(x)
    assert y.shape == (2, 6, 3)
    y.pow(2).sum().backward()
    grads = {name: p.grad for name, p in layer.named_parameters()}
    assert grads["router.gate.weight"] is not None
    assert float(grads["router.gate.weight"].abs().sum()) > 0
    stats = layer.statistics()
    loads = [stats[f"load/{e}"] for e in range(4)]
    assert sum(loads) == pytest.approx(1.0)
    assert 0 <= stats["dropped"] <= 1 and stats["active"] >= 1
    assert layer.statistics() == {}  # reset after reading


def test_topk_picks_the_k_largest_and_renormalises() -> None:
    router = TopKRouter(3, 3, k=2)
    _set_gate(router, [[3, 2, 0], [0, 1, 4], [0, 0, 0]])
    r = router(torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
    assert (r.weights[0] > 0).tolist() == [True, True, False]
    assert (r.weights[1] > 0).tolist() == [False, True, True]
    assert r.weights.sum(-1).tolist() == pytest.approx([1.0, 1.0])
    p0 = torch.softmax(torch.tensor([3.0, 2.0, 0.0]), 0)
    assert float(r.weights[0, 0].detach()) == pytest.approx(float(p0[0] / (p0[0] + p0[1])))


def test_topk_straight_through_weighs_the_chosen_expert_one_and_keeps_the_gate_gradient() -> None:
    """``k = 1`` with ``straight_through``: the chosen expert's weight is exactly 1 (raw Switch
    weight: its probability), and the gate's gradient is that of ``log p`` of the chosen expert
    (Switch's divided by ``p``)."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    plain, st = TopKRouter(2, 3, k=1), TopKRouter(2, 3, k=1, straight_through=True)
    for router in (plain, st):
        _set_gate(router, [[2.0, 0.0, 1.0], [0.0, 0.5, 3.0]])
    p = torch.softmax(torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.5, 3.0]]), -1)
    r = st(x)
    assert r.weights.detach().tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    assert plain(x).weights.detach()[0, 0] == pytest.approx(float(p[0, 0]))
    upstream = torch.tensor([[0.3, 5.0, 7.0], [2.0, 9.0, -0.7]])  # d loss / d weight
    (r.weights * upstream).sum().backward()
    expected_router = TopKRouter(2, 3, k=1)
    _set_gate(expected_router, [[2.0, 0.0, 1.0], [0.0, 0.5, 3.0]])
    logp = torch.log_softmax(expected_router.gate(x), -1)
    (0.3 * logp[0, 0] - 0.7 * logp[1, 2]).backward()
    assert torch.allclose(st.gate.weight.grad, expected_router.gate.weight.grad, atol=1e-6)


def test_topk_capacity_drops_the_lowest_gates_first() -> None:
    router = TopKRouter(4, 4, k=1, capacity_factor=1.0)  # capacity = n * 1 / 4 = 1 token each
    _set_gate(router, [[5, 0, 0, 0]] * 4)  # every token prefers expert 0
    x = torch.tensor([[0.1, 0, 0, 0], [0.9, 0, 0, 0], [0.5, 0, 0, 0], [0.3, 0, 0, 0]]) * 4
    r = router(x)
    assert (r.weights[:, 0] > 0).tolist() == [False, True, False, False]  # highest gate kept
    assert r.dropped.tolist() == [True, False, True, True]
    assert float(r.balance) > 1.5  # all load on one expert


def test_switch_balance_is_one_when_uniform_and_larger_when_not() -> None:
    router = TopKRouter(4, 4, k=1)
    _set_gate(router, (5 * torch.eye(4)).tolist())
    assert float(router(_one_hot_tokens([0, 1, 2, 3], 4)).balance) == pytest.approx(1.0, abs=0.05)
    assert float(router(_one_hot_tokens([0, 0, 0, 0], 4)).balance) > 2.5


def test_prototype_takes_top1_in_each_group() -> None:
    router = PrototypeRouter(2, 4, k=2)  # groups {0, 1} and {2, 3}
    _set_gate(router, [[2, 0, 0, 3], [0, 1, 1, 0]])
    r = router(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert (r.weights[0] > 0).tolist() == [True, False, False, True]
    assert (r.weights[1] > 0).tolist() == [False, True, True, False]
    assert ((r.weights > 0).sum(-1) == 2).all()


def test_expert_choice_each_expert_takes_its_capacity() -> None:
    router = ExpertChoiceRouter(4, 4, capacity_factor=2.0)
    _set_gate(router, (5 * torch.eye(4)).tolist())
    x = _one_hot_tokens([0, 0, 0, 0, 1, 1, 2, 2], 4)  # 8 tokens: capacity 8 * 2 / 4 = 4
    r = router(x)
    assert (r.weights > 0).sum(0).tolist() == [4, 4, 4, 4]
    assert float(r.aux_loss) == 0.0
    assert bool((r.weights[:4, 0] > 0).all())  # expert 0 took the four tokens that like it


def test_expert_choice_small_batch_falls_back_to_token_choice() -> None:
    router = ExpertChoiceRouter(4, 8, capacity_factor=2.0)
    one = torch.randn(1, 4)
    assert int((router(one).weights > 0).sum()) == 2  # ceil(c) experts, as in training
    literal = ExpertChoiceRouter(4, 8, capacity_factor=2.0, small_batch="dense")
    literal.load_state_dict(router.state_dict())
    assert int((literal(one).weights > 0).sum()) == 8  # every expert takes the only token


def test_sigmoid_bias_moves_against_load_and_only_affects_selection() -> None:
    router = SigmoidRouter(4, 4, k=1, bias_rate=0.1)
    _set_gate(router, (5 * torch.eye(4)).tolist())
    router.train()
    x = _one_hot_tokens([0, 0, 0, 1], 4)
    with torch.enable_grad():
        r = router(x)
    assert router.bias[0] < 0  # overloaded expert pushed down
    assert router.bias[2] > 0 and router.bias[3] > 0  # idle experts pulled up
    assert r.weights.sum(-1).tolist() == pytest.approx([1.0] * 4)
    router.eval()  # acting does not move the bias
    before = router.bias.clone()
    router(x)
    assert torch.equal(before, router.bias)
    with torch.no_grad():  # a large bias changes the choice, not the gate values
        router.bias.copy_(torch.tensor([0.0, 10.0, 0.0, 0.0]))
    r = router(_one_hot_tokens([0], 4))
    assert (r.weights[0] > 0).tolist() == [False, True, False, False]


def test_dense_to_sparse_anneals_to_top1() -> None:
    torch.manual_seed(0)
    router = DenseToSparseRouter(3, 4, anneal_steps=5, threshold=1e-3)
    router.train()
    x = torch.randn(16, 3) * 0.01  # near-uniform gate: the dense phase uses every expert
    with torch.enable_grad():
        first = router(x)
    assert router.tau < 1.0
    assert float((first.weights > 0).sum(-1).float().mean()) > 3
    with torch.enable_grad():
        for _ in range(5):
            last = router(x)
    assert router.sparse and router.tau == pytest.approx(0.5)
    assert ((last.weights > 0).sum(-1) == 1).all()


def test_tsallis_all_experts_when_unsure_top_p_when_sure() -> None:
    router = TsallisRouter(2, 4, threshold=0.9, top_p=0.75, min_experts=2)
    _set_gate(router, [[0, 0, 0, 0], [6, 3, 0, -3]])
    r = router(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert float(tsallis_entropy(r.probs[:1])[0]) == pytest.approx(1.0)
    assert int((r.weights[0] > 0).sum()) == 4  # uniform router: everyone
    assert (r.weights[1] > 0).tolist() == [True, True, False, False]  # top-p, at least two
    assert float(r.weights[1].sum().detach()) == pytest.approx(1.0)


def test_aux_loss_reaches_the_gate_through_any_loss() -> None:
    torch.manual_seed(0)
    layer = MoELayer(3, 2, MoEConfig(router="topk", experts=4, k=1, balance_coef=1.0))
    layer.train()
    x = torch.randn(32, 3)
    layer(x).sum().backward()
    with_aux = layer.router.gate.weight.grad.clone()
    layer.zero_grad()
    routing = layer.router(x)
    expected = (routing.weights.unsqueeze(-1) * layer.experts(x)).sum((0, 1, 2)) + routing.aux_loss
    expected.backward()
    assert torch.allclose(with_aux, layer.router.gate.weight.grad, atol=1e-6)


def test_fresh_lora_mixture_is_the_base_layer_and_diversify_makes_distinct_experts() -> None:
    torch.manual_seed(0)
    layer = MoELayer(3, 2, MoEConfig(router="tsallis", experts=3, expert="lora"))
    x = torch.randn(4, 3)
    assert layer.base is not None
    assert torch.allclose(layer(x), layer.base(x))
    mlp = MoELayer(3, 2, MoEConfig(router="dense_to_sparse", experts=3))
    mlp.diversify(source=1, drop=0.5, seed=0)
    w = mlp.experts.w1
    assert not torch.equal(w[0], w[2])
    kept = w[0] != 0
    assert torch.allclose(w[0][kept], 2 * w[1][kept])  # masked copies of the source, rescaled


def test_config_refuses_unknown_router() -> None:
    with pytest.raises(ValueError, match="moe.router must be one of"):
        MoEConfig(router="nope")  # type: ignore[arg-type]


def test_task_routing_reads_only_the_task_id_features() -> None:
    """``route=(3, 5)``: the router sees only features 3-4 (a one-hot task id), so tokens that
    differ only elsewhere are routed alike and the same features under another task id go to
    the other expert."""
    torch.manual_seed(0)
    layer = MoELayer(5, 2, MoEConfig(router="topk", experts=2, k=1), route=(3, 5))
    assert layer.router.gate.in_features == 2
    _set_gate(layer.router, [[4, -4], [-4, 4]])  # task 0 -> expert 0, task 1 -> expert 1
    x = torch.randn(6, 3)
    task0 = torch.cat([x, _one_hot_tokens([0] * 6, 2)], 1)
    task1 = torch.cat([x, _one_hot_tokens([1] * 6, 2)], 1)
    layer(torch.cat([task0, task1]))
    assert layer.last is not None
    chosen = layer.last.weights.argmax(-1).tolist()
    assert chosen == [0] * 6 + [1] * 6
    assert torch.allclose(layer.last.weights[:6], layer.last.weights[0].expand(6, 2))
    both = torch.cat([task0, task1])
    expected = torch.stack(
        [layer.last.weights[i, e] * layer.experts(both)[i, e] for i, e in enumerate(chosen)]
    )
    assert torch.allclose(layer(both), expected, atol=1e-6)  # the experts see every feature
    # routing on the whole input instead: features 0-2 move the gate too
    whole = MoELayer(5, 2, MoEConfig(router="topk", experts=2, k=1))
    _set_gate(whole.router, [[4, -4], [-4, 4], [0, 0], [0, 0], [0, 0]])
    whole(torch.cat([torch.tensor([[1.0, 0, 0], [0, 1, 0]]), _one_hot_tokens([0, 0], 2)], 1))
    assert whole.last is not None and whole.last.weights.argmax(-1).tolist() == [0, 1]


def test_route_must_lie_inside_the_input() -> None:
    with pytest.raises(ValueError, match="not a range of the layer's 5 input features"):
        MoELayer(5, 2, MoEConfig(), route=(4, 7))
    with pytest.raises(ValueError, match="moe.route_on must be one of obs, task"):
        MoEConfig(route_on="tasks")  # type: ignore[arg-type]
