"""The OIR loop's host side alone: recorded rollout chunks replayed through it, timed.

    .venv/bin/python bench/host_pipeline.py --num-envs 1024 4096

For each env count, first records ``--updates`` rollout chunks of a real OIR run (PQN, narrator
relabels, ``oir train`` in this process, its chunks copied as the host receives them; cached in
``--cache``), then replays them, with the device idle, through:

* ``cut``: the segment cutter alone (:class:`oir.segments.SegmentTracker`);
* ``relabel``: cut, then the narrator's proposals and their verification, one core
  (:meth:`oir.relabel.NarratorRelabeler.propose_batch`, :func:`oir.relabel.verify`);
* ``relabel, K processes``: cut here, propose and verify in K relabel processes
  (:class:`oir.relabel.AsyncRelabeler`, ``--relabeling.processes K``), all chunks in flight;
* ``host, K processes``: the whole host side of training (:class:`oir.hindsight.Hindsight` with
  ``--relabeling.synchronous``: cut, relabel, instruction buffer with MiniLM embeddings of new
  texts, relabel pool, device-table mirrors), one update after another as training runs it.

Each stage runs ``--repeats`` times and the fastest counts: the first run also fills the memos a
long run has filled (the narrator's wordings, parsed specs; the host's embedded instruction
texts), so the figures are steady-state ones, not a run's first minute.

Prints segments/s and relabels/s (verified) per stage; ``cut`` and ``relabel`` run on one core,
so they are per-core figures. The recorded agent is the run's own, early in training (its first
``--updates`` updates): segments are shorter and poorer in events than a trained agent's.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tyro

from oir.segments import Chunk


@dataclass
class Args:
    num_envs: list[int] = field(default_factory=lambda: [1024, 4096])
    updates: int = 24  # rollout chunks (16 steps each) recorded per env count
    skip: int = 8  # chunks replayed once before timing (segments then have their full lengths)
    cache: Path = Path("runs/host-pipeline")  # recorded chunks, one .npz per env count
    encoder: str = "minilm"
    seed: int = 0
    processes: list[int] = field(default_factory=lambda: [1, 2])  # relabel processes to time
    repeats: int = 3  # each stage timed this often, the best kept (the first also fills memos, as a long run has)


def record(num_envs: int, updates: int, path: Path, seed: int) -> None:
    """Train ``updates`` updates of PQN + narrator at ``num_envs`` envs, keeping every chunk."""
    from oir import hindsight
    from oir.train import TrainConfig, train

    chunks, start = [], {}
    observe, begin = hindsight.Hindsight.observe, hindsight.Hindsight.start

    def keep(self, chunk, env_steps):
        chunks.append({k: np.array(v) for k, v in vars(chunk).items() if v is not None})
        return observe(self, chunk, env_steps)

    def started(self, runner, fresh_levels, **kw):
        begin(self, runner, fresh_levels, **kw)
        start.update(fresh_levels=np.array(fresh_levels), nearby0=self.tracker.start_nearby.copy())

    hindsight.Hindsight.observe, hindsight.Hindsight.start = keep, started
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(algo="pqn", relabel="narrator", labels=0.0, achievement_bonus=0.0,
                              relabeling=hindsight.RelabelingConfig(world_span=0), num_envs=num_envs, seed=seed,
                              steps=updates * num_envs * 16, eval_episodes=0, checkpoint_every=0,
                              out=Path(tmp) / "run")
            train(cfg, progress=False)
    finally:
        hindsight.Hindsight.observe, hindsight.Hindsight.start = observe, begin
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **start, **{k: np.stack([c[k] for c in chunks]) for k in chunks[0]})


def load(path: Path) -> tuple[list[Chunk], np.ndarray, np.ndarray]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    fresh, nearby0 = arrays.pop("fresh_levels"), arrays.pop("nearby0")
    n = len(arrays["task"])
    return [Chunk(**{k: v[i] for k, v in arrays.items()}) for i in range(n)], fresh, nearby0


def bench(path: Path, args: Args) -> list[str]:
    from oir.encode import make_encoder
    from oir.events import ACHIEVEMENTS
    from oir.hindsight import Hindsight, RelabelingConfig
    from oir.relabel import AsyncRelabeler, NarratorRelabeler, verify
    from oir.segments import SegmentTracker

    chunks, fresh, nearby0 = load(path)
    num_envs = chunks[0].task.shape[1]
    warm, timed = chunks[: args.skip], chunks[args.skip:]
    steps = sum(c.task.size for c in timed)
    rows = []

    def tracker():
        t = SegmentTracker(num_envs, 1024, fresh, nearby0)
        # Touch the rings' pages now: a run past its first 1,024 steps has, and first-touch page
        # faults on these 450 MB (4,096 envs) would otherwise be most of the cut's time here.
        for ring in (t.events, t.levels, t.nearby):
            ring.fill(0)
        for c in warm:
            t.push(c)
        return t

    def best(run) -> tuple[float, int | None]:
        """The fastest of ``args.repeats`` runs of ``run() -> verified``, each on a fresh tracker."""
        times = []
        for _ in range(args.repeats):
            t = tracker()
            t0 = time.perf_counter()
            verified = run(t)
            times.append(time.perf_counter() - t0)
        return min(times), verified

    segments = sum(len(tracker().push(c)) for c in timed)
    def cut(t):
        for c in timed:
            t.push(c)

    rows.append(("cut", segments, *best(cut)))

    relabeler = NarratorRelabeler()

    def relabel_here(t):
        verified = 0
        for c in timed:
            b = t.push(c)
            segs = b.select(b.eventful(len(ACHIEVEMENTS))).segments()
            for seg, props in zip(segs, relabeler.propose_batch(segs), strict=True):
                verified += len(verify(seg, props)[0])
        return verified

    rows.append(("relabel", segments, *best(relabel_here)))

    for k in args.processes:
        worker = AsyncRelabeler(NarratorRelabeler(), batch=4096, max_pending=10**9, processes=k)
        worker.submit(tracker().push(timed[0]).select(slice(0, 8)))  # children started and imported
        worker.flush()
        worker.drain()

        def relabel_there(t, worker=worker):
            for c in timed:
                b = t.push(c)
                worker.submit(b.select(b.eventful(len(ACHIEVEMENTS))))
            worker.flush()
            return sum(len(r.relabels) for r in worker.drain())

        rows.append((f"relabel, {k} processes", segments, *best(relabel_there)))
        worker.close()

    # The recorded tasks are rows of the recording run's buffer, which this fresh one lacks:
    # every step follows free play here (the host's work does not depend on which row it was).
    warm = [c.replace(task=np.zeros_like(c.task)) for c in warm]
    timed = [c.replace(task=np.zeros_like(c.task)) for c in timed]
    encoder = make_encoder(args.encoder)
    for k in (0, *args.processes):
        cfg = replace(RelabelingConfig(), synchronous=True, processes=k, world_span=0)  # as first measured
        hs = Hindsight(cfg, NarratorRelabeler(), encoder, num_envs)
        hs.tracker = tracker()
        for u, c in enumerate(timed[:2]):  # warm: children started, the first texts embedded
            hs.observe(c, (u + 1) * 16 * num_envs)
        times = []
        gc.collect()
        gc.freeze()  # as `oir train` does before its loop
        for _ in range(args.repeats):
            hs.tracker, hs.counts["verified"], hs.counts["segments"] = tracker(), 0, 0
            t0 = time.perf_counter()
            for u, c in enumerate(timed):
                hs.observe(c, (u + 1) * 16 * num_envs)
                hs._mirror_new()
            times.append(time.perf_counter() - t0)
        gc.unfreeze()
        m = hs.metrics(min(times))
        hs.worker.close()
        rows.append((f"host, {k} processes", m["relabel_segments"], min(times), m["relabel_verified"]))

    out = []
    for stage, segs, secs, rel in rows:
        out.append(f"| {num_envs:,} | {stage} | {segs:,} | {segs / secs:,.0f} | "
                   f"{'' if rel is None else f'{rel / secs:,.0f}'} | {steps / secs:,.0f} |")
    return out


def main(args: Args) -> int:
    table = ["| envs | stage | segments | segments/s | verified relabels/s | env steps/s it keeps up with |",
             "|---:|---|---:|---:|---:|---:|"]
    for n in args.num_envs:
        path = args.cache / f"chunks-{n}-u{args.updates}-s{args.seed}.npz"
        if not path.exists():
            print(f"recording {args.updates} chunks at {n} envs into {path}", file=sys.stderr, flush=True)
            record(n, args.updates, path, args.seed)
        table += bench(path, args)
        print("\n".join(table), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
