"""Relabel templates lifted from an LLM's relabels: validation, slot binding and verification,
retirement, the library file, and the LLM relabeler's template mode against a real local HTTP server."""

from __future__ import annotations

import itertools
import json

import pytest
from llm_server import LLMServer, Reply
from test_relabel import segment_with

from oir.llm.client import ChatClient
from oir.llm.relabeler import LLMRelabeler
from oir.llm.templates import RETIRE_AFTER, TemplateError, TemplateLibrary, lift, parse_template
from oir.relabel import JointRelabeler, NarratorRelabeler, verify

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
TABLE_FIRST = segment_with({2: ["place_table"], 4: ["collect_wood"], 6: ["collect_wood"]})
HEALTH = {"text": "Keep your health above zero.", "task": {"all": [{"counter": "health", "at_least": 1}]}}


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


def test_a_training_run_in_template_mode_writes_its_library_and_a_later_run_reuses_it(tmp_path, capsys):
    from test_oir import run

    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"segments": [{"id": i, "proposals": [
        HEALTH, {"text": "x", "task": {"all": [{"counter": "nope", "at_least": 1}]}}]}  # the second is flawed
        for i in range(1, len(req.narrations) + 1)]}))
    llm = ["--relabel", "llm", "--llm-url", server.url, "--llm-model", "test-model", "--llm-mode", "templates",
           "--llm-cache", "off"]
    try:
        _, summary, _ = run(tmp_path, "first", *llm)
        lib = tmp_path / "first" / "templates.jsonl"
        _, again, _ = run(tmp_path, "second", *llm, "--templates", str(lib))
    finally:
        server.stop()
    rel = summary["relabeling"]
    assert "templates lifted from its verified relabels" in summary["llm"]
    # the model's relabel that verifies became the one template; the flawed one never did
    assert rel["llm_templates"] == 1 and rel["llm_lift_flawed_unknown-counter"] >= 1
    assert rel["relabel_verified"] > 0 and rel["relabel_flawed"] == 0 and rel["llm_template_share"] > 0
    assert len(lib.read_text().splitlines()) == 1
    assert rel["llm_calls_per_1m_steps"] == pytest.approx(rel["llm_calls"] * 1e6 / summary["env_steps"])
    assert "oir: 1 templates from" in capsys.readouterr().err
    assert again["relabeling"]["relabel_verified"] > 0 and again["relabeling"]["llm_templates"] >= 1


def test_oir_relabel_tries_templates_on_saved_segments(capsys):
    from pathlib import Path

    from oir.cli import main

    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"segments": [
        {"id": i, "proposals": [HEALTH]} for i in range(1, len(req.narrations) + 1)]}))
    segments = Path(__file__).parents[1] / "bench" / "data" / "segments.npz"
    try:
        assert main(["relabel", "--segments", str(segments), "--relabeler", "llm", "--llm-url", server.url,
                     "--llm-model", "test-model", "--llm-mode", "templates", "--llm-cache", "off"]) == 0
    finally:
        server.stop()
    out = capsys.readouterr().out
    assert "templates lifted from its verified relabels" in out and "llm_templates: 1" in out
    verified = int(out.split(", verified ")[1].split(",")[0])
    assert verified > 0 and "flawed 0" in out


def test_lifting_makes_each_count_the_text_states_once_a_slot():
    wood_table = {"all": [{"counter": "collect_wood", "at_least": 3}, {"counter": "place_table", "at_least": 1}],
                  "ordered": True}
    lifted = lift("Collect three wood, then place a table.", wood_table)
    assert lifted["text"] == "Collect {n} wood, then place a table." and lifted["slots"] == {"n": "count"}
    assert lifted["task"]["all"][0]["at_least"] == "{n}" and wood_table["all"][0]["at_least"] == 3  # not mutated
    lib = TemplateLibrary()
    assert lib.add(lifted) is not None
    # Bound on another segment to the wood it collected there, and verified there.
    two_wood = segment_with({1: ["collect_wood"], 3: ["collect_wood"], 5: ["place_table"]})
    one_wood = segment_with({1: ["collect_wood"], 5: ["place_table"]})
    got = lib.propose([two_wood, TABLE_FIRST, one_wood])
    assert [p["text"] for p in got[0]] == ["Collect 2 wood, then place a table."] and got[1] == []
    assert got[2] == []  # a count slot states 2 or more: no "collect 1 wood"
    assert verify(two_wood, got[0])[0][0].step == 5
    # A count stated twice, or asked of two clauses, or of 1, stays as it was verified.
    both = {"all": [{"counter": "collect_drink", "at_least": 2}, {"counter": "eat_cow", "at_least": 2}]}
    assert lift("Drink 2 times and eat 2 cows", both) == {"text": "Drink 2 times and eat 2 cows", "task": both, "slots": {}}
    one = {"all": [{"counter": "place_table", "at_least": 1}]}
    assert lift("Place 1 table", one)["slots"] == {}
    # Two different counts: two slots, each bound to its own clause.
    two = lift("Collect 4 saplings and drink 3 times",
               {"all": [{"counter": "collect_sapling", "at_least": 4}, {"counter": "collect_drink", "at_least": 3}]})
    t = parse_template(two)
    assert t.slots == (("n", 0), ("n2", 1)) and t.bind({"n": 5, "n2": 6})[0] == "Collect 5 saplings and drink 6 times"


def test_lifted_mode_keeps_the_model_s_verified_relabels_as_templates():
    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"segments": [{"id": 1, "proposals": [
        {"text": "Chop 3 logs, then build a workbench",
         "task": {"all": [{"counter": "collect_wood", "at_least": 3}, {"counter": "place_table", "at_least": 1}],
                  "ordered": True}},
        {"text": "Eat a cow", "task": {"all": [{"counter": "eat_cow", "at_least": 1}]}},  # did not happen
    ]}]}))
    try:
        relabeler = LLMRelabeler(ChatClient(server.url, "test-model", timeout=5.0), templates=TemplateLibrary())
        first = relabeler.propose_batch([WOOD3_TABLE])
        assert len(server.calls) == 1 and "templates" not in server.calls[0].body["messages"][0]["content"].lower()
        assert [p["text"] for p in first[0]] == ["Chop 3 logs, then build a workbench"]
        # Another count of the same kind: the lifted template covers it, no request.
        again = relabeler.propose_batch([segment_with({1: ["collect_wood"], 2: ["collect_wood"], 5: ["place_table"]})])
        assert len(server.calls) == 1 and [p["text"] for p in again[0]] == ["Chop 2 logs, then build a workbench"]
        stats = relabeler.stats()
        assert stats["llm_lift_proposed"] == 2 and stats["llm_lift_verified"] == 1
        assert stats["llm_lift_flawed_does-not-hold"] == 1 and stats["llm_templates"] == 1
        assert "lifted" in relabeler.describe()
    finally:
        server.stop()


def test_a_segment_is_asked_about_while_something_it_did_goes_unnamed():
    # A library that names only saplings covers the sapling segment, but the segment that also
    # placed a table is still shown to the model (its new event must get a template), once.
    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"segments": [{"id": 1, "proposals": [
        {"text": "Place a crafting table", "task": {"all": [{"counter": "place_table", "at_least": 1}]}}]}]}))
    sapling = {"text": "collect a sapling", "task": {"all": [{"counter": "collect_sapling", "at_least": 1}]}}
    try:
        lib = TemplateLibrary()
        lib.add(sapling)
        relabeler = LLMRelabeler(ChatClient(server.url, "test-model", timeout=5.0), templates=lib)
        only = segment_with({2: ["collect_sapling"]})
        both = segment_with({2: ["collect_sapling"], 5: ["place_table"]})
        got = relabeler.propose_batch([only, both])
        assert len(server.calls) == 1 and len(server.calls[0].narrations) == 1  # the table segment only
        assert sorted(p["text"] for p in got[1]) == ["Collect a sapling", "Place a crafting table"]
        relabeler.propose_batch([segment_with({1: ["collect_sapling"], 3: ["place_table"]})])
        assert len(server.calls) == 1  # now named by the library: no request
    finally:
        server.stop()


def test_in_training_the_model_is_asked_in_the_background():
    # A slow model must not hold up the templates' relabels: the batch comes back at once, and
    # what the model says joins the library for later batches.
    import time

    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"segments": [{"id": 1, "proposals": [
        {"text": "Drink water 2 times", "task": {"all": [{"counter": "collect_drink", "at_least": 2}]}}]}]}), delay=1.0)
    relabeler = LLMRelabeler(ChatClient(server.url, "test-model", timeout=5.0), templates=TemplateLibrary(),
                             ask_in_background=True)
    try:
        drinks = segment_with({2: ["collect_drink"], 4: ["collect_drink"], 6: ["collect_drink"]})
        t0 = time.perf_counter()
        assert relabeler.propose_batch([drinks]) == [[]] and time.perf_counter() - t0 < 0.5
        deadline = time.perf_counter() + 10
        while relabeler.stats()["llm_templates"] < 1 and time.perf_counter() < deadline:
            time.sleep(0.05)
        assert [p["text"] for p in relabeler.propose_batch([drinks])[0]] == ["Drink water 3 times"]
        assert relabeler.stats()["llm_template_asks_dropped"] == 0 and len(server.calls) == 1
    finally:
        relabeler.close()
        server.stop()


def test_the_background_asks_first_about_what_no_template_names_then_the_newest():
    import time

    from oir.narrate import narrate

    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"segments": [{"id": 1, "proposals": []}]}), delay=0.5)
    relabeler = LLMRelabeler(ChatClient(server.url, "test-model", timeout=5.0), batch_size=1, templates=TemplateLibrary(),
                             ask_in_background=True)
    busy = segment_with({1: ["collect_wood"]})
    old, two, new = (segment_with({2: ["eat_cow"]}), segment_with({2: ["collect_sapling"], 4: ["place_table"]}),
                     segment_with({3: ["collect_drink"]}))
    try:
        relabeler.propose_batch([busy])  # the asking thread is now busy with it for 0.5 s
        time.sleep(0.1)
        relabeler.propose_batch([old, two, new])
        deadline = time.perf_counter() + 10
        while len(server.calls) < 4 and time.perf_counter() < deadline:
            time.sleep(0.05)
        asked = [c.narrations[0] for c in server.calls]
        assert asked == [narrate(s) for s in (busy, two, new, old)]
    finally:
        relabeler.close()
        server.stop()


def test_the_duty_cycle_spaces_requests_so_the_model_is_busy_at_most_that_share():
    # A local server shares the cores with training: at duty 0.4, a request of 0.3 s is followed
    # by a pause, so that the model is busy at most 40% of the time since asking began. The
    # library holds a template from the start (one that names no achievement: all are asked about).
    import time

    arrivals: list[float] = []

    def respond(req):
        arrivals.append(time.monotonic())
        return Reply(content=json.dumps({"segments": [{"id": 1, "proposals": []}]}), delay=0.3)

    server = LLMServer().start()
    server.respond = respond
    lib = TemplateLibrary()
    assert lib.add(HEALTH) is not None
    relabeler = LLMRelabeler(ChatClient(server.url, "test-model", timeout=5.0), batch_size=1, templates=lib,
                             ask_in_background=True, duty=0.4)
    try:
        began = time.monotonic()
        relabeler.propose_batch([segment_with({2: ["eat_cow"]}), segment_with({3: ["collect_drink"]}),
                                 segment_with({2: ["collect_sapling"]})])
        deadline = time.monotonic() + 10
        while len(arrivals) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(arrivals) == 3 and "busy at most 40%" in relabeler.describe()
        # the k-th request may start only once k requests of 0.3 s are at most 40% of the time
        for k, t in enumerate(arrivals[1:], start=1):
            assert t - began >= k * 0.3 / 0.4 - 0.05
        assert 0.0 < relabeler.stats()["llm_busy_frac"] < 1.0
    finally:
        relabeler.close()
        server.stop()
    with pytest.raises(ValueError, match="duty cycle"):
        LLMRelabeler(ChatClient("http://127.0.0.1:1/v1", "m"), templates=TemplateLibrary(), duty=0.0)


def test_the_duty_cap_starts_with_the_first_template_and_counts_the_time_before_it():
    # Until the library holds a template, requests go back to back: the first templates take the
    # share of segments relabeled through the LLM from nothing to most. From the request that
    # brings one, the model is kept busy at most `duty` of the time since the start, the requests
    # before the template included, so the next request does not go at once.
    import time

    arrivals: list[float] = []
    began = time.monotonic()

    def respond(req):
        arrivals.append(time.monotonic())
        proposals = [HEALTH] if len(arrivals) == 3 else []  # the third request brings a template
        return Reply(content=json.dumps({"segments": [{"id": 1, "proposals": proposals}]}), delay=0.3)

    server = LLMServer().start()
    server.respond = respond
    relabeler = LLMRelabeler(ChatClient(server.url, "test-model", timeout=5.0), batch_size=1, templates=TemplateLibrary(),
                             ask_in_background=True, duty=0.4)
    try:
        relabeler.propose_batch([segment_with({2: [a]}) for a in
                                 ("eat_cow", "collect_drink", "collect_sapling", "collect_wood", "wake_up")])
        deadline = time.monotonic() + 10
        while len(arrivals) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(arrivals) == 5 and relabeler.stats()["llm_templates"] == 1
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert max(gaps[:2]) < 0.3 + 0.15  # no cap before the template (0.75 s apart under it)
        # the k-th request (k >= 3) waits until the k earlier ones' 0.3 s each are 40% of the time
        for k in (3, 4):
            assert arrivals[k] - began >= k * 0.3 / 0.4 - 0.05
        assert gaps[2] > 0.3 + 0.5  # not at once after the template (as when the cap began from zero)
    finally:
        relabeler.close()
        server.stop()


def test_the_asker_first_warms_the_server_s_prompt_cache():
    # A local llama.cpp server keeps the last prompt's prefix: one token on the prompt alone, sent
    # before any segment arrives, takes the instructions' cost off the first real request.
    import time

    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"segments": [{"id": 1, "proposals": []}]}))
    relabeler = LLMRelabeler(ChatClient(server.url, "test-model", timeout=5.0), templates=TemplateLibrary(),
                             ask_in_background=True, warm_up=True)
    try:
        deadline = time.monotonic() + 10
        while not server.calls and time.monotonic() < deadline:
            time.sleep(0.02)
        warm = server.calls[0].body
        assert warm["max_tokens"] == 1 and "response_format" not in warm
        assert warm["messages"][0] == relabeler_prompt(relabeler)[0]  # the same instructions as a real request
        assert relabeler.stats()["llm_calls"] == 0  # not a relabel request
    finally:
        relabeler.close()
        server.stop()


def relabeler_prompt(relabeler):
    from oir.llm.prompt import render_prompt

    return render_prompt(["x"], relabeler.prompt_version)


def test_narrator_plus_llm_puts_the_model_s_relabels_first_and_counts_what_they_add():
    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"segments": [{"id": 1, "proposals": [
        {"text": "Chop 3 logs, then build a workbench",  # the narrator states wood then a table, not 3 wood first
         "task": {"all": [{"counter": "collect_wood", "at_least": 3}, {"counter": "place_table", "at_least": 1}],
                  "ordered": True}},
        {"text": "Collect 3 logs", "task": {"all": [{"counter": "collect_wood", "at_least": 3}]}},  # so does it
    ]}]}))
    llm = LLMRelabeler(ChatClient(server.url, "test-model", timeout=5.0), templates=TemplateLibrary())
    joint = JointRelabeler(llm, NarratorRelabeler(8))
    try:
        nothing = segment_with({}, 10)
        props = joint.propose_batch([WOOD3_TABLE, nothing])
        kept, flawed = verify(WOOD3_TABLE, props[0])
        texts = [r.text for r in kept]
        assert texts[:2] == ["Chop 3 logs, then build a workbench", "Collect 3 logs"]
        # The narrator's "3 wood" states the model's spec again: dropped, the model's wording kept.
        assert "Gather 3 pieces of wood." not in texts and flawed == {"duplicate": 1}
        assert "Harvest wood, then build one workbench." in texts and props[1] == []
        stats = joint.stats()
        assert stats["joint_llm_verified"] == 2 and stats["joint_llm_novel"] == 1
        assert stats["joint_llm_share"] == 0.5 and stats["joint_llm_novel_share"] == 0.5
        assert stats["llm_calls"] == 1 and joint.library is llm.library
        assert "added to the narrator" in joint.describe()
    finally:
        joint.close()
        server.stop()


def test_a_narrator_plus_llm_training_run_relabels_with_both(tmp_path):
    from test_oir import counts_add_up, run

    server = LLMServer().start()
    server.respond = lambda req: Reply(content=json.dumps({"segments": [
        {"id": i, "proposals": [{"text": "Keep your health above zero.", "task": {"all": [{"counter": "health", "at_least": 1}]}}]}
        for i in range(1, len(req.narrations) + 1)]}))
    try:
        out, summary, _ = run(tmp_path, "joint", "--relabel", "narrator+llm", "--llm-url", server.url,
                              "--llm-model", "test-model", "--llm-mode", "templates", "--llm-cache", "off")
    finally:
        server.stop()
    rel = summary["relabeling"]
    assert "added to the narrator" in summary["llm"] and "narrator" in summary["relabeler"]
    assert rel["llm_calls"] >= 1 and rel["joint_llm_share"] > 0 and rel["joint_llm_novel_share"] > 0
    assert counts_add_up(rel) and (out / "templates.jsonl").exists()
    texts = {json.loads(x)["text"] for x in (out / "instructions.jsonl").read_text().splitlines()}
    assert "Keep your health above zero." in texts and len(texts) > 1  # the narrator's too
