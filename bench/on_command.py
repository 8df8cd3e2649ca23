"""Achievements on command: how many of a world's achievements a trained agent gets when told to.

    .venv/bin/python bench/on_command.py --runs runs/compare/no-relabel-s0 runs/compare/narrator-s0

For every achievement ``a`` of the runs' world (22 in Craftax-Classic, 67 in full Craftax) the
instruction is "get ``a`` once" (spec ``a >= 1``), in words from one of two sources:

* the suite's own lines, where the suite has a task with exactly that spec (all its wordings,
  train and test): words the labelled baseline trained on;
* otherwise the narrator's command verbs for it ("Gather wood.", "Chop wood.", ...): words the
  narrator's relabels use, which no suite line uses. They favour the relabeling agents, so the
  two sources are counted apart.

An achievement is "on command" when the agent's success over its lines is at least
``--threshold`` (0.5), ``--episodes`` fresh worlds per line, ``--max-steps`` steps each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

from oir import jaxcache, worlds
from oir.evaluate import run_suite
from oir.policy import policy_from_run
from oir.suites import SuiteLine, load_suite
from oir.tasks import parse_spec


@dataclass
class Args:
    runs: list[Path] = field(default_factory=list)
    episodes: int = 4  # fresh worlds per line
    max_steps: int = 1000
    threshold: float = 0.5
    seed: int = 0
    out: Path | None = None  # also write the per-achievement rates here (JSON)


def probe_lines(world: worlds.World) -> tuple[list[SuiteLine], dict[str, str]]:
    """The probe's lines (``task_id`` = the achievement) and each achievement's source of words."""
    suite = load_suite(world.suite, world=world)
    lines, source = [], {}
    for a in world.achievements:
        spec = parse_spec({"all": [{"counter": a, "at_least": 1}]}, world)
        own = [x for x in suite if x.spec.key() == spec.key()]
        if own:
            texts, source[a] = [x.text for x in own], "suite"
        else:
            verbs, one, _ = world.words.commands[a]
            texts, source[a] = [f"{v.capitalize()} {one}." for v in verbs], "narrator words"
        lines += [SuiteLine(f"{a}~{i}", a, t, spec, "test", "on-command", i > 0, 0) for i, t in enumerate(texts)]
    return lines, source


def main(args: Args) -> None:
    jaxcache.enable()
    if not args.runs:
        raise SystemExit("on_command: name at least one run dir with --runs")
    names = {json.loads((r / "config.json").read_text()).get("env", "classic") for r in args.runs}
    if len(names) != 1:
        raise SystemExit(f"on_command: the runs are of several worlds ({', '.join(sorted(names))}); probe one at a time")
    world = worlds.get(names.pop())
    lines, source = probe_lines(world)
    n_suite = sum(s == "suite" for s in source.values())
    print(f"{world.env_id}: {len(world.achievements)} achievements, {len(lines)} lines x {args.episodes} episodes, "
          f"cap {args.max_steps}; words from the suite for {n_suite}, the narrator's for {len(source) - n_suite}\n")
    print(f"| run | on command (of {len(source)}) | suite words (of {n_suite}) | "
          f"narrator words (of {len(source) - n_suite}) | mean success % |")
    print("|---|---:|---:|---:|---:|")
    rates_out = {}
    for run in args.runs:
        res = run_suite(lines, policy_from_run(run, [x.text for x in lines]), episodes=args.episodes,
                        max_steps=args.max_steps, seed=args.seed)
        by: dict[str, list[float]] = {}
        for r in res:
            by.setdefault(r.line.task_id, []).append(r.rate)
        rate = {a: float(np.mean(v)) for a, v in by.items()}
        got = {a for a, v in rate.items() if v >= args.threshold}
        rates_out[str(run)] = {"rates": rate, "on_command": sorted(got), "source": source}
        print(f"| {run.name} | {len(got)} | {sum(source[a] == 'suite' for a in got)} | "
              f"{sum(source[a] != 'suite' for a in got)} | {100 * np.mean(list(rate.values())):.1f} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rates_out, indent=1))


if __name__ == "__main__":
    main(tyro.cli(Args))
