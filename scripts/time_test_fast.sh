#!/usr/bin/env bash
# Time `make test-fast` (the suite without the end-to-end tests) N times in this checkout, after
# one untimed warm-up run that builds the dev venv and pytest's bytecode cache, as an edit loop
# finds them. Prints each wall time with the load average before it (the figure is only
# comparable on an otherwise idle machine), then the median.
#
# Usage: scripts/time_test_fast.sh [N]     e.g. scripts/time_test_fast.sh 3
set -euo pipefail
runs=${1:-3}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
echo "[time_test_fast] $(git log --oneline -1) on $(nproc) cores; warm-up run (untimed)"
make --no-print-directory test-fast >"$tmp/warmup.log" 2>&1 || { tail -40 "$tmp/warmup.log"; exit 1; }
for i in $(seq "$runs"); do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  start=$(date +%s.%N)
  make --no-print-directory test-fast >"$tmp/run.log" 2>&1 || { tail -40 "$tmp/run.log"; exit 1; }
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" -v l="$load" -v i="$i" -v r="$(tail -1 "$tmp/run.log")" \
    'BEGIN { printf "[time_test_fast] run %d: %.1f s wall (load before: %s) | %s\n", i, e - s, l, r }' \
    | tee -a "$tmp/times"
done
sort -t: -k2 -n <(sed -E 's/.*run [0-9]+: ([0-9.]+) s.*/x:\1/' "$tmp/times") \
  | awk -F: '{ v[NR] = $2 } END { printf "[time_test_fast] median of %d: %.1f s\n", NR, v[int((NR + 1) / 2)] }'
