"""RL-Zoo-like training CLI: ``python train.py --algo relax-a2c --env CartPole-v1``.

Hyperparameters come from the packaged ``configs/<algo>.yml`` (installed as ``relax_rl.configs``; env id ->
entry), then ``--config FILE``, then ``--hyperparams k=v ...``. Each run writes ``<log-folder>/<algo>/<env>_<n>/``:
``config.yml``, the training envs' Monitor CSVs, ``evaluations.npz`` and ``best_model.zip`` (EvalCallback),
``checkpoints/``, the final model ``<env>.zip`` and ``vecnormalize.pkl`` when normalizing (:mod:`relax_rl.runs`
prepares runs and handles these files). ``--resume RUN_DIR`` continues a run in place.
User errors end as one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, ProgressBarCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger, TensorBoardOutputFormat
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization, unwrap_vec_normalize

from relax_rl.algorithms import ALGOS, CLIError, check_action_space, get_algo_class
from relax_rl.envs import MissingDependencyError, UnknownEnvironmentError, make_env
from relax_rl.hyperparams import HyperparameterError, build_algo_kwargs
from relax_rl.runs import (
    CHECKPOINTS,
    EVAL_SEED_OFFSET,
    Run,
    RunCheckpointCallback,
    command_line,
    count_episodes,
    eval_callback,
    new_run_dir,
    prepare_new,
    prepare_resume,
    restore,
    save_checkpoint,
    write_config,
)

__all__ = ["ALGOS", "CLIError", "TrainResult", "build_parser", "get_algo_class", "main", "positive_int_type",
           "timesteps_type", "train"]

#: The errors ``train`` raises for user errors.
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


def timesteps_type(text: str) -> int:
    """argparse type of a number of timesteps (``-n``, the benchmarks' ``--budget``): a positive integer, also
    written ``1e5``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of timesteps {text!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"the number of timesteps must be a positive integer, got {text!r}")
    return int(value)


def positive_int_type(text: str) -> int:
    """argparse type of a count that must be at least 1 (seeds, workers, blocks)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``train.py`` / ``relax-rl-train``."""
    parser = argparse.ArgumentParser(
        description="Train an agent with tuned hyperparameters (configs/<algo>.yml, RL-Zoo format).",
        epilog="example: python train.py --algo relax-a2c --env CartPole-v1 --hyperparams n_envs=4 n_steps=8",
    )
    add = parser.add_argument
    add("--algo", choices=list(ALGOS), help="algorithm (required unless --resume)")
    add("--env", help="gymnasium environment id, e.g. CartPole-v1 (required unless --resume)")
    add("-n", "--n-timesteps", type=timesteps_type, metavar="N", help="total timesteps (overrides the config)")
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
# environments, logging
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


def _check_policy_fits(policy: str, env_id: str, observation_space: spaces.Space) -> None:
    """CLIError when MultiInputPolicy meets a non-Dict observation space or another policy meets a Dict one."""
    is_dict = isinstance(observation_space, spaces.Dict)
    if (policy == "MultiInputPolicy") != is_dict:
        use = "MultiInputPolicy" if is_dict else "MlpPolicy (or CnnPolicy for images)"
        raise CLIError(f"{policy} does not fit the observation space {type(observation_space).__name__} of {env_id}: "
                       f"use policy={use}")


def _logger(tb_dir: Path | None, verbose: int) -> Logger:
    formats: list[KVWriter] = [HumanOutputFormat(sys.stdout)] if verbose >= 1 else []
    if tb_dir is not None:
        formats.append(TensorBoardOutputFormat(str(tb_dir)))
    return Logger(folder=str(tb_dir) if tb_dir else None, output_formats=formats)


def _log_interval(run: Run, model: BaseAlgorithm, n_envs: int) -> int:
    """Log about 100 times per run (on-policy: iterations; off-policy: episodes, SB3's 4, or 1 for short runs)."""
    if run.options["log_interval"] > 0:
        return run.options["log_interval"]
    if isinstance(model, OffPolicyAlgorithm):
        return 1 if run.hyperparams["n_timesteps"] <= 20_000 else 4
    iterations = run.hyperparams["n_timesteps"] // (getattr(model, "n_steps", 1) * n_envs)
    return max(1, iterations // 100)


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
    return command_line(program, argv) if program.endswith(".py") else shlex.join([Path(program).name, *argv])


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
    run = prepare_resume(ns) if ns.resume else prepare_new(ns)
    opts = run.options
    for flag, folder in (("--log-folder", opts["log_folder"]), ("--tensorboard-log", opts["tensorboard_log"])):
        try:  # (made now: a folder that cannot be made must not fail the run after its envs are built)
            if folder:
                Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CLIError(f"{flag} {folder!r}: cannot make that folder ({exc.strerror or exc})") from exc
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
        check_action_space(run.algo, run.env_id, space)
        _check_policy_fits(policy, run.env_id, eval_env.observation_space)
    except CLIError:
        eval_env.close()
        raise
    algo_kwargs, special = build_algo_kwargs(
        run.hyperparams, run.algo_class, int(np.prod(space.shape)) if isinstance(space, spaces.Box) else None
    )

    resumed = run.run_dir is not None
    run_dir = run.run_dir if resumed else new_run_dir(opts["log_folder"], run.algo, env_name)
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
            restore(model, run.resume_model, run_dir, train_env)
            model.verbose = opts["verbose"]
        else:
            try:
                model = run.algo_class(policy, train_env, seed=run.seed, verbose=opts["verbose"], device=device,
                                       **algo_kwargs)
            except (ValueError, AssertionError, TypeError) as exc:  # (TypeError: an argument SB3 cannot take)
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
    config = write_config(run, run_dir, command, device, algo_kwargs, special, tb_dir)
    total = config["hyperparams"]["n_timesteps"]

    cb: list[BaseCallback] = []
    if opts["eval_freq"] > 0:
        cb.append(eval_callback(eval_env, run_dir, opts, n_envs, run.resume_steps))
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
