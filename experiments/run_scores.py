"""Scores of one training run, computed from its episode record (``rl_table.py`` and ``tune.py`` write them):
``returns`` (one per completed training episode, all parallel envs together, in the order they ended) and
``episode_timesteps`` (the run's timestep, all envs together, at which each ended).

Episodes to solve (DESIGN §7) counts episodes until a ``WINDOW``-episode mean reaches a threshold, so it can never
be below ``WINDOW``. The mean return over the first K steps has no such floor: it is the area under the learning
curve against environment steps, divided by K.
"""

from __future__ import annotations

import numpy as np

WINDOW = 100


def episodes_to_threshold(returns: list[float] | np.ndarray, threshold: float, window: int = WINDOW) -> int | None:
    """1-based count of completed episodes at which the mean of the last ``window`` returns first reaches
    ``threshold`` (a full window is required), or None if it never does."""
    returns = np.asarray(returns, dtype=float)
    if returns.size < window:
        return None
    moving = np.convolve(returns, np.ones(window) / window, mode="valid")  # moving[k]: episodes k .. k+window-1
    hits = np.nonzero(moving >= threshold)[0]
    return int(hits[0] + window) if hits.size else None


def best_window_mean(returns: list[float] | np.ndarray, window: int = WINDOW) -> float | None:
    """The highest mean return over any ``window`` consecutive episodes (None for a run with fewer): how close a run
    came to the threshold, shown beside the score (it does not rank)."""
    if len(returns) < window:
        return None
    return float(np.convolve(np.asarray(returns, dtype=float), np.ones(window) / window, mode="valid").max())


def timesteps_to_threshold(record: dict, threshold: float) -> int | None:
    """The timestep (all parallel envs together) at which a run's episodes-to-solve count was reached: the end of
    the episode that completed the first window at or above ``threshold`` (None if never)."""
    episodes = record["episodes_to_solve"][f"{threshold:g}"]
    return None if episodes is None else int(record["episode_timesteps"][episodes - 1])


def mean_return_over_steps(returns: list[float] | np.ndarray, episode_timesteps: list[int] | np.ndarray,
                           steps: int) -> float | None:
    """(1/K) Σ_{t=1..K} R(t), K = ``steps``: R(t) is the return of the first episode to end at or after step t
    (the mean of those that end together, on one step of parallel envs). With one env that is the episode step t
    belongs to, so the score is Σ_i R_i L_i / K, the return an average step of the first K earned. None when the
    run has no episode ending at or after step K (it stopped before K, or K is past its last episode).
    ValueError for ``steps`` < 1, for returns and ends of different lengths, and for ends out of order."""
    ends = np.asarray(episode_timesteps, dtype=np.int64)
    returns = np.asarray(returns, dtype=float)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if ends.shape != returns.shape:
        raise ValueError(f"{returns.size} returns but {ends.size} episode ends")
    if np.any(np.diff(ends) < 0):
        raise ValueError("episode_timesteps must be nondecreasing (the order the episodes ended in)")
    if ends.size == 0 or ends[-1] < steps:
        return None
    unique_ends, group = np.unique(ends, return_inverse=True)
    group_mean = np.bincount(group, weights=returns) / np.bincount(group)
    starts = np.concatenate([[0], unique_ends[:-1]])
    covered = np.clip(np.minimum(unique_ends, steps) - starts, 0, None)  # steps t in (start, end] ∩ [1, K]
    return float(group_mean @ covered / steps)
