"""What RelaxA2C logs about its estimator on each update: a running variance of ĝ and ĉ's diagnostics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["UpdateLogging"]


class UpdateLogging:
    """Mixin for RelaxA2C (and its subclasses): ``train/grad_variance`` and the ``train/cv_*`` keys."""

    _grad_mean: torch.Tensor | None
    _grad_variance: float

    def _update_grad_variance(self, grads: Any, beta: float = 0.95) -> None:
        """Running estimate of the estimator's total variance: EMA of ‖ĝ − EMA(ĝ)‖² over updates."""
        flat = torch.cat([g.detach().flatten() for g in grads if g is not None])
        if self._grad_mean is None or self._grad_mean.shape != flat.shape:
            self._grad_mean = flat.clone()
            return
        if self._grad_mean.device != flat.device:  # saved on one device, loaded on another
            self._grad_mean = self._grad_mean.to(flat.device)
        self._grad_variance = beta * self._grad_variance + (1 - beta) * float(((flat - self._grad_mean) ** 2).sum())
        self._grad_mean = beta * self._grad_mean + (1 - beta) * flat

    def _record_cv_diagnostics(self, cv_losses: list[float], advantages: torch.Tensor, c_hat: torch.Tensor) -> None:
        self.logger.record("train/cv_loss", cv_losses[0])
        if self._cv_coef_estimator is not None or self.cv_coef != 1.0:
            self.logger.record("train/cv_coef", self._cv_weight())
        if self.policy.cv_output_multiplier is not None:
            self.logger.record("train/cv_advantage_scale", self.policy.cv_output_multiplier.item())
        if self.policy.cv_net.scale is not None:
            self.logger.record("train/cv_scale", self.policy.cv_net.scale.item())
        if self.policy.relaxation is not None:
            self.logger.record("train/cv_temperature", self.policy.cv_temperature.item())
        # Is ĉ helping? It can only cancel noise in Â log π where it tracks the advantage. (One 2 × n array in
        # numpy: a handful of torch ops on 40 numbers cost more than the rest of the bookkeeping.)
        pair = torch.stack([c_hat.detach().flatten(), advantages.detach().flatten()]).cpu().double().numpy()
        centered = pair - pair.mean(axis=1, keepdims=True)
        (ss_c, ss_ca), (_, ss_a) = centered @ centered.T  # sums of squares and of cross products
        if ss_c > 0 and ss_a > 0:
            self.logger.record("train/cv_advantage_corr", float(ss_ca / np.sqrt(ss_c * ss_a)))
        # Var(Â − ĉ) / Var(Â) (the sample variances' n − 1 cancels but for the guard against Var(Â) = 0)
        guard = 1e-12 * max(pair.shape[1] - 1, 1)
        self.logger.record("train/cv_advantage_residual_ratio", float((ss_a + ss_c - 2 * ss_ca) / (ss_a + guard)))
