"""``cv_value_input``: ĉ also reads the critic's V(s), detached, as symlog(V) = sign(V) log(1 + |V|).

ĉ must depend on V, a saved model must keep the option, and θ's estimate must stay unbiased with a large ĉ
that reads V. The bandit has one observation, so there V is one number per batch: the z-test is the large-ĉ
test with V as an extra input. What it adds: a V that carried θ's gradient would put the value head into the
estimate, which ``_max_z``'s check of the estimated parameters catches (checked by removing the detaches).
"""

import pytest
import torch
from test_agent_unbiased import _amplify_cv, _max_z, _new_model
from test_segment_position import c_hat_terms, saved_and_loaded

from relax_rl import RelaxA2C, RelaxDDPG


@pytest.mark.parametrize("continuous", [False, True], ids=["relax-discrete", "lax-continuous"])
def test_c_hat_reads_the_value_and_the_estimate_stays_unbiased(continuous):
    model = _new_model(continuous, cv_value_input=True)
    model.learn(400)
    _amplify_cv(model)
    policy = model.policy
    action_inputs = 1 if continuous else 4
    assert policy.cv_net.net[0].in_features == 2 + action_inputs + 1
    features, action = torch.zeros(5, 2), torch.rand(5, action_inputs)
    low, high = (policy.cv_value(policy._cv_state_inputs(features, None, torch.full((5,), v)), action)
                 for v in (0.0, 1.0))
    assert (low - high).abs().min() > 1e-3  # ĉ depends on V: the check below is not vacuous
    values = torch.tensor([-(torch.e - 1), 0.0, 99.0])
    assert torch.allclose(policy._cv_state_inputs(torch.zeros(3, 2), None, values)[:, -1],
                          torch.tensor([-1.0, 0.0, torch.log(torch.tensor(100.0))]))  # symlog, not V itself
    with pytest.raises(ValueError, match="pass values"):
        policy._cv_state_inputs(features, None, None)
    worst, _ = _max_z(model, continuous)
    assert worst < 4.5


def test_value_input_survives_save_and_load(tmp_path):
    model, loaded, rollout = saved_and_loaded(tmp_path, cv_value_input=True, cv_segment_position=True)
    assert loaded.cv_value_input and loaded.policy.cv_value_input
    # the saved weights, on the same batch (V read from each model's own critic)
    saved = c_hat_terms(model, rollout)
    assert torch.equal(saved, c_hat_terms(loaded, rollout))
    assert not torch.equal(c_hat_terms(model, rollout, value_shift=1.0), saved)  # and they do read V
    loaded.set_env(model.get_env())
    loaded.learn(200, reset_num_timesteps=False)


def test_value_input_needs_c_hat_and_reaches_the_ddpg_critic():
    model = RelaxA2C("MlpPolicy", "CartPole-v1", action_dependent_cv=False, cv_value_input=True)
    assert not model.cv_value_input and not hasattr(model.policy, "cv_net")
    ddpg = RelaxDDPG("MlpPolicy", "Pendulum-v1", n_steps=4, cv_value_input=True, seed=0, device="cpu")
    assert ddpg.policy.cv_net.net[0].in_features == 3 + 1 + 1
    ddpg.learn(8)
