"""Does ĉ learn to cut the variance once its target stands still? (issue #5 §3: why ĉ removes nothing)

During training, the part of Â that ĉ could remove (E[Â | s, a]) changes with every update of θ, the critic V
included. This trains relax-a2c with its packaged config (plus ``--hyperparams``) through the training pipeline,
then freezes θ and the VecNormalize statistics and keeps stepping φ alone on fresh on-policy batches, so that
ĉ's target no longer moves. After every block of φ-only steps it measures the variance ratio ĉ on / ĉ off on
``--batches`` paired rollout batches at that θ (``relax_rl.diagnostics.paired_gradient_estimates``).

    python experiments/frozen_theta.py --envs InvertedPendulum-v5 --seeds 0 1 2 --out results/frozen_theta
    python experiments/frozen_theta.py --quick --out /tmp/frozen_theta_quick

Writes ``frozen_theta.json`` and ``frozen_theta.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecNormalize

from relax_rl.diagnostics import gradient_variance, paired_gradient_estimates
from relax_rl.runs import command_line

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import check_relax_a2c_entries  # noqa: E402
from variance import train_with_probe  # noqa: E402

from relax_rl.cli import timesteps_type  # noqa: E402

QUICK = {"envs": ["Acrobot-v1"], "train_steps": 800, "phi_steps": 400, "blocks": 2, "batches": 4}


def variance_ratio(model, n_batches: int, seed: int) -> float:
    """Total variance of ĉ on over ĉ off, on the same ``n_batches`` rollout batches at the model's θ."""
    estimators = {"on": model.policy_gradient, "off": lambda data: model.policy_gradient(data, control_variate=False)}
    estimates = paired_gradient_estimates(model, n_batches, estimators, seed=seed)
    return gradient_variance(estimates["on"])["total_variance"] / gradient_variance(estimates["off"])["total_variance"]


def freeze_theta(model) -> None:
    """θ (policy and critic) stops moving; φ keeps its own optimizer. θ's gradients are still computed."""
    model.policy.optimizer.step = lambda *args, **kwargs: None


def run(env_id: str, seed: int, args: argparse.Namespace, log_folder: str) -> dict:
    from relax_rl import RelaxA2C
    from relax_rl.envs import make_env

    result = train_with_probe(env_id, seed, args.train_steps, args.hyperparams, log_folder, CallbackList([]))
    model = RelaxA2C.load(result.model_path, device="cpu")
    env = make_env(env_id, n_envs=model.n_envs, seed=10_000 + seed)
    stats = os.path.join(result.run_dir, "vecnormalize.pkl")
    if os.path.exists(stats):
        env = VecNormalize.load(stats, env)
        env.training = False
    model.set_env(env)
    freeze_theta(model)

    def cv_scale() -> float | None:
        scale = model.policy.cv_net.scale
        return None if scale is None else float(scale.item())

    theta = [p.detach().clone() for p in model.policy.theta_parameters()]
    blocks = [{"phi_steps": 0, "ratio": variance_ratio(model, args.batches, seed), "cv_scale": cv_scale()}]
    for block in range(1, args.blocks + 1):
        model.learn(args.phi_steps, reset_num_timesteps=False)
        blocks.append({"phi_steps": block * args.phi_steps, "ratio": variance_ratio(model, args.batches, seed),
                       "cv_scale": cv_scale()})
        print(f"{env_id} seed {seed}: φ alone for {block * args.phi_steps} steps, ratio {blocks[-1]['ratio']:.3f}",
              flush=True)
    if not all(torch.equal(a, b) for a, b in zip(theta, model.policy.theta_parameters(), strict=True)):
        raise RuntimeError("θ moved while it was meant to be frozen")
    return {"env_id": env_id, "seed": seed, "train_steps": args.train_steps, "hyperparams": list(args.hyperparams),
            "blocks": blocks}


def write_markdown(runs: list[dict], path: str, command: str) -> None:
    lines = ["# ĉ with its target frozen: variance ratio as φ trains alone at a fixed θ", "", f"Command: `{command}`",
             "", "relax-a2c trained for the steps shown (packaged config plus the command's --hyperparams), then θ "
             "(checked unchanged at the end) and the VecNormalize statistics are "
             "frozen and φ keeps training on fresh batches. Ratio: total variance of ĉ on over ĉ off on the same "
             "rollout batches at that θ (≤ 0.5 is the issue's goal).", ""]
    columns = [block["phi_steps"] for block in runs[0]["blocks"]]
    lines += ["| env | seed | trained steps | " + " | ".join(f"φ alone {c:,} steps" for c in columns) + " |",
              "|" + "---|" * (3 + len(columns))]
    for run_ in runs:
        lines.append(f"| {run_['env_id']} | {run_['seed']} | {run_['train_steps']:,} | "
                     + " | ".join(f"{b['ratio']:.3f}" for b in run_["blocks"]) + " |")
    last = [run_["blocks"][-1]["ratio"] for run_ in runs]
    lines += ["", f"After the last block: median {np.median(last):.3f} over {len(last)} runs.", ""]
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["InvertedPendulum-v5"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--train-steps", type=timesteps_type, default=60_000, help="steps of ordinary training first")
    parser.add_argument("--phi-steps", type=timesteps_type, default=40_000, help="env steps per block of φ alone")
    parser.add_argument("--blocks", type=int, default=5, help="blocks of φ-only training (>= 1)")
    parser.add_argument("--batches", type=int, default=100, help="rollout batches per measurement (>= 2)")
    parser.add_argument("--hyperparams", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides of relax-a2c's packaged config, as for train.py")
    parser.add_argument("--out", default="results/frozen_theta")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.blocks < 1:
        parser.error(f"--blocks must be >= 1, got {args.blocks}")
    if args.batches < 2:
        parser.error(f"--batches must be >= 2, got {args.batches}")
    check_relax_a2c_entries(parser, args.envs, args.hyperparams)
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as log_folder:
        runs = [run(env_id, seed, args, log_folder) for env_id in args.envs for seed in args.seeds]
    command = command_line("experiments/frozen_theta.py", argv)
    with open(os.path.join(args.out, "frozen_theta.json"), "w") as fh:
        json.dump({"command": command, "runs": runs}, fh, indent=1)
    write_markdown(runs, os.path.join(args.out, "frozen_theta.md"), command)
    return runs


if __name__ == "__main__":
    main()
