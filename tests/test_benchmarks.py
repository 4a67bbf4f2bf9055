"""The benchmark scripts of issue #5: the episodes-to-solve rule, and --quick smoke runs that check what the
scripts write (not how fast anything runs)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and worker processes look the module up by name
    spec.loader.exec_module(module)
    return module


rl_table = _load("rl_table")


def test_episodes_to_threshold_needs_a_full_window_and_counts_from_one():
    returns = [200.0] * 99
    assert rl_table.episodes_to_threshold(returns, 195.0) is None  # 99 < 100 episodes
    assert rl_table.episodes_to_threshold([*returns, 200.0], 195.0) == 100
    # 150 episodes at 100 then 100 at 300: the window mean first reaches 195 once 48 of the 300s are in it
    returns = [100.0] * 150 + [300.0] * 100
    expected = 150 + next(k for k in range(1, 101) if ((100 - k) * 100 + k * 300) / 100 >= 195)
    assert rl_table.episodes_to_threshold(returns, 195.0) == expected == 198
    assert rl_table.episodes_to_threshold(returns, 301.0) is None


def test_summary_keeps_unsolved_runs_out_of_the_mean_but_in_the_total():
    records = [{"seed": s, "wall_time_s": 1.0, "episodes_to_solve": {"195": e}} for s, e in enumerate([100, 300, None])]
    summary = rl_table.summarize(records, 195.0)
    assert (summary["solved"], summary["total"]) == (2, 3)
    assert summary["median"] == 200 and summary["mean"] == 200
    assert summary["std"] == pytest.approx(np.std([100, 300], ddof=1))


def test_rl_table_quick_runs_records_episodes_and_resumes(tmp_path, capsys):
    out = tmp_path / "table"
    table = rl_table.main(["--quick", "--seeds", "1", "--budget", "3000", "--workers", "1", "--out", str(out)])
    assert set(table["CartPole-v1"]) == {"195", "475"}
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 2  # relax-a2c and a2c, one seed
    for path in runs:
        record = json.loads(path.read_text())
        # every completed episode was recorded, and CartPole's returns are episode lengths summing to <= steps
        assert record["episodes"] == len(record["returns"]) > 0
        assert sum(record["returns"]) <= record["timesteps"]
        assert record["episode_timesteps"] == sorted(record["episode_timesteps"])
    assert (out / "rl_table.md").read_text().count("| CartPole-v1 |") == 4
    assert (out / "CartPole-v1.png").stat().st_size > 0
    mtimes = [p.stat().st_mtime_ns for p in runs]
    capsys.readouterr()
    rl_table.main(["--quick", "--seeds", "1", "--budget", "3000", "--workers", "1", "--out", str(out)])
    assert "2 already done, 0 to go" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in runs] == mtimes
