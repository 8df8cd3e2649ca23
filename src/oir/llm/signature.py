"""Event signatures: the LLM's work keyed on what happened in a segment, not on its narration.

Every narration is unique (step stamps, positions), so a reply cache keyed on it never hits.
A segment's *signature* keeps what a relabel can be about: the distinct achievements in the order
they first happened, each count bucketed, and the end state bucketed (items held, pressing
needs, whether the game ended). Segments with one signature share the LLM's reply: its proposals
are *re-bound* to each segment (a count that stated the first segment's total states this one's,
in the spec and in the text) and then verified on that segment like any proposal.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np

from oir.narrate import Segment

_COUNT_BUCKETS = (1, 2, 3, 5, 9)  # 1, 2, 3-4, 5-8, 9+
_HELD_BUCKETS = (1, 2, 5)  # 1, 2-4, 5+
_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}


def _bucket(n: int, edges: tuple[int, ...]) -> int:
    return int(np.searchsorted(edges, n, side="right"))


def event_signature(seg: Segment) -> str:
    """``wood:3>table:1|held wood:2|needs:food|ended`` style key of what happened and where it ended."""
    w = seg.world
    stated = w.event_names[: w.num_events - len(w.placements)]  # what the narration logs
    totals = seg.events.sum(axis=0)
    happened = [a for a in stated if totals[w.counter_index[a]] > 0]
    first = {a: int(np.argmax(seg.events[:, w.counter_index[a]] > 0)) for a in happened}
    order = sorted(happened, key=lambda a: (first[a], w.counter_index[a]))
    events = ">".join(f"{a}:{_bucket(int(totals[w.counter_index[a]]), _COUNT_BUCKETS)}" for a in order)
    end = seg.levels[-1]
    held = ",".join(f"{i}:{_bucket(int(end[w.level_names.index('inventory_' + i)]), _HELD_BUCKETS)}"
                    for i in w.inventory_items if end[w.level_names.index("inventory_" + i)] > 0)
    needs = ",".join(v for v in ("health", "food", "drink", "energy") if end[w.level_names.index(v)] < 4)
    return f"{events}|held {held}|needs {needs}|{'ended' if seg.ended else 'going'}"


def _totals(seg: Segment) -> dict[str, int]:
    totals = seg.events.sum(axis=0)
    return {name: int(totals[i]) for i, name in enumerate(seg.world.event_names)}


def _renumber(text: str, old: int, new: int) -> str:
    """``text`` with the count ``old`` (digits or an English word) said as ``new``."""
    for pattern, repl in ((rf"\b{old}\b", str(new)), (rf"\b{_WORDS.get(old, '#')}\b", _WORDS.get(new, str(new)))):
        text, n = re.subn(pattern, repl, text, count=1, flags=re.I)
        if n:
            return text
    return text


def rebind(proposals: list[Any], source: Segment, target: Segment) -> list[Any]:
    """``source``'s proposals for ``target`` (same signature): every event count that stated a
    total of ``source`` states ``target``'s total, in the spec and in the text. Anything else is
    copied as it is; verification on ``target`` decides what holds."""
    was, now = _totals(source), _totals(target)
    out = []
    for p in proposals:
        if not isinstance(p, dict) or not isinstance(p.get("task"), dict):
            out.append(p)
            continue
        q = copy.deepcopy(p)
        for clause in q["task"].get("all", []) if isinstance(q["task"].get("all"), list) else []:
            if not isinstance(clause, dict):
                continue
            name, n = clause.get("counter"), clause.get("at_least")
            if name in was and isinstance(n, int) and n == was[name] and now[name] != n and now[name] > 0:
                clause["at_least"] = now[name]
                if isinstance(q.get("text"), str):
                    q["text"] = _renumber(q["text"], n, now[name])
        out.append(q)
    return out
