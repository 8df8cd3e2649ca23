"""ELLM (oir.ellm): goals suggested from the state, the novelty filter, the cosine reward."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from oir import ellm, worlds
from oir.buffer import normalize_text
from oir.env import similarity_reward
from oir.events import ACHIEVEMENTS, LEVEL_NAMES, NUM_EVENTS
from oir.narrate import EVENT_TEXTS
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


def _state(seen: list[str], world: str = "classic", **levels: int):
    """One state of ``world`` that sees ``seen``, with full vitals; ``levels`` by level name, an
    item by its bare name (``wood=1``: inventory_wood)."""
    w = worlds.get(world)
    nearby = np.zeros((1, len(w.nearby_names)), bool)
    nearby[0, [w.nearby_names.index(n) for n in seen]] = True
    lv = np.zeros((1, w.num_levels), np.int32)
    for vital in ("health", "food", "drink", "energy"):
        lv[0, w.level_names.index(vital)] = 9
    for name, n in levels.items():
        lv[0, w.level_names.index(name if name in w.level_names else f"inventory_{name}")] = n
    return jnp.asarray(nearby), jnp.asarray(lv)


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
            "--algo", "pqn", "--relabel", "none", "--achievement-bonus", "0",
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


def _user(request) -> str:
    return next(m["content"] for m in request.body["messages"] if m["role"] == "user")


def test_llm_suggester_asks_once_per_state_and_its_answers_steer_the_draws():
    from llm_server import LLMServer, Reply

    from oir.encode import make_encoder
    from oir.llm import ChatClient

    server = LLMServer().start()
    try:
        server.queue(Reply(status=500, raw="{}"), Reply(content='Sure! {"goals": ["collect some wood", "sing a song"]}'))
        sugg = ellm.LLMSuggester(ChatClient(server.url, "m", max_retries=0), make_encoder("minilm"))
        nearby, levels = _state(["tree", "crafting_table"], wood=1)
        sugg.observe(np.asarray(levels), np.asarray(nearby))
        sugg.wait()
        assert sugg.counts["calls_failed"] == 1 and sugg.metrics()["ellm_llm_states"] == 0
        sugg.observe(np.asarray(levels), np.asarray(nearby))  # seen again: asked again
        sugg.wait()
        m = sugg.metrics()
        assert m["ellm_llm_calls"] == 1 and m["ellm_llm_goals_matched"] == 1 and m["ellm_llm_goals_unmatched"] == 1
        assert "You see: tree, crafting table" in _user(server.calls[-1]) and "some wood" in _user(server.calls[-1])
        sugg.observe(np.asarray(levels), np.asarray(nearby))  # answered: never asked again
        sugg.wait()
        assert len(server.calls) == 2
        table = sugg.table()
        keys = jax.random.split(jax.random.PRNGKey(0), 100)
        draw = jax.jit(jax.vmap(ellm.suggest_goals, in_axes=(0, None, None, None, None)))
        none = jnp.zeros((1, len(ACHIEVEMENTS)), bool)
        assert set(np.asarray(draw(keys, nearby, none, levels, table)).ravel().tolist()) == {WOOD}  # the LLM's
        other_nearby, other_levels = _state(["tree", "crafting_table"], wood=2)  # another state: the rules'
        got = set(np.asarray(draw(keys, other_nearby, none, other_levels, table)).ravel().tolist())
        assert ACHIEVEMENTS.index("place_table") in got and len(got) == 4
        sugg.close()
    finally:
        server.stop()


def test_parse_goals_reads_json_or_bullets_and_executes_nothing():
    assert ellm.parse_goals('```json\n{"goals": ["collect wood", 3, "place table"]}\n```') == ["collect wood", "place table"]
    assert ellm.parse_goals("Goals:\n- chop a tree\n2) drink water\nthanks") == ["chop a tree", "drink water"]
    assert ellm.parse_goals('{"goals": "__import__(\'os\')"}') == []
    assert len(ellm.parse_goals('{"goals": ' + str(["x" * 200] * 20).replace("'", '"') + "}")) == 8


def test_state_text_names_what_a_signature_holds():
    nearby, levels = _state(["tree", "cow"], wood=3, wood_pickaxe=1)
    levels = levels.at[0, LEVEL_NAMES.index("energy")].set(2)
    bits = ellm.state_bits(np.asarray(levels), np.asarray(nearby))[0]
    assert ellm.state_text(bits) == "You see: tree, cow. You have: 2 or more wood, a wood pickaxe. You are tired."


def test_ellm_run_with_an_llm_suggester_and_with_its_server_down(tmp_path, capsys):
    import json

    from llm_server import LLMServer, Reply

    from oir.cli import main

    args = ["--encoder", "hash", "--num-envs", "8", "--steps", str(8 * 16 * 12), "--max-task-steps", "32",
            "--pqn.num-minibatches", "2", "--eval-episodes", "0", "--algo", "pqn", "--relabel", "none",
            "--achievement-bonus", "0", "--suggest", "llm", "--reward", "similarity",
            "--checkpoint-every", "0", "--llm-timeout", "5"]
    server = LLMServer().start()
    server.respond = lambda request: Reply(content='{"goals": ["collect wood", "drink water"]}')
    try:
        out = tmp_path / "llm"
        assert main(["train", "--out", str(out), *args, "--llm-url", server.url]) == 0
    finally:
        server.stop()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["suggester"].startswith("ELLM goals from an LLM suggester") and server.url in summary["suggester"]
    got = summary["ellm_llm"]
    assert got["ellm_llm_calls"] == len(server.calls) > 0 and got["ellm_llm_states"] > 0
    assert got["ellm_llm_goals_matched"] == 2 * got["ellm_llm_calls"] and got["ellm_llm_goals_unmatched"] == 0
    assert all(_user(r).startswith("You see: ") for r in server.calls)

    dead = f"http://127.0.0.1:{server._httpd.server_address[1]}/v1"  # stopped: nothing listens
    assert main(["train", "--out", str(tmp_path / "dead"), *args, "--llm-url", dead]) == 0
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("oir:")]
    assert len(err) == 1 and "does not answer" in err[0] and "rule-based suggester" in err[0]
    assert json.loads((tmp_path / "dead" / "summary.json").read_text())["ellm_llm"]["ellm_llm_calls"] == 0


# ----- full Craftax: the same baseline over 67 achievements -------------------------------------

def _full_suggested(seen: list[str], **levels: int) -> set[str]:
    nearby, lv = _state(seen, "full", **levels)
    got = np.asarray(ellm.rule_suggestions(lv, nearby, "full"))[0]
    return {worlds.get("full").achievements[i] for i in np.flatnonzero(got)}


def test_full_craftax_rules_read_tiers_floors_creatures_and_gems():
    assert _full_suggested(["tree", "crafting_table"], wood=1) == {"collect_wood", "make_wood_pickaxe", "make_wood_sword"}
    # A tier already held is not made again; a stone pickaxe mines iron but not sapphires.
    got = _full_suggested(["crafting_table", "iron", "sapphire"], wood=1, stone=1, pickaxe=2)
    assert "make_stone_pickaxe" not in got and {"collect_iron", "make_stone_sword", "make_arrow"} <= got
    assert "collect_sapphire" not in got
    assert "collect_sapphire" in _full_suggested(["sapphire"], pickaxe=4)
    # A ladder down leads to the next floor only.
    assert {"enter_dungeon"} == {a for a in _full_suggested(["ladder_down"]) if a.startswith("enter_")}
    assert {"enter_gnomish_mines"} == {a for a in _full_suggested(["ladder_down"], floor=1) if a.startswith("enter_")}
    # Creatures by kind (the game spells one achievement "solider"), potions by any colour.
    assert {"defeat_gnome_warrior", "defeat_orc_solider", "eat_bat"} <= _full_suggested(["gnome_warrior", "orc_soldier", "bat"])
    assert _full_suggested([], potion_blue=1) == {"drink_potion"}
    # Enchanting needs the table, a gem, 9 mana and something to enchant.
    table = ["enchantment_table_ice"]
    assert not {"enchant_sword", "enchant_armour"} & _full_suggested(table, sapphire=1, sword=1, mana=8)
    assert {"enchant_sword"} <= _full_suggested(table, sapphire=1, sword=1, mana=9)


def test_full_craftax_goals_are_not_its_suites_and_are_drawn_from_real_worlds():
    from oir.env import VecEnv

    full = worlds.get("full")
    space = ellm.goal_space("full")
    assert len(space.texts) == len(space.specs) == len(full.achievements) == 67
    assert {s.world for s in space.specs} == {"full"} and space.texts[:22] == ellm.GOAL_TEXTS
    suite = {normalize_text(x.text) for x in load_suite(full.suite, world="full")}
    assert not suite & {normalize_text(t) for t in space.texts}
    from oir.encode import make_encoder
    from oir.narrate import event_texts

    enc, a = make_encoder("minilm"), len(full.achievements)
    pay = ellm.goal_rewards(enc.encode(list(space.texts)), enc.encode(list(event_texts("full"))), ellm.DEFAULT_THRESHOLD)
    assert (np.diag(pay[:, :a]) >= ellm.DEFAULT_THRESHOLD).all()  # every goal is paid by its own event
    crossed = {(full.achievements[g], full.achievements[e]) for g, e in np.argwhere(pay[:, :a] * (1 - np.eye(a)))}
    # ...and, unlike Classic, four other achievements' events pay too: the same creature's pairs.
    assert crossed == {("defeat_necromancer", "damage_necromancer"), ("damage_necromancer", "defeat_necromancer"),
                       ("defeat_archer", "defeat_gnome_archer"), ("defeat_gnome_archer", "defeat_archer")}
    vec = VecEnv(4, reset_pool=1, world="full")
    obs, state = vec.reset(jax.random.PRNGKey(0))
    levels = jax.vmap(full.levels_of)(state.env)
    draw = jax.jit(lambda k: ellm.suggester("full")(k, obs, state.env, levels))
    offered = np.asarray(ellm.rule_suggestions(levels, full.nearby_from_obs(obs), "full"))
    for seed in range(3):
        goal = np.asarray(draw(jax.random.PRNGKey(seed)))
        assert goal.shape == (4,) and all(offered[i, g] or not offered[i].any() for i, g in enumerate(goal))
    assert ellm.suggester("full") is ellm.suggester(full)  # one function per world: shared compiles


def test_ellm_on_full_craftax_is_configured_with_either_suggester():
    from oir.encode import make_encoder
    from oir.train import TrainConfig, _ellm_goals, validate

    cfg = TrainConfig(env="full", relabel="none", suggest="rules", reward="similarity", encoder="hash")
    validate(cfg)
    bank, weights, emb, pay = _ellm_goals(cfg, make_encoder("hash"))
    assert bank.size == 67 and weights is None and pay.shape[0] == 67 and emb.shape[0] == 67
    validate(replace(cfg, suggest="llm", llm_url="http://127.0.0.1:9/v1"))  # no refusal: it has state words


def test_full_craftax_state_text_names_the_floor_tiers_and_creatures():
    nearby, levels = _state(["tree", "enchantment_table_ice", "gnome_warrior", "necromancer_vulnerable"], "full",
                            wood=1, pickaxe=3, sword=1, potion_cyan=2, floor=2, mana=9)
    levels = levels.at[0, worlds.get("full").level_names.index("food")].set(3)
    bits = ellm.state_bits(np.asarray(levels), np.asarray(nearby), "full")[0]
    assert ellm.state_text(bits, "full") == (
        "You are in the Gnomish Mines (floor 2). You see: tree, enchantment table, gnome warrior, necromancer. "
        "You have: some wood, an iron pickaxe, a wood sword, a cyan potion. You are hungry.")
    deep = ellm.state_bits(*(np.asarray(x) for x in _state([], "full", floor=7, mana=9)[::-1]), "full")[0]
    assert ellm.state_text(deep, "full") == ("You are below the Gnomish Mines (floor 3 or deeper). You see: nothing "
                                             "of note. You have: nothing.")
    with pytest.raises(ValueError, match="bits"):
        ellm.state_text(bits, "classic")


def test_full_craftax_signatures_span_words_and_agree_on_host_and_device():
    full = worlds.get("full")
    rng = np.random.default_rng(0)
    nearby = rng.random((256, len(full.nearby_names))) < 0.1
    levels = rng.integers(0, 10, (256, full.num_levels)).astype(np.int32)
    assert ellm.state_bits(levels, nearby, "full").shape[-1] > 31  # more than one word: hashed
    host = ellm.signature(levels, nearby, "full")
    dev = np.asarray(jax.jit(lambda lv, nb: ellm.signature(lv, nb, "full"))(levels, nearby))
    assert (host == dev).all() and (host >= 0).all() and len(set(host.tolist())) == 256
    # Classic's 26 bits are their own signature, as before worlds had state words.
    nearby, levels = _state(["tree"], wood=2)
    assert int(ellm.signature(np.asarray(levels), np.asarray(nearby))[0]) == 1 | 0b11 << 13


def test_llm_suggester_in_full_craftax_asks_about_its_states_and_steers_its_draws():
    from llm_server import LLMServer, Reply

    from oir.encode import make_encoder
    from oir.llm import ChatClient

    full = worlds.get("full")
    server = LLMServer().start()
    server.respond = lambda request: Reply(content='{"goals": ["defeat the gnome warrior"]}')
    try:
        sugg = ellm.LLMSuggester(ChatClient(server.url, "m", max_retries=0), make_encoder("minilm"), world="full")
        nearby, levels = _state(["gnome_warrior", "tree"], "full", floor=2, mana=9)
        sugg.observe(np.asarray(levels), np.asarray(nearby))
        sugg.wait()
        system, user = (m["content"] for m in server.calls[0].body["messages"])
        assert "Craftax" in system and "Gnomish Mines" in system and "Crafter" not in system
        assert user.startswith("You are in the Gnomish Mines (floor 2). You see: tree, gnome warrior.")
        assert sugg.metrics()["ellm_llm_goals_matched"] == 1
        table = sugg.table()
        assert table.masks.shape == (ellm.TABLE_SLOTS, 67)
        keys = jax.random.split(jax.random.PRNGKey(0), 50)
        draw = jax.jit(jax.vmap(partial(ellm.suggest_goals, world="full"), in_axes=(0, None, None, None, None)))
        none = jnp.zeros((1, 67), bool)
        got = set(np.asarray(draw(keys, nearby, none, levels, table)).ravel().tolist())
        assert got == {full.achievements.index("defeat_gnome_warrior")}  # the LLM's, not the rules' wood
        assert sugg.metrics()["ellm_llm_signature_collisions"] == 0
        # Two states of full Craftax's 73 bits with one 31-bit signature: the second shares the
        # first's answer, so it is counted, once however often it is seen.
        bits = np.random.default_rng(0).random((200_000, 73)) < 0.2
        _, inverse, counts = np.unique(ellm.signature_of_bits(bits), return_inverse=True, return_counts=True)
        pair = bits[np.flatnonzero(inverse == np.flatnonzero(counts > 1)[0])]
        assert len(pair) == 2 and (pair[0] != pair[1]).any()
        sugg._observe_bits(np.concatenate([pair, pair, pair[:1]]))
        assert sugg.metrics()["ellm_llm_signature_collisions"] == 1
        sugg.close()
    finally:
        server.stop()
