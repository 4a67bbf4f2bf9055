"""Throughput: env steps per second of relax-a2c against SB3's A2C with identical settings (issue #5 §4).

For each environment, relax-a2c (ĉ on), relax-a2c with ``cv_update_interval=4``, relax-a2c with
``cv_coef="auto"``, the same code with ĉ off, and SB3's ``A2C`` are built from ``configs/relax-a2c.yml``
(a2c.yml holds the same values): same env, n_envs, n_steps and networks. Each arm trains ``--steps`` timesteps
with the body of SB3's ``learn()`` loop (collect a rollout, update the progress, ``train()``), the arms taking
turns in ``--blocks`` blocks of a few rollouts each, in one process; each block starts with another arm. A
block lasts a fraction of a second, so a drift of the machine's speed hits all arms of a block alike, and the
ratio to A2C is the median over blocks of the two arms' fps in the same block (DESIGN §7: a ratio; absolute fps
is noise here). The time spent inside ``train()`` (the update) and inside ``collect_rollouts()`` is recorded
too; the update-time difference between ĉ on and ĉ off is ĉ's cost (its forward passes and the variance
objective's double backprop).

    python experiments/throughput.py --out results/throughput
    python experiments/throughput.py --quick --out /tmp/throughput_quick
    python experiments/throughput.py --envs CartPole-v1 --hyperparams n_envs=1 n_steps=200 --out <directory>
    python experiments/throughput.py --envs ALE/Pong-v5 --device cuda --steps 32000 --out results/throughput_gpu

``--device cuda`` puts every arm's networks on the GPU (the envs stay on the CPU); each arm then keeps the CUDA
generator's state too, and each update is timed up to a synchronize.

Writes ``throughput.json`` and ``throughput.md``. Run it alone: another busy process skews the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from typing import Any

import numpy as np
import torch

from relax_rl.runs import command_line, machine_info

# timesteps per arm (all blocks together)
ENVS = {"CartPole-v1": 100_000, "LunarLander-v3": 100_000, "InvertedPendulum-v5": 50_000, "ALE/Pong-v5": 16_000}
ARMS = ("a2c", "relax-a2c (c-hat off)", "relax-a2c", "relax-a2c (phi every 4th update)",
        "relax-a2c (cv_coef auto)")
PERIOD = 4  # cv_update_interval of the "φ every 4th update" arm
# result key of each arm's paired fps ratio to A2C
RATIO_KEYS = {"ratio_relax_to_a2c": "relax-a2c", "ratio_c_hat_off_to_a2c": "relax-a2c (c-hat off)",
              "ratio_relax_every4_to_a2c": "relax-a2c (phi every 4th update)",
              "ratio_relax_auto_to_a2c": "relax-a2c (cv_coef auto)"}
QUICK = {"envs": ["CartPole-v1"], "steps": 640, "blocks": 4}


def build(arm: str, env_id: str, seed: int, device: str = "cpu", overrides: list[str] = ()) -> Any:
    """The model of one arm, on the settings of configs/relax-a2c.yml for ``env_id`` with ``overrides``
    (``KEY=VALUE``, as for train.py; the cv_* ones do not reach A2C)."""
    from stable_baselines3 import A2C

    from relax_rl import RelaxA2C
    from relax_rl.envs import is_atari, make_env
    from relax_rl.hyperparam_parsing import parse_overrides
    from relax_rl.hyperparams import build_algo_kwargs, load_packaged_config, lookup_entry

    entry = dict(lookup_entry(load_packaged_config("relax-a2c"), env_id, is_atari(env_id)))
    entry.update(parse_overrides(overrides))
    entry.pop("n_timesteps", None)
    policy = entry.pop("policy", "MlpPolicy")
    if arm == "a2c":
        entry.pop("action_dependent_cv", None)
        entry = {k: v for k, v in entry.items() if not k.startswith("cv_")}
        algo_class = A2C
    else:
        entry["action_dependent_cv"] = arm != "relax-a2c (c-hat off)"
        if arm == "relax-a2c (phi every 4th update)":
            entry["cv_update_interval"] = PERIOD
        if arm == "relax-a2c (cv_coef auto)":
            entry["cv_coef"] = "auto"
        algo_class = RelaxA2C
    kwargs, special = build_algo_kwargs(entry, algo_class)
    env = make_env(env_id, n_envs=special.get("n_envs", 1), seed=seed, normalize=special["normalize"],
                   normalize_kwargs=special.get("normalize_kwargs"), env_kwargs=special.get("env_kwargs"),
                   frame_stack=special.get("frame_stack"))
    return algo_class(policy, env, seed=seed, device=device, **kwargs)


def _rng_state() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), np.random.get_state(), random.getstate(), cuda


def _set_rng_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    np.random.set_state(state[1])
    random.setstate(state[2])
    if state[3] is not None:
        torch.cuda.set_rng_state_all(state[3])


class Stepper:
    """One arm's training loop, run a few rollouts at a time: the body of SB3's ``OnPolicyAlgorithm.learn`` loop
    (``collect_rollouts``, the progress update, ``train``), timed. Logs are not dumped (learn() dumps them every
    100 updates by default: a small cost, the same for every arm).

    Each arm keeps its own global random state (torch, numpy, random), swapped in around its turns, so it draws
    the actions it would draw alone in a process: the ĉ-off arm then repeats A2C's run exactly, trajectories and
    env costs included (with one shared stream they drifted apart, and LunarLander's collection time with them)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.total, self.callback = model._setup_learn(10**12, None, reset_num_timesteps=False)
        self.callback.on_training_start(locals(), globals())
        self.rng_state = _rng_state()  # as the model's seeding left it

    def _synchronize(self) -> None:
        """Wait for the GPU's queued work, so that it is timed in the update that queued it."""
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)

    def run(self, rollouts: int) -> dict[str, float]:
        """Train ``rollouts`` rollouts; fps and the seconds spent in collect_rollouts and train."""
        model, collect_s, train_s = self.model, 0.0, 0.0
        _set_rng_state(self.rng_state)
        start_steps, start = model.num_timesteps, time.perf_counter()
        for _ in range(rollouts):
            collect_start = time.perf_counter()
            if not model.collect_rollouts(model.env, self.callback, model.rollout_buffer, model.n_steps):
                raise RuntimeError("a callback stopped the rollout")
            model._update_current_progress_remaining(model.num_timesteps, self.total)
            train_start = time.perf_counter()
            model.train()
            collect_s += train_start - collect_start
            self._synchronize()
            train_s += time.perf_counter() - train_start
        wall = time.perf_counter() - start
        self.rng_state = _rng_state()
        return {"fps": (model.num_timesteps - start_steps) / wall, "wall_s": wall, "collect_s": collect_s,
                "train_s": train_s}


def measure_env(env_id: str, steps: int, blocks: int, seed: int, device: str = "cpu",
                overrides: list[str] = ()) -> dict:
    from relax_rl.envs import is_atari

    cnn = is_atari(env_id)
    torch.set_num_threads(torch.get_num_threads() if cnn else 1)
    steppers = {arm: Stepper(build(arm, env_id, seed, device, overrides)) for arm in ARMS}
    model = steppers["relax-a2c"].model
    rollout_steps = model.n_envs * model.n_steps
    # rollouts per arm and block: a multiple of 4, so that every block of the "φ every 4th update" arm holds the
    # same share of φ steps (with one rollout per block its median block would be one without φ's step)
    rollouts = PERIOD * max(1, round(steps / (blocks * rollout_steps * PERIOD)))
    for stepper in steppers.values():  # warm-up: first calls allocate buffers and build autograd state
        stepper.run(max(2, rollouts // 5))
    per_block: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for index in range(blocks):
        for arm in ARMS[index % len(ARMS):] + ARMS[:index % len(ARMS)]:  # each block starts with another arm
            per_block[arm].append(steppers[arm].run(rollouts))
    summary = {arm: {key: float(np.sum([b[key] for b in bs])) for key in ("wall_s", "collect_s", "train_s")}
               for arm, bs in per_block.items()}
    for arm, bs in per_block.items():
        summary[arm]["fps"] = float(np.median([b["fps"] for b in bs]))
    off, on = summary["relax-a2c (c-hat off)"], summary["relax-a2c"]

    def paired_ratios(arm: str) -> np.ndarray:
        """The arm's fps over A2C's in the same block, block by block (a drift of the machine cancels)."""
        return np.array([b["fps"] / a2c["fps"] for b, a2c in zip(per_block[arm], per_block["a2c"], strict=True)])

    ratios = {key: paired_ratios(arm) for key, arm in RATIO_KEYS.items()}
    return {
        "env_id": env_id, "device": model.device.type, "n_envs": model.n_envs, "n_steps": model.n_steps,
        "policy": type(model.policy).__name__,
        "steps": blocks * rollouts * rollout_steps, "blocks": blocks, "rollouts_per_block": rollouts,
        "arms": summary, "blocks_measured": per_block,
        **{key: float(np.median(r)) for key, r in ratios.items()},
        **{f"{key}_quartiles": [float(q) for q in np.percentile(r, [25, 75])] for key, r in ratios.items()},
        "update_cost_relax_to_a2c": on["train_s"] / summary["a2c"]["train_s"],
        "update_share_relax": on["train_s"] / on["wall_s"],
        "c_hat_share_of_update": max(on["train_s"] - off["train_s"], 0.0) / on["train_s"],
    }


def write_markdown(results: list[dict], path: str, command: str, machine: dict) -> None:
    gpu = f", GPU {torch.cuda.get_device_name()}" if any(r.get("device") == "cuda" for r in results) else ""
    lines = ["# Throughput: relax-a2c against SB3 A2C, same settings", "", f"Command: `{command}`", "",
             f"Machine: {machine['processor']}, {machine['cores']} cores{gpu}, torch {torch.__version__} "
             f"({machine['torch_cpu_capability']} CPU kernels). The five arms take turns in blocks of a few "
             "rollouts (SB3's learn() loop body), each block starting with another arm. fps: median over blocks. "
             "Ratios: median over blocks of the arm's fps over A2C's in the same block, with the quartiles over "
             "blocks in brackets. Goal: ratio ≥ 0.8 on the MLP tasks. 'update cost': relax-a2c's time in train() "
             "over A2C's. 'ĉ share of update' = (update time with ĉ on − with ĉ off) / update time with ĉ on.", "",
             "| env | policy, device | n_envs × n_steps | blocks × rollouts | A2C fps | relax fps | relax / A2C "
             "| ĉ-off / A2C | relax, φ every 4th update / A2C | relax, cv_coef auto / A2C | update cost relax / A2C "
             "| update share of relax time | ĉ share of update |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def ratio(r: dict, key: str) -> str:
        low, high = r[f"{key}_quartiles"]
        return f"{r[key]:.2f} ({low:.2f}-{high:.2f})"

    for r in results:
        a = r["arms"]
        lines.append(f"| {r['env_id']} | {r['policy']}, {r.get('device', 'cpu')} | {r['n_envs']} × {r['n_steps']} | "
                     f"{r['blocks']} × {r['rollouts_per_block']} | {a['a2c']['fps']:,.0f} | "
                     f"{a['relax-a2c']['fps']:,.0f} | " + " | ".join(ratio(r, key) for key in RATIO_KEYS) + " | "
                     f"{r['update_cost_relax_to_a2c']:.2f}× | {r['update_share_relax']:.0%} | "
                     f"{r['c_hat_share_of_update']:.0%} |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timesteps per arm, all blocks together (default: per env, {ENVS})")
    parser.add_argument("--blocks", type=int, default=50, help="blocks of rollouts each arm runs, taking turns")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the networks of every arm live (default cpu)")
    parser.add_argument("--hyperparams", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides of relax-a2c's packaged config for every arm, as for train.py (the cv_* "
                             "ones apply to the relax arms only)")
    parser.add_argument("--out", default="results/throughput")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        args.envs, args.steps, args.blocks = QUICK["envs"], args.steps or QUICK["steps"], QUICK["blocks"]
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)")
    if args.blocks < 1 or (args.steps is not None and args.steps < 1):
        parser.error(f"--blocks and --steps must be >= 1, got {args.blocks} and {args.steps}")
    check_relax_a2c_entries(parser, args.envs, args.hyperparams)
    return args


def check_relax_a2c_entries(parser: argparse.ArgumentParser, envs: list[str], overrides: list[str] = ()) -> None:
    """An argument error, before anything runs, for an env without a relax-a2c entry in configs/relax-a2c.yml, or
    ``--hyperparams`` ``overrides`` that the entry does not take (this script and variance.py, update_profile.py)."""
    from relax_rl import RelaxA2C
    from relax_rl.envs import is_atari
    from relax_rl.hyperparams import HyperparameterError, load_packaged_config, lookup_entry, resolve_hyperparams

    configs = load_packaged_config("relax-a2c")
    for env_id in envs:
        if lookup_entry(configs, env_id, is_atari(env_id)) is None:
            parser.error(f"no relax-a2c entry for {env_id!r} in configs/relax-a2c.yml; entries: {', '.join(configs)}")
        try:
            resolve_hyperparams("relax-a2c", RelaxA2C, env_id, is_atari(env_id), None, list(overrides))
        except HyperparameterError as exc:
            parser.error(f"{env_id}: {exc}")


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = []
    for env_id in args.envs:
        result = measure_env(env_id, args.steps or ENVS.get(env_id, 50_000), args.blocks, args.seed, args.device,
                             args.hyperparams)
        print(f"{env_id}: relax/A2C {result['ratio_relax_to_a2c']:.2f}, "
              f"ĉ-off/A2C {result['ratio_c_hat_off_to_a2c']:.2f}, "
              f"ĉ share of update {result['c_hat_share_of_update']:.0%}", flush=True)
        results.append(result)
    command = command_line("experiments/throughput.py", argv)
    machine = machine_info()  # one reading for both files
    with open(os.path.join(args.out, "throughput.json"), "w") as fh:
        json.dump({"command": command, "machine": machine, "results": results}, fh, indent=1)
    write_markdown(results, os.path.join(args.out, "throughput.md"), command, machine)
    return results


if __name__ == "__main__":
    main()
