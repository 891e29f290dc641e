"""networks.linear's oneDNN path (hardware.cpu_linear) against torch's F.linear: values, first
and second derivatives, which layers take it, and how ``auto`` resolves."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from drlcli import cli, hardware, networks
from drlcli.config import HardwareConfig, to_train_config
from drlcli.errors import DrlError
from drlcli.networks import MLP, StackedMLP, linear

pytestmark = pytest.mark.skipif(
    not networks.onednn_linear_available(), reason="this torch build has no oneDNN"
)


@pytest.fixture
def counted(monkeypatch):
    """Counts the products that go through oneDNN."""
    calls = []
    real = networks._OneDNNLinear.apply

    def apply(x, w, b):
        calls.append((tuple(x.shape), tuple(w.shape)))
        return real(x, w, b)

    monkeypatch.setattr(networks._OneDNNLinear, "apply", apply)
    return calls


def both(fn):
    """fn() with oneDNN off, then on."""
    networks.set_onednn_linear(False)
    ref = fn()
    networks.set_onednn_linear(True)
    try:
        return ref, fn()
    finally:
        networks.set_onednn_linear(False)


@pytest.mark.parametrize(
    "x_shape, w_shape, bias",
    [
        ((256, 256), (256, 256), True),
        ((100, 400), (300, 400), True),
        ((4, 64, 256), (256, 256), False),
    ],
)
def test_linear_matches_f_linear_values_and_gradients(x_shape, w_shape, bias, counted):
    torch.manual_seed(0)
    x = torch.randn(x_shape, requires_grad=True)
    w = torch.randn(w_shape, requires_grad=True)
    b = torch.randn(w_shape[0], requires_grad=True) if bias else None
    g = torch.randn(*x_shape[:-1], w_shape[0])

    def fwd_bwd():
        y = linear(x, w, b)
        grads = torch.autograd.grad(y, [x, w] + ([b] if bias else []), g)
        return [y.detach(), *grads]

    ref, got = both(fwd_bwd)
    assert counted, "the oneDNN path was not taken"
    for r, v in zip(ref, got):
        torch.testing.assert_close(v, r, rtol=1e-4, atol=1e-3)


def hvp(loss, params, v):
    grads = torch.autograd.grad(loss(), params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    return torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat @ v, params)])


def test_wide_mlp_hessian_vector_products_match_f_linear(counted):
    """TRPO / NPG run double backward through the actor: a 256x256 actor at a 512-sample batch
    takes the oneDNN path, whose backward is itself differentiable."""
    torch.manual_seed(1)
    net = MLP(6, [256, 256], 3, "tanh")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(512, 6)
    params = list(net.parameters())
    v = torch.randn(sum(p.numel() for p in params))
    ref, got = both(lambda: hvp(lambda: torch.log_softmax(net(x), -1)[:, 1].sum(), params, v))
    assert counted
    torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-3)
    assert (got - ref).norm() / ref.norm() < 1e-4


def test_stacked_critics_match_the_batched_path(counted):
    """SAC's twin 256x256 critics at batch 256: outputs, parameter gradients and the
    input-gradient's derivative (the actor's loss goes through the critics' action input)."""
    torch.manual_seed(2)
    net = StackedMLP(2, 7, [256, 256], [1, 1], "relu", ortho=False)
    x = torch.randn(256, 7, requires_grad=True)

    def run():
        q1, q2 = net(x)
        loss = (q1 - 1.0).pow(2).mean() + (q2 + 1.0).pow(2).mean()
        grads = torch.autograd.grad(loss, [*net.parameters(), x], create_graph=True)
        (hx,) = torch.autograd.grad(grads[-1].pow(2).sum(), x)
        return [q1.detach(), q2.detach(), *(g.detach() for g in grads), hx]

    ref, got = both(run)
    assert counted
    for r, v in zip(ref, got):
        torch.testing.assert_close(v, r, rtol=1e-4, atol=1e-4)


def test_small_or_other_layers_keep_f_linear(counted):
    networks.set_onednn_linear(True)
    w = torch.randn(64, 64)
    linear(torch.randn(256, 64), w)  # PPO's 64-unit layers: 1M multiply-adds
    linear(torch.randn(4096, 256), torch.randn(1, 256))  # narrow: a critic's output layer
    linear(torch.randn(8, 256), torch.randn(256, 256))  # acting: a small batch
    linear(torch.randn(256, 256, dtype=torch.float64), torch.randn(256, 256, dtype=torch.float64))
    assert linear(torch.randn(300, 256), torch.randn(256)).shape == (300,)  # F.linear's 1-D weight
    assert counted == []
    linear(torch.randn(256, 256), torch.randn(256, 256))
    assert len(counted) == 1
    # Under torch.compile the traced graph holds F.linear (inductor picks its own kernels).
    compiled = torch.compile(lambda a, b: linear(a, b), backend="eager", fullgraph=True)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    torch.testing.assert_close(compiled(a, b), F.linear(a, b))
    assert len(counted) == 1


@pytest.mark.parametrize(
    "vendor, flags, device, compile_mode, setting, expected",
    [
        ("AuthenticAMD", {"avx2", "avx512f"}, "cpu", "none", "auto", "onednn"),
        ("AuthenticAMD", {"avx2"}, "cpu", "none", "auto", "aten"),  # Zen 2/3: both AVX2
        ("GenuineIntel", {"avx2", "avx512f"}, "cpu", "none", "auto", "aten"),
        ("", set(), "cpu", "none", "auto", "aten"),  # not Linux: cannot tell
        ("AuthenticAMD", {"avx512f"}, "cuda", "none", "auto", "aten"),
        ("AuthenticAMD", {"avx512f"}, "cuda", "none", "onednn", "aten"),  # layers on the GPU
        ("AuthenticAMD", {"avx512f"}, "cpu", "default", "auto", "aten"),
        ("AuthenticAMD", {"avx512f"}, "cpu", "none", "aten", "aten"),
        ("GenuineIntel", {"avx512f"}, "cpu", "none", "onednn", "onednn"),
    ],
)
def test_auto_resolves_by_cpu(monkeypatch, vendor, flags, device, compile_mode, setting, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: (vendor, flags))
    cfg = HardwareConfig(cpu_linear=setting, compile=compile_mode)
    assert hardware.resolve_cpu_linear(cfg, torch.device(device)) == expected


def test_cpu_flags_reads_this_machine():
    vendor, flags = hardware.cpu_flags()
    if vendor:  # Linux
        assert flags, "a vendor without flags: /proc/cpuinfo was misread"


def test_run_says_what_it_chose(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: ("AuthenticAMD", {"avx512f"}))
    _, resolved = hardware.setup(HardwareConfig(), seed=0)
    assert resolved.cpu_linear == "onednn" and networks.onednn_linear_enabled()
    assert any("hardware.cpu_linear=auto" in note for note in resolved.notes)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: ("GenuineIntel", {"avx512f"}))
    _, resolved = hardware.setup(HardwareConfig(), seed=0)
    assert resolved.cpu_linear == "aten" and not networks.onednn_linear_enabled()
    assert not any("cpu_linear" in note for note in resolved.notes)
    _, resolved = hardware.setup(HardwareConfig(cpu_linear="onednn", compile="default"), seed=0)
    assert resolved.cpu_linear == "onednn"
    assert any("compiled loss functions use inductor" in note for note in resolved.notes)


def test_unknown_cpu_linear_fails_before_any_run_dir(tmp_path):
    message = r"Unknown hardware.cpu_linear 'mkl'. Valid choices: auto, onednn, aten"
    overrides = ["hardware.cpu_linear=mkl"]
    with pytest.raises(DrlError, match=message):
        cli.preflight(cli._compose(overrides))
    from drlcli.runner import train

    with pytest.raises(DrlError, match=message):
        train(to_train_config(cli._compose([*overrides, "total_timesteps=64"])), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_any_bias_layout_gives_f_linears_values(counted):
    """oneDNN reads its bias as dense memory: a strided view gave wrong sums, an expanded one
    NaN (issue #15 review). Strided and expanded biases are made contiguous; broadcastable
    shapes F.linear accepts, such as (1, out), stay with F.linear."""
    networks.set_onednn_linear(True)
    x, w = torch.randn(256, 256), torch.randn(256, 256)
    biases = [
        torch.randn(512)[::2],
        torch.randn(256, 2)[:, 0],
        torch.tensor(1.5).expand(256),
        torch.randn(1, 256),
        torch.randn(1),
    ]
    for b in biases:
        torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), rtol=1e-4, atol=1e-3)
    assert len(counted) == 3


def test_wrong_shapes_get_f_linears_errors():
    networks.set_onednn_linear(True)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        linear(torch.randn(256, 512), torch.randn(256, 256))
    with pytest.raises(RuntimeError):
        linear(torch.randn(256, 256), torch.randn(256, 256), torch.randn(300))


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torch_func_forward_ad_autocast_and_tracing_work(counted):
    networks.set_onednn_linear(True)
    torch.manual_seed(5)
    net = MLP(8, [256, 256], 1, "relu")
    x = torch.randn(256, 8)
    params = dict(net.named_parameters())

    def loss(p):
        return torch.func.functional_call(net, p, (x,)).sum()

    grads = torch.func.grad(loss)(params)  # torch.func transforms: F.linear
    assert counted == []
    reference = torch.autograd.grad(net(x).sum(), list(params.values()))
    assert counted  # the plain call took oneDNN
    for g, r in zip(grads.values(), reference):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)
    per_sample = torch.func.vmap(lambda row: net(row.unsqueeze(0)))(x[:4])
    assert per_sample.shape == (4, 1, 1)
    # Forward-mode AD through the oneDNN function: its jvp against F.linear's.
    w, b = torch.randn(256, 256), torch.randn(256)
    tangent = torch.randn(256, 256)
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        got = fwAD.unpack_dual(linear(fwAD.make_dual(x.new_ones(256, 256), tangent), w, b))
    with fwAD.dual_level():
        ref = fwAD.unpack_dual(F.linear(fwAD.make_dual(x.new_ones(256, 256), tangent), w, b))
    torch.testing.assert_close(got.tangent, ref.tangent, rtol=1e-4, atol=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(torch.randn(256, 256), w, b).dtype == torch.bfloat16
    traced = torch.jit.trace(net, x, check_trace=False)
    torch.testing.assert_close(traced(x), net(x), rtol=1e-4, atol=1e-4)


def test_in_process_train_leaves_the_setting_as_it_found_it(tmp_path, monkeypatch):
    """An API user's code after drlcli.runner.train() gets torch's default again."""
    from drlcli.runner import train

    monkeypatch.setattr(hardware, "cpu_flags", lambda: ("AuthenticAMD", {"avx512f"}))
    cfg = to_train_config(
        cli._compose(["algo=ppo", "total_timesteps=256", "algo.num_steps=64", "log.progress=none"])
    )
    train(cfg, tmp_path / "r")
    assert not networks.onednn_linear_enabled()
    info = (tmp_path / "r" / "run_info.json").read_text()
    assert '"cpu_linear": "onednn"' in info


def test_drl_eval_reproduces_the_runs_final_evaluation_with_onednn(tmp_path, monkeypatch):
    """drl eval uses the run's hardware.cpu_linear: a wide actor evaluated on 10 envs at once
    (10 x 1024 x 1024 multiply-adds per layer: oneDNN) gives the run's own final return to the
    last digit, and torch's default is back afterwards."""
    from drlcli.evaluation import run_eval
    from drlcli.runner import train

    monkeypatch.setattr(hardware, "cpu_flags", lambda: ("AuthenticAMD", {"avx512f"}))
    overrides = [
        "algo=sac",
        "env=pendulum",
        "algo.hidden_sizes=[1024,1024]",
        "algo.learning_starts=100",
        "algo.batch_size=16",
        "total_timesteps=160",
        "eval.every=0",
        "eval.episodes=10",
        "env.max_episode_steps=20",
        "log.progress=none",
        "hardware.torch_threads=1",
    ]
    result = train(to_train_config(cli._compose(overrides)), tmp_path)
    report = run_eval(tmp_path)
    assert report.mean_return == result.eval_mean_return
    assert not networks.onednn_linear_enabled()
