"""RelaxA2C: the A2C identity, the stored noise, every action space, φ's separation from θ, bad input."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.envs import IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv

from relax_rl import RelaxA2C


def _seeded(env):
    env.action_space.seed(0)  # SB3's identity envs draw their targets from their own action space
    return env


def _multidiscrete():
    return _seeded(IdentityEnvMultiDiscrete(dim=3, ep_length=10))


def _multibinary():
    return _seeded(IdentityEnvMultiBinary(dim=4, ep_length=10))


ENVS = {
    "discrete": "CartPole-v1",
    "box": "Pendulum-v1",
    "multidiscrete": _multidiscrete,
    "multibinary": _multibinary,
}


def _env(kind):
    spec = ENVS[kind]
    return DummyVecEnv([lambda: gym.make(spec)] * 2) if isinstance(spec, str) else DummyVecEnv([spec] * 2)


def _state(model):
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


@pytest.mark.parametrize("kind", ["discrete", "box", "multidiscrete", "multibinary"])
def test_without_cv_the_update_is_sb3_a2c_bit_for_bit(kind):
    """action_dependent_cv=False is the baseline every comparison uses: it must be A2C, exactly."""
    sb3 = A2C("MlpPolicy", _env(kind), seed=3, n_steps=5, ent_coef=0.01, device="cpu")
    sb3.learn(400)
    ours = RelaxA2C("MlpPolicy", _env(kind), seed=3, n_steps=5, ent_coef=0.01, action_dependent_cv=False,
                    device="cpu")
    ours.learn(400)
    a, b = _state(sb3), _state(ours)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # ... and the cv-on model starts from the same θ (ĉ is built after SB3's networks)
    fresh_sb3 = A2C("MlpPolicy", _env(kind), seed=5, device="cpu")
    fresh_ours = RelaxA2C("MlpPolicy", _env(kind), seed=5, device="cpu")
    a, b = _state(fresh_sb3), _state(fresh_ours)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["discrete", "box", "multidiscrete", "multibinary"])
def test_cv_trains_phi_with_its_own_optimizer_and_theta_without_it(kind):
    model = RelaxA2C("MlpPolicy", _env(kind), seed=0, n_steps=8, device="cpu")
    policy = model.policy
    theta_ids = {id(p) for p in policy.theta_parameters()}
    phi = policy.cv_parameters()
    assert phi and not any(id(p) in theta_ids for p in phi)
    assert theta_ids | {id(p) for p in phi} == {id(p) for p in policy.parameters()}
    assert policy.optimizer is not policy.cv_optimizer
    before_phi = [p.detach().clone() for p in phi]
    before_theta = [p.detach().clone() for p in policy.theta_parameters()]
    model.learn(400)
    assert any(not torch.equal(a, p) for a, p in zip(before_phi, phi, strict=True))
    assert any(not torch.equal(a, p) for a, p in zip(before_theta, policy.theta_parameters(), strict=True))
    logged = model.logger.name_to_value
    assert np.isfinite(logged["train/cv_loss"]) and logged["train/cv_loss"] >= 0


@pytest.mark.parametrize("kind", ["discrete", "multidiscrete", "multibinary"])
def test_stored_noise_reproduces_the_executed_actions(kind):
    """b = H(z(θ, u)) at training time must be the action the env received: same θ, same stored u."""
    model = RelaxA2C("MlpPolicy", _env(kind), seed=1, n_steps=16, device="cpu")
    _, callback = model._setup_learn(total_timesteps=32, callback=None)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=16)
    buffer, policy = model.rollout_buffer, model.policy
    obs = obs_as_tensor(buffer.observations.reshape(-1, *buffer.obs_shape), "cpu")
    u = torch.as_tensor(buffer.noise_u.reshape(-1, buffer.noise_dim))
    with torch.no_grad():
        logits = policy.relaxation.logits(policy.get_distribution(obs))
        _, actions = policy.relaxation.sample(logits, u)
    stored = buffer.actions.reshape(actions.shape[0], -1)
    np.testing.assert_array_equal(actions.reshape(stored.shape).numpy(), stored)
    v = buffer.noise_v
    assert 0 < v.min() and v.max() < 1 and buffer.noise_u.std() > 0.2  # real uniforms, stored


class _DictActionEnv(gym.Env):
    observation_space = spaces.Box(-1, 1, (2,))
    action_space = spaces.Dict({"a": spaces.Discrete(2)})

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, True, False, {}


def test_unsupported_action_space_gets_a_clear_error():
    with pytest.raises(ValueError, match=r"Dict.*supported: Discrete, MultiDiscrete, MultiBinary.*Box"):
        RelaxA2C("MlpPolicy", DummyVecEnv([_DictActionEnv]))


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="cv_loss_space"):
        RelaxA2C("MlpPolicy", "CartPole-v1", cv_loss_space="weights")
    with pytest.raises(ValueError, match="cv_updates_per_step"):
        RelaxA2C("MlpPolicy", "CartPole-v1", cv_updates_per_step=0)
    with pytest.raises(ValueError, match="use_sde"):
        RelaxA2C("MlpPolicy", "Pendulum-v1", use_sde=True)
    with pytest.raises(ValueError, match="cv_update_interval"):
        RelaxA2C("MlpPolicy", "CartPole-v1", cv_update_interval=0)
    with pytest.raises(ValueError, match="cv_regression_coef must be >= 0"):
        RelaxA2C("MlpPolicy", "CartPole-v1", cv_regression_coef=-0.5)
    with pytest.raises(ValueError, match="cv_weight_decay must be >= 0"):
        RelaxA2C("MlpPolicy", "CartPole-v1", cv_weight_decay=-1e-3)
    for bad in ("optimal", -0.5, float("nan"), float("inf"), None, True):
        with pytest.raises(ValueError, match="cv_coef must be a finite number >= 0 or 'auto'"):
            RelaxA2C("MlpPolicy", "CartPole-v1", cv_coef=bad)
    for bound in (0.0, float("inf"), float("nan"), "3", True):
        with pytest.raises(ValueError, match="cv_coef_max .* must be a finite number > 0"):
            RelaxA2C("MlpPolicy", "CartPole-v1", cv_coef="auto", cv_coef_max=bound)
    with pytest.raises(ValueError, match="cv_coef_max bounds the estimated β of cv_coef='auto' only"):
        RelaxA2C("MlpPolicy", "CartPole-v1", cv_coef=0.5, cv_coef_max=3.0)
    with pytest.raises(ValueError, match="Unknown environment 'Cartpole-v1'. Did you mean: CartPole-v1"):
        RelaxA2C("MlpPolicy", "Cartpole-v1")


def test_cv_weight_decay_shrinks_phi_where_the_variance_objective_does_not_hold_it(tmp_path):
    """The decay reaches φ's optimizer only (θ's is untouched), survives save/load, and pulls ĉ's weights to 0."""
    def cv_weight_norm(weight_decay):
        model = RelaxA2C("MlpPolicy", _env("discrete"), n_steps=5, seed=2, device="cpu", cv_weight_decay=weight_decay,
                         cv_learning_rate=1e-2)
        model.learn(2 * 5 * 60)
        return model, float(torch.cat([p.detach().flatten() for p in model.policy.cv_net.parameters()]).norm())

    plain, norm_plain = cv_weight_norm(0.0)
    decayed, norm_decayed = cv_weight_norm(50.0)
    assert decayed.policy.cv_optimizer.param_groups[0]["weight_decay"] == 50.0
    assert plain.policy.cv_optimizer.param_groups[0]["weight_decay"] == 0.0
    assert all(group.get("weight_decay", 0.0) == 0.0 for group in decayed.policy.optimizer.param_groups)
    assert norm_decayed < 0.5 * norm_plain
    decayed.save(tmp_path / "model.zip")
    loaded = RelaxA2C.load(tmp_path / "model.zip", device="cpu")
    assert loaded.cv_weight_decay == 50.0 and loaded.policy.cv_optimizer.param_groups[0]["weight_decay"] == 50.0


@pytest.mark.parametrize("ent_coef, cv_coef", [(0.0, 1.0), (0.01, 1.0), (0.0, 0.3), (0.01, "auto")])
def test_theta_gradient_on_phi_steps_is_the_full_losss_gradient(ent_coef, cv_coef, monkeypatch):
    """On updates that step φ, θ's gradient reuses ∇θ S from the variance objective and backprops only the value
    (and, when ent_coef ≠ 0, entropy) terms itself: the sum must be ∇θ of A2C's whole loss, with ĉ weighted by
    the β that predates the batch when cv_coef ≠ 1."""
    from torch.nn import functional as F

    model = RelaxA2C("MlpPolicy", _env("discrete"), n_steps=6, seed=1, device="cpu", ent_coef=ent_coef,
                     cv_coef=cv_coef)
    model.learn(2 * 6 * 3)
    weight = model._cv_weight()
    assert weight == (0.3 if cv_coef == 0.3 else model._cv_coef_estimator.value if cv_coef == "auto" else 1.0)
    state, data = _state(model), next(model.rollout_buffer.get(batch_size=None))
    batch = model._forward_batch(data, cv_weight=weight)
    loss = (batch["policy_loss"] + ent_coef * -batch["entropy"].mean()
            + model.vf_coef * F.mse_loss(data.returns, batch["values"]))
    theta = model.policy.theta_parameters()
    expected = torch.autograd.grad(loss, theta, allow_unused=True)
    captured = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, *args, **kwargs: captured.extend(p.grad.clone() for p in params))
    model.policy.load_state_dict(state)
    model._train_on_batch(data)
    assert len(captured) == len(theta)
    for e, g in zip(expected, captured, strict=True):
        torch.testing.assert_close(g, torch.zeros_like(g) if e is None else e, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_regression_coef_adds_the_advantage_fit_to_phis_gradient(kind):
    """φ's gradient with cv_regression_coef = k is the variance objective's plus k ∇_φ mean (Â − ĉ(z̃⊥))²."""
    model = RelaxA2C("MlpPolicy", _env(kind), n_steps=6, seed=4, device="cpu")
    model.learn(2 * 6 * 3)  # φ has moved off its zero scale, so ĉ(z̃⊥) is not identically 0
    state, data = _state(model), next(model.rollout_buffer.get(batch_size=None))

    def phi_grads(coef):
        model.policy.load_state_dict(state)
        model.cv_regression_coef = coef
        model._train_on_batch(data)  # steps θ and φ after computing φ's gradient, which stays in .grad
        return [p.grad.clone() for p in model.policy.cv_parameters()]

    variance_only, with_fit = phi_grads(0.0), phi_grads(2.5)
    model.policy.load_state_dict(state)
    model.policy.cv_optimizer.zero_grad()
    c_cut = model._forward_batch(data)["c_z_tilde_cut"].flatten()
    ((data.advantages.flatten() - c_cut) ** 2).mean().backward(inputs=model.policy.cv_parameters())
    fit = [p.grad.clone() for p in model.policy.cv_parameters()]
    assert any(g.abs().max() > 1e-4 for g in fit)
    for v, w, f in zip(variance_only, with_fit, fit, strict=True):
        torch.testing.assert_close(w, v + 2.5 * f, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_cv_update_interval_steps_phi_on_every_kth_update_only(kind):
    model = RelaxA2C("MlpPolicy", _env(kind), n_steps=4, seed=0, device="cpu", cv_update_interval=3)
    phi_history = []

    class RecordPhi(BaseCallback):
        def _on_rollout_start(self) -> None:  # before each collection, i.e. after the previous update
            phi_history.append([p.detach().clone() for p in model.policy.cv_parameters()])

        def _on_step(self) -> bool:
            return True

    model.learn(7 * 2 * 4, callback=RecordPhi())  # 7 updates, numbered 0..6: φ steps on 0, 3 and 6
    phi_history.append([p.detach().clone() for p in model.policy.cv_parameters()])
    moved = [any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
             for before, after in zip(phi_history, phi_history[1:], strict=False)]
    assert moved == [True, False, False, True, False, False, True]
    steps = {float(state["step"]) for state in model.policy.cv_optimizer.state_dict()["state"].values()}
    assert steps == {3.0}


def test_grad_variance_is_logged_where_free_or_when_asked():
    def logged(**kwargs):
        model = RelaxA2C("MlpPolicy", _env("discrete"), n_steps=4, seed=0, device="cpu", **kwargs)
        model.learn(2 * 4 * 6)
        return model.logger.name_to_value.get("train/grad_variance")

    assert logged() > 0  # ĉ on, weights' gradient: reused, free
    assert logged(action_dependent_cv=False) is None  # ĉ off: it would cost a backward pass, so off by default
    assert logged(action_dependent_cv=False, log_grad_variance=True) > 0


class _NaNReward(gym.Wrapper):
    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float("nan"), terminated, truncated, info


@pytest.mark.parametrize("cv", [True, False])
def test_non_finite_update_is_refused_and_parameters_stay_finite(cv):
    model = RelaxA2C("MlpPolicy", DummyVecEnv([lambda: _NaNReward(gym.make("CartPole-v1"))]), n_steps=4,
                     action_dependent_cv=cv, device="cpu", seed=0)
    before = _state(model)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        model.learn(8)
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("cv", [True, False])
def test_non_finite_gradient_with_finite_loss_is_refused(cv):
    """A finite loss whose gradient overflows (here a hook on an actor weight) must stop the update: θ unchanged."""
    model = RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=4, action_dependent_cv=cv, device="cpu", seed=0)
    model.policy.action_net.weight.register_hook(lambda grad: grad * float("inf"))
    before = _state(model)
    with pytest.raises(FloatingPointError, match="non-finite (gradient of the loss|variance objective)"):
        model.learn(8)
    after = _state(model)
    theta = {name for name, p in model.policy.named_parameters()
             if any(p is q for q in model.policy.theta_parameters())}
    assert theta and all(torch.equal(before[k], after[k]) for k in theta)


def test_same_seed_gives_identical_parameters():
    runs = []
    for _ in range(2):
        model = RelaxA2C("MlpPolicy", _env("discrete"), seed=11, n_steps=8, device="cpu")
        model.learn(500)
        runs.append(_state(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("space", ["logits", "params"])
def test_cv_loss_spaces_and_several_phi_steps_train(space):
    model = RelaxA2C("MlpPolicy", _env("discrete"), seed=0, n_steps=8, cv_loss_space=space, cv_updates_per_step=3,
                     cv_learning_rate=lambda progress: 1e-3 * progress, device="cpu")
    phi = [p.detach().clone() for p in model.policy.cv_parameters()]
    model.learn(320)
    assert any(not torch.equal(a, p) for a, p in zip(phi, model.policy.cv_parameters(), strict=True))
    assert model.logger.name_to_value["train/cv_learning_rate"] < 1e-3  # the schedule is applied
    # three φ steps per update: Adam's step count of every φ tensor is 3 × the updates
    steps = {float(state["step"]) for state in model.policy.cv_optimizer.state_dict()["state"].values()}
    assert model._n_updates > 0 and steps == {3.0 * model._n_updates}


@pytest.mark.parametrize("kind", ["discrete", "box", "multidiscrete", "multibinary"])
def test_logits_loss_space_trains_phi_on_every_action_space(kind):
    """cv_loss_space="logits" takes ĝ per sample over the tensors log π is built from (for MultiDiscrete, each
    component's logits): the variance objective must be positive and finite, and φ must move."""
    model = RelaxA2C("MlpPolicy", _env(kind), seed=0, n_steps=5, cv_loss_space="logits", device="cpu")
    phi = [p.detach().clone() for p in model.policy.cv_parameters()]
    model.learn(2 * 5 * 6)
    cv_loss = model.logger.name_to_value["train/cv_loss"]
    assert np.isfinite(cv_loss) and cv_loss > 0
    assert any(not torch.equal(a, p) for a, p in zip(phi, model.policy.cv_parameters(), strict=True))
    # the targets are what log π is built from: per-sample tensors (Box: the mean, and the state-independent
    # log σ) that log π depends on, not θ's weights
    rollout_data = next(model.rollout_buffer.get(batch_size=None))
    batch = model._forward_batch(rollout_data)
    targets = model._estimate_targets(batch["distribution"], model.policy.theta_parameters())
    assert not any(any(t is p for p in model.policy.parameters()) for t in targets[:1])
    n_samples = batch["log_prob"].shape[0]
    per_sample = targets if kind != "box" else targets[:1]
    assert all(t.shape[0] == n_samples for t in per_sample)
    grads = torch.autograd.grad(batch["log_prob"].sum(), targets, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


class _StopAt(BaseCallback):
    def __init__(self, reward: float):
        super().__init__()
        self.reward = reward

    def _on_step(self) -> bool:
        rewards = [info["r"] for info in self.model.ep_info_buffer]
        return not (len(rewards) >= 20 and np.mean(rewards[-20:]) >= self.reward)


def test_relax_a2c_learns_cartpole():
    """The learning test: from a fixed seed, the mean return of the last 20 training episodes reaches 195."""
    from relax_rl.envs import make_env

    model = RelaxA2C("MlpPolicy", make_env("CartPole-v1", n_envs=8, seed=0), seed=0, device="cpu")
    model.learn(60_000, callback=_StopAt(195.0))
    rewards = [info["r"] for info in model.ep_info_buffer]
    assert np.mean(rewards[-20:]) >= 195.0, f"last 20 episodes: {np.mean(rewards[-20:]):.1f}"


def test_cnn_policy_trains_and_cv_reads_detached_features():
    from stable_baselines3.common.envs import FakeImageEnv

    env = DummyVecEnv([lambda: FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=True)])
    model = RelaxA2C("CnnPolicy", env, n_steps=4, seed=0, device="cpu",
                     policy_kwargs={"features_extractor_kwargs": {"features_dim": 16}})
    model.learn(16)
    policy = model.policy
    obs = torch.as_tensor(np.stack([model.observation_space.sample() for _ in range(3)]))  # channel-first
    features = policy.extract_features(obs)
    action_input = torch.rand(3, policy.relaxation.noise_dim)
    c_hat = policy.cv_value(features, action_input)
    cnn_params = list(policy.features_extractor.parameters())
    grads = torch.autograd.grad(c_hat.sum(), cnn_params, allow_unused=True)
    assert all(g is None for g in grads)  # ĉ reads the shared CNN features detached: φ never moves the CNN
    assert policy.cv_net.net[0].in_features == 16 + policy.relaxation.noise_dim


def test_atari_cnn_policy_trains_on_frames_that_are_stacked_and_channel_first():
    from relax_rl.envs import make_env

    env = make_env("ALE/Pong-v5", n_envs=2, seed=0)
    try:
        model = RelaxA2C("CnnPolicy", env, n_steps=4, seed=0, device="cpu")
        assert model.observation_space.shape == (4, 84, 84)
        phi = [p.detach().clone() for p in model.policy.cv_parameters()]
        model.learn(16)
        assert any(not torch.equal(a, p) for a, p in zip(phi, model.policy.cv_parameters(), strict=True))
    finally:
        env.close()


def test_cv_optimizer_runs_foreach_by_default_with_identical_results():
    """φ's Adam defaults to foreach=True (speed); a user's choice wins, and the parameters match foreach=False."""
    def trained(policy_kwargs):
        model = RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=5, action_dependent_cv=True, device="cpu", seed=3,
                         policy_kwargs=policy_kwargs)
        return model, model.learn(400).policy.state_dict()

    default, default_state = trained(None)
    looped, looped_state = trained({"cv_optimizer_kwargs": {"foreach": False}})
    assert default.policy.cv_optimizer.defaults["foreach"] is True
    assert looped.policy.cv_optimizer.defaults["foreach"] is False
    assert all(torch.equal(default_state[k], looped_state[k]) for k in default_state)


def test_cv_optimizer_takes_a_users_fused_choice():
    """foreach is only a default: with fused=True chosen (torch refuses both at once) φ trains with fused Adam."""
    model = RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=5, device="cpu", seed=3,
                     policy_kwargs={"cv_optimizer_kwargs": {"fused": True}})
    assert model.policy.cv_optimizer.defaults["fused"] is True and not model.policy.cv_optimizer.defaults["foreach"]
    phi = [p.detach().clone() for p in model.policy.cv_parameters()]
    model.learn(100)
    assert any(not torch.equal(a, p) for a, p in zip(phi, model.policy.cv_parameters(), strict=True))


@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_cv_coef_weights_c_hat_linearly_in_thetas_estimate(kind):
    """cv_coef = w gives ĝ_off + w (ĝ_on − ĝ_off) on the same batch: 0 is A2C's estimate, 1 RELAX/LAX as trained."""
    model = RelaxA2C("MlpPolicy", _env(kind), n_steps=8, seed=2, device="cpu", cv_learning_rate=1e-2)
    model.learn(2 * 8 * 6)
    assert model.policy.cv_net.scale.item() != 0.0
    data = next(model.rollout_buffer.get(batch_size=None))
    on, off = model.policy_gradient(data), model.policy_gradient(data, control_variate=False)
    assert any(not torch.allclose(a, b) for a, b in zip(on, off, strict=True) if a is not None)
    for weight in (0.0, 0.5):
        model.cv_coef = weight
        for g, a, b in zip(model.policy_gradient(data), on, off, strict=True):
            if g is not None:
                torch.testing.assert_close(g, b + weight * (a - b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bound", [1.0, 50.0])
def test_cv_coef_auto_estimates_beta_logs_it_and_keeps_it_through_save_and_load(tmp_path, bound):
    """β is the running β* clipped to [0, cv_coef_max]. A young ĉ (its output scale grows from 0 at about φ's
    learning rate per step) points the right way but is too small, so β* > 1: the default bound clips it to 1, a
    wider one keeps it. The estimator and its bound survive save/load."""
    from stable_baselines3.common.logger import configure

    model = RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=8, seed=0, device="cpu", cv_coef="auto",
                     cv_coef_max=bound)
    model.set_logger(configure(None, []))
    model.learn(8 * 150)
    estimator = model._cv_coef_estimator
    beta_star = estimator.cross / estimator.norm
    assert estimator.norm > 0 and 1.0 < beta_star < 50.0
    assert estimator.value == min(beta_star, bound)
    assert model.logger.name_to_value["train/cv_coef"] == estimator.value
    model.save(tmp_path / "auto")
    loaded = RelaxA2C.load(tmp_path / "auto", device="cpu")
    assert loaded.cv_coef == "auto" and loaded.cv_coef_max == bound == loaded._cv_coef_estimator.max_value
    if bound > 1.0:  # a bound passed to load() holds from the next batch on
        rebound = RelaxA2C.load(tmp_path / "auto", device="cpu", cv_coef_max=1.0)
        assert rebound._cv_weight() == 1.0 and rebound._cv_coef_estimator.max_value == 1.0
        with pytest.raises(ValueError, match="cv_coef_max .* must be a finite number > 0"):
            RelaxA2C.load(tmp_path / "auto", device="cpu", cv_coef_max=0.0)
    assert (loaded._cv_coef_estimator.value, loaded._cv_coef_estimator.cross, loaded._cv_coef_estimator.norm) == (
        estimator.value, estimator.cross, estimator.norm)
    obs = model.get_env().reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
