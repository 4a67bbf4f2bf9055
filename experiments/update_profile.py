"""Where relax-a2c's update time goes, part by part, against the same code with ĉ off and SB3's A2C (issue #5 §4).

For each environment (``--envs``) the three models are built as in ``throughput.py`` (same settings), trained
``--warmup`` steps, and given one rollout each. Then ``train()`` runs ``--updates`` times on that fixed rollout,
the arms taking turns in blocks of 20 updates, and the time spent in each part of the update is summed:

- the policy's forward pass (``evaluate_actions``) and ĉ's forward pass (``control_variate_terms``);
- the backward passes, by kind: ∇_θ S̄ kept differentiable for φ's objective (``create_graph``), φ's gradient
  of that objective (the double backprop), and the first-order passes (A2C's loss, the value term);
- θ's and φ's optimizer steps, gradient clipping, ĉ's diagnostics and the running gradient variance;
- "rest": everything else inside ``train()`` (building the loss, checks, logging).

Every part is timed by wrapping the function that does it; no wrapped function runs inside another, so the
parts add up to the update. Parts are ms per update.

    python experiments/update_profile.py --out results/update_profile
    python experiments/update_profile.py --quick --out /tmp/update_profile_quick
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from relax_rl.runs import command_line, machine_info

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import build, check_relax_a2c_entries  # noqa: E402  (experiments/throughput.py: the same arms)

ARMS = ("a2c", "relax-a2c (c-hat off)", "relax-a2c")
BLOCK = 20  # updates per arm and block
QUICK = {"envs": ["CartPole-v1"], "updates": 20, "warmup": 200}


class PartTimer:
    """Wraps the functions that do each part of an update and sums the seconds spent in each, per arm."""

    def __init__(self) -> None:
        self.seconds: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.arm = ""
        self.phi_ids: dict[str, set[int]] = {}
        self.originals: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, part: str | Callable[..., str]) -> None:
        inner = getattr(owner, name)
        self.originals.append((owner, name, inner))

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                label = part(*args, **kwargs) if callable(part) else part
                self.seconds[self.arm][label] += time.perf_counter() - start

        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, inner in reversed(self.originals):
            setattr(owner, name, inner)

    def grad_kind(self, outputs: Any, inputs: Any, *args: Any, **kwargs: Any) -> str:
        """Which backward pass a ``torch.autograd.grad`` call is."""
        if kwargs.get("create_graph"):
            return "backward: ∇_θ S̄ with create_graph"
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        if id(first) in self.phi_ids.get(self.arm, set()):
            return "backward: φ's gradient (double backprop)"
        return "backward: first-order"


def profile_env(env_id: str, updates: int, warmup: int, seed: int) -> dict:
    torch.set_num_threads(1)
    timer = PartTimer()
    models = {arm: build(arm, env_id, seed) for arm in ARMS}
    for arm, model in models.items():
        model.learn(warmup)
        callback = model._init_callback(None)
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        policy = model.policy
        timer.phi_ids[arm] = {id(p) for p in getattr(policy, "cv_parameters", list)()}
        evaluate = "evaluate_actions_with_distribution" if hasattr(policy, "cv_parameters") else "evaluate_actions"
        timer.wrap(policy, evaluate, "forward: policy")
        timer.wrap(policy.optimizer, "step", "θ's optimizer step")
        if getattr(model, "action_dependent_cv", False):
            timer.wrap(policy, "control_variate_terms", "forward: ĉ")
            timer.wrap(policy.cv_optimizer, "step", "φ's optimizer step")
            timer.wrap(model, "_record_cv_diagnostics", "ĉ's diagnostics")
            timer.wrap(model, "_update_grad_variance", "running gradient variance")
    timer.wrap(torch.autograd, "grad", timer.grad_kind)
    timer.wrap(torch.nn.utils, "clip_grad_norm_", "gradient clipping")
    timer.wrap(torch.Tensor, "backward", "backward: first-order")
    totals = collections.Counter()
    try:
        for index in range(updates // BLOCK + 1):
            if index == 1:  # the first block of each arm warms up and is not counted
                timer.seconds.clear()
                totals.clear()
            for arm in ARMS[index % len(ARMS):] + ARMS[:index % len(ARMS)]:  # each block starts with another arm
                timer.arm = arm
                start = time.perf_counter()
                for _ in range(BLOCK):
                    models[arm].train()
                totals[arm] += time.perf_counter() - start
    finally:
        timer.restore()
    n = (updates // BLOCK) * BLOCK
    parts = {arm: {part: 1e3 * s / n for part, s in sorted(timer.seconds[arm].items())} for arm in ARMS}
    for arm in ARMS:
        parts[arm]["rest"] = 1e3 * totals[arm] / n - sum(parts[arm].values())
    model = models["relax-a2c"]
    return {"env_id": env_id, "n_envs": model.n_envs, "n_steps": model.n_steps, "updates": n,
            "ms_per_update": {arm: 1e3 * totals[arm] / n for arm in ARMS}, "parts_ms": parts}


def write_markdown(results: list[dict], path: str, command: str, machine: dict) -> None:
    lines = ["# Where the update time goes: relax-a2c, the same code with ĉ off, SB3 A2C", "",
             f"Command: `{command}`", "",
             f"Machine: {machine['processor']}, {machine['cores']} cores, torch {torch.__version__} "
             f"({machine['torch_cpu_capability']} CPU kernels); times compare within this file, not across machines.",
             "",
             "ms per call of train() on one fixed rollout, the arms taking turns in blocks of "
             f"{BLOCK} updates; each part is the time inside the function that does it.", ""]
    for r in results:
        parts = sorted({p for arm in ARMS for p in r["parts_ms"][arm]} - {"rest"}) + ["rest"]
        lines += [f"## {r['env_id']} ({r['n_envs']} × {r['n_steps']}, {r['updates']} updates per arm)", "",
                  "| part | " + " | ".join(ARMS) + " |", "|---|" + "---|" * len(ARMS)]
        for part in parts:
            cells = [f"{r['parts_ms'][arm][part]:.3f}" if part in r["parts_ms"][arm] else "" for arm in ARMS]
            lines.append(f"| {part} | " + " | ".join(cells) + " |")
        lines += ["| **whole update** | " + " | ".join(f"**{r['ms_per_update'][arm]:.3f}**" for arm in ARMS) + " |",
                  ""]
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "InvertedPendulum-v5"])
    parser.add_argument("--updates", type=int, default=2000, help="timed updates per arm")
    parser.add_argument("--warmup", type=int, default=2000, help="timesteps each model trains first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/update_profile")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        args.envs, args.updates, args.warmup = QUICK["envs"], QUICK["updates"], QUICK["warmup"]
    if args.updates < BLOCK:
        parser.error(f"--updates must be >= {BLOCK}, got {args.updates}")
    check_relax_a2c_entries(parser, args.envs)
    os.makedirs(args.out, exist_ok=True)
    results = [profile_env(env_id, args.updates, args.warmup, args.seed) for env_id in args.envs]
    command = command_line("experiments/update_profile.py", argv)
    machine = machine_info()  # one reading for both files
    with open(os.path.join(args.out, "update_profile.json"), "w") as fh:
        json.dump({"command": command, "machine": machine, "results": results}, fh, indent=1)
    write_markdown(results, os.path.join(args.out, "update_profile.md"), command, machine)
    return results


if __name__ == "__main__":
    main()
