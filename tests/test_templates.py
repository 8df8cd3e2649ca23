"""LLM-written relabel templates: validation, slot binding and verification, retirement, the
library file, and the LLM relabeler's template mode against a real local HTTP server."""

from __future__ import annotations

import json

import pytest
from llm_server import LLMServer, Reply
from test_relabel import segment_with

from oir.llm.client import ChatClient
from oir.llm.relabeler import LLMRelabeler
from oir.llm.templates import RETIRE_AFTER, TemplateError, TemplateLibrary, parse_template
from oir.relabel import verify

WOOD_THEN_TABLE = {
    "text": "collect {n} wood, then place a crafting table",
    "task": {"all": [{"counter": "collect_wood", "at_least": "{n}"}, {"counter": "place_table", "at_least": 1}],
             "ordered": True},
    "slots": {"n": "count"},
}
WOOD3_TABLE = segment_with({2: ["collect_wood"], 4: ["collect_wood"], 6: ["collect_wood"], 9: ["place_table"]})
DEEP: dict = {}
for _ in range(5000):
    DEEP = {"all": [DEEP]}
TABLE_FIRST = segment_with({2: ["place_table"], 4: ["collect_wood"]})


def test_slots_bind_to_what_the_segment_reached_and_verify():
    lib = TemplateLibrary()
    assert lib.add(WOOD_THEN_TABLE) is not None
    got = lib.propose([WOOD3_TABLE, TABLE_FIRST, segment_with({3: ["collect_drink"]})])
    assert got[0] == [{"text": "Collect 3 wood, then place a crafting table",
                       "task": {"all": [{"counter": "collect_wood", "at_least": 3},
                                        {"counter": "place_table", "at_least": 1}], "ordered": True}}]
    kept, flawed = verify(WOOD3_TABLE, got[0])
    assert not flawed and kept[0].step == 9
    assert got[1] == [] and got[2] == []  # table before wood: the order fails; no wood: no match
    s = lib.stats()
    assert s["llm_template_instantiations"] == 1 and s["llm_template_instantiations_flawed"] == 1


@pytest.mark.parametrize("template, reason", [
    ({**WOOD_THEN_TABLE, "slots": {"n": "count", "m": "count"}}, "unused-slot"),
    ({**WOOD_THEN_TABLE, "text": "collect {k} wood"}, "unknown-placeholder"),
    ({**WOOD_THEN_TABLE, "text": "collect {n} wood {"}, "unknown-placeholder"),
    ({**WOOD_THEN_TABLE, "slots": {"n": "item"}}, "bad-slot"),
    ({**WOOD_THEN_TABLE, "slots": {"N; rm -rf /": "count"}}, "bad-slot"),
    ({"text": "dance {n} times", "task": {"all": [{"counter": "dance", "at_least": "{n}"}]}, "slots": {"n": "count"}},
     "bad-spec"),
    ({"text": "wood {n}", "task": {"all": [{"counter": "{n}", "at_least": 1}]}, "slots": {"n": "count"}}, "unused-slot"),
    ({"text": "wood {n}", "task": {"all": [{"counter": "collect_wood", "at_least": "{n}"}],
                                   "none": [{"counter": "eat_cow", "at_least": "{n}"}]}, "slots": {"n": "count"}}, "bad-spec"),
    ({"text": "x" * 500, "task": {"all": [{"counter": "collect_wood", "at_least": 1}]}}, "too-long"),
    ({"text": "wood", "task": {"all": [{"counter": "collect_wood", "at_least": 1}]}, "exec": "import os"}, "malformed"),
    ("not json {", "malformed"),
    ([1, 2], "malformed"),
    ({"text": "deep", "task": {"all": [DEEP]}}, "bad-spec"),
])
def test_malformed_or_hostile_templates_are_rejected_with_their_reason(template, reason):
    with pytest.raises(TemplateError) as e:
        parse_template(template)
    assert e.value.reason == reason
    lib = TemplateLibrary()
    assert lib.add(template) is None and lib.stats()[f"llm_templates_rejected_{reason}"] == 1
    assert lib.propose([WOOD3_TABLE]) == [[]]  # a rejected template never rewards


def test_a_template_whose_instantiations_keep_failing_is_retired():
    lib = TemplateLibrary()
    lib.add({"text": "get wood at once", "task": {"all": [{"counter": "collect_wood", "at_least": 1}], "within": 1}})
    for _ in range(RETIRE_AFTER):
        assert lib.propose([WOOD3_TABLE]) == [[]]  # wood first at step 2: too late
    assert lib.stats()["llm_templates_retired"] == 1 and lib.propose([segment_with({1: ["collect_wood"]})]) == [[]]


def test_the_library_file_round_trips_and_leaves_retired_templates_out(tmp_path):
    lib = TemplateLibrary()
    lib.add(WOOD_THEN_TABLE)
    lib.add({"text": "get wood at once", "task": {"all": [{"counter": "collect_wood", "at_least": 1}], "within": 1}})
    for _ in range(RETIRE_AFTER):
        lib.propose([WOOD3_TABLE])
    lib.save(tmp_path / "templates.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "templates.jsonl").read_text().splitlines()]
    assert [r["retired"] for r in rows] == [False, True] and rows[0]["verified"] == RETIRE_AFTER
    (tmp_path / "templates.jsonl").write_text((tmp_path / "templates.jsonl").read_text() + "garbage\n")
    again = TemplateLibrary()
    assert again.load(tmp_path / "templates.jsonl") == 1 and again.stats()["llm_templates_rejected_malformed"] == 1
    assert again.propose([WOOD3_TABLE])[0][0]["text"] == "Collect 3 wood, then place a crafting table"


def test_template_mode_asks_the_model_only_for_segments_no_template_covers():
    server = LLMServer().start()
    hostile = {"text": "mine {n} diamonds", "task": {"all": [{"counter": "collect_diamond", "at_least": "{n}"}]},
               "slots": {"n": "count"}}  # valid, but it never matches here: no diamond was mined
    server.respond = lambda req: Reply(content=json.dumps({"templates": [
        WOOD_THEN_TABLE, hostile, {"text": "dance", "task": {"all": [{"counter": "dance", "at_least": 1}]}},
        {"text": "drink water {n} times", "task": {"all": [{"counter": "collect_drink", "at_least": "{n}"}]},
         "slots": {"n": "count"}}]}))
    try:
        relabeler = LLMRelabeler(ChatClient(server.url, "test-model", timeout=5.0), templates=TemplateLibrary())
        first = relabeler.propose_batch([WOOD3_TABLE, segment_with({3: ["collect_drink"], 7: ["collect_drink"]})])
        assert len(server.calls) == 1 and "templates" in server.calls[0].body["messages"][0]["content"].lower()
        assert [p["text"] for p in first[0]] == ["Collect 3 wood, then place a crafting table"]
        assert [p["text"] for p in first[1]] == ["Drink water 2 times"]
        # Other segments of the same kinds: covered by the library, no request.
        again = relabeler.propose_batch([segment_with({1: ["collect_wood"], 5: ["place_table"]}),
                                         segment_with({4: ["collect_drink"]})])
        assert len(server.calls) == 1 and [p["text"] for p in again[0]] == ["Collect 1 wood, then place a crafting table"]
        stats = relabeler.stats()
        assert stats["llm_templates"] == 3 and stats["llm_templates_rejected_bad-spec"] == 1
        assert stats["llm_templates_in_use"] == 2 and stats["llm_template_share"] == 1.0
        assert all(not verify(s, p)[1] for s, p in zip([WOOD3_TABLE], first[:1], strict=True))
    finally:
        server.stop()


def test_a_training_run_in_template_mode_writes_its_library_and_a_later_run_reuses_it(tmp_path, capsys):
    from test_oir import run

    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"templates": [
        {"text": "gather {n} wood", "task": {"all": [{"counter": "collect_wood", "at_least": "{n}"}]}, "slots": {"n": "count"}},
        {"text": "collect a sapling", "task": {"all": [{"counter": "collect_sapling", "at_least": 1}]}},
        {"text": "drink {n} times", "task": {"all": [{"counter": "collect_drink", "at_least": "{n}"}]}, "slots": {"n": "count"}},
        {"text": "x", "task": {"all": [{"counter": "nope", "at_least": 1}]}}]}))
    llm = ["--relabel", "llm", "--llm-url", server.url, "--llm-model", "test-model", "--llm-mode", "templates",
           "--llm-cache", "off"]
    try:
        _, summary, _ = run(tmp_path, "first", *llm)
        lib = tmp_path / "first" / "templates.jsonl"
        _, again, _ = run(tmp_path, "second", *llm, "--templates", str(lib))
    finally:
        server.stop()
    rel = summary["relabeling"]
    assert "templates by templates_v1" in summary["llm"]
    assert rel["llm_templates"] == 3 and rel["llm_templates_rejected_bad-spec"] >= 1
    assert rel["relabel_verified"] > 0 and rel["relabel_flawed"] == 0 and rel["llm_template_share"] > 0
    assert len(lib.read_text().splitlines()) == 3
    assert rel["llm_calls_per_1m_steps"] == pytest.approx(rel["llm_calls"] * 1e6 / summary["env_steps"])
    assert "oir: 3 templates from" in capsys.readouterr().err
    assert again["relabeling"]["relabel_verified"] > 0 and again["relabeling"]["llm_templates"] >= 3


def test_oir_relabel_tries_templates_on_saved_segments(capsys):
    from pathlib import Path

    from oir.cli import main

    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"templates": [
        {"text": "gather {n} wood", "task": {"all": [{"counter": "collect_wood", "at_least": "{n}"}]}, "slots": {"n": "count"}}]}))
    segments = Path(__file__).parents[1] / "bench" / "data" / "segments.npz"
    try:
        assert main(["relabel", "--segments", str(segments), "--relabeler", "llm", "--llm-url", server.url,
                     "--llm-model", "test-model", "--llm-mode", "templates", "--llm-cache", "off"]) == 0
    finally:
        server.stop()
    out = capsys.readouterr().out
    assert "templates by templates_v1" in out and "llm_templates: 1" in out
    verified = int(out.split("verified ")[1].split(",")[0])
    assert verified > 0 and "flawed 0" in out
