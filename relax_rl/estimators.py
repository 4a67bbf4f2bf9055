"""Gradient estimators for E_{p_θ(b)}[f(b)]: REINFORCE, Concrete, REBAR, RELAX and LAX (DESIGN §3).

Every estimator is an ``nn.Module`` that owns its control-variate parameters φ and is called as

    surrogate, sample = estimator(params, f)

``params`` are logits (``[..., n]`` Bernoulli, ``[..., K]`` categorical) or a ``(mean, log_std)``
tuple (LAX). ``f`` maps a batch of samples to per-sample values; its output shape decides what "one
sample" is: log p_θ(b) is summed over the trailing dimensions that f reduces away. The gradient of
``surrogate.sum()`` with respect to ``params`` (and everything upstream of them) is an unbiased
estimate of ∇ Σ E[f] for every estimator but :class:`Concrete`. All unbiased estimators share one
surrogate (:func:`relax_surrogate`):

    S = (f(b) − c_φ(z̃⊥)) · log p_θ(b) + c_φ(z) − c_φ(z̃)

where z̃⊥ is z̃ with its path to θ cut but its dependence on φ kept, so that the variance objective
(:mod:`relax_rl.variance`) can train c_φ through the score-function coefficient.

``f(b)`` at the hard sample is a black box: it is evaluated under ``torch.no_grad()``. Concrete,
REBAR and relaxed-REBAR also evaluate f at relaxed inputs and differentiate through it. If f has
parameters of its own (a decoder), take their ordinary gradient separately and restrict the
surrogate's gradient to θ and φ (``torch.autograd.grad(surrogate.sum(), theta)``). f must depend on θ
only through its input: a term such as a VAE's −log q_θ(b|x) inside f must use detached logits (add that
term's own gradient separately), or the relaxed evaluations c(z̃⊥) keep a path to θ and REBAR /
relaxed-REBAR become biased.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from relax_rl.control_variates import ControlVariateMLP
from relax_rl.families import BernoulliFamily, CategoricalFamily, Noise, make_family

__all__ = [
    "relax_surrogate",
    "lax_surrogate",
    "BernoulliFamily",
    "CategoricalFamily",
    "REINFORCE",
    "Concrete",
    "REBAR",
    "RELAX",
    "LAX",
]

BlackBox = Callable[[torch.Tensor], torch.Tensor]


def relax_surrogate(
    log_prob: torch.Tensor,
    f_b: torch.Tensor,
    c_z: torch.Tensor | float,
    c_z_tilde: torch.Tensor | float,
    c_z_tilde_cut: torch.Tensor | float,
) -> torch.Tensor:
    """S = (f(b) − c(z̃⊥)) · log p(b) + c(z) − c(z̃)  (DESIGN §3, the one surrogate).

    ∇_θ S = [f(b) − c(z̃)] ∇_θ log p(b) + ∇_θ c(z) − ∇_θ c(z̃) is the RELAX estimate. ``f_b`` must
    carry no gradient; ``c_z_tilde_cut`` must be c evaluated at z̃ detached from θ, with φ live.
    """
    return (f_b.detach() - c_z_tilde_cut) * log_prob + c_z - c_z_tilde


def lax_surrogate(
    log_prob: torch.Tensor, f_b: torch.Tensor, c_b: torch.Tensor, c_b_cut: torch.Tensor
) -> torch.Tensor:
    """S = (f(b) − c(b⊥)) · log p(b⊥) + c(b), b = μ + σ·ε  (DESIGN §3, Gaussian / LAX).

    ``log_prob`` is log p_θ at the detached sample; ``c_b`` is c at the reparameterized sample.
    """
    return (f_b.detach() - c_b_cut) * log_prob + c_b


def _sum_to_shape(x: torch.Tensor, shape: torch.Size, what: str) -> torch.Tensor:
    """Sum the trailing dimensions of x until it has ``shape`` (the per-sample shape of f)."""
    extra = x.dim() - len(shape)
    if extra < 0 or x.shape[: len(shape)] != shape:
        raise ValueError(
            f"f returned shape {tuple(shape)}, which does not match {what} of shape {tuple(x.shape)}: "
            "f must return one value per sample, i.e. a leading part of the sample's shape "
            "(Bernoulli logits [..., n] -> f(b) [...]; categorical logits [..., K] -> f(b) [...])"
        )
    return x.sum(dim=tuple(range(len(shape), x.dim()))) if extra else x


def _check_dtype(module: nn.Module, dtype: torch.dtype) -> None:
    for p in module.parameters():
        if p.dtype != dtype:
            raise ValueError(
                f"the parameters passed are {dtype} but the estimator's are {p.dtype}: call estimator.to({dtype})"
            )


def _per_sample(x: torch.Tensor, batch_ndim: int) -> torch.Tensor:
    """x flattened to ``[..., inputs]`` after its ``batch_ndim`` sample dimensions (one input when f returns a
    value per variable, i.e. each Bernoulli is its own sample)."""
    return x.unsqueeze(-1) if batch_ndim >= x.dim() else x.flatten(start_dim=batch_ndim)


def _check_cv_output(c: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    if c.shape != shape:
        raise ValueError(f"the control variate {name} returned shape {tuple(c.shape)}; expected {tuple(shape)}")
    return c


class _DiscreteEstimator(nn.Module):
    """Shared sampling and bookkeeping for the discrete estimators.

    Subclasses define :meth:`control_variate` (c_φ at a relaxed sample, per sample); the forward pass
    is the one surrogate of :func:`relax_surrogate`.
    """

    uses_conditional = True

    def __init__(self, distribution: str = "bernoulli", common_random_numbers: bool = False) -> None:
        super().__init__()
        self.distribution = distribution
        self.family = make_family(distribution)
        self.common_random_numbers = bool(common_random_numbers)

    def _check_params(self, logits: torch.Tensor) -> None:
        if not isinstance(logits, torch.Tensor) or logits.dim() == 0 or not logits.is_floating_point():
            raise ValueError(
                f"{type(self).__name__} expects a floating-point logits tensor of shape [..., n] (Bernoulli) or "
                f"[..., K] (categorical), got {type(logits).__name__}"
                + (f" of shape {tuple(logits.shape)} and dtype {logits.dtype}" if isinstance(logits, torch.Tensor)
                   else "")
            )
        _check_dtype(self, logits.dtype)

    def control_variate(self, z: torch.Tensor, f: BlackBox, batch_ndim: int) -> torch.Tensor:
        """c_φ at the (relaxed) sample z; ``batch_ndim`` leading dimensions index samples."""
        raise NotImplementedError

    def forward(
        self, logits: torch.Tensor, f: BlackBox, noise: Noise | None = None, f_relaxed: BlackBox | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (per-sample surrogate, hard sample). ``noise`` = (u, v) replays pre-drawn uniforms.

        ``f_relaxed`` (default ``f``) is what c_φ evaluates at relaxed samples, while f(b) at the hard
        sample stays ``f``. The estimate stays unbiased if ``f_relaxed`` is one fixed differentiable
        function during the call (it may hold noise of its own, drawn independently of θ) and
        E[f(b) | b] is the objective at b: c_φ only has to be a function of z, not f itself.
        """
        self._check_params(logits)
        f_cv = f if f_relaxed is None else f_relaxed
        u, v = self.family.draw_noise(logits) if noise is None else noise
        z, b = self.family.sample(logits, u)
        hard = self.family.hard(b, logits)
        with torch.no_grad():
            f_b = f(hard)
        log_prob = _sum_to_shape(self.family.log_prob(logits, b), f_b.shape, "log p(b)")
        batch_ndim = f_b.dim()
        if not self.uses_conditional:
            c = self.control_variate(z, f_cv, batch_ndim)
            return relax_surrogate(log_prob, f_b, c, c, c), hard
        if self.common_random_numbers:
            v = self.family.common_noise(logits, u, b)
        z_tilde = self.family.conditional(logits, b, v)
        c_z = _check_cv_output(self.control_variate(z, f_cv, batch_ndim), f_b.shape, "c(z)")
        c_z_tilde = _check_cv_output(self.control_variate(z_tilde, f_cv, batch_ndim), f_b.shape, "c(z~)")
        c_z_tilde_cut = self.control_variate(z_tilde.detach(), f_cv, batch_ndim)
        return relax_surrogate(log_prob, f_b, c_z, c_z_tilde, c_z_tilde_cut), hard


class _TemperatureMixin(nn.Module):
    def _init_temperature(self, temperature: float, learn: bool) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        log_t = torch.tensor(math.log(temperature))
        if learn:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()


class REINFORCE(_DiscreteEstimator):
    """Score-function estimator: ĝ = (f(b) − c) ∇_θ log p_θ(b).

    :param baseline: ``None`` (c ≡ 0), a float (a fixed baseline), or ``"learned"`` (a scalar φ
        trained by the variance objective).
    """

    uses_conditional = False

    def __init__(self, distribution: str = "bernoulli", baseline: float | str | None = None) -> None:
        super().__init__(distribution)
        if baseline == "learned":
            self.baseline = nn.Parameter(torch.zeros(()))
        elif baseline is None or isinstance(baseline, (int, float)):
            self.register_buffer("baseline", torch.tensor(float(baseline or 0.0)))
        else:
            raise ValueError(f"baseline must be None, a number or 'learned', got {baseline!r}")

    def control_variate(self, z: torch.Tensor, f: BlackBox, batch_ndim: int) -> torch.Tensor:
        return self.baseline.to(z.dtype)


class Concrete(_TemperatureMixin, _DiscreteEstimator):
    """Concrete / Gumbel-softmax estimator: ∇_θ f(σ_λ(z)), reparameterized and *biased* for λ > 0.

    The surrogate is f at the relaxed sample, so it must accept relaxed (non-binary, non-one-hot) input.
    """

    def __init__(self, distribution: str = "bernoulli", temperature: float = 0.5) -> None:
        super().__init__(distribution)
        self._init_temperature(temperature, learn=False)

    def forward(
        self, logits: torch.Tensor, f: BlackBox, noise: Noise | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_params(logits)
        u = self.family.draw_noise(logits)[0] if noise is None else noise[0]
        z, b = self.family.sample(logits, u)
        return f(self.family.relax(z, self.temperature)), self.family.hard(b, logits)


class REBAR(_TemperatureMixin, _DiscreteEstimator):
    """REBAR (Tucker et al., 2017): c_φ(z) = η · f(σ_λ(z)) with temperature λ and scale η learned.

    f is evaluated (and differentiated) at relaxed inputs σ_λ(z) and σ_λ(z̃).
    """

    def __init__(
        self,
        distribution: str = "bernoulli",
        temperature: float = 0.5,
        scale: float = 1.0,
        learn_temperature: bool = True,
        common_random_numbers: bool = False,
    ) -> None:
        super().__init__(distribution, common_random_numbers)
        self._init_temperature(temperature, learn_temperature)
        self.eta = nn.Parameter(torch.tensor(float(scale)))

    def control_variate(self, z: torch.Tensor, f: BlackBox, batch_ndim: int) -> torch.Tensor:
        return self.eta * f(self.family.relax(z, self.temperature))


class RELAX(_TemperatureMixin, _DiscreteEstimator):
    """RELAX: a learned control variate c_φ(z) = r_φ(relaxed z) (``mode="relax"``), or
    c_φ(z) = η · f(σ_λ(z)) + r_φ(relaxed z) (``mode="relaxed-rebar"``).

    r_φ receives 2σ(z/λ) − 1 (Bernoulli) or softmax(z/λ) (categorical) with λ learned, or the raw z
    with ``network_input="raw"``, flattened over the dimensions that f reduces: ``[..., num_inputs]``
    with num_inputs = n (Bernoulli ``[..., n]``) or m·K (m categoricals ``[..., m, K]`` per sample).
    Pass ``control_variate`` (any module mapping ``[..., num_inputs]`` to ``[...]``) or ``num_inputs``
    to get the default :class:`ControlVariateMLP`.
    """

    def __init__(
        self,
        distribution: str = "bernoulli",
        control_variate: nn.Module | None = None,
        num_inputs: int | None = None,
        hidden_sizes: Sequence[int] = (10,),
        mode: str = "relax",
        temperature: float = 0.5,
        scale: float = 1.0,
        network_input: str = "relaxed",
        common_random_numbers: bool = False,
    ) -> None:
        super().__init__(distribution, common_random_numbers)
        if mode not in ("relax", "relaxed-rebar"):
            raise ValueError(f"unknown mode {mode!r}; supported: 'relax', 'relaxed-rebar'")
        if network_input not in ("relaxed", "raw"):
            raise ValueError(f"unknown network_input {network_input!r}; supported: 'relaxed', 'raw'")
        if control_variate is None:
            if num_inputs is None:
                raise ValueError(
                    "RELAX needs either control_variate (an nn.Module) or num_inputs (the size of the "
                    "logits' last dimension) to build the default network"
                )
            control_variate = ControlVariateMLP(num_inputs, hidden_sizes)
        self.mode = mode
        self.network_input = network_input
        self.cv_net = control_variate
        self._init_temperature(temperature, learn=True)
        if mode == "relaxed-rebar":
            self.eta = nn.Parameter(torch.tensor(float(scale)))

    def control_variate(self, z: torch.Tensor, f: BlackBox, batch_ndim: int) -> torch.Tensor:
        x = z if self.network_input == "raw" else self.family.network_input(z, self.temperature)
        c = self.cv_net(_per_sample(x, batch_ndim))
        if self.mode == "relaxed-rebar":
            c = c + self.eta * f(self.family.relax(z, self.temperature))
        return c


class LAX(nn.Module):
    """LAX for reparameterizable Gaussians b = μ + σ·ε (DESIGN §3):

        S = (f(b) − c_φ(b⊥)) · log p_θ(b⊥) + c_φ(b)

    ``params`` is ``(mean, log_std)``, each ``[..., d]``; f is a black box on ``[..., d]`` samples.
    c_φ receives the sample flattened over the dimensions f reduces (``[..., num_inputs]``).
    """

    def __init__(
        self,
        control_variate: nn.Module | None = None,
        num_inputs: int | None = None,
        hidden_sizes: Sequence[int] = (32, 32),
    ) -> None:
        super().__init__()
        if control_variate is None:
            if num_inputs is None:
                raise ValueError(
                    "LAX needs either control_variate (an nn.Module) or num_inputs (the sample dimension d)"
                )
            control_variate = ControlVariateMLP(num_inputs, hidden_sizes, activation=nn.Tanh, scale_init=None)
        self.cv_net = control_variate

    def forward(
        self,
        params: tuple[torch.Tensor, torch.Tensor],
        f: BlackBox,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (per-sample surrogate, sample b). ``noise`` replays a pre-drawn ε ~ N(0, I)."""
        if not (isinstance(params, (tuple, list)) and len(params) == 2
                and all(isinstance(p, torch.Tensor) and p.is_floating_point() for p in params)):
            raise ValueError("LAX expects params = (mean, log_std), two floating-point torch tensors of the same "
                             f"shape [..., d], got {type(params).__name__}"
                             + (f" of {', '.join(type(p).__name__ for p in params)}"
                                if isinstance(params, (tuple, list)) else ""))
        mean, log_std = params
        _check_dtype(self, mean.dtype)
        if mean.shape != log_std.shape:
            mean, log_std = torch.broadcast_tensors(mean, log_std)
        eps = torch.randn_like(mean) if noise is None else noise
        std = log_std.exp()
        b = mean + std * eps
        b_cut = b.detach()
        with torch.no_grad():
            f_b = f(b_cut)
        log_prob = -0.5 * ((b_cut - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        log_prob = _sum_to_shape(log_prob, f_b.shape, "log p(b)")
        batch_ndim = f_b.dim()
        c_b = _check_cv_output(self.cv_net(_per_sample(b, batch_ndim)), f_b.shape, "c(b)")
        c_b_cut = self.cv_net(_per_sample(b_cut, batch_ndim))
        return lax_surrogate(log_prob, f_b, c_b, c_b_cut), b_cut
