"""``cv_advantage_scale``: ĉ = σ̂ · ĉ_net, with σ̂ a running std of Â over the batches before each one."""

import numpy as np
import pytest
import torch
from stable_baselines3.common.logger import configure

from relax_rl import RelaxA2C, RelaxDDPG


def _model(n_steps=20, **kwargs):
    model = RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=n_steps, seed=0, device="cpu", **kwargs)
    model.set_logger(configure(None, []))
    return model


def test_sigma_hat_averages_the_std_of_the_batches_before_and_every_c_hat_term_uses_it(monkeypatch):
    """Batch k's ĉ (all its terms, θ's and φ's) is σ̂_k · ĉ_net with σ̂_0 = 1 and σ̂_k the bias-corrected moving
    average of std(Â) over batches 0..k−1: no batch's ĉ depends on its own Â."""
    model = _model(cv_advantage_scale=True)
    policy = model.policy
    seen_multipliers, advantage_stds, batch_multipliers = [], [], []
    original_train_on_batch, original_cv_value = RelaxA2C._train_on_batch, type(policy).cv_value

    def train_on_batch(self, rollout_data):
        batch_multipliers.append(policy.cv_output_multiplier.item())
        stats = original_train_on_batch(self, rollout_data)
        advantage_stds.append(stats["advantages"].std().item())
        return stats

    def cv_value(self, features, action_input):
        seen_multipliers.append((len(batch_multipliers), self.cv_output_multiplier.item()))
        out = original_cv_value(self, features, action_input)
        unscaled = self.cv_net(torch.cat([features.detach(), action_input], dim=-1))
        torch.testing.assert_close(out, self.cv_output_multiplier * unscaled)
        return out

    monkeypatch.setattr(RelaxA2C, "_train_on_batch", train_on_batch)
    monkeypatch.setattr(type(policy), "cv_value", cv_value)
    model.learn(20 * 12)

    decay = policy.cv_advantage_scale_decay
    expected, average = [1.0], 0.0
    for k, std in enumerate(advantage_stds[:-1], start=1):
        average = decay * average + (1 - decay) * std
        expected.append(average / (1 - decay**k))
    np.testing.assert_allclose(batch_multipliers, expected, rtol=1e-5)
    assert expected[-1] > 3.0  # CartPole's Â spread: far from the 1 ĉ would otherwise be measured in
    for batch, multiplier in seen_multipliers:
        assert multiplier == pytest.approx(batch_multipliers[batch - 1], rel=1e-6)
    # the logged σ̂ is the last batch's, the one its ĉ used
    assert model.logger.name_to_value["train/cv_advantage_scale"] == pytest.approx(batch_multipliers[-1])
    assert policy.cv_output_multiplier.item() != pytest.approx(batch_multipliers[-1])


def test_c_hat_tracks_the_advantages_scale_only_with_the_option():
    """ĉ's weights move by about φ's learning rate per step, so on a task whose Â spreads by ~10 ĉ stays ~1000×
    smaller than Â without σ̂; with it, ĉ's spread relative to Â's is larger by about σ̂."""
    ratios = {}
    for scaled in (False, True):
        model = _model(n_steps=100, cv_advantage_scale=scaled)
        model.learn(100 * 30)
        data = next(model.rollout_buffer.get(batch_size=None))
        batch = model._forward_batch(data)
        ratios[scaled] = batch["c_z"].std().item() / batch["advantages"].std().item()
    assert ratios[True] > 5 * ratios[False], ratios


def test_sigma_hat_survives_save_and_load_and_cannot_be_switched_on_load(tmp_path):
    model = _model(cv_advantage_scale=True)
    model.learn(20 * 5)
    model.save(tmp_path / "scaled")
    loaded = RelaxA2C.load(tmp_path / "scaled", device="cpu")
    assert loaded.cv_advantage_scale and loaded.policy.cv_advantage_scale
    assert loaded.policy.cv_output_multiplier.item() == model.policy.cv_output_multiplier.item() > 1.0
    data = next(model.rollout_buffer.get(batch_size=None))
    torch.testing.assert_close(loaded._forward_batch(data)["c_z"], model._forward_batch(data)["c_z"])
    obs = model.get_env().reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    with pytest.raises(ValueError, match="does not match the policy"):
        RelaxA2C.load(tmp_path / "scaled", device="cpu", cv_advantage_scale=False)
    old = _model()  # a model saved before the option existed: neither the model nor its policy kwargs name it
    del old.cv_advantage_scale, old.policy_kwargs["cv_advantage_scale"]
    old.save(tmp_path / "plain")
    with pytest.raises(ValueError, match="does not match the policy"):
        RelaxA2C.load(tmp_path / "plain", device="cpu", cv_advantage_scale=True)
    plain = RelaxA2C.load(tmp_path / "plain", device="cpu")
    assert plain.policy.cv_output_multiplier is None and "cv_advantage_std_average" not in plain.policy.state_dict()


def test_sigma_hat_skips_batches_without_a_spread_and_the_option_is_refused_where_it_does_not_apply():
    policy = _model(cv_advantage_scale=True).policy
    for advantages in (torch.ones(5), torch.tensor([2.0]), torch.tensor([0.0, float("nan")])):
        policy.observe_advantages(advantages)
    assert policy.cv_advantage_batches.item() == 0 and policy.cv_output_multiplier.item() == 1.0
    assert _model(cv_advantage_scale=True, action_dependent_cv=False).policy.cv_output_multiplier is None
    ddpg = RelaxDDPG("MlpPolicy", "Pendulum-v1", n_steps=8, device="cpu")
    with pytest.raises(ValueError, match="cv_advantage_scale is for RelaxA2C's ĉ only"):
        type(ddpg.policy)(ddpg.observation_space, ddpg.action_space, lambda _: 1e-3, cv_advantage_scale=True)
    with pytest.raises(ValueError, match="needs batches of at least 2 transitions .* n_envs=1 x n_steps=1"):
        RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=1, cv_advantage_scale=True, device="cpu")
    RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=2, cv_advantage_scale=True, device="cpu")  # the smallest batch
