"""The README's example runs and prints what the README says it prints."""

import contextlib
import io
import os
import re

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
    for arm, label in (("relax-a2c", "relax-a2c"), ("relax-a2c (c-hat off)", "relax-a2c, ĉ off (= SB3 A2C)"),
                       ("ppo", "SB3 PPO (RL Zoo settings)")):
        low, high = table["195"][arm], table["475"][arm]
        row = (f"| {label} | {low['solved']}/{low['total']} | {low['median']:.0f} | {low['mean']:.0f} ± "
               f"{low['std']:.0f} | {high['solved']}/{high['total']} | {high['median']:.0f} |")
        assert row in readme, row


def test_readme_inverted_pendulum_rows_match_the_committed_results():
    import json

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    with open(os.path.join(ROOT, "results", "rl_table", "rl_table.json"), encoding="utf-8") as fh:
        table = json.load(fh)["table"]["InvertedPendulum-v5"]["950"]
    for arm, label in (("relax-a2c", "relax-a2c (LAX)"), ("a2c", "SB3 A2C"), ("ppo", "SB3 PPO (RL Zoo settings)"),
                       ("relax-ddpg", "relax-ddpg")):
        s = table[arm]
        row = f"| {label} | {s['solved']}/{s['total']} | {s['median']:,.0f} | {s['mean']:,.0f} ± {s['std']:,.0f} |"
        assert row in readme, row
