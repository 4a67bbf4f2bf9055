"""Train a sigmoid-belief-network VAE with one of the discrete estimators (issue #6, paper §5.2).

    python experiments/vae.py --model linear --estimator relax --dataset mnist5k --steps 20000 --seeds 3

One Adam optimizer holds the model (encoder θ and generative parameters); every estimator's φ has
its own Adam. Per step, on a dynamically binarized minibatch x:

    f(b) = −[log p(x, b) − log q̄(b | x)] − m      (q̄: the encoder logits, detached; m: see below)
    θ_l ← ĝ_l = ∇_{θ_l} mean S_l from layer l's estimator (REINFORCE / REBAR / RELAX / relaxed-REBAR)
    generative parameters ← −∇ mean ELBO at the hard sample b (the ordinary gradient)
    φ ← ∇_φ Σ_l ‖ĝ_l‖² (relax_rl.variance.variance_loss, double backprop)

q̄ is detached in f because the estimators need f to depend on θ only through b (the surrogate's
θ-cut c(z̃⊥) detaches z̃, not parameters inside f). Dropping f's direct dependence on θ leaves the
estimate unbiased: the term it removes, −E_q[∇_θ log q(b|x)], is zero.

**Centring (m).** f is centred by a detached running mean m of f at the hard samples
(:class:`RunningMean`, NVIL's trick); ``--no-centre`` turns it off. See that class for why and why it
stays unbiased.

**Two stochastic layers** (``two-layer``: q(b₁|x) q(b₂|b₁)), one estimator per layer, as in REBAR:

- layer 2 (θ₂) at the hard b₁: f₂(b₂) = f(b₁, b₂), an ordinary one-layer problem with input b₁;
- layer 1 (θ₁): f₁(b₁) = f(b₁, b₂) with b₂ = H(e₂(b₁) + logit u₂), u₂ ~ U(0, 1) drawn once per step
  and shared with layer 2's sample, so E[f₁(b₁) | b₁] = E_{q(b₂|b₁)}[f(b₁, b₂)], the objective at b₁.
  At a relaxed b̃₁ (REBAR, relaxed-REBAR) layer 2 is relaxed with the *same* u₂:
  f₁(b̃₁) = f(b̃₁, σ((e₂(b̃₁) + logit u₂)/λ)), λ layer 1's temperature. That is one fixed,
  differentiable function of b̃₁ for the step (u₂ does not depend on θ₁), so c(z), c(z̃) and c(z̃⊥) are
  a valid control variate and the estimate stays unbiased; the hard and the relaxed f differ, so
  layer 1 passes the relaxed one as the estimator's ``f_relaxed``. A test checks both layers'
  gradients against exact enumeration on a 2-2 latent model.

Writes ``<out>/<dataset>_<model>_<estimator>.json`` with keys ``config``, ``runs`` (one per seed:
``seed``, ``eval_steps``, ``train_elbo``, ``valid_elbo``, ``valid_iw``, ``variance_steps``,
``log_variance``, ``test_elbo``, ``test_iw``, ``wall_s``) and ``summary`` (mean and std over seeds of
the final ``train_elbo``, ``valid_elbo``, ``valid_iw``, ``test_iw`` and the mean ``log_variance``).
``--plot`` and ``--markdown`` write the plots and the table of :mod:`vae.report`; ``--report`` writes them
from the JSON files in ``--out`` without training (after runs launched in parallel).
``train_elbo`` at an evaluation is the mean one-sample ELBO of the training batches since the previous
one; ``valid_iw`` is the K-sample importance-weighted bound (K = ``--iw-samples``, 100 by default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from relax_rl import samplers
from relax_rl.variance import variance_loss

from . import report
from .data import DATASETS, BinaryImages, binarize, load_dataset
from .estimators import BASELINES, ESTIMATORS, InputBaselineREINFORCE, make_estimator
from .models import MODELS, SBNVAE, bernoulli_log_prob, make_model

__all__ = ["main", "parse_args", "train_one", "train_step", "encoder_surrogates", "RunningMean", "RUN_KEYS",
           "SUMMARY_KEYS"]

RUN_KEYS = ("seed", "eval_steps", "train_elbo", "valid_elbo", "valid_iw", "variance_steps", "log_variance",
            "test_elbo", "test_iw", "wall_s")
SUMMARY_KEYS = ("train_elbo", "valid_elbo", "valid_iw", "test_iw", "log_variance")


class RunningMean:
    """The centring offset m of f: a running mean of f at the hard samples, detached (NVIL's trick).

    Why: RELAX's r_φ starts at 0 (its learned output scale is initialised at 0) and Adam moves φ by
    about its learning rate per step, while f, a negative ELBO, is ~200 nats early on. Uncentred, RELAX
    (and relaxed-REBAR once η drifts) is REINFORCE without a baseline for thousands of steps: a 300-step
    trial gave RELAX the log-variance 15.8 of REINFORCE against REBAR's 4.8. With f_c = f − m, c_φ = 0
    is already a baseline at the right level and r_φ only has to learn the structure of f around m.
    A learned offset in r_φ, or feeding it x, would have to travel those ~200 nats at Adam's pace too.

    Why it stays unbiased, for every estimator: m is one number, fixed during a step (it is updated only
    after the step, from that step's f values, and never carries gradient). Subtracting it from f adds
    −m E[∇ log q(b)] = 0 to the score-function term, and at relaxed inputs it shifts c(z) and c(z̃)
    by the same constant −η m, whose gradient is 0 and which enters the coefficient as a constant
    baseline. The generative parameters' gradient does not use f. A test re-runs the exact-enumeration
    unbiasedness check with an offset.

    :param decay: weight of the old value in m ← decay · m + (1 − decay) · mean f(b).
    """

    def __init__(self, decay: float = 0.9) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.value: float | None = None

    @property
    def offset(self) -> float:
        """m (0 before the first update)."""
        return 0.0 if self.value is None else self.value

    def update(self, mean_f: float) -> None:
        mean_f = float(mean_f)
        self.value = mean_f if self.value is None else self.decay * self.value + (1 - self.decay) * mean_f


def negative_elbo(model: SBNVAE, x: torch.Tensor, samples: Sequence[torch.Tensor],
                  q_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """−[log p(x, b) − Σ_l log q(b_l | ·)] with the given encoder logits (samples may be relaxed)."""
    log_q = sum(bernoulli_log_prob(q, b) for q, b in zip(q_logits, samples, strict=True))
    return -(model.log_likelihood(x, samples[0]) + model.log_prior(samples) - log_q)


def negative_elbo_fn(model: SBNVAE, x: torch.Tensor, q_logits: torch.Tensor,
                     offset: float = 0.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(b) = −[log p(x|b) + log p(b) − log q̄(b|x)] − m with q̄'s logits detached; b may be relaxed."""
    q_logits = q_logits.detach()

    def f(b: torch.Tensor) -> torch.Tensor:
        return negative_elbo(model, x, [b], [q_logits]) - offset

    return f


def _set_context(estimator: nn.Module, below: torch.Tensor) -> None:
    if isinstance(estimator, InputBaselineREINFORCE):
        estimator.context = below


def _as_list(estimators: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    if isinstance(estimators, (list, tuple, nn.ModuleList)):
        return list(estimators)
    return [estimators]


def surrogate_for(model: SBNVAE, estimator: nn.Module, x: torch.Tensor,
                  offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-datum surrogate S, hard sample b) for the encoder of a one-layer model at the batch x."""
    logits = model.encoder_logits(0, x)
    _set_context(estimator, x - model.input_mean)
    return estimator(logits, negative_elbo_fn(model, x, logits, offset))


def encoder_surrogates(model: SBNVAE, estimators: nn.Module | Sequence[nn.Module], x: torch.Tensor,
                       offset: float = 0.0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """([S_l per layer], [hard b_l per layer]) at the batch x (module docstring: one or two layers)."""
    estimators = _as_list(estimators)
    if len(estimators) != model.num_layers:
        raise ValueError(f"{model.num_layers} stochastic layers need as many estimators, got {len(estimators)}")
    if model.num_layers == 1:
        surrogate, b = surrogate_for(model, estimators[0], x, offset)
        return [surrogate], [b]
    if model.num_layers != 2:
        raise NotImplementedError("only one or two stochastic layers are trained")
    est1, est2 = estimators
    q1 = model.encoder_logits(0, x)
    q1_cut = q1.detach()
    shape = (*x.shape[:-1], model.latent_sizes[1])
    u2 = samplers.uniform_noise(shape, dtype=x.dtype, device=x.device)
    v2 = samplers.uniform_noise(shape, dtype=x.dtype, device=x.device)

    def f1_hard(b1: torch.Tensor) -> torch.Tensor:
        q2 = model.encoder_logits(1, b1)
        b2 = samplers.bernoulli_sample(q2, u2)[1]
        return negative_elbo(model, x, [b1, b2], [q1_cut, q2.detach()]) - offset

    def f1_relaxed(b1: torch.Tensor) -> torch.Tensor:
        q2 = model.encoder_logits(1, b1)
        b2 = torch.sigmoid(samplers.bernoulli_sample(q2, u2)[0] / est1.temperature)
        return negative_elbo(model, x, [b1, b2], [q1_cut, q2]) - offset

    _set_context(est1, x - model.input_mean)
    s1, b1 = est1(q1, f1_hard, f_relaxed=f1_relaxed)
    q2 = model.encoder_logits(1, b1)
    q2_cut = q2.detach()

    def f2(b2: torch.Tensor) -> torch.Tensor:
        return negative_elbo(model, x, [b1, b2], [q1_cut, q2_cut]) - offset

    _set_context(est2, b1)
    s2, b2 = est2(q2, f2, (u2, v2))
    return [s1, s2], [b1, b2]


def layer_parameters(model: SBNVAE) -> list[list[nn.Parameter]]:
    """θ_l, the parameters of q(b_l | b_{l−1}), per layer."""
    return [list(encoder.parameters()) for encoder in model.encoders]


def train_step(
    model: SBNVAE, estimators: nn.Module | Sequence[nn.Module], x: torch.Tensor,
    model_opt: torch.optim.Optimizer, cv_opt: torch.optim.Optimizer | None,
    centre: RunningMean | None = None,
) -> float:
    """One joint step (module docstring); returns the batch's mean one-sample ELBO."""
    thetas, generative = layer_parameters(model), model.generative_parameters()
    surrogates, samples = encoder_surrogates(model, estimators, x, 0.0 if centre is None else centre.offset)
    loss_phi, g_theta = 0.0, []
    for surrogate, theta in zip(surrogates, thetas, strict=True):
        loss, grads = variance_loss(surrogate, theta)
        loss_phi, g_theta = loss_phi + loss, g_theta + grads
    phi = [] if cv_opt is None else [p for group in cv_opt.param_groups for p in group["params"]]
    learn_phi = bool(phi) and isinstance(loss_phi, torch.Tensor) and loss_phi.requires_grad
    if learn_phi:
        cv_opt.zero_grad(set_to_none=True)
        loss_phi.backward(inputs=phi)
    elbo = model.elbo(x, samples)  # ordinary gradient for p; log q's θ-gradient is not used
    g_gen = torch.autograd.grad(-elbo.mean(), generative)
    model_opt.zero_grad(set_to_none=True)
    for p, g in zip([*(p for theta in thetas for p in theta), *generative], [*g_theta, *g_gen], strict=True):
        p.grad = g.detach()
    model_opt.step()
    if learn_phi:
        cv_opt.step()
    mean_elbo = float(elbo.detach().mean())
    if centre is not None:
        centre.update(-mean_elbo)
    return mean_elbo


def log_gradient_variance(model: SBNVAE, estimators: nn.Module | Sequence[nn.Module], x: torch.Tensor,
                          repeats: int, offset: float = 0.0) -> float:
    """log Σ_i Var(ĝ_i) of the encoder-weight gradient estimate (all layers) over ``repeats`` draws at x."""
    thetas = layer_parameters(model)
    estimates = []
    for _ in range(repeats):
        surrogates, _ = encoder_surrogates(model, estimators, x, offset)
        grads = [g for s, theta in zip(surrogates, thetas, strict=True)
                 for g in torch.autograd.grad(s.mean(), theta, retain_graph=True)]
        estimates.append(torch.cat([g.reshape(-1) for g in grads]))
    total = torch.stack(estimates).var(0).sum().item()
    return math.log(total) if total > 0 else float("-inf")


def make_estimators(model: SBNVAE, name: str, args: argparse.Namespace) -> nn.ModuleList:
    """One estimator per stochastic layer (the input of layer l's NVIL baseline is b_{l−1}, x for l = 1)."""
    inputs = [model.num_pixels, *model.latent_sizes[:-1]]
    return nn.ModuleList([
        make_estimator(name, n, n_in, args.baseline, args.cv_hidden, args.temperature,
                       not args.no_common_random_numbers)
        for n, n_in in zip(model.latent_sizes, inputs, strict=True)])


def train_one(data: BinaryImages, estimator_name: str, seed: int, args: argparse.Namespace) -> dict:
    """Train one model from one seed; return its curves (the ``runs`` entries of the JSON)."""
    start = time.time()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = make_model(args.model, data.num_pixels, args.latent, args.hidden)
    model.set_data_mean(data.train_mean())
    estimator = make_estimators(model, estimator_name, args)
    centre = None if args.no_centre else RunningMean(args.centre_decay)
    model_opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    phi = [p for p in estimator.parameters() if p.requires_grad]
    cv_opt = torch.optim.Adam(phi, lr=args.cv_lr) if phi else None
    valid = data.valid[: args.valid_size] if args.valid_size else data.valid
    x_var = binarize(data.train[: args.batch_size], torch.Generator().manual_seed(10_000 + seed))
    if centre is not None:  # start m at the mean f of an independent sample, not at 0
        centre.update(-model.sampled_elbo(x_var, gen).mean().item())
    run: dict = {key: [] for key in RUN_KEYS if key not in ("seed", "test_elbo", "test_iw", "wall_s")}
    batch_elbos: list[float] = []
    n_train = data.train.shape[0]
    order = torch.randperm(n_train, generator=gen)
    cursor = 0
    for step in range(1, args.steps + 1):
        if cursor + args.batch_size > n_train:
            order, cursor = torch.randperm(n_train, generator=gen), 0
        x = binarize(data.train[order[cursor:cursor + args.batch_size]], gen)
        cursor += args.batch_size
        batch_elbos.append(train_step(model, estimator, x, model_opt, cv_opt, centre))
        if step % args.variance_every == 0 or step == args.steps:
            run["variance_steps"].append(step)
            run["log_variance"].append(log_gradient_variance(
                model, estimator, x_var, args.variance_repeats, 0.0 if centre is None else centre.offset))
        if step % args.eval_every == 0 or step == args.steps:
            run["eval_steps"].append(step)
            run["train_elbo"].append(float(np.mean(batch_elbos)))
            run["valid_elbo"].append(model.sampled_elbo(valid, gen).mean().item())
            run["valid_iw"].append(model.iw_bound(valid, args.iw_samples, gen).mean().item())
            batch_elbos = []
    test = data.test[: args.valid_size] if args.valid_size else data.test
    return {"seed": seed, **run, "test_elbo": model.sampled_elbo(test, gen).mean().item(),
            "test_iw": model.iw_bound(test, args.iw_samples, gen).mean().item(), "wall_s": time.time() - start}


def summarize(runs: list[dict]) -> dict:
    """Mean and std over seeds of the final values (log_variance: the mean over the run)."""
    out = {}
    for key in SUMMARY_KEYS:
        values = [float(np.mean(r[key])) if key == "log_variance" else (r[key][-1] if isinstance(r[key], list)
                  else r[key]) for r in runs]
        out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="linear")
    parser.add_argument("--estimator", nargs="+", choices=ESTIMATORS, default=["relax"],
                        help="one or more estimators; each writes its own JSON")
    parser.add_argument("--dataset", choices=DATASETS, default="mnist5k")
    parser.add_argument("--data-path", default=None, help="file or directory of the dataset (fashion-mnist: "
                        "the idx directory, default /usr/share/datasets/fashion-mnist/)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 20000; --quick: 40)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 … N−1")
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate of the model")
    parser.add_argument("--cv-lr", type=float, default=3e-4, help="Adam learning rate of φ")
    parser.add_argument("--latent", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--baseline", choices=BASELINES, default="constant", help="REINFORCE's baseline")
    parser.add_argument("--cv-hidden", type=int, default=100, help="hidden units of r_φ / the NVIL baseline")
    parser.add_argument("--temperature", type=float, default=0.5, help="initial λ")
    parser.add_argument("--no-common-random-numbers", action="store_true")
    parser.add_argument("--no-centre", action="store_true", help="do not subtract the running mean m from f "
                        "(RunningMean: RELAX then starts as REINFORCE without a baseline)")
    parser.add_argument("--centre-decay", type=float, default=0.9, help="decay of the running mean m of f")
    parser.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: an epoch)")
    parser.add_argument("--iw-samples", type=int, default=100)
    parser.add_argument("--valid-size", type=int, default=0, help="evaluate on the first N images (0: all)")
    parser.add_argument("--variance-every", type=int, default=None, help="steps between variance measurements "
                        "(default: eval-every)")
    parser.add_argument("--variance-repeats", type=int, default=20, help="independent estimates per measurement")
    parser.add_argument("--quick", action="store_true", help="a tiny model and a few steps (seconds): a smoke test")
    parser.add_argument("--out", default="results/vae")
    parser.add_argument("--plot", action="store_true", help="write <dataset>_<model>_{elbo,log_variance}.png into "
                        "--out: every estimator with a JSON there for this dataset and model, mean ± std over seeds")
    parser.add_argument("--markdown", default=None, metavar="PATH", help="write the REBAR vs RELAX table of every "
                        "JSON in --out, with the paper's numbers, to PATH (e.g. results/vae.md)")
    parser.add_argument("--report", action="store_true", help="train nothing: write the plots of every dataset and "
                        "model with JSON files in --out (and the --markdown table), e.g. after runs in parallel")
    args = parser.parse_args(argv)
    if args.quick:
        args.latent, args.hidden, args.cv_hidden = 8, 16, 8
        args.steps = args.steps or 40
        args.eval_every = args.eval_every or 20
        args.iw_samples, args.valid_size, args.variance_repeats = 10, 100, 4
    args.steps = args.steps or 20000
    if args.steps < 1 or args.seeds < 1 or args.batch_size < 1:
        parser.error("--steps, --seeds and --batch-size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Run every requested estimator over the seeds; write one JSON each; return them by estimator."""
    torch.set_num_threads(1)
    args = parse_args(argv)
    if args.report:
        every = report.load_results(args.out)
        if not every:
            raise SystemExit(f"vae.py: error: no <dataset>_<model>_<estimator>.json files in {args.out}")
        for (dataset, model), results in sorted(every.items()):
            for path in report.plot_curves(results, args.out, dataset, model):
                print(f"plot -> {path}")
        if args.markdown:
            print(f"table -> {report.write_markdown(args.out, args.markdown)}")
        return {}
    try:
        data = load_dataset(args.dataset, args.data_path)
    except (FileNotFoundError, RuntimeError) as err:
        raise SystemExit(f"vae.py: error: {err}") from err
    args.eval_every = args.eval_every or math.ceil(data.train.shape[0] / args.batch_size)
    args.variance_every = args.variance_every or args.eval_every
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for name in args.estimator:
        runs = [train_one(data, name, seed, args) for seed in range(args.seeds)]
        result = {"config": {**vars(args), "estimator": name}, "runs": runs, "summary": summarize(runs)}
        path = os.path.join(args.out, f"{args.dataset}_{args.model}_{name}.json")
        with open(path, "w") as fh:
            json.dump(result, fh, indent=1)
        s = result["summary"]
        print(f"{name:14s} train ELBO {s['train_elbo']['mean']:9.2f} ± {s['train_elbo']['std']:.2f}  "
              f"valid IW {s['valid_iw']['mean']:9.2f}  log-var {s['log_variance']['mean']:7.2f}  -> {path}")
        results[name] = result
    if args.plot:
        every = report.load_results(args.out).get((args.dataset, args.model), results)
        for path in report.plot_curves(every, args.out, args.dataset, args.model):
            print(f"plot -> {path}")
    if args.markdown:
        print(f"table -> {report.write_markdown(args.out, args.markdown)}")
    return results
