"""Hyperparameters for the training CLI: RL-Zoo-style YAML configs, typed ``--hyperparams`` overrides, validation.

Hyperparameters live in two forms. The *canonical* form is plain YAML data (numbers, strings, lists, mappings):
``learning_rate: lin_7e-4``, ``policy_kwargs: {activation_fn: tanh, net_arch: [64, 64]}``; it is what config files
hold and what a run's ``config.yml`` records (so a run can be rebuilt from it). :func:`build_algo_kwargs` turns it
into the objects an algorithm takes (schedules, torch classes, action noise) plus the settings of ``make_env``.
Nothing calls ``eval``: Zoo-style ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"`` strings and override values
are read by :mod:`relax_rl.hyperparam_parsing`, which accepts only literals, ``dict(...)`` calls and known class
names.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule

from relax_rl.hyperparam_parsing import (
    KEY,
    HyperparameterError,
    parse_overrides,
    parse_python_data,
    parse_value,
    resolve_class,
)
from relax_rl.hyperparam_types import check_normalize_kwargs, check_policy_kwargs, check_value_types

__all__ = [
    "SPECIAL_KEYS",
    "SCHEDULE_KEYS",
    "HyperparameterError",
    "MissingEntryError",
    "accepted_keys",
    "build_algo_kwargs",
    "canonicalize",
    "load_packaged_config",
    "load_user_config",
    "lookup_entry",
    "packaged_config_algos",
    "parse_overrides",
    "parse_value",
    "resolve_class",
    "resolve_hyperparams",
    "validate_keys",
]

#: Keys of a config entry that are not arguments of the algorithm's ``__init__``.
SPECIAL_KEYS = (
    "n_timesteps",
    "policy",
    "n_envs",
    "normalize",
    "frame_stack",
    "env_kwargs",
    "noise_type",
    "noise_std",
    "policy_kwargs",
)
#: Keys whose string value ``lin_<x>`` means a learning-rate style schedule, linear from x to 0.
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf", "cv_learning_rate")
#: ``__init__`` arguments that the CLI sets itself (key -> the flag that sets it).
RESERVED_KEYS = {
    "env": "--env",
    "seed": "--seed",
    "verbose": "--verbose",
    "device": "--device",
    "tensorboard_log": "--tensorboard-log",
    "action_noise": "the noise_type / noise_std keys",
    "_init_setup_model": None,
}
NOISE_TYPES = ("normal", "ornstein-uhlenbeck")
#: policy_kwargs entries whose (string) value names a class.
CLASS_KEYS = ("activation_fn", "optimizer_class", "cv_optimizer_class")

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SCHEDULE = re.compile(r"^lin_(.+)$")
_ENV_KEY = re.compile(r"^(atari|default|.+-v\d+)$")  # top-level keys of a Zoo-style file


class MissingEntryError(HyperparameterError):
    """The packaged config has no entry for the environment (and no ``--config`` file was given)."""


# ----------------------------------------------------------------------------------------------------------------
# canonical form
# ----------------------------------------------------------------------------------------------------------------
def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string: turn numeric-looking strings into numbers, recursively."""
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        number = float(value)
        return int(number) if re.match(r"^[+-]?\d+$", value.strip()) else number
    if isinstance(value, list):
        return [_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    return value


def _mapping(key: str, value: Any, expected: str = "a mapping (or a 'dict(...)' string)") -> dict[str, Any]:
    parsed = value
    if isinstance(value, str):
        try:
            parsed = parse_python_data(value)
        except HyperparameterError as exc:
            if "(" in value or "{" in value:  # a mapping with a bad value inside: say what is wrong in it
                raise HyperparameterError(f"{key}: cannot read {value!r}: {exc}") from None
            parsed = None
    if not isinstance(parsed, dict):
        raise HyperparameterError(f"{key} must be {expected}, got {value!r}")
    return _number(parsed)


def _schedule_start(key: str, value: str) -> float:
    match = _SCHEDULE.match(value)
    try:
        start = float(match.group(1)) if match else math.nan
    except ValueError:
        start = math.nan
    if not math.isfinite(start):
        raise HyperparameterError(f"{key}={value!r}: a schedule is written lin_<initial value>, e.g. lin_7e-4")
    return start


def canonicalize(hyperparams: Mapping[str, Any]) -> dict[str, Any]:
    """Plain-data form of one entry: numbers typed, ``n_timesteps`` an int, policy_kwargs / env_kwargs mappings,
    ``normalize`` a bool or a mapping, schedules checked. Raises :class:`HyperparameterError`."""
    out: dict[str, Any] = {}
    for key, value in hyperparams.items():
        if not isinstance(key, str) or not KEY.match(key):
            raise HyperparameterError(f"invalid hyperparameter key {key!r}")
        value = _number(value)
        if key in ("n_timesteps", "n_envs", "frame_stack") and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
                raise HyperparameterError(f"{key} must be a positive integer, got {value!r}")
            value = int(value)
        elif key in ("policy_kwargs", "env_kwargs"):
            value = _mapping(key, value)
        elif key == "normalize":
            expected = "true/false or a mapping of VecNormalize kwargs"
            if isinstance(value, str):
                value = _mapping(key, value, expected)
            if not isinstance(value, (bool, dict)):
                raise HyperparameterError(f"normalize must be {expected}, got {value!r}")
            if isinstance(value, dict):
                check_normalize_kwargs(value)
        elif key == "noise_type" and value not in NOISE_TYPES:
            raise HyperparameterError(f"noise_type must be one of {', '.join(NOISE_TYPES)}, got {value!r}")
        elif key == "policy" and not isinstance(value, str):
            raise HyperparameterError(f"policy must be a policy name such as MlpPolicy, got {value!r}")
        elif key in SCHEDULE_KEYS and isinstance(value, str):
            _schedule_start(key, value)
        elif isinstance(value, str) and value.startswith("lin_"):
            raise HyperparameterError(f"{key}={value!r}: schedules are supported for {', '.join(SCHEDULE_KEYS)} only")
        out[key] = value
    if "noise_std" in out and "noise_type" not in out:
        raise HyperparameterError("noise_std is given without noise_type (normal or ornstein-uhlenbeck)")
    return out


# ----------------------------------------------------------------------------------------------------------------
# config files
# ----------------------------------------------------------------------------------------------------------------
def _read_yaml(path: str | os.PathLike, text: str | None = None) -> Any:
    try:
        if text is None:
            with open(path) as handle:
                text = handle.read()
        return yaml.safe_load(text)
    except OSError as exc:
        raise HyperparameterError(f"cannot read config file '{path}': {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise HyperparameterError(f"config file '{path}' is not valid YAML: {' '.join(str(exc).split())}") from None


def packaged_config_algos() -> list[str]:
    """Algorithms that have a packaged ``configs/<algo>.yml``."""
    return sorted(p.name[:-4] for p in resources.files("relax_rl.configs").iterdir() if p.name.endswith(".yml"))


def load_packaged_config(algo: str) -> dict[str, dict[str, Any]]:
    """The packaged ``<algo>.yml``: env id (or ``atari``) -> entry, as written in the file."""
    resource = resources.files("relax_rl.configs") / f"{algo}.yml"
    if not resource.is_file():
        raise HyperparameterError(
            f"no packaged config for {algo} (configs/{algo}.yml); "
            f"packaged: {', '.join(packaged_config_algos())}"
        )
    data = _read_yaml(f"configs/{algo}.yml", resource.read_text())
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise HyperparameterError(f"configs/{algo}.yml must map env ids to mappings of hyperparameters")
    return data


def lookup_entry(configs: Mapping[str, Any], env_id: str, atari: bool) -> dict[str, Any] | None:
    """The entry for ``env_id``: the exact id, else ``atari`` for Atari ids; None when there is neither."""
    if env_id in configs:
        return dict(configs[env_id])
    if atari and "atari" in configs:
        return dict(configs["atari"])
    return None


def load_user_config(path: str | os.PathLike, env_id: str, atari: bool) -> dict[str, Any]:
    """A ``--config`` file: a mapping of hyperparameters, or a Zoo-style file (env id -> mapping) holding env_id."""
    data = _read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise HyperparameterError(f"config file '{path}' must hold a mapping of hyperparameters, got a {kind}")
    if data and all(isinstance(v, dict) and _ENV_KEY.match(str(k)) for k, v in data.items()):
        entry = lookup_entry(data, env_id, atari)
        if entry is None:
            raise HyperparameterError(f"config file '{path}' has no entry for '{env_id}'; it has: {', '.join(data)}")
        data = entry
    try:
        return canonicalize(data)
    except HyperparameterError as exc:
        raise HyperparameterError(f"config file '{path}': {exc}") from None


# ----------------------------------------------------------------------------------------------------------------
# validation and building
# ----------------------------------------------------------------------------------------------------------------
def _init_params(algo_class: type) -> dict[str, inspect.Parameter]:
    params = inspect.signature(algo_class.__init__).parameters
    return {
        name: p
        for name, p in params.items()
        if name not in ("self", "policy") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def accepted_keys(algo_class: type) -> list[str]:
    """Keys a config entry of ``algo_class`` may hold: the special keys, then its ``__init__`` arguments."""
    algo_keys = [name for name in _init_params(algo_class) if name not in RESERVED_KEYS and name not in SPECIAL_KEYS]
    return [*SPECIAL_KEYS, *algo_keys]


def validate_keys(hyperparams: Mapping[str, Any], algo_class: type, algo: str, source: str = "") -> None:
    """Raise :class:`HyperparameterError` for a key that is neither special nor an ``__init__`` argument."""
    accepted = accepted_keys(algo_class)
    where = f"{source}: " if source else ""
    for key in hyperparams:
        if key in RESERVED_KEYS and key not in SPECIAL_KEYS:
            flag = RESERVED_KEYS[key]
            how = f"it is set with {flag}" if flag else "it is not a user setting"
            raise HyperparameterError(f"{where}hyperparameter '{key}' cannot be set here: {how}")
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=3)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise HyperparameterError(
                f"{where}unknown hyperparameter '{key}' for {algo}{hint}; accepted keys: {', '.join(accepted)}"
            )
    if "noise_type" in hyperparams and "action_noise" not in _init_params(algo_class):
        raise HyperparameterError(f"{where}noise_type applies to algorithms with action noise (ddpg, td3), not {algo}")


def _checked(hyperparams: Mapping[str, Any], algo_class: type, algo: str, source: str) -> dict[str, Any]:
    validate_keys(hyperparams, algo_class, algo, source)
    try:
        return check_value_types(canonicalize(hyperparams), algo_class)
    except HyperparameterError as exc:
        raise HyperparameterError(f"{source}: {exc}") from None


def resolve_hyperparams(
    algo: str, algo_class: type, env_id: str, atari: bool, config_file: str | None, overrides: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge packaged entry < ``--config`` file < ``--hyperparams`` into one canonical, validated mapping.

    :return: (hyperparams, sources: where each layer came from, for the run's config.yml).
    :raises HyperparameterError: no entry for the env (and no --config), or an invalid layer (named in the message).
    """
    source_file = f"configs/{algo}.yml"
    packaged = load_packaged_config(algo)
    entry = lookup_entry(packaged, env_id, atari)
    if entry is None and not config_file:
        raise MissingEntryError(
            f"{source_file} has no entry for '{env_id}' (and it is not an Atari id); it has: {', '.join(packaged)}. "
            "Pass --config FILE with hyperparameters to train on it anyway."
        )
    hp = _checked(entry or {}, algo_class, algo, source_file)
    if config_file:
        user = load_user_config(config_file, env_id, atari)
        hp.update(_checked(user, algo_class, algo, f"config file '{config_file}'"))
    typed = _checked(parse_overrides(overrides), algo_class, algo, "--hyperparams")
    hp.update(typed)
    check_policy_kwargs(hp, algo_class)  # on the merged entry: policy and policy_kwargs may come from two layers
    entry_name = env_id if env_id in packaged else ("atari" if entry is not None else None)
    sources = {"packaged": f"{source_file}[{entry_name}]" if entry_name else None,
               "config_file": config_file, "hyperparams": typed}
    return hp, sources


def _resolve_policy_kwargs(policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    resolved = dict(policy_kwargs)
    for key in CLASS_KEYS:
        if isinstance(resolved.get(key), str):
            try:
                resolved[key] = resolve_class(resolved[key])
            except HyperparameterError as exc:
                raise HyperparameterError(f"policy_kwargs {key}: {exc}") from None
    return resolved


def build_algo_kwargs(
    hyperparams: Mapping[str, Any], algo_class: type, n_actions: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a canonical entry into (algorithm kwargs with objects built, special settings).

    Special settings hold ``n_timesteps``, ``policy``, ``n_envs``, ``frame_stack``, ``env_kwargs``,
    ``normalize`` (bool) and ``normalize_kwargs`` (VecNormalize kwargs; ``gamma`` is the algorithm's, set or
    default). ``n_actions`` (the action dimension) is needed only to build action noise.
    """
    hp = canonicalize(hyperparams)
    special = {key: hp.pop(key) for key in SPECIAL_KEYS if key in hp and key != "policy_kwargs"}
    kwargs: dict[str, Any] = {}
    for key, value in hp.items():
        if key in SCHEDULE_KEYS and isinstance(value, str):
            value = LinearSchedule(_schedule_start(key, value), 0.0, 1.0)
        elif key == "policy_kwargs":
            value = _resolve_policy_kwargs(value)
        elif key == "train_freq" and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    normalize = special.pop("normalize", False)
    special["normalize"] = bool(normalize)
    if normalize:
        normalize_kwargs = {"norm_obs": True, "norm_reward": True}  # VecNormalize's (and the Zoo's) defaults
        if isinstance(normalize, dict):
            normalize_kwargs.update(normalize)
        gamma_param = _init_params(algo_class).get("gamma")
        gamma = kwargs.get("gamma", gamma_param.default if gamma_param is not None else inspect.Parameter.empty)
        if gamma is not inspect.Parameter.empty and "gamma" not in normalize_kwargs:
            normalize_kwargs["gamma"] = gamma  # the algorithm's discount for the return normalization
        special["normalize_kwargs"] = normalize_kwargs
    noise_type = special.pop("noise_type", None)
    noise_std = special.pop("noise_std", 0.1)
    if noise_type is not None:
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or noise_std < 0:
            raise HyperparameterError(f"noise_std must be a non-negative number, got {noise_std!r}")
        if n_actions is not None:
            mean, sigma = np.zeros(n_actions), float(noise_std) * np.ones(n_actions)
            noise_class = NormalActionNoise if noise_type == "normal" else OrnsteinUhlenbeckActionNoise
            kwargs["action_noise"] = noise_class(mean=mean, sigma=sigma)
    return kwargs, special


def yaml_ready(value: Any) -> Any:
    """A YAML-safe rendering of a value (classes and other objects become strings)."""
    if value is None:
        return value
    for kind in (bool, int, float, str):  # exact types: YAML cannot represent subclasses (np.float64, TorchVersion)
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): yaml_ready(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [yaml_ready(v) for v in value]
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def algorithm_defaults(algo_class: type) -> dict[str, Any]:
    """Default values of ``algo_class.__init__`` arguments that the config may set (YAML-safe)."""
    return {
        name: yaml_ready(p.default)
        for name, p in _init_params(algo_class).items()
        if name not in RESERVED_KEYS and p.default is not inspect.Parameter.empty
    }
