"""``oir compare``: train every (method, seed), evaluate each on held-out instructions, write a report.

    oir compare --methods no-relabel,narrator --algo pqn --seeds 0,1 --steps 5000000 --out runs/compare

Each run lives in ``OUT/<method>-s<seed>`` and is an ordinary ``oir train`` run dir, trained with
training-time evaluation on the suite (``metrics.jsonl`` holds the curves). A finished run (a
``summary.json``) with the same config is reused, so a comparison can be extended with more seeds
or methods, or rebuilt after an interruption. Each run is then evaluated with the ``oir eval``
code on the suite's test split (``eval-<split>.json``), and ``OUT/report.md`` gets the table, the
success curves and the figures the paper left out: flawed relabels by reason, unique instructions
and wall-time overhead, all over training.
"""

from __future__ import annotations

import itertools
import json
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from oir import worlds
from oir.curves import training_eval_episodes
from oir.relabel import LLM_RELABELS
from oir.suites import (
    HELD_OUT_PARAPHRASE,
    HELD_OUT_TASK,
    STANDARD_SUITE,
    SuiteLine,
    load_suite,
    suite_for,
)
from oir.train import ConfigError, TrainConfig, migrate, validate

# method -> what it changes in TrainConfig (llm-* need --llm-url)
METHODS: dict[str, dict] = {
    # The labelled methods train on --train.labels of the suite's train tasks (default: all).
    "no-relabel": {"relabel": "none"},  # the baseline: trains on the suite's train split
    "narrator+suite": {"relabel": "narrator", "reward": "verified"},  # OIR: relabels added to the labels
    # The zero-label methods never see a suite line in training.
    "narrator": {"relabel": "narrator", "reward": "verified", "labels": 0.0},
    "narrator-similarity": {"relabel": "narrator", "reward": "similarity", "labels": 0.0},
    # the LLM's defaults: with --llm-url local its relabels are lifted into templates (oir.train.LOCAL_DEFAULTS)
    "llm-verified": {"relabel": "llm", "reward": "verified", "labels": 0.0},
    # every segment asked (the paper's way)
    "llm-direct": {"relabel": "llm", "reward": "verified", "llm_mode": "direct", "labels": 0.0},
    "llm-similarity": {"relabel": "llm", "reward": "similarity", "labels": 0.0},
    "narrator+llm": {"relabel": "narrator+llm", "reward": "verified", "labels": 0.0},
    "llm-lifted": {"relabel": "llm", "reward": "verified", "llm_mode": "templates", "labels": 0.0},
    # ELLM (oir.ellm): goals from the offline rule-based suggester, paid the caption's cosine
    "ellm": {"relabel": "none", "suggest": "rules", "reward": "similarity", "delta": 0.76},
    "ellm-llm": {"relabel": "none", "suggest": "llm", "reward": "similarity", "delta": 0.76},  # needs --llm-url
}
LABELS = {
    "no-relabel": "no-relabel (suite train split)",
    "narrator": "OIR, narrator relabels, verified reward",
    "narrator+suite": "OIR, narrator relabels added to the suite's train lines (the paper's set-up)",
    "narrator-similarity": "OIR, narrator relabels, similarity reward",
    "llm-verified": "OIR, LLM relabels (with --llm-url local: lifted into templates), verified reward",
    "llm-direct": "OIR, the LLM's relabels of each segment, verified reward",
    "llm-similarity": "OIR, LLM relabels, similarity reward",
    "narrator+llm": "OIR, the LLM's relabels (as llm-verified) added to the narrator's, verified reward",
    "llm-lifted": "OIR, relabels from templates lifted from the LLM's verified relabels, verified reward",
    "ellm": "ELLM: goals suggested from the state (rule-based suggester), cosine reward",
    "ellm-llm": "ELLM: goals suggested from the state by an LLM, cosine reward",
}


def method_config(name: str) -> dict:
    """What method ``name`` changes in TrainConfig. ``<method>@<delta>`` runs a similarity-reward
    method at threshold delta (``narrator-similarity@0.7``): how the delta sweep is written."""
    base, at, arg = name.partition("@")
    if base not in METHODS:
        raise ConfigError(f"unknown method {name!r} (choose from {', '.join(METHODS)}; "
                          "similarity methods take @DELTA, e.g. narrator-similarity@0.7)")
    out = dict(METHODS[base])
    if at:
        if out.get("reward") != "similarity":
            raise ConfigError(f"method {name!r}: only similarity-reward methods take @DELTA")
        try:
            out["delta"] = float(arg)
        except ValueError:
            raise ConfigError(f"method {name!r}: {arg!r} after @ is not a number (a cosine threshold)") from None
    return out


@dataclass
class CompareConfig:
    """Train each method and seed (or reuse finished runs), evaluate on held-out instructions,
    and write OUT/report.md with a table, curves and the relabeling figures."""

    # comma-separated, from METHODS (llm-* need --llm-url); the default is the headline: OIR at its
    # best measured settings against the labelled baseline, every shared setting the same
    methods: str = "narrator+suite,no-relabel"
    algo: Literal["pqn", "ppo"] = "ppo"  # the learner of every run...
    # ...and of the no-relabel baseline, also with these learners (comma-separated, e.g. pqn), each in
    # OUT/no-relabel-<algo>-s<seed>: every × is then against the strongest baseline on held-out tasks
    baseline_algos: str = ""
    seeds: str = "0,1"  # comma-separated
    steps: int = 5_000_000  # env steps per run
    out: Path = Path("runs/compare")  # one run dir per method and seed, and report.md
    suite: Path = STANDARD_SUITE  # training-time curves use all its lines; the final eval --split
    split: Literal["test", "train", "all"] = "test"  # the final evaluation's lines
    episodes: int = 4  # final evaluation: fresh worlds per suite line
    max_steps: int = 1000  # final evaluation: cap for tasks without a `within` budget
    eval_every: int = 0  # training-time evaluation every this many env steps (0: steps / 10)...
    curve_episodes: int = 2  # ...with this many episodes per suite line
    llm_url: str = ""  # OpenAI-compatible server for the llm-* methods
    llm_model: str = "default"  # model name sent to that server
    # Label budgets, comma-separated shares of the suite's train tasks (e.g. 0,0.1,1): each labelled
    # method (no-relabel, narrator+suite) runs at each, in OUT/labels-<share>/; the report gets the
    # label-efficiency table. Empty: the one share of --train.labels, runs directly in OUT.
    labels: str = ""
    # Train nothing: report the (method, seed) runs that finished here, and list the others as not
    # run (a report while the rest of a grid trains)
    report_only: bool = False
    # Also copy the report and each reported run's results (config, summary, curves, final
    # evaluation, instruction buffer; no checkpoints: 0.3-4.4 MB a run) here: `--report-only
    # --out EXPORT` with the same options writes the report again from them, on another machine
    # or after the run dirs are gone
    export: Path | None = None
    # Every other training setting; compare sets algo, relabel, reward, steps, seed, out, suite,
    # the eval_* fields and the LLM url and model of each run itself.
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class Run:
    method: str
    seed: int
    dir: Path
    summary: dict
    eval: dict
    metrics: list[dict]
    labels: float | None = None  # its label budget on a --labels axis
    algo: str | None = None  # its learner, where it is not --algo's (a --baseline-algos run)

    @property
    def arm(self) -> str:
        """What the report calls its row: the method, its learner where it is not --algo's, and its
        label budget on a --labels axis."""
        return arm_name(self.method, self.labels, self.algo)


def arm_name(method: str, labels: float | None, algo: str | None = None) -> str:
    name = method if algo is None else f"{method} ({algo})"
    return name if labels is None else f"{name} labels={labels:g}"


def labelled(method: str) -> bool:
    """Whether the method trains on the suite's human labels (so a --labels axis applies to it)."""
    cfg = method_config(method)
    return "labels" not in cfg and not cfg.get("suggest")


def parse_list(text: str, what: str, cast=str) -> list:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ConfigError(f"--{what} is empty")
    try:
        items = [cast(x) for x in items]
    except ValueError:
        raise ConfigError(f"--{what} must be comma-separated {cast.__name__}s, got {text!r}") from None
    if len(set(items)) != len(items):
        raise ConfigError(f"--{what} repeats an entry: {text!r}")
    return items


def run_config(cfg: CompareConfig, method: str, seed: int, labels: float | None = None,
               algo: str | None = None) -> TrainConfig:
    """The ``oir train`` config of one (method, seed), at label budget ``labels`` on a --labels axis,
    with learner ``algo`` (None: --algo's)."""
    method_cfg = method_config(method)
    relabeling = replace(cfg.train.relabeling, **method_cfg.pop("relabeling", {}))
    out = cfg.out if labels is None else cfg.out / f"labels-{labels:g}"
    name = f"{method}-s{seed}" if algo is None else f"{method}-{algo}-s{seed}"
    return replace(cfg.train, algo=algo or cfg.algo, steps=cfg.steps, seed=seed, out=out / name,
                   suite=cfg.suite, eval_suite=cfg.suite, eval_every=cfg.eval_every or max(cfg.steps // 10, 1),
                   eval_every_episodes=cfg.curve_episodes, eval_episodes=0, llm_url=cfg.llm_url,
                   llm_model=cfg.llm_model, relabeling=relabeling,
                   **{"reward": "verified", **({} if labels is None else {"labels": labels}), **method_cfg})


def baseline_algos(cfg: CompareConfig) -> list[str]:
    """The learners the no-relabel baseline also runs with, beside --algo's."""
    if not cfg.baseline_algos:
        return []
    algos = parse_list(cfg.baseline_algos, "baseline-algos")
    bad = [a for a in algos if a not in ("ppo", "pqn")]
    if bad:
        raise ConfigError(f"--baseline-algos takes ppo and pqn, got {bad[0]!r}")
    return [a for a in algos if a != cfg.algo]


def budgets(cfg: CompareConfig) -> list[float | None]:
    """The --labels axis: its shares, or [None] for the one share of --train.labels."""
    if not cfg.labels:
        return [None]
    shares = parse_list(cfg.labels, "labels", float)
    if not all(0.0 <= f <= 1.0 for f in shares):
        raise ConfigError(f"--labels are shares of the suite's train tasks in [0, 1], got {cfg.labels!r}")
    return sorted(shares)


def _plain(tcfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(tcfg), default=str))


def _comparable(tcfg: TrainConfig) -> dict:
    return _learning_part(_plain(tcfg))


def _learning_part(config: dict) -> dict:
    """A config without where the run is, how it reports progress and how often it checkpoints:
    not what it learns. Nor the options it never used: the other learner's, and a no-relabel
    run's relabeling options."""
    unused = [a for a in ("pqn", "ppo") if a != config.get("algo")]
    skip = ("out", "progress_every", "checkpoint_every", "keep_checkpoints", "preset", *unused,
            *(("relabeling",) if config.get("relabel") == "none" else ()))
    out = {k: v for k, v in config.items() if k not in skip}
    # what the training-time evaluations did, however the config said it (0 meant --eval-episodes)
    out["eval_every_episodes"] = training_eval_episodes(config)
    if config.get("relabel") == "none":  # the learners' options for relabeled windows
        out = {k: {f: x for f, x in v.items() if (k, f) not in RELABEL_ONLY} if isinstance(v, dict) else v
               for k, v in out.items()}
    return out


RELABEL_ONLY = {("ppo", "relabel_bc_coef"), ("pqn", "relabel_trace")}


def _merged(defaults: dict, saved: dict) -> dict:
    out = dict(defaults)
    for k, v in saved.items():
        out[k] = _merged(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict) else v
    return out


def _same_file(a: str | None, b: str | None) -> bool:
    """Two suite paths with the same contents (a moved checkout holds the same suite)."""
    try:
        return a is not None and b is not None and Path(a).read_bytes() == Path(b).read_bytes()
    except OSError:
        return False


def _finished(tcfg: TrainConfig) -> bool:
    """Whether the run dir holds a finished run of ``tcfg``; ConfigError if of another config."""
    run = tcfg.out
    if not ((run / "summary.json").is_file() and (run / "config.json").is_file()):
        return False
    # Options added since the run was made count as what the code did before them (train.migrate);
    # a run that used a retired option is never reused.
    raw = json.loads((run / "config.json").read_text())
    for algo in ("pqn", "ppo"):  # runs from before timeouts bootstrapped (and before --labels): terminal timeouts
        if "labels" not in raw and isinstance(raw.get(algo), dict):
            raw[algo].setdefault("bootstrap_timeouts", False)
    raw = migrate(raw, str(run / "config.json"))
    saved = _learning_part(_merged(_plain(TrainConfig()), raw))
    want = _comparable(tcfg)
    differ = sorted(k for k in set(want) | set(saved) if want.get(k) != saved.get(k)
                    and not (k in ("suite", "eval_suite") and _same_file(want.get(k), saved.get(k))))
    if differ:
        raise ConfigError(f"{run} holds a finished run with another config (differs in: {', '.join(differ)}); "
                          "use another --out or delete it")
    return True


def _ensure_trained(tcfg: TrainConfig, say) -> dict:
    """Train ``tcfg`` unless its run dir already holds a finished run of the same config."""
    from oir.train import train

    run = tcfg.out
    if _finished(tcfg):
        say(f"reusing finished run {run}")
        return json.loads((run / "summary.json").read_text())
    if run.exists():
        say(f"{run} holds no finished run: training it from the start")
    say(f"training {run} ({tcfg.steps:,} env steps)")
    return train(tcfg)


def _ensure_evaluated(cfg: CompareConfig, run: Path, say) -> dict:
    """The run's final evaluation on ``cfg.split`` (the ``oir eval`` code), cached in the run dir."""
    from oir.evaluate import report, run_suite
    from oir.policy import policy_from_run

    path = run / f"eval-{cfg.split}.json"
    settings = {"suite": str(cfg.suite), "split": cfg.split, "episodes": cfg.episodes, "max_steps": cfg.max_steps}
    if path.is_file():
        saved = json.loads(path.read_text())
        was = dict(saved.get("settings") or {})
        # The same suite at another path (a moved checkout) is the same evaluation.
        if _same_file(was.get("suite"), settings["suite"]):
            was["suite"] = settings["suite"]
        if was == settings:
            return saved
    lines = load_suite(cfg.suite, None if cfg.split == "all" else [cfg.split], world=cfg.train.env)
    t0 = time.perf_counter()
    results = run_suite(lines, policy_from_run(run, [x.text for x in lines]), episodes=cfg.episodes,
                        max_steps=cfg.max_steps, seed=10_000)  # the same worlds for every run
    rep = {"settings": settings, "wall_s": time.perf_counter() - t0, **report(results)}
    path.write_text(json.dumps(rep, indent=1))
    tasks_rate = rep["success_by_holdout"].get(HELD_OUT_TASK)
    say(f"evaluated {run} on {len(lines)} {cfg.split} lines x {cfg.episodes}: "
        f"{100 * rep['success_by_split']['all']:.1f}% success"
        + ("" if tasks_rate is None else f", {100 * tasks_rate:.1f}% on held-out tasks"))
    return rep


def compare(cfg: CompareConfig, say=print, command: str = "") -> Path:
    """Train, evaluate and report; returns the path of ``report.md``. ``command`` is the command
    line the report shows as the one that made it."""
    methods = parse_list(cfg.methods, "methods")
    for m in methods:
        method_config(m)  # an unknown method or a bad @delta: one error line
    seeds = parse_list(cfg.seeds, "seeds", int)
    if cfg.train.preset != TrainConfig().preset:
        raise ConfigError("oir compare sets each method itself: choose them with --methods (presets are for "
                          "oir train); --train.* options set what every method shares")
    if cfg.steps < 1 or cfg.episodes < 1 or cfg.max_steps < 1 or cfg.curve_episodes < 1 or cfg.eval_every < 0:
        raise ConfigError("--steps, --episodes, --max-steps and --curve-episodes must be at least 1, "
                          "--eval-every at least 0")
    if cfg.train.env not in worlds.NAMES:
        raise ConfigError(f"unknown --train.env {cfg.train.env!r} (choose from {', '.join(worlds.NAMES)})")
    cfg = replace(cfg, suite=suite_for(cfg.suite, cfg.train.env))
    skipped = {}
    if not cfg.llm_url:
        asks_llm = [m for m in methods if method_config(m).get("relabel") in LLM_RELABELS or method_config(m).get("suggest") == "llm"]
        for m in asks_llm:
            skipped[m] = "needs --llm-url (an OpenAI-compatible server, or local); not run, not faked"
            say(f"skipping {m}: {skipped[m]}")
            methods.remove(m)
    extra = baseline_algos(cfg)
    if extra and "no-relabel" not in methods:
        raise ConfigError("--baseline-algos runs the no-relabel baseline with other learners: add no-relabel to --methods")
    arms = [(m, f, a) for m in methods for f in (budgets(cfg) if labelled(m) else [None])
            for a in [None, *(extra if m == "no-relabel" else [])]]
    for m, f, a in list(arms):
        if f == 0.0 and method_config(m)["relabel"] == "none":
            skipped[arm_name(m, f, a)] = "trains on human labels only: at --labels 0 it has none to learn from"
            arms.remove((m, f, a))
    if not arms:
        raise ConfigError("no method left to run")
    for m, f, a in arms:  # every config and run dir is checked before hours of training start
        for s in seeds:
            validate(run_config(cfg, m, s, f, a))
            _finished(run_config(cfg, m, s, f, a))
    if cfg.export is not None and cfg.export.resolve() == cfg.out.resolve():
        raise ConfigError(f"--export {cfg.export} is --out itself: name another dir")
    try:
        cfg.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot write to --out {cfg.out}: {e.strerror or e}") from None

    runs: list[Run] = []
    for m, f, a in arms:
        for s in seeds:
            tcfg = run_config(cfg, m, s, f, a)
            if cfg.report_only and not _finished(tcfg):
                skipped[f"{arm_name(m, f, a)}, seed {s}"] = f"not trained yet (--report-only; {tcfg.out})"
                say(f"skipping {arm_name(m, f, a)} seed {s}: no finished run (--report-only)")
                continue
            summary = _ensure_trained(tcfg, say)
            ev = _ensure_evaluated(cfg, tcfg.out, say)
            rows = [json.loads(x) for x in (tcfg.out / "metrics.jsonl").read_text().splitlines() if x.strip()]
            runs.append(Run(m, s, tcfg.out, summary, ev, rows, f, a))
    if not runs:
        raise ConfigError(f"--report-only: no finished run in {cfg.out} for these methods and seeds")
    seeds = sorted({r.seed for r in runs})
    path = write_report(cfg, runs, methods, seeds, skipped, command or f"oir.compare.compare({cfg!r})")
    if cfg.export is not None:
        export(cfg, runs, cfg.export)
        say(f"exported the report and {len(runs)} run(s)' results to {cfg.export}")
    return path


# What a finished run needs for `--report-only` (its policy checkpoint only serves an evaluation
# that is not cached yet); a relabeling run's instruction buffer feeds the coverage section.
RESULT_FILES = ("config.json", "summary.json", "metrics.jsonl")
OPTIONAL_RESULT_FILES = ("instructions.jsonl",)


def export(cfg: CompareConfig, runs: list[Run], dest: Path) -> None:
    """Copy ``cfg.out``'s report and each run's results to ``dest``, keeping their layout."""
    try:
        for r in runs:
            to = dest / r.dir.relative_to(cfg.out)
            to.mkdir(parents=True, exist_ok=True)
            required = (*RESULT_FILES, f"eval-{cfg.split}.json")
            for name in (*required, *OPTIONAL_RESULT_FILES):
                if name in required or (r.dir / name).is_file():
                    shutil.copy2(r.dir / name, to / name)
        for f in cfg.out.iterdir():
            if f.is_file() and f.suffix in (".md", ".png", ".json"):
                shutil.copy2(f, dest / f.name)
    except OSError as e:
        raise ConfigError(f"cannot export to {dest}: {e.strerror or e}") from None


# -- the report ---------------------------------------------------------------------------------

def _ms(xs, digits: int = 1) -> str:
    """Mean ± std over seeds (just the value for one seed)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return f"{np.mean(xs):,.{digits}f} ± {np.std(xs):,.{digits}f}" if len(xs) > 1 else f"{xs[0]:,.{digits}f}"


def _holdout_rates(suite: list[SuiteLine], runs: list[Run]) -> dict[Path, dict[str, float | None]]:
    """Each run's success on held-out tasks and held-out paraphrases, from its per-line results
    (so evaluations cached before the split was reported count too)."""
    kind = {x.id: x.holdout for x in suite}
    out = {}
    for r in runs:
        rates: dict[str, list[float]] = {HELD_OUT_TASK: [], HELD_OUT_PARAPHRASE: []}
        for line in r.eval["lines"]:
            if kind.get(line["id"]) in rates:
                rates[kind[line["id"]]].append(line["successes"] / max(line["episodes"], 1))
        out[r.dir] = {k: float(np.mean(v)) if v else None for k, v in rates.items()}
    return out


def _mean_or_none(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _pct(x) -> float | None:
    return None if x is None else 100 * x


def _git_commit(here: Path = Path(__file__).parent) -> str:
    """The code's commit: from git in a clone, from ``COMMIT`` (filled by ``git archive``) in an archive."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=here, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    stamp = here / "COMMIT"
    text = stamp.read_text().strip() if stamp.is_file() else ""
    return text if text and not text.startswith("$Format") else "unknown"


def write_report(cfg: CompareConfig, runs: list[Run], methods: list[str], seeds: list[int],
                 skipped: dict[str, str], command: str) -> Path:
    """``report.md`` and its PNGs in ``cfg.out`` from finished, evaluated runs."""
    by: dict[str, list[Run]] = {}
    for r in runs:
        by.setdefault(r.arm, []).append(r)
    split = cfg.split
    extra = sorted({r.algo for r in runs if r.algo})
    learners = cfg.algo.upper() + "".join(f"; no-relabel also {a.upper()}" for a in extra)
    md = [f"# oir compare: {', '.join(methods)} ({learners}, {len(seeds)} seed(s))", ""]
    md += ["```", command, "```", ""]
    md += [f"{cfg.steps:,} env steps per run, {cfg.train.num_envs} envs, encoder {cfg.train.encoder}, "
           f"seeds {', '.join(map(str, seeds))}; report written at commit {_git_commit()}; {platform.machine()}, "
           f"{_cpus()} CPU(s), {_device()}. Final evaluation: the {split} split of `{cfg.suite.name}`, "
           f"{cfg.episodes} episode(s) per line, cap {cfg.max_steps} steps, the same worlds for every run. "
           f"{_labels_line(cfg)}", ""]
    suite = load_suite(cfg.suite, world=cfg.train.env)
    holdout = _holdout_rates(suite, runs)
    md += [f"## Success on the {split} split (mean ± std over seeds)", ""]
    md += ["**Held-out tasks** are test tasks whose spec no train line has: no method trained on them. "
           "**Held-out paraphrases** are new wordings of train tasks, whose exact spec the no-relabel "
           "baseline trained on; they measure language generalisation, not task generalisation."
           + ("" if not extra else " × no-relabel: against the strongest no-relabel row on held-out tasks at "
              "the same label share, whichever learner it used."), ""]
    md += ["| method | held-out tasks % | × no-relabel | held-out paraphrases % | all test lines % | "
           "coverage % | paraphrase / canonical % | "
           "steps to success | unique instructions | flawed relabels % | wall min | steps/s | wall × no-relabel |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, rs in by.items():
        base = by.get(_baseline(by, rs[0].labels, holdout) or "")
        base_tasks = _held_out_tasks(holdout, base)
        # the wall-time overhead is against the baseline with the same learner, the strongest or not
        same_learner = by.get(arm_name("no-relabel", rs[0].labels, rs[0].algo))
        base_wall = np.mean([r.summary["wall_s"] for r in same_learner]) if same_learner else None
        succ = [r.eval["success_by_split"]["all"] for r in rs]
        tasks_rate = [holdout[r.dir][HELD_OUT_TASK] for r in rs]
        rel = [r.summary.get("relabeling") for r in rs]
        uniq = _ms([x["unique_instructions"] for x in rel]) if all(rel) else "—"
        flawed = _ms([100 * _wrong(x) / max(x["relabel_proposed"], 1) for x in rel]) if all(rel) else "—"
        walls = [r.summary["wall_s"] for r in rs]
        md.append(
            f"| {m} | {_ms([_pct(x) for x in tasks_rate])} "
            f"| {'' if base_tasks is None or _mean_or_none(tasks_rate) is None else f'{_mean_or_none(tasks_rate) / max(base_tasks, 1e-9):.2f}'} "
            f"| {_ms([_pct(holdout[r.dir][HELD_OUT_PARAPHRASE]) for r in rs])} "
            f"| {_ms([100 * s for s in succ])} "
            f"| {_ms([_pct(r.eval['coverage']) for r in rs])} "
            f"| {_ms([_pct(r.eval.get('paraphrase_ratio')) for r in rs])} "
            f"| {_ms([r.eval['mean_steps_to_success'] for r in rs])} | {uniq} | {flawed} "
            f"| {_ms([w / 60 for w in walls])} | {_ms([r.metrics[-1]['sps'] for r in rs], 0)} "
            f"| {'' if base_wall is None else f'{np.mean(walls) / base_wall:.2f}'} |")
    md += ["", "Wall time includes the training-time evaluations (the same for every method). steps/s is "
           "the training loop's throughput after the first (compiling) update. Flawed relabels: proposals "
           "whose spec did not hold or could not be read; a spec proposed twice for one segment is "
           "dropped as a duplicate and not counted here.", ""]
    cats = sorted({c for r in runs for c in r.eval["success_by_category"] if c != "all"})
    md += [f"### Per category ({split} split, success %)", "",
           "| method | " + " | ".join(cats) + " |", "|---|" + "---:|" * len(cats)]
    for m in by:
        md.append(f"| {m} | " + " | ".join(_ms([_pct(r.eval["success_by_category"].get(c)) for r in by[m]])
                                          for c in cats) + " |")
    md += [""]
    md += _label_section(cfg, by, holdout)
    md += _sample_efficiency_section(cfg, by, holdout)
    md += _held_out_task_section(suite, by)
    md += _coverage_section(suite, by, split, holdout)
    md += _similarity_section(cfg, by, holdout)
    md += _llm_section(by)
    for name, title, text in _plots(cfg, by, split):
        md += [f"## {title}", "", f"![{title}]({name})", "", text, ""]
    md += ["## Not in this report", ""]
    for m, why in skipped.items():
        md.append(f"- {m}: {why}.")
    if "ellm" in methods and "ellm-llm" not in methods:
        md.append("- ELLM with a language model as its suggester (`ellm-llm`, needs --llm-url): the `ellm` row's "
                  "goals come from the offline rule-based suggester (oir.ellm), not an LLM.")
    md.append("")
    path = cfg.out / "report.md"
    path.write_text("\n".join(md))
    (cfg.out / "compare.json").write_text(json.dumps(
        [{"method": r.method, "labels": r.labels, "algo": r.algo or cfg.algo, "seed": r.seed, "dir": str(r.dir), "summary": r.summary,
          "eval": {k: v for k, v in r.eval.items() if k not in ("lines", "tasks")}} for r in runs], indent=1))
    return path


def _labels_line(cfg: CompareConfig) -> str:
    shares = "each share of the --labels axis" if cfg.labels else f"--train.labels {cfg.train.labels:g}"
    return (f"Human labels: the labelled methods (no-relabel, narrator+suite) train on {shares} of the suite's "
            f"train tasks (whole tasks, drawn with --train.labels-seed {cfg.train.labels_seed}, the same for both); "
            "narrator+suite adds its relabels to them. The zero-label methods never see a suite line in training.")


def _held_out_tasks(holdout: dict, rs: list[Run] | None) -> float | None:
    """The runs' mean success on held-out tasks (None without runs or such lines)."""
    return _mean_or_none([holdout[r.dir][HELD_OUT_TASK] for r in rs]) if rs else None


def _baseline(by: dict[str, list[Run]], labels: float | None, holdout: dict) -> str | None:
    """The no-relabel row at this label budget that a row's × is against: of several learners
    (--baseline-algos), the strongest on held-out tasks, over the seeds every learner has (a learner
    with one lucky seed more must not win on it)."""
    arms = [arm for arm, rs in by.items() if rs[0].method == "no-relabel" and rs[0].labels == labels]
    shared = set.intersection(*({r.seed for r in by[arm]} for arm in arms)) if arms else set()

    def strength(arm: str) -> float:
        rs = [r for r in by[arm] if r.seed in shared] or by[arm]
        return _held_out_tasks(holdout, rs) or 0.0
    return max(arms, key=strength, default=None)


def _full_baseline(by: dict[str, list[Run]], holdout: dict) -> str:
    """The row of the labelled baseline with the most labels: no-relabel at the largest budget (the
    strongest learner's, as in :func:`_baseline`)."""
    shares = [r.labels for rs in by.values() for r in rs if r.labels is not None]
    share = max(shares) if shares else None
    return _baseline(by, share, holdout) or arm_name("no-relabel", share)


def _share(r: Run) -> float:
    """The run's label share, as it trained (a zero-label method's is 0; a run from before --labels
    trained a labelled method on every train line)."""
    if "labels" in r.summary:
        return float(r.summary["labels"]["share"])
    return r.labels if r.labels is not None else float(labelled(r.method))


def _curve_episodes(by: dict[str, list[Run]]) -> str:
    """How many episodes each training-time evaluation ran per line, as the runs' configs say."""
    n = sorted({training_eval_episodes(json.loads((r.dir / "config.json").read_text()))
                for rs in by.values() for r in rs if (r.dir / "config.json").is_file()})
    return " or ".join(map(str, n)) + " episode(s)" if n else "the runs' episodes"


def _label_section(cfg: CompareConfig, by: dict[str, list[Run]], holdout: dict) -> list[str]:
    """Success against the label budget, when the runs span more than one: the table and its plot."""
    shares = sorted({_share(r) for rs in by.values() for r in rs})
    if len(shares) < 2:
        return []
    full = by.get(_full_baseline(by, holdout))

    def ratio(a: float | None, b: float | None) -> str:
        return "" if a is None or not b else f"{a / b:.2f}"

    md = ["## Label efficiency", "",
          "Success against the share of the suite's train tasks given as human labels (`--labels`). "
          "× same share: against no-relabel given the same labels; × all labels: against no-relabel at the "
          "largest share here.", "",
          "| labels | train lines | method | seeds | held-out tasks % | × same share | × all labels | "
          "held-out paraphrases % | all test lines % |", "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    rows = sorted(by.items(), key=lambda kv: (_share(kv[1][0]), kv[0]))
    for _, rs in rows:
        t = _held_out_tasks(holdout, rs)
        counts = {r.summary.get("labels", {}).get("train_lines") for r in rs}  # the same for every seed
        lines = "n/a" if None in counts else ", ".join(f"{c:,}" for c in sorted(counts))
        md.append(f"| {_share(rs[0]):g} | {lines} | {arm_name(rs[0].method, None, rs[0].algo)} | {len(rs)} | {_ms([_pct(holdout[r.dir][HELD_OUT_TASK]) for r in rs])} "
                  f"| {ratio(t, _held_out_tasks(holdout, _same_share(by, rs, holdout)))} "
                  f"| {ratio(t, _held_out_tasks(holdout, full))} "
                  f"| {_ms([_pct(holdout[r.dir][HELD_OUT_PARAPHRASE]) for r in rs])} "
                  f"| {_ms([100 * r.eval['success_by_split']['all'] for r in rs])} |")
    md += ["", "![held-out-task success against the label share](label_efficiency.png)", ""]
    _label_figure(cfg.out / "label_efficiency.png", by, holdout)
    return md


def _same_share(by: dict[str, list[Run]], rs: list[Run], holdout: dict) -> list[Run] | None:
    """The baseline runs given the labels ``rs`` trained on (none for a zero-label method beside a
    labelled baseline: outside a --labels axis both have no budget, yet their shares differ)."""
    base = by.get(_baseline(by, rs[0].labels, holdout) or "")
    return base if base and _share(base[0]) == _share(rs[0]) else None


def _label_figure(path: Path, by: dict[str, list[Run]], holdout: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(arm_name(r.method, None, r.algo) for rs in by.values() for r in rs):
        pts = sorted((_share(rs[0]), [100 * (holdout[r.dir][HELD_OUT_TASK] or 0.0) for r in rs])
                     for rs in by.values() if arm_name(rs[0].method, None, rs[0].algo) == method)
        x = np.array([p[0] for p in pts])
        ys = [np.array(p[1]) for p in pts]
        mean = np.array([y.mean() for y in ys])
        err = np.array([[m - y.min() for m, y in zip(mean, ys, strict=True)],
                        [y.max() - m for m, y in zip(mean, ys, strict=True)]])
        ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, label=method, color=_color(method))
    ax.set(xlabel="share of the suite's train tasks labelled", ylabel="held-out tasks success (%)",
           title="Label efficiency (mean over seeds, min to max)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# A method's sample efficiency: the env steps its held-out-task curve needs to reach this share of
# the labelled baseline's figure at the end of training.
THRESHOLD = 0.9
CURVE_KEY = "eval_success_held_out_tasks"  # oir.train's training-time held-out-task success


def _sample_efficiency_section(cfg: CompareConfig, by: dict[str, list[Run]], holdout: dict) -> list[str]:
    """AUC of each row's held-out-task curve and its env steps to THRESHOLD x the labelled
    baseline's last training-time evaluation (no-relabel at the largest label share)."""
    from oir.curves import auc, band, steps_to

    curves = {m: band([[(int(x), float(y)) for x, y in zip(*_series(r.metrics, CURVE_KEY), strict=True)]
                       for r in rs]) for m, rs in by.items()}
    curves = {m: c for m, c in curves.items() if len(c[0])}
    if not curves:
        return []
    base_arm = _full_baseline(by, holdout)
    target = 100 * THRESHOLD * curves[base_arm][1][-1] if base_arm in curves else None
    base_at = steps_to(curves[base_arm][0], 100 * curves[base_arm][1], target) if target is not None else None
    md = ["## Sample efficiency (held-out tasks over training)", "",
          f"From the training-time evaluations (`--eval-every`, {_curve_episodes(by)} per suite line, cap "
          f"{cfg.train.eval_max_steps} steps): the area under the seed-mean held-out-task curve (trapezoid, "
          "% x million env steps, over the evaluations every seed has)"
          + ("" if target is None else
             f", and the first evaluated env steps at which that mean reaches {THRESHOLD:.0%} of {base_arm}'s "
             f"last evaluation ({target:.1f}%)") + ". Held-out-task curves: `held_out_curves.png`.", "",
          "| method | evaluations | over env steps | AUC %·M steps | "
          + ("" if target is None else f"steps to {target:.1f}% | × fewer steps than {base_arm} | ")
          + "last evaluation % |", "|---|---:|---|---:|" + ("" if target is None else "---:|---:|") + "---:|"]
    for m, (x, mean, _, _) in curves.items():
        row = f"| {m} | {len(x)} | {x[0] / 1e6:.2f}-{x[-1] / 1e6:.2f}M | {auc(x / 1e6, 100 * mean):.1f} | "
        if target is not None:
            at = steps_to(x, 100 * mean, target)
            row += ("not reached | | " if at is None else
                    f"{at:,.0f} | {'' if base_at is None else f'{base_at / at:.2f}'} | ")
        md.append(row + f"{100 * mean[-1]:.1f} |")
    md += ["", "![held-out-task success over training](held_out_curves.png)", ""]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _line_figure(plt, cfg.out / "held_out_curves.png", by, CURVE_KEY, 100, "held-out tasks success (%)",
                 "Held-out tasks over training")
    return md


def _wrong(rel: dict) -> float:
    """Flawed relabels but duplicates: a spec stated twice for one segment is right, only repeated."""
    return rel["relabel_flawed"] - rel.get("relabel_flawed_duplicate", 0)


def _llm_section(by: dict[str, list[Run]]) -> list[str]:
    """What the language model did in each LLM run: calls, templates, and the share it relabeled."""
    def rel(r: Run) -> dict:
        return r.summary.get("relabeling") or {}

    llm = {m: rs for m, rs in by.items() if all("llm_calls" in rel(r) for r in rs)}
    if not llm:
        return []
    narrator = [r.summary["wall_s"] for r in by.get("narrator", [])]
    md = ["## The language model's part", "",
          "| method | LLM calls | per 1M steps | templates (retired) | segments relabeled through templates % "
          "| segments with a verified LLM relabel % | ... in training's second half % "
          "| ... one the narrator did not propose there % "
          "| model's own relabels verified / proposed | relabels expired | wall × narrator |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, rs in llm.items():
        xs = [rel(r) for r in rs]
        joint = all("joint_llm_share" in x for x in xs)
        own = [(x.get("llm_lift_verified"), x.get("llm_lift_proposed")) for x in xs]
        wall = np.mean([r.summary["wall_s"] for r in rs]) / np.mean(narrator) if narrator else None
        md.append(
            f"| {m} | {_ms([x['llm_calls'] for x in xs])} | {_ms([x.get('llm_calls_per_1m_steps') for x in xs])} "
            f"| {_ms([x.get('llm_templates') for x in xs], 0)} ({_ms([x.get('llm_templates_retired') for x in xs], 0)}) "
            f"| {_ms([_pct(x.get('llm_template_share')) for x in xs])} "
            f"| {_ms([_pct(x['joint_llm_share']) for x in xs]) if joint else '—'} "
            f"| {_ms([_pct(_late_share(r)) for r in rs]) if joint else '—'} "
            f"| {_ms([_pct(x['joint_llm_novel_share']) for x in xs]) if joint else '—'} "
            f"| {', '.join(f'{v:,.0f} / {p:,.0f}' for v, p in own if p is not None) or '—'} "
            f"| {_ms([x.get('relabels_expired') for x in xs], 0)} "
            f"| {'' if wall is None else f'{wall:.2f}'} |")
    md += ["", "Means ± std over seeds. Templates: lifted from the model's verified relabels "
           "(`templates.jsonl` in each run dir holds them). The last three shares are of the segments handed "
           "to the relabeler with something in them, and exist for `narrator+llm` only: a verified LLM "
           "relabel there may state a spec the narrator also proposed, in the LLM's wording. The second "
           "half's share is the steady state: the whole run's counts the minutes before the model's "
           "first reply, when nothing can come from it.", ""]
    return md


def _late_share(r: Run) -> float | None:
    """``joint_llm_share`` over the segments of the second half of training, from the progress
    lines' running totals (segments with something in them; the share times them is a count)."""
    rows = [m for m in r.metrics if "joint_llm_share" in m and "relabel_segments" in m]
    if not rows:
        return None
    half = rows[-1]["env_steps"] / 2
    mid = min(rows, key=lambda m: abs(m["env_steps"] - half))

    def counts(m: dict) -> tuple[float, float]:
        n = m["relabel_segments"] - m.get("relabel_segments_quiet", 0)
        return m["joint_llm_share"] * n, n

    (k1, n1), (k0, n0) = counts(rows[-1]), counts(mid)
    return (k1 - k0) / (n1 - n0) if n1 > n0 else None


def _held_out_task_section(suite: list[SuiteLine], by: dict[str, list[Run]]) -> list[str]:
    """Success per held-out task, every method side by side.

    The held-out-task figure averages a few tasks, and on Craftax it is bimodal (tasks every agent
    solves, tasks none does): this shows which tasks a difference comes from."""
    tasks: dict[str, str] = {}  # held-out task id -> its canonical text
    for x in suite:
        if x.holdout == HELD_OUT_TASK and (x.task_id not in tasks or not x.paraphrase):
            tasks[x.task_id] = x.text
    if not tasks:
        return []
    success = {m: {} for m in by}
    for m, rs in by.items():
        for r in rs:
            for t in r.eval["tasks"]:
                success[m].setdefault(t["task_id"], []).append(t["success"])
    out = ["### Held-out tasks one by one (success %, mean over seeds)", "",
           "| held-out task | text | " + " | ".join(by) + " |", "|---|---|" + "---:|" * len(by)]
    for tid, text in tasks.items():
        out.append(f"| `{tid}` | {text} | " + " | ".join(
            "n/a" if tid not in success[m] else f"{100 * np.mean(success[m][tid]):.0f}" for m in by) + " |")
    return [*out, ""]


def _coverage_section(suite: list[SuiteLine], by: dict[str, list[Run]], split: str, holdout: dict) -> list[str]:
    """Success on the suite's tasks, grouped by whether the run's relabels held that spec.

    OIR can only learn what its relabeler proposes: this shows where its success comes from, and
    how the baseline does on the same tasks."""
    from oir.tasks import parse_spec

    spec_of = {x.task_id: x.spec for x in suite}
    world = suite[0].spec.world if suite else None  # the relabels name this world's counters
    base_arm = _baseline(by, None, holdout) or "no-relabel"
    base = by.get(base_arm, [])
    out = []
    for m, rs in by.items():
        if rs[0].method == "no-relabel":
            continue
        rows: dict[str, list[list[float]]] = {}
        for i, r in enumerate(rs):
            path = r.dir / "instructions.jsonl"
            if not path.is_file():
                continue
            buf = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            keys = {parse_spec(b["task"], world).key() for b in buf}
            counters = {frozenset(c["counter"] for c in b["task"]["all"]) for b in buf}
            other = {t["task_id"]: t["success"] for t in base[i].eval["tasks"]} if i < len(base) else {}
            for t in r.eval["tasks"]:
                spec = spec_of[t["task_id"]]
                group = ("the same spec" if spec.key() in keys else
                         "the same counters, other counts or clauses" if frozenset(c.counter for c in spec.all) in counters
                         else "none of its counters together")
                rows.setdefault(group, []).append([t["success"], other.get(t["task_id"], np.nan)])
        if not rows:
            continue
        out += [f"### Where {m}'s success comes from ({split} split)", "",
                "Tasks grouped by what the run's instruction buffer held at the end (all seeds pooled): "
                "an instruction with the task's exact spec, one over the same set of counters, or neither.", "",
                f"| buffer held | tasks (x seeds) | {m} success % | {base_arm} success % |", "|---|---:|---:|---:|"]
        for group in ("the same spec", "the same counters, other counts or clauses", "none of its counters together"):
            v = np.array(rows.get(group, []), float)
            if len(v):
                b = "n/a" if np.isnan(v[:, 1]).all() else f"{100 * np.nanmean(v[:, 1]):.1f}"
                out.append(f"| {group} | {len(v)} | {100 * v[:, 0].mean():.1f} | {b} |")
        out.append("")
    return out


def _run_delta(r: Run) -> float | None:
    """The similarity threshold a run rewarded with (None: verified rewards)."""
    cfg = json.loads((r.dir / "config.json").read_text()) if (r.dir / "config.json").is_file() else {}
    return cfg.get("delta") if cfg.get("reward") == "similarity" else None


def _mean_metric(r: Run, key: str) -> float | None:
    xs = [row[key] for row in r.metrics if key in row]
    return float(np.mean(xs)) if xs else None


def _similarity_section(cfg: CompareConfig, by: dict[str, list[Run]], holdout: dict) -> list[str]:
    """Similarity rewards against verified ones: success, and how often the similarity reward was
    wrong, for every method (a delta sweep's runs are methods ``name@delta``); ``delta.png`` too."""
    delta = {m: _run_delta(rs[0]) if rs else None for m, rs in by.items()}  # read once per method
    sim = {m: rs for m, rs in by.items() if delta[m] is not None}
    if not sim:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def rel(r: Run, key: str) -> float | None:
        return (r.summary.get("relabeling") or {}).get(key)

    md = ["## Similarity rewards against verified rewards", "",
          "Every relabel carries an executable spec, so each similarity reward can be checked. "
          "**Relabel false %**: of the similarity rewards the proposed relabels got on their own segments, "
          "the share given before or without their spec holding; **relabel missed %**: of the proposals whose "
          "spec held, the share similarity never rewarded. **Online false / missed %**: the same for the rewards "
          "the agent trained on (rewards where the followed instruction's spec did not hold; instructions that "
          "ended with their spec holding but unrewarded), mean over updates. Verified rewards are 0 on all four "
          "by construction.", "",
          "| method | delta | held-out tasks % | all test lines % | relabel false % | relabel missed % | "
          "online false % | online missed % |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m, rs in by.items():
        d = delta[m]
        md.append(f"| {m} | {'verified' if d is None else f'{d:g}'} "
                  f"| {_ms([_pct(holdout[r.dir][HELD_OUT_TASK]) for r in rs])} "
                  f"| {_ms([100 * r.eval['success_by_split']['all'] for r in rs])} "
                  f"| {_ms([_pct(rel(r, 'relabel_false_reward_rate')) for r in rs])} "
                  f"| {_ms([_pct(rel(r, 'relabel_missed_reward_rate')) for r in rs])} "
                  f"| {_ms([_pct(_mean_metric(r, 'reward_false_rate')) for r in rs])} "
                  f"| {_ms([_pct(_mean_metric(r, 'reward_missed_rate')) for r in rs])} |")
    md.append("")

    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(11, 4))
    bases = sorted({m.partition("@")[0] for m in sim})
    for i, base in enumerate(bases):
        pts = sorted(((delta[m], rs) for m, rs in sim.items() if m.partition("@")[0] == base), key=lambda x: x[0])
        ds = [d for d, _ in pts]
        tasks = [[100 * holdout[r.dir][HELD_OUT_TASK] for r in rs] for _, rs in pts]
        ax_s.errorbar(ds, [np.mean(t) for t in tasks], yerr=[np.std(t) for t in tasks], marker="o",
                      capsize=3, color=f"C{i}", label=f"{base} (similarity)")
        for key, style, name in (("relabel_false_reward_rate", "-", "relabel false"),
                                 ("relabel_missed_reward_rate", "--", "relabel missed"),
                                 ("reward_false_rate", ":", "online false")):
            ys = [_mean_or_none([rel(r, key) if key.startswith("relabel") else _mean_metric(r, key) for r in rs])
                  for _, rs in pts]
            if any(y is not None for y in ys):  # ELLM has no relabels: no relabel rates to draw
                ax_e.plot(ds, [np.nan if y is None else 100 * y for y in ys], style, marker="o",
                          color=f"C{i}", label=f"{base}: {name}")
    for j, (m, rs) in enumerate((m, rs) for m, rs in by.items() if m not in sim):
        rate = _mean_or_none([holdout[r.dir][HELD_OUT_TASK] for r in rs])
        if rate is not None:
            ax_s.axhline(100 * rate, ls=":", color=f"C{len(bases) + j}", label=f"{m} (verified)" if m != "no-relabel" else m)
    ax_e.axhline(0, color="k", lw=0.8, label="verified rewards (0 by construction)")
    ax_s.set(xlabel="similarity threshold delta", ylabel="held-out tasks success (%)", title="Success by delta")
    ax_e.set(xlabel="similarity threshold delta", ylabel="% of similarity rewards or specs", title="Wrong similarity rewards by delta")
    for ax in (ax_s, ax_e):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(cfg.out / "delta.png", dpi=110)
    plt.close(fig)
    md += ["![success and wrong rewards by delta](delta.png)", "",
           "Left: held-out-task success of each similarity run by its threshold (mean ± std over seeds), "
           "the verified methods as dotted lines. Right: the relabel false and missed rates and the online "
           "false-reward rate by threshold.", ""]
    _line_figure(plt, cfg.out / "false_reward_rate.png", sim, "reward_false_rate", 100,
                 "online false-reward rate (%)", "Similarity rewards given where the spec did not hold")
    md += ["![false-reward rate over training](false_reward_rate.png)", "",
           "The online false-reward rate over training (rewards the agent trained on where the followed "
           "instruction's spec did not hold), mean over seeds, min to max shaded.", ""]
    return md


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _device() -> str:
    import jax

    d = jax.devices()[0]
    return f"JAX on {d.platform}"


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["env_steps"], r[key]) for r in rows if key in r]
    if not pts:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*pts, strict=True)
    return np.asarray(x, float), np.asarray(y, float)


def _color(method: str):
    """One colour per method in every figure; a delta sweep's runs, and a method's label budgets,
    shade from light to dark."""
    method, labelled_, share = method.partition(" labels=")
    method, tagged, _ = method.partition(" (")  # a --baseline-algos learner: the next colour along
    if tagged:
        from matplotlib import colormaps

        return colormaps["Dark2"](list(METHODS).index(method) % 8)
    if labelled_:
        from matplotlib import colormaps

        maps = ("Blues", "Oranges", "Greens", "Reds", "Purples", "Greys")
        return colormaps[maps[list(METHODS).index(method) % len(maps)]](0.35 + 0.6 * float(share))
    base, at, arg = method.partition("@")
    if at:
        from matplotlib import colormaps

        return colormaps["viridis"](min(max((float(arg) - 0.3) / 0.6, 0.0), 1.0))
    return f"C{list(METHODS).index(base)}"


def _band(ax, runs: list[Run], key: str, label: str, scale: float = 1.0) -> bool:
    """Mean over seeds as a line, min to max shaded; seeds share the x of the shortest."""
    series = [_series(r.metrics, key) for r in runs]
    series = [s for s in series if len(s[0])]
    if not series:
        return False
    n = min(len(s[0]) for s in series)
    x = series[0][0][:n]
    ys = np.stack([s[1][:n] for s in series]) * scale
    (line,) = ax.plot(x, ys.mean(0), label=label, color=_color(label))
    if len(series) > 1:
        ax.fill_between(x, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.25)
    return True


def _plots(cfg: CompareConfig, by: dict[str, list[Run]], split: str) -> list[tuple[str, str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from oir.relabel import BELOW_DELTA, FLAW_REASONS

    out = []
    _line_figure(plt, cfg.out / "success_curves.png", by, f"eval_success_{split}", 100,
                 f"success on the {split} split (%)", "Training-time evaluation")
    out.append(("success_curves.png", "Success over training",
                f"Training-time evaluation (`--eval-every`, {_curve_episodes(by)} per suite line, cap "
                f"{cfg.train.eval_max_steps} steps, the same worlds each time) on the {split} split: mean over "
                "seeds, min to max shaded."))

    relabeling = {m: rs for m, rs in by.items() if rs and all(r.summary.get("relabeling") for r in rs)}
    if relabeling:
        fig, axes = plt.subplots(1, len(relabeling), figsize=(5 * len(relabeling), 3.6), squeeze=False)
        for ax, (m, rs) in zip(axes[0], relabeling.items(), strict=True):
            for reason in (*FLAW_REASONS, BELOW_DELTA):
                x, rate = _flawed_rate(rs, reason)
                if len(x):
                    ax.plot(x, 100 * rate, label=reason)
            ax.set(xlabel="env steps", ylabel="flawed / proposed relabels (%)", title=m)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(cfg.out / "flawed_rate.png", dpi=110)
        plt.close(fig)
        def total(rs: list[Run], count) -> float:
            return sum(count(r.summary["relabeling"]) for r in rs)

        totals = ", ".join(
            f"{m}: {total(rs, _wrong):,.0f} flawed of {total(rs, lambda x: x['relabel_proposed']):,.0f} proposed"
            + (f", {dup:,.0f} more dropped as duplicates"
               if (dup := total(rs, lambda x: x.get("relabel_flawed_duplicate", 0))) else "")
            for m, rs in relabeling.items())
        out.append(("flawed_rate.png", "Flawed relabels over training, by reason",
                    "Share of proposed relabels that verification rejected, per tenth of training, all seeds "
                    f"pooled ({totals}). The narrator proposes only what its own event log shows, so its "
                    "flawed rate is zero by construction; the figure matters for LLM relabelers."))

        _line_figure(plt, cfg.out / "unique_instructions.png", relabeling, "unique_instructions", 1,
                     "unique instructions in the buffer", "Instruction buffer growth")
        out.append(("unique_instructions.png", "Unique instructions over training",
                    "Rows of the instruction buffer (after merging by normalized text and by same-spec "
                    "embedding similarity), mean over seeds, min to max shaded."))

    _line_figure(plt, cfg.out / "wall_time.png", by, "wall_s", 1 / 60, "wall time (min)", "Wall time")
    out.append(("wall_time.png", "Wall-time overhead against no-relabel",
                "Wall clock against env steps, mean over seeds (the table gives the ratio at the end). "
                "Relabeling runs on a worker thread beside the jitted update; the steps of the curves are "
                "the training-time evaluations."))
    return out


def _line_figure(plt, path: Path, by: dict[str, list[Run]], key: str, scale: float, ylabel: str,
                 title: str) -> None:
    """One metric against env steps, a band per method."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for m, rs in by.items():
        _band(ax, rs, key, m, scale)
    ax.set(xlabel="env steps", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _flawed_rate(runs: list[Run], reason: str, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Flawed / proposed per tenth of training, seeds pooled (the counters are cumulative)."""
    key = f"relabel_flawed_{reason}"
    if not all(key in r.metrics[-1] for r in runs):
        return np.zeros(0), np.zeros(0)
    total = min(len(r.metrics) for r in runs)
    edges = np.linspace(0, total - 1, bins + 1).astype(int)
    xs, rates = [], []
    for a, b in itertools.pairwise(edges):
        flawed = sum(r.metrics[b][key] - r.metrics[a][key] for r in runs)
        proposed = sum(r.metrics[b]["relabel_proposed"] - r.metrics[a]["relabel_proposed"] for r in runs)
        xs.append(runs[0].metrics[b]["env_steps"])
        rates.append(flawed / proposed if proposed else 0.0)
    return np.asarray(xs), np.asarray(rates)
