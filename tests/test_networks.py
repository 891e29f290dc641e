"""Policy heads against torch.distributions."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from drlcli.errors import DrlError
from drlcli.networks import ActorCritic, CategoricalHead, GaussianHead, snapshot


def test_categorical_head_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(64, 5)
    actions = torch.randint(0, 5, (64,))
    head, ref = CategoricalHead(5), Categorical(logits=logits)
    torch.testing.assert_close(head.log_prob(logits, actions), ref.log_prob(actions))
    torch.testing.assert_close(head.entropy(logits), ref.entropy())
    other = torch.randn(64, 5)
    torch.testing.assert_close(
        head.kl(logits, other), kl_divergence(ref, Categorical(logits=other))
    )


def test_categorical_sampling_frequencies():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]])).expand(60000, 3)
    counts = torch.bincount(CategoricalHead(3).sample(logits), minlength=3).float() / 60000
    torch.testing.assert_close(counts, torch.tensor([0.1, 0.6, 0.3]), atol=0.01, rtol=0)


def test_gaussian_head_matches_torch():
    torch.manual_seed(0)
    mean, log_std = torch.randn(32, 3), torch.randn(3)
    actions = torch.randn(32, 3)
    head = GaussianHead(3)
    ref = Normal(mean, log_std.exp().expand_as(mean))
    torch.testing.assert_close(
        head.log_prob((mean, log_std), actions), ref.log_prob(actions).sum(-1)
    )
    torch.testing.assert_close(head.entropy((mean, log_std)), ref.entropy().sum(-1))
    mean2, log_std2 = torch.randn(32, 3), torch.randn(3)
    ref2 = Normal(mean2, log_std2.exp().expand_as(mean2))
    torch.testing.assert_close(
        head.kl((mean, log_std), (mean2, log_std2)), kl_divergence(ref, ref2).sum(-1)
    )


@pytest.mark.parametrize("shared", [False, True])
def test_actor_critic_shapes(shared):
    obs_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    for act_space, cont in [(gym.spaces.Discrete(3), False), (gym.spaces.Box(-2, 2, (2,)), True)]:
        ac = ActorCritic(obs_space, act_space, [16, 16], "tanh", shared=shared)
        params, value = ac.dist_and_value(torch.zeros(7, 4))
        assert value.shape == (7,)
        assert ac.continuous == cont
        action = ac.head.sample(params)
        assert action.shape == ((7, 2) if cont else (7,))


def test_unsupported_spaces_are_clear():
    with pytest.raises(DrlError, match="Box observation space"):
        ActorCritic(gym.spaces.Discrete(4), gym.spaces.Discrete(2), [8])
    with pytest.raises(DrlError, match="1-D MultiDiscrete or 1-D MultiBinary"):
        ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.MultiBinary((2, 2)), [8])


def sequential_copies(net, activation: str) -> list[torch.nn.Sequential]:
    """One textbook nn.Sequential (torch.tanh / relu) per net of a StackedMLP, same weights."""
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    out = []
    for i, d in enumerate(net.out_dims):
        layers: list[torch.nn.Module] = []
        for layer, (w, b) in enumerate(zip(net.weights, net.biases)):
            cols = d if layer == net.num_layers - 1 else w.shape[-1]
            lin = torch.nn.Linear(w.shape[1], cols, dtype=w.dtype)
            with torch.no_grad():
                lin.weight.copy_(w[i, :, :cols].T)
                lin.bias.copy_(b[i, 0, :cols])
            layers += [lin, act()] if layer < net.num_layers - 1 else [lin]
        out.append(torch.nn.Sequential(*layers))
    return out


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_stacked_mlp_gradients_match_plain_modules(activation):
    from drlcli.networks import StackedMLP

    torch.manual_seed(0)
    net = StackedMLP(2, 4, [64, 64], [3, 1], activation)
    refs = sequential_copies(net, activation)
    x = torch.randn(300, 4)

    def loss(actor, critic):
        return actor.pow(2).sum() + (critic * 3).sum()

    actor, critic = net(x)
    torch.testing.assert_close(actor, refs[0](x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(critic, refs[1](x), atol=1e-6, rtol=1e-5)
    g_net = torch.autograd.grad(loss(actor, critic), net._params)
    ref_params = [*refs[0].parameters(), *refs[1].parameters()]
    g_ref = torch.autograd.grad(loss(refs[0](x), refs[1](x)), ref_params)
    n = 2 * net.num_layers  # parameters per reference net
    for layer in range(net.num_layers):
        for i, d in enumerate(net.out_dims):
            cols = d if layer == net.num_layers - 1 else net.weights[layer].shape[-1]
            gw, gb = g_ref[n * i + 2 * layer], g_ref[n * i + 2 * layer + 1]
            torch.testing.assert_close(g_net[2 * layer][i, :, :cols], gw.T, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(g_net[2 * layer + 1][i, 0, :cols], gb, atol=1e-5, rtol=1e-4)
    # Padding columns get no gradient.
    assert (g_net[-2][1, :, 1:] == 0).all() and (g_net[-1][1, :, 1:] == 0).all()


def hvp(loss_fn, params, v):
    """Hessian-vector product of loss_fn() w.r.t. params (flat v): double backward."""
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    return torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat @ v, params)])


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_stacked_mlp_hessian_vector_products_match_plain_modules(activation):
    """Issue #18: the removed hand-written backward gave Hessian-vector products off by up to
    23.5 without an error (1827 on this test). Through StackedMLP they now equal
    nn.Sequential's."""
    from drlcli.networks import StackedMLP

    torch.manual_seed(3)
    net = StackedMLP(2, 4, [64, 64], [3, 1], activation).double()
    with torch.no_grad():  # away from the small-output init, so second derivatives matter
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    refs = sequential_copies(net, activation)
    x = torch.randn(300, 4, dtype=torch.float64, requires_grad=True)
    ref_params = [*refs[0].parameters(), *refs[1].parameters()]

    def net_loss():
        a, c = net(x)
        return torch.log_softmax(a, -1)[:, 0].sum() + c.pow(2).sum()

    def ref_loss():
        return torch.log_softmax(refs[0](x), -1)[:, 0].sum() + refs[1](x).pow(2).sum()

    # The same direction in both parameterizations: v_ref is v_net's live entries.
    v_ref = torch.randn(sum(p.numel() for p in ref_params), dtype=torch.float64)
    chunks, offset = [], 0
    for p in ref_params:
        chunks.append(v_ref[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    v_net, n = [], 2 * net.num_layers
    for layer in range(net.num_layers):
        w = torch.zeros_like(net.weights[layer])
        b = torch.zeros_like(net.biases[layer])
        for i, d in enumerate(net.out_dims):
            cols = d if layer == net.num_layers - 1 else w.shape[-1]
            w[i, :, :cols] = chunks[n * i + 2 * layer].T
            b[i, 0, :cols] = chunks[n * i + 2 * layer + 1]
        v_net += [w.reshape(-1), b.reshape(-1)]
    h_net = hvp(net_loss, net._params, torch.cat(v_net))
    h_ref = hvp(ref_loss, ref_params, v_ref)
    # Compare in the reference layout.
    offset, got = 0, []
    sizes = [p.numel() for p in net._params]
    parts = list(torch.split(h_net, sizes))
    for i, d in enumerate(net.out_dims):
        for layer in range(net.num_layers):
            w = parts[2 * layer].view_as(net.weights[layer])
            b = parts[2 * layer + 1].view_as(net.biases[layer])
            cols = d if layer == net.num_layers - 1 else w.shape[-1]
            got += [w[i, :, :cols].T.reshape(-1), b[i, 0, :cols]]
    torch.testing.assert_close(torch.cat(got), h_ref, rtol=1e-9, atol=1e-9)
    # And w.r.t. the input (SAC/TD3 differentiate critics through their action input).
    (gx,) = torch.autograd.grad(net_loss(), x, create_graph=True)
    (gx_ref,) = torch.autograd.grad(ref_loss(), x, create_graph=True)
    u = torch.randn_like(x)
    (hx,) = torch.autograd.grad((gx * u).sum(), x)
    (hx_ref,) = torch.autograd.grad((gx_ref * u).sum(), x)
    torch.testing.assert_close(hx, hx_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("batch", [8, 300])
def test_mlp_hessian_vector_products_match_nn_sequential(batch):
    """TRPO / NPG's Fisher-vector products run double backward through the separate actor MLP
    (until issue #18 through fast_tanh's custom autograd.Function above 4096 elements)."""
    from drlcli.networks import mlp

    torch.manual_seed(4)
    net = mlp(5, [64, 64], 3, "tanh").double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ref = torch.nn.Sequential(
        net.layers[0], torch.nn.Tanh(), net.layers[1], torch.nn.Tanh(), net.layers[2]
    )  # the same Linear modules: same parameters
    x = torch.randn(batch, 5, dtype=torch.float64)
    params = list(net.parameters())
    v = torch.randn(sum(p.numel() for p in params), dtype=torch.float64)
    h_net = hvp(lambda: torch.log_softmax(net(x), -1)[:, 1].sum(), params, v)
    h_ref = hvp(lambda: torch.log_softmax(ref(x), -1)[:, 1].sum(), params, v)
    torch.testing.assert_close(h_net, h_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))])
def test_trpo_fisher_vector_product_at_training_sizes_matches_plain_modules(action_space):
    """fisher_vector_product on TRPO's separate 64x64 actor at a full-rollout batch equals the
    product through nn.Sequential and nn.Tanh."""
    import copy

    from drlcli.algos.trpo import fisher_vector_product

    torch.manual_seed(5)
    policy = ActorCritic(gym.spaces.Box(-1, 1, (4,)), action_space, [64, 64], layout="separate")
    policy = policy.double()
    with torch.no_grad():
        for p in policy.actor_parameters():
            p.add_(0.2 * torch.randn_like(p))
    obs = torch.randn(1024, 4, dtype=torch.float64)
    with torch.no_grad():
        old = copy.deepcopy(policy).dist(obs)
    v = torch.randn(sum(p.numel() for p in policy.actor_parameters()), dtype=torch.float64)
    fvp = fisher_vector_product(policy, obs, old, v, damping=0.1)
    lin = policy.actor.layers
    plain = torch.nn.Sequential(lin[0], torch.nn.Tanh(), lin[1], torch.nn.Tanh(), lin[2])

    def kl():
        out = plain(obs)
        new = (out, policy.log_std) if policy.continuous else out
        return policy.head.kl(old, new).mean()

    torch.testing.assert_close(fvp, hvp(kl, policy.actor_parameters(), v) + 0.1 * v)


def test_stacked_mlp_equals_separate_networks():
    from drlcli.networks import StackedMLP

    torch.manual_seed(1)
    net = StackedMLP(2, 5, [16], [2, 1], "relu")
    x = torch.randn(7, 5)
    actor, critic = net(x)
    for i, out in enumerate((actor, critic)):
        w1, b1 = net.weights[0][i], net.biases[0][i]
        w2, b2 = net.weights[1][i], net.biases[1][i]
        ref = (torch.relu(x @ w1 + b1) @ w2 + b2)[:, : net.out_dims[i]]
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(net.forward_one(x, i), ref)
    # Padding columns of the critic's output layer start at zero and get no gradient.
    assert (net.weights[-1][1, :, 1:] == 0).all()


def test_flat_params_alias_parameters_and_gradients():
    from drlcli.networks import FlatParams

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    flat = FlatParams(list(net.parameters()))
    opt = flat.optimizer(torch.optim.Adam, lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    for _ in range(2):
        flat.zero_grad()
        net(torch.randn(5, 3)).pow(2).sum().backward()
        norm = flat.clip_grad_norm_(1e-3)
        assert norm > 1e-3 and torch.linalg.vector_norm(flat.grad) <= 1e-3 * 1.0001
        opt.step()
    assert flat.check_views()
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def make_pair(seed: int = 0):
    """Two identical small nets: one on FlatParams, one plain."""
    import copy

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    return net, copy.deepcopy(net)


@pytest.mark.parametrize("zero", ["optimizer", "optimizer_keep", "module"])
@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.RMSprop])
def test_flat_optimizer_natural_loop_trains_like_plain_parameters(zero, cls):
    """Issue #18: ``opt.zero_grad(); loss.backward(); opt.step()`` on an optimizer over the flat
    tensor silently froze training (zero_grad set the flat grad to None; step skipped it). The
    optimizer FlatParams builds must follow exactly the plain-parameter trajectory, whichever
    zero_grad a new algorithm calls."""
    from drlcli.networks import FlatParams

    net, ref = make_pair()
    flat = FlatParams(list(net.parameters()))
    opt = flat.optimizer(cls, lr=0.01)
    ref_opt = cls(ref.parameters(), lr=0.01)
    assert isinstance(opt, cls)
    for step in range(5):
        x = torch.randn(16, 3)
        before = flat.data.clone()
        if zero == "optimizer":
            opt.zero_grad()
        elif zero == "optimizer_keep":
            opt.zero_grad(set_to_none=False)
        else:
            net.zero_grad()  # what torch modules offer: sets every p.grad to None
        net(x).pow(2).mean().backward()
        opt.step()
        ref_opt.zero_grad()
        ref(x).pow(2).mean().backward()
        ref_opt.step()
        assert not torch.equal(flat.data, before), f"step {step} did not move the parameters"
        for p, q in zip(net.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
        assert flat.check_views()


def test_flat_optimizer_state_dict_round_trip_matches_plain_optimizer():
    """Checkpoints stay compatible: the safe optimizer's state dict has the plain optimizer's
    keys and values, loads into either, and training resumes on the same trajectory."""
    from drlcli.networks import FlatParams

    net, _ = make_pair(1)
    flat = FlatParams(list(net.parameters()))
    opt = flat.optimizer(torch.optim.Adam, lr=0.01, eps=1e-5)
    x = torch.randn(16, 3)
    for _ in range(3):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
    state = snapshot({"model": net.state_dict(), "opt": opt.state_dict()})
    assert list(state["model"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    plain = torch.optim.Adam([torch.nn.Parameter(flat.data.clone())], lr=0.01, eps=1e-5)
    plain.load_state_dict(snapshot(state["opt"]))  # a checkpoint from before the wrapper
    assert plain.state_dict().keys() == state["opt"].keys()
    assert plain.state_dict()["param_groups"] == state["opt"]["param_groups"]

    net2, _ = make_pair(2)  # different weights until loaded
    flat2 = FlatParams(list(net2.parameters()))
    opt2 = flat2.optimizer(torch.optim.Adam, lr=0.5)
    net2.load_state_dict(state["model"])
    opt2.load_state_dict(snapshot(state["opt"]))
    assert flat2.check_views() and torch.equal(flat2.data, flat.data)
    for o, n in ((opt, net), (opt2, net2)):
        o.zero_grad()
        n(x).pow(2).mean().backward()
        o.step()
    torch.testing.assert_close(flat2.data, flat.data, rtol=0, atol=0)


def test_sample_and_log_prob_consistent_with_log_prob():
    torch.manual_seed(0)
    logits = torch.randn(50, 4)
    head = CategoricalHead(4)
    a, lp = head.sample_and_log_prob(logits)
    torch.testing.assert_close(lp, head.log_prob(logits, a))
    g = GaussianHead(2)
    params = (torch.randn(50, 2), torch.randn(2))
    a, lp = g.sample_and_log_prob(params)
    torch.testing.assert_close(lp, g.log_prob(params, a), atol=1e-5, rtol=1e-5)


def test_stacked_mlp_input_gradient():
    """Critics take the actor's action as input: the gradient must reach it, summed over nets."""
    from drlcli.networks import StackedMLP

    torch.manual_seed(2)
    net = StackedMLP(2, 5, [32, 32], [1, 1], "relu")
    refs = sequential_copies(net, "relu")
    x = torch.randn(40, 5, requires_grad=True)
    q1, q2 = net(x)
    (g_stacked,) = torch.autograd.grad((q1 * 2 + q2).sum(), x)
    (g_ref,) = torch.autograd.grad((refs[0](x) * 2 + refs[1](x)).sum(), x)
    torch.testing.assert_close(g_stacked, g_ref, atol=1e-6, rtol=1e-5)


# --- snapshots (issue #14) ---------------------------------------------------------------
@pytest.mark.parametrize("layout", ["stacked", "separate", "shared"])
def test_old_gaussian_policy_does_not_move_with_log_std(layout):
    """The issue's minimal repro: an "old" policy taken under no_grad, then log_std moved in
    place. The old policy held the live Parameter, so the KL came out 0.0; a +0.5 shift of the
    log std costs 0.5 + e^-1 / 2 - 0.5 per dimension, e^-1 = 0.368 for two."""
    torch.manual_seed(0)
    box2 = gym.spaces.Box(-1, 1, (2,))
    policy = ActorCritic(gym.spaces.Box(-1, 1, (3,)), box2, [8], layout=layout)
    obs = torch.randn(5, 3)
    with torch.no_grad():
        old = policy.dist(obs)
        policy.log_std.add_(0.5)
    with torch.no_grad():
        kl = policy.head.kl(old, policy.dist(obs))
    torch.testing.assert_close(kl, torch.full((5,), math.exp(-1.0)), rtol=1e-6, atol=0)
    assert abs(float(kl.mean()) - 0.368) < 1e-3
    # While autograd records, dist() hands out the live Parameter: losses need its gradient.
    assert policy.dist(obs)[1] is policy.log_std


def test_recurrent_old_gaussian_policy_does_not_move_with_log_std():
    from drlcli.networks import RecurrentActorCritic

    torch.manual_seed(0)
    net = RecurrentActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)), [8])
    obs, starts = torch.randn(4, 2, 3), torch.zeros(4, 2, dtype=torch.bool)
    with torch.no_grad():
        old, _ = net.unroll(obs, net.initial_state(2), starts)
        net.log_std.add_(0.5)
        new, _ = net.unroll(obs, net.initial_state(2), starts)
    assert float(net.head.kl(old, new).mean()) == pytest.approx(math.exp(-1.0), rel=1e-5)


def test_snapshot_copies_every_tensor_and_keeps_the_structure():
    from collections import OrderedDict, namedtuple

    from drlcli.networks import snapshot

    pair = namedtuple("pair", "a b")
    live = torch.nn.Parameter(torch.zeros(3))
    state = OrderedDict(w=live, opt={"m": [live, 2.0], "step": torch.tensor(1.0)}, name="x")
    state._metadata = {"": {"version": 1}}  # type: ignore[attr-defined]
    value = (torch.ones(2), live)
    nested = pair(a=value, b=None)
    copied = snapshot({"state": state, "dist": value, "nested": nested})
    with torch.no_grad():
        live.add_(1.0)
    assert isinstance(copied["state"], OrderedDict) and copied["state"]._metadata == state._metadata
    assert type(copied["nested"]) is pair and copied["nested"].b is None
    for t in (copied["state"]["w"], copied["state"]["opt"]["m"][0], copied["dist"][1]):
        assert not t.requires_grad and torch.equal(t, torch.zeros(3))
    assert copied["state"]["opt"]["m"][1] == 2.0 and copied["state"]["name"] == "x"
    assert copied["dist"][1].data_ptr() != live.data_ptr()


def test_deepcopy_of_a_flat_params_module_is_independent():
    """FlatParams turns parameters into views of one flat tensor; a deepcopy (e.g. a target
    network, or a test's copy of the pre-update policy) must own its storage and still run
    through its own parameters (the plain lists StackedMLP and MLP keep for speed)."""
    import copy

    from drlcli.networks import FlatParams

    torch.manual_seed(0)
    policy = ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)), [8])
    flat = FlatParams(list(policy.parameters()))
    twin = copy.deepcopy(policy)
    storage = flat.data.untyped_storage().data_ptr()
    assert all(p.untyped_storage().data_ptr() != storage for p in twin.parameters())
    own = [p for wb in zip(twin.nets.weights, twin.nets.biases) for p in wb]
    assert all(a is b for a, b in zip(twin.nets._params, own, strict=True))
    obs = torch.randn(4, 3)
    with torch.no_grad():
        before = twin.dist_and_value(obs)
        flat.data.add_(0.1)  # an optimizer step on the original
        after = twin.dist_and_value(obs)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert not torch.equal(policy.log_std, twin.log_std)


def test_flat_parameter_is_not_exposed_to_plain_optimizers():
    """The trap of issue #18 cannot be written: ``torch.optim.Adam([flat.param])`` raises and
    says what to use; a plain optimizer over the modules' own parameters stays correct."""
    from drlcli.networks import FlatParams

    net, ref = make_pair(3)
    flat = FlatParams(list(net.parameters()))
    with pytest.raises(AttributeError, match=r"flat.optimizer\(torch.optim.Adam"):
        torch.optim.Adam([flat.param], lr=0.01)
    opt, ref_opt = (
        torch.optim.Adam(net.parameters(), lr=0.01),
        torch.optim.Adam(ref.parameters(), lr=0.01),
    )
    for _ in range(3):
        x = torch.randn(8, 3)
        for o, n in ((opt, net), (ref_opt, ref)):
            o.zero_grad()
            n(x).pow(2).mean().backward()
            o.step()
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert flat.data.untyped_storage().data_ptr() == net[0].weight.untyped_storage().data_ptr()


def test_fast_tanh_matches_torch_tanh_to_second_order():
    """The sigmoid-identity tanh kept for large CPU batches (issue #18): values, gradients and
    Hessian-vector products (TRPO's Fisher-vector products use them) equal torch.tanh's."""
    from drlcli.networks import _FAST_TANH_MIN_NUMEL, fast_tanh

    torch.manual_seed(0)
    x = torch.randn(_FAST_TANH_MIN_NUMEL // 64 + 1, 64, dtype=torch.float64, requires_grad=True)
    v = torch.randn_like(x)
    w = torch.randn_like(x)
    out = {}
    for name, fn in (("fast", fast_tanh), ("torch", torch.tanh)):
        y = fn(x)
        (g,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
        (hvp,) = torch.autograd.grad((g * v).sum(), x)
        out[name] = (y.detach(), g.detach(), hvp)
    for a, b in zip(out["fast"], out["torch"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    assert torch.equal(fast_tanh(x[:2]), torch.tanh(x[:2]))  # small tensors: torch.tanh itself
