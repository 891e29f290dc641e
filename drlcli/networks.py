"""Network builders, layer init and policy heads.

The heads are small stateless objects with closed-form log-prob / entropy / KL instead of
``torch.distributions``: for the small MLPs RL uses on CPU, distribution objects (argument
validation, broadcasting, per-call Python objects) cost more than the math.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from drlcli.errors import DrlError
from drlcli.heads import BernoulliHead, MultiCategoricalHead
from drlcli.spaces import image_layout, image_parts

if TYPE_CHECKING:
    from drlcli.encoders import CombinedEncoder

# Policy-head parameters: logits (B, n) for categorical heads, (mean (B, d), log_std (d,)) for
# Gaussian ones. Typed loosely so algorithms can hold either head behind one interface.
DistParams = Any

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}

_T = TypeVar("_T")


def snapshot(value: _T) -> _T:
    """An independent copy of ``value``: every tensor in it becomes ``detach().clone()``.

    Tensors nested in tuples (named ones too), lists and dicts are copied with the same shape,
    dtype and device; other leaves (numbers, strings, None) are returned as they are; a module
    state dict keeps its ``_metadata``. Use it for everything kept to compare against or to
    restore later (issue #14): an old policy's ``DistParams`` -- logits (B, n), or (mean (B, d),
    log_std (d,)) -- and state dicts, whose tensors torch shares with the live parameters and
    optimizer moments. An uncopied Gaussian "old" policy held the live ``log_std`` Parameter,
    moved with every optimizer step, and its KL missed every change of std. Raises nothing.
    """
    out: Any = value
    if isinstance(value, torch.Tensor):
        out = value.detach().clone()
    elif isinstance(value, tuple):
        items = [snapshot(v) for v in value]
        out = type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    elif isinstance(value, list):
        out = [snapshot(v) for v in value]
    elif isinstance(value, dict):
        out = type(value)((k, snapshot(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):  # a module state dict's version info
            out._metadata = snapshot(value._metadata)
    return out


def activation_cls(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise DrlError(f"Unknown activation '{name}'. Valid choices: {', '.join(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


def layer_init(layer: nn.Linear, gain: float, ortho: bool = True) -> nn.Linear:
    """Orthogonal weights with the given gain and zero bias (Engstrom et al. 2020, sec. 3)."""
    if ortho:
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return layer


class _SigmoidTanh(torch.autograd.Function):
    """tanh(x) = 2 sigmoid(2x) - 1, with tanh's own one-op backward, 1 - y^2.

    Twice differentiable (TRPO's Fisher-vector products): the backward is made of
    differentiable ops on the saved *output* y, which autograd connects back to x in a double
    backward; tests/test_networks.py checks Hessian-vector products against torch.tanh's."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


# oneDNN's fp32 matmul for large CPU linear layers. torch's CPU builds do F.linear through MKL,
# whose sgemm runs its AVX-512 kernels on Intel CPUs only: on an AMD EPYC with AVX-512 (the
# 2-vCPU development machine) it runs the AVX2 ones, at ~110 GFLOP/s per core where oneDNN's
# matmul (also in every torch CPU build, as ``torch.ops.mkldnn._linear_pointwise``, the op
# inductor emits for CPU linears) reaches ~220. Measured per layer, forward + backward, 1 and
# 2 threads (benchmarks/bench_tricks.py, "linear layers"): oneDNN wins from about 8M
# multiply-adds (batch x in x out) on weights of 128 x 256 or more -- 256x256 at batch 256:
# 0.55x / 0.66x the time at 1 / 2 threads -- and loses on small layers (64x64 at batch 64:
# 2.2x) and narrow ones (256 -> 1), whose fixed per-call cost dominates.
_ONEDNN_MIN_MACS = 1 << 23  # batch x in x out
_ONEDNN_MIN_WEIGHT = 1 << 15  # in x out
_onednn_linear = False  # set per process by hardware.setup (hardware.cpu_linear)


def onednn_linear_available() -> bool:
    """Whether this torch build has oneDNN and its fused linear op."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(
            torch.ops.mkldnn, "_linear_pointwise"
        )
    except (AttributeError, RuntimeError):
        return False


def set_onednn_linear(enabled: bool) -> None:
    """Route large float32 CPU linear layers through oneDNN (True) or torch's default (False)
    in this process; :func:`linear` applies it. ``hardware.resolve_cpu_linear`` decides (and
    says what is wrong with a bad setting). Raises ValueError when oneDNN is asked for and this
    torch build lacks it."""
    global _onednn_linear
    if enabled and not onednn_linear_available():
        raise ValueError(f"torch {torch.__version__} has no oneDNN linear op")
    _onednn_linear = enabled


def onednn_linear_enabled() -> bool:
    return _onednn_linear


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` (x (B, in) @ weight (out, in)^T + bias (out,), contiguous) on oneDNN's
    matmul, for float32 CPU tensors. The backward is made of this same function (grad_x =
    grad @ weight, grad_weight = grad^T @ x) and a sum, all differentiable, so second
    derivatives (TRPO's Fisher-vector products through a wide actor) are right; forward-mode
    AD has its jvp. tests/test_onednn_linear.py checks values, gradients, Hessian-vector and
    Jacobian-vector products against ``F.linear``. Not vmap-able: :func:`linear` keeps
    ``F.linear`` under torch.func transforms."""

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # oneDNN reads the bias as dense memory: a strided view gave wrong sums.
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def jvp(
        ctx: Any, x_t: torch.Tensor | None, w_t: torch.Tensor | None, b_t: torch.Tensor | None
    ) -> torch.Tensor:
        x, weight = ctx.saved_tensors
        out = torch.zeros(x.shape[0], weight.shape[0], dtype=x.dtype, device=x.device)
        if x_t is not None:
            out = out + nn.functional.linear(x_t, weight)
        if w_t is not None:
            out = out + nn.functional.linear(x, w_t)
        if b_t is not None:
            out = out + b_t
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _OneDNNLinear.apply(grad, weight.t(), None)
        if ctx.needs_input_grad[1]:
            grad_w = _OneDNNLinear.apply(grad.t(), x.t(), None)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b


def _functorch_active() -> bool:
    check = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(check()) if check is not None else False


def _onednn_wins(x: torch.Tensor, rows: int, fan_in: int, fan_out: int) -> bool:
    """Whether a (rows, fan_in) @ (fan_in, fan_out) product of ``x`` goes through oneDNN: large
    enough, float32 on the CPU, and not inside what needs torch's own op (torch.compile,
    torch.jit tracing, autocast, torch.func transforms)."""
    return (
        _onednn_linear
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and fan_in * fan_out >= _ONEDNN_MIN_WEIGHT
        and rows * fan_in * fan_out >= _ONEDNN_MIN_MACS
        and not torch.compiler.is_compiling()
        and not torch.is_autocast_enabled("cpu")
        and not _functorch_active()
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``: x (..., in), weight (out, in), bias (out,) or None -> (..., out).

    Layers large enough to win (batch x in x out >= 2^23 and in x out >= 2^15, float32, CPU,
    eager) go through oneDNN's matmul when :func:`set_onednn_linear` turned it on for this
    process (``hardware.cpu_linear``); everything else, and everything under torch.compile, is
    ``F.linear``. Both compute the same product in float32; their roundings differ (~1e-7
    relative), so a run is reproducible with the same ``hardware.cpu_linear`` on the same CPU.
    """
    # The size test first: small layers (PPO's, DQN's 64x64, acting on a few envs) leave after
    # two integer comparisons, which their ~7 us F.linear calls do not notice.
    if (
        _onednn_linear
        and weight.dim() == 2
        and weight.numel() >= _ONEDNN_MIN_WEIGHT
        and x.numel() * weight.shape[0] >= _ONEDNN_MIN_MACS
        and not torch.jit.is_tracing()  # before the shape tests, which a trace would record
        and weight.dtype == torch.float32
        and x.dim() >= 2
        and x.shape[-1] == weight.shape[1]  # a mismatch gets F.linear's error message
        and (bias is None or (bias.shape == weight.shape[:1] and bias.dtype == torch.float32))
        and _onednn_wins(x, x.numel() // weight.shape[1], weight.shape[1], weight.shape[0])
    ):
        b = None if bias is None else bias.contiguous()
        if x.dim() == 2:
            return _OneDNNLinear.apply(x, weight, b)
        out = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight, b)
        return out.reshape(*x.shape[:-1], weight.shape[0])
    return nn.functional.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` whose forward is :func:`linear` (same parameters and state-dict keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


# Below this many elements torch.tanh is as fast or faster: a PPO minibatch of 64 (64 x 64 =
# 4096 activations) ran 1.09x slower through the sigmoid path, one of 256 0.93-0.94x faster
# (benchmarks/bench_tricks.py, 2026-11-30, 2-vCPU machine shared with other jobs).
_FAST_TANH_MIN_NUMEL = 8192


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh for large CPU training batches: 2 sigmoid(2x) - 1 (exact to ~2e-7). On this torch
    CPU build the identity's forward is 2-7x faster from 16k elements; PPO's CartPole update
    (minibatch 256) took 0.93-0.94x the time with it, the whole run 0.93x of the version before
    issue #18 without it (benchmarks/bench_revisions.py). Other devices and small tensors use
    ``torch.tanh``."""
    if x.numel() < _FAST_TANH_MIN_NUMEL or x.device.type != "cpu":
        return torch.tanh(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return _SigmoidTanh.apply(x)
    return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)


ACT_FNS = {"tanh": fast_tanh, "relu": torch.relu, "elu": torch.nn.functional.elu}


class MLP(nn.Module):
    """in -> hidden... -> out, linear output (``out_dim=None`` ends after the last hidden layer).

    The forward pass calls :func:`linear` and the activation function directly instead of going
    through ``nn.Sequential``'s per-submodule ``__call__``: for 64-unit layers on CPU that Python
    overhead is a sizeable share of the whole step.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int | None,
        activation: str = "tanh",
        out_gain: float = 1.0,
        ortho: bool = True,
    ):
        super().__init__()
        activation_cls(activation)  # validates the name
        self._act = ACT_FNS[activation]
        layers: list[nn.Linear] = []
        last = in_dim
        for width in hidden:
            layers.append(layer_init(Linear(last, width), math.sqrt(2), ortho))
            last = width
        self.num_hidden = len(layers)
        if out_dim is not None:
            layers.append(layer_init(Linear(last, out_dim), out_gain, ortho))
        self.layers = nn.ModuleList(layers)
        self._linears = layers  # plain list: typed, and no ModuleList indexing per call
        self.out_features = out_dim if out_dim is not None else last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self._act
        for i, layer in enumerate(self._linears):
            x = linear(x, layer.weight, layer.bias)
            if i < self.num_hidden:
                x = act(x)
        return x


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int | None,
    activation: str = "tanh",
    out_gain: float = 1.0,
    ortho: bool = True,
) -> MLP:
    return MLP(in_dim, hidden, out_dim, activation, out_gain, ortho)


class StackedMLP(nn.Module):
    """``k`` independent MLPs with the same input and hidden sizes, evaluated together.

    Layer ``l`` of all nets is one (k, in, out) weight tensor and one ``baddbmm``: the separate
    actor and critic of PPO / A2C cost the ops of one network. Net ``i`` owns the first
    ``out_dims[i]`` output columns; padding columns start at zero, receive no gradient and so
    stay zero. Mathematically identical to ``k`` separate MLPs with the same initialization,
    first and second derivatives included (plain autograd).

    Benchmark (``benchmarks/bench_tricks.py``, 2026-11-30, 2-vCPU machine shared with other
    jobs, 1 thread, three runs): two separate MLPs instead take 1.06-1.10x the time of PPO's
    update step at minibatch 64, 0.89-1.04x at 256, 0.87-0.97x of SAC's twin-critic step (a
    small win for PPO's 64-unit layers only). ``torch.func.vmap`` over the stacked weights
    takes 1.25-1.48x. The hand-written backward this class had until issue #18 gave wrong
    Hessian-vector products without an error, and took 1.00-1.14x the time of autograd.
    With oneDNN linears on (:func:`set_onednn_linear`) and a layer large enough for them (SAC's
    256x256 critics at batch 256), the nets run one after the other through :func:`linear`.
    """

    def __init__(
        self,
        k: int,
        in_dim: int,
        hidden: Sequence[int],
        out_dims: Sequence[int],
        activation: str = "tanh",
        out_gains: Sequence[float] | None = None,
        ortho: bool = True,
    ):
        super().__init__()
        activation_cls(activation)
        self._act = ACT_FNS[activation]
        self.k = k
        self.out_dims = list(out_dims)
        gains = list(out_gains) if out_gains is not None else [1.0] * k
        sizes = [in_dim, *hidden, max(out_dims)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            last = layer == len(sizes) - 2
            w = torch.zeros(k, fan_in, fan_out)
            b = torch.zeros(k, 1, fan_out)
            for i in range(k):
                cols = self.out_dims[i] if last else fan_out
                gain = gains[i] if last else math.sqrt(2)
                lin = layer_init(nn.Linear(fan_in, cols), gain, ortho)
                w[i, :, :cols] = lin.weight.detach().T
                b[i, 0, :cols] = lin.bias.detach()
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.num_layers = len(self.weights)
        # Plain lists: iterating a ParameterList costs a string-index lookup per item.
        self._wb = list(zip(self.weights, self.biases))
        self._params = [p for wb in self._wb for p in wb]
        self.activation = activation
        # in x out of the widest layer oneDNN could take (0: none), so that a forward on a
        # small net or batch decides with one comparison (PPO acts through this per env step).
        widths = [w.shape[1] * w.shape[2] for w in self.weights]
        self._onednn_width = max([n for n in widths if n >= _ONEDNN_MIN_WEIGHT], default=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, in) -> one (B, out_dims[i]) tensor per net. Plain autograd: differentiable any
        number of times (Hessian-vector products are right)."""
        if (
            _onednn_linear
            and self._onednn_width
            and x.dim() == 2
            and x.shape[0] * self._onednn_width >= _ONEDNN_MIN_MACS
            and any(_onednn_wins(x, x.shape[0], w.shape[1], w.shape[2]) for w, _ in self._wb)
        ):
            return self._forward_each(x)
        h = x.unsqueeze(0).expand(self.k, *x.shape)
        for i, (w, b) in enumerate(self._wb):
            h = torch.baddbmm(b, h, w)
            if i < self.num_layers - 1:
                h = self._act(h)
        return tuple(h[i, :, :d] for i, d in enumerate(self.out_dims))

    def _forward_each(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The nets one after the other, each layer through :func:`linear` (oneDNN takes 2-D
        products; linear() keeps F.linear for the small first and last layers). ``unbind``
        views: their backward stacks the nets' gradients in one copy."""
        unbound = [(w.unbind(0), b[:, 0].unbind(0)) for w, b in self._wb]
        return tuple(
            self._net(x, [(ws[i].t(), bs[i]) for ws, bs in unbound])[:, :d]
            for i, d in enumerate(self.out_dims)
        )

    def forward_one(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Only net ``i``: (B, in) -> (B, out_dims[i])."""
        return self._net(x, [(w[i].t(), b[i, 0]) for w, b in self._wb])[:, : self.out_dims[i]]

    def _net(
        self, x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """One net: its layers' (weight (out, in), bias (out,)) through :func:`linear`."""
        h = x
        for layer, (w, b) in enumerate(layers):
            h = linear(h, w, b)
            if layer < self.num_layers - 1:
                h = self._act(h)
        return h


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Inside, ``module``'s parameters do not require gradients; afterwards each has its own
    flag back. Forward passes made inside build no weight-gradient edges, so a loss
    differentiated *through* the module (an actor's loss through the critics) skips the
    ``x^T @ grad`` matmuls of its weight gradients, which the critic's next ``zero_grad``
    would discard anyway: about a tenth of the multiply-adds of SAC's gradient step with its
    twin 256x256 critics (4% of TD3's, whose actor learns every second step). Gradients with
    respect to the inputs still flow.
    """
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


_Opt = TypeVar("_Opt", bound=torch.optim.Optimizer)


class FlatParams:
    """Make every parameter a view into one flat tensor, and every gradient a view into one flat
    gradient buffer.

    The optimizer then sees a single tensor (one fused Adam kernel instead of one per layer), the
    global gradient norm is one reduction and clipping one multiply. Must be applied after the
    modules are moved to their device; ``load_state_dict`` keeps working since it copies in
    place into the views, and module state dict keys do not change.

    The flat Parameter itself is not exposed: a plain ``torch.optim.Adam([flat_parameter])``
    with the natural ``opt.zero_grad()`` (``set_to_none=True``) drops the flat gradient and
    ``step()`` then skips it -- training silently froze (issue #18; a new algorithm fell into it
    again). Build the optimizer with :meth:`optimizer`: it zeroes the buffer in place, and before
    every ``step`` it repairs gradients that ``module.zero_grad()`` detached from the buffer.
    :attr:`data` gives the flat values for in-place math (Polyak updates). A plain optimizer
    over the modules' own parameters also stays correct (they are views of the flat values).

    Benchmark (``benchmarks/bench_tricks.py``, 2026-11-30, 2-vCPU machine shared with other
    jobs, 1 thread, three runs): PPO's 64x64 actor-critic update step without FlatParams (fused
    Adam over the 13 tensors, ``clip_grad_norm_``) takes 1.20-1.24x the time at minibatch 64,
    1.14-1.17x at 256; SAC's twin 256x256 critic step 0.99-1.03x (compute-bound: no gain, kept
    there for one-op Polyak updates and unchanged checkpoints).
    """

    def __init__(self, params: Sequence[nn.Parameter]):
        params = list(params)
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        self._param = nn.Parameter(flat)
        self.grad = torch.zeros_like(flat)
        self._grad_views: list[torch.Tensor] = []
        offset = 0
        for p in params:
            n = p.numel()
            p.data = self._param.data[offset : offset + n].view_as(p)
            # A pre-set .grad is accumulated into in place by autograd, so it stays a view.
            view = self.grad[offset : offset + n].view_as(p)
            p.grad = view
            self._grad_views.append(view)
            offset += n
        self._param.grad = self.grad
        self.params = params

    @property
    def param(self) -> nn.Parameter:
        """Not exposed (see the class docstring); raises AttributeError saying what to use."""
        raise AttributeError(
            "FlatParams.param is not exposed: an optimizer built on it directly freezes "
            "training once its zero_grad() drops the flat gradient (issue #18). Build it with "
            "flat.optimizer(torch.optim.Adam, lr=...), and use flat.data for in-place math."
        )

    @property
    def data(self) -> torch.Tensor:
        """The flat parameter values (no autograd), every parameter a view into them."""
        return self._param.data

    def optimizer(self, cls: type[_Opt], **kwargs: Any) -> _Opt:
        """``cls([flat parameter], **kwargs)`` (e.g. ``torch.optim.Adam``, ``lr=3e-4``), made safe
        for the flat buffers: its ``zero_grad`` zeroes the flat gradient in place whatever
        ``set_to_none`` says, and a step pre-hook first calls :meth:`sync` (gradients that
        ``module.zero_grad()`` or ``p.grad = None`` cut loose are copied back into the buffer).
        The instance's class is a subclass of ``cls``, so its state dict is ``cls``'s own
        (checkpoints stay compatible). Not for copying (deepcopy / pickle): torch keeps neither
        the hook nor the parameter views in a copy; build a new FlatParams and optimizer and
        load the state dicts. Raises what ``cls`` raises for bad ``kwargs``."""
        opt = _flat_optimizer_class(cls)([self._param], **kwargs)
        opt._drl_flat = self  # type: ignore[attr-defined]
        opt.register_step_pre_hook(_sync_flat)
        return opt

    def zero_grad(self) -> None:
        """Zero the flat gradient in place, reattaching any gradient view cut loose."""
        self.grad.zero_()
        self.sync()

    def sync(self) -> None:
        """Make every parameter's ``.grad`` a view of the flat buffer again.

        A parameter whose ``.grad`` was replaced (``module.zero_grad()`` sets it to None, after
        which backward allocates a fresh tensor) has that tensor copied into its slice of the
        buffer (zeros if None); the flat parameter's ``.grad`` is set back to the buffer. About
        1 us when nothing was cut loose (identity checks only).
        """
        for p, view in zip(self.params, self._grad_views, strict=True):
            if p.grad is not view:
                if p.grad is None:
                    view.zero_()
                else:
                    view.copy_(p.grad)
                p.grad = view
        if self._param.grad is not self.grad:
            self._param.grad = self.grad

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale the gradient so its global L2 norm is at most ``max_norm``; returns the norm."""
        self.sync()
        norm = torch.linalg.vector_norm(self.grad)
        self.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
        return norm

    def check_views(self) -> bool:
        """True while every parameter and gradient still aliases the flat buffers."""
        pstore = self._param.untyped_storage().data_ptr()
        gstore = self.grad.untyped_storage().data_ptr()
        return all(
            p.untyped_storage().data_ptr() == pstore
            and p.grad is not None
            and p.grad.untyped_storage().data_ptr() == gstore
            for p in self.params
        )


_FLAT_OPTIMIZER_CLASSES: dict[type, type] = {}


def _sync_flat(opt: Any, args: Any, kwargs: Any) -> None:
    """Step pre-hook of the optimizers FlatParams.optimizer builds."""
    opt._drl_flat.sync()


def _flat_optimizer_class(cls: type[_Opt]) -> type[_Opt]:
    """``cls`` with a ``zero_grad`` that zeroes a FlatParams buffer in place (one per class)."""
    if cls not in _FLAT_OPTIMIZER_CLASSES:

        def zero_grad(self: Any, set_to_none: bool = True) -> None:
            # set_to_none=True would drop the flat gradient: the next step() skips a None grad.
            self._drl_flat.zero_grad()

        name = f"Flat{cls.__name__}"
        sub = type(name, (cls,), {"zero_grad": zero_grad, "__module__": __name__})
        _FLAT_OPTIMIZER_CLASSES[cls] = sub
    return _FLAT_OPTIMIZER_CLASSES[cls]


class CategoricalHead:
    """Discrete actions; the network outputs logits (B, n)."""

    def __init__(self, n: int):
        self.n = n
        self.param_dim = n

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        # Gumbel-max: argmax(logits + Gumbel noise) is an exact sample of softmax(logits).
        u = torch.rand_like(logits)
        return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.argmax(logits, dim=-1)

    def sample_and_log_prob(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample per row and its log-probability, sharing one log-softmax (rollouts)."""
        logp = torch.log_softmax(logits, dim=-1)
        action = torch.multinomial(logp.exp(), 1)
        return action.squeeze(-1), logp.gather(-1, action).squeeze(-1)

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        return -(logp.exp() * logp).sum(-1)

    def kl(self, old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
        """KL(old || new) per sample."""
        old_logp = torch.log_softmax(old_logits, dim=-1)
        new_logp = torch.log_softmax(new_logits, dim=-1)
        return (old_logp.exp() * (old_logp - new_logp)).sum(-1)


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class GaussianHead:
    """Diagonal Gaussian; the network outputs means (B, d), the log std is a state-independent
    parameter owned by the policy and passed in alongside (broadcast to the means)."""

    def __init__(self, dim: int):
        self.dim = dim
        self.param_dim = dim

    @staticmethod
    def _split(params: DistParams) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = params
        return mean, log_std.expand_as(mean)

    def sample(self, params: DistParams) -> torch.Tensor:
        mean, log_std = self._split(params)
        return mean + log_std.exp() * torch.randn_like(mean)

    def mode(self, params: DistParams) -> torch.Tensor:
        return params[0]

    def sample_and_log_prob(self, params: DistParams) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self._split(params)
        noise = torch.randn_like(mean)
        action = mean + log_std.exp() * noise
        # log N(a; mean, std) with z = noise exactly.
        return action, (-0.5 * noise.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)

    def log_prob(self, params: DistParams, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._split(params)
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)

    def entropy(self, params: DistParams) -> torch.Tensor:
        _, log_std = self._split(params)
        return (log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)

    def kl(self, old: DistParams, new: DistParams) -> torch.Tensor:
        m0, s0 = self._split(old)
        m1, s1 = self._split(new)
        var0, var1 = torch.exp(2 * s0), torch.exp(2 * s1)
        return (s1 - s0 + (var0 + (m0 - m1).pow(2)) / (2 * var1) - 0.5).sum(-1)


# --- generalized state-dependent exploration (gSDE) -----------------------------------------
#: Algorithms whose policies implement gSDE (``algo.use_sde``).
SDE_ALGOS = ("sac", "ppo", "a2c", "trpo")
_SDE_EPS = 1e-6  # added to the state-dependent variance, as in Stable-Baselines3


def sde_problems(cfg: Any) -> list[str]:
    """Problems with a config's gSDE settings (``use_sde``, ``sde_sample_freq``), as phrases
    for the caller's one-paragraph error. Empty for a config without gSDE fields or with
    ``use_sde=false``. gSDE needs a stochastic Gaussian actor fed by a feed-forward network:
    SAC, PPO (not its recurrent variant), A2C and TRPO / NPG (``name`` trpo). TD3 and DDPG
    explore with action noise around a deterministic actor and have no learned std to make
    state-dependent (Stable-Baselines3 does not offer gSDE for them either); DQN's actions are
    discrete. Raises nothing.
    """
    if not getattr(cfg, "use_sde", False):
        return []
    name = str(getattr(cfg, "name", "?"))
    problems = []
    if name not in SDE_ALGOS or getattr(cfg, "recurrent", False):
        what = f"algo={name}"
        if getattr(cfg, "recurrent", False):  # ppo_gru / ppo_lstm carry name "ppo"
            what = "recurrent PPO (algo=ppo_gru, ppo_lstm or algo.recurrent=true)"
        problems.append(
            f"algo.use_sde=true (generalized state-dependent exploration) is not available for "
            f"{what}: drlcli's gSDE covers only sac, ppo (and ppo_kl), a2c, trpo and npg "
            "(feed-forward Gaussian policies, whose noise it makes a function of the state); "
            "TD3 and DDPG explore with action noise around a deterministic actor (use "
            "algo.action_noise), DQN with epsilon-greedy"
        )
    freq = getattr(cfg, "sde_sample_freq", -1)
    if freq == 0 or freq < -1:
        problems.append(
            f"algo.sde_sample_freq must be -1 (new exploration matrices only at the start of "
            f"each rollout / collection phase) or >= 1 (also every n env steps), got {freq}"
        )
    return problems


def check_sde_action_space(cfg: Any, action_space: gym.Space) -> None:
    """Raise DrlError when ``cfg.use_sde`` is set for an action space gSDE cannot draw noise
    for (anything but a 1-D Box): exploration matrices map features to continuous actions."""
    if getattr(cfg, "use_sde", False) and not (
        isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1
    ):
        raise DrlError(
            f"algo.use_sde=true (gSDE) draws continuous exploration noise, but this env's action "
            f"space is {action_space}, which has no continuous actions to add it to; set "
            "algo.use_sde=false."
        )


class StateDependentNoise(nn.Module):
    """gSDE's learned noise scale and its exploration matrices (Raffin et al. 2022, "Smooth
    Exploration for Robotic Reinforcement Learning", CoRL 2021; Stable-Baselines3's
    ``StateDependentNoiseDistribution``).

    A policy's latent features z(s) (F,) -- its last hidden layer -- set the noise of the action:
    eps(s) = z(s) @ theta_eps with an exploration matrix theta_eps (F, d) whose entries are drawn
    from N(0, sigma_ij^2), sigma = exp(log_std) (or ``expln``, below). For a fixed state this is a
    Gaussian with variance sum_j z_j(s)^2 sigma_ji^2 per action dim i, so the action
    a = mu(s) + eps(s) has log-density log N(a; mu(s), sqrt(z(s)^2 @ sigma^2 + 1e-6)) (the
    1e-6 as in SB3, keeping the density finite where all features are 0). Holding theta_eps
    fixed over several steps makes the exploration smooth in time.

    Shapes: ``log_std`` is a Parameter (F, d) (``full_std``) or (F, 1) (one sigma per feature,
    broadcast over actions); ``matrices`` (num_envs, F, d) is a buffer, one matrix per env, so it
    is saved with the module's state dict (checkpoints resume with the very same matrices);
    ``steps_since`` counts vector steps since the matrices were drawn.

    ``sample_freq``: -1 draws new matrices only when :meth:`resample` is called (the algorithms
    call it at the start of each rollout / collection phase); n >= 1 also draws them after every
    n steps of :meth:`noise` since the last draw. ``use_expln`` replaces exp by
    expln(x) = exp(x) for x <= 0, log1p(x) + 1 above (from the paper, keeps sigma from
    growing too fast). Raises DrlError for a non-positive size or a bad ``sample_freq``.
    """

    matrices: torch.Tensor
    steps_since: torch.Tensor

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        num_envs: int,
        log_std_init: float,
        full_std: bool = True,
        use_expln: bool = False,
        sample_freq: int = -1,
    ):
        super().__init__()
        if latent_dim < 1 or action_dim < 1 or num_envs < 1:
            raise DrlError(
                f"gSDE needs >= 1 latent feature, action dim and env (got {latent_dim}, "
                f"{action_dim}, {num_envs})."
            )
        if sample_freq == 0 or sample_freq < -1:
            raise DrlError(f"algo.sde_sample_freq must be -1 or >= 1, got {sample_freq}.")
        self.latent_dim, self.action_dim, self.num_envs = latent_dim, action_dim, num_envs
        self.full_std, self.use_expln, self.sample_freq = full_std, use_expln, sample_freq
        cols = action_dim if full_std else 1
        self.log_std = nn.Parameter(torch.full((latent_dim, cols), float(log_std_init)))
        self.register_buffer("matrices", torch.zeros(num_envs, latent_dim, action_dim))
        self.register_buffer("steps_since", torch.zeros((), dtype=torch.long))
        self.resample()

    def std(self) -> torch.Tensor:
        """sigma (F, d) from ``log_std``: exp, or expln when ``use_expln``."""
        log_std = self.log_std
        if self.use_expln:
            # exp below 0, log1p(x) + 1 above; the clamps keep the unused branch finite.
            below = torch.exp(log_std.clamp(max=0.0))
            above = torch.log1p(log_std.clamp(min=0.0)) + 1.0
            sigma = torch.where(log_std <= 0, below, above)
        else:
            sigma = torch.exp(log_std)
        return sigma.expand(self.latent_dim, self.action_dim)

    def log_std_of(self, latent: torch.Tensor) -> torch.Tensor:
        """The log std (B, d) of the action given latent features ``latent`` (B, F):
        0.5 log(z^2 @ sigma^2 + 1e-6). Differentiable in ``log_std`` and in ``latent``
        (callers that do not learn the features pass ``latent.detach()``)."""
        var = latent.pow(2) @ self.std().pow(2)
        return 0.5 * torch.log(var + _SDE_EPS)

    @torch.no_grad()
    def resample(self) -> None:
        """Draw new exploration matrices (num_envs, F, d), one per env, from N(0, sigma^2);
        uses torch's global RNG. Resets the step count."""
        sigma = self.std().detach()
        self.matrices.copy_(sigma * torch.randn_like(self.matrices))
        self.steps_since.zero_()

    @torch.no_grad()
    def noise(self, latent: torch.Tensor) -> torch.Tensor:
        """The exploration noise (num_envs, d) for one vector step, row i = latent[i] @
        matrices[i], from latent features (num_envs, F). Counts the step; with
        ``sample_freq`` n >= 1 first draws new matrices once n steps used the current ones.
        Raises DrlError when the batch is not one row per env."""
        if latent.shape[0] != self.num_envs:
            raise DrlError(
                f"gSDE exploration noise is drawn for one step of {self.num_envs} envs, got a "
                f"batch of {latent.shape[0]} (use independent_noise for other batches)."
            )
        if self.sample_freq > 0 and int(self.steps_since) >= self.sample_freq:
            self.resample()
        self.steps_since.add_(1)
        return torch.bmm(latent.unsqueeze(1), self.matrices).squeeze(1)

    def training_matrix(self) -> torch.Tensor:
        """One exploration matrix (F, d) = sigma * N(0, 1), differentiable in ``log_std``
        (reparameterization): SAC draws one per gradient step for its whole batch, as SB3's
        ``reset_noise()`` in ``SAC.train``."""
        sigma = self.std()
        return sigma * torch.randn_like(sigma)

    @torch.no_grad()
    def independent_noise(self, latent: torch.Tensor) -> torch.Tensor:
        """Noise (B, d) with a fresh matrix per row of ``latent`` (B, F): one stochastic
        action per state outside of collection (evaluation with deterministic=false), leaving
        the collection matrices and their step count untouched."""
        sigma = self.std()
        mats = sigma * torch.randn(latent.shape[0], *sigma.shape, device=latent.device)
        return torch.bmm(latent.unsqueeze(1), mats).squeeze(1)


class SDEGaussianHead(GaussianHead):
    """A Gaussian head whose std depends on the state through gSDE (StateDependentNoise).

    Params are (mean (B, d), log_std (B, d), latent (B, F)): the log std is
    ``noise.log_std_of(latent)``, so log_prob, entropy and KL are the diagonal Gaussian's of
    GaussianHead with a per-sample std. Rollout samples (``sample_and_log_prob``, one row per
    env) add the noise of the env's exploration matrix, latent @ theta_eps; ``sample`` (any
    batch) draws a fresh matrix per row. The latent is detached by the policy (SB3's
    ``learn_features=False`` for PPO / A2C): only the mean and sigma learn from the loss.
    """

    def __init__(self, dim: int, noise: StateDependentNoise):
        super().__init__(dim)
        self.noise = noise

    @staticmethod
    def _split(params: DistParams) -> tuple[torch.Tensor, torch.Tensor]:
        return params[0], params[1]

    def sample(self, params: DistParams) -> torch.Tensor:
        return params[0] + self.noise.independent_noise(params[2])

    def sample_and_log_prob(self, params: DistParams) -> tuple[torch.Tensor, torch.Tensor]:
        action = params[0] + self.noise.noise(params[2])
        return action, self.log_prob(params, action)


def live_or_copy(log_std: torch.Tensor) -> torch.Tensor:
    """The state-independent log std (d,) to hand out beside a Gaussian's means.

    While autograd records, the live Parameter (a loss needs its gradient); otherwise a copy,
    shape (d,): what is computed without gradients is what gets kept as an "old" policy, and it
    must not move with the next optimizer step (issue #14: an aliased old policy reported a KL
    of 0.0 for a +0.5 shift of log std, 0.368 being right). The copy costs ~1 us per call.
    Raises nothing.
    """
    return log_std if torch.is_grad_enabled() else log_std.clone()


def is_image(space: gym.Space) -> bool:
    """3-D Box observations (C, H, W) or (H, W, C): frames, e.g. Atari after preprocessing."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


class NatureCNN(nn.Module):
    """The DQN Nature paper's torso (Mnih et al. 2015): 32 8x8/4, 64 4x4/2, 64 3x3/1 convs,
    then 512 units, ReLU. Pixels are scaled to [0, 1] inside: divided by 255 unless the
    space's bounds already lie within [0, 1] (a float image env; dividing it by 255 too
    left inputs of ~0.004)."""

    def __init__(self, space: gym.Space, features: int = 512, ortho: bool = True):
        super().__init__()
        # The smaller of the first and last axes holds the channels (drlcli.spaces).
        c, h, w, self.channels_last = image_layout(tuple(space.shape or ()))
        high = getattr(space, "high", None)
        in_unit_range = high is not None and bool(np.all(np.asarray(high) <= 1.0))
        self.pixel_scale = 1.0 if in_unit_range else 255.0
        self.convs = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, c, h, w)).shape[1]
        self.fc = layer_init(Linear(n_flat, features), math.sqrt(2), ortho)
        if ortho:
            for m in self.convs:
                if isinstance(m, nn.Conv2d):
                    nn.init.orthogonal_(m.weight, math.sqrt(2))
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        self.out_features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return torch.relu(self.fc(self.convs(x / self.pixel_scale)))


def image_torso(
    space: gym.Space, hidden_sizes: Sequence[int], activation: str, ortho: bool
) -> NatureCNN | CombinedEncoder:
    """The torso for image observations: the Nature-CNN for a whole-image Box, the combined
    encoder (a Nature-CNN per image plus an MLP for the rest; ``drlcli.encoders``) for a Dict /
    Tuple holding images. Its ``out_features`` is the feature width."""
    if image_parts(space):
        from drlcli.encoders import CombinedEncoder  # it builds on this module's classes

        return CombinedEncoder(space, hidden_sizes, activation, ortho)
    return NatureCNN(space, ortho=ortho)


def obs_dim(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box):
        raise DrlError(
            f"Observation space {space} is not supported by the MLP policies: they take a "
            "Box observation space (other spaces reach them as the Box of their encoding, "
            "EnvInfo.observation_space; drlcli.spaces)."
        )
    return int(np.prod(space.shape))


# Every policy head: one interface (sample, mode, sample_and_log_prob, log_prob, entropy, kl).
PolicyHead = CategoricalHead | GaussianHead | MultiCategoricalHead | BernoulliHead


def make_head(action_space: gym.Space) -> PolicyHead:
    """The policy head for ``action_space``: categorical (Discrete), diagonal Gaussian (1-D
    Box), one categorical per entry (1-D MultiDiscrete) or one Bernoulli per bit (1-D
    MultiBinary; ``drlcli.heads``). Raises DrlError for any other space."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(int(action_space.n))
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianHead(int(action_space.shape[0]))
    if isinstance(action_space, gym.spaces.MultiDiscrete) and len(action_space.shape) == 1:
        return MultiCategoricalHead(action_space.nvec.tolist())
    if isinstance(action_space, gym.spaces.MultiBinary) and len(action_space.shape) == 1:
        return BernoulliHead(int(action_space.shape[0]))
    raise DrlError(
        f"Action space {action_space} is not supported: actor-critic policies take "
        "Discrete, 1-D Box, 1-D MultiDiscrete or 1-D MultiBinary action spaces."
    )


class ActorCritic(nn.Module):
    """MLP actor and critic for a Discrete or Box action space, in one of three layouts:

    * ``stacked`` (default): separate actor and critic evaluated as one batched net (fastest);
    * ``separate``: two plain MLPs, for methods that optimize the actor's parameters on their
      own (TRPO's natural gradient, separate actor / critic optimizers);
    * ``shared=True``: one torso with an actor head and a critic head.

    ``use_sde=True`` (Box actions) replaces the state-independent log std with gSDE
    (StateDependentNoise, Raffin et al. 2022): the actor's last hidden layer (B, F) is the
    latent the noise is built from, so a ``stacked`` layout becomes an actor torso
    (in -> hidden, activation after every layer), a linear mean head and a separate critic MLP
    (the same function as the stacked net, evaluated unbatched); shared / image torsos hand
    their features over as they are. Distribution params are then (mean, log_std (B, d),
    latent (B, F)) for SDEGaussianHead; ``num_envs`` sizes the per-env exploration matrices.
    Raises DrlError for gSDE with discrete actions. (With gSDE a ``separate`` layout is built as
    ``sde`` too: its actor and critic are separate networks already.)
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: Sequence[int],
        activation: str = "tanh",
        shared: bool = False,
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        layout: str = "stacked",
        use_sde: bool = False,
        num_envs: int = 1,
        sde_sample_freq: int = -1,
        full_std: bool = True,
        use_expln: bool = False,
    ):
        super().__init__()
        self.head: PolicyHead = make_head(action_space)
        self.continuous = isinstance(self.head, GaussianHead)
        self.use_sde = use_sde
        check_sde_action_space(self, action_space)
        out = self.head.param_dim
        self.out_dim = out
        # Images: a whole-image Box, or images inside a Dict / Tuple (drlcli.spaces.EncodedBox).
        self.image = is_image(observation_space) or bool(image_parts(observation_space))
        if self.image and layout == "separate":
            raise DrlError(
                f"Image observations {observation_space.shape} get a shared Nature-CNN torso, "
                "which this algorithm (separate actor and critic networks) cannot use; train "
                "on images with ppo or a2c."
            )
        self.shared = shared or self.image
        self.layout = "shared" if self.shared else layout
        if self.image:
            # Atari convention (Mnih et al. 2015; PPO paper): one CNN torso, two linear heads.
            torso = image_torso(observation_space, hidden_sizes, activation, ortho_init)
            feats = torso.out_features
            self.torso: nn.Module = torso
            self.actor_out = layer_init(nn.Linear(feats, out), 0.01, ortho_init)
            self.critic_out = layer_init(nn.Linear(feats, 1), 1.0, ortho_init)
        elif self.layout == "shared":
            in_dim = obs_dim(observation_space)
            self.torso = mlp(in_dim, hidden_sizes, None, activation, ortho=ortho_init)
            last = self.torso.out_features
            self.actor_out = layer_init(nn.Linear(last, out), 0.01, ortho_init)
            self.critic_out = layer_init(nn.Linear(last, 1), 1.0, ortho_init)
        elif self.layout == "separate" and not use_sde:
            in_dim = obs_dim(observation_space)
            self.actor = mlp(in_dim, hidden_sizes, out, activation, 0.01, ortho_init)
            self.critic = mlp(in_dim, hidden_sizes, 1, activation, 1.0, ortho_init)
        elif self.layout in ("stacked", "separate") and use_sde:
            # gSDE needs the actor's last hidden layer: an unstacked actor torso + mean head,
            # and a critic of its own (so "separate" already: TRPO's natural step moves
            # actor_parameters() alone).
            self.layout = "sde"
            in_dim = obs_dim(observation_space)
            self.actor_torso = mlp(in_dim, hidden_sizes, None, activation, ortho=ortho_init)
            last = self.actor_torso.out_features
            self.actor_out = layer_init(nn.Linear(last, out), 0.01, ortho_init)
            self.critic = mlp(in_dim, hidden_sizes, 1, activation, 1.0, ortho_init)
        elif self.layout == "stacked":
            in_dim = obs_dim(observation_space)
            # Separate actor (net 0, small output gain 0.01) and critic (net 1, gain 1).
            self.nets = StackedMLP(
                2, in_dim, hidden_sizes, [out, 1], activation, [0.01, 1.0], ortho_init
            )
        else:
            raise DrlError(f"Unknown network layout '{layout}': stacked, separate or shared.")
        if use_sde:
            latent_dim = self.actor_out.in_features
            self.sde = StateDependentNoise(
                latent_dim, out, num_envs, log_std_init, full_std, use_expln, sde_sample_freq
            )
            self.head = SDEGaussianHead(out, self.sde)
        elif self.continuous:
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))

    def actor_parameters(self) -> list[nn.Parameter]:
        """The policy's own parameters (``separate`` layout): actor MLP and log std; with gSDE
        (layout ``sde``) the actor torso, the mean head and gSDE's log std (F, d) or (F, 1)."""
        if self.layout == "sde":
            return [
                *self.actor_torso.parameters(),
                *self.actor_out.parameters(),
                *self.sde.parameters(),
            ]
        if self.layout != "separate":
            raise DrlError("actor_parameters() needs the 'separate' network layout.")
        extra = [self.log_std] if self.continuous else []
        return [*self.actor.parameters(), *extra]

    def critic_parameters(self) -> list[nn.Parameter]:
        if self.layout not in ("separate", "sde"):
            raise DrlError("critic_parameters() needs the 'separate' network layout.")
        return list(self.critic.parameters())

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        if self.image:
            return obs
        return obs.reshape(obs.shape[0], -1) if obs.dim() > 2 else obs

    def _params(self, out: torch.Tensor) -> DistParams:
        return (out, live_or_copy(self.log_std)) if self.continuous else out

    def _sde_params(self, latent: torch.Tensor) -> DistParams:
        """(mean (B, d), log_std (B, d), latent (B, F)) from the actor's features; the latent
        is detached (SB3's learn_features=False: the features learn from the mean only)."""
        z = latent.detach()
        return self.actor_out(latent), self.sde.log_std_of(z), z

    def action_std(self, obs: torch.Tensor) -> float:
        """Mean std of the action distribution over ``obs`` (B, ...), for logging."""
        with torch.no_grad():
            if self.use_sde:
                return float(self.dist(obs)[1].exp().mean())
            return float(self.log_std.exp().mean())

    def reset_noise(self) -> None:
        """gSDE: draw new exploration matrices (the start of a rollout); else nothing."""
        if self.use_sde:
            self.sde.resample()

    def dist_and_value(self, obs: torch.Tensor) -> tuple[DistParams, torch.Tensor]:
        """Policy parameters and state value (B,) in one pass."""
        x = self._flat(obs)
        if self.layout == "shared":
            h = self.torso(x)
            if self.use_sde:
                return self._sde_params(h), self.critic_out(h).squeeze(-1)
            return self._params(self.actor_out(h)), self.critic_out(h).squeeze(-1)
        if self.layout == "sde":
            return self._sde_params(self.actor_torso(x)), self.critic(x).squeeze(-1)
        if self.layout == "separate":
            return self._params(self.actor(x)), self.critic(x).squeeze(-1)
        actor_out, critic_out = self.nets(x)
        return self._params(actor_out), critic_out.squeeze(-1)

    def dist(self, obs: torch.Tensor) -> DistParams:
        x = self._flat(obs)
        if self.layout == "shared":
            if self.use_sde:
                return self._sde_params(self.torso(x))
            return self._params(self.actor_out(self.torso(x)))
        if self.layout == "sde":
            return self._sde_params(self.actor_torso(x))
        if self.layout == "separate":
            return self._params(self.actor(x))
        return self._params(self.nets.forward_one(x, 0))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        x = self._flat(obs)
        if self.layout == "shared":
            return self.critic_out(self.torso(x)).squeeze(-1)
        if self.layout in ("separate", "sde"):
            return self.critic(x).squeeze(-1)
        return self.nets.forward_one(x, 1).squeeze(-1)


class RecurrentActorCritic(nn.Module):
    """MLP encoder -> GRU or LSTM core -> linear actor and critic heads.

    The recurrent state is a tensor (num_layers=1) of shape (B, H) for a GRU, and the pair
    (h, c) stacked as (2, B, H) for an LSTM, so every state is one tensor. ``step`` advances one
    time step; ``unroll`` replays a (T, B) sequence from a stored initial state, zeroing the state
    wherever an episode began (``starts[t]`` true: s_t is the first observation of an episode).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: Sequence[int],
        activation: str = "tanh",
        rnn_type: str = "gru",
        rnn_hidden: int = 64,
        ortho_init: bool = True,
        log_std_init: float = 0.0,
    ):
        super().__init__()
        if rnn_type not in ("gru", "lstm"):
            raise DrlError(f"Unknown algo.rnn_type '{rnn_type}'. Valid choices: gru, lstm.")
        if is_image(observation_space) or image_parts(observation_space):
            raise DrlError(
                f"The recurrent policy takes vector observations, not images "
                f"{observation_space.shape}; use algo=ppo (frame stacking gives it memory)."
            )
        in_dim = obs_dim(observation_space)
        self.head: PolicyHead = make_head(action_space)
        self.continuous = isinstance(self.head, GaussianHead)
        self.rnn_type = rnn_type
        self.rnn_hidden = rnn_hidden
        self.encoder = mlp(in_dim, hidden_sizes, None, activation, ortho=ortho_init)
        enc = self.encoder.out_features if hidden_sizes else in_dim
        cell = nn.GRUCell if rnn_type == "gru" else nn.LSTMCell
        self.cell = cell(enc, rnn_hidden)
        if ortho_init:
            for name, p in self.cell.named_parameters():
                if "weight" in name:
                    nn.init.orthogonal_(p, 1.0)
                else:
                    nn.init.zeros_(p)
        out = self.head.param_dim
        self.actor_out = layer_init(nn.Linear(rnn_hidden, out), 0.01, ortho_init)
        self.critic_out = layer_init(nn.Linear(rnn_hidden, 1), 1.0, ortho_init)
        if self.continuous:
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        shape = (batch, self.rnn_hidden) if self.rnn_type == "gru" else (2, batch, self.rnn_hidden)
        return torch.zeros(shape, device=device)

    def _core(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rnn_type == "gru":
            h = self.cell(x, state)
            return h, h
        h, c = self.cell(x, (state[0], state[1]))
        return h, torch.stack((h, c))

    def _outputs(self, h: torch.Tensor) -> tuple[DistParams, torch.Tensor]:
        logits = self.actor_out(h)
        params = (logits, live_or_copy(self.log_std)) if self.continuous else logits
        return params, self.critic_out(h).squeeze(-1)

    @staticmethod
    def _mask(state: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Zero the state of every env whose episode begins at this step."""
        keep = (~start).to(state.dtype).unsqueeze(-1)
        return state * keep

    def step(
        self, obs: torch.Tensor, state: torch.Tensor, start: torch.Tensor
    ) -> tuple[DistParams, torch.Tensor, torch.Tensor]:
        """One step for a batch: (policy params, value (B,), next state)."""
        h, state = self._core(self.encoder(obs.reshape(obs.shape[0], -1)), self._mask(state, start))
        params, value = self._outputs(h)
        return params, value, state

    def unroll(
        self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor
    ) -> tuple[DistParams, torch.Tensor]:
        """(T, B, *obs) sequences from ``state`` -> policy params and values, flattened (T*B)."""
        t, b = obs.shape[:2]
        x = self.encoder(obs.reshape(t * b, -1)).reshape(t, b, -1)  # encoder batched over time
        hs = []
        for i in range(t):
            h, state = self._core(x[i], self._mask(state, starts[i]))
            hs.append(h)
        return self._outputs(torch.cat(hs))
