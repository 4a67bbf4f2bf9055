"""Type checks of hyperparameter values against the algorithm's and the policy's ``__init__``, before anything is
built: a value of the wrong type gets a :class:`HyperparameterError` that names the key, instead of a traceback
from deep inside SB3 or torch once training has started.

- Arguments annotated ``int`` take an int, or a float with an integral value (``buffer_size=1e5`` is 100000);
  those in :data:`POSITIVE_INT_KEYS` must be at least 1.
- Arguments annotated ``float`` (or ``float | None``) take a number (or None), and ``bool`` ones True or False.
- ``cv_net_arch`` and ``policy_kwargs``' ``net_arch`` take lists of positive ints (``net_arch`` also a mapping of
  such lists, e.g. ``dict(pi=[64], vf=[64])``); ``policy_kwargs`` keys must be arguments of the policy class,
  and ``normalize`` mapping keys arguments of SB3's ``VecNormalize``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from relax_rl.hyperparam_parsing import HyperparameterError

__all__ = ["POSITIVE_INT_KEYS", "check_normalize_kwargs", "check_policy_kwargs", "check_value_types"]

#: Integer arguments that must be at least 1 (0 divides by zero or never trains, deep inside SB3).
POSITIVE_INT_KEYS = ("n_steps", "batch_size", "buffer_size", "n_epochs", "policy_delay", "target_update_interval",
                     "cv_updates_per_step", "cv_update_interval")
#: net_arch mapping keys SB3's policies read (actor-critic: pi / vf; off-policy: pi / qf).
NET_ARCH_KEYS = ("pi", "vf", "qf")


def _annotation(algo_class: type, key: str) -> str:
    """The ``__init__`` annotation of ``key`` as text without spaces ("int", "float|None"), or ""."""
    param = inspect.signature(algo_class.__init__).parameters.get(key)
    if param is None or param.annotation is inspect.Parameter.empty:
        return ""
    annotation = param.annotation
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return text.replace(" ", "")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _layer_sizes(key: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                              for v in value):
        raise HyperparameterError(f"{key} must be a list of positive layer sizes such as [64, 64], got {value!r}")


def check_value_types(hyperparams: Mapping[str, Any], algo_class: type) -> dict[str, Any]:
    """The entry with integral floats turned into ints; raises :class:`HyperparameterError` for a value whose type
    the algorithm's ``__init__`` does not take (see the module docstring)."""
    out = dict(hyperparams)
    for key, value in hyperparams.items():
        kind = _annotation(algo_class, key)
        if kind == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise HyperparameterError(f"{key} must be an integer, got {value!r}")
            if key in POSITIVE_INT_KEYS and value < 1:
                raise HyperparameterError(f"{key} must be a positive integer, got {value!r}")
        elif kind in ("float", "float|None") and not (value is None and kind == "float|None"):
            if not _is_number(value):
                also = " or None" if kind == "float|None" else ""
                raise HyperparameterError(f"{key} must be a number{also}, got {value!r}")
        elif kind in ("bool", "bool|None") and not (value is None and kind == "bool|None"):
            if not isinstance(value, bool):
                also = " or None" if kind == "bool|None" else ""
                raise HyperparameterError(f"{key} must be True or False{also}, got {value!r}")
        elif key == "cv_net_arch" and value is not None:
            _layer_sizes(key, value)
        out[key] = value
    return out


def _policy_arguments(policy_class: type) -> set[str]:
    """Keyword arguments the policy class takes: its ``__init__``'s and, through ``**kwargs``, its bases'."""
    names: set[str] = set()
    for klass in policy_class.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names.update(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names - {"self", "observation_space", "action_space", "lr_schedule"}


def check_policy_kwargs(hyperparams: Mapping[str, Any], algo_class: type) -> None:
    """Raise :class:`HyperparameterError` for a ``policy_kwargs`` key the policy does not take, or a malformed
    ``net_arch``."""
    policy_kwargs = hyperparams.get("policy_kwargs") or {}
    if "net_arch" in policy_kwargs:
        net_arch = policy_kwargs["net_arch"]
        if isinstance(net_arch, dict):
            unknown = sorted(set(net_arch) - set(NET_ARCH_KEYS))
            if unknown:
                raise HyperparameterError(f"policy_kwargs net_arch: unknown key(s) {', '.join(map(repr, unknown))}; "
                                          f"a mapping takes {', '.join(NET_ARCH_KEYS)}")
            for part, sizes in net_arch.items():
                _layer_sizes(f"policy_kwargs net_arch {part}", sizes)
        else:
            _layer_sizes("policy_kwargs net_arch", net_arch)
    policy = hyperparams.get("policy", "MlpPolicy")
    policy_class = getattr(algo_class, "policy_aliases", {}).get(policy)
    if policy_class is None:
        return  # an unknown policy name gets SB3's own clear error
    accepted = _policy_arguments(policy_class)
    for key in policy_kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=3)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise HyperparameterError(f"policy_kwargs: {policy} of {algo_class.__name__} takes no argument "
                                      f"'{key}'{hint}; it takes {', '.join(sorted(accepted))}")


def check_normalize_kwargs(normalize_kwargs: Mapping[str, Any]) -> None:
    """Raise :class:`HyperparameterError` for a ``normalize`` key that SB3's ``VecNormalize`` does not take."""
    from stable_baselines3.common.vec_env import VecNormalize

    accepted = [name for name in inspect.signature(VecNormalize.__init__).parameters if name not in ("self", "venv")]
    for key in normalize_kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=3)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise HyperparameterError(f"normalize: VecNormalize takes no argument '{key}'{hint}; it takes "
                                      f"{', '.join(accepted)}")
