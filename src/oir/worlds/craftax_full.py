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
    OBS_DIM,
    Achievement,
    BlockType,
    ItemType,
    MobType,
)
from craftax.craftax.util.game_logic_utils import has_beaten_boss

from oir.events import WORDS as _CLASSIC  # the words full Craftax shares with Classic
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
# floor -> the achievement of entering it (floors 1-8).
FLOOR_ENTRIES: dict[int, str] = {f: ACHIEVEMENTS[a] for f, a in _ENTER.items()}

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


# --- What the agent sees --------------------------------------------------------------------
# The symbolic observation starts with the local map, OBS_DIM (9 x 11) cells of 83 channels
# each (craftax.craftax.renderer.render_craftax_symbolic): the block type one-hot (37), the item
# type one-hot (5, ItemType.NONE first), 5 mob classes x 8 type slots, then whether the cell is
# lit. Every channel but the last is zeroed in unlit cells, so what is dark is not seen. The
# renderer numbers the mob classes melee 0, passive 1, ranged 2, mob projectiles 3, player
# projectiles 4: not MobType's order.
_OBS_CELLS = OBS_DIM[0] * OBS_DIM[1]
_ITEM_CHANNEL = len(BlockType)
_MOB_CHANNEL = _ITEM_CHANNEL + len(ItemType)
_MOB_SLOTS = 8
_CELL_CHANNELS = _MOB_CHANNEL + 5 * _MOB_SLOTS + 1
_RENDER_CLASS = {"melee_mobs": 0, "passive_mobs": 1, "ranged_mobs": 2}
# Projectile kind -> (render class, type id) of every projectile of that look: mobs' projectiles
# (class 3) by RANGED_MOB_TYPE_TO_PROJECTILE_TYPE_MAPPING (ids 6 and 7 are the elementals' own
# fire- and iceballs), the player's (class 4) by game_logic (arrows are ARROW2, spells 2 and 3).
_PROJECTILES: dict[str, tuple[tuple[int, int], ...]] = {
    "arrow": ((3, 0), (3, 4), (4, 4)),
    "dagger": ((3, 1),),
    "fireball": ((3, 2), (3, 6), (4, 2)),
    "iceball": ((3, 3), (3, 7), (4, 3)),
    "slimeball": ((3, 5),),
}
_NEARBY_CHANNELS: dict[str, tuple[int, ...]] = {
    **{b.name.lower(): (b.value,) for b in BlockType},
    # ItemType.NONE is "no item here", on in nearly every cell: not a thing in view.
    **{i.name.lower(): (_ITEM_CHANNEL + i.value,) for i in ItemType if i != ItemType.NONE},
    **{n: (_MOB_CHANNEL + _RENDER_CLASS[field] * _MOB_SLOTS + t,) for n, field, t in KILL_KINDS},
    **{n: tuple(_MOB_CHANNEL + c * _MOB_SLOTS + t for c, t in looks) for n, looks in _PROJECTILES.items()},
}
assert len(_NEARBY_CHANNELS) == len(BlockType) + len(ItemType) - 1 + len(KILL_KINDS) + len(_PROJECTILES), "names clash"
NEARBY_NAMES: tuple[str, ...] = tuple(_NEARBY_CHANNELS)
NUM_NEARBY = len(NEARBY_NAMES)
MOBS: tuple[str, ...] = tuple(n for n, _, _ in KILL_KINDS)
# float32[cell channel, nearby name]: 1 where the channel shows that name.
_SEEN_AS = np.zeros((_CELL_CHANNELS, NUM_NEARBY), np.float32)
for _j, _channels in enumerate(_NEARBY_CHANNELS.values()):
    _SEEN_AS[list(_channels), _j] = 1.0


def nearby_from_obs(obs):
    """What the agent sees: bool[..., NUM_NEARBY] from a symbolic observation (jnp or np)."""
    local = obs[..., : _OBS_CELLS * _CELL_CHANNELS].reshape((*obs.shape[:-1], _OBS_CELLS, _CELL_CHANNELS))
    # Any cell per channel, then channels to names: a name may be several channels (arrows).
    return (local.max(axis=-2) @ _SEEN_AS) > 0


# --- Words ------------------------------------------------------------------------------------
# How the narrator and the narrator relabeler tell full Craftax's events (oir.words.Words).
# Events that overlap (defeat_zombie and kill_zombie, eat_cow and kill_cow, learn_fireball and
# learn_spell_fireball, drink_potion and drink_potion_red, descend and enter_*) are worded apart
# on purpose: both are logged and stated, and equal wordings would be merged in the log and
# dropped as duplicate instructions.
from oir.words import Words  # noqa: E402  (no cycle: oir.words imports nothing from oir)

_MOB_WORDS = {n: n.replace("_", " ") for n in MOBS}
_MOB_PLURALS = {n: ("pigmen" if n == "pigman" else f"{w}s") for n, w in _MOB_WORDS.items()}
# The defeat_* achievements by the mob they name (the game spells one "solider").
DEFEATS: dict[str, str] = {("orc_soldier" if a == "defeat_orc_solider" else a[len("defeat_"):]): a
                          for a in ACHIEVEMENTS if a.startswith("defeat_") and a != "defeat_necromancer"}
assert set(DEFEATS) <= set(MOBS)
# Floor entry achievements and the floors' names as players know them.
_FLOOR_NAMES = {
    "enter_dungeon": "the Dungeon", "enter_gnomish_mines": "the Gnomish Mines", "enter_sewers": "the Sewers",
    "enter_vault": "the Vault", "enter_troll_mines": "the Troll Mines", "enter_fire_realm": "the Fire Realm",
    "enter_ice_realm": "the Ice Realm", "enter_graveyard": "the Graveyard",
}
assert set(FLOOR_ENTRIES.values()) == set(_FLOOR_NAMES)
_TOOL_TIERS = ("wood", "stone", "iron", "diamond")  # inventory.pickaxe/sword 1-4
_ARMOUR_TIERS = ("iron", "diamond")  # inventory.armour 1-2
_DEFEAT_VERBS = ("defeat", "beat", "overcome")
_KILL_VERBS = ("kill", "slay", "take down")


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


_FULL_PHRASES: dict[str, str] = {
    **_CLASSIC.phrases,  # Craftax-Classic's achievements, told as Classic tells them
    # Full Craftax's own.
    "make_arrow": "made arrows",
    "make_torch": "made torches",
    "place_torch": "placed a torch",
    "make_diamond_sword": "made a diamond sword",
    "make_diamond_pickaxe": "made a diamond pickaxe",
    "make_iron_armour": "made a piece of iron armour",
    "make_diamond_armour": "made a piece of diamond armour",
    **{a: f"entered {floor}" for a, floor in _FLOOR_NAMES.items()},
    **{a: f"defeated {_a(_MOB_WORDS[m])}" for m, a in DEFEATS.items()},
    "damage_necromancer": "hit the necromancer",
    "defeat_necromancer": "defeated the necromancer",
    "eat_bat": "ate a bat",
    "eat_snail": "ate a snail",
    "find_bow": "found a bow",
    "fire_bow": "shot an arrow",
    "collect_sapphire": "collected a sapphire",
    "collect_ruby": "collected a ruby",
    "learn_fireball": "learned the fireball spell",
    "learn_iceball": "learned the iceball spell",
    "cast_fireball": "cast a fireball",
    "cast_iceball": "cast an iceball",
    "open_chest": "opened a chest",
    "drink_potion": "drank a potion",
    "enchant_sword": "enchanted a sword",
    "enchant_armour": "enchanted a piece of armour",
    # The other events.
    "descend": "went down to the next floor",
    "ascend": "went up to the floor above",
    **{f"kill_{m}": f"killed {_a(w)}" for m, w in _MOB_WORDS.items()},
    **{f"learn_spell_{s}": f"can now cast {s}s" for s in SPELLS},
    **{f"drink_potion_{c}": f"drank {_a(c)} potion" for c in POTION_COLOURS},
}

_FULL_COMMANDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    **_CLASSIC.commands,  # as Classic words them, but for defeat_* (below)
    # A craft makes 2 arrows or 4 torches, and make_arrow/make_torch count crafts: batches.
    "make_arrow": (("craft", "make"), "one batch of arrows", "{n} batches of arrows"),
    "make_torch": (("craft", "make"), "one batch of torches", "{n} batches of torches"),
    "place_torch": (("put up", "light"), "one torch", "{n} torches"),
    "make_diamond_sword": (("forge", "craft"), "one diamond sword", "{n} diamond swords"),
    "make_diamond_pickaxe": (("forge", "craft"), "one diamond pickaxe", "{n} diamond pickaxes"),
    "make_iron_armour": (("forge", "craft"), "one piece of iron armour", "{n} pieces of iron armour"),
    "make_diamond_armour": (("forge", "craft"), "one piece of diamond armour", "{n} pieces of diamond armour"),
    **{a: (("enter", "reach", "make it to"), floor, f"{floor} {{n}} times") for a, floor in _FLOOR_NAMES.items()},
    # defeat_* (the game's achievement) and kill_* (any death of that kind) differ by their verbs.
    **{a: (_DEFEAT_VERBS, f"one {_MOB_WORDS[m]}", f"{{n}} {_MOB_PLURALS[m]}") for m, a in DEFEATS.items()},
    "damage_necromancer": (("hit", "wound"), "the necromancer", "the necromancer {n} times"),
    "defeat_necromancer": (_DEFEAT_VERBS, "the necromancer", "the necromancer {n} times"),
    "eat_bat": (("hunt and eat", "catch and eat"), "one bat", "{n} bats"),
    "eat_snail": (("hunt and eat", "catch and eat"), "one snail", "{n} snails"),
    "find_bow": (("find", "pick up"), "one bow", "{n} bows"),
    "fire_bow": (("shoot", "fire"), "one arrow from a bow", "{n} arrows from a bow"),
    "collect_sapphire": (("mine", "dig up"), "one sapphire", "{n} sapphires"),
    "collect_ruby": (("mine", "dig up"), "one ruby", "{n} rubies"),
    "learn_fireball": (("learn", "master"), "the fireball spell", "the fireball spell {n} times"),
    "learn_iceball": (("learn", "master"), "the iceball spell", "the iceball spell {n} times"),
    "cast_fireball": (("cast", "hurl"), "one fireball", "{n} fireballs"),
    "cast_iceball": (("cast", "hurl"), "one iceball", "{n} iceballs"),
    "open_chest": (("open", "loot"), "one chest", "{n} chests"),
    # "a total of": "drink 3 ..." would read as the log's "drink 3" state notation (relabel.py).
    "drink_potion": (("drink", "quaff"), "one potion", "a total of {n} potions"),
    "enchant_sword": (("enchant", "imbue"), "one sword", "{n} swords"),
    "enchant_armour": (("enchant", "imbue"), "one piece of armour", "{n} pieces of armour"),
    "descend": (("go down", "climb down"), "one floor", "{n} floors"),
    "ascend": (("go up", "climb up"), "one floor", "{n} floors"),
    **{f"kill_{m}": (_KILL_VERBS, f"one {w}", f"{{n}} {_MOB_PLURALS[m]}") for m, w in _MOB_WORDS.items()},
    **{f"learn_spell_{s}": (("study", "read up on"), f"the {s} spell", f"the {s} spell {{n}} times") for s in SPELLS},
    **{f"drink_potion_{c}": (("drink", "quaff"), f"one {c} potion", f"a total of {{n}} {c} potions")
       for c in POTION_COLOURS},
}

WORDS = Words(
    phrases=_FULL_PHRASES,
    item_of={
        **{f"collect_{i}": f"inventory_{i}"
           for i in ("wood", "stone", "coal", "iron", "diamond", "sapphire", "ruby", "sapling")},
        "place_table": "inventory_wood", "place_stone": "inventory_stone", "place_furnace": "inventory_stone",
        "place_plant": "inventory_sapling", "place_torch": "inventory_torches", "collect_drink": "drink",
        "eat_cow": "food", "eat_plant": "food", "eat_bat": "food", "eat_snail": "food",
        "make_arrow": "inventory_arrows", "make_torch": "inventory_torches", "fire_bow": "inventory_arrows",
        "cast_fireball": "mana", "cast_iceball": "mana", "enchant_sword": "mana", "enchant_armour": "mana",
        "descend": "floor", "ascend": "floor",
        **{f"drink_potion_{c}": f"inventory_potion_{c}" for c in POTION_COLOURS},
    },
    summary_levels=("floor", *VITALS, "xp"),
    creatures=MOBS + tuple(_PROJECTILES),
    quiet=frozenset({"invalid", "out_of_bounds", "path"}),
    nearby_words={
        "crafting_table": "table", "ripe_plant": "ripe plant", "wall_moss": "mossy wall",
        "enchantment_table_fire": "fire enchantment table", "enchantment_table_ice": "ice enchantment table",
        "necromancer_vulnerable": "necromancer", "grave2": "grave", "grave3": "grave",
        "ladder_down_blocked": "blocked ladder down",
    },
    level_words={
        **{f"inventory_{t}": f"{t} tier" for t in ("pickaxe", "sword", *ARMOUR_PIECES)},
        **{f"inventory_potion_{c}": f"{c} potions" for c in POTION_COLOURS},
    },
    commands=_FULL_COMMANDS,
    place_words={**_CLASSIC.place_words, "torch": "one torch"},
    near_words={**_CLASSIC.near_words, "sapphire": "a sapphire", "ruby": "a ruby", "path": "a path",
                "wall": "a wall", "chest": "a chest", "fountain": "a fountain",
                "enchantment_table": "an enchantment table"},
    natural_none={
        **_CLASSIC.natural_none,
        "descend": ("ascend",), "ascend": ("descend",), "make_arrow": ("fire_bow",), "find_bow": ("fire_bow",),
        "learn_fireball": ("cast_fireball",), "learn_iceball": ("cast_iceball",),
        "learn_spell_fireball": ("cast_fireball",), "learn_spell_iceball": ("cast_iceball",),
        "make_torch": ("place_torch",), "open_chest": ("drink_potion",),
        "enchant_sword": ("enchant_armour",), "enchant_armour": ("enchant_sword",),
    },
    generic_none=_CLASSIC.generic_none,
    none_words={
        **_CLASSIC.none_words,
        "ascend": "go back up a floor", "descend": "go down a floor", "fire_bow": "shoot the bow",
        "cast_fireball": "cast a fireball", "cast_iceball": "cast an iceball", "place_torch": "put up a torch",
        "drink_potion": "drink a potion", "enchant_armour": "enchant armour", "enchant_sword": "enchant a sword",
    },
    item_words={**_CLASSIC.item_words, "sapphire": "sapphires", "ruby": "rubies", "bow": "bows", "arrows": "arrows", "torches": "torches", "books": "books",
                **{f"potion_{c}": f"{c} potions" for c in POTION_COLOURS}},
    tiers={"pickaxe": _TOOL_TIERS, "sword": _TOOL_TIERS, **{p: _ARMOUR_TIERS for p in ARMOUR_PIECES}},
)
