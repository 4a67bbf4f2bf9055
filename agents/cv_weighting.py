"""How ĉ enters θ's estimate in RelaxA2C: weighted by β (``cv_coef``), ĝ_β = ĝ_off + β (ĝ_on − ĝ_off).

The surrogates are linear in ĉ, so ĝ_β is the estimate with ĉ replaced by β·ĉ; any β fixed before the batch keeps
it unbiased. With ``cv_coef="auto"`` β is :class:`relax_rl.variance.ControlVariateCoefficient`'s running estimate
of the variance-minimizing weight, fed with each φ-step batch's pair (ĝ_off, ĝ_on) after θ's gradient is set.
"""

from __future__ import annotations

import torch

from relax_rl.variance import ControlVariateCoefficient

__all__ = ["ControlVariateWeighting"]


def _filled(grad: torch.Tensor | None, param: torch.Tensor) -> torch.Tensor:
    """A gradient that autograd left as None (the parameter is out of reach) is a zero gradient."""
    return torch.zeros_like(param) if grad is None else grad


class ControlVariateWeighting:
    """Mixin for RelaxA2C: β for the next batch, and θ's gradient from ĝ_on (built for φ's objective) and ĝ_off."""

    cv_coef: float | str
    _cv_coef_estimator: ControlVariateCoefficient | None
    log_grad_variance: bool

    @staticmethod
    def _check_cv_coef(cv_coef: float | str, cv_coef_max: float) -> None:
        """Clear errors for a β that is not a finite number ≥ 0 or "auto", and for a bad bound of "auto"'s β."""
        if cv_coef != "auto" and not (isinstance(cv_coef, (int, float)) and not isinstance(cv_coef, bool)
                                      and 0 <= float(cv_coef) < float("inf")):
            raise ValueError(f"cv_coef must be a finite number >= 0 or 'auto', got {cv_coef!r}")
        if (isinstance(cv_coef_max, bool) or not isinstance(cv_coef_max, (int, float))
                or not 0 < float(cv_coef_max) < float("inf")):
            raise ValueError(f"cv_coef_max (the bound of cv_coef='auto''s estimated β) must be a finite number > 0, "
                             f"got {cv_coef_max!r}")
        if cv_coef_max != 1.0 and cv_coef != "auto":
            raise ValueError(f"cv_coef_max bounds the estimated β of cv_coef='auto' only; with a fixed "
                             f"cv_coef={cv_coef!r} leave it at 1 (got cv_coef_max={cv_coef_max!r})")

    def _cv_weight(self) -> float:
        """β for the next batch: ``cv_coef``, or with "auto" the estimate from the batches before it, within
        [0, ``cv_coef_max``] (a bound changed after construction, e.g. by ``load(..., cv_coef_max=...)``, holds
        from here on)."""
        if self._cv_coef_estimator is not None:
            self._cv_coef_estimator.max_value = float(self.cv_coef_max)
            return min(self._cv_coef_estimator.value, self._cv_coef_estimator.max_value)
        return float(self.cv_coef)

    @staticmethod
    def _off_gradient(log_prob: torch.Tensor, advantages: torch.Tensor, theta: list[torch.Tensor]) -> tuple:
        """∇_θ of the policy loss with ĉ ≡ 0 (A2C's −mean Â log π), the graph kept."""
        return torch.autograd.grad(-(advantages * log_prob).mean(), theta, retain_graph=True, allow_unused=True)

    def _set_theta_gradient(self, theta: list[torch.Tensor], grads: tuple, rest_grads: tuple, log_prob: torch.Tensor,
                            advantages: torch.Tensor, weight: float, estimate_weight: bool) -> None:
        """θ.grad = ĝ_β + ∇(value and entropy terms), from ĝ_on (``grads``, built for φ's objective) and, when ĉ
        is weighted, ĝ_off: ĝ_β = ĝ_off + β (ĝ_on − ĝ_off). Folds the pair into β's estimate afterwards."""
        used = grads
        if weight != 1.0 or estimate_weight:
            off = self._off_gradient(log_prob, advantages, theta)
            used = [None if g is None and o is None
                    else _filled(o, p) + weight * (_filled(g, p).detach() - _filled(o, p))
                    for p, g, o in zip(theta, grads, off, strict=True)]
        if self.log_grad_variance:
            self._update_grad_variance(used)
        for p, g, r in zip(theta, used, rest_grads, strict=True):
            if g is None:
                p.grad = torch.zeros_like(p) if r is None else r
            else:  # (a copy: clipping scales .grad in place, and ĝ_on is still part of φ's graph)
                p.grad = g.detach() + r if r is not None else g.detach().clone()
        if estimate_weight:
            self._cv_coef_estimator.update(off, grads)
