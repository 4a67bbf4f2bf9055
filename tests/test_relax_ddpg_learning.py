"""RelaxDDPG learns InvertedPendulum-v5 from a fixed seed, and experiments/relax_ddpg_learning.py reports budgets."""

import json
import os
import sys

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from relax_rl import RelaxDDPG
from relax_rl.envs import make_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import relax_ddpg_learning  # noqa: E402


def test_learning_experiment_writes_budgets(tmp_path):
    out = tmp_path / "out"
    metrics = relax_ddpg_learning.main(["--envs", "InvertedPendulum-v5", "--seeds", "0", "-n", "512",
                                        "--eval-freq", "256", "--out", str(out),
                                        "--variant", "no-regression", "cv_regression_coef=0"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps(metrics))
    arms = metrics["InvertedPendulum-v5"]
    assert set(arms) == {"default", "no-regression"}
    run = arms["default"]["runs"][0]
    assert run["eval_timesteps"] == [256, 512] and run["n_timesteps"] >= 512
    expected = relax_ddpg_learning.first_reaching(np.array(run["eval_timesteps"]), np.array(run["eval_means"]), 950)
    assert run["timesteps_to_threshold"] == expected
    assert "| InvertedPendulum-v5 | no-regression | 950 |" in (out / "learning.md").read_text()


class _StopWhenSolved(BaseCallback):
    """Stop once the last 20 training episodes average ≥ 950 (InvertedPendulum's maximum is 1000)."""

    def _on_step(self) -> bool:
        rewards = [info["r"] for info in self.model.ep_info_buffer]
        return not (len(rewards) >= 20 and np.mean(rewards[-20:]) >= 950)


def test_relax_ddpg_learns_inverted_pendulum():
    torch.set_num_threads(1)
    env = make_env("InvertedPendulum-v5", n_envs=8, seed=0, normalize=True)
    model = RelaxDDPG("MlpPolicy", env, seed=0, device="cpu", n_steps=8, gamma=0.98, gae_lambda=0.9,
                      learning_rate=lambda progress: 1e-3 * progress)
    model.learn(300_000, callback=_StopWhenSolved())
    rewards = [info["r"] for info in model.ep_info_buffer]
    assert np.mean(rewards[-20:]) >= 950, np.mean(rewards[-20:])
