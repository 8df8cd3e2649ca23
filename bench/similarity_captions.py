"""How often similarity rewards are wrong, by threshold and by state text (issue 15, item 3).

Every narrator relabel carries a spec that the Python evaluator checks, so on recorded segments
each similarity reward can be judged: *false* when it comes before (or without) the spec holding,
*missed* when the spec held and similarity never rewarded (oir.relabel.similarity_errors). Two
state texts are compared with the same encoder (all-MiniLM-L6-v2) and proposals:

* ``events``: one fixed phrase per event ("collected wood"), what the jitted env compares with;
* ``step``: the whole step (oir.narrate.caption_step): its events with the item they changed,
  the inventory and vitals that changed, and what came into view. Steps with no event have one.

    .venv/bin/python bench/similarity_captions.py --segments bench/data/segments-1000.npz

The segments come from `oir train --relabel narrator --steps 400000 --seed 3
--relabeling.save-segments 1000 --eval-episodes 0` (eventful segments, sampled uniformly).
"""

from __future__ import annotations

import argparse
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np

from oir.encode import make_encoder
from oir.narrate import EVENT_TEXTS, caption_step
from oir.relabel import NarratorRelabeler, similarity_errors
from oir.segments import load_segments

DATA = Path(__file__).parent / "data" / "segments-1000.npz"


def _event_step(seg, event_emb, text_emb, delta, text, spec) -> int | None:
    """What the jitted env does: a step rewards if any of its events' phrases is close enough."""
    hits = (event_emb @ text_emb[text]) >= delta
    steps = np.flatnonzero(((seg.events > 0) & hits[None, :]).any(axis=1))
    return int(steps[0]) + 1 if len(steps) else None


def _caption_step(caps, cap_emb, text_emb, delta, text, spec) -> int | None:
    """The first step whose whole caption is close enough."""
    return next((t for t, c in enumerate(caps, 1) if c and float(cap_emb[c] @ text_emb[text]) >= delta), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=Path, default=DATA)
    ap.add_argument("--deltas", default="0.4,0.5,0.6,0.7,0.8")
    ap.add_argument("--max-proposals", type=int, default=8)
    args = ap.parse_args()
    deltas = [float(x) for x in args.deltas.split(",")]
    segments = load_segments(args.segments)
    enc = make_encoder("minilm")
    narrator = NarratorRelabeler(args.max_proposals)
    proposals = [narrator.propose(s) for s in segments]
    texts = sorted({p["text"] for props in proposals for p in props})
    text_emb = dict(zip(texts, enc.encode(texts), strict=True))
    event_emb = enc.encode(list(EVENT_TEXTS))
    captions = [[caption_step(s, t) for t in range(1, s.length + 1)] for s in segments]
    unique = sorted({c for cs in captions for c in cs if c})
    cap_emb = dict(zip(unique, enc.encode(unique), strict=True))
    print(f"{len(segments)} segments, {sum(map(len, proposals)):,} narrator proposals, "
          f"{len(texts):,} distinct texts, {len(unique):,} distinct step captions\n")
    print("| delta | state text | similarity rewards | false % | specs held | missed % |")
    print("|---:|---|---:|---:|---:|---:|")
    for delta in deltas:
        for name in ("events", "step"):
            total: Counter = Counter()
            for seg, props, caps in zip(segments, proposals, captions, strict=True):
                first = partial(_event_step, seg, event_emb, text_emb, delta) if name == "events" else \
                    partial(_caption_step, caps, cap_emb, text_emb, delta)
                total += similarity_errors(props, seg.counters(), first)
            false = 100 * total["sim_false"] / max(total["sim_rewards"], 1)
            missed = 100 * total["sim_missed"] / max(total["spec_held"], 1)
            print(f"| {delta:g} | {name} | {total['sim_rewards']:,} | {false:.1f} | {total['spec_held']:,} | {missed:.1f} |")


if __name__ == "__main__":
    main()
