"""RelaxA2C: advantage actor-critic with a RELAX / LAX policy-gradient estimator (DESIGN §4).

Per update, with Â_t = R̂_t − V(s_t) from SB3's rollout buffer (GAE(λ); λ = 1 and full episodes make
it unbiased for ∇J) and c_φ(a, s) = V(s) + ĉ_φ(a, s):

    discrete:   S = mean_t [ (Â_t − ĉ(z̃_t⊥, s_t)) log π(a_t|s_t) + ĉ(z_t, s_t) − ĉ(z̃_t, s_t) ]
    continuous: S = mean_t [ (Â_t − ĉ(a_t⊥, s_t)) log π(a_t|s_t) + ĉ(μ(s_t) + σ(s_t) ε_t, s_t) ]

θ descends −S + ent_coef · entropy loss + vf_coef · value loss exactly as A2C does; φ descends
‖∇_θ S‖² (double backprop) with its own optimizer. With ``action_dependent_cv=False`` ĉ does not
exist, actions are sampled as in SB3 and the update is A2C's, bit for bit: the baseline every
comparison uses (DESIGN §5.6).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from gymnasium import spaces
from stable_baselines3 import A2C
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance, update_learning_rate
from torch.nn import functional as F

from relax_rl.agents.buffers import RelaxDictRolloutBuffer, RelaxRolloutBuffer
from relax_rl.agents.collection import StoredNoiseCollection
from relax_rl.agents.cv_weighting import ControlVariateWeighting
from relax_rl.agents.policies import (
    RelaxActorCriticCnnPolicy,
    RelaxActorCriticPolicy,
    RelaxMultiInputActorCriticPolicy,
)
from relax_rl.agents.relaxations import DISCRETE_SPACES, ActionRelaxation
from relax_rl.agents.update_logging import UpdateLogging
from relax_rl.envs.registry import check_env_id
from relax_rl.estimators import relax_surrogate
from relax_rl.variance import ControlVariateCoefficient, check_finite

__all__ = ["RelaxA2C"]

SUPPORTED_ACTION_SPACES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Box)


def _check_finite(name: str, *tensors: torch.Tensor | None) -> None:
    check_finite(name, *tensors, hint="; lower the learning rates, normalize observations/rewards, or check the "
                 "environment's rewards")


class RelaxA2C(StoredNoiseCollection, ControlVariateWeighting, UpdateLogging, A2C):
    """A2C whose policy gradient uses a learned action-dependent control variate (RELAX / LAX).

    Takes every argument of SB3's :class:`~stable_baselines3.A2C`, plus:

    :param action_dependent_cv: learn ĉ_φ(a, s); False gives SB3's A2C update exactly.
    :param cv_learning_rate: learning rate (or schedule of the remaining progress) for φ.
    :param cv_net_arch: hidden sizes of ĉ (default [32, 32]).
    :param cv_updates_per_step: φ steps per rollout (θ always uses the φ from before this rollout's φ steps,
        so φ never depends on the batch it corrects).
    :param cv_update_interval: φ steps on every k-th update only (k ≥ 1); the updates between use ĉ as it is and
        skip the variance objective's double backprop, the main cost of ĉ (θ's estimate stays unbiased).
    :param cv_loss_space: ``"params"``: ĝ over all policy weights (DESIGN §3 default); ``"logits"``: ĝ over the
        per-sample distribution parameters (cheaper, lower-noise variant).
    :param cv_common_random_numbers: build z̃ with common random numbers (DESIGN §3).
    :param cv_temperature_init: initial temperature of the relaxation fed to ĉ.
    :param cv_regression_coef: adds ``cv_regression_coef`` · mean_t (Â_t − ĉ(z̃_t⊥, s_t))² to φ's objective (0: the
        variance objective alone). θ's estimate stays unbiased whatever φ's objective.
    :param cv_weight_decay: L2 decay in φ's optimizer: pulls ĉ to 0 where the variance objective stops holding it
        (Adam otherwise moves φ by ~its learning rate however flat the objective gets).
    :param cv_coef: weight β of ĉ in θ's estimate, ĝ_β = ĝ_off − β (ĝ_off − ĝ_on), i.e. ĉ replaced by β·ĉ (the
        surrogates are linear in ĉ): 1.0 (default) uses ĉ as trained, 0.0 is A2C's estimate; ``"auto"`` estimates
        the variance-minimizing β* = E⟨ĝ_off, d⟩ / E‖d‖² (d = ĝ_off − ĝ_on) from the batches before each one
        (:class:`relax_rl.variance.ControlVariateCoefficient`, clipped to [0, ``cv_coef_max``]; logged as
        ``train/cv_coef``),
        so ĉ can no longer add much variance where it has stopped tracking Â. Any β fixed before the batch
        keeps the estimate unbiased. φ's objective is unchanged (the variance of ĝ_on). "auto" costs one more
        first-order backward pass on the updates that step φ.
    :param cv_coef_max: upper bound of the estimated β with ``cv_coef="auto"`` (default 1: never more ĉ than as
        trained). Above 1, a ĉ that points the right way but is too small (it grows from 0 at about φ's learning
        rate per step) is scaled up to its variance-minimizing size.
    :param cv_segment_position: ĉ also reads the transition's place in its n-step segment, (n_steps − t) / n_steps
        for step t: the share of the segment left before Â_t bootstraps from V. While V lags, Â_t's mean depends on
        it. t is fixed before a_t is drawn, so θ's estimate stays unbiased.
    :param cv_value_input: ĉ also reads the critic's V(s) (detached, as sign(V) log(1 + |V|)): E[Â | s] =
        E[R̂ | s] − V(s), the part of Â a state-dependent ĉ can remove, moves whenever V does, and through this
        input ĉ can follow it instead of relearning it. θ is stepped after the batch, so V is a fixed function of s
        for θ's estimate: unbiased.
    :param cv_advantage_scale: ĉ's output is multiplied by σ̂, a running std of Â over the batches before each one
        (logged as ``train/cv_advantage_scale``), so ĉ is learned in units of Â's spread instead of growing from 0
        at about φ's learning rate per step. σ̂ is fixed during a batch: θ's estimate stays unbiased.
    :param log_grad_variance: log ``train/grad_variance``, a running estimate of the estimator's variance. It is
        free when ĉ is trained on the weights' gradient (it reuses that gradient); otherwise it costs an extra
        backward pass per update. Default (None): on exactly when it is free.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": RelaxActorCriticPolicy,
        "CnnPolicy": RelaxActorCriticCnnPolicy,
        "MultiInputPolicy": RelaxMultiInputActorCriticPolicy,
    }
    policy: RelaxActorCriticPolicy
    log_grad_variance: bool = True  # models saved before these options existed
    cv_update_interval: int = 1
    cv_regression_coef: float = 0.0
    cv_weight_decay: float = 0.0
    cv_coef: float | str = 1.0
    cv_coef_max: float = 1.0
    cv_segment_position: bool = False
    cv_advantage_scale: bool = False
    cv_value_input: bool = False
    _cv_coef_estimator: ControlVariateCoefficient | None = None

    def __init__(
        self,
        policy: str | type[RelaxActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 7e-4,
        n_steps: int = 5,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        rms_prop_eps: float = 1e-5,
        use_rms_prop: bool = True,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        normalize_advantage: bool = False,
        action_dependent_cv: bool = True,
        cv_learning_rate: float | Schedule = 1e-3,
        cv_net_arch: list[int] | None = None,
        cv_updates_per_step: int = 1,
        cv_update_interval: int = 1,
        cv_loss_space: str = "params",
        cv_common_random_numbers: bool = False,
        cv_temperature_init: float = 1.0,
        cv_regression_coef: float = 0.0,
        cv_weight_decay: float = 0.0,
        cv_coef: float | str = 1.0,
        cv_coef_max: float = 1.0,
        cv_segment_position: bool = False,
        cv_advantage_scale: bool = False,
        cv_value_input: bool = False,
        log_grad_variance: bool | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if isinstance(env, str):  # SB3 would gym.make it: an unknown id gets close ids suggested instead
            check_env_id(env)
        if cv_loss_space not in ("params", "logits"):
            raise ValueError(f"cv_loss_space must be 'params' or 'logits', got {cv_loss_space!r}")
        if int(cv_update_interval) < 1:
            raise ValueError(f"cv_update_interval must be >= 1, got {cv_update_interval}")
        if int(cv_updates_per_step) < 1:
            raise ValueError(f"cv_updates_per_step must be >= 1, got {cv_updates_per_step}")
        if not float(cv_regression_coef) >= 0:
            raise ValueError(f"cv_regression_coef must be >= 0, got {cv_regression_coef}")
        if not float(cv_weight_decay) >= 0:
            raise ValueError(f"cv_weight_decay must be >= 0, got {cv_weight_decay}")
        if action_dependent_cv and use_sde:
            raise ValueError("action_dependent_cv=True does not support use_sde=True (gSDE); set one of them off")
        self._check_cv_coef(cv_coef, cv_coef_max)
        policy_kwargs = dict(policy_kwargs or {})
        initial_cv_lr = cv_learning_rate if isinstance(cv_learning_rate, (int, float)) else cv_learning_rate(1.0)
        policy_kwargs.update(
            action_dependent_cv=action_dependent_cv,
            cv_learning_rate=float(initial_cv_lr),
            cv_common_random_numbers=cv_common_random_numbers,
            cv_temperature_init=cv_temperature_init,
            cv_segment_position=bool(cv_segment_position) and bool(action_dependent_cv),
            cv_advantage_scale=bool(cv_advantage_scale) and bool(action_dependent_cv),
            cv_value_input=bool(cv_value_input) and bool(action_dependent_cv),
        )
        if cv_net_arch is not None:
            policy_kwargs["cv_net_arch"] = list(cv_net_arch)
        if cv_weight_decay:
            policy_kwargs["cv_optimizer_kwargs"] = {**policy_kwargs.get("cv_optimizer_kwargs", {}),
                                                    "weight_decay": float(cv_weight_decay)}
        if not isinstance(env, str) and getattr(env, "action_space", None) is not None:
            self._check_action_space(env.action_space)  # before SB3's asserts, with a clear message
        try:
            super().__init__(
                policy, env, learning_rate=learning_rate, n_steps=n_steps, gamma=gamma, gae_lambda=gae_lambda,
                ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_grad_norm, rms_prop_eps=rms_prop_eps,
                use_rms_prop=use_rms_prop, use_sde=use_sde, sde_sample_freq=sde_sample_freq,
                normalize_advantage=normalize_advantage, stats_window_size=stats_window_size,
                tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs, verbose=verbose, seed=seed,
                device=device, _init_setup_model=False,
            )
        except AssertionError as err:  # SB3 asserts on spaces it cannot handle: report them as bad input
            raise ValueError(f"{type(self).__name__} cannot use this environment: {err}") from err
        if getattr(self, "action_space", None) is not None:
            self._check_action_space(self.action_space)
        self.action_dependent_cv = bool(action_dependent_cv)
        self.cv_learning_rate = cv_learning_rate
        self.cv_updates_per_step = int(cv_updates_per_step)
        self.cv_update_interval = int(cv_update_interval)
        self.cv_loss_space = cv_loss_space
        self.cv_regression_coef = float(cv_regression_coef)
        self.cv_weight_decay = float(cv_weight_decay)
        self.cv_coef = cv_coef if isinstance(cv_coef, str) else float(cv_coef)
        self.cv_segment_position = bool(cv_segment_position) and self.action_dependent_cv
        self.cv_coef_max = float(cv_coef_max)
        self.cv_advantage_scale = bool(cv_advantage_scale) and self.action_dependent_cv
        self.cv_value_input = bool(cv_value_input) and self.action_dependent_cv
        self._cv_coef_estimator = ControlVariateCoefficient(max_value=cv_coef_max) if cv_coef == "auto" else None
        free = self.action_dependent_cv and cv_loss_space == "params"
        self.log_grad_variance = free if log_grad_variance is None else bool(log_grad_variance)
        self._grad_mean: torch.Tensor | None = None
        self._grad_variance = 0.0
        if _init_setup_model:
            self._setup_model()

    @classmethod
    def _check_action_space(cls, space: spaces.Space) -> None:
        """ValueError naming the space unless the algorithm supports it."""
        if not isinstance(space, SUPPORTED_ACTION_SPACES):
            raise ValueError(
                f"{cls.__name__} does not support the action space {space}; supported: Discrete, MultiDiscrete, "
                "MultiBinary (RELAX) and Box (LAX)"
            )

    # ------------------------------------------------------------------------------------------
    # set-up and saving
    # ------------------------------------------------------------------------------------------
    @property
    def _stores_noise(self) -> bool:
        return self.action_dependent_cv and isinstance(self.action_space, DISCRETE_SPACES)

    def _setup_model(self) -> None:
        self._check_cv_coef(self.cv_coef, self.cv_coef_max)  # again: load(..., cv_coef_max=...) skips __init__
        if self._stores_noise or self.cv_segment_position:
            dict_obs = isinstance(self.observation_space, spaces.Dict)
            self.rollout_buffer_class = RelaxDictRolloutBuffer if dict_obs else RelaxRolloutBuffer
            noise_dim = ActionRelaxation(self.action_space).noise_dim if self._stores_noise else 0
            self.rollout_buffer_kwargs = {**self.rollout_buffer_kwargs, "noise_dim": noise_dim}
        super()._setup_model()
        self.cv_lr_schedule = FloatSchedule(self.cv_learning_rate)
        if self.cv_advantage_scale and self.n_envs * self.n_steps < 2:
            raise ValueError(f"cv_advantage_scale=True needs batches of at least 2 transitions (σ̂ is the spread of Â "
                             f"over a batch), got n_envs={self.n_envs} x n_steps={self.n_steps}")
        if self.cv_advantage_scale != (self.policy.cv_output_multiplier is not None):  # load(..., cv_advantage_scale=)
            raise ValueError(f"cv_advantage_scale={self.cv_advantage_scale} does not match the policy (σ̂ is part of "
                             "its saved state): a loaded model keeps the setting it was trained with")

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        if self.action_dependent_cv:
            state_dicts = [*state_dicts, "policy.cv_optimizer"]
        return state_dicts, variables

    # ------------------------------------------------------------------------------------------
    # the update
    # ------------------------------------------------------------------------------------------
    def _estimate_targets(self, distribution: Any, theta: list[torch.Tensor]) -> list[torch.Tensor]:
        """What ĝ is taken with respect to: all policy weights, or the per-sample distribution parameters."""
        if self.cv_loss_space == "params":
            return theta
        dist = distribution.distribution
        if isinstance(dist, list):  # MultiDiscrete: each component's logits (what its log π and z are built from)
            return [component.logits for component in dist]
        if self.policy.relaxation is not None:
            return [dist.logits]
        return [dist.mean, self.policy.log_std]

    def train(self) -> None:
        """One update from the whole rollout buffer (A2C's single gradient step), plus φ's step(s)."""
        policy = self.policy
        policy.set_training_mode(True)
        self._update_learning_rate(policy.optimizer)
        if self.action_dependent_cv:
            cv_lr = self.cv_lr_schedule(self._current_progress_remaining)
            update_learning_rate(policy.cv_optimizer, cv_lr)
            self.logger.record("train/cv_learning_rate", cv_lr)
        for rollout_data in self.rollout_buffer.get(batch_size=None):
            stats = self._train_on_batch(rollout_data)

        self._n_updates += 1
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", explained_var)
        for key in ("entropy_loss", "policy_loss", "value_loss"):
            self.logger.record(f"train/{key}", stats[key])
        if self.log_grad_variance:
            self.logger.record("train/grad_variance", stats["grad_variance"])
        if hasattr(policy, "log_std"):
            self.logger.record("train/std", torch.exp(policy.log_std).mean().item())
        if self.action_dependent_cv and stats["cv_loss"]:  # (none on updates that skip φ's step)
            self._record_cv_diagnostics(stats["cv_loss"], stats["advantages"], stats["c_hat"])
        if self.cv_advantage_scale:  # after the batch's steps and logs: the next batch's σ̂
            policy.observe_advantages(stats["advantages"])

    def _cv_terms(self, rollout_data: Any, distribution: Any, actions: torch.Tensor, features: torch.Tensor,
                  values: torch.Tensor, use_cv: bool = True):
        """(c_z, c_z̃, c_z̃⊥) of the policy's ĉ, or zeros when ĉ is off (then S is A2C's Â log π). ``values``: V(s)
        on the batch (read by ĉ with ``cv_value_input``)."""
        if not (self.action_dependent_cv and use_cv):
            return 0.0, 0.0, 0.0
        noise = (rollout_data.noise_u, rollout_data.noise_v) if self._stores_noise else (None, None)
        extra = {"values": values} if self.cv_value_input else {}
        if self.cv_segment_position:
            extra["segment_position"] = (self.n_steps - rollout_data.segment_steps) / self.n_steps
        return self.policy.control_variate_terms(distribution, actions, features, *noise, **extra)

    def _forward_batch(self, rollout_data: Any, use_cv: bool = True, cv_weight: float = 1.0) -> dict[str, Any]:
        """Evaluate the policy on a batch and build the surrogate S (DESIGN §4) with ĉ weighted by ``cv_weight``
        (ĉ ≡ 0 when ``use_cv`` is False); the returned ĉ terms are unweighted. Nothing is stepped."""
        actions = rollout_data.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        values, log_prob, entropy, distribution, features = self.policy.evaluate_actions_with_distribution(
            rollout_data.observations, actions
        )
        advantages = self._score_targets(rollout_data)
        terms = self._cv_terms(rollout_data, distribution, actions, features, values, use_cv)
        policy_loss = self._policy_loss(log_prob, advantages, terms, cv_weight)
        return dict(actions=actions, values=values.flatten(), log_prob=log_prob, entropy=entropy,
                    distribution=distribution, features=features, advantages=advantages, cv_terms=terms,
                    c_z=terms[0], c_z_tilde_cut=terms[2], policy_loss=policy_loss)

    @staticmethod
    def _policy_loss(log_prob: torch.Tensor, advantages: torch.Tensor, terms: tuple, cv_weight: float = 1.0):
        """−S̄ with ĉ replaced by ``cv_weight`` · ĉ (S is linear in ĉ, so its gradient is ĝ_off − w (ĝ_off − ĝ_on))."""
        if cv_weight != 1.0:
            terms = tuple(cv_weight * c for c in terms)
        return -relax_surrogate(log_prob, advantages, *terms).mean()

    def _score_targets(self, rollout_data: Any) -> torch.Tensor:
        """What multiplies log π before the control variate is subtracted: Â (A2C's advantage)."""
        advantages = rollout_data.advantages
        if self.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        return advantages

    def _cv_extra_loss(self, rollout_data: Any, c_cut: Any) -> torch.Tensor | None:
        """The regression term added to φ's variance objective: cv_regression_coef · mean (Â − ĉ(z̃⊥))²."""
        if self.cv_regression_coef == 0:
            return None
        return self.cv_regression_coef * F.mse_loss(c_cut.flatten(), self._score_targets(rollout_data).flatten())

    def _record_batch_diagnostics(self, batch: dict[str, Any], theta: list[torch.Tensor]) -> None:
        """Extra per-batch diagnostics, computed before anything is stepped (none for RelaxA2C)."""

    def policy_gradient(self, rollout_data: Any, control_variate: bool = True) -> list[torch.Tensor | None]:
        """The estimate of ∇_θ J from one batch (ascent direction; no entropy bonus, no clipping), one entry per
        parameter of ``policy.theta_parameters()`` (None where the estimate cannot reach, e.g. the value head);
        nothing is stepped. It is the estimate θ's update uses (ĉ weighted by ``cv_coef``).
        ``control_variate=False``: the same estimator with ĉ ≡ 0 on the same batch, which for RelaxA2C is A2C's
        Â ∇ log π. Used by :mod:`relax_rl.diagnostics`."""
        theta = self.policy.theta_parameters()
        weight = self._cv_weight() if control_variate and self.action_dependent_cv else 1.0
        policy_loss = self._forward_batch(rollout_data, use_cv=control_variate, cv_weight=weight)["policy_loss"]
        return list(torch.autograd.grad(-policy_loss, theta, allow_unused=True))

    def _train_on_batch(self, rollout_data: Any) -> dict[str, Any]:
        policy, cv_on = self.policy, self.action_dependent_cv
        theta, phi = policy.theta_parameters(), policy.cv_parameters()
        batch = self._forward_batch(rollout_data)
        actions, values, log_prob, entropy = batch["actions"], batch["values"], batch["log_prob"], batch["entropy"]
        distribution, features, advantages = batch["distribution"], batch["features"], batch["advantages"]
        policy_loss, c_z_tilde_cut = batch["policy_loss"], batch["c_z_tilde_cut"]
        value_loss = F.mse_loss(rollout_data.returns, values)
        entropy_loss = -torch.mean(-log_prob) if entropy is None else -torch.mean(entropy)
        # β (cv_coef) is fixed before this batch is used; policy_loss itself keeps ĉ whole (φ's objective)
        weight = self._cv_weight() if cv_on else 1.0
        estimate_weight = cv_on and self._cv_coef_estimator is not None
        weighted = cv_on and (weight != 1.0 or estimate_weight)
        theta_policy_loss = self._policy_loss(log_prob, advantages, batch["cv_terms"], weight) if weighted \
            else policy_loss
        loss = theta_policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        _check_finite("loss", loss)
        self._record_batch_diagnostics(batch, theta)

        # θ's gradient comes from the φ that predates this batch (so φ never depends on the batch it corrects)
        step_cv = cv_on and self._n_updates % self.cv_update_interval == 0
        reuse_cv_grads = step_cv and self.cv_loss_space == "params"
        if reuse_cv_grads:
            # ∇_θ policy_loss is built below with create_graph for φ's objective; reuse it for θ, and backprop
            # only the value and entropy terms here (one pass through the actor saved)
            rest = self.vf_coef * value_loss
            if self.ent_coef != 0:  # (with ent_coef 0 the entropy term only adds zeros, through the whole actor)
                rest = rest + self.ent_coef * entropy_loss
            rest_grads = torch.autograd.grad(rest, theta, retain_graph=True, allow_unused=True)
        else:
            policy.optimizer.zero_grad()  # (the other branch sets every θ.grad outright)
            loss.backward(inputs=theta, retain_graph=True)
            # ĝ alone (without the value and entropy terms), for the running variance; with ĉ trained on the
            # weights' gradient it is only tracked on the updates that compute that gradient anyway
            if self.log_grad_variance and not (cv_on and self.cv_loss_space == "params"):
                self._update_grad_variance(torch.autograd.grad(theta_policy_loss, theta, retain_graph=True,
                                                               allow_unused=True))
            if estimate_weight and step_cv:  # β's statistics come from the updates that step φ
                self._cv_coef_estimator.update(self._off_gradient(log_prob, advantages, theta),
                                               torch.autograd.grad(policy_loss, theta, retain_graph=True,
                                                                   allow_unused=True))

        cv_losses: list[float] = []
        if step_cv:
            targets = self._estimate_targets(distribution, theta)
            for k in range(self.cv_updates_per_step):
                if k > 0:  # φ moved: re-evaluate ĉ on the same batch
                    terms = self._cv_terms(rollout_data, distribution, actions, features, values)
                    policy_loss_k = self._policy_loss(log_prob, advantages, terms)
                    c_cut = terms[2]
                else:
                    policy_loss_k, c_cut = policy_loss, c_z_tilde_cut
                grads = torch.autograd.grad(policy_loss_k, targets, create_graph=True, retain_graph=True,
                                            allow_unused=True)
                if k == 0 and reuse_cv_grads:
                    self._set_theta_gradient(theta, grads, rest_grads, log_prob, advantages, weight,
                                             estimate_weight)
                cv_loss = sum((g * g).sum() for g in grads if g is not None)
                extra = self._cv_extra_loss(rollout_data, c_cut)
                total = cv_loss if extra is None else cv_loss + extra
                # (a NaN or inf in cv_loss carries into the total: one check covers both)
                _check_finite("variance objective (cv_loss)" if extra is None else "control-variate loss", total)
                # (φ.grad set outright: the same numbers as zero_grad() and backward(), one pass over φ fewer)
                phi_grads = torch.autograd.grad(total, phi, retain_graph=True, allow_unused=True)
                _check_finite("gradient of the variance objective", *phi_grads)
                for param, grad in zip(phi, phi_grads, strict=True):
                    param.grad = grad
                policy.cv_optimizer.step()
                cv_losses.append(cv_loss.item())

        # θ's gradient is checked through its norm, which clipping computes anyway (φ's step, if any, was on
        # finite φ gradients; θ is not stepped)
        _check_finite("gradient of the loss", torch.nn.utils.clip_grad_norm_(theta, self.max_grad_norm))
        policy.optimizer.step()
        return {
            "entropy_loss": entropy_loss.item(),
            "policy_loss": theta_policy_loss.item(),
            "value_loss": value_loss.item(),
            "grad_variance": self._grad_variance,
            "cv_loss": cv_losses,
            "advantages": advantages,
            "c_hat": c_z_tilde_cut,
        }

    def learn(self, *args: Any, tb_log_name: str = "RelaxA2C", **kwargs: Any) -> RelaxA2C:
        return super().learn(*args, tb_log_name=tb_log_name, **kwargs)

