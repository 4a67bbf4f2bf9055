"""RL-Zoo-like training CLI: ``python train.py --algo relax-a2c --env CartPole-v1``.

Hyperparameters come from the packaged ``relax_rl/configs/<algo>.yml`` (env id -> entry), then ``--config FILE``,
then ``--hyperparams k=v ...``. Each run writes ``<log-folder>/<algo>/<env>_<n>/``: ``config.yml``, the training
envs' Monitor CSVs, ``evaluations.npz`` and ``best_model.zip`` (EvalCallback), ``checkpoints/``, the final model
``<env>.zip`` and ``vecnormalize.pkl`` when normalizing. ``--resume RUN_DIR`` continues a run in place.
User errors end as one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pickle
import platform
import random
import re
import shlex
import shutil
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
import yaml
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback, ProgressBarCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger, TensorBoardOutputFormat
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization, unwrap_vec_normalize

import relax_rl
from relax_rl.envs import MissingDependencyError, UnknownEnvironmentError, check_env_id, is_atari, make_env
from relax_rl.hyperparams import (
    SPECIAL_KEYS,
    HyperparameterError,
    MissingEntryError,
    algorithm_defaults,
    build_algo_kwargs,
    resolve_hyperparams,
    yaml_ready,
)

__all__ = ["ALGOS", "CLIError", "TrainResult", "build_parser", "get_algo_class", "main", "train"]

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


class CLIError(ValueError):
    """A user error: reported as one ``error:`` line and exit status 2."""


USER_ERRORS = (CLIError, HyperparameterError, UnknownEnvironmentError, MissingDependencyError)


@dataclass
class TrainResult:
    """What a run did (``train`` returns it; ``main`` prints it as the summary)."""

    algo: str
    env_id: str
    run_dir: str
    seed: int
    n_timesteps: int  # the configured total
    num_timesteps: int  # the model's count at the end
    session_timesteps: int  # trained by this call
    episodes: int  # training episodes in the Monitor files (all sessions)
    wall_time: float
    fps: float
    eval_mean: float | None
    eval_std: float | None
    eval_episodes: int
    model_path: str | None
    tensorboard_dir: str | None
    tensorboard_log: str | None
    interrupted: bool
    resumed_from: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _timesteps(text: str) -> int:
    """``-n`` value: an integer, also written ``1e5``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of timesteps {text!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"the number of timesteps must be a positive integer, got {text!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``train.py`` / ``relax-rl-train``."""
    parser = argparse.ArgumentParser(
        description="Train an agent with tuned hyperparameters (relax_rl/configs/<algo>.yml, RL-Zoo format).",
        epilog="example: python train.py --algo relax-a2c --env CartPole-v1 --hyperparams n_envs=4 n_steps=8",
    )
    add = parser.add_argument
    add("--algo", choices=list(ALGOS), help="algorithm (required unless --resume)")
    add("--env", help="gymnasium environment id, e.g. CartPole-v1 (required unless --resume)")
    add("-n", "--n-timesteps", type=_timesteps, metavar="N", help="total timesteps (overrides the config)")
    add("--seed", type=int, metavar="N", help="random seed (default: drawn at random and recorded in config.yml)")
    add("--hyperparams", nargs="+", action="extend", metavar="KEY=VALUE",
        help="overrides, typed as Python literals: n_steps=8 learning_rate=lin_7e-4 "
             "'policy_kwargs=dict(net_arch=[64, 64])' (the Zoo's KEY:VALUE works too)")
    add("--config", metavar="FILE", help="YAML mapping of hyperparameters applied over the packaged config")
    add("--tensorboard-log", metavar="DIR", help="TensorBoard root; '' disables (default: runs/)")
    add("--log-folder", metavar="DIR", help="run directories go in DIR/<algo>/<env>_<n> (default: logs/)")
    add("--eval-freq", type=int, metavar="N", help="evaluate every N timesteps; -1 disables (default: 10000)")
    add("--eval-episodes", type=int, metavar="N", help="episodes per evaluation (default: 10)")
    add("--save-freq", type=int, metavar="N", help="checkpoint every N timesteps; -1 disables (default: 50000)")
    add("--log-interval", type=int, metavar="N",
        help="log every N iterations (on-policy) or episodes (off-policy) (default: -1, automatic)")
    add("--vec-env", choices=["dummy", "subproc"], help="VecEnv class (default: dummy)")
    add("--device", help="torch device (default: cpu for MlpPolicy, auto otherwise)")
    add("--progress", action=argparse.BooleanOptionalAction, help="show a progress bar (default: on)")
    add("--verbose", type=int, metavar="N", help="verbosity: 0 quiet, 1 training logs (default: 1)")
    add("--resume", metavar="PATH", help="continue a run: its directory or a checkpoint .zip inside it")
    return parser


# --------------------------------------------------------------------------------------------------------------
# preparing a run
# --------------------------------------------------------------------------------------------------------------
@dataclass
class _Run:
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


def _prepare_new(ns: argparse.Namespace) -> _Run:
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
            _check_action_space(ns.algo, ns.env, probe.action_space)
        raise
    if ns.n_timesteps is not None:
        hp["n_timesteps"] = ns.n_timesteps
    if "n_timesteps" not in hp:
        raise CLIError(f"no n_timesteps for {ns.algo} on {ns.env}: pass -n/--n-timesteps")
    seed = ns.seed if ns.seed is not None else random.SystemRandom().randrange(2**31 - EVAL_SEED_OFFSET)
    return _Run(ns.algo, algo_class, ns.env, seed, hp, _options(ns, {}), {"sources": sources})


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


def _prepare_resume(ns: argparse.Namespace) -> _Run:
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
    return _Run(algo, algo_class, env_id, seed, hp, _options(ns, config.get("options", {})), config,
                run_dir=run_dir, resume_model=model_path, resume_steps=steps)


def _new_run_dir(log_folder: str, algo: str, env_name: str) -> Path:
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
# environments, checkpoints, logging
# --------------------------------------------------------------------------------------------------------------
def _make_env(env_id: str, special: dict[str, Any], eval_env: bool, **kwargs: Any) -> VecEnv:
    normalize_kwargs = dict(special.get("normalize_kwargs") or {})
    if eval_env and special["normalize"]:
        normalize_kwargs["norm_reward"] = False
    try:
        venv = make_env(env_id, normalize=special["normalize"], normalize_kwargs=normalize_kwargs or None,
                        env_kwargs=special.get("env_kwargs"), frame_stack=special.get("frame_stack"), **kwargs)
    except (UnknownEnvironmentError, MissingDependencyError):
        raise
    except ValueError as exc:
        raise CLIError(f"cannot build {env_id}: {exc}") from exc
    except TypeError as exc:
        if not special.get("env_kwargs"):
            raise
        raise CLIError(f"cannot build {env_id} with env_kwargs {special['env_kwargs']}: {exc}") from exc
    if eval_env and (vec_normalize := unwrap_vec_normalize(venv)) is not None:
        vec_normalize.training = False
    return venv


def _check_action_space(algo: str, env_id: str, space: spaces.Space) -> None:
    supported = ACTION_SPACES.get(algo, _ANY_SPACE)
    if not isinstance(space, supported):
        names = ", ".join(cls.__name__ for cls in supported)
        fitting = [name for name, allowed in ACTION_SPACES.items() if isinstance(space, allowed)]
        hint = f"; algorithms for this space: {', '.join(fitting)}" if fitting else ""
        raise CLIError(
            f"{algo} does not support the action space {type(space).__name__} of {env_id} ({space}); "
            f"{algo} supports: {names}{hint}"
        )


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


def _restore(model: BaseAlgorithm, model_path: Path, run_dir: Path, train_env: VecEnv) -> None:
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


def _eval_callback(eval_env: VecEnv, run_dir: Path, options: dict[str, Any], n_envs: int, steps: int) -> EvalCallback:
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


def _logger(tb_dir: Path | None, verbose: int) -> Logger:
    formats: list[KVWriter] = [HumanOutputFormat(sys.stdout)] if verbose >= 1 else []
    if tb_dir is not None:
        formats.append(TensorBoardOutputFormat(str(tb_dir)))
    return Logger(folder=str(tb_dir) if tb_dir else None, output_formats=formats)


def _log_interval(run: _Run, model: BaseAlgorithm, n_envs: int) -> int:
    """Log about 100 times per run (on-policy: iterations; off-policy: episodes, SB3's 4, or 1 for short runs)."""
    if run.options["log_interval"] > 0:
        return run.options["log_interval"]
    if isinstance(model, OffPolicyAlgorithm):
        return 1 if run.hyperparams["n_timesteps"] <= 20_000 else 4
    iterations = run.hyperparams["n_timesteps"] // (getattr(model, "n_steps", 1) * n_envs)
    return max(1, iterations // 100)


def count_episodes(run_dir: str | Path) -> int:
    """Completed training episodes: rows of every ``*.monitor.csv`` under ``run_dir``."""
    total = 0
    for path in Path(run_dir).rglob("*.monitor.csv"):
        lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        total += max(len(lines) - 1, 0)  # minus the header
    return total


def _versions() -> dict[str, str]:
    return {"relax-rl": relax_rl.__version__, "torch": torch.__version__,
            "stable-baselines3": stable_baselines3.__version__, "gymnasium": gym.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


# --------------------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------------------
def _namespace(args: argparse.Namespace | Sequence[str] | None) -> tuple[argparse.Namespace, list[str] | None]:
    parser = build_parser()
    if args is None or isinstance(args, argparse.Namespace):
        namespace = parser.parse_args([])
        if args is not None:
            vars(namespace).update(vars(args))
        return namespace, None
    return parser.parse_args(list(args)), list(args)


def _command(argv: Sequence[str]) -> str:
    """The command line as typed: ``python train.py ...`` or ``relax-rl-train ...``."""
    program = sys.argv[0] or "train.py"
    prefix = ["python", program] if program.endswith(".py") else [Path(program).name]
    return shlex.join([*prefix, *argv])


def train(args: argparse.Namespace | Sequence[str] | None = None, callbacks: Sequence[BaseCallback] = (),
          command: str | None = None) -> TrainResult:
    """Run (or resume) one training run; return what it did. Raises the USER_ERRORS for user errors.

    :param args: a namespace from :func:`build_parser` (missing attributes take their defaults) or argv strings.
    :param callbacks: extra SB3 callbacks for ``learn`` (a KeyboardInterrupt raised in one is handled like Ctrl-C).
    :param command: the command line to record in ``config.yml`` (default: from ``args`` / ``sys.argv``).
    """
    ns, argv = _namespace(args)
    if command is None:
        command = _command(argv if argv is not None else sys.argv[1:])
    run = _prepare_resume(ns) if ns.resume else _prepare_new(ns)
    opts = run.options
    policy = run.hyperparams.get("policy", "MlpPolicy")
    cnn = policy == "CnnPolicy"
    if not cnn:
        torch.set_num_threads(1)
    device = opts["device"] or ("auto" if cnn else "cpu")
    n_envs = run.hyperparams.get("n_envs", 1)
    env_name = run.env_id.replace("/", "-")
    _, special = build_algo_kwargs(run.hyperparams, run.algo_class)  # checks every value before any env is built
    eval_env = _make_env(run.env_id, special, True, n_envs=1, seed=run.seed + EVAL_SEED_OFFSET)
    space = eval_env.action_space
    try:
        _check_action_space(run.algo, run.env_id, space)
    except CLIError:
        eval_env.close()
        raise
    algo_kwargs, special = build_algo_kwargs(
        run.hyperparams, run.algo_class, int(np.prod(space.shape)) if isinstance(space, spaces.Box) else None
    )

    resumed = run.run_dir is not None
    run_dir = run.run_dir if resumed else _new_run_dir(opts["log_folder"], run.algo, env_name)
    if resumed:  # this session's Monitor files go in resume_<k>/ (Monitor would truncate the earlier ones)
        segment = 1 + sum(1 for p in run_dir.glob("resume_*") if p.is_dir())
        monitor_dir, env_seed = run_dir / f"resume_{segment}", run.seed + run.resume_steps
    else:
        monitor_dir, env_seed = run_dir, run.seed
    train_env = None
    try:
        train_env = _make_env(run.env_id, special, False, n_envs=n_envs, seed=env_seed, vec_env=opts["vec_env"],
                              monitor_dir=str(monitor_dir))
        if resumed:
            model = run.algo_class.load(run.resume_model, env=train_env, device=device)
            model.set_random_seed(env_seed)
            _restore(model, run.resume_model, run_dir, train_env)
            model.verbose = opts["verbose"]
        else:
            try:
                model = run.algo_class(policy, train_env, seed=run.seed, verbose=opts["verbose"], device=device,
                                       **algo_kwargs)
            except (ValueError, AssertionError) as exc:
                raise CLIError(f"invalid hyperparameters for {run.algo} on {run.env_id}: {exc or repr(exc)}") from exc
    except BaseException:
        for venv in (train_env, eval_env):
            if venv is not None:
                venv.close()
        shutil.rmtree(monitor_dir, ignore_errors=True)  # the new run dir, or this session's resume_<k>/
        raise

    tb_root = opts["tensorboard_log"] or None
    tb_dir = Path(tb_root) / run.algo / run_dir.name if tb_root else None
    model.set_logger(_logger(tb_dir, opts["verbose"]))
    config = _write_config(run, run_dir, command, device, algo_kwargs, special, tb_dir)
    total = config["hyperparams"]["n_timesteps"]

    cb: list[BaseCallback] = []
    if opts["eval_freq"] > 0:
        cb.append(_eval_callback(eval_env, run_dir, opts, n_envs, run.resume_steps))
    if opts["save_freq"] > 0:
        cb.append(RunCheckpointCallback(max(opts["save_freq"] // n_envs, 1), run_dir / CHECKPOINTS))
    progress = ProgressBarCallback() if opts["progress"] else None
    cb.extend([*callbacks, *([progress] if progress else [])])

    verb = f"Resuming from {run.resume_model} at {run.resume_steps} timesteps" if resumed else "Training"
    print(f"{verb}: {run.algo} on {run.env_id}, seed {run.seed}, {total} timesteps, run dir {run_dir}")
    if tb_dir is not None:
        print(f"TensorBoard logs: {tb_dir}")
    start_steps, start = model.num_timesteps, time.perf_counter()
    interrupted = False
    eval_mean = eval_std = None
    try:
        try:
            model.learn(total_timesteps=total - model.num_timesteps, callback=cb, reset_num_timesteps=not resumed,
                        log_interval=_log_interval(run, model, n_envs))
        except KeyboardInterrupt:
            interrupted = True
            if progress is not None and getattr(progress, "pbar", None) is not None:
                progress.pbar.close()
        wall = time.perf_counter() - start
        session = model.num_timesteps - start_steps
        if interrupted:  # a checkpoint, not the final model: --resume continues from it
            model_path = save_checkpoint(model, run_dir / CHECKPOINTS)
            print(f"\nInterrupted: saved {model_path}", file=sys.stderr)
        else:
            model_path = run_dir / f"{env_name}.zip"
            model.save(model_path)
            if (vec_normalize := model.get_vec_normalize_env()) is not None:
                vec_normalize.save(str(run_dir / "vecnormalize.pkl"))
                sync_envs_normalization(train_env, eval_env)
            rewards = evaluate_policy(model, eval_env, n_eval_episodes=opts["eval_episodes"], deterministic=True)
            eval_mean, eval_std = float(rewards[0]), float(rewards[1])
    finally:
        train_env.close()
        eval_env.close()
    return TrainResult(
        algo=run.algo, env_id=run.env_id, run_dir=str(run_dir), seed=run.seed, n_timesteps=total,
        num_timesteps=model.num_timesteps, session_timesteps=session, episodes=count_episodes(run_dir),
        wall_time=wall, fps=session / wall if wall > 0 else 0.0, eval_mean=eval_mean, eval_std=eval_std,
        eval_episodes=opts["eval_episodes"], model_path=str(model_path),
        tensorboard_dir=str(tb_dir) if tb_dir else None, tensorboard_log=tb_root, interrupted=interrupted,
        resumed_from=str(run.resume_model) if resumed else None,
    )


def _write_config(run: _Run, run_dir: Path, command: str, device: str, algo_kwargs: dict[str, Any],
                  special: dict[str, Any], tb_dir: Path | None) -> dict[str, Any]:
    """Write (new run) or update (resume) ``config.yml``; return its content."""
    now = datetime.now().isoformat(timespec="seconds")
    if run.run_dir is not None:
        config = dict(run.config)
        config["hyperparams"] = dict(run.hyperparams)
        config["options"] = dict(run.options)
        config.setdefault("resumes", []).append(
            {"command": command, "from": str(run.resume_model), "num_timesteps": run.resume_steps,
             "n_timesteps": run.hyperparams["n_timesteps"], "started": now, "versions": _versions()})
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
            "versions": _versions(), "command": command, "cwd": str(Path.cwd()), "started": now,
        }
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(yaml_ready(config), sort_keys=False))
    return config


def format_summary(result: TrainResult) -> str:
    """The end-of-run summary (one screen)."""
    status = "interrupted" if result.interrupted else "finished"
    rule = "=" * 72
    lines = [rule, f"{result.algo} on {result.env_id}: {status}",
             f"  run dir       {result.run_dir}",
             f"  timesteps     {result.num_timesteps} of {result.n_timesteps}"
             f" ({result.session_timesteps} this session)",
             f"  episodes      {result.episodes} (training, from the Monitor files)",
             f"  wall time     {result.wall_time:.1f} s ({result.fps:.0f} fps)"]
    if result.eval_mean is not None:
        lines.append(f"  final eval    {result.eval_mean:.2f} ± {result.eval_std:.2f} "
                     f"over {result.eval_episodes} episodes (deterministic)")
    lines.append(f"  model         {result.model_path}")
    if result.interrupted:
        lines.append(f"  resume with   python train.py --resume {result.run_dir}")
    if result.tensorboard_log:
        lines.append(f"  tensorboard   tensorboard --logdir {result.tensorboard_log}")
    lines.append(rule)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train.py`` and ``relax-rl-train``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        result = train(args, command=_command(argv))
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result))
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
