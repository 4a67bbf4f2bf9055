"""The encoder-gradient estimators of the VAE experiment, built from :mod:`relax_rl.estimators`.

- ``reinforce``: ĝ = (f(b) − c) ∇_θ log q(b|x), c ≡ 0 (``baseline="none"``), a learned scalar
  (``"constant"``) or NVIL-style c_φ(x) = c_0 + MLP_φ(x − E[x]) (``"nvil"``), every φ trained on the
  variance objective.
- ``rebar``: c(z) = η · f(σ_λ(z)), η and λ learned.
- ``relax``: c(z) = r_φ(2σ_λ(z) − 1), r_φ an MLP whose output scale starts at 0.
- ``relaxed-rebar``: c(z) = η · f(σ_λ(z)) + r_φ(2σ_λ(z) − 1).

:func:`layer_surrogate` is the estimators' forward pass with f split in two: ``f_hard`` at the hard
sample and ``f_relaxed`` at the relaxed ones. The two-layer model needs it (layer 1's f samples layer 2
hard at a hard b₁ and relaxes through it at a relaxed one, see :mod:`vae.train`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from relax_rl import REBAR, REINFORCE, RELAX
from relax_rl.estimators import relax_surrogate

BlackBox = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["ESTIMATORS", "BASELINES", "InputBaselineREINFORCE", "layer_surrogate", "make_estimator"]

ESTIMATORS = ("reinforce", "rebar", "relax", "relaxed-rebar")
BASELINES = ("none", "constant", "nvil")


class InputBaselineREINFORCE(REINFORCE):
    """REINFORCE with an input-dependent baseline c_φ(x) = c_0 + MLP_φ(x) (NVIL, Mnih & Gregor 2014).

    The estimators' control variates see only the relaxed sample, so the input x is handed over
    through :attr:`context` (set it before every call; it is per sample, ``[..., num_pixels]``).
    c_φ(x) does not depend on θ, so REINFORCE stays unbiased.
    """

    def __init__(self, num_pixels: int, hidden: int = 100) -> None:
        super().__init__("bernoulli", baseline="learned")
        self.net = nn.Sequential(nn.Linear(num_pixels, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.context: torch.Tensor | None = None

    def control_variate(self, z: torch.Tensor, f: BlackBox, batch_ndim: int) -> torch.Tensor:
        if self.context is None:
            raise RuntimeError("set InputBaselineREINFORCE.context to the encoder's input before calling it")
        return self.baseline + self.net(self.context).squeeze(-1)


def make_estimator(
    name: str,
    num_latents: int,
    num_pixels: int,
    baseline: str = "constant",
    cv_hidden: int = 100,
    temperature: float = 0.5,
    common_random_numbers: bool = True,
) -> nn.Module:
    """One estimator for a stochastic layer of ``num_latents`` Bernoulli units.

    ``num_pixels`` is the size of the layer's input (x for layer 1, b_{l−1} above it): the input of the
    NVIL baseline."""
    if name == "reinforce":
        if baseline == "nvil":
            return InputBaselineREINFORCE(num_pixels, cv_hidden)
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; supported: {', '.join(BASELINES)}")
        return REINFORCE("bernoulli", baseline="learned" if baseline == "constant" else None)
    if name == "rebar":
        return REBAR("bernoulli", temperature=temperature, common_random_numbers=common_random_numbers)
    if name in ("relax", "relaxed-rebar"):
        return RELAX("bernoulli", num_inputs=num_latents, hidden_sizes=(cv_hidden,), mode=name,
                     temperature=temperature, common_random_numbers=common_random_numbers)
    raise ValueError(f"unknown estimator {name!r}; supported: {', '.join(ESTIMATORS)}")


def layer_surrogate(
    estimator: nn.Module, logits: torch.Tensor, f_hard: BlackBox, f_relaxed: BlackBox,
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample surrogate S, hard sample b) for Bernoulli ``logits`` ``[N, n]``, with f split in two.

    The same computation as the forward pass of :mod:`relax_rl.estimators` (``estimator(logits, f,
    noise)``; a test checks that they agree when ``f_hard is f_relaxed``), except that f(b) at the hard
    sample is ``f_hard`` and every relaxed evaluation inside c_φ is ``f_relaxed``. The estimate stays
    unbiased as long as f_relaxed is one fixed differentiable function during the call (it may hold
    noise of its own, drawn independently of θ) and E[f_hard(b) | b] is the objective at b.
    """
    family = estimator.family
    u, v = family.draw_noise(logits) if noise is None else noise
    z, b = family.sample(logits, u)
    with torch.no_grad():
        f_b = f_hard(b)
    log_prob = family.log_prob(logits, b).sum(-1)
    if not estimator.uses_conditional:
        c = estimator.control_variate(z, f_relaxed, f_b.dim())
        return relax_surrogate(log_prob, f_b, c, c, c), b
    if estimator.common_random_numbers:
        v = family.common_noise(logits, u, b)
    z_tilde = family.conditional(logits, b, v)
    c_z = estimator.control_variate(z, f_relaxed, f_b.dim())
    c_z_tilde = estimator.control_variate(z_tilde, f_relaxed, f_b.dim())
    c_z_tilde_cut = estimator.control_variate(z_tilde.detach(), f_relaxed, f_b.dim())
    return relax_surrogate(log_prob, f_b, c_z, c_z_tilde, c_z_tilde_cut), b
