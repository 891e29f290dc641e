"""GAE and discounted returns against naive per-env loops, with terminations and truncations
mixed mid-rollout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drlcli.returns import discounted_returns, explained_variance, gae


def naive_gae(r, v, nv, term, trunc, gamma, lam):
    T, N = r.shape
    adv = np.zeros((T, N))
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            done = term[t, n] or trunc[t, n]
            # Bootstrap from the true next state unless it is terminal.
            target = r[t, n] + (0.0 if term[t, n] else gamma * nv[t, n])
            delta = target - v[t, n]
            running = delta + (0.0 if done else gamma * lam * running)
            adv[t, n] = running
    return adv


def naive_returns(r, nv, term, trunc, gamma, bootstrap_last):
    T, N = r.shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            # Walk forward from t to the end of the episode or of the rollout.
            g, k, discount = 0.0, t, 1.0
            while True:
                g += discount * r[k, n]
                discount *= gamma
                if term[k, n]:
                    break
                if trunc[k, n]:
                    g += discount * nv[k, n]
                    break
                if k == T - 1:
                    if bootstrap_last:
                        g += discount * nv[k, n]
                    break
                k += 1
            out[t, n] = g
    return out


def random_rollout(seed, T=37, N=5):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(T, N))
    v = rng.normal(size=(T, N))
    nv = rng.normal(size=(T, N))
    term = rng.random((T, N)) < 0.1
    trunc = (rng.random((T, N)) < 0.1) & ~term
    trunc[-1, 0] = True  # truncation on the last step
    term[-1, 1] = True  # termination on the last step
    return r, v, nv, term, trunc


def t(x, dtype=torch.float64):
    return torch.as_tensor(x, dtype=dtype)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.98, 0.0)])
def test_gae_matches_naive_loop(seed, gamma, lam):
    r, v, nv, term, trunc = random_rollout(seed)
    adv, ret = gae(t(r), t(v), t(nv), t(term, torch.bool), t(term | trunc, torch.bool), gamma, lam)
    expected = naive_gae(r, v, nv, term, trunc, gamma, lam)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), expected + v, rtol=1e-10, atol=1e-10)


def test_gae_lambda_one_equals_discounted_return_minus_value():
    r, v, nv, term, trunc = random_rollout(11)
    # Telescoping needs a consistent critic: V(s_{t+1}) is the next row's value inside episodes.
    inside = ~(term | trunc)[:-1]
    nv[:-1][inside] = v[1:][inside]
    adv, _ = gae(t(r), t(v), t(nv), t(term, torch.bool), t(term | trunc, torch.bool), 0.97, 1.0)
    ret = discounted_returns(t(r), t(nv), t(term, torch.bool), t(term | trunc, torch.bool), 0.97)
    np.testing.assert_allclose(adv.numpy(), (ret - t(v)).numpy(), atol=1e-10)


def test_truncation_bootstraps_but_termination_does_not():
    r = t([[1.0], [1.0]])
    v = t([[0.0], [0.0]])
    nv = t([[10.0], [10.0]])
    # Step 0 truncated: target 1 + 0.5 * 10; step 1 terminated: target 1.
    adv, _ = gae(
        r, v, nv, t([[False], [True]], torch.bool), t([[True], [True]], torch.bool), 0.5, 0.9
    )
    assert adv[:, 0].tolist() == [6.0, 1.0]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bootstrap_last", [True, False])
def test_discounted_returns_match_naive_loop(seed, bootstrap_last):
    r, _, nv, term, trunc = random_rollout(seed)
    out = discounted_returns(
        t(r), t(nv), t(term, torch.bool), t(term | trunc, torch.bool), 0.95, bootstrap_last
    )
    expected = naive_returns(r, nv, term, trunc, 0.95, bootstrap_last)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_explained_variance():
    y = torch.arange(10.0)
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(y, y.mean()), y) == pytest.approx(0.0, abs=1e-6)


def test_budget_progress_continues_across_a_budget_change():
    """Issue #16: the schedule clock after a resume with another budget."""
    from drlcli.returns import budget_progress

    assert budget_progress(2500, 10_000) == 0.25
    assert budget_progress(12_000, 10_000) == 1.0
    # Resumed at step 8000 of 10k (p0 = 0.8) with a budget of 20k: no jump, then linear to 1.
    p0 = budget_progress(8000, 10_000)
    assert budget_progress(8000, 20_000, 8000, p0) == pytest.approx(p0)
    assert budget_progress(14_000, 20_000, 8000, p0) == pytest.approx(0.9)
    assert budget_progress(20_000, 20_000, 8000, p0) == pytest.approx(1.0)
    # A shorter budget works the same way, never past 1.
    assert budget_progress(9000, 9000, 8000, p0) == pytest.approx(1.0)
