"""The encoder-gradient estimators of the VAE experiment, built from :mod:`relax_rl.estimators`.

- ``reinforce``: ĝ = (f(b) − c) ∇_θ log q(b|x), c ≡ 0 (``baseline="none"``), a learned scalar
  (``"constant"``) or NVIL-style c_φ(x) = c_0 + MLP_φ(x − E[x]) (``"nvil"``), every φ trained on the
  variance objective.
- ``rebar``: c(z) = η · f(σ_λ(z)), η and λ learned.
- ``relax``: c(z) = r_φ(2σ_λ(z) − 1), r_φ an MLP whose output scale starts at 0.
- ``relaxed-rebar``: c(z) = η · f(σ_λ(z)) + r_φ(2σ_λ(z) − 1).

The two-layer model splits layer 1's f in two (hard at the hard sample, relaxed through layer 2 at the
relaxed ones, see :mod:`vae.train`): the estimators' ``f_relaxed`` argument.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from relax_rl import REBAR, REINFORCE, RELAX

BlackBox = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["ESTIMATORS", "BASELINES", "InputBaselineREINFORCE", "make_estimator"]

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

