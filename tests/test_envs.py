"""relax_rl.envs: make_env for every family, seeding, Monitor files, normalisation, Atari frame skipping, errors."""

import importlib
import os

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor, load_results
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from relax_rl.envs import (
    MissingDependencyError,
    UnknownEnvironmentError,
    env_family,
    is_atari,
    make_env,
)

# Box2D's SWIG bindings emit DeprecationWarnings on import under Python 3.11+.
pytestmark = pytest.mark.filterwarnings("ignore:builtin type [Ss]wig.*:DeprecationWarning")


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """MuJoCo writes warnings (e.g. HalfCheetah's deprecated 'settotalmass') to MUJOCO_LOG.TXT in the cwd."""
    monkeypatch.chdir(tmp_path)


def _random_actions(venv, rng: np.random.Generator) -> np.ndarray:
    space = venv.action_space
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(space.n, size=venv.num_envs)
    return rng.uniform(space.low, space.high, size=(venv.num_envs, *space.shape)).astype(space.dtype)


def _inner_envs(venv) -> list[gym.Env]:
    """The gymnasium envs inside a (wrapped) DummyVecEnv."""
    while not isinstance(venv, DummyVecEnv):
        venv = venv.venv
    return venv.envs


# ---------------------------------------------------------------------------------------------- families


@pytest.mark.parametrize(
    "env_id, family",
    [
        ("CartPole-v1", "classic"),
        ("Pendulum-v1", "classic"),
        ("MountainCarContinuous-v0", "classic"),
        ("LunarLander-v3", "box2d"),
        ("LunarLanderContinuous-v3", "box2d"),
        ("HalfCheetah-v5", "mujoco"),
        ("InvertedPendulum-v5", "mujoco"),
        ("ALE/Pong-v5", "atari"),
        ("PongNoFrameskip-v4", "atari"),
        ("Breakout-v4", "atari"),
        ("FrozenLake-v1", "other"),
        ("NotAnEnv-v0", "other"),
    ],
)
def test_env_family(env_id, family):
    assert env_family(env_id) == family
    assert is_atari(env_id) == (family == "atari")


@pytest.mark.parametrize(
    "env_id, obs_shape, action_shape",
    [
        ("CartPole-v1", (4,), ()),
        ("Acrobot-v1", (6,), ()),
        ("MountainCar-v0", (2,), ()),
        ("Pendulum-v1", (3,), (1,)),
        ("LunarLander-v3", (8,), ()),
        ("LunarLanderContinuous-v3", (8,), (2,)),
        ("InvertedPendulum-v5", (4,), (1,)),
        ("InvertedDoublePendulum-v5", (9,), (1,)),
        ("HalfCheetah-v5", (17,), (6,)),
    ],
)
def test_vector_families_reset_and_step(env_id, obs_shape, action_shape):
    venv = make_env(env_id, n_envs=2, seed=0)
    try:
        assert isinstance(venv, DummyVecEnv) and venv.num_envs == 2
        assert venv.observation_space.shape == obs_shape
        assert venv.action_space.shape == action_shape
        obs = venv.reset()
        assert obs.shape == (2, *obs_shape)
        rng = np.random.default_rng(0)
        for _ in range(3):
            obs, rewards, dones, infos = venv.step(_random_actions(venv, rng))
            assert obs.shape == (2, *obs_shape) and rewards.shape == (2,) and dones.shape == (2,)
            assert len(infos) == 2
        assert all(isinstance(env, Monitor) for env in venv.envs)
    finally:
        venv.close()


def test_lunar_lander_continuous_is_continuous_lander():
    venv = make_env("LunarLanderContinuous-v3")
    try:
        assert isinstance(venv.action_space, gym.spaces.Box)
        assert venv.envs[0].unwrapped.continuous is True
    finally:
        venv.close()


# ---------------------------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("env_id", ["CartPole-v1", "LunarLander-v3", "HalfCheetah-v5"])
def test_same_seed_same_first_observation(env_id):
    first = {}
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        venv = make_env(env_id, n_envs=2, seed=seed)
        first[name] = venv.reset()
        venv.close()
    np.testing.assert_array_equal(first["a"], first["b"])
    assert not np.array_equal(first["a"], first["c"])
    # each env of the VecEnv gets its own seed (seed + rank)
    assert not np.array_equal(first["a"][0], first["a"][1])


# ---------------------------------------------------------------------------------------------- Monitor


def test_monitor_csv_written_when_an_episode_ends(tmp_path):
    monitor_dir = tmp_path / "run_1"
    venv = make_env("CartPole-v1", n_envs=1, seed=0, monitor_dir=str(monitor_dir))
    try:
        venv.reset()
        rng = np.random.default_rng(0)
        steps, total = 0, 0.0
        for _ in range(500):
            _, rewards, dones, infos = venv.step(_random_actions(venv, rng))
            steps += 1
            total += float(rewards[0])
            if dones[0]:
                break
        assert dones[0], "random CartPole should end within 500 steps"
        assert infos[0]["episode"]["l"] == steps
    finally:
        venv.close()
    assert (monitor_dir / "0.monitor.csv").is_file()
    results = load_results(str(monitor_dir))
    assert len(results) == 1
    assert results["l"].iloc[0] == steps
    assert results["r"].iloc[0] == pytest.approx(total)


# ---------------------------------------------------------------------------------------------- normalisation


def test_normalize_wraps_in_vec_normalize_obs_only():
    venv = make_env("InvertedPendulum-v5", n_envs=2, seed=0, normalize=True)
    try:
        assert isinstance(venv, VecNormalize)
        assert venv.norm_obs and not venv.norm_reward
        venv.reset()
        rng = np.random.default_rng(0)
        for _ in range(5):
            obs, rewards, _, _ = venv.step(_random_actions(venv, rng))
        np.testing.assert_allclose(obs, venv.normalize_obs(venv.get_original_obs()), rtol=1e-5)
        np.testing.assert_array_equal(rewards, venv.get_original_reward())
        assert venv.obs_rms.count > 5  # statistics were updated by reset + steps
    finally:
        venv.close()


def test_normalize_kwargs_override_defaults():
    venv = make_env("Pendulum-v1", normalize=True, normalize_kwargs={"norm_reward": True, "gamma": 0.9})
    try:
        assert isinstance(venv, VecNormalize)
        assert venv.norm_obs and venv.norm_reward and venv.gamma == 0.9
    finally:
        venv.close()


def test_not_normalized_by_default():
    venv = make_env("HalfCheetah-v5")
    try:
        assert isinstance(venv, DummyVecEnv)
    finally:
        venv.close()


# ---------------------------------------------------------------------------------------------- Atari


@pytest.mark.parametrize("env_id", ["ALE/Pong-v5", "PongNoFrameskip-v4"])
def test_atari_channel_first_stacked_frames_and_single_frame_skip(env_id):
    venv = make_env(env_id, n_envs=2, seed=0)
    try:
        assert venv.observation_space.shape == (4, 84, 84)
        obs = venv.reset()
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        for env in _inner_envs(venv):
            ale_env = env.unwrapped
            # the ALE env itself does not skip: only AtariWrapper's MaxAndSkipEnv does
            assert ale_env._frameskip == 1
            assert ale_env.spec.kwargs["frameskip"] == 1
        # one agent step advances the emulator exactly 4 frames (16 if skipped twice)
        ale = _inner_envs(venv)[0].unwrapped.ale
        before = ale.getEpisodeFrameNumber()
        obs, _, dones, _ = venv.step(np.zeros(2, dtype=np.int64))
        assert not dones[0]
        assert ale.getEpisodeFrameNumber() - before == 4
        assert obs.shape == (2, 4, 84, 84)
    finally:
        venv.close()


def test_atari_v5_keeps_sticky_actions_and_frame_stack_option():
    venv = make_env("ALE/Pong-v5", frame_stack=2)
    try:
        assert venv.observation_space.shape == (2, 84, 84)
        assert _inner_envs(venv)[0].unwrapped.spec.kwargs["repeat_action_probability"] == 0.25
    finally:
        venv.close()


def test_atari_double_skip_is_refused():
    with pytest.raises(ValueError, match="twice"):
        make_env("ALE/Pong-v5", env_kwargs={"frameskip": 4})


def test_atari_refuses_image_normalization():
    with pytest.raises(ValueError, match="norm_obs"):
        make_env("ALE/Pong-v5", normalize=True)


# ---------------------------------------------------------------------------------------------- subproc


def test_subproc_vec_env_matches_dummy():
    venv = make_env("CartPole-v1", n_envs=2, seed=7, vec_env="subproc")
    try:
        assert isinstance(venv, SubprocVecEnv) and venv.num_envs == 2
        obs = venv.reset()
        assert obs.shape == (2, 4)
        obs2, rewards, _, _ = venv.step(np.array([0, 1]))
        assert obs2.shape == (2, 4) and rewards.shape == (2,)
    finally:
        venv.close()
    dummy = make_env("CartPole-v1", n_envs=2, seed=7)
    np.testing.assert_array_equal(dummy.reset(), obs)
    dummy.close()


# ---------------------------------------------------------------------------------------------- errors


def test_unknown_env_suggests_close_ids():
    with pytest.raises(UnknownEnvironmentError) as info:
        make_env("CartPole-v9")
    message = str(info.value)
    assert message.startswith("Unknown environment 'CartPole-v9'. Did you mean: ")
    assert "CartPole-v1" in message and "CartPole-v0" in message
    assert isinstance(info.value, ValueError)


def test_unknown_atari_id_suggests_ale_ids():
    with pytest.raises(ValueError, match=r"ALE/Pong-v5"):
        make_env("ALE/Pongg-v5")


def test_unknown_env_without_close_match():
    with pytest.raises(ValueError, match="No similar id"):
        make_env("zzzzzzzzzzzz")


@pytest.mark.parametrize("n_envs", [0, -1, 1.5, True])
def test_bad_n_envs(n_envs):
    with pytest.raises(ValueError, match="n_envs"):
        make_env("CartPole-v1", n_envs=n_envs)


def test_bad_vec_env_lists_accepted_values():
    with pytest.raises(ValueError, match=r"'dummy', 'subproc'.*'threads'"):
        make_env("CartPole-v1", vec_env="threads")


def test_other_argument_errors():
    with pytest.raises(ValueError, match="frame_stack"):
        make_env("CartPole-v1", frame_stack=0)
    with pytest.raises(ValueError, match="normalize=False"):
        make_env("CartPole-v1", normalize_kwargs={"norm_reward": True})
    with pytest.raises(ValueError, match="AtariWrapper"):
        make_env("CartPole-v1", wrapper_kwargs={"clip_reward": False})
    with pytest.raises(ValueError, match="env_id must be a gymnasium id string"):
        make_env(5)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        make_env("CartPole-v1", seed=-1)
    make_env("CartPole-v1", seed=np.int64(3)).close()  # numpy integers are seeds too


@pytest.mark.parametrize(
    "env_id, module, extra",
    [
        ("ALE/Pong-v5", "ale_py", "atari"),
        ("PongNoFrameskip-v4", "ale_py", "atari"),
        ("HalfCheetah-v5", "mujoco", "mujoco"),
        ("LunarLander-v3", "Box2D", "box2d"),
    ],
)
def test_missing_optional_dependency(monkeypatch, env_id, module, extra):
    real_import = importlib.import_module

    def fake_import(name, package=None):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named '{module}'")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(MissingDependencyError) as info:
        make_env(env_id)
    assert f"pip install 'relax-rl[{extra}]'" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ImportError)


def test_classic_control_needs_no_optional_dependency(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name, package=None):
        if name in ("ale_py", "mujoco", "Box2D"):
            raise ImportError(name)
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    make_env("CartPole-v1").close()


# ---------------------------------------------------------------------------------------------- MuJoCo rendering


def test_mujoco_gl_set_only_when_rendering_is_requested(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    make_env("InvertedPendulum-v5").close()
    assert "MUJOCO_GL" not in os.environ
    make_env("InvertedPendulum-v5", env_kwargs={"render_mode": "rgb_array"}).close()
    assert os.environ["MUJOCO_GL"] == "egl"
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    make_env("InvertedPendulum-v5", env_kwargs={"render_mode": "rgb_array"}).close()
    assert os.environ["MUJOCO_GL"] == "osmesa"  # an explicit choice is kept
