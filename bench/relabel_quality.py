"""Relabel quality of real local LLMs on a fixed set of saved segments (issue 7).

For each local model and (prompt, JSON mode), runs the LLM relabeler and the verification of
`oir relabel` on the same segments through llama-cpp-python's server, and prints one markdown
table: proposals per segment, verified and flawed fractions (flawed by reason), unique verified
instructions, tokens/s, seconds per segment, and the distinct Craftax achievements the verified
relabels cover against those the narrator relabeler (rule-based, not a language model) covers
on the same segments. The reply cache is off: every figure is a real generation.

    .venv/bin/python bench/relabel_quality.py --segments 16 \
        --configs qwen-0.5b:relabel_v2_small:off qwen-0.5b:relabel_v2_small:schema

Needs `make llm-local`. The segments (bench/data/segments.npz) come from
`oir train --relabel narrator --steps 200000 --relabeling.save-segments 64 --eval-episodes 0`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from oir import llm_local
from oir.buffer import normalize_text
from oir.events import ACHIEVEMENTS, EVENT_NAMES
from oir.llm import make_llm_relabeler, response_format
from oir.relabel import FLAW_REASONS, NarratorRelabeler, verify
from oir.segments import load_segments

DATA = Path(__file__).parent / "data" / "segments.npz"
DEFAULT_CONFIGS = [
    "smollm2-135m:relabel_v2_small:off",
    "smollm2-135m:relabel_v2_small:schema",
    "qwen-0.5b:relabel_v1:off",
    "qwen-0.5b:relabel_v2_small:off",
    "qwen-0.5b:relabel_v2_small:object",
    "qwen-0.5b:relabel_v2_small:schema",
]


def achievements_of(relabels) -> set[str]:
    """Achievements that verified relabels ask for at least once ("at_least": 0 asks for nothing)."""
    return {c.counter for r in relabels for c in r.spec.all
            if c.counter in ACHIEVEMENTS and (c.at_least or 0) >= 1}


def vacuous(relabel) -> bool:
    """A spec that holds on any segment: every clause of ``all`` asks for an event at least 0 times."""
    return all(c.at_least == 0 for c in relabel.spec.all)


def present(segments) -> set[str]:
    """Achievements that happened at least once in the segments."""
    totals = sum(s.events.sum(axis=0) for s in segments)
    return {name for name, n in zip(EVENT_NAMES, totals, strict=False) if name in ACHIEVEMENTS and n > 0}


def evaluate(segments, proposals) -> dict:
    flawed: Counter = Counter()
    kept = []
    for seg, props in zip(segments, proposals, strict=True):
        ok, bad = verify(seg, props)
        kept += ok
        flawed += bad
    proposed = sum(len(p) for p in proposals)
    return {"proposed": proposed, "verified": len(kept), "flawed": flawed,
            "unique": len({normalize_text(r.text) for r in kept}), "achievements": achievements_of(kept),
            "vacuous": sum(vacuous(r) for r in kept)}


def run_config(server_url: str, model: str, prompt: str, mode: str, segments, batch: int) -> dict:
    relabeler = make_llm_relabeler(server_url, model, prompt=prompt, batch_size=batch, use_cache=False,
                                   timeout=900, max_retries=0, response_format=response_format(mode))
    t0 = time.perf_counter()
    proposals = relabeler.propose_batch(segments)
    wall = time.perf_counter() - t0
    stats = relabeler.stats()
    relabeler.close()
    out = evaluate(segments, proposals)
    out.update(wall=wall, tokens=stats["llm_completion_tokens"], errors=stats["llm_errors"],
               skipped=stats["llm_segments_skipped"])
    return out


def pct(a: float, b: float) -> str:
    return f"{100 * a / b:.0f}%" if b else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="segments.npz")
    ap.add_argument("--segments", type=int, default=16, help="the first N segments of the file")
    ap.add_argument("--batch", type=int, default=1, help="segments per request")
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, metavar="MODEL:PROMPT:JSON_MODE")
    args = ap.parse_args()
    segments = load_segments(args.data)[: args.segments]
    n = len(segments)
    narr = evaluate(segments, NarratorRelabeler().propose_batch(segments))
    seen = present(segments)
    print(f"{n} segments from {args.data}; achievements present in them: {len(seen)}; "
          f"narrator relabeler (rule-based, not an LLM) covers {len(narr['achievements'])} "
          f"with {narr['verified']} verified relabels ({narr['unique']} unique)", file=sys.stderr)

    rows = []
    by_model: dict[str, list[tuple[str, str]]] = {}
    for c in args.configs:
        model, prompt, mode = c.split(":")
        by_model.setdefault(model, []).append((prompt, mode))
    for model, configs in by_model.items():
        t0 = time.perf_counter()
        with llm_local.serve(model) as server:
            print(f"{model}: server up in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            for prompt, mode in configs:
                r = run_config(server.url, model, prompt, mode, segments, args.batch)
                print(f"  {prompt} json={mode}: {r['wall']:.0f} s, verified {r['verified']}/{r['proposed']}, "
                      f"errors {r['errors']:g}", file=sys.stderr)
                rows.append((model, prompt, mode, r))

    reasons = [x for x in FLAW_REASONS if x != "below-delta"]
    head = ["model", "prompt", "JSON mode", "proposals/seg", "verified", "flawed",
            *[f"flawed: {x}" for x in reasons], "unique verified", "vacuous verified",
            "tokens/s generated", "tokens/seg generated", "s/seg", "verified/min",
            f"achievements covered (narrator {len(narr['achievements'])}, present {len(seen)})"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|")
    for model, prompt, mode, r in rows:
        p = r["proposed"]
        cells = [model, prompt, mode, f"{p / n:.1f}", pct(r["verified"], p), pct(sum(r["flawed"].values()), p),
                 *[pct(r["flawed"][x], p) for x in reasons], str(r["unique"]), str(r["vacuous"]),
                 f"{r['tokens'] / r['wall']:.1f}" if r["wall"] else "-", f"{r['tokens'] / n:.0f}",
                 f"{r['wall'] / n:.1f}", f"{60 * r['verified'] / r['wall']:.1f}" if r["wall"] else "-",
                 f"{len(r['achievements'])} ({len(r['achievements'] & narr['achievements'])} also by narrator)"]
        print("| " + " | ".join(cells) + " |")
    print(f"\nnarrator relabeler (rule-based, not an LLM) on the same {n} segments: "
          f"{narr['proposed'] / n:.1f} proposals/seg, {pct(narr['verified'], narr['proposed'])} verified, "
          f"{narr['unique']} unique, covers {len(narr['achievements'])} achievements: "
          f"{', '.join(sorted(narr['achievements']))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
