"""Suites: the standard suite's shape, and one clear line for every bad line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from oir.cli import main
from oir.suites import STANDARD_SUITE, SuiteError, check_suite, load_suite

CATEGORIES = {"single", "count", "sequence", "prohibition", "budget", "spatial", "vitals"}


def test_standard_suite_shape():
    lines = load_suite(STANDARD_SUITE)
    by_task = defaultdict(list)
    for x in lines:
        by_task[x.task_id].append(x)
    assert len(by_task) >= 80
    assert {x.category for x in lines} == CATEGORIES
    held_out_tasks = held_out_paraphrases = 0
    for task_id, group in by_task.items():
        canon = [x for x in group if not x.paraphrase]
        paras = [x for x in group if x.paraphrase]
        assert len(canon) == 1 and len(paras) >= 3, task_id
        assert len({x.text for x in group}) == len(group), task_id
        splits = Counter(x.split for x in group)
        if splits["train"] == 0:
            held_out_tasks += 1
        else:
            assert canon[0].split == "train"
            held_out_paraphrases += splits["test"]
    assert held_out_tasks >= 10 and held_out_paraphrases >= 40


def write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


GOOD = {"id": "w", "text": "get wood", "task": {"all": [{"counter": "collect_wood", "at_least": 1}]}, "split": "train", "category": "single"}


def test_bad_lines_each_get_one_error_naming_line_and_field(tmp_path):
    def bad(**kw):
        return json.dumps({**GOOD, **kw})

    path = write(tmp_path, [
        json.dumps(GOOD),
        bad(id="a", task={"all": [{"counter": "collect_woood", "at_least": 1}]}),
        bad(id="b", task={"all": [{"counter": "collect_wood", "at_least": -2}]}),
        bad(id="c", task={"all": []}),
        '{"id": "d", "text": ',
        bad(id="e", split="dev"),
        json.dumps(GOOD),
        bad(id="g", task_id="w", text="other", task={"all": [{"counter": "collect_wood", "at_least": 2}]}),
    ])
    lines, errors = check_suite(path)
    assert [x.id for x in lines] == ["w"]
    msgs = [str(e) for e in errors]
    assert msgs[0] == f"{path}:2: task.all[0].counter: unknown counter 'collect_woood' (see `oir tasks list`)"
    assert msgs[1] == f"{path}:3: task.all[0].at_least: must not be negative, got -2"
    assert msgs[2] == f"{path}:4: task.all: is empty (a spec needs at least one clause)"
    assert msgs[3].startswith(f"{path}:5: json: broken JSON")
    assert msgs[4].startswith(f"{path}:6: split: must be one of train, test")
    assert msgs[5] == f"{path}:7: id: duplicate id 'w' (first on line 1)"
    assert msgs[6] == f"{path}:8: task: differs from line 1 of task 'w'"
    with pytest.raises(SuiteError, match=r":2: task\.all"):
        load_suite(path)


def test_tasks_check_cli(tmp_path, capsys):
    assert main(["tasks", "check", str(STANDARD_SUITE)]) == 0
    assert "OK" in capsys.readouterr().out
    path = write(tmp_path, [json.dumps(GOOD), '{"broken'])
    assert main(["tasks", "check", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"oir: error: {path}:2: json: broken JSON")
    assert len(err) == 2  # the bad line, then the tally
    assert main(["tasks", "check", str(tmp_path / "missing.jsonl")]) == 1


def test_console_script_gives_one_line_not_a_traceback(tmp_path):
    path = write(tmp_path, [json.dumps({**GOOD, "task": {"all": [{"counter": "nope", "at_least": 1}]}})])
    oir = Path(sys.executable).with_name("oir")
    res = subprocess.run([str(oir), "demo", "--suite", str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == f"oir: error: {path}:1: task.all[0].counter: unknown counter 'nope' (see `oir tasks list`)"
    assert "Traceback" not in res.stderr


def test_tasks_list_prints_every_counter(capsys):
    from oir.events import COUNTER_NAMES

    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    listed = [row.split()[0] for row in out.splitlines() if row and not row.startswith("#")]
    assert listed == list(COUNTER_NAMES)


def test_test_lines_are_held_out_tasks_or_held_out_paraphrases(tmp_path):
    wood = {"all": [{"counter": "collect_wood", "at_least": 1}]}
    rows = [
        {"id": "w", "text": "collect wood", "split": "train", "category": "single", "task": wood},
        {"id": "w~p", "task_id": "w", "paraphrase": True, "text": "chop a tree", "split": "test",
         "category": "single", "task": wood},
        # Another task id with the same spec as a train task: the baseline trained on it.
        {"id": "w2", "text": "get a log", "split": "test", "category": "single", "task": wood},
        {"id": "d", "text": "drink water", "split": "test", "category": "single",
         "task": {"all": [{"counter": "collect_drink", "at_least": 1}]}},
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds = {x.id: x.holdout for x in load_suite(path)}
    assert kinds == {"w": "train", "w~p": "held-out paraphrase", "w2": "held-out paraphrase", "d": "held-out task"}
    assert {x.id: x.holdout for x in load_suite(path, ["test"])} == {k: v for k, v in kinds.items() if k != "w"}
    standard = Counter(x.holdout for x in load_suite(STANDARD_SUITE))
    assert standard == {"train": 189, "held-out task": 84, "held-out paraphrase": 63}
