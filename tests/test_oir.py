"""The OIR loop end to end, on tiny shapes: narrator and LLM relabelers, verified and similarity rewards.

The LLM runs talk to a real HTTP server on 127.0.0.1 (tests/llm_server.py) that answers with
true relabels mixed with hallucinations, unknown counters, malformed JSON, 500s and replies slower
than the timeout. Training must finish, count every flaw, and never turn a flaw into a reward.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from llm_server import LLMServer, Reply

from oir.cli import main
from oir.events import COUNTERS, NUM_EVENTS
from oir.narrate import EVENT_TEXTS, PHRASES
from oir.relabel import first_similar_step, similarity_hits
from oir.segments import load_segments
from oir.tasks import parse_spec

# 8 envs x 16 steps per update, 24 updates; instructions time out after 32 steps. PQN, zero-label
# (no suite line in training: only relabels), no bonus and no world spans unless a test says so.
TINY = ["--algo", "pqn", "--labels", "0", "--achievement-bonus", "0", "--relabeling.world-span", "0",
        "--encoder", "hash", "--num-envs", "8", "--steps", str(8 * 16 * 24), "--max-task-steps", "32",
        "--relabeling.history", "64", "--relabeling.batch", "8", "--relabeling.window", "8",
        "--pqn.num-minibatches", "2", "--eval-episodes", "0"]


def run(tmp_path: Path, name: str, *args: str) -> tuple[Path, dict, list[dict]]:
    out = tmp_path / name
    assert main(["train", "--out", str(out), *TINY, *args]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return out, json.loads((out / "summary.json").read_text()), rows


def instructions(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "instructions.jsonl").read_text().splitlines()]


def counts_add_up(r: dict) -> bool:
    return r["relabel_proposed"] == r["relabel_verified"] + r["relabel_flawed"]


def test_narrator_run_grows_verified_instructions(tmp_path, capsys):
    out, summary, rows = run(tmp_path, "narrator", "--relabel", "narrator", "--relabeling.save-segments", "6",
                             "--progress-every", "10")
    rel = summary["relabeling"]
    assert summary["relabeler"].startswith("narrator relabeler") and "not a language model" in summary["relabeler"]
    assert "LLM" not in summary["relabeler"]
    assert rel["relabel_verified"] > 0 and rel["relabel_flawed"] == 0 and counts_add_up(rel)
    assert rel["unique_instructions"] == len(instructions(out)) > 0
    saved = load_segments(out / "segments.npz")
    assert len(saved) == 6 and all(s.events[:, :22].any() for s in saved)  # eventful segments only
    assert rows[-1]["relabel_windows_added"] > 0 and max(r["relabel_windows"] for r in rows) > 0
    for key in ("relabel_wall_frac", "relabel_worker_frac", "unique_instructions", "relabel_proposed"):
        assert key in rows[-1]
    assert all(r["reward_false_rate"] == 0 and r["reward_missed_rate"] == 0 for r in rows)  # verified rewards
    assert [r["env_steps"] for r in rows] == [8 * 16 * (i + 1) for i in range(24)]
    for line in instructions(out):
        parse_spec(line["task"])
        assert line["count"] >= 1 and line["first_seen_step"] > 0
    # stdout is not a terminal here: a header, then a plain line every 10 updates and at the end
    progress = [x for x in capsys.readouterr().out.splitlines() if x.startswith("oir: ")]
    assert progress[0] == f"oir: training pqn narrator-relabeler verified, {8 * 16 * 24:,} env steps"
    line = re.compile(r"oir: ([\d,]+)/3,072 env steps \(\d+%\), [\d,]+ steps/s, success \d+\.\d%, "
                      r"relabels ([\d,]+) verified, ([\d,]+) instructions, [\d,]+ s")
    got = [line.fullmatch(x) for x in progress[1:]]
    assert all(got) and [int(m[1].replace(",", "")) for m in got] == [1280, 2560, 3072]
    assert int(got[-1][2].replace(",", "")) == rows[-1]["relabel_verified"]  # the last metrics row's
    assert int(got[-1][3].replace(",", "")) == rows[-1]["unique_instructions"]


TRUE_TEXT = {"collect_wood": "Gather some wood.", "wake_up": "Take a nap and wake up.",
             "collect_sapling": "Pick up a sapling.", "collect_drink": "Drink some water.",
             "place_plant": "Plant a sapling in the grass.", "eat_cow": "Eat a cow."}


def adversarial(server: LLMServer):
    """Replies built from the request: true relabels plus hallucinations, or a broken reply."""

    def respond(request) -> Reply:
        k = len(server.calls)
        if k % 5 == 2:
            return Reply(content='{"segments": [{"id": 1, "proposals": [{"text": "oops"')  # malformed
        if k % 5 == 3:
            return Reply(status=500, raw='{"error": "overloaded"}')
        if k % 5 == 4:
            return Reply(content="[]", delay=1.5)  # slower than the 0.5 s timeout
        segments = []
        for i, narration in enumerate(request.narrations, 1):
            props = [{"text": "Mine a diamond.", "task": {"all": [{"counter": "collect_diamond", "at_least": 1}]}},
                     {"text": "Dance near a tree.", "task": {"all": [{"counter": "dance", "at_least": 1}]}}]
            props += [{"text": text, "task": {"all": [{"counter": c, "at_least": 1}]}}
                      for c, text in TRUE_TEXT.items() if PHRASES[c] in narration]
            segments.append({"id": i, "proposals": props})
        return Reply(content="Here you go:\n```json\n" + json.dumps({"segments": segments}) + "\n```")

    return respond


def test_llm_run_survives_adversarial_server_and_never_rewards_a_flaw(tmp_path):
    server = LLMServer().start()
    server.respond = adversarial(server)
    try:
        out, summary, _rows = run(tmp_path, "llm", "--relabel", "llm", "--llm-url", server.url, "--llm-model", "test-model",
                                 "--llm-timeout", "0.5", "--llm-batch", "1",
                                  "--llm-cache", str(tmp_path / "llm-cache.sqlite"))
    finally:
        server.stop()
    rel = summary["relabeling"]
    assert summary["relabeler"] == "LLM relabeler"
    assert "test-model" in summary["llm"] and "relabel_v1" in summary["llm"]
    # The 500s and the slow replies were retried: more requests reached the server than calls succeeded.
    assert rel["llm_calls"] >= 3 and len(server.calls) > rel["llm_calls"] + rel["llm_errors"]
    assert counts_add_up(rel)
    assert rel["relabel_flawed_does-not-hold"] > 0 and rel["relabel_flawed_unknown-counter"] > 0
    assert rel["relabel_flawed_malformed-json"] > 0
    lines = instructions(out)
    assert lines, "the true relabels should have entered the buffer"
    for line in lines:  # only verified instructions: no diamond (never mined here), no unknown counter
        assert line["text"] in TRUE_TEXT.values()
        assert line["task"]["all"][0]["counter"] != "collect_diamond"
    assert rel["relabel_windows_added"] <= rel["relabel_verified"]
    # LLM relabels come late: the store (on by default with --relabel llm) makes them windows anyway
    assert rel["relabels_expired"] == 0 and rel["relabel_windows_late"] == rel["relabel_windows_added"] > 0


def test_llm_unreachable_gives_one_line_and_trains_on_or_refuses(tmp_path, capsys):
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    _out, summary, _ = run(tmp_path, "down", "--relabel", "llm", "--llm-url", dead, "--llm-timeout", "0.2",
                          "--steps", str(8 * 16 * 4), "--llm-cache", "off")
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("oir:")]
    assert len(err) == 1 and "does not answer" in err[0] and "training goes on" in err[0]
    assert summary["relabeling"]["relabel_verified"] == 0
    assert main(["train", "--out", str(tmp_path / "req"), *TINY, "--relabel", "llm", "--llm-url", dead,
                 "--llm-required"]) == 2
    assert "--llm-required" in capsys.readouterr().err


def test_similarity_hits_and_first_similar_step():
    event_emb = np.eye(NUM_EVENTS, dtype=np.float32)
    instr = np.zeros((2, NUM_EVENTS), np.float32)
    instr[0, 0], instr[0, 5] = 0.9, 0.43  # close to event 0, weakly to event 5
    instr[1, 3] = 0.2
    hits = similarity_hits(instr, event_emb, delta=0.5)
    assert hits[0].nonzero()[0].tolist() == [0] and not hits[1].any()
    from test_relabel import segment_with

    seg = segment_with({4: ["collect_wood"], 9: ["collect_wood"]})
    assert first_similar_step(seg, hits[0]) == 4 and first_similar_step(seg, hits[1]) is None
    assert len(EVENT_TEXTS) == NUM_EVENTS and len({c.name for c in COUNTERS}) > NUM_EVENTS


def test_similarity_run_counts_unsupported_rewards(tmp_path):
    _, summary, _rows = run(tmp_path, "sim", "--relabel", "narrator", "--reward", "similarity", "--delta", "0.3")
    rel = summary["relabeling"]
    assert summary["reward"] == "similarity" and counts_add_up(rel)
    assert "relabel_unsupported" in rel and rel["relabel_unsupported"] <= rel["relabel_verified"]
    # the narrator proposes only specs that hold: similarity can miss or jump ahead of them, never reward a false one
    assert rel["relabel_spec_held"] > 0 and rel["relabel_unverified"] == 0
    assert 0 <= rel["relabel_sim_false"] <= rel["relabel_sim_rewards"] and rel["relabel_sim_missed"] <= rel["relabel_spec_held"]
    assert 0.0 <= rel["relabel_false_reward_rate"] <= 1.0 and 0.0 <= rel["relabel_missed_reward_rate"] <= 1.0
    assert all(0.0 <= r["reward_false_rate"] <= 1.0 and 0.0 <= r["reward_missed_rate"] <= 1.0 for r in _rows)


@pytest.mark.parametrize("algo", ["ppo"])
def test_ppo_grows_its_buffer_and_imitates_relabeled_windows(tmp_path, algo):
    _out, summary, rows = run(tmp_path, algo, "--algo", algo, "--relabel", "narrator",
                             "--ppo.num-steps", "16", "--ppo.num-minibatches", "2", "--ppo.relabel-bc-coef", "0.1",
                             "--relabeling.world-span", "48")
    assert summary["relabeling"]["unique_instructions"] > 0
    assert summary["relabeling"]["relabel_flawed"] == 0  # world spans: nothing held before its instruction
    assert max(r["relabel_windows"] for r in rows) > 0  # hindsight imitation trained on windows
    assert all(np.isfinite(r["relabel_bc_loss"]) for r in rows)
    assert not any("relabel_sil_loss" in r or "relabel_sil_active" in r for r in rows)  # self-imitation: retired
    assert 0.0 < summary["relabeling"]["relabel_used_frac"] <= 1.0


def test_rows_the_worker_added_are_not_drawn_before_their_spec_reaches_the_device():
    from oir.encode import make_encoder
    from oir.hindsight import FREE_PLAY_ROW, Hindsight, RelabelingConfig
    from oir.relabel import NarratorRelabeler

    hs = Hindsight(RelabelingConfig(capacity=8), NarratorRelabeler(), make_encoder("hash", cache=None), num_envs=2)
    try:
        assert hs.weights()[FREE_PLAY_ROW] == 1.0 and hs.weights().sum() == 1.0  # free play only
        (row, outcome), = hs.buffer.add_many([("Gather some wood.", parse_spec({"all": [
            {"counter": "collect_wood", "at_least": 1}]}), 0)])
        assert outcome == "new" and hs.weights()[row] == 0.0  # in the buffer, not yet on the device
        hs.on_device[row] = True  # what sync() does once it has uploaded the row
        w = hs.weights()
        assert w[row] > 0 and w[FREE_PLAY_ROW] == pytest.approx(w[row] * 0.1 / 0.9)
    finally:
        hs.worker.close()


def test_seeded_suite_lines_are_rows_drawn_by_priority_like_relabels():
    """--labels above 0: the suite's lines start the buffer (Hindsight.seed) and are drawn as any
    relabel is, by priority; free play keeps its share."""
    from types import SimpleNamespace

    from oir.encode import make_encoder
    from oir.hindsight import FREE_PLAY_ROW, Hindsight, RelabelingConfig
    from oir.relabel import NarratorRelabeler

    wood = lambda n: parse_spec({"all": [{"counter": "collect_wood", "at_least": n}]})  # noqa: E731
    lines = [SimpleNamespace(text=t, spec=wood(n)) for t, n in (("Chop a tree.", 1), ("Get two logs.", 2))]
    hs = Hindsight(RelabelingConfig(capacity=16), NarratorRelabeler(), make_encoder("hash", cache=None), num_envs=2)
    try:
        assert hs.seed(lines) == 2
        rows = hs.buffer.rows()
        w = hs.weights()
        assert len(rows) == 2 and (w[rows] > 0).all() and w[rows[0]] == w[rows[1]]  # both untried: equal
        assert w[FREE_PLAY_ROW] / w.sum() == pytest.approx(0.1)
        hs.buffer.record(np.eye(16, dtype=np.int64)[rows[0]] * 4, np.eye(16, dtype=np.int64)[rows[0]] * 4)
        assert hs.weights()[rows[0]] < hs.weights()[rows[1]]  # mastered: drawn less, like a relabel
    finally:
        hs.worker.close()


def test_training_time_evaluation_writes_curves_into_metrics(tmp_path):
    suite = tmp_path / "tiny.jsonl"
    alive = {"all": [{"counter": "health", "at_least": 1}]}  # holds after one step, whatever the agent does
    diamonds = {"all": [{"counter": "collect_diamond", "at_least": 9}]}  # never, in a few steps
    suite.write_text("\n".join(json.dumps(x) for x in [
        {"id": "alive", "text": "stay alive", "task": alive, "split": "test", "category": "easy"},
        {"id": "gems", "text": "collect nine diamonds", "task": diamonds, "split": "train", "category": "hard"},
    ]) + "\n")
    _, _, rows = run(tmp_path, "during", "--relabel", "narrator", "--eval-suite", str(suite),
                     "--eval-every", str(8 * 16 * 8), "--eval-max-steps", "8")
    evaluated = [r["env_steps"] for r in rows if "eval_success_all" in r]
    assert evaluated == [8 * 16 * 8, 8 * 16 * 16]  # after 8 and 16 updates; the final one is in summary.json
    for r in rows:
        if "eval_success_all" in r:
            assert r["eval_success_test"] == 1.0 and r["eval_success_train"] == 0.0 and r["eval_coverage"] == 0.5


def test_oir_relabel_on_saved_segments(tmp_path, capsys):
    from test_relabel import segment_with

    from oir.segments import save_segments

    segs = [segment_with({3: ["collect_wood"], 7: ["collect_sapling"]}), segment_with({2: ["wake_up"]}, length=5)]
    segs[0].after = 5  # a world span's segment: the wood came before its instruction
    path = tmp_path / "segments.npz"
    save_segments(path, segs)
    back = load_segments(path)
    assert [s.length for s in back] == [30, 5] and (back[0].events == segs[0].events).all()
    assert [s.after for s in back] == [5, 0]
    assert (back[1].levels == segs[1].levels).all() and (back[1].nearby == segs[1].nearby).all()

    capsys.readouterr()
    assert main(["relabel", "--segments", str(path), "--out", str(tmp_path / "n.jsonl")]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "narrator relabeler" in text and "flawed 0" in text
    lines = [json.loads(x) for x in (tmp_path / "n.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(len(x["verified"]) == x["proposed"] > 0 for x in lines)
    # nothing that held by step 5 is stated: every relabel first holds at the sapling, step 7
    assert "began after step 5" in lines[0]["narration"] and {v["step"] for v in lines[0]["verified"]} == {7}

    server = LLMServer().start()
    server.respond = adversarial(server)
    try:
        assert main(["relabel", "--segments", str(path), "--relabeler", "llm", "--llm-url", server.url,
                     "--llm-cache", "off", "--out", str(tmp_path / "l.jsonl")]) == 0
    finally:
        server.stop()
    lines = [json.loads(x) for x in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert sum(x["proposed"] for x in lines) == sum(len(x["verified"]) + sum(x["flawed"].values()) for x in lines)
    assert any(x["flawed"].get("does-not-hold") for x in lines)  # the diamond that was never mined
    assert all(v["task"]["all"][0]["counter"] != "collect_diamond" for x in lines for v in x["verified"])
    # every proposal as given, the rejected one with its text: a prompt change is read off these
    assert all(len(x["proposals"]) == x["proposed"] for x in lines)
    assert any(p.get("task", {}).get("all", [{}])[0].get("counter") == "collect_diamond"
               for x in lines for p in x["proposals"] if "flawed" not in p)

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    capsys.readouterr()
    assert main(["relabel", "--segments", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"oir: error: {bad}: not a segments file")


def test_narrator_run_with_a_relabel_process_matches_the_thread_run(tmp_path):
    """Synchronous runs are deterministic, so a relabel process must change nothing but where the
    narrator runs."""
    sync = ("--relabel", "narrator", "--relabeling.synchronous", "--checkpoint-every", "0")
    _, _, rows_thread = run(tmp_path, "thread", *sync)
    _, s_proc, rows_proc = run(tmp_path, "proc", *sync, "--relabeling.processes", "1")
    assert s_proc["relabeling"]["relabel_process_deaths"] == 0 and s_proc["relabeling"]["relabel_verified"] > 0
    timing = ("sps", "wall_s", "relabel_wall_frac", "relabel_worker_frac", "texts_embedded")
    strip = lambda r: {k: v for k, v in r.items() if k not in timing}  # noqa: E731
    assert [strip(r) for r in rows_proc] == [strip(r) for r in rows_thread]
