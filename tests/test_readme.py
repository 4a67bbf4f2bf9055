"""The README's example runs and prints what the README says it prints."""

import contextlib
import io
import os
import re

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        return fh.read()


def _readme_and_details() -> str:
    """The README, then results/README.md (the benchmark details the README's Benchmarks section points to)."""
    with open(os.path.join(ROOT, "results", "README.md"), encoding="utf-8") as fh:
        return _readme() + "\n" + fh.read()


def test_readme_estimator_example_reaches_the_stated_theta():
    readme = _readme()
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "estimator_step" in block)
    # 10,000 stochastic steps: the end point depends on the CPU's floating-point paths (kernels for different
    # instruction sets round differently, and the samples then diverge), so the README states the range of seeds
    low, high = map(float, re.search(r"# (\d\.\d+)-(\d\.\d+) \(from 0\.5", example).groups())
    out = io.StringIO()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with contextlib.redirect_stdout(out):
            exec(compile(example, "README.md", "exec"), {})
    finally:
        torch.set_num_threads(threads)
    assert low <= float(out.getvalue()) <= high < 0.25  # θ went from 0.5 most of the way to its optimum, 0


CARTPOLE_ROWS = (
    ("relax-a2c", "relax-a2c"),
    ("relax-a2c (c-hat off)", "relax-a2c, ĉ off (relax-a2c's settings)"),
    ("a2c", "SB3 A2C (its own tuned settings)"),
    ("ppo", "SB3 PPO (tuned)"),
    ("relax-a2c (phi every 4th update)", "relax-a2c, φ on every 4th update (`cv_update_interval=4`)"),
    ("relax-a2c (c-hat fits the advantage)", "relax-a2c, ĉ also fits Â (`cv_regression_coef=1`)"),
    ("relax-a2c (phi weight decay 0.01)", "relax-a2c, φ weight decay (`cv_weight_decay=0.01`)"),
    ("relax-a2c (cv_coef auto)", "relax-a2c, ĉ weighted by the estimated optimal β (`cv_coef=auto`)"),
    ("relax-a2c (cv_coef auto, phi every 4th update)", "relax-a2c, both (`cv_coef=auto`, `cv_update_interval=4`)"),
    ("relax-a2c (1 env, 200-step segments)",
     "relax-a2c, the paper's regime: 1 env, 200-step segments (`n_envs=1 n_steps=200`)"),
    ("relax-a2c (c-hat off, 1 env, 200-step segments)", "relax-a2c, ĉ off, 1 env, 200-step segments"),
    ("relax-a2c (cv_coef auto up to 10, 1 env, 200-step segments)",
     "relax-a2c, 1 env, 200-step segments, β up to 10 (`cv_coef=auto cv_coef_max=10`)"),
    ("relax-a2c (cv_coef auto up to 10, phi lr 0.01, 1 env, 200-step segments)",
     "relax-a2c, 1 env, 200-step segments, β up to 10, φ's learning rate 0.01"),
    ("relax-a2c (c-hat in units of the advantage spread, 1 env, 200-step segments)",
     "relax-a2c, 1 env, 200-step segments, ĉ in units of Â's spread (`cv_advantage_scale=true`)"),
    ("relax-a2c (c-hat in units of the advantage spread, beta up to 10, 1 env, 200-step segments)",
     "relax-a2c, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10"),
    ("relax-a2c (c-hat in units of the advantage spread, beta up to 10, 4 phi steps, 1 env, 200-step segments)",
     "relax-a2c, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, 4 φ steps per update "
     "(`cv_updates_per_step=4`)"),
    ("relax-a2c (c-hat in units of the advantage spread, beta up to 10, c-hat reads V, 1 env, 200-step segments)",
     "relax-a2c, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, ĉ reads V(s) (`cv_value_input=true`)"),
)


def test_readme_rl_table_rows_match_the_committed_results():
    import json

    readme = _readme()
    with open(os.path.join(ROOT, "results", "rl_table", "rl_table.json"), encoding="utf-8") as fh:
        table = json.load(fh)["table"]["CartPole-v1"]
    for arm, label in CARTPOLE_ROWS:
        low, high = table["195"][arm], table["475"][arm]
        row = (f"| {label} | {low['solved']}/{low['total']} | {low['median']:.0f} | {low['mean']:.0f} ± "
               f"{low['std']:.0f} | {high['solved']}/{high['total']} | {high['median']:.0f} |")
        assert row in readme, row


def test_readme_fresh_seed_check_matches_the_committed_results():
    import json

    with open(os.path.join(ROOT, "results", "rl_table_seeds_10_19", "rl_table.json"), encoding="utf-8") as fh:
        table = json.load(fh)["table"]["CartPole-v1"]
    arm = "relax-a2c (c-hat in units of the advantage spread, beta up to 10, 1 env, 200-step segments)"
    off = "relax-a2c (c-hat off, 1 env, 200-step segments)"
    low = {name: table["195"][name] for name in (arm, off)}
    better = sum(low[arm]["per_seed"][seed] < low[off]["per_seed"][seed] for seed in low[arm]["per_seed"])
    stated = (f"{low[arm]['median']:.0f} against ĉ off's {low[off]['median']:.0f} "
              f"({low[arm]['median'] / low[off]['median']:.2f}×), fewer episodes on {better} of 10 seeds")
    assert stated in _readme(), stated


def test_readme_steps_to_solve_match_the_committed_results():
    import json

    def table(folder: str) -> dict:
        with open(os.path.join(ROOT, "results", folder, "rl_table.json"), encoding="utf-8") as fh:
            return json.load(fh)["table"]

    main, fresh = table("rl_table"), table("rl_table_seeds_10_19")
    cartpole = {threshold: {name: s["median_timesteps"] for name, s in arms.items()}
                for threshold, arms in main["CartPole-v1"].items()}
    arm = "relax-a2c (c-hat in units of the advantage spread, beta up to 10, 1 env, 200-step segments)"
    off = "relax-a2c (c-hat off, 1 env, 200-step segments)"
    fresh_475 = fresh["CartPole-v1"]["475"]
    pendulum = main["InvertedPendulum-v5"]["950"]
    relax, c_off = pendulum["relax-a2c"], pendulum["relax-a2c (c-hat off)"]
    stated = [
        f"To 195 every CartPole arm needs {min(cartpole['195'].values()):,.0f}-{max(cartpole['195'].values()):,.0f} "
        f"steps (ĉ off {cartpole['195']['relax-a2c (c-hat off)']:,.0f}, relax-a2c {cartpole['195']['relax-a2c']:,.0f})",
        f"needs {cartpole['475'][arm]:,.0f} against ĉ off's {cartpole['475'][off]:,.0f} "
        f"({cartpole['475'][arm] / cartpole['475'][off]:.2f}×) on the table's seeds, and "
        f"{fresh_475[arm]['median_timesteps']:,.0f} against {fresh_475[off]['median_timesteps']:,.0f} on seeds 10-19",
        f"relax-a2c's {relax['median'] / c_off['median']:.2f}× in episodes is "
        f"{relax['median_timesteps'] / c_off['median_timesteps']:.2f}× in steps ({relax['median_timesteps']:,.0f} "
        f"against {c_off['median_timesteps']:,.0f})",
    ]
    readme = _readme()
    for sentence in stated:
        assert sentence in readme, sentence


ONE_THRESHOLD_TABLES = {
    ("InvertedPendulum-v5", "950"): (("relax-a2c", "relax-a2c (LAX)"),
                                     ("relax-a2c (c-hat off)", "relax-a2c, ĉ off (relax-a2c's settings)"),
                                     ("a2c", "SB3 A2C (its own tuned settings)"), ("ppo", "SB3 PPO (tuned)"),
                                     ("relax-ddpg", "relax-ddpg"),
                                     ("relax-a2c (cv_coef auto)", "relax-a2c, `cv_coef=auto`"),
                                     ("relax-a2c (phi every 4th update)",
                                      "relax-a2c, φ on every 4th update (`cv_update_interval=4`)")),
    ("LunarLander-v3", "200"): (("relax-a2c", "relax-a2c"),
                                ("relax-a2c (c-hat off)", "relax-a2c, ĉ off (relax-a2c's settings)"),
                                ("a2c", "SB3 A2C (its own tuned settings)"), ("ppo", "SB3 PPO (tuned)"),
                                ("relax-a2c (cv_coef auto)", "relax-a2c, `cv_coef=auto`"),
                                ("relax-a2c (phi every 4th update)",
                                 "relax-a2c, φ on every 4th update (`cv_update_interval=4`)")),
}


@pytest.mark.parametrize("env_id, threshold", list(ONE_THRESHOLD_TABLES))
def test_readme_one_threshold_rows_match_the_committed_results(env_id, threshold):
    import json

    readme = _readme()
    with open(os.path.join(ROOT, "results", "rl_table", "rl_table.json"), encoding="utf-8") as fh:
        table = json.load(fh)["table"][env_id][threshold]

    def fmt(x):
        return "—" if x is None else f"{x:,.0f}"

    for arm, label in ONE_THRESHOLD_TABLES[env_id, threshold]:
        s = table[arm]
        median, spread = fmt(s["median"]), "—" if s["mean"] is None else f"{fmt(s['mean'])} ± {fmt(s['std'])}"
        row = f"| {label} | {s['solved']}/{s['total']} | {median} | {spread} |"
        assert row in readme, row


def test_readme_vae_rows_match_the_committed_results():
    """Every dataset and model in results/vae has its README row: final training ELBO (mean log-variance)."""
    import sys

    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from vae import report

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read().replace("**", "")
    results = report.load_results(os.path.join(ROOT, "results", "vae"))
    assert results, "results/vae holds no runs"
    names = {"mnist5k": "mnist5k", "fashion-mnist": "Fashion-MNIST"}
    for (dataset, model), by_estimator in results.items():
        cells = []
        for estimator in ("rebar", "relaxed-rebar", "relax"):
            summary = by_estimator[estimator]["summary"]
            elbo, log_var = summary["train_elbo"]["mean"], summary["log_variance"]["mean"]
            cells.append(f"{elbo:.2f} ({log_var:.2f})".replace("-", "−"))
        row = f"| {names[dataset]} {model} | " + " | ".join(cells) + " |"
        assert row in readme, row


VARIANCE_ROWS = (
    ("variance_advantage_scale_auto_beta10_200_step_segments_seeds_6_8", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, seeds 6-8 "
     "(`variance_advantage_scale_auto_beta10_200_step_segments_seeds_6_8`)"),
    ("variance_phi_4_steps_advantage_scale_auto_beta10_200_step_segments_seeds_6_8", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, 4 φ steps per update, seeds 6-8 "
     "(`variance_phi_4_steps_advantage_scale_auto_beta10_200_step_segments_seeds_6_8`)"),
    ("variance_value_input_advantage_scale_auto_beta10_200_step_segments", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, ĉ reads the critic's V(s) "
     "(`cv_value_input=true`), seeds 0-2 (`variance_value_input_advantage_scale_auto_beta10_200_step_segments`)"),
    ("variance_value_input_advantage_scale_auto_beta10_200_step_segments_seeds_3_5", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, ĉ reads V(s), seeds 3-5 "
     "(`variance_value_input_advantage_scale_auto_beta10_200_step_segments_seeds_3_5`)"),
    ("variance_inverted_pendulum_value_input", "InvertedPendulum-v5",
     "InvertedPendulum-v5, ĉ reads the critic's V(s) (`cv_value_input=true`), seeds 0-2 "
     "(`variance_inverted_pendulum_value_input`)"),
    ("variance_advantage_scale_auto_beta10_200_step_segments_seeds_3_5", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, seeds 3-5 "
     "(`variance_advantage_scale_auto_beta10_200_step_segments_seeds_3_5`)"),
    ("variance_phi_4_steps_advantage_scale_auto_beta10_200_step_segments", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, 4 φ steps per update "
     "(`cv_updates_per_step=4`), seeds 0-2 (`variance_phi_4_steps_advantage_scale_auto_beta10_200_step_segments`)"),
    ("variance_phi_4_steps_advantage_scale_auto_beta10_200_step_segments_seeds_3_5", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, 4 φ steps per update, seeds 3-5 "
     "(`variance_phi_4_steps_advantage_scale_auto_beta10_200_step_segments_seeds_3_5`)"),
    ("variance_ideal_baseline_inverted_pendulum", "InvertedPendulum-v5", "InvertedPendulum-v5, seeds 0-2, 30 batches a "
     "checkpoint, beside the ideal baselines (`variance_ideal_baseline_inverted_pendulum`)"),
    ("variance_inverted_pendulum_regression", "InvertedPendulum-v5",
     "InvertedPendulum-v5, ĉ also fits Â (`cv_regression_coef=1`), seeds 0-2 "
     "(`variance_inverted_pendulum_regression`)"),
    ("variance_inverted_pendulum_advantage_scale_regression", "InvertedPendulum-v5",
     "InvertedPendulum-v5, ĉ in units of Â's spread and fits Â, seeds 0-2 "
     "(`variance_inverted_pendulum_advantage_scale_regression`)"),
    ("variance_inverted_pendulum_segment_position", "InvertedPendulum-v5",
     "InvertedPendulum-v5, ĉ reads the segment position (`cv_segment_position=true`), seeds 0-2 "
     "(`variance_inverted_pendulum_segment_position`)"),
    ("variance_inverted_pendulum_segment_position_regression", "InvertedPendulum-v5",
     "InvertedPendulum-v5, segment position, ĉ also fits Â, seeds 0-2 "
     "(`variance_inverted_pendulum_segment_position_regression`)"),
    ("variance_inverted_pendulum_phi_lr_0.01_regression", "InvertedPendulum-v5",
     "InvertedPendulum-v5, ĉ also fits Â, φ's learning rate 0.01, seeds 0-2 "
     "(`variance_inverted_pendulum_phi_lr_0.01_regression`)"),
    ("variance_inverted_pendulum_phi_5_steps_lr_0.01_regression", "InvertedPendulum-v5",
     "InvertedPendulum-v5, ĉ also fits Â, φ's learning rate 0.01, 5 φ steps per update, seeds 0-2 "
     "(`variance_inverted_pendulum_phi_5_steps_lr_0.01_regression`)"),
    ("variance", "CartPole-v1", "CartPole-v1, relax-a2c (`variance`)"),
    ("variance", "InvertedPendulum-v5", "InvertedPendulum-v5 (1 env, before the tuning), relax-a2c, LAX (`variance`)"),
    ("variance_inverted_pendulum", "InvertedPendulum-v5",
     "InvertedPendulum-v5, relax-a2c, LAX (`variance_inverted_pendulum`)"),
    ("variance_cv_coef_auto_inverted_pendulum", "InvertedPendulum-v5",
     "InvertedPendulum-v5, ĉ weighted by the estimated optimal β (`variance_cv_coef_auto_inverted_pendulum`)"),
    ("variance_inverted_pendulum_seeds_1_2", "InvertedPendulum-v5",
     "InvertedPendulum-v5, relax-a2c, LAX, seeds 1 and 2 (`variance_inverted_pendulum_seeds_1_2`)"),
    ("variance_inverted_pendulum_30k", "InvertedPendulum-v5",
     "InvertedPendulum-v5, its learning phase: 30k-step budget, seeds 0-2 (`variance_inverted_pendulum_30k`)"),
    ("variance_200_step_segments", "CartPole-v1",
     "CartPole-v1, the paper's regime: 1 env, 200-step segments, seeds 0-2 (`variance_200_step_segments`)"),
    ("variance_inverted_pendulum_200_step_segments", "InvertedPendulum-v5",
     "InvertedPendulum-v5, 1 env, 200-step segments, seeds 0-2 (`variance_inverted_pendulum_200_step_segments`)"),
    ("variance_auto_beta10_200_step_segments", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, β up to 10 (`cv_coef=auto cv_coef_max=10`), seeds 0-2 "
     "(`variance_auto_beta10_200_step_segments`)"),
    ("variance_inverted_pendulum_auto_beta10_200_step_segments", "InvertedPendulum-v5",
     "InvertedPendulum-v5, 1 env, 200-step segments, β up to 10, seeds 0-2 "
     "(`variance_inverted_pendulum_auto_beta10_200_step_segments`)"),
    ("variance_lunar_lander_200_step_segments", "LunarLander-v3",
     "LunarLander-v3, 1 env, 200-step segments, seed 0 (`variance_lunar_lander_200_step_segments`)"),
    ("variance_lunar_lander_auto_beta10_200_step_segments", "LunarLander-v3",
     "LunarLander-v3, 1 env, 200-step segments, β up to 10, seed 0 "
     "(`variance_lunar_lander_auto_beta10_200_step_segments`)"),
    ("variance_advantage_scale_200_step_segments", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, ĉ in units of Â's spread (`cv_advantage_scale=true`), seeds 0-2 "
     "(`variance_advantage_scale_200_step_segments`)"),
    ("variance_advantage_scale_auto_200_step_segments", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, ĉ in units of Â's spread, `cv_coef=auto`, seeds 0-2 "
     "(`variance_advantage_scale_auto_200_step_segments`)"),
    ("variance_advantage_scale_auto_beta10_200_step_segments", "CartPole-v1",
     "CartPole-v1, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, seeds 0-2 "
     "(`variance_advantage_scale_auto_beta10_200_step_segments`)"),
    ("variance_inverted_pendulum_advantage_scale_200_step_segments", "InvertedPendulum-v5",
     "InvertedPendulum-v5, 1 env, 200-step segments, ĉ in units of Â's spread, seeds 0-2 "
     "(`variance_inverted_pendulum_advantage_scale_200_step_segments`)"),
    ("variance_lunar_lander_advantage_scale_auto_beta10_200_step_segments", "LunarLander-v3",
     "LunarLander-v3, 1 env, 200-step segments, ĉ in units of Â's spread, β up to 10, seed 0 "
     "(`variance_lunar_lander_advantage_scale_auto_beta10_200_step_segments`)"),
    ("variance_inverted_pendulum_phi_every_4th", "InvertedPendulum-v5",
     "InvertedPendulum-v5, φ on every 4th update (`variance_inverted_pendulum_phi_every_4th`)"),
    ("variance_inverted_pendulum_phi_weight_decay", "InvertedPendulum-v5",
     "InvertedPendulum-v5, φ weight decay 0.01 (`variance_inverted_pendulum_phi_weight_decay`)"),
    ("variance_inverted_pendulum_cv_coef_auto_phi_every_4th", "InvertedPendulum-v5",
     "InvertedPendulum-v5, `cv_coef=auto` and φ on every 4th update "
     "(`variance_inverted_pendulum_cv_coef_auto_phi_every_4th`)"),
    ("variance_phi_every_4th", "CartPole-v1", "CartPole-v1, φ on every 4th update (`variance_phi_every_4th`)"),
    ("variance_phi_every_4th_inverted_pendulum", "InvertedPendulum-v5",
     "InvertedPendulum-v5 (1 env, before the tuning), φ on every 4th update "
     "(`variance_phi_every_4th_inverted_pendulum`)"),
    ("variance_cv_regression", "CartPole-v1", "CartPole-v1, ĉ also fits Â (`variance_cv_regression`)"),
    ("variance_phi_weight_decay", "CartPole-v1", "CartPole-v1, φ weight decay 0.01 (`variance_phi_weight_decay`)"),
    ("variance_phi_weight_decay", "InvertedPendulum-v5",
     "InvertedPendulum-v5 (1 env, before the tuning), φ weight decay 0.01 (`variance_phi_weight_decay`)"),
    ("variance_cv_coef_auto", "CartPole-v1",
     "CartPole-v1, ĉ weighted by the estimated optimal β (`variance_cv_coef_auto`)"),
    ("variance_cv_coef_auto", "InvertedPendulum-v5",
     "InvertedPendulum-v5 (1 env, before the tuning), ĉ weighted by the estimated optimal β (`variance_cv_coef_auto`)"),
    ("variance_cv_coef_auto_beta10", "CartPole-v1",
     "CartPole-v1, β up to 10 (`cv_coef=auto cv_coef_max=10`; `variance_cv_coef_auto_beta10`)"),
    ("variance_cv_coef_auto_phi_every_4th", "CartPole-v1",
     "CartPole-v1, `cv_coef=auto` and φ on every 4th update (`variance_cv_coef_auto_phi_every_4th`)"),
    ("variance_cv_coef_auto_phi_every_4th", "InvertedPendulum-v5",
     "InvertedPendulum-v5 (1 env, before the tuning), `cv_coef=auto` and φ on every 4th update "
     "(`variance_cv_coef_auto_phi_every_4th`)"),
    ("variance_seeds_1_2", "CartPole-v1", "CartPole-v1, relax-a2c, seeds 1 and 2 (`variance_seeds_1_2`)"),
    ("variance_cv_coef_auto_seeds_1_2", "CartPole-v1",
     "CartPole-v1, ĉ weighted by the estimated optimal β, seeds 1 and 2 (`variance_cv_coef_auto_seeds_1_2`)"),
    ("variance_cv_loss_logits", "CartPole-v1",
     "CartPole-v1, φ's objective per sample over the logits (`cv_loss_space=logits`; `variance_cv_loss_logits`)"),
    ("variance_phi_5_steps", "CartPole-v1",
     "CartPole-v1, 5 φ steps per update (`cv_updates_per_step=5`; `variance_phi_5_steps`)"),
    ("variance_phi_5_steps_cv_coef_auto", "CartPole-v1",
     "CartPole-v1, 5 φ steps and `cv_coef=auto`, seeds 0-2 (`variance_phi_5_steps_cv_coef_auto`)"),
    ("variance_segment_position", "CartPole-v1",
     "CartPole-v1, ĉ reads the segment position (`cv_segment_position=true`; `variance_segment_position`)"),
    ("variance_segment_position_regression", "CartPole-v1",
     "CartPole-v1, segment position, ĉ also fits Â, φ's learning rate 0.01 (`variance_segment_position_regression`)"),
)


def _results(directory, name):
    """The "results" entry of ``results/<directory>/<name>.json``, as a benchmark script wrote it."""
    import json

    with open(os.path.join(ROOT, "results", directory, f"{name}.json"), encoding="utf-8") as fh:
        return json.load(fh)["results"]


def _variance_summary(directory, env_id):
    return _results(directory, "variance")[env_id]["summary"]


def test_readme_variance_rows_match_the_committed_results():
    readme = _readme_and_details()
    for directory, env_id, label in VARIANCE_ROWS:
        s = _variance_summary(directory, env_id)
        row = f"| {label} | {s['median_ratio']:.2f} | {s['checkpoints_at_or_below_half']}/{s['n_checkpoints']} |"
        assert row in readme, row
    s = _variance_summary("variance_ideal_baseline", "CartPole-v1")
    cartpole_entry = readme.split("**The ideal baselines** (`python experiments/variance.py --envs CartPole-v1", 1)[1]
    for key, label in (("ideal_state", "perfect critic v(s) = E[Â | s]"), ("ideal", "q(s, a) with the analytic"),
                       ("ideal_position", "q(s, a, position)")):
        stated = f"median ratio {s[f'median_{key}_ratio']:.2f} ({s[f'{key}_checkpoints_at_or_below_half']}/11"
        assert stated in cartpole_entry.split(label, 1)[1][:400], (label, stated)


def test_readme_inverted_pendulum_ideal_baselines_match_the_committed_results():
    """The medians, counts and per-checkpoint ranges stated for the ideal baselines on InvertedPendulum."""
    readme, details = _readme(), _readme_and_details()
    entry = _results("variance_ideal_baseline_inverted_pendulum", "variance")["InvertedPendulum-v5"]
    s, checkpoints = entry["summary"], [c for run in entry["runs"] for c in run["checkpoints"]]

    def span(key: str) -> str:
        values = [c[key] for c in checkpoints]
        return f"{min(values):.2f}-{max(values):.2f}"

    stated = {"ideal_state": "a perfect critic, whose V(s) is E[Â | s]: median ratio",
              "ideal": "a perfect ĉ(a, s) = q(s, a) = E[Â | s, a]:",
              "ideal_position": "q(s, a, position), which also knows the transition's step within its 5-step segment:"}
    for key, label in stated.items():
        count = f"{s[f'median_{key}_ratio']:.2f} ({s[f'{key}_checkpoints_at_or_below_half']}/{s['n_checkpoints']}"
        assert f"{label} {count}" in readme, (label, count)
    for key, label in (("ideal_state_ratio", "a perfect critic v(s): median"), ("ideal_ratio", "a perfect ĉ(a, s) = "
                       "q(s, a): median"), ("ideal_position_ratio", "q(s, a, position): median"),
                       ("ratio", "the learned ĉ on the same batches: median")):
        assert span(key) in details.split(label, 1)[1][:120], (label, span(key))
    assert f"our ĉ: {s['median_ratio']:.2f} ({s['checkpoints_at_or_below_half']}/{s['n_checkpoints']})" in readme


def test_readme_frozen_theta_numbers_match_the_committed_results():
    """The medians and per-seed ranges after the last block of φ-only training, in the README and results/README
    (whitespace collapsed: the sentences wrap)."""
    import json
    import statistics

    readme, details = " ".join(_readme().split()), " ".join(_readme_and_details().split())
    for directory, label in (("frozen_theta_inverted_pendulum", "Default φ: 1.00 before, then median"),
                             ("frozen_theta_inverted_pendulum_phi_lr_0.01_regression",
                              "results/frozen_theta_inverted_pendulum_phi_lr_0.01_regression`: median")):
        with open(os.path.join(ROOT, "results", directory, "frozen_theta.json"), encoding="utf-8") as fh:
            runs = json.load(fh)["runs"]
        last = [run["blocks"][-1]["ratio"] for run in runs]
        assert all(abs(run["blocks"][0]["ratio"] - 1) < 0.02 for run in runs)  # "1.00 before"
        median, span = f"{statistics.median(last):.2f}", f"{min(last):.2f}-{max(last):.2f}"
        assert f"{median} ({span})" in readme, (directory, median, span)
        per_seed = ", ".join(f"{r:.2f}" for r in last)
        assert all(run["hyperparams"] == (["cv_learning_rate=0.01", "cv_regression_coef=1.0"] if "lr" in directory
                                          else []) for run in runs)
        assert f"{label} {median} after 200k steps (per seed {per_seed})" in details \
            or f"{label} {median} ({per_seed})" in details, (directory, per_seed)


def test_readme_frozen_theta_cartpole_matches_the_committed_results():
    """CartPole's regime with θ frozen: the README's range and median, and results/README's per-seed values."""
    import json
    import statistics

    path = os.path.join(ROOT, "results", "frozen_theta_cartpole_200_step_segments", "frozen_theta.json")
    with open(path, encoding="utf-8") as fh:
        runs = json.load(fh)["runs"]
    first, last = [run["blocks"][0]["ratio"] for run in runs], [run["blocks"][-1]["ratio"] for run in runs]
    assert all(run["hyperparams"] == ["n_envs=1", "n_steps=200"] and run["train_steps"] == 40000 for run in runs)
    stated = (f"from {min(first):.2f}-{max(first):.2f} to a median {statistics.median(last):.2f} "
              f"({min(last):.2f}-{max(last):.2f}) after 1,000 φ updates")
    assert stated in " ".join(_readme().split()), stated
    per_seed = (f"from {', '.join(f'{r:.2f}' for r in first[:-1])} and {first[-1]:.2f} at the frozen θ to "
                f"{', '.join(f'{r:.2f}' for r in last[:-1])} and {last[-1]:.2f} (median {statistics.median(last):.2f})")
    assert per_seed in " ".join(_readme_and_details().split()), per_seed
    assert all(b["phi_steps"] == 40000 * k for run in runs for k, b in enumerate(run["blocks"]))  # 5 × 200 updates


def test_readme_frozen_theta_control_matches_the_committed_results():
    """The same φ settings during training (θ moving): the README's median, count and range."""
    entry = _results("variance_inverted_pendulum_phi_lr_0.01_regression", "variance")["InvertedPendulum-v5"]
    ratios = [c["ratio"] for run in entry["runs"] for c in run["checkpoints"]]
    s = entry["summary"]
    stated = (f"the same φ settings read a median {s['median_ratio']:.2f} ({s['checkpoints_at_or_below_half']}/"
              f"{s['n_checkpoints']}; {min(ratios):.2f}-{max(ratios):.2f})")
    assert stated in " ".join(_readme().split()), stated


def test_readme_variance_sources_ranges_match_the_committed_results():
    """The README's ranges for the checkpoints where Var(ĝ) > 1 (CartPole) and the 30k InvertedPendulum runs."""
    readme = _readme()
    large = [c for run in _results("variance_sources", "variance_sources")["CartPole-v1"] for c in run["checkpoints"]
             if c["total_variance"] > 1]
    transitions = [100 * c["ends_share_of_transitions"] for c in large]
    shares = [100 * c["ends_share"] for c in large]
    means = [c["advantage_mean_ends"] for c in large]
    stated = (f"those transitions are {min(transitions):.1f}-{max(transitions):.1f}% of the batch and\n"
              f"    carry {min(shares):.0f}-{max(shares):.0f}% of the variance. Their Â is large and negative "
              f"(−{-max(means):.0f} to −{-min(means):.0f} on average)")
    assert stated in readme, stated
    pendulum = [c for run in _results("variance_sources_inverted_pendulum_30k", "variance_sources")[
        "InvertedPendulum-v5"] for c in run["checkpoints"] if c["total_variance"] > 0.2 and c["timesteps"] > 80]
    transitions = [100 * c["ends_share_of_transitions"] for c in pendulum]
    shares = [100 * c["ends_share"] for c in pendulum]
    stated = (f"{min(transitions):.1f}-{max(transitions):.1f}% of the transitions carry "
              f"{min(shares):.0f}-{max(shares):.0f}%")
    assert stated in readme, stated


def _throughput_row(r: dict, label_suffix: str) -> str:
    """The README's table row for one env's throughput result."""
    cnn = ", CnnPolicy" if "Cnn" in r["policy"] else ""
    ratios = " | ".join(f"{r[key]:.2f}" for key in ("ratio_relax_to_a2c", "ratio_relax_every4_to_a2c",
                                                      "ratio_relax_auto_to_a2c", "ratio_c_hat_off_to_a2c"))
    label = f"{r['env_id']}{cnn} ({r['n_envs']} × {r['n_steps']}){label_suffix}"
    return f"| {label} | {ratios} | {r['update_cost_relax_to_a2c']:.2f}× |"


def test_readme_throughput_rows_match_the_committed_results():
    readme = _readme_and_details()
    results = {r["env_id"]: r for r in _results("throughput", "throughput")}
    for r in results.values():
        row = _throughput_row(r, "")
        assert row in readme, row
    for directory in ("throughput_gpu", "throughput_gpu_seed1", "throughput_h200_cpu"):  # the lent machine's runs
        (r,) = _results(directory, "throughput")
        row = _throughput_row(r, f", {r['device']} (`{directory}`)")
        assert row in readme, row
    # on the tuned configs: InvertedPendulum (16 envs; two seeds, the goal row cites seed 0) and LunarLander
    tuned = {}
    for directory in ("throughput_inverted_pendulum", "throughput_inverted_pendulum_seed1", "throughput_lunar_lander"):
        (tuned[directory],) = _results(directory, "throughput")
        row = _throughput_row(tuned[directory], f" (`{directory}`)")
        assert row in readme, row
    faster = {r["env_id"]: r for r in _results("throughput_avx512", "throughput")}  # the tuned configs, another CPU
    for r in faster.values():
        row = _throughput_row(r, " (`throughput_avx512`)")
        assert row in readme, row
    quartiles = ", ".join(f"{name} {faster[env_id]['ratio_relax_to_a2c']:.2f} (" + ("quartiles " if i == 0 else "")
                          + "-".join(f"{q:.2f}" for q in faster[env_id]["ratio_relax_to_a2c_quartiles"]) + ")"
                          for i, (name, env_id) in enumerate((("CartPole", "CartPole-v1"),
                                                              ("LunarLander", "LunarLander-v3"))))
    pendulum = faster["InvertedPendulum-v5"]
    quartiles += (f" and InvertedPendulum {pendulum['ratio_relax_to_a2c']:.2f} ("
                  + "-".join(f"{q:.2f}" for q in pendulum["ratio_relax_to_a2c_quartiles"]) + ")")
    assert f"the default reads {quartiles}" in " ".join(readme.split()), quartiles
    lander = faster["LunarLander-v3"]
    above_one = (f"(φ on every 4th update {lander['ratio_relax_every4_to_a2c']:.2f}, `cv_coef=auto` "
                 f"{lander['ratio_relax_auto_to_a2c']:.2f})")
    assert min(lander["ratio_relax_every4_to_a2c"], lander["ratio_relax_auto_to_a2c"]) > 1
    assert above_one in " ".join(readme.split()), above_one
    mlp = [results["CartPole-v1"], tuned["throughput_lunar_lander"], tuned["throughput_inverted_pendulum"]]
    goal = (f"CartPole {mlp[0]['ratio_relax_to_a2c']:.2f}, LunarLander {mlp[1]['ratio_relax_to_a2c']:.2f}, "
            f"InvertedPendulum {mlp[2]['ratio_relax_to_a2c']:.2f} (on another machine: "
            + ", ".join(f"{faster[e]['ratio_relax_to_a2c']:.2f}" for e in ("CartPole-v1", "LunarLander-v3",
                                                                          "InvertedPendulum-v5"))
            + ") | `cv_update_interval=4`: "
            + ", ".join(f"{r['ratio_relax_every4_to_a2c']:.2f}" for r in mlp) + "; ")
    assert goal in readme, goal
    regime = {}
    for directory in ("throughput_200_step_segments", "throughput_lunar_lander_200_step_segments"):
        for r in _results(directory, "throughput"):
            regime[r["env_id"]] = r
            row = _throughput_row(r, f" (`{directory}`)")
            assert row in readme, row
    envs = ("CartPole-v1", "InvertedPendulum-v5", "LunarLander-v3")
    goal = (f"1 env × 200-step segments, the default: CartPole {regime[envs[0]]['ratio_relax_to_a2c']:.2f}, "
            f"InvertedPendulum {regime[envs[1]]['ratio_relax_to_a2c']:.2f}, "
            f"LunarLander {regime[envs[2]]['ratio_relax_to_a2c']:.2f} (`cv_coef=auto`, whose cost β's bound does not "
            "change: " + ", ".join(f"{regime[e]['ratio_relax_auto_to_a2c']:.2f}" for e in envs) + "); ")
    assert goal in readme, goal
    directory = "throughput_advantage_scale_auto_beta10_200_step_segments"  # σ̂ and β up to 10 on the relax arms
    (scaled,) = _results(directory, "throughput")
    assert _throughput_row(scaled, f" (`{directory}`)") in readme
    directory = "throughput_phi_4_steps_advantage_scale_auto_beta10_200_step_segments"  # and 4 φ steps
    (four,) = _results(directory, "throughput")
    assert _throughput_row(four, f" (`{directory}`)") in readme
    goal = (f"with ĉ in units of Â's spread and β up to 10: CartPole {scaled['ratio_relax_to_a2c']:.2f}, and 4 φ "
            f"steps per update: {four['ratio_relax_to_a2c']:.2f} |")
    assert goal in readme, goal


def test_readme_update_profile_numbers_match_the_committed_results():

    readme = _readme_and_details()
    results = {r["env_id"]: r for r in _results("update_profile", "update_profile")}
    whole = {env_id: [r["ms_per_update"][arm] for arm in ("a2c", "relax-a2c (c-hat off)", "relax-a2c")]
             for env_id, r in results.items()}
    a2c, off, relax = whole["CartPole-v1"]
    assert f"A2C's update takes {a2c:.2f} ms, ĉ off's {off:.2f} ms and relax-a2c's {relax:.2f} ms" in readme
    assert "InvertedPendulum is alike: {:.2f}, {:.2f} and {:.2f} ms".format(*whole["InvertedPendulum-v5"]) in readme
    (tuned,) = _results("update_profile_inverted_pendulum", "update_profile")
    ms = [tuned["ms_per_update"][arm] for arm in ("a2c", "relax-a2c (c-hat off)", "relax-a2c")]
    assert "results/update_profile_inverted_pendulum`, 1 minute) they are {:.2f}, {:.2f} and {:.2f} ms".format(
        *ms) in readme.replace("\n    ", " ")
    parts = results["CartPole-v1"]["parts_ms"]["relax-a2c"]
    for part in ("backward: φ's gradient (double backprop)", "backward: ∇_θ S̄ with create_graph", "forward: ĉ",
                 "φ's optimizer step"):
        assert f"{parts[part]:.2f} ms" in readme.split("The 2.2 ms that ĉ adds", 1)[1][:700], part


def test_results_readme_pooled_regime_counts_match_the_committed_results():
    """The pooled counts of the regime's variants over their sets of seeds (0-2, 3-5, 6-8) in results/README.md."""
    with open(os.path.join(ROOT, "results", "README.md"), encoding="utf-8") as fh:
        details = " ".join(fh.read().split())
    section = details.split("**More φ steps, or ĉ reading V, on top of σ̂ and β up to 10.**", 1)[1][:3000]
    for prefix, stated, suffixes in (
            ("variance_advantage_scale_auto_beta10", "63 of 99", ("", "_seeds_3_5", "_seeds_6_8")),
            ("variance_phi_4_steps_advantage_scale_auto_beta10", "73 of 99", ("", "_seeds_3_5", "_seeds_6_8")),
            ("variance_value_input_advantage_scale_auto_beta10", "41 of 66", ("", "_seeds_3_5"))):
        summaries = [_variance_summary(f"{prefix}_200_step_segments{suffix}", "CartPole-v1") for suffix in suffixes]
        met = sum(s["checkpoints_at_or_below_half"] for s in summaries)
        total = sum(s["n_checkpoints"] for s in summaries)
        assert f"{met} of {total}" == stated and stated in section, (prefix, met, total)


def test_readme_goal_cell_for_four_phi_steps_matches_the_committed_results():
    import json

    with open(os.path.join(ROOT, "results", "rl_table", "rl_table.json"), encoding="utf-8") as fh:
        table = json.load(fh)["table"]["CartPole-v1"]["195"]
    arm = table[CARTPOLE_ROWS[-2][0]]  # 4 φ steps per update on top of σ̂ and β up to 10
    off = table["relax-a2c (c-hat off, 1 env, 200-step segments)"]
    stated = f"With 4 φ steps per update as well: {arm['median'] / off['median']:.2f}× ({arm['median']:.0f}),"
    assert stated in _readme(), stated
