"""Stable-Baselines3 agents built on relax_rl's estimators."""

from relax_rl.agents.buffers import RelaxDictRolloutBuffer, RelaxRolloutBuffer
from relax_rl.agents.policies import (
    RelaxActorCriticCnnPolicy,
    RelaxActorCriticPolicy,
    RelaxMultiInputActorCriticPolicy,
)
from relax_rl.agents.relax_a2c import RelaxA2C
from relax_rl.agents.relax_ddpg import RelaxDDPG, RelaxDDPGPolicy

MlpPolicy = RelaxActorCriticPolicy
CnnPolicy = RelaxActorCriticCnnPolicy
MultiInputPolicy = RelaxMultiInputActorCriticPolicy

__all__ = [
    "RelaxA2C",
    "RelaxDDPG",
    "RelaxDDPGPolicy",
    "RelaxActorCriticPolicy",
    "RelaxActorCriticCnnPolicy",
    "RelaxMultiInputActorCriticPolicy",
    "RelaxRolloutBuffer",
    "RelaxDictRolloutBuffer",
    "MlpPolicy",
    "CnnPolicy",
    "MultiInputPolicy",
]
