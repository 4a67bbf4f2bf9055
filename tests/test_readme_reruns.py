"""The README's and results/README.md's numbers on the mean return over a fixed step budget and on the reruns on
another CPU, recomputed from the committed results."""

import os

from test_readme import CARTPOLE_ROWS, ROOT, _readme


def _rl_table(folder: str) -> dict:
    import json

    with open(os.path.join(ROOT, "results", folder, "rl_table.json"), encoding="utf-8") as fh:
        return json.load(fh)["table"]


def _higher(arms: dict, arm: str, baseline: str) -> int:
    """Seeds on which ``arm``'s mean return over the first K steps is above ``baseline``'s."""
    mine, theirs = arms[arm]["per_seed_mean_return"], arms[baseline]["per_seed_mean_return"]
    return sum(mine[seed] > theirs[seed] for seed in mine)


def _sign_test(successes: int, trials: int) -> float:
    """Two-sided sign test p-value (the exact binomial with p = 1/2)."""
    from math import comb

    tail = sum(comb(trials, k) for k in range(min(successes, trials - successes) + 1)) / 2 ** trials
    return min(1.0, 2 * tail)


C_HAT_OFF, REGIME_C_HAT_OFF = "relax-a2c (c-hat off)", "relax-a2c (c-hat off, 1 env, 200-step segments)"
REGIME_BEST = "relax-a2c (c-hat in units of the advantage spread, beta up to 10, 1 env, 200-step segments)"


def test_readme_mean_return_over_steps_matches_the_committed_results():
    """The floor-free measure (mean return over each run's first K steps): the README's medians, ratios, per-seed
    counts and sign tests against the ĉ-off arm on the same settings, and results/README.md's per-arm counts."""
    main, fresh = _rl_table("rl_table"), _rl_table("rl_table_seeds_10_19")
    cartpole, fresh_cartpole = main["CartPole-v1"]["195"], fresh["CartPole-v1"]["195"]
    pendulum, lander = main["InvertedPendulum-v5"]["950"], main["LunarLander-v3"]["200"]
    off, regime_off, best = C_HAT_OFF, REGIME_C_HAT_OFF, REGIME_BEST

    def score(arms: dict, arm: str) -> float:
        return arms[arm]["mean_return"]

    def versus(arms: dict, arm: str, baseline: str) -> str:
        return f"{score(arms, arm):.0f} against ĉ off's {score(arms, baseline):.0f}"

    relax_arms = [arm for arm in cartpole if arm.startswith("relax-a2c") and "c-hat off" not in arm]
    top = max(score(cartpole, a) / score(cartpole, regime_off if "200-step" in a else off) for a in relax_arms)
    best_wins = _higher(cartpole, best, regime_off) + _higher(fresh_cartpole, best, regime_off)
    pendulum_lower, lander_lower = 10 - _higher(pendulum, "relax-a2c", off), 5 - _higher(lander, "relax-a2c", off)
    assert lander_lower == 5  # "lower on all 5 seeds"
    stated = [
        f"relax-a2c reads {versus(cartpole, 'relax-a2c', off)} "
        f"({score(cartpole, 'relax-a2c') / score(cartpole, off):.2f}×), higher on "
        f"{_higher(cartpole, 'relax-a2c', off)} of 10 seeds; PPO leads with {score(cartpole, 'ppo'):.0f}, higher than "
        f"ĉ off on all {_higher(cartpole, 'ppo', off)}",
        f"β up to 10 reads {versus(cartpole, best, regime_off)} "
        f"({score(cartpole, best) / score(cartpole, regime_off):.2f}×), higher on "
        f"{_higher(cartpole, best, regime_off)} of 10 seeds, and on seeds 10-19 "
        f"{score(fresh_cartpole, best):.0f} against {score(fresh_cartpole, regime_off):.0f} "
        f"({score(fresh_cartpole, best) / score(fresh_cartpole, regime_off):.2f}×, "
        f"{_higher(fresh_cartpole, best, regime_off)} of 10): {best_wins} of 20 in all (sign test p ≈ "
        f"{_sign_test(best_wins, 20):.2f})",
        f"No relax arm on CartPole reads more than {top:.2f}× its ĉ-off arm",
        f"is {score(pendulum, 'relax-a2c'):.0f} for relax-a2c against ĉ off's {score(pendulum, off):.0f}, lower on "
        f"{pendulum_lower} of 10 seeds (sign test p ≈ {_sign_test(pendulum_lower, 10):.2f}); A2C on its own settings "
        f"reads {score(pendulum, 'a2c'):.0f}, PPO {score(pendulum, 'ppo'):.0f} and relax-ddpg "
        f"{score(pendulum, 'relax-ddpg'):.0f}",
        f"is {score(lander, 'relax-a2c'):.0f} for relax-a2c against ĉ off's {score(lander, off):.0f}, lower on all 5 "
        f"seeds (sign test p ≈ {_sign_test(lander_lower, 5):.2f}); PPO reads {score(lander, 'ppo'):.0f}".replace(
            "is -", "is −"),
        f"no more than ĉ off on CartPole (higher on {_higher(cartpole, 'relax-a2c', off)} of 10 seeds) and less on "
        f"InvertedPendulum in the committed runs (lower on {pendulum_lower} of 10 seeds)",
    ]
    readme = " ".join(_readme().split())
    for sentence in stated:
        assert sentence in readme, sentence

    with open(os.path.join(ROOT, "results", "README.md"), encoding="utf-8") as fh:
        details = " ".join(fh.read().split())
    counted = {  # label in results/README.md -> (table, arm, its ĉ-off arm)
        "CartPole, tuned config:": [("relax-a2c", "relax-a2c"),
                                    ("φ on every 4th update", "relax-a2c (phi every 4th update)"),
                                    ("ĉ also fits Â", "relax-a2c (c-hat fits the advantage)"),
                                    ("φ weight decay", "relax-a2c (phi weight decay 0.01)"),
                                    ("`cv_coef=auto`", "relax-a2c (cv_coef auto)"),
                                    ("`cv_coef=auto` with φ on every 4th update",
                                     "relax-a2c (cv_coef auto, phi every 4th update)")],
        "CartPole, the paper's regime:": [
            ("the default", "relax-a2c (1 env, 200-step segments)"),
            ("β up to 10", "relax-a2c (cv_coef auto up to 10, 1 env, 200-step segments)"),
            ("β up to 10 with φ's learning rate 0.01",
             "relax-a2c (cv_coef auto up to 10, phi lr 0.01, 1 env, 200-step segments)"),
            ("σ̂", "relax-a2c (c-hat in units of the advantage spread, 1 env, 200-step segments)"),
            ("σ̂ with β up to 10", best), ("4 φ steps", CARTPOLE_ROWS[-2][0]), ("ĉ reads V", CARTPOLE_ROWS[-1][0])],
        "InvertedPendulum:": [("relax-a2c", "relax-a2c"), ("φ on every 4th update", "relax-a2c (phi every 4th update)"),
                              ("`cv_coef=auto`", "relax-a2c (cv_coef auto)")],
        "LunarLander:": [("relax-a2c", "relax-a2c"), ("φ on every 4th update", "relax-a2c (phi every 4th update)"),
                         ("`cv_coef=auto`", "relax-a2c (cv_coef auto)")],
    }
    tables = {"CartPole, tuned config:": (cartpole, off), "CartPole, the paper's regime:": (cartpole, regime_off),
              "InvertedPendulum:": (pendulum, off), "LunarLander:": (lander, off)}
    listed = set()
    for group, arms in counted.items():
        table, baseline = tables[group]
        total = len(table[baseline]["per_seed_mean_return"])
        for label, arm in arms:
            count = f"{label} {_higher(table, arm, baseline)}/{total}"
            assert count in details.split(group, 1)[1].split(";", 1)[0], (group, count)
            listed.add((group.split(",")[0].rstrip(":"), arm))
    # every relax-a2c arm of the three tables is counted
    assert listed == {(env_id.split("-")[0], arm) for env_id, table in (("CartPole-v1", cartpole),
                      ("InvertedPendulum-v5", pendulum), ("LunarLander-v3", lander))
                      for arm in table if arm.startswith("relax-a2c") and "c-hat off" not in arm}


def test_readme_reruns_on_another_cpu_match_the_committed_results():
    """The rerun of the tuned configs' relax-a2c and ĉ-off arms on another machine, against the committed runs, and
    the LunarLander seed-0 timing (results/README.md)."""
    import json

    committed, rerun = _rl_table("rl_table"), _rl_table("rl_table_rerun_avx512")
    off = C_HAT_OFF

    def episodes(env_id: str, threshold: str) -> str:
        """'relax-a2c <n> against ĉ off's <n> (<ratio>×; committed <ratio>×)', medians of episodes to solve."""
        new, old = rerun[env_id][threshold], committed[env_id][threshold]
        ratio, old_ratio = (t["relax-a2c"]["median"] / t[off]["median"] for t in (new, old))
        return (f"relax-a2c {new['relax-a2c']['median']:.0f} against ĉ off's {new[off]['median']:.0f} "
                f"({ratio:.2f}×; committed {old_ratio:.2f}×)")

    def returns(folder: str, name: str) -> list[float]:
        with open(os.path.join(ROOT, "results", folder, "runs", name), encoding="utf-8") as fh:
            return json.load(fh)["returns"]

    def parts_after(name: str) -> int | None:
        """Identical episodes before the rerun of run ``name`` parts from the committed run (None: it never does)."""
        new, old = returns("rl_table_rerun_avx512", name), returns("rl_table", name)
        if new == old:
            return None
        return next((i for i, (a, b) in enumerate(zip(new, old, strict=False)) if a != b), min(len(new), len(old)))

    shared: dict[str, list[int]] = {}  # env -> identical episodes before a rerun parts from its committed run
    unchanged_counts = 0
    for env_id, threshold in (("CartPole-v1", "195"), ("InvertedPendulum-v5", "950")):
        for arm, key in (("relax-a2c", "relax-a2c"), (off, "relax-a2c_c-hat_off")):
            for seed in range(10):
                parted = parts_after(f"{env_id}__{key}__seed{seed}.json")
                if parted is not None:
                    shared.setdefault(env_id, []).append(parted)
                if env_id == "CartPole-v1":
                    unchanged_counts += (rerun[env_id][threshold][arm]["per_seed"][str(seed)]
                                         == committed[env_id][threshold][arm]["per_seed"][str(seed)])
    cartpole, pendulum = rerun["CartPole-v1"]["195"], rerun["InvertedPendulum-v5"]["950"]
    pendulum_lower = 10 - _higher(pendulum, "relax-a2c", off)
    relax_counts, off_counts = cartpole["relax-a2c"]["per_seed"], cartpole[off]["per_seed"]
    fewer = sum(relax_counts[seed] < off_counts[seed] for seed in relax_counts)
    stated = [
        f"gave {sum(map(len, shared.values()))} of 40 runs that differ from the committed ones, after "
        f"{min(shared['CartPole-v1'])} to {max(shared['CartPole-v1'])} identical episodes on CartPole and "
        f"{min(shared['InvertedPendulum-v5'])} to {max(shared['InvertedPendulum-v5'])} on InvertedPendulum",
        f"({unchanged_counts} of the 20 counts to 195 are unchanged)",
        f"CartPole to 195: {episodes('CartPole-v1', '195')}, fewer episodes on {fewer} of 10 seeds; mean return over "
        f"the first 50,000 steps {cartpole['relax-a2c']['mean_return']:.0f} against "
        f"{cartpole[off]['mean_return']:.0f} (higher on {_higher(cartpole, 'relax-a2c', off)} of 10)",
        f"InvertedPendulum to 950: {episodes('InvertedPendulum-v5', '950')}; mean return over the first 90,000 steps "
        f"{pendulum['relax-a2c']['mean_return']:.0f} against {pendulum[off]['mean_return']:.0f} (higher on "
        f"{_higher(pendulum, 'relax-a2c', off)} of 10)",
        f"{pendulum['relax-a2c']['mean_return']:.0f} against {pendulum[off]['mean_return']:.0f}, lower on "
        f"{pendulum_lower} of 10 seeds (p ≈ {_sign_test(pendulum_lower, 10):.2f}), and "
        f"{pendulum['relax-a2c']['median'] / pendulum[off]['median']:.2f}× ĉ off's episodes to 950 "
        f"({pendulum['relax-a2c']['median']:.0f} against {pendulum[off]['median']:.0f}). The two runs of a seed share "
        f"their first {min(shared['InvertedPendulum-v5'])} to {max(shared['InvertedPendulum-v5'])} episodes",
        f"which a rerun on another CPU does not clearly repeat ({pendulum_lower} of 10)",
    ]
    # the paper's regime, σ̂ with β up to 10 against ĉ off there
    regime_parted: dict[str, list[int | None]] = {}
    for arm, key in ((REGIME_BEST, "relax-a2c_c-hat_in_units_of_the_advantage_spread__beta_up_to_10__1_env__200-step_"
                                   "segments"), (REGIME_C_HAT_OFF, "relax-a2c_c-hat_off__1_env__200-step_segments")):
        for seed in range(10):
            regime_parted.setdefault(arm, []).append(parts_after(f"CartPole-v1__{key}__seed{seed}.json"))
    parted = [i for i in regime_parted[REGIME_BEST] if i is not None]
    assert len(parted) == 10

    def regime(table: dict, threshold: str) -> tuple[dict, dict]:
        return table["CartPole-v1"][threshold][REGIME_BEST], table["CartPole-v1"][threshold][REGIME_C_HAT_OFF]

    (new_low, new_off), (old_low, old_off) = regime(rerun, "195"), regime(committed, "195")
    (new_high, new_high_off), (old_high, old_high_off) = regime(rerun, "475"), regime(committed, "475")

    regime_unchanged = sum(new_arm["per_seed"][seed] == old_arm["per_seed"][seed]
                           for new_arm, old_arm in ((new_low, old_low), (new_off, old_off))
                           for seed in new_arm["per_seed"])

    def fewer_on(arm: dict, baseline: dict) -> int:
        return sum(arm["per_seed"][seed] < baseline["per_seed"][seed] for seed in arm["per_seed"])

    def higher_on(arm: dict, baseline: dict) -> int:
        mine, theirs = arm["per_seed_mean_return"], baseline["per_seed_mean_return"]
        return sum(mine[seed] > theirs[seed] for seed in mine)

    stated += [
        f"to 195 {new_low['median']:.0f} against {new_off['median']:.0f} "
        f"({new_low['median'] / new_off['median']:.2f}×; committed {old_low['median'] / old_off['median']:.2f}×), "
        f"fewer episodes on {fewer_on(new_low, new_off)} of 10 seeds (committed {fewer_on(old_low, old_off)} of 10); "
        f"to 475 {new_high['median']:.0f} against "
        f"{new_high_off['median']:.0f} ({new_high['median'] / new_high_off['median']:.2f}×; committed "
        f"{old_high['median'] / old_high_off['median']:.2f}×); mean return over the first 50,000 steps "
        f"{new_low['mean_return']:.0f} against {new_off['mean_return']:.0f} (higher on {higher_on(new_low, new_off)} "
        f"of 10; committed {old_low['mean_return']:.0f} against {old_off['mean_return']:.0f}, "
        f"{higher_on(old_low, old_off)} of 10). The relax runs part from the committed ones after {min(parted)} to "
        f"{max(parted)} episodes, about where they reach 195, and "
        f"{regime_parted[REGIME_C_HAT_OFF].count(None)} of the 10 ĉ-off runs never do: {regime_unchanged} of the 20 "
        "counts to 195 are unchanged, so this is largely the same data",
        f"give {new_low['median'] / new_off['median']:.2f}× and fewer episodes on {fewer_on(new_low, new_off)} of 10, "
        f"but these are largely the same runs up to 195 ({regime_unchanged} of the 20 counts unchanged)",
    ]
    lander = _rl_table("rl_table_lunar_lander_seed0_timing")["LunarLander-v3"]["200"]
    old_lander = committed["LunarLander-v3"]["200"]
    reversed_seed = [f"{x:.0f}".replace("-", "−") for x in (
        lander["relax-a2c"]["mean_return"], lander[off]["mean_return"],
        old_lander["relax-a2c"]["per_seed_mean_return"]["0"], old_lander[off]["per_seed_mean_return"]["0"])]
    stated.append("reverses: relax-a2c {} against ĉ off's {}, where the committed runs read {} against {}".format(
        *reversed_seed))
    rerun_lander = rerun["LunarLander-v3"]["200"]
    later = [rerun_lander[arm]["per_seed_mean_return"] for arm in ("relax-a2c", off)]
    assert sorted(later[0]) == ["1", "2"] and all(later[0][seed] < later[1][seed] for seed in ("1", "2"))
    stated.append("relax-a2c reads " + " and ".join(
        "{} against {}".format(*(f"{x[seed]:.0f}".replace("-", "−") for x in later)) for seed in ("1", "2")))
    committed_lower = sum(old_lander["relax-a2c"]["per_seed_mean_return"][seed]
                          < old_lander[off]["per_seed_mean_return"][seed] for seed in ("0", "1", "2"))
    stated.append(f"lower on {2 + (lander['relax-a2c']['mean_return'] < lander[off]['mean_return'])} of the 3 rerun "
                  f"seeds, against {committed_lower} of 3 in the committed runs")
    readme = " ".join(_readme().split())
    for sentence in stated:
        assert sentence in readme, sentence

    minutes = {arm: lander[arm]["median_wall_time_s"] / 60 for arm in ("relax-a2c", off, "a2c", "ppo")}
    with open(os.path.join(ROOT, "results", "README.md"), encoding="utf-8") as fh:
        details = " ".join(fh.read().split())
    timing = (f"relax-a2c {minutes['relax-a2c']:.1f} minutes, ĉ off {minutes[off]:.1f}, A2C {minutes['a2c']:.1f} and "
              f"PPO {minutes['ppo']:.1f}")
    assert timing in details, timing


def test_lunar_lander_table_on_this_machine_matches_its_runs():
    """The full LunarLander table of the four default arms on the current machine (results/README.md's "How long a
    table takes" and the README's LunarLander bullet): its wall time, the runs it repeats bit for bit, and its
    scores, with the committed table's seeds pooled."""
    import json
    import re

    folder = os.path.join(ROOT, "results", "rl_table_lunar_lander_avx512")
    with open(os.path.join(folder, "rl_table.json"), encoding="utf-8") as fh:
        command = json.load(fh)["commands"][-1]
    table, committed = _rl_table("rl_table_lunar_lander_avx512")["LunarLander-v3"]["200"], _rl_table("rl_table")
    old = committed["LunarLander-v3"]["200"]
    off = C_HAT_OFF
    with open(os.path.join(folder, "progress.log"), encoding="utf-8") as fh:
        log = fh.read()
    elapsed = [int(s) for s in re.findall(r"^\[\d+/20 (\d+)s\]", log, flags=re.M)]
    assert len(elapsed) == 20  # every run trained in this one invocation

    def record(name: str, where: str = "rl_table_lunar_lander_avx512") -> dict:
        with open(os.path.join(ROOT, "results", where, "runs", name), encoding="utf-8") as fh:
            return json.load(fh)

    names = sorted(n for n in os.listdir(os.path.join(folder, "runs")) if n.endswith(".json"))
    assert len(names) == 20
    earlier = {"rl_table_lunar_lander_seed0_timing": [f"LunarLander-v3__{key}__seed0.json" for key in (
        "relax-a2c", "relax-a2c_c-hat_off", "a2c", "ppo")],
        "rl_table_rerun_avx512": [f"LunarLander-v3__{key}__seed{s}.json" for key in ("relax-a2c", "relax-a2c_c-hat_off")
                                  for s in (1, 2)]}
    twins = [(record(n), record(n, where)) for where, listed in earlier.items() for n in listed]
    repeated = sum(all(new[k] == was[k] for k in ("returns", "episode_timesteps", "final_eval_mean"))
                   for new, was in twins)
    slower = [new["wall_time_s"] / was["wall_time_s"] for new, was in twins]
    solved = {arm: f"{table[arm]['solved']}/{table[arm]['total']}" for arm in ("relax-a2c", off, "a2c", "ppo")}
    (off_solve,) = [(seed, n) for seed, n in table[off]["per_seed"].items() if n is not None]
    shared, shared_steps, lengths = [], [], []  # before a run parts from the committed run of its arm and seed
    for name in names:
        mine, theirs = record(name), record(name, "rl_table")
        parted = next((i for i, (a, b) in enumerate(zip(mine["returns"], theirs["returns"], strict=False)) if a != b),
                      min(len(mine["returns"]), len(theirs["returns"])))
        shared.append(parted)
        lengths.append(len(mine["returns"]))
        if "__ppo__" not in name and "__a2c__" not in name:
            shared_steps.append(mine["episode_timesteps"][parted - 1] if parted else 0)
    assert max(shared_steps) < 0.01 * 400_000  # "under 1% of the first 400,000 steps"

    def below(arms: dict) -> int:
        mine, theirs = arms["relax-a2c"]["per_seed_mean_return"], arms[off]["per_seed_mean_return"]
        return sum(mine[seed] < theirs[seed] for seed in mine)

    def signed(x: float) -> str:
        return f"{x:.0f}".replace("-", "−")

    pooled = below(table) + below(old)
    stated = [
        f"all 20 runs in one invocation, {max(elapsed) / 60:.0f} minutes with 2 workers and nothing else running",
        f"the {len(twins)} runs the table shares with earlier runs here (seed 0 of each arm; seeds 1-2 of relax-a2c "
        f"and ĉ off) repeat them to the last digit, at {min(slower):.2f}-{max(slower):.2f}× their wall times",
        f"share only their first {min(shared)} to {max(shared)} episodes with the committed runs of the same arm and "
        f"seed (of {min(lengths):,} to {max(lengths):,} episodes in these runs",
        f"relax-a2c {solved['relax-a2c']}, ĉ off {solved[off]}, A2C {solved['a2c']}, PPO {solved['ppo']} "
        f"(median {table['ppo']['median']:,.0f} episodes). ĉ off's one solve is seed {off_solve[0]}, at "
        f"{off_solve[1]:,} episodes",
        f"medians relax-a2c {signed(table['relax-a2c']['mean_return'])} against ĉ off's "
        f"{signed(table[off]['mean_return'])}, relax-a2c below ĉ off on {below(table)} of 5 seeds; with the committed "
        f"table's 5 seeds, below on {pooled} of 10 (sign test p ≈ {_sign_test(pooled, 10):.2f})",
        f"`{command}` trained",
    ]
    assert all(old[arm]["solved"] == 0 for arm in old if arm != "ppo")  # "no A2C-family run solves"
    with open(os.path.join(ROOT, "results", "README.md"), encoding="utf-8") as fh:
        details = " ".join(fh.read().split())
    readme = " ".join(_readme().split())
    for sentence in stated:
        assert sentence in details, sentence
    assert stated[0] in readme and stated[-2] in readme
    assert f"There ĉ off solves {table[off]['solved']} run of 5 (seed {off_solve[0]}, {off_solve[1]:,} episodes) and " \
           f"PPO {table['ppo']['solved']} of 5" in readme
    assert repeated == len(twins) == 8
    assert "and for `rl_table.py` on the 8 LunarLander runs below, which the full table above repeated bit for bit" \
        in readme
