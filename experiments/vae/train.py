"""Train a sigmoid-belief-network VAE with one of the discrete estimators (issue #6, paper §5.2).

    python experiments/vae.py --model linear --estimator relax --dataset mnist5k --steps 20000 --seeds 3

One Adam optimizer holds the model (encoder θ and generative parameters); every estimator's φ has
its own Adam. Per step, on a dynamically binarized minibatch x:

    f(b) = −[log p(x | b) + log p(b) − log q̄(b | x)]      (q̄: the encoder logits, detached)
    θ ← ĝ = ∇_θ mean S from the estimator (REINFORCE / REBAR / RELAX / relaxed-REBAR)
    generative parameters ← −∇ mean f(b) at the hard sample b (the ordinary gradient)
    φ ← ∇_φ ‖ĝ‖² (relax_rl.variance.variance_loss, double backprop)

q̄ is detached in f because the estimators need f to depend on θ only through b (the surrogate's
θ-cut c(z̃⊥) detaches z̃, not parameters inside f). Dropping f's direct dependence on θ leaves the
estimate unbiased: the term it removes, −E_q[∇_θ log q(b|x)], is zero.

Only one-stochastic-layer models (``linear``, ``nonlinear``) are trained in this increment;
``two-layer`` is defined in :mod:`models` but its per-layer estimators are not wired up yet.

Writes ``<out>/<dataset>_<model>_<estimator>.json`` with keys ``config``, ``runs`` (one per seed:
``seed``, ``eval_steps``, ``train_elbo``, ``valid_elbo``, ``valid_iw``, ``variance_steps``,
``log_variance``, ``test_elbo``, ``test_iw``, ``wall_s``) and ``summary`` (mean and std over seeds of
the final ``train_elbo``, ``valid_elbo``, ``valid_iw``, ``test_iw`` and the mean ``log_variance``).
``train_elbo`` at an evaluation is the mean one-sample ELBO of the training batches since the previous
one; ``valid_iw`` is the K-sample importance-weighted bound (K = ``--iw-samples``, 100 by default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from relax_rl.variance import variance_loss

from .data import DATASETS, BinaryImages, binarize, load_dataset
from .estimators import BASELINES, ESTIMATORS, InputBaselineREINFORCE, make_estimator
from .models import MODELS, SBNVAE, bernoulli_log_prob, make_model

__all__ = ["main", "parse_args", "train_one", "ONE_LAYER_MODELS", "RUN_KEYS", "SUMMARY_KEYS"]

ONE_LAYER_MODELS = ("linear", "nonlinear")
RUN_KEYS = ("seed", "eval_steps", "train_elbo", "valid_elbo", "valid_iw", "variance_steps", "log_variance",
            "test_elbo", "test_iw", "wall_s")
SUMMARY_KEYS = ("train_elbo", "valid_elbo", "valid_iw", "test_iw", "log_variance")


def negative_elbo_fn(model: SBNVAE, x: torch.Tensor, q_logits: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(b) = −[log p(x|b) + log p(b) − log q̄(b|x)] with q̄'s logits detached; b may be relaxed."""
    q_logits = q_logits.detach()

    def f(b: torch.Tensor) -> torch.Tensor:
        return -(model.log_likelihood(x, b) + model.log_prior([b]) - bernoulli_log_prob(q_logits, b))

    return f


def surrogate_for(model: SBNVAE, estimator: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-datum surrogate S, hard sample b) for the encoder of a one-layer model at the batch x."""
    logits = model.encoder_logits(0, x)
    if isinstance(estimator, InputBaselineREINFORCE):
        estimator.context = x - model.input_mean
    return estimator(logits, negative_elbo_fn(model, x, logits))


def train_step(
    model: SBNVAE, estimator: torch.nn.Module, x: torch.Tensor,
    model_opt: torch.optim.Optimizer, cv_opt: torch.optim.Optimizer | None,
) -> float:
    """One joint step (module docstring); returns the batch's mean one-sample ELBO."""
    theta, generative = model.encoder_parameters(), model.generative_parameters()
    surrogate, b = surrogate_for(model, estimator, x)
    loss_phi, g_theta = variance_loss(surrogate, theta)
    phi = [] if cv_opt is None else [p for group in cv_opt.param_groups for p in group["params"]]
    if phi and loss_phi.requires_grad:
        cv_opt.zero_grad(set_to_none=True)
        loss_phi.backward(inputs=phi)
    elbo = model.elbo(x, [b])  # ordinary gradient for p; log q's θ-gradient is not used
    g_gen = torch.autograd.grad(-elbo.mean(), generative)
    model_opt.zero_grad(set_to_none=True)
    for p, g in zip([*theta, *generative], [*g_theta, *g_gen], strict=True):
        p.grad = g.detach()
    model_opt.step()
    if phi and loss_phi.requires_grad:
        cv_opt.step()
    return float(elbo.detach().mean())


def log_gradient_variance(model: SBNVAE, estimator: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """log Σ_i Var(ĝ_i) of the encoder-weight gradient estimate over ``repeats`` independent draws at x."""
    theta = model.encoder_parameters()
    estimates = []
    for _ in range(repeats):
        surrogate, _ = surrogate_for(model, estimator, x)
        grads = torch.autograd.grad(surrogate.mean(), theta)
        estimates.append(torch.cat([g.reshape(-1) for g in grads]))
    total = torch.stack(estimates).var(0).sum().item()
    return math.log(total) if total > 0 else float("-inf")


def train_one(data: BinaryImages, estimator_name: str, seed: int, args: argparse.Namespace) -> dict:
    """Train one model from one seed; return its curves (the ``runs`` entries of the JSON)."""
    start = time.time()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = make_model(args.model, data.num_pixels, args.latent, args.hidden)
    model.set_data_mean(data.train_mean())
    estimator = make_estimator(estimator_name, args.latent, data.num_pixels, args.baseline, args.cv_hidden,
                               args.temperature, not args.no_common_random_numbers)
    model_opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    phi = [p for p in estimator.parameters() if p.requires_grad]
    cv_opt = torch.optim.Adam(phi, lr=args.cv_lr) if phi else None
    valid = data.valid[: args.valid_size] if args.valid_size else data.valid
    x_var = binarize(data.train[: args.batch_size], torch.Generator().manual_seed(10_000 + seed))
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
        batch_elbos.append(train_step(model, estimator, x, model_opt, cv_opt))
        if step % args.variance_every == 0 or step == args.steps:
            run["variance_steps"].append(step)
            run["log_variance"].append(log_gradient_variance(model, estimator, x_var, args.variance_repeats))
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
    parser.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: an epoch)")
    parser.add_argument("--iw-samples", type=int, default=100)
    parser.add_argument("--valid-size", type=int, default=0, help="evaluate on the first N images (0: all)")
    parser.add_argument("--variance-every", type=int, default=None, help="steps between variance measurements "
                        "(default: eval-every)")
    parser.add_argument("--variance-repeats", type=int, default=20, help="independent estimates per measurement")
    parser.add_argument("--quick", action="store_true", help="a tiny model and a few steps (seconds): a smoke test")
    parser.add_argument("--out", default="results/vae")
    args = parser.parse_args(argv)
    if args.quick:
        args.latent, args.hidden, args.cv_hidden = 8, 16, 8
        args.steps = args.steps or 40
        args.eval_every = args.eval_every or 20
        args.iw_samples, args.valid_size, args.variance_repeats = 10, 100, 4
    args.steps = args.steps or 20000
    if args.steps < 1 or args.seeds < 1 or args.batch_size < 1:
        parser.error("--steps, --seeds and --batch-size must be >= 1")
    if args.model not in ONE_LAYER_MODELS:
        parser.error(f"--model {args.model} is not trained yet: this increment trains one-stochastic-layer "
                     f"models only ({', '.join(ONE_LAYER_MODELS)})")
    return args


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Run every requested estimator over the seeds; write one JSON each; return them by estimator."""
    torch.set_num_threads(1)
    args = parse_args(argv)
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
    return results
