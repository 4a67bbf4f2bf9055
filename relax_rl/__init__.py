"""relax-rl: learned control variates (REINFORCE, Concrete, REBAR, RELAX, LAX) and RL agents for SB3."""

from relax_rl import samplers
from relax_rl.control_variates import ControlVariateMLP
from relax_rl.estimators import LAX, REBAR, REINFORCE, RELAX, Concrete, lax_surrogate, relax_surrogate
from relax_rl.variance import (
    ControlVariateCoefficient,
    EstimatorStepInfo,
    estimator_step,
    sample_gradients,
    variance_loss,
)

__version__ = "0.1.0"

_AGENTS = ("RelaxA2C", "RelaxDDPG")


def __getattr__(name: str):
    """``from relax_rl import RelaxA2C, RelaxDDPG`` without making the estimator core import SB3."""
    if name in _AGENTS:
        from relax_rl import agents

        return getattr(agents, name)
    raise AttributeError(f"module 'relax_rl' has no attribute {name!r}")


__all__ = [
    "samplers",
    "ControlVariateMLP",
    "REINFORCE",
    "Concrete",
    "REBAR",
    "RELAX",
    "LAX",
    "relax_surrogate",
    "lax_surrogate",
    "variance_loss",
    "estimator_step",
    "EstimatorStepInfo",
    "sample_gradients",
    "ControlVariateCoefficient",
    *_AGENTS,
]
