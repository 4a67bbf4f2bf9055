"""Reparameterized and conditional samplers for Bernoulli and categorical variables (DESIGN §3).

Every sampler takes its noise as an argument, so a caller (an RL rollout buffer, a test) can draw
u, v once, store them and replay them. Uniform noise must lie strictly inside (0, 1): use
:func:`uniform_noise`.

Bernoulli (logit α, θ = sigmoid(α)):
    z = α + log u − log(1 − u),  b = 1[z > 0]
    z̃ ~ p(z | b) through v' = 1 − θ(1 − v) (b = 1) or v' = v(1 − θ) (b = 0),  z̃ = α + logit(v')
Categorical (ℓ = log_softmax(α), p = exp ℓ), Gumbel-max:
    z_k = ℓ_k − log(−log u_k),  b = argmax_k z_k
    z̃_b = −log(−log v_b),  z̃_k = −log(−log(v_k)/p_k − log v_b)  (k ≠ b)
z̃ stays differentiable in the parameters: that path is what makes REBAR and RELAX unbiased.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "uniform_noise",
    "bernoulli_sample",
    "bernoulli_conditional",
    "bernoulli_common_noise",
    "bernoulli_log_prob",
    "categorical_sample",
    "categorical_conditional",
    "categorical_common_noise",
    "categorical_log_prob",
]


def _open_interval_eps(dtype: torch.dtype) -> float:
    # float32 cannot represent 1 - 1e-7; keep both ends a few ulps away from 0 and 1.
    return 1e-6 if dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-12


def _clamp_open(x: torch.Tensor) -> torch.Tensor:
    eps = _open_interval_eps(x.dtype)
    return x.clamp(eps, 1.0 - eps)


def uniform_noise(
    shape: torch.Size | tuple[int, ...],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """U(0, 1) noise clamped to the open interval, so logit(u) and log(−log u) stay finite."""
    return _clamp_open(torch.rand(shape, dtype=dtype, device=device, generator=generator))


# --------------------------------------------------------------------------------------------
# Bernoulli
# --------------------------------------------------------------------------------------------
def bernoulli_sample(logits: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterized z = α + log u − log(1 − u) and the hard sample b = 1[z > 0] (float 0/1)."""
    z = logits + torch.log(u) - torch.log1p(-u)
    return z, (z > 0).to(logits.dtype)


def bernoulli_conditional(logits: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """z̃ ~ p(z | b), differentiable in the logits.

    With θ = sigmoid(α), z̃ = α + log v' − log(1 − v') simplifies to
        b = 1:  z̃ = log(1 − θ(1 − v)) − log(1 − θ) − log(1 − v)
        b = 0:  z̃ = log θ + log v − log(1 − v(1 − θ))
    which avoids forming v' (and its round-off) explicitly.
    """
    theta = torch.sigmoid(logits)
    z_one = torch.log1p(-theta * (1 - v)) - F.logsigmoid(-logits) - torch.log1p(-v)
    z_zero = F.logsigmoid(logits) + torch.log(v) - torch.log1p(-v * (1 - theta))
    return torch.where(b > 0.5, z_one, z_zero)


def bernoulli_common_noise(logits: torch.Tensor, u: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The v that makes :func:`bernoulli_conditional` reproduce z(u) given b (detached).

    v = (u − (1 − θ)) / θ if b = 1, v = u / (1 − θ) if b = 0. Given b this v is uniform, so z̃ built
    from it is still an exact sample of p(z | b) (common random numbers, DESIGN §3).
    """
    with torch.no_grad():
        theta = torch.sigmoid(logits)
        v_one = 1 - (1 - u) / theta
        v_zero = u / (1 - theta)
        return _clamp_open(torch.where(b > 0.5, v_one, v_zero))


def bernoulli_log_prob(logits: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise log p_θ(b) = b log θ + (1 − b) log(1 − θ)."""
    return b * F.logsigmoid(logits) + (1 - b) * F.logsigmoid(-logits)


# --------------------------------------------------------------------------------------------
# Categorical
# --------------------------------------------------------------------------------------------
def categorical_sample(logits: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-max: z = log_softmax(α) − log(−log u) and the class index b = argmax z (int64)."""
    z = torch.log_softmax(logits, dim=-1) - torch.log(-torch.log(u))
    return z, z.argmax(dim=-1)


def categorical_conditional(logits: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """z̃ ~ p(z | b) for Gumbel-max, differentiable in the logits.

    With E = −log v (exponential noise): z̃_b = −log E_b and, for k ≠ b,
    z̃_k = −log(E_k / p_k + E_b) = −logaddexp(log E_k − ℓ_k, log E_b): a Gumbel(ℓ_k) truncated
    below z̃_b. z̃_b carries no ℓ term because the maximum of the Gumbels is Gumbel(logsumexp ℓ = 0).
    """
    log_p = torch.log_softmax(logits, dim=-1)
    log_e = torch.log(-torch.log(v))
    index = b.unsqueeze(-1)
    log_e_top = log_e.gather(-1, index)
    z_tilde = -torch.logaddexp(log_e - log_p, log_e_top)
    return z_tilde.scatter(-1, index, -log_e_top)


def categorical_common_noise(logits: torch.Tensor, u: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The v that makes :func:`categorical_conditional` reproduce z(u) given b (detached).

    From z: E_b = exp(−z_b) and E_k = p_k (exp(−z_k) − exp(−z_b)); v = exp(−E).
    """
    with torch.no_grad():
        z, _ = categorical_sample(logits, u)
        log_p = torch.log_softmax(logits, dim=-1)
        index = b.unsqueeze(-1)
        z_top = z.gather(-1, index)
        gap = (z - z_top).clamp(max=-1e-30 if z.dtype == torch.float64 else -1e-12)
        e_other = torch.exp(log_p - z) * -torch.expm1(gap)
        e = e_other.scatter(-1, index, torch.exp(-z_top))
        return _clamp_open(torch.exp(-e))


def categorical_log_prob(logits: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log p_θ(b) for class indices b (shape = logits.shape[:-1])."""
    return torch.log_softmax(logits, dim=-1).gather(-1, b.unsqueeze(-1)).squeeze(-1)
