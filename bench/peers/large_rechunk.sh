#!/usr/bin/env bash
# A rechunk larger than this machine's RAM: a (800000, 4000) float64 array (25.6 GB logical),
# chunks (1000, 1000) → (800000, 10) with --memory 1GiB, written to docs/benchmarks-large.md.
# The input is an arange (it compresses, so that input, intermediate and output fit the disk
# together); the two-pass plan's intermediate is uncompressed (25.6 GB in the work dir).
#   bench/peers/large_rechunk.sh DSK DATA_DIR DOC
set -euo pipefail
DSK=$1
DATA=$2
DOC=${3:-docs/benchmarks-large.md}
mkdir -p "$DATA"
rm -rf "$DATA/large.zarr" "$DATA/large_t.zarr"
t() { /usr/bin/time -f "%e s wall, %M KB peak RSS" "$@" 2>&1 >/dev/null | tail -1; }
create=$(t "$DSK" create arange "$DATA/large.zarr" --stop 3200000000 --shape 800000,4000 --chunks 1000,1000 --dtype float64 -q)
sizes=$("$DSK" info "$DATA/large.zarr" | grep -E "logical|stored")
plan=$("$DSK" rechunk "$DATA/large.zarr" "$DATA/large_t.zarr" --chunks 800000,10 --memory 1GiB --work-dir "$DATA" --explain | head -2)
rechunk=$(t "$DSK" rechunk "$DATA/large.zarr" "$DATA/large_t.zarr" --chunks 800000,10 --memory 1GiB --work-dir "$DATA" -q)
check=$("$DSK" eval 'abs(x[799999, 3999] - 3199999999) + abs(x[12345, 678] - 49380678)' "x=$DATA/large_t.zarr" -q)
out=$("$DSK" info "$DATA/large_t.zarr" | grep -E "chunks|stored")
rm -rf "$DATA/large.zarr" "$DATA/large_t.zarr"
# the pipeline's section (bench/large_pipeline.py) stays
pipeline=$(sed -n '/^## A pipeline larger than RAM/,$p' "$DOC" 2>/dev/null || true)
cat > "$DOC" <<DOCEOF
# Benchmark: a rechunk larger than RAM

Written by \`make bench-large\` (bench/peers/large_rechunk.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'), on
$(nproc) cores and $(free -g | awk '/Mem:/ {print $2}') GiB of RAM. Times are whole-process wall clock, RSS the peak (VmHWM).

\`\`\`
dsk create arange large.zarr --stop 3200000000 --shape 800000,4000 --chunks 1000,1000 --dtype float64
$sizes
  → $create

dsk rechunk large.zarr large_t.zarr --chunks 800000,10 --memory 1GiB --explain
$plan

dsk rechunk large.zarr large_t.zarr --chunks 800000,10 --memory 1GiB
  → $rechunk
$out
check (two corner values, exact integers; 0.0 means equal): $check
\`\`\`
DOCEOF
if [ -n "$pipeline" ]; then printf '\n%s\n' "$pipeline" >> "$DOC"; fi
cat "$DOC"
