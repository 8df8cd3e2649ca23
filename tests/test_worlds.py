"""Worlds behind one interface (oir.worlds): specs per world, the full-Craftax suite, the JAX and
Python evaluators over full Craftax's counters, and a short training run per learner there."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oir import tasks, worlds
from oir.cli import main
from oir.suites import HELD_OUT_TASK, check_suite
from oir.tasks import SpecError, evaluate, parse_spec

FULL = worlds.get("full")
CLASSIC = worlds.get("classic")


def test_worlds_by_name_and_by_layout():
    assert worlds.get() is CLASSIC and worlds.world_of("full") is FULL and worlds.world_of(None) is CLASSIC
    assert worlds.of_layout(FULL.num_events, FULL.num_levels) is FULL
    assert worlds.of_layout(CLASSIC.num_events, CLASSIC.num_levels) is CLASSIC
    with pytest.raises(worlds.WorldError, match="choose from classic, full"):
        worlds.get("minecraft")
    assert (CLASSIC.num_actions, FULL.num_actions) == (17, 43)


def test_a_spec_naming_another_worlds_counter_is_refused_in_one_line():
    full_only = {"all": [{"counter": "descend", "at_least": 1}]}
    with pytest.raises(SpecError) as e:
        parse_spec(full_only)  # Classic, the default
    assert "\n" not in str(e.value) and "belongs to the full world" in str(e.value) and "--env full" in str(e.value)
    assert parse_spec(full_only, "full").world == "full"
    with pytest.raises(SpecError, match="unknown counter 'descendx'"):
        parse_spec({"all": [{"counter": "descendx", "at_least": 1}]}, "full")
    # The same JSON is the same task in either world that has its counters; a bank holds one world.
    wood = {"all": [{"counter": "collect_wood", "at_least": 1}]}
    assert parse_spec(wood) == parse_spec(wood, "full") and parse_spec(wood).key() == parse_spec(wood, "full").key()
    with pytest.raises(ValueError, match="one world"):
        tasks.TaskBank.pack([parse_spec(wood), parse_spec(wood, "full")])


def test_the_full_suite_passes_its_check(capsys):
    lines, errors = check_suite(FULL.suite, FULL)
    assert not errors
    by_task: dict[str, list] = {}
    for x in lines:
        by_task.setdefault(x.task_id, []).append(x)
    assert len(by_task) >= 80 and all(len(v) == 4 and sum(x.paraphrase for x in v) == 3 for v in by_task.values())
    held = [t for t, v in by_task.items() if all(x.holdout == HELD_OUT_TASK for x in v)]
    assert len(held) == len(by_task) // 4
    assert {"single", "sequence", "count", "prohibition", "budget", "spatial", "vitals", "floors"} <= {
        x.category for x in lines}
    assert main(["tasks", "check", str(FULL.suite)]) == 0  # its world from its path
    assert "--env full" in " ".join(capsys.readouterr().out.split())  # however the console wraps
    assert main(["tasks", "check", str(FULL.suite), "--env", "classic"]) == 1  # full-only counters refused
    assert "belongs to the full world" in capsys.readouterr().err


# ----- the JAX evaluator agrees with the Python one over full Craftax's counters ---------------

TRACE_LEN = 12
HOT = ["descend", "ascend", "kill_zombie", "drink_potion_red", "learn_spell_fireball", "place_torch_near_stone",
       "collect_wood", "floor", "inventory_torches", "mana"]


clause_st = st.builds(
    lambda c, n, most: {"counter": c, ("at_most" if most else "at_least"): n},
    st.sampled_from(HOT + list(FULL.counter_names)), st.integers(0, 4), st.booleans(),
)
spec_st = st.builds(
    lambda a, o, n, w: {"all": a, "ordered": o, "none": n, "within": w},
    st.lists(clause_st, min_size=1, max_size=tasks.MAX_ALL), st.booleans(),
    st.lists(clause_st, max_size=tasks.MAX_NONE), st.one_of(st.none(), st.integers(1, TRACE_LEN + 2)),
)


@st.composite
def trace_st(draw):
    events = np.zeros((TRACE_LEN, FULL.num_events), np.int32)
    levels = np.zeros((TRACE_LEN, FULL.num_levels), np.int32)
    for name in HOT:
        i = FULL.counter_index[name]
        if i < FULL.num_events:
            col = draw(st.lists(st.integers(0, 2), min_size=TRACE_LEN, max_size=TRACE_LEN))
            events[:, i] = np.array(col) * draw(st.booleans())
        else:
            levels[:, i - FULL.num_events] = draw(st.lists(st.integers(0, 9), min_size=TRACE_LEN, max_size=TRACE_LEN))
    return events, levels


@settings(max_examples=150, deadline=None)
@given(spec_st, trace_st())
def test_jax_and_python_evaluators_agree_on_full_craftax(jax_eval, spec_json, tr):
    spec = parse_spec(spec_json, "full")
    events, levels = tr
    py = evaluate(spec, tasks.counters_from_trace(events, levels))
    status, step, reason = np.asarray(jax_eval(tasks.TaskBank.from_specs([spec]), events, levels)).tolist()
    assert status == {"pending": 0, "success": 1, "fail": 2}[py.status], (spec_json, py)
    if py.status != "pending":
        assert step == py.step
    if py.status == "fail":
        assert tasks.FAIL_REASONS[reason] == py.reason


# ----- a short training run per learner on full Craftax -----------------------------------------

# 4 envs x 8 steps an update, 6 updates; the narrator relabels added to the full suite's labels.
TINY_FULL = ["--env", "full", "--encoder", "hash", "--num-envs", "4", "--steps", str(4 * 8 * 6),
             "--max-task-steps", "16", "--relabeling.history", "40", "--relabeling.batch", "4",
             "--relabeling.window", "8", "--relabeling.world-span", "0", "--eval-episodes", "0",
             "--checkpoint-every", "0", "--ppo.num-steps", "8", "--ppo.num-minibatches", "2",
             "--pqn.num-steps", "8", "--pqn.num-minibatches", "2"]


@pytest.mark.parametrize("algo", ["ppo", "pqn"])
def test_a_short_full_craftax_run_per_learner(tmp_path, algo):
    out = tmp_path / algo
    assert main(["train", "--out", str(out), "--algo", algo, *TINY_FULL]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["env"] == "full" and config["suite"].endswith("full.jsonl")  # eval and play read it back
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 4 * 8 * 6 and summary["labels"]["train_lines"] > 0
    assert set(summary["achievement_unlocks"]) == set(FULL.achievements)
    assert summary["relabeling"]["relabel_flawed"] == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
