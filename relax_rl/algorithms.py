"""The ``--algo`` registry: names, classes (imported on use) and the action spaces each trains on."""

from __future__ import annotations

import importlib

from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

__all__ = ["ACTION_SPACES", "ALGOS", "CLIError", "check_action_space", "get_algo_class"]


class CLIError(ValueError):
    """A user error: reported as one ``error:`` line and exit status 2."""


#: ``--algo`` name -> (module, class), imported on use (relax-ddpg appears once relax_rl.agents defines it).
ALGOS: dict[str, tuple[str, str]] = {
    "relax-a2c": ("relax_rl.agents", "RelaxA2C"),
    "relax-ddpg": ("relax_rl.agents", "RelaxDDPG"),
    "a2c": ("stable_baselines3", "A2C"),
    "ppo": ("stable_baselines3", "PPO"),
    "ddpg": ("stable_baselines3", "DDPG"),
    "td3": ("stable_baselines3", "TD3"),
}
_ANY_SPACE = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
#: Action spaces each algorithm trains on (checked before the model is built).
ACTION_SPACES: dict[str, tuple[type[spaces.Space], ...]] = {
    "relax-a2c": _ANY_SPACE, "a2c": _ANY_SPACE, "ppo": _ANY_SPACE,
    "relax-ddpg": (spaces.Box,), "ddpg": (spaces.Box,), "td3": (spaces.Box,),
}

def get_algo_class(name: str) -> type[BaseAlgorithm]:
    """The algorithm class for an ``--algo`` name; ValueError for unknown names, CLIError if not available yet."""
    if name not in ALGOS:
        raise CLIError(f"unknown algorithm {name!r}; available algorithms: {', '.join(ALGOS)}")
    module, attr = ALGOS[name]
    algo_class = getattr(importlib.import_module(module), attr, None)
    if algo_class is None:
        ready = [n for n, (m, a) in ALGOS.items() if n != name and hasattr(importlib.import_module(m), a)]
        raise CLIError(
            f"{name} is not available in this version of relax-rl ({module}.{attr} does not exist yet); "
            f"available algorithms: {', '.join(ready)}"
        )
    return algo_class


def check_action_space(algo: str, env_id: str, space: spaces.Space) -> None:
    """CLIError unless ``algo`` trains on the action space ``space`` of ``env_id``."""
    supported = ACTION_SPACES.get(algo, _ANY_SPACE)
    if not isinstance(space, supported):
        names = ", ".join(cls.__name__ for cls in supported)
        fitting = [name for name, allowed in ACTION_SPACES.items() if isinstance(space, allowed)]
        hint = f"; algorithms for this space: {', '.join(fitting)}" if fitting else ""
        raise CLIError(
            f"{algo} does not support the action space {type(space).__name__} of {env_id} ({space}); "
            f"{algo} supports: {names}{hint}"
        )
