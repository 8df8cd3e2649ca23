"""Event counters: the counter vocabulary and the per-step event extraction.

This module is the one home of the counter vocabulary (design doc §3). A task spec names
counters from :data:`COUNTERS`; the env emits, every step, a vector of event counts and a
vector of current levels laid out exactly as listed here.

Counter vector layout (``NUM_COUNTERS`` ints):

* ``[0, NUM_EVENTS)``: event counts. The 22 Craftax-Classic achievements, counted every time
  they happen (three wood collected is 3), then ``place_<block>_near_<block>`` placements.
  A task counts these from the moment its instruction was given.
* ``[NUM_EVENTS, NUM_COUNTERS)``: levels. ``inventory_<item>`` and the vitals ``health``,
  ``food``, ``drink``, ``energy``: current values, never relative.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from craftax.craftax_classic.constants import DIRECTIONS, OBS_DIM, Achievement, BlockType

ACHIEVEMENTS: tuple[str, ...] = tuple(a.name.lower() for a in Achievement)

# What can be placed, and the achievement that marks the placement.
PLACEABLES: tuple[str, ...] = ("table", "furnace", "stone", "plant")
_PLACE_ACHIEVEMENT = {
    "table": Achievement.PLACE_TABLE,
    "furnace": Achievement.PLACE_FURNACE,
    "stone": Achievement.PLACE_STONE,
    "plant": Achievement.PLACE_PLANT,
}
# Neighbour kinds for spatial placements, each a set of block types.
NEAR_BLOCKS: dict[str, tuple[BlockType, ...]] = {
    "water": (BlockType.WATER,),
    "stone": (BlockType.STONE,),
    "tree": (BlockType.TREE,),
    "grass": (BlockType.GRASS,),
    "sand": (BlockType.SAND,),
    "lava": (BlockType.LAVA,),
    "coal": (BlockType.COAL,),
    "iron": (BlockType.IRON,),
    "diamond": (BlockType.DIAMOND,),
    "table": (BlockType.CRAFTING_TABLE,),
    "furnace": (BlockType.FURNACE,),
    "plant": (BlockType.PLANT, BlockType.RIPE_PLANT),
}
PLACEMENTS: tuple[str, ...] = tuple(
    f"place_{p}_near_{b}" for p in PLACEABLES for b in NEAR_BLOCKS
)
INVENTORY_ITEMS: tuple[str, ...] = (
    "wood", "stone", "coal", "iron", "diamond", "sapling",
    "wood_pickaxe", "stone_pickaxe", "iron_pickaxe",
    "wood_sword", "stone_sword", "iron_sword",
)  # fmt: skip
VITALS: tuple[str, ...] = ("health", "food", "drink", "energy")

EVENT_NAMES: tuple[str, ...] = ACHIEVEMENTS + PLACEMENTS
LEVEL_NAMES: tuple[str, ...] = tuple(f"inventory_{i}" for i in INVENTORY_ITEMS) + VITALS
COUNTER_NAMES: tuple[str, ...] = EVENT_NAMES + LEVEL_NAMES
NUM_EVENTS = len(EVENT_NAMES)
NUM_LEVELS = len(LEVEL_NAMES)
NUM_COUNTERS = len(COUNTER_NAMES)
COUNTER_INDEX: dict[str, int] = {name: i for i, name in enumerate(COUNTER_NAMES)}


# What the agent sees. The symbolic observation starts with the local map: one channel per
# block type, then one per mob kind, for each cell in view.
MOBS: tuple[str, ...] = ("zombie", "cow", "skeleton", "arrow")
NEARBY_NAMES: tuple[str, ...] = tuple(b.name.lower() for b in BlockType) + MOBS
NUM_NEARBY = len(NEARBY_NAMES)
NUM_BLOCK_KINDS = len(BlockType)
_MAP_CELLS = OBS_DIM[0] * OBS_DIM[1]


def nearby_from_obs(obs):
    """What the agent sees: bool[..., NUM_NEARBY] from a symbolic observation (jnp or np)."""
    local = obs[..., : _MAP_CELLS * NUM_NEARBY].reshape((*obs.shape[:-1], _MAP_CELLS, NUM_NEARBY))
    return local.max(axis=-2) > 0


def make_env():
    """Craftax-Classic-Symbolic without auto-reset (oir.env resets from a pool of worlds)."""
    from craftax.craftax_classic.envs.craftax_symbolic_env import (
        CraftaxClassicSymbolicEnvNoAutoReset,
    )

    return CraftaxClassicSymbolicEnvNoAutoReset()


def make_renderer(pixels: int):
    """Craftax-Classic's pixel renderer at ``pixels`` a block."""
    from craftax.craftax_classic.renderer import make_craftax_pixel_renderer

    return make_craftax_pixel_renderer(pixels)


@dataclass(frozen=True)
class Counter:
    name: str
    kind: str  # "achievement" | "placement" | "inventory" | "vital"
    relative: bool  # counted from the instruction (events) or a current level
    description: str


def _describe(name: str) -> Counter:
    if name in ACHIEVEMENTS:
        return Counter(name, "achievement", True, f"times '{name}' happened")
    if name in PLACEMENTS:
        placed, near = name[len("place_") :].split("_near_")
        return Counter(name, "placement", True, f"{placed} placed with {near} among its 8 neighbours")
    if name.startswith("inventory_"):
        return Counter(name, "inventory", False, f"{name[len('inventory_'):]} held now (0-9)")
    return Counter(name, "vital", False, f"current {name} (0-9)")


COUNTERS: tuple[Counter, ...] = tuple(_describe(n) for n in COUNTER_NAMES)


def levels_of(state) -> jax.Array:
    """Current levels (inventory, vitals) of one Craftax-Classic state, as int32[NUM_LEVELS]."""
    inv = state.inventory
    return jnp.stack(
        [getattr(inv, item) for item in INVENTORY_ITEMS]
        + [state.player_health, state.player_food, state.player_drink, state.player_energy]
    ).astype(jnp.int32)


def _placement_events(prev_state, state, achieved: jax.Array) -> jax.Array:
    """int32[len(PLACEMENTS)]: which ``place_X_near_Y`` happened this step.

    Craftax places a block at the faced cell; the player neither moves nor turns on a placing
    step, so the pre-step position and direction name the cell. Neighbours are read from the
    post-step map, so the placed block itself never counts as its own neighbour.
    """
    target = prev_state.player_position + DIRECTIONS[prev_state.player_direction]
    offsets = jnp.array(
        [[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]], jnp.int32
    )
    cells = target[None, :] + offsets
    h, w = state.map.shape
    inside = (cells[:, 0] >= 0) & (cells[:, 0] < h) & (cells[:, 1] >= 0) & (cells[:, 1] < w)
    blocks = state.map[jnp.clip(cells[:, 0], 0, h - 1), jnp.clip(cells[:, 1], 0, w - 1)]
    blocks = jnp.where(inside, blocks, BlockType.OUT_OF_BOUNDS.value)
    near = jnp.stack(
        [jnp.isin(blocks, jnp.array([b.value for b in kinds])).any() for kinds in NEAR_BLOCKS.values()]
    )
    placed = jnp.stack([achieved[_PLACE_ACHIEVEMENT[p].value] for p in PLACEABLES])
    return (placed[:, None] & near[None, :]).reshape(-1).astype(jnp.int32)


def step_with_events(env, key: jax.Array, state, action: jax.Array, params):
    """One Craftax step that also reports this step's events and the post-step levels.

    Craftax keeps achievements as a sticky bit-vector, so it cannot say that wood was
    collected a *third* time. We clear the bits before the step: whatever the game sets is
    exactly what happened in this step. The sticky bits are then restored (old | new), so
    the state the game sees is unchanged.

    Returns ``(obs, state, reward, done, events, levels)``: ``reward`` is Craftax's own
    (new achievements plus health change), ``events`` int32[NUM_EVENTS] and ``levels``
    int32[NUM_LEVELS], both for the post-step state (before any reset).
    """
    sticky = state.achievements
    cleared = state.replace(achievements=jnp.zeros_like(sticky))
    obs, new_state, reward, done, _ = env.step_env(key, cleared, action, params)
    achieved = new_state.achievements
    new_state = new_state.replace(achievements=sticky | achieved)
    # With cleared bits the game rewarded every event; it only rewards first unlocks.
    reward = reward - achieved.sum() + (achieved & ~sticky).sum()
    events = jnp.concatenate(
        [achieved.astype(jnp.int32), _placement_events(state, new_state, achieved)]
    )
    return obs, new_state, reward, done, events, levels_of(new_state)


# --- Words ------------------------------------------------------------------------------------
# How the narrator and the narrator relabeler tell Craftax-Classic's events (oir.words.Words).
# These texts are what runs have trained on: changing a word changes every relabel made with it.
from oir.words import Words  # noqa: E402  (no cycle: oir.words imports nothing from oir)

WORDS = Words(
    phrases={
        "collect_wood": "collected wood",
        "place_table": "placed a crafting table",
        "eat_cow": "ate a cow",
        "collect_sapling": "collected a sapling",
        "collect_drink": "drank water",
        "make_wood_pickaxe": "made a wood pickaxe",
        "make_wood_sword": "made a wood sword",
        "place_plant": "planted a sapling",
        "defeat_zombie": "defeated a zombie",
        "collect_stone": "collected stone",
        "place_stone": "placed stone",
        "eat_plant": "ate a plant",
        "defeat_skeleton": "defeated a skeleton",
        "make_stone_pickaxe": "made a stone pickaxe",
        "make_stone_sword": "made a stone sword",
        "wake_up": "woke up",
        "place_furnace": "placed a furnace",
        "collect_coal": "collected coal",
        "collect_iron": "collected iron",
        "collect_diamond": "collected a diamond",
        "make_iron_pickaxe": "made an iron pickaxe",
        "make_iron_sword": "made an iron sword",
    },
    item_of={
        "collect_wood": "inventory_wood", "collect_stone": "inventory_stone", "collect_coal": "inventory_coal",
        "collect_iron": "inventory_iron", "collect_diamond": "inventory_diamond",
        "collect_sapling": "inventory_sapling", "place_table": "inventory_wood", "place_stone": "inventory_stone",
        "place_furnace": "inventory_stone", "place_plant": "inventory_sapling", "collect_drink": "drink",
        "eat_cow": "food", "eat_plant": "food",
    },
    summary_levels=VITALS,
    creatures=MOBS,
    quiet=frozenset({"invalid", "out_of_bounds", "path"}),
    nearby_words={"crafting_table": "table", "ripe_plant": "ripe plant"},
    # Singular objects say "one", a register human suites rarely use, so its texts stay its own.
    commands={
        "collect_wood": (("gather", "chop", "harvest"), "wood", "{n} pieces of wood"),
        "place_table": (("build", "set up", "craft and place"), "one workbench", "{n} workbenches"),
        "eat_cow": (("hunt and eat", "catch and eat"), "one cow", "{n} cows"),
        "collect_sapling": (("find", "gather", "forage"), "one sapling", "{n} saplings"),
        "collect_drink": (("drink from", "sip from"), "the water", "the water {n} times"),
        "make_wood_pickaxe": (("craft", "build"), "one wooden pickaxe", "{n} wooden pickaxes"),
        "make_wood_sword": (("craft", "build"), "one wooden sword", "{n} wooden swords"),
        "place_plant": (("plant", "sow"), "one sapling in the grass", "{n} saplings in the grass"),
        "defeat_zombie": (("kill", "slay", "beat"), "one zombie", "{n} zombies"),
        "collect_stone": (("mine", "quarry", "dig up"), "stone", "{n} blocks of stone"),
        "place_stone": (("lay", "put down"), "one stone block", "{n} stone blocks"),
        "eat_plant": (("eat", "harvest and eat"), "one ripe plant", "{n} ripe plants"),
        "defeat_skeleton": (("kill", "slay", "beat"), "one skeleton", "{n} skeletons"),
        "make_stone_pickaxe": (("craft", "build"), "one stone pickaxe", "{n} stone pickaxes"),
        "make_stone_sword": (("craft", "build"), "one stone sword", "{n} stone swords"),
        "wake_up": (("sleep and then wake",), "up", "up {n} times"),
        "place_furnace": (("build", "set up"), "one furnace", "{n} furnaces"),
        "collect_coal": (("mine", "dig up"), "coal", "{n} lumps of coal"),
        "collect_iron": (("mine", "dig up"), "iron", "{n} chunks of iron"),
        "collect_diamond": (("mine", "dig up"), "one diamond", "{n} diamonds"),
        "make_iron_pickaxe": (("forge", "craft"), "one iron pickaxe", "{n} iron pickaxes"),
        "make_iron_sword": (("forge", "craft"), "one iron sword", "{n} iron swords"),
    },
    place_words={"table": "one workbench", "furnace": "one furnace", "stone": "one stone block", "plant": "one sapling"},
    near_words={"water": "water", "stone": "stone", "tree": "a tree", "grass": "grass", "sand": "sand",
                "lava": "lava", "coal": "coal", "iron": "iron", "diamond": "a diamond",
                "table": "a workbench", "furnace": "a furnace", "plant": "a plant"},
    # Prohibitions a person would state about a goal: the tempting next step, or its neighbour.
    natural_none={
        "collect_sapling": ("place_plant", "eat_plant"), "collect_wood": ("place_table", "defeat_zombie"),
        "collect_drink": ("eat_cow",), "eat_cow": ("collect_drink",), "eat_plant": ("eat_cow",),
        "wake_up": ("eat_cow",), "collect_stone": ("place_stone",), "place_table": ("make_wood_pickaxe",),
        "make_wood_pickaxe": ("make_wood_sword",), "make_wood_sword": ("make_wood_pickaxe",),
        "make_stone_pickaxe": ("make_stone_sword",), "make_stone_sword": ("make_stone_pickaxe",),
        "collect_coal": ("place_furnace",), "collect_iron": ("place_furnace",), "place_plant": ("eat_plant",),
    },
    generic_none=("defeat_zombie", "eat_cow", "place_table", "place_stone", "collect_sapling"),
    none_words={
        "place_plant": "sow anything", "eat_plant": "eat a plant", "place_table": "build a workbench",
        "defeat_zombie": "fight a zombie", "eat_cow": "eat any cow", "collect_drink": "drink water",
        "place_stone": "lay stone", "make_wood_pickaxe": "craft a pickaxe", "make_wood_sword": "craft a sword",
        "make_stone_pickaxe": "craft a stone pickaxe", "make_stone_sword": "craft a stone sword",
        "place_furnace": "build a furnace", "collect_sapling": "pick up saplings",
    },
    item_words={"wood": "pieces of wood", "stone": "blocks of stone", "coal": "lumps of coal",
                "iron": "chunks of iron", "diamond": "diamonds", "sapling": "saplings"},
)
