"""RelaxA2C's policy-gradient estimate is unbiased for ∇J, with ĉ trained, on one-step bandits where ∇J is exact.

Episodes last one step, so the return is the reward and Â = r − V(s): the batch estimate of
``relax_rl.diagnostics.gradient_estimates`` must average to ∇_θ Σ_a π_θ(a|s) r(a) (discrete) or
∇_θ E_{a~N(μ,σ)}[r(a)] (continuous) for every policy weight, whatever ĉ_φ has learned.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from relax_rl import RelaxA2C
from relax_rl.agents import relaxations
from relax_rl.diagnostics import _a2c_policy_gradient, gradient_estimates, gradient_variance, paired_gradient_estimates

OBS = np.array([1.0, -0.5], dtype=np.float32)
DISCRETE_REWARDS = np.array([1.0, 0.0, 2.5, 0.5])
TARGET = 0.4


class OneStepBandit(gym.Env):
    """A constant observation, one action, reward r(a), done."""

    observation_space = spaces.Box(-2.0, 2.0, (2,), dtype=np.float32)

    def __init__(self, continuous: bool = False, bound: float = 100.0):
        self.continuous = continuous
        self.action_space = (spaces.Box(-bound, bound, (1,), dtype=np.float32) if continuous
                             else spaces.Discrete(len(DISCRETE_REWARDS)))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return OBS.copy(), {}

    def step(self, action):
        if self.continuous:
            reward = -float((np.asarray(action).reshape(-1)[0] - TARGET) ** 2)
        else:
            reward = float(DISCRETE_REWARDS[int(action)])
        return OBS.copy(), reward, True, False, {}


def _exact_gradient(model, continuous):
    policy = model.policy
    obs = torch.as_tensor(OBS).unsqueeze(0)
    dist = policy.get_distribution(obs)
    if continuous:
        mean, std = dist.distribution.mean[0, 0], dist.distribution.stddev[0, 0]
        objective = -((mean - TARGET) ** 2 + std**2)
    else:
        objective = (dist.distribution.probs[0] * torch.as_tensor(DISCRETE_REWARDS, dtype=torch.float32)).sum()
    names = dict(policy.named_parameters())
    keys = [k for k, p in names.items() if p.requires_grad]
    grads = torch.autograd.grad(objective, [names[k] for k in keys], allow_unused=True)
    return {k: g.numpy() for k, g in zip(keys, grads, strict=True) if g is not None}


_TRAINED: dict[bool, dict] = {}


def _new_model(continuous, seed=0, **kwargs):
    env = DummyVecEnv([lambda: OneStepBandit(continuous)] * 8)
    return RelaxA2C("MlpPolicy", env, n_steps=2, seed=seed, device="cpu", learning_rate=1e-4,
                    cv_learning_rate=3e-3, policy_kwargs={"net_arch": [8]}, **kwargs)


def _trained_model(continuous):
    """A model whose ĉ has trained for 4000 steps (θ moves slowly at this learning rate); trained once per module."""
    model = _new_model(continuous)
    if continuous not in _TRAINED:
        model.learn(4000)
        assert abs(model.policy.cv_net.scale.item()) > 0.05, "ĉ should have learned something"
        _TRAINED[continuous] = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.policy.load_state_dict(_TRAINED[continuous])
    return model


def _max_z(model, continuous, n_batches=2000):
    estimates = gradient_estimates(model, n_batches=n_batches, seed=1)
    exact = _exact_gradient(model, continuous)
    # the estimate reaches exactly the actor's parameters (a parameter it cannot reach would drop out unchecked)
    assert set(estimates) == set(exact), set(exact) ^ set(estimates)
    worst = 0.0
    for name, values in estimates.items():
        flat = values.reshape(values.shape[0], -1)
        se = flat.std(axis=0, ddof=1) / np.sqrt(flat.shape[0])
        diff = flat.mean(axis=0) - exact[name].reshape(-1)
        ok = se > 1e-9
        assert np.all(np.abs(diff[~ok]) < 1e-6)
        worst = max(worst, float(np.max(np.abs(diff[ok] / se[ok]))))
    return worst, estimates


@pytest.mark.parametrize("continuous", [False, True], ids=["relax-discrete", "lax-continuous"])
def test_agent_gradient_is_unbiased_with_trained_cv(continuous):
    model = _trained_model(continuous)
    worst, estimates = _max_z(model, continuous)
    assert worst < 4.5, f"max |z| = {worst:.2f} over {sum(v[0].size for v in estimates.values())} coordinates"
    assert "value_net.weight" not in estimates  # the estimate is for the actor
    assert gradient_variance(estimates)["total_variance"] > 0


def _amplify_cv(model, scale=3.0):
    """A large ĉ that varies strongly with the relaxed action: any ĉ keeps the estimate unbiased, and this one
    makes a wrong estimator's bias visible."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.policy.cv_net.net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, 1.5, generator=generator)
        model.policy.cv_net.scale.fill_(scale)


def test_agent_gradient_stays_unbiased_with_a_large_cv():
    model = _trained_model(False)
    _amplify_cv(model)
    worst, _ = _max_z(model, False)
    assert worst < 4.5


@pytest.mark.parametrize("weight", [0.4, 3.0])
@pytest.mark.parametrize("continuous", [False, True], ids=["relax-discrete", "lax-continuous"])
def test_agent_gradient_stays_unbiased_with_a_weighted_cv(continuous, weight):
    """A fixed β = cv_coef ≠ 1 weights every ĉ term alike: still unbiased with a large ĉ, shrunk (0.4) or scaled up
    (3, a value "auto" can reach once cv_coef_max > 1; "auto"'s β is fixed before each batch in the same way)."""
    model = _trained_model(continuous)
    _amplify_cv(model)
    model.cv_coef = weight
    worst, _ = _max_z(model, continuous)
    assert worst < 4.5


@pytest.mark.parametrize("continuous", [False, True], ids=["relax-discrete", "lax-continuous"])
def test_agent_gradient_stays_unbiased_with_an_advantage_scaled_cv(continuous):
    """``cv_advantage_scale`` multiplies every ĉ term by σ̂, fixed during a batch: a large σ̂ (5) on a large ĉ keeps
    the estimate unbiased, and measuring it leaves σ̂ as it was."""
    model = _new_model(continuous, cv_advantage_scale=True)
    model.learn(16 * 20)
    _amplify_cv(model)
    policy = model.policy
    policy.cv_advantage_std_average.fill_(5.0 * (1 - policy.cv_advantage_scale_decay ** 20))
    policy.cv_advantage_batches.fill_(20)
    assert policy.cv_output_multiplier.item() == pytest.approx(5.0)
    worst, _ = _max_z(model, continuous)
    assert worst < 4.5
    assert policy.cv_output_multiplier.item() == pytest.approx(5.0)


def test_detaching_the_conditional_sample_is_caught(monkeypatch):
    """Negative control: the same check rejects a RELAX agent whose z̃ is cut from θ."""
    model = _trained_model(False)
    _amplify_cv(model)
    original = relaxations.ActionRelaxation.conditional
    monkeypatch.setattr(relaxations.ActionRelaxation, "conditional",
                        lambda self, *args: original(self, *args).detach())
    worst, _ = _max_z(model, False)
    assert worst > 8.0  # measured 18 with 1000 batches: the bias is E[∇_θ ĉ(z̃)]


def test_gradient_estimates_leave_the_model_unchanged():
    model = _new_model(False)
    gradient_estimates(model, n_batches=3)  # works on a model that never called learn()
    assert model.ep_info_buffer is None
    model.learn(64)
    state = {k: v.clone() for k, v in model.policy.state_dict().items()}
    counters = (model.num_timesteps, list(model.ep_info_buffer), model._n_updates)
    gradient_estimates(model, n_batches=5)
    assert counters == (model.num_timesteps, list(model.ep_info_buffer), model._n_updates)
    assert all(torch.equal(state[k], v) for k, v in model.policy.state_dict().items())
    with pytest.raises(ValueError, match="n_batches"):
        gradient_estimates(model, n_batches=1)


@pytest.mark.parametrize("continuous", [False, True])
def test_paired_estimates_share_their_batches_and_c_hat_off_is_a2cs_estimator(continuous):
    """Evaluated on the same rollouts, ĉ ≡ 0 is A2C's Â ∇log π batch for batch, and ĉ on differs from it by its
    terms alone (identical once ĉ's scale is 0)."""
    model = _trained_model(continuous)
    theta = model.policy.theta_parameters()
    estimators = {"on": model.policy_gradient, "off": lambda data: model.policy_gradient(data, control_variate=False),
                  "a2c": lambda data: _a2c_policy_gradient(model, data, theta)}
    est = paired_gradient_estimates(model, 6, estimators, seed=3)
    for name in est["off"]:
        np.testing.assert_allclose(est["off"][name], est["a2c"][name], rtol=1e-5, atol=1e-7)
    assert max(np.abs(est["on"][k] - est["off"][k]).max() for k in est["on"]) > 1e-4  # ĉ is live here
    with torch.no_grad():
        model.policy.cv_net.scale.zero_()
    est = paired_gradient_estimates(model, 6, estimators, seed=3)
    for name in est["on"]:
        np.testing.assert_allclose(est["on"][name], est["off"][name], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="no estimators"):
        paired_gradient_estimates(model, 3, {})


def test_gradient_estimates_reject_what_they_cannot_measure():
    from stable_baselines3 import DDPG

    with pytest.raises(ValueError, match="on-policy actor-critic models .* got DDPG"):
        gradient_estimates(DDPG("MlpPolicy", "Pendulum-v1", device="cpu"), n_batches=4)
    with pytest.raises(ValueError, match="n_batches must be >= 2"):
        gradient_estimates(_new_model(continuous=False), n_batches=1)


def test_gradient_estimates_leave_the_model_in_step_with_its_env():
    """The env steps on during the measurement: the model's last observation must be the env's current one (so a
    later learn(reset_num_timesteps=False) pairs each observation with its own state), and its counters unchanged."""
    from relax_rl.envs import make_env

    model = RelaxA2C("MlpPolicy", make_env("CartPole-v1", n_envs=2, seed=0), n_steps=5, seed=0, device="cpu")
    model.learn(50)
    steps, episodes = model.num_timesteps, model._episode_num
    gradient_estimates(model, n_batches=3, seed=1)
    state = np.array([env.unwrapped.state for env in model.get_env().envs], dtype=np.float32)
    np.testing.assert_array_equal(model._last_obs, state)
    assert (model.num_timesteps, model._episode_num) == (steps, episodes)
