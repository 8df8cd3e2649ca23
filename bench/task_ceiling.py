"""The best success any agent has had on each held-out task: a ceiling for the goal's arithmetic.

    .venv/bin/python bench/task_ceiling.py --reports docs/results/*-report.md --goal 91.8
    .venv/bin/python bench/task_ceiling.py --reports docs/results/*-report.md --suite full.jsonl

Reads the "Held-out tasks one by one" table of every `oir compare` report given (each method's
column is its mean over the report's seeds) and keeps, per task, the highest figure in any
column of any report. The mean of those maxima is what an oracle would score that, for every
held-out task on its own, picked whichever trained agent did best on it. It flatters the oracle:
each maximum is taken over noisy 16-32-episode estimates. A method whose held-out-task success
must exceed this mean has to beat every agent measured so far on most tasks at once.

Only the reports evaluated on ``--suite`` count (read from the report's "the test split of
`X.jsonl`" line): the worlds' suites hold different tasks, and a ceiling mixes one suite's tasks only.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from oir.suites import STANDARD_SUITE

TABLE = "### Held-out tasks one by one"


@dataclass
class Args:
    reports: list[Path] = field(default_factory=list)  # oir compare report.md files
    goal: float = 0.0  # a held-out-task success % to set against the oracle's (0: none)
    suite: str = STANDARD_SUITE.name  # the suite whose reports count (file name); Craftax-Classic's by default


def suite_of(text: str) -> str:
    """The file name of the suite a report evaluated on (reports that do not say: the standard one)."""
    found = re.search(r"split of `([^`]+)`", text)
    return Path(found.group(1)).name if found else STANDARD_SUITE.name


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def held_out_tables(text: str) -> dict[str, dict[str, float]]:
    """{method: {task: success %}} from one report's per-task table ({} if it has none)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(TABLE)), None)
    if start is None:
        return {}
    rows = [line for line in lines[start + 1 :] if line.strip()]
    if not rows or not rows[0].startswith("|"):
        return {}
    methods = cells(rows[0])[2:]  # | held-out task | text | method... |
    out: dict[str, dict[str, float]] = {m: {} for m in methods}
    for line in rows[2:]:
        if not line.startswith("|"):
            break
        row = cells(line)
        for method, value in zip(methods, row[2:], strict=False):
            try:
                out[method][row[0].strip("`")] = float(value)
            except ValueError:
                continue
    return out


def main(args: Args) -> int:
    missing = [str(p) for p in args.reports if not p.is_file()]
    if missing:
        print(f"task_ceiling: report not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    best: dict[str, tuple[float, str]] = {}
    read = [(path, path.read_text()) for path in args.reports]
    used = [(path, text) for path, text in read if suite_of(text) == args.suite]
    for path, text in used:
        for method, tasks in held_out_tables(text).items():
            where = f"{path.name.removesuffix('-report.md')}: {method}"
            for task, value in tasks.items():
                if value > best.get(task, (-1.0, ""))[0]:
                    best[task] = (value, where)
    if not best:
        print(f"task_ceiling: no report on {args.suite} with a held-out-task table among those given", file=sys.stderr)
        return 2
    print("| held-out task | best % | where |\n|---|---:|---|")
    for task, (value, where) in sorted(best.items(), key=lambda kv: kv[1][0]):
        print(f"| `{task}` | {value:.0f} | {where} |")
    oracle = sum(v for v, _ in best.values()) / len(best)
    other = f" ({len(read) - len(used)} on other suites left out)" if len(used) < len(read) else ""
    print(f"\n{len(best)} held-out tasks of {args.suite} from {len(used)} reports{other}; "
          f"the per-task oracle's mean: {oracle:.1f}%")
    if args.goal:
        print(f"goal {args.goal:.1f}%: {'within' if oracle >= args.goal else 'beyond'} the oracle's reach "
              f"({args.goal - oracle:+.1f} points)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
