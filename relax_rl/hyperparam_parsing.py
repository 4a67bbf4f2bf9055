"""Typed values from text: ``--hyperparams`` overrides and Zoo-style ``"dict(...)"`` strings, read with :mod:`ast`.

Nothing here calls ``eval``: only literals, ``dict(...)`` calls and known class names (activations, optimizers,
``RMSpropTFLike``) are accepted. :mod:`relax_rl.hyperparams` builds on these.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["HyperparameterError", "parse_overrides", "parse_python_data", "parse_value", "resolve_class"]

ACTIVATIONS = {
    "tanh": "Tanh", "relu": "ReLU", "elu": "ELU", "leaky_relu": "LeakyReLU", "gelu": "GELU", "silu": "SiLU",
    "selu": "SELU", "sigmoid": "Sigmoid", "identity": "Identity",
}
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class HyperparameterError(ValueError):
    """A malformed, unknown or invalid hyperparameter (a user error)."""


def resolve_class(name: str) -> type:
    """The class a name stands for: ``tanh``/``relu``..., ``nn.ReLU``, ``th.nn.Tanh``, ``Adam``, ``RMSpropTFLike``."""
    if not isinstance(name, str):
        raise HyperparameterError(f"expected a class name, got {name!r}")
    if name in ACTIVATIONS:
        return getattr(torch.nn, ACTIVATIONS[name])
    if name == "RMSpropTFLike":
        from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

        return RMSpropTFLike
    short = re.sub(r"^(torch|th)\.", "", name)
    for prefix, module, base in (("nn.", torch.nn, torch.nn.Module), ("optim.", torch.optim, torch.optim.Optimizer)):
        attr = short[len(prefix):] if short.startswith(prefix) else short
        if short.startswith(prefix) or "." not in short:
            cls = getattr(module, attr, None)
            if isinstance(cls, type) and issubclass(cls, base):
                return cls
    raise HyperparameterError(
        f"unknown class name {name!r}; use an activation ({', '.join(ACTIVATIONS)}, or nn.<Name>), "
        "an optimizer (Adam, RMSprop, optim.<Name>) or RMSpropTFLike"
    )


def _dotted_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _literal(node: ast.AST, text: str) -> Any:
    """Plain data from an expression of literals, ``dict(...)`` calls and class names (kept as strings)."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, text)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    elif isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(element, text) for element in node.elts]
    elif isinstance(node, ast.Dict):
        if all(key is not None for key in node.keys):
            return {_literal(k, text): _literal(v, text) for k, v in zip(node.keys, node.values, strict=True)}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if all(keyword.arg is not None for keyword in node.keywords):
            return {keyword.arg: _literal(keyword.value, text) for keyword in node.keywords}
    elif (name := _dotted_name(node)) is not None:
        resolve_class(name)  # only known class names are accepted
        return name
    raise HyperparameterError(f"unsupported expression {ast.unparse(node)!r} in {text!r}")


def parse_python_data(text: str) -> Any:
    """Parse a Python literal that may contain ``dict(...)`` calls and class names (``nn.ReLU``), safely."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise HyperparameterError(f"cannot parse {text!r}: {exc.msg}") from None
    return _literal(tree.body, text)


def parse_value(text: str) -> Any:
    """Type an override value: a Python literal (``8``, ``1e-3``, ``True``, ``[64, 64]``, ``None``...), a
    ``dict(...)`` call, ``true``/``false``/``null`` as in YAML, or else the string itself (``lin_7e-4``)."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    if stripped.startswith("dict(") or stripped.startswith("{"):
        return parse_python_data(stripped)
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["n_steps=8", "learning_rate=lin_1e-3", "policy_kwargs:dict(net_arch=[64])"]`` -> typed mapping.

    ``key=value`` and the RL Zoo's ``key:value`` are both accepted (split at the first ``=`` or ``:``).
    """
    overrides: dict[str, Any] = {}
    for item in items:
        match = re.search(r"[=:]", item)
        if match is None:
            raise HyperparameterError(f"malformed --hyperparams item {item!r}: expected key=value")
        key, value = item[: match.start()].strip(), item[match.end():]
        if not key:
            raise HyperparameterError(f"malformed --hyperparams item {item!r}: the key is empty")
        if not KEY.match(key):
            raise HyperparameterError(f"malformed --hyperparams item {item!r}: {key!r} is not a valid key")
        try:
            overrides[key] = parse_value(value)
        except HyperparameterError as exc:
            raise HyperparameterError(f"malformed --hyperparams item {item!r} (key {key!r}): {exc}") from None
    return overrides
