"""RelaxDDPG: unbiased actor gradient for any critic (and the fresh-noise bug caught), Box-only, diagnostics,
SB3 compatibility and save/load."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from test_agent_unbiased import OBS, TARGET, OneStepBandit

from relax_rl import RelaxDDPG
from relax_rl.agents import RelaxDDPGPolicy
from relax_rl.diagnostics import gradient_estimates


def _bandit_model(seed=0):
    # bounds ±5: with σ ≈ 1 the env's clip is hit with probability ~1e-6, so J has the closed form below
    env = DummyVecEnv([lambda: OneStepBandit(continuous=True, bound=5.0)] * 8)
    return RelaxDDPG("MlpPolicy", env, n_steps=2, seed=seed, device="cpu", learning_rate=1e-5,
                     policy_kwargs={"net_arch": [8], "log_std_init": 0.0}, cv_net_arch=[32, 32])


def _exact_actor_gradient(model):
    """J = E_{a~N(μ,σ)}[−(a − t)²] = −((μ − t)² + σ²): exact gradient for every actor weight."""
    policy = model.policy
    dist = policy.get_distribution(torch.as_tensor(OBS).unsqueeze(0))
    mean, std = dist.distribution.mean[0, 0], dist.distribution.stddev[0, 0]
    objective = -((mean - TARGET) ** 2 + std**2)
    named = {k: p for k, p in policy.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(objective, list(named.values()), allow_unused=True)
    return {k: g.numpy() for k, g in zip(named, grads, strict=True) if g is not None}


def _max_z(model, n_batches=2000):
    estimates = gradient_estimates(model, n_batches=n_batches, seed=1)
    exact = _exact_actor_gradient(model)
    assert set(estimates) == set(exact)  # the estimate reaches exactly the actor's parameters
    worst = 0.0
    for name, values in estimates.items():
        flat = values.reshape(values.shape[0], -1)
        se = flat.std(axis=0, ddof=1) / np.sqrt(flat.shape[0])
        diff = flat.mean(axis=0) - exact[name].reshape(-1)
        ok = se > 1e-9
        assert np.all(np.abs(diff[~ok]) < 1e-6)  # a coordinate the estimate never varies must still be exact
        worst = max(worst, float(np.max(np.abs(diff[ok] / se[ok]))))
    return worst


@pytest.mark.parametrize("critic", ["untrained", "trained"])
def test_actor_gradient_is_unbiased_for_any_critic(critic):
    model = _bandit_model()
    if critic == "trained":
        model.learn(3000)  # the critic learns (θ barely moves at lr 1e-5)
        assert model.logger.name_to_value["train/critic_regression_error"] < 5.0
    assert _max_z(model) < 4.0  # the bar: within 4 standard errors (measured: 1.06 untrained, 0.73 trained)


def test_critic_at_fresh_noise_is_caught(monkeypatch):
    """The original code evaluated the critic at a fresh noise draw instead of the executed action's ε."""
    model = _bandit_model()
    model.learn(3000)

    def fresh_noise_terms(self, distribution, actions, features, *noise):
        gaussian = distribution.distribution
        fresh = gaussian.mean + gaussian.stddev * torch.randn_like(gaussian.mean)
        c_fresh = self.cv_value(features, fresh)
        return c_fresh, torch.zeros_like(c_fresh), self.cv_value(features, fresh.detach())

    monkeypatch.setattr(RelaxDDPGPolicy, "control_variate_terms", fresh_noise_terms)
    assert _max_z(model) > 8.0


class _DiscreteEnv(gym.Env):
    observation_space = spaces.Box(-1, 1, (2,))
    action_space = spaces.Discrete(3)


def test_box_only_with_clear_errors():
    with pytest.raises(ValueError, match=r"Discrete.*supported: Box.*RelaxA2C"):
        RelaxDDPG("MlpPolicy", "CartPole-v1")
    env = DummyVecEnv([lambda: OneStepBandit(continuous=True)])
    env.action_space = spaces.Box(-np.inf, np.inf, (1,), dtype=np.float32)
    with pytest.raises(ValueError, match="bounded Box"):
        RelaxDDPG("MlpPolicy", env)
    with pytest.raises(ValueError, match="normalize_advantage"):
        RelaxDDPG("MlpPolicy", "Pendulum-v1", normalize_advantage=True)
    with pytest.raises(ValueError, match="cv_regression_coef"):
        RelaxDDPG("MlpPolicy", "Pendulum-v1", cv_regression_coef=-1.0)


def test_actor_mean_is_tanh_rescaled_to_the_bounds_and_critic_is_separate():
    """μ = center + half_range · tanh(action_net(latent)); asymmetric bounds [-1, 3] tell it apart from a clamp,
    from high · tanh and from a forgotten center (all of which give the upper bound when saturated)."""
    env = DummyVecEnv([lambda: OneStepBandit(continuous=True)])
    env.action_space = spaces.Box(-1.0, 3.0, (1,), dtype=np.float32)
    model = RelaxDDPG("MlpPolicy", env, seed=0, device="cpu")
    policy = model.policy
    obs = torch.as_tensor(np.stack([model.observation_space.sample() for _ in range(64)]))
    for bias in (0.0, 0.5, -0.5, 50.0):
        with torch.no_grad():
            policy.action_net.weight.zero_()
            policy.action_net.bias.fill_(bias)
            mean = policy.get_distribution(obs).distribution.mean
        expected = 1.0 + 2.0 * np.tanh(bias)  # center 1, half range 2: 1 at bias 0, the upper bound 3 saturated
        torch.testing.assert_close(mean, torch.full_like(mean, expected))
    assert policy.cv_net.net[0].out_features == 400 and policy.cv_net.net[2].out_features == 300
    theta = {id(p) for p in policy.theta_parameters()}
    assert not any(id(p) in theta for p in policy.cv_parameters())


def test_diagnostics_callbacks_vecnormalize_and_save_load(tmp_path):
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    eval_env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=9), training=False, norm_reward=False)
    model = RelaxDDPG("MlpPolicy", env, n_steps=8, seed=0, device="cpu", cv_net_arch=[32])
    callbacks = [EvalCallback(eval_env, eval_freq=64, n_eval_episodes=1, log_path=str(tmp_path)),
                 CheckpointCallback(save_freq=64, save_path=str(tmp_path / "ckpt"))]
    model.learn(256, callback=callbacks, progress_bar=True)
    logged = model.logger.name_to_value
    for key in ("train/actor_grad_score_norm", "train/actor_grad_reparam_norm", "train/critic_variance_loss",
                "train/critic_regression_error"):
        assert np.isfinite(logged[key]), key
    assert logged["train/actor_grad_score_norm"] > 0 and logged["train/actor_grad_reparam_norm"] > 0
    assert (tmp_path / "evaluations.npz").exists() and len(list((tmp_path / "ckpt").iterdir())) == 2
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=1)
    assert -2000 < mean <= 0
    model.save(tmp_path / "ddpg.zip")
    loaded = RelaxDDPG.load(tmp_path / "ddpg.zip", device="cpu")
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    for a, b in zip(loaded.policy.cv_parameters(), model.policy.cv_parameters(), strict=True):
        assert torch.equal(a, b)
    assert loaded.cv_regression_coef == model.cv_regression_coef
    loaded_state = loaded.policy.cv_optimizer.state_dict()["state"]
    assert loaded_state.keys() == model.policy.cv_optimizer.state_dict()["state"].keys()


_CHILD = r"""
import json, sys, numpy as np, torch
from relax_rl import RelaxDDPG
from stable_baselines3.common.env_util import make_vec_env
path, obs_path, out_path = sys.argv[1:4]
model = RelaxDDPG.load(path, device="cpu")
actions, _ = model.predict(np.load(obs_path), deterministic=True)
critic = [p.detach().numpy().tolist() for p in model.policy.cv_parameters()]
model.set_env(make_vec_env("Pendulum-v1", n_envs=2, seed=5))
before = [p.detach().clone() for p in model.policy.parameters()]
model.learn(32, reset_num_timesteps=False)
moved = any(not torch.equal(a, p) for a, p in zip(before, model.policy.parameters()))
json.dump({"actions": actions.tolist(), "critic": critic, "moved": moved, "coef": model.cv_regression_coef,
           "num_timesteps": model.num_timesteps}, open(out_path, "w"))
"""


def test_save_load_round_trip_in_a_fresh_process(tmp_path):
    import json
    import subprocess
    import sys

    model = RelaxDDPG("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), n_steps=8, seed=0, device="cpu",
                      cv_net_arch=[16], cv_regression_coef=0.25)
    model.learn(160)
    model.save(tmp_path / "model.zip")
    obs = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    (tmp_path / "child.py").write_text(_CHILD)
    subprocess.run([sys.executable, str(tmp_path / "child.py"), str(tmp_path / "model.zip"), str(tmp_path / "obs.npy"),
                    str(tmp_path / "out.json")], check=True, capture_output=True)
    child = json.loads((tmp_path / "out.json").read_text())
    np.testing.assert_array_equal(np.asarray(child["actions"], dtype=np.float32),
                                  model.predict(obs, deterministic=True)[0])
    for theirs, ours in zip(child["critic"], model.policy.cv_parameters(), strict=True):
        np.testing.assert_array_equal(np.asarray(theirs, dtype=np.float32), ours.detach().numpy())
    assert child["coef"] == 0.25 and child["moved"] and child["num_timesteps"] >= 160 + 32


def test_tensorboard_event_file_has_the_actor_and_critic_diagnostics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = RelaxDDPG("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), n_steps=8, seed=0, device="cpu",
                      cv_net_arch=[16], tensorboard_log=str(tmp_path))
    model.learn(480, log_interval=2)
    accumulator = EventAccumulator(str(tmp_path / "RelaxDDPG_1"))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    expected = {"train/actor_grad_score_norm", "train/actor_grad_reparam_norm", "train/critic_variance_loss",
                "train/critic_regression_error", "train/std", "train/value_loss", "time/fps"}
    assert expected <= tags, expected - tags
    for key in ("train/critic_variance_loss", "train/critic_regression_error", "train/actor_grad_reparam_norm"):
        values = [event.value for event in accumulator.Scalars(key)]
        assert len(values) >= 10 and all(np.isfinite(values)) and min(values) >= 0, key
    # the reparameterized part is the critic's action-gradient pushed through μ: it must not be identically 0
    assert max(event.value for event in accumulator.Scalars("train/actor_grad_reparam_norm")) > 0


def _filled_critic_target_buffer(critic_lambda, gae_lambda=0.9, gamma=0.9):
    from relax_rl.agents.buffers import CriticTargetRolloutBuffer

    rng = np.random.default_rng(0)
    n_steps, n_envs = 6, 2
    buffer = CriticTargetRolloutBuffer(n_steps, spaces.Box(-1, 1, (3,)), spaces.Box(-2, 2, (1,)), device="cpu",
                                       gamma=gamma, gae_lambda=gae_lambda, n_envs=n_envs, critic_lambda=critic_lambda)
    rewards, values = rng.normal(size=(n_steps, n_envs)), rng.normal(size=(n_steps, n_envs))
    starts = np.zeros((n_steps, n_envs))
    starts[3, 0] = 1.0  # env 0's episode ends after step 2
    for t in range(n_steps):
        buffer.add(rng.normal(size=(n_envs, 3)), rng.normal(size=(n_envs, 1)), rewards[t], starts[t],
                   torch.as_tensor(values[t]), torch.zeros(n_envs))
    last_values, dones = rng.normal(size=n_envs), np.array([0.0, 1.0])
    buffer.compute_returns_and_advantage(torch.as_tensor(last_values), dones)
    return buffer, rewards, values, starts, last_values, dones


def test_critic_targets_are_one_step_td_targets_at_lambda_zero():
    buffer, rewards, values, starts, last_values, dones = _filled_critic_target_buffer(critic_lambda=0.0)
    next_values = np.vstack([values[1:], last_values])
    next_live = 1.0 - np.vstack([starts[1:], dones])
    np.testing.assert_allclose(buffer.critic_targets, rewards + 0.9 * next_values * next_live, rtol=1e-5)
    assert buffer.critic_targets[2, 0] == pytest.approx(rewards[2, 0])  # no bootstrap across the episode's end
    # at the rollout's own λ the targets are SB3's TD(λ) returns, and they travel through get() with the rest
    same, *_ = _filled_critic_target_buffer(critic_lambda=0.9, gae_lambda=0.9)
    np.testing.assert_allclose(same.critic_targets, same.returns, rtol=1e-5)
    batch = next(same.get())
    torch.testing.assert_close(batch.critic_targets, batch.returns)
    with pytest.raises(ValueError, match=r"critic_lambda must be in \[0, 1\]"):
        _filled_critic_target_buffer(critic_lambda=1.5)


def test_critic_regresses_on_td_targets_when_critic_lambda_is_set(tmp_path):
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = RelaxDDPG("MlpPolicy", env, n_steps=8, seed=0, device="cpu", cv_net_arch=[32], critic_lambda=0.0)
    model.learn(64)
    batch = next(model.rollout_buffer.get())
    torch.testing.assert_close(model._critic_targets(batch), batch.critic_targets)
    assert not torch.allclose(batch.critic_targets, batch.returns)  # λ_c = 0 is not the rollout's λ = 0.95
    model.save(tmp_path / "td.zip")
    loaded = RelaxDDPG.load(tmp_path / "td.zip", env=env, device="cpu")
    assert loaded.critic_lambda == 0.0 and loaded.rollout_buffer.critic_lambda == 0.0
    default = RelaxDDPG("MlpPolicy", env, n_steps=8, seed=0, device="cpu", cv_net_arch=[32])
    default.learn(16)
    default_batch = next(default.rollout_buffer.get())
    assert not hasattr(default_batch, "critic_targets")
    torch.testing.assert_close(default._critic_targets(default_batch), default_batch.returns)
    with pytest.raises(ValueError, match="critic_lambda must be None or in"):
        RelaxDDPG("MlpPolicy", env, critic_lambda=-0.1)


def test_cv_coef_weights_the_critic_between_reinforce_and_the_lax_estimate():
    """RelaxDDPG takes RelaxA2C's cv_coef: w gives ĝ_off + w (ĝ_on − ĝ_off), where ĝ_off = mean R̂ ∇log π has no
    baseline at all (the critic is the whole baseline) and ĝ_on is the LAX estimate with the critic."""
    model = RelaxDDPG("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), n_steps=8, seed=0, device="cpu",
                      cv_net_arch=[16, 16])
    model.learn(2 * 8 * 4)
    data = next(model.rollout_buffer.get(batch_size=None))
    on, off = model.policy_gradient(data), model.policy_gradient(data, control_variate=False)
    theta = model.policy.theta_parameters()
    _, log_prob, _ = model.policy.evaluate_actions(data.observations, data.actions)
    reinforce = torch.autograd.grad((data.returns * log_prob).mean(), theta, allow_unused=True)
    for g, expected in zip(off, reinforce, strict=True):
        assert (g is None) == (expected is None) and (g is None or torch.allclose(g, expected, atol=1e-6))
    assert any(not torch.allclose(a, b) for a, b in zip(on, off, strict=True) if a is not None)
    model.cv_coef = 0.3
    for g, a, b in zip(model.policy_gradient(data), on, off, strict=True):
        if g is not None:
            torch.testing.assert_close(g, b + 0.3 * (a - b), rtol=1e-5, atol=1e-6)
