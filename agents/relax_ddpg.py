"""RelaxDDPG: an unbiased, adaptive analogue of DDPG (DESIGN §4, last paragraph).

The actor is Gaussian: a tanh-MLP mean rescaled to the action bounds, as in DDPG's actor, and a learned
state-independent log-std. The critic c_φ(s, a) is a full action-value MLP over [s, a]. Per on-policy
rollout, with R̂_t the return target (GAE(λ) returns bootstrapped by a state-value head V):

    S = mean_t [ (R̂_t − c_φ(s_t, a_t⊥)) log π(a_t|s_t) + c_φ(s_t, μ_θ(s_t) + σ_θ ε_t) ]

The reparameterized term's gradient is DDPG's deterministic policy gradient ∇_a c · ∇_θ a; the score
term corrects the critic's error, so E[∇_θ S] = ∇_θ J whatever the critic (ε_t is recovered from the
executed pre-clip action, never drawn afresh: that was the original code's bias). The critic is
trained on the variance objective ‖∇_θ S‖² (double backprop), plus ``cv_regression_coef`` times the
regression error (c_φ(s, a) − R̂)²; V is trained on A2C's value loss. The environment clips actions:
the clip is part of the black box.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from torch import nn
from torch.nn import functional as F

from relax_rl.agents.buffers import CriticTargetRolloutBuffer
from relax_rl.agents.policies import RelaxActorCriticPolicy
from relax_rl.agents.relax_a2c import RelaxA2C

__all__ = ["RelaxDDPG", "RelaxDDPGPolicy"]


def _require_bounded_box(action_space: spaces.Space, who: str) -> None:
    if not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"{who} does not support the action space {action_space}; supported: Box (continuous actions). "
            "For Discrete, MultiDiscrete or MultiBinary actions use RelaxA2C (relax-a2c)."
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ValueError(f"{who} needs a bounded Box action space (its actor's tanh mean is rescaled to the "
                         f"bounds), got low={action_space.low}, high={action_space.high}")


class RelaxDDPGPolicy(RelaxActorCriticPolicy):
    """Gaussian actor with a tanh mean rescaled to the action bounds, state-value head V, and the critic
    c_φ(s, a) (``cv_net``: an MLP over [features(s) detached, the segment position and symlog V(s) where those
    options are on, action scaled to [−1, 1]], no output scale)."""

    cv_scale_init = None

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Any,
                 *args: Any, cv_net_arch: list[int] | None = None, cv_activation_fn: type[nn.Module] = nn.ReLU,
                 **kwargs: Any) -> None:
        _require_bounded_box(action_space, "RelaxDDPG")
        if kwargs.get("cv_advantage_scale"):
            raise ValueError("RelaxDDPG's critic c_φ(s, a) is a full action value, not a correction in units of Â: "
                             "cv_advantage_scale is for RelaxA2C's ĉ only")
        kwargs.setdefault("log_std_init", -0.5)
        super().__init__(observation_space, action_space, lr_schedule, *args,
                         cv_net_arch=cv_net_arch if cv_net_arch is not None else [400, 300],
                         cv_activation_fn=cv_activation_fn, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        low = torch.as_tensor(self.action_space.low, dtype=torch.float32)
        high = torch.as_tensor(self.action_space.high, dtype=torch.float32)
        self.register_buffer("action_center", (high + low) / 2)
        self.register_buffer("action_half_range", (high - low) / 2)
        super()._build(lr_schedule)

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> Any:
        """μ_θ(s) = center + half_range · tanh(action_net(latent)); σ = exp(log_std), state-independent."""
        mean = self.action_center + self.action_half_range * torch.tanh(self.action_net(latent_pi))
        return self.action_dist.proba_distribution(mean, self.log_std)

    def cv_value(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """c_φ(s, a), with the action scaled by the bounds (pre-clip actions may lie outside [−1, 1])."""
        scaled = (action - self.action_center) / self.action_half_range
        return self.cv_net(torch.cat([features.detach(), scaled], dim=-1))


class RelaxDDPG(RelaxA2C):
    """Unbiased DDPG analogue: on-policy rollouts, a Gaussian actor trained with the LAX estimate whose
    control variate is a full critic c_φ(s, a), trained on the estimator's variance (+ optional regression).

    Takes RelaxA2C's arguments (Box action spaces only), with these defaults and additions:

    :param cv_learning_rate: critic learning rate (Adam).
    :param cv_net_arch: critic hidden sizes (default [400, 300], ReLU).
    :param cv_regression_coef: weight of the critic's regression in its loss (0: variance only).
    :param critic_lambda: what the critic regresses on. None (default): R̂, the actor's GAE(λ) return targets.
        A number λ_c in [0, 1]: TD(λ_c) targets from the same rollout (λ_c = 0: r_t + γ V(s_{t+1}), free of the
        later actions' noise). The actor's estimate stays unbiased either way; only the critic's fit changes.

    RelaxA2C's ``cv_coef`` (and ``cv_coef_max``) applies as well; here its ĝ_off is mean_t R̂_t ∇log π (no
    baseline at all: the critic is the whole baseline), so β weighs the critic between plain REINFORCE (0) and the
    LAX estimate (1, the default).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": RelaxDDPGPolicy}
    policy: RelaxDDPGPolicy
    critic_lambda: float | None = None  # models saved before the option existed

    def __init__(
        self,
        policy: str | type[RelaxDDPGPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 8,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_rms_prop: bool = False,
        cv_learning_rate: float | Schedule = 1e-3,
        cv_net_arch: list[int] | None = None,
        cv_updates_per_step: int = 1,
        cv_loss_space: str = "params",
        cv_regression_coef: float = 1.0,
        critic_lambda: float | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("action_dependent_cv", True) is not True:
            raise ValueError("RelaxDDPG always learns its critic (action_dependent_cv must stay True)")
        if kwargs.get("normalize_advantage"):
            raise ValueError("RelaxDDPG multiplies log π by the return target R̂, not an advantage: "
                             "normalize_advantage is not supported")
        if critic_lambda is not None and not 0.0 <= critic_lambda <= 1.0:
            raise ValueError(f"critic_lambda must be None or in [0, 1], got {critic_lambda}")
        self.critic_lambda = None if critic_lambda is None else float(critic_lambda)
        self._critic_regression_error = float("nan")
        init_model = kwargs.pop("_init_setup_model", True)
        super().__init__(policy, env, learning_rate=learning_rate, n_steps=n_steps, gamma=gamma,
                         gae_lambda=gae_lambda, ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_grad_norm,
                         use_rms_prop=use_rms_prop, cv_learning_rate=cv_learning_rate, cv_net_arch=cv_net_arch,
                         cv_updates_per_step=cv_updates_per_step, cv_loss_space=cv_loss_space,
                         cv_regression_coef=cv_regression_coef,
                         action_dependent_cv=True, _init_setup_model=False, **kwargs)
        if init_model:
            self._setup_model()

    @classmethod
    def _check_action_space(cls, space: spaces.Space) -> None:
        _require_bounded_box(space, cls.__name__)

    def _setup_model(self) -> None:
        if self.critic_lambda is not None:
            if self.cv_segment_position:
                raise ValueError("critic_lambda and cv_segment_position cannot be combined yet (the TD(λ_c) buffer "
                                 "does not carry segment steps); set one of them off")
            if isinstance(self.observation_space, spaces.Dict):
                raise ValueError("critic_lambda needs a Box observation space (no Dict rollout buffer for it yet)")
            self.rollout_buffer_class = CriticTargetRolloutBuffer
            self.rollout_buffer_kwargs = {**self.rollout_buffer_kwargs, "critic_lambda": self.critic_lambda}
        super()._setup_model()

    def _score_targets(self, rollout_data: Any) -> torch.Tensor:
        """R̂: the critic c_φ(s, a) replaces the whole baseline V(s) + ĉ(a, s)."""
        return rollout_data.returns

    def _critic_targets(self, rollout_data: Any) -> torch.Tensor:
        """What the critic regresses on: the TD(critic_lambda) targets, or R̂ when critic_lambda is None."""
        return rollout_data.returns if self.critic_lambda is None else rollout_data.critic_targets

    def _cv_extra_loss(self, rollout_data: Any, c_cut: Any) -> torch.Tensor | None:
        error = F.mse_loss(c_cut, self._critic_targets(rollout_data))
        self._critic_regression_error = error.item()
        return self.cv_regression_coef * error if self.cv_regression_coef > 0 else None

    def _record_batch_diagnostics(self, batch: dict[str, Any], theta: list[torch.Tensor]) -> None:
        """Norms of the score-function part (R̂ − c(a⊥)) ∇log π and the reparameterized part ∇_a c · ∇_θ a."""
        score = ((batch["advantages"] - batch["c_z_tilde_cut"]) * batch["log_prob"]).mean()
        reparam = batch["c_z"].mean()
        for name, part in (("actor_grad_score_norm", score), ("actor_grad_reparam_norm", reparam)):
            grads = torch.autograd.grad(part, theta, retain_graph=True, allow_unused=True)
            norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads if g is not None))
            self.logger.record(f"train/{name}", float(norm))

    def _record_cv_diagnostics(self, cv_losses: list[float], advantages: torch.Tensor, c_hat: torch.Tensor) -> None:
        self.logger.record("train/critic_variance_loss", cv_losses[0])
        self.logger.record("train/critic_regression_error", self._critic_regression_error)
        super()._record_cv_diagnostics(cv_losses, advantages, c_hat)

    def learn(self, *args: Any, tb_log_name: str = "RelaxDDPG", **kwargs: Any) -> RelaxDDPG:
        return super().learn(*args, tb_log_name=tb_log_name, **kwargs)
