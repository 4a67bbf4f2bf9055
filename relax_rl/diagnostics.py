"""Honest gradient-variance measurements for on-policy agents (DESIGN §7, "Gradient variance").

``gradient_estimates`` freezes the model, draws independent rollout batches of the size the model
trains on and returns one policy-gradient estimate per batch; ``gradient_variance`` summarizes
them as the total variance Σ_i Var(ĝ_i) across batches (never the spread across parameters of a
single gradient, DESIGN §5.4). Works with RelaxA2C (ĉ on or off) through its ``policy_gradient``
method and with SB3's A2C through A2C's own estimator, Â · ∇ log π. ``paired_gradient_estimates``
evaluates several estimators on the same batches (common random numbers): the ratio of two estimators'
variances is then far less noisy than from separate rollouts.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["gradient_estimates", "gradient_variance", "paired_gradient_estimates"]

Estimator = Callable[[Any], Sequence[torch.Tensor | None]]


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
    No parameter of the model changes; its step counters, episode buffers and any VecNormalize statistics are
    restored afterwards. The env itself has stepped on (a Monitor records the episodes played), and the model's
    last observation and episode-start flags follow it, so that a later ``learn(..., reset_num_timesteps=False)``
    continues from the env's actual state. ``reset_between_batches`` resets the envs before every batch (fully
    independent batches of episode starts); by default trajectories continue, as in training.
    """
    return paired_gradient_estimates(model, n_batches, {"estimate": _default_estimator(model)}, seed=seed,
                                     reset_between_batches=reset_between_batches)["estimate"]


def _check_supported(model: Any) -> None:
    """ValueError unless the model is on-policy with rollouts to estimate from (RelaxA2C, RelaxDDPG, A2C)."""
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    if not isinstance(model, OnPolicyAlgorithm):
        raise ValueError(f"gradient estimates are measured for on-policy actor-critic models (RelaxA2C, RelaxDDPG, "
                         f"SB3's A2C), got {type(model).__name__}")


def _default_estimator(model: Any) -> Estimator:
    """The model's own estimator: ``policy_gradient`` (RelaxA2C, RelaxDDPG) or A2C's Â · ∇ log π."""
    _check_supported(model)
    if hasattr(model, "policy_gradient"):
        return model.policy_gradient
    theta = [p for group in model.policy.optimizer.param_groups for p in group["params"]]
    return lambda rollout_data: _a2c_policy_gradient(model, rollout_data, theta)


def paired_gradient_estimates(
    model: Any, n_batches: int, estimators: Mapping[str, Estimator], seed: int | None = None,
    reset_between_batches: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`gradient_estimates` for several estimators on the same ``n_batches`` rollouts.

    Each estimator maps one batch (SB3 rollout data of the whole buffer) to one gradient per parameter of θ,
    in order (None where it does not reach). Returns ``{estimator: {parameter name: [n_batches, *shape]}}``.
    """
    from stable_baselines3.common.callbacks import ConvertCallback
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecNormalize

    _check_supported(model)
    if int(n_batches) < 2:
        raise ValueError(f"n_batches must be >= 2 to measure a variance, got {n_batches}")
    if not estimators:
        raise ValueError("no estimators given")
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
    # (not _last_obs / _last_episode_starts: the env has moved on, and training must continue from where it is)
    saved = {key: copy.copy(getattr(model, key)) for key in
             ("num_timesteps", "ep_info_buffer", "ep_success_buffer", "_episode_num")}
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

    estimates: dict[str, list[list[np.ndarray]]] = {key: [] for key in estimators}
    kept: dict[str, list[int]] = {}
    try:
        for _ in range(int(n_batches)):
            if reset_between_batches:
                model._last_obs = env.reset()
                model._last_episode_starts = np.ones((env.num_envs,), dtype=bool)
            model.collect_rollouts(env, callback, buffer, n_rollout_steps=model.n_steps)
            model.policy.set_training_mode(True)
            rollout_data = next(buffer.get(batch_size=None))  # the whole buffer, one batch
            for key, estimator in estimators.items():
                raw = list(estimator(rollout_data))
                if len(raw) != len(theta):
                    raise ValueError(f"estimator {key!r} returned {len(raw)} gradients for {len(theta)} parameters")
                kept.setdefault(key, [i for i, g in enumerate(raw) if g is not None])
                grads = [torch.zeros_like(theta[i]) if raw[i] is None else raw[i] for i in kept[key]]
                estimates[key].append([g.detach().cpu().numpy().copy() for g in grads])
    finally:
        for key, value in saved.items():
            setattr(model, key, value)
        for wrapper, training in normalizers:
            wrapper.training = training
    for before, p in zip(snapshot, policy.parameters(), strict=True):
        assert torch.equal(before, p), "gradient_estimates changed a parameter"
    return {key: {names[id(theta[i])]: np.stack([batch[j] for batch in estimates[key]])
                  for j, i in enumerate(kept[key])} for key in estimators}


def gradient_variance(estimates: dict[str, np.ndarray]) -> dict[str, float]:
    """Total variance across batches, Σ_i Var(ĝ_i) over every coordinate of every parameter, and its log."""
    if not estimates:
        raise ValueError("no estimates given")
    total = float(sum(np.var(a.reshape(a.shape[0], -1), axis=0, ddof=1).sum() for a in estimates.values()))
    n_batches = next(iter(estimates.values())).shape[0]
    return {"total_variance": total, "log_total_variance": float(np.log(total)) if total > 0 else float("-inf"),
            "n_batches": float(n_batches)}
