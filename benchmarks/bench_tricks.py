"""Do the speed tricks in ``drlcli/networks.py`` still win? (issue #18)

Each trick is switched off on its own from drlcli's configuration (an ablation), and the
textbook alternative -- ``nn.Sequential`` modules, ``torch.tanh``, one Adam over the module
parameters, ``clip_grad_norm_`` -- is timed beside it, at the sizes drlcli trains:

1. PPO / A2C update step: 64x64 tanh actor (2 logits) + critic on CartPole observations (4),
   minibatch 64 and 256; forward, loss, backward, gradient clip, Adam step.
2. SAC / TD3 critic step: twin 256x256 ReLU critics on HalfCheetah observation + action
   (17 + 6), batch 256; forward, MSE loss, backward, Adam step.
3. TRPO / NPG: one Fisher-vector product (KL forward, double backward) through the 64x64 tanh
   actor on a full CartPole batch (8 envs x 1024 steps), as conjugate gradient runs ~11 per
   update.
4. ``fast_tanh``'s sigmoid path against ``torch.tanh`` on the activation shapes of
   (1) and a 2048 x 64 batch, forward and forward + backward.
5. ``networks.linear``'s oneDNN path (``hardware.cpu_linear``) against ``F.linear`` per layer,
   forward + backward, at the sizes drlcli trains and around its size threshold; and, in (2), a
   SAC critic step with it switched the other way from what ``auto`` picks on this CPU.

StackedMLP's hand-written backward, which issue #18 removed, is kept below (only here) as a
"+ removed ..." case so its measurement can be repeated. ``fast_tanh`` was removed in #18 and
restored at a higher size threshold when the whole-run comparison (bench_revisions.py) showed
PPO 0.93x without it: its rows are now "- fast_tanh (torch.tanh)".

The cases of a table are run interleaved (each repeat runs every case once, in a rotating
order), on one thread; each figure is the median over repeats of the mean time per call.
Ratios are case / drlcli's configuration: for a "- trick" row > 1 means the trick drlcli keeps
wins; for a "+ removed trick" row < 1 would mean the removed trick would have won.

    python benchmarks/bench_tricks.py [--repeats 30] [--calls 200] [--threads 1] [--only linear]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from drlcli import hardware, networks
from drlcli.config import HardwareConfig
from drlcli.networks import ActorCritic, FlatParams, StackedMLP, _SigmoidTanh, mlp

Step = Callable[[], object]


class RemovedStackedMLPFn(torch.autograd.Function):
    """The hand-written StackedMLP backward drlcli had until issue #18, kept here (only) so the
    measurement that removed it can be repeated. Its backward saw no autograd graph of the
    activations, so second derivatives through it were silently wrong."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, net: StackedMLP, *params: torch.Tensor) -> Any:
        h = x.unsqueeze(0).expand(net.k, *x.shape)
        acts = [h]
        for i, (w, b) in enumerate(net._wb):
            h = torch.baddbmm(b, h, w)
            if i < net.num_layers - 1:
                h = net._act(h)
                acts.append(h)
        ctx.net = net
        ctx.save_for_backward(*acts)
        return tuple(h[i, :, :d].contiguous() for i, d in enumerate(net.out_dims))

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        net: StackedMLP = ctx.net
        acts = ctx.saved_tensors
        g = acts[0].new_zeros(net.k, acts[0].shape[1], net.weights[-1].shape[-1])
        for i, (gi, d) in enumerate(zip(grads, net.out_dims)):
            if gi is not None:
                g[i, :, :d] = gi
        out: list[torch.Tensor | None] = [None] * (2 * net.num_layers)
        grad_x = None
        for layer in range(net.num_layers - 1, -1, -1):
            w, h_in = net._wb[layer][0], acts[layer]
            out[2 * layer] = torch.bmm(h_in.transpose(1, 2), g)
            out[2 * layer + 1] = g.sum(1, keepdim=True)
            if layer > 0:
                g = torch.bmm(g, w.transpose(1, 2))
                if net.activation == "tanh":
                    g = torch.ops.aten.tanh_backward(g, h_in)
                else:
                    g = torch.ops.aten.threshold_backward(g, h_in, 0)
            elif ctx.needs_input_grad[0]:
                grad_x = torch.bmm(g, w.transpose(1, 2)).sum(0)
        return (grad_x, None, *out)


def custom_backward(net: StackedMLP) -> None:
    """Evaluate ``net`` through the removed hand-written backward while grads are recorded."""
    plain = net.forward

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if torch.is_grad_enabled():
            return RemovedStackedMLPFn.apply(x, net, *net._params)
        return plain(x)

    net.forward = forward  # type: ignore[method-assign]


def sigmoid_tanh(x: torch.Tensor) -> torch.Tensor:
    """fast_tanh's sigmoid path, at any size."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _SigmoidTanh.apply(x)
    return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)


def interleaved(cases: dict[str, Step], repeats: int, calls: int) -> dict[str, float]:
    """Median over ``repeats`` of the mean microseconds per call of each case, interleaved."""
    names = list(cases)
    for fn in cases.values():  # warm-up
        for _ in range(max(calls // 10, 5)):
            fn()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = cases[name]
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t0) / calls * 1e6)
    return {n: statistics.median(v) for n, v in times.items()}


def report(title: str, medians: dict[str, float], ref: str) -> None:
    print(f"\n{title}")
    print(f"  {'case':58s} {'median us':>10s} {'x drlcli':>9s}")
    for name, us in medians.items():
        print(f"  {name:58s} {us:10.1f} {us / medians[ref]:9.2f}")


# --- 1. PPO update step ------------------------------------------------------------------
OBS, ACTIONS, HIDDEN = 4, 2, [64, 64]


def ppo_loss(logits: torch.Tensor, value: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
    logp = torch.log_softmax(logits, -1).gather(-1, b["act"].unsqueeze(-1)).squeeze(-1)
    ratio = torch.exp(logp - b["logp"])
    pg = -torch.min(ratio * b["adv"], ratio.clamp(0.8, 1.2) * b["adv"]).mean()
    return pg + 0.5 * F.mse_loss(value, b["ret"])


def ppo_batch(n: int) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.randn(n, OBS),
        "act": torch.randint(0, ACTIONS, (n,)),
        "logp": torch.full((n,), -0.69),
        "adv": torch.randn(n),
        "ret": torch.randn(n),
    }


def ppo_drlcli(
    b: dict[str, torch.Tensor], layout: str, fused_fn: bool, fast: bool, flat: bool
) -> Step:  # fused_fn: the removed hand-written backward; fast: torch.tanh, no fast_tanh
    """drlcli's ActorCritic with one trick switched off as asked."""
    ac = ActorCritic(
        gym.spaces.Box(-1, 1, (OBS,), np.float32), gym.spaces.Discrete(ACTIONS), HIDDEN, "tanh",
        layout=layout,
    )  # fmt: skip
    if layout == "stacked":
        if fused_fn:
            custom_backward(ac.nets)
        if fast:
            ac.nets._act = torch.tanh
    elif fast:
        ac.actor._act = ac.critic._act = torch.tanh
    params = list(ac.parameters())
    fp = FlatParams(params) if flat else None
    opt = (
        fp.optimizer(torch.optim.Adam, lr=3e-4, fused=True)
        if fp
        else torch.optim.Adam(params, lr=3e-4, fused=True)
    )

    def step() -> None:
        logits, value = ac.dist_and_value(b["obs"])
        loss = ppo_loss(logits, value, b)
        if fp is not None:
            fp.zero_grad()
            loss.backward()
            fp.clip_grad_norm_(0.5)
        else:
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()

    return step


def ppo_torch_func(b: dict[str, torch.Tensor]) -> Step:
    """The stacked weights evaluated by ``torch.func.vmap`` over one net's function."""
    net = StackedMLP(2, OBS, HIDDEN, [ACTIONS, 1], "tanh", [0.01, 1.0])
    params = list(net.parameters())
    fp = FlatParams(params)
    opt = fp.optimizer(torch.optim.Adam, lr=3e-4, fused=True)

    def one(x: torch.Tensor, *wb: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(0, len(wb), 2):
            h = torch.addmm(wb[i + 1], h, wb[i])
            if i < len(wb) - 2:
                h = torch.tanh(h)
        return h

    batched = torch.func.vmap(one, in_dims=(None, *[0] * len(params)))

    def step() -> None:
        out = batched(b["obs"], *net._params)
        loss = ppo_loss(out[0, :, :ACTIONS], out[1, :, 0], b)
        fp.zero_grad()
        loss.backward()
        fp.clip_grad_norm_(0.5)
        opt.step()

    return step


def plain_mlp(sizes: list[int], act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def ppo_plain(b: dict[str, torch.Tensor]) -> Step:
    """What a textbook implementation does: two nn.Sequential, Adam (default foreach)."""
    actor = plain_mlp([OBS, *HIDDEN, ACTIONS], nn.Tanh)
    critic = plain_mlp([OBS, *HIDDEN, 1], nn.Tanh)
    params = [*actor.parameters(), *critic.parameters()]
    opt = torch.optim.Adam(params, lr=3e-4)

    def step() -> None:
        loss = ppo_loss(actor(b["obs"]), critic(b["obs"]).squeeze(-1), b)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()

    return step


def bench_ppo(batch: int, repeats: int, calls: int) -> None:
    b = ppo_batch(batch)
    full = "drlcli: stacked (autograd) + flat + fast_tanh"
    cases = {
        full: ppo_drlcli(b, "stacked", False, False, True),
        "+ removed hand-written backward": ppo_drlcli(b, "stacked", True, False, True),
        "torch.func.vmap over the stacked weights": ppo_torch_func(b),
        "- stacking (two MLPs, F.linear)": ppo_drlcli(b, "separate", False, False, True),
        "- flat params (fused Adam over 13 params, clip_grad_norm_)": ppo_drlcli(
            b, "stacked", False, False, False
        ),
        "- fast_tanh (torch.tanh)": ppo_drlcli(b, "stacked", False, True, True),
        "plain: 2x nn.Sequential, torch.tanh, Adam, clip_grad_norm_": ppo_plain(b),
    }
    report(f"PPO update step, 64x64 tanh actor + critic, batch {batch}",
           interleaved(cases, repeats, calls), full)  # fmt: skip


# --- 2. SAC critic step ------------------------------------------------------------------
SAC_IN, SAC_HIDDEN, SAC_BATCH = 17 + 6, [256, 256], 256


def sac_critic(x: torch.Tensor, y: torch.Tensor, stacked: bool, fused_fn: bool, flat: bool) -> Step:
    """drlcli's twin critics (StackedMLP + FlatParams) with one trick switched off."""
    if stacked:
        net = StackedMLP(2, SAC_IN, SAC_HIDDEN, [1, 1], "relu", ortho=False)
        if fused_fn:
            custom_backward(net)
        params = list(net.parameters())

        def q() -> tuple[torch.Tensor, ...]:
            return net(x)
    else:
        q1 = mlp(SAC_IN, SAC_HIDDEN, 1, "relu", ortho=False)
        q2 = mlp(SAC_IN, SAC_HIDDEN, 1, "relu", ortho=False)
        params = [*q1.parameters(), *q2.parameters()]

        def q() -> tuple[torch.Tensor, ...]:
            return q1(x), q2(x)

    fp = FlatParams(params) if flat else None
    opt = (
        fp.optimizer(torch.optim.Adam, lr=3e-4, fused=True)
        if fp
        else torch.optim.Adam(params, lr=3e-4, fused=True)
    )

    def step() -> None:
        a, c = q()
        loss = 0.5 * (F.mse_loss(a.squeeze(-1), y) + F.mse_loss(c.squeeze(-1), y))
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def sac_plain(x: torch.Tensor, y: torch.Tensor) -> Step:
    q1 = plain_mlp([SAC_IN, *SAC_HIDDEN, 1], nn.ReLU)
    q2 = plain_mlp([SAC_IN, *SAC_HIDDEN, 1], nn.ReLU)
    opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)

    def step() -> None:
        loss = 0.5 * (F.mse_loss(q1(x).squeeze(-1), y) + F.mse_loss(q2(x).squeeze(-1), y))
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def with_linear(onednn: bool, step: Step) -> Step:
    """``step`` with networks.linear's oneDNN path switched on or off for its calls."""

    def run() -> None:
        networks.set_onednn_linear(onednn)
        step()

    return run


AUTO_ONEDNN = False  # what hardware.cpu_linear=auto picks on this machine (set in main)


def bench_sac(repeats: int, calls: int) -> None:
    x, y = torch.randn(SAC_BATCH, SAC_IN), torch.randn(SAC_BATCH)
    full = "drlcli: stacked (autograd) + flat"
    flipped = (
        "- oneDNN linears (F.linear, MKL)" if AUTO_ONEDNN else "+ oneDNN linears (auto: off here)"
    )
    cases = {
        full: with_linear(AUTO_ONEDNN, sac_critic(x, y, True, False, True)),
        flipped: with_linear(not AUTO_ONEDNN, sac_critic(x, y, True, False, True)),
        "+ removed hand-written backward": with_linear(
            AUTO_ONEDNN, sac_critic(x, y, True, True, True)
        ),
        "- stacking (two MLPs)": with_linear(AUTO_ONEDNN, sac_critic(x, y, False, False, True)),
        "- flat params (fused Adam over 6 params)": with_linear(
            AUTO_ONEDNN, sac_critic(x, y, True, False, False)
        ),
        "plain: 2x nn.Sequential, Adam (F.linear)": with_linear(False, sac_plain(x, y)),
    }
    report(f"SAC critic step, twin 256x256 ReLU critics, batch {SAC_BATCH}",
           interleaved(cases, repeats, calls), full)  # fmt: skip


# --- 3. TRPO Fisher-vector product -----------------------------------------------------------
TRPO_BATCH = 8 * 1024  # tuned/trpo_cartpole.yaml: 8 envs x 1024 steps, one full batch


def trpo_fvp(fast: bool) -> Step:
    """One Fisher-vector product (forward, double backward) through TRPO's separate actor."""
    from drlcli.algos.trpo import fisher_vector_product

    policy = ActorCritic(
        gym.spaces.Box(-1, 1, (OBS,), np.float32), gym.spaces.Discrete(ACTIONS), HIDDEN, "tanh",
        layout="separate",
    )  # fmt: skip
    if fast:
        policy.actor._act = torch.tanh
    obs = torch.randn(TRPO_BATCH, OBS)
    with torch.no_grad():
        old = policy.dist(obs).clone()
    v = torch.randn(sum(p.numel() for p in policy.actor_parameters()))
    return lambda: fisher_vector_product(policy, obs, old, v, 0.1)


def bench_trpo(repeats: int, calls: int) -> None:
    full = "drlcli: fast_tanh"
    cases = {full: trpo_fvp(False), "- fast_tanh (torch.tanh)": trpo_fvp(True)}
    report(f"TRPO Fisher-vector product, 64x64 tanh actor, batch {TRPO_BATCH}",
           interleaved(cases, repeats, calls), full)  # fmt: skip


# --- 4. fast_tanh, the op alone ------------------------------------------------------------
def bench_tanh(repeats: int, calls: int) -> None:
    for shape in [(64, 64), (2, 64, 64), (256, 64), (2, 256, 64), (2048, 64)]:
        x = torch.randn(shape)
        xg = x.clone().requires_grad_(True)
        g = torch.ones(shape)

        def fwd(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor = x) -> Step:
            return lambda: f(x)

        def fwd_bwd(
            f: Callable[[torch.Tensor], torch.Tensor],
            xg: torch.Tensor = xg,
            g: torch.Tensor = g,
        ) -> Step:
            return lambda: torch.autograd.grad(f(xg), xg, g)

        cases = {
            "fast_tanh forward": fwd(sigmoid_tanh),
            "torch.tanh forward": fwd(torch.tanh),
            "fast_tanh forward + backward": fwd_bwd(sigmoid_tanh),
            "torch.tanh forward + backward": fwd_bwd(torch.tanh),
        }
        med = interleaved(cases, repeats, max(calls * 5 * 4096 // x.numel(), 20))
        print(f"\ntanh on {shape} ({x.numel()} elements)")
        for kind in ("forward", "forward + backward"):
            fast, ref = med[f"fast_tanh {kind}"], med[f"torch.tanh {kind}"]
            print(f"  {kind:20s} fast_tanh {fast:7.2f} us  torch.tanh {ref:7.2f} us  "
                  f"torch.tanh / fast_tanh {ref / fast:5.2f}")  # fmt: skip


# --- 5. oneDNN linear layers -----------------------------------------------------------------
# (batch, in, out): SAC/TD3 hidden layers (256x256 at 256, the Zoo's TD3 400x300 at 100), DQN's
# 256x256 at 64 and 128, PPO's 64x64 at 256, the Nature-CNN's 3136 -> 512 at 32 and 256, and a
# wide-but-small-batch case below the threshold.
LINEAR_SHAPES = [
    (256, 256, 256),
    (100, 400, 300),
    (128, 256, 256),
    (64, 256, 256),
    (256, 64, 64),
    (2048, 64, 64),
    (32, 3136, 512),
    (256, 3136, 512),
    (16, 256, 256),
]


def bench_linear(repeats: int, calls: int) -> None:
    print("\nLinear layer forward + backward (grad of input, weight, bias): oneDNN / F.linear")
    print(f"  {'batch x in x out':18s} {'M mult-adds':>11s} {'F.linear us':>12s} "
          f"{'oneDNN us':>10s} {'ratio':>6s}  networks.linear takes")  # fmt: skip
    for b, i, o in LINEAR_SHAPES:
        x = torch.randn(b, i, requires_grad=True)
        w = torch.randn(o, i, requires_grad=True)
        bias = torch.randn(o, requires_grad=True)
        g = torch.randn(b, o)

        def aten(x=x, w=w, bias=bias, g=g) -> None:
            F.linear(x, w, bias).backward(g)

        def onednn(x=x, w=w, bias=bias, g=g) -> None:
            networks._OneDNNLinear.apply(x, w, bias).backward(g)

        med = interleaved({"aten": aten, "onednn": onednn}, repeats, calls)
        networks.set_onednn_linear(True)
        takes = "oneDNN" if networks._onednn_wins(x, b, i, o) else "F.linear"
        networks.set_onednn_linear(AUTO_ONEDNN)
        print(f"  {f'{b} x {i} x {o}':18s} {b * i * o / 1e6:11.1f} {med['aten']:12.1f} "
              f"{med['onednn']:10.1f} {med['onednn'] / med['aten']:6.2f}  {takes}")  # fmt: skip


def main() -> None:
    global AUTO_ONEDNN
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=["ppo", "sac", "trpo", "tanh", "linear"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    AUTO_ONEDNN = hardware.resolve_cpu_linear(HardwareConfig(), torch.device("cpu")) == "onednn"
    networks.set_onednn_linear(AUTO_ONEDNN)
    vendor, flags = hardware.cpu_flags()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.repeats} repeats x "
          f"{args.calls} calls; CPU {vendor or '?'}, AVX-512 {'avx512f' in flags}, "
          f"hardware.cpu_linear=auto -> {'onednn' if AUTO_ONEDNN else 'aten'}")  # fmt: skip
    if args.only in (None, "linear"):
        bench_linear(args.repeats, max(args.calls // 4, 10))
    if args.only in (None, "tanh"):
        bench_tanh(args.repeats, args.calls)
    if args.only in (None, "ppo"):
        for batch in (64, 256):
            bench_ppo(batch, args.repeats, args.calls)
    if args.only in (None, "sac"):
        bench_sac(args.repeats, max(args.calls // 4, 10))
    if args.only in (None, "trpo"):
        bench_trpo(args.repeats, max(args.calls // 20, 5))


if __name__ == "__main__":
    main()
