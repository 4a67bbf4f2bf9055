"""RelaxA2C is an SB3 algorithm: callbacks, progress bar, VecEnvs, VecNormalize, set_env, predict,
evaluate_policy, save/load in a fresh process, and TensorBoard keys read back from the event file."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize

from relax_rl import RelaxA2C


def test_callbacks_progress_bar_and_evaluation(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=100)
    model = RelaxA2C("MlpPolicy", env, n_steps=8, seed=0, device="cpu")
    eval_cb = EvalCallback(eval_env, eval_freq=100, n_eval_episodes=2, log_path=str(tmp_path / "eval"),
                           best_model_save_path=str(tmp_path / "best"))
    ckpt_cb = CheckpointCallback(save_freq=100, save_path=str(tmp_path / "ckpt"), name_prefix="relax")
    model.learn(480, callback=[eval_cb, ckpt_cb], progress_bar=True)
    evaluations = np.load(tmp_path / "eval" / "evaluations.npz")
    assert evaluations["results"].shape == (2, 2)  # evaluations at 200 and 400 timesteps, 2 episodes each
    assert (tmp_path / "best" / "best_model.zip").exists()
    checkpoints = sorted(os.listdir(tmp_path / "ckpt"))
    assert checkpoints == ["relax_200_steps.zip", "relax_400_steps.zip"]
    # a checkpoint loads and carries φ
    loaded = RelaxA2C.load(tmp_path / "ckpt" / checkpoints[-1], device="cpu")
    assert len(loaded.policy.cv_parameters()) > 0
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=3)
    assert 8 <= mean <= 500 and std >= 0


def test_subproc_vecnormalize_set_env_and_predict():
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv))
    try:
        model = RelaxA2C("MlpPolicy", env, n_steps=8, seed=0, device="cpu")
        model.learn(160)
        assert env.obs_rms.count > 100  # statistics were updated through the learning loop
        obs = env.reset()
        det_a, _ = model.predict(obs, deterministic=True)
        det_b, _ = model.predict(obs, deterministic=True)
        np.testing.assert_array_equal(det_a, det_b)
        draws = np.stack([model.predict(obs, deterministic=False)[0] for _ in range(5)])
        assert draws.std(axis=0).max() > 0  # stochastic predictions differ
        assert np.all(np.abs(det_a) <= 2.0) and det_a.shape == (2, 1)
    finally:
        env.close()
    new_env = make_vec_env("Pendulum-v1", n_envs=2, seed=1)
    model.set_env(new_env)
    model.learn(48, reset_num_timesteps=False)
    assert model.get_env() is new_env and model.num_timesteps >= 160 + 48


_CHILD = r"""
import json, sys, numpy as np, torch
from relax_rl import RelaxA2C
path, obs_path, out_path = sys.argv[1:4]
model = RelaxA2C.load(path, device="cpu")
obs = np.load(obs_path)
actions, _ = model.predict(obs, deterministic=True)
phi = [p.detach().numpy().tolist() for p in model.policy.cv_parameters()]
cv_state = model.policy.cv_optimizer.state_dict()["state"]
steps = sorted(float(s["step"]) for s in cv_state.values())
from stable_baselines3.common.env_util import make_vec_env
model.set_env(make_vec_env("CartPole-v1", n_envs=2, seed=5))
before = [p.detach().clone() for p in model.policy.cv_parameters()]
model.learn(64, reset_num_timesteps=False)
moved = any(not torch.equal(a, p) for a, p in zip(before, model.policy.cv_parameters()))
json.dump({"actions": actions.tolist(), "phi": phi, "cv_steps": steps, "moved": moved,
           "num_timesteps": model.num_timesteps}, open(out_path, "w"))
"""


def test_save_load_round_trip_in_a_fresh_process(tmp_path):
    model = RelaxA2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=8, seed=0, device="cpu",
                     cv_net_arch=[16])
    model.learn(320)
    path = tmp_path / "model.zip"
    model.save(path)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "obs.npy"), str(tmp_path / "out.json")],
                   check=True, capture_output=True)
    child = json.loads((tmp_path / "out.json").read_text())
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(np.asarray(child["actions"]), expected)
    for theirs, ours in zip(child["phi"], model.policy.cv_parameters(), strict=True):
        np.testing.assert_array_equal(np.asarray(theirs, dtype=np.float32), ours.detach().numpy())
    ours_steps = sorted(float(s["step"]) for s in model.policy.cv_optimizer.state_dict()["state"].values())
    assert child["cv_steps"] == ours_steps and ours_steps[0] == model._n_updates  # Adam state restored
    assert child["moved"] and child["num_timesteps"] >= 320 + 64  # and training continues
    assert len(model.policy.cv_net.net[0].weight[0]) == 4 + 2  # cv_net_arch and inputs survived


def test_tensorboard_has_sb3_and_relax_keys(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = RelaxA2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=16, seed=0, device="cpu",
                     tensorboard_log=str(tmp_path))
    model.learn(640, log_interval=2, tb_log_name="tb")
    run_dir = tmp_path / "tb_1"
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    expected = {
        "train/cv_loss", "train/grad_variance", "train/cv_temperature", "train/cv_advantage_corr",
        "train/cv_scale", "train/cv_learning_rate", "train/policy_loss", "train/value_loss",
        "train/entropy_loss", "train/explained_variance", "rollout/ep_rew_mean", "time/fps",
    }
    assert expected <= tags, expected - tags
    cv_loss = [event.value for event in accumulator.Scalars("train/cv_loss")]
    assert len(cv_loss) >= 5 and all(np.isfinite(cv_loss)) and min(cv_loss) >= 0
    temperature = [event.value for event in accumulator.Scalars("train/cv_temperature")]
    assert all(t > 0 for t in temperature)


def test_cv_diagnostics_match_their_definitions():
    """train/cv_advantage_corr is Pearson's r of (ĉ(z̃⊥), Â) and the residual ratio is Var(Â − ĉ) / Var(Â)."""
    import torch

    model = RelaxA2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=8, seed=0, device="cpu")
    model.learn(32)
    generator = torch.Generator().manual_seed(0)
    advantages = torch.randn(40, 1, generator=generator)
    c_hat = (0.6 * advantages + 0.5 * torch.randn(40, 1, generator=generator)).requires_grad_()
    model._record_cv_diagnostics([0.25], advantages.flatten(), c_hat)
    logged = model.logger.name_to_value
    a, c = advantages.numpy().ravel(), c_hat.detach().numpy().ravel()
    assert logged["train/cv_loss"] == 0.25
    assert logged["train/cv_advantage_corr"] == pytest.approx(np.corrcoef(c, a)[0, 1], rel=1e-6)
    assert logged["train/cv_advantage_residual_ratio"] == pytest.approx(np.var(a - c) / np.var(a), rel=1e-6)
    model.logger.name_to_value.clear()  # a constant ĉ has no correlation to report
    model._record_cv_diagnostics([0.25], advantages.flatten(), torch.zeros(40, 1))
    assert "train/cv_advantage_corr" not in model.logger.name_to_value
    assert model.logger.name_to_value["train/cv_advantage_residual_ratio"] == pytest.approx(1.0)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_a_model_saved_on_the_cpu_trains_on_after_loading_on_a_gpu(tmp_path):
    """Everything the model carries across save/load follows it to the new device (the running gradient
    variance's mean included)."""
    model = RelaxA2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=8, seed=0, device="cpu")
    model.learn(64)
    model.save(tmp_path / "cpu_model")
    loaded = RelaxA2C.load(tmp_path / "cpu_model", env=make_vec_env("CartPole-v1", n_envs=2, seed=1), device="cuda")
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps == 128 and np.isfinite(loaded.logger.name_to_value["train/grad_variance"])
