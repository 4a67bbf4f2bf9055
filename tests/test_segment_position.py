"""``cv_segment_position``: ĉ also reads the transition's place in its n-step segment.

The buffer must hand each sample its own step t (the samples are permuted), ĉ must depend on it, a saved
model must keep it, and θ's estimate must stay unbiased with a ĉ that varies strongly with it.
"""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv
from test_agent_unbiased import OneStepBandit, _amplify_cv, _max_z

from relax_rl import RelaxA2C, RelaxDDPG
from relax_rl.agents.buffers import RelaxDictRolloutBuffer, RelaxRolloutBuffer


@pytest.mark.parametrize("noise_dim", [0, 2])
def test_each_sample_gets_the_step_it_was_added_at(noise_dim):
    n_steps, n_envs = 4, 3
    buffer = RelaxRolloutBuffer(n_steps, spaces.Box(-10, 10, (2,)), spaces.Discrete(2), device="cpu",
                                n_envs=n_envs, noise_dim=noise_dim)
    noise = {"noise_u": np.zeros((n_envs, noise_dim)), "noise_v": np.zeros((n_envs, noise_dim))} if noise_dim else {}
    for step in range(n_steps):  # observation = (step, env)
        obs = np.stack([np.full(n_envs, step), np.arange(n_envs)], axis=1).astype(np.float32)
        buffer.add(obs, np.zeros((n_envs, 1)), np.zeros(n_envs), np.zeros(n_envs), torch.zeros(n_envs),
                   torch.zeros(n_envs), **noise)
    buffer.compute_returns_and_advantage(torch.zeros(n_envs), np.zeros(n_envs))
    samples = next(buffer.get(batch_size=None))
    assert torch.equal(samples.segment_steps, samples.observations[:, 0])
    assert sorted(samples.segment_steps.tolist()) == sorted(list(range(n_steps)) * n_envs)
    assert (samples.noise_u is None) == (noise_dim == 0)


def test_dict_buffer_gives_the_same_steps():
    obs_space = spaces.Dict({"x": spaces.Box(-10, 10, (1,))})
    buffer = RelaxDictRolloutBuffer(3, obs_space, spaces.Box(-1, 1, (1,)), device="cpu", n_envs=2, noise_dim=0)
    for step in range(3):
        buffer.add({"x": np.full((2, 1), step, dtype=np.float32)}, np.zeros((2, 1)), np.zeros(2), np.zeros(2),
                   torch.zeros(2), torch.zeros(2))
    buffer.compute_returns_and_advantage(torch.zeros(2), np.zeros(2))
    samples = next(buffer.get(batch_size=None))
    assert torch.equal(samples.segment_steps, samples.observations["x"][:, 0])


def _bandit_model(continuous, **kwargs):
    env = DummyVecEnv([lambda: OneStepBandit(continuous)] * 8)
    return RelaxA2C("MlpPolicy", env, n_steps=2, seed=0, device="cpu", learning_rate=1e-4, cv_learning_rate=3e-3,
                    policy_kwargs={"net_arch": [8]}, cv_segment_position=True, **kwargs)


@pytest.mark.parametrize("continuous", [False, True], ids=["relax-discrete", "lax-continuous"])
def test_c_hat_reads_the_position_and_the_estimate_stays_unbiased(continuous):
    model = _bandit_model(continuous)
    model.learn(400)
    _amplify_cv(model)
    policy = model.policy
    assert policy.cv_net.net[0].in_features == 2 + (4 if not continuous else 1) + 1
    features = torch.zeros(5, 2)
    action = torch.rand(5, policy.cv_net.net[0].in_features - 3)
    near, far = (policy.cv_value(policy._cv_state_inputs(features, torch.full((5,), p)), action) for p in (0.5, 1.0))
    assert (near - far).abs().min() > 1e-3  # ĉ depends on the position: the check below is not vacuous
    with pytest.raises(ValueError, match="pass segment_position"):
        policy._cv_state_inputs(features, None)
    worst, _ = _max_z(model, continuous)
    assert worst < 4.5


def saved_and_loaded(tmp_path, **options):
    """A CartPole model with ĉ's ``options`` after 200 steps, the model saved and loaded, and its last batch."""
    model = RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=5, seed=0, device="cpu", **options)
    model.learn(200)
    model.save(tmp_path / "model.zip")
    loaded = RelaxA2C.load(tmp_path / "model.zip", device="cpu")
    return model, loaded, next(model.rollout_buffer.get(batch_size=None))


def c_hat_terms(model, rollout, value_shift=0.0):
    """(c_z, c_z̃, c_z̃⊥) of ``model`` on ``rollout``, stacked; ``value_shift`` is added to the V that ĉ reads."""
    actions = rollout.actions.long().flatten()
    values, _, _, dist, features = model.policy.evaluate_actions_with_distribution(rollout.observations, actions)
    return torch.stack(model._cv_terms(rollout, dist, actions, features, values + value_shift))


def test_position_survives_save_and_load(tmp_path):
    model, loaded, rollout = saved_and_loaded(tmp_path, cv_segment_position=True)
    assert loaded.cv_segment_position and loaded.policy.cv_segment_position
    # the saved weights, on the same batch and positions
    assert torch.equal(c_hat_terms(model, rollout), c_hat_terms(loaded, rollout))
    loaded.set_env(model.get_env())
    loaded.learn(200, reset_num_timesteps=False)  # the loaded model's buffer carries the steps again


def test_position_needs_c_hat_and_is_refused_with_critic_lambda():
    model = RelaxA2C("MlpPolicy", "CartPole-v1", action_dependent_cv=False, cv_segment_position=True)
    assert not model.cv_segment_position and not hasattr(model.policy, "cv_net")
    with pytest.raises(ValueError, match="critic_lambda and cv_segment_position"):
        RelaxDDPG("MlpPolicy", "Pendulum-v1", critic_lambda=0.0, cv_segment_position=True)
