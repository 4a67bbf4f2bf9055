"""RelaxDDPG learning budgets: how many timesteps until the deterministic evaluation reaches a threshold.

Runs the training pipeline (``relax_rl.cli.train``, i.e. ``python train.py --algo relax-ddpg``) with the
packaged config for each environment and seed, evaluating every ``--eval-freq`` timesteps on 10 episodes,
and reads the evaluations back from each run's ``evaluations.npz``.

    python experiments/relax_ddpg_learning.py --envs InvertedPendulum-v5 Pendulum-v1 --seeds 0 1 2 \
        --out results/relax_ddpg

``--variant NAME KEY=VALUE...`` adds an arm with hyperparameter overrides (e.g. the critic's regression
weight: ``--variant no-regression cv_regression_coef=0``). Writes ``metrics.json`` and ``learning.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np
import torch

from relax_rl.cli import train
from relax_rl.runs import command_line

THRESHOLDS = {"InvertedPendulum-v5": 950.0, "Pendulum-v1": -200.0, "InvertedDoublePendulum-v5": 9000.0}


def first_reaching(timesteps: np.ndarray, means: np.ndarray, threshold: float) -> int | None:
    hits = np.nonzero(means >= threshold)[0]
    return int(timesteps[hits[0]]) if hits.size else None


def run_arm(env_id: str, seed: int, overrides: list[str], args: argparse.Namespace, log_folder: str) -> dict:
    argv = ["--algo", "relax-ddpg", "--env", env_id, "--seed", str(seed), "--eval-freq", str(args.eval_freq),
            "--eval-episodes", "10", "--save-freq", "-1", "--log-folder", log_folder, "--tensorboard-log", "",
            "--no-progress", "--verbose", "0"]
    if args.n_timesteps:
        argv += ["-n", str(args.n_timesteps)]
    if overrides:
        argv += ["--hyperparams", *overrides]
    result = train(argv)
    evaluations = np.load(os.path.join(result.run_dir, "evaluations.npz"))
    timesteps, means = evaluations["timesteps"], evaluations["results"].mean(axis=1)
    threshold = THRESHOLDS.get(env_id, float("inf"))
    return {
        "seed": seed,
        "timesteps_to_threshold": first_reaching(timesteps, means, threshold),
        "final_eval_mean": result.eval_mean,
        "final_eval_std": result.eval_std,
        "wall_time_s": result.wall_time,
        "fps": result.fps,
        "n_timesteps": result.num_timesteps,
        "eval_timesteps": timesteps.tolist(),
        "eval_means": means.tolist(),
    }


def summarize(runs: list[dict], threshold: float) -> dict:
    reached = [r["timesteps_to_threshold"] for r in runs if r["timesteps_to_threshold"] is not None]
    finals = [r["final_eval_mean"] for r in runs]
    return {
        "threshold": threshold,
        "solved": f"{len(reached)}/{len(runs)}",
        "median_timesteps_to_threshold": float(np.median(reached)) if reached else None,
        "max_timesteps_to_threshold": max(reached) if reached else None,
        "final_eval_mean": float(np.mean(finals)),
        "final_eval_min": float(np.min(finals)),
        "mean_wall_time_s": float(np.mean([r["wall_time_s"] for r in runs])),
    }


def write_markdown(metrics: dict, path: str, command: str) -> None:
    lines = ["# RelaxDDPG learning budgets", "", f"Command: `{command}`", "",
             "Deterministic evaluation (10 episodes) every eval-freq timesteps; a run is solved when an evaluation "
             "mean reaches the threshold. Config: `configs/relax-ddpg.yml`; 2-core CPU machine.", "",
             "| env | arm | threshold | solved | median steps to threshold | max | final eval (mean / min over seeds)"
             " | wall time per run |",
             "|---|---|---|---|---|---|---|---|"]
    for env_id, arms in metrics.items():
        for arm, data in arms.items():
            s = data["summary"]
            median = "—" if s["median_timesteps_to_threshold"] is None else f"{s['median_timesteps_to_threshold']:,.0f}"
            worst = "—" if s["max_timesteps_to_threshold"] is None else f"{s['max_timesteps_to_threshold']:,}"
            lines.append(f"| {env_id} | {arm} | {s['threshold']:g} | {s['solved']} | {median} | {worst} | "
                         f"{s['final_eval_mean']:.1f} / {s['final_eval_min']:.1f} | {s['mean_wall_time_s']:.0f} s |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["InvertedPendulum-v5", "Pendulum-v1"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="results/relax_ddpg")
    parser.add_argument("--eval-freq", type=int, default=10_000)
    parser.add_argument("-n", "--n-timesteps", type=int, default=None, help="override the config's budget")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
                        help="an extra arm: a name, then hyperparameter overrides")
    args = parser.parse_args(argv)
    for variant in args.variant:
        if len(variant) < 2 or any("=" not in item for item in variant[1:]):
            parser.error(f"--variant needs a name and KEY=VALUE overrides, got {variant}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    arms = {"default": [], **{v[0]: v[1:] for v in args.variant}}
    metrics: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as log_folder:
        for env_id in args.envs:
            metrics[env_id] = {}
            for arm, overrides in arms.items():
                runs = [run_arm(env_id, seed, overrides, args, log_folder) for seed in args.seeds]
                metrics[env_id][arm] = {"overrides": overrides, "runs": runs,
                                        "summary": summarize(runs, THRESHOLDS.get(env_id, float("inf")))}
                print(env_id, arm, json.dumps(metrics[env_id][arm]["summary"]), flush=True)
    command = command_line("experiments/relax_ddpg_learning.py", argv)
    with open(os.path.join(args.out, "metrics.json"), "w") as fh:
        json.dump({"command": command, "metrics": metrics}, fh, indent=1)
    write_markdown(metrics, os.path.join(args.out, "learning.md"), command)
    return metrics


if __name__ == "__main__":
    main()
