"""Sigmoid-belief-network VAEs with Bernoulli latents and a learned prior (REBAR / RELAX §5.2).

With stochastic layers b_1 … b_L (b_0 = x):

    q(b_1 … b_L | x) = Π_l Bern(b_l; σ(e_l(b_{l−1})))        (encoder, e_l linear or an MLP)
    p(x, b_1 … b_L) = Bern(b_L; σ(a)) · Π_l Bern(b_{l−1}; σ(d_l(b_l)))   (learned prior logits a)
    ELBO(x; b) = log p(x, b) − log q(b | x),   b ~ q
    IWAE_K(x) = log (1/K) Σ_k exp ELBO(x; b^(k)),   b^(k) ~ q i.i.d.   (≤ log p(x), ≥ E[ELBO])

Log-densities accept relaxed b ∈ [0, 1] too (the continuous extension b log σ + (1 − b) log σ(−·)),
which is what REBAR and relaxed-REBAR differentiate. Every method works on any leading batch shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODELS", "SBNVAE", "bernoulli_log_prob", "make_model"]

MODELS = ("linear", "two-layer", "nonlinear")


def bernoulli_log_prob(logits: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_i [b_i log σ(α_i) + (1 − b_i) log σ(−α_i)] over the last dimension (b may be relaxed)."""
    return (b * F.logsigmoid(logits) + (1 - b) * F.logsigmoid(-logits)).sum(-1)


def _mlp(sizes: Sequence[int]) -> nn.Module:
    """Linear maps between ``sizes`` with tanh between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i:
            layers.append(nn.Tanh())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers) if len(layers) > 1 else layers[0]


class SBNVAE(nn.Module):
    """A VAE over binary x with stochastic layers ``latent_sizes`` (bottom first).

    :param num_pixels: size of x.
    :param latent_sizes: widths of b_1 … b_L.
    :param hidden_sizes: widths of the deterministic tanh layers inside every encoder and decoder map
        (``()``: linear maps).
    """

    def __init__(self, num_pixels: int, latent_sizes: Sequence[int], hidden_sizes: Sequence[int] = ()) -> None:
        super().__init__()
        if not latent_sizes:
            raise ValueError("an SBN VAE needs at least one stochastic layer")
        self.num_pixels = int(num_pixels)
        self.latent_sizes = [int(n) for n in latent_sizes]
        widths = [self.num_pixels, *self.latent_sizes]
        hidden = [int(h) for h in hidden_sizes]
        self.encoders = nn.ModuleList([_mlp([widths[i], *hidden, widths[i + 1]]) for i in range(len(latent_sizes))])
        self.decoders = nn.ModuleList([_mlp([widths[i + 1], *hidden, widths[i]]) for i in range(len(latent_sizes))])
        self.prior_logits = nn.Parameter(torch.zeros(self.latent_sizes[-1]))
        self.register_buffer("input_mean", torch.zeros(self.num_pixels))

    @property
    def num_layers(self) -> int:
        return len(self.latent_sizes)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """θ of the estimators: the parameters of q."""
        return list(self.encoders.parameters())

    def generative_parameters(self) -> list[nn.Parameter]:
        """The parameters of p (decoders and prior): trained with the ordinary gradient of the ELBO."""
        return [*self.decoders.parameters(), self.prior_logits]

    def set_data_mean(self, mean: torch.Tensor) -> None:
        """Centre the encoder's input on E[x] and start p(x | b_1) at it (output bias = logit E[x])."""
        with torch.no_grad():
            self.input_mean.copy_(mean)
            last = self.decoders[0][-1] if isinstance(self.decoders[0], nn.Sequential) else self.decoders[0]
            last.bias.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)))

    def encoder_logits(self, layer: int, below: torch.Tensor) -> torch.Tensor:
        """Logits of q(b_{layer+1} | b_layer) (layer 0: the input x, centred)."""
        inp = below - self.input_mean if layer == 0 else below
        return self.encoders[layer](inp)

    def decoder_logits(self, layer: int, above: torch.Tensor) -> torch.Tensor:
        """Logits of p(b_layer | b_{layer+1}) (layer 0: p(x | b_1))."""
        return self.decoders[layer](above)

    def log_likelihood(self, x: torch.Tensor, b1: torch.Tensor) -> torch.Tensor:
        """log p(x | b_1)."""
        return bernoulli_log_prob(self.decoder_logits(0, b1), x)

    def log_prior(self, samples: Sequence[torch.Tensor]) -> torch.Tensor:
        """log p(b_1 … b_L) = log Bern(b_L; σ(a)) + Σ_{l<L} log p(b_l | b_{l+1})."""
        total = bernoulli_log_prob(self.prior_logits.expand_as(samples[-1]), samples[-1])
        for layer in range(1, self.num_layers):
            total = total + bernoulli_log_prob(self.decoder_logits(layer, samples[layer]), samples[layer - 1])
        return total

    def log_posterior(self, x: torch.Tensor, samples: Sequence[torch.Tensor]) -> torch.Tensor:
        """log q(b_1 … b_L | x)."""
        below, total = x, 0.0
        for layer, b in enumerate(samples):
            total = total + bernoulli_log_prob(self.encoder_logits(layer, below), b)
            below = b
        return total

    def elbo(self, x: torch.Tensor, samples: Sequence[torch.Tensor]) -> torch.Tensor:
        """log p(x, b) − log q(b | x) at the given samples b = (b_1 … b_L); one value per x."""
        return self.log_likelihood(x, samples[0]) + self.log_prior(samples) - self.log_posterior(x, samples)

    def sample_posterior(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Ancestral samples b_l ~ q(b_l | b_{l−1}) (hard, no gradient path)."""
        samples, below = [], x
        for layer in range(self.num_layers):
            probs = torch.sigmoid(self.encoder_logits(layer, below))
            below = (torch.rand(probs.shape, generator=generator, dtype=probs.dtype) < probs).to(probs.dtype)
            samples.append(below)
        return samples

    @torch.no_grad()
    def iw_bound(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None, chunk: int = 100
    ) -> torch.Tensor:
        """IWAE_K(x) = logsumexp_k ELBO(x; b^(k)) − log K for each x (K = ``num_samples``)."""
        out = []
        for start in range(0, x.shape[0], chunk):
            xs = x[start:start + chunk].expand(num_samples, -1, -1)
            log_w = self.elbo(xs, self.sample_posterior(xs, generator))
            out.append(torch.logsumexp(log_w, dim=0) - math.log(num_samples))
        return torch.cat(out)

    @torch.no_grad()
    def sampled_elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One-sample ELBO estimate for each x (unbiased for E_q[ELBO])."""
        return self.elbo(x, self.sample_posterior(x, generator))


def make_model(name: str, num_pixels: int = 784, latent: int = 200, hidden: int = 200) -> SBNVAE:
    """``linear``: one layer of ``latent`` with linear maps; ``two-layer``: two (``latent``-``latent``),
    linear; ``nonlinear``: one layer with two deterministic tanh layers of ``hidden`` on each side."""
    if name == "linear":
        return SBNVAE(num_pixels, [latent])
    if name == "two-layer":
        return SBNVAE(num_pixels, [latent, latent])
    if name == "nonlinear":
        return SBNVAE(num_pixels, [latent], [hidden, hidden])
    raise ValueError(f"unknown model {name!r}; supported: {', '.join(MODELS)}")
