"""The paper's toy problem (§5.1, Figures 1-2): minimize E_{b~Bern(θ)}[(b − t)²], t = 0.499.

θ = sigmoid(logit) starts at 0.5; batch 1; Adam (lr 0.01) for θ and, separately, for φ. The optimum
is θ = 0, but the two outcomes differ in loss by only 2t − 1 = −0.002, so the signal is tiny next to
the sampling noise. Estimators: REINFORCE, REBAR (λ, η learned) and RELAX with the authors' toy
network (2σ_λ(z) − 1 → 10 tanh units → 1, times a learned scale initialised at 0; λ from 0.5,
learned). REBAR and RELAX use common random numbers (DESIGN §3) unless --no-common-random-numbers.

    python experiments/toy.py --steps 10000 --seeds 5 --out results/toy

writes metrics.json, curves.json, toy.png and relaxation.png under --out.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import time

import numpy as np
import torch

from relax_rl import REBAR, REINFORCE, RELAX, estimator_step, sample_gradients
from relax_rl.runs import command_line

ESTIMATORS = ("reinforce", "rebar", "relax", "relaxed-rebar")
DEFAULT_ESTIMATORS = ("reinforce", "rebar", "relax")


def make_estimator(name: str, common_random_numbers: bool) -> torch.nn.Module:
    if name == "reinforce":
        return REINFORCE("bernoulli")
    if name == "rebar":
        return REBAR("bernoulli", temperature=0.5, common_random_numbers=common_random_numbers)
    mode = "relax" if name == "relax" else "relaxed-rebar"
    return RELAX("bernoulli", num_inputs=1, hidden_sizes=(10,), mode=mode, temperature=0.5,
                 common_random_numbers=common_random_numbers)


def expected_loss(theta: float, target: float) -> float:
    """E[(b − t)²] = θ(1 − t)² + (1 − θ)t²."""
    return theta * (1 - target) ** 2 + (1 - theta) * target**2


def run_seed(name: str, seed: int, args: argparse.Namespace) -> dict:
    """Train one estimator from one seed; return its curves and (seed 0) its φ for the relaxation plot."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    target = args.target

    def f(b: torch.Tensor) -> torch.Tensor:
        return ((b - target) ** 2).sum(-1)

    logit = torch.nn.Parameter(torch.zeros(1))
    estimator = make_estimator(name, not args.no_common_random_numbers)
    theta_opt = torch.optim.Adam([logit], lr=args.lr)
    phi = list(estimator.parameters())
    cv_opt = torch.optim.Adam(phi, lr=args.lr) if phi else None
    steps_to_threshold = None
    record_steps, thetas, losses, log_vars = [], [], [], []
    for step in range(args.steps + 1):
        theta = torch.sigmoid(logit).item()
        if steps_to_threshold is None and theta < 0.1:
            steps_to_threshold = step
        if step % args.log_every == 0 or step == args.steps:
            grads = sample_gradients(estimator, logit.detach(), f, args.variance_samples)
            record_steps.append(step)
            thetas.append(theta)
            losses.append(expected_loss(theta, target))
            log_vars.append(math.log(grads.var(0).sum().item()))
        if step == args.steps:
            break
        surrogate, _ = estimator(logit.unsqueeze(0), f)
        estimator_step(surrogate, [logit], theta_opt, cv_opt)
    return {
        "estimator": name,
        "seed": seed,
        "steps": record_steps,
        "theta": thetas,
        "loss": losses,
        "log_variance": log_vars,
        "steps_to_theta_0.1": steps_to_threshold,
        "state_dict": {k: v.tolist() for k, v in estimator.state_dict().items()} if seed == 0 else None,
    }


def _run_seed_star(job: tuple) -> dict:
    return run_seed(*job)


def summarize(runs: list[dict]) -> dict:
    metrics: dict[str, dict[str, list]] = {}
    for run in sorted(runs, key=lambda r: (r["estimator"], r["seed"])):
        m = metrics.setdefault(run["estimator"], {"theta_final": [], "loss_final": [], "log_variance_mean": [],
                                                  "steps_to_theta_0.1": []})
        m["theta_final"].append(run["theta"][-1])
        m["loss_final"].append(run["loss"][-1])
        m["log_variance_mean"].append(float(np.mean(run["log_variance"])))
        m["steps_to_theta_0.1"].append(run["steps_to_theta_0.1"])
    return metrics


def plot_curves(runs: list[dict], path: str, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    names = [n for n in ESTIMATORS if any(r["estimator"] == n for r in runs)]
    for name in names:
        group = [r for r in runs if r["estimator"] == name]
        steps = np.asarray(group[0]["steps"])
        for ax, key in zip(axes, ("loss", "theta", "log_variance"), strict=True):
            values = np.asarray([r[key] for r in group])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, label=f"{name} ({len(group)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    axes[0].axhline(expected_loss(0.0, target), color="k", ls=":", lw=1, label="optimum (θ = 0)")
    axes[0].set(title=f"expected loss E[(b − {target})²]", xlabel="step")
    axes[1].set(title="θ", xlabel="step", ylim=(0, 1))
    axes[2].set(title="log Var(ĝ) (1000 fresh samples per point)", xlabel="step")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Toy problem: mean ± std over seeds, batch 1, Adam lr 0.01")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_relaxation(runs: list[dict], path: str, args: argparse.Namespace) -> None:
    """c_φ(z) learned by RELAX beside REBAR's η f(σ_λ(z)) and f(H(z)), over u at RELAX's final θ (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {r["estimator"]: r for r in runs if r["seed"] == 0}
    if "relax" not in by_name:
        return
    theta = by_name["relax"]["theta"][-1]
    target = args.target
    u = torch.linspace(1e-3, 1 - 1e-3, 500)
    z = math.log(theta / (1 - theta)) + torch.log(u) - torch.log1p(-u)

    def f(b: torch.Tensor) -> torch.Tensor:
        return ((b - target) ** 2).sum(-1)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    hard = f((z > 0).float().unsqueeze(-1))
    with torch.no_grad():
        relax = make_estimator("relax", True)
        relax.load_state_dict({k: torch.tensor(v) for k, v in by_name["relax"]["state_dict"].items()})
        learned = relax.control_variate(z.unsqueeze(-1), f, 1)
        rebar_curve = None
        if "rebar" in by_name:
            rebar = make_estimator("rebar", True)
            rebar.load_state_dict({k: torch.tensor(v) for k, v in by_name["rebar"]["state_dict"].items()})
            lam, eta = rebar.temperature.item(), rebar.eta.item()
            rebar_curve = rebar.control_variate(z.unsqueeze(-1), f, 1)
    for ax in axes:
        ax.plot(u, hard, "k", label="f(H(z))")
        if rebar_curve is not None:
            ax.plot(u, rebar_curve, label=f"η·f(σ_λ(z)), REBAR (λ = {lam:.2f}, η = {eta:.3f})")
        ax.plot(u, learned, label="c_φ(z), RELAX (learned)")
        ax.axvline(1 - theta, color="grey", ls=":", lw=1)
        ax.set(xlabel="u  (z = logit θ + logit u)")
        ax.grid(alpha=0.3)
    axes[0].set(ylabel="value", title=f"Control variates at θ = {theta:.3f} (RELAX's final θ, seed 0)")
    span = float(max(hard.max() - hard.min(), learned.max() - learned.min()))
    centre = float(hard.mean())
    axes[1].set(ylim=(centre - 1.5 * span, centre + 1.5 * span), title="zoom on f(H(z)) and c_φ(z)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="results/toy")
    parser.add_argument("--estimators", nargs="+", default=list(DEFAULT_ESTIMATORS), choices=ESTIMATORS)
    parser.add_argument("--target", type=float, default=0.499)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--log-every", type=int, default=100, help="steps between variance measurements")
    parser.add_argument("--variance-samples", type=int, default=1000)
    parser.add_argument("--no-common-random-numbers", action="store_true")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    for key in ("steps", "seeds", "log_every", "variance_samples", "workers"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    jobs = [(name, seed, args) for name in args.estimators for seed in range(args.seeds)]
    start = time.time()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            runs = pool.map(_run_seed_star, jobs)
    else:
        runs = [_run_seed_star(job) for job in jobs]
    metrics = summarize(runs)
    with open(os.path.join(args.out, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=2)
    curves = runs  # seed 0 keeps its learned φ (state_dict), for re-plotting
    with open(os.path.join(args.out, "curves.json"), "w") as fh:
        json.dump({"command": command_line("experiments/toy.py", argv),
                   "args": {k: v for k, v in vars(args).items()}, "runs": curves}, fh)
    plot_curves(runs, os.path.join(args.out, "toy.png"), args.target)
    plot_relaxation(runs, os.path.join(args.out, "relaxation.png"), args)
    print(f"toy: {len(jobs)} runs in {time.time() - start:.0f}s -> {args.out}")
    for name, m in metrics.items():
        solved = sum(s is not None for s in m["steps_to_theta_0.1"])
        print(f"  {name:14s} θ_final {np.round(m['theta_final'], 3).tolist()}  "
              f"mean log-var {np.mean(m['log_variance_mean']):.2f}  θ<0.1 in {solved}/{len(m['theta_final'])} seeds")
    return metrics


if __name__ == "__main__":
    main()
