"""Run directories of the training CLI (:mod:`relax_rl.cli`): preparing a new or resumed run, checkpoints, config.yml.

A run lives in ``<log-folder>/<algo>/<env>_<n>/`` (:func:`new_run_dir`): ``config.yml`` (:func:`write_config`; a
resume appends to its ``resumes``), the Monitor CSVs (a resumed session's in ``resume_<k>/``), ``evaluations.npz``,
``best_model.zip``, ``checkpoints/rl_model_<steps>_steps.zip`` with their VecNormalize statistics and the latest
replay buffer (:func:`save_checkpoint`), and the final ``<env>.zip`` with ``vecnormalize.pkl``.
:func:`prepare_new` and :func:`prepare_resume` turn the parsed flags into a :class:`Run`; :func:`restore` reloads what
was saved with the model a run resumes from.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import random
import re
import shlex
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, unwrap_vec_normalize

import relax_rl
from relax_rl.algorithms import ACTION_SPACES, CLIError, check_action_space, get_algo_class
from relax_rl.envs import check_env_id, is_atari, make_env
from relax_rl.hyperparams import SPECIAL_KEYS, MissingEntryError, algorithm_defaults, resolve_hyperparams, yaml_ready

__all__ = ["Run", "RunCheckpointCallback", "count_episodes", "eval_callback", "new_run_dir", "prepare_new",
           "prepare_resume", "restore", "save_checkpoint", "write_config"]

#: Run options and their defaults (``--resume`` reuses the run's own unless a flag is given again).
OPTION_DEFAULTS: dict[str, Any] = {
    "tensorboard_log": "runs/", "log_folder": "logs/", "eval_freq": 10_000, "eval_episodes": 10,
    "save_freq": 50_000, "vec_env": "dummy", "device": None, "progress": True, "verbose": 1, "log_interval": -1,
}
CONFIG_FILE = "config.yml"
CHECKPOINTS = "checkpoints"
_PREFIX = "rl_model"
_CHECKPOINT = re.compile(rf"^{_PREFIX}_(\d+)_steps\.zip$")
EVAL_SEED_OFFSET = 1_000_000


def command_line(program: str, argv: Sequence[str] | None = None) -> str:
    """``python <program> <args>``, shell-quoted, recorded beside results so that they can be redone
    (``argv`` None: this process's ``sys.argv[1:]``)."""
    return shlex.join(["python", program, *(sys.argv[1:] if argv is None else argv)])


@dataclass
class Run:
    """A run to train: what :func:`prepare_new` / :func:`prepare_resume` make of the flags (and the run dir)."""

    algo: str
    algo_class: type[BaseAlgorithm]
    env_id: str
    seed: int
    hyperparams: dict[str, Any]
    options: dict[str, Any]
    config: dict[str, Any]
    run_dir: Path | None = None
    resume_model: Path | None = None
    resume_steps: int = 0


# --------------------------------------------------------------------------------------------------------------
# preparing a run
# --------------------------------------------------------------------------------------------------------------
def _options(ns: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """Run options: the flags given, else ``base`` (a resumed run's own), else the defaults; checked."""
    options = {key: getattr(ns, key, None) if getattr(ns, key, None) is not None else base.get(key, default)
               for key, default in OPTION_DEFAULTS.items()}
    for key in ("eval_freq", "save_freq", "log_interval"):
        if options[key] == 0 or options[key] < -1:
            raise CLIError(f"--{key.replace('_', '-')} must be a positive number or -1, got {options[key]}")
    if options["eval_episodes"] < 1:
        raise CLIError(f"--eval-episodes must be at least 1, got {options['eval_episodes']}")
    return options


def prepare_new(ns: argparse.Namespace) -> Run:
    """A new run from the flags and the hyperparameter configs (its run dir is made later, by :func:`new_run_dir`)."""

    missing = [flag for flag, value in (("--algo", ns.algo), ("--env", ns.env)) if not value]
    if missing:
        raise CLIError(f"the following arguments are required: {', '.join(missing)} (or --resume PATH)")
    algo_class = get_algo_class(ns.algo)
    check_env_id(ns.env)
    try:
        hp, sources = resolve_hyperparams(ns.algo, algo_class, ns.env, is_atari(ns.env), ns.config,
                                          ns.hyperparams or [])
    except MissingEntryError:
        if ns.algo in ACTION_SPACES:  # no entry because the algorithm cannot train on this env at all?
            probe = make_env(ns.env)
            probe.close()
            check_action_space(ns.algo, ns.env, probe.action_space)
        raise
    if ns.n_timesteps is not None:
        hp["n_timesteps"] = ns.n_timesteps
    if "n_timesteps" not in hp:
        raise CLIError(f"no n_timesteps for {ns.algo} on {ns.env}: pass -n/--n-timesteps")
    if ns.seed is not None and not 0 <= ns.seed < 2**31 - EVAL_SEED_OFFSET:
        raise CLIError(f"--seed must be in [0, {2**31 - EVAL_SEED_OFFSET}), got {ns.seed}")
    seed = ns.seed if ns.seed is not None else random.SystemRandom().randrange(2**31 - EVAL_SEED_OFFSET)
    return Run(ns.algo, algo_class, ns.env, seed, hp, _options(ns, {}), {"sources": sources})


def _model_timesteps(path: Path) -> int:
    try:
        with zipfile.ZipFile(path) as archive:
            return int(json.loads(archive.read("data"))["num_timesteps"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise CLIError(f"cannot read the saved model '{path}': {exc}") from None


def _find_resume_model(path: Path, env_name: str, required: bool = True) -> Path | None:
    """The model to resume from in a run dir: the latest checkpoint, or the final model if it is as recent."""
    checkpoints = (path / CHECKPOINTS).glob("*.zip")
    candidates = [(int(m.group(1)), 0, p) for p in checkpoints if (m := _CHECKPOINT.match(p.name))]
    final = path / f"{env_name}.zip"
    if final.is_file():
        candidates.append((_model_timesteps(final), 1, final))
    if not candidates and not required:
        return None
    if not candidates:
        raise CLIError(f"run directory '{path}' has no checkpoint ({CHECKPOINTS}/*.zip) and no final model to resume")
    return max(candidates)[2]


def prepare_resume(ns: argparse.Namespace) -> Run:
    """The run that ``--resume PATH`` continues, with the model to load; a flag given again overrides its option."""

    path = Path(ns.resume)
    if not path.exists():
        raise CLIError(f"--resume: '{path}' does not exist")
    if path.is_file():
        if path.suffix != ".zip":
            raise CLIError(f"--resume: '{path}' is neither a run directory nor a model .zip")
        run_dir = path.parent.parent if path.parent.name == CHECKPOINTS else path.parent
    else:
        run_dir = path
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise CLIError(f"--resume: '{run_dir}' is not a run directory (it has no {CONFIG_FILE})")
    try:
        config = yaml.safe_load(config_path.read_text())
        algo, env_id, seed, hp = config["algo"], config["env"], int(config["seed"]), dict(config["hyperparams"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise CLIError(f"--resume: cannot read '{config_path}': {exc}") from None
    for flag, given, saved in (("--algo", ns.algo, algo), ("--env", ns.env, env_id), ("--seed", ns.seed, seed)):
        if given is not None and given != saved:
            raise CLIError(f"--resume: the run was trained with {flag} {saved}, not {given}")
    if ns.hyperparams or ns.config:
        raise CLIError("--resume continues a run with its saved hyperparameters: drop --hyperparams/--config")
    algo_class = get_algo_class(algo)
    if ns.n_timesteps is not None:
        hp["n_timesteps"] = ns.n_timesteps
    latest = _find_resume_model(run_dir, env_id.replace("/", "-"), required=not path.is_file())
    model_path = path if path.is_file() else latest
    steps = _model_timesteps(model_path)
    if latest is not None and (later := _model_timesteps(latest)) > steps:
        print(f"warning: resuming from {steps} timesteps although '{run_dir}' holds a model at {later}; "
              "that later history stays in its checkpoints and Monitor files", file=sys.stderr)
    if steps >= hp["n_timesteps"]:
        raise CLIError(f"the run in '{run_dir}' is complete ({steps} of {hp['n_timesteps']} timesteps); "
                       "pass -n/--n-timesteps with a larger total to train it further")
    return Run(algo, algo_class, env_id, seed, hp, _options(ns, config.get("options", {})), config,
               run_dir=run_dir, resume_model=model_path, resume_steps=steps)


def new_run_dir(log_folder: str, algo: str, env_name: str) -> Path:
    """Make ``<log_folder>/<algo>/<env_name>_<n>`` with the next free ``n``."""
    base = Path(log_folder) / algo
    pattern = re.compile(rf"^{re.escape(env_name)}_(\d+)$")
    while True:
        ids = [int(m.group(1)) for p in base.glob(f"{env_name}_*") if (m := pattern.match(p.name))]
        run_dir = base / f"{env_name}_{max(ids, default=0) + 1}"
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:  # another run took the id
            continue


# --------------------------------------------------------------------------------------------------------------
# checkpoints and resuming
# --------------------------------------------------------------------------------------------------------------
def save_checkpoint(model: BaseAlgorithm, folder: Path) -> Path:
    """Save model, VecNormalize statistics and (off-policy) the replay buffer, with SB3's checkpoint names.
    Only the latest replay buffer is kept."""
    folder.mkdir(parents=True, exist_ok=True)
    steps = model.num_timesteps
    path = folder / f"{_PREFIX}_{steps}_steps.zip"
    model.save(path)
    if (vec_normalize := model.get_vec_normalize_env()) is not None:
        vec_normalize.save(str(folder / f"{_PREFIX}_vecnormalize_{steps}_steps.pkl"))
    if getattr(model, "replay_buffer", None) is not None:
        buffer_path = folder / f"{_PREFIX}_replay_buffer_{steps}_steps.pkl"
        model.save_replay_buffer(buffer_path)  # type: ignore[attr-defined]
        for old in folder.glob(f"{_PREFIX}_replay_buffer_*_steps.pkl"):
            if old != buffer_path:
                old.unlink()
    return path


class RunCheckpointCallback(CheckpointCallback):
    """SB3's CheckpointCallback (``save_freq`` in calls) saving through :func:`save_checkpoint`."""

    def __init__(self, save_freq: int, save_path: str | Path) -> None:
        super().__init__(save_freq, str(save_path), _PREFIX, save_replay_buffer=True, save_vecnormalize=True)

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            save_checkpoint(self.model, Path(self.save_path))
        return True


def _companion(model_path: Path, run_dir: Path, kind: str) -> Path:
    """The VecNormalize (``vecnormalize_``) or replay buffer (``replay_buffer_``) file saved with a model."""
    if (match := _CHECKPOINT.match(model_path.name)) is not None:
        return model_path.parent / f"{_PREFIX}_{kind}{match.group(1)}_steps.pkl"
    return run_dir / f"{kind.rstrip('_')}.pkl"


def restore(model: BaseAlgorithm, model_path: Path, run_dir: Path, train_env: VecEnv) -> None:
    """Load the VecNormalize statistics and replay buffer saved with ``model_path``, when there are any."""
    if (vec_normalize := unwrap_vec_normalize(train_env)) is not None:
        stats_path = _companion(model_path, run_dir, "vecnormalize_")
        if stats_path.is_file():
            with open(stats_path, "rb") as handle:
                saved = pickle.load(handle)
            vec_normalize.obs_rms, vec_normalize.ret_rms = saved.obs_rms, saved.ret_rms
        else:
            print(f"warning: no VecNormalize statistics saved with {model_path}; starting from fresh ones",
                  file=sys.stderr)
    buffer_path = _companion(model_path, run_dir, "replay_buffer_")
    if isinstance(model, OffPolicyAlgorithm) and buffer_path.is_file():
        model.load_replay_buffer(buffer_path)


def eval_callback(eval_env: VecEnv, run_dir: Path, options: dict[str, Any], n_envs: int, steps: int) -> EvalCallback:
    """SB3's EvalCallback writing into the run dir; resuming at ``steps``, it keeps the evaluations made until then."""
    callback = EvalCallback(
        eval_env, n_eval_episodes=options["eval_episodes"], eval_freq=max(options["eval_freq"] // n_envs, 1),
        log_path=str(run_dir), best_model_save_path=str(run_dir), deterministic=True, verbose=options["verbose"],
    )
    previous = run_dir / "evaluations.npz"
    if steps and previous.is_file():  # resuming: keep the evaluations made before the model being resumed
        with np.load(previous) as data:
            keep = data["timesteps"] <= steps
            callback.evaluations_timesteps = list(data["timesteps"][keep])
            callback.evaluations_results = [list(r) for r in data["results"][keep]]
            callback.evaluations_length = [list(r) for r in data["ep_lengths"][keep]]
        if callback.evaluations_results:
            callback.best_mean_reward = float(max(np.mean(r) for r in callback.evaluations_results))
    return callback


# --------------------------------------------------------------------------------------------------------------
# run records
# --------------------------------------------------------------------------------------------------------------
def count_episodes(run_dir: str | Path) -> int:
    """Completed training episodes: rows of every ``*.monitor.csv`` under ``run_dir``."""
    total = 0
    for path in Path(run_dir).rglob("*.monitor.csv"):
        lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        total += max(len(lines) - 1, 0)  # minus the header
    return total


def machine_info() -> dict[str, Any]:
    """What the run's numbers depend on besides the versions: the CPU, the cores this process may use, torch's
    threads and the kernels torch picked. Kernels for different instruction sets round differently, so the same
    seed and versions can train differently on two machines (``torch_cpu_capability``), and wall times only
    compare on one machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"machine": platform.machine(), "processor": _cpu_model(), "cores": cores,
            "torch_threads": torch.get_num_threads(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _cpu_model() -> str:
    """The CPU's model name where Linux gives it (platform.processor() there is only the architecture)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    return {"relax-rl": relax_rl.__version__, "torch": torch.__version__,
            "stable-baselines3": stable_baselines3.__version__, "gymnasium": gym.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def write_config(run: Run, run_dir: Path, command: str, device: str, algo_kwargs: dict[str, Any],
                 special: dict[str, Any], tb_dir: Path | None) -> dict[str, Any]:
    """Write (new run) or update (resume) ``config.yml``; return its content."""
    now = datetime.now().isoformat(timespec="seconds")
    if run.run_dir is not None:
        config = dict(run.config)
        config["hyperparams"] = dict(run.hyperparams)
        config["options"] = dict(run.options)
        config.setdefault("resumes", []).append(
            {"command": command, "from": str(run.resume_model), "num_timesteps": run.resume_steps,
             "n_timesteps": run.hyperparams["n_timesteps"], "started": now, "versions": _versions(),
             "machine": machine_info()})
    else:
        resolved = algorithm_defaults(run.algo_class)
        resolved.update({k: v for k, v in run.hyperparams.items() if k not in SPECIAL_KEYS or k == "policy_kwargs"})
        if "action_noise" in algo_kwargs:
            resolved["action_noise"] = repr(algo_kwargs["action_noise"])
        env_settings = {key: special.get(key) for key in ("n_envs", "normalize", "normalize_kwargs", "frame_stack",
                                                           "env_kwargs")}
        env_settings["n_envs"] = env_settings["n_envs"] or 1
        config = {
            "algo": run.algo, "env": run.env_id, "seed": run.seed,
            "hyperparams": run.hyperparams,
            "algorithm_kwargs": resolved,
            "policy": run.hyperparams.get("policy", "MlpPolicy"),
            "env_settings": env_settings,
            "sources": run.config["sources"],
            "options": {**run.options, "device": device},
            "run_dir": str(run_dir), "tensorboard_dir": str(tb_dir) if tb_dir else None,
            "versions": _versions(), "machine": machine_info(), "command": command, "cwd": str(Path.cwd()),
            "started": now,
        }
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(yaml_ready(config), sort_keys=False))
    return config
