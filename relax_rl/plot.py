"""Learning curves from SB3 ``Monitor`` files: ``python -m relax_rl.plot RUN_DIR [RUN_DIR ...] --out curves.png``.

Each run dir is searched recursively for ``*.monitor.csv``. Run dirs whose names differ only by a trailing
``_<n>`` (``logs/relax-a2c/CartPole-v1_1``, ``..._2``) are seeds of one group, drawn as mean ± std across seeds:
on a common timestep grid (linear interpolation over the range all seeds cover) and over the common prefix of
episodes. Plotting uses matplotlib's Agg canvas directly, so the global backend is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "MonitorFilesNotFoundError",
    "RunCurve",
    "find_monitor_files",
    "group_run_dirs",
    "load_run",
    "main",
    "plot_runs",
]

MONITOR_SUFFIX = ".monitor.csv"
DEFAULT_SMOOTH = 10
GRID_POINTS = 200
_SEED_SUFFIX = re.compile(r"_\d+$")


class MonitorFilesNotFoundError(FileNotFoundError):
    """A run directory is missing or holds no (non-empty) Monitor files."""


@dataclass(frozen=True)
class RunCurve:
    """One run's episodes in completion order: cumulative timesteps at each episode's end, and its return."""

    run_dir: str
    timesteps: np.ndarray
    returns: np.ndarray


def find_monitor_files(run_dir: str | os.PathLike) -> list[Path]:
    """All ``*.monitor.csv`` files under ``run_dir`` (recursively), sorted; raise if the dir is missing or has none."""
    root = Path(run_dir)
    if not root.is_dir():
        raise MonitorFilesNotFoundError(f"Run directory '{run_dir}' does not exist or is not a directory.")
    files = sorted(root.rglob(f"*{MONITOR_SUFFIX}"))
    if not files:
        raise MonitorFilesNotFoundError(f"No *{MONITOR_SUFFIX} files found under '{run_dir}'.")
    return files


def _read_monitor_file(path: Path) -> pd.DataFrame:
    """Rows ``r, l, t`` of one Monitor file, with ``t`` made absolute using the ``#{"t_start": ...}`` header."""
    with open(path) as handle:
        first = handle.readline()
        t_start = 0.0
        if first.startswith("#"):
            t_start = float(json.loads(first[1:]).get("t_start", 0.0))
        else:
            handle.seek(0)
        try:
            frame = pd.read_csv(handle)
        except pd.errors.EmptyDataError:
            return pd.DataFrame(columns=["r", "l", "t"])
    missing = {"r", "l", "t"} - set(frame.columns)
    if missing:
        raise ValueError(f"Monitor file '{path}' lacks the column(s) {sorted(missing)}.")
    frame = frame[["r", "l", "t"]].astype(float)
    frame["t"] += t_start
    return frame


def load_run(run_dir: str | os.PathLike) -> RunCurve:
    """Merge a run's Monitor files (one per env) in wall-clock order; timesteps are cumulative episode lengths."""
    frames = [_read_monitor_file(path) for path in find_monitor_files(run_dir)]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        raise MonitorFilesNotFoundError(f"The Monitor files under '{run_dir}' hold no completed episode.")
    data = pd.concat(frames, ignore_index=True).sort_values("t", kind="stable")
    return RunCurve(str(run_dir), np.cumsum(data["l"].to_numpy()), data["r"].to_numpy())


def _unique_suffix_labels(keys: list[tuple[str, ...]]) -> list[str]:
    """Shortest trailing path parts that tell the keys apart (``a2c/CartPole-v1`` vs ``relax-a2c/CartPole-v1``)."""
    longest = max(len(key) for key in keys)
    for n in range(1, longest + 1):
        labels = ["/".join(key[-n:]) for key in keys]
        if len(set(labels)) == len(labels):
            return labels
    return ["/".join(key) for key in keys]


def group_run_dirs(run_dirs: Sequence[str | os.PathLike]) -> dict[str, list[str]]:
    """Group run dirs that differ only by a trailing ``_<n>`` (seeds); label -> dirs, in order of first appearance.

    Labels are the group path's shortest distinguishing suffix, e.g. ``relax-a2c/CartPole-v1``.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for run_dir in run_dirs:
        path = Path(os.path.abspath(run_dir))
        key = (*path.parent.parts, _SEED_SUFFIX.sub("", path.name) or path.name)
        members = groups.setdefault(key, [])
        if str(run_dir) not in members:
            members.append(str(run_dir))
    if not groups:
        return {}
    return dict(zip(_unique_suffix_labels(list(groups)), groups.values(), strict=True))


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` episodes (shorter at the start)."""
    if window <= 1:
        return values
    return pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()


def _mean_std(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.stack(curves)
    return stacked.mean(axis=0), stacked.std(axis=0)


def _by_timesteps(runs: list[RunCurve], returns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeds interpolated onto a grid over the timesteps every seed covers; (grid, mean, std)."""
    if len(runs) == 1:
        return runs[0].timesteps, returns[0], np.zeros_like(returns[0])
    low = max(run.timesteps[0] for run in runs)
    high = min(run.timesteps[-1] for run in runs)
    grid = np.linspace(low, high, GRID_POINTS) if high > low else np.array([high])
    mean, std = _mean_std([np.interp(grid, run.timesteps, r) for run, r in zip(runs, returns, strict=True)])
    return grid, mean, std


def _by_episodes(returns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeds over their common prefix of episodes; (episode numbers, mean, std)."""
    n = min(len(r) for r in returns)
    mean, std = _mean_std([r[:n] for r in returns])
    return np.arange(1, n + 1), mean, std


def plot_runs(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike = "learning_curves.png",
    labels: Sequence[str] | None = None,
    smooth: int = DEFAULT_SMOOTH,
    title: str | None = None,
) -> Path:
    """Draw return vs timesteps and return vs episodes for the runs (seeds grouped: mean ± std) into ``out``.

    :param run_dirs: run directories, each holding ``*.monitor.csv`` files (searched recursively).
    :param out: PNG path (parent folders are created).
    :param labels: one legend label per group, in order of first appearance (default: from the paths).
    :param smooth: moving-average window over episodes applied to each run (1: none).
    :param title: optional figure title.
    :return: the path of the written image.
    """
    if not run_dirs:
        raise ValueError("plot_runs needs at least one run directory.")
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth must be an integer >= 1, got {smooth!r}.")
    groups = group_run_dirs(run_dirs)
    if labels is not None:
        if len(labels) != len(groups):
            raise ValueError(f"{len(labels)} label(s) given for {len(groups)} group(s) of runs: {', '.join(groups)}.")
        groups = dict(zip(labels, groups.values(), strict=True))
    loaded = {label: [load_run(d) for d in dirs] for label, dirs in groups.items()}  # fails before drawing

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    ax_steps, ax_episodes = figure.subplots(1, 2)
    for index, (label, runs) in enumerate(loaded.items()):
        color = f"C{index % 10}"
        returns = [_smooth(run.returns, smooth) for run in runs]
        name = f"{label} ({len(runs)} seeds)" if len(runs) > 1 else label
        for ax, (x, mean, std) in ((ax_steps, _by_timesteps(runs, returns)), (ax_episodes, _by_episodes(returns))):
            ax.plot(x, mean, color=color, label=name, marker="o" if len(x) == 1 else None)
            if len(runs) > 1:
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    smoothing = f" (moving average over {smooth} episodes)" if smooth > 1 else ""
    for ax, xlabel in ((ax_steps, "Timesteps"), (ax_episodes, "Episodes")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Episode return" + smoothing)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    ax_steps.set_title("Return vs timesteps")
    ax_episodes.set_title("Return vs episodes")
    if title:
        figure.suptitle(title)

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m relax_rl.plot",
        description="Plot learning curves (mean ± std over seeds) from SB3 Monitor files (*.monitor.csv).",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run dirs; NAME_1, NAME_2... are seeds")
    parser.add_argument("--out", default="learning_curves.png", help="output PNG (default: %(default)s)")
    parser.add_argument("--labels", nargs="+", help="one legend label per group of runs")
    parser.add_argument(
        "--smooth", type=int, default=DEFAULT_SMOOTH, help="moving-average window in episodes (default: %(default)s)"
    )
    parser.add_argument("--title", help="figure title")
    args = parser.parse_args(argv)
    try:
        path = plot_runs(args.run_dirs, args.out, labels=args.labels, smooth=args.smooth, title=args.title)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
