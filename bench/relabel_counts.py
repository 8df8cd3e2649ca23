"""How many relabels asked for counts of one, two, three or more, per run (issue 13).

Reads each run's ``instructions.jsonl`` (the instruction buffer at the end: every relabel merged
into its row, ``count`` times) and prints one markdown table: for the count tasks of the held-out
suite (saplings planted, zombies defeated, wood, stone), how often relabeling stated each count,
and the share of attempts made on instructions that ask for a count of three or more. A row's
``count`` includes the suite lines it was seeded with (``narrator+suite``): one each.

    .venv/bin/python bench/relabel_counts.py runs/compare-2m-ppo-count-ns-s0/narrator+suite-s0 \
        runs/compare-2m-ppo-count-ns-span-s0/narrator+suite-s0
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from oir.tasks import parse_spec

COUNTERS = ("place_plant", "defeat_zombie", "collect_wood", "collect_stone")


def tally(run: Path) -> tuple[Counter, float]:
    """(times stated per (counter, count bucket) for single-clause count tasks, share of attempts
    on instructions with a clause asking for 3 or more)."""
    stated: Counter = Counter()
    attempts = high = 0
    for line in (run / "instructions.jsonl").read_text().splitlines():
        row = json.loads(line)
        spec = parse_spec(row["task"])
        attempts += row["attempts"]
        if any((c.at_least or 0) >= 3 for c in spec.all):
            high += row["attempts"]
        if len(spec.all) == 1 and not spec.none and not spec.ordered and spec.within is None:
            c = spec.all[0]
            if c.counter in COUNTERS and c.at_least is not None:
                stated[c.counter, min(c.at_least, 3)] += row["count"]
    return stated, high / max(attempts, 1)


def main(argv: list[str]) -> int:
    runs = [Path(a) for a in argv]
    missing = [str(r) for r in runs if not (r / "instructions.jsonl").is_file()]
    if not runs or missing:
        print(f"relabel_counts: give run dirs with an instructions.jsonl (missing: {', '.join(missing) or 'none given'})",
              file=sys.stderr)
        return 2
    head = " | ".join(f"{c} 1 / 2 / 3+" for c in COUNTERS)
    print(f"| run | {head} | attempts on counts >= 3 |")
    print("|---|" + "---:|" * (len(COUNTERS) + 1))
    for run in runs:
        stated, high = tally(run)
        cells = " | ".join(" / ".join(f"{stated[c, k]:,}" for k in (1, 2, 3)) for c in COUNTERS)
        print(f"| {run.parent.name}/{run.name} | {cells} | {100 * high:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
