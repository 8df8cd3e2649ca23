"""The LLM relabeler against a real HTTP server on 127.0.0.1: protocol, parsing, robustness.

Replies in tests/data/llm_replies.jsonl are hand-written in the style of chat models for the
segments each line describes, with the verification outcome each segment must get.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from llm_server import LLMServer, Reply, Request

from oir.events import COUNTER_INDEX, COUNTER_NAMES, LEVEL_NAMES, NUM_EVENTS, NUM_LEVELS, VITALS
from oir.llm import (
    MAX_REPLY_CHARS,
    ChatClient,
    CircuitBreaker,
    LLMError,
    LLMRelabeler,
    ReplyCache,
    check_reachable,
    load_prompt,
    make_llm_relabeler,
    parse_reply,
    render_prompt,
)
from oir.narrate import NEARBY_NAMES, NUM_NEARBY, Segment, narrate
from oir.relabel import Flawed, verify
from oir.suites import STANDARD_SUITE, load_suite

DATA = Path(__file__).parent / "data" / "llm_replies.jsonl"
SCENARIOS = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
ALWAYS_TRUE = {"all": [{"counter": "health", "at_least": 1}]}  # health is 9 in every test segment


def segment_with(events_at: dict[int, list[str]], length: int = 30) -> Segment:
    events = np.zeros((length, NUM_EVENTS), np.int32)
    for t, names in events_at.items():
        for name in names:
            events[int(t) - 1, COUNTER_INDEX[name]] += 1
    levels = np.zeros((length + 1, NUM_LEVELS), np.int32)
    for v in VITALS:
        levels[:, LEVEL_NAMES.index(v)] = 9
    return Segment(events, levels, np.zeros((length + 1, NUM_NEARBY), bool))


def distinct_segments(n: int) -> list[Segment]:
    """``n`` segments with distinct narrations and event signatures (a different first achievement
    each, at a different step)."""
    from oir.events import ACHIEVEMENTS

    return [segment_with({i + 1: [ACHIEVEMENTS[i % len(ACHIEVEMENTS)]], 30 - i // len(ACHIEVEMENTS): ["collect_wood"]})
            for i in range(n)]


def fast_client(url: str, **kw) -> ChatClient:
    kw = {"timeout": 0.5, "max_retries": 2, "backoff": 0.01} | kw
    return ChatClient(url, "test-model", **kw)


def survive_for_each(request: Request) -> Reply:
    """Answer any batch with one true proposal per segment (text unique per narration)."""
    segments = [
        {"id": i, "proposals": [{"text": f"Stay alive ({len(n)}-{i}).", "task": ALWAYS_TRUE}]}
        for i, n in enumerate(request.narrations, 1)
    ]
    return Reply(json.dumps({"segments": segments}))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    srv = LLMServer().start()
    yield srv
    srv.stop()


def check_counts(segments, proposals) -> Counter:
    """Every proposal ends up a relabel or a counted flaw; returns the summed flaws."""
    total: Counter = Counter()
    assert len(proposals) == len(segments)
    for seg, props in zip(segments, proposals, strict=True):
        kept, flawed = verify(seg, props)
        assert len(props) == len(kept) + sum(flawed.values())
        total += flawed
    return total


# ---------------------------------------------------------------------------------------------
# Recorded and adversarial replies, through the real server and verify


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scripted_reply_is_verified_as_expected(server, scenario):
    segments = [segment_with(s["events"], s["length"]) for s in scenario["segments"]]
    server.queue(Reply(scenario["reply"]))
    relabeler = LLMRelabeler(fast_client(server.url))
    proposals = relabeler.propose_batch(segments)
    assert len(server.calls) == 1
    for seg, props, want in zip(segments, proposals, scenario["expect"], strict=True):
        kept, flawed = verify(seg, props)
        assert [r.text for r in kept] == want["kept"]  # hallucinations never become relabels
        assert dict(flawed) == want["flawed"]
        assert len(props) == len(kept) + sum(flawed.values())
    stats = relabeler.stats()
    assert stats["llm_calls"] == 1 and stats["llm_errors"] == 0 and stats["llm_outage"] == 0
    assert stats["llm_latency_s"] > 0


def test_request_carries_prompt_model_and_narrations(server):
    segments = distinct_segments(2)
    server.respond = survive_for_each
    fmt = {"type": "json_object"}
    relabeler = LLMRelabeler(fast_client(server.url), response_format=fmt, temperature=0.3)
    relabeler.propose_batch(segments)
    (call,) = server.calls
    assert call.body["model"] == "test-model"
    assert call.body["response_format"] == fmt and call.body["temperature"] == 0.3
    assert call.body["max_tokens"] == 2 * 512
    assert call.narrations == [narrate(s) for s in segments]
    assert "authorization" not in call.headers


def test_api_key_is_sent_as_bearer(server, monkeypatch):
    server.respond = survive_for_each
    monkeypatch.setenv("OIR_TEST_LLM_KEY", "sk-test-123")
    relabeler = make_llm_relabeler(
        server.url, "test-model", "OIR_TEST_LLM_KEY", use_cache=False, timeout=0.5, backoff=0.01
    )
    relabeler.propose_batch(distinct_segments(1))
    assert server.calls[0].headers["authorization"] == "Bearer sk-test-123"


def test_named_but_unset_key_variable_is_an_error(monkeypatch):
    monkeypatch.delenv("OIR_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ValueError, match="OIR_TEST_MISSING_KEY"):
        make_llm_relabeler("http://127.0.0.1:1/v1", "m", "OIR_TEST_MISSING_KEY", use_cache=False)


def test_null_content_counts_as_empty(server):
    server.queue(Reply(None))
    segments = distinct_segments(2)
    proposals = LLMRelabeler(fast_client(server.url)).propose_batch(segments)
    assert check_counts(segments, proposals) == {"empty": 2}


# ---------------------------------------------------------------------------------------------
# Batching and cache


def test_batching_five_segments_by_two_makes_three_requests(server):
    server.respond = survive_for_each
    segments = distinct_segments(5)
    relabeler = LLMRelabeler(fast_client(server.url), batch_size=2)
    proposals = relabeler.propose_batch(segments)
    assert [len(c.narrations) for c in server.calls] == [2, 2, 1]
    assert check_counts(segments, proposals) == {}
    assert all(len(verify(s, p)[0]) == 1 for s, p in zip(segments, proposals, strict=True))
    assert relabeler.stats()["llm_calls"] == 3


def test_cache_serves_repeats_without_a_request(server, tmp_path):
    server.respond = survive_for_each
    cache = ReplyCache(tmp_path / "cache.sqlite")
    seg_a, seg_b = distinct_segments(2)
    relabeler = LLMRelabeler(fast_client(server.url), cache=cache)
    first = relabeler.propose_batch([seg_a])
    assert len(server.calls) == 1
    # seg_a again (cache), twice in one batch, beside a new segment: one request, for seg_b only.
    again = relabeler.propose_batch([seg_a, seg_b, seg_a])
    assert len(server.calls) == 2 and server.calls[1].narrations == [narrate(seg_b)]
    assert again[0] == again[2] == first[0] and again[0] is not again[2]
    assert relabeler.stats()["llm_cache_hits"] == 1
    # The cache outlives the relabeler; another model or prompt version is another key.
    cache2 = ReplyCache(tmp_path / "cache.sqlite")
    assert LLMRelabeler(fast_client(server.url), cache=cache2).propose_batch([seg_b]) == [again[1]]
    assert len(server.calls) == 2
    other = ChatClient(server.url, "other-model", timeout=0.5)
    LLMRelabeler(other, cache=cache2).propose_batch([seg_b])
    assert len(server.calls) == 3
    assert len(cache2) == 3


def test_failed_replies_are_not_cached(server, tmp_path):
    cache = ReplyCache(tmp_path / "cache.sqlite")
    segments = distinct_segments(1)
    relabeler = LLMRelabeler(fast_client(server.url, max_retries=0), cache=cache)
    server.queue(Reply("not json at all"), Reply(status=500, raw="{}"))
    assert relabeler.propose_batch(segments) == [[Flawed("malformed-json")]]
    assert relabeler.propose_batch(segments) == [[]]  # the 500: no proposals
    assert len(cache) == 0
    server.respond = survive_for_each
    relabeler.propose_batch(segments)
    relabeler.propose_batch(segments)
    assert len(server.calls) == 3 and len(cache) == 1


def test_cache_works_from_a_worker_thread(server, tmp_path):
    server.respond = survive_for_each
    relabeler = LLMRelabeler(fast_client(server.url), cache=ReplyCache(tmp_path / "c.sqlite"))
    segments = distinct_segments(3)
    out: list = []
    worker = threading.Thread(target=lambda: out.append(relabeler.propose_batch(segments)))
    worker.start()
    worker.join(10)
    assert relabeler.propose_batch(segments) == out[0]  # main thread: all cache hits
    assert len(server.calls) == 1 and relabeler.stats()["llm_cache_hits"] == 3


def test_damaged_cache_file_degrades_to_misses(server, tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ReplyCache(path)
    cache.put("relabel_v1", "test-model", narrate(distinct_segments(1)[0]), [{"text": "x"}])
    with cache._lock:
        cache._db.execute("UPDATE replies SET proposals = '{not json'")
        cache._db.commit()
    server.respond = survive_for_each
    relabeler = LLMRelabeler(fast_client(server.url), cache=cache)
    segments = distinct_segments(1)
    assert check_counts(segments, relabeler.propose_batch(segments)) == {}
    assert len(server.calls) == 1


# ---------------------------------------------------------------------------------------------
# Retries, timeouts, outages


def test_429_then_success_is_retried(server):
    server.queue(Reply(status=429, raw='{"error": "rate limited"}'))
    server.respond = survive_for_each
    segments = distinct_segments(2)
    relabeler = LLMRelabeler(fast_client(server.url))
    proposals = relabeler.propose_batch(segments)
    assert len(server.calls) == 2
    assert check_counts(segments, proposals) == {}
    assert sum(len(p) for p in proposals) == 2
    assert relabeler.stats()["llm_errors"] == 0


def test_500s_recover_within_retries(server):
    server.queue(Reply(status=500, raw="oops"), Reply(status=503, raw="busy"))
    server.respond = survive_for_each
    relabeler = LLMRelabeler(fast_client(server.url, max_retries=2))
    segments = distinct_segments(1)
    assert sum(len(p) for p in relabeler.propose_batch(segments)) == 1
    assert len(server.calls) == 3 and relabeler.stats()["llm_errors"] == 0


def test_persistent_500_counts_an_error_and_returns_nothing(server):
    server.respond = lambda request: Reply(status=500, raw='{"error": "internal"}')
    relabeler = LLMRelabeler(fast_client(server.url, max_retries=1))
    segments = distinct_segments(3)
    proposals = relabeler.propose_batch(segments)
    assert proposals == [[], [], []]
    assert check_counts(segments, proposals) == {}
    assert len(server.calls) == 2  # one try, one retry
    stats = relabeler.stats()
    assert stats["llm_errors"] == 1 and stats["llm_calls"] == 1
    assert stats["llm_segments_skipped"] == 3 and stats["llm_outage"] == 0


def test_other_4xx_fails_at_once(server):
    server.queue(Reply(status=404, raw='{"error": "model not found"}'))
    client = fast_client(server.url)
    with pytest.raises(LLMError, match=r"HTTP 404.*model not found") as info:
        client.complete([{"role": "user", "content": "hi"}])
    assert "\n" not in str(info.value)
    assert len(server.calls) == 1


def test_non_openai_body_is_an_error(server):
    server.queue(Reply(raw="<html>proxy error</html>"))
    with pytest.raises(LLMError, match="not a chat-completions response"):
        fast_client(server.url).complete([{"role": "user", "content": "hi"}])


def test_slow_reply_times_out_without_crashing(server):
    server.respond = lambda request: Reply(json.dumps({"segments": []}), delay=1.5)
    relabeler = LLMRelabeler(fast_client(server.url, timeout=0.3, max_retries=1))
    segments = distinct_segments(2)
    start = time.monotonic()
    proposals = relabeler.propose_batch(segments)
    assert time.monotonic() - start < 1.4
    assert proposals == [[], []]
    assert relabeler.stats()["llm_errors"] == 1
    with pytest.raises(LLMError, match=r"no reply within 0\.3 s"):
        fast_client(server.url, timeout=0.3, max_retries=0).complete(
            [{"role": "user", "content": "hi"}]
        )


def test_check_reachable(server):
    assert check_reachable(server.url) is None
    assert check_reachable(server.url + "/chat/completions") is None
    reason = check_reachable(f"http://127.0.0.1:{closed_port()}/v1", timeout=0.5)
    assert reason is not None and "unreachable" in reason and "\n" not in reason
    assert "http" in check_reachable("localhost:8000/v1")


def test_server_down_opens_the_breaker(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    relabeler = LLMRelabeler(
        fast_client(url, max_retries=1), batch_size=1, breaker_failures=2, breaker_cooldown=60
    )
    segments = distinct_segments(5)
    proposals = relabeler.propose_batch(segments)
    assert proposals == [[]] * 5
    stats = relabeler.stats()
    assert stats["llm_calls"] == 2 and stats["llm_errors"] == 2  # then the breaker opened
    assert stats["llm_segments_skipped"] == 5 and stats["llm_outage"] == 1.0
    start = time.monotonic()
    assert relabeler.propose_batch(distinct_segments(4)) == [[]] * 4
    assert time.monotonic() - start < 0.2
    assert relabeler.stats()["llm_calls"] == 2 and relabeler.stats()["llm_segments_skipped"] == 9


def test_breaker_half_open_trial(server, tmp_path):
    server.respond = lambda request: Reply(status=500, raw="down")
    cache = ReplyCache(tmp_path / "c.sqlite")
    relabeler = LLMRelabeler(
        fast_client(server.url, max_retries=0),
        batch_size=1,
        cache=cache,
        breaker_failures=2,
        breaker_cooldown=0.3,
    )
    cached_seg, *others = distinct_segments(4)
    cache.put("relabel_v1", "test-model", narrate(cached_seg), [{"text": "t", "task": ALWAYS_TRUE}])
    relabeler.propose_batch(others)
    assert len(server.calls) == 2 and relabeler.stats()["llm_outage"] == 1.0
    # Open: cache hits are still served, misses are skipped without a request.
    out = relabeler.propose_batch([cached_seg, *others])
    assert out[0] == [{"text": "t", "task": ALWAYS_TRUE}] and out[1:] == [[]] * 3
    assert len(server.calls) == 2
    # After the cooldown one trial call; it fails, so the breaker opens again at once.
    time.sleep(0.35)
    relabeler.propose_batch(others)
    assert len(server.calls) == 3 and relabeler.stats()["llm_outage"] == 1.0
    # The server recovers: the next trial succeeds and closes the breaker.
    server.respond = survive_for_each
    time.sleep(0.35)
    proposals = relabeler.propose_batch(others)
    assert len(server.calls) == 3 + len(others)
    assert check_counts(others, proposals) == {} and all(len(p) == 1 for p in proposals)
    assert relabeler.stats()["llm_outage"] == 0.0


def test_circuit_breaker_states():
    now = [0.0]
    breaker = CircuitBreaker(failures=3, cooldown=10, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.record(False)
    assert not breaker.is_open
    breaker.record(True)  # a success resets the run of failures
    for _ in range(3):
        assert breaker.allow()
        breaker.record(False)
    assert breaker.is_open and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.record(True)
    assert not breaker.is_open and breaker.allow()


# ---------------------------------------------------------------------------------------------
# parse_reply directly


def good(n: int) -> dict:
    return {"text": f"Stay alive {n}.", "task": ALWAYS_TRUE}


def test_parse_reply_shapes():
    obj = {"segments": [{"id": 1, "proposals": [good(1)]}, {"id": 2, "proposals": [good(2)]}]}
    assert parse_reply(json.dumps(obj), 2) == [[good(1)], [good(2)]]
    # Ids missing: list order. A dict keyed by id. One proposal not in a list.
    no_ids = {"segments": [{"proposals": [good(1)]}, {"proposals": [good(2)]}]}
    assert parse_reply(json.dumps(no_ids), 2) == [[good(1)], [good(2)]]
    keyed = {"segments": {"1": [good(1)], "2": {"proposals": [good(2)]}}}
    assert parse_reply(json.dumps(keyed), 2) == [[good(1)], [good(2)]]
    assert parse_reply(json.dumps({"segments": [{"id": 1, "proposals": good(1)}]}), 1) == [
        [good(1)]
    ]
    # One segment: a bare list, or {"proposals": [...]}; a bare list is no answer for two.
    assert parse_reply(json.dumps([good(1), "prose"]), 1) == [[good(1), "prose"]]
    assert parse_reply(json.dumps({"proposals": [good(1)]}), 1) == [[good(1)]]
    assert parse_reply(json.dumps([good(1)]), 2) == [[Flawed("malformed-json")]] * 2
    # A stray bracket in prose does not beat the real object after it.
    prose = "Step [1] of my answer: " + json.dumps(obj) + " (see [2])."
    assert parse_reply(prose, 2) == [[good(1)], [good(2)]]
    # Fences with and without a language tag.
    assert parse_reply("```\n" + json.dumps(obj) + "\n```", 2) == [[good(1)], [good(2)]]
    assert parse_reply("Here:\n```JSON\n" + json.dumps(obj) + "```\nDone.", 2)[1] == [good(2)]
    # Proposals that are not a list, and extra segments the batch did not have.
    bad = {"segments": [{"id": 1, "proposals": 7}, {"id": 3, "proposals": [good(3)]}]}
    assert parse_reply(json.dumps(bad), 2) == [[Flawed("malformed-json")], [Flawed("empty")]]
    assert parse_reply(json.dumps({"answer": 42}), 1) == [[Flawed("malformed-json")]]
    assert parse_reply("", 3) == [[Flawed("empty")]] * 3


def test_parse_reply_caps_and_hostile_input():
    many = {"segments": [{"id": 1, "proposals": [good(i) for i in range(100)]}]}
    assert len(parse_reply(json.dumps(many), 1, max_proposals=5)[0]) == 5
    start = time.monotonic()
    assert parse_reply("[" * 100_000, 1) == [[Flawed("malformed-json")]]
    assert parse_reply("{" * (MAX_REPLY_CHARS - 10), 1) == [[Flawed("malformed-json")]]
    assert parse_reply(" " + json.dumps(many) * 2000, 1) == [[Flawed("malformed-json")]]  # too long
    assert parse_reply("{[" * 20_000 + json.dumps(many), 1) == [[Flawed("malformed-json")]]
    assert time.monotonic() - start < 5
    deep = {
        "segments": [
            {"id": 1, "proposals": [{"text": "x", "task": json.loads("[" * 50 + "]" * 50)}]}
        ]
    }
    segments = distinct_segments(1)
    assert check_counts(segments, parse_reply(json.dumps(deep), 1)) == {"malformed-json": 1}


# ---------------------------------------------------------------------------------------------
# Prompt


def example_segment() -> Segment:
    """The segment the few-shot example in relabel_v1.txt narrates."""
    seg = segment_with(
        {4: ["collect_wood"], 6: ["collect_wood"], 9: ["collect_wood"], 22: ["collect_drink"],
         15: ["place_table", "place_table_near_grass", "place_table_near_tree"]},
        length=40,
    )  # fmt: skip
    drink, wood = LEVEL_NAMES.index("drink"), LEVEL_NAMES.index("inventory_wood")
    seg.levels[:, drink] = 7
    seg.levels[22:, drink] = 8
    for t, n in ((4, 1), (6, 2), (9, 3), (15, 2)):
        seg.levels[t:, wood] = n
    for name, since in (("grass", 0), ("tree", 0), ("water", 20), ("crafting_table", 15)):
        seg.nearby[since:, NEARBY_NAMES.index(name)] = True
    return seg


def test_prompt_vocabulary_and_truthful_example():
    system, _ = load_prompt("relabel_v1")
    messages = render_prompt(["Segment of 1 steps.\nEnd: x."], "relabel_v1")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "<<" not in messages[0]["content"] + messages[1]["content"]
    words = set(re.findall(r"[a-z_]+", messages[0]["content"]))
    assert set(COUNTER_NAMES) <= words
    # The few-shot example is a real narration, and every example instruction holds on it.
    seg = example_segment()
    assert narrate(seg) in system
    example = system[system.index("Reply:\n") + len("Reply:\n") :]
    (proposals,) = parse_reply(example, 1)
    kept, flawed = verify(seg, proposals)
    assert not flawed and len(kept) == len(proposals) >= 4
    # The example must not teach the model a human suite's texts (design doc §9).
    suite = {x.text.strip().lower() for x in load_suite(STANDARD_SUITE)}
    assert not {p["text"].strip().lower() for p in proposals} & suite


def test_every_shipped_prompt_loads_and_its_section_markers_are_not_prompt_text():
    from importlib import resources

    shipped = sorted(p.name[:-4] for p in (resources.files("oir") / "prompts").iterdir() if p.name.endswith(".txt"))
    assert shipped and all(v.startswith("relabel_") for v in shipped)
    for v in shipped:
        system, user = load_prompt(v)
        assert system and user and "===" not in system + user


def test_bad_prompt_or_url_fails_at_construction(server):
    with pytest.raises(ValueError, match="no prompt file"):
        LLMRelabeler(fast_client(server.url), prompt="relabel_v999")
    with pytest.raises(ValueError, match="prompt version"):
        load_prompt("../etc/passwd")
    with pytest.raises(ValueError, match="http"):
        ChatClient("ftp://x/v1", "m")
    assert ChatClient(server.url + "/", "m").url == server.url


def test_endpoint_list_balances_and_survives_one_server_dying():
    from oir.llm import EndpointPool, LLMRelabeler, check_reachable, make_llm_relabeler

    a, b = LLMServer().start(), LLMServer().start()
    a.respond = b.respond = survive_for_each
    try:
        relabeler = make_llm_relabeler(f"{a.url},{b.url}", "test-model", use_cache=False, batch_size=1,
                                       timeout=0.5, max_retries=0, concurrency=2)
        assert isinstance(relabeler, LLMRelabeler) and isinstance(relabeler.client, EndpointPool)
        segments = distinct_segments(8)
        proposals = relabeler.propose_batch(segments)
        assert all(len(p) == 1 for p in proposals)  # every segment answered
        assert len(a.calls) + len(b.calls) == 8 and len(a.calls) >= 2 and len(b.calls) >= 2  # both used
        # One server dies mid-run: no new connections, and its kept-alive ones answer 500.
        b.respond = lambda request: Reply(status=500, raw='{"error": "dying"}')
        b.stop()
        assert check_reachable(f"{a.url},{b.url}") is None  # one answers: the list is reachable
        later = relabeler.propose_batch(distinct_segments(16)[8:])
        assert all(len(p) == 1 for p in later)  # the survivor answered them all, nothing lost
        stats = relabeler.stats()
        assert stats["llm_endpoints_down"] == 1 and stats["llm_errors"] == 0 and stats["llm_segments_skipped"] == 0
        assert stats["llm_endpoint0_calls"] + stats["llm_endpoint1_calls"] == 16
        relabeler.close()
    finally:
        a.stop()
    assert check_reachable(f"{a.url},{b.url}") is not None  # none answers


def test_signature_cache_rebinds_one_reply_to_segments_with_the_same_signature(server):
    from oir.llm.signature import event_signature, rebind

    a = segment_with({3: ["collect_wood"], 5: ["collect_wood"], 9: ["collect_wood"], 12: ["place_table"]})
    b = segment_with({1: ["collect_wood"], 2: ["collect_wood"], 7: ["collect_wood"], 8: ["collect_wood"], 20: ["place_table"]})
    c = segment_with({4: ["place_table"], 6: ["collect_wood"]})  # table first: another signature
    assert event_signature(a) == event_signature(b) != event_signature(c)  # 3 and 4 wood share a bucket
    three = {"text": "Chop three wood, then build a table.",
             "task": {"all": [{"counter": "collect_wood", "at_least": 3}, {"counter": "place_table", "at_least": 1}],
                      "ordered": True}}
    (moved,) = rebind([three], a, b)
    assert moved["text"] == "Chop four wood, then build a table." and moved["task"]["all"][0]["at_least"] == 4
    assert three["task"]["all"][0]["at_least"] == 3  # the source reply is not changed

    server.queue(Reply(json.dumps({"segments": [{"id": 1, "proposals": [three]}, {"id": 2, "proposals": []}]})))
    relabeler = LLMRelabeler(fast_client(server.url), batch_size=8)
    proposals = relabeler.propose_batch([a, b, c])
    assert len(server.calls) == 1 and server.calls[0].narrations == [narrate(a), narrate(c)]  # b not asked
    kept = [[r.text for r in verify(s, p)[0]] for s, p in zip([a, b, c], proposals, strict=True)]
    assert kept == [["Chop three wood, then build a table."], ["Chop four wood, then build a table."], []]
    # A later segment with the signature: no call at all, and its own count.
    d = segment_with({2: ["collect_wood"], 3: ["collect_wood"], 4: ["collect_wood"], 9: ["place_table"]})
    assert [r.text for r in verify(d, relabeler.propose_batch([d])[0])[0]] == ["Chop three wood, then build a table."]
    assert len(server.calls) == 1
    stats = relabeler.stats()
    assert stats["llm_signature_hits"] == 2 and stats["llm_signature_hit_rate"] == 0.5 and stats["llm_signatures"] == 2


def test_v3_prompt_examples_verify_on_the_segments_they_describe():
    """relabel_v3_small shows a small model the richer forms (a sequence of three, a prohibition that
    held, an inventory amount, a vital bound): its example reply must verify on its example logs."""
    system, _ = load_prompt("relabel_v3_small")
    reply = system.split("Example reply:\n", 1)[1].strip()
    one = segment_with({5: ["collect_wood"], 8: ["collect_wood"], 12: ["collect_wood"],
                        20: ["place_table", "place_table_near_tree", "place_table_near_water"],
                        31: ["collect_drink"], 44: ["make_wood_pickaxe"]}, length=60)
    two = segment_with({8: ["wake_up"], 12: ["collect_wood"], 16: ["collect_wood"], 20: ["collect_wood"],
                        25: ["collect_wood"]}, length=40)
    wood = LEVEL_NAMES.index("inventory_wood")
    two.levels[:, LEVEL_NAMES.index("health")] = 6
    for t, n in ((12, 1), (16, 2), (20, 3), (25, 4)):
        two.levels[t:, wood] = n
    parsed = parse_reply(reply, 2, 16)
    for seg, props in zip((one, two), parsed, strict=True):
        kept, flawed = verify(seg, props)
        assert not flawed and len(kept) == len(props) >= 2
    assert any(len(p["task"]["all"]) == 3 and p["task"].get("ordered") for p in parsed[0])
    assert any("none" in p["task"] for p in parsed[0]) and any("none" in p["task"] for p in parsed[1])
    assert render_prompt(["x"], "relabel_v3_small")[0]["content"].count("collect_wood") >= 1


def test_v4_prompt_has_no_example_to_copy_and_fills_every_slot():
    """relabel_v4_small is zero-shot: the reply's JSON schema carries the structure, so a small model
    has no example texts to copy (docs/results.md: 0.5B models wrote the v2 example's texts)."""
    system, _ = load_prompt("relabel_v4_small")
    assert "example" not in system.lower() and "{\"segments\"" not in system
    messages = render_prompt(["Segment of 9 steps.", "Segment of 3 steps."], "relabel_v4_small")
    assert all("<<" not in m["content"] for m in messages)
    assert "collect_wood" in messages[0]["content"] and "[segment 2]" in messages[1]["content"]
    assert "each of the 2 segments" in messages[1]["content"]
