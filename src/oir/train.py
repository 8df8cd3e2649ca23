"""``oir train``: one instruction-conditioned learner on Craftax, with logs and a checkpoint.

* ``--relabel narrator`` (the default) / ``--relabel llm`` is OIR: hindsight relabels of the
  agent's own segments (:mod:`oir.hindsight`), added to ``--labels`` of the suite's train tasks
  (``--labels 0``: relabels only, no human label). The narrator relabeler is rule-based (no
  language model); ``llm`` asks an OpenAI-compatible server.
* ``--relabel none`` is the no-relabel baseline (the paper's "PQN" row): instructions drawn
  uniformly from ``--labels`` of the suite's train tasks, binary task rewards from the jitted check.
* ``--reward verified`` (default) rewards a relabel at the step its spec first holds;
  ``--reward similarity --delta D`` at the first step whose state text is within cosine D.
* ``--suggest rules --reward similarity`` is the ELLM baseline (:mod:`oir.ellm`): goals suggested
  from the agent's state at each instruction draw, paid the cosine of a step's caption to the goal.

The suite's test split is for evaluation only; no run ever trains on it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import jax

from oir import ellm, jaxcache, ppo, pqn, worlds
from oir.checkpoint import CheckpointError, Checkpoints, committed_steps, save_params
from oir.curves import training_eval_episodes
from oir.devices import DeviceError, data_parallel, make_mesh, to_host
from oir.encode import ENCODERS, make_encoder
from oir.env import TaskEnv, VecEnv
from oir.evaluate import report, run_suite, text_policy
from oir.hindsight import Hindsight, RelabelingConfig, late_store_mb
from oir.learn import RelabelShapes, WorldRefill
from oir.llm import JSON_MODES
from oir.llm.prompt import WORLD_PROMPTS
from oir.llm.templates import TemplateLibrary, templates_problem
from oir.narrate import event_texts
from oir.networks import NETWORKS
from oir.presets import PRESETS
from oir.relabel import LLM_RELABELS, JointRelabeler, NarratorRelabeler
from oir.suites import STANDARD_SUITE, label_subset, load_suite, suite_for
from oir.tasks import TaskBank

ALGOS = {"pqn": pqn, "ppo": ppo}  # --algo -> the module with make() and make_act()
RELABELS = ("none", "narrator", *LLM_RELABELS)
REWARDS = ("verified", "similarity")
SUGGESTERS = ("rules", "llm")  # ELLM goal suggesters (oir.ellm)
SUGGESTER_NAMES = {"rules": "ELLM goals from the rule-based suggester (offline; not a language model)",
                   "llm": "ELLM goals from an LLM suggester"}
SUGGEST_EVERY = 4  # updates between reading the envs' states for the LLM suggester and pushing its table
RELABELER_NAMES = {"narrator": "narrator relabeler (rule-based, offline; not a language model)",
                   "llm": "LLM relabeler",
                   "narrator+llm": "LLM relabeler, added to the narrator relabeler (rule-based; not a language model)"}


@dataclass
class TrainConfig:
    """Train an instruction-following policy on Craftax-Classic. The defaults are the `oir` preset:
    the project's method at its best measured settings (src/oir/presets.py has every preset)."""

    # A named set of overrides (oir, labelled, zero-label, ellm, paper; oir.presets); options
    # given beside it override it
    preset: str = "oir"
    algo: str = "ppo"  # the learner: ppo or pqn
    # The world: classic (Craftax-Classic) or full (full Craftax, Craftax-Symbolic-v1; its suite is
    # suites/full.jsonl unless --suite names another)
    env: str = "classic"
    # Where instructions come from: narrator (OIR, the offline rule-based relabeler; not a language
    # model), llm or narrator+llm (OIR with an LLM relabeler, needs --llm-url), or none (the
    # no-relabel baseline: only the suite's train lines)
    relabel: str = "narrator"
    # Share of the suite's train tasks given as human labels (whole tasks, all their train
    # paraphrases): OIR adds its relabels to them, the baseline trains on them. 0: no human label
    labels: float = 1.0
    labels_seed: int = 0  # which tasks a share below 1 keeps (the same for every method)
    reward: str = "verified"  # verified (the relabel's spec holds) or similarity (text cosine >= --delta)
    delta: float = 0.5  # similarity threshold for --reward similarity
    suggest: str = ""  # ELLM goals (needs --relabel none --reward similarity): rules (offline) or llm (--llm-url)
    ellm_reward: str = "cosine"  # ELLM: what a similar enough step pays, the cosine (ELLM's) or 1 (binary)
    llm_url: str = ""  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1, or local (`make llm-local`)
    llm_model: str = "default"  # model name sent to the server
    llm_api_key_env: str = ""  # name of the environment variable holding the API key, if any
    llm_required: bool = False  # refuse to start when the LLM server does not answer
    llm_timeout: float = 30.0  # seconds per LLM request before it is retried
    llm_batch: int = 0  # segments narrated into one LLM request (0: 4 with --llm-url local, else 8)
    llm_temperature: float = 0.0  # sampling temperature of LLM replies (0: the same reply for the same prompt)
    llm_concurrency: int = 1  # LLM requests in flight at once (servers that batch them; spread over --llm-url's list)
    llm_cache: str = ""  # reply cache (SQLite): "" for ~/.cache/oir/llm_cache.sqlite, "off" for none
    llm_prompt: str = ""  # prompt file in oir/prompts: "" for relabel_v2_small with --llm-url local, else relabel_v1
    # direct: the model relabels each segment; templates: its verified relabels become templates
    # (counts made slots) that relabel every segment (oir.llm.templates). "": templates with
    # --llm-url local (what a laptop CPU keeps up with), else direct
    llm_mode: str = ""
    templates: Path | None = None  # start the template library from this templates.jsonl (a run's)
    # Template mode: the largest share of the run's wall time the model may spend on requests,
    # counted from the start (1: no cap; 0: 0.25 with --llm-url local, which shares the cores, else 1)
    llm_duty: float = 0.0
    # off, object (JSON mode) or schema (constrained to the reply schema); "" for schema with --llm-url local, else off
    llm_json_mode: str = ""
    steps: int = 5_000_000  # env steps
    num_envs: int = 64  # parallel envs (the rollout's width)
    devices: int = 1  # data-parallel over this many devices: envs sharded, parameters replicated (oir.devices)
    # Several processes (hosts), --devices counting all their devices: JAX's distributed runtime
    coordinator: str = ""  # host:port where process 0 listens, reachable from every process
    num_processes: int = 1  # processes in the run (each started with the same command and its --process-id)
    process_id: int = 0  # this process; 0 writes the run dir, process i its metrics to DIR/process-i
    seed: int = 0  # seeds the worlds, the network and the instruction draws
    out: Path = Path("runs/latest")  # the run dir
    suite: Path = STANDARD_SUITE  # human instructions: train split for --labels, both splits for evaluation
    encoder: str = "minilm"  # instruction encoder: minilm (all-MiniLM-L6-v2, offline) or hash (no torch)
    network: str = "small"  # small (2x256, CPU-sized) or purejaxql (4x1024 LayerNorm MLP, as purejaxql's PQN)
    max_task_steps: int = 500  # an instruction without success or failure times out here
    # Reward added for each achievement got for the first time in an episode, whatever the
    # instruction (Craftax's own reward, scaled; 0: off): a shared exploration bonus, given to OIR
    # and the no-relabel baseline alike, that never counts as a success (env.TaskEnv)...
    achievement_bonus: float = 0.5
    # ...count-based: an achievement got n > K times so far in the run pays it x sqrt(K / n), so
    # common ones stop crowding out the easy tasks (a bonus that never fades measured worse)
    achievement_bonus_counts: int = 500
    eval_episodes: int = 1  # episodes per suite line in the final evaluation (0: skip)
    eval_max_steps: int = 500  # step cap of an evaluation episode without a `within` budget
    eval_suite: Path | None = None  # evaluate during training on this suite (all its lines)...
    eval_every: int = 0  # ...every this many env steps (0: only the final evaluation)...
    eval_every_episodes: int = 0  # ...with this many episodes per suite line (0: --eval-episodes, at least 1)
    checkpoint_every: int = 1_000_000  # env steps between resumable checkpoints, DIR/checkpoints (0: none)
    keep_checkpoints: int = 2  # the newest this many are kept
    progress_every: int = 0  # output not a terminal: a plain progress line every this many updates (0: ~20 a run)
    config: Path | None = None  # start from this config.json (a run's); flags given too override it
    resume: Path | None = None  # go on with the run in this dir from its newest checkpoint (no other flags)
    pqn: pqn.PQNConfig = field(default_factory=pqn.PQNConfig)
    ppo: ppo.PPOConfig = field(default_factory=ppo.PPOConfig)
    relabeling: RelabelingConfig = field(default_factory=RelabelingConfig)


class ConfigError(ValueError):
    """A bad training config: printed as one line by the CLI."""


class RunError(RuntimeError):
    """The run could not go on (its files cannot be written): one line, exit status 1."""


# Options retired because they measured negative (docs/notebook/ keeps each measurement), with
# the value that meant "off" and what to use instead. A flag naming one is refused with that
# line; a run's config.json holding one at its "off" value still loads (older runs).
RETIRED: dict[str, tuple[tuple[Any, ...], str]] = {
    "fresh_start": ((0.0,), "nothing replaces it (a fresh world after a success measured no gain)"),
    "achievement_bonus_fade": ((0.0,), "the count-based bonus, --achievement-bonus-counts, replaced it"),
    "llm_template_source": (("", "lifted"), "templates are always lifted from the model's verified relabels"),
    "relabeling.seed_suite": ((False, True), "--labels replaced it (1: the suite's train lines added, 0: none)"),
    "relabeling.suite_share": ((0.0,), "nothing replaces it"),
    "relabeling.rarity": ((0.0,), "nothing replaces it"),
    "relabeling.revisit": ((0.0,), "nothing replaces it"),
    "relabeling.shape_prior": ((False,), "nothing replaces it"),
    "relabeling.prefix_counts": ((False,), "--relabeling.world-span states counts across instructions instead"),
    "relabeling.all_pairs": ((False,), "nothing replaces it"),
    "relabeling.sampling": (("uniform",), "windows are always drawn uniformly"),
    "ppo.relabel_sil_coef": ((0.0,), "--ppo.relabel-bc-coef (plain hindsight imitation) stays"),
    "ppo.bootstrap_timeouts": ((True,), "a timeout always bootstraps"),
    "pqn.bootstrap_timeouts": ((True,), "a timeout always bootstraps"),
}
# What a run saved before an option existed did, where that is not the option's default now.
BEFORE_OPTION: dict[str, Any] = {
    "achievement_bonus": 0.0,
    "achievement_bonus_counts": 0,
    "relabeling.world_span": 0,
    "relabeling.max_proposals": 6,  # the narrator's earlier, narrower statements
    "preset": "",  # none named
}


def retired_flag(name: str) -> str | None:
    """The one-line refusal of a retired command-line flag (``--fresh-start``), or None."""
    key = name.lstrip("-").split("=", 1)[0].replace("-", "_")
    section, _, last = key.rpartition(".")
    if last.startswith("no_"):  # a boolean's negation: --relabeling.no-shape-prior
        key = f"{section}.{last[3:]}" if section else last[3:]
    for prefix in ("", "train."):  # oir compare passes training options as --train.*
        if key.startswith(prefix) and key[len(prefix):] in RETIRED:
            return f"{name.split('=', 1)[0]} was retired (it measured negative): {RETIRED[key[len(prefix):]][1]}"
    return None


def migrate(raw: dict, where: str = "config", strict: bool = True) -> dict:
    """A saved config (``config.json``'s dict) in today's options: retired options at their "off"
    value dropped (ConfigError, one line, for any other value; ``strict=False``: dropped whatever
    their value, for loading a run's policy, which acts the same however it was trained), options
    added since the run was made set to what the code did before them."""
    raw = json.loads(json.dumps(raw))
    if "labels" not in raw:  # --labels replaced --relabeling.seed-suite
        seeded = bool((raw.get("relabeling") or {}).get("seed_suite"))
        raw["labels"] = 1.0 if raw.get("relabel") == "none" or seeded else 0.0
    for dotted, (off, instead) in RETIRED.items():
        section, _, key = dotted.rpartition(".")
        holder = raw.get(section) if section else raw
        if isinstance(holder, dict) and key in holder:
            value = holder.pop(key)
            if strict and value not in off:
                raise ConfigError(f"{where}: {dotted} = {value!r} was retired (it measured negative): {instead}")
    for dotted, before in BEFORE_OPTION.items():
        section, _, key = dotted.rpartition(".")
        holder = raw.get(section) if section else raw
        if isinstance(holder, dict) and key not in holder:
            holder[key] = before
    return raw


def load_config(path: Path, strict: bool = True) -> TrainConfig:
    """The TrainConfig a run saved as ``config.json``; ConfigError (one line) for anything else
    (``strict``: as :func:`migrate`)."""
    try:
        raw = migrate(json.loads(Path(path).read_text()), str(path), strict)
        nested = {"pqn": pqn.PQNConfig(**raw.pop("pqn")), "ppo": ppo.PPOConfig(**raw.pop("ppo")),
                  "relabeling": RelabelingConfig(**raw.pop("relabeling", {}))}
        paths = {k: Path(raw.pop(k)) for k in ("out", "suite")}
        for k in ("eval_suite", "config", "resume"):
            if raw.get(k) is not None:
                paths[k] = Path(raw.pop(k))
        return TrainConfig(**raw, **nested, **paths)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{path} is not an oir config.json ({type(e).__name__}: {e})") from None


def validate(cfg: TrainConfig) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    need(cfg.preset in PRESETS or cfg.preset == "", f"unknown --preset {cfg.preset!r} (choose from {', '.join(PRESETS)})")
    need(cfg.algo in ALGOS, f"unknown --algo {cfg.algo!r} (choose from {', '.join(ALGOS)})")
    need(cfg.env in worlds.NAMES, f"unknown --env {cfg.env!r} (choose from {', '.join(worlds.NAMES)})")
    need(not cfg.suggest or ellm.has_rules(cfg.env), f"--suggest (ELLM) has no goal rules for --env {cfg.env}")
    need(cfg.suggest != "llm" or ellm.has_state_words(cfg.env),
         f"--suggest llm (ELLM's LLM suggester) has no state words for --env {cfg.env}; use --suggest rules")
    need(0.0 <= cfg.labels <= 1.0, f"--labels must be a share in [0, 1], got {cfg.labels}")
    need(cfg.labels > 0 or cfg.relabel != "none" or bool(cfg.suggest),
         "--relabel none trains on human labels only: it needs --labels above 0")
    need(cfg.relabel in RELABELS, f"--relabel {cfg.relabel!r} is not available (choose from {', '.join(RELABELS)})")
    need(cfg.reward in REWARDS, f"unknown --reward {cfg.reward!r} (choose from {', '.join(REWARDS)})")
    need(cfg.llm_timeout > 0 and cfg.llm_batch >= 0 and cfg.llm_concurrency >= 1,
         "--llm-timeout must be positive, --llm-batch at least 0 (the default) and --llm-concurrency at least 1")
    need(-1.0 <= cfg.delta <= 1.0, f"--delta must be a cosine in [-1, 1], got {cfg.delta}")
    need(cfg.relabel not in LLM_RELABELS or bool(cfg.llm_url),
         f"--relabel {cfg.relabel} needs --llm-url (an OpenAI-compatible server, or local)")
    need(cfg.suggest != "llm" or bool(cfg.llm_url), "--suggest llm needs --llm-url (an OpenAI-compatible server, or local)")
    need(cfg.llm_mode in ("", "direct", "templates"), f"unknown --llm-mode {cfg.llm_mode!r} (choose from direct, templates)")
    llm = llm_choices(cfg)
    need(0.0 <= cfg.llm_duty <= 1.0, f"--llm-duty must be in (0, 1] (or 0 for the default), got {cfg.llm_duty}")
    problem = templates_problem(llm["mode"], cfg.templates)
    need(problem is None, problem or "")
    need(cfg.llm_json_mode != "compact", "--llm-json-mode compact was retired (it measured negative): "
         "use schema, the reply's full schema")
    need(cfg.llm_json_mode in ("", *JSON_MODES), f"unknown --llm-json-mode {cfg.llm_json_mode!r} (choose from {', '.join(JSON_MODES)})")
    need(cfg.reward == "verified" or cfg.relabel != "none" or bool(cfg.suggest),
         "--reward similarity needs --relabel narrator or llm, or --suggest rules")
    need(cfg.suggest in ("", *SUGGESTERS), f"unknown --suggest {cfg.suggest!r} (choose from {', '.join(SUGGESTERS)})")
    need(not cfg.suggest or (cfg.relabel == "none" and cfg.reward == "similarity"),
         "--suggest (ELLM) needs --relabel none and --reward similarity")
    need(cfg.ellm_reward in ellm.REWARDS, f"unknown --ellm-reward {cfg.ellm_reward!r} (choose from {', '.join(ellm.REWARDS)})")
    rl = cfg.relabeling
    need(rl.history > cfg.max_task_steps, f"--relabeling.history ({rl.history}) must exceed --max-task-steps ({cfg.max_task_steps})")
    need(1 <= rl.window <= rl.history, f"--relabeling.window must be in [1, history], got {rl.window}")
    need(rl.batch >= 0 and rl.capacity >= 2 and rl.pool >= 1, "--relabeling.batch >= 0, capacity >= 2 and pool >= 1")
    need(rl.max_proposals >= 1, f"--relabeling.max-proposals must be at least 1, got {rl.max_proposals}")
    need(rl.save_segments >= 0, f"--relabeling.save-segments must be >= 0, got {rl.save_segments}")
    need(rl.sync_every >= 1 and rl.worker_batch >= 1, "--relabeling.sync-every and --relabeling.worker-batch must be >= 1")
    need(0.0 <= rl.free_play < 1.0, f"--relabeling.free-play must be in [0, 1), got {rl.free_play}")
    steps = getattr(cfg, cfg.algo).num_steps
    need(0 <= rl.world_span <= rl.history - steps,
         f"--relabeling.world-span must be in [0, {rl.history - steps}] (--relabeling.history {rl.history} less "
         f"the rollout's {steps} steps), got {rl.world_span}")
    need(cfg.ppo.relabel_bc_coef >= 0, f"--ppo.relabel-bc-coef must be >= 0, got {cfg.ppo.relabel_bc_coef}")
    need(cfg.encoder in ENCODERS, f"unknown --encoder {cfg.encoder!r} (choose from {', '.join(ENCODERS)})")
    need(cfg.network != "medium", "--network medium was retired (it measured negative): nothing replaces it")
    need(cfg.network in NETWORKS, f"unknown --network {cfg.network!r} (choose from {', '.join(NETWORKS)})")
    need(cfg.num_envs >= 1, f"--num-envs must be at least 1, got {cfg.num_envs}")
    need(cfg.devices >= 1 and cfg.num_envs % cfg.devices == 0,
         f"--devices must be at least 1 and divide --num-envs ({cfg.num_envs}), got {cfg.devices}")
    need(cfg.num_processes >= 1 and 0 <= cfg.process_id < cfg.num_processes,
         f"--process-id must be in [0, --num-processes), got {cfg.process_id} of {cfg.num_processes}")
    if cfg.num_processes > 1:
        need(":" in cfg.coordinator, f"--num-processes {cfg.num_processes} needs --coordinator HOST:PORT (process 0's)")
        need(cfg.relabel not in LLM_RELABELS and cfg.suggest != "llm",
             "--num-processes > 1 relabels with the narrator only (an LLM answers each process at other times)")
        need(cfg.resume is None, "a run of several processes cannot be resumed yet (it saves no checkpoints)")
    need(cfg.steps >= 1, f"--steps must be at least 1, got {cfg.steps}")
    need(cfg.max_task_steps >= 1, f"--max-task-steps must be at least 1, got {cfg.max_task_steps}")
    need(cfg.achievement_bonus >= 0.0, f"--achievement-bonus must be >= 0, got {cfg.achievement_bonus}")
    # The plain bonus (every achievement paid in full all run) measured negative and was retired.
    need(cfg.achievement_bonus == 0 or cfg.achievement_bonus_counts >= 1,
         f"--achievement-bonus-counts must be at least 1 with a bonus (the plain bonus was retired), "
         f"got {cfg.achievement_bonus_counts}")
    need(cfg.eval_episodes >= 0 and cfg.eval_max_steps >= 1, "--eval-episodes must be >= 0 and --eval-max-steps >= 1")
    need(cfg.suite.is_file(), f"suite file not found: {cfg.suite}")
    need(cfg.eval_every >= 0, f"--eval-every must be >= 0, got {cfg.eval_every}")
    need(cfg.eval_every_episodes >= 0, f"--eval-every-episodes must be >= 0, got {cfg.eval_every_episodes}")
    need(cfg.checkpoint_every >= 0, f"--checkpoint-every must be >= 0, got {cfg.checkpoint_every}")
    need(cfg.progress_every >= 0, f"--progress-every must be >= 0, got {cfg.progress_every}")
    need(cfg.keep_checkpoints >= 1, f"--keep-checkpoints must be at least 1, got {cfg.keep_checkpoints}")
    need(cfg.eval_suite is None or cfg.eval_suite.is_file(), f"eval suite file not found: {cfg.eval_suite}")


class RunLog:
    """metrics.jsonl (one line per update) and TensorBoard scalars under the run dir.

    On resume, ``keep`` rows (the updates the checkpoint holds) stay and later ones go, in both.
    """

    def __init__(self, out: Path, keep: int = 0, purge_step: int | None = None):
        from tensorboardX import SummaryWriter

        path = out / "metrics.jsonl"
        rows = path.read_text().splitlines(keepends=True)[:keep] if keep and path.is_file() else []
        if len(rows) < keep:
            raise ConfigError(f"{path} has {len(rows)} rows but the checkpoint holds {keep} updates")
        path.write_text("".join(rows))
        self.file = path.open("a")
        self.tb = SummaryWriter(str(out / "tb"), purge_step=purge_step)

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        for k, v in row.items():
            if k != "env_steps" and isinstance(v, int | float):
                self._check_tb()
                self.tb.add_scalar(k, v, row["env_steps"])

    def _check_tb(self) -> None:
        # tensorboardX writes from a thread; if a full disk killed it, its bounded queue would
        # block this thread forever. Fail like the metrics file would instead.
        worker = getattr(self.tb._get_file_writer().event_writer, "_worker", None)
        if worker is not None and not worker.is_alive():
            raise OSError(f"TensorBoard's writer stopped (disk full?) in {self.tb.logdir}")

    def close(self) -> None:
        for close in (self.file.close, self.tb.close):
            with contextlib.suppress(OSError):  # a full disk: the error that stopped the run is reported
                close()


def _prepare_out(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-test").touch()
        (out / ".write-test").unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to --out {out}: {e.strerror or e}") from None
    return out


@dataclass
class _Run:
    """What one training process works with, built by :func:`_setup`."""

    cfg: TrainConfig
    out: Path
    suite: list
    encoder: Any
    env: TaskEnv
    update: Any  # jitted (runner, relabel batch) -> (runner, metrics, chunk)
    act: Any
    runner: Any
    per_update: int  # env steps per update
    num_updates: int
    hs: Hindsight | None  # the relabeling loop (None: no relabels)
    suggester: Any  # ELLM's LLM suggester (None: none)
    ckpts: Checkpoints | None


def train(cfg: TrainConfig, progress: bool = True, resume: bool = False) -> dict:
    """Run training (``resume``: from the newest checkpoint in ``cfg.out``), write the run dir,
    and return the summary."""
    cfg = _checked(cfg)
    run = _setup(cfg, _run_dir(cfg, resume), resume)
    done, wall0 = _restore(run) if resume else _begin(run)
    log = RunLog(run.out, keep=done, purge_step=(done + 1) * run.per_update if resume else None)
    bar = _Progress(run.num_updates * run.per_update, _label(cfg), enabled=progress,
                    every=cfg.progress_every or max(1, run.num_updates // 20))
    start = time.perf_counter()
    try:
        checkpoint_s = _loop(run, log, bar, done, wall0, start)
    except OSError as e:  # the run dir's own files (metrics, segments) cannot be written
        raise RunError(f"cannot write to {run.out}: {e.strerror or e}{_resume_hint(run.out)}") from None
    finally:
        bar.close()
        log.close()
        _close(run)
    try:
        primary = cfg.process_id == 0
        save_params((run.out if primary else run.out.parent) / "checkpoint", run.runner)  # collective: one copy
    except CheckpointError as e:
        raise CheckpointError(f"{e}{_resume_hint(run.out)}") from None
    summary = _summary(run, wall0 + time.perf_counter() - start, checkpoint_s, done if resume else None)
    if cfg.eval_episodes > 0 and cfg.process_id == 0:
        summary["eval"] = _final_eval(run)
    (run.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def with_world_suite(cfg: TrainConfig) -> TrainConfig:
    """A run in another world than Craftax-Classic trains on that world's suite unless told
    otherwise (the Classic suite is the --suite default)."""
    return replace(cfg, suite=suite_for(cfg.suite, cfg.env)) if cfg.env in worlds.NAMES else cfg  # validate() names a bad --env


def _checked(cfg: TrainConfig) -> TrainConfig:
    """The config, validated; a run of several processes relabels synchronously in each."""
    cfg = with_world_suite(cfg)
    validate(cfg)
    if cfg.num_processes == 1:
        return cfg
    if jax.process_count() != cfg.num_processes:  # oir.launch joins before JAX starts; nothing later can
        raise ConfigError(f"--num-processes {cfg.num_processes}: this process did not join the run "
                          "(start each process with the `oir train` command, or `python -m oir.launch train`)")
    # Every process relabels every segment: synchronously, they all hold the same relabels.
    if cfg.process_id == 0:
        print(f"oir: {cfg.num_processes} processes: relabeling synchronously in each; no checkpoints and no "
              "evaluation during training (not supported across processes yet)", file=sys.stderr)
    return replace(cfg, relabeling=replace(cfg.relabeling, synchronous=True), checkpoint_every=0, eval_every=0)


def _run_dir(cfg: TrainConfig, resume: bool) -> Path:
    """The run dir, writable, with ``config.json`` (a new run: no checkpoint of another run left)."""
    jaxcache.enable()
    out = _prepare_out(cfg.out if cfg.process_id == 0 else Path(cfg.out) / f"process-{cfg.process_id}")
    if not resume:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # another run's: never resume into them
        saved = asdict(replace(cfg, config=None, resume=None))
        (out / "config.json").write_text(json.dumps(saved, indent=1, default=str))
    return out


def _setup(cfg: TrainConfig, out: Path, resume: bool) -> _Run:
    """The env, the learner, the relabeling loop and the first runner."""
    suite = load_suite(cfg.suite, world=cfg.env)
    # The encoder (MiniLM: torch and the model, seconds) loads in a thread while the world
    # generator compiles here; XLA compiles without holding the GIL.
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(make_encoder, cfg.encoder)
        vec = VecEnv(cfg.num_envs, world=cfg.env)
        vec.compile_generator()
        encoder = loading.result()
    algo_cfg = getattr(cfg, cfg.algo)
    suggester = _llm_suggester(cfg, encoder) if cfg.suggest == "llm" else None
    env = TaskEnv(vec, cfg.max_task_steps, ellm.suggester(cfg.env) if cfg.suggest else None,
                  ellm.empty_table(world=cfg.env) if suggester else None, cfg.achievement_bonus, cfg.achievement_bonus_counts)
    per_update = cfg.num_envs * algo_cfg.num_steps
    num_updates = math.ceil(cfg.steps / per_update)
    try:
        init, update, act = ALGOS[cfg.algo].make(algo_cfg, env, NETWORKS[cfg.network], num_updates, _shapes(cfg))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    hs = _hindsight(cfg, encoder) if cfg.relabel != "none" else None
    if hs and not resume:  # a resumed run's buffer comes from its checkpoint
        # the human labels OIR adds its relabels to (a suite without train lines: none)
        hs.seed(_train_lines(cfg, suite, required=False))
    if hs:
        bank, weights, emb, hit = hs.initial()
    else:
        bank, weights, emb, hit = _ellm_goals(cfg, encoder) if cfg.suggest else _baseline_tasks(cfg, suite, encoder)
    # Not jitted: the worlds come from the env's shared world generator, compiled once (oir.env).
    runner = init(jax.random.PRNGKey(cfg.seed), bank, weights, emb, hit)
    if cfg.devices > 1:
        try:
            runner, update = data_parallel(runner, update, make_mesh(cfg.devices, cfg.num_envs))
        except DeviceError as e:
            raise ConfigError(str(e)) from None
    ckpts = Checkpoints(out / "checkpoints", cfg.keep_checkpoints) if cfg.checkpoint_every else None
    return _Run(cfg, out, suite, encoder, env, update, act, runner, per_update, num_updates, hs, suggester, ckpts)


def _begin(run: _Run) -> tuple[int, float]:
    """A new run: the relabeling loop starts cutting segments. ``(updates done, wall time before)``."""
    if run.hs:
        run.hs.start(run.runner, to_host(run.env.vec.world.levels_of(jax.tree.map(lambda x: x[0], run.runner.env.vec.pool))),
                     late_mb=late_store_mb(run.cfg.relabeling, run.cfg.relabel, _trains_windows(run.cfg)))
    return 0, 0.0


def _restore(run: _Run) -> tuple[int, float]:
    """A resumed run: the runner and the host's state from the newest checkpoint."""
    if run.ckpts is None:
        run.ckpts = Checkpoints(run.out / "checkpoints", run.cfg.keep_checkpoints)
    got = run.ckpts.restore(run.runner)
    if got is None:
        found = committed_steps(run.out / "checkpoints")
        if found:  # orbax found them but none matched this build's runner (warned above)
            raise ConfigError(f"none of the {len(found)} checkpoints in {run.out / 'checkpoints'} can be read by "
                              "this build of oir (written by another version, or damaged); start the run again")
        raise ConfigError(f"{run.out} has no checkpoint to resume from (in {run.out / 'checkpoints'})")
    run.runner = got.runner
    if run.hs:
        run.hs.load_state(got.host)
    if run.suggester:
        run.suggester.load(run.runner.env.table)
    print(f"oir: resuming {run.out} after update {got.update} ({got.update * run.per_update:,} env steps)",
          file=sys.stderr)
    return got.update, got.meta["wall_s"]


def _loop(run: _Run, log: RunLog, bar: _Progress, done: int, wall0: float, start: float) -> float:
    """The updates from ``done`` on: the device runs update u while the host logs update u - 1 and
    relabels its segments. Returns the seconds the training thread spent saving checkpoints."""
    cfg, hs, per_update = run.cfg, run.hs, run.per_update
    checkpoint_s = 0.0
    first: list[tuple[int, float]] = []  # (env steps, wall) when this process's first update ended
    during = _during_eval(cfg, run.encoder, run.act) if cfg.eval_every else None
    refill = WorldRefill(run.env, jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1), run.runner.env)
    evals: dict = {}  # the latest training-time evaluation, merged into the next metrics row

    def finish(u: int, metrics, chunk) -> None:
        """Host work on a finished update, while the device runs the next one."""
        metrics, chunk = to_host((metrics, chunk))
        steps, wall = (u + 1) * per_update, wall0 + time.perf_counter() - start
        # sps: throughput since this process's first update, so its compile does not hide the loop's speed
        sps = (steps - first[0][0]) / max(wall - first[0][1], 1e-9) if first else per_update / max(wall - wall0, 1e-9)
        if not first:
            first.append((steps, wall))
        refill.observe(metrics["pool_next"])
        if hs:
            hs.observe(chunk, steps)
        row = {"update": u + 1, "env_steps": steps, "sps": sps, "wall_s": wall,
               **{k: float(v) for k, v in metrics.items()}, **(hs.metrics(wall) if hs else {}),
               **(run.suggester.metrics() if run.suggester else {}), **evals}
        evals.clear()
        log.write(row)
        bar.advance(steps, row)

    # The host side makes many small objects per update; without this every full collection also
    # walks the half a million set up before the loop (modules, model, encoder): 20% of the
    # relabel worker's time at 4,096 envs (bench/host_pipeline.py).
    gc.collect()
    gc.freeze()
    try:
        pending = None
        for u in range(done, run.num_updates):
            if u > done and _crossed(u, per_update, cfg.checkpoint_every):
                if pending:  # the checkpoint holds finished updates only: u of them, u metrics rows
                    finish(*pending)
                    pending = None
                t_save = time.perf_counter()
                run.ckpts.save(u, run.runner, hs.state() if hs else b"",
                               {"wall_s": wall0 + time.perf_counter() - start, "env_steps": u * per_update})
                checkpoint_s += time.perf_counter() - t_save  # what the training thread waited
            if during and u and _crossed(u, per_update, cfg.eval_every):
                evals.update(during(run.runner.train.params))  # the parameters after u updates
            rb = hs.next_batch(u, getattr(cfg, cfg.algo).num_steps) if hs and _trains_windows(cfg) else None
            run.runner, metrics, chunk = run.update(run.runner, rb)
            if pending:
                finish(*pending)
            run.runner = hs.sync(run.runner) if hs else run.runner
            run.runner = run.runner.replace(env=refill(run.runner.env))
            if run.suggester and u % SUGGEST_EVERY == 0:
                run.runner = _suggester_sync(run.suggester, run.runner)
            pending = (u, metrics, chunk)
        if pending:
            finish(*pending)
    finally:
        gc.unfreeze()  # a later run in this process may free what this one set up
    return checkpoint_s


def _close(run: _Run) -> None:
    """Checkpoint writer, relabeling loop (its files into the run dir), LLM connections and servers."""
    if run.ckpts:
        run.ckpts.close()
    if run.hs:
        run.hs.close(run.out)
        if hasattr(run.hs.relabeler, "close"):
            run.hs.relabeler.close()  # its connections, cache and, with --llm-url local, the server
    if run.suggester:
        run.suggester.close()


def _summary(run: _Run, wall_s: float, checkpoint_s: float, resumed_after: int | None) -> dict:
    """summary.json: what ran, on what, how long, and what the relabeling did."""
    cfg, hs = run.cfg, run.hs
    summary = {"env_steps": run.num_updates * run.per_update, "wall_s": wall_s,
               "devices": len(run.runner.obs.sharding.device_set),  # what the envs really ran on
               "processes": jax.process_count(),
               "relabeler": RELABELER_NAMES.get(cfg.relabel, "none"), "reward": cfg.reward,
               "labels": {"share": cfg.labels, "seed": cfg.labels_seed,
                          "train_lines": 0 if cfg.suggest else len(_train_lines(cfg, run.suite, required=False))}}
    if run.runner.env.unlocks is not None:  # the count-based bonus's counts: how often each achievement was found
        counts = [int(c) for c in to_host(run.runner.env.unlocks)]
        summary["achievement_unlocks"] = dict(zip(run.env.vec.world.achievements, counts, strict=True))
    if cfg.suggest:
        summary["suggester"] = SUGGESTER_NAMES[cfg.suggest]
    if run.suggester:
        summary["suggester"] += f" ({cfg.llm_model} at {cfg.llm_url})"
        summary["ellm_llm"] = run.suggester.metrics()
    if run.ckpts:
        summary["checkpoint_s"] = checkpoint_s  # this process's training-thread time spent saving
        summary["checkpoints_failed"] = run.ckpts.failed  # saves that could not be written (each warned)
    if resumed_after is not None:
        summary["resumed_after_update"] = resumed_after
    if hs and hasattr(hs.relabeler, "describe"):
        summary["llm"] = hs.relabeler.describe()  # model, server and prompt version
    if hs:
        summary["relabeling"] = hs.metrics(wall_s)
    return summary


def _final_eval(run: _Run) -> dict:
    """The final evaluation on the whole suite (results.json) and its summary."""
    cfg = run.cfg
    policy = text_policy(run.act, to_host(run.runner.train.params), run.encoder.encode([x.text for x in run.suite]))
    results = run_suite(run.suite, policy, episodes=cfg.eval_episodes, max_steps=cfg.eval_max_steps, seed=cfg.seed + 10_000)
    rep = report(results)
    (run.out / "results.json").write_text(json.dumps(rep, indent=1))
    out = {k: rep[k] for k in ("success_by_split", "success_by_category", "coverage", "paraphrase_gap")}
    return {**out, "episodes": cfg.eval_episodes, "max_steps": cfg.eval_max_steps}


def _resume_hint(out: Path) -> str:
    """How a run that failed to write goes on, when a checkpoint of it exists."""
    return f"; `oir train --resume {out}` goes on from its last checkpoint" if committed_steps(out / "checkpoints") else ""


def _crossed(u: int, per_update: int, every: int) -> bool:
    """Whether the first ``u`` updates crossed a multiple of ``every`` env steps that ``u - 1`` did not."""
    return every > 0 and u > 0 and (u * per_update) // every > ((u - 1) * per_update) // every


def _during_eval(cfg: TrainConfig, encoder, act):
    """``params -> metrics`` for training-time evaluation: the same code as ``oir eval``."""
    from oir.evaluate import summarize

    lines = load_suite(cfg.eval_suite or cfg.suite, world=cfg.env)
    emb = encoder.encode([x.text for x in lines])

    episodes = training_eval_episodes(asdict(cfg))

    def run(params) -> dict[str, float]:
        results = run_suite(lines, text_policy(act, params, emb), episodes=episodes,
                            max_steps=cfg.eval_max_steps, seed=cfg.seed + 20_000)
        by_split = summarize(results, "split")
        out = {f"eval_success_{name}": rate for name, _, _, rate in by_split.rows}
        out |= {f"eval_success_{name.replace('-', '_').replace(' ', '_')}s": rate
                for name, _, _, rate in summarize(results, "holdout").rows if name.startswith("held-out")}
        return {**out, "eval_coverage": by_split.coverage}

    return run


def _trains_windows(cfg: TrainConfig) -> bool:
    """Whether the learner trains on relabeled windows (PPO only when it imitates them)."""
    return cfg.algo == "pqn" or cfg.ppo.imitates


def _shapes(cfg: TrainConfig) -> RelabelShapes | None:
    if cfg.relabel == "none":
        return None
    rl = cfg.relabeling
    return RelabelShapes(batch=rl.batch, window=rl.window, history=rl.history,
                         late=late_store_mb(rl, cfg.relabel, _trains_windows(cfg)) > 0)


def _train_lines(cfg: TrainConfig, suite, required: bool = True) -> list:
    """The human-labelled lines this run may train on: ``--labels`` of the suite's train tasks."""
    lines = label_subset(suite, cfg.labels, cfg.labels_seed)
    if required and cfg.labels > 0 and not lines:
        raise ConfigError(f"{cfg.suite} has no train-split lines to train on (--labels {cfg.labels})")
    return lines


def _baseline_tasks(cfg: TrainConfig, suite, encoder):
    """The no-relabel baseline's instructions: the suite's train split, uniformly."""
    train_lines = _train_lines(cfg, suite)
    return TaskBank.from_specs([x.spec for x in train_lines]), None, encoder.encode([x.text for x in train_lines]), None


LOCAL_URL = "local"  # --llm-url local: a local model served by llama-cpp-python (oir.llm_local)
# What the llm_* options left at "" (or 0) mean, for a local small model on this machine and for
# any other server. Locally: the small-model prompt with the reply's schema, and relabels lifted
# into templates, asked about 4 segments at a time (the first templates come sooner) by a server at
# the lowest CPU priority, busy at most a quarter of the run once the library holds a template
# (uncapped, it slowed 2M-step PQN runs 1.28x; capped from the start, 1.15x and 1.23x:
# docs/results.md).
LOCAL_DEFAULTS = {"prompt": "relabel_v2_small", "json_mode": "schema", "mode": "templates", "batch": 4, "duty": 0.25}
SERVER_DEFAULTS = {"prompt": "relabel_v1", "json_mode": "off", "mode": "direct", "batch": 8, "duty": 1.0}


def llm_choices(cfg) -> dict[str, Any]:
    """The LLM settings of any config with ``llm_*`` fields, its defaults ("" or 0) resolved
    by where the model runs (``LOCAL_DEFAULTS`` for ``--llm-url local``)."""
    base = LOCAL_DEFAULTS if getattr(cfg, "llm_url", "").strip() == LOCAL_URL else SERVER_DEFAULTS
    world = getattr(cfg, "env", worlds.DEFAULT)
    if world in WORLD_PROMPTS:  # a world with a prompt of its own: its counters, its example
        base = {**base, "prompt": WORLD_PROMPTS[world]}
    given = {"prompt": getattr(cfg, "llm_prompt", ""), "json_mode": getattr(cfg, "llm_json_mode", ""),
             "mode": getattr(cfg, "llm_mode", ""),
             "batch": getattr(cfg, "llm_batch", 0), "duty": getattr(cfg, "llm_duty", 0.0)}
    return {k: base[k] if given[k] in ("", 0) else given[k] for k in base}


# The reply only comes when it is whole, and a 0.5B model decoded 7-12 tokens/s on 2 busy cores
# here (bench/relabel_quality.py): a batch of 8 segments can take minutes.
LOCAL_MIN_TIMEOUT = 600.0


def _llm_server(cfg) -> tuple[str, str, Any, str | None, float]:
    """``(url, model, server, reason, timeout)`` of ``--llm-url``: with ``local``, first starts
    llama-cpp-python's server on a checked local model (``server``, stopped by its user). A local
    model that cannot be served (not installed, wrong checksum, server failing) is a ``reason``,
    like an unreachable URL, and the url then points at a port nothing listens on. ConfigError for
    an unknown model."""
    from oir import llm_local

    url, model, server, reason = cfg.llm_url.strip(), cfg.llm_model, None, None
    if url != LOCAL_URL:
        return url, model, None, None, cfg.llm_timeout
    model = llm_local.DEFAULT_MODEL if model == "default" else model
    try:
        llm_local.get_model(model)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        # The lowest CPU priority: the server gets the cycles training leaves, and training keeps
        # its pace (at the same priority a busy server cost PQN 40% of its steps/s on 2 cores).
        server = llm_local.serve(model, background=True)
        url = server.url
    except llm_local.LocalModelError as e:
        reason, url = str(e), f"http://127.0.0.1:{llm_local.free_port()}/v1"
    return url, model, server, reason, max(cfg.llm_timeout, LOCAL_MIN_TIMEOUT)


def llm_relabeler(cfg):
    """The LLM relabeler for any config with ``llm_*`` fields, and why its server does not answer
    (None when it does). ConfigError for a bad URL, an unset key variable or an unknown model.
    ``--llm-url local`` serves a local model first (:func:`_llm_server`); the relabeler then talks
    to it like to any other server and stops it when closed.
    """
    from oir.llm import check_reachable, make_llm_relabeler, response_format

    local = cfg.llm_url.strip() == LOCAL_URL
    llm = llm_choices(cfg)
    world = getattr(cfg, "env", worlds.DEFAULT)
    try:
        fmt = response_format(llm["json_mode"], world=world)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    url, model, server, reason, timeout = _llm_server(cfg)
    try:
        relabeler = make_llm_relabeler(url, model, None if local else (cfg.llm_api_key_env or None),
                                       prompt=llm["prompt"], response_format=fmt, server=server,
                                       timeout=timeout, batch_size=llm["batch"],
                                       concurrency=getattr(cfg, "llm_concurrency", 1),
                                       temperature=getattr(cfg, "llm_temperature", 0.0),
                                       use_cache=cfg.llm_cache != "off", cache_path=cfg.llm_cache or None,
                                       templates=_template_library(cfg), duty=llm["duty"],
                                       warm_up=local,  # llama.cpp keeps the last prompt's prefix
                                       world=world,
                                       # training asks for templates in the background unless it must be reproducible
                                       ask_in_background=not getattr(getattr(cfg, "relabeling", None), "synchronous", True))
    except ValueError as e:
        if server is not None:
            server.stop()
        raise ConfigError(str(e)) from None
    return relabeler, reason if local else check_reachable(url)


def _template_library(cfg) -> TemplateLibrary | None:
    """With ``--llm-mode templates``: the library, started from ``--templates FILE`` if given."""
    if llm_choices(cfg)["mode"] != "templates":
        return None
    library = TemplateLibrary(world=getattr(cfg, "env", worlds.DEFAULT))
    if getattr(cfg, "templates", None) is not None:
        kept = library.load(cfg.templates)
        print(f"oir: {kept} templates from {cfg.templates}", file=sys.stderr)
    return library


def _make_relabeler(cfg: TrainConfig):
    rl = cfg.relabeling
    narrator = NarratorRelabeler(rl.max_proposals)
    if cfg.relabel == "narrator":
        return narrator
    relabeler, reason = llm_relabeler(cfg)
    if cfg.relabel == JointRelabeler.name:
        relabeler = JointRelabeler(relabeler, narrator)
    if reason is not None:
        if cfg.llm_url.strip() == LOCAL_URL:
            if cfg.llm_required:
                raise ConfigError(f"--llm-url local: {reason}, and --llm-required is set")
            print(f"oir: warning: --llm-url local: {reason}; training goes on without LLM relabels",
                  file=sys.stderr)
            return relabeler
        if cfg.llm_required:
            raise ConfigError(f"LLM server {cfg.llm_url} does not answer ({reason}) and --llm-required is set")
        print(f"oir: warning: LLM server {cfg.llm_url} does not answer ({reason}); training goes on with "
              "the instructions it has and relabels once the server answers", file=sys.stderr)
    return relabeler


def _hindsight(cfg: TrainConfig, encoder) -> Hindsight:
    return Hindsight(cfg.relabeling, _make_relabeler(cfg), encoder, cfg.num_envs, cfg.reward, cfg.delta, cfg.seed,
                     world=cfg.env)


def _ellm_goals(cfg: TrainConfig, encoder):
    """ELLM's instructions: the suggester's goals, each paid by the steps whose caption is similar."""
    goals = ellm.goal_space(cfg.env)
    emb = encoder.encode(list(goals.texts))
    pay = ellm.goal_rewards(emb, encoder.encode(list(event_texts(cfg.env))), cfg.delta, cfg.ellm_reward)
    return TaskBank.from_specs(list(goals.specs)), None, emb, pay


@partial(jax.jit, static_argnums=1)
def _peek(runner, world: worlds.World):
    """The envs' current levels and what they see: the states the LLM suggester is asked about."""
    return jax.vmap(world.levels_of)(runner.env.vec.env), world.nearby_from_obs(runner.obs)


def _suggester_sync(suggester, runner):
    """Show the LLM suggester the envs' states; the runner with its newest table."""
    levels, nearby = jax.device_get(_peek(runner, suggester.world))
    suggester.observe(levels, nearby)
    table = suggester.table()
    return runner if table is None else runner.replace(env=runner.env.replace(table=table))


def _llm_suggester(cfg: TrainConfig, encoder):
    """ELLM's LLM suggester on ``--llm-url`` (``local`` serves a local model first, :func:`_llm_server`).
    A server that does not answer is one warning line: the rule suggester answers meanwhile."""
    from oir.llm import api_key_from_env, check_reachable, make_client

    local = cfg.llm_url.strip() == LOCAL_URL
    try:
        key = None if local else api_key_from_env(cfg.llm_api_key_env or None)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    url, model, server, reason, timeout = _llm_server(cfg)
    try:
        client = make_client(url, model, key, timeout=timeout)
    except ValueError as e:
        if server is not None:
            server.stop()
        raise ConfigError(str(e)) from None
    reason = reason or check_reachable(url)
    if reason is not None:
        if cfg.llm_required:
            if server is not None:
                server.stop()
            raise ConfigError(f"LLM server {cfg.llm_url} does not answer ({reason}) and --llm-required is set")
        print(f"oir: warning: LLM server {cfg.llm_url} does not answer ({reason}); ELLM goes on with the "
              "rule-based suggester's goals until it answers", file=sys.stderr)
    return ellm.LLMSuggester(client, encoder, server=server, world=cfg.env)


def _label(cfg: TrainConfig) -> str:
    if cfg.suggest:
        return f"{cfg.algo} ELLM ({cfg.suggest} suggester)"
    if cfg.relabel == "none":
        return f"{cfg.algo} no-relabel"
    return f"{cfg.algo} {cfg.relabel}-relabeler {cfg.reward}"


def progress_line(row: dict, total: int, elapsed: float, success: float) -> str:
    """The plain progress line printed when output is not a terminal (CI, ``tee``, log files);
    ``success``: the mean instruction success over the updates since the last line."""
    steps = row["env_steps"]
    parts = [f"oir: {steps:,}/{total:,} env steps ({100 * steps / max(total, 1):.0f}%)",
             f"{row['sps']:,.0f} steps/s", f"success {100 * success:.1f}%"]
    if "relabel_verified" in row:
        parts.append(f"relabels {row['relabel_verified']:,.0f} verified, {row['unique_instructions']:,.0f} instructions")
    parts.append(f"{elapsed:,.0f} s")
    return ", ".join(parts)


class _Progress:
    """Progress on stdout: a rich bar in a terminal, else a plain line every ``every`` updates
    (a bar redrawn into a log file is a wall of truncated lines); nothing when disabled."""

    def __init__(self, total: int, label: str, enabled: bool, every: int):
        self.bar, self.total, self.every, self.updates = None, total, every, 0
        self.success: list[float] = []  # per-update success since the last line
        self.lines = enabled and not sys.stdout.isatty()
        self.t0 = time.perf_counter()
        if enabled and not self.lines:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self.task = self.bar.add_task(label, total=total, info="compiling...")
            self.bar.start()
        elif self.lines:
            print(f"oir: training {label}, {total:,} env steps", flush=True)

    def advance(self, steps: int, row: dict) -> None:
        self.updates += 1
        if self.bar is not None:
            info = f"sps {row['sps']:,.0f}  success {100 * row['success_rate']:.1f}%"
            self.bar.update(self.task, completed=steps, info=info)
        elif self.lines:
            self.success.append(row["success_rate"])
            if self.updates % self.every == 0 or steps >= self.total:
                mean = sum(self.success) / len(self.success)
                print(progress_line(row, self.total, time.perf_counter() - self.t0, mean), flush=True)
                self.success.clear()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
