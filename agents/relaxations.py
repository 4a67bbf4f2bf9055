"""RELAX sampling for SB3 action spaces (DESIGN §4): Discrete, MultiDiscrete and MultiBinary.

MultiDiscrete and MultiBinary factorize: every component gets its own reparameterized z and
conditional z̃, log π(a|s) is the sum over components, and one control variate sees all relaxed
components together. Box spaces need no relaxation (LAX reparameterizes the Gaussian directly).
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution

from relax_rl import samplers

__all__ = ["ActionRelaxation", "DISCRETE_SPACES"]

DISCRETE_SPACES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


class ActionRelaxation:
    """Gumbel-max / logistic reparameterization of a discrete action space, with noise passed in.

    All tensors are flat over components: logits, u, v and z have shape ``[batch, noise_dim]``;
    actions are ``[batch]`` (Discrete), ``[batch, m]`` (MultiDiscrete) or ``[batch, n]`` (MultiBinary).
    """

    def __init__(self, action_space: spaces.Space) -> None:
        if isinstance(action_space, spaces.Discrete):
            self.kind, self.sizes = "categorical", [int(action_space.n)]
        elif isinstance(action_space, spaces.MultiDiscrete):
            self.kind, self.sizes = "categorical", [int(n) for n in np.asarray(action_space.nvec).flatten()]
        elif isinstance(action_space, spaces.MultiBinary):
            self.kind, self.sizes = "bernoulli", [int(np.prod(action_space.shape))]
        else:
            raise ValueError(
                f"RELAX needs a discrete action space, got {action_space}; supported: Discrete, MultiDiscrete, "
                "MultiBinary (Box spaces use LAX)"
            )
        self.multi = isinstance(action_space, spaces.MultiDiscrete)
        self.noise_dim = sum(self.sizes)

    def logits(self, distribution: Distribution) -> torch.Tensor:
        """The distribution's logits, flat ``[batch, noise_dim]``, differentiable in θ."""
        dist = distribution.distribution
        if isinstance(dist, list):  # MultiCategoricalDistribution
            return torch.cat([d.logits for d in dist], dim=-1)
        return dist.logits

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(x, self.sizes, dim=-1)

    def _columns(self, actions: torch.Tensor) -> list[torch.Tensor]:
        actions = actions.long()
        if self.multi:
            return list(actions.reshape(actions.shape[0], -1).unbind(-1))
        return [actions.reshape(-1)]

    def sample(self, logits: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, action) from uniform noise u."""
        if self.kind == "bernoulli":
            return samplers.bernoulli_sample(logits, u)
        pairs = zip(self._split(logits), self._split(u), strict=True)
        parts = [samplers.categorical_sample(lg, uu) for lg, uu in pairs]
        z = torch.cat([p[0] for p in parts], dim=-1)
        actions = torch.stack([p[1] for p in parts], dim=-1) if self.multi else parts[0][1]
        return z, actions

    def conditional(self, logits: torch.Tensor, actions: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """z̃ ~ p(z | action), differentiable in the logits."""
        if self.kind == "bernoulli":
            return samplers.bernoulli_conditional(logits, actions.reshape(logits.shape).to(logits.dtype), v)
        parts = [
            samplers.categorical_conditional(lg, b, vv)
            for lg, b, vv in zip(self._split(logits), self._columns(actions), self._split(v), strict=True)
        ]
        return torch.cat(parts, dim=-1)

    def common_noise(self, logits: torch.Tensor, u: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The v that reproduces z(u) given the action (common random numbers, DESIGN §3)."""
        if self.kind == "bernoulli":
            return samplers.bernoulli_common_noise(logits, u, actions.reshape(logits.shape).to(logits.dtype))
        parts = [
            samplers.categorical_common_noise(lg, uu, b)
            for lg, uu, b in zip(self._split(logits), self._split(u), self._columns(actions), strict=True)
        ]
        return torch.cat(parts, dim=-1)

    def relax(self, z: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """Relaxed action fed to ĉ: σ(z/τ) (binary) or softmax(z/τ) per component (categorical)."""
        if self.kind == "bernoulli":
            return torch.sigmoid(z / temperature)
        return torch.cat([torch.softmax(part / temperature, dim=-1) for part in self._split(z)], dim=-1)
