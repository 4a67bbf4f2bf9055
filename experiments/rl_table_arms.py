"""What the RL table (``rl_table.py``) runs: its environments with their thresholds, budgets and seeds, the K of
the return over the first K steps, the arms with their hyperparameter overrides, and the paper's numbers.
``tune.py`` searches over the same arms."""

from __future__ import annotations

# env id -> (thresholds, shared budget in timesteps, seeds)
ENVS: dict[str, tuple[tuple[float, ...], int, int]] = {
    "CartPole-v1": ((195.0, 475.0), 200_000, 10),
    "LunarLander-v3": ((200.0,), 1_000_000, 5),
    "InvertedPendulum-v5": ((950.0,), 300_000, 5),
}

# env id -> K of the floor-free score, the mean return over each run's first K steps (run_scores.py): past every
# arm's solves at the first threshold, and short of the earliest stop of any committed run (runs stop at the last
# threshold: CartPole's earliest at 51,496 steps, InvertedPendulum's at 99,288, LunarLander's at 454,832). A budget
# below 2 K (--budget) lowers K to half of it, which a run that trains its whole budget covers.
RETURN_STEPS: dict[str, int] = {"CartPole-v1": 50_000, "LunarLander-v3": 400_000, "InvertedPendulum-v5": 90_000}

# arm -> (algo, hyperparameter overrides, action-space kinds it applies to)
ARMS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "relax-a2c": ("relax-a2c", (), ("discrete", "box")),
    "relax-a2c (c-hat off)": ("relax-a2c", ("action_dependent_cv=False",), ("discrete", "box")),
    "a2c": ("a2c", (), ("discrete", "box")),
    "ppo": ("ppo", (), ("discrete", "box")),
    "relax-ddpg": ("relax-ddpg", (), ("box",)),
    # optional (not in the default --arms): φ's step on every 4th update only, the cheaper variant
    "relax-a2c (phi every 4th update)": ("relax-a2c", ("cv_update_interval=4",), ("discrete", "box")),
    # optional: φ's objective plus the fit of ĉ(z̃⊥) to the advantage (cv_regression_coef, RelaxDDPG's default 1)
    "relax-a2c (c-hat fits the advantage)": ("relax-a2c", ("cv_regression_coef=1.0",), ("discrete", "box")),
    # optional: L2 decay on φ (cv_weight_decay), so ĉ falls back to 0 where the variance objective stops holding it
    "relax-a2c (phi weight decay 0.01)": ("relax-a2c", ("cv_weight_decay=0.01",), ("discrete", "box")),
    # optional: ĉ's weight in θ's estimate set to the variance-minimizing β estimated from past batches
    "relax-a2c (cv_coef auto)": ("relax-a2c", ("cv_coef=auto",), ("discrete", "box")),
    # optional: both of the last two, β's weighting and φ's step on every 4th update
    "relax-a2c (cv_coef auto, phi every 4th update)": ("relax-a2c", ("cv_coef=auto", "cv_update_interval=4"),
                                                       ("discrete", "box")),
    # optional: the paper's regime, long segments of nearly Monte Carlo returns (one env, 200 steps per update),
    # for ĉ on and off alike
    "relax-a2c (1 env, 200-step segments)": ("relax-a2c", ("n_envs=1", "n_steps=200"), ("discrete", "box")),
    "relax-a2c (c-hat off, 1 env, 200-step segments)": ("relax-a2c", ("action_dependent_cv=False", "n_envs=1",
                                                                      "n_steps=200"), ("discrete", "box")),
    # optional: the same regime with β = cv_coef auto allowed up to 10, so a ĉ that is still too small is scaled up
    "relax-a2c (cv_coef auto up to 10, 1 env, 200-step segments)": (
        "relax-a2c", ("cv_coef=auto", "cv_coef_max=10", "n_envs=1", "n_steps=200"), ("discrete", "box")),
    # optional: and φ's learning rate 10× the default, so ĉ grows to Â's size within the first 20k steps
    "relax-a2c (cv_coef auto up to 10, phi lr 0.01, 1 env, 200-step segments)": (
        "relax-a2c", ("cv_coef=auto", "cv_coef_max=10", "cv_learning_rate=0.01", "n_envs=1", "n_steps=200"),
        ("discrete", "box")),
    # optional: the regime with ĉ's output in units of a running std of Â (cv_advantage_scale), so ĉ is not
    # limited to growing at about φ's learning rate per step
    "relax-a2c (c-hat in units of the advantage spread, 1 env, 200-step segments)": (
        "relax-a2c", ("cv_advantage_scale=True", "n_envs=1", "n_steps=200"), ("discrete", "box")),
    # optional: and β = cv_coef auto up to 10
    "relax-a2c (c-hat in units of the advantage spread, beta up to 10, 1 env, 200-step segments)": (
        "relax-a2c", ("cv_advantage_scale=True", "cv_coef=auto", "cv_coef_max=10", "n_envs=1", "n_steps=200"),
        ("discrete", "box")),
    # optional: and 4 φ steps per update (this regime updates once per 200 steps, so extra φ steps cost less)
    "relax-a2c (c-hat in units of the advantage spread, beta up to 10, 4 phi steps, 1 env, 200-step segments)": (
        "relax-a2c", ("cv_advantage_scale=True", "cv_coef=auto", "cv_coef_max=10", "cv_updates_per_step=4",
                      "n_envs=1", "n_steps=200"), ("discrete", "box")),
    # optional: or ĉ reading the critic's V(s) (cv_value_input), so it can follow the critic's error as V learns
    "relax-a2c (c-hat in units of the advantage spread, beta up to 10, c-hat reads V, 1 env, 200-step segments)": (
        "relax-a2c", ("cv_advantage_scale=True", "cv_coef=auto", "cv_coef_max=10", "cv_value_input=True",
                      "n_envs=1", "n_steps=200"), ("discrete", "box")),
}
DEFAULT_ARMS = ["relax-a2c", "relax-a2c (c-hat off)", "a2c", "ppo", "relax-ddpg"]

# The paper's numbers (episodes to solve, mean ± std), for the table's paper column.
PAPER = {
    ("CartPole-v1", "a2c"): "1152 ± 90",
    ("CartPole-v1", "relax-a2c"): "472 ± 114",
    ("LunarLander-v3", "a2c"): "162374 ± 17241",
    ("LunarLander-v3", "relax-a2c"): "68712 ± 20668",
    ("InvertedPendulum-v5", "a2c"): "6243 ± 164",
    ("InvertedPendulum-v5", "relax-a2c"): "2067 ± 412 (LAX)",
}
