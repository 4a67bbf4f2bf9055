"""Learned control-variate networks c_φ (DESIGN §3).

A control variate maps a relaxed sample (shape ``[..., num_inputs]``) to one value per sample
(shape ``[...]``). The default is the network of the RELAX authors' toy: an MLP with tanh hidden
units whose output is multiplied by a learned scale s. With s initialised at 0, c_φ starts at 0,
so a freshly built RELAX estimator equals REINFORCE and only moves away from it as φ learns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ControlVariateMLP"]


class ControlVariateMLP(nn.Module):
    """c_φ(x) = s · MLP(x), one scalar per sample.

    :param num_inputs: size of the last dimension of x.
    :param hidden_sizes: widths of the hidden layers (the RELAX toy uses ``(10,)``).
    :param activation: hidden activation class.
    :param scale_init: initial value of the learned output scale s (``None``: no scale).
    """

    def __init__(
        self,
        num_inputs: int,
        hidden_sizes: Sequence[int] = (10,),
        activation: type[nn.Module] = nn.Tanh,
        scale_init: float | None = 0.0,
    ) -> None:
        super().__init__()
        if int(num_inputs) < 1:
            raise ValueError(f"num_inputs must be a positive integer, got {num_inputs!r}")
        self.num_inputs = int(num_inputs)
        layers: list[nn.Module] = []
        width = int(num_inputs)
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, int(hidden)), activation()]
            width = int(hidden)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.scale = None if scale_init is None else nn.Parameter(torch.tensor(float(scale_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.num_inputs:
            raise ValueError(
                f"the control variate takes {self.num_inputs} inputs per sample, got x of shape {tuple(x.shape)}: "
                "build it with num_inputs = the size of one sample that f reduces over (n Bernoullis, m·K for "
                "m categoricals of K classes, d Gaussian dimensions)"
            )
        out = self.net(x).squeeze(-1)
        return out if self.scale is None else self.scale * out
