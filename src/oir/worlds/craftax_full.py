"""Full Craftax (``Craftax-Symbolic-v1``): the counter vocabulary and the per-step event extraction.

Names and layout mirror :mod:`oir.events` (Craftax-Classic) so that both can become one world
interface. Counter vector layout (``NUM_COUNTERS`` ints):

* ``[0, NUM_EVENTS)``: event counts, counted from the moment an instruction was given.

  - the 67 achievements of ``craftax.craftax.constants.Achievement``, in the order of their
    values (the index into ``state.achievements``, which is *not* the enum's definition order),
    each counted every time it happens;
  - ``descend``, ``ascend``: floor changes;
  - ``kill_<kind>``: creatures killed, by kind (19 kinds; ``kill_`` because the achievements
    already use ``defeat_``/``eat_`` for some of them, with first-kill-only meaning in the game);
  - ``learn_spell_<spell>`` (casting is the achievement ``cast_<spell>``);
  - ``drink_potion_<colour>``;
  - ``place_<block>_near_<block>`` placements.

  Opening a chest is the achievement ``open_chest``, counted every time like the others.
* ``[NUM_EVENTS, NUM_COUNTERS)``: levels, current values: ``floor``, ``inventory_<item>``, the
  vitals and the attributes.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from craftax.craftax.constants import (
    ACHIEVEMENT_REWARD_MAP,
    DIRECTIONS,
    LEVEL_ACHIEVEMENT_MAP,
    MOB_ACHIEVEMENT_MAP,
    Achievement,
    BlockType,
    MobType,
)
from craftax.craftax.util.game_logic_utils import has_beaten_boss

from oir.events import Counter

_BY_VALUE: tuple[Achievement, ...] = tuple(sorted(Achievement, key=lambda a: a.value))
# state.achievements is indexed by value; a gap would shift every name after it.
assert [a.value for a in _BY_VALUE] == list(range(len(_BY_VALUE)))
ACHIEVEMENTS: tuple[str, ...] = tuple(a.name.lower() for a in _BY_VALUE)

# --- Achievements the game derives from the state, not from what happened this step ---------
# Craftax sets these at the end of every step from a condition on the state (wood > 0,
# pickaxe >= 2, boss beaten) or reads them back (entering a floor pays 1 xp only while its
# bit is unset). Clearing their bits would make them fire on every step the condition holds
# and would hand out xp on every step spent below ground, so they stay sticky and their
# events are read from state differences instead.
_GAINED: dict[Achievement, str] = {  # counted by the amount gained (a chest can give several)
    Achievement.COLLECT_WOOD: "wood",
    Achievement.COLLECT_STONE: "stone",
    Achievement.COLLECT_COAL: "coal",
    Achievement.COLLECT_IRON: "iron",
    Achievement.COLLECT_DIAMOND: "diamond",
    Achievement.COLLECT_SAPPHIRE: "sapphire",
    Achievement.COLLECT_RUBY: "ruby",
    Achievement.COLLECT_SAPLING: "sapling",
}
_ROSE: dict[Achievement, str] = {  # once per step it rose: one craft makes 2 arrows, 4 torches
    Achievement.FIND_BOW: "bow",
    Achievement.MAKE_ARROW: "arrows",
    Achievement.MAKE_TORCH: "torches",
}
_TIERS: dict[Achievement, tuple[str, int]] = {  # the tool level reached this tier this step
    Achievement.MAKE_WOOD_PICKAXE: ("pickaxe", 1),
    Achievement.MAKE_STONE_PICKAXE: ("pickaxe", 2),
    Achievement.MAKE_IRON_PICKAXE: ("pickaxe", 3),
    Achievement.MAKE_DIAMOND_PICKAXE: ("pickaxe", 4),
    Achievement.MAKE_WOOD_SWORD: ("sword", 1),
    Achievement.MAKE_STONE_SWORD: ("sword", 2),
    Achievement.MAKE_IRON_SWORD: ("sword", 3),
    Achievement.MAKE_DIAMOND_SWORD: ("sword", 4),
}
# Floor f's entry achievement; floor 0 maps to index 0 in the game and has none.
_ENTER: dict[int, int] = {f: int(a) for f, a in enumerate(np.asarray(LEVEL_ACHIEVEMENT_MAP)) if f > 0}
_STATE_DERIVED: frozenset[int] = frozenset(
    {a.value for a in (*_GAINED, *_ROSE, *_TIERS)}
    | set(_ENTER.values())
    | {Achievement.DEFEAT_NECROMANCER.value}
)
_KEEP = np.array([i in _STATE_DERIVED for i in range(len(ACHIEVEMENTS))])

# --- Other events ---------------------------------------------------------------------------
FLOOR_CHANGES: tuple[str, ...] = ("descend", "ascend")
# (name, mobs field of EnvState, type_id); type ids per class as in MOB_ACHIEVEMENT_MAP.
KILL_KINDS: tuple[tuple[str, str, int], ...] = (
    *((n, "passive_mobs", t) for t, n in enumerate(("cow", "bat", "snail"))),
    *((n, "melee_mobs", t) for t, n in enumerate((
        "zombie", "gnome_warrior", "orc_soldier", "lizard",
        "knight", "troll", "pigman", "frost_troll",
    ))),
    *((n, "ranged_mobs", t) for t, n in enumerate((
        "skeleton", "gnome_archer", "orc_mage", "kobold",
        "archer", "deep_thing", "fire_elemental", "ice_elemental",
    ))),
)  # fmt: skip
# numpy copies: indexing a jax constant while tracing yields a tracer, not a Python int.
_MOB_ACHIEVEMENT = np.asarray(MOB_ACHIEVEMENT_MAP)
_MOB_CLASS = {"passive_mobs": MobType.PASSIVE.value, "melee_mobs": MobType.MELEE.value,
              "ranged_mobs": MobType.RANGED.value}  # fmt: skip
KILLS: tuple[str, ...] = tuple(f"kill_{n}" for n, _, _ in KILL_KINDS)
SPELLS: tuple[str, ...] = ("fireball", "iceball")  # index into state.learned_spells
# Casting is the achievements cast_fireball/cast_iceball, counted every time like the others.
SPELL_EVENTS: tuple[str, ...] = tuple(f"learn_spell_{s}" for s in SPELLS)
POTION_COLOURS: tuple[str, ...] = ("red", "green", "blue", "pink", "cyan", "yellow")  # inventory.potions order
POTIONS: tuple[str, ...] = tuple(f"drink_potion_{c}" for c in POTION_COLOURS)

PLACEABLES: tuple[str, ...] = ("table", "furnace", "stone", "plant", "torch")
_PLACE_ACHIEVEMENT = {
    "table": Achievement.PLACE_TABLE,
    "furnace": Achievement.PLACE_FURNACE,
    "stone": Achievement.PLACE_STONE,
    "plant": Achievement.PLACE_PLANT,
    "torch": Achievement.PLACE_TORCH,
}
# Neighbour kinds for spatial placements. The fire and ice realms' variants count as the
# overworld block they play the part of (fire grass is grass, an ice shrub is a tree).
NEAR_BLOCKS: dict[str, tuple[BlockType, ...]] = {
    "water": (BlockType.WATER,),
    "stone": (BlockType.STONE,),
    "tree": (BlockType.TREE, BlockType.FIRE_TREE, BlockType.ICE_SHRUB),
    "grass": (BlockType.GRASS, BlockType.FIRE_GRASS, BlockType.ICE_GRASS),
    "sand": (BlockType.SAND,),
    "lava": (BlockType.LAVA,),
    "coal": (BlockType.COAL,),
    "iron": (BlockType.IRON,),
    "diamond": (BlockType.DIAMOND,),
    "sapphire": (BlockType.SAPPHIRE,),
    "ruby": (BlockType.RUBY,),
    "table": (BlockType.CRAFTING_TABLE,),
    "furnace": (BlockType.FURNACE,),
    "plant": (BlockType.PLANT, BlockType.RIPE_PLANT),
    "path": (BlockType.PATH,),
    "wall": (BlockType.WALL, BlockType.WALL_MOSS),
    "chest": (BlockType.CHEST,),
    "fountain": (BlockType.FOUNTAIN,),
    "enchantment_table": (BlockType.ENCHANTMENT_TABLE_FIRE, BlockType.ENCHANTMENT_TABLE_ICE),
}
PLACEMENTS: tuple[str, ...] = tuple(f"place_{p}_near_{b}" for p in PLACEABLES for b in NEAR_BLOCKS)

# --- Levels ---------------------------------------------------------------------------------
ARMOUR_PIECES: tuple[str, ...] = ("helmet", "chestplate", "leggings", "boots")  # inventory.armour order
_SCALAR_ITEMS: tuple[str, ...] = (
    "wood", "stone", "coal", "iron", "diamond", "sapphire", "ruby", "sapling",
    "pickaxe", "sword", "bow", "arrows", "torches", "books",
)  # fmt: skip
INVENTORY_ITEMS: tuple[str, ...] = (
    _SCALAR_ITEMS + ARMOUR_PIECES + tuple(f"potion_{c}" for c in POTION_COLOURS)
)
VITALS: tuple[str, ...] = ("health", "food", "drink", "energy", "mana")
ATTRIBUTES: tuple[str, ...] = ("xp", "dexterity", "strength", "intelligence")


def _health(state) -> jax.Array:
    # Health is a float (armour and sleep scale damage). Read it as the game's display does:
    # whole points, and never 0 while alive, so "health 0" means dead.
    h = state.player_health
    return jnp.where(h > 0, jnp.maximum(jnp.floor(h), 1), 0)


_LEVEL_READERS: dict[str, Callable] = {
    "floor": lambda s: s.player_level,
    **{f"inventory_{i}": (lambda s, i=i: getattr(s.inventory, i)) for i in _SCALAR_ITEMS},
    **{f"inventory_{p}": (lambda s, k=k: s.inventory.armour[k]) for k, p in enumerate(ARMOUR_PIECES)},
    **{f"inventory_potion_{c}": (lambda s, k=k: s.inventory.potions[k]) for k, c in enumerate(POTION_COLOURS)},
    "health": _health,
    "food": lambda s: s.player_food,
    "drink": lambda s: s.player_drink,
    "energy": lambda s: s.player_energy,
    "mana": lambda s: s.player_mana,
    "xp": lambda s: s.player_xp,
    "dexterity": lambda s: s.player_dexterity,
    "strength": lambda s: s.player_strength,
    "intelligence": lambda s: s.player_intelligence,
}  # fmt: skip

EVENT_NAMES: tuple[str, ...] = ACHIEVEMENTS + FLOOR_CHANGES + KILLS + SPELL_EVENTS + POTIONS + PLACEMENTS
LEVEL_NAMES: tuple[str, ...] = tuple(_LEVEL_READERS)
COUNTER_NAMES: tuple[str, ...] = EVENT_NAMES + LEVEL_NAMES
NUM_EVENTS = len(EVENT_NAMES)
NUM_LEVELS = len(LEVEL_NAMES)
NUM_COUNTERS = len(COUNTER_NAMES)
COUNTER_INDEX: dict[str, int] = {name: i for i, name in enumerate(COUNTER_NAMES)}
assert len(COUNTER_INDEX) == NUM_COUNTERS, "counter names must be unique"


def _describe(name: str) -> Counter:
    if name in ACHIEVEMENTS:
        a = Achievement[name.upper()]
        if a in _GAINED:
            return Counter(name, "achievement", True, f"{_GAINED[a]} gained (units)")
        if a.value in _ENTER.values():
            return Counter(name, "achievement", True, f"times '{name}' happened (arrivals on that floor)")
        return Counter(name, "achievement", True, f"times '{name}' happened")
    if name in FLOOR_CHANGES:
        return Counter(name, "floor_change", True, f"times the player went {'down' if name == 'descend' else 'up'} a floor")
    if name in KILLS:
        return Counter(name, "kill", True, f"{name[len('kill_'):].replace('_', ' ')}s killed (by hand or missile)")
    if name in SPELL_EVENTS:
        return Counter(name, "spell", True, f"times the {name[len('learn_spell_'):]} spell was learnt")
    if name in POTIONS:
        return Counter(name, "potion", True, f"{name[len('drink_potion_'):]} potions drunk")
    if name in PLACEMENTS:
        placed, near = name[len("place_") :].split("_near_")
        return Counter(name, "placement", True, f"{placed} placed with {near} among its 8 neighbours")
    if name == "floor":
        return Counter(name, "floor", False, "current floor (0 overworld, 1-8 below)")
    if name.startswith("inventory_"):
        return Counter(name, "inventory", False, f"{name[len('inventory_'):]} held now")
    if name in ATTRIBUTES:
        return Counter(name, "attribute", False, f"current {name}")
    return Counter(name, "vital", False, f"current {name}")


COUNTERS: tuple[Counter, ...] = tuple(_describe(n) for n in COUNTER_NAMES)


def levels_of(state) -> jax.Array:
    """Current levels of one full-Craftax state, as int32[NUM_LEVELS] laid out as LEVEL_NAMES."""
    return jnp.stack([jnp.asarray(read(state)).astype(jnp.int32) for read in _LEVEL_READERS.values()])


def _state_derived_achievements(prev, new, static_params) -> jax.Array:
    """int32[len(ACHIEVEMENTS)]: this step's count of each state-derived achievement (0 elsewhere)."""
    idx, vals = [], []
    for a, item in _GAINED.items():
        idx.append(a.value)
        vals.append(jnp.maximum(getattr(new.inventory, item) - getattr(prev.inventory, item), 0))
    for a, item in _ROSE.items():
        idx.append(a.value)
        vals.append(getattr(new.inventory, item) > getattr(prev.inventory, item))
    for a, (tool, tier) in _TIERS.items():
        idx.append(a.value)
        vals.append((getattr(prev.inventory, tool) < tier) & (getattr(new.inventory, tool) >= tier))
    moved = new.player_level != prev.player_level
    for floor, a in _ENTER.items():
        idx.append(a)
        vals.append(moved & (new.player_level == floor))
    idx.append(Achievement.DEFEAT_NECROMANCER.value)
    vals.append(has_beaten_boss(new, static_params) & ~has_beaten_boss(prev, static_params))
    out = jnp.zeros(len(ACHIEVEMENTS), jnp.int32)
    return out.at[np.array(idx)].set(jnp.stack([jnp.asarray(v).astype(jnp.int32) for v in vals]))


def _kill_events(prev, new, happened: jax.Array) -> jax.Array:
    """int32[len(KILLS)]: creatures of each kind killed this step.

    A mob slot dies when its mask drops with health <= 0 (despawning leaves health > 0). A
    slot freed by a kill can be refilled by a spawn in the same step, which hides the death;
    the kind's kill achievement (defeat_*/eat_*, cleared before the step, so it means "this
    step") catches those, hence the max. Still missed: a passive mob shot dead (shots never
    give eat_*) whose slot is refilled in the same step, and a second same-kind kill in one
    step whose slot is refilled.
    """
    died = {}
    for field in _MOB_CLASS:
        before, after = getattr(prev, field), getattr(new, field)
        died[field] = (before, before.mask & ~after.mask & (after.health <= 0))
    counts = []
    for _, field, type_id in KILL_KINDS:
        before, dead = died[field]
        by_slots = (dead & (before.type_id == type_id)).sum()
        flagged = happened[int(_MOB_ACHIEVEMENT[_MOB_CLASS[field], type_id])]
        counts.append(jnp.maximum(by_slots, flagged.astype(jnp.int32)))
    return jnp.stack(counts).astype(jnp.int32)


def _placement_events(prev, new, happened: jax.Array) -> jax.Array:
    """int32[len(PLACEMENTS)]: which ``place_X_near_Y`` happened this step.

    The game places at the faced cell of the current floor; a placing step neither moves, turns
    nor changes floor, so the pre-step position and direction name the cell. Neighbours come
    from the post-step map, so the placed block never counts as its own neighbour (a torch is
    an item on top of the cell, so the cell itself is not looked at either).
    """
    target = prev.player_position + DIRECTIONS[prev.player_direction]
    offsets = jnp.array(
        [[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]], jnp.int32
    )
    cells = target[None, :] + offsets
    floor_map = new.map[new.player_level]
    h, w = floor_map.shape
    inside = (cells[:, 0] >= 0) & (cells[:, 0] < h) & (cells[:, 1] >= 0) & (cells[:, 1] < w)
    blocks = floor_map[jnp.clip(cells[:, 0], 0, h - 1), jnp.clip(cells[:, 1], 0, w - 1)]
    blocks = jnp.where(inside, blocks, BlockType.OUT_OF_BOUNDS.value)
    near = jnp.stack(
        [jnp.isin(blocks, jnp.array([b.value for b in kinds])).any() for kinds in NEAR_BLOCKS.values()]
    )
    placed = jnp.stack([happened[_PLACE_ACHIEVEMENT[p].value] for p in PLACEABLES])
    return (placed[:, None] & near[None, :]).reshape(-1).astype(jnp.int32)


def step_with_events(env, key: jax.Array, state, action: jax.Array, params):
    """One full-Craftax step that also reports this step's events and the post-step levels.

    As in :func:`oir.events.step_with_events`, achievements are a sticky bit-vector, so the
    bits of the event-like achievements (set by an action or a happening this step) are
    cleared before the step: whatever the game sets is what happened in this step. Unlike
    Classic, the state-derived achievements (see ``_STATE_DERIVED``) keep their bits, since the
    game re-derives them from the state each step and reads the floor-entry ones back for xp;
    their events come from state differences. No other game logic reads achievement bits
    (craftax 1.6.1 game_logic), so the game evolves exactly as in a plain step; all bits are
    then restored (old | new).

    Craftax's reward is ``sum((bits_after - bits_before) * ACHIEVEMENT_REWARD_MAP) + 0.1 *
    (health_after - health_before)`` (``craftax_step``): weighted by tier (1/3/5/8), not one
    per achievement as in Classic, so Classic's ``- achieved.sum()`` correction would be
    wrong here. It is recomputed with the same operations from the true sticky bits, so it
    equals a plain step's reward exactly.

    Returns ``(obs, state, reward, done, events, levels)``: ``events`` int32[NUM_EVENTS] and
    ``levels`` int32[NUM_LEVELS], both for the post-step state (before any reset).
    """
    sticky = state.achievements
    keep = jnp.asarray(_KEEP)
    cleared = state.replace(achievements=sticky & keep)
    obs, new_state, _, done, _ = env.step_env(key, cleared, action, params)
    bits = new_state.achievements
    happened = bits & ~keep
    achievements = sticky | bits
    new_state = new_state.replace(achievements=achievements)
    reward = (
        (achievements.astype(jnp.int32) - sticky.astype(jnp.int32)) * ACHIEVEMENT_REWARD_MAP
    ).sum() + (new_state.player_health - state.player_health) * 0.1

    achievement_events = jnp.where(
        keep,
        _state_derived_achievements(state, new_state, env.static_env_params),
        happened.astype(jnp.int32),
    )
    floor_change = new_state.player_level - state.player_level
    spells_learnt = new_state.learned_spells & ~state.learned_spells
    drunk = jnp.maximum(state.inventory.potions - new_state.inventory.potions, 0)
    events = jnp.concatenate(
        [
            achievement_events,
            jnp.stack([floor_change > 0, floor_change < 0]).astype(jnp.int32),
            _kill_events(state, new_state, happened),
            spells_learnt.astype(jnp.int32),
            drunk.astype(jnp.int32),
            _placement_events(state, new_state, happened),
        ]
    )
    return obs, new_state, reward, done, events, levels_of(new_state)


def make_env():
    """Craftax-Symbolic (full Craftax) without auto-reset (oir.env resets from a pool of worlds)."""
    from craftax.craftax.envs.craftax_symbolic_env import CraftaxSymbolicEnvNoAutoReset

    return CraftaxSymbolicEnvNoAutoReset()


def make_renderer(pixels: int):
    """Full Craftax's pixel renderer at ``pixels`` a block."""
    from craftax.craftax.renderer import make_craftax_pixel_renderer

    return make_craftax_pixel_renderer(pixels)
