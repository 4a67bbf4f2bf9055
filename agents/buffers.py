"""Rollout buffers that also store the RELAX noise (u, v) drawn at collection time (DESIGN §6).

Modelled on sb3-contrib's MaskableRolloutBuffer: reset / add / get / _get_samples are extended and
the samples gain three fields. The noise is permuted together with everything else in ``get``; the third
field, each sample's step t within its n-step segment, is read off the sample's index.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple

import numpy as np
import torch
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.vec_env import VecNormalize

__all__ = [
    "CriticTargetRolloutBuffer",
    "CriticTargetRolloutBufferSamples",
    "RelaxDictRolloutBuffer",
    "RelaxRolloutBuffer",
    "RelaxRolloutBufferSamples",
]


class RelaxRolloutBufferSamples(NamedTuple):
    observations: Any  # th.Tensor, or a dict of them for Dict observation spaces
    actions: torch.Tensor
    old_values: torch.Tensor
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    noise_u: torch.Tensor | None  # None where the buffer stores no noise (noise_dim 0: Box actions)
    noise_v: torch.Tensor | None
    segment_steps: torch.Tensor  # t in 0 … n_steps − 1: the step of the sample within its rollout segment


class CriticTargetRolloutBufferSamples(NamedTuple):
    observations: torch.Tensor
    actions: torch.Tensor
    old_values: torch.Tensor
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    critic_targets: torch.Tensor


class _NoiseStorage:
    """Adds ``noise_u`` / ``noise_v`` arrays of shape [n_steps, n_envs, noise_dim] to a rollout buffer
    (none for ``noise_dim`` 0), and each sample's step within its segment to the samples."""

    noise_dim: int

    def _init_noise(self, noise_dim: int) -> None:
        if noise_dim < 0:
            raise ValueError(f"noise_dim must be >= 0 (0: no noise stored), got {noise_dim}")
        self.noise_dim = int(noise_dim)

    def reset(self) -> None:
        self.noise_u = np.zeros((self.buffer_size, self.n_envs, self.noise_dim), dtype=np.float32)
        self.noise_v = np.zeros((self.buffer_size, self.n_envs, self.noise_dim), dtype=np.float32)
        super().reset()  # type: ignore[misc]

    def add(self, *args, noise_u: np.ndarray | None = None, noise_v: np.ndarray | None = None, **kwargs) -> None:
        if self.noise_dim:
            if noise_u is None or noise_v is None:
                raise ValueError("a RELAX rollout buffer needs noise_u and noise_v for every step")
            self.noise_u[self.pos] = np.asarray(noise_u).reshape(self.n_envs, self.noise_dim)
            self.noise_v[self.pos] = np.asarray(noise_v).reshape(self.n_envs, self.noise_dim)
        super().add(*args, **kwargs)  # type: ignore[misc]

    def get(self, batch_size: int | None = None) -> Generator[RelaxRolloutBufferSamples, None, None]:
        if not self.generator_ready:
            self.noise_u = self.swap_and_flatten(self.noise_u)
            self.noise_v = self.swap_and_flatten(self.noise_v)
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> RelaxRolloutBufferSamples:
        base = super()._get_samples(batch_inds, env)  # type: ignore[misc]
        noise = ((self.to_torch(self.noise_u[batch_inds]), self.to_torch(self.noise_v[batch_inds])) if self.noise_dim
                 else (None, None))
        # swap_and_flatten lays the [n_steps, n_envs] arrays out env by env: index = env · n_steps + t
        steps = self.to_torch((np.asarray(batch_inds) % self.buffer_size).astype(np.float32))
        return RelaxRolloutBufferSamples(*base, *noise, steps)


class RelaxRolloutBuffer(_NoiseStorage, RolloutBuffer):
    """RolloutBuffer + stored RELAX noise + segment steps. Extra constructor argument: ``noise_dim`` (0: no noise)."""

    def __init__(self, *args, noise_dim: int = 1, **kwargs) -> None:
        self._init_noise(noise_dim)
        super().__init__(*args, **kwargs)


class RelaxDictRolloutBuffer(_NoiseStorage, DictRolloutBuffer):
    """DictRolloutBuffer + stored RELAX noise + segment steps. Extra constructor argument: ``noise_dim`` (0: none)."""

    def __init__(self, *args, noise_dim: int = 1, **kwargs) -> None:
        self._init_noise(noise_dim)
        super().__init__(*args, **kwargs)


class CriticTargetRolloutBuffer(RolloutBuffer):
    """RolloutBuffer that also holds TD(λ_c) targets for an action-value critic, next to SB3's TD(λ) returns.

    With δ_t = r_t + γ (1 − d_{t+1}) V(s_{t+1}) − V(s_t), the target is y_t = V(s_t) + Σ_k (γ λ_c)^k δ_{t+k}
    (the recursion SB3 uses for ``returns``, with λ_c in place of ``gae_lambda``). λ_c = 0 gives the one-step
    target r_t + γ V(s_{t+1}): on a deterministic environment E[y_t | s_t, a_t] = Q(s_t, a_t) up to V's error, and
    none of the later actions' noise enters it. Extra constructor argument: ``critic_lambda`` in [0, 1].
    """

    def __init__(self, *args, critic_lambda: float = 0.0, **kwargs) -> None:
        if not 0.0 <= critic_lambda <= 1.0:
            raise ValueError(f"critic_lambda must be in [0, 1], got {critic_lambda}")
        self.critic_lambda = float(critic_lambda)
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        self.critic_targets = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        super().reset()

    def compute_returns_and_advantage(self, last_values: torch.Tensor, dones: np.ndarray) -> None:
        """SB3's recursion run twice: once at λ_c for the critic's targets, then at ``gae_lambda`` as usual."""
        gae_lambda = self.gae_lambda
        try:
            self.gae_lambda = self.critic_lambda
            super().compute_returns_and_advantage(last_values, dones)
            self.critic_targets = self.returns.astype(np.float32)
        finally:
            self.gae_lambda = gae_lambda
        super().compute_returns_and_advantage(last_values, dones)

    def get(self, batch_size: int | None = None) -> Generator[CriticTargetRolloutBufferSamples, None, None]:
        if not self.generator_ready:
            self.critic_targets = self.swap_and_flatten(self.critic_targets)
        yield from super().get(batch_size)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> CriticTargetRolloutBufferSamples:
        base = super()._get_samples(batch_inds, env)
        return CriticTargetRolloutBufferSamples(*base, self.to_torch(self.critic_targets[batch_inds].flatten()))
