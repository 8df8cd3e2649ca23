"""The words one world's events are told in: :class:`Words`.

Each world module ends with ``WORDS = Words(...)`` (:mod:`oir.events` for Craftax-Classic,
:mod:`oir.worlds.craftax_full` for full Craftax). The narrator (:mod:`oir.narrate`) and the
narrator relabeler (:class:`oir.relabel.NarratorRelabeler`) read only these tables and the world's
counter vocabulary, so a new world needs new words and no new code.

This module imports nothing from ``oir``: world modules import it at their top without a cycle
(:mod:`oir.narrate` imports the world modules, and re-exports :class:`Words`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# (verbs, object when one, object when n with "{n}"): "chop" + "wood", "gather" + "{n} pieces of wood"
Command = tuple[tuple[str, ...], str, str]


def _frozen(m: Mapping) -> Mapping:
    return MappingProxyType(dict(m))


@dataclass(frozen=True, eq=False)  # its tables are read-only views, which do not hash
class Words:
    """Every word table the narrator and the narrator relabeler need for one world.

    Counter names are the world's own (``collect_wood``, ``inventory_wood``, ``health``); nearby
    names are its ``NEARBY_NAMES``. A name left out of an optional table is said as itself, with
    ``_`` as a space. :meth:`check` says whether the tables cover a world's vocabulary.
    """

    # --- The narration (oir.narrate) -------------------------------------------------------

    phrases: Mapping[str, str]
    """Event -> its log phrase, past tense ("collected wood"), for every event the narration
    logs: every event but the ``place_<x>_near_<y>`` placements, which are told as
    ``"<phrase of place_<x>> next to <y>, <z>"``. Phrases must differ: consecutive equal phrases
    are merged into one log line (``x3``), and a language model maps them back to counters."""

    item_of: Mapping[str, str]
    """Event -> the level it changes, whose new value follows the phrase: ``collect_wood`` ->
    ``inventory_wood`` gives "collected wood (wood 3)"."""

    summary_levels: tuple[str, ...]
    """The levels every Start/End summary states first, in this order ("health 9, food 9, ...").
    The inventory (``inventory_*`` levels above 0) follows them."""

    creatures: tuple[str, ...]
    """Nearby names listed after the rest in a summary, in this order ("nearby: grass, tree; cow").
    The others (blocks, items) are listed sorted by their words."""

    quiet: frozenset[str] = frozenset()
    """Nearby names never mentioned: the frame around the map, or the ground everywhere."""

    nearby_words: Mapping[str, str] = field(default_factory=dict)
    """Nearby name -> its word in a summary (``crafting_table`` -> "table")."""

    level_words: Mapping[str, str] = field(default_factory=dict)
    """Level -> its name in summaries and after phrases (default: the name without
    ``inventory_``): ``inventory_potion_red`` -> "red potions"."""

    # --- The narrator relabeler (oir.relabel.NarratorRelabeler) -----------------------------

    commands: Mapping[str, Command] = field(default_factory=dict)
    """Event -> (verbs, object for one, object for ``{n}``): the imperative grammar of the
    relabeler's instructions ("chop wood", "gather {n} pieces of wood"). The relabeler states
    exactly the events listed here; any two events' wordings must differ, or their instructions
    would be dropped as duplicates by verification."""

    place_words: Mapping[str, str] = field(default_factory=dict)
    """Placeable (the ``x`` of ``place_<x>_near_<y>``) -> its object in a placement instruction
    ("one workbench")."""

    near_words: Mapping[str, str] = field(default_factory=dict)
    """Neighbour kind (the ``y`` of ``place_<x>_near_<y>``) -> how an instruction names it
    ("a tree")."""

    natural_none: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Event -> prohibitions a person would state about it, tried first (the tempting next step,
    or its neighbour): ``collect_sapling`` -> ``place_plant``."""

    generic_none: tuple[str, ...] = ()
    """Prohibitions tried for any event, after its natural ones."""

    none_words: Mapping[str, str] = field(default_factory=dict)
    """Prohibited event -> the words after "but never" ("build a workbench"); covers every event
    of ``natural_none`` and ``generic_none``."""

    item_words: Mapping[str, str] = field(default_factory=dict)
    """Inventory item -> its plural in "hold {n} ... at once" (default: the name plus "s")."""

    tiers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Inventory item whose level is a tier, not a count -> the names of levels 1, 2, ...
    (``pickaxe`` -> wood, stone, iron, diamond): stated as "own a stone pickaxe or better"."""

    def __post_init__(self) -> None:
        # Read-only views: a world's words are shared by every narrator in the process.
        for name in ("phrases", "item_of", "nearby_words", "level_words", "commands", "place_words", "near_words",
                     "natural_none", "none_words", "item_words", "tiers"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "quiet", frozenset(self.quiet))

    def level_word(self, level: str) -> str:
        """A level's name in text: ``inventory_wood_pickaxe`` -> "wood pickaxe"."""
        got = self.level_words.get(level)
        return got if got is not None else level.removeprefix("inventory_").replace("_", " ")

    def nearby_word(self, name: str) -> str:
        """A nearby name's word in text: ``crafting_table`` -> "table", ``gnome_warrior`` -> "gnome warrior"."""
        got = self.nearby_words.get(name)
        return got if got is not None else name.replace("_", " ")

    def check(self, event_names: tuple[str, ...], level_names: tuple[str, ...], nearby_names: tuple[str, ...],
              placements: tuple[str, ...]) -> list[str]:
        """What these words miss or get wrong for a world with this vocabulary (empty: nothing)."""
        logged = [e for e in event_names if e not in set(placements)]
        levels, nearby = set(level_names), set(nearby_names)
        out = [f"no phrase for {e}" for e in logged if e not in self.phrases]
        out += [f"phrase for unknown event {e}" for e in self.phrases if e not in logged]
        dup = {p for p in self.phrases.values() if list(self.phrases.values()).count(p) > 1}
        out += [f"phrase {p!r} used twice" for p in sorted(dup)]
        out += [f"item_of {e} -> {lv}: unknown" for e, lv in self.item_of.items() if e not in self.phrases or lv not in levels]
        out += [f"unknown summary level {lv}" for lv in self.summary_levels if lv not in levels]
        out += [f"unknown nearby name {n}" for n in (*self.creatures, *self.quiet, *self.nearby_words) if n not in nearby]
        out += [f"no command for {e}" for e in logged if e not in self.commands]
        out += [f"command for unknown event {e}" for e in self.commands if e not in logged]
        for p in placements:
            x, y = p[len("place_"):].split("_near_")
            if f"place_{x}" not in self.phrases:
                out.append(f"placement {p}: no phrase for place_{x}")
            if x not in self.place_words or y not in self.near_words:
                out.append(f"placement {p}: no place_words/near_words")
        banned = {b for bs in self.natural_none.values() for b in bs} | set(self.generic_none)
        out += [f"no none_words for {b}" for b in sorted(banned) if b not in self.none_words]
        out += [f"none for unknown event {b}" for b in sorted(banned | set(self.natural_none)) if b not in self.commands]
        out += [f"unknown item {i}" for i in (*self.item_words, *self.tiers) if f"inventory_{i}" not in levels]
        return sorted(set(out))
