"""The discrete distributions the estimators of :mod:`relax_rl.estimators` work with (DESIGN §3, Bernoulli and
Categorical).

A family bundles, for one distribution over b given logits: the reparameterized z(θ, u) with b = H(z), the
conditional z̃ ~ p(z | b) from noise v, the v that reuses u (common random numbers), log p_θ(b), the 0/1 or
one-hot sample handed to f, and the relaxation σ_λ(z) the control variate sees. The math lives in
:mod:`relax_rl.samplers`; a family only routes to it.
"""

from __future__ import annotations

import torch
from torch import nn

from relax_rl import samplers

__all__ = ["BernoulliFamily", "CategoricalFamily", "Noise", "make_family"]

Noise = tuple[torch.Tensor, torch.Tensor]


class _Family:
    """What both families share: the two independent U(0, 1) noise tensors u (for z) and v (for z̃), shaped like
    the logits. A family's ``sample``, ``conditional``, ``common_noise`` and ``log_prob`` are the functions of
    :mod:`relax_rl.samplers` for its distribution."""

    name: str

    def draw_noise(self, logits: torch.Tensor) -> Noise:
        u = samplers.uniform_noise(logits.shape, dtype=logits.dtype, device=logits.device)
        v = samplers.uniform_noise(logits.shape, dtype=logits.dtype, device=logits.device)
        return u, v


class BernoulliFamily(_Family):
    """Independent Bernoulli variables; the last dimension of the logits indexes them."""

    name = "bernoulli"
    sample = staticmethod(samplers.bernoulli_sample)
    conditional = staticmethod(samplers.bernoulli_conditional)
    common_noise = staticmethod(samplers.bernoulli_common_noise)
    log_prob = staticmethod(samplers.bernoulli_log_prob)

    def hard(self, b: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The sample handed to f: float 0/1, shaped like the logits."""
        return b

    def relax(self, z: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """σ(z/λ): the continuous relaxation of H(z)."""
        return torch.sigmoid(z / temperature)

    def network_input(self, z: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """2σ(z/λ) − 1 ∈ (−1, 1): centred input for r_φ (the RELAX toy network's)."""
        return 2 * torch.sigmoid(z / temperature) - 1


class CategoricalFamily(_Family):
    """One categorical variable per ``logits[..., :]``; f receives one-hot samples ``[..., K]``."""

    name = "categorical"
    sample = staticmethod(samplers.categorical_sample)
    conditional = staticmethod(samplers.categorical_conditional)
    common_noise = staticmethod(samplers.categorical_common_noise)
    log_prob = staticmethod(samplers.categorical_log_prob)

    def hard(self, b: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The sample handed to f: one-hot ``[..., K]`` in the logits' dtype."""
        return nn.functional.one_hot(b, logits.shape[-1]).to(logits.dtype)

    def relax(self, z: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """softmax(z/λ): the Concrete relaxation of the one-hot sample."""
        return torch.softmax(z / temperature, dim=-1)

    network_input = relax


FAMILIES = {"bernoulli": BernoulliFamily, "categorical": CategoricalFamily}


def make_family(distribution: str) -> BernoulliFamily | CategoricalFamily:
    if distribution not in FAMILIES:
        raise ValueError(f"unknown distribution {distribution!r}; supported: {sorted(FAMILIES)}")
    return FAMILIES[distribution]()
