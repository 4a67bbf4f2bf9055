"""``make_env``: monitored, optionally normalised SB3 VecEnvs for classic control, Box2D, MuJoCo and Atari."""

from __future__ import annotations

import numbers
import os
from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecNormalize,
    VecTransposeImage,
)

from .registry import check_env_id, env_family, require_family

__all__ = ["ATARI_FRAME_STACK", "VEC_ENV_CLASSES", "make_env"]

#: Accepted values of ``make_env(vec_env=...)``.
VEC_ENV_CLASSES: dict[str, type[DummyVecEnv] | type[SubprocVecEnv]] = {
    "dummy": DummyVecEnv,
    "subproc": SubprocVecEnv,
}

#: Frames stacked for Atari when ``frame_stack`` is None (DQN/A2C/PPO convention).
ATARI_FRAME_STACK = 4

# SB3's AtariWrapper repeats each action this many frames (MaxAndSkipEnv) unless told otherwise.
_ATARI_WRAPPER_FRAME_SKIP = 4

_NORMALIZE_DEFAULTS: dict[str, Any] = {"norm_obs": True, "norm_reward": False}


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def _atari_env_kwargs(env_id: str, env_kwargs: dict[str, Any], wrapper_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Env kwargs that leave frame skipping to AtariWrapper alone, so frames are never skipped twice.

    ``ALE/*-v5`` registers ``frameskip=4`` (and ``*-v4`` a random 2-4 skip): when AtariWrapper skips too
    (``frame_skip > 1``, the default), the ALE env gets ``frameskip=1``. ``*NoFrameskip-v4`` already has it.
    Sticky actions (``repeat_action_probability``, 0.25 for v5) keep the registered default.
    """
    env_kwargs = dict(env_kwargs)
    wrapper_skip = wrapper_kwargs.get("frame_skip", _ATARI_WRAPPER_FRAME_SKIP)
    if wrapper_skip <= 1:
        return env_kwargs
    if "frameskip" in env_kwargs:
        if env_kwargs["frameskip"] != 1:
            raise ValueError(
                f"env_kwargs frameskip={env_kwargs['frameskip']!r} with AtariWrapper frame_skip={wrapper_skip} "
                "would skip frames twice; pass frameskip=1 or wrapper_kwargs={'frame_skip': 1}."
            )
        return env_kwargs
    spec = gym.envs.registry[env_id.split(":", 1)[-1]]
    if spec.kwargs.get("frameskip") != 1:
        env_kwargs["frameskip"] = 1
    return env_kwargs


def make_env(
    env_id: str,
    n_envs: int = 1,
    seed: int | None = None,
    vec_env: str = "dummy",
    monitor_dir: str | None = None,
    normalize: bool = False,
    normalize_kwargs: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    frame_stack: int | None = None,
    wrapper_kwargs: dict[str, Any] | None = None,
    vec_env_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """Build ``n_envs`` copies of ``env_id`` as an SB3 VecEnv, each wrapped in ``Monitor``.

    :param env_id: a gymnasium id: classic control, Box2D (``LunarLander-v3``, ``LunarLanderContinuous-v3``),
        MuJoCo (``HalfCheetah-v5``...) or Atari (``ALE/Pong-v5``, ``PongNoFrameskip-v4``).
    :param n_envs: number of parallel environments (>= 1).
    :param seed: environment ``i`` is reset with seed ``seed + i`` (and its action space seeded alike).
    :param vec_env: ``"dummy"`` (DummyVecEnv, in process) or ``"subproc"`` (SubprocVecEnv).
    :param monitor_dir: folder for ``<rank>.monitor.csv`` episode logs (None: episodes are not written).
    :param normalize: wrap in ``VecNormalize``; by default observations are normalised, rewards are not.
    :param normalize_kwargs: ``VecNormalize`` kwargs overriding ``norm_obs=True, norm_reward=False``.
    :param env_kwargs: kwargs for ``gym.make``. Passing ``render_mode`` for a MuJoCo env sets
        ``MUJOCO_GL=egl`` (headless rendering) unless MUJOCO_GL is already set.
    :param frame_stack: frames stacked by ``VecFrameStack``; default 4 for Atari, none for other families.
    :param wrapper_kwargs: Atari only: kwargs for SB3's ``AtariWrapper`` (``frame_skip``, ``clip_reward``...).
    :param vec_env_kwargs: kwargs for the VecEnv class (e.g. ``start_method`` for SubprocVecEnv).
    :return: the VecEnv; Atari observations are uint8 ``(n_envs, frame_stack, 84, 84)``, channel-first.
    :raises UnknownEnvironmentError: unregistered id (the message suggests close ids).
    :raises MissingDependencyError: the family's optional dependency is missing (the message names the extra).
    :raises ValueError: invalid arguments.
    """
    # Validate everything before any environment (or subprocess) is created.
    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a gymnasium id string such as 'CartPole-v1', got {env_id!r}.")
    _check_int("n_envs", n_envs, 1)
    if seed is not None:
        _check_int("seed", seed, 0)
        seed = int(seed)  # (gymnasium takes Python ints only)
    if vec_env not in VEC_ENV_CLASSES:
        raise ValueError(f"vec_env must be one of {', '.join(map(repr, VEC_ENV_CLASSES))}; got {vec_env!r}.")
    if frame_stack is not None:
        _check_int("frame_stack", frame_stack, 1)
    if normalize_kwargs and not normalize:
        raise ValueError("normalize_kwargs were given but normalize=False.")
    env_kwargs = dict(env_kwargs or {})
    wrapper_kwargs = dict(wrapper_kwargs or {})

    family = env_family(env_id)
    if family == "mujoco" and env_kwargs.get("render_mode") is not None:
        os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported
    require_family(family)
    check_env_id(env_id)

    atari = family == "atari"
    vec_normalize_kwargs = {**_NORMALIZE_DEFAULTS, **(normalize_kwargs or {})}
    if normalize and atari and vec_normalize_kwargs["norm_obs"]:
        raise ValueError(
            "normalize=True would normalise Atari image observations; pass normalize_kwargs="
            "{'norm_obs': False, 'norm_reward': True} to normalise rewards only."
        )
    if wrapper_kwargs and not atari:
        raise ValueError(f"wrapper_kwargs apply to Atari's AtariWrapper only; '{env_id}' is a {family} environment.")

    common: dict[str, Any] = dict(
        n_envs=n_envs,
        seed=seed,
        monitor_dir=monitor_dir,
        vec_env_cls=VEC_ENV_CLASSES[vec_env],
        vec_env_kwargs=vec_env_kwargs,
    )
    if atari:
        env_kwargs = _atari_env_kwargs(env_id, env_kwargs, wrapper_kwargs)
        venv = make_atari_env(env_id, env_kwargs=env_kwargs, wrapper_kwargs=wrapper_kwargs, **common)
    else:
        venv = make_vec_env(env_id, env_kwargs=env_kwargs, **common)

    try:
        # Same order as the RL Zoo: normalise single frames, then stack, then transpose images.
        if normalize:
            venv = VecNormalize(venv, **vec_normalize_kwargs)
        n_stack = frame_stack if frame_stack is not None else (ATARI_FRAME_STACK if atari else 1)
        if n_stack > 1:
            venv = VecFrameStack(venv, n_stack=n_stack)
        space = venv.observation_space
        if is_image_space(space) and not is_image_space_channels_first(space):
            venv = VecTransposeImage(venv)
    except Exception:
        venv.close()
        raise
    return venv
