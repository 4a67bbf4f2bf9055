"""Environment ids: families, optional dependencies and helpful errors for unknown ids."""

from __future__ import annotations

import difflib
import importlib
import re

import gymnasium as gym

__all__ = [
    "FAMILIES",
    "MissingDependencyError",
    "UnknownEnvironmentError",
    "check_env_id",
    "env_family",
    "is_atari",
    "require_family",
]

#: Families returned by :func:`env_family`.
FAMILIES = ("classic", "box2d", "mujoco", "atari", "other")

# family -> (module that must import, extra of relax-rl that installs it)
_DEPENDENCIES: dict[str, tuple[str, str]] = {
    "atari": ("ale_py", "atari"),
    "mujoco": ("mujoco", "mujoco"),
    "box2d": ("Box2D", "box2d"),
}

# gymnasium entry points (module prefixes) -> family
_ENTRY_POINT_FAMILIES = (
    ("gymnasium.envs.classic_control", "classic"),
    ("gymnasium.envs.box2d", "box2d"),
    ("gymnasium.envs.mujoco", "mujoco"),
    ("ale_py", "atari"),
)

# Atari ids recognisable without ale_py: "ALE/Pong-v5", "PongNoFrameskip-v4"
_ATARI_ID = re.compile(r"^(ALE/.+|[A-Za-z0-9]+NoFrameskip-v\d+)$")


class UnknownEnvironmentError(ValueError):
    """The environment id is not registered with gymnasium."""


class MissingDependencyError(ImportError, ValueError):
    """An optional dependency needed by an environment family is not installed."""


def register_atari_envs() -> bool:
    """Register the ALE environments with gymnasium if ale_py is importable; return whether it is."""
    try:
        ale_py = importlib.import_module("ale_py")
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True


def _spec_family(env_id: str) -> str | None:
    """Family from the registered entry point of ``env_id``, or None if unregistered/unrecognised."""
    spec = gym.envs.registry.get(env_id)
    if spec is None or not isinstance(spec.entry_point, str):
        return None
    for prefix, family in _ENTRY_POINT_FAMILIES:
        if spec.entry_point.startswith(prefix):
            return family
    return None


def env_family(env_id: str) -> str:
    """Family of an environment id: "classic", "box2d", "mujoco", "atari" or "other".

    Atari ids of the ``ALE/*`` and ``*NoFrameskip-v*`` forms are recognised even without ale_py;
    other families come from the entry point gymnasium registered for the id.
    """
    env_id = env_id.split(":", 1)[-1]  # "module:EnvId" -> "EnvId"
    if _ATARI_ID.match(env_id):
        return "atari"
    family = _spec_family(env_id)
    if family is None and env_id not in gym.envs.registry and register_atari_envs():
        family = _spec_family(env_id)
    return family or "other"


def is_atari(env_id: str) -> bool:
    """Whether ``env_id`` is an Atari (ALE) environment (use a CnnPolicy and the Atari wrappers)."""
    return env_family(env_id) == "atari"


def require_family(family: str) -> None:
    """Import the optional dependency of ``family``; raise :class:`MissingDependencyError` if it is absent."""
    if family not in _DEPENDENCIES:
        return
    module, extra = _DEPENDENCIES[family]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{family} environments need the '{module}' package, which could not be imported ({exc}). "
            f"Install it with: pip install 'relax-rl[{extra}]'",
            name=module,
        ) from exc


def check_env_id(env_id: str) -> None:
    """Raise :class:`UnknownEnvironmentError`, with the closest registered ids, if ``env_id`` is unknown.

    Ids of the form ``"module:EnvId"`` import ``module`` first (it registers the environment), as gym.make does.
    """
    if not isinstance(env_id, str) or not env_id:
        raise UnknownEnvironmentError(f"The environment id must be a non-empty string, got {env_id!r}.")
    name = env_id
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UnknownEnvironmentError(
                f"Unknown environment '{env_id}': module '{module}' could not be imported ({exc})."
            ) from exc
    registry = gym.envs.registry
    if name in registry:
        return
    register_atari_envs()
    if name in registry:
        return
    matches = difflib.get_close_matches(name, list(registry), n=4, cutoff=0.6)
    if not matches:  # try case-insensitively, e.g. "cartpole-v1"
        lower = {key.lower(): key for key in registry}
        matches = [lower[m] for m in difflib.get_close_matches(name.lower(), list(lower), n=4, cutoff=0.6)]
    if matches:
        hint = f"Did you mean: {', '.join(matches)}?"
    else:
        hint = "No similar id is registered (see gymnasium.envs.registry)."
    raise UnknownEnvironmentError(f"Unknown environment '{env_id}'. {hint}")
