"""Where A2C's gradient variance comes from along training: the transitions whose episode ends in their segment.

``variance.py`` finds that ĉ removes almost none of the estimator's variance while the policy learns. This script
splits the variance of the ĉ-off estimate (A2C's ĝ = mean_t Â_t ∇log π(a_t|s_t), the estimate ĉ has to improve
on) by transition. A transition "ends" if its episode ends (terminated or truncated) at its own step or later
within its n-step segment, so that Â_t sums rewards up to the episode's end instead of bootstrapping from V at
the segment's end. With w_t = 1 for those and 0 for the rest, ĝ = ĝ_ends + ĝ_rest and

    Var(ĝ) = Var(ĝ_ends) + Var(ĝ_rest) + 2 Cov(ĝ_ends, ĝ_rest)    (summed over θ's coordinates)

At each checkpoint of a relax-a2c run (packaged config, as in ``variance.py``) the policy is frozen and
``--batches`` rollout batches of the training size are drawn on a separate measurement env; the table gives the
three terms as shares of Var(ĝ), the share of transitions that end, and Â's mean and standard deviation in each
group.

    python experiments/variance_sources.py --envs CartPole-v1 InvertedPendulum-v5 --out results/variance_sources
    python experiments/variance_sources.py --quick --out /tmp/variance_sources_quick
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import ConvertCallback
from stable_baselines3.common.vec_env import unwrap_vec_normalize

from relax_rl.runs import command_line

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from variance import (  # noqa: E402  (experiments/variance.py: checkpoints, measurement env, arguments)
    BUDGETS,
    VarianceProbe,
    check_checkpoint_args,
    checkpoint_parser,
    train_with_probe,
)


def ends_in_segment(episode_starts: np.ndarray, last_dones: np.ndarray) -> np.ndarray:
    """[n_steps, n_envs] booleans: the episode of transition (t, env) ends at step t or later in the segment.

    ``episode_starts[t]`` marks the first step of a new episode, so the episode running at step t − 1 ended
    there; ``last_dones`` are the ``dones`` after the segment's last step."""
    ended = np.concatenate([np.asarray(episode_starts)[1:], np.asarray(last_dones)[None]]).astype(bool)
    return np.ascontiguousarray(np.flip(np.logical_or.accumulate(np.flip(ended, axis=0), axis=0), axis=0))


class SourceProbe(VarianceProbe):
    """At each checkpoint, Var(ĝ) of the ĉ-off estimate split into the transitions that end and the rest."""

    def measure(self) -> dict:
        model = self.model
        env = self._measure_env
        self._copy_normalization()
        normalizer = unwrap_vec_normalize(env)
        if normalizer is not None:
            normalizer.training = False  # (frozen statistics, as in relax_rl.diagnostics)
        saved = {key: copy.copy(getattr(model, key)) for key in
                 ("num_timesteps", "ep_info_buffer", "ep_success_buffer", "_episode_num", "_last_obs",
                  "_last_episode_starts")}
        model._last_obs = env.reset()
        model._last_episode_starts = np.ones(env.num_envs, dtype=bool)
        buffer = copy.deepcopy(model.rollout_buffer)
        callback = ConvertCallback(None)
        callback.init_callback(model)
        theta = model.policy.theta_parameters()
        parts: dict[str, list[np.ndarray]] = {"all": [], "ends": [], "rest": []}
        ends_share, advantages = [], {"ends": [], "rest": []}
        torch.manual_seed(self.seed + self.num_timesteps)
        try:
            for _ in range(self.n_batches):
                model.collect_rollouts(env, callback, buffer, n_rollout_steps=model.n_steps)
                ends = torch.as_tensor(ends_in_segment(buffer.episode_starts, model._last_episode_starts).reshape(-1))
                obs = torch.as_tensor(buffer.observations.reshape(ends.numel(), -1))
                actions = torch.as_tensor(buffer.actions.reshape(ends.numel(), -1))
                if isinstance(model.action_space, spaces.Discrete):
                    actions = actions.long().flatten()
                adv = torch.as_tensor(buffer.advantages.reshape(-1))
                _, log_prob, _ = model.policy.evaluate_actions(obs, actions)
                for key, weight in (("all", torch.ones_like(adv)), ("ends", ends.float()), ("rest", (~ends).float())):
                    grads = torch.autograd.grad((weight * adv * log_prob).mean(), theta, retain_graph=True,
                                                allow_unused=True)
                    parts[key].append(torch.cat([g.flatten() for g in grads if g is not None]).detach().numpy())
                ends_share.append(ends.float().mean().item())
                advantages["ends"] += adv[ends].tolist()
                advantages["rest"] += adv[~ends].tolist()
        finally:
            for key, value in saved.items():
                setattr(model, key, value)
        record = {"timesteps": int(self.num_timesteps), "ends_share_of_transitions": float(np.mean(ends_share))}
        record.update(split_variance(*(np.stack(parts[key]) for key in ("all", "ends", "rest"))))
        for key, values in advantages.items():
            record[f"advantage_mean_{key}"] = float(np.mean(values)) if values else float("nan")
            record[f"advantage_std_{key}"] = float(np.std(values)) if values else float("nan")
        print(f"{self.env_id} step {self.num_timesteps}: Var(ĝ) {record['total_variance']:.3g}, ends "
              f"{record['ends_share']:.2f}, rest {record['rest_share']:.2f}, 2 cov {record['covariance_share']:.2f} "
              f"({record['ends_share_of_transitions']:.1%} of transitions end)", flush=True)
        return record


def split_variance(whole: np.ndarray, ends: np.ndarray, rest: np.ndarray) -> dict:
    """Total variances across batches ([n_batches, n_coordinates] each; whole = ends + rest) as shares of the
    whole's: Var(ends), Var(rest) and 2 Cov(ends, rest), which add up to 1."""
    def total_covariance(a: np.ndarray, b: np.ndarray) -> float:
        return float(((a - a.mean(0)) * (b - b.mean(0))).sum() / (a.shape[0] - 1))

    total = total_covariance(whole, whole)
    return {"total_variance": total, "ends_share": total_covariance(ends, ends) / total,
            "rest_share": total_covariance(rest, rest) / total,
            "covariance_share": 2 * total_covariance(ends, rest) / total}


def run_env(env_id: str, seed: int, args: argparse.Namespace, log_folder: str) -> dict:
    budget = args.budget or BUDGETS.get(env_id, 200_000)
    probe = SourceProbe(env_id, budget, args.every, args.batches, seed)
    train_with_probe(env_id, seed, budget, args.hyperparams, log_folder, probe)
    return {"env_id": env_id, "seed": seed, "budget": budget, "checkpoints": probe.records}


def write_markdown(results: dict, path: str, command: str) -> None:
    lines = ["# Where A2C's gradient variance comes from: transitions whose episode ends in their segment", "",
             f"Command: `{command}`", "",
             "Var(ĝ) of the ĉ-off estimate (A2C's Â ∇log π) over rollout batches of the training size, at frozen θ, "
             "split into the transitions whose episode ends at their step or later within their n-step segment "
             "(\"ends\") and the rest; the three shares add up to 1.", ""]
    for env_id, runs in results.items():
        lines += [f"## {env_id}", "",
                  "| seed | timesteps | log Var(ĝ) | transitions that end | Var share: ends | rest | 2 Cov | "
                  "Â mean ± std: ends | rest |", "|---|---|---|---|---|---|---|---|---|"]
        for run in runs:
            for c in run["checkpoints"]:
                lines.append(
                    f"| {run['seed']} | {c['timesteps']:,} | {np.log(c['total_variance']):.3f} | "
                    f"{c['ends_share_of_transitions']:.1%} | {c['ends_share']:.2f} | {c['rest_share']:.2f} | "
                    f"{c['covariance_share']:.2f} | {c['advantage_mean_ends']:.2f} ± {c['advantage_std_ends']:.2f} | "
                    f"{c['advantage_mean_rest']:.2f} ± {c['advantage_std_rest']:.2f} |")
        lines.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = checkpoint_parser(__doc__.split("\n\n")[0], "results/variance_sources")
    return check_checkpoint_args(parser, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as log_folder:
        for env_id in args.envs:
            results[env_id] = [run_env(env_id, seed, args, log_folder) for seed in args.seeds]
    command = command_line("experiments/variance_sources.py", argv)
    with open(os.path.join(args.out, "variance_sources.json"), "w") as fh:
        json.dump({"command": command, "results": results}, fh, indent=1)
    write_markdown(results, os.path.join(args.out, "variance_sources.md"), command)
    return results


if __name__ == "__main__":
    main()
