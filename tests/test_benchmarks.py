"""The benchmark scripts of issue #5: the episodes-to-solve rule, and --quick smoke runs that check what the
scripts write (not how fast anything runs)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and worker processes look the module up by name
    spec.loader.exec_module(module)
    return module


rl_table = _load("rl_table")


def test_episodes_to_threshold_needs_a_full_window_and_counts_from_one():
    returns = [200.0] * 99
    assert rl_table.episodes_to_threshold(returns, 195.0) is None  # 99 < 100 episodes
    assert rl_table.episodes_to_threshold([*returns, 200.0], 195.0) == 100
    # 150 episodes at 100 then 100 at 300: the window mean first reaches 195 once 48 of the 300s are in it
    returns = [100.0] * 150 + [300.0] * 100
    expected = 150 + next(k for k in range(1, 101) if ((100 - k) * 100 + k * 300) / 100 >= 195)
    assert rl_table.episodes_to_threshold(returns, 195.0) == expected == 198
    assert rl_table.episodes_to_threshold(returns, 301.0) is None


def test_summary_keeps_unsolved_runs_out_of_the_mean_but_in_the_total():
    ends = [10 * k for k in range(1, 301)]  # episode k (1-based) ends at timestep 10 k
    records = [{"seed": s, "wall_time_s": 1.0, "episodes_to_solve": {"195": e}, "episode_timesteps": ends}
               for s, e in enumerate([100, 300, None])]
    summary = rl_table.summarize(records, 195.0)
    assert (summary["solved"], summary["total"]) == (2, 3)
    assert summary["median"] == 200 and summary["mean"] == 200
    # the same solves in steps: the end of the 100th and of the 300th episode; the unsolved run has none
    assert summary["per_seed_timesteps"] == {0: 1000, 1: 3000, 2: None} and summary["median_timesteps"] == 2000
    assert summary["std"] == pytest.approx(np.std([100, 300], ddof=1))
    assert summary["best_window_mean"] is None  # no returns recorded
    assert summary["final_eval_median"] is None  # no evaluation recorded
    for record, final in zip(records, [10.0, None, 30.0], strict=True):
        record["final_eval_mean"] = final
    assert rl_table.summarize(records, 195.0)["final_eval_median"] == 20.0  # a run without one is left out


def test_best_window_mean_is_the_median_over_seeds_of_each_runs_best_100_episodes():
    # seed 0 peaks at a window mean of 150 and falls back; seed 1 climbs to 90; seed 2 ends at 120;
    # seed 3 has too few episodes for a window and is left out
    runs = [[100.0] * 100 + [200.0] * 50 + [0.0] * 200, [90.0] * 300, [0.0] * 100 + [120.0] * 100, [500.0] * 99]
    records = [{"seed": s, "wall_time_s": 1.0, "episodes_to_solve": {"195": None}, "returns": r}
               for s, r in enumerate(runs)]
    assert rl_table.summarize(records, 195.0)["best_window_mean"] == pytest.approx(120.0)


run_scores = _load("run_scores")


def _mean_return_by_brute_force(returns: list[float], ends: list[int], steps: int) -> float:
    """The definition step by step: R(t) is the mean return of the episodes that end at the first end >= t."""
    total = 0.0
    for t in range(1, steps + 1):
        first_end = min(e for e in ends if e >= t)
        total += np.mean([r for r, e in zip(returns, ends, strict=True) if e == first_end])
    return total / steps


def test_mean_return_over_steps_matches_its_definition_and_has_no_episode_floor():
    # one env: the score is the length-weighted mean return, Σ R_i L_i / K, up to K (the last episode cut at K)
    lengths, returns = [10, 30, 60], [10.0, 20.0, 30.0]
    ends = list(np.cumsum(lengths))  # 10, 40, 100
    assert run_scores.mean_return_over_steps(returns, ends, 100) == pytest.approx((100 + 600 + 1800) / 100)
    assert run_scores.mean_return_over_steps(returns, ends, 70) == pytest.approx((100 + 600 + 30 * 30) / 70)
    assert run_scores.mean_return_over_steps(returns, ends, 101) is None  # no episode ends at or after step 101
    # parallel envs: episodes ending on the same step count as their mean, against a brute-force loop over t
    rng = np.random.default_rng(0)
    ends = sorted(int(e) for e in rng.choice(np.arange(8, 400, 8), size=40))  # repeats: several end together
    returns = [float(r) for r in rng.normal(100, 30, size=40)]
    for steps in (1, 8, 9, 123, ends[-1]):
        expected = _mean_return_by_brute_force(returns, ends, steps)
        assert run_scores.mean_return_over_steps(returns, ends, steps) == pytest.approx(expected), steps
    # two runs that both finish 100 episodes of 500 at the same count: the one that got there in fewer steps scores
    # higher, where episodes to solve would read the same (unlike the 100-episode mean, this score has no floor)
    fast, slow = [500.0] * 100, [20.0] * 100 + [500.0] * 100
    fast_ends, slow_ends = list(np.cumsum([500] * 100)), list(np.cumsum([20] * 100 + [500] * 100))
    assert (run_scores.mean_return_over_steps(fast, fast_ends, 50_000)
            > run_scores.mean_return_over_steps(slow, slow_ends, 50_000))
    for steps in (5, 30):  # out of order is an error whether or not the run covers K
        with pytest.raises(ValueError, match="nondecreasing"):
            run_scores.mean_return_over_steps([1.0, 2.0], [20, 10], steps)
    with pytest.raises(ValueError, match="2 returns but 1 episode ends"):
        run_scores.mean_return_over_steps([1.0, 2.0], [20], 5)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        run_scores.mean_return_over_steps([1.0], [20], 0)


def test_summary_gives_the_median_return_over_steps_only_when_every_run_covers_k():
    covering = {"returns": [10.0, 30.0], "episode_timesteps": [10, 40]}  # scores (100 + 900) / 40 = 25 at K = 40
    records = [{"seed": s, "wall_time_s": 1.0, "episodes_to_solve": {"195": None}, **covering} for s in range(2)]
    records[1]["returns"] = [20.0, 40.0]  # (200 + 1200) / 40 = 35
    summary = rl_table.summarize(records, 195.0, return_steps=40)
    assert summary["per_seed_mean_return"] == {0: 25.0, 1: 35.0} and summary["mean_return"] == 30.0
    records.append({"seed": 2, "wall_time_s": 1.0, "episodes_to_solve": {"195": 2}, "returns": [500.0, 500.0],
                    "episode_timesteps": [10, 20]})  # stopped (solved) before K: leaving it out would favour the slow
    summary = rl_table.summarize(records, 195.0, return_steps=40)
    assert summary["per_seed_mean_return"][2] is None and summary["mean_return"] is None
    assert rl_table.summarize(records, 195.0)["mean_return"] is None  # no K, no score


def test_rl_table_quick_runs_records_episodes_and_resumes(tmp_path, capsys):
    out = tmp_path / "table"
    table = rl_table.main(["--quick", "--seeds", "1", "--budget", "3000", "--workers", "1", "--out", str(out)])
    assert set(table["CartPole-v1"]) == {"195", "475"}
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 2  # relax-a2c and a2c, one seed
    for path in runs:
        record = json.loads(path.read_text())
        # every completed episode was recorded, and CartPole's returns are episode lengths summing to <= steps
        assert record["episodes"] == len(record["returns"]) > 0
        assert sum(record["returns"]) <= record["timesteps"]
        assert record["episode_timesteps"] == sorted(record["episode_timesteps"])
        assert record["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    markdown = (out / "rl_table.md").read_text()
    assert markdown.count("| CartPole-v1 |") == 4
    # the return over steps, with K lowered to half the budget: a run that trains its whole budget covers it
    assert re.findall(r"\| ([\d.,—]+) \(K = 1,500\) \|", markdown) == [
        f"{table['CartPole-v1'][t][arm]['mean_return']:,.1f}" for t in ("195", "475") for arm in ("relax-a2c", "a2c")]
    assert (out / "CartPole-v1.png").stat().st_size > 0
    # the invocation's wall time, start to end, holds both runs, which ran one after the other (1 worker)
    (invocation,) = json.loads((out / "rl_table.json").read_text())["invocations"]
    assert invocation["runs_trained"] == 2 and invocation["workers"] == 1
    run_times = [json.loads(path.read_text())["wall_time_s"] for path in runs]
    assert invocation["wall_time_s"] >= round(sum(run_times), 1)
    assert f"- 2 runs in {invocation['wall_time_s'] / 60:.1f} minutes with 1 worker on " in markdown
    mtimes = [p.stat().st_mtime_ns for p in runs]
    capsys.readouterr()
    rl_table.main(["--quick", "--seeds", "1", "--budget", "3000", "--workers", "1", "--out", str(out)])
    assert "2 already done, 0 to go" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in runs] == mtimes
    # a resume that trains nothing adds no wall time
    assert json.loads((out / "rl_table.json").read_text())["invocations"] == [invocation]



def test_a_run_another_invocation_is_training_is_left_to_it(tmp_path, capsys):
    """Invocations sharing a runs folder never train the same run twice: a claim held by a live process is left
    alone (the run is reported and missing from the records), one whose process has ended is taken over, and a
    run another invocation finished meanwhile is read instead of trained."""
    runs = tmp_path / "runs"
    runs.mkdir()
    job = rl_table.Job("CartPole-v1", "a2c", 0, 200, (195.0, 475.0))
    claim = runs / f"{job.key}.running"
    claim.write_text(str(os.getppid()))  # a live process that is not this one
    assert rl_table.run_jobs([job], str(runs), 1) == {}
    assert f"left to the invocation training it (pid {os.getppid()})" in capsys.readouterr().out
    assert claim.exists() and not (runs / f"{job.key}.json").exists()

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim.write_text(ended.stdout.strip())  # its process is gone: a killed invocation
    record = rl_table.run_jobs([job], str(runs), 1)[job]
    assert record["budget"] == 200 and record["timesteps"] >= 200
    assert json.loads((runs / f"{job.key}.json").read_text()) == record and not claim.exists()

    finished = {**record, "seed": 0, "fps": -1.0}  # what another invocation wrote after this one listed its jobs
    (runs / f"{job.key}.json").write_text(json.dumps(finished))
    assert rl_table.run_unclaimed_job(job, str(tmp_path), str(runs)) == (finished, None) and not claim.exists()
    claim.write_text("12")  # not a json: the table ignores claims
    table = rl_table.main(["--envs", "CartPole-v1", "--arms", "a2c", "--seeds", "1", "--budget", "200", "--workers",
                           "1", "--out", str(tmp_path)])
    assert table["CartPole-v1"]["195"]["a2c"]["total"] == 1
    table = rl_table.main(["--envs", "CartPole-v1", "--arms", "a2c", "--seeds", "1", "--first-seed", "3", "--budget",
                           "200", "--workers", "1", "--out", str(tmp_path / "later_seeds")])
    assert list(table["CartPole-v1"]["195"]["a2c"]["per_seed"]) == [3]


def test_one_of_several_invocations_takes_a_stale_claim(tmp_path):
    """Invocations that find the same stale claim at once (here a claim file without a pid) take it over one at a
    time: exactly one gets the run, and the others see that one's pid. Each stays alive until all
    have claimed, as training invocations would."""
    (tmp_path / "k.running").write_text("")
    script = ("import os, sys; sys.path.insert(0, sys.argv[1]); from run_records import claim; "
              "print(claim(sys.argv[2], 'k'), os.getpid(), flush=True); sys.stdin.read()")
    procs = [subprocess.Popen([sys.executable, "-c", script, os.path.join(ROOT, "experiments"), str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        results = [proc.stdout.readline().split() for proc in procs]
    finally:
        for proc in procs:
            proc.communicate("")
    winners = [pid for holder, pid in results if holder == "None"]
    assert len(winners) == 1
    assert all(holder == winners[0] for holder, pid in results if pid != winners[0])
    assert (tmp_path / "k.running").read_text() == winners[0]


variance = _load("variance")
throughput = _load("throughput")


def test_variance_probe_measures_both_estimators_at_the_models_theta():
    from relax_rl import RelaxA2C
    from relax_rl.envs import make_env

    model = RelaxA2C("MlpPolicy", make_env("CartPole-v1", n_envs=4, seed=0), n_steps=5, seed=0, device="cpu")
    model.learn(400)
    probe = variance.VarianceProbe("CartPole-v1", budget=400, every=0.5, n_batches=4, seed=0)
    probe.init_callback(model)
    probe._on_training_start()
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    env, last_obs = model.env, model._last_obs
    record = probe.measure()
    for name, value in before.items():
        assert torch.equal(model.policy.state_dict()[name], value), name  # the model is untouched
    assert model.env is env and model._last_obs is last_obs
    on, off = record["c_hat_on"]["total_variance"], record["c_hat_off"]["total_variance"]
    assert record["ratio"] == pytest.approx(on / off)


def test_variance_quick_writes_checkpoints_from_start_to_end(tmp_path):
    results = variance.main(["--quick", "--budget", "800", "--out", str(tmp_path)])
    checkpoints = results["CartPole-v1"]["runs"][0]["checkpoints"]
    assert [c["timesteps"] for c in checkpoints] == [40, 400, 800]  # batch 8 envs x 5 steps; every 50%
    assert all(c["c_hat_on"]["n_batches"] == 10 and c["c_hat_off"]["total_variance"] > 0 for c in checkpoints)
    assert {p.name for p in tmp_path.iterdir()} == {"variance.json", "variance.md", "variance.png"}


def test_throughput_arms_share_settings_and_networks():
    models = {arm: throughput.build(arm, "CartPole-v1", 0) for arm in throughput.ARMS}
    shapes = {arm: [tuple(p.shape) for n, p in m.policy.named_parameters() if not n.startswith("cv_")]
              for arm, m in models.items()}
    assert all(s == shapes["a2c"] for s in shapes.values())
    for model in models.values():
        assert (model.n_envs, model.n_steps, model.gamma) == (8, 5, 0.99)
    assert models["relax-a2c"].action_dependent_cv and not models["relax-a2c (c-hat off)"].action_dependent_cv
    assert (models["relax-a2c"].cv_coef, models["relax-a2c (cv_coef auto)"].cv_coef) == (1.0, "auto")


def test_throughput_overrides_reach_every_arm_and_cv_ones_only_the_relax_arms():
    overrides = ["n_envs=1", "n_steps=200", "cv_updates_per_step=2"]
    a2c, relax = (throughput.build(arm, "CartPole-v1", 0, overrides=overrides) for arm in ("a2c", "relax-a2c"))
    assert (a2c.n_envs, a2c.n_steps) == (relax.n_envs, relax.n_steps) == (1, 200)
    assert relax.cv_updates_per_step == 2 and not hasattr(a2c, "cv_updates_per_step")
    with pytest.raises(SystemExit):
        throughput.parse_args(["--envs", "CartPole-v1", "--hyperparams", "n_stepz=200"])


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_throughput_arms_keep_their_own_random_streams(device):
    """Taking turns in one process, the ĉ-off arm repeats A2C's run bit for bit, as each would run alone (on a
    GPU the actions are drawn from the CUDA generator, whose state each arm keeps too)."""
    steppers = {arm: throughput.Stepper(throughput.build(arm, "CartPole-v1", 0, device))
                for arm in ("a2c", "relax-a2c", "relax-a2c (c-hat off)")}
    for _ in range(3):
        for stepper in steppers.values():
            stepper.run(4)
    alone = throughput.Stepper(throughput.build("a2c", "CartPole-v1", 0, device))
    alone.run(12)
    a2c, off = (steppers[arm].model.policy.state_dict() for arm in ("a2c", "relax-a2c (c-hat off)"))
    assert all(torch.equal(a2c[k], off[k]) and torch.equal(a2c[k], alone.model.policy.state_dict()[k]) for k in a2c)


def test_throughput_quick_reports_consistent_ratios(tmp_path):
    (result,) = throughput.main(["--quick", "--out", str(tmp_path)])
    arms, blocks = result["arms"], result["blocks_measured"]
    paired = [r["fps"] / a["fps"] for r, a in zip(blocks["relax-a2c"], blocks["a2c"], strict=True)]
    assert len(paired) == 4 and result["ratio_relax_to_a2c"] == pytest.approx(float(np.median(paired)))
    assert result["ratio_relax_to_a2c_quartiles"] == pytest.approx(list(np.percentile(paired, [25, 75])))
    assert result["steps"] == 640 == result["rollouts_per_block"] * 4 * 40
    for arm, measured in blocks.items():  # every arm ran the same steps, and the parts add up to at most the whole
        # (fps is steps / wall, so this checks that every block stepped its rollouts × 8 envs × 5 steps)
        assert [b["fps"] * b["wall_s"] for b in measured] == pytest.approx([result["rollouts_per_block"] * 40] * 4)
        assert arms[arm]["collect_s"] + arms[arm]["train_s"] <= arms[arm]["wall_s"]
        assert arms[arm]["wall_s"] == pytest.approx(sum(b["wall_s"] for b in measured))
    assert result["device"] == "cpu"
    assert "| CartPole-v1 | RelaxActorCriticPolicy, cpu | 8 × 5 | 4 × 4 |" in (tmp_path / "throughput.md").read_text()
    _check_machine_is_recorded(tmp_path / "throughput.json", tmp_path / "throughput.md")


def _check_machine_is_recorded(json_path, markdown_path) -> None:
    """Timings only compare on one machine: the output names its CPU kernels (JSON and markdown)."""
    capability = torch.backends.cpu.get_cpu_capability()
    assert json.loads(json_path.read_text())["machine"]["torch_cpu_capability"] == capability
    assert f"({capability} CPU kernels)" in markdown_path.read_text()


update_profile = _load("update_profile")


def test_update_profile_parts_add_up_and_name_relax_only_work(tmp_path):
    grad, backward = torch.autograd.grad, torch.Tensor.backward
    (result,) = update_profile.main(["--quick", "--out", str(tmp_path)])
    assert (torch.autograd.grad, torch.Tensor.backward) == (grad, backward)  # the wrappers are gone
    parts, whole = result["parts_ms"], result["ms_per_update"]
    for arm in update_profile.ARMS:
        # "rest" is the whole less the timed parts: below 0 would mean a part was counted twice (one wrapped
        # function inside another)
        assert parts[arm]["rest"] >= -1e-9 and whole[arm] > 0
    relax_only = {"forward: ĉ", "φ's optimizer step", "backward: φ's gradient (double backprop)",
                  "backward: ∇_θ S̄ with create_graph"}
    assert relax_only <= set(parts["relax-a2c"])
    assert not relax_only & (set(parts["a2c"]) | set(parts["relax-a2c (c-hat off)"]))
    assert "| **whole update** |" in (tmp_path / "update_profile.md").read_text()
    _check_machine_is_recorded(tmp_path / "update_profile.json", tmp_path / "update_profile.md")


@pytest.mark.parametrize("script", ["variance", "throughput", "update_profile"])
def test_unconfigured_env_is_a_clear_argument_error(script, capsys):
    module = {"variance": variance, "throughput": throughput, "update_profile": update_profile}[script]
    with pytest.raises(SystemExit):
        (module.main if script == "update_profile" else module.parse_args)(["--envs", "Foo-v1"])
    assert "no relax-a2c entry for 'Foo-v1'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["rl_table", "--seeds", "0"], "argument --seeds: must be a positive integer, got '0'"),
    (["rl_table", "--budget", "-5"], "argument --budget: the number of timesteps must be a positive integer"),
    (["variance", "--hyperparams", "n_env=4"], "unknown hyperparameter 'n_env' for relax-a2c (did you mean n_envs"),
    (["tune", "--algos", "relax-a2c", "a2c", "--grid", "cv_coef=auto"],
     "a2c at grid point cv_coef=auto: --hyperparams: unknown hyperparameter 'cv_coef' for a2c"),
])
def test_benchmark_arguments_are_checked_before_anything_runs(argv, message, capsys):
    """A bad count or override is an argument error up front, not a silent default or a failure hours in."""
    script, *args = argv
    with pytest.raises(SystemExit):
        {"rl_table": rl_table, "variance": variance, "tune": tune}[script].parse_args(args)
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a machine without CUDA gives")
def test_throughput_on_cuda_without_a_gpu_is_a_clear_argument_error(capsys):
    with pytest.raises(SystemExit):
        throughput.parse_args(["--device", "cuda"])
    assert "torch sees no CUDA device here" in capsys.readouterr().err


def test_rl_table_skips_the_c_hat_off_arm_only_where_it_would_repeat_a2c():
    """ĉ off runs relax-a2c's settings: on the table's three envs they differ from a2c's (each algorithm has its
    own tuned settings); on Acrobot both files hold the same entry, so those runs would be a2c's, and on Pendulum
    the entries differ in gSDE alone (on in a2c's, off in relax-a2c's), so they would not."""
    for env_id in rl_table.ENVS:
        assert not rl_table.repeats_a2c("relax-a2c (c-hat off)", env_id)
    assert rl_table.repeats_a2c("relax-a2c (c-hat off)", "Acrobot-v1")
    assert not rl_table.repeats_a2c("relax-a2c (c-hat off)", "Pendulum-v1")
    assert not any(rl_table.repeats_a2c(arm, env_id) for arm in rl_table.ARMS if arm != "relax-a2c (c-hat off)"
                   for env_id in rl_table.ENVS)


def test_rl_table_rejects_unknown_envs_and_arms_and_a_negative_first_seed(capsys):
    for argv, message in ((["--envs", "Foo-v1"], "invalid choice"), (["--arms", "sac"], "invalid choice"),
                          (["--first-seed", "-1"], "--first-seed must be >= 0")):
        with pytest.raises(SystemExit):
            rl_table.parse_args(argv)
        assert message in capsys.readouterr().err


tune = _load("tune")


def test_tuning_summary_and_ranking():
    def record(seed, returns):
        return {"seed": seed, "returns": returns, "episodes_to_solve": {}}

    # seed 0 solves at episode 100, seed 1 never (its last 100 average 100), seed 2 has too few episodes
    summary = tune.summarize([record(1, [100.0] * 150), record(0, [200.0] * 120), record(2, [300.0] * 50)], 195.0)
    assert summary["episodes"] == [100, None, None] and summary["solved"] == 1
    assert summary["median"] is None  # two of three never solve: the median over all seeds is never
    assert summary["final_return"] == pytest.approx((200 + 100 + 300) / 3)
    assert summary["best_window_returns"] == [200.0, 100.0, None]  # seed order; seed 2 never filled a window

    def point(solved, median, final_return=0.0):
        return {"solved": solved, "median": median, "final_return": final_return}

    points = {"fast but flaky": point(1, None), "slow, always": point(3, 450.0), "fast, always": point(3, 250.0),
              "two of three": point(2, 160.0), "never, close": point(0, None, 180.0),
              "never, far": point(0, None, 20.0)}
    ranked = sorted(points, key=lambda p: tune.rank_key(points[p]))
    assert ranked == ["fast, always", "slow, always", "two of three", "fast but flaky", "never, close", "never, far"]


def test_best_window_mean_is_the_highest_mean_of_any_100_consecutive_episodes():
    rng = np.random.default_rng(0)
    returns = list(rng.normal(0.0, 50.0, size=400))
    returns[150:250] = [120.0] * 100  # a plateau that a collapse follows, as on LunarLander
    brute_force = max(np.mean(returns[i:i + 100]) for i in range(len(returns) - 99))
    assert rl_table.best_window_mean(returns) == pytest.approx(brute_force)
    assert rl_table.best_window_mean(returns) > np.mean(returns[-100:])
    assert rl_table.best_window_mean(returns[:99]) is None


def test_tuning_runs_the_same_grid_and_seeds_for_every_algo(tmp_path, capsys):
    out = tmp_path / "tuning"
    report = tune.main(["--quick", "--workers", "1", "--budget", "2000", "--grid", "learning_rate=lin_1e-3,7e-4",
                        "n_envs=4", "--out", str(out)])
    expected_points = {"learning_rate=lin_1e-3 n_envs=4", "learning_rate=7e-4 n_envs=4"}
    assert set(report["results"]) == {"relax-a2c", "a2c"}
    for algo, points in report["results"].items():
        assert set(points) == expected_points
        assert all(s["total"] == 1 for s in points.values())
        assert report["chosen"][algo] == min(points, key=lambda p: tune.rank_key(points[p]))
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 4
    for path in runs:  # the overrides reached the run: 4 envs, and the record says which point it was
        record = json.loads(path.read_text())
        assert "n_envs=4" in record["overrides"] and record["timesteps"] % 4 == 0
    assert (out / "tuning_CartPole-v1.md").read_text().count("| a2c |") == 2
    capsys.readouterr()
    tune.main(["--quick", "--workers", "1", "--budget", "2000", "--grid", "learning_rate=lin_1e-3,7e-4",
               "n_envs=4", "--out", str(out)])
    assert "4 already done, 0 to go" in capsys.readouterr().out


def test_tuning_packaged_point_is_the_algos_own_config_unchanged(tmp_path):
    """With --packaged, each algorithm also runs with no override: that run must be the table's run of the arm
    (same seed, budget and threshold), and it must rank with the grid's points."""
    out = tmp_path / "tuning"
    report = tune.main(["--quick", "--workers", "1", "--budget", "2000", "--grid", "n_envs=4", "--packaged",
                        "--out", str(out)])
    points = report["results"]["a2c"]
    assert set(points) == {tune.PACKAGED, "n_envs=4"}
    assert report["chosen"]["a2c"] == min(points, key=lambda p: tune.rank_key(points[p]))
    assert f"| a2c | {tune.PACKAGED} |" in (out / "tuning_CartPole-v1.md").read_text()
    packaged = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    packaged = [r for r in packaged if not r["overrides"] and r["arm"] == "a2c"]
    assert len(packaged) == 1
    table_run = rl_table.run_job(rl_table.Job("CartPole-v1", "a2c", 100, 2000, (report["threshold"],)),
                                 str(tmp_path / "logs"))
    assert packaged[0]["returns"] == table_run["returns"] and packaged[0]["timesteps"] == table_run["timesteps"]


@pytest.mark.parametrize("grid", [["learning_rate"], ["learning_rate="], ["n_envs=8", "n_envs=16"]])
def test_tuning_rejects_malformed_grids(grid, capsys):
    with pytest.raises(SystemExit):
        tune.parse_args(["--grid", *grid])
    assert "grid axis" in capsys.readouterr().err


@pytest.mark.parametrize("env_id, normalize", [("CartPole-v1", False), ("Pendulum-v1", False),
                                               ("InvertedPendulum-v5", True)])
def test_ideal_baseline_q_hat_is_the_advantage_itself_one_step_from_the_segment_end(env_id, normalize):
    """A transition one step from the end of its n-step segment has Â_t = r_t + γ V(s_{t+1}) − V(s_t), a
    deterministic function of (s_t, a_t) in these envs, so the continuations' q̂ at horizon 1 must reproduce it
    exactly: recorder, row matching, positions, simulation, action clipping, observation normalization and
    bootstrap all agree with SB3's buffer. Discrete (CartPole: every action), Box with an observation that is not
    the state (Pendulum: the taken action, then fresh draws), MuJoCo behind a frozen VecNormalize that scales
    observations and rewards."""
    from stable_baselines3.common.callbacks import ConvertCallback
    from stable_baselines3.common.vec_env import unwrap_vec_normalize

    from relax_rl import RelaxA2C
    from relax_rl.envs import make_env

    n_envs, n_steps, m, limit = 6, 3, 2, 3
    kwargs = dict(normalize=True, normalize_kwargs=dict(norm_reward=True)) if normalize else {}
    # episodes as long as a segment: every env has a row that ends truncated and takes SB3's bootstrap from V
    env = make_env(env_id, n_envs=n_envs, seed=1, env_kwargs=dict(max_episode_steps=limit), **kwargs)
    recorder = variance.StateRecorder(env, n_steps=n_steps)
    model = RelaxA2C("MlpPolicy", recorder, n_steps=n_steps, seed=1, device="cpu")
    model.learn(n_envs * n_steps * 20)
    if normalize:  # (statistics learned above, then frozen, as variance.py freezes them)
        unwrap_vec_normalize(recorder).training = False
    callback = ConvertCallback(None)
    callback.init_callback(model)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=n_steps)  # Â, V at this θ
    ideal = variance.IdealBaseline(model, recorder, n_continuations=m, seed=0)
    data = next(model.rollout_buffer.get(batch_size=None))
    assert any(clock == (limit - 1, limit) for per_env in recorder.records for _, clock, _ in per_env)
    q_hat, own_horizon, fresh = ideal.q_hat(data)
    discrete = env_id == "CartPole-v1"
    n_first = 2 if discrete else 1 + m
    assert q_hat.shape == (n_envs * n_steps, n_first, n_steps)
    assert sorted(own_horizon.tolist()) == sorted(list(range(n_steps)) * n_envs)
    assert (fresh is None) == discrete
    last = own_horizon == 0
    taken = q_hat[:, :, 0].gather(1, data.actions.long()).squeeze(1) if discrete else q_hat[:, 0, 0]
    torch.testing.assert_close(taken[last], data.advantages[last], rtol=1e-4, atol=1e-4)
    assert (taken[~last] - data.advantages[~last]).abs().max() > 1e-3  # longer segments are not 1-step returns
    assert (q_hat[:, 0, 0] - q_hat[:, 1, 0]).abs().max() > 1e-3  # the first actions are scored apart
    if not discrete:
        assert fresh.shape == (n_envs * n_steps, m, 1)
        assert fresh.std() > 0.1  # fresh draws, not copies of the taken action
        high = model.action_space.high
        np.testing.assert_array_equal(ideal._env_action(10 * high), high)  # clipped as SB3 clips before env.step
        with pytest.raises(ValueError, match="n_continuations >= 2"):
            variance.IdealBaseline(model, recorder, n_continuations=1, seed=0)
    state, clock, obs = recorder.records[0][0]
    recorder.records[0][0] = (state, clock, obs + 1.0)
    with pytest.raises(RuntimeError, match="recorded states"):
        ideal.q_hat(data)


def test_ideal_baseline_box_expected_term_is_unbiased():
    """With Box actions the term E_a[q ∇log π(a|s)] = ∇_θ E_a[q(s, a)] is a leave-one-out mean over fresh draws.
    With q(s, a) = 3a + Σ s (so ∇_θ E_a[q] = 3 ∇μ_θ(s)), the mean over draws of each ideal estimator must match
    its exact expectation on the same batch (a z-test per coordinate); q̂ is replaced by that fixed function so
    the test checks the estimators' algebra, not the simulator."""
    from relax_rl import RelaxA2C
    from relax_rl.envs import make_env

    recorder = variance.StateRecorder(make_env("Pendulum-v1", n_envs=4, seed=2), n_steps=5)
    model = RelaxA2C("MlpPolicy", recorder, n_steps=5, seed=2, device="cpu")
    model.learn(200)
    data = next(model.rollout_buffer.get(batch_size=None))
    ideal = variance.IdealBaseline(model, recorder, n_continuations=4, seed=0)
    theta = model.policy.theta_parameters()

    def flat(grads: list) -> torch.Tensor:
        filled = [torch.zeros_like(p) if g is None else g for p, g in zip(theta, grads, strict=True)]
        return torch.cat([g.flatten() for g in filled])

    def exact(surrogate: torch.Tensor) -> torch.Tensor:
        return flat(torch.autograd.grad(surrogate, theta, retain_graph=True, allow_unused=True))

    dist = model.policy.get_distribution(data.observations)
    log_pi, mean = dist.log_prob(data.actions), dist.distribution.mean[:, 0]
    state_part = data.observations.sum(dim=1)
    q_taken = 3 * data.actions[:, 0] + state_part
    expected = {"ideal": exact(((data.advantages - q_taken) * log_pi + 3 * mean).mean()),
                "ideal_state": exact(((data.advantages - 3 * mean.detach() - state_part) * log_pi).mean())}

    draws: dict[str, list] = {key: [] for key in expected}
    generator = torch.Generator().manual_seed(0)

    def fake_q_hat(rollout_data):
        d = model.policy.get_distribution(rollout_data.observations).distribution
        fresh = d.mean.detach()[:, None] + d.stddev.detach()[:, None] * torch.randn((len(rollout_data.actions), 4, 1),
                                                                                   generator=generator)
        first = torch.cat([rollout_data.actions[:, None], fresh], dim=1)[..., 0]
        q = 3 * first + rollout_data.observations.sum(dim=1, keepdim=True)
        return q[..., None].expand(-1, -1, 5).contiguous(), torch.zeros(len(first), dtype=torch.long), fresh

    ideal.q_hat = fake_q_hat
    for _ in range(400):
        estimators = ideal.estimators()  # (a fresh cache: new draws each time)
        for key in draws:
            draws[key].append(flat(estimators[key](data)))
    for key, samples in draws.items():
        stacked = torch.stack(samples)
        spread = stacked.std(dim=0) / len(samples) ** 0.5
        assert (stacked.mean(dim=0) - expected[key]).abs().max() > 0  # (a random estimate, not the exact one)
        z = (stacked.mean(dim=0) - expected[key]) / (spread + 1e-12)
        assert z[spread > 1e-9].abs().max() < 5.5, key


def test_ideal_baseline_refuses_normalized_advantages():
    from relax_rl import RelaxA2C
    from relax_rl.envs import make_env

    recorder = variance.StateRecorder(make_env("CartPole-v1", n_envs=2, seed=0), n_steps=5)
    model = RelaxA2C("MlpPolicy", recorder, n_steps=5, normalize_advantage=True, device="cpu")
    with pytest.raises(ValueError, match="normalize_advantage=True"):
        variance.IdealBaseline(model, recorder, n_continuations=2, seed=0)


def test_ideal_baseline_needs_a_settable_state(tmp_path):
    with pytest.raises(ValueError, match="--ideal-baseline needs an env whose state can be set"):
        variance.main(["--envs", "LunarLander-v3", "--budget", "80", "--batches", "2", "--every", "1",
                       "--ideal-baseline", "2", "--out", str(tmp_path)])


frozen_theta = _load("frozen_theta")


def test_frozen_theta_steps_phi_alone_and_writes_the_ratios(tmp_path):
    """After freeze_theta, training leaves every θ parameter (actor and critic) as it was and moves φ; the quick
    run writes one finite ratio per block, the first at φ's trained state (0 φ-only steps)."""
    from relax_rl import RelaxA2C

    model = RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=5, seed=0, device="cpu")
    model.learn(200)
    theta = [p.detach().clone() for p in model.policy.theta_parameters()]
    phi = [p.detach().clone() for p in model.policy.cv_parameters()]
    frozen_theta.freeze_theta(model)
    model.learn(200, reset_num_timesteps=False)
    assert all(torch.equal(a, b) for a, b in zip(theta, model.policy.theta_parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(phi, model.policy.cv_parameters(), strict=True))
    runs = frozen_theta.main(["--quick", "--out", str(tmp_path)])
    assert [b["phi_steps"] for b in runs[0]["blocks"]] == [0, 400, 800]
    assert all(np.isfinite(b["ratio"]) and b["ratio"] > 0 for b in runs[0]["blocks"])
    assert "φ alone 800 steps" in (tmp_path / "frozen_theta.md").read_text()
    with pytest.raises(SystemExit):
        frozen_theta.parse_args(["--blocks", "0"])


episode_stats = _load("episode_stats")


def _write_run(folder, seed, returns, lengths, arm="a2c"):
    """A run file as rl_table.py writes it, for a single env: each episode ends when its own length has passed."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"env_id": "CartPole-v1", "arm": arm, "seed": seed, "overrides": [], "returns": returns,
              "episode_timesteps": np.cumsum(lengths).tolist()}
    (folder / f"run{seed}.json").write_text(json.dumps(record))


def test_episode_stats_of_a_run_that_peaks_then_collapses_into_long_episodes(tmp_path):
    # 300 episodes: 100 short crashes (-100, 30-129 steps), 100 landings (+150, 250), 100 hovers (-120, 951-1050)
    returns = [-100.0] * 100 + [150.0] * 100 + [-120.0] * 100
    lengths = list(range(30, 130)) + [250] * 100 + list(range(951, 1051))
    stats = episode_stats.run_stats({"returns": returns, "episode_timesteps": np.cumsum(lengths).tolist()})
    assert stats["episodes"] == 300
    assert stats["best_window_mean"] == pytest.approx(150.0) and stats["best_window_end"] == 200
    assert stats["last_window_mean"] == pytest.approx(-120.0)
    assert stats["first_length"] == pytest.approx(79.5) and stats["last_length"] == pytest.approx(1000.5)
    short = episode_stats.run_stats({"returns": returns[:100], "episode_timesteps": np.cumsum(lengths[:100]).tolist()})
    assert short["first_length"] == pytest.approx(79.5) and short["last_window_mean"] == short["best_window_mean"]
    assert short["last_length"] is None  # a run of exactly one window has no separate last window

    # 4 parallel envs, episodes of 10 steps each ending together: the global timestep advances 4 per step
    n_envs, length = 4, 10
    ends = np.repeat(np.arange(1, 51) * n_envs * length, n_envs).tolist()
    parallel = episode_stats.run_stats({"returns": [0.0] * 200, "episode_timesteps": ends})
    assert parallel["first_length"] == pytest.approx(length) and parallel["last_length"] == pytest.approx(length)

    _write_run(tmp_path / "tuning" / "runs", 0, returns, lengths)
    _write_run(tmp_path / "tuning" / "runs", 1, [0.0] * 150, [200] * 150)
    _write_run(tmp_path / "table" / "runs", 0, [0.0] * 150, [200] * 150)
    out = tmp_path / "stats.md"
    rows = episode_stats.main([str(tmp_path / "*" / "runs" / "*.json"), "--out", str(out)])
    assert sorted((name, seed) for name, seed, _ in rows) == [
        ("table, CartPole-v1: a2c", 0), ("tuning, CartPole-v1: a2c", 0), ("tuning, CartPole-v1: a2c", 1)]
    text = out.read_text()
    # medians of the two tuning runs: best (150, 0), last (-120, 0), first length (79.5, 200), last (1000.5, 200)
    assert "| tuning, CartPole-v1: a2c | 2 | 75 | -60 | 140 | 600 |" in text
    with pytest.raises(SystemExit):
        episode_stats.main([str(tmp_path / "nothing_*.json"), "--out", str(out)])


def test_every_rl_table_arm_resolves_on_the_envs_it_applies_to():
    """An optional arm's overrides are only parsed when someone runs it: a misspelt key or value would fail there,
    after the other arms' runs. Each must resolve against its algorithm's packaged entry for every table env."""
    from relax_rl.algorithms import get_algo_class
    from relax_rl.hyperparams import resolve_hyperparams

    for arm, (algo, overrides, _) in rl_table.ARMS.items():
        for env_id in rl_table.ENVS:
            if not rl_table.applies(arm, env_id):
                continue
            hyperparams, _ = resolve_hyperparams(algo, get_algo_class(algo), env_id, False, None, overrides)
            for item in overrides:
                key = item.split("=", 1)[0]
                assert key in hyperparams, (arm, key)
