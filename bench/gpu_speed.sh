#!/usr/bin/env bash
# Throughput of the OIR loop next to plain PQN/PPO and Craftax_Baselines' ppo.py on a lent GPU
# (device tool), one call. The GPU image has JAX but not craftax/tyro/tensorboardX: their wheels
# travel in .whl/ (carry it). Craftax_Baselines is a checkout brought here with `fetch` and carried
# as cb/ (never committed); without it that row says it was skipped.
# Usage there: bash bench/gpu_speed.sh [steps]   (one line per run; metrics under $OUT)
#   ENVS="1024 4096" (env counts), PROCS=2 (--relabeling.processes of the OIR rows), CB_DIR=cb
set -u
STEPS=${1:-4194304}
ENV_COUNTS=${ENVS:-"1024 4096"}
PROCS=${PROCS:-2}
CB_DIR=${CB_DIR:-cb}
PY=${PY:-python3}
[ -n "${SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/cache
$PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
run() {  # name, args...
  local name=$1; shift
  local t0=$(date +%s.%N)
  timeout 170 $PY -m oir.cli train --steps "$STEPS" --num-envs "$ENVS" --encoder hash --eval-episodes 0 \
      --checkpoint-every 0 --out "/tmp/runs/$name" "$@" > "/tmp/$name.log" 2>&1
  local rc=$? t1=$(date +%s.%N)
  $PY - "$name" "$rc" "$t0" "$t1" "$STEPS" <<'PY'
import json, sys
name, rc, t0, t1, steps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
try:
    rows = [json.loads(x) for x in open(f"/tmp/runs/{name}/metrics.jsonl")]
    last = rows[-1]
    print(f"{name:<22} rc={rc} steps={last['env_steps']:,} process {last['env_steps'] / (t1 - t0):,.0f} sps, "
          f"loop {last['sps']:,.0f} sps, relabel share {last.get('relabel_wall_frac', 0):.3f}, "
          f"worker {last.get('relabel_worker_frac', 0):.3f}, pending {last.get('relabel_pending', '-')}, "
          f"dropped {last.get('relabel_dropped', '-')}, unique {last.get('unique_instructions', '-')}")
except Exception as e:
    print(name, "rc", rc, "failed:", e); print(open(f"/tmp/{name}.log").read()[-3000:])
PY
  cp "/tmp/runs/$name/metrics.jsonl" "$OUT/$name.jsonl" 2>/dev/null
}
cb_ppo() {  # Craftax_Baselines ppo.py at the same env count, timed as a whole process
  local name=cb-ppo-$ENVS
  if [ ! -f "$CB_DIR/ppo.py" ]; then echo "$name skipped: no Craftax_Baselines checkout in $CB_DIR"; return; fi
  local t0=$(date +%s.%N)
  (cd "$CB_DIR" && WANDB_MODE=disabled timeout 300 $PY ppo.py --env_name Craftax-Classic-Symbolic-v1 \
      --num_envs "$ENVS" --total_timesteps "$STEPS" --no-use_wandb --seed 0) > "/tmp/$name.log" 2>&1
  local rc=$? t1=$(date +%s.%N)
  $PY -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f'$name rc=$rc process {n/t:,.0f} sps (whole process, compile included) in {t:.0f} s')" "$t0" "$t1" "$STEPS"
  [ $rc = 0 ] || tail -20 "/tmp/$name.log"
}
# The rows as first measured: plain learners (no relabels, no bonus) and the zero-label OIR loop.
PLAIN="--relabel none --achievement-bonus 0"
ZERO="--relabel narrator --labels 0 --achievement-bonus 0 --relabeling.world-span 0"
RUNS=${RUNS:-"pqn-none pqn-narrator pqn-narrator-procs ppo-none cb-ppo"}
for ENVS in $ENV_COUNTS; do
  for r in $RUNS; do
    case $r in
      pqn-none) run pqn-none-$ENVS --algo pqn $PLAIN ;;
      pqn-narrator) run pqn-narrator-$ENVS --algo pqn $ZERO --relabeling.batch $((ENVS / 4)) ;;
      pqn-narrator-procs) run pqn-narrator-procs-$ENVS --algo pqn $ZERO --relabeling.batch $((ENVS / 4)) \
          --relabeling.processes "$PROCS" ;;
      ppo-none) run ppo-none-$ENVS --algo ppo $PLAIN ;;
      cb-ppo) cb_ppo ;;
    esac
  done
done
