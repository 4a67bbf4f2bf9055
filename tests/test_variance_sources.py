"""experiments/variance_sources.py: which transitions end in their segment, the variance split, a --quick run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_benchmarks import _load

variance_sources = _load("variance_sources")


def test_a_transition_ends_if_its_episode_ends_at_its_step_or_later_in_the_segment():
    # env 0: a new episode starts at step 2 (the old one ended at step 1); env 1: done after the last step;
    # env 2: no end
    starts = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float32)
    last_dones = np.array([False, True, False])
    ends = variance_sources.ends_in_segment(starts, last_dones)
    assert ends.tolist() == [[True, True, False], [True, True, False], [False, True, False], [False, True, False]]
    one_env = variance_sources.ends_in_segment(starts[:, :1], last_dones[:1])  # (a flipped view once broke torch)
    assert torch.as_tensor(one_env.reshape(-1)).tolist() == [True, True, False, False]


def test_variance_split_adds_up_to_the_whole():
    rng = np.random.default_rng(0)
    ends, rest = rng.normal(size=(50, 7)) * 3.0, rng.normal(size=(50, 7)) + 0.5 * rng.normal(size=(50, 1))
    rest += 0.3 * ends  # correlated parts: the covariance term is not zero
    split = variance_sources.split_variance(ends + rest, ends, rest)
    assert split["total_variance"] == pytest.approx(np.var(ends + rest, axis=0, ddof=1).sum())
    assert split["ends_share"] == pytest.approx(np.var(ends, axis=0, ddof=1).sum() / split["total_variance"])
    assert abs(split["covariance_share"]) > 0.05
    assert split["ends_share"] + split["rest_share"] + split["covariance_share"] == pytest.approx(1.0)


def test_variance_sources_quick_splits_the_estimate_into_its_two_parts(tmp_path):
    results = variance_sources.main(["--quick", "--budget", "800", "--out", str(tmp_path)])
    checkpoints = results["CartPole-v1"][0]["checkpoints"]
    assert [c["timesteps"] for c in checkpoints] == [40, 400, 800]  # measuring does not move the training clock
    for c in checkpoints:
        # the two parts are computed separately from the whole: their shares add up only if every transition is
        # in exactly one of them
        assert c["ends_share"] + c["rest_share"] + c["covariance_share"] == pytest.approx(1.0, abs=1e-4)
        assert 0 < c["ends_share_of_transitions"] < 1
        assert c["advantage_mean_ends"] < c["advantage_mean_rest"]  # an ending episode collects no bootstrap
    assert {p.name for p in tmp_path.iterdir()} == {"variance_sources.json", "variance_sources.md"}
