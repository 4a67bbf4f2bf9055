"""Equal-budget tuning (issue #5 §2): the same hyperparameter grid, seeds and budget for every algorithm.

Each grid point is run through the training pipeline (``relax_rl.cli.train``) on top of the algorithm's packaged
config, with the episodes-to-solve rule of ``rl_table.py`` at one threshold; a run stops once it is reached.
Grid points are ranked by solved runs (more is better), then by the median episodes to solve over all seeds
(an unsolved run counts as never). The tuning seeds default to 100, 101, 102: the table's seeds (0-9) are
kept out of the selection. With ``--packaged``, each algorithm's packaged config, with nothing overridden,
competes as one more point: an algorithm whose packaged settings were tuned elsewhere (the Zoo's PPO) keeps them
unless the grid beats them on the same seeds.

    python experiments/tune.py --env CartPole-v1 --algos relax-a2c a2c \
        --grid learning_rate=lin_1e-3,7e-4,lin_2e-3 n_envs=8,16 --out results/tuning
    python experiments/tune.py --env InvertedPendulum-v5 --algos relax-a2c a2c ppo relax-ddpg \
        --grid n_envs=8,16 learning_rate=7e-4,lin_2e-3 --packaged --out results/tuning

Resumable like the table (``<out>/runs/``). Writes ``<out>/tuning_<env>.{md,json}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rl_table import ARMS, ENVS, Job, run_jobs  # noqa: E402
from run_scores import WINDOW, best_window_mean, episodes_to_threshold  # noqa: E402

from relax_rl.cli import get_algo_class, timesteps_type  # noqa: E402
from relax_rl.runs import command_line  # noqa: E402

ALGOS = [arm for arm, (algo, overrides, _) in ARMS.items() if arm == algo and not overrides]
DEFAULT_GRID = ["learning_rate=lin_1e-3,7e-4,lin_2e-3", "n_envs=8,16"]
QUICK = {"env": "CartPole-v1", "algos": ["relax-a2c", "a2c"], "grid": ["learning_rate=lin_1e-3,7e-4"],
         "seeds": [100], "budget": 3000}


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["lr=a,b", "n_envs=8,16"]`` -> ``[("lr", ["a", "b"]), ("n_envs", ["8", "16"])]`` (values stay strings:
    the training pipeline types them as it does any ``--hyperparams`` override)."""
    grid = []
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v for v in values.split(",") if v]
        if not sep or not key or not choices:
            raise ValueError(f"a grid axis is KEY=V1,V2,..., got {item!r}")
        if key in (k for k, _ in grid):
            raise ValueError(f"grid axis {key!r} is given twice")
        grid.append((key, choices))
    return grid


PACKAGED = "packaged config"  # the name of the empty point (no overrides) in reports


def grid_points(grid: list[tuple[str, list[str]]], packaged: bool = False) -> list[tuple[str, ...]]:
    """Every combination, as override tuples (``("lr=a", "n_envs=8")``), after the empty tuple (the packaged
    config as it is) when ``packaged``."""
    keys = [k for k, _ in grid]
    points = [tuple(f"{k}={v}" for k, v in zip(keys, combo, strict=True))
              for combo in itertools.product(*[values for _, values in grid])]
    return [(), *points] if packaged else points


def point_name(point: tuple[str, ...]) -> str:
    return " ".join(point) or PACKAGED


def rank_key(summary: dict) -> tuple[int, float, float]:
    """Sort key, smaller is better: most runs solved first, then the median episodes over all seeds (unsolved =
    never), then the higher mean return of the last 100 episodes (which separates points that solve nothing)."""
    median = math.inf if summary["median"] is None else summary["median"]
    return -summary["solved"], median, -summary["final_return"]


def summarize(records: list[dict], threshold: float) -> dict:
    records = sorted(records, key=lambda r: r["seed"])
    episodes = [episodes_to_threshold(r["returns"], threshold) for r in records]
    median = float(np.median([math.inf if e is None else e for e in episodes]))
    final_return = float(np.mean([np.mean(r["returns"][-WINDOW:]) if r["returns"] else -math.inf for r in records]))
    return {"episodes": episodes, "solved": sum(e is not None for e in episodes), "total": len(episodes),
            "median": None if math.isinf(median) else median,
            "final_return": final_return,
            "best_window_returns": [best_window_mean(r["returns"]) for r in records]}


def write_markdown(report: dict, path: str) -> None:
    also = " (and its packaged config unchanged, as one more point)" if report.get("packaged") else ""
    lines = [f"# Equal-budget tuning on {report['env_id']}", "", f"Command: `{report['command']}`", "",
             f"Every algorithm gets the same grid on top of its packaged config{also}, the same seeds "
             f"({', '.join(map(str, report['seeds']))}; the table uses 0-9) and the same budget "
             f"({report['budget']:,} steps). Score: episodes until the mean return of the last 100 reaches "
             f"{report['threshold']:g}; ranked by runs solved, then by the median over all seeds (an unsolved run "
             f"counts as never; — when that median is never), then by the mean return of the last {WINDOW} "
             f"episodes. The best {WINDOW}-episode mean of each run (how close it came to the threshold) is shown "
             "per seed; it does not rank.", "",
             f"| algo | grid point | solved | median | episodes per seed | last-{WINDOW} mean return "
             f"| best {WINDOW}-episode mean per seed | chosen |",
             "|---|---|---|---|---|---|---|---|"]
    for algo, points in report["results"].items():
        for point, s in points.items():
            per_seed = ", ".join("—" if e is None else str(e) for e in s["episodes"])
            median = "—" if s["median"] is None else f"{s['median']:,.0f}"
            chosen = "**yes**" if point == report["chosen"][algo] else ""
            shown = point if point == PACKAGED else f"`{point}`"
            best = ", ".join("—" if b is None else f"{b:.0f}" for b in s.get("best_window_returns", []))
            lines.append(f"| {algo} | {shown} | {s['solved']}/{s['total']} | {median} | {per_seed} | "
                         f"{s['final_return']:.1f} | {best} | {chosen} |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", choices=list(ENVS), default="CartPole-v1")
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=["relax-a2c", "a2c"])
    parser.add_argument("--grid", nargs="+", default=None, metavar="KEY=V1,V2",
                        help=f"hyperparameter axes; every combination is run (default: {' '.join(DEFAULT_GRID)})")
    parser.add_argument("--packaged", action="store_true",
                        help="also run each algorithm's packaged config, unchanged, as one more point")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 100 101 102")
    parser.add_argument("--threshold", type=float, default=None, help="default: the env's first table threshold")
    parser.add_argument("--budget", type=timesteps_type, default=None, help="timesteps per run (default: the table's)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="results/tuning")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK['env']}, {QUICK['algos']}, grid {QUICK['grid']}, "
                             f"seeds {QUICK['seeds']}, {QUICK['budget']:,} steps")
    args = parser.parse_args(argv)
    if args.quick:  # the subset; options given explicitly still win for grid, seeds and budget
        args.env, args.algos = QUICK["env"], QUICK["algos"]
        args.grid, args.seeds = args.grid or QUICK["grid"], args.seeds or QUICK["seeds"]
        args.budget = args.budget or QUICK["budget"]
    args.grid, args.seeds = args.grid or DEFAULT_GRID, args.seeds or [100, 101, 102]
    try:
        args.grid = parse_grid(args.grid)
    except ValueError as err:
        parser.error(str(err))
    check_points(parser, args)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    return args


def check_points(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An argument error, before any run, for a grid point that an algorithm's config does not take (else it would
    fail only when its first run starts, maybe after hours of the other algorithms' runs)."""
    from relax_rl.hyperparams import HyperparameterError, resolve_hyperparams

    for algo in args.algos:
        algo_name, arm_overrides, _ = ARMS[algo]
        for point in grid_points(args.grid, args.packaged):
            try:
                resolve_hyperparams(algo_name, get_algo_class(algo_name), args.env, False, None,
                                    [*arm_overrides, *point])
            except HyperparameterError as exc:
                parser.error(f"{algo} at grid point {point_name(point)}: {exc}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    thresholds, table_budget, _ = ENVS[args.env]
    threshold = args.threshold if args.threshold is not None else thresholds[0]
    budget = args.budget or table_budget
    points = grid_points(args.grid, args.packaged)
    runs_dir = os.path.join(args.out, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    jobs = [Job(args.env, algo, seed, budget, (threshold,), point)
            for algo in args.algos for point in points for seed in args.seeds]
    records = run_jobs(jobs, runs_dir, args.workers)
    if len(records) < len(jobs):  # the rest are being trained by another invocation
        print(f"{len(jobs) - len(records)} runs are still training in another invocation: run this command again "
              "when they end to write the report", flush=True)
        return {}

    results: dict[str, dict[str, dict]] = {}
    chosen: dict[str, str] = {}
    for algo in args.algos:
        results[algo] = {}
        for point in points:
            runs = [records[Job(args.env, algo, seed, budget, (threshold,), point)] for seed in args.seeds]
            results[algo][point_name(point)] = summarize(runs, threshold)
        best = min(points, key=lambda p: rank_key(results[algo][point_name(p)]))
        chosen[algo] = point_name(best)
    report = {"command": command_line("experiments/tune.py", argv), "env_id": args.env, "threshold": threshold,
              "budget": budget, "seeds": args.seeds, "grid": dict(args.grid), "packaged": args.packaged,
              "results": results, "chosen": chosen}
    name = f"tuning_{args.env}"
    with open(os.path.join(args.out, name + ".json"), "w") as fh:
        json.dump(report, fh, indent=1)
    write_markdown(report, os.path.join(args.out, name + ".md"))
    for algo, point in chosen.items():
        print(f"{algo}: chosen {point}", flush=True)
    return report


if __name__ == "__main__":
    main()
