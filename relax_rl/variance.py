"""The variance objective for φ and the joint θ/φ step (DESIGN §3, "Training φ").

    ĝ = ∇_θ S̄ (S̄ the batch mean of the surrogate), built with create_graph=True
    L_φ = ‖ĝ‖² summed over all of θ

Because E[ĝ] does not depend on φ (every control variate leaves the estimator unbiased),
∇_φ E‖ĝ‖² = ∇_φ tr Var(ĝ): stepping φ on ∇_φ L_φ (double backprop) lowers the estimator's variance.
φ is never stepped with ∇_φ S, which means nothing. θ is stepped with ĝ (detached) plus the gradient
of any deterministic extra loss (an entropy bonus), which stays out of L_φ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "check_finite", "variance_loss", "estimator_step", "EstimatorStepInfo", "sample_gradients",
    "ControlVariateCoefficient",
]


def _as_list(tensors: torch.Tensor | Iterable[torch.Tensor]) -> list[torch.Tensor]:
    return [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)


def check_finite(name: str, *tensors: torch.Tensor | None, hint: str = "") -> None:
    """FloatingPointError naming ``name`` if any tensor holds NaN or inf (call it before stepping anything).
    One fused check over all tensors: a per-tensor loop costs one small op per parameter on every update."""
    present = [t.reshape(-1) for t in tensors if t is not None]
    if not present:
        return
    flat = present[0] if len(present) == 1 else torch.cat(present)
    if not bool(torch.isfinite(flat).all()):
        raise FloatingPointError(
            f"non-finite {name}: refusing the update so that no parameter becomes NaN or inf{hint}"
        )


def variance_loss(
    surrogate: torch.Tensor,
    theta: torch.Tensor | Iterable[torch.Tensor],
    reduction: str = "mean",
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Return (L_φ = ‖ĝ‖², ĝ) with ĝ = ∇_θ S̄, differentiable in φ (ready for ``backward(inputs=φ)``).

    :param surrogate: per-sample surrogate from an estimator.
    :param theta: the parameters the estimate is for: network weights (the default choice), or the
        distribution parameters themselves (logits, mean, log-std) for the cheaper per-sample variant.
    :param reduction: ``"mean"`` (S̄, DESIGN §3) or ``"sum"``.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    theta = _as_list(theta)
    total = surrogate.mean() if reduction == "mean" else surrogate.sum()
    grads = torch.autograd.grad(total, theta, create_graph=True, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, theta, strict=True)]
    loss = sum((g * g).sum() for g in grads)
    return loss, grads


@dataclass
class EstimatorStepInfo:
    """What one :func:`estimator_step` did (plain floats, for logging)."""

    cv_loss: float
    grad_norm: float


def estimator_step(
    surrogate: torch.Tensor,
    theta: Sequence[torch.Tensor] | Iterable[torch.Tensor],
    theta_optimizer: torch.optim.Optimizer,
    cv_optimizer: torch.optim.Optimizer | None = None,
    *,
    extra_loss: torch.Tensor | None = None,
    reduction: str = "mean",
    max_grad_norm: float | None = None,
) -> EstimatorStepInfo:
    """One joint step: φ descends ∇_φ ‖ĝ‖², θ descends ĝ (+ ∇_θ extra_loss).

    The estimator estimates ∇ E[f], so θ *minimizes* E[f]; to maximize a reward pass −reward as f or
    build the optimizer with ``maximize=True``. φ is every parameter in ``cv_optimizer``; it must be
    disjoint from θ (one optimizer for both makes φ's learning rate meaningless, DESIGN §5.5).
    Clipping (``max_grad_norm``) applies to θ only. Raises ``FloatingPointError`` and changes nothing
    when ĝ or the variance objective is not finite.
    """
    theta = [p for p in theta]
    phi = [] if cv_optimizer is None else [p for g in cv_optimizer.param_groups for p in g["params"]]
    theta_ids = {id(p) for p in theta}
    if any(id(p) in theta_ids for p in phi):
        raise ValueError("θ and φ overlap: the control variate's parameters must not be in theta")
    loss, grads = variance_loss(surrogate, theta, reduction)
    check_finite("policy-gradient estimate ĝ", *grads)
    check_finite("variance objective ‖ĝ‖²", loss)
    if extra_loss is not None:
        extra = torch.autograd.grad(extra_loss, theta, retain_graph=True, allow_unused=True)
        grads = [g if e is None else g + e for g, e in zip(grads, extra, strict=True)]
        check_finite("extra loss gradient", *[e for e in extra if e is not None])
    phi_trainable = [p for p in phi if p.requires_grad]
    if phi_trainable and loss.requires_grad:
        cv_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=phi_trainable)
        check_finite("control-variate gradient ∇_φ‖ĝ‖²", *[p.grad for p in phi_trainable])
    for p, g in zip(theta, grads, strict=True):
        p.grad = g.detach().clone()
    grad_norm = torch.linalg.vector_norm(torch.stack([g.detach().norm() for g in grads])).item()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(theta, max_grad_norm)
    theta_optimizer.step()
    if phi_trainable and loss.requires_grad:
        cv_optimizer.step()
    return EstimatorStepInfo(cv_loss=float(loss.detach()), grad_norm=grad_norm)


def sample_gradients(
    estimator: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    params: torch.Tensor | tuple[torch.Tensor, ...],
    f: Callable[[torch.Tensor], torch.Tensor],
    num_samples: int,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """``num_samples`` independent single-sample estimates of ∇_params E[f], shaped ``[num_samples, *shape]``.

    The parameters are copied ``num_samples`` times along a new leading dimension; because each
    sample's surrogate depends only on its own copy, one backward pass of ``surrogate.sum()`` yields
    every per-sample gradient. φ receives no gradient. Used for unbiasedness tests and variance plots.
    """
    single = isinstance(params, torch.Tensor)
    originals = (params,) if single else tuple(params)
    copies = [p.detach().unsqueeze(0).repeat(num_samples, *([1] * p.dim())).requires_grad_() for p in originals]
    surrogate, _ = estimator(copies[0] if single else tuple(copies), f)
    grads = torch.autograd.grad(surrogate.sum(), copies)
    return grads[0] if single else tuple(grads)


class ControlVariateCoefficient:
    """Running estimate of the variance-minimizing weight β of a control variate.

    Let ĝ_off be an estimate without the control variate and ĝ_on one with it, both unbiased for the same
    gradient. Their difference d = ĝ_off − ĝ_on has mean zero, so ĝ_β = ĝ_off − β·d is unbiased for every β
    that is fixed before the batch is drawn, and

        tr Var(ĝ_β) = tr Var(ĝ_off) − 2β·E⟨ĝ_off, d⟩ + β²·E‖d‖²,   minimized at   β* = E⟨ĝ_off, d⟩ / E‖d‖².

    ``value`` is β* from exponential moving averages (weight ``1 − decay``) over the batches already seen,
    clipped to [0, ``max_value``]: 0 falls back to ĝ_off, 1 is the control variate as trained, and β > 1 (only
    with ``max_value`` > 1) scales up a control variate that points the right way but is too small. Each batch's
    two sums are divided by its own ‖ĝ_off‖² + ‖d‖² before they enter the averages, so every batch weighs the
    same: in RL the gradients' scale falls by orders of magnitude as the policy converges, and raw averages would
    answer with the scale of long-past batches. Call ``update`` after using ``value`` on a batch, never before
    (β must not depend on the batch it weights). Because the surrogates are linear in c, ĝ_β is the estimate with
    c replaced by β·c. Until d has been non-zero once, ``value`` stays at ``initial`` (clipped to the same range).
    """

    max_value: float = 1.0  # estimators pickled before the bound existed

    def __init__(self, decay: float = 0.99, initial: float = 1.0, max_value: float = 1.0) -> None:
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if not 0.0 < float(max_value) < math.inf:
            raise ValueError(f"max_value must be a finite number > 0, got {max_value}")
        if not math.isfinite(float(initial)):
            raise ValueError(f"initial must be a finite number, got {initial}")
        self.decay = float(decay)
        self.max_value = float(max_value)
        self.value = min(max(float(initial), 0.0), self.max_value)
        self.cross = 0.0  # EMA of ⟨ĝ_off, d⟩ / (‖ĝ_off‖² + ‖d‖²)
        self.norm = 0.0  # EMA of ‖d‖² / (‖ĝ_off‖² + ‖d‖²)

    def update(self, off: Sequence[torch.Tensor | None], on: Sequence[torch.Tensor | None]) -> None:
        """Fold one batch's pair of estimates (matching lists of per-parameter gradients) into β."""
        pairs = [(g_off, g_on) for g_off, g_on in zip(off, on, strict=True) if g_off is not None or g_on is not None]
        if not pairs:
            return
        flat_off = torch.cat([(torch.zeros_like(g_on) if g_off is None else g_off.detach()).flatten()
                              for g_off, g_on in pairs])
        flat_on = torch.cat([(torch.zeros_like(g_off) if g_on is None else g_on.detach()).flatten()
                             for g_off, g_on in pairs])
        d = flat_off - flat_on
        cross, norm, scale = torch.stack([flat_off @ d, d @ d, flat_off @ flat_off]).tolist()
        if not (math.isfinite(cross) and math.isfinite(norm) and math.isfinite(scale)):
            raise FloatingPointError("non-finite gradient estimates: refusing to update the control-variate weight")
        if norm == 0.0:  # c is 0 on this batch (e.g. its scale starts at 0): nothing to learn about β
            return
        cross, norm = cross / (scale + norm), norm / (scale + norm)
        self.cross = self.decay * self.cross + (1.0 - self.decay) * cross
        self.norm = self.decay * self.norm + (1.0 - self.decay) * norm
        if self.norm > 0.0:
            self.value = min(max(self.cross / self.norm, 0.0), self.max_value)
