"""Narration: a segment of experience becomes compact text a language model can read.

A :class:`Segment` holds what the relabeler needs of one env's stretch of experience: per-step
events, and the levels and surroundings before the first step and after every step. The text
is a timestep-stamped event log between two short state summaries::

    Segment of 42 steps.
    Start: health 9, food 9, drink 9, energy 9; inventory: nothing; nearby: grass, tree.
    t=3..7 collected wood x3 (wood 3)
    t=12 placed a crafting table next to grass, tree (wood 2)
    End: health 9, food 8, drink 8, energy 9; inventory: wood 2; nearby: grass, table, tree; cow.

Narration is deterministic and runs on the host over a batch of segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from craftax.craftax_classic.constants import BlockType

from oir.events import (
    ACHIEVEMENTS,
    EVENT_NAMES,
    INVENTORY_ITEMS,
    LEVEL_NAMES,
    MOBS,
    NEAR_BLOCKS,
    NEARBY_NAMES,
    NUM_EVENTS,
    NUM_LEVELS,
    NUM_NEARBY,
    PLACEABLES,
    VITALS,
)

# Blocks not worth naming in a summary (the frame, or the ground everywhere).
_QUIET = {"invalid", "out_of_bounds", "path"}
_BLOCK_WORDS = {"crafting_table": "table", "ripe_plant": "ripe plant"}

PHRASES: dict[str, str] = {
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
}
assert set(PHRASES) == set(ACHIEVEMENTS)
# Which inventory item an event changes, shown after the event as "(wood 3)".
_ITEM_OF = {
    "collect_wood": "wood", "collect_stone": "stone", "collect_coal": "coal",
    "collect_iron": "iron", "collect_diamond": "diamond", "collect_sapling": "sapling",
    "place_table": "wood", "place_stone": "stone", "place_furnace": "stone",
    "place_plant": "sapling", "collect_drink": "drink", "eat_cow": "food", "eat_plant": "food",
}  # fmt: skip
_EVENT_INDEX = {name: i for i, name in enumerate(EVENT_NAMES)}
_LEVEL_INDEX = {name: i for i, name in enumerate(LEVEL_NAMES)}
_PLACE_OF = {f"place_{p}": p for p in PLACEABLES}


@dataclass
class Segment:
    """One env's experience from an instruction (or any start) over ``T`` steps.

    ``events[t]`` is what happened in step ``t + 1``; ``levels[0]`` and ``nearby[0]`` describe the
    moment before the first step, ``levels[t]`` and ``nearby[t]`` the state after step ``t``.
    """

    events: np.ndarray  # int [T, NUM_EVENTS]
    levels: np.ndarray  # int [T + 1, NUM_LEVELS]
    nearby: np.ndarray  # bool [T + 1, NUM_NEARBY]
    ended: bool = False  # the game ended at the last step
    # Steps at its start that came before its own instruction (a world span): what first held
    # there was stated with an earlier segment, so relabels must first hold after them.
    after: int = 0

    def __post_init__(self):
        t = self.events.shape[0]
        if self.events.shape != (t, NUM_EVENTS) or self.levels.shape != (t + 1, NUM_LEVELS):
            raise ValueError(f"segment arrays do not line up: events {self.events.shape}, levels {self.levels.shape}")
        if self.nearby.shape != (t + 1, NUM_NEARBY):
            raise ValueError(f"segment nearby has shape {self.nearby.shape}, want {(t + 1, NUM_NEARBY)}")
        if not 0 <= self.after <= t:
            raise ValueError(f"segment after {self.after} is not in [0, {t}] (its steps)")

    @property
    def length(self) -> int:
        return int(self.events.shape[0])

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_counters"}  # not the cache

    def counters(self) -> np.ndarray:
        """[T, NUM_COUNTERS] counter vectors counted from the segment start (for the evaluator).

        Made once: a relabeler reads them to propose, and verification to check every proposal.
        """
        out = self.__dict__.get("_counters")
        if out is None:
            from oir.tasks import counters_from_trace

            out = counters_from_trace(self.events, self.levels[1:])
            out.flags.writeable = False
            self.__dict__["_counters"] = out
        return out


def _summary(levels: np.ndarray, nearby: np.ndarray) -> str:
    vitals = ", ".join(f"{v} {int(levels[_LEVEL_INDEX[v]])}" for v in VITALS)
    held = [
        f"{item.replace('_', ' ')} {int(levels[_LEVEL_INDEX['inventory_' + item]])}"
        for item in INVENTORY_ITEMS
        if levels[_LEVEL_INDEX["inventory_" + item]] > 0
    ]
    blocks = [
        _BLOCK_WORDS.get(n, n)
        for n, seen in zip(NEARBY_NAMES[: len(BlockType)], nearby, strict=False)
        if seen and n not in _QUIET
    ]
    mobs = [m for m, seen in zip(MOBS, nearby[len(BlockType) :], strict=True) if seen]
    where = ", ".join(sorted(blocks)) or "nothing"
    if mobs:
        where += "; " + ", ".join(mobs)
    return f"{vitals}; inventory: {', '.join(held) or 'nothing'}; nearby: {where}"


def _step_entries(events: np.ndarray, levels_after: np.ndarray) -> list[str]:
    """One phrase per event kind that happened in a step."""
    out = []
    for k, name in enumerate(ACHIEVEMENTS):
        n = int(events[k])
        if n == 0:
            continue
        phrase = PHRASES[name]
        if name in _PLACE_OF:
            placed = _PLACE_OF[name]
            near = [b for b in NEAR_BLOCKS if events[_EVENT_INDEX[f"place_{placed}_near_{b}"]] > 0]
            if near:
                phrase += " next to " + ", ".join(near)
        item = _ITEM_OF.get(name)
        if item is not None:
            key = item if item in VITALS else f"inventory_{item}"
            phrase += f" ({item} {int(levels_after[_LEVEL_INDEX[key]])})"
        out.append(phrase)
    return out


def narrate(seg: Segment) -> str:
    """The text of one segment. Consecutive repeats of one event are merged: ``t=3..7 ... x3``."""
    lines = [f"Segment of {seg.length} steps.", "Start: " + _summary(seg.levels[0], seg.nearby[0]) + "."]
    if seg.after:
        lines[0] += f" Its instruction began after step {seg.after}."
    # (first step, last step, phrase without the trailing level, count, phrase with level)
    log: list[list] = []
    steps = np.flatnonzero(seg.events[:, : len(ACHIEVEMENTS)].any(axis=1))
    for s in steps:
        for phrase in _step_entries(seg.events[s], seg.levels[s + 1]):
            stem = phrase.split(" (")[0]
            if log and log[-1][2] == stem:
                log[-1][1], log[-1][3], log[-1][4] = s + 1, log[-1][3] + 1, phrase
            else:
                log.append([s + 1, s + 1, stem, 1, phrase])
    for first, last, stem, n, phrase in log:
        when = f"t={first}" if first == last else f"t={first}..{last}"
        text = phrase if n == 1 else phrase.replace(stem, f"{stem} x{n}", 1)
        lines.append(f"{when} {text}")
    if len(log) == 0:
        lines.append("(no events)")
    if seg.ended:
        dead = seg.levels[-1][_LEVEL_INDEX["health"]] <= 0
        lines.append(f"t={seg.length} the game ended" + (": the agent died." if dead else "."))
    lines.append("End: " + _summary(seg.levels[-1], seg.nearby[-1]) + ".")
    return "\n".join(lines)


def caption_step(seg: Segment, t: int) -> str:
    """The whole of step ``t`` (1-based) as one line, for similarity rewards: its events (as the
    narration words them, with the item they changed), the inventory and vitals that changed,
    and what came into view. "" when nothing did.

    ``collected wood (wood 3); wood 2 -> 3, food 6 -> 5; now in view: cow``
    """
    before, after = seg.levels[t - 1], seg.levels[t]
    parts = ["; ".join(_step_entries(seg.events[t - 1], after))]
    changed = [f"{name.removeprefix('inventory_').replace('_', ' ')} {int(before[i])} -> {int(after[i])}"
               for i, name in enumerate(LEVEL_NAMES) if before[i] != after[i]]
    parts.append(", ".join(changed))
    new = [_BLOCK_WORDS.get(n, n) for n, was, now in zip(NEARBY_NAMES, seg.nearby[t - 1], seg.nearby[t], strict=True)
           if now and not was and n not in _QUIET]
    parts.append("now in view: " + ", ".join(new) if new else "")
    return "; ".join(x for x in parts if x)


def narrate_batch(segments: Sequence[Segment]) -> list[str]:
    """Narrate many segments (host side); same input, same text."""
    return [narrate(s) for s in segments]


def _event_text(name: str) -> str:
    if name in PHRASES:
        return PHRASES[name]
    placed, near = name[len("place_") :].split("_near_")
    return f"{PHRASES['place_' + placed]} next to {near}"


# The state text of a step with one event, as the narration writes it ("collected wood",
# "placed a crafting table next to water"): what similarity rewards compare instructions with in
# the jitted env (caption_step describes a whole step; bench/similarity_captions.py compares them).
EVENT_TEXTS: tuple[str, ...] = tuple(_event_text(n) for n in EVENT_NAMES)
