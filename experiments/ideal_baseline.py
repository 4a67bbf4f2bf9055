"""The ideal action-dependent baseline q(s, a) = E[Â | s, a], by Monte Carlo continuations (issue #5 §3).

How far could *any* control variate ĉ(a, s) cut A2C's gradient variance? ``StateRecorder`` keeps the full
state of every sub-env before each step; ``IdealBaseline`` restarts a simulator from each recorded state, once
per action, and scores fresh continuations exactly as A2C scores Â_t. For classic-control envs (their
``unwrapped.state`` sets the dynamics) with discrete actions; the simulator is the env's class built with its
default arguments. Used by ``variance.py --ideal-baseline M``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnvWrapper


class StateRecorder(VecEnvWrapper):
    """Records each sub-env's full state (``unwrapped.state``) and time-limit step count before every step."""

    def __init__(self, venv: Any, n_steps: int) -> None:
        super().__init__(venv)
        self.records: deque = deque(maxlen=n_steps)

    def step_async(self, actions: np.ndarray) -> None:
        self.records.append([(np.array(env.unwrapped.state, dtype=np.float64), _elapsed_steps(env))
                             for env in self.venv.envs])
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        return self.venv.step_wait()

    def reset(self) -> Any:
        return self.venv.reset()


def _elapsed_steps(env: Any) -> tuple[int, int | None]:
    """(steps taken in the episode, the time limit) of a gymnasium env with a TimeLimit wrapper."""
    while env is not None:
        if hasattr(env, "_max_episode_steps"):
            return int(env._elapsed_steps), int(env._max_episode_steps)
        env = getattr(env, "env", None)
    return 0, None


class IdealBaseline:
    """Estimators with the ideal baselines of A2C's Â (discrete actions); with q = E[Â | s, a]:

        ĝ* = mean_t [ (Â_t − q̂(s_t, a_t)) ∇log π(a_t|s_t) + Σ_a π(a|s_t) q̂(s_t, a) ∇log π(a|s_t) ]

    q̂ is a Monte Carlo mean over ``n_continuations`` fresh continuations from the recorded state: action a, then
    π for the rest of the n-step segment, scored exactly as A2C scores Â_t (same horizon, the same bootstrap from
    V, SB3's time-limit bootstrap). Being independent of Â_t, q̂ keeps ĝ* unbiased. q is what a ĉ(a, s) would
    have to learn; up to the per-sample weighting of the variance-optimal baseline, what ĝ* keeps is the variance
    no action-dependent ĉ can remove. q̂'s own Monte Carlo noise (1/M of Var(Â | s, a)) is left in.
    """

    def __init__(self, model: Any, recorder: StateRecorder, n_continuations: int, seed: int) -> None:
        self.model, self.recorder, self.n_continuations = model, recorder, n_continuations
        self.sim = recorder.venv.envs[0].unwrapped.__class__()
        self.rng = np.random.default_rng(seed)

    def _returns(self, states: np.ndarray, clocks: np.ndarray, limits: list, first_actions: np.ndarray,
                 horizon: int) -> np.ndarray:
        """``[rows, horizon]``: column h − 1 is the continuation's h-step return, scored as A2C scores Â_t + V(s_t)
        for a transition h steps from the end of its segment (V bootstrap at h unless the episode ended first)."""
        policy, gamma, sim = self.model.policy, self.model.gamma, self.sim
        n = len(states)
        returns = np.zeros((n, horizon))
        total, discount = np.zeros(n), np.ones(n)
        alive = np.ones(n, dtype=bool)
        states, clocks, actions = states.copy(), clocks.copy(), first_actions.copy()
        for k in range(horizon):
            stepped = np.flatnonzero(alive)
            for i in stepped:
                sim.state, sim.steps_beyond_terminated = states[i].copy(), None
                obs, reward, terminated, _, _ = sim.step(int(actions[i]))
                clocks[i] += 1
                truncated = limits[i] is not None and clocks[i] >= limits[i]
                if truncated and not terminated:  # SB3: r += γ V(terminal observation)
                    reward += gamma * self._value(obs[None])[0]
                total[i] += discount[i] * reward
                discount[i] *= gamma
                states[i] = np.array(sim.state, dtype=np.float64)
                alive[i] = not (terminated or truncated)
            returns[:, k] = total
            if not alive.any():
                returns[:, k + 1:] = total[:, None]
                break
            values = self._value(states[alive].astype(np.float32))
            returns[alive, k] += discount[alive] * values
            if k + 1 < horizon:
                obs = torch.as_tensor(states[alive], dtype=torch.float32)
                with torch.no_grad():
                    probs = policy.get_distribution(obs).distribution.probs.numpy()
                draws = self.rng.random(len(probs))[:, None]
                actions[alive] = (draws > np.cumsum(probs, axis=1)).sum(axis=1).clip(max=probs.shape[1] - 1)
        return returns

    def _value(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model.policy.predict_values(torch.as_tensor(obs, dtype=torch.float32)).numpy().flatten()

    def q_hat(self, rollout_data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(q̂_h(s_t, a) − V(s_t) for every row, action and horizon h = 1..n_steps, ``[batch, n_actions, n_steps]``;
        each row's own horizon index h_t − 1 = n_steps − 1 − its step in the segment, ``[batch]``)."""
        model, n_steps = self.model, self.model.n_steps
        flat = [(step, record) for step, per_env in enumerate(self.recorder.records) for record in per_env]
        recorded = torch.as_tensor(np.stack([record[0] for _, record in flat]), dtype=torch.float32)
        # the buffer hands its rows out shuffled: find each row's recorded state by its observation
        distance, match = torch.cdist(rollout_data.observations.float(), recorded,
                                      compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
        if len(flat) != len(match) or distance.max() > 1e-5 or len(set(match.tolist())) != len(match):
            raise RuntimeError("the recorded states do not match the rollout's observations")
        steps = np.array([flat[j][0] for j in match.tolist()])
        states = np.stack([flat[j][1][0] for j in match.tolist()])
        clocks, limits = zip(*[flat[j][1][1] for j in match.tolist()], strict=True)
        n_actions, m = int(model.action_space.n), self.n_continuations
        rows = np.repeat(np.arange(len(states)), n_actions * m)
        first = np.tile(np.repeat(np.arange(n_actions), m), len(states))
        returns = self._returns(states[rows], np.array(clocks)[rows], [limits[r] for r in rows], first, n_steps)
        values = self._value(states.astype(np.float32))
        q_hat = returns.reshape(len(states), n_actions, m, n_steps).mean(axis=2) - values[:, None, None]
        return torch.as_tensor(q_hat, dtype=torch.float32), torch.as_tensor(n_steps - 1 - steps)

    def estimators(self) -> dict[str, Any]:
        """Three estimators sharing one set of continuations per batch:

        - ``ideal_position``: ĝ* with q(s, a, h), which also knows the transition's place in its segment;
        - ``ideal``: ĝ* with q̄(s, a) = mean_h q(s, a, h), the most a ĉ(a, s) can learn (positions are uniform);
        - ``ideal_state``: (Â_t − v̄(s_t)) ∇log π(a_t|s_t) with v̄(s) = Σ_a π(a|s) q̄(s, a), a perfect critic V(s).
        """
        cache: dict[str, Any] = {}

        def parts(rollout_data: Any) -> tuple:
            if cache.get("data") is not rollout_data:
                cache.update(data=rollout_data, q_hat=self.q_hat(rollout_data))
            q_all, own = cache["q_hat"]
            distribution = self.model.policy.get_distribution(rollout_data.observations).distribution
            actions = rollout_data.actions.long().flatten()[:, None]
            log_p = distribution.logits  # normalized: log π(a|s) for every a
            return q_all, own, distribution.probs.detach(), log_p, log_p.gather(1, actions).squeeze(1), actions

        def rao_blackwell(rollout_data: Any, q: torch.Tensor, probs, log_p, taken, actions) -> list:
            surrogate = ((rollout_data.advantages - q.gather(1, actions).squeeze(1)) * taken
                         + (probs * q * log_p).sum(dim=1)).mean()
            return self._gradient(surrogate)

        def ideal_position(rollout_data: Any) -> list[torch.Tensor | None]:
            q_all, own, probs, log_p, taken, actions = parts(rollout_data)
            q = q_all.gather(2, own[:, None, None].expand(-1, q_all.shape[1], 1)).squeeze(2)
            return rao_blackwell(rollout_data, q, probs, log_p, taken, actions)

        def ideal(rollout_data: Any) -> list[torch.Tensor | None]:
            q_all, _, probs, log_p, taken, actions = parts(rollout_data)
            return rao_blackwell(rollout_data, q_all.mean(dim=2), probs, log_p, taken, actions)

        def ideal_state(rollout_data: Any) -> list[torch.Tensor | None]:
            q_all, _, probs, _, taken, _ = parts(rollout_data)
            baseline = (probs * q_all.mean(dim=2)).sum(dim=1)
            return self._gradient(((rollout_data.advantages - baseline) * taken).mean())

        return {"ideal_position": ideal_position, "ideal": ideal, "ideal_state": ideal_state}

    def _gradient(self, surrogate: torch.Tensor) -> list[torch.Tensor | None]:
        return list(torch.autograd.grad(surrogate, self.model.policy.theta_parameters(), allow_unused=True))
