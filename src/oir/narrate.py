"""Narration: a segment of experience becomes compact text a language model can read.

A :class:`Segment` holds what the relabeler needs of one env's stretch of experience: per-step
events, and the levels and surroundings before the first step and after every step. The text
is a timestep-stamped event log between two short state summaries::

    Segment of 42 steps.
    Start: health 9, food 9, drink 9, energy 9; inventory: nothing; nearby: grass, tree.
    t=3..7 collected wood x3 (wood 3)
    t=12 placed a crafting table next to grass, tree (wood 2)
    End: health 9, food 8, drink 8, energy 9; inventory: wood 2; nearby: grass, table, tree; cow.

Narration is deterministic and runs on the host over a batch of segments. It serves every world
(:mod:`oir.worlds`): a segment's array widths name its world, whose :class:`~oir.words.Words` say
its events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from oir import worlds
from oir.events import NEARBY_NAMES, NUM_NEARBY, WORDS
from oir.words import Words
from oir.worlds import World

__all__ = ["EVENT_TEXTS", "NEARBY_NAMES", "NUM_NEARBY", "PHRASES", "Segment", "Words", "caption_step",
           "event_texts", "narrate", "narrate_batch"]

# Craftax-Classic's event phrases ({achievement: "collected wood"}), for prompts and the play log.
PHRASES: dict[str, str] = dict(WORDS.phrases)


@dataclass(frozen=True, eq=False)
class _Tables:
    """What narration derives from one world's vocabulary and words, made once per world."""

    words: Words
    logged: np.ndarray  # int[K]: the event columns the log tells (all but placements), in order
    event_names: tuple[str, ...]
    # event column of place_<x> -> [(column of place_<x>_near_<y>, y as said)]
    near_of: dict[int, list[tuple[int, str]]]
    item_col: dict[int, tuple[int, str]]  # event column -> (level column, level word) shown after it
    summary: list[tuple[str, int]]  # (level word, column) stated first in a summary
    inventory: list[tuple[str, int]]  # (item word, column) of every inventory_* level
    things: list[tuple[int, str]]  # (nearby column, word) of the blocks and items, quiet ones left out
    creatures: list[tuple[int, str]]  # (nearby column, word) in the words' order
    in_view: list[tuple[int, str]]  # (nearby column, word) of every name not quiet, in nearby order
    level_words: tuple[str, ...]  # per level column
    health: int


@cache
def _tables(name: str) -> _Tables:
    world = worlds.get(name)
    words: Words = world.words
    events, levels, nearby = world.event_names, world.level_names, world.nearby_names
    placements = set(world.placements)
    logged = [i for i, e in enumerate(events) if e not in placements]
    index = {e: i for i, e in enumerate(events)}
    level_index = {lv: i for i, lv in enumerate(levels)}
    near_of: dict[int, list[tuple[int, str]]] = {}
    for p in world.placements:  # in the world's order of neighbour kinds
        placed, near = p[len("place_"):].split("_near_")
        near_of.setdefault(index[f"place_{placed}"], []).append((index[p], near.replace("_", " ")))
    creatures = set(words.creatures)
    return _Tables(
        words=words,
        logged=np.array(logged, np.int64),
        event_names=events,
        near_of=near_of,
        item_col={index[e]: (level_index[lv], words.level_word(lv)) for e, lv in words.item_of.items()},
        summary=[(words.level_word(lv), level_index[lv]) for lv in words.summary_levels],
        inventory=[(words.level_word(lv), i) for i, lv in enumerate(levels) if lv.startswith("inventory_")],
        things=[(i, words.nearby_word(n)) for i, n in enumerate(nearby) if n not in creatures and n not in words.quiet],
        creatures=[(nearby.index(n), words.nearby_word(n)) for n in words.creatures],
        in_view=[(i, words.nearby_word(n)) for i, n in enumerate(nearby) if n not in words.quiet],
        level_words=tuple(words.level_word(lv) for lv in levels),
        health=level_index["health"],
    )


@dataclass
class Segment:
    """One env's experience from an instruction (or any start) over ``T`` steps, in any world.

    ``events[t]`` is what happened in step ``t + 1``; ``levels[0]`` and ``nearby[0]`` describe the
    moment before the first step, ``levels[t]`` and ``nearby[t]`` the state after step ``t``. The
    arrays' widths name the world (:attr:`world`).
    """

    events: np.ndarray  # int [T, num_events]
    levels: np.ndarray  # int [T + 1, num_levels]
    nearby: np.ndarray  # bool [T + 1, len(nearby_names)]
    ended: bool = False  # the game ended at the last step
    # Steps at its start that came before its own instruction (a world span): what first held
    # there was stated with an earlier segment, so relabels must first hold after them.
    after: int = 0

    def __post_init__(self):
        t = self.events.shape[0]
        if self.events.ndim != 2 or self.levels.ndim != 2 or self.levels.shape[0] != t + 1:
            raise ValueError(f"segment arrays do not line up: events {self.events.shape}, levels {self.levels.shape}")
        try:
            world = self.world
        except worlds.WorldError:
            raise ValueError(f"segment arrays do not line up: events {self.events.shape}, levels {self.levels.shape} "
                             "fit no world") from None
        want = (t + 1, len(world.nearby_names))
        if self.nearby.shape != want:
            raise ValueError(f"segment nearby has shape {self.nearby.shape}, want {want}")
        if not 0 <= self.after <= t:
            raise ValueError(f"segment after {self.after} is not in [0, {t}] (its steps)")

    @property
    def world(self) -> World:
        """The world whose counters these are (from the array widths; cheap, so not stored, which
        keeps a pickled segment plain arrays)."""
        return worlds.of_layout(self.events.shape[1], self.levels.shape[1])

    @property
    def length(self) -> int:
        return int(self.events.shape[0])

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_counters"}  # not the cache

    def counters(self) -> np.ndarray:
        """[T, num_counters] counter vectors counted from the segment start (for the evaluator).

        Made once: a relabeler reads them to propose, and verification to check every proposal.
        """
        out = self.__dict__.get("_counters")
        if out is None:
            from oir.tasks import counters_from_trace

            out = counters_from_trace(self.events, self.levels[1:])
            out.flags.writeable = False
            self.__dict__["_counters"] = out
        return out


def _summary(tab: _Tables, levels: np.ndarray, nearby: np.ndarray) -> str:
    vitals = ", ".join(f"{word} {int(levels[i])}" for word, i in tab.summary)
    held = [f"{word} {int(levels[i])}" for word, i in tab.inventory if levels[i] > 0]
    # A set: several names may share a word (graves of three looks are each "grave").
    where = ", ".join(sorted({word for i, word in tab.things if nearby[i]})) or "nothing"
    creatures = [word for i, word in tab.creatures if nearby[i]]
    if creatures:
        where += "; " + ", ".join(creatures)
    return f"{vitals}; inventory: {', '.join(held) or 'nothing'}; nearby: {where}"


def _entries(tab: _Tables, events: np.ndarray, levels_after: np.ndarray) -> list[str]:
    out = []
    for k in tab.logged[events[tab.logged] != 0].tolist():
        phrase = tab.words.phrases[tab.event_names[k]]
        near = [y for col, y in tab.near_of.get(k, ()) if events[col] > 0]
        if near:
            phrase += " next to " + ", ".join(near)
        item = tab.item_col.get(k)
        if item is not None:
            phrase += f" ({item[1]} {int(levels_after[item[0]])})"
        out.append(phrase)
    return out


def _step_entries(events: np.ndarray, levels_after: np.ndarray, world: World | None = None) -> list[str]:
    """One phrase per event kind that happened in a step, in the world's event order (its world
    from the array widths when not given)."""
    world = world or worlds.of_layout(events.shape[-1], levels_after.shape[-1])
    return _entries(_tables(world.name), events, levels_after)


def narrate(seg: Segment) -> str:
    """The text of one segment. Consecutive repeats of one event are merged: ``t=3..7 ... x3``."""
    tab = _tables(seg.world.name)
    lines = [f"Segment of {seg.length} steps.", "Start: " + _summary(tab, seg.levels[0], seg.nearby[0]) + "."]
    if seg.after:
        lines[0] += f" Its instruction began after step {seg.after}."
    # (first step, last step, phrase without the trailing level, count, phrase with level)
    log: list[list] = []
    steps = np.flatnonzero(seg.events[:, tab.logged].any(axis=1))
    for s in steps:
        for phrase in _entries(tab, seg.events[s], seg.levels[s + 1]):
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
        dead = seg.levels[-1][tab.health] <= 0
        lines.append(f"t={seg.length} the game ended" + (": the agent died." if dead else "."))
    lines.append("End: " + _summary(tab, seg.levels[-1], seg.nearby[-1]) + ".")
    return "\n".join(lines)


def caption_step(seg: Segment, t: int) -> str:
    """The whole of step ``t`` (1-based) as one line, for similarity rewards: its events (as the
    narration words them, with the item they changed), the inventory and vitals that changed,
    and what came into view. "" when nothing did.

    ``collected wood (wood 3); wood 2 -> 3, food 6 -> 5; now in view: cow``
    """
    tab = _tables(seg.world.name)
    before, after = seg.levels[t - 1], seg.levels[t]
    parts = ["; ".join(_entries(tab, seg.events[t - 1], after))]
    changed = [f"{word} {int(before[i])} -> {int(after[i])}"
               for i, word in enumerate(tab.level_words) if before[i] != after[i]]
    parts.append(", ".join(changed))
    was, now = seg.nearby[t - 1], seg.nearby[t]
    new = list(dict.fromkeys(word for i, word in tab.in_view if now[i] and not was[i]))
    parts.append("now in view: " + ", ".join(new) if new else "")
    return "; ".join(x for x in parts if x)


def narrate_batch(segments: Sequence[Segment]) -> list[str]:
    """Narrate many segments (host side); same input, same text."""
    return [narrate(s) for s in segments]


@cache
def event_texts(world: World | str | None = None) -> tuple[str, ...]:
    """The state text of a step with one event, per event of ``world`` (default Craftax-Classic),
    as the narration writes it ("collected wood", "placed a crafting table next to water"): what
    similarity rewards compare instructions with in the jitted env (caption_step describes a
    whole step; bench/similarity_captions.py compares them)."""
    world = worlds.world_of(world)
    phrases = world.words.phrases

    def text(name: str) -> str:
        if name in phrases:
            return phrases[name]
        placed, near = name[len("place_"):].split("_near_")
        return f"{phrases['place_' + placed]} next to {near.replace('_', ' ')}"

    return tuple(text(n) for n in world.event_names)


# Craftax-Classic's event texts (other worlds: event_texts(world)).
EVENT_TEXTS: tuple[str, ...] = event_texts()
