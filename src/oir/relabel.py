"""Relabeling: propose hindsight instructions for a segment, then verify each spec on it.

Every relabeler proposes ``{"text", "task"}`` pairs for a :class:`~oir.narrate.Segment`;
:func:`verify` parses each task spec and checks it with the Python evaluator on that segment.
Only proposals whose spec holds become relabels (rewarded at their first success step); the
rest are *flawed* and counted by reason. Nothing a relabeler returns is executed.

The :class:`NarratorRelabeler` is the offline default and the "oracle hindsight" baseline: it
reads the segment's counters and deterministically writes true instructions in its own phrase
grammar (which must never copy a human suite's texts, design doc §9). It is not a language model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import queue
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Protocol

import numpy as np

from oir import worlds
from oir.buffer import normalize_text
from oir.errors import first_line
from oir.narrate import Segment
from oir.tasks import (
    MAX_COUNT,
    Clause,
    SpecError,
    TaskSpec,
    first_success,
    first_successes,
    parse_spec,
)
from oir.words import Words

FLAW_REASONS = ("does-not-hold", "unknown-counter", "malformed-json", "empty", "duplicate", "no-spec", "text-mismatch",
                "held-before")
# --relabel values that ask a language model (the others: none, narrator)
LLM_RELABELS = ("llm", "narrator+llm")
# Similarity rewards only: the text never came within delta of any step's state text.
BELOW_DELTA = "below-delta"
# The spec a text-only relabel is stored with (similarity rewards accept text without a spec, as
# the paper's relabels had): it never holds, so such a row is rewarded by similarity alone.
UNVERIFIED_SPEC = TaskSpec(all=(Clause("collect_diamond", at_least=MAX_COUNT - 1),))


@dataclass(frozen=True)
class Flawed:
    """A proposal already known to be flawed before verification (an unparseable LLM reply, say).

    A relabeler puts one in its proposal list; :func:`verify` counts it under ``reason``.
    """

    reason: str  # one of FLAW_REASONS


class Relabeler(Protocol):
    """What every relabeler offers the training loop (narrator or LLM)."""

    name: str

    def propose_batch(self, segments: list[Segment]) -> list[list[Any]]:
        """One list of proposals per segment: ``{"text", "task"}`` dicts or :class:`Flawed`.

        Must not raise on bad model output or a down server: those become Flawed entries or
        empty lists.
        """
        ...

    def stats(self) -> dict[str, float]:
        """Running counters for metrics.jsonl (LLM calls, cache hits, latency...); may be empty."""
        ...


@dataclass(frozen=True)
class Relabel:
    """A verified hindsight instruction: its spec first holds at ``step`` (1-based) of the segment."""

    text: str
    spec: TaskSpec  # UNVERIFIED_SPEC for a text-only relabel (similarity rewards only)
    step: int

    @property
    def verified(self) -> bool:
        return self.spec is not UNVERIFIED_SPEC


# What an instruction may call the object of a counter's name (a counter's other words are the
# object's own name). A relabel's text must name something of every clause of its spec: a spec
# holding on the trace says nothing about a text that speaks of something else ("The game ended:
# the agent died." was a small model's text for ``energy`` at least 9).
_OBJECT_WORDS = {
    "wood": ("wood", "log", "timber", "lumber", "tree"),
    "table": ("table", "workbench", "bench"),
    "drink": ("drink", "water", "thirst", "sip", "hydrat"),
    "sapling": ("sapling", "seedling", "seed"),
    "plant": ("plant", "sapling", "seedling", "crop", "sow"),
    "cow": ("cow", "beef", "steak", "meat", "cattle"),
    "stone": ("stone", "rock", "cobble"),
    "water": ("water", "lake", "pond", "river", "sea", "shore"),
    "pickaxe": ("pickaxe", "pick"),
    "sword": ("sword", "blade"),
    "wake": ("wake", "awake", "woke", "sleep", "slept", "rest", "nap"),
    "energy": ("energy", "sleep", "slept", "rest", "tired", "awake", "wake", "woke", "fatigue", "nap"),
    "health": ("health", "heal", "hurt", "damage", "life", "injur", "hp", "alive", "surviv"),
    "food": ("food", "eat", "hunger", "hungry", "fed", "meal", "starv", "full"),
    # full Craftax's own
    "descend": ("descend", "down", "deeper", "below", "ladder", "floor", "level"),
    "ascend": ("ascend", "up", "climb", "ladder", "floor", "level"),
    "armour": ("armour", "armor"),
    "books": ("book",),
    "ruby": ("ruby", "rubies"),
    "pigman": ("pigman", "pigmen"),
}
# A counter's tokens that are its verb, not its object (Classic's, then full Craftax's own).
_VERBS = frozenset({"collect", "place", "eat", "make", "defeat", "inventory", "near", "up",
                    "kill", "enter", "learn", "cast", "find", "open", "spell"})


@cache
def _names(counter: str) -> tuple[str, ...]:
    """The words that name ``counter``'s object, from its name alone: so one check serves the
    counters of every world, and a counter two worlds share is named alike in both."""
    return tuple(w for t in counter.split("_") if t not in _VERBS for w in _OBJECT_WORDS.get(t, (t,)))


# The log's notation in an instruction ("a sapling x3 (sapling 6)", "t=12"), or its state lines
# ("Start: health 9, food 7, ..."): narration copied, not said. A zero-shot 0.5B model wrote whole
# "Start:" lines as instructions, which named their vitals and so passed the word check.
_LOG_NOTATION = re.compile(r"\bx\d|\bt=\d|\(\w[\w ]* \d+\)|\b(?:start|end|inventory|nearby):|\b(?:health|food|drink|energy) \d")
_SAYS: dict[tuple[str, str], bool] = {}  # (text, spec key) -> text_names_spec


def text_names_spec(text: str, spec: TaskSpec) -> bool:
    """Whether ``text`` names something of every clause of ``spec`` (one of the clause counter's
    object words: "wood" or "log" for ``collect_wood``, "table" or "water" for
    ``place_table_near_water``) and copies none of the log's notation. Lenient by design: the
    narrator's texts all pass, as do 334 of the standard suite's 336 human lines."""
    got = _SAYS.get(key := (text, spec.key()))
    if got is None:
        low = text.lower()
        got = not _LOG_NOTATION.search(low) and all(
            any(w in low for w in _names(c.counter)) for c in (*spec.all, *spec.none))
        if len(_SAYS) < 1 << 16:
            _SAYS[key] = got
    return got


def verify(
    segment: Segment, proposals: list[Any], reward_step: Callable[[str, TaskSpec], int | None] | None = None
) -> tuple[list[Relabel], Counter]:
    """Keep the proposals whose spec holds on ``segment``; count the others by reason.

    ``reward_step(text, spec)`` replaces the spec check for similarity rewards: the 1-based step
    to reward, or None (counted as ``below-delta``). A proposal without a spec (text only) is
    ``no-spec`` when verifying; with similarity rewards it is kept, with :data:`UNVERIFIED_SPEC`.
    Specs that are given must parse in both modes. A spec that first held within the segment's
    ``after`` steps (an earlier instruction's, in a world span) is ``held-before``: it was stated
    with that instruction's segment.
    """
    counters = segment.counters()
    world = segment.world.name  # specs name this world's counters
    flawed: Counter = Counter()
    parsed: list[tuple[str, TaskSpec] | None] = []  # None: counted as flawed already
    for p in proposals:
        parsed.append(None)
        if isinstance(p, Flawed):
            flawed[p.reason] += 1
            continue
        text = p.get("text") if isinstance(p, dict) else None
        if not isinstance(text, str) or not text.strip():
            flawed["empty"] += 1
            continue
        if p.get("task") is None and reward_step is None:
            flawed["no-spec"] += 1
            continue
        try:
            parsed[-1] = (text, UNVERIFIED_SPEC if p.get("task") is None else parse_task(p["task"], world))
        except SpecError as e:
            unknown = "unknown counter" in e.message or "belongs to the" in e.message  # none of this world's
            flawed["unknown-counter" if unknown else "malformed-json"] += 1
    if reward_step is None:  # every spec checked on the trace in one pass
        steps = iter(first_successes([x[1] for x in parsed if x is not None], counters))
    kept: list[Relabel] = []
    seen_text: set[str] = set()
    seen_spec: set[str] = set()
    for x in parsed:
        if x is None:
            continue
        text, spec = x
        step = next(steps) if reward_step is None else None
        if spec is not UNVERIFIED_SPEC and not text_names_spec(text, spec):
            flawed["text-mismatch"] += 1
            continue
        norm, key = _normalized(text), spec.key()
        if norm in seen_text or (spec is not UNVERIFIED_SPEC and key in seen_spec):
            flawed["duplicate"] += 1
            continue
        if reward_step is not None:
            step = reward_step(text, spec)
        if step is None:
            flawed["does-not-hold" if reward_step is None else BELOW_DELTA] += 1
            continue
        if step <= segment.after:
            flawed["held-before"] += 1
            continue
        seen_text.add(norm)
        seen_spec.add(key)
        kept.append(Relabel(text.strip(), spec, step))
    return kept, flawed


_NORMALIZED: dict[str, str] = {}  # a proposal's text -> normalize_text(text), for the texts proposed again and again


def _normalized(text: str) -> str:
    norm = _NORMALIZED.get(text)
    if norm is None:
        norm = normalize_text(text)
        if len(_NORMALIZED) < 1 << 16 and len(text) <= 200:
            _NORMALIZED[text] = norm
    return norm


_PARSED: dict[str, TaskSpec | SpecError] = {}  # a proposal's task (its repr) -> what parse_spec made of it


def parse_task(task: Any, world: str | None = None) -> TaskSpec:
    """:func:`~oir.tasks.parse_spec` in ``world`` (default Craftax-Classic), looked up for the small
    tasks relabelers propose again and again (a dict, or JSON text such as a spec's canonical key)."""
    try:
        key = repr(task) if isinstance(task, dict | str) else None
    except (RecursionError, ValueError):  # deep nesting, integers of thousands of digits
        key = None
    if key is None or len(key) > 512:
        return parse_spec(task, world)
    if world is not None and world != worlds.DEFAULT:  # one task text parses differently per world
        key = f"{world}:{key}"
    got = _PARSED.get(key)
    if got is None:
        try:
            got = parse_spec(task, world)
        except SpecError as e:
            got = e
        if len(_PARSED) < 1 << 16:
            _PARSED[key] = got
    if isinstance(got, SpecError):
        raise got.with_traceback(None)
    return got


# ---------------------------------------------------------------------------------------------
# The narrator relabeler. Its phrase grammar is each world's (oir.words.Words: Classic's in
# oir.events, full Craftax's in oir.worlds.craftax_full); the glue below is the same in all.

_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
_SEQUENCE_GLUE = {2: ("{}, then {}", "first {}, and after that {}", "{} and afterwards {}"),
                  3: ("{}, then {}, then {}", "first {}, next {}, and last {}")}
_NONE_GLUE = ("but never", "without once having to", "and do not")
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, eq=False)
class _Grammar:
    """What the narrator relabeler derives from one world's vocabulary and words, made once per
    world (propose is a hot path)."""

    world: str
    words: Words
    num_events: int
    event_names: tuple[str, ...]
    counter_index: dict[str, int]
    stated: tuple[str, ...]  # the events it states (those with words), in the world's event order
    stated_cols: np.ndarray  # their counter columns
    rank: dict[str, int]  # event -> its place in ``stated`` (ties in time are broken by it)
    placement_cols: np.ndarray
    inventory_cols: list[int]  # level columns of the inventory items, in their order
    inventory_items: tuple[str, ...]
    vitals: tuple[str, ...]
    vital_cols: list[int]


@cache
def _grammar(name: str) -> _Grammar:
    world = worlds.get(name)
    words: Words = world.words
    index = world.counter_index
    stated = tuple(e for e in world.event_names if e in words.commands)
    assert len(stated) == len(words.commands), f"{name}: words for events the world does not have"
    levels = list(world.level_names)
    return _Grammar(
        world=name,
        words=words,
        num_events=world.num_events,
        event_names=world.event_names,
        counter_index=index,
        stated=stated,
        stated_cols=np.array([index[e] for e in stated]),
        rank={e: i for i, e in enumerate(stated)},
        placement_cols=np.array([index[p] for p in world.placements], np.int64),
        inventory_cols=[levels.index(f"inventory_{item}") for item in world.inventory_items],
        inventory_items=world.inventory_items,
        vitals=world.vitals,
        vital_cols=[levels.index(v) for v in world.vitals],
    )


def _clause(counter: str, n: int) -> dict:
    return {"counter": counter, "at_least": int(n)}


def _phrase(words: Words, rng: random.Random, event: str, n: int) -> str:
    verbs, one, many = words.commands[event]
    verb = rng.choice(verbs)
    if n <= 1:
        return f"{verb} {one}"
    count = _NUMBERS.get(n, str(n)) if rng.random() < 0.7 else str(n)
    return f"{verb} {many.format(n=count)}"


def _holding(words: Words, rng: random.Random, item: str, peak: int) -> str:
    """An instruction to hold ``peak`` of ``item`` (a count), or its tier ``peak`` or better."""
    tiers = words.tiers.get(item)
    if tiers is None:
        return (f"{rng.choice(['hold', 'carry', 'build up a stock of'])} {_NUMBERS.get(peak, str(peak))} "
                f"{words.item_words.get(item, item.replace('_', ' ') + 's')} at once")
    tier = tiers[peak - 1]
    article = "an" if tier[0] in "aeiou" else "a"
    return f"{rng.choice(['own', 'get hold of', 'carry'])} {article} {tier} {item.replace('_', ' ')} or better"


class NarratorRelabeler:
    """Deterministic hindsight instructions from a segment's counters (no language model), in any
    world (a segment's array widths name it; its :class:`~oir.words.Words` word the instructions).

    Each task gets one of ``phrasings`` wordings, picked by the segment: the same task is
    worded the same few ways all run long, so the buffer holds a handful of texts per task
    rather than one per verb and numeral combination, and few new texts need embedding.
    """

    name = "narrator"
    in_process = True  # plain data: it can be rebuilt in a relabel process (AsyncRelabeler)

    def __init__(self, max_proposals: int = 8, phrasings: int = 3):
        self.max_proposals, self.phrasings = max_proposals, phrasings

    def propose(self, segment: Segment) -> list[dict]:
        """Every kind of true statement the counters support, at most ``max_proposals`` of them,
        taken in turn from each kind so that a small cap still covers every kind."""
        g = _grammar(segment.world.name)
        words, index = g.words, g.counter_index
        cum = segment.counters()[:, :g.num_events]
        totals = cum[-1]
        happened_idx = g.stated_cols[totals[g.stated_cols] > 0]
        if not len(happened_idx):
            return []
        after = segment.after  # a world span: state only what first holds after the earlier instructions
        steps = (cum[:, happened_idx] > 0).argmax(axis=0) + 1
        first = {g.event_names[i]: int(t) for i, t in zip(happened_idx.tolist(), steps.tolist(), strict=True)}
        happened = list(first)  # in the world's event order (the columns are)
        # The segment's own seed (wording variant, which proposals a cap keeps): a function of
        # what happened when, the same in every process (ints hash alike everywhere).
        seed = hash((segment.length, *happened_idx.tolist(), *steps.tolist(), *totals[happened_idx].tolist())) & _MASK64
        variant = seed % self.phrasings
        order = sorted(happened, key=lambda a: (first[a], g.rank[a]))
        kinds: dict[str, list[dict]] = {}

        def add(kind: str, args: tuple, task: dict, say: Callable[[random.Random], str], step: int) -> None:
            """Propose ``task`` (first true at ``step``) worded by ``say(rng)``, whose randomness is a
            function of the task and the segment's variant only: so the text is too, and is looked up
            once made."""
            if step <= after:
                return
            key = (g.world, kind, args, variant)  # args: what the kind's task is made from
            text = _TEXTS.get(key)
            if text is None:
                text = say(random.Random(_wording_seed(task, variant)))
                text = text[0].upper() + text[1:] + "."
                if len(_TEXTS) < _TEXTS_MAX:
                    _TEXTS[key] = text
            kinds.setdefault(kind, []).append({"text": text, "task": task})

        def done_by(counter: str, step: int) -> bool:
            """Whether ``counter`` happened at any of the steps 1..step."""
            if step not in done_rows:
                done_rows[step] = (cum[step - 1] > 0).tolist()
            return done_rows[step][index[counter]]

        done_rows: dict[int, list[bool]] = {}

        phrase = partial(_phrase, words)
        # Everything that happened, as often as it happened, and the first time of each.
        for a in order:
            n = int(totals[index[a]])
            for k in sorted({1, n}, reverse=True):
                reached = first[a] if k == 1 else int((cum[:, index[a]] >= k).argmax()) + 1
                add("count" if k == n else "prefix", (a, k), {"all": [_clause(a, k)]},
                    lambda r, a=a, k=k: phrase(r, a, k), reached)
        # Pairs and triples of first occurrences, each next to the other, in the order they were
        # first done (all pairs, however far apart, and every count on the way to a total were
        # measured and retired: no gain).
        runs = [order[i:i + size] for size in (2, 3) for i in range(len(order) - size + 1)]
        for run in runs:
            size = len(run)
            if any(first[x] >= first[y] for x, y in itertools.pairwise(run)):
                continue  # two at the same step: no order to state

            def sequence(r, run=run, size=size):
                parts = [phrase(r, x, 1) for x in run]
                return r.choice(_SEQUENCE_GLUE[size]).format(*parts)

            add(f"sequence{size}", tuple(run), {"all": [_clause(x, 1) for x in run], "ordered": True}, sequence,
                first[run[-1]])
        # A prohibition that held until the goal was reached, natural ones first.
        for a in order:
            banned = next((b for b in (*words.natural_none.get(a, ()), *words.generic_none)
                           if b != a and not done_by(b, first[a])), None)
            if banned is None:
                continue
            add("prohibition", (a, banned), {"all": [_clause(a, 1)], "none": [_clause(banned, 1)]},
                lambda r, a=a, banned=banned: f"{phrase(r, a, 1)} {r.choice(_NONE_GLUE)} {words.none_words[banned]}",
                first[a])
        # Inventory the agent built up in this segment (levels are absolute: only gains it made).
        peaks = segment.levels[1:, g.inventory_cols].max(axis=0).tolist()
        held0 = segment.levels[0, g.inventory_cols].tolist()
        for col, item, peak, before in zip(g.inventory_cols, g.inventory_items, peaks, held0, strict=True):
            if item in words.tiers:  # a tier: state at most the top one ("a diamond pickaxe or better")
                peak = min(peak, len(words.tiers[item]))
            if peak >= 2 and peak > before:
                add("inventory", (item, peak), {"all": [{"counter": f"inventory_{item}", "at_least": peak}]},
                    lambda r, item=item, peak=peak: _holding(words, r, item, peak),
                    int((segment.levels[1:, col] >= peak).argmax()) + 1)
        # A vital kept up while the first thing was done (the first new thing, in a world span).
        a = next((x for x in order if first[x] > after), None)
        lows = {} if a is None else dict(zip(g.vitals, segment.levels[1:first[a] + 1, g.vital_cols].min(axis=0).tolist(),
                                              strict=True))
        kept_up = [v for v in lows if lows[v] >= 2]  # the one that came nearest to a floor of 2
        vital = min(kept_up, key=lambda v: (lows[v], g.vitals.index(v))) if kept_up else None
        floor = min(lows[vital], 5) if vital else 0
        if vital:
            add("vitals", (a, vital, floor), {"all": [_clause(a, 1)], "none": [{"counter": vital, "at_most": floor - 1}]},
                lambda r: f"{phrase(r, a, 1)} {r.choice(['keeping your', 'with your'])} {vital} at {floor} or more",
                first[a])
        # Where things were placed.
        for i in g.placement_cols[totals[g.placement_cols] > 0].tolist():
            placed, near = g.event_names[i][len("place_"):].split("_near_")

            def placement(r, placed=placed, near=near):
                verb, where = r.choice(["put", "place", "set"]), r.choice(["next to", "beside", "right by"])
                return f"{verb} {words.place_words[placed]} {where} {words.near_words[near]}"

            add("placement", (i,), {"all": [_clause(g.event_names[i], 1)]}, placement,
                int((cum[:, i] > 0).argmax()) + 1)
        # How quickly the first (new) thing was done.
        if a is not None:
            budget = 25 * -(-first[a] // 25)
            add("budget", (a, budget), {"all": [_clause(a, 1)], "within": budget},
                lambda r: f"{phrase(r, a, 1)} {r.choice(['within', 'in no more than'])} {budget} steps", first[a])
        return _round_robin(list(kinds.values()), self.max_proposals, seed)

    def propose_batch(self, segments: list[Segment]) -> list[list[dict]]:
        return [self.propose(s) for s in segments]

    def stats(self) -> dict[str, float]:
        return {}


# (world, kind, task's makings, variant) -> the narrator's text: the wording is a function of these alone
_TEXTS: dict[tuple[str, str, tuple, int], str] = {}
_TEXTS_MAX = 1 << 16


def _wording_seed(task: dict, variant: int) -> int:
    """The seed of a task's wording: from its canonical JSON."""
    key = json.dumps(task, sort_keys=True) + f"#{variant}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def _round_robin(groups: list[list], k: int, seed: int) -> list:
    """Up to ``k`` items, one from each group in turn (groups and each group's items in an order
    drawn from ``seed``), so that every kind of proposal keeps a place under a small cap."""
    queues = [g if len(g) < 2 else [g[j] for j in _drawn(len(g), seed, i + 1)] for i, g in enumerate(groups)]
    queues = [queues[j] for j in _drawn(len(queues), seed, 0)]  # kinds in turn, from a random one
    return [x for row in itertools.zip_longest(*queues) for x in row if x is not None][:k]


def _drawn(n: int, seed: int, salt: int) -> list[int]:
    """A permutation of range(n) that is a function of (seed, salt): cheaper than seeding a
    ``random.Random`` per segment, and the same in every process."""
    return sorted(range(n), key=lambda j: hash((seed, salt, j)))


# ---------------------------------------------------------------------------------------------
# Similarity rewards (the paper's ablation) and asynchronous relabeling.


class JointRelabeler:
    """An LLM relabeler's proposals first, then the narrator's, for every segment.

    The LLM adds to the rule-based narrator rather than replacing it: a small local model writes
    a handful of templates in a run, far fewer instructions than the narrator states, so alone it
    trains on a narrower language (docs/results.md). Its proposals go first, so where both state
    one spec, :func:`verify` keeps the LLM's wording and drops the narrator's as a duplicate.

    ``stats`` says what the LLM really added: the segments with at least one LLM proposal that
    verifies (``joint_llm_share``), and those where one of them states a spec the narrator did not
    propose there (``joint_llm_novel_share``). Those are checked here on the trace, apart from the
    training path's own verification, which sees all proposals.
    """

    name = "narrator+llm"

    def __init__(self, llm: Relabeler, narrator: Relabeler):
        self.llm, self.narrator = llm, narrator
        self._lock = threading.Lock()
        self._counts: Counter = Counter()

    @property
    def library(self):
        """The LLM's template library, if it has one (the run saves it as templates.jsonl)."""
        return getattr(self.llm, "library", None)

    def describe(self) -> str:
        llm = self.llm.describe() if hasattr(self.llm, "describe") else self.llm.name
        return f"{llm}, added to the narrator relabeler (rule-based, not a language model)"

    def propose_batch(self, segments: list[Segment]) -> list[list[Any]]:
        from_llm = self.llm.propose_batch(segments)
        from_narrator = self.narrator.propose_batch(segments)
        counts: Counter = Counter()
        for seg, mine, theirs in zip(segments, from_llm, from_narrator, strict=True):
            kept, _ = verify(seg, mine)
            stated = {parse_task(p["task"], seg.world.name).key() for p in theirs
                      if isinstance(p, dict) and p.get("task") is not None}
            novel = sum(r.spec.key() not in stated for r in kept)
            counts.update(segments=1, llm_verified=len(kept), llm_novel=novel,
                          llm_segments=bool(kept), llm_novel_segments=bool(novel))
        with self._lock:
            self._counts.update(counts)
        return [mine + theirs for mine, theirs in zip(from_llm, from_narrator, strict=True)]

    def stats(self) -> dict[str, float]:
        with self._lock:
            c = Counter(self._counts)
        n = max(c["segments"], 1)
        return {**self.narrator.stats(), **self.llm.stats(),
                "joint_llm_verified": float(c["llm_verified"]), "joint_llm_novel": float(c["llm_novel"]),
                # of the segments relabeled, those with a verified LLM relabel; those where one of
                # them states a spec the narrator did not
                "joint_llm_share": c["llm_segments"] / n, "joint_llm_novel_share": c["llm_novel_segments"] / n}

    def close(self) -> None:
        for part in (self.llm, self.narrator):
            if hasattr(part, "close"):
                part.close()


def similarity_hits(instr_emb: np.ndarray, event_emb: np.ndarray, delta: float) -> np.ndarray:
    """bool[M, E]: instruction m is rewarded by a step with event e (cosine of the texts >= delta)."""
    return (np.asarray(instr_emb) @ np.asarray(event_emb).T) >= delta


def first_similar_step(segment: Segment, hits: np.ndarray) -> int | None:
    """The 1-based first step of ``segment`` with an event in ``hits`` (bool[E]), or None."""
    steps = np.flatnonzero(((segment.events > 0) & hits[None, :]).any(axis=1))
    return int(steps[0]) + 1 if len(steps) else None


def _similar_step(segment: Segment, hits: dict[str, np.ndarray], text: str, spec: TaskSpec) -> int | None:
    return first_similar_step(segment, hits[text])


SIMILARITY_COUNTS = ("sim_rewards", "sim_false", "spec_held", "sim_missed", "unverified")


def similarity_errors(
    proposals: list[Any], counters: np.ndarray, sim_step: Callable[[str, TaskSpec], int | None],
    world: str | None = None,
) -> Counter:
    """How similarity rewards on one segment compare with its proposals' verified specs.

    For every proposal with a text and a parseable spec, ``v`` is the step its spec first holds
    (None: never) and ``s`` the step similarity rewards it (None: below delta):

    * ``sim_rewards`` counts s given; ``sim_false`` those given where the spec did not hold (v is
      None, or s < v: rewarded before the spec held);
    * ``spec_held`` counts v given; ``sim_missed`` those that similarity never rewarded (s None).

    A reward after the spec first held (s > v) counts as neither: it is late, not false.
    Text-only proposals have no spec to check: ``unverified``.
    """
    out: Counter = Counter()
    for p in proposals:
        text = p.get("text") if isinstance(p, dict) else None
        if not isinstance(text, str) or not text.strip():
            continue
        if p.get("task") is None:
            out["unverified"] += 1
            continue
        try:
            spec = parse_spec(p["task"], world)  # the segment's world (default Craftax-Classic)
        except SpecError:
            continue
        v, s = first_success(spec, counters), sim_step(text, spec)
        out["sim_rewards"] += s is not None
        out["sim_false"] += s is not None and (v is None or s < v)
        out["spec_held"] += v is not None
        out["sim_missed"] += v is not None and s is None
    return out


@dataclass
class RelabelResult:
    """What relabeling made of one segment."""

    info: Any  # the segments.SegmentInfo it came from
    relabels: list[Relabel]
    flawed: Counter
    proposed: int
    unsupported: int = 0  # similarity rewards only: rewarded, but the proposal's spec does not hold
    rows: list[int | None] | None = None  # set by a sink: the buffer row each relabel went to
    similarity: Counter | None = None  # similarity rewards only: similarity_errors of its proposals


class AsyncRelabeler:
    """Runs a relabeler and the verification in a worker thread, off the jitted training path.

    ``submit`` takes a :class:`~oir.segments.SegmentBatch` and never blocks (past ``max_pending``
    waiting segments, new ones are dropped and counted); ``drain`` returns whatever is done. A
    relabeler that raises costs its batch, never the run. With ``encoder`` it also embeds the
    relabels' texts (into the encoder's cache), off the training thread. With ``event_emb`` too it
    rewards by similarity instead of the spec. ``sink`` runs on each finished batch in the worker
    too (the trainer adds relabels to its buffer there).

    With ``processes > 0`` and a relabeler that can live in another process (``in_process``: the
    narrator), proposing and verifying run in that many child processes, so they never hold this
    process's GIL: the worker thread hands them segment arrays and gets back texts, canonical
    spec JSON and steps. A child that dies is one warning line; relabeling then goes on in the
    thread, and nothing submitted is lost.
    """

    def __init__(
        self,
        relabeler: Relabeler,
        batch: int = 64,
        max_pending: int = 4096,
        encoder=None,
        event_emb: np.ndarray | None = None,
        delta: float = 0.5,
        sink: Callable[[list[RelabelResult]], None] | None = None,
        processes: int = 0,
    ):
        self.relabeler, self.batch, self.max_pending, self.sink = relabeler, batch, max_pending, sink
        self.encoder, self.event_emb, self.delta = encoder, event_emb, delta
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.busy_s = 0.0
        self.dropped = 0
        self.errors = 0
        self.last_error = ""
        self.process_deaths = 0
        self._outstanding = 0  # segments submitted and not yet relabeled or dropped
        self._idle = threading.Condition()
        self.procs = None
        if processes > 0 and getattr(relabeler, "in_process", False) and event_emb is None:
            self.procs = _start_processes(relabeler, processes)
        self._thread = threading.Thread(target=self._run, name="oir-relabel", daemon=True)
        self._thread.start()

    def submit(self, batch) -> int:
        """Queue a batch's segments; returns how many were taken (the first ones; the rest dropped)."""
        room = max(self.max_pending - self._outstanding, 0)
        if len(batch) > room:
            self.dropped += len(batch) - room
            batch = batch.select(slice(0, room))
        if len(batch):
            with self._idle:
                self._outstanding += len(batch)
            self.inbox.put(batch)
        return len(batch)

    def flush(self) -> None:
        """Wait until every submitted segment is relabeled (its results then wait in ``drain``)."""
        with self._idle:
            self._idle.wait_for(lambda: self._outstanding == 0 or not self._thread.is_alive())

    def _done(self, k: int) -> None:
        with self._idle:
            self._outstanding -= k
            self._idle.notify_all()

    def drain(self) -> list[RelabelResult]:
        out = []
        while True:
            try:
                out.extend(self.outbox.get_nowait())
            except queue.Empty:
                return out

    def pending(self) -> int:
        return self._outstanding

    def take_waiting(self) -> list:
        """The batches not yet started, taken out of the queue (a checkpoint keeps them, and
        they are submitted again): then :meth:`flush` waits for the batch in flight only, not for a
        slow LLM to get through thousands of segments."""
        out = []
        while True:
            try:
                batch = self.inbox.get_nowait()
            except queue.Empty:
                return out
            if batch is None:  # closing: leave the stop mark
                self.inbox.put(None)
                return out
            self._done(len(batch))
            out.append(batch)

    def close(self, timeout: float = 60.0) -> None:
        """Stop after the batch in flight; segments still waiting are dropped (and counted)."""
        self.dropped += sum(len(batch) for batch in self.take_waiting())
        self.inbox.put(None)
        self._thread.join(timeout=timeout)
        if self.procs is not None:
            self.procs.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        from oir.segments import SegmentBatch

        while True:
            first = self.inbox.get()
            if first is None:
                return
            batches = [first]
            while sum(map(len, batches)) < self.batch:  # segments that waited meanwhile join this call
                try:
                    nxt = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.inbox.put(None)  # stop after this batch
                    break
                batches.append(nxt)
            batch = SegmentBatch.concat(batches)
            start = time.perf_counter()
            try:
                self.outbox.put(self._relabel_batch(batch))
            except Exception as e:  # a broken relabeler must not stop training
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                if self.errors == 1:  # said once; relabel_errors counts the rest
                    print(f"oir: warning: the relabeler failed on {len(batch)} segments ({first_line(e)}); training "
                          "goes on without their relabels (relabel_errors counts such batches)", file=sys.stderr)
            self.busy_s += time.perf_counter() - start
            self._done(len(batch))

    def _relabel_batch(self, batch) -> list[RelabelResult]:
        infos = batch.infos()
        if self.procs is None:
            return self._relabel(infos)
        from concurrent.futures.process import BrokenProcessPool

        k = self.procs._max_workers
        cuts = np.linspace(0, len(batch), k + 1).astype(int)
        try:
            futures = [self.procs.submit(_child_relabel, batch.select(slice(a, b)))
                       for a, b in itertools.pairwise(cuts) if b > a]
            replies = [r for f in futures for r in f.result()]
        except BrokenProcessPool as e:
            self.process_deaths += 1
            print(f"oir: warning: the relabel process died ({e or 'killed'}); relabeling goes on in the "
                  "training process's worker thread", file=sys.stderr, flush=True)
            self.procs.shutdown(wait=False, cancel_futures=True)
            self.procs = None
            return self._relabel(infos)
        results = []
        for info, (kept, flawed, proposed) in zip(infos, replies, strict=True):
            world = info.segment.world.name  # the spec names this world's counters
            relabels = [Relabel(text, parse_task(key, world), step) for text, key, step in kept]
            results.append(RelabelResult(info, relabels, Counter(flawed), proposed))
        return self._finish(results)

    def _relabel(self, infos: list) -> list[RelabelResult]:
        segments = [i.segment for i in infos]
        proposals = self.relabeler.propose_batch(segments)
        results = []
        for info, props in zip(infos, proposals, strict=True):
            if self.event_emb is None or self.encoder is None:
                kept, flawed = verify(info.segment, props)
                results.append(RelabelResult(info, kept, flawed, len(props)))
                continue
            texts = [p["text"] for p in props if isinstance(p, dict) and isinstance(p.get("text"), str)]
            emb = dict(zip(texts, self.encoder.encode(texts), strict=True)) if texts else {}
            hits = {t: (self.event_emb @ e) >= self.delta for t, e in emb.items()}
            step = partial(_similar_step, info.segment, hits)
            kept, flawed = verify(info.segment, props, step)
            counters = info.segment.counters()
            unsupported = sum(r.verified and first_success(r.spec, counters) is None for r in kept)
            errors = similarity_errors(props, counters, step, info.segment.world.name)
            results.append(RelabelResult(info, kept, flawed, len(props), unsupported, similarity=errors))
        return self._finish(results)

    def _finish(self, results: list[RelabelResult]) -> list[RelabelResult]:
        if self.encoder is not None:
            # Embed the new texts here, so later lookups hit the encoder's cache.
            self.encoder.encode([r.text for res in results for r in res.relabels])
        if self.sink is not None:
            self.sink(results)
        return results


# ---------------------------------------------------------------------------------------------
# Relabel processes: the child side.

_CHILD: dict[str, Any] = {}


def _start_processes(relabeler: Relabeler, processes: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent runs XLA's and the worker's threads, which fork would copy mid-flight
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_child_init, initargs=(relabeler,))


def _child_init(relabeler: Relabeler) -> None:
    _CHILD["relabeler"] = relabeler


def _child_relabel(batch) -> list[tuple[list[tuple[str, str, int]], dict[str, int], int]]:
    """In a relabel process: propose and verify; per segment ``(kept, flawed, proposed)``, each kept
    relabel as ``(text, canonical spec JSON, step)``."""
    segments = batch.segments()
    out = []
    for seg, props in zip(segments, _CHILD["relabeler"].propose_batch(segments), strict=True):
        kept, flawed = verify(seg, props)
        out.append(([(r.text, r.spec.key(), r.step) for r in kept], dict(flawed), len(props)))
    return out

