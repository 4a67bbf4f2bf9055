"""relax_rl.plot: Monitor file loading, seed grouping, mean ± std curves, the PNG and the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread
from stable_baselines3.common.monitor import load_results

from relax_rl.plot import (
    MonitorFilesNotFoundError,
    _by_episodes,
    _by_timesteps,
    group_run_dirs,
    load_run,
    main,
    plot_runs,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# matplotlib's default colours C0 and C1, as drawn for the first and second group
GROUP_COLORS = (np.array([0x1F, 0x77, 0xB4]) / 255, np.array([0xFF, 0x7F, 0x0E]) / 255)


def write_monitor(path, rows, t_start=1_700_000_000.0, env_id="CartPole-v1"):
    """Write ``rows`` of (r, l, t) in SB3's Monitor format: a ``#{json}`` header line, then ``r,l,t``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        handle.write("#" + json.dumps({"t_start": t_start, "env_id": env_id}) + "\n")
        handle.write("r,l,t\n")
        for r, l, t in rows:
            handle.write(f"{r},{int(l)},{t}\n")


def fake_runs(root, n_episodes=60):
    """2 groups (a2c, relax-a2c) x 2 seeds of CartPole-like curves; returns the run dirs."""
    dirs = []
    for offset, algo in ((0.0, "a2c"), (50.0, "relax-a2c")):
        for seed in (1, 2):
            run = root / algo / f"CartPole-v1_{seed}"
            rng = np.random.default_rng(seed)
            lengths = rng.integers(10, 60, size=n_episodes + seed)
            returns = offset + np.linspace(10, 100, n_episodes + seed) + rng.normal(0, 5, n_episodes + seed)
            times = np.cumsum(lengths) * 1e-3
            write_monitor(run / "0.monitor.csv", zip(returns, lengths, times, strict=True))
            dirs.append(str(run))
    return dirs


# ---------------------------------------------------------------------------------------------- grouping


def test_group_run_dirs_groups_trailing_seed_suffixes():
    dirs = [
        "logs/relax-a2c/CartPole-v1_1",
        "logs/a2c/CartPole-v1_1",
        "logs/relax-a2c/CartPole-v1_2",
        "logs/a2c/CartPole-v1_2/",
        "logs/a2c/CartPole-v1_10",
    ]
    groups = group_run_dirs(dirs)
    assert list(groups) == ["relax-a2c/CartPole-v1", "a2c/CartPole-v1"]  # order of first appearance
    assert groups["relax-a2c/CartPole-v1"] == ["logs/relax-a2c/CartPole-v1_1", "logs/relax-a2c/CartPole-v1_2"]
    assert groups["a2c/CartPole-v1"] == ["logs/a2c/CartPole-v1_1", "logs/a2c/CartPole-v1_2/", "logs/a2c/CartPole-v1_10"]


def test_group_run_dirs_labels_and_non_seed_names():
    groups = group_run_dirs(["runs/ppo_1", "runs/ppo_2", "runs/ppo-lax", "runs/v1.5", "runs/ppo_1"])
    # only a trailing _<digits> marks a seed; the shortest distinguishing suffix is the label
    assert groups == {"ppo": ["runs/ppo_1", "runs/ppo_2"], "ppo-lax": ["runs/ppo-lax"], "v1.5": ["runs/v1.5"]}
    # same name under different parents are different groups
    assert list(group_run_dirs(["x/a/run_1", "y/a/run_1"])) == ["x/a/run", "y/a/run"]


# ---------------------------------------------------------------------------------------------- loading


def test_load_run_merges_env_files_in_time_order(tmp_path):
    write_monitor(tmp_path / "0.monitor.csv", [(1.0, 10, 1.0), (3.0, 30, 3.0)], t_start=100.0)
    write_monitor(tmp_path / "sub" / "1.monitor.csv", [(2.0, 20, 1.5)], t_start=100.5)  # found recursively
    run = load_run(tmp_path)
    np.testing.assert_array_equal(run.returns, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(run.timesteps, [10, 30, 60])
    assert len(load_results(str(tmp_path))) == 2  # SB3 reads the top-level file we wrote: the format is right


def test_empty_dir_error_names_the_dir(tmp_path):
    empty = tmp_path / "CartPole-v1_3"
    empty.mkdir()
    with pytest.raises(MonitorFilesNotFoundError, match=r"No \*\.monitor\.csv files found under '.*CartPole-v1_3'"):
        plot_runs([str(empty)], tmp_path / "out.png")
    with pytest.raises(MonitorFilesNotFoundError, match="does not exist"):
        plot_runs([str(tmp_path / "missing")], tmp_path / "out.png")
    write_monitor(empty / "0.monitor.csv", [])
    with pytest.raises(MonitorFilesNotFoundError, match="no completed episode"):
        load_run(empty)
    assert not (tmp_path / "out.png").exists()


# ---------------------------------------------------------------------------------------------- statistics


def test_seeds_interpolated_on_common_timestep_grid():
    class Run:
        def __init__(self, timesteps):
            self.timesteps = np.asarray(timesteps, dtype=float)

    runs = [Run([0, 10, 20, 30]), Run([5, 15, 25, 35])]
    returns = [runs[0].timesteps.copy(), runs[1].timesteps + 2.0]  # r = t and r = t + 2
    grid, mean, std = _by_timesteps(runs, returns)
    assert grid[0] == 5 and grid[-1] == 30  # the range both seeds cover
    np.testing.assert_allclose(mean, grid + 1.0)
    np.testing.assert_allclose(std, 1.0)


def test_seeds_over_common_episode_prefix():
    episodes, mean, std = _by_episodes([np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0])])
    np.testing.assert_array_equal(episodes, [1, 2])
    np.testing.assert_allclose(mean, [2.0, 3.0])
    np.testing.assert_allclose(std, [1.0, 1.0])


# ---------------------------------------------------------------------------------------------- image


def _check_png(path):
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE
    assert os.path.getsize(path) > 20_000
    image = imread(path)
    height, width = image.shape[:2]
    assert (height, width) == (450, 1200)
    rgb = image[..., :3]
    for color in GROUP_COLORS:  # both groups are drawn
        assert (np.abs(rgb - color).max(axis=-1) < 0.02).sum() > 200


def test_plot_runs_two_groups_two_seeds(tmp_path):
    dirs = fake_runs(tmp_path / "logs")
    out = plot_runs(dirs, tmp_path / "figs" / "curves.png", smooth=5)
    assert out == tmp_path / "figs" / "curves.png"
    _check_png(out)


def test_plot_runs_label_count_must_match_groups(tmp_path):
    dirs = fake_runs(tmp_path / "logs")
    with pytest.raises(ValueError, match=r"1 label\(s\) given for 2 group\(s\)"):
        plot_runs(dirs, tmp_path / "curves.png", labels=["only one"])
    with pytest.raises(ValueError, match="smooth"):
        plot_runs(dirs, tmp_path / "curves.png", smooth=0)


def test_cli(tmp_path):
    dirs = fake_runs(tmp_path / "logs")
    out = tmp_path / "cli.png"
    command = [sys.executable, "-m", "relax_rl.plot", *dirs, "--out", str(out), "--smooth", "3"]
    result = subprocess.run([*command, "--labels", "A2C", "RELAX-A2C"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    _check_png(out)


def test_cli_error_exits_2_without_traceback(tmp_path, capsys):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert main([str(empty), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "empty_run" in err
    assert not (tmp_path / "x.png").exists()
