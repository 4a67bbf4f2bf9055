"""Small problems with exact gradients, shared by the estimator tests."""

from __future__ import annotations

import itertools

import torch

from relax_rl import sample_gradients, samplers, variance_loss

DTYPE = torch.float64
BERNOULLI_LOGITS = torch.tensor([0.3, -1.0, 1.5], dtype=DTYPE)
CATEGORICAL_LOGITS = torch.tensor([[0.2, -0.5, 1.0, 0.0], [1.0, 0.3, -0.4, 0.2]], dtype=DTYPE)
_W = torch.tensor([1.0, -2.0, 0.5], dtype=DTYPE)
_VALUES = torch.tensor([1.0, 3.0, -2.0, 0.5], dtype=DTYPE)


def bernoulli_smooth(b: torch.Tensor) -> torch.Tensor:
    """Weighted squared distance plus an interaction: f([..., 3]) -> [...]."""
    return ((b - 0.45) ** 2 * _W).sum(-1) + b[..., 0] * b[..., 1]


def bernoulli_nonsmooth(b: torch.Tensor) -> torch.Tensor:
    """Kinks: continuous but not differentiable at relaxed inputs (REBAR needs f continuous there)."""
    return (b @ _W - 0.2).abs() + torch.relu(b.sum(-1) - 1.5)


def bernoulli_step(b: torch.Tensor) -> torch.Tensor:
    """A discontinuous f: fine for black-box estimators, biased for REBAR (f(σ_λ(z)) has a jump)."""
    return (b @ _W - 0.2).abs() + (b.sum(-1) > 1.5).to(b.dtype)


def categorical_smooth(b: torch.Tensor) -> torch.Tensor:
    """Two categorical variables per sample ([..., 2, 4] one-hot) -> [...]: a joint, coupled f."""
    x = b @ _VALUES
    return x[..., 0] ** 2 - x[..., 0] * x[..., 1]


def categorical_nonsmooth(b: torch.Tensor) -> torch.Tensor:
    x = b @ _VALUES
    return (x[..., 0] - x[..., 1]).abs() + torch.relu(x[..., 0] - 0.7)


def categorical_step(b: torch.Tensor) -> torch.Tensor:
    x = b @ _VALUES
    return (x[..., 0] - x[..., 1]).abs() + (x[..., 0] > 0.7).to(b.dtype)


def exact_bernoulli_gradient(f, logits: torch.Tensor) -> torch.Tensor:
    """∇ E[f] by enumerating the 2^n outcomes."""
    leaf = logits.clone().requires_grad_()
    total = 0.0
    for bits in itertools.product([0.0, 1.0], repeat=logits.shape[-1]):
        b = torch.tensor(bits, dtype=logits.dtype)
        total = total + samplers.bernoulli_log_prob(leaf, b).sum().exp() * f(b)
    return torch.autograd.grad(total, leaf)[0]


def exact_categorical_gradient(f, logits: torch.Tensor) -> torch.Tensor:
    """∇ E[f] by enumerating every joint outcome of the independent categoricals in logits [m, K]."""
    leaf = logits.clone().requires_grad_()
    m, k = logits.shape
    eye = torch.eye(k, dtype=logits.dtype)
    total = 0.0
    for idx in itertools.product(range(k), repeat=m):
        index = torch.tensor(idx)
        total = total + samplers.categorical_log_prob(leaf, index).sum().exp() * f(eye[index])
    return torch.autograd.grad(total, leaf)[0]


def gaussian_exact_gradient(mean: torch.Tensor, log_std: torch.Tensor, target: torch.Tensor):
    """f(b) = Σ (b − t)², E f = Σ (μ − t)² + σ²: closed form."""
    m, s = mean.clone().requires_grad_(), log_std.clone().requires_grad_()
    return torch.autograd.grad(((m - target) ** 2 + torch.exp(2 * s)).sum(), [m, s])


def gaussian_step_exact_gradient(mean: torch.Tensor, log_std: torch.Tensor):
    """f(b) = Σ 1[b > 0], E f = Σ Φ(μ/σ): a non-smooth f with a closed form."""
    m, s = mean.clone().requires_grad_(), log_std.clone().requires_grad_()
    normal = torch.distributions.Normal(torch.zeros((), dtype=mean.dtype), torch.ones((), dtype=mean.dtype))
    return torch.autograd.grad(normal.cdf(m / s.exp()).sum(), [m, s])


def z_scores(estimates: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """(mean − exact) / standard error, per coordinate."""
    n = estimates.shape[0]
    return (estimates.mean(0) - exact) / (estimates.std(0) / n**0.5)


def estimator_variance(estimator, params, f, num_samples: int = 100_000) -> float:
    """Total variance Σ_i Var(ĝ_i) of single-sample estimates."""
    grads = sample_gradients(estimator, params, f, num_samples)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return float(sum(g.var(0).sum() for g in grads))


def train_phi(estimator, params, f, steps: int = 300, batch: int = 32, lr: float = 1e-2, sgd: bool = False) -> None:
    """Train φ on the variance objective ‖ĝ‖² at fixed params (θ never moves); Adam unless ``sgd``."""
    optimizer = (torch.optim.SGD if sgd else torch.optim.Adam)(estimator.parameters(), lr=lr)
    single = isinstance(params, torch.Tensor)
    for _ in range(steps):
        leaves = [p.clone().requires_grad_() for p in ((params,) if single else params)]
        batched = [p.unsqueeze(0).expand(batch, *p.shape) for p in leaves]
        surrogate, _ = estimator(batched[0] if single else tuple(batched), f)
        loss, _ = variance_loss(surrogate, leaves)
        optimizer.zero_grad()
        loss.backward(inputs=list(estimator.parameters()))
        optimizer.step()
