"""The ``oir`` command line: tyro dataclass configs, one subcommand each.

Bad input (a broken suite line, a bad value) ends in one ``oir: error: ...`` line and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import tyro
from rich.console import Console
from rich.table import Table

from oir import presets
from oir.checkpoint import CheckpointError
from oir.errors import CliError, check_writable, write_text
from oir.shipped import AGENTS
from oir.suites import STANDARD_SUITE, SuiteError
from oir.tasks import SpecError
from oir.train import ConfigError, RunError


@dataclass
class Demo:
    """The main job, in three parts, all on held-out human instructions (the suite's test split).

    1. The shipped agents (agents/: the default OIR agent, narrator relabels added to the suite's
       train lines, and the labelled agent, the same settings without relabels; provenance beside
       each) and a random agent, each evaluated in one vectorized batch.
    2. A short live run of a training preset (default ``oir``: PPO with the narrator relabeler,
       rule-based and offline, not a language model, its hindsight relabels added to the suite's
       train lines; oir.presets), with every other setting at its default; then the same evaluation.
    3. A GIF of the shipped OIR agent following a held-out instruction.
    """

    steps: int = 300_000  # env steps of the live run (0: skip it)
    preset: str = "oir"  # the live run's training preset (oir.presets): oir, labelled, zero-label, ...
    # the world: classic (Craftax-Classic) or full (full Craftax: its suite, a live run only, since
    # the shipped agents are Classic ones)
    env: str = "classic"
    encoder: Literal["minilm", "hash"] = "minilm"
    num_envs: int = 64
    suite: Path = STANDARD_SUITE
    split: Literal["all", "train", "test"] = "test"
    episodes: int = 2  # fresh worlds per suite line
    max_steps: int = 500  # episode cap for tasks without a `within` budget
    seed: int = 0
    by: Literal["category", "split", "holdout"] = "category"  # rows of the table
    out: Path = Path("runs/demo")  # the run dir; results.json goes in it
    baseline: bool = True  # also evaluate a random agent on the same lines and worlds
    agents: Path = AGENTS  # the shipped agents to evaluate (a dir of agent dirs; none there: skipped)
    gif: bool = True  # play the shipped OIR agent on a held-out instruction into OUT/held-out.gif


@dataclass
class Eval:
    """Evaluate a trained run on any suite: every (line, episode) pair in one vectorized batch.

    Texts never seen in training are fine: each line's text is embedded with the run's encoder.
    """

    run: Path  # an `oir train` run dir, or a shipped agent dir (agents/NAME)
    suite: Path | None = None  # default: the standard suite of the run's world (its config's env)
    split: Literal["all", "train", "test"] = "test"
    episodes: int = 4  # fresh worlds per suite line
    max_steps: int = 1000  # episode cap for tasks without a `within` budget
    seed: int = 0
    by: Literal["category", "split", "holdout", "task", "line"] = "category"  # rows of the table
    out: Path | None = None  # results JSON: per line, per task, category, split, coverage, gap


@dataclass
class Export:
    """Ship a finished run as a small agent dir (agents/NAME): float16 parameters, its config, and a
    provenance file with the command and commit that trained it, a sha256, and its success measured
    on the standard suite with the settings given here (see `oir.shipped`)."""

    run: Path  # a finished `oir train` run dir
    out: Path  # the agent dir to write, e.g. agents/NAME
    command: str  # the exact command that trained the run
    commit: str  # the commit it was trained at
    split: Literal["all", "train", "test"] = "test"  # the split whose success the provenance records
    episodes: int = 1  # fresh worlds per line: small, so a test can measure it again
    max_steps: int = 500
    seed: int = 10_000


@dataclass
class Relabel:
    """Run a relabeler and the verification on saved segments, without training.

    Segments come from `oir train --relabel ... --relabeling.save-segments K` (DIR/segments.npz).
    Prints proposed, verified and flawed counts by reason; `--out` gets one JSON line per segment.
    """

    segments: Path
    relabeler: Literal["narrator", "llm"] = "narrator"
    # the world the segments come from: classic or full ("": read from the segments' layout)
    env: str = ""
    llm_url: str = ""
    llm_model: str = "default"
    llm_api_key_env: str = ""
    llm_timeout: float = 30.0
    llm_batch: int = 0  # segments per request (0: 4 with --llm-url local, else 8)
    llm_cache: str = ""  # "" for ~/.cache/oir/llm_cache.sqlite, "off" for none
    llm_prompt: str = ""  # prompt file: "" for relabel_v2_small with --llm-url local, else relabel_v1
    llm_json_mode: str = ""  # off, object or schema; "" for schema with --llm-url local, else off
    # templates: the model's verified relabels become templates, and relabels come from the
    # template library; "": templates with --llm-url local, else direct
    llm_mode: Literal["", "direct", "templates"] = ""
    templates: Path | None = None  # start the template library from this templates.jsonl
    save_templates: Path | None = None  # write the template library here at the end (a templates.jsonl)
    chunk: int = 0  # segments handed to the relabeler at a time, in order, as training does (0: all at once)
    out: Path | None = None


@dataclass
class TasksList:
    """Print the counter vocabulary that task specs may use in a world."""

    env: str = "classic"  # the world: classic (Craftax-Classic) or full (full Craftax)


@dataclass
class TasksCheck:
    """Validate a suite file: one line per bad suite line, non-zero exit if any."""

    file: tyro.conf.Positional[Path]
    # the world whose counters the specs name: classic or full ("": the world whose standard suite
    # FILE is, else classic)
    env: str = ""


@dataclass
class Tasks:
    """Task specs and instruction suites."""

    cmd: tyro.conf.OmitArgPrefixes[
        Annotated[TasksList, tyro.conf.subcommand("list", prefix_name=False)]
        | Annotated[TasksCheck, tyro.conf.subcommand("check", prefix_name=False)]
    ]


@dataclass
class LlmServe:
    """Serve a local model with llama-cpp-python's OpenAI-compatible server on 127.0.0.1 until Ctrl-C.

    Needs `make llm-local`. Point `--llm-url` at the printed URL from `oir train`/`oir relabel`
    (or give `--llm-url local` and let them start and stop a server of their own).
    """

    model: str = "qwen-0.5b"  # qwen-0.5b, qwen-1.5b or smollm2-135m
    port: int = 8080
    threads: int = 0  # 0: half the cores this process may use (it shares them, e.g. with training)


@dataclass
class LlmModels:
    """List the local models, whether their parts are installed and their checksums."""


@dataclass
class Llm:
    """Real small language models on this machine (llama-cpp-python, opt-in: `make llm-local`)."""

    cmd: tyro.conf.OmitArgPrefixes[
        Annotated[LlmServe, tyro.conf.subcommand("serve", prefix_name=False)]
        | Annotated[LlmModels, tyro.conf.subcommand("models", prefix_name=False)]
    ]


from oir.compare import CompareConfig  # noqa: E402
from oir.play import PlayConfig, play  # noqa: E402
from oir.train import TrainConfig  # noqa: E402

Command = (
    Annotated[Demo, tyro.conf.subcommand("demo")]
    | Annotated[TrainConfig, tyro.conf.subcommand("train")]
    | Annotated[Eval, tyro.conf.subcommand("eval")]
    | Annotated[Relabel, tyro.conf.subcommand("relabel")]
    | Annotated[Export, tyro.conf.subcommand("export")]
    | Annotated[CompareConfig, tyro.conf.subcommand("compare")]
    | Annotated[PlayConfig, tyro.conf.subcommand("play")]
    | Annotated[Tasks, tyro.conf.subcommand("tasks")]
    | Annotated[Llm, tyro.conf.subcommand("llm")]
)


def _world(name: str):
    """The world called ``name`` (--env), or one error line."""
    from oir import worlds

    try:
        return worlds.get(name)
    except worlds.WorldError as e:
        raise CliError(f"--env: {e}") from None


def _suite_world(path: Path, env: str):
    """The world a suite is checked against: --env, else the world whose standard suite it is."""
    from oir import worlds

    if env:
        return _world(env)
    return next((worlds.get(n) for n in worlds.NAMES if _same_path(path, worlds.get(n).suite)), worlds.get())


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def tasks_list(cfg: TasksList, console: Console) -> None:
    world = _world(cfg.env)
    COUNTERS = world.counters
    # Plain aligned text, so it greps and pipes.
    print(f"# {len(COUNTERS)} counters of {world.env_id} (--env {world.name}). Events count from the moment "
          "the instruction is given;")
    print("# levels are current values. Clause: {\"counter\": NAME, \"at_least\": N} (or \"at_most\").")
    width = max(len(c.name) for c in COUNTERS)
    for c in COUNTERS:
        print(f"{c.name:<{width}}  {c.kind:<11}  {'event' if c.relative else 'level'}  {c.description}")


def tasks_check(cfg: TasksCheck, console: Console) -> int:
    from oir.suites import check_suite

    world = _suite_world(cfg.file, cfg.env)
    lines, errors = check_suite(cfg.file, world)
    for e in errors:
        print(f"oir: error: {e}", file=sys.stderr)
    if errors:
        print(f"{cfg.file}: {len(errors)} problem(s), {len(lines)} good line(s)", file=sys.stderr)
        return 1
    tasks = {x.task_id for x in lines}
    splits = {s: sum(x.split == s for x in lines) for s in ("train", "test")}
    console.print(f"{cfg.file}: OK for {world.env_id} (--env {world.name}), {len(lines)} lines, {len(tasks)} tasks, "
                  f"{splits['train']} train / {splits['test']} test lines", soft_wrap=True, highlight=False)
    return 0


def _suite_run(console: Console, lines, policy, who: str, cfg) -> int:
    """Run ``policy`` on ``lines``, print the table and summary, write ``cfg.out`` if set."""
    from oir.evaluate import holdout_line, report, run_suite, summarize

    if cfg.episodes < 1 or cfg.max_steps < 1:
        raise CliError("--episodes and --max-steps must be at least 1")
    console.print(f"[bold]{who}[/] on {cfg.suite.name} ({cfg.split}: {len(lines)} lines x "
                  f"{cfg.episodes} episode(s), cap {cfg.max_steps} steps)")
    t0 = time.perf_counter()
    results = run_suite(lines, policy, episodes=cfg.episodes, max_steps=cfg.max_steps, seed=cfg.seed)
    wall = time.perf_counter() - t0
    summary = summarize(results, by=cfg.by)
    table = Table(title=f"Task success, per {cfg.by}")
    for col in (cfg.by, "tasks", "lines", "success"):
        table.add_column(col, justify="left" if col == cfg.by else "right")
    for name, n_tasks, n_lines, rate in summary.rows:
        table.add_row(name, str(n_tasks), str(n_lines), f"{100 * rate:.1f}%", end_section=name == summary.rows[-2][0])
    console.print(table)
    console.print(holdout_line(results))
    console.print(f"{summary.describe()}; wall time {wall:.0f} s")
    if cfg.out is not None:
        payload = {"config": {k: str(v) for k, v in asdict(cfg).items()}, **report(results)}
        write_text(cfg.out, json.dumps(payload, indent=1))
        console.print(f"results written to {cfg.out}")
    return 0


def _shipped(agents: Path) -> dict[str, Path]:
    """Label -> agent dir of each shipped agent, relabeling ones first."""
    from oir.shipped import is_agent, provenance

    provs = {p: provenance(p) for p in sorted(agents.iterdir()) if is_agent(p)} if agents.is_dir() else {}
    out = {}
    for path, prov in sorted(provs.items(), key=lambda x: x[1]["relabel"] == "none"):
        algo = prov["algo"].upper()
        suite = " +suite" if prov["method"].endswith("+suite") else ""
        out[f"{algo} no-relabel, shipped" if prov["relabel"] == "none" else f"OIR {algo}{suite}, shipped"] = path
    return out


def _describe_shipped(path: Path) -> str:
    from oir.shipped import provenance

    prov = provenance(path)
    how = {"no-relabel": "the suite's train lines, no relabels",
           "narrator+suite": "narrator relabels added to the suite's train lines"}.get(
        prov["method"], f"{prov['method']} relabels, zero human labels")
    return f"{path.name} ({prov['algo'].upper()}, {how}, {prov['env_steps']:,} env steps, commit {prov['commit']})"


def demo(cfg: Demo, console: Console) -> int:
    from oir import jaxcache
    from oir.evaluate import holdout_line, random_policy_for, report, run_suite, summarize
    from oir.policy import policy_from_run
    from oir.suites import HELD_OUT_TASK, load_suite, suite_for
    from oir.train import train

    if cfg.episodes < 1 or cfg.max_steps < 1 or cfg.steps < 0:
        raise CliError("--episodes and --max-steps must be at least 1, --steps at least 0")
    jaxcache.enable()
    world = _world(cfg.env)
    cfg = replace(cfg, suite=suite_for(cfg.suite, world))
    lines = load_suite(cfg.suite, None if cfg.split == "all" else [cfg.split], world=world)
    texts = [x.text for x in lines]
    shipped = _shipped(cfg.agents) if world.name == "classic" else {}
    if world.name != "classic":
        console.print(f"{world.env_id}: the shipped agents are Craftax-Classic ones, so only the live run and a "
                      "random agent are evaluated", soft_wrap=True, highlight=False)
    try:
        agents = {name: policy_from_run(path, texts) for name, path in shipped.items()}
    except (FileNotFoundError, ValueError) as e:  # a damaged shipped agent: one line
        raise CliError(str(e)) from None
    for name, path in shipped.items():
        console.print(f"[bold]{name}[/]: {_describe_shipped(path)}; provenance in {path / 'provenance.json'}",
                      soft_wrap=True, highlight=False)
    try:
        tcfg = replace(presets.apply(TrainConfig(), cfg.preset), steps=max(cfg.steps, 1), num_envs=cfg.num_envs,
                       seed=cfg.seed, out=cfg.out, suite=cfg.suite, encoder=cfg.encoder, eval_episodes=0,
                       env=world.name)
    except ValueError as e:
        raise CliError(str(e)) from None
    live = f"{tcfg.algo.upper()} {cfg.preset}, live"
    if cfg.steps:
        console.print(f"[bold]live run[/]: `oir train --preset {cfg.preset}` ({tcfg.algo.upper()}, relabel "
                      f"{tcfg.relabel}, labels {tcfg.labels:g}) for {cfg.steps:,} env steps, {cfg.num_envs} envs, "
                      f"in {cfg.out}", soft_wrap=True, highlight=False)
        summary = train(tcfg)
        rel = summary.get("relabeling", {})
        if rel:
            console.print(f"trained in {summary['wall_s']:.0f} s: {rel['unique_instructions']:,} unique instructions from "
                          f"{rel['relabel_verified']:,} verified relabels of {rel['relabel_segments']:,} segments "
                          f"({rel['relabel_flawed']:,} flawed); relabeling took {100 * rel['relabel_wall_frac']:.1f}% "
                          "of the training thread", soft_wrap=True, highlight=False)
        agents[live] = policy_from_run(cfg.out, texts)
    if cfg.baseline:
        agents["random"] = random_policy_for(world.num_actions)
    if not agents:
        raise CliError(f"nothing to evaluate: no shipped agents in {cfg.agents}, --steps 0 and --no-baseline")

    console.print(f"evaluating {len(agents)} agents on {cfg.suite.name} ({cfg.split}: {len(lines)} lines x "
                  f"{cfg.episodes} episode(s), cap {cfg.max_steps} steps; the same worlds for every agent)",
                  soft_wrap=True, highlight=False)
    results = {name: run_suite(lines, pol, episodes=cfg.episodes, max_steps=cfg.max_steps, seed=cfg.seed + 10_000)
               for name, pol in agents.items()}
    summaries = {name: summarize(r, by=cfg.by) for name, r in results.items()}
    table = Table(title=f"Task success on held-out instructions, per {cfg.by}")
    table.add_column(cfg.by)
    table.add_column("tasks", justify="right")
    table.add_column("lines", justify="right")
    for name in agents:
        table.add_column(name, justify="right")
    first = next(iter(summaries.values()))
    for i, (name, n_tasks, n_lines, _) in enumerate(first.rows):
        rates = [f"{100 * s.rows[i][3]:.1f}%" for s in summaries.values()]
        table.add_row(name, str(n_tasks), str(n_lines), *rates, end_section=i == len(first.rows) - 2)
    console.print(table)
    for name, s in summaries.items():
        console.print(f"{name}: {holdout_line(results[name])}; {s.describe()}", soft_wrap=True, highlight=False)
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_text(cfg.out / "results.json", json.dumps({name: report(r) for name, r in results.items()}, indent=1))
    console.print(f"results: {cfg.out / 'results.json'}", soft_wrap=True, highlight=False)

    oir_agent = next((n for n in shipped if "no-relabel" not in n), None)
    if cfg.gif and oir_agent:
        # The held-out task line the shipped OIR agent solved most often, hardest category first.
        order = {"sequence": 0, "spatial": 1, "count": 2, "budget": 3, "prohibition": 4, "single": 5, "vitals": 6}
        solved = [(r.line, r.rate) for r in results[oir_agent] if r.line.holdout == HELD_OUT_TASK and r.successes]
        if solved:
            line = min(solved, key=lambda x: (order.get(x[0].category, 9), -x[1]))[0]
            console.print(f"[bold]the shipped OIR agent on a held-out task[/] ({line.category}): {line.text!r}",
                          soft_wrap=True, highlight=False)
            play(PlayConfig(run=shipped[oir_agent], instruction=line.text, out=cfg.out / "held-out.gif",
                            task=json.dumps(line.spec.to_json()), steps=300, every=2), console)
    return 0


def eval_cmd(cfg: Eval, console: Console) -> int:
    from oir import jaxcache
    from oir.policy import load_run
    from oir.suites import load_suite

    jaxcache.enable()
    check_writable(cfg.out)
    try:
        run_cfg, policy_of = load_run(cfg.run)
    except (FileNotFoundError, ValueError) as e:
        raise CliError(str(e)) from None
    world = _world(run_cfg.env)  # the run's world: no flag needed
    cfg = replace(cfg, suite=cfg.suite or world.suite)
    lines = load_suite(cfg.suite, None if cfg.split == "all" else [cfg.split], world=world)
    return _suite_run(console, lines, policy_of([x.text for x in lines]), f"oir eval: {cfg.run} ({world.env_id})", cfg)


def export_cmd(cfg: Export, console: Console) -> int:
    from oir import jaxcache
    from oir.evaluate import report, run_suite
    from oir.policy import check_run_dir, policy_from_run
    from oir.shipped import record_eval, write_agent
    from oir.suites import load_suite

    try:
        check_run_dir(cfg.run)
    except FileNotFoundError as e:
        raise CliError(str(e)) from None
    if not (cfg.run / "checkpoint").is_dir():
        raise CliError(f"{cfg.run} is already a shipped agent: export a training run")
    if cfg.episodes < 1 or cfg.max_steps < 1:
        raise CliError("--episodes and --max-steps must be at least 1")
    jaxcache.enable()
    check_writable(cfg.out / "provenance.json")
    prov = write_agent(cfg.run, cfg.out, cfg.command, cfg.commit)
    lines = load_suite(STANDARD_SUITE, None if cfg.split == "all" else [cfg.split])
    # Measured on the shipped float16 weights, through the same loading as `oir eval`.
    results = run_suite(lines, policy_from_run(cfg.out, [x.text for x in lines]), episodes=cfg.episodes,
                        max_steps=cfg.max_steps, seed=cfg.seed)
    rep = report(results)
    prov = record_eval(cfg.out, {
        "command": f"oir eval --run {cfg.out} --split {cfg.split} --episodes {cfg.episodes} "
                   f"--max-steps {cfg.max_steps} --seed {cfg.seed}",
        "split": cfg.split, "episodes": cfg.episodes, "max_steps": cfg.max_steps, "seed": cfg.seed,
        "success": rep["success_by_split"]["all"], "success_by_holdout": rep["success_by_holdout"]})
    size = (cfg.out / prov["params"]).stat().st_size / 1e6
    console.print(f"wrote {cfg.out}: {prov['params']} {size:.1f} MB, sha256 {prov['sha256'][:12]}...; "
                  f"{100 * prov['eval']['success']:.1f}% success on the {cfg.split} split "
                  f"({cfg.episodes} episode(s) per line)", soft_wrap=True, highlight=False)
    return 0


def relabel_cmd(cfg: Relabel, console: Console) -> int:
    from collections import Counter

    from oir.narrate import narrate
    from oir.relabel import FLAW_REASONS, Flawed, NarratorRelabeler, verify
    from oir.segments import load_segments

    check_writable(cfg.out)
    check_writable(cfg.save_templates, "--save-templates")
    if cfg.chunk < 0:
        raise CliError(f"--chunk must be 0 (all at once) or a number of segments, not {cfg.chunk}")
    from oir.train import llm_choices

    llm_mode = llm_choices(cfg)["mode"]
    if cfg.save_templates is not None and llm_mode != "templates":
        raise CliError("--save-templates needs --relabeler llm --llm-mode templates")
    try:
        segments = load_segments(cfg.segments)
    except (ValueError, FileNotFoundError) as e:
        raise CliError(str(e)) from None
    world = segments[0].world if segments else _world(cfg.env or "classic")
    if cfg.env and _world(cfg.env) is not world:
        raise CliError(f"--env {cfg.env}: {cfg.segments} holds {world.name} segments")
    cfg = replace(cfg, env=world.name)  # the LLM is prompted with this world's counters
    if cfg.relabeler == "narrator":
        relabeler, who = NarratorRelabeler(), "narrator relabeler (rule-based, offline; not a language model)"
    else:
        if not cfg.llm_url:
            raise CliError("--relabeler llm needs --llm-url (an OpenAI-compatible server, or local)")
        from oir.llm.templates import templates_problem
        from oir.train import llm_relabeler

        problem = templates_problem(llm_mode, cfg.templates)
        if problem is not None:
            raise CliError(problem)

        relabeler, reason = llm_relabeler(cfg)
        if reason is not None:
            relabeler.close()
            raise CliError(f"LLM server {cfg.llm_url} does not answer ({reason})")
        who = relabeler.describe()
    t0 = time.perf_counter()
    step = cfg.chunk or max(len(segments), 1)
    proposals: list = []
    try:
        for lo in range(0, len(segments), step):
            proposals += relabeler.propose_batch(segments[lo:lo + step])
            if cfg.chunk:
                done = lo + len(segments[lo:lo + step])
                console.print(f"{done}/{len(segments)} segments, {time.perf_counter() - t0:.0f} s, "
                              f"{sum(map(bool, proposals[lo:]))} of the last {done - lo} with proposals", highlight=False)
        library = getattr(relabeler, "library", None)
        if cfg.save_templates is not None and library is not None:
            library.save(cfg.save_templates)
    finally:
        if hasattr(relabeler, "close"):
            relabeler.close()  # with --llm-url local, this stops the server it started
    flawed: Counter = Counter()
    lines, verified = [], 0
    for seg, props in zip(segments, proposals, strict=True):
        kept, bad = verify(seg, props)
        flawed += bad
        verified += len(kept)
        lines.append({"narration": narrate(seg), "proposed": len(props),
                      "verified": [{"text": r.text, "task": r.spec.to_json(), "step": r.step} for r in kept],
                      "flawed": dict(bad),
                      # as the relabeler gave them, flawed ones too: what a prompt change did is read here
                      "proposals": [{"flawed": p.reason} if isinstance(p, Flawed) else p for p in props]})
    proposed = sum(x["proposed"] for x in lines)
    console.print(f"[bold]oir relabel[/]: {who} on {len(segments)} segments in {time.perf_counter() - t0:.1f} s")
    console.print(f"proposed {proposed}, verified {verified}, flawed {sum(flawed.values())}: "
                  + ", ".join(f"{r} {flawed[r]}" for r in FLAW_REASONS))
    for k, v in relabeler.stats().items():
        console.print(f"{k}: {v:g}")
    if cfg.out is not None:
        write_text(cfg.out, "".join(json.dumps(x) + "\n" for x in lines))
        console.print(f"per-segment results written to {cfg.out}")
    if cfg.save_templates is not None:
        console.print(f"template library written to {cfg.save_templates} (use it with --templates)")
    return 0


def llm_cmd(cfg: LlmServe | LlmModels, console: Console) -> int:
    from oir import llm_local

    try:
        if isinstance(cfg, LlmServe):
            return llm_local.serve_forever(cfg.model, cfg.port, cfg.threads or None, say=console.print)
        llm_local.list_models(say=console.print)
        return 0
    except llm_local.LocalModelError as e:
        raise CliError(str(e)) from None


def compare_cmd(cfg: CompareConfig, console: Console, argv: list[str] | None) -> int:
    import shlex

    from oir.compare import compare

    command = "oir " + shlex.join(sys.argv[1:] if argv is None else argv)
    report = compare(cfg, say=lambda s: console.print(s, highlight=False), command=command)
    print(report.read_text().split("\n## ", 2)[1].split("\n", 1)[1])  # plain: markdown tables must not wrap
    console.print(f"report: {report}")
    return 0


def train_cmd(cfg: TrainConfig, console: Console, argv: list[str]) -> int:
    from oir.train import load_config, train

    resume = cfg.resume is not None
    preset = cfg.preset if cfg.preset != TrainConfig().preset else None  # the default preset changes nothing
    if preset is not None and (resume or cfg.config is not None):
        raise CliError("--preset starts a new run from a preset: it does not go with --resume or --config")
    if preset is not None:
        try:
            base = presets.apply(TrainConfig(), preset)
        except ValueError as e:
            raise CliError(str(e)) from None
        # Parsed again over the preset's values, so options given beside it override it.
        cfg = tyro.cli(TrainConfig, prog="oir train", args=argv[1:], default=base)
    if resume:
        # --devices may change: a checkpoint restores onto any device count
        devices = cfg.devices if any(a == "--devices" or a.startswith("--devices=") for a in argv) else None
        if cfg != TrainConfig(resume=cfg.resume, devices=cfg.devices):
            raise CliError("--resume goes on with the run's own config.json: give no other flags but --devices")
        if not (cfg.resume / "config.json").is_file():
            raise CliError(f"{cfg.resume} is not a training run (no config.json)")
        run_dir = cfg.resume
        cfg = load_config(run_dir / "config.json")
        cfg = replace(cfg, out=run_dir, devices=devices or cfg.devices)
    elif cfg.config is not None:
        base = load_config(cfg.config)
        # Parsed again over the file's values, so flags given beside --config override it.
        cfg = tyro.cli(TrainConfig, prog="oir train", args=argv[1:], default=base)
        if cfg.out == base.out and (cfg.out / "summary.json").exists():
            raise CliError(f"--config would train over the run in {cfg.out}: give --out for the new run")
    summary = train(cfg, resume=resume)
    source = f"suggester: {summary['suggester']}" if "suggester" in summary else f"relabeler: {summary['relabeler']}"
    console.print(f"[bold]oir train[/] {cfg.algo}, {source}, reward {cfg.reward}: "
                  f"{summary['env_steps']:,} env steps in {summary['wall_s']:.0f} s; run dir {cfg.out}")
    rel = summary.get("relabeling")
    if rel:
        console.print(f"{rel['unique_instructions']:,} unique instructions; relabels proposed {rel['relabel_proposed']:,}, "
                      f"verified {rel['relabel_verified']:,}, flawed {rel['relabel_flawed']:,}")
    ev = summary.get("eval")
    if ev:
        table = Table(title="Final evaluation (standard suite)")
        for col in ("split", "success"):
            table.add_column(col)
        for name, rate in ev["success_by_split"].items():
            table.add_row(name, f"{100 * rate:.1f}%")
        console.print(table)
    return 0


# `oir train --help` shows what a user of the method sets; `--help-all` shows every option. Hidden:
# learner and relabeling-loop internals, LLM client details and multi-process training, each with a
# default that measured well or that only a cluster or a slow server needs changed.
TRAIN_HELP_HIDDEN = (
    "--llm-api-key-env", "--llm-required", "--llm-timeout", "--llm-batch", "--llm-temperature",
    "--llm-concurrency", "--llm-cache", "--llm-prompt", "--templates", "--llm-duty", "--llm-json-mode",
    "--coordinator", "--num-processes", "--process-id", "--keep-checkpoints", "--progress-every",
    "--pqn.", "--ppo.", "--relabeling.",
)
TRAIN_HELP_SHOWN = (  # exceptions to the prefixes above
    "--ppo.lr", "--ppo.num-steps", "--ppo.ent-coef", "--ppo.relabel-bc-coef",
    "--pqn.lr", "--pqn.num-steps", "--pqn.lam", "--pqn.relabel-trace",
    "--relabeling.world-span", "--relabeling.free-play", "--relabeling.max-proposals",
    "--relabeling.processes",
)
_OPTION = re.compile(r"^(?:│ | {2})(-h|--[a-z][\w.-]*)")  # an option's first line, boxed or plain
_MORE = re.compile(r"^│? {3,}\S")  # its help text's further lines


def _shown(option: str) -> bool:
    return option in TRAIN_HELP_SHOWN or not any(
        option == h or (h.endswith(".") and option.startswith(h)) for h in TRAIN_HELP_HIDDEN)


def short_help(full: str) -> tuple[str, int, int]:
    """tyro's help for `oir train` without the hidden options, a group left empty dropped too;
    with the count of options shown and in all. Works on tyro's boxed (terminal) and plain output."""
    lines, keep, option = full.splitlines(), [], None
    shown = total = 0
    for line in lines:
        m = _OPTION.match(line)
        if m:
            option = m.group(1)
            if option != "-h":
                total += 1
                shown += _shown(option)
        elif not (option and _MORE.match(line)):
            option = None
        keep.append(option is None or _shown(option))
    # A group (a box, or a heading over a dashed line down to a blank line) with no option left goes.
    out, group = [], []
    for line, k in zip(lines, keep, strict=True):
        starts = line.startswith("╭") or (not group and line.startswith(" ") and not line.startswith("  ")
                                           and line.strip() and not _OPTION.match(line))
        if starts and not group:
            group = [(line, k)]
            continue
        if group:
            group.append((line, k))
            if line.startswith("╰") or not line.strip():
                if any(_OPTION.match(g) for g, kk in group if kk):
                    out += [g for g, kk in group if kk]
                elif not line.strip():
                    out.append(line)
                group = []
            continue
        if k:
            out.append(line)
    out += [g for g, kk in group if kk]
    return "\n".join(out), shown, total


def _train_help() -> int:
    raw = io.BytesIO()
    buf = io.TextIOWrapper(raw, encoding="utf-8")  # tyro draws its boxes only on a UTF-8 stream
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        tyro.cli(TrainConfig, prog="oir train", args=["--help"])
    buf.flush()
    text, shown, total = short_help(raw.getvalue().decode())
    print(text)
    print(f"{shown} of {total} options shown; `oir train --help-all` lists them all (each learner's and the "
          "relabeling loop's knobs, the LLM client's, multi-process training).")
    return 0


def main(argv: list[str] | None = None) -> int:
    from oir.train import retired_flag

    for arg in sys.argv[1:] if argv is None else argv:
        refusal = retired_flag(arg) if arg.startswith("--") else None
        if refusal:
            print(f"oir: error: {refusal}", file=sys.stderr)
            return 2
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["train"] and "--help-all" in args:
        args = [a if a != "--help-all" else "--help" for a in args]
    elif args[:1] == ["train"] and ("-h" in args or "--help" in args):
        return _train_help()
    cmd = tyro.cli(Command, prog="oir", args=args)
    console = Console()
    try:
        if isinstance(cmd, Demo):
            return demo(cmd, console)
        if isinstance(cmd, TrainConfig):
            return train_cmd(cmd, console, sys.argv[1:] if argv is None else argv)
        if isinstance(cmd, Eval):
            return eval_cmd(cmd, console)
        if isinstance(cmd, Relabel):
            return relabel_cmd(cmd, console)
        if isinstance(cmd, Export):
            return export_cmd(cmd, console)
        if isinstance(cmd, CompareConfig):
            return compare_cmd(cmd, console, argv)
        if isinstance(cmd, PlayConfig):
            return play(cmd, console)
        if isinstance(cmd, Llm):
            return llm_cmd(cmd.cmd, console)
        if isinstance(cmd.cmd, TasksList):
            tasks_list(cmd.cmd, console)
            return 0
        return tasks_check(cmd.cmd, console)
    except (CliError, SuiteError, SpecError, ConfigError) as e:
        print(f"oir: error: {e}", file=sys.stderr)
        return 2
    except (CheckpointError, RunError) as e:  # the run itself went wrong, not its input
        print(f"oir: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("oir: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `oir tasks list | head`: the reader has what it wanted
        sys.stdout = None  # nothing more to flush into the closed pipe at exit
        return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
