"""Honest gradient-variance measurements for on-policy agents (DESIGN §7, "Gradient variance").

``gradient_estimates`` freezes the model, draws independent rollout batches of the size the model
trains on and returns one policy-gradient estimate per batch; ``gradient_variance`` summarizes
them as the total variance Σ_i Var(ĝ_i) across batches (never the spread across parameters of a
single gradient, DESIGN §5.4). Works with RelaxA2C (ĉ on or off) through its ``policy_gradient``
method and with SB3's A2C through A2C's own estimator, Â · ∇ log π.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import numpy as np
import torch

__all__ = ["gradient_estimates", "gradient_variance"]


def _a2c_policy_gradient(model: Any, rollout_data: Any, theta: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """SB3 A2C's estimate: ∇_θ mean_t Â_t log π(a_t|s_t) (ascent direction, no entropy bonus)."""
    from gymnasium import spaces

    actions = rollout_data.actions
    if isinstance(model.action_space, spaces.Discrete):
        actions = actions.long().flatten()
    _, log_prob, _ = model.policy.evaluate_actions(rollout_data.observations, actions)
    advantages = rollout_data.advantages
    if getattr(model, "normalize_advantage", False):
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return list(torch.autograd.grad((advantages * log_prob).mean(), theta, allow_unused=True))


def gradient_estimates(
    model: Any, n_batches: int, seed: int | None = None, reset_between_batches: bool = False
) -> dict[str, np.ndarray]:
    """``n_batches`` policy-gradient estimates at the model's current, frozen parameters.

    Each batch is a fresh on-policy rollout of ``n_envs × n_steps`` transitions collected with the model's
    own environment and sampling (RELAX noise included). Returns ``{name: array [n_batches, *param.shape]}``
    for every policy parameter the estimate reaches (names as in ``model.policy.named_parameters()``).
    No parameter of the model changes; its step counters, episode buffers, last observation and any
    VecNormalize statistics are restored afterwards. ``reset_between_batches`` resets the envs before every
    batch (fully independent batches of episode starts); by default trajectories continue, as in training.
    """
    from stable_baselines3.common.callbacks import ConvertCallback
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecNormalize

    if int(n_batches) < 2:
        raise ValueError(f"n_batches must be >= 2 to measure a variance, got {n_batches}")
    if seed is not None:
        set_random_seed(seed)
    env = model.get_env()
    if env is None:
        raise ValueError("the model has no environment: pass one with model.set_env(env) first")
    policy = model.policy
    theta = (policy.theta_parameters() if hasattr(policy, "theta_parameters")
             else [p for group in policy.optimizer.param_groups for p in group["params"]])
    names = {id(p): name for name, p in policy.named_parameters()}
    snapshot = [p.detach().clone() for p in policy.parameters()]
    saved = {key: copy.copy(getattr(model, key)) for key in
             ("num_timesteps", "_last_obs", "_last_episode_starts", "ep_info_buffer", "ep_success_buffer",
              "_episode_num")}
    normalizers = []
    wrapper = env
    while wrapper is not None:  # freeze VecNormalize statistics
        if isinstance(wrapper, VecNormalize):
            normalizers.append((wrapper, wrapper.training))
            wrapper.training = False
        wrapper = getattr(wrapper, "venv", None)
    if model.ep_info_buffer is None:  # a model that never learned (e.g. just loaded): SB3 sets these in learn()
        model.ep_info_buffer, model.ep_success_buffer = deque(maxlen=100), deque(maxlen=100)
    buffer = copy.deepcopy(model.rollout_buffer)
    callback = ConvertCallback(None)
    callback.init_callback(model)
    if model._last_obs is None or reset_between_batches:
        model._last_obs = env.reset()
        model._last_episode_starts = np.ones((env.num_envs,), dtype=bool)

    estimates: list[list[np.ndarray]] = []
    kept: list[int] | None = None
    try:
        for _ in range(int(n_batches)):
            if reset_between_batches:
                model._last_obs = env.reset()
                model._last_episode_starts = np.ones((env.num_envs,), dtype=bool)
            model.collect_rollouts(env, callback, buffer, n_rollout_steps=model.n_steps)
            model.policy.set_training_mode(True)
            for rollout_data in buffer.get(batch_size=None):
                if hasattr(model, "policy_gradient"):
                    raw = model.policy_gradient(rollout_data)
                else:
                    raw = _a2c_policy_gradient(model, rollout_data, theta)
                if kept is None:
                    kept = [i for i, g in enumerate(raw) if g is not None]
                grads = [torch.zeros_like(p) if g is None else g for g, p in zip(raw, theta, strict=True)]
            estimates.append([grads[i].detach().cpu().numpy().copy() for i in kept])
    finally:
        for key, value in saved.items():
            setattr(model, key, value)
        for wrapper, training in normalizers:
            wrapper.training = training
    for before, p in zip(snapshot, policy.parameters(), strict=True):
        assert torch.equal(before, p), "gradient_estimates changed a parameter"
    return {names[id(theta[i])]: np.stack([batch[j] for batch in estimates]) for j, i in enumerate(kept)}


def gradient_variance(estimates: dict[str, np.ndarray]) -> dict[str, float]:
    """Total variance across batches, Σ_i Var(ĝ_i) over every coordinate of every parameter, and its log."""
    if not estimates:
        raise ValueError("no estimates given")
    total = float(sum(np.var(a.reshape(a.shape[0], -1), axis=0, ddof=1).sum() for a in estimates.values()))
    n_batches = next(iter(estimates.values())).shape[0]
    return {"total_variance": total, "log_total_variance": float(np.log(total)) if total > 0 else float("-inf"),
            "n_batches": float(n_batches)}
