#!/usr/bin/env bash
# Time a fresh `make demo`: clone the kit at REF (default HEAD) into a temp folder, then time
# venv creation + install + the whole pipeline, as a new user's first command would run it.
# Prints the load average before and after (the figure is only comparable on an idle machine),
# the seconds for the install and for the pipeline, and the size of the virtualenv it made.
# pip's own cache is left as it is (CI's setup-python restores one too): say which when quoting.
#
# Usage: scripts/time_fresh_demo.sh [REF]     e.g. scripts/time_fresh_demo.sh HEAD
set -euo pipefail
ref=${1:-HEAD}
kit=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
git clone -q --no-hardlinks "$kit" "$tmp/kit"
git -C "$tmp/kit" checkout -q "$(git -C "$kit" rev-parse "$ref")"
cd "$tmp/kit"
echo "[time_fresh_demo] $(git log --oneline -1) on $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
make --no-print-directory .venv/.installed >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
installed=$(date +%s.%N)
make --no-print-directory demo >"$tmp/demo.log" 2>&1 || { tail -40 "$tmp/demo.log"; exit 1; }
done_at=$(date +%s.%N)
echo "[time_fresh_demo] console of make demo: $(wc -l <"$tmp/demo.log") lines"
echo "[time_fresh_demo] load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "[time_fresh_demo] venv: $(du -sh .venv | cut -f1)"
awk -v s="$start" -v i="$installed" -v d="$done_at" 'BEGIN {
  printf "[time_fresh_demo] install %.0f s + pipeline %.0f s = fresh make demo %.0f s\n", i - s, d - i, d - s }'
