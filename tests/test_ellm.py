"""ELLM (oir.ellm): goals suggested from the state, the novelty filter, the cosine reward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from oir import ellm
from oir.buffer import normalize_text
from oir.env import similarity_reward
from oir.events import ACHIEVEMENTS, LEVEL_NAMES, NUM_EVENTS, NUM_LEVELS
from oir.narrate import EVENT_TEXTS, NEARBY_NAMES, NUM_NEARBY
from oir.suites import STANDARD_SUITE, load_suite

WOOD = ACHIEVEMENTS.index("collect_wood")


def test_reward_is_the_cosine_at_or_above_the_threshold_else_zero():
    goal = np.array([[1.0, 0.0]], np.float32)
    angles = np.array([0.2, 0.9, 1.4])  # cosines 0.980, 0.622, 0.170
    captions = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    pay = ellm.goal_rewards(goal, captions, threshold=0.6)
    np.testing.assert_allclose(pay[0], [np.cos(0.2), np.cos(0.9), 0.0], rtol=1e-6)
    assert ellm.goal_rewards(goal, captions, 0.6, "binary")[0].tolist() == [1.0, 1.0, 0.0]
    # A step pays its best event; a step without events pays nothing.
    events = np.zeros((2, 3), np.int32)
    events[0, [1, 2]] = 1
    got = similarity_reward(jnp.asarray(events), jnp.asarray(np.repeat(pay, 2, 0)))
    np.testing.assert_allclose(np.asarray(got), [np.cos(0.9), 0.0], rtol=1e-6)


def _state(seen: list[str], **inventory: int):
    nearby = np.zeros((1, NUM_NEARBY), bool)
    nearby[0, [NEARBY_NAMES.index(n) for n in seen]] = True
    levels = np.zeros((1, NUM_LEVELS), np.int32)
    levels[0, LEVEL_NAMES.index("drink")] = levels[0, LEVEL_NAMES.index("energy")] = 9
    for item, n in inventory.items():
        levels[0, LEVEL_NAMES.index(f"inventory_{item}")] = n
    return jnp.asarray(nearby), jnp.asarray(levels)


def test_rule_suggester_reads_requirements_from_the_state():
    nearby, levels = _state(["tree", "crafting_table"], wood=1)
    got = {ACHIEVEMENTS[i] for i in np.flatnonzero(np.asarray(ellm.rule_suggestions(levels, nearby))[0])}
    assert got == {"collect_wood", "make_wood_pickaxe", "make_wood_sword"}  # 1 wood: no table yet (needs 2)
    nearby, levels = _state(["stone", "water"], wood_pickaxe=1, wood=2)
    got = {ACHIEVEMENTS[i] for i in np.flatnonzero(np.asarray(ellm.rule_suggestions(levels, nearby))[0])}
    assert got == {"collect_stone", "place_table"}  # drink is full: no drinking
    levels = levels.at[0, LEVEL_NAMES.index("drink")].set(4)
    assert bool(ellm.rule_suggestions(levels, nearby)[0, ACHIEVEMENTS.index("collect_drink")])


def test_novelty_filter_drops_goals_achieved_this_episode():
    nearby, levels = _state(["tree", "crafting_table"], wood=1)
    achieved = np.zeros((1, len(ACHIEVEMENTS)), bool)
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    draw = jax.jit(jax.vmap(ellm.suggest_goals, in_axes=(0, None, None, None)))
    fresh = set(np.asarray(draw(keys, nearby, jnp.asarray(achieved), levels)).ravel().tolist())
    assert fresh == {WOOD, ACHIEVEMENTS.index("make_wood_pickaxe"), ACHIEVEMENTS.index("make_wood_sword")}
    achieved[0, WOOD] = True
    later = set(np.asarray(draw(keys, nearby, jnp.asarray(achieved), levels)).ravel().tolist())
    assert later == fresh - {WOOD}
    achieved[0] = True  # everything done: any goal again rather than none
    assert len(set(np.asarray(draw(keys, nearby, jnp.asarray(achieved), levels)).ravel().tolist())) > 3


def test_goal_texts_are_not_the_suites_and_the_default_threshold_separates_them():
    from oir.encode import make_encoder

    suite = {normalize_text(x.text) for x in load_suite(STANDARD_SUITE)}
    assert not suite & {normalize_text(t) for t in ellm.GOAL_TEXTS}
    assert len(ellm.GOAL_SPECS) == len(ellm.GOAL_TEXTS) == len(ACHIEVEMENTS)
    enc = make_encoder("minilm")
    pay = ellm.goal_rewards(enc.encode(list(ellm.GOAL_TEXTS)), enc.encode(list(EVENT_TEXTS)), ellm.DEFAULT_THRESHOLD)
    assert pay.shape == (len(ACHIEVEMENTS), NUM_EVENTS)
    own = np.diag(pay[:, : len(ACHIEVEMENTS)])
    assert (own >= ellm.DEFAULT_THRESHOLD).all()  # every goal is paid by its own event...
    others = pay[:, : len(ACHIEVEMENTS)] * (1 - np.eye(len(ACHIEVEMENTS)))
    assert not others.any()  # ...and by no other achievement


def test_ellm_run_trains_on_suggested_goals_and_counts_false_rewards(tmp_path, capsys):
    import json

    from oir.cli import main

    out = tmp_path / "ellm"
    # Threshold -1: every event pays every goal, so rewards for other achievements than the goal's are false.
    args = ["train", "--out", str(out), "--encoder", "hash", "--num-envs", "8", "--steps", str(8 * 16 * 16),
            "--max-task-steps", "32", "--pqn.num-minibatches", "2", "--eval-episodes", "0",
            "--suggest", "rules", "--reward", "similarity", "--delta", "-1", "--ellm-reward", "binary",
            "--checkpoint-every", "0"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "rule-based suggester" in summary["suggester"] and "not a language model" in summary["suggester"]
    assert "relabeling" not in summary and not (out / "instructions.jsonl").exists()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["success_rate"] * r["tasks_ended"] for r in rows) > 0
    assert max(r["reward_false_rate"] for r in rows) > 0
    assert "suggester: ELLM goals" in capsys.readouterr().out
    assert main([*args[:-10], "--suggest", "rules", "--relabel", "narrator", "--reward", "similarity"]) == 2
    assert "--suggest (ELLM) needs --relabel none" in capsys.readouterr().err
