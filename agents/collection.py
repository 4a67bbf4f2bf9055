"""Rollout collection for RELAX on discrete actions: SB3's loop, with the action drawn from stored noise (DESIGN §6).

The action is b = H(z(u)) for uniform noise u drawn at collection time; u and the noise v of the conditional
z̃ | b are stored with the transition, so the update can rebuild z and z̃ for exactly the executed action.
"""

from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from relax_rl.samplers import uniform_noise

__all__ = ["StoredNoiseCollection"]


class StoredNoiseCollection:
    """Mixin for an SB3 on-policy algorithm whose policy has ``forward_with_noise`` and ``relaxation``; it
    collects with stored noise wherever the algorithm's ``_stores_noise`` is True, and as SB3 does otherwise."""

    _stores_noise: bool

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's ``OnPolicyAlgorithm.collect_rollouts`` (timesteps, callbacks, info buffer and the timeout
        bootstrap unchanged); for discrete actions with ĉ on, the action is b = H(z(u)) and (u, v) are stored."""
        if not self._stores_noise:
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        callback.on_rollout_start()
        noise_shape = (env.num_envs, self.policy.relaxation.noise_dim)
        while n_steps < n_rollout_steps:
            noise_u = uniform_noise(noise_shape, device=self.device)
            noise_v = uniform_noise(noise_shape, device=self.device)
            with torch.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)
                actions, values, log_probs = self.policy.forward_with_noise(obs_tensor, noise_u)
            actions = actions.cpu().numpy()
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            for idx, done in enumerate(dones):
                if (
                    done
                    and infos[idx].get("terminal_observation") is not None
                    and infos[idx].get("TimeLimit.truncated", False)
                ):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with torch.no_grad():
                        terminal_value = self.policy.predict_values(terminal_obs)[0]
                    rewards[idx] += self.gamma * terminal_value
            rollout_buffer.add(
                self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs,
                noise_u=noise_u.cpu().numpy(), noise_v=noise_v.cpu().numpy(),
            )
            self._last_obs = new_obs
            self._last_episode_starts = dones
        with torch.no_grad():
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True
