"""Relabeling: verification by reason, and the narrator relabeler's proposals always verify."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oir.buffer import normalize_text
from oir.events import ACHIEVEMENTS, COUNTER_INDEX, LEVEL_NAMES, NUM_EVENTS, NUM_LEVELS, PLACEMENTS
from oir.narrate import NUM_NEARBY, Segment
from oir.relabel import NarratorRelabeler, verify
from oir.suites import STANDARD_SUITE, load_suite


def segment_with(events_at: dict[int, list[str]], length: int = 30) -> Segment:
    events = np.zeros((length, NUM_EVENTS), np.int32)
    for t, names in events_at.items():
        for name in names:
            events[t - 1, COUNTER_INDEX[name]] += 1
    levels = np.zeros((length + 1, NUM_LEVELS), np.int32)
    levels[:, LEVEL_NAMES.index("health")] = 9
    return Segment(events, levels, np.zeros((length + 1, NUM_NEARBY), bool))


SEG = segment_with({3: ["collect_wood"], 5: ["collect_wood"], 9: ["place_table", "place_table_near_water"]})


def test_verify_counts_flaws_by_reason():
    wood2 = {"all": [{"counter": "collect_wood", "at_least": 2}]}
    proposals = [
        {"text": "collect two wood", "task": wood2},
        {"text": "mine a diamond", "task": {"all": [{"counter": "collect_diamond", "at_least": 1}]}},
        {"text": "do a dance", "task": {"all": [{"counter": "dance", "at_least": 1}]}},
        {"text": "broken", "task": "{all: ["},
        {"text": "", "task": wood2},
        {"text": "no task"},
        "just prose",
        {"text": "gather 2 wood", "task": wood2},
        {"text": "Collect two wood!", "task": {"all": [{"counter": "collect_wood", "at_least": 1}]}},
        {"text": "wood then table", "task": {"all": [{"counter": "collect_wood", "at_least": 2},
                                                     {"counter": "place_table", "at_least": 1}], "ordered": True}},
    ]
    kept, flawed = verify(SEG, proposals)
    assert [(r.text, r.step) for r in kept] == [("collect two wood", 5), ("wood then table", 9)]
    assert flawed == {"does-not-hold": 1, "unknown-counter": 1, "malformed-json": 1, "empty": 3, "duplicate": 2}
    assert len(kept) + sum(flawed.values()) == len(proposals)


def test_narrator_proposals_hold_and_are_deterministic():
    narrator = NarratorRelabeler(max_proposals=10)
    proposals = narrator.propose(SEG)
    assert proposals == narrator.propose(SEG)
    kept, flawed = verify(SEG, proposals)
    assert not flawed and len(kept) == len(proposals) >= 4
    specs = {json.dumps(r.spec.to_json(), sort_keys=True): r.step for r in kept}
    assert specs[json.dumps({"all": [{"at_least": 2, "counter": "collect_wood"}]}, sort_keys=True)] == 5
    assert any("water" in r.text for r in kept)  # the placement next to water
    assert any(r.spec.ordered for r in kept)  # wood, then the table
    assert narrator.propose(segment_with({})) == []


events_st = st.dictionaries(
    st.integers(1, 40),
    st.lists(st.sampled_from(list(ACHIEVEMENTS) + list(PLACEMENTS[:12])), min_size=1, max_size=3),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(events_st)
def test_narrator_never_proposes_a_flawed_relabel(events_at):
    seg = segment_with(events_at, length=40)
    kept, flawed = verify(seg, NarratorRelabeler().propose(seg))
    assert not flawed
    assert all(1 <= r.step <= seg.length for r in kept)


def test_narrator_grammar_never_copies_suite_texts():
    suite = {normalize_text(x.text) for x in load_suite(STANDARD_SUITE)}
    rng = np.random.default_rng(0)
    narrator = NarratorRelabeler(max_proposals=50)
    texts = set()
    for _ in range(300):
        events_at = {int(t): list(rng.choice(list(ACHIEVEMENTS) + list(PLACEMENTS), size=rng.integers(1, 3)))
                     for t in rng.integers(1, 40, size=rng.integers(1, 6))}
        texts |= {normalize_text(p["text"]) for p in narrator.propose(segment_with(events_at, 40))}
    assert len(texts) > 300
    assert not texts & suite
