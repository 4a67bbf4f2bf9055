"""Actor-critic policies with a learned, action-dependent control variate ĉ_φ(a, s) (DESIGN §4).

The control variate is c_φ(a, s) = V(s) + ĉ_φ(a, s): V is SB3's critic, ĉ_φ an MLP on
[features(s) detached, relaxed action] whose output scale starts at 0, so a fresh policy's estimator
equals A2C's. φ = ĉ's weights, scale and (discrete) relaxation temperature τ; they get their own
``cv_optimizer`` and are excluded from ``optimizer`` (and so from gradient clipping).

ĉ reads the policy's features *detached*. For MLP policies those are the (flattened) observations;
for CnnPolicy they are the shared CNN's output: reusing them costs nothing, and detaching them means
the variance objective can never move θ through the CNN. Detached features are a fixed function of s
for the estimator, so unbiasedness is untouched.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from relax_rl.agents.relaxations import DISCRETE_SPACES, ActionRelaxation
from relax_rl.control_variates import ControlVariateMLP

__all__ = ["RelaxActorCriticPolicy", "RelaxActorCriticCnnPolicy", "RelaxMultiInputActorCriticPolicy"]

ControlVariateTerms = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _per_sample_input(value: torch.Tensor | None, name: str, option: str, features: torch.Tensor) -> torch.Tensor:
    """One extra input of ĉ per sample, as a detached column in the features' dtype; a clear error if missing."""
    if value is None:
        raise ValueError(f"this policy's ĉ reads {name} ({option}=True): pass {name}, one value per sample")
    return value.detach().reshape(-1, 1).to(features.dtype)


class RelaxActorCriticPolicy(ActorCriticPolicy):
    """SB3 ``ActorCriticPolicy`` plus ĉ_φ and its optimizer.

    :param action_dependent_cv: build ĉ (False: the policy is SB3's, parameter for parameter).
    :param cv_net_arch: hidden sizes of ĉ.
    :param cv_activation_fn: hidden activation of ĉ.
    :param cv_learning_rate: initial learning rate of ``cv_optimizer`` (the algorithm applies schedules).
    :param cv_optimizer_class: optimizer class for φ.
    :param cv_optimizer_kwargs: extra optimizer arguments for φ.
    :param cv_temperature_init: initial temperature τ of the relaxation fed to ĉ (discrete actions).
    :param cv_common_random_numbers: build z̃ from the v that reproduces z (DESIGN §3) instead of the stored v.
    :param cv_segment_position: ĉ takes one more input per sample, the transition's place in its rollout segment
        (``segment_position`` of :meth:`control_variate_terms`; the algorithm chooses the encoding).
    :param cv_value_input: ĉ takes one more input per sample, the critic's V(s) detached (``values`` of
        :meth:`control_variate_terms`), as symlog(V) = sign(V) log(1 + |V|) so that returns in the tens or hundreds
        do not saturate ĉ's tanh units: while V learns, the part of Â that ĉ can predict, E[Â | s] = E[R̂ | s] − V(s),
        moves with V, and ĉ can follow it through this input. V is a fixed function of s during a batch (θ is stepped
        after it), so unbiasedness is untouched.
    :param cv_advantage_scale: ĉ's output is in units of the advantages' spread: ĉ = σ̂ · ĉ_net, with σ̂ a running
        standard deviation of the score targets Â of the batches before (:meth:`observe_advantages`; 1 before the
        first). φ's optimizer moves ĉ_net by about its learning rate per step, so without σ̂ ĉ stays far below Â
        when Â is large (e.g. Monte-Carlo-like returns). σ̂ is fixed during a batch, so ĉ stays a fixed function
        of (a, s) for θ's estimate and unbiasedness is untouched.
    """

    #: ĉ's learned output scale starts here (0: a fresh estimator is A2C's); None: no scale.
    cv_scale_init: float | None = 0.0
    #: decay of σ̂'s moving average (``cv_advantage_scale``); bias-corrected, so σ̂ is the first batch's σ at first.
    cv_advantage_scale_decay: float = 0.99

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        *args: Any,
        action_dependent_cv: bool = True,
        cv_net_arch: list[int] | None = None,
        cv_activation_fn: type[nn.Module] = nn.Tanh,
        cv_learning_rate: float = 1e-3,
        cv_optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        cv_optimizer_kwargs: dict[str, Any] | None = None,
        cv_temperature_init: float = 1.0,
        cv_common_random_numbers: bool = False,
        cv_segment_position: bool = False,
        cv_advantage_scale: bool = False,
        cv_value_input: bool = False,
        **kwargs: Any,
    ) -> None:
        if action_dependent_cv and not isinstance(action_space, (*DISCRETE_SPACES, spaces.Box)):
            raise ValueError(
                f"unsupported action space {action_space}; RELAX policies support Discrete, MultiDiscrete, "
                "MultiBinary (RELAX) and Box (LAX)"
            )
        if not cv_temperature_init > 0:
            raise ValueError(f"cv_temperature_init must be > 0, got {cv_temperature_init}")
        self.action_dependent_cv = bool(action_dependent_cv)
        self.cv_net_arch = list(cv_net_arch) if cv_net_arch is not None else [32, 32]
        self.cv_activation_fn = cv_activation_fn
        self.cv_learning_rate = float(cv_learning_rate)
        self.cv_optimizer_class = cv_optimizer_class
        self.cv_optimizer_kwargs = dict(cv_optimizer_kwargs or {})
        self.cv_temperature_init = float(cv_temperature_init)
        self.cv_common_random_numbers = bool(cv_common_random_numbers)
        self.cv_segment_position = bool(cv_segment_position)
        self.cv_advantage_scale = bool(cv_advantage_scale)
        self.cv_value_input = bool(cv_value_input)
        self.relaxation = ActionRelaxation(action_space) if isinstance(action_space, DISCRETE_SPACES) else None
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    # ------------------------------------------------------------------------------------------
    # construction and saving
    # ------------------------------------------------------------------------------------------
    def _build(self, lr_schedule: Any) -> None:
        """SB3's networks and optimizer first (same parameters, same initialisation), then ĉ and its optimizer."""
        super()._build(lr_schedule)
        if not self.action_dependent_cv:
            return
        if self.use_sde:
            raise ValueError("action_dependent_cv=True does not support use_sde=True (gSDE); set one of them off")
        action_inputs = self.relaxation.noise_dim if self.relaxation is not None else get_action_dim(self.action_space)
        state_inputs = (self.pi_features_extractor.features_dim + int(self.cv_segment_position)
                        + int(self.cv_value_input))
        self.cv_net = ControlVariateMLP(state_inputs + action_inputs, self.cv_net_arch, self.cv_activation_fn,
                                        scale_init=self.cv_scale_init)
        if self.relaxation is not None:
            self.cv_log_temperature = nn.Parameter(torch.tensor(math.log(self.cv_temperature_init)))
        if self.cv_advantage_scale:  # buffers, not parameters: saved with the policy, never stepped by an optimizer
            self.register_buffer("cv_advantage_std_average", torch.tensor(0.0))
            self.register_buffer("cv_advantage_batches", torch.tensor(0.0))
        self.cv_optimizer = self.cv_optimizer_class(self.cv_parameters(), lr=self.cv_learning_rate,
                                                    **self._cv_optimizer_defaults(), **self.cv_optimizer_kwargs)

    def _cv_optimizer_defaults(self) -> dict[str, Any]:
        """``foreach=True`` where φ's optimizer takes it and the user did not choose: one fused op per update step
        over φ's few small tensors instead of a Python loop over them (same arithmetic, bit-identical on CPU).
        Not when the user chose ``foreach`` or ``fused`` (torch refuses both at once)."""
        if {"foreach", "fused"} & set(self.cv_optimizer_kwargs):
            return {}
        if "foreach" not in inspect.signature(self.cv_optimizer_class.__init__).parameters:
            return {}
        return {"foreach": True}

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            action_dependent_cv=self.action_dependent_cv,
            cv_net_arch=self.cv_net_arch,
            cv_activation_fn=self.cv_activation_fn,
            cv_learning_rate=self.cv_learning_rate,
            cv_optimizer_class=self.cv_optimizer_class,
            cv_optimizer_kwargs=self.cv_optimizer_kwargs,
            cv_temperature_init=self.cv_temperature_init,
            cv_common_random_numbers=self.cv_common_random_numbers,
            cv_segment_position=self.cv_segment_position,
            cv_advantage_scale=self.cv_advantage_scale,
            cv_value_input=self.cv_value_input,
        )
        return data

    def cv_parameters(self) -> list[nn.Parameter]:
        """φ: every parameter of ĉ (network, output scale, temperature)."""
        if not self.action_dependent_cv:
            return []
        params = list(self.cv_net.parameters())
        if self.relaxation is not None:
            params.append(self.cv_log_temperature)
        return params

    def theta_parameters(self) -> list[nn.Parameter]:
        """θ: the parameters of ``optimizer`` (actor, critic and shared features; never φ)."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def cv_temperature(self) -> torch.Tensor:
        return self.cv_log_temperature.exp()

    @property
    def _scales_by_advantage(self) -> bool:
        return self.action_dependent_cv and self.cv_advantage_scale

    @property
    def cv_output_multiplier(self) -> torch.Tensor | None:
        """σ̂ of ``cv_advantage_scale`` (None when off): the bias-corrected moving average of std(Â) over the
        batches observed so far, 1 before the first."""
        if not self._scales_by_advantage:
            return None
        batches, average = self.cv_advantage_batches, self.cv_advantage_std_average
        corrected = average / (1 - self.cv_advantage_scale_decay ** batches).clamp_min(1e-12)
        return torch.where(batches > 0, corrected, torch.ones_like(average))  # (no host sync on a GPU)

    @torch.no_grad()
    def observe_advantages(self, advantages: torch.Tensor) -> None:
        """Fold one batch's std(Â) into σ̂, after the batch's updates (so no batch's ĉ depends on its own Â).
        A batch whose std is not a finite number > 0 (one sample, all equal) is skipped."""
        if not self._scales_by_advantage or advantages.numel() < 2:
            return
        std = advantages.detach().float().std()
        if not (torch.isfinite(std) and std > 0):
            return
        decay = self.cv_advantage_scale_decay
        self.cv_advantage_std_average.mul_(decay).add_((1 - decay) * std.to(self.cv_advantage_std_average))
        self.cv_advantage_batches.add_(1)

    # ------------------------------------------------------------------------------------------
    # forward passes
    # ------------------------------------------------------------------------------------------
    def _latents(self, obs: PyTorchObs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
            pi_features = features
        else:
            pi_features, vf_features = features
            latent_pi = self.mlp_extractor.forward_actor(pi_features)
            latent_vf = self.mlp_extractor.forward_critic(vf_features)
        return pi_features, latent_pi, latent_vf

    def evaluate_actions_with_distribution(
        self, obs: PyTorchObs, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Distribution, torch.Tensor]:
        """SB3's ``evaluate_actions`` (same operations, same order), also returning the distribution and
        the actor's features, which the control variate needs."""
        pi_features, latent_pi, latent_vf = self._latents(obs)
        distribution = self._get_action_dist_from_latent(latent_pi)
        log_prob = distribution.log_prob(actions)
        values = self.value_net(latent_vf)
        entropy = distribution.entropy()
        return values, log_prob, entropy, distribution, pi_features

    def forward_with_noise(
        self, obs: PyTorchObs, noise_u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like ``forward`` for discrete actions, but the action is the reparameterized sample b = H(z(u))."""
        _, latent_pi, latent_vf = self._latents(obs)
        values = self.value_net(latent_vf)
        distribution = self._get_action_dist_from_latent(latent_pi)
        _, actions = self.relaxation.sample(self.relaxation.logits(distribution), noise_u)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob

    def _cv_state_inputs(self, features: torch.Tensor, segment_position: torch.Tensor | None,
                         values: torch.Tensor | None = None) -> torch.Tensor:
        """ĉ's inputs besides the action: the detached features, then the segment position and symlog V(s) (detached)
        if ĉ reads them."""
        inputs = [features.detach()]
        if self.cv_segment_position:
            inputs.append(_per_sample_input(segment_position, "segment_position", "cv_segment_position", features))
        if self.cv_value_input:
            value = _per_sample_input(values, "values", "cv_value_input", features)
            inputs.append(torch.sign(value) * torch.log1p(value.abs()))
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1)

    def cv_value(self, features: torch.Tensor, action_input: torch.Tensor) -> torch.Tensor:
        """ĉ_φ(a, s) on detached features and a (relaxed) action, one value per sample (times σ̂ with
        ``cv_advantage_scale``)."""
        c_hat = self.cv_net(torch.cat([features.detach(), action_input], dim=-1))
        multiplier = self.cv_output_multiplier
        return c_hat if multiplier is None else multiplier * c_hat

    def control_variate_terms(
        self,
        distribution: Distribution,
        actions: torch.Tensor,
        features: torch.Tensor,
        noise_u: torch.Tensor | None = None,
        noise_v: torch.Tensor | None = None,
        segment_position: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> ControlVariateTerms:
        """(c_z, c_z̃, c_z̃⊥) for :func:`relax_rl.relax_surrogate`.

        Discrete (RELAX): ĉ(z), ĉ(z̃) and ĉ(z̃ detached from θ), with z = z(θ, u), z̃ = z̃(θ, v, a).
        Box (LAX): ĉ(μ + σ·ε), 0 and ĉ(a) with ε = (a − μ)/σ recovered from the stored pre-clip action, so
        the surrogate is (Â − ĉ(a⊥)) log π(a|s) + ĉ(μ + σ·ε).
        ``segment_position`` and ``values`` (one value per sample; required with ``cv_segment_position`` and
        ``cv_value_input``) join ĉ's state inputs.
        """
        features = self._cv_state_inputs(features, segment_position, values)
        if self.relaxation is None:
            gaussian = distribution.distribution
            mean, std = gaussian.mean, gaussian.stddev
            actions = actions.reshape(mean.shape)
            eps = ((actions - mean) / std).detach()
            c_rep = self.cv_value(features, mean + std * eps)
            return c_rep, torch.zeros_like(c_rep), self.cv_value(features, actions)
        if noise_u is None or noise_v is None:
            raise ValueError("discrete actions need the stored noise (noise_u, noise_v)")
        relaxation, temperature = self.relaxation, self.cv_temperature
        logits = relaxation.logits(distribution)
        z, _ = relaxation.sample(logits, noise_u)
        if self.cv_common_random_numbers:
            noise_v = relaxation.common_noise(logits, noise_u, actions)
        z_tilde = relaxation.conditional(logits, actions, noise_v)
        # one pass of ĉ over the three stacked inputs (z, z̃, z̃ cut from θ) instead of three
        relaxed = relaxation.relax(torch.cat([z, z_tilde, z_tilde.detach()]), temperature)
        c_all = self.cv_value(features.repeat(3, *([1] * (features.dim() - 1))), relaxed)
        c_z, c_z_tilde, c_z_tilde_cut = c_all.chunk(3)
        return c_z, c_z_tilde, c_z_tilde_cut


class RelaxActorCriticCnnPolicy(RelaxActorCriticPolicy):
    """CNN policy (NatureCNN features shared by actor and critic; ĉ reads them detached)."""

    def __init__(self, *args: Any, features_extractor_class: type = NatureCNN, **kwargs: Any) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class RelaxMultiInputActorCriticPolicy(RelaxActorCriticPolicy):
    """Policy for Dict observation spaces (SB3's CombinedExtractor)."""

    def __init__(self, *args: Any, features_extractor_class: type = CombinedExtractor, **kwargs: Any) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
