"""The README's example runs and prints what the README says it prints."""

import contextlib
import io
import os
import re

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_estimator_example_reaches_the_stated_theta():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "estimator_step" in block)
    stated = float(re.search(r"# (\d\.\d+) \(from 0\.5\)", example).group(1))
    out = io.StringIO()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with contextlib.redirect_stdout(out):
            exec(compile(example, "README.md", "exec"), {})
    finally:
        torch.set_num_threads(threads)
    assert abs(float(out.getvalue()) - stated) < 5e-4


def test_readme_rl_table_rows_match_the_committed_results():
    import json

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    with open(os.path.join(ROOT, "results", "rl_table", "rl_table.json"), encoding="utf-8") as fh:
        table = json.load(fh)["table"]["CartPole-v1"]
    for arm, label in (("relax-a2c", "relax-a2c"), ("relax-a2c (c-hat off)", "relax-a2c, ĉ off (relax-a2c's settings)"),
                       ("a2c", "SB3 A2C (its own tuned settings)"), ("ppo", "SB3 PPO (tuned)")):
        low, high = table["195"][arm], table["475"][arm]
        row = (f"| {label} | {low['solved']}/{low['total']} | {low['median']:.0f} | {low['mean']:.0f} ± "
               f"{low['std']:.0f} | {high['solved']}/{high['total']} | {high['median']:.0f} |")
        assert row in readme, row


ONE_THRESHOLD_TABLES = {
    ("InvertedPendulum-v5", "950"): (("relax-a2c", "relax-a2c (LAX)"), ("a2c", "SB3 A2C"),
                                     ("ppo", "SB3 PPO (RL Zoo settings)"), ("relax-ddpg", "relax-ddpg")),
    ("LunarLander-v3", "200"): (("relax-a2c", "relax-a2c"), ("a2c", "SB3 A2C"), ("ppo", "SB3 PPO (RL Zoo settings)")),
}


@pytest.mark.parametrize("env_id, threshold", list(ONE_THRESHOLD_TABLES))
def test_readme_one_threshold_rows_match_the_committed_results(env_id, threshold):
    import json

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
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
