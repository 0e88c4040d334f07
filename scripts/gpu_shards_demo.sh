#!/bin/bash
# scripts/gpu_shards_demo.sh: the shard path on a machine with two GPUs and no TensorRT-LLM.
#
# Runs the demo-cuda manifest as two shards at once, one GPU each (CUDA_VISIBLE_DEVICES=0 and 1),
# sharing models/ and the stage cache (work/.cache), then merges, reports and verifies, and prints
# what each shard's record says: the cache entry it made or reused, the GPU its telemetry watched.
# Before that, scripts/check_telemetry_gpu.py shows the sampler watching the GPU it is given.
#
# Usage, from the repository root, with the demo's Python packages importable by $PYTHON:
#   PYTHON=python3 OUT=/tmp/out scripts/gpu_shards_demo.sh
# Logs go to $OUT (default: a new temporary folder). docs/gpu-demo-run.md shows one run.
set -uo pipefail
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
RUN=${RUN:-demo-cuda}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=index,name,pci.bus_id,power.limit --format=csv
"$PYTHON" scripts/check_telemetry_gpu.py 2>&1 | tee "$OUT/watch.txt"
start=$(date +%s)
pids=()
for i in 1 2; do
  CUDA_VISIBLE_DEVICES=$((i - 1)) make all MANIFEST=manifests/demo-cuda.toml PYTHON="$PYTHON" \
    SHARD="$i/2" RUN="$RUN-shard${i}of2" >"$OUT/shard$i.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do
  wait "$p" || status=$?
done
echo "both shards: exit $status, $(($(date +%s) - start)) s wall; logs in $OUT"
grep -h "reused\|waiting for\|ModelOpt FP8\|\[sweep\] done" "$OUT"/shard*.log
make merge RUN="$RUN-merged" PYTHON="$PYTHON" SHARDS="results/$RUN-shard1of2 results/$RUN-shard2of2"
make report RUN="$RUN-merged" PYTHON="$PYTHON"
make verify RUN="$RUN-merged" PYTHON="$PYTHON" >"$OUT/verify.log" 2>&1 || status=$?
sed -n '/Totals/,$p' "$OUT/verify.log"
RUN=$RUN "$PYTHON" - <<'PY'
import json, os, pathlib

for i in (1, 2):
    run = pathlib.Path("results") / f"{os.environ['RUN']}-shard{i}of2"
    arts = json.loads((run / "artifacts.json").read_text())
    print(run.name, "quantize:", arts["stages"]["quantize"]["details"].get("cache"))
    for p in sorted((run / "points").glob("*/result.json")):
        t = json.loads(p.read_text())["telemetry"]
        print(f"  {p.parent.name}: watched GPU {t.get('device_index')}, {t.get('samples')} samples,"
              f" busy {t.get('busy_s')} s, mean power {t.get('power_w_mean')} W,"
              f" suspect {t.get('suspect')}")
PY
exit "$status"
