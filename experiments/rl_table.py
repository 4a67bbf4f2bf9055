"""The paper's "mean episodes to solve" table (issue #5 §2, DESIGN §7).

Every run goes through the training pipeline (``relax_rl.cli.train``, i.e. ``python train.py``) with the
packaged config of its algorithm, on a budget shared by every arm of an environment. Episodes to solve: the
number of completed training episodes (all parallel envs together) at which the mean undiscounted return of
the last 100 completed episodes first reaches the threshold; a run that never gets there is unsolved. Beside it,
each arm gets the mean return over its runs' first K steps (``run_scores.py``), a score with no 100-episode floor.
The environments, arms, K and the paper's numbers are in ``rl_table_arms.py``.

    python experiments/rl_table.py --envs CartPole-v1 --out results/rl_table       # 10 seeds x 4 arms
    python experiments/rl_table.py --quick --out /tmp/rl_table_quick                # smoke run, ~1 min

The ĉ-off arm is skipped where relax-a2c's settings are a2c's (on none of the three envs today: each algorithm
carries its own tuned entry there), since its runs would repeat a2c's bit for bit. Seeds run in parallel processes
(``--workers``); each finished run is written to ``<out>/runs/`` at once, so an interrupted table picks up where it
stopped when the same command is run again. Invocations on one out dir share its runs: a run that one of them is
training is left to it by the others (``run_records.py``).
Writes ``<out>/rl_table.json``, ``<out>/rl_table.md`` and one learning-curve PNG per environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from relax_rl.cli import positive_int_type, timesteps_type
from relax_rl.runs import command_line, machine_info

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rl_table_arms import ARMS, DEFAULT_ARMS, ENVS, PAPER, RETURN_STEPS  # noqa: E402
from run_records import claim, read_record, release, write_record  # noqa: E402
from run_scores import (  # noqa: E402
    WINDOW,
    best_window_mean,
    episodes_to_threshold,
    mean_return_over_steps,
    timesteps_to_threshold,
)

QUICK = {"envs": ["CartPole-v1"], "arms": ["relax-a2c", "a2c"], "seeds": 2, "budget": 20_000}


class EpisodeRecorder(BaseCallback):
    """Records every completed training episode (return, timestep) from the Monitor infos and stops training
    once the 100-episode mean has reached the highest threshold."""

    def __init__(self, stop_at: float | None) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.returns: list[float] = []
        self.timesteps: list[int] = []
        self._window: deque[float] = deque(maxlen=WINDOW)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")
            if episode is not None:
                self.returns.append(float(episode["r"]))
                self.timesteps.append(int(self.num_timesteps))
                self._window.append(float(episode["r"]))
        full = len(self._window) == WINDOW
        return not (self.stop_at is not None and full and np.mean(self._window) >= self.stop_at)


@dataclass(frozen=True)
class Job:
    env_id: str
    arm: str
    seed: int
    budget: int
    thresholds: tuple[float, ...]
    overrides: tuple[str, ...] = ()  # hyperparameters on top of the arm's own (experiments/tune.py)

    @property
    def key(self) -> str:
        key = f"{self.env_id}__{self.arm}__seed{self.seed}"
        if self.overrides:
            key += "__" + "__".join(self.overrides)
        return "".join(c if c.isalnum() or c in "._-=" else "_" for c in key.replace("(", "").replace(")", ""))


def run_job(job: Job, log_folder: str) -> dict:
    """One training run; returns its record (episodes to each threshold, returns, timing)."""
    from relax_rl.cli import train

    algo, arm_overrides, _ = ARMS[job.arm]
    overrides = [*arm_overrides, *job.overrides]
    argv = ["--algo", algo, "--env", job.env_id, "--seed", str(job.seed), "-n", str(job.budget),
            "--eval-freq", "-1", "--save-freq", "-1", "--eval-episodes", "5", "--log-folder", log_folder,
            "--tensorboard-log", "", "--no-progress", "--verbose", "0"]
    if overrides:
        argv += ["--hyperparams", *overrides]
    recorder = EpisodeRecorder(stop_at=max(job.thresholds))
    result = train(argv, callbacks=[recorder])
    return {
        "env_id": job.env_id, "arm": job.arm, "seed": job.seed, "budget": job.budget, "overrides": list(job.overrides),
        "episodes_to_solve": {f"{t:g}": episodes_to_threshold(recorder.returns, t) for t in job.thresholds},
        "episodes": len(recorder.returns), "timesteps": result.num_timesteps, "wall_time_s": result.wall_time,
        "fps": result.fps, "final_eval_mean": result.eval_mean,
        "returns": [round(r, 2) for r in recorder.returns], "episode_timesteps": recorder.timesteps,
        "machine": machine_info(),  # wall times compare on one machine; CPU kernels can change the runs' numbers
    }


def summarize(records: list[dict], threshold: float, return_steps: int | None = None) -> dict:
    """Median, mean ± std over solved runs, and solved/total; the median timestep of the solves; with
    ``return_steps`` = K, the median over seeds of the mean return over the first K steps (None unless every run
    covers K: a run that stopped before K solved early, and leaving it out would favour the slow)."""
    key = f"{threshold:g}"
    scores = {}
    if return_steps:
        scores = {r["seed"]: mean_return_over_steps(r.get("returns", ()), r.get("episode_timesteps", ()),
                                                    return_steps) for r in records}
    solved = [r["episodes_to_solve"][key] for r in records if r["episodes_to_solve"][key] is not None]
    steps = [timesteps_to_threshold(r, threshold) for r in records]
    return {
        "threshold": threshold, "solved": len(solved), "total": len(records),
        "median": float(np.median(solved)) if solved else None,
        "mean": float(np.mean(solved)) if solved else None,
        "std": float(np.std(solved, ddof=1)) if len(solved) > 1 else None,
        "per_seed": {r["seed"]: r["episodes_to_solve"][key] for r in records},
        # the same solves counted in environment steps (a window of WINDOW episodes needs WINDOW episodes' steps)
        "median_timesteps": _median(steps),
        "per_seed_timesteps": {r["seed"]: t for r, t in zip(records, steps, strict=True)},
        # how close the unsolved get: the best mean of WINDOW consecutive episodes, median over seeds
        "best_window_mean": _median_best_window_mean(records),
        # the deterministic policy at the run's end (or where it stopped, at the highest threshold)
        "final_eval_median": _median([r.get("final_eval_mean") for r in records]),
        "median_wall_time_s": float(np.median([r["wall_time_s"] for r in records])),
        "return_steps": return_steps,
        "per_seed_mean_return": scores,
        "mean_return": None if not scores or None in scores.values() else float(np.median(list(scores.values()))),
    }


def _median(values: list[float | None]) -> float | None:
    """Median of the values that are there (None: a run without one), or None if none is."""
    kept = [v for v in values if v is not None]
    return float(np.median(kept)) if kept else None


def _median_best_window_mean(records: list[dict]) -> float | None:
    return _median([best_window_mean(r.get("returns", ())) for r in records])


def _fmt(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _return_cell(summary: dict) -> str:
    steps = summary.get("return_steps")
    return "" if not steps else f"{_fmt(summary.get('mean_return'), 1)} (K = {steps:,})"


def write_markdown(table: dict, path: str, commands: list[str], invocations: list[dict] = ()) -> None:
    timings = [f"- {i['runs_trained']} runs in {i['wall_time_s'] / 60:.1f} minutes with {i['workers']} "
               f"worker{'' if i['workers'] == 1 else 's'} on {i['machine']['cores']} cores "
               f"({i['machine']['processor']}): `{i['command']}`" for i in invocations]
    lines = ["# Episodes to solve", "", "Commands (each adds its runs to this table; rerunning one resumes it):", "",
             *[f"    {command}" for command in commands], "",
             *(["Wall time of each invocation that trained runs, start to end (an interrupted one is not listed; its "
                "finished runs are kept and not counted again):", "", *timings, ""] if timings else []),
             "Episodes: completed training episodes (all parallel envs together) until the mean return of the last "
             f"{WINDOW} reaches the threshold (DESIGN §7). Mean ± std are over the solved runs; unsolved runs count "
             "only in solved/total. Each arm uses its packaged config (`configs/<algo>.yml`) on the budget shown. "
             "Runs stop once the highest threshold is reached. 'Steps': the same solves counted in environment steps "
             "(all envs together; median over the solved runs). 'Final deterministic eval' scores the deterministic "
             "policy (5 episodes) where the run ended: training episodes sample actions, so they can score lower. "
             "'Mean return, first K steps': (1/K) Σ_t R(t) over the run's first K environment steps, R(t) the return "
             "of the first training episode to end at or after step t (one env: the episode step t is in), the median "
             "over seeds: the area under the learning curve against steps, with no window and so no floor; K is "
             "the same for every arm of an env. '—' if a run stopped before K.", "",
             f"| env | threshold | arm | solved | median | mean ± std | paper (mean ± std) | steps (median) "
             f"| budget (steps) | best {WINDOW}-episode mean (median over seeds) "
             "| final deterministic eval (median over seeds) | mean return, first K steps (median over seeds) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for env_id, per_threshold in table.items():
        for threshold_key, arms in per_threshold.items():
            for arm, s in arms.items():
                spread = "—" if s["mean"] is None else f"{s['mean']:,.0f} ± {_fmt(s['std'])}"
                paper = PAPER.get((env_id, arm), "") if float(threshold_key) == ENVS[env_id][0][0] else ""
                lines.append(f"| {env_id} | {threshold_key} | {arm} | {s['solved']}/{s['total']} | "
                             f"{_fmt(s['median'])} | {spread} | {paper} | {_fmt(s.get('median_timesteps'))} | "
                             f"{s['budget']:,} | "
                             f"{_fmt(s.get('best_window_mean'), 1)} | {_fmt(s.get('final_eval_median'), 1)} | "
                             f"{_return_cell(s)} |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def plot_curves(env_id: str, records: dict[str, list[dict]], thresholds: tuple[float, ...], path: str) -> None:
    """Median (band: 25th–75th percentile over seeds) of the 100-episode moving mean against completed episodes.
    A run that stopped at the highest threshold holds its last value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for index, (arm, runs) in enumerate(records.items()):
        curves = [np.convolve(r["returns"], np.ones(WINDOW) / WINDOW, mode="valid") for r in runs
                  if len(r["returns"]) >= WINDOW]
        if not curves:
            continue
        length = max(len(c) for c in curves)  # runs that stopped early hold their last value
        stacked = np.stack([np.pad(c, (0, length - len(c)), mode="edge") for c in curves])
        x = np.arange(WINDOW, WINDOW + length)
        line = ax.plot(x, np.median(stacked, axis=0), label=f"{arm} ({len(curves)} seeds)",
                       linestyle=("-", "--", ":", "-.")[index % 4])[0]  # styles tell overlapping arms apart
        low, high = np.percentile(stacked, [25, 75], axis=0)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.12)
    for threshold in thresholds:
        ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="completed training episodes", ylabel=f"mean return of the last {WINDOW}", title=env_id)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def applies(arm: str, env_id: str) -> bool:
    import gymnasium as gym

    env = gym.make(env_id)
    kind = "box" if isinstance(env.action_space, gym.spaces.Box) else "discrete"
    env.close()
    return kind in ARMS[arm][2]


def repeats_a2c(arm: str, env_id: str) -> bool:
    """Whether ``arm`` is the ĉ-off arm on an env where relax-a2c's packaged settings, ĉ's own keys aside, are
    a2c's. Its runs would then repeat a2c's bit for bit (ĉ off is SB3's A2C on equal settings, as
    tests/test_relax_a2c.py checks), so the table does not run them: a2c's row is ĉ off's."""
    if arm != "relax-a2c (c-hat off)":
        return False
    from relax_rl.envs import is_atari
    from relax_rl.hyperparams import load_packaged_config, lookup_entry

    relax, a2c = (lookup_entry(load_packaged_config(algo), env_id, is_atari(env_id)) for algo in ("relax-a2c", "a2c"))
    shared = {k: v for k, v in (relax or {}).items() if k != "action_dependent_cv" and not k.startswith("cv_")}
    return relax is not None and shared == a2c


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", choices=list(ENVS), default=list(ENVS))
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=DEFAULT_ARMS)
    parser.add_argument("--seeds", type=positive_int_type, default=None,
                        help="seeds per env (default: 10 CartPole, 5 others)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run from this one on (default 0), e.g. fresh seeds to confirm a chosen arm")
    parser.add_argument("--budget", type=timesteps_type, default=None, help="timesteps per run (default: per env)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--out", default="results/rl_table")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK['envs']}, arms {QUICK['arms']}, {QUICK['seeds']} seeds, "
                             f"{QUICK['budget']:,} steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.envs, args.arms = QUICK["envs"], QUICK["arms"]
        args.seeds = args.seeds or QUICK["seeds"]
        args.budget = args.budget or QUICK["budget"]
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.first_seed < 0:
        parser.error(f"--first-seed must be >= 0, got {args.first_seed}")
    return args


def run_unclaimed_job(job: Job, log_folder: str, runs_dir: str) -> tuple[dict | None, int | None]:
    """Train ``job`` and write its record, unless a live process of another invocation has claimed it: then
    (None, that pid). A run that another invocation finished after this one listed its jobs is read, not trained
    again."""
    holder = claim(runs_dir, job.key)
    if holder is not None:
        return None, holder
    try:
        record = read_record(runs_dir, job.key, job.budget)
        if record is None:
            record = run_job(job, log_folder)
            write_record(runs_dir, job.key, record)
        return record, None
    finally:
        release(runs_dir, job.key)


def done_records(jobs: list[Job], runs_dir: str) -> dict[Job, dict]:
    """The jobs whose run with the same budget is in ``runs_dir`` already, with their records."""
    return {job: record for job in jobs if (record := read_record(runs_dir, job.key, job.budget)) is not None}


def run_jobs(jobs: list[Job], runs_dir: str, workers: int, done: dict[Job, dict] | None = None) -> dict[Job, dict]:
    """Every job's record: read from ``runs_dir/<key>.json`` when a run with the same budget is there (resume;
    ``done``, if the caller has read them), else trained in a pool of ``workers`` processes and written there as
    soon as it ends. Jobs that another invocation is training in the same ``runs_dir`` are left to it, and missing
    from the result."""
    records = dict(done_records(jobs, runs_dir) if done is None else done)
    todo = [job for job in jobs if job not in records]
    plural = "" if workers == 1 else "s"
    print(f"{len(jobs)} runs: {len(records)} already done, {len(todo)} to go ({workers} worker{plural})", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as log_folder, ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_unclaimed_job, job, log_folder, runs_dir): job for job in todo}
        for done, future in enumerate(as_completed(futures), 1):
            job, (record, holder) = futures[future], future.result()
            label = " ".join([job.env_id, job.arm, *job.overrides, f"seed {job.seed}"])
            progress = f"[{done}/{len(todo)} {time.perf_counter() - start:.0f}s] {label}"
            if record is None:
                print(f"{progress}: left to the invocation training it (pid {holder})", flush=True)
                continue
            records[job] = record
            solved = ", ".join(f"{t}: {'—' if e is None else e}" for t, e in record["episodes_to_solve"].items())
            print(f"{progress}: episodes to solve {solved} ({record['wall_time_s']:.0f} s, {record['fps']:.0f} fps)",
                  flush=True)
    return records


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    runs_dir = os.path.join(args.out, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    pairs = [(env_id, arm) for env_id in args.envs for arm in args.arms if applies(arm, env_id)]
    skipped = [(env_id, arm) for env_id, arm in pairs if repeats_a2c(arm, env_id)]
    for env_id, arm in skipped:
        print(f"{env_id}: '{arm}' is not run, since its settings are a2c's there and its runs would repeat "
              "a2c's bit for bit; read the a2c row", flush=True)
    jobs = [Job(env_id, arm, seed, args.budget or ENVS[env_id][1], ENVS[env_id][0])
            for env_id, arm in pairs if (env_id, arm) not in skipped
            for seed in range(args.first_seed, args.first_seed + (args.seeds or ENVS[env_id][2]))]
    done = done_records(jobs, runs_dir)
    start = time.perf_counter()
    trained = len(run_jobs(jobs, runs_dir, args.workers, done)) - len(done)
    wall_time_s = time.perf_counter() - start

    # the table covers every run in <out>/runs, from this invocation or earlier ones (one table per out dir)
    everything: dict[str, dict[str, list[dict]]] = {}
    for name in sorted(n for n in os.listdir(runs_dir) if n.endswith(".json")):  # not claims or half-written
        with open(os.path.join(runs_dir, name)) as fh:
            record = json.load(fh)
        everything.setdefault(record["env_id"], {}).setdefault(record["arm"], []).append(record)
    table: dict[str, dict] = {}
    for env_id in [e for e in ENVS if e in everything]:
        by_arm = {arm: sorted(everything[env_id][arm], key=lambda r: r["seed"]) for arm in ARMS
                  if arm in everything[env_id]}
        # one K for every arm of the env, so that their scores compare (half the smallest budget, if that is less)
        return_steps = min(RETURN_STEPS[env_id], *(r["budget"] // 2 for runs in by_arm.values() for r in runs))
        table[env_id] = {f"{t:g}": {arm: {**summarize(runs, t, return_steps), "budget": runs[0]["budget"]}
                                    for arm, runs in by_arm.items()} for t in ENVS[env_id][0]}
        plot_curves(env_id, by_arm, ENVS[env_id][0], os.path.join(args.out, f"{env_id}.png"))
    command = command_line("experiments/rl_table.py", argv)
    json_path = os.path.join(args.out, "rl_table.json")
    commands, invocations = [], []
    if os.path.exists(json_path):
        with open(json_path) as fh:
            previous = json.load(fh)
        commands, invocations = previous.get("commands", []), previous.get("invocations", [])
    commands = [*[c for c in commands if c != command], command]
    if trained:  # how long the table took: each invocation that trained runs, start to end (resumes add up)
        invocations = [*invocations, {"command": command, "runs_trained": trained, "workers": args.workers,
                                      "wall_time_s": round(wall_time_s, 1), "machine": machine_info()}]
        print(f"{trained} runs trained in {wall_time_s / 60:.1f} minutes", flush=True)
    with open(json_path, "w") as fh:
        json.dump({"commands": commands, "invocations": invocations, "window": WINDOW, "table": table}, fh,
                  indent=1)
    write_markdown(table, os.path.join(args.out, "rl_table.md"), commands, invocations)
    return table


if __name__ == "__main__":
    main()
