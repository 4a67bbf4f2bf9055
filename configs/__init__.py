"""Packaged hyperparameters (RL-Zoo format: env id -> settings), one YAML file per algorithm."""
