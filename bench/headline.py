"""The headline table and figure from finished ``oir compare`` runs: held-out tasks first.

    .venv/bin/python bench/headline.py runs/results --plot runs/results/headline.png \\
        --out-md runs/results/headline.md --labels "no-relabel=No relabeling,narrator+suite=OIR" \\
        --threshold 25

Each PATH is a compare out dir (searched recursively) or a run dir ``<method>-s<seed>`` holding
``config.json`` and the compare's final evaluation ``eval-test.json``; the runs of one method may
come from several compare out dirs. Prints a markdown table, one row per method: seeds, env steps,
success on held-out tasks (mean over seeds, each seed in brackets), its ratio to the ``--baseline``
method, held-out paraphrases and all test lines. Then, from the training-time evaluations in each
run's ``metrics.jsonl``, the area under the seed-mean held-out-task curve (trapezoid, % x million
env steps, from the first evaluation to the last) and the first evaluated env steps at which that
mean reaches ``--threshold``. ``--plot`` draws those curves (mean over seeds, min to max shaded),
``--out-md`` writes what was printed to a file too. Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from oir.curves import auc, band, steps_to, training_eval_episodes

# The holdout names of oir.suites (HELD_OUT_TASK, HELD_OUT_PARAPHRASE), kept here so that this
# script needs no JAX (oir.curves is NumPy only); tests/test_headline.py checks they still agree.
HELD_OUT_TASK, HELD_OUT_PARAPHRASE = "held-out task", "held-out paraphrase"
# oir.train._during_eval's metrics.jsonl key for held-out-task success (a share, 0 to 1).
CURVE_KEY = "eval_success_held_out_tasks"
EVAL_FILE = "eval-test.json"  # compare's final evaluation on its default split (test)
RUN_NAME = re.compile(r"^(?P<method>.+)-s(?P<seed>\d+)$")
BUDGET_DIR = re.compile(r"^labels-(?P<share>[0-9.e-]+)$")  # oir compare --labels: OUT/labels-<share>/<run>


class InputError(Exception):
    """Bad input: main prints the message as one line and exits 2."""


@dataclass
class Run:
    method: str
    seed: int
    dir: Path
    env_steps: int
    tasks: float | None  # final evaluation, shares 0-1
    paraphrases: float | None
    all: float
    settings: dict  # the final evaluation's settings (split, episodes, max_steps, suite)
    config: dict
    curve: list[tuple[int, float]] = field(default_factory=list)  # (env steps, held-out-task share)


def is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / EVAL_FILE).is_file()


def find_run_dirs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Run dirs under ``paths`` (each a run dir or a dir searched recursively), and the dirs with a
    config.json but no final evaluation (unfinished or never evaluated)."""
    found: dict[Path, Path] = {}
    unevaluated: dict[Path, Path] = {}
    for p in paths:
        if not p.exists():
            raise InputError(f"no such path: {p}")
        if not p.is_dir():
            raise InputError(f"not a directory (a compare out dir or a run dir): {p}")
        for dirpath, dirnames, filenames in os.walk(p):
            d = Path(dirpath)
            dirnames.sort()
            if "config.json" in filenames and EVAL_FILE in filenames:
                found.setdefault(d.resolve(), d)
                dirnames.clear()  # a run dir's checkpoints and segments hold no other runs
            elif "config.json" in filenames:
                unevaluated.setdefault(d.resolve(), d)
    return list(found.values()), list(unevaluated.values())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path}: {e}") from None


def _holdout_rate(ev: dict, holdout: str) -> float | None:
    """From ``success_by_holdout``, or from the per-line results of an evaluation cached before
    that was reported; None if the evaluated split has no such lines."""
    by = ev.get("success_by_holdout") or {}
    if by.get(holdout) is not None:
        return float(by[holdout])
    lines = [x for x in ev.get("lines", []) if x.get("holdout") == holdout]
    return float(np.mean([x["successes"] / max(x["episodes"], 1) for x in lines])) if lines else None


def curve(rows: list[dict]) -> list[tuple[int, float]]:
    """(env steps, held-out-task share) of the metrics rows that hold a training-time evaluation."""
    return [(int(r["env_steps"]), float(r[CURVE_KEY])) for r in rows if r.get(CURVE_KEY) is not None]


def load_run(d: Path) -> Run:
    m = RUN_NAME.match(d.name)
    if not m:
        raise InputError(f"run dir {d} is not named <method>-s<seed> (as oir compare names them)")
    ev = _read_json(d / EVAL_FILE)
    summary = _read_json(d / "summary.json") if (d / "summary.json").is_file() else None
    if summary is None or "env_steps" not in summary:
        raise InputError(f"{d} has an {EVAL_FILE} but no summary.json with env_steps")
    try:
        all_rate = float(ev["success_by_split"]["all"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{d / EVAL_FILE} has no success_by_split.all") from None
    rows = []
    metrics = d / "metrics.jsonl"
    if metrics.is_file():
        try:
            rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        except ValueError as e:
            raise InputError(f"cannot read {metrics}: {e}") from None
    budget = BUDGET_DIR.match(d.parent.name)  # named as oir.compare.arm_name names a budget's row
    method = m["method"] if not budget else f"{m['method']} labels={budget['share']}"
    return Run(method=method, seed=int(m["seed"]), dir=d, env_steps=int(summary["env_steps"]),
               tasks=_holdout_rate(ev, HELD_OUT_TASK), paraphrases=_holdout_rate(ev, HELD_OUT_PARAPHRASE),
               all=all_rate, settings=dict(ev.get("settings") or {}), config=_read_json(d / "config.json"),
               curve=curve(rows))


def group(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by method (sorted), each method's by seed; a (method, seed) found twice is an error."""
    by: dict[str, list[Run]] = {}
    for r in runs:
        twin = next((x for x in by.get(r.method, []) if x.seed == r.seed), None)
        if twin:
            raise InputError(f"{r.method} seed {r.seed} found twice: {twin.dir} and {r.dir}; pass one of them")
        by.setdefault(r.method, []).append(r)
    return {m: sorted(rs, key=lambda r: r.seed) for m, rs in sorted(by.items())}


# -- the table -----------------------------------------------------------------------------------

def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def with_seeds(xs: list[float | None]) -> str:
    """Mean over seeds in %, then each seed's in brackets: ``30.4 (28.6, 32.1)``."""
    mean = _mean(xs)
    if mean is None or len(xs) == 1:
        return _pct(mean)
    return f"{_pct(mean)} ({', '.join(_pct(x) for x in xs)})"


def ratio(xs: list[float | None], base: list[float | None]) -> str:
    m, b = _mean(xs), _mean(base)
    return "—" if m is None or not b else f"{m / b:.2f}"


def table(by: dict[str, list[Run]], baseline: str | None, base_runs: list[Run] | None) -> list[str]:
    head = ["method", "seeds", "env steps", "held-out tasks %", *([f"× {baseline}"] if baseline else []),
            "held-out paraphrases %", "all test lines %"]
    out = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for m, rs in by.items():
        steps = " / ".join(f"{s:,}" for s in sorted({r.env_steps for r in rs}))
        tasks = [r.tasks for r in rs]
        cells = [m, ", ".join(str(r.seed) for r in rs), steps, with_seeds(tasks),
                 *([ratio(tasks, [r.tasks for r in base_runs])] if baseline and base_runs else []),
                 _pct(_mean([r.paraphrases for r in rs])), _pct(_mean([r.all for r in rs]))]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _settings_line(runs: list[Run]) -> str:
    kinds = sorted({(str(r.settings.get("split", "?")), r.settings.get("episodes"), r.settings.get("max_steps"))
                    for r in runs}, key=str)
    text = "; ".join(f"the {s} split, {e} episode(s) per line, cap {c} steps" for s, e, c in kinds)
    return (f"Final evaluation ({EVAL_FILE}): {text}"
            + (" (the runs were evaluated differently: compare with care)" if len(kinds) > 1 else "") + ".")


# -- the curves ----------------------------------------------------------------------------------

def _training_eval_line(runs: list[Run]) -> str:
    kinds = sorted({(training_eval_episodes(r.config), r.config.get("eval_max_steps"))
                    for r in runs}, key=str)
    text = "; ".join(f"{e} episode(s) per suite line, cap {c} steps" for e, c in kinds)
    return (f"Held-out-task success over training (metrics.jsonl, the training-time evaluations: {text}), "
            "mean over seeds; AUC in % x million env steps, trapezoid from the first evaluation to the last:")


def curve_lines(by: dict[str, list[Run]], threshold: float | None) -> list[str]:
    out = []
    for m, rs in by.items():
        x, mean, _, _ = band([r.curve for r in rs])
        if not len(x):
            out.append(f"- {m}: no training-time held-out-task evaluations in metrics.jsonl")
            continue
        dropped = max(len(r.curve) for r in rs) - len(x)
        line = (f"- {m}: AUC {auc(x / 1e6, 100 * mean):.1f} %·M steps over {x[0] / 1e6:.2f}-{x[-1] / 1e6:.2f}M "
                f"env steps ({len(x)} evaluations, {sum(bool(r.curve) for r in rs)} seed(s)"
                + (f"; {dropped} evaluation(s) not shared by every seed left out" if dropped else "") + ")")
        if threshold is not None:
            at = steps_to(x, 100 * mean, threshold)
            line += (f"; {threshold:g}% not reached" if at is None
                     else f"; {threshold:g}% first reached at {at:,.0f} env steps")
        out.append(line)
    return out


def plot(path: Path, by: dict[str, list[Run]], labels: dict[str, str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (m, rs) in enumerate(by.items()):
        x, mean, lo, hi = band([r.curve for r in rs])
        if not len(x):
            continue
        n = sum(bool(r.curve) for r in rs)
        (line,) = ax.plot(x / 1e6, 100 * mean, marker="o", ms=3, color=f"C{i}",
                          label=f"{labels.get(m, m)} ({n} seed{'s' if n > 1 else ''})")
        if n > 1:
            ax.fill_between(x / 1e6, 100 * lo, 100 * hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.set(xlabel="env steps (millions)", ylabel="held-out-task success (%)", title=title, ylim=(0, 100))
    ax.set_xlim(0, max(r.env_steps for rs in by.values() for r in rs) / 1e6)  # the whole run, evaluated or not
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


# -- the command ---------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/headline.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="compare out dirs or run dirs")
    p.add_argument("--methods", default="", help="comma-separated: these methods, in this order (default: all, sorted)")
    p.add_argument("--baseline", default="no-relabel", help="the × column's method ('' for no such column)")
    p.add_argument("--plot", type=Path, metavar="PNG", help="held-out-task success over training")
    p.add_argument("--labels", default="", help="legend names: method=Label,method=Label")
    p.add_argument("--title", default="Held-out-task success over training", help="the figure's title")
    p.add_argument("--threshold", type=float, metavar="PCT", help="report the env steps where the mean curve reaches PCT %%")
    p.add_argument("--out-md", type=Path, metavar="FILE", help="write the table and the curve lines here too")
    return p.parse_args(argv)


def _parse_labels(text: str, methods=()) -> dict[str, str]:
    """method=Label pairs; a method of ``methods`` may hold '=' itself (``narrator+suite labels=0.1``)."""
    out = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        method = max((m for m in methods if item.startswith(f"{m}=")), key=len, default=item.partition("=")[0])
        label = item[len(method) + 1:]  # empty where the item has no '='
        if not method.strip() or not label.strip():
            raise InputError(f"--labels: {item!r} is not method=Label")
        out[method.strip()] = label.strip()
    return out


def headline(args: argparse.Namespace) -> list[str]:
    """The markdown lines; writes the figure if asked. InputError on bad input."""
    if args.threshold is not None and not 0 <= args.threshold <= 100:
        raise InputError(f"--threshold is a percentage (0 to 100), got {args.threshold:g}")
    dirs, unevaluated = find_run_dirs(args.paths)
    if not dirs:
        raise InputError(f"no run dirs (config.json and {EVAL_FILE}) under {', '.join(map(str, args.paths))}"
                         + (f"; {len(unevaluated)} with a config.json but no {EVAL_FILE} (unfinished?)" if unevaluated else ""))
    found = group([load_run(d) for d in dirs])
    wanted = [m.strip() for m in args.methods.split(",") if m.strip()] or list(found)
    missing = [m for m in wanted if m not in found]
    if missing:
        raise InputError(f"no runs of {', '.join(missing)} (found: {', '.join(found)})")
    by = {m: found[m] for m in wanted}
    baseline = args.baseline.strip() or None
    if baseline and baseline not in found:
        raise InputError(f"baseline method {baseline!r} not among the runs found ({', '.join(found)}); "
                         "name another with --baseline, or --baseline '' for no ratio column")
    labels = _parse_labels(args.labels, by)
    unknown = [m for m in labels if m not in by]
    if unknown:
        raise InputError(f"--labels names {', '.join(unknown)}, not among the methods shown ({', '.join(by)})")
    if args.plot and not any(r.curve for rs in by.values() for r in rs):
        raise InputError(f"--plot: no run holds a training-time held-out-task evaluation ({CURVE_KEY} in metrics.jsonl)")
    if unevaluated:
        print(f"headline: left out {len(unevaluated)} dir(s) with a config.json but no {EVAL_FILE}: "
              + ", ".join(map(str, unevaluated)), file=sys.stderr)

    shown = [r for rs in by.values() for r in rs]
    md = table(by, baseline, found.get(baseline) if baseline else None)
    md += ["", _settings_line(shown) + " Held-out tasks %: the mean over seeds, each seed's in brackets"
           + (f"; × {baseline}: the ratio of the held-out-task means." if baseline else ".")]
    md += ["", _training_eval_line(shown), "", *curve_lines(by, args.threshold)]
    if args.plot:
        try:
            plot(args.plot, by, labels, args.title)
        except OSError as e:
            raise InputError(f"cannot write --plot {args.plot}: {e.strerror or e}") from None
        where = os.path.relpath(args.plot.resolve(), (args.out_md or Path()).resolve().parent if args.out_md
                                else Path.cwd())
        md += ["", f"![{args.title}]({where})"]
    return md


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        md = headline(args)
        if args.out_md:
            try:
                args.out_md.write_text("\n".join(md) + "\n")
            except OSError as e:
                raise InputError(f"cannot write --out-md {args.out_md}: {e.strerror or e}") from None
    except InputError as e:
        print(f"headline: {e}", file=sys.stderr)
        return 2
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
