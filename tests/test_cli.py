"""The training CLI (relax_rl.cli): run directories, config round trip, resume, config files, packaged configs,
user errors (one ``error:`` line, exit status 2) and the SB3 baselines through the same pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from stable_baselines3.common.callbacks import BaseCallback

import relax_rl.agents
from relax_rl.cli import ALGOS, format_summary, get_algo_class, main, train
from relax_rl.hyperparams import (
    SPECIAL_KEYS,
    accepted_keys,
    build_algo_kwargs,
    canonicalize,
    load_packaged_config,
    packaged_config_algos,
    parse_overrides,
    validate_keys,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ("relax-a2c", "a2c", "ppo", "ddpg", "td3")
CONTINUOUS = {"Pendulum-v1", "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "LunarLanderContinuous-v3"}
DISCRETE = {"CartPole-v1", "Acrobot-v1", "LunarLander-v3"}

pytestmark = pytest.mark.filterwarnings("ignore:builtin type [Ss]wig.*:DeprecationWarning")


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default logs/ and runs/ (and MuJoCo's log file) land in tmp_path


def _args(tmp_path: Path, *extra: str, n: int = 256, algo: str = "relax-a2c", env: str = "CartPole-v1") -> list[str]:
    return ["--algo", algo, "--env", env, "-n", str(n), "--seed", "3", "--no-progress", "--verbose", "0",
            "--log-folder", str(tmp_path / "logs"), "--tensorboard-log", "", "--eval-episodes", "2", *extra]


def _monitor_rows(run_dir: str | Path) -> int:
    return sum(len(pd.read_csv(path, skiprows=1)) for path in Path(run_dir).rglob("*.monitor.csv"))


def _config(run_dir: str | Path) -> dict:
    return yaml.safe_load((Path(run_dir) / "config.yml").read_text())


# ---------------------------------------------------------------------------------------------------------------
# a run and its files
# ---------------------------------------------------------------------------------------------------------------
def test_relax_a2c_run_writes_the_run_directory(tmp_path, capsys):
    argv = _args(tmp_path, "--tensorboard-log", str(tmp_path / "runs"), "--eval-freq", "128", "--save-freq", "128",
                 "--hyperparams", "n_envs=2", "n_steps=8", "learning_rate=lin_1e-3", "normalize=True",
                 "policy_kwargs=dict(net_arch=[16], activation_fn=nn.ReLU)")
    result = train(argv)
    run_dir = Path(result.run_dir)
    assert run_dir == tmp_path / "logs" / "relax-a2c" / "CartPole-v1_1"
    for name in ("config.yml", "0.monitor.csv", "1.monitor.csv", "evaluations.npz", "best_model.zip",
                 "CartPole-v1.zip", "vecnormalize.pkl", "checkpoints/rl_model_128_steps.zip",
                 "checkpoints/rl_model_vecnormalize_128_steps.pkl"):
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in run_dir.rglob("*.monitor.csv")) == ["0.monitor.csv", "1.monitor.csv"]  # no eval
    config = _config(run_dir)
    hp = config["hyperparams"]
    assert hp["n_steps"] == 8 and isinstance(hp["n_steps"], int)
    assert hp["learning_rate"] == "lin_1e-3" and hp["normalize"] is True and hp["action_dependent_cv"] is True
    assert hp["policy_kwargs"] == {"net_arch": [16], "activation_fn": "nn.ReLU"}
    assert config["seed"] == 3 and config["algo"] == "relax-a2c" and config["env"] == "CartPole-v1"
    assert config["env_settings"]["normalize_kwargs"] == {"norm_obs": True, "norm_reward": True, "gamma": 0.99}
    assert set(config["versions"]) >= {"relax-rl", "torch", "stable-baselines3"}
    # the CPU kernels torch chose: the same seed and versions can train differently where they differ
    assert config["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert 1 <= config["machine"]["cores"] <= os.cpu_count()
    assert config["machine"]["torch_threads"] == torch.get_num_threads()
    assert "--hyperparams n_envs=2 n_steps=8" in config["command"]
    assert result.num_timesteps >= 256 and result.episodes == _monitor_rows(run_dir) > 0
    assert result.eval_mean is not None and result.eval_std >= 0 and not result.interrupted
    evaluations = np.load(run_dir / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [128, 256] and evaluations["results"].shape == (2, 2)
    assert list((tmp_path / "runs" / "relax-a2c" / "CartPole-v1_1").glob("events.out.tfevents.*"))
    summary = format_summary(result)
    assert str(run_dir) in summary and f"{result.episodes} (training" in summary
    assert "tensorboard --logdir" in summary and "±" in summary

    # a second run of the same algo/env gets the next id; main prints the summary
    assert main(_args(tmp_path, "-n", "64", "--eval-freq", "-1", "--save-freq", "-1", "--hyperparams", "n_envs=2")) == 0
    out = capsys.readouterr().out
    assert "CartPole-v1_2" in out and "final eval" in out
    second = tmp_path / "logs" / "relax-a2c" / "CartPole-v1_2"
    assert (second / "CartPole-v1.zip").is_file() and not (second / "evaluations.npz").exists()
    assert not (second / "checkpoints").exists()


def test_same_seed_same_run(tmp_path):
    runs = [train(_args(tmp_path, "-n", "128", "--eval-freq", "-1", "--save-freq", "-1",
                        "--hyperparams", "n_envs=2", "n_steps=8")) for _ in range(2)]
    frames = [pd.concat([pd.read_csv(p, skiprows=1)[["r", "l"]] for p in sorted(Path(r.run_dir).glob("*.csv"))])
              for r in runs]
    assert frames[0].equals(frames[1]) and runs[0].eval_mean == runs[1].eval_mean


class _InterruptAt(BaseCallback):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.steps:
            raise KeyboardInterrupt
        return True


class _RecordStart(BaseCallback):
    def _on_training_start(self) -> None:
        self.start_timesteps = self.model.num_timesteps
        self.obs_count = self.model.get_vec_normalize_env().obs_rms.count

    def _on_step(self) -> bool:
        return True


def test_interrupt_then_resume_continues_the_run(tmp_path):
    argv = _args(tmp_path, "-n", "512", "--eval-freq", "64", "--save-freq", "64",
                 "--hyperparams", "n_envs=2", "n_steps=8", "normalize=True")
    first = train(argv, callbacks=[_InterruptAt(200)])
    run_dir = Path(first.run_dir)
    assert first.interrupted and first.eval_mean is None and 200 <= first.num_timesteps < 512
    assert not (run_dir / "CartPole-v1.zip").exists()
    checkpoint = run_dir / "checkpoints" / f"rl_model_{first.num_timesteps}_steps.zip"
    assert Path(first.model_path) == checkpoint
    assert (run_dir / "checkpoints" / f"rl_model_vecnormalize_{first.num_timesteps}_steps.pkl").is_file()

    record = _RecordStart()
    second = train(["--resume", str(run_dir), "--no-progress", "--verbose", "0"], callbacks=[record])
    assert second.run_dir == str(run_dir) and second.resumed_from == str(checkpoint)
    assert record.start_timesteps == first.num_timesteps and record.obs_count > first.num_timesteps  # stats loaded
    assert second.num_timesteps >= 512 and second.session_timesteps == second.num_timesteps - first.num_timesteps
    assert (run_dir / "CartPole-v1.zip").is_file() and (run_dir / "vecnormalize.pkl").is_file()
    assert second.episodes == _monitor_rows(run_dir) and list(run_dir.glob("resume_1/*.monitor.csv"))
    timesteps = np.load(run_dir / "evaluations.npz")["timesteps"]
    assert timesteps[0] == 64 and np.all(np.diff(timesteps) > 0) and timesteps[-1] >= 512
    config = _config(run_dir)
    assert config["seed"] == 3 and config["resumes"][0]["num_timesteps"] == first.num_timesteps
    assert config["resumes"][0]["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()

    # resuming a complete run is a user error that says how to extend it
    assert main(["--resume", str(run_dir), "--no-progress"]) == 2


# ---------------------------------------------------------------------------------------------------------------
# hyperparameters
# ---------------------------------------------------------------------------------------------------------------
def test_parse_overrides_types_values():
    parsed = parse_overrides([
        "n_steps=8", "learning_rate=1e-3", "use_sde=False", "gamma:0.9", "net=[64, 64]", "x=None", "flag=true",
        "lr=lin_7e-4", "policy=CnnPolicy", "env_kwargs={'a': 1}",
        "policy_kwargs=dict(net_arch=dict(pi=[64], vf=[64]), activation_fn=nn.Tanh, log_std_init=-2)",
    ])
    assert parsed == {
        "n_steps": 8, "learning_rate": 0.001, "use_sde": False, "gamma": 0.9, "net": [64, 64], "x": None,
        "flag": True, "lr": "lin_7e-4", "policy": "CnnPolicy", "env_kwargs": {"a": 1},
        "policy_kwargs": {"net_arch": {"pi": [64], "vf": [64]}, "activation_fn": "nn.Tanh", "log_std_init": -2},
    }
    assert type(parsed["n_steps"]) is int
    kwargs, special = build_algo_kwargs({"learning_rate": "lin_1e-3", "policy_kwargs": {"activation_fn": "tanh"},
                                         "n_timesteps": 1e5, "normalize": "dict(norm_reward=False)"},
                                        get_algo_class("a2c"))
    assert kwargs["learning_rate"](1.0) == pytest.approx(1e-3) and kwargs["learning_rate"](0.5) == pytest.approx(5e-4)
    assert kwargs["policy_kwargs"]["activation_fn"].__name__ == "Tanh"
    assert special["n_timesteps"] == 100000 and special["normalize_kwargs"]["norm_reward"] is False
    with pytest.raises(ValueError, match="__import__"):  # never eval
        parse_overrides(["policy_kwargs=dict(a=__import__('os').system('true'))"])


def test_integer_arguments_take_integral_floats_and_nothing_else():
    """Zoo-style ``buffer_size=1e5`` is the int 100000 (SB3 would fail on the float deep in its buffer)."""
    from relax_rl.hyperparams import resolve_hyperparams

    td3 = get_algo_class("td3")
    hp, _ = resolve_hyperparams("td3", td3, "Pendulum-v1", False, None, ["buffer_size=1e5", "gamma=1"])
    assert hp["buffer_size"] == 100000 and type(hp["buffer_size"]) is int and hp["gamma"] == 1
    with pytest.raises(ValueError, match="batch_size must be an integer, got 'many'"):
        resolve_hyperparams("td3", td3, "Pendulum-v1", False, None, ["batch_size=many"])


def test_config_file_then_hyperparams_precedence(tmp_path):
    config_file = tmp_path / "mine.yml"
    config_file.write_text("n_steps: 4\nent_coef: 1e-2\nlearning_rate: !!float 5e-4\n")
    result = train(_args(tmp_path, "-n", "32", "--eval-freq", "-1", "--save-freq", "-1", "--config", str(config_file),
                         "--hyperparams", "n_envs=2", "--hyperparams", "n_steps=8"))  # repeated flags add up
    hp = _config(result.run_dir)["hyperparams"]
    assert hp["n_steps"] == 8 and hp["ent_coef"] == 0.01 and hp["learning_rate"] == 0.0005 and hp["n_envs"] == 2
    model = relax_rl.agents.RelaxA2C.load(result.model_path)
    assert model.n_steps == 8 and model.ent_coef == 0.01 and model.action_dependent_cv


# keys where relax-a2c and a2c carry different values: each algorithm's pick in the equal-budget search
# (results/tuning/tuning_<env>.md)
TUNED_APART = {"CartPole-v1": ("learning_rate",), "LunarLander-v3": ("learning_rate",),
               "InvertedPendulum-v5": ("n_envs", "learning_rate")}


@pytest.mark.parametrize("algo", PACKAGED)
def test_packaged_configs_are_valid(algo):
    assert set(PACKAGED) <= set(packaged_config_algos())
    algo_class = get_algo_class(algo)
    configs = load_packaged_config(algo)
    continuous_only = algo in ("ddpg", "td3")
    expected = CONTINUOUS if continuous_only else CONTINUOUS - {"LunarLanderContinuous-v3"} | DISCRETE | {"atari"}
    assert set(configs) == expected
    for env_id, entry in configs.items():
        hp = canonicalize(entry)
        validate_keys(hp, algo_class, algo, env_id)
        assert set(hp) <= set(accepted_keys(algo_class)) and "n_timesteps" in hp and "policy" in hp
        build_algo_kwargs(hp, algo_class, n_actions=1)  # schedules, classes and noise all build
        if env_id == "atari":  # make_env stacks 4 frames for Atari
            assert hp["policy"] == "CnnPolicy" and hp["n_envs"] in (8, 16) and "frame_stack" not in hp
        elif continuous_only:
            assert isinstance(gym.make(env_id).action_space, gym.spaces.Box), env_id
    if algo == "relax-a2c":  # same values as a2c plus the control variate (gSDE is off: RelaxA2C rejects it)
        a2c = load_packaged_config("a2c")
        for env_id, entry in configs.items():
            entry, a2c_entry = dict(entry), dict(a2c[env_id])
            assert entry.pop("action_dependent_cv") is True
            if a2c_entry.get("use_sde"):
                assert entry.pop("use_sde") is False and a2c_entry["use_sde"] is True
                entry["use_sde"] = True
            for key in TUNED_APART.get(env_id, ()):  # each algorithm's own pick in experiments/tune.py
                assert key in entry and key in a2c_entry, (env_id, key)
                entry.pop(key), a2c_entry.pop(key)
            assert entry == a2c_entry, env_id
    assert all(key in SPECIAL_KEYS or key in accepted_keys(algo_class) for e in configs.values() for key in e)


TUNING_DIR = Path(__file__).parents[1] / "results" / "tuning"
# the envs with a committed experiments/tune.py report
TUNED_ENVS = ["CartPole-v1", "LunarLander-v3", "InvertedPendulum-v5"]


def test_every_committed_tuning_report_is_checked():
    assert sorted(p.stem for p in TUNING_DIR.glob("tuning_*.json")) == sorted(f"tuning_{e}" for e in TUNED_ENVS)


@pytest.mark.parametrize("env_id", TUNED_ENVS)
def test_packaged_configs_carry_the_committed_tuning_picks(env_id):
    """configs/ stays true to results/tuning: each algorithm's entry for the tuned env holds its chosen point."""
    import json

    from relax_rl.hyperparams import parse_overrides

    report = TUNING_DIR / f"tuning_{env_id}.json"
    tuning = json.loads(report.read_text())
    assert tuning["env_id"] == env_id
    for algo, point in tuning["chosen"].items():
        entry = load_packaged_config(algo)[tuning["env_id"]]
        if point == "packaged config":  # the entry as it was won: no value to check
            continue
        for key, value in parse_overrides(point.split()).items():
            assert entry.get(key) == value, (report.name, algo, key, entry.get(key), value)


def test_algorithm_registry_imports_on_use(monkeypatch):
    assert get_algo_class("relax-ddpg") is relax_rl.agents.RelaxDDPG
    with pytest.raises(ValueError, match="relax-a2c, relax-ddpg, a2c, ppo, ddpg, td3"):
        get_algo_class("sac")
    monkeypatch.delattr(relax_rl.agents, "RelaxDDPG")  # an installation without it gets a clear message
    with pytest.raises(ValueError, match="relax-ddpg is not available in this version"):
        get_algo_class("relax-ddpg")
    assert list(ALGOS)[:2] == ["relax-a2c", "relax-ddpg"]


# ---------------------------------------------------------------------------------------------------------------
# user errors
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--hyperparams", "n_steps"], "malformed --hyperparams item 'n_steps'"),
        (["--hyperparams", "=3"], "the key is empty"),
        (["--hyperparams", "policy_kwargs=dict(net_arch=[64]"], "'policy_kwargs'"),
        (["--hyperparams", "n_stepz=8"], "unknown hyperparameter 'n_stepz' for relax-a2c (did you mean n_steps"),
        (["--hyperparams", "seed=1"], "set with --seed"),
        (["--hyperparams", "learning_rate=lin_fast"], "lin_<initial value>"),
        (["--hyperparams", "cv_loss_space=nowhere"], "cv_loss_space must be"),
        (["--env", "CartPol-v1"], "Did you mean: CartPole-v1"),
        (["--env", "MountainCar-v0"], "no entry for 'MountainCar-v0'"),
        (["--algo", "ddpg"], "ddpg does not support the action space Discrete of CartPole-v1"),
        (["--algo", "relax-ddpg"], "relax-ddpg does not support the action space Discrete of CartPole-v1"),
        (["--config", "missing.yml"], "cannot read config file 'missing.yml'"),
        (["--config", "bad.yml"], "config file 'bad.yml' is not valid YAML"),
        (["--config", "list.yml"], "config file 'list.yml' must hold a mapping"),
        (["--resume", "nowhere"], "'nowhere' does not exist"),
        (["--eval-freq", "0"], "--eval-freq must be a positive number or -1"),
        (["--hyperparams", "n_steps=8.5"], "n_steps must be an integer, got 8.5"),
        (["--hyperparams", "n_steps=0"], "n_steps must be a positive integer, got 0"),
        (["--hyperparams", "gamma=abc"], "gamma must be a number, got 'abc'"),
        (["--hyperparams", "use_rms_prop=yes"], "use_rms_prop must be True or False, got 'yes'"),
        (["--hyperparams", "cv_update_interval=None"], "cv_update_interval must be an integer, got None"),
        (["--hyperparams", "cv_net_arch=64"], "cv_net_arch must be a list of positive layer sizes"),
        (["--hyperparams", "policy_kwargs=dict(net_arch=[-1])"], "net_arch must be a list of positive layer sizes"),
        (["--hyperparams", "policy_kwargs=dict(net_arch=dict(pi=[8], q=[8]))"], "unknown key(s) 'q'"),
        (["--hyperparams", "policy_kwargs=dict(net_arc=[8])"], "takes no argument 'net_arc' (did you mean net_arch"),
        (["--hyperparams", "normalize=yes"], "normalize must be true/false or a mapping of VecNormalize kwargs"),
        (["--hyperparams", "normalize=dict(foo=1)"], "normalize: VecNormalize takes no argument 'foo'"),
        (["--hyperparams", "env_kwargs=abc"], "env_kwargs must be a mapping"),
        (["--seed", "-1"], "--seed must be in [0, "),
        (["--hyperparams", "policy=MultiInputPolicy"], "MultiInputPolicy does not fit the observation space Box"),
        (["--log-folder", "afile"], "--log-folder 'afile': cannot make that folder"),
    ],
)
def test_user_errors_are_one_line_and_status_2(tmp_path, capsys, extra, message):
    (tmp_path / "bad.yml").write_text("n_steps: [8\n")
    (tmp_path / "list.yml").write_text("- n_steps\n")
    (tmp_path / "afile").write_text("")
    argv = _args(tmp_path, "-n", "16") if extra[0] != "--resume" else []
    code = main(argv + extra)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not list((tmp_path / "logs").rglob("*-v*_*"))  # no run dir is left behind


def test_unknown_algo_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--algo", "sac", "--env", "CartPole-v1"])
    assert exit_info.value.code == 2 and "invalid choice: 'sac'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [(["--algo", "ddpg", "--env", "CartPole-v1"], "Discrete"),
     (["--algo", "relax-a2c", "--env", "CartPole-v1", "--hyperparams", "foo=1"], "unknown hyperparameter 'foo'")],
)
def test_train_py_reports_errors_without_traceback(tmp_path, extra, message):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *extra, "--log-folder", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and message in proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# SB3 baselines through the same pipeline
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "algo, env, hyperparams",
    [
        ("a2c", "CartPole-v1", ["n_envs=2", "n_steps=8"]),
        ("ppo", "CartPole-v1", ["n_envs=2", "n_steps=32", "batch_size=32", "n_epochs=1"]),
        ("td3", "Pendulum-v1", ["learning_starts=32", "buffer_size=1000", "policy_kwargs=dict(net_arch=[32, 32])"]),
    ],
)
def test_sb3_baselines_run_through_the_cli(tmp_path, algo, env, hyperparams):
    result = train(_args(tmp_path, "--eval-freq", "64", "--save-freq", "64", "--hyperparams", *hyperparams,
                         algo=algo, env=env, n=128))
    run_dir = Path(result.run_dir)
    assert run_dir.parent.name == algo and result.num_timesteps >= 128 and result.eval_mean is not None
    assert (run_dir / f"{env}.zip").is_file() and (run_dir / "evaluations.npz").is_file()
    if algo == "td3":
        config = _config(run_dir)
        assert config["hyperparams"]["noise_type"] == "normal" and "NormalActionNoise" in config["algorithm_kwargs"][
            "action_noise"]
        assert len(list((run_dir / "checkpoints").glob("rl_model_replay_buffer_*_steps.pkl"))) == 1  # latest only
