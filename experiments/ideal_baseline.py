"""The ideal action-dependent baseline q(s, a) = E[Â | s, a], by Monte Carlo continuations (issue #5 §3).

How far could *any* control variate ĉ(a, s) cut A2C's gradient variance? ``StateRecorder`` keeps the full
state of every sub-env before each step; ``IdealBaseline`` restarts a simulator from each recorded state, once
per action, and scores fresh continuations exactly as A2C scores Â_t. For envs whose state can be set:
classic control (``unwrapped.state``) and MuJoCo (``qpos``, ``qvel``), with discrete or Box actions; the
simulator is the env's class built with its default arguments. Observations and rewards may be normalized by a
frozen ``VecNormalize`` (``training=False``). Used by ``variance.py --ideal-baseline M``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnvWrapper, unwrap_vec_normalize


def settable_state_kind(env: Any) -> str | None:
    """"mujoco", "classic" (an ``unwrapped.state`` that sets the dynamics) or None for an unwrapped gymnasium env."""
    if hasattr(env, "set_state") and hasattr(env, "data") and hasattr(env, "model"):
        return "mujoco"
    if hasattr(env, "state"):
        return "classic"
    return None


def get_state(env: Any) -> np.ndarray:
    """The simulator state of an unwrapped env, as one float64 vector: ``state`` (classic control), or ``qpos`` and
    ``qvel`` (MuJoCo; all of the state for envs without actuator activations or warm-started contacts, such as
    InvertedPendulum; the horizon-1 test checks it for that env)."""
    if settable_state_kind(env) == "mujoco":
        return np.concatenate([env.data.qpos, env.data.qvel]).astype(np.float64)
    return np.array(env.state, dtype=np.float64)


def set_state(env: Any, state: np.ndarray) -> None:
    """Put an unwrapped env into ``state`` (a vector from :func:`get_state`), ready to step."""
    if settable_state_kind(env) == "mujoco":
        env.set_state(state[:env.model.nq], state[env.model.nq:])
        return
    env.state = state.copy()
    if hasattr(env, "steps_beyond_terminated"):  # CartPole warns when stepped past its end
        env.steps_beyond_terminated = None


class StateRecorder(VecEnvWrapper):
    """Records, before every step, each sub-env's full state, its time-limit clock and the observation the
    policy acts on (as the rollout buffer stores it). Wraps a DummyVecEnv, optionally inside a VecNormalize."""

    def __init__(self, venv: Any, n_steps: int) -> None:
        super().__init__(venv)
        self.records: deque = deque(maxlen=n_steps)
        self._obs: np.ndarray | None = None

    @staticmethod
    def supports(venv: Any, action_space: spaces.Space) -> bool:
        """Whether the ideal baselines can be measured on ``venv``: in-process sub-envs with a settable state,
        discrete or Box actions."""
        inner = venv.unwrapped
        return (isinstance(inner, DummyVecEnv) and settable_state_kind(inner.envs[0].unwrapped) is not None
                and isinstance(action_space, (spaces.Discrete, spaces.Box)))

    def step_async(self, actions: np.ndarray) -> None:
        self.records.append([(get_state(env.unwrapped), _elapsed_steps(env), self._obs[i].copy())
                             for i, env in enumerate(self.venv.unwrapped.envs)])
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        self._obs = obs
        return obs, rewards, dones, infos

    def reset(self) -> Any:
        self._obs = self.venv.reset()
        return self._obs


def _elapsed_steps(env: Any) -> tuple[int, int | None]:
    """(steps taken in the episode, the time limit) of a gymnasium env with a TimeLimit wrapper."""
    while env is not None:
        if hasattr(env, "_max_episode_steps"):
            return int(env._elapsed_steps), int(env._max_episode_steps)
        env = getattr(env, "env", None)
    return 0, None


class IdealBaseline:
    """Estimators with the ideal baselines of A2C's Â; with q = E[Â | s, a]:

        ĝ* = mean_t [ (Â_t − q̂(s_t, a_t)) ∇log π(a_t|s_t) + E_{a∼π(·|s_t)}[ q̂(s_t, a) ∇log π(a|s_t) ] ]

    The expectation is exact for discrete actions (Σ_a π(a|s) q̂(s, a) ∇log π(a|s)). For Box actions it is a mean
    over M fresh actions a_k ∼ π(·|s_t), each with a leave-one-out baseline (the mean q̂ of the other M − 1), so it
    stays unbiased; a LAX ĉ would estimate the same term from one reparameterized sample instead.

    q̂ is a Monte Carlo mean over ``n_continuations`` fresh continuations from the recorded state: action a, then
    π for the rest of the n-step segment, scored exactly as A2C scores Â_t (same horizon, the same bootstrap from
    V, SB3's time-limit bootstrap; Box actions clipped to the space as SB3 clips them). Being independent of Â_t,
    q̂ keeps ĝ* unbiased. q is what a ĉ(a, s) would have to learn; up to the per-sample weighting of the
    variance-optimal baseline, what ĝ* keeps is the variance no action-dependent ĉ can remove. q̂'s own Monte
    Carlo noise (1/M of Var(Â | s, a)) is left in.
    """

    def __init__(self, model: Any, recorder: StateRecorder, n_continuations: int, seed: int) -> None:
        if getattr(model, "normalize_advantage", False):
            raise ValueError("the ideal baselines are built for A2C's raw Â; this model normalizes its advantages "
                             "(normalize_advantage=True), so its ĉ-off estimate would not be comparable")
        if isinstance(model.action_space, spaces.Box) and n_continuations < 2:
            raise ValueError("the ideal baselines for Box actions need n_continuations >= 2 (the fresh actions' "
                             f"leave-one-out baseline), got {n_continuations}")
        self.model, self.recorder, self.n_continuations = model, recorder, n_continuations
        self.sim = recorder.venv.unwrapped.envs[0].unwrapped.__class__()
        self.normalizer = unwrap_vec_normalize(recorder)
        self.rng = np.random.default_rng(seed)

    def _obs(self, raw: np.ndarray) -> torch.Tensor:
        """The observation as the policy sees it (normalized with the frozen statistics, if any)."""
        if self.normalizer is not None:
            raw = self.normalizer.normalize_obs(raw)
        return torch.as_tensor(np.asarray(raw), dtype=torch.float32)

    def _reward(self, reward: float) -> float:
        """The reward as the rollout buffer stores it (scaled by the frozen VecNormalize, if it normalizes them)."""
        if self.normalizer is not None and self.normalizer.norm_reward:
            return float(self.normalizer.normalize_reward(np.array([reward], dtype=np.float64))[0])
        return float(reward)

    def _env_action(self, action: np.ndarray) -> Any:
        space = self.model.action_space
        return int(action) if isinstance(space, spaces.Discrete) else np.clip(action, space.low, space.high)

    def _sample_actions(self, obs: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            distribution = self.model.policy.get_distribution(obs).distribution
        if isinstance(self.model.action_space, spaces.Discrete):
            probs = distribution.probs.numpy()
            draws = self.rng.random(len(probs))[:, None]
            return (draws > np.cumsum(probs, axis=1)).sum(axis=1).clip(max=probs.shape[1] - 1)
        mean, std = distribution.mean.numpy(), distribution.stddev.numpy()
        return mean + std * self.rng.standard_normal(mean.shape)

    def _returns(self, states: np.ndarray, clocks: np.ndarray, limits: list, first_actions: np.ndarray,
                 horizon: int) -> np.ndarray:
        """``[rows, horizon]``: column h − 1 is the continuation's h-step return, scored as A2C scores Â_t + V(s_t)
        for a transition h steps from the end of its segment (V bootstrap at h unless the episode ended first)."""
        gamma, sim = self.model.gamma, self.sim
        n = len(states)
        returns = np.zeros((n, horizon))
        total, discount = np.zeros(n), np.ones(n)
        alive = np.ones(n, dtype=bool)
        states, clocks, actions = states.copy(), clocks.copy(), first_actions.copy()
        next_obs: list[np.ndarray | None] = [None] * n
        for k in range(horizon):
            for i in np.flatnonzero(alive):
                set_state(sim, states[i])
                obs, reward, terminated, _, _ = sim.step(self._env_action(actions[i]))
                reward = self._reward(reward)
                clocks[i] += 1
                truncated = limits[i] is not None and clocks[i] >= limits[i]
                if truncated and not terminated:  # SB3: r += γ V(terminal observation)
                    reward += gamma * self._value(np.asarray(obs)[None])[0]
                total[i] += discount[i] * reward
                discount[i] *= gamma
                states[i], next_obs[i] = get_state(sim), np.asarray(obs)
                alive[i] = not (terminated or truncated)
            returns[:, k] = total
            if not alive.any():
                returns[:, k + 1:] = total[:, None]
                break
            obs_alive = np.stack([next_obs[i] for i in np.flatnonzero(alive)])
            returns[alive, k] += discount[alive] * self._value(obs_alive)
            if k + 1 < horizon:
                actions[alive] = self._sample_actions(self._obs(obs_alive))
        return returns

    def _value(self, raw_obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model.policy.predict_values(self._obs(raw_obs)).numpy().flatten()

    def q_hat(self, rollout_data: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(q̂_h(s_t, a) − V(s_t) for every row, action and horizon h = 1..n_steps, ``[batch, n_first, n_steps]``;
        each row's own horizon index h_t − 1 = n_steps − 1 − its step in the segment, ``[batch]``; the fresh
        actions for Box spaces, ``[batch, M, *action_shape]``, else None).
        The first actions are every action (discrete), or the taken action then M fresh draws from π (Box)."""
        model, n_steps, m = self.model, self.model.n_steps, self.n_continuations
        flat = [(step, record) for step, per_env in enumerate(self.recorder.records) for record in per_env]
        recorded = torch.as_tensor(np.stack([record[2] for _, record in flat]), dtype=torch.float32)
        # the buffer hands its rows out shuffled: find each row's recorded state by its observation
        observations = rollout_data.observations.float().reshape(len(rollout_data.observations), -1)
        distance, match = torch.cdist(observations, recorded.reshape(len(recorded), -1),
                                      compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
        if len(flat) != len(match) or distance.max() > 1e-5 or len(set(match.tolist())) != len(match):
            raise RuntimeError("the recorded states do not match the rollout's observations")
        steps = np.array([flat[j][0] for j in match.tolist()])
        states = np.stack([flat[j][1][0] for j in match.tolist()])
        clocks, limits = zip(*[flat[j][1][1] for j in match.tolist()], strict=True)
        seen = np.stack([flat[j][1][2] for j in match.tolist()])  # (as the policy saw them: normalized already)
        with torch.no_grad():
            values = model.policy.predict_values(torch.as_tensor(seen, dtype=torch.float32)).numpy().flatten()
        fresh = None
        if isinstance(model.action_space, spaces.Discrete):
            n_first = int(model.action_space.n)
            first = np.tile(np.arange(n_first), len(states))
        else:
            n_first = 1 + m
            with torch.no_grad():
                distribution = model.policy.get_distribution(rollout_data.observations).distribution
            mean, std = distribution.mean.numpy(), distribution.stddev.numpy()
            fresh = mean[:, None] + std[:, None] * self.rng.standard_normal((len(states), m, *mean.shape[1:]))
            taken = rollout_data.actions.numpy().reshape(len(states), 1, *mean.shape[1:])
            first = np.concatenate([taken, fresh], axis=1).reshape(len(states) * n_first, *mean.shape[1:])
        rows = np.repeat(np.arange(len(states)), n_first * m)
        first = np.repeat(first, m, axis=0)
        returns = self._returns(states[rows], np.array(clocks)[rows], [limits[r] for r in rows], first, n_steps)
        q_hat = returns.reshape(len(states), n_first, m, n_steps).mean(axis=2) - values[:, None, None]
        fresh_actions = None if fresh is None else torch.as_tensor(fresh, dtype=torch.float32)
        return torch.as_tensor(q_hat, dtype=torch.float32), torch.as_tensor(n_steps - 1 - steps), fresh_actions

    def estimators(self) -> dict[str, Any]:
        """Three estimators sharing one set of continuations per batch:

        - ``ideal_position``: ĝ* with q(s, a, h), which also knows the transition's place in its segment;
        - ``ideal``: ĝ* with q̄(s, a) = mean_h q(s, a, h), the most a ĉ(a, s) can learn (positions are uniform);
        - ``ideal_state``: (Â_t − v̄(s_t)) ∇log π(a_t|s_t) with v̄(s) = E_{a∼π}[q̄(s, a)] (exact for discrete
          actions, the mean over the M fresh actions for Box), a perfect critic V(s).
        """
        cache: dict[str, Any] = {}
        discrete = isinstance(self.model.action_space, spaces.Discrete)

        def parts(rollout_data: Any) -> tuple:
            if cache.get("data") is not rollout_data:
                cache.update(data=rollout_data, q_hat=self.q_hat(rollout_data))
            q_all, own, fresh = cache["q_hat"]
            distribution = self.model.policy.get_distribution(rollout_data.observations)
            if discrete:
                actions = rollout_data.actions.long().flatten()[:, None]
                log_p = distribution.distribution.logits  # normalized: log π(a|s) for every a
                return q_all, own, distribution.distribution.probs.detach(), log_p, \
                    log_p.gather(1, actions).squeeze(1), actions
            taken = distribution.log_prob(rollout_data.actions)
            # log π(a_k|s_t) of the fresh actions, [batch, M] (the Gaussian broadcasts over the leading M)
            fresh_log_p = distribution.distribution.log_prob(fresh.transpose(0, 1)).sum(dim=-1).transpose(0, 1)
            return q_all, own, None, fresh_log_p, taken, None

        def expected_term(q: torch.Tensor, probs: torch.Tensor | None, log_p: torch.Tensor) -> torch.Tensor:
            """Per row, a surrogate whose θ-gradient is the correction term's estimate of E_a[q(s, a) ∇log π(a|s)]
            (exact for discrete actions; for Box the leave-one-out shift changes its value, not its gradient's mean)."""
            if discrete:
                return (probs * q * log_p).sum(dim=1)
            fresh_q = q[:, 1:]
            leave_one_out = (fresh_q.sum(dim=1, keepdim=True) - fresh_q) / (fresh_q.shape[1] - 1)
            return ((fresh_q - leave_one_out) * log_p).mean(dim=1)

        def taken_q(q: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
            return q.gather(1, actions).squeeze(1) if discrete else q[:, 0]

        def with_q(rollout_data: Any, q: torch.Tensor, probs, log_p, taken, actions) -> list:
            surrogate = ((rollout_data.advantages - taken_q(q, actions)) * taken
                         + expected_term(q, probs, log_p)).mean()
            return self._gradient(surrogate)

        def ideal_position(rollout_data: Any) -> list[torch.Tensor | None]:
            q_all, own, probs, log_p, taken, actions = parts(rollout_data)
            q = q_all.gather(2, own[:, None, None].expand(-1, q_all.shape[1], 1)).squeeze(2)
            return with_q(rollout_data, q, probs, log_p, taken, actions)

        def ideal(rollout_data: Any) -> list[torch.Tensor | None]:
            q_all, _, probs, log_p, taken, actions = parts(rollout_data)
            return with_q(rollout_data, q_all.mean(dim=2), probs, log_p, taken, actions)

        def ideal_state(rollout_data: Any) -> list[torch.Tensor | None]:
            q_all, _, probs, _, taken, _ = parts(rollout_data)
            q = q_all.mean(dim=2)
            baseline = (probs * q).sum(dim=1) if discrete else q[:, 1:].mean(dim=1)
            return self._gradient(((rollout_data.advantages - baseline) * taken).mean())

        return {"ideal_position": ideal_position, "ideal": ideal, "ideal_state": ideal_state}

    def _gradient(self, surrogate: torch.Tensor) -> list[torch.Tensor | None]:
        return list(torch.autograd.grad(surrogate, self.model.policy.theta_parameters(), allow_unused=True))
