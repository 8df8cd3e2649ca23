"""Instruction buffer: filters, merging, conflicts, capacity, reserved rows, priorities, save."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oir.buffer import VOCABULARY, FilterConfig, InstructionBuffer, check_text
from oir.encode import HashEncoder
from oir.suites import STANDARD_SUITE, load_suite
from oir.tasks import parse_spec


def spec(counter: str = "collect_wood", n: int = 1):
    return parse_spec({"all": [{"counter": counter, "at_least": n}]})


class CountingEncoder(HashEncoder):
    """HashEncoder that remembers every batch it was asked to encode."""

    def __init__(self):
        super().__init__(dim=64)
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return super().encode(texts)


def make(capacity: int = 8, reserved: int = 0, **filters) -> InstructionBuffer:
    return InstructionBuffer(capacity, HashEncoder(dim=64), FilterConfig(**filters), reserved=reserved)


# ---------------------------------------------------------------------------------------------
# Filters


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("wood", "too-short"),
        ("   ", "too-short"),
        ("collect " + "wood " * 30, "too-long"),
        ("collect wood " + "x" * 200, "too-long"),
        ("collect_wood at least 3", "vocabulary"),  # a counter name leaking into the text
        ('{"counter": "collect_wood"}', "vocabulary"),
        ("set wood = 3;", "vocabulary"),
        ("chop wood <b>now</b>", "vocabulary"),
        ("see www.example.com for wood", "vocabulary"),
        ("read example.com about trees", "vocabulary"),
        ("collect wood \u00e9t\u00e9", "vocabulary"),  # non-ASCII letters
        ("the agent did several things", "vocabulary"),  # no Craftax word
        ("make it up now", "vocabulary"),  # only generic parts of counter names
        ("Collect three wood, then put down a crafting table.", None),
        ("Chop wood; then rest a while.", None),  # prose semicolon
        ("don\u2019t eat the cow", None),  # typographic apostrophe from a language model
        ("slay two zombies", None),  # plural of a vocabulary word
        ("Build two workbenches", None),
    ],
)
def test_check_text_reasons(text, reason):
    assert check_text(text) == reason


def test_vocabulary_comes_from_counter_names_plus_synonyms():
    for word in ("wood", "table", "sapling", "drink", "water", "zombie", "diamond", "furnace"):
        assert word in VOCABULARY  # split from counter names
    for word in ("tree", "workbench", "cow", "sleep", "pickaxe", "seed"):
        assert word in VOCABULARY  # synonyms
    for word in ("make", "up", "near", "collect"):
        assert word not in VOCABULARY  # too generic to mark a text as about Craftax


def test_filter_limits_are_configurable():
    assert check_text("collect wood", FilterConfig(min_words=3)) == "too-short"
    assert check_text("collect three wood", FilterConfig(max_words=2)) == "too-long"
    assert check_text("collect three wood", FilterConfig(max_chars=10)) == "too-long"


def test_human_suite_texts_pass_the_filters():
    # The filters target LLM junk; instructions people actually write must get through.
    rejected = [(line.text, check_text(line.text)) for line in load_suite(STANDARD_SUITE)]
    assert [r for r in rejected if r[1] is not None] == []


# ---------------------------------------------------------------------------------------------
# Adding


def test_new_rows_and_merge_by_normalized_text():
    buf = make()
    assert buf.add("Collect three wood.", spec(n=3), step=10) == (0, "new")
    assert buf.add("  collect THREE   wood!", spec(n=3), step=20) == (0, "merged")
    assert buf.add("eat one cow", spec("eat_cow"), step=30) == (1, "new")
    assert len(buf) == 2
    assert buf.texts() == ["Collect three wood.", "eat one cow"]
    assert buf.count[0] == 2 and buf.first_seen[0] == 10 and buf.last_seen[0] == 20
    assert buf.spec(1).key() == spec("eat_cow").key()
    assert buf.lookup("collect three wood") == 0


def test_conflict_keeps_the_first_meaning():
    buf = make()
    assert buf.add("collect some wood", spec(n=2), 0) == (0, "new")
    assert buf.add("Collect some wood!", spec(n=5), 1) == (None, "conflict")
    assert len(buf) == 1 and buf.spec(0).key() == spec(n=2).key() and buf.count[0] == 1


def test_near_duplicate_merges_at_the_threshold_only_within_a_spec():
    a, b = "collect three wood now", "collect three wood now please"
    va, vb = HashEncoder(dim=64).encode([a, b])
    cos = float(va @ vb)
    assert 0.5 < cos < 0.99  # the texts are close but not identical

    merging = make(dedup_similarity=cos - 0.01)
    assert merging.add(a, spec(n=3), 0) == (0, "new")
    assert merging.add(b, spec(n=3), 1) == (0, "merged")
    assert merging.count[0] == 2 and merging.summary()["merged_near_duplicate"] == 1

    strict = make(dedup_similarity=cos + 0.01)
    strict.add(a, spec(n=3), 0)
    assert strict.add(b, spec(n=3), 1) == (1, "new")


def test_different_specs_never_merge_by_embedding():
    # Even with a threshold every pair passes, "2 wood" and "3 wood" are different tasks.
    buf = make(dedup_similarity=0.0)
    assert buf.add("collect 2 wood", spec(n=2), 0) == (0, "new")
    assert buf.add("collect 3 wood", spec(n=3), 0) == (1, "new")
    assert buf.add("gather a bit of timber", spec(n=2), 0) == (0, "merged")  # same spec
    assert len(buf) == 2


def test_capacity_full_but_merges_still_count():
    buf = make(capacity=3, reserved=1)
    assert buf.add("collect one wood", spec(n=1), 0) == (1, "new")
    assert buf.add("collect two wood", spec(n=2), 0) == (2, "new")
    assert buf.add("collect four wood", spec(n=4), 0) == (None, "full")
    assert buf.add("collect two wood", spec(n=2), 1) == (2, "merged")
    assert len(buf) == 2 and buf.summary()["full"] == 1


def test_add_many_encodes_new_texts_in_one_call():
    enc = CountingEncoder()
    buf = InstructionBuffer(8, enc)
    buf.add("eat one cow", spec("eat_cow"), 0)
    out = buf.add_many([
        ("collect two wood", spec(n=2), 5),
        ("Collect two wood.", spec(n=2), 5),  # same text later in the batch
        ("eat one cow", spec("eat_cow"), 5),  # already in the buffer
        ("x", spec(), 5),  # filtered
        ("drink some water", spec("collect_drink"), 5),
    ])  # fmt: skip
    assert out == [(1, "new"), (1, "merged"), (0, "merged"), (None, "too-short"), (2, "new")]
    assert enc.calls == [["eat one cow"], ["collect two wood", "drink some water"]]
    # The stored vector is the encoder's vector for the stored text.
    np.testing.assert_allclose(buf.embedding(2), HashEncoder(dim=64).encode(["drink some water"])[0])


def test_drain_new_reports_each_new_row_once():
    buf = make(reserved=1)
    buf.add("collect one wood", spec(n=1), 0)
    buf.add("collect one wood", spec(n=1), 0)
    buf.add("eat one cow", spec("eat_cow"), 0)
    assert buf.drain_new() == [1, 2]
    assert buf.drain_new() == []
    buf.add("drink some water", spec("collect_drink"), 0)
    assert buf.drain_new() == [3]


def test_bad_rows_raise():
    buf = make(reserved=1)
    with pytest.raises(KeyError):
        buf.spec(0)  # reserved
    with pytest.raises(KeyError):
        buf.embedding(1)  # unused
    with pytest.raises(ValueError):
        InstructionBuffer(2, HashEncoder(), reserved=2)


# ---------------------------------------------------------------------------------------------
# Stats and priorities


def filled(reserved: int = 0, n: int = 4) -> InstructionBuffer:
    buf = make(capacity=reserved + 6, reserved=reserved)
    for k in range(1, n + 1):
        buf.add(f"collect {k} wood", spec(n=k), 0)
    return buf


def test_reserved_and_unused_rows_have_zero_priority():
    buf = filled(reserved=2, n=2)
    p = buf.priorities()
    assert p.dtype == np.float32 and p.shape == (8,)
    assert np.all(p[:2] == 0) and np.all(p[4:] == 0)
    # Never-attempted rows sit at the 0.5 prior: 0.1 + 4 * 0.25 = 1.1.
    np.testing.assert_allclose(p[2:4], 1.1)
    # The trainer may count attempts on its reserved row; that row still gets no priority.
    attempts = np.zeros(8, np.int64)
    attempts[0] = 5
    buf.record(attempts, attempts)
    assert buf.priorities()[0] == 0 and buf.attempts[0] == 5


def test_priorities_favour_intermediate_success():
    buf = filled(n=4)
    attempts = np.array([10, 10, 10, 0, 0, 0])
    successes = np.array([0, 5, 10, 0, 0, 0])
    for _ in range(30):
        buf.record(attempts, successes)
    p = buf.priorities()
    assert p[1] > p[0] and p[1] > p[2]
    np.testing.assert_allclose(p[[0, 2]], 0.1, atol=1e-6)  # floor: still revisited
    assert p[3] > p[0]  # an untried row beats a settled one
    assert buf.attempts[1] == 300 and buf.successes[1] == 150


def test_a_buffer_pickled_with_retired_options_loads_without_them():
    """Checkpoints from before the rarity weight, the revisit share and the shape prior were
    retired hold their fields: they load, and priorities are today's."""
    buf = filled(n=2)
    state = buf.__getstate__()
    state |= {"rarity": 1.0, "revisit": 0.2, "shape_prior": True, "shape": np.zeros(8, np.int64),
              "found": np.zeros(3, np.int64), "_asks": {0: np.zeros(1, np.int64)}}
    old = InstructionBuffer.__new__(InstructionBuffer)
    old.__setstate__(state)
    assert not any(hasattr(old, k) for k in ("rarity", "revisit", "shape_prior", "shape", "found", "_asks"))
    np.testing.assert_array_equal(old.priorities(), buf.priorities())


def test_learning_progress_raises_priority_of_changing_rows():
    buf = filled(n=2)
    for _ in range(10):
        buf.record(np.array([4, 4, 0, 0, 0, 0]), np.array([0, 0, 0, 0, 0, 0]))
    before = buf.priorities()
    for _ in range(3):
        buf.record(np.array([4, 4, 0, 0, 0, 0]), np.array([4, 0, 0, 0, 0, 0]))
    lp = buf.learning_progress()
    assert lp[0] > 0.3 and lp[1] == 0
    assert buf.priorities()[0] > before[0] and buf.priorities()[0] > buf.priorities()[1]


def test_record_only_moves_attempted_rows():
    buf = filled(n=2)
    buf.record(np.array([2, 0, 0, 0, 0, 0]), np.array([2, 0, 0, 0, 0, 0]))
    p = buf.priorities()
    np.testing.assert_allclose(p[1], 1.1)  # row 1 not attempted: still at the prior
    assert buf.slow[0] == 1.0 and buf.fast[0] == 1.0  # EMAs start at the first observed rate


def test_record_rejects_mismatched_input():
    buf = filled(n=2)
    with pytest.raises(ValueError, match="rows"):
        buf.record(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="successes"):
        buf.record(np.array([1, 0, 0, 0, 0, 0]), np.array([2, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="unassigned"):
        buf.record(np.array([0, 0, 0, 0, 1, 0]), np.zeros(6))


# ---------------------------------------------------------------------------------------------
# Output


def test_save_round_trips(tmp_path):
    buf = make(reserved=1)
    buf.add("Collect three wood, then place a table.", parse_spec(
        {"all": [{"counter": "collect_wood", "at_least": 3}, {"counter": "place_table", "at_least": 1}],
         "ordered": True, "none": [{"counter": "eat_cow", "at_least": 1}], "within": 300}), 7)
    buf.add("drink some water", spec("collect_drink"), 9)
    buf.add("drink some water", spec("collect_drink"), 12)
    attempts = np.zeros(8, np.int64)
    attempts[1] = 4
    successes = np.zeros(8, np.int64)
    successes[1] = 1
    buf.record(attempts, successes)

    out = buf.save(tmp_path)  # a directory: writes instructions.jsonl in it
    assert out == tmp_path / "instructions.jsonl"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instructions.jsonl"]  # no temp left
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["row"] for rec in lines] == [1, 2]
    for rec in lines:
        assert parse_spec(rec["task"]).key() == buf.spec(rec["row"]).key()
        assert rec["text"] == buf.text(rec["row"])
    assert lines[0]["first_seen_step"] == 7 and lines[0]["attempts"] == 4
    assert lines[0]["success_rate"] == 0.25 and lines[0]["learning_progress"] == 0.0
    assert lines[1]["count"] == 2 and lines[1]["success_rate"] is None

    buf.add("eat one cow", spec("eat_cow"), 20)
    buf.save(out)  # an explicit file path overwrites in place
    assert len(out.read_text().splitlines()) == 3


def test_summary_counts_outcomes():
    buf = make(capacity=3)
    buf.add_many([
        ("collect one wood", spec(n=1), 0),
        ("collect one wood", spec(n=1), 0),
        ("Collect one wood", spec(n=9), 0),
        ("w", spec(), 0),
        ("collect_wood please", spec(), 0),
        ("eat one cow", spec("eat_cow"), 0),
        ("drink some water", spec("collect_drink"), 0),
        ("sleep until morning", spec("wake_up"), 0),
    ])  # fmt: skip
    s = buf.summary()
    assert s["unique_instructions"] == 3 and s["new"] == 3 and s["merged"] == 1
    assert s["conflict"] == 1 and s["full"] == 1
    assert s["rejected"] == 2 and s["rejected_too_short"] == 1 and s["rejected_vocabulary"] == 1
