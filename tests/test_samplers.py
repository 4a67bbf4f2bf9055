"""The samplers against their definitions: marginals, conditionals, common random numbers, gradients."""

import numpy as np
import pytest
import torch
from scipy import stats

from relax_rl import samplers

N = 40_000


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def _uniform(shape):
    return samplers.uniform_noise(shape, dtype=torch.float64)


def test_uniform_noise_is_open_interval_and_uniform():
    u = samplers.uniform_noise((N,), dtype=torch.float32)
    assert float(u.min()) > 0.0 and float(u.max()) < 1.0
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3


def test_bernoulli_frequencies_match_sigmoid():
    logits = torch.tensor([-2.0, -0.3, 0.0, 1.1, 3.0], dtype=torch.float64)
    _, b = samplers.bernoulli_sample(logits.expand(N, -1), _uniform((N, 5)))
    p = torch.sigmoid(logits)
    se = (p * (1 - p) / N).sqrt()
    assert torch.all((b.mean(0) - p).abs() < 4 * se)


def test_categorical_frequencies_match_softmax():
    logits = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    _, b = samplers.categorical_sample(logits.expand(N, -1), _uniform((N, 4)))
    counts = np.bincount(b.numpy(), minlength=4)
    expected = torch.softmax(logits, -1).numpy() * N
    assert stats.chisquare(counts, expected).pvalue > 1e-3


@pytest.mark.parametrize("common", [False, True])
def test_bernoulli_conditional_matches_z_given_b(common):
    """z̃ ~ p(z | b): for each b, the z̃'s have the law of the z's that produced that b (two-sample KS)."""
    logits = torch.tensor([0.7, -1.5], dtype=torch.float64).expand(N, -1)
    u = _uniform((N, 2))
    z, b = samplers.bernoulli_sample(logits, u)
    v = samplers.bernoulli_common_noise(logits, u, b) if common else _uniform((N, 2))
    z_tilde = samplers.bernoulli_conditional(logits, b, v)
    assert torch.equal(z_tilde > 0, b > 0.5)
    if common:
        torch.testing.assert_close(z_tilde, z)
    else:
        # independent draws of z | b on each side: compare z̃ from one half with z from the other
        half = N // 2
        for k in range(2):
            for value in (0.0, 1.0):
                a = z_tilde[:half, k][b[:half, k] == value].numpy()
                c = z[half:, k][b[half:, k] == value].numpy()
                assert stats.ks_2samp(a, c).pvalue > 1e-3


@pytest.mark.parametrize("common", [False, True])
def test_categorical_conditional_matches_z_given_b(common):
    logits = torch.tensor([0.3, -0.8, 1.2], dtype=torch.float64).expand(N, -1)
    u = _uniform((N, 3))
    z, b = samplers.categorical_sample(logits, u)
    v = samplers.categorical_common_noise(logits, u, b) if common else _uniform((N, 3))
    z_tilde = samplers.categorical_conditional(logits, b, v)
    assert torch.equal(z_tilde.argmax(-1), b)
    if common:
        torch.testing.assert_close(z_tilde, z)
        return
    half = N // 2
    for cls in range(3):
        mask_a, mask_c = b[:half] == cls, b[half:] == cls
        for k in range(3):
            a = z_tilde[:half][mask_a][:, k].numpy()
            c = z[half:][mask_c][:, k].numpy()
            assert stats.ks_2samp(a, c).pvalue > 1e-3, (cls, k)


@pytest.mark.parametrize("family", ["bernoulli", "categorical"])
def test_common_noise_is_uniform_given_b(family):
    """Common random numbers stay exact only if v | b is uniform: check every coordinate."""
    logits = torch.tensor([0.4, -0.9, 0.1], dtype=torch.float64).expand(N, -1)
    u = _uniform((N, 3))
    if family == "bernoulli":
        _, b = samplers.bernoulli_sample(logits, u)
        v = samplers.bernoulli_common_noise(logits, u, b)
        groups = [(b[:, k] == 1, k) for k in range(3)] + [(b[:, k] == 0, k) for k in range(3)]
    else:
        _, b = samplers.categorical_sample(logits, u)
        v = samplers.categorical_common_noise(logits, u, b)
        groups = [(b == cls, k) for cls in range(3) for k in range(3)]
    for mask, k in groups:
        assert stats.kstest(v[mask][:, k].numpy(), "uniform").pvalue > 1e-3


def _finite_difference(fn, logits, h=1e-6):
    grads = []
    for i in range(logits.numel()):
        e = torch.zeros_like(logits)
        e.view(-1)[i] = h
        grads.append(((fn(logits + e) - fn(logits - e)) / (2 * h)).sum())
    return torch.stack(grads).view_as(logits)


@pytest.mark.parametrize("family", ["bernoulli", "categorical"])
def test_conditional_sample_carries_gradient_to_theta(family):
    """∂z̃/∂θ at fixed (b, v) is nonzero and equals the finite difference of the sampler."""
    logits = torch.tensor([0.4, -0.9, 0.1], dtype=torch.float64)
    v = _uniform((3,))
    if family == "bernoulli":
        b = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
        sampler = samplers.bernoulli_conditional
    else:
        b = torch.tensor(2)
        sampler = samplers.categorical_conditional
    weights = torch.tensor([0.7, -1.3, 0.4], dtype=torch.float64)

    def fn(x):
        return (sampler(x, b, v) * weights).sum()

    leaf = logits.clone().requires_grad_()
    (grad,) = torch.autograd.grad(fn(leaf), leaf)
    assert grad.abs().sum() > 1e-3
    torch.testing.assert_close(grad, _finite_difference(fn, logits), rtol=1e-5, atol=1e-7)


def test_log_probs_match_torch_distributions():
    logits = torch.randn(6, 4, dtype=torch.float64)
    b = torch.randint(0, 2, (6, 4)).double()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(b)
    torch.testing.assert_close(samplers.bernoulli_log_prob(logits, b), expected)
    idx = torch.randint(0, 4, (6,))
    expected = torch.distributions.Categorical(logits=logits).log_prob(idx)
    torch.testing.assert_close(samplers.categorical_log_prob(logits, idx), expected)
