"""ELLM-style goals (Du et al. 2023, "Guiding Pretraining in RL with Large Language Models").

The paper's other baseline. Instead of relabeling what the agent did, a *suggester* reads the
agent's current state and proposes goals that could be done next; the agent is conditioned on
one of them and rewarded when the caption of a step is similar enough to the goal text:

* **Goals** (:func:`goal_space`): one short imperative per achievement of the world, in
  Crafter's own achievement words (``collect wood``, ``place table``, ``make wood pickaxe``...):
  ELLM's Crafter goal space, 22 goals in Craftax-Classic and 67 in full Craftax. None is a text
  of the world's human suite (design doc §9; ``tests/test_ellm.py`` checks). Each goal also
  carries the achievement's spec, never shown to the agent and never used for its reward: only
  so that every similarity reward can be checked (``reward_false_rate``).
* **Suggester**: :func:`rule_suggestions`, offline and rule-based (the default; it is not a
  language model), reads inventory and what is in view, the state ELLM's LLM is prompted with,
  and suggests the goals whose requirements in that world hold there (``_classic_rules``,
  ``_full_rules``). Suggestions run in the jitted env at every instruction draw, so ELLM costs
  no host work.
* **Novelty**: a goal whose achievement the agent already unlocked in this episode is not
  suggested again (ELLM's ``novelty_bonus``): Craftax's own per-episode achievement bits.
* **Reward**: the cosine between the step's caption (the narrator's phrase of each event of the
  step, :data:`oir.narrate.EVENT_TEXTS`; the best one when several happen) and the goal, when it
  is at least the threshold (``--delta``); else 0. ``--ellm-reward binary`` gives 1 instead.

Where this differs from ELLM's code (``yuqingd/ellm``, ``config.yaml``): its encoder was SBERT
paraphrase-MiniLM-L3-v2 and its threshold 0.99 against captions written in the goals' own words;
here the encoder is the project's all-MiniLM-L6-v2 (offline) and the captions are the narrator's
past-tense phrases, so the default threshold is 0.76: every goal's own events reach it (the
lowest, "place table" against "placed a crafting table", 0.766) and no other achievement's event
does (the highest, "collect sapling" against "planted a sapling", 0.759; ``tests/test_ellm.py``).
A window of 0.007 in cosine: similarity rewards are that fragile. In full Craftax, at the same
threshold, every goal's own event reaches it (the lowest is still "place table") but four pairs
of other achievements do too: the necromancer's hit and defeat, and the archer's and the gnome
archer's defeats, each paying the other's goal (``reward_false_rate`` counts them). ELLM queried a
(cached) LLM per step; the rule suggester answers in the jitted env instead.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from oir import worlds
from oir.llm import CircuitBreaker, LLMError
from oir.tasks import Clause, TaskSpec
from oir.worlds import World

# The goal words where an achievement's name does not read as an order.
_GOAL_WORDS: dict[str, str] = {
    "collect_drink": "drink water",
    "place_plant": "plant sapling",
    "defeat_orc_solider": "defeat orc soldier",  # the game's spelling
    "make_arrow": "make arrows",
    "make_torch": "make torches",
    # Full Craftax: where the name alone falls below the threshold against its own event
    # ("fire bow" against "shot an arrow", 0.58) or reads as another's ("damage necromancer").
    "fire_bow": "fire an arrow",
    "enchant_sword": "enchant a sword",
    "enchant_armour": "enchant a piece of armour",
    "damage_necromancer": "hit necromancer",
    "learn_fireball": "learn fireball spell",  # "learn fireball" is a line of the full suite
    "learn_iceball": "learn iceball spell",
}
DEFAULT_THRESHOLD = 0.76
REWARDS = ("cosine", "binary")


@dataclass(frozen=True)
class GoalSpace:
    """ELLM's goals in one world: one per achievement, in the world's achievement order."""

    texts: tuple[str, ...]
    specs: tuple[TaskSpec, ...]  # only to count false rewards; never shown, never paid by


def goal_space(world: World | str | None = None) -> GoalSpace:
    """The goal space of ``world`` (default Craftax-Classic), in Crafter's achievement words."""
    return _goal_space(worlds.world_of(world).name)


@cache
def _goal_space(name: str) -> GoalSpace:
    w = worlds.get(name)
    return GoalSpace(tuple(_GOAL_WORDS.get(a, a.replace("_", " ")) for a in w.achievements),
                     tuple(TaskSpec(all=(Clause(a, at_least=1),), world=w.name) for a in w.achievements))


# Craftax-Classic's goals (other worlds: goal_space(world)).
GOAL_TEXTS: tuple[str, ...] = goal_space().texts
GOAL_SPECS: tuple[TaskSpec, ...] = goal_space().specs


def goal_rewards(goal_emb: np.ndarray, event_emb: np.ndarray, threshold: float, reward: str = "cosine") -> np.ndarray:
    """float32[G, E]: what a step with event e pays for goal g (cosine or 1 at or above threshold, else 0)."""
    cos = np.asarray(goal_emb, np.float32) @ np.asarray(event_emb, np.float32).T
    paid = cos if reward == "cosine" else np.ones_like(cos)
    # A threshold at or below 0 would pay negative cosines: a step never costs the agent here.
    return np.where((cos >= threshold) & (paid > 0), paid, 0.0).astype(np.float32)


class _Seen:
    """What the rules read of a batch of states: levels by name and what is in view."""

    def __init__(self, world: World, levels: jax.Array, nearby: jax.Array):
        self.world, self.levels, self.nearby = world, levels, nearby

    def level(self, name: str) -> jax.Array:
        return self.levels[..., self.world.level_names.index(name)]

    def has(self, item: str, n: int = 1) -> jax.Array:
        return self.level(f"inventory_{item}") >= n

    def sees(self, *names: str) -> jax.Array:
        return jnp.stack([self.nearby[..., self.world.nearby_names.index(n)] for n in names], -1).any(-1)


def _classic_rules(s: _Seen) -> dict[str, jax.Array]:
    table, furnace = s.sees("crafting_table"), s.sees("furnace")
    return {
        "collect_wood": s.sees("tree"),
        "place_table": s.has("wood", 2),
        "eat_cow": s.sees("cow"),
        "collect_sapling": s.sees("grass"),
        "collect_drink": s.sees("water") & (s.level("drink") < 9),
        "make_wood_pickaxe": table & s.has("wood"),
        "make_wood_sword": table & s.has("wood"),
        "place_plant": s.has("sapling") & s.sees("grass"),
        "defeat_zombie": s.sees("zombie"),
        "collect_stone": s.sees("stone") & s.has("wood_pickaxe"),
        "place_stone": s.has("stone"),
        "eat_plant": s.sees("ripe_plant"),
        "defeat_skeleton": s.sees("skeleton"),
        "make_stone_pickaxe": table & s.has("wood") & s.has("stone"),
        "make_stone_sword": table & s.has("wood") & s.has("stone"),
        "wake_up": s.level("energy") < 3,
        "place_furnace": table & s.has("stone"),
        "collect_coal": s.sees("coal") & s.has("wood_pickaxe"),
        "collect_iron": s.sees("iron") & s.has("stone_pickaxe"),
        "collect_diamond": s.sees("diamond") & s.has("iron_pickaxe"),
        "make_iron_pickaxe": table & furnace & s.has("wood") & s.has("coal") & s.has("iron"),
        "make_iron_sword": table & furnace & s.has("wood") & s.has("coal") & s.has("iron"),
    }


def _full_rules(s: _Seen) -> dict[str, jax.Array]:
    """Full Craftax's requirements (craftax 1.6 game_logic): tools are tiers (pickaxe 1-4 is wood
    to diamond), iron and diamond crafts need a furnace beside the table, sapphires and rubies a
    diamond pickaxe, a floor's entry its ladder down in view on the floor above, enchanting an
    enchantment table, a gem and 9 mana. Which spells are learnt is not in the levels, so casting
    is suggested on mana alone."""
    from oir.worlds.craftax_full import ARMOUR_PIECES, DEFEATS, FLOOR_ENTRIES, POTION_COLOURS

    table, furnace = s.sees("crafting_table"), s.sees("furnace")
    forge, wood = table & furnace, s.has("wood")
    pickaxe, sword, floor = s.level("inventory_pickaxe"), s.level("inventory_sword"), s.level("floor")
    armour = jnp.stack([s.level(f"inventory_{p}") for p in ARMOUR_PIECES], -1)
    gem = s.has("ruby") | s.has("sapphire")
    enchant = s.sees("enchantment_table_fire", "enchantment_table_ice") & gem & (s.level("mana") >= 9)
    return {
        "collect_wood": s.sees("tree", "fire_tree", "ice_shrub"),
        "place_table": s.has("wood", 2),
        "eat_cow": s.sees("cow"),
        "collect_sapling": s.sees("grass"),
        "collect_drink": s.sees("water", "fountain") & (s.level("drink") < 9),
        "make_wood_pickaxe": table & wood & (pickaxe < 1),
        "make_wood_sword": table & wood & (sword < 1),
        "place_plant": s.has("sapling") & s.sees("grass"),
        "collect_stone": s.sees("stone") & (pickaxe >= 1),
        "place_stone": s.has("stone"),
        "eat_plant": s.sees("ripe_plant"),
        "make_stone_pickaxe": table & wood & s.has("stone") & (pickaxe < 2),
        "make_stone_sword": table & wood & s.has("stone") & (sword < 2),
        "wake_up": s.level("energy") < 3,
        "place_furnace": table & s.has("stone"),
        "collect_coal": s.sees("coal") & (pickaxe >= 1),
        "collect_iron": s.sees("iron") & (pickaxe >= 2),
        "collect_diamond": s.sees("diamond") & (pickaxe >= 3),
        "collect_sapphire": s.sees("sapphire") & (pickaxe >= 4),
        "collect_ruby": s.sees("ruby") & (pickaxe >= 4),
        "make_iron_pickaxe": forge & wood & s.has("stone") & s.has("coal") & s.has("iron") & (pickaxe < 3),
        "make_iron_sword": forge & wood & s.has("stone") & s.has("coal") & s.has("iron") & (sword < 3),
        "make_diamond_pickaxe": forge & wood & s.has("diamond", 3) & (pickaxe < 4),
        "make_diamond_sword": forge & wood & s.has("diamond", 2) & (sword < 4),
        "make_iron_armour": forge & s.has("iron", 3) & s.has("coal", 3) & (armour < 1).any(-1),
        "make_diamond_armour": forge & s.has("diamond", 3) & (armour < 2).any(-1),
        "make_arrow": table & wood & s.has("stone"),
        "make_torch": table & wood & s.has("coal"),
        "place_torch": s.has("torches"),
        **{a: s.sees("ladder_down") & (floor == f - 1) for f, a in FLOOR_ENTRIES.items()},
        **{a: s.sees(mob) for mob, a in DEFEATS.items()},
        "damage_necromancer": s.sees("necromancer", "necromancer_vulnerable"),
        "defeat_necromancer": s.sees("necromancer_vulnerable"),
        "eat_bat": s.sees("bat"),
        "eat_snail": s.sees("snail"),
        "find_bow": s.sees("chest") & ~s.has("bow"),
        "open_chest": s.sees("chest"),
        "fire_bow": s.has("bow") & s.has("arrows"),
        "learn_fireball": s.has("books"),
        "learn_iceball": s.has("books"),
        "cast_fireball": s.level("mana") >= 2,
        "cast_iceball": s.level("mana") >= 2,
        "drink_potion": jnp.stack([s.has(f"potion_{c}") for c in POTION_COLOURS], -1).any(-1),
        "enchant_sword": enchant & (sword >= 1),
        "enchant_armour": enchant & (armour >= 1).any(-1),
    }


# --env name -> its rule suggester. A world without one has no ELLM baseline (train refuses it).
_RULES = {"classic": _classic_rules, "full": _full_rules}


def has_rules(world: World | str | None = None) -> bool:
    """Whether ELLM's rule suggester covers ``world``."""
    return worlds.world_of(world).name in _RULES


def rule_suggestions(levels: jax.Array, nearby: jax.Array, world: World | str | None = None) -> jax.Array:
    """bool[..., len(achievements)]: the goals whose requirements hold in this state of ``world``
    (default Craftax-Classic): ``levels`` int[..., num_levels], ``nearby`` bool[..., len(nearby_names)],
    what is in view."""
    w = worlds.world_of(world)
    rules = _RULES[w.name](_Seen(w, levels, nearby))
    assert set(rules) == set(w.achievements), f"{w.name}: rules and achievements differ"
    return jnp.stack([rules[a] for a in w.achievements], -1)


def suggest(key: jax.Array, obs: jax.Array, state, levels: jax.Array, table=None,
            world: World | str | None = None) -> jax.Array:
    """int32[N]: one suggested goal per env from its observation and Craftax ``state`` (the
    ``TaskEnv(suggest=...)`` hook, :func:`suggester`); see :func:`suggest_goals`."""
    w = worlds.world_of(world)
    return suggest_goals(key, w.nearby_from_obs(obs), state.achievements.astype(bool), levels, table, w)


def suggester(world: World | str | None = None):
    """:func:`suggest` for ``world``: one function per world, so jitted envs share their compiles."""
    return _suggester(worlds.world_of(world).name)


@cache
def _suggester(name: str):
    return partial(suggest, world=name)


def suggest_goals(key: jax.Array, nearby: jax.Array, achieved: jax.Array, levels: jax.Array, table=None,
                  world: World | str | None = None) -> jax.Array:
    """int32[N]: one goal per env (rows of the goal bank, in the world's achievement order),
    uniformly among those suggested that the episode has not ``achieved`` (bool[N, A]) yet: ELLM's
    novelty filter. Suggested: the LLM's answer for the state in ``table`` (:class:`SuggestTable`)
    where it has one, else :func:`rule_suggestions`. An env with none draws from
    its goals not achieved yet, and from all goals once it has achieved every one.
    """
    novel = ~achieved
    offered = rule_suggestions(levels, nearby, world)
    if table is not None:
        found, llm = table_suggestions(table, levels, nearby, world)
        offered = jnp.where((found & llm.any(-1))[:, None], llm, offered)
    ok = offered & novel
    ok = jnp.where(ok.any(-1, keepdims=True), ok, novel)
    ok = jnp.where(ok.any(-1, keepdims=True), ok, True)
    return jax.random.categorical(key, jnp.where(ok, 0.0, -jnp.inf)).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# The LLM suggester: ELLM's own, through the project's OpenAI-compatible client.
#
# The jitted env cannot wait for a language model, so the LLM answers once per *state signature*
# (what is in view and held, bucketed: the state text ELLM prompts with), off the training thread,
# into a table the env looks its suggestions up in; a state whose signature has no answer yet gets
# the rule suggester's. ELLM's code likewise cached its LLM's answers per state text.


@dataclass(frozen=True)
class StateWords:
    """What ELLM's state text says of one world: each entry is one bit of a state's signature."""

    game: str  # who the system prompt says the player is playing
    view: tuple[tuple[str, tuple[str, ...]], ...]  # (word, what in view shows it)
    held: tuple[tuple[str, int, str], ...]  # (level, at least, words); a held entry hides the one before it on the same level
    needs: tuple[tuple[str, str], ...]  # (vital, word): below 4 the need is pressing
    floors: tuple[str, ...] = ()  # where the player is, by floor (the last covers every floor below it)

    @property
    def num_bits(self) -> int:
        return len(self.view) + len(self.held) + len(self.needs) + self.floor_bits

    @property
    def floor_bits(self) -> int:
        return (len(self.floors) - 1).bit_length() if self.floors else 0


def _seen(*names: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((n.replace("_", " "), (n,)) for n in names)


_STATE_WORDS: dict[str, StateWords] = {
    "classic": StateWords(
        "Crafter, a 2D survival game like Minecraft",
        _seen("tree", "water", "grass", "stone", "coal", "iron", "diamond", "crafting_table", "furnace", "cow",
              "ripe_plant", "zombie", "skeleton"),
        (("inventory_wood", 1, "some wood"), ("inventory_wood", 2, "2 or more wood"),
         ("inventory_stone", 1, "some stone"), ("inventory_coal", 1, "some coal"), ("inventory_iron", 1, "some iron"),
         ("inventory_sapling", 1, "a sapling"), ("inventory_wood_pickaxe", 1, "a wood pickaxe"),
         ("inventory_stone_pickaxe", 1, "a stone pickaxe"), ("inventory_iron_pickaxe", 1, "an iron pickaxe"),
         ("inventory_wood_sword", 1, "a wood sword")),
        (("energy", "tired"), ("drink", "thirsty"), ("food", "hungry"))),
    # Full Craftax: the creatures by kind (each is an achievement), tools by tier, and the floor.
    "full": StateWords(
        "Craftax, a 2D survival game like Minecraft with floors below ground (the Dungeon, the Gnomish Mines "
        "and deeper), many creatures, potions, bows, spells and enchantments",
        (*_seen("tree", "water", "stone", "coal", "iron", "diamond", "sapphire", "ruby", "crafting_table", "furnace"),
         ("enchantment table", ("enchantment_table_fire", "enchantment_table_ice")),
         *_seen("fountain", "chest", "ladder_down", "ripe_plant", "cow", "bat", "snail", "zombie", "skeleton", "gnome_warrior",
                "gnome_archer", "orc_soldier", "orc_mage", "lizard", "kobold", "knight", "archer", "troll",
                "deep_thing", "pigman", "fire_elemental", "frost_troll", "ice_elemental"),
         ("necromancer", ("necromancer", "necromancer_vulnerable"))),
        (("inventory_wood", 1, "some wood"), ("inventory_wood", 2, "2 or more wood"),
         ("inventory_stone", 1, "some stone"), ("inventory_coal", 1, "some coal"), ("inventory_iron", 1, "some iron"),
         ("inventory_diamond", 1, "a diamond"), ("inventory_sapphire", 1, "a sapphire"),
         ("inventory_ruby", 1, "a ruby"), ("inventory_sapling", 1, "a sapling"),
         ("inventory_pickaxe", 1, "a wood pickaxe"), ("inventory_pickaxe", 2, "a stone pickaxe"),
         ("inventory_pickaxe", 3, "an iron pickaxe"), ("inventory_pickaxe", 4, "a diamond pickaxe"),
         ("inventory_sword", 1, "a wood sword"), ("inventory_sword", 2, "a stone sword"),
         ("inventory_sword", 3, "an iron sword"), ("inventory_sword", 4, "a diamond sword"),
         ("inventory_bow", 1, "a bow"), ("inventory_arrows", 1, "arrows"), ("inventory_torches", 1, "torches"),
         ("inventory_books", 1, "a book"), *((f"inventory_potion_{c}", 1, f"a {c} potion") for c in
                                             ("red", "green", "blue", "pink", "cyan", "yellow")),
         *((f"inventory_{p}", 1, f"an iron {p}" if p == "helmet" else f"iron {p}") for p in
           ("helmet", "chestplate", "leggings", "boots"))),
        (("energy", "tired"), ("drink", "thirsty"), ("food", "hungry"), ("health", "hurt"), ("mana", "low on mana")),
        ("on the surface", "in the Dungeon (floor 1)", "in the Gnomish Mines (floor 2)",
         "below the Gnomish Mines (floor 3 or deeper)")),
}


def has_state_words(world: World | str | None = None) -> bool:
    """Whether ELLM's LLM suggester can describe ``world``'s states."""
    return worlds.world_of(world).name in _STATE_WORDS


def state_bits(levels, nearby, world: World | str | None = None):
    """bool[..., B]: a state as its signature's bits (view, held items, needs, then the floor's
    binary digits), numpy or jnp as given."""
    w = worlds.world_of(world)
    sw, xp = _STATE_WORDS[w.name], (jnp if isinstance(levels, jax.Array) else np)
    level = lambda name: levels[..., w.level_names.index(name)]  # noqa: E731
    bits = [xp.stack([nearby[..., w.nearby_names.index(n)] for n in names], -1).any(-1) for _, names in sw.view]
    bits += [level(name) >= n for name, n, _ in sw.held]
    bits += [level(v) < 4 for v, _ in sw.needs]
    if sw.floors:
        bucket = xp.minimum(level("floor"), len(sw.floors) - 1)
        bits += [(bucket >> i) & 1 == 1 for i in range(sw.floor_bits)]
    return xp.stack(bits, -1)


_MIX = np.uint32(2654435761)  # Knuth's multiplicative hash: 2^32 over the golden ratio


def signature(levels, nearby, world: World | str | None = None):
    """int32[...], at least 0: a state's signature (:func:`signature_of_bits` of its :func:`state_bits`)."""
    return signature_of_bits(state_bits(levels, nearby, world))


def signature_of_bits(bits):
    """int32[...], at least 0, of bool[..., B]: up to 31 bits, the bits themselves (all of Classic's
    26); past that, 31-bit words of them mixed by a multiplicative hash, so two states may share one
    (rarely: they then share the LLM's answer, as two slots do in :func:`slot_of`; the suggester
    counts such states as ``ellm_llm_signature_collisions``)."""
    xp = jnp if isinstance(bits, jax.Array) else np
    key = xp.zeros(bits.shape[:-1], xp.uint32)
    for start in range(0, bits.shape[-1], 31):
        word = sum(bits[..., start + i].astype(xp.uint32) << np.uint32(i) for i in range(min(31, bits.shape[-1] - start)))
        key = key * _MIX + word
    return (key & np.uint32(0x7FFFFFFF)).astype(xp.int32)


def state_text(bits, world: World | str | None = None) -> str:
    """The state a signature's bits (:func:`state_bits`, one state) stand for, as the LLM is shown it."""
    sw = _STATE_WORDS[worlds.world_of(world).name]
    bits = [bool(b) for b in np.asarray(bits)]
    if len(bits) != sw.num_bits:
        raise ValueError(f"a state of this world has {sw.num_bits} bits, not {len(bits)}")
    nv, nh, nn = len(sw.view), len(sw.held), len(sw.needs)
    seen = [word for (word, _), b in zip(sw.view, bits, strict=False) if b]
    held = [words for i, (name, _, words) in enumerate(sw.held) if bits[nv + i]
            and not (i + 1 < nh and sw.held[i + 1][0] == name and bits[nv + i + 1])]
    needs = [word for (_, word), b in zip(sw.needs, bits[nv + nh:], strict=False) if b]
    where = ""
    if sw.floors:
        floor = sum(b << i for i, b in enumerate(bits[nv + nh + nn:]))
        where = f"You are {sw.floors[min(floor, len(sw.floors) - 1)]}. "
    return (f"{where}You see: {', '.join(seen) or 'nothing of note'}. You have: {', '.join(held) or 'nothing'}."
            + (f" You are {' and '.join(needs)}." if needs else ""))


TABLE_SLOTS = 4096


@struct.dataclass
class SuggestTable:
    """The LLM's suggestions per state signature, on the device: ``keys[slot]`` is the signature a
    slot holds (-1: none), ``masks[slot]`` its goals. A signature lives at ``slot_of(sig)`` only."""

    keys: jax.Array  # int32[S]
    masks: jax.Array  # bool[S, G]


def empty_table(slots: int = TABLE_SLOTS, world: World | str | None = None) -> SuggestTable:
    goals = len(worlds.world_of(world).achievements)
    return SuggestTable(jnp.full((slots,), -1, jnp.int32), jnp.zeros((slots, goals), bool))


def slot_of(sig, slots: int):
    """Where a signature lives in a table of ``slots`` (a multiplicative hash; numpy or jnp)."""
    return ((sig.astype("uint32") * _MIX) >> np.uint32(12)) % np.uint32(slots)


def table_suggestions(table: SuggestTable, levels: jax.Array, nearby: jax.Array,
                      world: World | str | None = None) -> tuple[jax.Array, jax.Array]:
    """``(found bool[N], goals bool[N, G])``: whether the table holds each env's state, and the
    goals of the slot it would hold it in (meaningful where found)."""
    sig = signature(levels, nearby, world)
    slot = slot_of(sig, table.keys.shape[0]).astype(jnp.int32)
    return table.keys[slot] == sig, table.masks[slot]


def _system(world: World | str | None = None) -> str:
    return (f"You advise a player of {_STATE_WORDS[worlds.world_of(world).name].game}. Given what the player "
            "sees and has, suggest goals the player could achieve next. Answer with JSON only: "
            '{"goals": ["short goal", ...]}, at most 5 goals, each a few words.')


MATCH_THRESHOLD = 0.6  # cosine from a suggested text to the nearest goal of the bank for it to count


def parse_goals(content: str) -> list[str]:
    """The goal texts in an LLM reply: the JSON ``{"goals": [...]}``, else its bullet or numbered
    lines. Only ``json.loads``: nothing the model writes is executed. At most 8, each <= 80 chars."""
    text = content.strip()
    fenced = re.search(r"\{.*\}", text, re.S)
    goals: list = []
    try:
        obj = json.loads(fenced.group(0) if fenced else text)
        goals = obj.get("goals", []) if isinstance(obj, dict) else obj if isinstance(obj, list) else []
    except (ValueError, RecursionError):
        goals = [re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", line) for line in text.splitlines()
                 if re.match(r"^\s*(?:[-*\u2022]|\d+[.)])\s+\S", line)]
    if not isinstance(goals, list):
        return []
    return [g.strip()[:80] for g in goals if isinstance(g, str) and g.strip()][:8]


class LLMSuggester:
    """ELLM's LLM suggester for the jitted env (see above): states in, a :class:`SuggestTable` out.

    ``observe`` takes the states the envs are in (host arrays); each new signature is queued once,
    and a worker thread asks the LLM for it through ``client`` (:class:`oir.llm.ChatClient`). Each
    suggested text counts as the bank goal nearest to it when their cosine is at least
    :data:`MATCH_THRESHOLD` (our env needs fixed goal rows; ELLM rewarded its free text against
    captions directly), else as ``unmatched``. A failing server never stops training: its states
    keep the rule suggester's goals, and the circuit breaker spaces the calls. ``world`` (default
    Craftax-Classic) sets the state text (:data:`_STATE_WORDS`) and the goals (:func:`goal_space`).
    """

    def __init__(self, client, encoder, slots: int = TABLE_SLOTS, temperature: float = 0.1, max_pending: int = 1024,
                 server=None, world: World | str | None = None):
        self.client, self.encoder, self.slots, self.temperature = client, encoder, slots, temperature
        self.server = server  # a local model's server (--llm-url local), stopped on close
        self.world = worlds.world_of(world)
        self.system = _system(self.world)
        self.goal_emb = np.asarray(encoder.encode(list(goal_space(self.world).texts)), np.float32)
        self.keys = np.full(slots, -1, np.int32)
        self.masks = np.zeros((slots, len(self.world.achievements)), bool)
        self.counts: Counter = Counter()
        self.asked: set[int] = set()
        self._state_of: dict[int, bytes] = {}  # signature -> the first state (packed bits) seen with it
        self._collided: set[bytes] = set()
        self.breaker = CircuitBreaker()
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._dirty = False
        self._inbox: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="oir-ellm-suggest", daemon=True)
        self._thread.start()

    def observe(self, levels: np.ndarray, nearby: np.ndarray) -> None:
        """Queue the signatures of these states (``[N, NUM_LEVELS]``, ``[N, NUM_NEARBY]``) not asked yet."""
        self._observe_bits(state_bits(np.asarray(levels), np.asarray(nearby), self.world))

    def _observe_bits(self, bits: np.ndarray) -> None:
        sigs = signature_of_bits(bits)
        slots = np.asarray(slot_of(sigs, self.slots))
        with self._lock:
            self.counts["states_seen"] += len(sigs)
            self.counts["states_answered"] += int((self.keys[slots] == sigs).sum())
        packed = [row.tobytes() for row in np.packbits(bits, axis=-1)]
        for sig, slot, state, key in zip(sigs.tolist(), slots.tolist(), bits, packed, strict=True):
            # A hashed signature (full Craftax) may stand for two states, which then share one
            # answer: count each state that finds its signature taken by another.
            if self._state_of.setdefault(sig, key) != key:
                self._collided.add(key)
            if sig in self.asked:
                continue
            self.asked.add(sig)
            if self.keys[slot] != -1:
                self.counts["slot_collisions"] += 1  # the slot holds another state: rules answer this one
            elif self._inbox.qsize() >= self.max_pending:
                self.asked.discard(sig)  # asked again when seen again
            else:
                self._inbox.put((sig, slot, state_text(state, self.world)))

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            try:
                self._answer(*item)
            finally:
                self._inbox.task_done()

    def _answer(self, sig: int, slot: int, text: str) -> None:
        if not self.breaker.allow():
            self.counts["calls_skipped"] += 1
            self.asked.discard(sig)  # the server looks down: this state is asked again when seen again
            return
        try:
            content = self.client.complete(
                [{"role": "system", "content": self.system}, {"role": "user", "content": text}],
                temperature=self.temperature, max_tokens=128)
        except (LLMError, RuntimeError):  # RuntimeError: the client was closed under a call at the end
            self.breaker.record(False)
            self.counts["calls_failed"] += 1
            self.asked.discard(sig)
            return
        self.breaker.record(True)
        self._store(sig, slot, parse_goals(content))

    def _store(self, sig: int, slot: int, goals: list[str]) -> None:
        mask = np.zeros(len(self.world.achievements), bool)
        if goals:
            cos = np.asarray(self.encoder.encode(goals), np.float32) @ self.goal_emb.T
            best = cos.argmax(1)
            hit = cos.max(1) >= MATCH_THRESHOLD
            mask[best[hit]] = True
            self.counts["goals_matched"] += int(hit.sum())
            self.counts["goals_unmatched"] += int((~hit).sum())
        with self._lock:
            self.counts["calls"] += 1
            self.counts["answers_empty"] += not mask.any()  # rules answer this state
            self.keys[slot], self.masks[slot] = sig, mask
            self._dirty = True

    def table(self) -> SuggestTable | None:
        """The table as it stands (None when nothing changed since the last call)."""
        with self._lock:
            if not self._dirty:
                return None
            self._dirty = False
            return SuggestTable(jnp.array(self.keys), jnp.array(self.masks))

    def wait(self, timeout: float = 60.0) -> None:
        """Until every queued state is answered or given up on (tests)."""
        end = time.monotonic() + timeout
        while self._inbox.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.01)

    def load(self, table: SuggestTable) -> None:
        """Go on from a table a checkpoint held (its states are not asked again)."""
        with self._lock:
            self.keys, self.masks = np.array(table.keys), np.array(table.masks)
            self.asked |= set(self.keys[self.keys >= 0].tolist())

    def metrics(self) -> dict[str, float]:
        c = self.counts
        return {"ellm_llm_calls": c["calls"], "ellm_llm_calls_failed": c["calls_failed"],
                "ellm_llm_goals_matched": c["goals_matched"], "ellm_llm_goals_unmatched": c["goals_unmatched"],
                "ellm_llm_answers_empty": c["answers_empty"], "ellm_llm_slot_collisions": c["slot_collisions"],
                "ellm_llm_signature_collisions": len(self._collided),
                "ellm_llm_states": int((self.keys >= 0).sum()), "ellm_llm_pending": self._inbox.qsize(),
                # of the env states sampled at updates, the share the LLM's table answered
                "ellm_llm_coverage": c["states_answered"] / max(c["states_seen"], 1)}

    def close(self) -> None:
        """Stop after the call in flight; states still queued are not asked."""

        while True:
            try:
                self._inbox.get_nowait()
                self._inbox.task_done()
            except queue.Empty:
                break
        self._inbox.put(None)
        self._thread.join(timeout=5)
        self.client.close()
        if self.server is not None:
            self.server.stop()
