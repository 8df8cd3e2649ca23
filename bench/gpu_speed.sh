#!/usr/bin/env bash
# Throughput of the OIR loop next to plain PQN/PPO on a lent GPU (device tool), 1,024 envs.
# The GPU image has JAX but not craftax/tyro/tensorboardX: their wheels travel in .whl/.
# Usage there: bash bench/gpu_speed.sh [steps]   (prints one line per run; metrics under $OUT)
set -u
STEPS=${1:-4194304}
ENVS=${ENVS:-1024}
PY=${PY:-python3}
[ -n "${SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/cache
$PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
run() {  # name, args...
  local name=$1; shift
  local t0=$(date +%s.%N)
  timeout 170 $PY -m oir.cli train --steps "$STEPS" --num-envs "$ENVS" --encoder hash --eval-episodes 0 \
      --out "/tmp/runs/$name" "$@" > "/tmp/$name.log" 2>&1
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
RUNS=${RUNS:-"pqn-none pqn-narrator ppo-none"}
for r in $RUNS; do
  case $r in
    pqn-none) run pqn-none --algo pqn ;;
    pqn-narrator) run pqn-narrator --algo pqn --relabel narrator --relabeling.batch $((ENVS / 4)) ;;
    ppo-none) run ppo-none --algo ppo ;;
  esac
done
