"""Per-run episode statistics from the run files that ``rl_table.py`` and ``tune.py`` write.

For runs that come close to a threshold and then fall back, the score (episodes to solve) says only "never".
This reads what the run files already hold, every completed training episode's return and the timestep it ended
at, and gives per run: the episodes completed, the best mean return of any 100 consecutive episodes and the
episode it ends at, the mean return of the last 100, and the mean episode length over the first and the last 100
episodes. An episode length is steps per completed episode, all parallel envs together: with n envs,
(timestep at the end of episode k − timestep at the end of episode j) / (k − j).

    python experiments/episode_stats.py 'results/tuning/runs/LunarLander-v3__*' --out results/episode_stats/ll.md

Quote the patterns: the script expands them itself, so that the command it records stays short.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_scores import WINDOW, best_window_mean  # noqa: E402

from relax_rl.runs import command_line  # noqa: E402


def run_stats(record: dict, window: int = WINDOW) -> dict:
    """The statistics of one run file's record (``returns`` and ``episode_timesteps``, one entry per episode)."""
    returns = np.asarray(record["returns"], dtype=float)
    ends = np.asarray(record["episode_timesteps"], dtype=float)
    if len(returns) != len(ends):
        raise ValueError(f"{len(returns)} returns but {len(ends)} episode end timesteps")
    stats = {"episodes": len(returns), "best_window_mean": best_window_mean(returns, window),
             "best_window_end": None, "last_window_mean": None, "first_length": None, "last_length": None}
    if len(returns) >= window:
        window_means = np.convolve(returns, np.ones(window) / window, mode="valid")
        stats["best_window_end"] = int(window_means.argmax()) + window  # 1-based index of its last episode
        stats["last_window_mean"] = float(returns[-window:].mean())
        stats["first_length"] = float(ends[window - 1] / window)
    if len(returns) > window:
        stats["last_length"] = float((ends[-1] - ends[-window - 1]) / window)
    return stats


def group_name(record: dict, path: str) -> str:
    """``<table>, <env id>: <arm> <overrides>``, the table being the folder that holds ``runs/`` (the tuning
    search's seeds are not the table's, so the two never share a group)."""
    table = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    return f"{table}, {record['env_id']}: " + " ".join([record["arm"], *record.get("overrides", [])])


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def write_markdown(rows: list[tuple[str, int, dict]], path: str, command: str) -> None:
    lines = ["# Episode statistics per run", "", f"Command: `{command}`", "",
             f"Best / last: mean return of the best and of the last {WINDOW} consecutive episodes. Length: steps per "
             f"completed episode (all envs together) over the first and the last {WINDOW} episodes. Medians over "
             f"each group's seeds follow the runs (a run with fewer than {WINDOW} episodes, or for the last length "
             f"{WINDOW + 1}, counts in `runs` but not in the medians).", "",
             "| run | seed | episodes | best | best ends at episode | last | length, first | length, last |",
             "|---|---|---|---|---|---|---|---|"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for name, seed, s in rows:
        groups[name].append(s)
        lines.append(f"| {name} | {seed} | {s['episodes']:,} | {_fmt(s['best_window_mean'])} | "
                     f"{_fmt(s['best_window_end'])} | {_fmt(s['last_window_mean'])} | {_fmt(s['first_length'])} | "
                     f"{_fmt(s['last_length'])} |")
    lines += ["", "| group (median over seeds) | runs | best | last | length, first | length, last |",
              "|---|---|---|---|---|---|"]
    for name, stats in groups.items():
        medians = {k: (float(np.median(v)) if (v := [s[k] for s in stats if s[k] is not None]) else None)
                   for k in ("best_window_mean", "last_window_mean", "first_length", "last_length")}
        lines.append(f"| {name} | {len(stats)} | {_fmt(medians['best_window_mean'])} | "
                     f"{_fmt(medians['last_window_mean'])} | {_fmt(medians['first_length'])} | "
                     f"{_fmt(medians['last_length'])} |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> list[tuple[str, int, dict]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("patterns", nargs="+", metavar="PATTERN",
                        help="run files or quoted glob patterns ('results/<table>/runs/<env>__*')")
    parser.add_argument("--out", required=True, help="markdown file to write")
    args = parser.parse_args(argv)
    paths = set()
    for pattern in args.patterns:
        matched = [m for m in glob.glob(pattern) if m.endswith(".json")]  # not a run's claim while it trains
        if not matched:
            parser.error(f"no run file matches {pattern!r}")
        paths.update(matched)
    rows = []
    for path in sorted(paths):
        try:
            with open(path) as fh:
                record = json.load(fh)
            rows.append((group_name(record, path), int(record["seed"]), run_stats(record)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"{path} is not a run file of rl_table.py or tune.py ({type(exc).__name__}: {exc})")
    rows.sort(key=lambda row: (row[0], row[1]))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    write_markdown(rows, args.out, command_line("experiments/episode_stats.py", argv))
    print(f"wrote {args.out} ({len(rows)} runs)")
    return rows


if __name__ == "__main__":
    main()
