"""Environment construction (classic control, Box2D, MuJoCo, Atari) as monitored SB3 VecEnvs.

``make_env`` builds the VecEnv; ``env_family`` / ``is_atari`` classify ids (e.g. to pick a CnnPolicy).
This package uses gymnasium and SB3's wrappers only, never the estimators.
"""

from .make import ATARI_FRAME_STACK, VEC_ENV_CLASSES, make_env
from .registry import (
    FAMILIES,
    MissingDependencyError,
    UnknownEnvironmentError,
    check_env_id,
    env_family,
    is_atari,
)

__all__ = [
    "ATARI_FRAME_STACK",
    "FAMILIES",
    "VEC_ENV_CLASSES",
    "MissingDependencyError",
    "UnknownEnvironmentError",
    "check_env_id",
    "env_family",
    "is_atari",
    "make_env",
]
