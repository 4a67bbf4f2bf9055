"""Throughput: env steps per second of relax-a2c against SB3's A2C with identical settings (issue #5 §4).

For each environment, relax-a2c (ĉ on), relax-a2c with ``cv_update_interval=4``, relax-a2c with
``cv_coef="auto"``, the same code with ĉ off, and SB3's ``A2C`` are built from ``configs/relax-a2c.yml``
(a2c.yml holds the same values): same env, n_envs, n_steps and networks. They run ``--steps`` timesteps each,
interleaved over ``--repeats`` rounds in one process on one machine, each round starting with another arm.
Each ratio to A2C is the median over rounds of the two arms' fps in the same round, so a drift of the
machine's speed cancels (DESIGN §7: a ratio; absolute fps is noise here). The time spent inside ``train()``
(the update) and inside ``collect_rollouts()`` is recorded too; the update-time difference between ĉ on and
ĉ off is ĉ's cost (its forward passes and the variance objective's double backprop).

    python experiments/throughput.py --out results/throughput
    python experiments/throughput.py --quick --out /tmp/throughput_quick

Writes ``throughput.json`` and ``throughput.md``. Run it alone: another busy process skews the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np
import torch

from relax_rl.runs import command_line

ENVS = {"CartPole-v1": 20_000, "LunarLander-v3": 20_000, "InvertedPendulum-v5": 10_000, "ALE/Pong-v5": 1_024}
ARMS = ("a2c", "relax-a2c (c-hat off)", "relax-a2c", "relax-a2c (phi every 4th update)",
        "relax-a2c (cv_coef auto)")
QUICK = {"envs": ["CartPole-v1"], "steps": 800, "repeats": 2}


def build(arm: str, env_id: str, seed: int) -> Any:
    """The model of one arm, on the settings of configs/relax-a2c.yml for ``env_id``."""
    from stable_baselines3 import A2C

    from relax_rl import RelaxA2C
    from relax_rl.envs import is_atari, make_env
    from relax_rl.hyperparams import build_algo_kwargs, load_packaged_config, lookup_entry

    entry = dict(lookup_entry(load_packaged_config("relax-a2c"), env_id, is_atari(env_id)))
    entry.pop("n_timesteps", None)
    policy = entry.pop("policy", "MlpPolicy")
    if arm == "a2c":
        entry.pop("action_dependent_cv", None)
        entry = {k: v for k, v in entry.items() if not k.startswith("cv_")}
        algo_class = A2C
    else:
        entry["action_dependent_cv"] = arm != "relax-a2c (c-hat off)"
        if arm == "relax-a2c (phi every 4th update)":
            entry["cv_update_interval"] = 4
        if arm == "relax-a2c (cv_coef auto)":
            entry["cv_coef"] = "auto"
        algo_class = RelaxA2C
    kwargs, special = build_algo_kwargs(entry, algo_class)
    env = make_env(env_id, n_envs=special.get("n_envs", 1), seed=seed, normalize=special["normalize"],
                   normalize_kwargs=special.get("normalize_kwargs"), env_kwargs=special.get("env_kwargs"),
                   frame_stack=special.get("frame_stack"))
    return algo_class(policy, env, seed=seed, device="cpu", **kwargs)


def timed(model: Any, steps: int) -> dict[str, float]:
    """Learn ``steps`` timesteps; fps and the seconds spent in collect_rollouts and train."""
    spent = {"collect": 0.0, "train": 0.0}

    def wrap(name: str, key: str) -> None:
        inner = getattr(model, name)

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - start

        setattr(model, name, timed_call)

    wrap("collect_rollouts", "collect")
    wrap("train", "train")
    start_steps, start = model.num_timesteps, time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    del model.collect_rollouts, model.train  # back to the class methods
    fps = (model.num_timesteps - start_steps) / wall
    return {"fps": fps, "wall_s": wall, **{f"{key}_s": seconds for key, seconds in spent.items()}}


def measure_env(env_id: str, steps: int, repeats: int, seed: int) -> dict:
    from relax_rl.envs import is_atari

    cnn = is_atari(env_id)
    torch.set_num_threads(torch.get_num_threads() if cnn else 1)
    models = {arm: build(arm, env_id, seed) for arm in ARMS}
    for model in models.values():  # warm-up: first calls allocate buffers and build autograd state
        timed(model, max(model.n_envs * model.n_steps * 2, steps // 10))
    rounds: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for index in range(repeats):
        for arm in ARMS[index % len(ARMS):] + ARMS[:index % len(ARMS)]:  # each round starts with another arm
            rounds[arm].append(timed(models[arm], steps))
    summary = {arm: {key: float(np.median([r[key] for r in rs])) for key in rs[0]} for arm, rs in rounds.items()}
    off, on = summary["relax-a2c (c-hat off)"], summary["relax-a2c"]
    model = models["relax-a2c"]

    def paired_ratio(arm: str) -> float:
        """Median over rounds of the arm's fps over A2C's in the same round (drift of the machine cancels)."""
        return float(np.median([r["fps"] / b["fps"] for r, b in zip(rounds[arm], rounds["a2c"], strict=True)]))

    return {
        "env_id": env_id, "n_envs": model.n_envs, "n_steps": model.n_steps, "policy": type(model.policy).__name__,
        "steps": steps, "repeats": repeats, "arms": summary, "rounds": rounds,
        "ratio_relax_to_a2c": paired_ratio("relax-a2c"),
        "ratio_c_hat_off_to_a2c": paired_ratio("relax-a2c (c-hat off)"),
        "ratio_relax_every4_to_a2c": paired_ratio("relax-a2c (phi every 4th update)"),
        "ratio_relax_auto_to_a2c": paired_ratio("relax-a2c (cv_coef auto)"),
        "update_share_relax": on["train_s"] / on["wall_s"],
        "c_hat_share_of_update": max(on["train_s"] - off["train_s"], 0.0) / on["train_s"],
    }


def write_markdown(results: list[dict], path: str, command: str) -> None:
    lines = ["# Throughput: relax-a2c against SB3 A2C, same settings", "", f"Command: `{command}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}. fps: median over the rounds of env steps per second; the five arms run "
             "interleaved in one process, each round starting with another arm. Ratios: median over rounds of "
             "the arm's fps over A2C's in the same round. Goal: ratio ≥ 0.8 on the MLP tasks. 'ĉ share of "
             "update' = (update time with ĉ on − with ĉ off) / update time with ĉ on.", "",
             "| env | policy | n_envs × n_steps | A2C fps | ĉ-off fps | relax fps | relax / A2C | ĉ-off / A2C "
             "| relax, φ every 4th update / A2C | relax, cv_coef auto / A2C | update share of relax time "
             "| ĉ share of update |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a = r["arms"]
        lines.append(f"| {r['env_id']} | {r['policy']} | {r['n_envs']} × {r['n_steps']} | {a['a2c']['fps']:,.0f} | "
                     f"{a['relax-a2c (c-hat off)']['fps']:,.0f} | {a['relax-a2c']['fps']:,.0f} | "
                     f"{r['ratio_relax_to_a2c']:.2f} | {r['ratio_c_hat_off_to_a2c']:.2f} | "
                     f"{r['ratio_relax_every4_to_a2c']:.2f} | {r['ratio_relax_auto_to_a2c']:.2f} | "
                     f"{r['update_share_relax']:.0%} | {r['c_hat_share_of_update']:.0%} |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--steps", type=int, default=None, help="timesteps per round (default: per env)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per arm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/throughput")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        args.envs, args.steps, args.repeats = QUICK["envs"], args.steps or QUICK["steps"], QUICK["repeats"]
    from relax_rl.envs import is_atari
    from relax_rl.hyperparams import load_packaged_config, lookup_entry

    configs = load_packaged_config("relax-a2c")
    for env_id in args.envs:
        if lookup_entry(configs, env_id, is_atari(env_id)) is None:
            parser.error(f"no relax-a2c entry for {env_id!r} in configs/relax-a2c.yml; entries: {', '.join(configs)}")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = []
    for env_id in args.envs:
        result = measure_env(env_id, args.steps or ENVS.get(env_id, 10_000), args.repeats, args.seed)
        print(f"{env_id}: relax/A2C {result['ratio_relax_to_a2c']:.2f}, "
              f"ĉ-off/A2C {result['ratio_c_hat_off_to_a2c']:.2f}, "
              f"ĉ share of update {result['c_hat_share_of_update']:.0%}", flush=True)
        results.append(result)
    command = command_line("experiments/throughput.py", argv)
    with open(os.path.join(args.out, "throughput.json"), "w") as fh:
        json.dump({"command": command, "results": results}, fh, indent=1)
    write_markdown(results, os.path.join(args.out, "throughput.md"), command)
    return results


if __name__ == "__main__":
    main()
