"""Narration and the narrator relabeler in full Craftax (oir.worlds.craftax_full), and its view.

Full Craftax's words are its module's ``WORDS``; the narrator finds them from a segment's array
widths. The relabeler's proposals must all verify there as in Classic (tests/test_relabel.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oir import events as classic
from oir import worlds
from oir.buffer import normalize_text
from oir.narrate import Segment, caption_step, event_texts, narrate
from oir.relabel import NarratorRelabeler, text_names_spec, verify
from oir.tasks import parse_spec
from oir.worlds import craftax_full as full

W = worlds.get("full")
LEVEL = {name: i for i, name in enumerate(W.level_names)}
NEAR = {name: i for i, name in enumerate(W.nearby_names)}
# The most a level can be in the game: a tier, a floor, a flag, else a count (9 in practice).
_CAPS = {"floor": 8, "inventory_pickaxe": 4, "inventory_sword": 4, "inventory_bow": 1,
         **{f"inventory_{p}": 2 for p in full.ARMOUR_PIECES}}


def blank(steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    events = np.zeros((steps, W.num_events), np.int32)
    levels = np.zeros((steps + 1, W.num_levels), np.int32)
    for v in W.vitals:
        levels[:, LEVEL[v]] = 9
    return events, levels, np.zeros((steps + 1, len(W.nearby_names)), bool)


def test_full_words_cover_the_world_and_classic_keeps_its_own():
    for w in (W, worlds.get("classic")):
        assert w.words.check(w.event_names, w.level_names, w.nearby_names, w.placements) == []
    assert W.words is full.WORDS and worlds.get("classic").words is classic.WORDS
    assert len(event_texts(W)) == W.num_events and len(set(event_texts(W))) == W.num_events
    assert event_texts(W)[W.counter_index["place_torch_near_enchantment_table"]] == (
        "placed a torch next to enchantment table")


def test_a_full_segment_reads_as_expected():
    """Potion at step 2, a stone pickaxe at 3, down into the Dungeon at 5, a gnome warrior killed
    at 6 (twice counted: the achievement and the kill), in view on the way."""
    events, levels, nearby = blank(6)
    ci = W.counter_index
    levels[:, LEVEL["inventory_potion_red"]] = [2, 2, 1, 1, 1, 1, 1]
    levels[:, LEVEL["inventory_pickaxe"]] = [1, 1, 1, 2, 2, 2, 2]
    levels[5:, LEVEL["floor"]] = 1
    events[1, [ci["drink_potion_red"], ci["drink_potion"]]] = 1
    events[2, ci["make_stone_pickaxe"]] = 1
    events[4, [ci["descend"], ci["enter_dungeon"]]] = 1
    events[5, [ci["kill_gnome_warrior"], ci["defeat_gnome_warrior"]]] = 1
    nearby[:5, [NEAR["grass"], NEAR["tree"], NEAR["out_of_bounds"]]] = True
    nearby[5:, [NEAR["path"], NEAR["wall_moss"], NEAR["ladder_up"]]] = True
    nearby[5:, NEAR["gnome_warrior"]] = nearby[6, NEAR["arrow"]] = True
    seg = Segment(events, levels, nearby, ended=True)
    assert seg.world is W
    assert narrate(seg) == "\n".join([
        "Segment of 6 steps.",
        "Start: floor 0, health 9, food 9, drink 9, energy 9, mana 9, xp 0; inventory: pickaxe tier 1, "
        "red potions 2; nearby: grass, tree.",
        "t=2 drank a potion",
        "t=2 drank a red potion (red potions 1)",
        "t=3 made a stone pickaxe",
        "t=5 entered the Dungeon",
        "t=5 went down to the next floor (floor 1)",
        "t=6 defeated a gnome warrior",
        "t=6 killed a gnome warrior",
        "t=6 the game ended.",
        "End: floor 1, health 9, food 9, drink 9, energy 9, mana 9, xp 0; inventory: pickaxe tier 2, "
        "red potions 1; nearby: ladder up, mossy wall; gnome warrior, arrow.",
    ])
    assert caption_step(seg, 3) == "made a stone pickaxe; pickaxe tier 1 -> 2"
    assert caption_step(seg, 5) == ("entered the Dungeon; went down to the next floor (floor 1); floor 0 -> 1; "
                                    "now in view: mossy wall, ladder up, gnome warrior")
    kept, flawed = verify(seg, NarratorRelabeler(max_proposals=100).propose(seg))
    assert not flawed
    texts = {r.text for r in kept}
    assert {"Own a stone pickaxe or better.", "Carry a stone pickaxe or better.",
            "Get hold of a stone pickaxe or better."} & texts
    assert any(r.spec.to_json() == {"all": [{"counter": "descend", "at_least": 1}]} and r.step == 5 for r in kept)


def test_segment_arrays_name_their_world_and_must_fit_it():
    events, levels, nearby = blank(3)
    with pytest.raises(ValueError, match="nearby"):
        Segment(events, levels, np.zeros((4, classic.NUM_NEARBY), bool))
    with pytest.raises(ValueError, match="fit no world"):
        Segment(events[:, :-1], levels, nearby)
    assert Segment(events, levels, nearby).world.name == "full"


def _commanded_texts(words, event: str) -> set[str]:
    verbs, one, many = words.commands[event]
    return {normalize_text(f"{v} {o}") for v in verbs for o in (one, many.format(n=2), many.format(n="two"))}


@pytest.mark.parametrize("name", worlds.NAMES)
def test_every_wording_names_its_counter_and_no_two_events_share_one(name):
    """What keeps proposals from being flawed as text-mismatch or duplicate, checked on every
    wording rather than on the ones random traces happen to draw."""
    w = worlds.get(name)
    words = w.words
    said = {e: _commanded_texts(words, e) for e in words.commands}
    for a, b in itertools.combinations(said, 2):
        assert not said[a] & said[b], (a, b, said[a] & said[b])
    for e, texts in said.items():
        spec = parse_spec({"all": [{"counter": e, "at_least": 2}]}, name)
        assert all(text_names_spec(t, spec) for t in texts), e
    for b, text in words.none_words.items():
        assert text_names_spec(text, parse_spec({"all": [{"counter": b, "at_least": 1}]}, name)), b
    for p in w.placements:
        x, y = p[len("place_"):].split("_near_")
        spec = parse_spec({"all": [{"counter": p, "at_least": 1}]}, name)
        assert text_names_spec(f"put {words.place_words[x]} next to {words.near_words[y]}", spec), p


events_st = st.dictionaries(
    st.integers(1, 40),
    st.lists(st.sampled_from([e for e in W.event_names if e in W.words.commands] + list(W.placements[::7])),
             min_size=1, max_size=4),
    max_size=10,
)


def plausible_levels(seed: int, steps: int) -> np.ndarray:
    """A random walk of every level within what the game allows (tiers, floors, flags, 0-9)."""
    rng = np.random.default_rng(seed)
    caps = np.array([_CAPS.get(name, 9) for name in W.level_names])
    start = rng.integers(0, caps + 1)
    walk = np.cumsum(rng.integers(-1, 2, (steps + 1, W.num_levels)) * (rng.random((steps + 1, W.num_levels)) < 0.3), 0)
    return np.clip(start + walk, 0, caps).astype(np.int32)


@settings(max_examples=300, deadline=None)
@given(events_st, st.integers(0, 2**32 - 1), st.integers(1, 40), st.sampled_from([0, 0, 1, 7, 20, 39, 40]))
def test_full_narrator_never_proposes_a_flawed_relabel(events_at, seed, cap, after):
    """Random sparse events and plausible levels, in a world span or not: every proposal holds,
    names its spec, and first holds after the earlier instructions' steps."""
    events, _, nearby = blank(40)
    for t, names in events_at.items():
        for name in names:
            events[t - 1, W.counter_index[name]] += 1
    seg = Segment(events, plausible_levels(seed, 40), nearby, after=after)
    proposals = NarratorRelabeler(max_proposals=cap).propose(seg)
    kept, flawed = verify(seg, proposals)
    assert not flawed
    assert len(kept) == len(proposals) and all(after < r.step <= seg.length for r in kept)
    assert all(r.spec.world == "full" for r in kept)
    narrate(seg)  # every event it logs has its words


def test_nearby_from_a_real_full_reset_sees_the_overworld():
    import jax

    env = full.make_env()
    obs, _ = jax.jit(env.reset_env)(jax.random.PRNGKey(0), env.default_params)
    seen = np.asarray(full.nearby_from_obs(np.asarray(obs)))
    assert seen.shape == (full.NUM_NEARBY,) and seen.dtype == bool
    names = {n for n, s in zip(full.NEARBY_NAMES, seen, strict=True) if s}
    assert {"grass", "tree"} & names
    assert not names & {"ladder_up", "necromancer"}  # the overworld has no way up, and no boss
    # Batched and traced alike.
    batch = jax.jit(full.nearby_from_obs)(np.stack([obs, obs]))
    assert (np.asarray(batch) == seen[None]).all()
