"""Train an agent: ``python train.py --algo relax-a2c --env CartPole-v1`` (see ``python train.py -h``)."""

from relax_rl.cli import main

if __name__ == "__main__":  # required: SubprocVecEnv's forkserver/spawn workers re-import this file
    raise SystemExit(main())
