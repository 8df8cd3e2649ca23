"""`oir compare`: trains each (method, seed), reuses finished runs, and writes report.md with plots."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from oir.cli import main
from oir.train import TrainConfig

SUITE = [
    {"id": "wood", "text": "collect some wood", "split": "train", "category": "single",
     "task": {"all": [{"counter": "collect_wood", "at_least": 1}]}},
    {"id": "alive", "text": "stay alive", "split": "test", "category": "vitals",
     "task": {"all": [{"counter": "health", "at_least": 1}]}},
    {"id": "alive~p1", "task_id": "alive", "paraphrase": True, "text": "do not die", "split": "test",
     "category": "vitals", "task": {"all": [{"counter": "health", "at_least": 1}]}},
]
TINY = ["--steps", str(8 * 16 * 8), "--eval-every", str(8 * 16 * 4), "--episodes", "1", "--max-steps", "8",
        "--train.encoder", "hash", "--train.num-envs", "8", "--train.max-task-steps", "32",
        "--train.eval-max-steps", "8", "--train.relabeling.history", "64", "--train.relabeling.batch", "8",
        "--train.relabeling.window", "8", "--train.pqn.num-minibatches", "2",
        # PQN, no bonus, no world spans: the shapes the other tiny training tests compile
        "--algo", "pqn", "--train.achievement-bonus", "0", "--train.relabeling.world-span", "0"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "suite.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in SUITE))
    return path


def test_compare_trains_reuses_and_reports(tmp_path, suite, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "no-relabel,narrator,narrator-similarity@0.3,llm-verified", "--seeds", "0", "--out", str(out),
            "--suite", str(suite), *TINY]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "skipping llm-verified: needs --llm-url" in " ".join(text.split())
    for run in ("no-relabel-s0", "narrator-s0"):
        assert (out / run / "summary.json").is_file() and (out / run / "eval-test.json").is_file()
        rows = [json.loads(x) for x in (out / run / "metrics.jsonl").read_text().splitlines()]
        assert [r["env_steps"] for r in rows if "eval_success_test" in r] == [512]  # after 4 of 8 updates
    report = (out / "report.md").read_text()
    # "stay alive" holds for any agent after one step: 100% for both, so the ratio is exactly 1.
    assert "| no-relabel | 100.0 | 1.00 | n/a | 100.0 | 100.0 | 100.0 | 1.0 |" in report
    assert "| narrator | 100.0 | 1.00 | n/a | 100.0 | 100.0 | 100.0 | 1.0 |" in report
    assert "llm-verified: needs --llm-url" in report
    assert "| `alive` | stay alive | 100 | 100 |" in report  # the held-out task, per method
    for png in ("success_curves.png", "flawed_rate.png", "unique_instructions.png", "wall_time.png", "delta.png",
                "false_reward_rate.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in report
    assert "oir compare --methods no-relabel,narrator,narrator-similarity@0.3" in report  # the command that made it
    assert json.loads((out / "narrator-similarity@0.3-s0" / "config.json").read_text())["delta"] == 0.3
    sim = report[report.index("## Similarity rewards against verified rewards"):]
    assert "| narrator | verified | 100.0 | 100.0 | n/a | n/a | 0.0 | 0.0 |" in sim  # verified: never wrong
    assert "| narrator-similarity@0.3 | 0.3 | 100.0 | 100.0 |" in sim

    # A second call reuses both runs and their evaluations, and --export copies their results.
    mtime = (out / "narrator-s0" / "metrics.jsonl").stat().st_mtime
    assert main([*args, "--export", str(tmp_path / "kept")]) == 0
    assert "reusing finished run" in capsys.readouterr().out
    assert (out / "narrator-s0" / "metrics.jsonl").stat().st_mtime == mtime
    # The export alone writes the same report again: no checkpoint, no run dir of the original.
    kept = tmp_path / "kept"
    assert sorted(p.name for p in (kept / "narrator-s0").iterdir()) == [
        "config.json", "eval-test.json", "instructions.jsonl", "metrics.jsonl", "summary.json"]
    report = (out / "report.md").read_text()
    assert (kept / "report.md").read_text() == report and (kept / "success_curves.png").is_file()
    (kept / "report.md").unlink()
    out.rename(tmp_path / "gone")
    assert main([*args[:args.index("--out") + 1], str(kept), *args[args.index("--out") + 2:], "--report-only"]) == 0

    def tables(text):
        return [x for x in text.splitlines() if x.startswith("|")]
    assert tables((kept / "report.md").read_text()) == tables(report) and len(tables(report)) > 10
    (tmp_path / "gone").rename(out)
    assert main([*args, "--export", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"oir: error: --export {out} is --out itself: name another dir"

    # --report-only trains nothing: seed 1 has no run, so the report has seed 0's and says so.
    only = [*args[:args.index("--seeds")], "--seeds", "0,1", *args[args.index("--seeds") + 2:], "--report-only"]
    assert main(only) == 0
    assert "skipping narrator seed 1: no finished run (--report-only)" in capsys.readouterr().out
    assert not (out / "narrator-s1").exists()
    report = (out / "report.md").read_text()
    assert "seeds 0;" in report and f"- narrator, seed 1: not trained yet (--report-only; {out / 'narrator-s1'})." in report
    assert main([*only[:only.index("--out") + 1], str(tmp_path / "empty"), *only[only.index("--out") + 2:]]) == 2
    assert "--report-only: no finished run in" in capsys.readouterr().err

    # Same dir, other config: refused before any training, in one line.
    assert main([*args[:-len(TINY)], *TINY[2:], "--steps", "2048"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("oir: error: ") and "another config (differs in: steps)" in err and "\n" not in err


@pytest.mark.parametrize("args,message", [
    (["--methods", "narrator,gpt"], "unknown method 'gpt' (choose from no-relabel, narrator+suite, "
                                    "narrator, narrator-similarity, llm-verified, llm-direct, llm-similarity, narrator+llm, llm-lifted, ellm, ellm-llm; "
                                    "similarity methods take @DELTA, e.g. narrator-similarity@0.7)"),
    (["--methods", "narrator@0.7"], "method 'narrator@0.7': only similarity-reward methods take @DELTA"),
    (["--methods", "narrator-similarity@high"],
     "method 'narrator-similarity@high': 'high' after @ is not a number (a cosine threshold)"),
    (["--seeds", "0,x"], "--seeds must be comma-separated ints, got '0,x'"),
    (["--methods", "llm-similarity"], "no method left to run"),
    (["--train.preset", "labelled"], "oir compare sets each method itself: choose them with --methods (presets are "
                                     "for oir train); --train.* options set what every method shares"),
])
def test_bad_compare_input_is_one_line(tmp_path, capsys, args, message):
    assert main(["compare", "--out", str(tmp_path / "c"), "--steps", "64", *args]) == 2
    assert capsys.readouterr().err.strip() == f"oir: error: {message}"


def test_narrator_plus_suite_starts_from_the_suites_train_lines(tmp_path, suite):
    from oir.compare import CompareConfig, run_config

    tcfg = run_config(CompareConfig(suite=suite, out=tmp_path), "narrator+suite", 0)
    assert tcfg.relabel == "narrator" and tcfg.labels == 1.0 and tcfg.reward == "verified"
    assert run_config(CompareConfig(suite=suite, out=tmp_path), "narrator", 0).labels == 0.0
    assert run_config(CompareConfig(suite=suite, out=tmp_path), "no-relabel", 0).labels == 1.0
    # --train.labels sets the labelled methods' share; the zero-label methods keep none
    half = CompareConfig(suite=suite, out=tmp_path, train=replace(TrainConfig(), labels=0.5))
    assert run_config(half, "narrator+suite", 0).labels == run_config(half, "no-relabel", 0).labels == 0.5
    assert run_config(half, "narrator", 0).labels == 0.0
    out = tmp_path / "ns"
    args = ["train", "--relabel", "narrator", "--labels", "1", "--suite", str(suite), "--out", str(out),
            "--steps", str(8 * 16 * 4), "--encoder", "hash", "--num-envs", "8", "--max-task-steps", "32",
            "--relabeling.history", "64", "--relabeling.batch", "8", "--relabeling.window", "8",
            "--algo", "pqn", "--achievement-bonus", "0", "--relabeling.world-span", "0",
            "--pqn.num-minibatches", "2", "--eval-episodes", "0"]
    assert main(args) == 0
    texts = [json.loads(x)["text"] for x in (out / "instructions.jsonl").read_text().splitlines()]
    assert texts[0] == "collect some wood"  # the one train line, before any relabel
    assert "stay alive" not in texts and "do not die" not in texts  # test lines never
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == {"share": 1.0, "seed": 0, "train_lines": 1}


def test_only_the_labelled_methods_train_on_suite_lines(tmp_path):
    """no-relabel and narrator+suite train on the suite's train lines; every other method never
    sees a suite line in training (ELLM draws its own goals)."""
    from oir.compare import METHODS, CompareConfig, run_config
    from oir.suites import STANDARD_SUITE, load_suite
    from oir.train import _train_lines

    suite = load_suite(STANDARD_SUITE)
    cc = CompareConfig(out=tmp_path, llm_url="http://127.0.0.1:9/v1")
    for m in METHODS:
        tcfg = run_config(cc, m, 0)
        used = [] if tcfg.suggest else _train_lines(tcfg, suite)
        assert bool(used) == (m in ("no-relabel", "narrator+suite")), m


def test_a_run_made_before_a_behaviour_changing_option_is_not_reused_as_its_new_default(tmp_path, suite, capsys):
    from oir.compare import CompareConfig, _comparable, run_config
    from oir.compare import _finished as finished

    tcfg = run_config(CompareConfig(suite=suite, out=tmp_path), "no-relabel", 0)
    tcfg.out.mkdir(parents=True)
    (tcfg.out / "summary.json").write_text("{}")
    config = _comparable(tcfg)
    (tcfg.out / "config.json").write_text(json.dumps(config))
    assert finished(tcfg)  # the same config: reused
    del config["achievement_bonus"]  # a run from before the bonus: it had none
    (tcfg.out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"differs in: achievement_bonus\)"):
        finished(tcfg)


def test_a_run_saved_with_a_retired_option_is_reused_only_at_its_off_value(tmp_path, suite):
    from oir.compare import CompareConfig, _comparable, run_config
    from oir.compare import _finished as finished
    from oir.train import ConfigError

    tcfg = run_config(CompareConfig(suite=suite, out=tmp_path, algo="pqn"), "narrator", 0)
    tcfg.out.mkdir(parents=True)
    (tcfg.out / "summary.json").write_text("{}")
    config = _comparable(tcfg)
    del config["labels"]  # a narrator run from before --labels: no suite line, as labels 0 now
    config |= {"fresh_start": 0.0, "achievement_bonus_fade": 0.0}
    config["pqn"]["bootstrap_timeouts"] = True  # what every run did, and does now
    config["relabeling"] |= {"seed_suite": False, "sampling": "uniform", "rarity": 0.0, "revisit": 0.0}
    (tcfg.out / "config.json").write_text(json.dumps(config))
    assert finished(tcfg)
    config["fresh_start"] = 0.5
    (tcfg.out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"fresh_start = 0\.5 was retired"):
        finished(tcfg)


def test_the_report_says_what_the_llm_did_and_does_not_count_duplicates_as_flawed(tmp_path):
    from oir.compare import Run, _llm_section, _wrong

    def run(method, seed, wall, metrics=(), **rel):
        return Run(method, seed, tmp_path / f"{method}-{seed}", {"wall_s": wall, "relabeling": rel}, {}, list(metrics))

    joint = dict(llm_calls=3, llm_calls_per_1m_steps=1.5, llm_templates=7, llm_templates_retired=1,
                 llm_template_share=0.6, joint_llm_share=0.6, joint_llm_novel_share=0.1,
                 llm_lift_verified=14, llm_lift_proposed=24, relabels_expired=0)
    # Progress lines' running totals: 0 of 400 eventful segments by mid-run, 600 of 1,000 at the
    # end, so the second half's share is 600 / 600 (the whole run's 60%).
    progress = [{"env_steps": 0, "relabel_segments": 0, "joint_llm_share": 0.0},
                {"env_steps": 500, "relabel_segments": 500, "relabel_segments_quiet": 100, "joint_llm_share": 0.0},
                {"env_steps": 1000, "relabel_segments": 1200, "relabel_segments_quiet": 200, "joint_llm_share": 0.6}]
    by = {"narrator": [run("narrator", 0, 100.0, relabels_expired=0)],
          "narrator+llm": [run("narrator+llm", 0, 130.0, progress, **joint)]}
    rows = [line for line in _llm_section(by) if line.startswith("| narrator")]
    assert rows == ["| narrator+llm | 3.0 | 1.5 | 7 (1) | 60.0 | 60.0 | 100.0 | 10.0 | 14 / 24 | 0 | 1.30 |"]
    assert _llm_section({"narrator": by["narrator"]}) == []  # no LLM run, no section
    assert _wrong({"relabel_flawed": 10, "relabel_flawed_duplicate": 7}) == 3


def test_a_run_from_before_timeouts_bootstrapped_is_not_reused(tmp_path):
    """An old config.json without bootstrap_timeouts ran terminal timeouts: never a run of today's config."""
    from dataclasses import asdict

    from oir.compare import CompareConfig, _finished, run_config
    from oir.train import ConfigError

    tcfg = run_config(CompareConfig(out=tmp_path), "no-relabel", 0)
    tcfg.out.mkdir(parents=True)
    raw = json.loads(json.dumps(asdict(tcfg), default=str))
    (tcfg.out / "summary.json").write_text("{}")
    (tcfg.out / "config.json").write_text(json.dumps(raw))
    assert _finished(tcfg)  # today's config: reused
    old = {k: v for k, v in raw.items() if k != "labels"}  # written before --labels and the retirement
    (tcfg.out / "config.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match=r"ppo\.bootstrap_timeouts = False was retired"):
        _finished(tcfg)


def _run(tmp_path, method, seed, labels, tasks, curve=(), train_lines=10, algo=None):
    """A finished, evaluated run as compare holds it: held-out-task share ``tasks``, training-time
    held-out-task evaluations ``curve`` ((env steps, share) pairs)."""
    from oir.compare import Run

    ev = {"success_by_split": {"all": tasks}, "lines": [{"id": "alive", "successes": round(4 * tasks), "episodes": 4}]}
    share = labels if labels is not None else 0.0
    metrics = [{"env_steps": x, "eval_success_held_out_tasks": y, "wall_s": x / 1000} for x, y in curve]
    return Run(method, seed, tmp_path / f"{method}-{algo}-{labels}-s{seed}", {"wall_s": 1.0, "labels": {
        "share": share, "seed": 0, "train_lines": train_lines if share else 0}}, ev, metrics, labels, algo)


def test_label_axis_plans_a_dir_per_budget_and_skips_the_baseline_without_labels(tmp_path, suite, capsys):
    from oir.compare import CompareConfig, budgets, labelled, run_config
    from oir.suites import load_suite
    from oir.train import _train_lines

    cc = CompareConfig(suite=suite, out=tmp_path, labels="1,0,0.1")
    assert budgets(cc) == [0.0, 0.1, 1.0] and budgets(CompareConfig()) == [None]
    assert labelled("no-relabel") and labelled("narrator+suite") and not labelled("narrator") and not labelled("ellm")
    t = run_config(cc, "narrator+suite", 1, 0.1)
    assert t.labels == 0.1 and t.out == tmp_path / "labels-0.1" / "narrator+suite-s1"
    assert run_config(cc, "narrator+suite", 0, None).out == tmp_path / "narrator+suite-s0"
    # F = 0 leaves no suite line in training: narrator+suite is then the zero-label method
    assert _train_lines(run_config(cc, "narrator+suite", 0, 0.0), load_suite(suite)) == []
    for args, message in [(["--labels", "0,2"], "--labels are shares of the suite's train tasks in [0, 1], got '0,2'"),
                          (["--labels", "0", "--methods", "no-relabel"], "no method left to run")]:
        assert main(["compare", "--out", str(tmp_path / "c"), "--suite", str(suite), *args]) == 2
        assert capsys.readouterr().err.strip() == f"oir: error: {message}"


def test_label_table_and_sample_efficiency_on_constructed_runs(tmp_path, suite):
    from oir.compare import CompareConfig, _label_section, _sample_efficiency_section
    from oir.suites import HELD_OUT_TASK

    base = [(1_000_000, 0.2), (2_000_000, 0.4), (3_000_000, 0.5)]  # its last evaluation: 50%, so 45% is the bar
    fast = [(1_000_000, 0.3), (2_000_000, 0.46), (3_000_000, 0.5)]
    runs = [_run(tmp_path, "no-relabel", s, 1.0, 0.5, base) for s in (0, 1)]
    runs += [_run(tmp_path, "no-relabel", 0, 0.1, 0.2, base[:2])]
    runs += [_run(tmp_path, "narrator+suite", s, 0.1, 0.4 + 0.1 * s, fast) for s in (0, 1)]
    runs += [_run(tmp_path, "narrator+suite", 0, 0.0, 0.25)]
    by = {}
    for r in runs:
        by.setdefault(r.arm, []).append(r)
    holdout = {r.dir: {HELD_OUT_TASK: r.eval["success_by_split"]["all"], "held-out paraphrase": None} for r in runs}
    cc = CompareConfig(suite=suite, out=tmp_path, labels="0,0.1,1")
    md = "\n".join(_label_section(cc, by, holdout))
    # OIR at a tenth: 45% (40, 50) against 20% for the baseline given the same tenth and 50% with all labels
    assert "| 0.1 | 10 | narrator+suite | 2 | 45.0 ± 5.0 | 2.25 | 0.90 | n/a |" in md
    assert "| 0 | 0 | narrator+suite | 1 | 25.0 |  | 0.50 |" in md  # no baseline without labels
    assert "| 1 | 10 | no-relabel | 2 | 50.0 ± 0.0 | 1.00 | 1.00 |" in md
    assert (tmp_path / "label_efficiency.png").read_bytes()[:4] == b"\x89PNG"
    md = "\n".join(_sample_efficiency_section(cc, by, holdout))
    # 45% of the bar: reached by OIR at 2M steps (46%), by the baseline at 3M (50%): 1.5x fewer steps
    assert "| narrator+suite labels=0.1 | 3 | 1.00-3.00M | 86.0 | 2,000,000 | 1.50 | 50.0 |" in md
    assert "| no-relabel labels=1 | 3 | 1.00-3.00M | 75.0 | 3,000,000 | 1.00 | 50.0 |" in md
    assert "| no-relabel labels=0.1 | 2 | 1.00-2.00M | 30.0 | not reached | | 40.0 |" in md
    assert "narrator+suite labels=0 |" not in md  # no training-time evaluation: no curve row
    assert (tmp_path / "held_out_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_curve_episodes_set_the_training_time_evaluations_and_an_older_run_counts_as_one(tmp_path):
    from dataclasses import asdict

    from oir.compare import CompareConfig, _finished, run_config
    from oir.curves import training_eval_episodes
    from oir.train import ConfigError

    assert run_config(CompareConfig(out=tmp_path), "no-relabel", 0).eval_every_episodes == 2
    assert training_eval_episodes(asdict(TrainConfig())) == 1
    assert training_eval_episodes(asdict(TrainConfig(eval_episodes=4))) == 4
    assert training_eval_episodes(asdict(TrainConfig(eval_episodes=4, eval_every_episodes=2))) == 2
    one = run_config(CompareConfig(out=tmp_path, curve_episodes=1), "no-relabel", 0)
    one.out.mkdir(parents=True)
    raw = json.loads(json.dumps(asdict(one), default=str))
    del raw["eval_every_episodes"]  # written before the option: it evaluated once per line
    (one.out / "summary.json").write_text("{}")
    (one.out / "config.json").write_text(json.dumps(raw))
    assert _finished(one)
    with pytest.raises(ConfigError, match=r"differs in: eval_every_episodes"):
        _finished(run_config(CompareConfig(out=tmp_path), "no-relabel", 0))


def test_a_report_names_its_commit_in_a_clone_and_in_a_git_archive(tmp_path):
    from oir.compare import _git_commit

    assert _git_commit(tmp_path) == "unknown"  # no git, no stamp
    (tmp_path / "COMMIT").write_text("$Format:%h$\n")  # a checkout's file, not filled in
    assert _git_commit(tmp_path) == "unknown"
    (tmp_path / "COMMIT").write_text("1a2b3c4\n")  # what `git archive` writes (.gitattributes export-subst)
    assert _git_commit(tmp_path) == "1a2b3c4"


def test_the_baseline_with_several_learners_is_its_strongest_on_held_out_tasks(tmp_path, suite, capsys):
    from oir.compare import (
        CompareConfig,
        _baseline,
        _label_section,
        _sample_efficiency_section,
        run_config,
    )
    from oir.suites import HELD_OUT_TASK

    cc = CompareConfig(suite=suite, out=tmp_path, algo="ppo", baseline_algos="ppo,pqn", labels="0.1,1")
    assert run_config(cc, "no-relabel", 1, None, "pqn").out == tmp_path / "no-relabel-pqn-s1"
    assert run_config(cc, "no-relabel", 1, None, "pqn").algo == "pqn"
    assert run_config(cc, "no-relabel", 1, 0.1).out == tmp_path / "labels-0.1" / "no-relabel-s1"  # --algo's: as before
    curve = [(1_000_000, 0.2), (2_000_000, 0.4)]
    runs = [_run(tmp_path, "no-relabel", 0, 1.0, 0.3, curve), _run(tmp_path, "no-relabel", 0, 1.0, 0.4, curve, algo="pqn"),
            _run(tmp_path, "no-relabel", 0, 0.1, 0.2, curve), _run(tmp_path, "no-relabel", 0, 0.1, 0.1, curve, algo="pqn"),
            _run(tmp_path, "narrator+suite", 0, 0.1, 0.3, curve), _run(tmp_path, "narrator+suite", 0, 1.0, 0.36, curve)]
    by = {}
    for r in runs:
        by.setdefault(r.arm, []).append(r)
    holdout = {r.dir: {HELD_OUT_TASK: r.eval["success_by_split"]["all"], "held-out paraphrase": None} for r in runs}
    # PQN is the stronger baseline with all the labels, PPO with a tenth: each share uses its strongest
    assert _baseline(by, 1.0, holdout) == "no-relabel (pqn) labels=1"
    assert _baseline(by, 0.1, holdout) == "no-relabel labels=0.1"
    # With a seed the other learner lacks, the choice rests on the seeds both have: PPO's seed 1 at
    # 70% lifts its mean above PQN's, but on seed 0 alone PQN is still ahead.
    lucky = _run(tmp_path, "no-relabel", 1, 1.0, 0.7, curve)
    holdout[lucky.dir] = {HELD_OUT_TASK: 0.7, "held-out paraphrase": None}
    assert _baseline({**by, lucky.arm: [*by[lucky.arm], lucky]}, 1.0, holdout) == "no-relabel (pqn) labels=1"
    md = "\n".join(_label_section(cc, by, holdout))
    assert "| 0.1 | 10 | narrator+suite | 1 | 30.0 | 1.50 | 0.75 |" in md
    assert "| 1 | 10 | narrator+suite | 1 | 36.0 | 0.90 | 0.90 |" in md
    assert "| 1 | 10 | no-relabel (pqn) | 1 | 40.0 | 1.00 | 1.00 |" in md
    assert "| 1 | 10 | no-relabel | 1 | 30.0 | 0.75 | 0.75 |" in md
    # outside a --labels axis a zero-label method has no baseline at its share (0)
    alone = [_run(tmp_path, "no-relabel", 0, None, 0.3), _run(tmp_path, "narrator", 0, None, 0.3)]
    alone[0].summary["labels"].update(share=1.0, train_lines=10)
    md = "\n".join(_label_section(cc, {r.arm: [r] for r in alone}, {r.dir: {HELD_OUT_TASK: 0.3, "held-out paraphrase": None} for r in alone}))
    assert "| 0 | 0 | narrator | 1 | 30.0 |  | 1.00 |" in md and "| 1 | 10 | no-relabel | 1 | 30.0 | 1.00 | 1.00 |" in md
    assert "× fewer steps than no-relabel (pqn) labels=1" in "\n".join(_sample_efficiency_section(cc, by, holdout))
    for args, message in [(["--baseline-algos", "dqn"], "--baseline-algos takes ppo and pqn, got 'dqn'"),
                          (["--baseline-algos", "pqn", "--methods", "narrator"],
                           "--baseline-algos runs the no-relabel baseline with other learners: add no-relabel to --methods")]:
        assert main(["compare", "--out", str(tmp_path / "c"), "--suite", str(suite), *args]) == 2
        assert capsys.readouterr().err.strip() == f"oir: error: {message}"
