"""Suite evaluation: one vectorized batch, and the summary figures on constructed results."""

from __future__ import annotations

import json

import pytest

from oir.cli import main
from oir.evaluate import LineResult, random_policy, run_suite, summarize
from oir.suites import SuiteLine, load_suite
from oir.tasks import parse_spec

TINY = [
    # Holds after the first step whatever the agent does.
    {"id": "alive", "text": "stay alive", "task": {"all": [{"counter": "health", "at_least": 1}]}, "split": "test", "category": "easy"},
    {"id": "alive~p1", "task_id": "alive", "paraphrase": True, "text": "do not die", "task": {"all": [{"counter": "health", "at_least": 1}]}, "split": "test", "category": "easy"},
    # Never holds in a few steps.
    {"id": "diamonds", "text": "collect nine diamonds", "task": {"all": [{"counter": "collect_diamond", "at_least": 9}]}, "split": "test", "category": "hard"},
]


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in TINY) + "\n")
    return path


def test_run_suite_batches_every_line_and_episode(tiny_suite):
    lines = load_suite(tiny_suite)
    results = run_suite(lines, random_policy, episodes=2, max_steps=12, chunk=6)
    assert [r.episodes for r in results] == [2, 2, 2]
    assert [r.successes for r in results] == [2, 2, 0]
    assert results[0].steps_to_success == [1, 1]
    s = summarize(results)
    assert dict((n, rate) for n, _, _, rate in s.rows) == {"easy": 1.0, "hard": 0.0, "all": 2 / 3}
    assert s.coverage == 0.5 and s.paraphrase_gap == 0.0


def test_the_default_cap_is_for_tasks_without_a_budget_a_longer_budget_runs_to_its_end():
    hungry = {"counter": "food", "at_most": 8}  # food first drops after some 25-30 steps
    specs = (("capped", {"all": [hungry]}), ("budget", {"all": [hungry], "within": 60}),
             ("diamonds", TINY[2]["task"]))  # the shapes of the test above: its compile is reused
    lines = [SuiteLine(i, i, "get hungry", parse_spec(spec), "test", "c", False, 1) for i, spec in specs]
    capped, budget, _ = run_suite(lines, random_policy, episodes=2, max_steps=12, chunk=6)
    assert capped.successes == 0  # cut at the default cap of 12 steps
    assert budget.successes == 2 and all(12 < t <= 60 for t in budget.steps_to_success)


def line(task_id: str, paraphrase: bool, category: str = "c") -> SuiteLine:
    spec = parse_spec({"all": [{"counter": "collect_wood", "at_least": 1}]})
    return SuiteLine(f"{task_id}{'~p' if paraphrase else ''}", task_id, "x", spec, "test", category, paraphrase, 1)


def test_coverage_and_paraphrase_gap_on_constructed_results():
    results = [
        LineResult(line("a", False), successes=3, episodes=4),  # canonical 0.75
        LineResult(line("a", True), successes=1, episodes=4),  # paraphrase 0.25
        LineResult(line("b", False), successes=0, episodes=4),
        LineResult(line("b", True), successes=2, episodes=4),  # solved through a paraphrase
        LineResult(line("c", False), successes=0, episodes=4),  # never solved, no paraphrase
    ]
    s = summarize(results)
    assert s.coverage == pytest.approx(2 / 3)
    assert s.paraphrase_gap == pytest.approx(((0.75 - 0.25) + (0.0 - 0.5)) / 2)
    # paraphrase over canonical success, on the tasks that have both: (0.25 + 0.5) / (0.75 + 0.0)
    assert s.paraphrase_ratio == pytest.approx(1.0)
    results[1].successes = 0  # a's paraphrase now never succeeds
    s = summarize(results, by="task")
    assert s.paraphrase_ratio == pytest.approx(0.5 / 0.75)
    assert [(name, rate) for name, _, _, rate in s.rows] == [("a", 0.375), ("b", 0.25), ("c", 0.0), ("all", 0.25)]
    assert s.mean_steps_to_success is None and "paraphrase success 67% of canonical" in s.describe()


def test_demo_trains_a_preset_then_prints_a_table_beside_a_random_agent(tiny_suite, tmp_path, capsys):
    out = tmp_path / "demo"
    # zero-label: the narrator's relabels only, so a suite of test lines alone is enough
    assert main(["demo", "--preset", "zero-label", "--suite", str(tiny_suite), "--split", "all", "--steps", "512",
                 "--num-envs", "8", "--encoder", "hash", "--max-steps", "12", "--out", str(out),
                 "--agents", str(tmp_path / "none")]) == 0
    text = " ".join(capsys.readouterr().out.split())  # rich wraps lines at the terminal width
    assert "live run: `oir train --preset zero-label` (PPO, relabel narrator, labels 0) for 512 env steps" in text
    assert "Task success on held-out instructions, per category" in text
    assert "PPO zero-label, live" in text and "random" in text and "easy" in text
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == {"PPO zero-label, live", "random"}
    for rep in saved.values():  # "stay alive" holds for any agent; nine diamonds for none
        assert rep["success_by_category"]["easy"] == 1.0 and rep["success_by_category"]["hard"] == 0.0
    assert (out / "instructions.jsonl").exists() and (out / "checkpoint").is_dir()
    config = json.loads((out / "config.json").read_text())
    assert (config["preset"], config["algo"], config["relabel"], config["labels"]) == ("zero-label", "ppo", "narrator", 0.0)


def test_demo_refuses_an_unknown_preset_in_one_line(tiny_suite, tmp_path, capsys):
    assert main(["demo", "--preset", "nope", "--suite", str(tiny_suite), "--steps", "512", "--encoder", "hash",
                 "--out", str(tmp_path / "demo"), "--agents", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip() == (
        "oir: error: unknown --preset 'nope' (choose from oir, labelled, zero-label, ellm, paper)")
