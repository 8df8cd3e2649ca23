"""The host side of the OIR loop, between two jitted updates.

Each update hands the host a :class:`~oir.segments.Chunk` of its rollout. :class:`Hindsight`

1. cuts it into finished segments (:class:`~oir.segments.SegmentTracker`);
2. sends the segments with events to the relabeler, in a worker thread
   (:class:`~oir.relabel.AsyncRelabeler`), and collects whatever relabels are done;
3. adds verified relabels to the instruction buffer (:mod:`oir.buffer`) and to the pool of
   relabeled windows the learner trains on (:class:`~oir.segments.RelabelPool`);
4. pushes new instructions (spec, text embedding, similarity hits) and fresh sampling weights
   to the device.

Instructions come from relabels, added to the human-labelled train lines the run was given
(``--labels``; none with ``--labels 0``). Until the first relabels arrive (with no labels), and
for a ``free_play`` share of the time afterwards, envs follow a
reserved *free-play* instruction whose spec cannot hold: its segments end by timeout or the
world's end and are relabeled like any other.
"""

from __future__ import annotations

import pickle
import time
from collections import Counter
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from oir import worlds
from oir.buffer import InstructionBuffer
from oir.devices import to_host
from oir.narrate import event_texts
from oir.relabel import (
    BELOW_DELTA,
    FLAW_REASONS,
    LLM_RELABELS,
    SIMILARITY_COUNTS,
    AsyncRelabeler,
    Relabeler,
    similarity_hits,
)
from oir.segments import LateWindows, RelabelBatch, RelabelPool, SegmentTracker, save_segments
from oir.tasks import MAX_COUNT, Clause, TaskBank, TaskSpec
from oir.worlds import World

FREE_PLAY_TEXT = "Explore the world and survive."
FREE_PLAY_SPEC = TaskSpec(all=(Clause("collect_diamond", at_least=MAX_COUNT),))  # never holds
FREE_PLAY_ROW = 0


@dataclass
class RelabelingConfig:
    """Knobs of the relabeling loop (``--relabeling.*``)."""

    batch: int = 16  # relabeled windows the PQN learner trains on per update, beside the rollout
    window: int = 16  # steps per relabeled window, ending at the step its spec first held (masked before the segment's start)
    history: int = 1024  # steps of every env kept in the replay (more than --max-task-steps)
    capacity: int = 8192  # most unique instructions in the buffer
    free_play: float = 0.1  # share of instructions that are free play once the buffer has some
    pool: int = 65536  # most recent relabels kept for sampling windows
    max_proposals: int = 8  # narrator relabels per segment, taken in turn from each kind of statement
    worker_batch: int = 64  # segments per relabeler call in the worker
    # Child processes that propose and verify (the narrator; LLM and similarity relabeling stay in
    # the worker thread): they never hold the training process's GIL. 0: all in the worker thread.
    processes: int = 0
    # Host memory (MB) for relabels that come after their steps left the replay (a slow LLM): the
    # steps of segments waiting for relabels and the windows cut from them (segments.LateWindows).
    # -1: 256 with --relabel llm, off otherwise; 0: off.
    late_store_mb: float = -1.0
    sync_every: int = 4  # updates between pushes of new instructions and weights to the device
    save_segments: int = 0  # keep a uniform sample of this many eventful segments: DIR/segments.npz
    # Wait for the relabel worker every update: slower, but the same seed then gives the same run
    # (otherwise relabels join whichever update is running when they are done).
    synchronous: bool = False
    # Relabel each instruction's steps together with those before it in the same world, up to
    # this many steps in all (0: one instruction's steps). Counts and orders reached across
    # instructions are then stated (three saplings planted under three instructions); only
    # statements that first hold within the instruction's own steps are kept. At most
    # history - the rollout's steps.
    world_span: int = 256


def late_store_mb(cfg: RelabelingConfig, relabel: str, trains_windows: bool) -> float:
    """The late-window store's budget: ``--relabeling.late-store-mb``, where -1 means 256 MB for the
    slow LLM relabeler and none for the narrator (whose relabels come within an update or two);
    none when the learner trains on no windows."""
    if not trains_windows:
        return 0.0
    return (256.0 if relabel in LLM_RELABELS else 0.0) if cfg.late_store_mb < 0 else cfg.late_store_mb


class Hindsight:
    """Segments in, relabels out: the host state of an OIR run."""

    def __init__(
        self,
        cfg: RelabelingConfig,
        relabeler: Relabeler,
        encoder,
        num_envs: int,
        reward: str = "verified",
        delta: float = 0.5,
        seed: int = 0,
        world: World | str | None = None,
    ):
        self.cfg, self.relabeler, self.encoder, self.n = cfg, relabeler, encoder, num_envs
        self.world = worlds.world_of(world)
        self.buffer = InstructionBuffer(cfg.capacity, encoder, reserved=1)
        self.pool = RelabelPool(cfg.pool, cfg.history, cfg.window)
        self.rng = np.random.default_rng(seed)
        self.event_emb = encoder.encode(list(event_texts(self.world))) if reward == "similarity" else None
        self.delta = delta
        self.env_steps = 0  # of the newest update the host has seen; stamps first-seen steps
        self.worker = AsyncRelabeler(relabeler, cfg.worker_batch, encoder=encoder, event_emb=self.event_emb,
                                     delta=delta, sink=self._to_buffer, processes=cfg.processes)
        self.counts: Counter = Counter()
        self.host_s = 0.0
        self.tracker: SegmentTracker | None = None
        self.late: LateWindows | None = None  # made at start, when the observation size is known
        # Host mirrors of the device's instruction tables; uploaded whole when rows are added.
        self.bank = TaskBank.pack([replace(FREE_PLAY_SPEC, world=self.world.name)], capacity=cfg.capacity)
        self.emb = np.zeros((cfg.capacity, encoder.dim), np.float32)
        self.emb[FREE_PLAY_ROW] = encoder.encode([FREE_PLAY_TEXT])[0]
        self.hit = None if self.event_emb is None else np.zeros((cfg.capacity, self.world.num_events), np.float32)
        self.syncs = 0
        self.kept: list = []  # segments sampled for --relabeling.save-segments
        # Rows whose spec and embedding are on the device: the worker adds rows at any time, and a
        # row drawn before its spec arrives would be an empty (instantly true) task.
        self.on_device = np.zeros(cfg.capacity, bool)
        self.on_device[FREE_PLAY_ROW] = True

    # -- device tables --------------------------------------------------------------------
    def weights(self) -> np.ndarray:
        """Sampling weights: buffer priorities, plus the free-play row's share."""
        w = self.buffer.priorities().astype(np.float64) * self.on_device
        rest = w.sum()
        w[FREE_PLAY_ROW] = 1.0 if rest == 0 else rest * self.cfg.free_play / (1.0 - self.cfg.free_play)
        return w.astype(np.float32)

    def initial(self):
        """``(bank, weights, emb, hit)`` for the learner's ``init``."""
        return jax.tree.map(jnp.array, self.bank), self.weights(), self.emb, self.hit

    def start(self, runner, fresh_levels: np.ndarray, late_mb: float = 0.0) -> None:
        """Begin cutting segments; ``late_mb > 0``: keep steps for late relabels (the learner's
        chunks then carry them: :func:`late_store_mb`)."""
        obs = np.asarray(to_host(runner.obs))
        dim = obs.shape[-1] if late_mb > 0 else 0
        self.tracker = SegmentTracker(self.n, self.cfg.history, fresh_levels, self.world.nearby_from_obs(obs),
                                      obs_dim=dim, span=self.cfg.world_span, world=self.world)
        if dim:
            self.late = LateWindows(late_mb, self.cfg.window, dim)

    # -- one update -----------------------------------------------------------------------
    def next_batch(self, update: int, num_steps: int) -> RelabelBatch:
        """Relabeled windows for update ``update`` (whose rollout ends the replay's newest steps)."""
        t0 = time.perf_counter()
        b, late = self.cfg.batch, self.late
        k = 0  # late windows in this batch: in proportion to how many there are beside the replay's
        if late is not None and late.size:
            k = int(self.rng.binomial(b, late.size / (late.size + self.counts["relabels_live"])))
        # A row added since the last sync has no embedding on the device yet: its windows wait.
        cols, live = self.pool.sample(self.rng, b - k, now=(update + 1) * num_steps, ready=self.on_device)
        self.counts["relabels_live"] = live
        if late is not None:
            more = late.sample(self.rng, k, ready=self.on_device)
            w, dim = self.cfg.window, late.obs.shape[-1]
            cols = {c: np.concatenate([v, more[c]]) for c, v in cols.items()}
            cols["obs"] = np.concatenate([np.zeros((w, b - k, dim), np.float16), more["obs"]], axis=1)
            cols["action"] = np.concatenate([np.zeros((w, b - k), np.int32), more["action"]], axis=1)
            cols["late"] = np.arange(b) >= b - k
        self.host_s += time.perf_counter() - t0
        return RelabelBatch(**{c: jnp.asarray(v) for c, v in cols.items()})

    def observe(self, chunk, env_steps: int) -> None:
        """Take a finished rollout's chunk (numpy leaves): segments out, relabels in."""
        t0 = time.perf_counter()
        attempts = np.bincount(chunk.task[chunk.task_done], minlength=self.cfg.capacity)
        successes = np.bincount(chunk.task[chunk.task_done & chunk.success], minlength=self.cfg.capacity)
        self.buffer.record(attempts, successes)
        batch = self.tracker.push(chunk)
        eventful = batch.select(batch.eventful(self.world.num_events - len(self.world.placements)))
        self.counts["segments"] += len(batch)
        self.counts["segments_quiet"] += len(batch) - len(eventful)
        self.env_steps = env_steps
        if self.cfg.save_segments:
            self._keep(eventful.segments())
        if self.late is not None:
            # Hand over only segments whose steps the store can hold until their relabels come. A
            # slow relabeler answers in order, so making room by evicting the oldest waiting
            # segment would discard the steps of its very next answer (direct LLM mode did: 96 of
            # 97 verified relabels expired).
            fit = self.late.fitting(eventful)
            self.counts["late_segments_refused"] += len(eventful) - fit
            eventful = eventful.select(slice(0, fit))
        taken = self.worker.submit(eventful.without_steps())
        for k in range(taken if self.late is not None else 0):
            # keyed by the last step: segments of one world span share their first
            self.late.keep((int(eventful.env[k]), int(eventful.end[k])),
                           *eventful.steps_of(k))
        if self.cfg.synchronous:
            self.worker.flush()
        for res in self.worker.drain():
            self._take(res)
        self.host_s += time.perf_counter() - t0

    def _keep(self, segments: list) -> None:
        """Reservoir sampling: every eventful segment of the run is equally likely to be kept."""
        k = self.cfg.save_segments
        for segment in segments:
            self.counts["eventful_seen"] += 1
            if len(self.kept) < k:
                self.kept.append(segment)
            else:
                j = int(self.rng.integers(self.counts["eventful_seen"]))
                if j < k:
                    self.kept[j] = segment

    def _to_buffer(self, results: list) -> None:
        """In the worker thread: add a batch's verified relabels to the buffer (one encoder call)."""
        items = [(r.text, r.spec, self.env_steps) for res in results for r in res.relabels]
        added = iter(self.buffer.add_many(items) if items else [])
        for res in results:
            res.rows = [next(added)[0] for _ in res.relabels]

    def _take(self, res) -> None:
        """On the training thread: count, and queue the relabeled windows for the learner."""
        self.counts["proposed"] += res.proposed
        self.counts["verified"] += len(res.relabels)
        self.counts["unsupported"] += res.unsupported
        self.counts.update(res.similarity or {})
        for reason, k in res.flawed.items():
            self.counts[f"flawed_{reason}"] += k
        info = res.info
        steps = self.late.take((info.env, info.end)) if self.late is not None else None
        for r, row in zip(res.relabels, res.rows or [None] * len(res.relabels), strict=True):
            if row is None or (row == info.task and info.success):
                continue  # dropped by the buffer, or the instruction it followed (already rewarded online)
            end = info.start + r.step - 1
            if steps is not None:  # the host kept its steps: a window whenever the relabel came
                self.late.add(steps, r.step, row)
                self.counts["windows_late"] += 1
            elif max(info.start, end - self.cfg.window + 1) < self.tracker.step - self.cfg.history:
                self.counts["relabels_expired"] += 1  # its steps had left the replay when it came
                continue
            else:
                self.pool.add(info.env, info.start, end, row)
            self.counts["windows_added"] += 1

    def _mirror_new(self) -> bool:
        """Copy the buffer's new rows into the host tables; whether there were any."""
        new = self.buffer.drain_new()
        if new:
            part = TaskBank.pack([self.buffer.spec(r) for r in new])
            for full, p in zip(jax.tree.leaves(self.bank), jax.tree.leaves(part), strict=True):
                full[new] = p
            self.emb[new] = np.stack([self.buffer.embedding(r) for r in new])
            self.on_device[new] = True
            if self.hit is not None:
                self.hit[new] = similarity_hits(self.emb[new], self.event_emb, self.delta)
        return bool(new)

    def seed(self, lines) -> int:
        """Start the buffer with human instructions (suite lines) before any relabel: the
        paper's set-up, where relabels are added to a labelled instruction set. Call before
        :meth:`initial`; returns how many rows they took (merged or filtered lines take none)."""
        before = len(self.buffer)
        self.buffer.add_many([(x.text, x.spec, 0) for x in lines])
        self._mirror_new()
        return len(self.buffer) - before

    def sync(self, runner):
        """The runner with the buffer's new rows and current sampling weights."""
        self.syncs += 1
        if self.syncs % self.cfg.sync_every:
            return runner  # a few updates' delay costs nothing; an upload per update costs SPS
        t0 = time.perf_counter()
        env = runner.env
        if self._mirror_new():
            env = env.replace(bank=jax.tree.map(jnp.array, self.bank))
            runner = runner.replace(emb=jnp.array(self.emb))
            if self.hit is not None:
                env = env.replace(hit=jnp.array(self.hit))
        # numpy, then one upload: a jnp op here would queue behind the update in flight
        runner = runner.replace(env=env.replace(cdf=jnp.array(np.cumsum(self.weights(), dtype=np.float32))))
        self.host_s += time.perf_counter() - t0
        return runner

    # -- checkpoints ----------------------------------------------------------------------
    _STATE = ("buffer", "pool", "rng", "counts", "host_s", "tracker", "bank", "emb", "hit", "syncs", "kept",
              "on_device", "env_steps", "late")

    def state(self) -> bytes:
        """The host state, pickled, with the segments the worker has not started on (they are
        submitted again, here and on resume) and the results of the batch in flight: a checkpoint
        loses none of them, and waits for one batch, not for a slow LLM to clear its queue."""
        waiting = self.worker.take_waiting()
        self.worker.flush()
        for res in self.worker.drain():
            self._take(res)
        worker = {k: getattr(self.worker, k) for k in ("busy_s", "dropped", "errors")}
        blob = pickle.dumps({**{k: getattr(self, k) for k in self._STATE}, "worker": worker, "waiting": waiting})
        for batch in waiting:
            self.worker.submit(batch)
        return blob

    def load_state(self, blob: bytes) -> None:
        """Continue from :meth:`state` (of a run with the same config)."""
        state = pickle.loads(blob)
        for k, v in state.pop("worker").items():
            setattr(self.worker, k, v)
        for batch in state.pop("waiting", []):  # segments the worker had not started on
            self.worker.submit(batch)
        for k in self._STATE:
            setattr(self, k, state.get(k))  # "late": None in checkpoints from before the store
        if self.hit is not None:
            self.hit = self.hit.astype(np.float32)  # checkpoints before ELLM's paid rewards held bools
        self.buffer.encoder = self.encoder

    # -- reporting ------------------------------------------------------------------------
    def metrics(self, wall_s: float) -> dict[str, float]:
        c = self.counts
        reasons = (*FLAW_REASONS, BELOW_DELTA) if self.event_emb is not None else FLAW_REASONS
        flawed = {f"flawed_{r}": c[f"flawed_{r}"] for r in reasons}  # every reason, zeros included
        out = {
            "relabel_segments": c["segments"],
            "relabel_segments_quiet": c["segments_quiet"],
            "relabel_proposed": c["proposed"],
            "relabel_verified": c["verified"],
            "relabel_flawed": sum(flawed.values()),
            **{f"relabel_{k}": v for k, v in sorted(flawed.items())},
            "relabel_windows_added": c["windows_added"],
            "relabel_windows_live": c["relabels_live"],
            "relabel_windows_expired": self.pool.expired_unused,  # left the replay or pool never trained on
            # verified relabels that came after their steps had left the replay (and no store held them)
            "relabels_expired": c["relabels_expired"],
            "relabel_windows_late": c["windows_late"],  # cut from steps the host kept (late-window store)
            "relabel_pending": self.worker.pending(),
            "relabel_dropped": self.worker.dropped,
            "relabel_errors": self.worker.errors,
            "relabel_process_deaths": self.worker.process_deaths,
            "unique_instructions": len(self.buffer),
            "texts_embedded": getattr(self.encoder, "misses", 0),  # new texts the encoder had to run on
            "relabel_wall_frac": self.host_s / max(wall_s, 1e-9),
            "relabel_worker_frac": self.worker.busy_s / max(wall_s, 1e-9),
        }
        if self.late is not None:
            out["relabel_late_segments_evicted"] = self.late.evicted
            # not handed to the relabeler: the store was full of segments waiting for theirs
            out["relabel_late_segments_refused"] = c["late_segments_refused"]
        if self.pool.used_frac is not None:
            out["relabel_used_frac"] = self.pool.used_frac
        if self.event_emb is not None:
            out["relabel_unsupported"] = c["unsupported"]
            out |= {f"relabel_{k}": c[k] for k in SIMILARITY_COUNTS}
            # Of the similarity rewards the relabels got, the share given before or without their
            # spec holding; of the relabels whose spec held, the share similarity never rewarded.
            out["relabel_false_reward_rate"] = c["sim_false"] / max(c["sim_rewards"], 1)
            out["relabel_missed_reward_rate"] = c["sim_missed"] / max(c["spec_held"], 1)
        out.update(self.relabeler.stats())
        if "llm_calls" in out and self.env_steps:
            out["llm_calls_per_1m_steps"] = out["llm_calls"] * 1e6 / self.env_steps
        return out

    def close(self, out_dir) -> None:
        """Stop the worker, take the relabels it finished, and write ``instructions.jsonl``."""
        self.worker.close()
        for res in self.worker.drain():
            self._take(res)
        self.buffer.save(out_dir / "instructions.jsonl")
        library = getattr(self.relabeler, "library", None)
        if library is not None:  # LLM-written templates, reusable by a later run: --templates FILE
            library.save(out_dir / "templates.jsonl")
        if self.cfg.save_segments:
            save_segments(out_dir / "segments.npz", self.kept)
