"""The variance objective for φ and the joint θ/φ step (DESIGN §3, "Training φ").

    ĝ = ∇_θ S̄ (S̄ the batch mean of the surrogate), built with create_graph=True
    L_φ = ‖ĝ‖² summed over all of θ

Because E[ĝ] does not depend on φ (every control variate leaves the estimator unbiased),
∇_φ E‖ĝ‖² = ∇_φ tr Var(ĝ): stepping φ on ∇_φ L_φ (double backprop) lowers the estimator's variance.
φ is never stepped with ∇_φ S, which means nothing. θ is stepped with ĝ (detached) plus the gradient
of any deterministic extra loss (an entropy bonus), which stays out of L_φ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["check_finite", "variance_loss", "estimator_step", "EstimatorStepInfo", "sample_gradients"]


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
