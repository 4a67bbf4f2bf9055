"""Gradient variance along training: relax-a2c against the same code with ĉ ≡ 0, at the same θ (issue #5 §3).

Trains relax-a2c with its packaged config through the training pipeline. At every ``--every`` fraction of the
budget (after the rollout, before the update) the policy is frozen and two estimators are measured on a
separate measurement environment (VecNormalize statistics copied from training, frozen during the
measurement by ``paired_gradient_estimates``, so the ideal baselines' continuations normalize as the rollouts did):

- ĉ on: the model's own RELAX/LAX estimate;
- ĉ off: the same code with ĉ ≡ 0, i.e. SB3's A2C estimate Â ∇log π, at the same θ.

Both are evaluated on the same ``--batches`` rollout batches of the training size (n_envs × n_steps;
trajectories continue between batches, as in training; ``relax_rl.diagnostics.paired_gradient_estimates``),
and each gets the total variance Σ_i Var(ĝ_i) across batches (DESIGN §7). Pairing the two on common rollouts
takes the batch-to-batch luck (a rare long episode, a truncation) out of their ratio.

    python experiments/variance.py --envs CartPole-v1 InvertedPendulum-v5 --out results/variance
    python experiments/variance.py --quick --out /tmp/variance_quick

``--ideal-baseline M`` (classic-control and MuJoCo envs, e.g. CartPole-v1 or InvertedPendulum-v5) adds, on the
same batches, the estimators with the ideal baselines of Â, from M Monte Carlo continuations per state and action
(for Box actions, the taken one and M fresh draws from π; ``ideal_baseline.py``): v(s) = E[Â | s] (a perfect
critic), q(s, a) = E[Â | s, a] (the most any ĉ(a, s) can learn) and q(s, a, position), which also knows the
transition's place in its n-step segment.

Writes ``variance.json``, ``variance.md`` (ratios ĉ-on / ĉ-off) and ``variance.png`` (log-variance against
training progress, the paper's figure).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import unwrap_vec_normalize

from relax_rl.diagnostics import gradient_variance, paired_gradient_estimates
from relax_rl.runs import command_line

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ideal_baseline import IdealBaseline, StateRecorder  # noqa: E402  (experiments/ideal_baseline.py)
from throughput import check_relax_a2c_entries  # noqa: E402

from relax_rl.cli import timesteps_type  # noqa: E402

BUDGETS = {"CartPole-v1": 200_000, "InvertedPendulum-v5": 300_000, "LunarLander-v3": 500_000}
QUICK = {"envs": ["CartPole-v1"], "budget": 4_000, "batches": 10, "every": 0.5}
IDEAL_LABELS = {"ideal_state": "ideal v(s)", "ideal": "ideal q(s, a)", "ideal_position": "ideal q(s, a, position)"}


class VarianceProbe(BaseCallback):
    """At each checkpoint, the total gradient variance with ĉ on and ĉ off at the model's current θ."""

    def __init__(self, env_id: str, budget: int, every: float, n_batches: int, seed: int,
                 ideal_continuations: int = 0) -> None:
        super().__init__()
        self.env_id, self.n_batches, self.seed = env_id, n_batches, seed
        self.ideal_continuations = ideal_continuations
        self.checkpoints = [int(round(f * budget)) for f in np.arange(0.0, 1.0 + 1e-9, every)]
        self.records: list[dict] = []
        self._measure_env = None

    def _on_training_start(self) -> None:
        from relax_rl.envs import make_env

        model = self.model
        train_norm = unwrap_vec_normalize(model.get_env())
        kwargs = {}
        if train_norm is not None:
            kwargs = dict(normalize=True, normalize_kwargs=dict(norm_obs=train_norm.norm_obs,
                                                                norm_reward=train_norm.norm_reward,
                                                                gamma=train_norm.gamma))
        self._measure_env = make_env(self.env_id, n_envs=model.n_envs, seed=10_000 + self.seed, **kwargs)
        self._ideal = None
        if self.ideal_continuations:
            env = self._measure_env
            if not StateRecorder.supports(env, model.action_space):
                raise ValueError(f"--ideal-baseline needs an env whose state can be set (classic control or MuJoCo, "
                                 f"e.g. CartPole-v1 or InvertedPendulum-v5) with discrete or Box actions, "
                                 f"not {self.env_id}")
            self._measure_env = StateRecorder(env, model.n_steps)
            self._ideal = IdealBaseline(model, self._measure_env, self.ideal_continuations, self.seed)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        due = False
        while self.checkpoints and self.num_timesteps >= self.checkpoints[0]:
            self.checkpoints.pop(0)
            due = True
        if due:
            self.records.append(self.measure())

    def _copy_normalization(self) -> None:
        """The measurement env normalizes with the training env's current VecNormalize statistics."""
        measure_norm, train_norm = unwrap_vec_normalize(self._measure_env), unwrap_vec_normalize(self.model.get_env())
        if measure_norm is not None:
            measure_norm.obs_rms, measure_norm.ret_rms = copy.deepcopy(train_norm.obs_rms), copy.deepcopy(
                train_norm.ret_rms)

    def measure(self) -> dict:
        model = self.model
        self._copy_normalization()
        saved_env, saved_obs, saved_starts = model.env, model._last_obs, model._last_episode_starts
        model.env, model._last_obs = self._measure_env, None
        estimators = {"c_hat_on": model.policy_gradient,
                      "c_hat_off": lambda rollout_data: model.policy_gradient(rollout_data, control_variate=False)}
        if self._ideal is not None:
            estimators.update(self._ideal.estimators())
        try:
            estimates = paired_gradient_estimates(model, self.n_batches, estimators,
                                                  seed=self.seed + self.num_timesteps)
        finally:
            model.env, model._last_obs, model._last_episode_starts = saved_env, saved_obs, saved_starts
        on, off = gradient_variance(estimates["c_hat_on"]), gradient_variance(estimates["c_hat_off"])
        record = {"timesteps": int(self.num_timesteps), "c_hat_on": on, "c_hat_off": off,
                  "ratio": on["total_variance"] / off["total_variance"]}
        line = (f"{self.env_id} step {self.num_timesteps}: log var on {on['log_total_variance']:.3f}, "
                f"off {off['log_total_variance']:.3f}, ratio {record['ratio']:.3f}")
        if self._ideal is not None:
            for key in IDEAL_LABELS:
                record[key] = gradient_variance(estimates[key])
                record[f"{key}_ratio"] = record[key]["total_variance"] / off["total_variance"]
            line += (f"; ideal v(s) {record['ideal_state']['log_total_variance']:.3f}, q(s, a) "
                     f"{record['ideal']['log_total_variance']:.3f} (ratio {record['ideal_ratio']:.3f}), "
                     f"q(s, a, position) {record['ideal_position']['log_total_variance']:.3f}")
        print(line, flush=True)
        return record


def train_with_probe(env_id: str, seed: int, budget: int, hyperparams: list[str], log_folder: str,
                     probe: BaseCallback) -> Any:
    """One relax-a2c training run (packaged config plus ``hyperparams``) through the training pipeline, with
    ``probe`` measuring along the way; returns the pipeline's result."""
    from relax_rl.cli import train

    argv = ["--algo", "relax-a2c", "--env", env_id, "--seed", str(seed), "-n", str(budget), "--eval-freq", "-1",
            "--save-freq", "-1", "--eval-episodes", "5", "--log-folder", log_folder, "--tensorboard-log", "",
            "--no-progress", "--verbose", "0"]
    if hyperparams:
        argv += ["--hyperparams", *hyperparams]
    return train(argv, callbacks=[probe])


def run_env(env_id: str, seed: int, args: argparse.Namespace, log_folder: str) -> dict:
    budget = args.budget or BUDGETS.get(env_id, 200_000)
    probe = VarianceProbe(env_id, budget, args.every, args.batches, seed, args.ideal_baseline)
    result = train_with_probe(env_id, seed, budget, args.hyperparams, log_folder, probe)
    return {"env_id": env_id, "seed": seed, "budget": budget, "final_eval_mean": result.eval_mean,
            "checkpoints": probe.records}


def summarize(runs: list[dict]) -> dict:
    ratios = [c["ratio"] for run in runs for c in run["checkpoints"]]
    summary = {"n_checkpoints": len(ratios), "median_ratio": float(np.median(ratios)),
               "geometric_mean_ratio": float(np.exp(np.mean(np.log(ratios)))), "max_ratio": float(np.max(ratios)),
               "checkpoints_at_or_below_half": int(sum(r <= 0.5 for r in ratios))}
    for key in IDEAL_LABELS:
        ideal = [c[f"{key}_ratio"] for run in runs for c in run["checkpoints"] if f"{key}_ratio" in c]
        if ideal:
            summary.update({f"median_{key}_ratio": float(np.median(ideal)),
                            f"{key}_checkpoints_at_or_below_half": int(sum(r <= 0.5 for r in ideal))})
    return summary


def write_markdown(results: dict, path: str, command: str) -> None:
    lines = ["# Gradient variance: relax-a2c with ĉ on against ĉ off, same θ", "", f"Command: `{command}`", "",
             "Total variance Σ_i Var(ĝ_i) over independent rollout batches of the training size, at frozen θ "
             "(DESIGN §7); both estimators are evaluated on the same batches. Ratio = ĉ on / ĉ off; the goal is "
             "≤ 0.5.", ""]
    for env_id, entry in results.items():
        s = entry["summary"]
        ideal = "median_ideal_ratio" in s
        lines += [f"## {env_id}", "",
                  f"Median ratio {s['median_ratio']:.3f}, geometric mean {s['geometric_mean_ratio']:.3f}, "
                  f"max {s['max_ratio']:.3f}; {s['checkpoints_at_or_below_half']}/{s['n_checkpoints']} "
                  "checkpoints at or below 0.5.", ""]
        header = "| seed | timesteps | log var ĉ on | log var ĉ off | ratio |"
        if ideal:
            for key, label in IDEAL_LABELS.items():
                lines.append(f"- {label} / ĉ off: median {s[f'median_{key}_ratio']:.3f}; "
                             f"{s[f'{key}_checkpoints_at_or_below_half']}/{s['n_checkpoints']} checkpoints ≤ 0.5.")
            lines.append("")
            header += "".join(f" {label} / ĉ off |" for label in IDEAL_LABELS.values())
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        for run in entry["runs"]:
            for c in run["checkpoints"]:
                row = (f"| {run['seed']} | {c['timesteps']:,} | {c['c_hat_on']['log_total_variance']:.3f} | "
                       f"{c['c_hat_off']['log_total_variance']:.3f} | {c['ratio']:.3f} |")
                if "ideal" in c:
                    row += "".join(f" {c[f'{key}_ratio']:.3f} |" for key in IDEAL_LABELS)
                lines.append(row)
        lines.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, (env_id, entry) in zip(axes[0], results.items(), strict=True):
        series = [("c_hat_off", "ĉ off (A2C)", "tab:blue"), ("c_hat_on", "ĉ on (relax)", "tab:red")]
        if "median_ideal_ratio" in entry["summary"]:
            series += [("ideal_state", "ideal v(s) baseline", "tab:gray"),
                       ("ideal", "ideal q(s, a) baseline", "tab:green")]
        for key, label, color in series:
            for i, run in enumerate(entry["runs"]):
                x = [c["timesteps"] / run["budget"] for c in run["checkpoints"]]
                y = [c[key]["log_total_variance"] for c in run["checkpoints"]]
                ax.plot(x, y, color=color, marker="o", markersize=3, label=label if i == 0 else None)
        ax.set(title=env_id, xlabel="fraction of the training budget", ylabel="log total gradient variance")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def checkpoint_parser(description: str, out: str) -> argparse.ArgumentParser:
    """The arguments of a script that measures at checkpoints along relax-a2c runs (this one, variance_sources.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "InvertedPendulum-v5"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--budget", type=timesteps_type, default=None, help="timesteps per run (default: per env)")
    parser.add_argument("--batches", type=int, default=100, help="rollout batches per measurement (>= 2)")
    parser.add_argument("--every", type=float, default=0.1, help="measure every this fraction of the budget")
    parser.add_argument("--hyperparams", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides of relax-a2c's packaged config, as for train.py")
    parser.add_argument("--out", default=out)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    return parser


def check_checkpoint_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Apply --quick and refuse bad values of the arguments :func:`checkpoint_parser` adds."""
    if args.quick:
        args.envs, args.budget, args.batches, args.every = QUICK["envs"], args.budget or QUICK["budget"], \
            QUICK["batches"], QUICK["every"]
    if not 0 < args.every <= 1:
        parser.error(f"--every must be in (0, 1], got {args.every}")
    if args.batches < 2:
        parser.error(f"--batches must be >= 2, got {args.batches}")
    check_relax_a2c_entries(parser, args.envs, args.hyperparams)
    return args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = checkpoint_parser(__doc__.split("\n\n")[0], "results/variance")
    parser.add_argument("--ideal-baseline", type=int, default=0, metavar="M",
                        help="also measure the ideal action-dependent baseline q(s, a), estimated from M continuations "
                             "per state and action, and for Box actions from M fresh actions per state "
                             "(classic-control and MuJoCo envs; 0: off)")
    args = parser.parse_args(argv)
    if args.ideal_baseline < 0:
        parser.error(f"--ideal-baseline must be >= 0, got {args.ideal_baseline}")
    return check_checkpoint_args(parser, args)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as log_folder:
        for env_id in args.envs:
            runs = [run_env(env_id, seed, args, log_folder) for seed in args.seeds]
            results[env_id] = {"runs": runs, "summary": summarize(runs)}
    command = command_line("experiments/variance.py", argv)
    with open(os.path.join(args.out, "variance.json"), "w") as fh:
        json.dump({"command": command, "results": results}, fh, indent=1)
    write_markdown(results, os.path.join(args.out, "variance.md"), command)
    plot(results, os.path.join(args.out, "variance.png"))
    return results


if __name__ == "__main__":
    main()
